"""Stage 2, training: recipes, models, losses, metrics, post-hoc adjustments, the training-loop scaffold,
the single, batched and fast trainers, and a grid point's pipeline.

May import `imbalance.data` and the root vocabulary (tests/test_layering.py).
"""
