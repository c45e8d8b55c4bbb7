"""Build the small test sets used to check the peer runners.

    python bench/peers/make_test_data.py --a9a ../shared/data/a9a --out DIR

writes DIR/a9a_train.npz, DIR/a9a_test.npz (labels mapped to {0,1}) and
DIR/synth_train.npz, DIR/synth_test.npz (20k ratings, one-hot user(1000)+item(500),
ratings 1..5 from a rank-4 model plus noise; 16k train / 4k test).
"""
import argparse
import os
import sys

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import save_npz  # noqa: E402


def a9a(path, out):
    from sklearn.datasets import load_svmlight_file
    for src, name in ((path, "a9a_train"), (path + ".t", "a9a_test")):
        X, y = load_svmlight_file(src, n_features=123)
        save_npz(os.path.join(out, name + ".npz"), X, (y > 0).astype(np.float64))


def synth(out, n=20000, n_users=1000, n_items=500, rank=4, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, n)
    i = rng.integers(0, n_items, n)
    U = rng.normal(0, 0.5, (n_users, rank))
    V = rng.normal(0, 0.5, (n_items, rank))
    bu = rng.normal(0, 0.3, n_users)
    bi = rng.normal(0, 0.3, n_items)
    r = 3.0 + bu[u] + bi[i] + np.sum(U[u] * V[i], axis=1) + rng.normal(0, 0.3, n)
    r = np.clip(np.rint(r), 1, 5)
    rows = np.repeat(np.arange(n), 2)
    cols = np.stack([u, n_users + i], axis=1).ravel()
    X = sp.csr_matrix((np.ones(2 * n), (rows, cols)), shape=(n, n_users + n_items))
    cut = int(0.8 * n)
    save_npz(os.path.join(out, "synth_train.npz"), X[:cut], r[:cut])
    save_npz(os.path.join(out, "synth_test.npz"), X[cut:], r[cut:])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--a9a", default="../shared/data/a9a")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    a9a(a.a9a, a.out)
    synth(a.out)
