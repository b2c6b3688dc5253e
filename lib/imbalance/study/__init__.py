"""Stage 3, study: params, the results store, executors, progress, pre-flight checks, the dry-run plan,
the runner.

May import `imbalance.training`, `imbalance.data` and the root vocabulary (tests/test_layering.py).
"""
