"""What the peer runners (bench/peers/run_*.py) share beyond bench/protocol.py:
their command line, the data loading, the curve schedule and the JSON output.

Each runner is executed in its own subprocess (usually inside a separate
virtualenv holding the peer library), so this module, like bench/protocol.py,
depends on numpy, scipy and scikit-learn only.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from bench.protocol import (align_features, load_npz, metrics, peak_rss_mib,  # noqa: E402,F401
                            save_npz, thread_env, write_json)  # save_npz: make_test_data


def set_thread_env(threads: int) -> None:
    """Pin common threading runtimes to ``threads``. Call before importing the peer."""
    os.environ.update(thread_env(threads))


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


def lr_reg(a, defaults):
    """(learning rate, L2 strength): the command line's, else the runner's
    defaults for the task (dict with 'lr' and 'reg')."""
    return (a.lr if a.lr is not None else defaults["lr"],
            a.reg if a.reg is not None else defaults["reg"])


def load_train_test(a):
    """(Xtr, ytr, Xte, yte) of --train / --test: float64 CSR with the same
    number of columns."""
    Xtr, ytr = load_npz(a.train, np.float64)
    Xte, yte = load_npz(a.test, np.float64)
    Xtr, Xte = align_features(Xtr, Xte)
    return Xtr, ytr, Xte, yte


def dist_version(dist, module=None):
    """The installed version of distribution `dist`, else module.__version__."""
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:  # noqa: BLE001
        return getattr(module, "__version__", None)


def schedule(n):
    """Curve points of runners that cannot warm start: 1, 2, 4, ... and n."""
    s, e = [], 1
    while e < n:
        s.append(e)
        e *= 2
    s.append(n)
    return s


def emit(result: dict, out: str | None) -> None:
    """Write the runner's JSON (with this process's peak RSS) to stdout and --out."""
    result.setdefault("peak_rss_mib", peak_rss_mib())
    write_json(result, out)

