"""Imbalance Lab: the class-imbalance study of Buda, Maki & Mazurowski (2018), at full scale.

Modules (one job each): data, images, profiles, sampling, models, train, batched, methods, metrics,
params, store, runner, executors, tables, plots, explorer, report, cli. Import what you need:
`from imbalance import profiles`.
"""
__version__ = "0.1.0"
