"""Parameter-table layout: predict, lazy-Adam epoch and SGD epoch per layout.

Three layouts of the same parameters (and Adam moments), kernels from
bench/layout_kernels.py (one description, per-layout row accessors):

* ``wv``: today's P = [w | V], rows of 1 + k values (straddle cache lines
  unless (1 + k)·itemsize divides 64);
* ``split``: w in its own vector beside a k-wide V (two random reads per entry);
* ``padded``: [w | V | 0…] rows padded to a multiple of 64 bytes, 64-byte
  aligned (one whole cache line per 16 float32); the same compiled code as
  ``wv`` (k is explicit), on a wider table.

On the large-shaped synthetic set (1M features, Zipf field values, 21 nnz
per row), float32, int32 indices, for each k at 1 thread and at --threads:
predict over --predict-rows rows, one Adam epoch (batch --batch-size) and one
SGD epoch (one chunk per thread) over --epoch-rows shuffled rows. All
layouts, and fmnumba's own kernels on the [w | V] table (the anchor: bench
``wv`` / fmnumba near 1 says the bench kernels are representative), are
timed in turn in one process, median of --repeats, after a warm-up call;
the whole measurement is repeated --runs times to show the spread.

    NUMBA_NUM_THREADS=2 python -m bench.layout --runs 2 --report bench/results

``--mode gather`` keeps the older measurement of bare prefetching gathers.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.protocol import write_json
from bench.timing import in_turn, load_average

KERNELS = ("predict", "adam", "sgd")
KERNEL_NAMES = {"predict": "predict", "adam": "Adam epoch", "sgd": "SGD epoch"}
ADAM = (1e-3, 0.9, 0.999, 1e-8, False)
LAM = 1e-4
NOISE_FLOOR = 0.03  # differences below 3% are never called a win


def _gather_kernel():
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


def measure_gather(indptr, indices, n_features, ks=(4, 8, 16, 32, 64), threads=2, repeats=5,
                   seed=0):
    """Bare prefetching gathers of w_j and v_j per layout (the read side of predict)."""
    import numba

    from bench.layout_kernels import to_layout
    gather = _gather_kernel()
    rng = np.random.default_rng(seed)
    n = indptr.shape[0] - 1
    nnz = int(indptr[-1])
    out = np.empty(n, dtype=np.float32)
    res = {"n_rows": n, "nnz": nnz, "n_features": n_features, "rows": []}
    for k in ks:
        wv = rng.normal(0, 0.05, (n_features, 1 + k)).astype(np.float32)
        w, V = to_layout(wv, "split")
        pad = to_layout(wv, "padded")[1]
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


def _compile(layouts, warm):
    """Seconds of each layout's first calls (compiling, or loading Numba's
    cache; padded reuses wv's code), running warm(layout)."""
    out = {}
    for layout in layouts:
        t0 = time.perf_counter()
        warm(layout)
        out[layout] = time.perf_counter() - t0
    return out


def measure_kernels(indptr, indices, data, y, n_features, ks=(4, 8, 16, 32, 64), threads=2,
                    repeats=5, predict_rows=500_000, epoch_rows=200_000, batch_size=256, seed=0,
                    log=print):
    """Times of predict, an Adam epoch and an SGD epoch per layout, k and
    thread count (float32), with fmnumba's kernels on the [w | V] table
    timed in the same turns. Returns a JSON-ready dict with one entry per
    (k, threads, kernel, layout) in "cells" (layout "fmnumba" for the anchor)."""
    import numba

    from bench import layout_kernels as LK
    from fmnumba import cpu
    from fmnumba.losses import LOSS_CODES

    rng = np.random.default_rng(seed)
    dt = np.float32
    n_rows = indptr.shape[0] - 1
    y = y.astype(dt)
    sw = np.ones(n_rows, dtype=dt)
    code = LOSS_CODES["squared"]
    n_pred = min(predict_rows, n_rows)
    order = rng.permutation(n_rows)[:min(epoch_rows, n_rows)].astype(np.int64)
    lens = indptr[1:] - indptr[:-1]
    X = (indptr, indices, data)
    w0 = dt(float(np.mean(y)))
    lam = np.array([LAM], dtype=dt)
    n_b = -(-order.size // batch_size)
    res = {"n_rows": n_rows, "n_features": int(n_features), "dtype": "float32",
           "predict_rows": n_pred, "predict_nnz": int(indptr[n_pred]),
           "epoch_rows": int(order.size), "epoch_nnz": int(lens[order].sum()),
           "batch_size": batch_size, "repeats": repeats, "threads": sorted({1, int(threads)}),
           "cells": [], "memory": [], "compile_s": None}
    for k in ks:
        P = np.zeros((n_features, 1 + k), dtype=dt)
        P[:, 1:] = rng.normal(0.0, 0.05, (n_features, k)).astype(dt)
        tabs = {}
        for layout in LK.LAYOUTS:
            PW, PV = LK.to_layout(P, layout)  # wv: P itself, shared with fmnumba's kernels
            MW, MV = LK.to_layout(np.zeros_like(P), layout)
            SW, SV = LK.to_layout(np.zeros_like(P), layout)
            tabs[layout] = (PW, PV, MW, MV, SW, SV)
            res["memory"].append({"k": k, "layout": layout,
                                  "bytes_per_feature": 3 * LK.bytes_per_feature(layout, k, dt),
                                  "allocated_bytes_per_feature":
                                      sum(a.nbytes for a in tabs[layout]) / n_features})
        M, S = tabs["wv"][3], tabs["wv"][5]
        out = np.empty(n_pred, dtype=dt)
        icp = np.array([float(w0), 0.0, 0.0])
        bl, bw = np.zeros(n_b), np.zeros(n_b)
        L = np.empty(order.size)
        cnt = np.zeros(n_features, dtype=np.int64)
        Xp = (indptr[:n_pred + 1], indices, data)

        def real(kernel, nt):
            if kernel == "predict":
                return lambda: cpu.predict_csr(Xp, w0, P, out)
            if kernel == "adam":
                return lambda: cpu.adam_epoch(X, y, sw, order, batch_size, code, (P, M, S), icp,
                                              0, ADAM, (lam, lam), (bl, bw))
            return lambda: cpu.sgd_epoch(X, y, sw, order, nt, code, P, icp, 1e-3, (lam, lam), L)

        def bench(kernel, layout, nt, rows=order, xp=Xp):
            t = tabs[layout]
            if kernel == "predict":
                return lambda: LK.predict(xp, w0, t[0], t[1], k, out)
            if kernel == "adam":
                return lambda: LK.adam_epoch(X, y, rows, batch_size, code, t, k, icp, 0, ADAM,
                                             (dt(LAM), dt(LAM)), bl, cnt)
            return lambda: LK.sgd_epoch(X, y, rows, nt, code, t[0], t[1], k, icp, 1e-3,
                                        (dt(LAM), dt(LAM)), L)

        if res["compile_s"] is None:  # first k: the compiling calls, on a few rows
            def warm(layout):
                for kern in KERNELS:
                    bench(kern, layout, 1, order[:512], (indptr[:2], indices, data))()
            res["compile_s"] = _compile(LK.LAYOUTS, warm)
            log("compile s: " + ", ".join(f"{a} {b:.1f}" for a, b in res["compile_s"].items()))
        for nt in res["threads"]:
            numba.set_num_threads(nt)
            steps = []
            for kern in KERNELS:
                steps.append((kern, "fmnumba", real(kern, nt)))
                steps += [(kern, layout, bench(kern, layout, nt)) for layout in LK.LAYOUTS]
            for _, _, f in steps:  # warm: first touches, and fmnumba's cached compile
                f()
            times = in_turn([(None, f) for _, _, f in steps], repeats)
            base = {}
            for (kern, layout, _), ts in zip(steps, times):
                if layout == "wv":
                    base[kern] = np.asarray(ts)
            for (kern, layout, _), ts in zip(steps, times):
                ts = np.asarray(ts)
                pair = ts / base[kern]  # per-repeat ratios: both timed in the same turn
                res["cells"].append({
                    "k": k, "threads": nt, "kernel": kern, "layout": layout,
                    "time_s": float(np.median(ts)), "times_s": [float(t) for t in ts],
                    "ratio_to_wv": float(np.median(ts) / np.median(base[kern])),
                    "ratio_iqr": [float(np.percentile(pair, 25)), float(np.percentile(pair, 75))]})
            log(f"k={k:3d} threads={nt}: " + "; ".join(
                f"{c['kernel']} " + " ".join(f"{c2['layout']} {c2['time_s'] * 1e3:.0f}"
                                             for c2 in res["cells"][-len(steps):]
                                             if c2["kernel"] == c["kernel"])
                for c in res["cells"][-len(steps):] if c["layout"] == "fmnumba") + " (ms)")
        del P, tabs, M, S
    numba.set_num_threads(int(threads))
    return res


# --- the report -------------------------------------------------------------

def _cells(runs):
    """{(k, threads, kernel, layout): [cell of each run]}"""
    out = {}
    for run in runs:
        for c in run["cells"]:
            out.setdefault((c["k"], c["threads"], c["kernel"], c["layout"]), []).append(c)
    return out


def _band(cs):
    """Noise band of one (k, threads, kernel, layout): the widest half
    interquartile range of its per-repeat ratios over the runs, the spread of
    its median ratios between runs, or NOISE_FLOOR, whichever is largest."""
    half_iqr = max((c["ratio_iqr"][1] - c["ratio_iqr"][0]) / 2 for c in cs)
    r = [c["ratio_to_wv"] for c in cs]
    return max(NOISE_FLOOR, half_iqr, max(r) - min(r))


def verdicts(runs):
    """{(k, threads, kernel, layout): (mean ratio over runs, band, verdict)}
    for split and padded, verdict "faster", "slower" or "noise": faster when
    every run's ratio is below 1 − band, slower when every one is above 1 + band."""
    out = {}
    for key, cs in _cells(runs).items():
        if key[3] in ("wv", "fmnumba"):
            continue
        r = [c["ratio_to_wv"] for c in cs]
        b = _band(cs)
        v = "faster" if max(r) < 1 - b else "slower" if min(r) > 1 + b else "noise"
        out[key] = (float(np.mean(r)), b, v)
    return out


def decide(runs, memory):
    """(per-k summary dicts, paragraph): the layout to use at each k.

    A layout is preferred over [w | V] at a k only if it is faster beyond the
    noise band in at least one of the two epochs at both thread counts, and
    slower beyond the band nowhere (predict included)."""
    V = verdicts(runs)
    ks = sorted({k[0] for k in V})
    threads = sorted({k[1] for k in V})
    mem = {(m["k"], m["layout"]): m["bytes_per_feature"] for m in memory}
    per_k, sentences = [], []
    for k in ks:
        info = {"k": k, "choice": "wv", "layouts": {}}
        for layout in ("split", "padded"):
            cells = {(th, kern): V[(k, th, kern, layout)] for th in threads for kern in KERNELS}
            slower = [f"{KERNEL_NAMES[kern]} at {th} thread{'s' * (th > 1)} "
                      f"({r:.2f}x)" for (th, kern), (r, b, v) in cells.items() if v == "slower"]
            faster = [f"{KERNEL_NAMES[kern]} at {th} thread{'s' * (th > 1)} "
                      f"({r:.2f}x)" for (th, kern), (r, b, v) in cells.items() if v == "faster"]
            epoch_win = any(all(cells[(th, kern)][2] == "faster" for th in threads)
                            for kern in ("adam", "sgd"))
            gm = float(np.exp(np.mean([np.log(r) for r, _, _ in cells.values()])))
            info["layouts"][layout] = {"faster": faster, "slower": slower, "geomean": gm,
                                       "adoptable": epoch_win and not slower,
                                       "memory_ratio": mem[(k, layout)] / mem[(k, "wv")]}
        ok = [lay for lay in ("split", "padded") if info["layouts"][lay]["adoptable"]]
        if ok:
            info["choice"] = min(ok, key=lambda lay: info["layouts"][lay]["geomean"])
        per_k.append(info)
        parts = []
        for layout, d in info["layouts"].items():
            name = "w beside V" if layout == "split" else "padded"
            if d["faster"] or d["slower"]:
                s = f"{name} (geometric mean {d['geomean']:.2f}x of [w | V]"
                s += f", {d['memory_ratio']:.2f}x the memory)"
                if d["faster"]:
                    s += " is faster for " + ", ".join(d["faster"])
                if d["slower"]:
                    s += " and" if d["faster"] else " is"
                    s += " slower for " + ", ".join(d["slower"])
            else:
                s = (f"{name} is within the noise everywhere (geometric mean "
                     f"{d['geomean']:.2f}x, {d['memory_ratio']:.2f}x the memory)")
            parts.append(s)
        choice = {"wv": "[w | V] stays", "split": "w beside V", "padded": "padded rows"}
        sentences.append(f"k={k}: {choice[info['choice']]}; " + "; ".join(parts) + ".")
    for layout, name in (("split", "w beside V"), ("padded", "padded")):
        key, (r, b, v) = min(((key, x) for key, x in V.items() if key[3] == layout),
                             key=lambda kx: kx[1][0])
        k, th, kern, _ = key
        sentences.append(f"{name}'s best cell: {KERNEL_NAMES[kern]} at k={k}, {th} "
                         f"thread{'s' * (th > 1)}, {r:.2f}x (noise band ±{b:.0%}: {v}).")
    chosen = {d["k"]: d["choice"] for d in per_k}
    if all(c == "wv" for c in chosen.values()):
        head = ("Decision: keep [w | V] at every k. Neither alternative is faster beyond the "
                "run-to-run noise in an epoch at both thread counts without being slower "
                "elsewhere, and padding costs memory in P, M and S alike.")
    else:
        wins = ", ".join(f"k={k}: {c}" for k, c in chosen.items() if c != "wv")
        head = (f"Decision: a layout other than [w | V] is preferred at {wins} "
                "(faster beyond the noise in an epoch at both thread counts and slower nowhere); "
                "[w | V] stays at the other k. Weigh it against the memory ratio given and "
                "the cost of a second layout in every kernel, its GPU twin and the model file.")
    return per_k, head + "\n\n" + "\n".join(f"- {s}" for s in sentences)


def _fmt_ratio(cs):
    return " / ".join(f"{c['ratio_to_wv']:.2f}" for c in cs)


def report_md(res, png_name=None):
    """The markdown page of a kernels-mode result (all runs)."""
    runs = res["runs"]
    r0 = runs[0]
    C = _cells(runs)
    from bench.report import md_table
    n = len(runs)
    L = ["# Parameter layout: predict, Adam epoch and SGD epoch per layout", "",
         f"`{res['command']}` ({res['numba_threads_env']}). The large-shaped synthetic set: "
         f"{r0['n_rows']:,} rows, {r0['n_features']:,} features, float32, int32 indices; "
         f"predict over the first {r0['predict_rows']:,} rows ({r0['predict_nnz']:,} nnz), "
         f"epochs over {r0['epoch_rows']:,} shuffled rows ({r0['epoch_nnz']:,} nnz), Adam batch "
         f"{r0['batch_size']}, SGD one chunk per thread. Layouts and fmnumba's own kernels timed "
         f"in turn in one process, median of {r0['repeats']}, after a warm-up call; the whole "
         f"measurement ran {n} time{'s' * (n > 1)} in a row (figures below: run 1 / run 2 ...).",
         f"Load average at start {res['loadavg_start']}, at end {res['loadavg_end']}.", "",
         "Layouts: `wv` = [w | V] (today's), `split` = w beside a k-wide V, `padded` = [w | V] "
         "rows padded to a multiple of 64 bytes, 64-byte aligned. Kernels: "
         "bench/layout_kernels.py, one description with per-layout row accessors, the same "
         "algorithms, loop structure and prefetching as fmnumba.cpu (unit sample weights, one L2 "
         "value). Ratios < 1: faster than `wv`.", "",
         "## Ratios to [w | V]", ""]
    ks = sorted({c["k"] for c in r0["cells"]})
    rows = []
    for k in ks:
        for th in r0["threads"]:
            row = [k, th]
            for kern in KERNELS:
                row.append(" / ".join(f"{c['time_s'] * 1e3:.0f}" for c in C[(k, th, kern, "wv")]))
                row += [_fmt_ratio(C[(k, th, kern, lay)]) for lay in ("split", "padded")]
            rows.append(row)
    hdr = ["k", "threads"]
    for kern in KERNELS:
        hdr += [f"{KERNEL_NAMES[kern]} wv ms", "split", "padded"]
    L += [md_table(hdr, rows), ""]
    mem = {(m["k"], m["layout"]): m["bytes_per_feature"] for m in r0["memory"]}
    L += ["## Memory: bytes per feature of P + M + S (float32)", "",
          md_table(["k", "wv", "split", "padded", "padded / wv"],
                   [[k, mem[(k, "wv")], mem[(k, "split")], mem[(k, "padded")],
                     f"{mem[(k, 'padded')] / mem[(k, 'wv')]:.2f}"] for k in ks]), ""]
    rows = []
    for k in ks:
        for th in r0["threads"]:
            row = [k, th]
            for kern in KERNELS:
                row.append(" / ".join(f"{b['time_s'] / a['time_s']:.2f}" for a, b in
                                      zip(C[(k, th, kern, "fmnumba")], C[(k, th, kern, "wv")])))
            rows.append(row)
    L += ["## Anchor: bench `wv` / fmnumba's kernel on the same table", "",
          "fmnumba.cpu.predict_csr, adam_epoch and sgd_epoch on the [w | V] table, timed in the "
          "same turns. Near 1: the bench kernels stand for fmnumba's (the Adam and SGD bench "
          "kernels skip the per-row sample weight reads).", "",
          md_table(["k", "threads"] + [KERNEL_NAMES[k] for k in KERNELS], rows), ""]
    spread = []
    for key, cs in C.items():
        if key[3] in ("split", "padded"):
            spread.append(_band(cs))
    L += ["## Spread", "",
          f"Noise band per cell: the largest of half the interquartile range of the per-repeat "
          f"ratios (each layout and `wv` timed in the same turn), the difference between the "
          f"runs' ratios, and {NOISE_FLOOR:.0%}. Over all cells: median "
          f"{np.median(spread):.1%}, largest {max(spread):.1%}.", ""]
    comp = r0.get("compile_s") or {}
    if comp:
        L += ["First calls of the three kernels per layout (compile, or load from Numba's cache; "
              "padded runs wv's compiled code), float32, run 1: " +
              ", ".join(f"{a} {b:.1f} s" for a, b in comp.items()) + ".", ""]
    if png_name:
        L += [f"![ratios to [w | V]]({png_name})", ""]
    L += ["## Decision", "", res["decision"], ""]
    return "\n".join(L)


def plot_ratios(res, path):
    """Ratio to [w | V] against k, one panel per kernel, a line per (layout,
    threads) through the mean over runs, the runs' range as error bars."""
    from bench.plots import plt
    C = _cells(res["runs"])
    r0 = res["runs"][0]
    ks = sorted({c["k"] for c in r0["cells"]})
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.8), dpi=110, sharey=True)
    colors = {"split": "#1f77b4", "padded": "#d62728", "fmnumba": "#7f7f7f"}
    for ax, kern in zip(axes, KERNELS):
        for lay in ("split", "padded"):
            for th in r0["threads"]:
                rs = [[c["ratio_to_wv"] for c in C[(k, th, kern, lay)]] for k in ks]
                m = np.array([np.mean(r) for r in rs])
                err = np.array([[m[i] - min(r), max(r) - m[i]] for i, r in enumerate(rs)]).T
                ax.errorbar(ks, m, yerr=err, marker="o", ms=4, capsize=3, color=colors[lay],
                            ls="-" if th == 1 else "--", label=f"{lay}, {th} thr")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks])
        ax.set_xlabel("k")
        ax.set_title(KERNEL_NAMES[kern])
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("time / time of [w | V]")
    axes[0].legend(fontsize=7)
    fig.suptitle("Parameter layouts against [w | V] (below 1: faster)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("kernels", "gather"), default="kernels")
    p.add_argument("--synthetic", type=int, default=1_000_000,
                   help="rows and features of the large-shaped set")
    p.add_argument("--rows", type=int, default=None, help="gather mode: only the first ROWS rows")
    p.add_argument("--predict-rows", type=int, default=500_000)
    p.add_argument("--epoch-rows", type=int, default=200_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--k", default="4,8,16,32,64")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--runs", type=int, default=2, help="kernels mode: repeat the whole measurement")
    p.add_argument("--report", help="kernels mode: write layout.md, layout.json, layout.png here")
    p.add_argument("--out", help="write the JSON here")
    a = p.parse_args(argv)
    ks = tuple(int(k) for k in a.k.split(","))
    from fmnumba import datasets as D
    start = load_average()
    d = D.make_fm_data(a.synthetic, D.large_field_sizes(a.synthetic), random_state=0)
    X = d.X.tocsr()
    X.sum_duplicates()
    if a.mode == "gather":
        if a.rows:
            X = X[:a.rows]
        res = measure_gather(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.shape[1],
                             ks=ks, threads=a.threads, repeats=a.repeats)
        return write_json(res, a.out)
    args = (X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data.astype(np.float32),
            np.asarray(d.y, dtype=np.float32), X.shape[1])
    runs = []
    for i in range(a.runs):
        print(f"run {i + 1} of {a.runs}", flush=True)
        runs.append(measure_kernels(*args, ks=ks, threads=a.threads, repeats=a.repeats,
                                    predict_rows=a.predict_rows, epoch_rows=a.epoch_rows,
                                    batch_size=a.batch_size))
    cmd = "python -m bench.layout " + " ".join(argv if argv is not None else sys.argv[1:])
    res = {"command": cmd.strip(),
           "numba_threads_env": f"NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'unset')}",
           "loadavg_start": start, "loadavg_end": load_average(), "runs": runs}
    res["per_k"], res["decision"] = decide(runs, runs[0]["memory"])
    if a.report:
        out = Path(a.report)
        out.mkdir(parents=True, exist_ok=True)
        png = plot_ratios(res, out / "layout.png")
        (out / "layout.md").write_text(report_md(res, png.name))
        (out / "layout.json").write_text(json.dumps(res, indent=1) + "\n")
        print((out / "layout.md").read_text())
    if a.out:
        write_json(res, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
