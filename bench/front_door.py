"""The estimator's public predict against the bare kernel and this machine's
gather ceiling, in the same process, timed in turn.

For each k and thread count: ``model.predict(X)`` on canonical float32 CSR
with int32 indices (validation included), the bare ``predict_csr`` kernel on
the same arrays, ``check_X`` alone as predict calls it (the fused pass over
the structure; a non-finite prediction sends predict to the full check) and
as fit calls it (structure and values, the fit's one validation), and the
gather ceiling of *k-wide* float32 rows (bench/ceiling.py's plain and
prefetching gathers, the fastest counts) over the same indices. Fractions are
of the ceiling's nnz·k per second. The model is an FMRegressor fitted for one
epoch on a few rows of X (so it has X's width) whose table is then filled
with random factors.

    python -m bench.front_door --data TRAIN.npz --k 8,64 --threads 2 --out f.json
    python -m bench.front_door --synthetic 1000000 --k 8,64 --threads 2
"""
import argparse
import sys

import numpy as np

from bench.protocol import write_json
from bench.timing import in_turn


def _synthetic(n_rows):
    from fmnumba import datasets as D
    d = D.make_fm_data(n_rows, D.large_field_sizes(n_rows), random_state=0)
    return d.X


def _load(path):
    import scipy.sparse as sp
    z = np.load(path)
    shape = tuple(int(s) for s in z["shape"])
    return sp.csr_matrix((z["data"].astype(np.float32), z["indices"].astype(np.int32),
                          z["indptr"].astype(np.int32)), shape=shape)


def measure(X, ks=(8, 64), threads=2, repeats=5, seed=0):
    import numba
    import scipy.sparse as sp

    from bench.ceiling import _kernels
    from fmnumba import FMRegressor, cpu
    from fmnumba import _validation as validation

    X = sp.csr_matrix(X, dtype=np.float32)
    X.sum_duplicates()
    X.eliminate_zeros()
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    indptr, indices, data = X.indptr, X.indices, X.data
    nnz = int(indptr[-1])
    rng = np.random.default_rng(seed)
    gathers = [g for _, g in _kernels().gathers]
    res = {"n_rows": X.shape[0], "n_features": X.shape[1], "nnz": nnz, "repeats": repeats,
           "rows": []}
    for k in ks:
        m = FMRegressor(n_factors=k, dtype=np.float32, max_iter=1, early_stopping=False,
                        random_state=0).fit(X[:2000], np.zeros(2000))
        P = m._state.P
        P[:, 1:] = rng.normal(0.0, 0.05, (X.shape[1], k)).astype(np.float32)
        T = np.ascontiguousarray(P[:, 1:])
        out = np.empty(X.shape[0], dtype=np.float32)
        w0 = np.float32(m._state.bias_state[0])
        for nt in sorted({1, int(threads)}):
            numba.set_num_threads(nt)
            m.set_params(n_jobs=nt)
            m.predict(X)
            for g in gathers:
                g(indptr, indices, T, out)
            steps = [(None, lambda: m.predict(X)),
                     (None, lambda: cpu.predict_csr((indptr, indices, data), w0, P, out)),
                     (None, lambda: validation.check_X(m, X, reset=False, values=False,
                                                       dtype=np.dtype(np.float32))),
                     (None, lambda: validation.check_X(m, X, reset=False,
                                                       dtype=np.dtype(np.float32)))]
            steps += [(None, lambda g=g: g(indptr, indices, T, out)) for g in gathers]
            tp, tk, tv, tf, *tg = in_turn(steps, repeats)
            med = lambda t: float(np.median(t))  # noqa: E731
            ceil_s = min(med(t) for t in tg)
            row = {"k": k, "threads": nt, "predict_s": med(tp), "kernel_s": med(tk),
                   "check_X_s": med(tv), "fit_check_X_s": med(tf), "ceiling_s": ceil_s,
                   "predict_of_ceiling": ceil_s / med(tp), "kernel_of_ceiling": ceil_s / med(tk),
                   "ceiling_nnz_k_per_s": nnz * k / ceil_s}
            res["rows"].append(row)
            print(f"k={k:3d} threads={nt}: predict {row['predict_s']:.4f} s "
                  f"(kernel {row['kernel_s']:.4f}, check_X {row['check_X_s']:.4f}, "
                  f"fit's check_X {row['fit_check_X_s']:.4f}, "
                  f"ceiling {ceil_s:.4f}) = {row['predict_of_ceiling']:.0%} of the "
                  f"k-wide gather ceiling", flush=True)
        del m, P, T
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="harness TRAIN.npz")
    p.add_argument("--synthetic", type=int, default=1_000_000,
                   help="rows (= features) of the large-shaped set when no --data")
    p.add_argument("--k", default="8,64")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out")
    a = p.parse_args(argv)
    X = _load(a.data) if a.data else _synthetic(a.synthetic)
    res = measure(X, ks=tuple(int(k) for k in a.k.split(",")), threads=a.threads,
                  repeats=a.repeats)
    if a.out:
        write_json(res, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
