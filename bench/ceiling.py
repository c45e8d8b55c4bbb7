"""This machine's throughput bound, measured in the same run as the kernels.

* gather ceiling: a Numba kernel that only gathers and sums the k-wide rows
  of a float32 table (n_features × k) per CSR row, driven by the real CSR
  indices of the benchmark set (the irreducible part of predict); timed
  plain and with the table rows of the row 1, 2 or 4 rows later prefetched
  (as fmnumba's kernels do), and the fastest is the ceiling. Reported in
  elements nnz·k per second, at 1 thread and at --threads, k = 8 and 64, for
  the real (Zipf-popular) indices and for uniform random indices of the same
  shape.
* streaming bandwidth: a parallel Numba sum over a large float32 array
  (read GB/s) and numpy copy (GB/s counted as bytes read + written).
* Adam state bound: the bare read-modify-write of the P, M and S rows (1 + k
  float32 each) of every feature an Adam epoch touches, batch by batch over
  the same random rows and batch size as bench/throughput.py, split among
  threads like fmnumba's adam_update (interleaved) with the rows each thread
  updates 1, 2, 4 or 8 rows later prefetched (the fastest counts); also
  timed with the three tables interleaved in one (row j = [p | m | s]), the
  layout change it would take to lower the bound. Lazy Adam must do at least
  this per epoch, so epoch_nnz·k over (this time + the gather time of the
  epoch's rows) bounds its throughput.
* SGD bound: the same epoch rows visited in their shuffled order, split into
  one contiguous chunk per thread, gathering each row's k-wide table rows
  (*read*) and then also writing each of them back once (*rmw*), prefetched as
  fmnumba's sgd_epoch does. A per-sample SGD epoch in a fresh random order
  must do at least the rmw pass (and reads its x values and 1 + k wide rows
  on top), so its nnz·k/s is a bound for any such epoch on this machine.

Run in its own process (NUMBA_NUM_THREADS set explicitly by the caller):

    python -m bench.ceiling --data TRAIN.npz --k 8,64 --threads 2 --out c.json
"""
import functools
import sys
from types import SimpleNamespace

import numpy as np

from bench.protocol import load_arrays, write_json
from bench.timing import median_time, parse_tool_args, tool_parser

CHUNK = 1024
STATE_PREFETCH_DISTANCES = (1, 2, 4, 8)  # rows ahead; the state bound takes the fastest
GATHER_PREFETCH_AHEAD = (0, 1, 2, 4)  # rows ahead whose table rows are prefetched (0: none)


@functools.cache
def _kernels():
    """The bound kernels, compiled once per process (bench/throughput.py
    times them in turn with fmnumba's kernels)."""
    from numba import njit, prange

    from fmnumba.cpu._prefetch import prefetch_1d, prefetch_row, prefetch_span
    from fmnumba.cpu.adam import N_SPLIT

    @njit(inline="always", fastmath=True, nogil=True)
    def gather_row(indptr, indices, T, r, pn, pn_end, acc):
        """acc (k,) = Σ T[j] over the entries j of CSR row r; the table rows
        at entry p + pn are prefetched while p + pn < pn_end (a later row's,
        at the same offset; pn_end = 0 prefetches nothing)."""
        for f in range(acc.shape[0]):
            acc[f] = 0
        for p in range(indptr[r], indptr[r + 1]):
            if p + pn < pn_end:
                prefetch_row(T, indices[p + pn])
            j = indices[p]
            for f in range(acc.shape[0]):
                acc[f] += T[j, f]

    def make_gather(ahead):
        """Gather-and-sum of T's rows per CSR row; with ahead > 0, the table
        rows of the row `ahead` rows later are prefetched one per entry (the
        scheme fmnumba's kernels use), the bound for latency-hidden gathers.
        `ahead` is a compile-time constant of each compiled kernel."""
        @njit(parallel=True, fastmath=True, nogil=True, boundscheck=False)
        def gather(indptr, indices, T, out):
            n = out.shape[0]
            k = T.shape[1]
            n_chunks = (n + CHUNK - 1) // CHUNK
            for c in prange(n_chunks):
                acc = np.empty(k, dtype=T.dtype)
                stop = min(n, (c + 1) * CHUNK)
                for r in range(c * CHUNK, stop):
                    p0 = indptr[r]
                    on = ahead > 0 and r + ahead < stop
                    pn = indptr[r + ahead] - p0 if on else 0
                    pn_end = indptr[r + ahead + 1] if on else 0
                    gather_row(indptr, indices, T, r, pn, pn_end, acc)
                    s = T.dtype.type(0)
                    for f in range(k):
                        s += acc[f]
                    out[r] = s
        return gather

    @njit(inline="always", fastmath=True, nogil=True)
    def _rmw(P, M, S, j):
        for f in range(P.shape[1]):
            m = np.float32(0.9) * M[j, f] + np.float32(0.1) * P[j, f]
            s = np.float32(0.999) * S[j, f] + np.float32(0.001) * m
            M[j, f] = m
            S[j, f] = s
            P[j, f] -= np.float32(1e-3) * s

    @njit(inline="always", fastmath=True, nogil=True)
    def _rmw_interleaved(X, M, S, j):  # M, S unused: X[j] = [p | m | s]
        w = X.shape[1] // 3
        for f in range(w):
            m = np.float32(0.9) * X[j, w + f] + np.float32(0.1) * X[j, f]
            s = np.float32(0.999) * X[j, 2 * w + f] + np.float32(0.001) * m
            X[j, w + f] = m
            X[j, 2 * w + f] = s
            X[j, f] -= np.float32(1e-3) * s

    def make_state_rmw(interleaved):
        """Per batch b: the P, M, S rows uall[ustart[b]:ustart[b+1]] updated in
        place (a multiply-add each, the memory traffic of an Adam step); each
        thread prefetches the rows it updates dist rows later. With
        `interleaved` (a compile-time constant) the three are one table,
        passed as P (M and S unused), row j = [p | m | s]: one random row per
        feature instead of three."""
        rmw = _rmw_interleaved if interleaved else _rmw

        @njit(parallel=True, fastmath=True, nogil=True, boundscheck=False)
        def state_rmw(ustart, uall, P, M, S, dist):
            ahead = dist * N_SPLIT
            for b in range(ustart.shape[0] - 1):
                a0 = ustart[b]
                n = ustart[b + 1] - a0
                for c in prange(N_SPLIT):
                    for a in range(c, n, N_SPLIT):
                        if a + ahead < n:
                            jn = uall[a0 + a + ahead]
                            prefetch_row(P, jn)
                            if not interleaved:
                                prefetch_row(M, jn)
                                prefetch_row(S, jn)
                        rmw(P, M, S, uall[a0 + a])
        return state_rmw

    state_rmw = make_state_rmw(False)
    state_rmw_interleaved = make_state_rmw(True)

    def make_shuffled(write):
        """Gather-and-sum of T's rows per CSR row, visiting the rows in a
        given (shuffled) order split into n_chunks contiguous chunks run in
        parallel, as an SGD epoch does; with `write` (a compile-time
        constant), each gathered row is then read-modify-written once (the
        least a per-sample update must do), with Hogwild races. Prefetching
        as in fmnumba's sgd_epoch: the next row's table rows, the indices two
        rows ahead and indptr four rows ahead."""
        @njit(parallel=True, fastmath=True, nogil=True, boundscheck=False)
        def shuffled(indptr, indices, order, T, n_chunks, out):
            n = order.shape[0]
            k = T.shape[1]
            for c in prange(n_chunks):
                acc = np.empty(k, dtype=T.dtype)
                stop = (c + 1) * n // n_chunks
                for pos in range(c * n // n_chunks, stop):
                    if pos + 4 < stop:
                        prefetch_1d(indptr, order[pos + 4])
                    if pos + 2 < stop:
                        r2 = order[pos + 2]
                        prefetch_span(indices, indptr[r2], indptr[r2 + 1])
                    r = order[pos]
                    rn = order[pos + 1] if pos + 1 < stop else r
                    p0 = indptr[r]
                    pn = indptr[rn] - p0
                    pn_end = indptr[rn + 1] if pos + 1 < stop else 0
                    gather_row(indptr, indices, T, r, pn, pn_end, acc)
                    if write:
                        for p in range(p0, indptr[r + 1]):
                            j = indices[p]
                            for f in range(k):
                                T[j, f] = np.float32(0.999) * T[j, f] + np.float32(1e-6) * acc[f]
                    else:
                        s = T.dtype.type(0)
                        for f in range(k):
                            s += acc[f]
                        out[pos] = s
        return shuffled

    # the ceiling is the fastest of these (prefetching 1, 2 or 4 rows ahead, or not)
    gathers = tuple((d, make_gather(d)) for d in GATHER_PREFETCH_AHEAD)
    shuffled_read = make_shuffled(False)
    shuffled_rmw = make_shuffled(True)

    @njit(parallel=True, fastmath=True, nogil=True)
    def stream_sum(a):
        s = 0.0
        for i in prange(a.shape[0]):
            s += a[i]
        return s

    return SimpleNamespace(gathers=gathers,
                           stream_sum=stream_sum, state_rmw=state_rmw,
                           state_rmw_interleaved=state_rmw_interleaved,
                           shuffled_read=shuffled_read, shuffled_rmw=shuffled_rmw)


def _by_distance(run, repeats):
    """{prefetch distance: median seconds of run(distance)} over
    STATE_PREFETCH_DISTANCES."""
    return {d: _median_time(lambda: run(d), repeats) for d in STATE_PREFETCH_DISTANCES}


def batch_features(indptr, indices, order, batch_size):
    """(ustart, uall): the distinct features of each batch of `order`."""
    us, parts = [0], []
    for b in range(0, order.size, batch_size):
        rows = order[b:b + batch_size]
        idx = np.concatenate([indices[indptr[r]:indptr[r + 1]] for r in rows])
        u = np.unique(idx)
        parts.append(u)
        us.append(us[-1] + u.size)
    return np.array(us, dtype=np.int64), np.concatenate(parts).astype(indices.dtype)


def _median_time(fn, repeats):
    return median_time(fn, repeats)[0]


def measure(indptr, indices, n_features, ks=(8, 64), threads=2, repeats=3,
            stream_mib=512, uniform=True, seed=0, epoch_rows=200_000, batch_size=256):
    """Return a dict of ceiling measurements (see module docstring)."""
    import numba

    kern = _kernels()
    stream_sum = kern.stream_sum
    state_rmw, sh_read, sh_rmw = kern.state_rmw, kern.shuffled_read, kern.shuffled_rmw
    rng = np.random.default_rng(seed)
    n_rows = indptr.shape[0] - 1
    nnz = int(indptr[-1])
    out = np.empty(n_rows, dtype=np.float32)
    thread_list = sorted({1, int(threads)})
    res = {"n_rows": n_rows, "nnz": nnz, "n_features": int(n_features), "gather": [],
           "stream": [], "adam_state": [], "threads": int(threads), "repeats": repeats,
           "numba_threading_layer": None}
    idx_sets = [("real", indices)]
    if uniform:
        idx_sets.append(("uniform", rng.integers(0, n_features, nnz).astype(indices.dtype)))
    for k in ks:
        T = rng.standard_normal((n_features, k), dtype=np.float32)
        for _, g in kern.gathers:
            g(indptr[:2], indices, T, out[:1])  # compile / warm
        for name, idx in idx_sets:
            for nt in thread_list:
                numba.set_num_threads(nt)
                times = {}
                for d, g in kern.gathers:
                    g(indptr, idx, T, out)  # warm caches / pages
                    times[d] = _median_time(lambda: g(indptr, idx, T, out), repeats)
                s = min(times.values())  # the ceiling: the fastest gather
                res["gather"].append({"k": k, "indices": name, "threads": nt, "time_s": s,
                                      "nnz_k_per_s": nnz * k / s,
                                      "plain_time_s": times[0],
                                      "prefetch_time_s": min(times[d] for d in times if d),
                                      "prefetch_ahead_time_s": {str(d): times[d]
                                                                for d in times if d}})
        del T
    # the rows and batches of bench/throughput.py's Adam epoch (same seed)
    order = np.random.default_rng(seed).permutation(n_rows)[:min(epoch_rows, n_rows)]
    ustart, uall = batch_features(indptr, indices, order, batch_size)
    lens = indptr[1:] - indptr[:-1]
    epoch_nnz = int(lens[order].sum())
    n_b = ustart.size - 1
    for k in ks:
        P = np.ones((n_features, 1 + k), dtype=np.float32)
        M = np.zeros_like(P)
        S = np.zeros_like(P)
        state_rmw(ustart[:2], uall, P, M, S, 1)
        rows = {}
        for nt in thread_list:
            numba.set_num_threads(nt)
            by_dist = _by_distance(lambda d: state_rmw(ustart, uall, P, M, S, d), repeats)
            d, s = min(by_dist.items(), key=lambda kv: kv[1])  # the bound: the fastest
            rows[nt] = {"k": k, "threads": nt, "batch_size": batch_size, "batches": n_b,
                        "epoch_rows": int(order.size), "epoch_nnz": epoch_nnz,
                        "rows_updated": int(uall.size), "time_s": s,
                        "time_per_batch_s": s / n_b, "prefetch_distance": d,
                        "time_s_by_distance": {str(a): b for a, b in by_dist.items()}}
        del P, M, S
        # the same with P, M and S interleaved in one table (row j = [p | m | s]):
        # what that layout would save fmnumba's Adam
        X = np.ones((n_features, 3 * (1 + k)), dtype=np.float32)
        inter = kern.state_rmw_interleaved
        inter(ustart[:2], uall, X, X, X, 1)
        for nt in thread_list:
            numba.set_num_threads(nt)
            rows[nt]["interleaved_time_s"] = min(
                _by_distance(lambda d: inter(ustart, uall, X, X, X, d), repeats).values())
        del X
        res["adam_state"] += rows.values()
    res["sgd_bound"] = []
    out_o = np.empty(order.size, dtype=np.float32)
    for k in ks:
        T = rng.standard_normal((n_features, k), dtype=np.float32)
        for g in (sh_read, sh_rmw):
            g(indptr, indices, order[:64], T, 1, out_o)
        for nt in thread_list:
            numba.set_num_threads(nt)
            t_read = _median_time(lambda: sh_read(indptr, indices, order, T, nt, out_o), repeats)
            t_rmw = _median_time(lambda: sh_rmw(indptr, indices, order, T, nt, out_o), repeats)
            res["sgd_bound"].append({"k": k, "threads": nt, "epoch_rows": int(order.size),
                                     "epoch_nnz": epoch_nnz, "read_time_s": t_read,
                                     "rmw_time_s": t_rmw,
                                     "read_nnz_k_per_s": epoch_nnz * k / t_read,
                                     "rmw_nnz_k_per_s": epoch_nnz * k / t_rmw})
        del T
    try:
        res["numba_threading_layer"] = numba.threading_layer()
    except Exception:  # noqa: BLE001
        pass
    n = int(stream_mib) * 2**20 // 4
    a = np.ones(n, dtype=np.float32)
    b = np.empty_like(a)
    stream_sum(a[:16])
    for nt in thread_list:
        numba.set_num_threads(nt)
        stream_sum(a)
        s = _median_time(lambda: stream_sum(a), repeats)
        res["stream"].append({"op": "sum (numba prange)", "threads": nt, "bytes": a.nbytes,
                              "time_s": s, "gb_per_s": a.nbytes / s / 1e9})
    np.copyto(b, a)
    s = _median_time(lambda: np.copyto(b, a), repeats)
    res["stream"].append({"op": "copy (numpy, 1 thread)", "threads": 1,
                          "bytes": 2 * a.nbytes, "time_s": s, "gb_per_s": 2 * a.nbytes / s / 1e9})
    numba.set_num_threads(int(threads))
    return res


def main(argv=None):
    p = tool_parser(__doc__)
    p.add_argument("--stream-mib", type=int, default=512)
    a = parse_tool_args(p, argv)
    indptr, indices, _, _, n_features = load_arrays(a.data)
    return write_json(measure(indptr, indices, n_features, ks=a.k, threads=a.threads,
                              repeats=a.repeats, stream_mib=a.stream_mib,
                              epoch_rows=a.epoch_rows, batch_size=a.batch_size), a.out)


if __name__ == "__main__":
    sys.exit(main())
