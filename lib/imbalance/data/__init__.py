"""Stage 1, data: datasets and image folders, class-count profiles, resampling, the torch Sampler, images.

May import the root vocabulary (`registry`, `schema`, `seeds`, `catalog`, `checks`) and nothing else of
the package (tests/test_layering.py).
"""
