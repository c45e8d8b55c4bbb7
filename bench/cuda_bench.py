"""Time fmnumba's CUDA kernels on a real GPU and print JSON.

    python bench/cuda_bench.py [--rows 1000000] [--k 8 64] [--cpu] [--sweep]

Data: fmnumba.datasets.make_fm_data(rows, large_field_sizes()) (1M features,
21 nnz per row, Zipf-like popularity), float32. For each k it times, after a
warm-up call (JIT compile excluded):

* predict_device: ŷ for all rows with X and P already on the device
* predict_csr: the same through the host-array API (includes the copy back)
* adam_epoch: one epoch of lazy Adam (batch_size 256 and 4096), host API as
  the training loop calls it, inside session() (no parameter upload)
* sgd_epoch: one Hogwild epoch (n_chunks > 1)
* gather_ceiling: a kernel that only gathers and sums the k-wide rows of V
  per CSR row (the irreducible part of predict), in nnz·k/s

--cpu adds the CPU kernels' times for the same calls (speed-up ratios in one
run); --sweep times Adam epochs on CPU and GPU at growing row counts, to
set backend.AUTO_CUDA_MIN_NNZ from the crossover. Refuses to run under the
CUDA simulator: its times mean nothing.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np


def _need_gpu():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        sys.exit("cuda_bench: NUMBA_ENABLE_CUDASIM=1 is set; the simulator's times mean nothing.")
    from numba import cuda
    if not cuda.is_available():
        sys.exit("cuda_bench: no usable CUDA GPU (pip install 'fmnumba[cuda12]' or [cuda13]).")
    return cuda


def _time(fn, repeat=3, sync=None):
    fn()                                  # warm-up / compile
    if sync:
        sync()
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cpu", action="store_true", help="also time the CPU kernels")
    ap.add_argument("--sweep", action="store_true", help="CPU/GPU crossover for device='auto'")
    args = ap.parse_args(argv)
    cuda = _need_gpu()

    import fmnumba.cpu as CPU
    import fmnumba.gpu as GPU
    from fmnumba.gpu._device import TPB, blocks, data_to_device, lanes_for
    from fmnumba.gpu.predict import predict_device
    from fmnumba.datasets import large_field_sizes, make_fm_data

    t = time.perf_counter()
    d = make_fm_data(args.rows, large_field_sizes(), random_state=0)
    X, y = d.X, d.y.astype(np.float32)
    Xt = (X.indptr, X.indices, X.data)
    gen_s = time.perf_counter() - t
    n, p = X.shape
    dev = cuda.get_current_device()
    res = {"device": dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name),
           "compute_capability": list(dev.compute_capability),
           "host": platform.node(), "rows": n, "features": p, "nnz": int(X.nnz),
           "nnz_per_row": X.nnz / n, "dtype": "float32", "data_gen_s": gen_s,
           "threads_per_block": TPB, "results": []}
    sync = cuda.synchronize
    sw = np.ones(n, np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(n).astype(np.int64)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _cuda_ceiling import gather_sum as ceiling
    dX = (data_to_device(X.indptr), data_to_device(X.indices), data_to_device(X.data))
    for k in args.k:
        P = np.zeros((p, 1 + k), np.float32)
        P[:, 1:] = rng.normal(0, 0.05, (p, k))
        lw = np.full(p, 1e-4, np.float32)
        lv = np.full(p, 1e-4, np.float32)
        row = {"k": k, "lanes_per_row": lanes_for(k)}
        dP = cuda.to_device(P)
        s = _time(lambda: predict_device(dX, 3.5, dP, n), args.repeat, sync)
        row["predict_device_s"] = s
        row["predict_nnzk_per_s"] = X.nnz * k / s
        out = np.empty(n, np.float32)
        row["predict_csr_s"] = _time(
            lambda: GPU.predict_csr(Xt, np.float32(3.5), P, out),
            args.repeat, sync)
        dV = cuda.to_device(np.ascontiguousarray(P[:, 1:]))
        dout = cuda.device_array(n, np.float32)
        lanes = lanes_for(k - 1)
        s = _time(lambda: ceiling[blocks(n * lanes), TPB](dX[0], dX[1], dV, lanes, dout),
                  args.repeat, sync)
        row["gather_ceiling_s"] = s
        row["gather_ceiling_nnzk_per_s"] = X.nnz * k / s
        if args.cpu:
            row["cpu_predict_s"] = _time(
                lambda: CPU.predict_csr(Xt, np.float32(3.5), P, out),
                args.repeat)

        for bs in (256, 4096):
            nbat = -(-n // bs)

            def adam(kern):
                Pc, M, S = P.copy(), np.zeros_like(P), np.zeros_like(P)
                b = np.array([3.5, 0.0, 0.0])
                bl, bw = np.zeros(nbat), np.zeros(nbat)

                def run():
                    kern.adam_epoch(Xt, y, sw, order, bs, 0, (Pc, M, S), b, 0,
                                    (1e-3, 0.9, 0.999, 1e-8, False), (lw, lv), (bl, bw))
                return run
            with GPU.session():
                row[f"adam_epoch_bs{bs}_s"] = _time(adam(GPU), 1, sync)
            if args.cpu:
                row[f"cpu_adam_epoch_bs{bs}_s"] = _time(adam(CPU), 1)

        def sgd(kern, chunks):
            Pc, b, L = P.copy(), np.array([3.5, 0.0, 0.0]), np.empty(n)
            return lambda: kern.sgd_epoch(Xt, y, sw, order, chunks, 0, Pc, b, 1e-3, (lw, lv), L)
        with GPU.session():
            row["sgd_epoch_hogwild_s"] = _time(sgd(GPU, 2), 1, sync)
        if args.cpu:
            import numba
            row["cpu_sgd_epoch_s"] = _time(sgd(CPU, numba.get_num_threads()), 1)
        res["results"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    if args.sweep:
        sweep = []
        k = 8
        for m in (10_000, 30_000, 100_000, 300_000, 1_000_000):
            if m > n:
                break
            Xs, ys = X[:m], y[:m]
            Ps = np.zeros((p, 1 + k), np.float32)
            Ps[:, 1:] = rng.normal(0, 0.05, (p, k))
            o = rng.permutation(m).astype(np.int64)
            nbat = -(-m // 256)
            entry = {"rows": m, "nnz": int(Xs.nnz)}
            for name, kern in (("cpu", CPU), ("cuda", GPU)):
                Pc, M, S = Ps.copy(), np.zeros_like(Ps), np.zeros_like(Ps)
                b = np.array([3.5, 0.0, 0.0])
                l2 = (np.full(p, 1e-4, np.float32), np.full(p, 1e-4, np.float32))
                args_ = ((Xs.indptr, Xs.indices, Xs.data), ys, np.ones(m, np.float32), o, 256, 0,
                         (Pc, M, S), b, 0, (1e-3, 0.9, 0.999, 1e-8, False), l2,
                         (np.zeros(nbat), np.zeros(nbat)))
                # no session: the per-epoch parameter upload is part of the cost
                entry[f"{name}_adam_epoch_s"] = _time(lambda: kern.adam_epoch(*args_), 1,
                                                      sync if name == "cuda" else None)
            sweep.append(entry)
            print(json.dumps(entry), file=sys.stderr, flush=True)
        res["auto_sweep_k8_bs256"] = sweep
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
