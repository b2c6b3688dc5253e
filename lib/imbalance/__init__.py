"""Imbalance Lab: the class-imbalance study of Buda, Maki & Mazurowski (2018), at full scale.

The package is laid out as the data flows (docs/DESIGN.md, "The house by stage"):

| folder | holds |
| --- | --- |
| root: `registry`, `schema`, `seeds`, `catalog`, `checks` | the vocabulary: methods as data, record fields and metric names, the seed rule, dataset facts and option sets, shared validators |
| `data/` | datasets, image folders, npz, profiles, resampling, the torch Sampler, images |
| `training/` | recipes, models, losses, metrics, the loop scaffold, trainers, a grid point's pipeline |
| `study/` | params, the store, executors, the runner |
| `analysis/` | record frames, statistics, tables, conclusions, plots, explorer, report, findings |

`import imbalance` loads no torch: the public names below are imported on first use.
"""
__version__ = "0.1.0"

# public name -> the module that defines it (one place each)
_PUBLIC = {
    "Method": "imbalance.registry", "Loss": "imbalance.registry", "register_method": "imbalance.registry",
    "get_method": "imbalance.registry", "METHODS": "imbalance.registry",
    "load_dataset": "imbalance.data.datasets", "load_npz": "imbalance.data.datasets",
    "load_imagefolder": "imbalance.data.datasets",
    "imbalanced_subset": "imbalance.data.profiles",
    "ImbalancedSampler": "imbalance.data.sampler", "make_imbalanced": "imbalance.data.sampler",
    "run_study": "imbalance.study.runner", "load_study": "imbalance.analysis.frames",
    "mean_interval": "imbalance.analysis.stats", "compare_paired": "imbalance.analysis.stats",
    "paired_differences": "imbalance.analysis.stats", "point_winners": "imbalance.analysis.stats",
    "holm": "imbalance.analysis.stats",
    "check_all": "imbalance.analysis.conclusions", "write_report": "imbalance.analysis.report",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'imbalance' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
