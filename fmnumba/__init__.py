"""fmnumba: fast, reliable Factorization Machines on sparse data.

Importing the package compiles nothing: kernels compile on first use and are
cached on disk.
"""
# backend first: it installs the import hook that keeps fmnumba.cuda importable
# beside numba-cuda (see backend.py)
from . import backend  # noqa: F401,I001
from .estimators import FMClassifier, FMRegressor
from .io import ModelFileError, load
from .training import DivergenceError
from ._version import __version__

__all__ = ["FMClassifier", "FMRegressor", "DivergenceError", "ModelFileError", "load",
           "__version__"]
