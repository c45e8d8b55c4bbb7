"""Shared helpers for the peer runners (bench/peers/run_*.py).

Each runner is executed in its own subprocess (usually inside a separate
virtualenv holding the peer library), so this module only depends on
numpy, scipy and scikit-learn.

Data format (TRAIN.npz / TEST.npz): a CSR matrix saved with keys
``indptr, indices, data, shape, y`` (y float; classification labels in {0,1}).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import scipy.sparse as sp


def set_thread_env(threads: int) -> None:
    """Pin common threading runtimes to ``threads``. Call before importing the peer."""
    n = str(int(threads))
    for var in ("OMP_NUM_THREADS", "RAYON_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = n


def parse_args(description: str, lr_default=None, reg_default=None, extra=None):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--train", required=True, help="train .npz (indptr, indices, data, shape, y)")
    p.add_argument("--test", required=True, help="test .npz")
    p.add_argument("--task", required=True, choices=["regression", "classification"])
    p.add_argument("--k", type=int, default=8, help="number of latent factors")
    p.add_argument("--epochs", type=int, default=10, help="epochs (SGD-type) or sweeps (MCMC/ALS)")
    p.add_argument("--lr", type=float, default=None,
                   help=f"learning rate (runner default: {lr_default})")
    p.add_argument("--reg", type=float, default=None,
                   help=f"L2 regularisation (runner default: {reg_default})")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write JSON here (also printed to stdout)")
    p.add_argument("--throughput", action="store_true",
                   help="only time one training epoch and report nnz*k/s")
    p.add_argument("--no-curve", action="store_true",
                   help="skip the per-epoch learning curve; one fit of --epochs epochs")
    if extra is not None:
        extra(p)
    return p.parse_args()


def load_npz(path: str):
    """Return (X csr_matrix float64, y float64 array)."""
    z = np.load(path)
    shape = tuple(int(s) for s in z["shape"])
    X = sp.csr_matrix((z["data"].astype(np.float64), z["indices"].astype(np.int32),
                       z["indptr"].astype(np.int64)), shape=shape)
    y = np.asarray(z["y"], dtype=np.float64)
    return X, y


def align_features(Xtr, Xte):
    """Give both matrices the same number of columns (max of the two)."""
    n = max(Xtr.shape[1], Xte.shape[1])
    if Xtr.shape[1] != n:
        Xtr = sp.csr_matrix((Xtr.data, Xtr.indices, Xtr.indptr), shape=(Xtr.shape[0], n))
    if Xte.shape[1] != n:
        Xte = sp.csr_matrix((Xte.data, Xte.indices, Xte.indptr), shape=(Xte.shape[0], n))
    return Xtr, Xte


def metrics(task: str, y_true, pred) -> dict:
    """RMSE for regression; AUC + logloss for classification (pred = P(y=1))."""
    y_true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64).ravel()
    if task == "regression":
        return {"rmse": float(np.sqrt(np.mean((pred - y_true) ** 2)))}
    from sklearn.metrics import log_loss, roc_auc_score
    p = np.clip(pred, 1e-15, 1 - 1e-15)
    return {"auc": float(roc_auc_score(y_true, p)),
            "logloss": float(log_loss(y_true, p, labels=[0, 1]))}


def sigmoid(z):
    z = np.asarray(z, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-z))


def peak_rss_mib() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    if sys.platform == "darwin":
        return r / 2**20
    return r / 1024.0


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0
        return False


def emit(result: dict, out: str | None) -> None:
    result.setdefault("peak_rss_mib", peak_rss_mib())
    txt = json.dumps(result, indent=1)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(txt + "\n")
    print(txt)


def save_npz(path: str, X, y) -> None:
    """Write a CSR matrix + targets in the format ``load_npz`` reads."""
    X = sp.csr_matrix(X)
    np.savez(path, indptr=X.indptr, indices=X.indices, data=X.data,
             shape=np.array(X.shape), y=np.asarray(y, dtype=np.float64))
