"""Lazy readers: text files to dask arrays, one partition per file or byte
block, parsed on the workers (as dask.dataframe.read_csv does)."""
import glob as _glob
import io
import os

import numpy as np
import scipy.sparse as sp

from .. import readers as R


def _paths(paths_or_glob):
    if isinstance(paths_or_glob, (str, os.PathLike)):
        p = os.fspath(paths_or_glob)
        found = sorted(_glob.glob(p)) if any(c in p for c in "*?[") else [p]
    else:
        found = [os.fspath(p) for p in paths_or_glob]
    if not found:
        raise FileNotFoundError(f"no file matches {paths_or_glob!r}.")
    missing = [p for p in found if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no such file.")
    return found


def _blocks(path, blocksize):
    """Byte ranges of `path`, each ending at a line end (the last at EOF)."""
    size = os.path.getsize(path)
    if blocksize is None or size <= blocksize:
        return [(0, size)]
    cuts = [0]
    with open(path, "rb") as fh:
        pos = blocksize
        while pos < size:
            fh.seek(pos)
            fh.readline()
            end = fh.tell()
            if end >= size:
                break
            cuts.append(end)
            pos = end + blocksize
    cuts.append(size)
    return list(zip(cuts[:-1], cuts[1:]))


def _read_libsvm_block(path, start, stop, whole, n_features, zero_based, dtype):
    """Parse one block: (CSR X, y float64); errors name the file and block."""
    if whole:
        return R.load_libsvm(path, n_features=n_features, zero_based=zero_based, dtype=dtype)
    from sklearn.datasets import load_svmlight_file
    with open(path, "rb") as fh:
        fh.seek(start)
        raw = fh.read(stop - start)
    if not raw.strip():
        return sp.csr_matrix((0, n_features), dtype=dtype), np.zeros(0)
    try:
        X, y = load_svmlight_file(io.BytesIO(raw), n_features=n_features, dtype=dtype,
                                  zero_based=zero_based)
    except ValueError as exc:
        raise ValueError(f"{path} (bytes {start}-{stop}): {exc}") from None
    return X.tocsr(), np.asarray(y, dtype=np.float64)


def _read_libffm_file(path, n_features, dtype):
    X, y, _ = R.load_libffm(path, n_features=n_features, dtype=dtype)
    return X, np.asarray(y, dtype=np.float64)


def _lazy(parts, n_features, dtype):
    """(X, y) dask arrays from delayed (X block, y block) pairs of unknown
    row counts."""
    import dask
    import dask.array as da
    xs, ys = [], []
    for p in parts:
        x = dask.delayed(lambda t: t[0], pure=True)(p)
        y = dask.delayed(lambda t: t[1], pure=True)(p)
        xs.append(da.from_delayed(x, shape=(np.nan, n_features), dtype=dtype,
                                  meta=sp.csr_matrix((0, n_features), dtype=dtype)))
        ys.append(da.from_delayed(y, shape=(np.nan,), dtype=np.float64,
                                  meta=np.zeros(0)))
    return da.concatenate(xs, axis=0), da.concatenate(ys, axis=0)


def read_libsvm(paths_or_glob, n_features, zero_based=False, dtype=np.float32,
                blocksize=None):
    """Lazy (X, y) dask arrays of libsvm/svmlight files.

    paths_or_glob: a path, a glob pattern or a list of paths. n_features:
    the column count (every partition must agree, so it is not inferred).
    zero_based: whether indices start at 0 (libsvm files are 1-based: False).
    blocksize: None for one partition per file, or a byte count to split
    each file at line ends into blocks of about that size. Nothing is read
    until the arrays are computed or fitted; row counts are unknown (nan).
    """
    import dask
    if zero_based not in (True, False):
        raise ValueError(f"zero_based must be True or False (every partition must agree), "
                         f"got {zero_based!r}.")
    n_features = int(n_features)
    if n_features < 1:
        raise ValueError(f"n_features must be a positive integer, got {n_features}.")
    dtype = np.dtype(dtype)
    parts = []
    for path in _paths(paths_or_glob):
        blocks = _blocks(path, blocksize)
        for start, stop in blocks:
            parts.append(dask.delayed(_read_libsvm_block, pure=True)(
                path, start, stop, len(blocks) == 1, n_features, zero_based, dtype))
    return _lazy(parts, n_features, dtype)


def read_libffm(paths_or_glob, n_features, dtype=np.float32):
    """Lazy (X, y) dask arrays of libffm files, one partition per file
    (fields are dropped, as the FM does; see fmnumba.readers.load_libffm)."""
    import dask
    n_features = int(n_features)
    if n_features < 1:
        raise ValueError(f"n_features must be a positive integer, got {n_features}.")
    dtype = np.dtype(dtype)
    parts = [dask.delayed(_read_libffm_file, pure=True)(p, n_features, dtype)
             for p in _paths(paths_or_glob)]
    return _lazy(parts, n_features, dtype)
