"""Dask collections to per-partition tasks, and the canonicalisation each
partition gets on its worker (the single-machine checks, naming the partition).
"""
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .. import _validation as V


@dataclass(frozen=True)
class PartSpec:
    """What a worker needs to canonicalise a partition: the model dtype, the
    column count, the role ("X" or "eval_set[0]") and, for a classifier, the
    two classes (y is encoded to -1/+1)."""
    dtype: str
    n_features: int
    role: str = "X"
    classes: tuple = None


class _Columns:
    """Stands in for an estimator in V.check_X: the fitted column count."""

    def __init__(self, n_features, dtype):
        self.n_features_in_ = n_features
        self.dtype = dtype


def _is_dask_array(obj):
    import dask.array as da
    return isinstance(obj, da.Array)


def _is_dask_frame(obj):
    # by module, so that dask.dataframe (pandas, pyarrow) is imported only when used
    return type(obj).__module__.startswith("dask.dataframe") and hasattr(obj, "to_delayed")


def blocks_of(X, name="X"):
    """(list of per-partition delayed blocks, n_features) of a dask array
    chunked by rows (one chunk along the columns) or a dask DataFrame."""
    if _is_dask_array(X):
        if X.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D dask array, got {X.ndim}-D. Reshape it.")
        if X.numblocks[1] != 1:
            raise ValueError(f"{name}: its chunks split the columns ({X.numblocks[1]} column "
                             "chunks); each chunk must hold whole rows. Use "
                             f"{name}.rechunk({{1: -1}}).")
        return list(X.to_delayed()[:, 0]), int(X.shape[1])
    if _is_dask_frame(X) and hasattr(X, "columns"):
        return list(X.to_delayed()), len(X.columns)
    raise TypeError(f"{name}: expected a dask array or a dask DataFrame, got "
                    f"{type(X).__name__}. Wrap in-memory data with dask.array.from_array "
                    "(or use the single-machine estimator, fmnumba.FMRegressor).")


def vector_blocks(v, n_parts, name):
    """Per-partition delayed blocks of a 1-D dask array or dask Series whose
    row partitions match X's (None: no vector)."""
    if v is None:
        return [None] * n_parts
    if _is_dask_array(v):
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if v.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D dask array, got shape {v.shape}.")
        parts = list(v.to_delayed())
    elif _is_dask_frame(v):
        parts = list(v.to_delayed())
    else:
        raise TypeError(f"{name}: expected a dask array or dask Series with the same row "
                        f"partitions as X, got {type(v).__name__}.")
    if len(parts) != n_parts:
        raise ValueError(f"{name} has {len(parts)} partitions but X has {n_parts}; chunk "
                         "them alike (e.g. y.rechunk(X.chunks[0])).")
    return parts


def is_dask_frame(obj):
    """Whether obj is a dask DataFrame (not a Series)."""
    return _is_dask_frame(obj) and hasattr(obj, "columns")


def _as_matrix(x, name):
    if hasattr(x, "to_numpy") and hasattr(x, "columns"):  # a pandas partition
        x = x.to_numpy()
    if not sp.issparse(x):
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"{name}: a block of {x.ndim} dimensions; expected rows x columns.")
    return x


def _vector(v, n, name):
    if hasattr(v, "to_numpy"):
        v = v.to_numpy()
    v = np.asarray(v)
    if v.ndim == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 1 or v.shape[0] != n:
        raise ValueError(f"{name}: has shape {v.shape} but its X block has {n} rows; "
                         "chunk X, y and sample_weight alike.")
    return v


def _weights(sw, n, name):
    if sw is None:
        return np.ones(n)
    sw = _vector(sw, n, name)
    try:
        sw = sw.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: sample weights must be numeric, got dtype {sw.dtype}.") from None
    if not np.all(np.isfinite(sw)):
        raise ValueError(f"{name}: contains NaN or inf (first at row "
                         f"{int(np.argmin(np.isfinite(sw)))}). Pass finite weights.")
    if sw.size and sw.min() < 0:
        raise ValueError(f"{name}: contains negative values (first at row "
                         f"{int(np.argmax(sw < 0))}). Weights must be >= 0.")
    return sw


def _labels(y, n, spec, name):
    if spec.classes is None:
        return V.check_y_numeric(_vector(y, n, name) if y is not None else None, n, name=name,
                                 dtype=np.dtype(spec.dtype))
    if y is None:
        raise ValueError(f"{name}: fit needs a label for every row of X, got None.")
    y = _vector(y, n, name)
    classes = np.asarray(spec.classes)
    ok = np.isin(y, classes)
    if not ok.all():
        bad = y[~ok][0]
        raise ValueError(f"{name} contains the label {bad!r} (row {int(np.argmin(ok))}), which "
                         f"is not one of the classes {classes.tolist()}.")
    return np.where(y == classes[1], 1.0, -1.0)


def canonical_partition(x, y, sw, index, spec):
    """Validate and canonicalise partition `index` (runs on a worker).

    Returns a dict: CSR arrays indptr / indices / data (spec.dtype, sorted,
    no explicit zeros), y (float64, in the loss's encoding), sw (float64,
    unscaled) with zero-weight rows dropped, and index. Errors name the
    partition; running out of memory becomes a MemoryError naming it.
    """
    name = f"{spec.role} partition {index}"
    yname = ("y" if spec.role == "X" else "eval_set[1]") + f" partition {index}"
    wname = ("sample_weight" if spec.role == "X" else "eval_set[2]") + f" partition {index}"
    dtype = np.dtype(spec.dtype)
    try:
        x = _as_matrix(x, name)
        if x.shape[0] == 0:
            raise ValueError(f"{name}: has 0 rows (shape={x.shape}); every partition needs at "
                             "least one row. Drop empty partitions (for a dask array, e.g. "
                             "rechunk it; for a DataFrame, repartition it).")
        X = V.check_X(_Columns(spec.n_features, dtype), x, reset=False, dtype=dtype, name=name)
        n = X.shape[0]
        yv = _labels(y, n, spec, yname)
        swv = _weights(sw, n, wname)
        keep = swv > 0
        if not keep.all():
            idx = np.flatnonzero(keep)
            X = X[idx]
            yv, swv = yv[idx], swv[idx]
        return {"index": index, "indptr": X.indptr, "indices": X.indices, "data": X.data,
                "y": yv, "sw": swv, "n_features": spec.n_features}
    except MemoryError as e:
        raise MemoryError(f"{name}: the worker ran out of memory loading it ({e}). Use "
                          "smaller partitions (more, smaller chunks) or workers with more "
                          "memory.") from None


def partition_classes(y):
    """Distinct labels of one y block (runs on a worker)."""
    if y is None:
        return np.array([])
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    return np.unique(np.asarray(y).ravel())
