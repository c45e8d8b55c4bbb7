"""What every benchmark runner shares: the npz data format, the metrics, the
thread environment, peak memory and the JSON output.

The fmnumba worker (bench/worker.py) and the peer runners (bench/peers/)
both use it; the peers import it from their own interpreter, so it depends
on numpy, scipy and scikit-learn only.

Data format (TRAIN.npz / TEST.npz): a CSR matrix saved with keys
``indptr`` (int64), ``indices`` (int32), ``data`` (float32), ``shape`` and
``y`` (float64; classification labels in {0, 1}).
"""
import json
import os
import resource
import sys

import numpy as np
import scipy.sparse as sp

THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS", "RAYON_NUM_THREADS")


def thread_env(threads):
    """{variable: str(threads)} pinning the common threading runtimes."""
    return {v: str(int(threads)) for v in THREAD_VARS}


def save_npz(path, X, y):
    """Write X (any sparse or dense matrix, as CSR with sorted indices) and y."""
    X = sp.csr_matrix(X)
    X.sort_indices()
    np.savez(path, indptr=X.indptr.astype(np.int64), indices=X.indices.astype(np.int32),
             data=X.data.astype(np.float32), shape=np.array(X.shape, dtype=np.int64),
             y=np.asarray(y, dtype=np.float64))


def load_npz(path, dtype=None):
    """(CSR matrix with values of `dtype` (default: as stored), y float64)."""
    z = np.load(path)
    data = z["data"] if dtype is None else z["data"].astype(dtype)
    X = sp.csr_matrix((data, z["indices"], z["indptr"]),
                      shape=tuple(int(s) for s in z["shape"]))
    return X, np.asarray(z["y"], dtype=np.float64)


def load_arrays(path):
    """(indptr int64, indices int32, data float32, y float64, n_features) of a
    harness npz, for the tools that call kernels on raw arrays."""
    z = np.load(path)
    return (z["indptr"].astype(np.int64), z["indices"].astype(np.int32),
            z["data"].astype(np.float32), np.asarray(z["y"], dtype=np.float64),
            int(z["shape"][1]))


def align_features(Xtr, Xte):
    """Both CSR matrices with the larger of their two column counts."""
    n = max(Xtr.shape[1], Xte.shape[1])

    def widen(X):
        if X.shape[1] == n:
            return X
        return sp.csr_matrix((X.data, X.indices, X.indptr), shape=(X.shape[0], n))
    return widen(Xtr), widen(Xte)


def metrics(task, y_true, pred):
    """{'rmse'} for regression; {'auc', 'logloss'} for classification, with
    pred = P(y = 1)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64).ravel()
    if task == "regression":
        return {"rmse": float(np.sqrt(np.mean((pred - y_true) ** 2)))}
    from sklearn.metrics import log_loss, roc_auc_score
    p = np.clip(pred, 1e-15, 1 - 1e-15)
    return {"auc": float(roc_auc_score(y_true, p)),
            "logloss": float(log_loss(y_true, p, labels=[0, 1]))}


def peak_rss_mib():
    """This process's peak resident memory so far (ru_maxrss), MiB."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return r / 2**20 if sys.platform == "darwin" else r / 1024.0


def proc_status_bytes(field):
    """A memory field of /proc/self/status (e.g. 'VmRSS', 'VmHWM') in bytes,
    or None where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss():
    """Reset the kernel's high-water mark VmHWM (Linux >= 4.0); False where
    that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def write_json(result, out=None):
    """Print `result` as indented JSON and, with `out`, write it there too."""
    txt = json.dumps(result, indent=1)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(txt + "\n")
    print(txt)
    return 0
