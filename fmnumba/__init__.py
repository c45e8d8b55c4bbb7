"""fmnumba: fast, reliable Factorization Machines on sparse data.

Importing the package compiles nothing: kernels compile on first use and are
cached on disk.
"""
from .estimators import FMClassifier, FMRegressor
from .io import load
from .solvers import DivergenceError

__version__ = "0.1.0"
__all__ = ["FMClassifier", "FMRegressor", "DivergenceError", "load", "__version__"]
