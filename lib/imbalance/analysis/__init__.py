"""Stage 4, analysis: record frames, statistics, tables, conclusions, plots, the explorer, the report and
the README findings. Reads records only: never trains and never imports torch.

May import `imbalance.study`'s torch-free modules, `imbalance.data.profiles` and the root vocabulary, never
`imbalance.training` (tests/test_layering.py).
"""
