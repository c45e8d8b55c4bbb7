"""fmnumba: fast, reliable Factorization Machines on sparse data.

Importing the package compiles nothing and loads no kernel: the names below
are imported on first use (so ``fmnumba --version`` answers at once), and
kernels compile on first call and are cached on disk.
"""
from ._version import __version__
# eager, so that the name fmnumba.recommend is the function, not its module
# (the module imports NumPy and the kernels only when called)
from .recommend import Recommendations, recommend

_LAZY = {"FMClassifier": "estimators", "FMRegressor": "estimators",
         "DivergenceError": "training", "ModelFileError": "io", "load": "io"}

__all__ = ["FMClassifier", "FMRegressor", "DivergenceError", "ModelFileError", "load",
           "recommend", "Recommendations", "__version__"]


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'fmnumba' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
