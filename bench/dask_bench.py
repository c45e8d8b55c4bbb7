"""Distributed training on a local Dask cluster: 1 vs 2 worker processes,
modes sync and local, against single-machine Adam in the same run.

For each configuration: time per epoch, bytes Dask's comms wrote per epoch
(the byte counters of the TCP streams of the client's and the workers' Dask
connections, plus the workers' own transfer_outgoing_bytes_total), per-step
wall time split into slowest-worker compute, coordinator compute and the
rest (messaging, serialisation, scheduling: the overhead), and the test
RMSE. From the per-step bytes and overhead it projects epoch times at 10 and
100 workers (see docs/dask.md for the model).

    python -m bench.dask_bench              # scaled-down `large`, writes bench/results/
    python -m bench.dask_bench --quick      # smoke run

Every worker and the single-machine fit run Numba on 1 thread.
"""
import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

# one thread everywhere, as Dask's nannies give their workers (BLAS included:
# the initial intercept is a BLAS dot, whose rounding depends on its threads)
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def _stream_bytes(comms):
    tot = 0
    for c in comms:
        s = getattr(c, "stream", None)
        tot += getattr(s, "_total_write_index", 0) if s is not None else 0
    return tot


def _pool_comms(pool):
    out = []
    for group in (pool.available, pool.occupied):
        for comms in group.values():
            out.extend(comms)
    return out


def _worker_bytes(dask_worker):
    """Bytes this worker's Dask comms have written (replies to the client's
    actor calls, peer and scheduler traffic) and its task-data transfers."""
    return (_stream_bytes(list(dask_worker._comms)) + _stream_bytes(_pool_comms(dask_worker.rpc))
            + _stream_bytes([dask_worker.batched_stream.comm]
                            if getattr(dask_worker.batched_stream, "comm", None) else []),
            dask_worker.transfer_outgoing_bytes_total)


def comm_bytes(client):
    """(client-written, workers-written, workers' task-data transfer) bytes so far."""
    mine = _stream_bytes(_pool_comms(client.rpc))
    sc = getattr(client, "scheduler_comm", None)
    if sc is not None and getattr(sc, "comm", None) is not None:
        mine += _stream_bytes([sc.comm])
    per = client.run(_worker_bytes)
    return mine, sum(v[0] for v in per.values()), sum(v[1] for v in per.values())


class _Meter:
    """on_step hook: reads Dask's byte counters at the first synchronisation."""

    def __init__(self):
        self.start = None
        self.client = None

    def __call__(self, coord, step):
        if self.start is None:
            self.client = coord.client
            self.start = (comm_bytes(coord.client), coord.stats["steps"], time.perf_counter())


def load_data(rows, features, seed=0):
    from fmnumba import datasets as D
    d = D.make_fm_data(rows, D.large_field_sizes(features), random_state=seed)
    Xtr, Xte, ytr, yte = d.split(0.2, random_state=0)
    return Xtr.tocsr(), Xte.tocsr(), ytr, yte, d


def rmse(p, y):
    return float(np.sqrt(np.mean((np.asarray(p) - y) ** 2)))


def run_single(Xtr, ytr, Xte, yte, kw):
    from fmnumba import FMRegressor
    FMRegressor(**dict(kw, max_iter=1)).fit(Xtr[:5000], ytr[:5000])  # warm the JIT
    t0 = time.perf_counter()
    m = FMRegressor(**kw).fit(Xtr, ytr)
    wall = time.perf_counter() - t0
    ep = np.diff([0.0] + m.history_["time_s"])
    return m, {"config": "single machine", "workers": 0, "mode": "-", "fit_s": wall,
               "epoch_s": float(np.median(ep)), "rmse": rmse(m.predict(Xte), yte)}


def run_dask(client, n_workers, mode, Xtr, ytr, Xte, yte, kw, sync_every, chunks, ref):
    import dask.array as da
    from fmnumba.dask import DaskFMRegressor
    Xd = da.from_array(Xtr, chunks=(chunks, -1), asarray=False, name=False)
    yd = da.from_array(ytr, chunks=chunks, name=False)
    warm = DaskFMRegressor(**dict(kw, max_iter=1), mode=mode, sync_every=sync_every,
                           client=client)
    n_w = min(Xtr.shape[0], 20 * chunks // 10)
    warm.fit(da.from_array(Xtr[:n_w], chunks=(chunks // 10, -1), asarray=False, name=False),
             da.from_array(ytr[:n_w], chunks=chunks // 10, name=False))  # JIT on the workers
    m = DaskFMRegressor(**kw, mode=mode, sync_every=sync_every, client=client)
    meter = _Meter()
    m._on_step = meter
    t0 = time.perf_counter()
    m.fit(Xd, yd)
    wall = time.perf_counter() - t0
    end = comm_bytes(client)
    st = m.dask_stats_
    (c0, w0, x0), s0, _ = meter.start
    steps = st["steps"] - s0
    epochs = m.n_iter_
    byts = (end[0] - c0) + (end[1] - w0)
    ep = np.diff([0.0] + m.history_["time_s"])
    per_step = st["step_wall_s"] / st["steps"]
    worker = st["worker_s"] / st["steps"]
    coord = st["coord_s"] / st["steps"]
    row = {"config": f"{mode}, {n_workers} worker{'s' if n_workers > 1 else ''}",
           "workers": n_workers, "mode": mode, "shards": st["n_shards"], "fit_s": wall,
           "epoch_s": float(np.median(ep)), "setup_s": wall - m.history_["time_s"][-1],
           "steps_per_epoch": st["steps"] / epochs,
           "bytes_per_epoch": byts / steps * (st["steps"] / epochs),
           "bytes_per_step": byts / steps,
           "task_bytes_per_epoch": (end[2] - x0) / steps * (st["steps"] / epochs),
           "payload_bytes_per_step": (st["bytes_sent"] + st["bytes_received"]) / st["steps"],
           "step_ms": 1e3 * per_step, "worker_ms": 1e3 * worker, "coord_ms": 1e3 * coord,
           "overhead_ms": 1e3 * (per_step - worker - coord),
           "rmse": rmse(m.to_local().predict(Xte), yte)}
    if mode == "sync" and st["n_shards"] == 1:
        row["bit_identical"] = bool(np.array_equal(m._state.P, ref._state.P)
                                    and np.array_equal(m._state.bias_state, ref._state.bias_state))
    return row


def project(rows, n_train, batch_size, sync_every, bandwidth=1.25e9):
    """Epoch time at W workers from the measured 1- and 2-worker steps:
    per-step bytes and overhead are fitted as a + b·W (two points), compute
    is the 1-worker compute divided by W; a step costs compute + coordinator
    + overhead + bytes / bandwidth (default 10 Gbit/s)."""
    out = []
    for mode in ("sync", "local"):
        r = {x["workers"]: x for x in rows if x["mode"] == mode}
        if 1 not in r or 2 not in r:
            continue
        b1, b2 = r[1]["bytes_per_step"], r[2]["bytes_per_step"]
        o1, o2 = r[1]["overhead_ms"] + r[1]["coord_ms"], r[2]["overhead_ms"] + r[2]["coord_ms"]
        comp = r[1]["worker_ms"]
        steps = r[1]["steps_per_epoch"]
        for w in (1, 2, 10, 100):
            byts = b1 + (b2 - b1) * (w - 1)
            over = o1 + (o2 - o1) * (w - 1)
            step = comp / w + over + 1e3 * byts / bandwidth
            out.append({"mode": mode, "workers": w, "bytes_per_step": byts,
                        "overhead_ms": over, "compute_ms": comp / w, "step_ms": step,
                        "epoch_s": step * steps / 1e3})
    return out


def write(rows, proj, meta, stem):
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows,
                                                      "projection": proj}, indent=1))
    ref = next(r for r in rows if r["workers"] == 0)
    lines = [f"# Dask: 1 vs 2 local workers ({meta['date']})", "",
             f"Data: {meta['data']}. Model: {meta['model']}. Machine: {meta['machine']}; "
             "every worker and the single-machine fit run Numba on 1 thread (the workers, "
             "the coordinator and the other users of the machine share its cores; load average "
             f"at the end of the run {meta['load_average'][0]:.1f} / {meta['load_average'][1]:.1f} "
             "/ {:.1f} over 1 / 5 / 15 minutes).".format(meta["load_average"][2]), "",
             "| configuration | shards | s / epoch | setup s | steps / epoch | MB / epoch "
             "(Dask comms) | per step: wall ms | worker ms | coordinator ms | overhead ms "
             "| test RMSE | vs single |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["workers"] == 0:
            lines.append(f"| {r['config']} | - | {r['epoch_s']:.2f} | - | - | - | - | - | - | - "
                         f"| {r['rmse']:.4f} | 1.000 |")
            continue
        lines.append(
            f"| {r['config']} | {r['shards']} | {r['epoch_s']:.2f} | {r['setup_s']:.1f} | "
            f"{r['steps_per_epoch']:.0f} | {r['bytes_per_epoch'] / 1e6:.1f} | "
            f"{r['step_ms']:.2f} | {r['worker_ms']:.2f} | {r['coord_ms']:.2f} | "
            f"{r['overhead_ms']:.2f} | {r['rmse']:.4f} | {r['rmse'] / ref['rmse']:.3f} |")
    bit = [r for r in rows if "bit_identical" in r]
    lines += ["", "A step is one synchronisation: a global mini-batch in sync mode, "
              f"sync_every = {meta['sync_every']} mini-batches per worker in local mode. "
              "MB / epoch: bytes written by the TCP streams of the client's and the "
              "workers' Dask connections during the epochs (setup excluded); the workers' "
              "task-data transfers (transfer_outgoing_bytes_total) during training were "
              + ", ".join(f"{r['task_bytes_per_epoch'] / 1e3:.1f} kB" for r in rows
                          if r["workers"]) + " per epoch. fmnumba's own count of the array "
              "payload it sends per step: "
              + ", ".join(f"{r['config']} {r['payload_bytes_per_step'] / 1e3:.1f} kB"
                          for r in rows if r["workers"]) + ". Overhead = step wall time "
              "minus the slowest worker's compute and the coordinator's compute."]
    if bit:
        lines += ["", "Sync mode on one worker reproduces the single-machine Adam fit bit for "
                  f"bit: {'yes' if all(r['bit_identical'] for r in bit) else 'NO'} "
                  "(parameters and intercept compared with numpy.array_equal)."]
    lines += ["", "## Projection to more workers", "",
              "Per-step bytes and overhead fitted as a + b·W through the 1- and 2-worker "
              "measurements; compute = 1-worker compute / W; a step costs compute + "
              "overhead + bytes / (10 Gbit/s). Same data and global batch.", "",
              "| mode | workers | kB / step | overhead ms | compute ms | step ms | s / epoch |",
              "|---|---|---|---|---|---|---|"]
    for p in proj:
        lines.append(f"| {p['mode']} | {p['workers']} | {p['bytes_per_step'] / 1e3:.1f} | "
                     f"{p['overhead_ms']:.2f} | {p['compute_ms']:.3f} | {p['step_ms']:.2f} | "
                     f"{p['epoch_s']:.1f} |")
    lines += ["", f"Command: `{meta['command']}`"]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    names = [r["config"] for r in rows]
    ax[0].bar(names, [r["epoch_s"] for r in rows], color="#4477aa")
    ax[0].set_ylabel("s / epoch")
    dr = [r for r in rows if r["workers"]]
    ax[1].bar([r["config"] for r in dr], [r["bytes_per_epoch"] / 1e6 for r in dr],
              color="#aa7744")
    ax[1].set_ylabel("MB / epoch (Dask comms)")
    ax[2].bar([r["config"] for r in dr], [r["worker_ms"] for r in dr], label="worker compute")
    ax[2].bar([r["config"] for r in dr], [r["coord_ms"] for r in dr],
              bottom=[r["worker_ms"] for r in dr], label="coordinator")
    ax[2].bar([r["config"] for r in dr], [r["overhead_ms"] for r in dr],
              bottom=[r["worker_ms"] + r["coord_ms"] for r in dr], label="overhead")
    ax[2].set_ylabel("ms / step")
    ax[2].legend(fontsize=7)
    for a in ax:
        a.tick_params(axis="x", rotation=30, labelsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}.png", dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--features", type=int, default=200_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--n-factors", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--sync-every", type=int, default=16)
    p.add_argument("--chunks", type=int, default=20_000, help="rows per partition")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None, help="results file stem (default dask-<date>)")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.features, args.epochs, args.chunks = 20_000, 20_000, 2, 4_000
    from distributed import Client, LocalCluster
    Xtr, Xte, ytr, yte, d = load_data(args.rows, args.features)
    kw = dict(n_factors=args.n_factors, max_iter=args.epochs, batch_size=args.batch_size,
              random_state=0, n_jobs=1)
    log(f"data: {Xtr.shape} train, {Xtr.nnz / Xtr.shape[0]:.0f} nnz/row")
    ref, row = run_single(Xtr, ytr, Xte, yte, kw)
    rows = [row]
    log(row)
    for n_workers in (1, 2):
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None,
                          env={"NUMBA_NUM_THREADS": "1"}) as cluster, Client(cluster) as client:
            for mode in ("sync", "local"):
                r = run_dask(client, n_workers, mode, Xtr, ytr, Xte, yte, kw,
                             args.sync_every, args.chunks, ref)
                log(r)
                rows.append(r)
    proj = project(rows, Xtr.shape[0], args.batch_size, args.sync_every)
    meta = {"date": date.today().isoformat(), "load_average": os.getloadavg(),
            "data": f"make_fm_data({args.rows}, large_field_sizes({args.features})) 80/20, "
                    f"{Xtr.nnz / Xtr.shape[0]:.0f} nnz/row, {args.chunks}-row partitions",
            "model": f"k={args.n_factors}, batch_size={args.batch_size}, {args.epochs} epochs, "
                     f"Adam defaults, sync_every={args.sync_every} (local)",
            "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
            "sync_every": args.sync_every,
            "command": "python -m bench.dask_bench " + " ".join(argv or sys.argv[1:])}
    stem = args.out or f"dask-{meta['date']}" + ("-quick" if args.quick else "")
    write(rows, proj, meta, stem)
    log(f"wrote {RESULTS / stem}.md")


if __name__ == "__main__":
    main()
