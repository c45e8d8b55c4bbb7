"""Kernel throughput of fmnumba.cpu on the large set, in nnz·k per second.

Calls the kernels directly (predict_csr, adam_epoch, sgd_epoch) on raw CSR
arrays and a P table, warm JIT, median of --repeats, at 1 thread and at
--threads (the caller sets NUMBA_NUM_THREADS explicitly). Predict is timed
in turn with bench/ceiling.py's gather kernels in the same process, so its
fraction of the ceiling is not skewed by the machine's drift between runs;
likewise the SGD epoch with ceiling.py's SGD bound. Adam and SGD epochs
run over a random subset of --epoch-rows rows (the whole P table is used, so
the cache behaviour is that of the full set). Also breaks an Adam epoch down
into its per-batch stages (forward_batch, transpose_batch, adam_update; the
last two also with their rows in cache, which leaves their arithmetic) and
measures the cost of launching an empty parallel region, which is what the
report's profiling section is built from.

    python -m bench.throughput --data TRAIN.npz --k 8,64 --threads 2 --out t.json
"""
import sys
import time

import numpy as np

from bench.protocol import load_arrays, write_json
from bench.timing import in_turn, median_time, parse_tool_args, tool_parser

ADAM = (1e-3, 0.9, 0.999, 1e-8, False)  # (lr, beta1, beta2, eps, decoupled) of every Adam call


def _interleaved(predict, T, indptr, indices, out, repeats):
    """Median predict time, its times, and the gather ceiling's time (the
    fastest of bench/ceiling.py's plain and prefetching gathers), timed in
    turn with predict."""
    from bench.ceiling import _kernels
    gathers = [g for _, g in _kernels().gathers]
    for g in gathers:
        g(indptr, indices, T, out)
    tp, *tg = in_turn([(None, predict)] + [(None, lambda g=g: g(indptr, indices, T, out))
                                            for g in gathers], repeats)
    return float(np.median(tp)), [float(t) for t in tp], min(float(np.median(t)) for t in tg)


def _sgd_and_bound(sgd, reset, indptr, indices, order, T, threads, repeats):
    """Median SGD epoch time, its times, and the time of bench/ceiling.py's
    SGD bound (shuffled gather + write-back over the same rows), timed in
    turn with the epoch."""
    from bench.ceiling import _kernels
    rmw = _kernels().shuffled_rmw
    out = np.empty(order.size, dtype=T.dtype)
    T = T.copy()  # the bound writes its table
    rmw(indptr, indices, order[:64], T, 1, out)
    ts, tb = in_turn([(reset, sgd), (None, lambda: rmw(indptr, indices, order, T, threads,
                                                        out))], repeats)
    return float(np.median(ts)), [float(t) for t in ts], float(np.median(tb))


def _launch_overhead(threads, n_calls=2000):
    """Seconds per call of an (almost) empty prange kernel."""
    import numba
    from numba import njit, prange

    @njit(parallel=True)
    def tiny(a):
        s = 0.0
        for i in prange(a.shape[0]):
            s += a[i]
        return s

    a = np.ones(64)
    tiny(a)
    out = {}
    for nt in sorted({1, threads}):
        numba.set_num_threads(nt)
        t0 = time.perf_counter()
        for _ in range(n_calls):
            tiny(a)
        out[str(nt)] = (time.perf_counter() - t0) / n_calls
    return out


def measure(indptr, indices, data, y, n_features, ks=(8, 64), threads=2, repeats=3, epoch_rows=200_000,
            batch_size=256, breakdown_batches=200, seed=0):
    import numba

    from fmnumba import cpu
    from fmnumba._validation import per_feature_l2
    from fmnumba.cpu.predict import predict_parallel
    from fmnumba.losses import LOSS_CODES

    rng = np.random.default_rng(seed)
    n_rows = indptr.shape[0] - 1
    n_features = int(n_features)
    nnz = int(indptr[-1])
    dt = np.float32
    y = y.astype(dt)
    sw = np.ones(n_rows, dtype=dt)
    # the L2 form a fit passes when all features share one strength (the
    # estimators' default): one (1,) value, no per-entry read of a lam table
    lam = per_feature_l2("l2", 1e-4, None, n_features).astype(dt)
    code = LOSS_CODES["squared"]
    order = rng.permutation(n_rows)[:min(epoch_rows, n_rows)].astype(np.int64)
    lens = (indptr[1:] - indptr[:-1])
    epoch_nnz = int(lens[order].sum())
    thread_list = sorted({1, int(threads)})
    w0 = dt(float(np.mean(y)))
    res = {"n_rows": n_rows, "nnz": nnz, "n_features": n_features, "epoch_rows": int(order.size),
           "epoch_nnz": epoch_nnz, "batch_size": batch_size, "threads": int(threads),
           "repeats": repeats, "kernels": [], "breakdown": [],
           "numba_threading_layer": None}
    for k in ks:
        P0 = np.zeros((n_features, 1 + k), dtype=dt)
        P0[:, 1:] = rng.normal(0.0, 0.05, (n_features, k)).astype(dt)
        P = P0.copy()
        M = np.zeros_like(P)
        S = np.zeros_like(P)
        out = np.empty(n_rows, dtype=dt)
        cnt = np.zeros(n_features, dtype=np.int64)
        n_b = -(-order.size // batch_size)
        bl = np.zeros(n_b)
        bw = np.zeros(n_b)
        bstate = np.array([float(w0), 0.0, 0.0])
        L = np.empty(order.size)

        def reset():
            np.copyto(P, P0)
            M[...] = 0
            S[...] = 0
            bstate[...] = (float(w0), 0.0, 0.0)

        def predict():
            cpu.predict_csr((indptr, indices, data), w0, P, out)

        def adam():
            cpu.adam_epoch((indptr, indices, data), y, sw, order, batch_size, code, (P, M, S),
                           bstate, 0, ADAM, (lam, lam), (bl, bw))

        def sgd(nt):
            cpu.sgd_epoch((indptr, indices, data), y, sw, order, nt, code, P, bstate, 1e-3,
                          (lam, lam), L)

        # warm JIT on a few rows
        small = order[:min(512, order.size)]
        # (one row would take predict_csr's serial twin: warm the parallel kernel timed below)
        predict_parallel((indptr[:2], indices, data), w0, P, out[:1])
        cpu.adam_epoch((indptr, indices, data), y, sw, small, batch_size, code, (P, M, S), bstate,
                       0, ADAM, (lam, lam), (bl, bw))
        cpu.sgd_epoch((indptr, indices, data), y, sw, small, 1, code, P, bstate, 1e-3, (lam, lam), L)
        T = np.ascontiguousarray(P0[:, 1:])  # the ceiling gathers the k-wide V rows
        for nt in thread_list:
            numba.set_num_threads(nt)
            predict()
            s, all_s, ceil_s = _interleaved(predict, T, indptr, indices, out, repeats)
            res["kernels"].append({"kernel": "predict_csr", "k": k, "threads": nt, "nnz": nnz,
                                   "time_s": s, "times_s": all_s, "nnz_k_per_s": nnz * k / s,
                                   "ceiling_nnz_k_per_s": nnz * k / ceil_s})
            s, all_s = median_time(adam, repeats, setup=reset)
            res["kernels"].append({"kernel": "adam_epoch", "k": k, "threads": nt,
                                   "nnz": epoch_nnz, "time_s": s, "times_s": all_s,
                                   "nnz_k_per_s": epoch_nnz * k / s})
            s, all_s, bound_s = _sgd_and_bound(lambda: sgd(nt), reset, indptr, indices, order,
                                               T, nt, repeats)
            res["kernels"].append({"kernel": "sgd_epoch", "k": k, "threads": nt,
                                   "nnz": epoch_nnz, "time_s": s, "times_s": all_s,
                                   "nnz_k_per_s": epoch_nnz * k / s,
                                   "bound_nnz_k_per_s": epoch_nnz * k / bound_s})
            res["breakdown"].append(_breakdown(cpu, indptr, indices, data, y, sw, order, code,
                                               P, M, S, w0, lam, cnt, batch_size, k, nt,
                                               breakdown_batches))
        del P0, P, M, S
    numba.set_num_threads(int(threads))
    try:
        res["numba_threading_layer"] = numba.threading_layer()
    except Exception:  # noqa: BLE001
        pass
    res["parallel_launch_s"] = _launch_overhead(int(threads))
    return res


def _breakdown(cpu, indptr, indices, data, y, sw, order, code, P, M, S, w0, lam, cnt,
               batch_size, k, nt, n_batches):
    """Mean seconds per batch of each Adam stage, called one by one from Python."""
    dt = P.dtype
    nb = batch_size
    n_batches = max(1, min(n_batches, order.size // nb))
    yhat = np.empty(nb, dtype=dt)
    Q = np.empty((nb, k), dtype=dt)
    G = np.empty(nb, dtype=dt)
    Lb = np.empty(nb)
    lens = indptr[1:] - indptr[:-1]
    mx = int(max(lens[order[b * nb:(b + 1) * nb]].sum() for b in range(n_batches)))
    uniq = np.empty(mx, dtype=indices.dtype)
    starts = np.empty(mx + 1, dtype=np.int64)
    er = np.empty(mx, dtype=np.int32)
    ev = np.empty(mx, dtype=dt)
    sb = np.ones(nb, dtype=dt)
    # The same update with the batch's rows remapped to the first rows of
    # small tables (memory order, cache-resident): its arithmetic without
    # the misses of random rows.
    seq = np.arange(mx, dtype=indices.dtype)
    Ps = P[np.arange(mx) % P.shape[0]]
    Ms = np.zeros_like(Ps)
    Ss = np.zeros_like(Ps)
    t = np.zeros(5)
    n_unique = 0
    b_nnz = 0
    for b in range(n_batches + 1):
        rows = order[b * nb:(b + 1) * nb] if b else order[:nb]
        t0 = time.perf_counter()
        cpu.forward_batch((indptr, indices, data), y, sw, rows, code, w0, P, (yhat, Q, G, Lb))
        t1 = time.perf_counter()
        u = cpu.transpose_batch((indptr, indices, data), rows, cnt, (uniq, starts, er, ev))
        t2 = time.perf_counter()
        cpu.adam_update((uniq, starts, er, ev), u, (G, sb, Q), 1.0 / nb, (P, M, S),
                        ADAM, 1, (lam, lam))
        t3 = time.perf_counter()
        cpu.transpose_batch((indptr, indices, data), rows, cnt, (uniq, starts, er, ev))
        t4 = time.perf_counter()  # the transpose again, its rows now in cache
        cpu.adam_update((seq, starts, er, ev), u, (G, sb, Q), 1.0 / nb, (Ps, Ms, Ss),
                        ADAM, 1, (lam, lam))
        t5 = time.perf_counter()
        if b:  # batch 0 is a warm-up
            t += (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
            n_unique += u
            b_nnz += int(lens[rows].sum())
    t /= n_batches
    # what a call costs with nothing to do (Python dispatch, an empty region)
    none = order[:0]
    calls = np.zeros(2)
    for b in range(n_batches):
        t0 = time.perf_counter()
        cpu.transpose_batch((indptr, indices, data), none, cnt, (uniq, starts, er, ev))
        t1 = time.perf_counter()
        cpu.adam_update((seq, starts, er, ev), 0, (G, sb, Q), 1.0 / nb, (Ps, Ms, Ss),
                        ADAM, 1, (lam, lam))
        calls += (t1 - t0, time.perf_counter() - t1)
    calls /= n_batches
    return {"k": k, "threads": nt, "batches": n_batches, "batch_size": nb,
            "nnz_per_batch": b_nnz / n_batches, "unique_features_per_batch": n_unique / n_batches,
            "forward_batch_s": t[0], "transpose_batch_s": t[1], "adam_update_s": t[2],
            "transpose_cached_rows_s": t[3], "adam_update_cached_rows_s": t[4],
            "transpose_empty_call_s": calls[0], "adam_update_empty_call_s": calls[1]}


def main(argv=None):
    a = parse_tool_args(tool_parser(__doc__), argv)
    indptr, indices, data, y, n_features = load_arrays(a.data)
    return write_json(measure(indptr, indices, data, y, n_features, ks=a.k, threads=a.threads,
                              repeats=a.repeats, epoch_rows=a.epoch_rows,
                              batch_size=a.batch_size), a.out)


if __name__ == "__main__":
    sys.exit(main())
