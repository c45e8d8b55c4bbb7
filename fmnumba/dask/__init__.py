"""Training and prediction on a Dask cluster (needs the ``distributed``
extra: ``pip install "fmnumba[distributed]"``).

``DaskFMRegressor`` / ``DaskFMClassifier`` take dask arrays or DataFrames
partitioned by rows, keep each partition on its worker, and train in mode
"sync" (exact data-parallel lazy Adam) or "local" (per-worker training with
periodic averaging). ``read_libsvm`` / ``read_libffm`` build such arrays
lazily from files.
"""
from ._estimators import DaskFMClassifier, DaskFMRegressor
from ._train import WorkerLostError
from .readers import read_libffm, read_libsvm

__all__ = ["DaskFMClassifier", "DaskFMRegressor", "WorkerLostError", "read_libffm",
           "read_libsvm"]
