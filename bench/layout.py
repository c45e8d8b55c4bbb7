"""Parameter-table layout, measured on bare gathers: what predict must read.

For each k, one CSR row's ŷ needs w_j and the k-wide v_j of each entry j.
Three layouts of the same values, gathered and summed over the large-shaped
set's real (Zipf) indices, timed in turn in one process (median of
--repeats), with the next row's table rows prefetched as fmnumba's kernels
do:

* ``wv``: today's P = [w | V], rows of 1 + k float32 (straddle cache lines
  unless (1 + k)·4 divides 64);
* ``split``: w in its own vector beside a k-wide V (two random reads per entry);
* ``padded``: [w | V | 0…] rows padded to a multiple of 16 float32 (64 bytes,
  one cache line per 16 values), the table allocated 64-byte aligned.

Memory per feature is reported beside each. Adam/SGD epochs read and write
the same rows (and the Adam state tables have the same shape), so the gather
is the first-order cost of each layout; this measures only the gather.

    python -m bench.layout --synthetic 1000000 --k 4,8,16,32,64 --threads 2
"""
import argparse
import sys

import numpy as np

from bench.protocol import write_json
from bench.timing import in_turn


def _kernels():
    from numba import njit, prange

    from fmnumba.cpu._prefetch import prefetch_row

    @njit(parallel=True, fastmath=True, nogil=True, boundscheck=False)
    def gather(indptr, indices, W, V, off, k, out):
        """out[r] = Σ_j W[j, 0] + Σ_j Σ_f V[j, off + f] (f < k) over row r,
        the next row's V rows prefetched; W may be V itself (w in column 0)."""
        n = out.shape[0]
        for c in prange((n + 1023) // 1024):
            acc = np.zeros(k, dtype=V.dtype)
            stop = min(n, (c + 1) * 1024)
            for r in range(c * 1024, stop):
                acc[:] = 0
                s = V.dtype.type(0)
                a, b = indptr[r], indptr[r + 1]
                nb = indptr[r + 2] if r + 1 < stop else b
                for p in range(a, b):
                    q = b + (p - a)
                    if q < nb:
                        prefetch_row(V, indices[q])
                    j = indices[p]
                    s += W[j, 0]
                    for f in range(k):
                        acc[f] += V[j, off + f]
                out[r] = s + acc.sum()

    return gather


def _aligned(shape, dtype, align=64):
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = np.zeros(n + align, dtype=np.uint8)
    off = (-buf.ctypes.data) % align
    return buf[off:off + n].view(dtype).reshape(shape)


def measure(indptr, indices, n_features, ks=(4, 8, 16, 32, 64), threads=2, repeats=5, seed=0):
    import numba
    gather = _kernels()
    rng = np.random.default_rng(seed)
    n = indptr.shape[0] - 1
    nnz = int(indptr[-1])
    out = np.empty(n, dtype=np.float32)
    res = {"n_rows": n, "nnz": nnz, "n_features": n_features, "rows": []}
    for k in ks:
        wv = rng.normal(0, 0.05, (n_features, 1 + k)).astype(np.float32)
        w, V = wv[:, 0].copy(), np.ascontiguousarray(wv[:, 1:])
        width = -(-(1 + k) // 16) * 16
        pad = _aligned((n_features, width), np.float32)
        pad[:, :1 + k] = wv
        w_col = w.reshape(-1, 1)
        steps = {"wv": lambda: gather(indptr, indices, wv, wv, 1, k, out),
                 "split": lambda: gather(indptr, indices, w_col, V, 0, k, out),
                 "padded": lambda: gather(indptr, indices, pad, pad, 1, k, out)}
        mem = {"wv": wv.nbytes, "split": w.nbytes + V.nbytes, "padded": pad.nbytes}
        for nt in sorted({1, int(threads)}):
            numba.set_num_threads(nt)
            for f in steps.values():
                f()
            times = in_turn([(None, f) for f in steps.values()], repeats)
            for name, t in zip(steps, times):
                s = float(np.median(t))
                res["rows"].append({"k": k, "threads": nt, "layout": name, "time_s": s,
                                    "nnz_k_per_s": nnz * k / s,
                                    "bytes_per_feature": mem[name] / n_features})
            line = ", ".join(f"{r['layout']} {r['time_s']:.4f} s"
                             for r in res["rows"][-len(steps):])
            print(f"k={k:3d} threads={nt}: {line}", flush=True)
        del wv, w, w_col, V, pad
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--synthetic", type=int, default=1_000_000)
    p.add_argument("--rows", type=int, default=None, help="use only the first ROWS rows")
    p.add_argument("--k", default="4,8,16,32,64")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out")
    a = p.parse_args(argv)
    from fmnumba import datasets as D
    X = D.make_fm_data(a.synthetic, D.large_field_sizes(a.synthetic), random_state=0).X.tocsr()
    X.sum_duplicates()
    if a.rows:
        X = X[:a.rows]
    res = measure(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.shape[1],
                  ks=tuple(int(k) for k in a.k.split(",")), threads=a.threads, repeats=a.repeats)
    if a.out:
        write_json(res, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
