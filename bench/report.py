"""The markdown report of a benchmark run (and its PNGs), written from the
results dict alone, so ``python -m bench --report-only RESULTS.json``
rebuilds it."""
import json
from pathlib import Path

from .targets import (MCMC_PEERS, adam_bound, dataset_target, epoch_bound, evaluate_targets,
                      fastest_peer, fmt, kernel_row, peer_tp_ok, predict_ceiling, ratio,
                      row_for, time_to, whole_epoch_fit_s, EPOCH_PEER_FACTOR)


def epoch_misses_section(results):
    """Lines saying, for each epoch target missed, by how much, what this
    run's bounds and Adam profile show."""
    tp, ceil = results.get("throughput") or {}, results.get("ceiling")
    th = results.get("host", {}).get("threads", 2)
    x = f"{EPOCH_PEER_FACTOR:.0f}×"
    out = []
    for k in results.get("args", {}).get("throughput_k", [8, 64]):
        best = fastest_peer(results.get("peer_throughput"), k)
        if not best:
            continue
        peer, pv = best
        need = EPOCH_PEER_FACTOR * pv
        for kern, label in (("sgd_epoch", "SGD"), ("adam_epoch", "Adam")):
            r = kernel_row(tp, kern, k, th)
            if not r or r["nnz_k_per_s"] >= need:
                continue
            bound = epoch_bound(kern, ceil, k, th, tp)
            txt = (f"- **{label} epoch, k={k}**: {r['nnz_k_per_s']:.3g} nnz·k/s, "
                   f"{need / r['nnz_k_per_s']:.2f}× short of {x} {peer} ({need:.3g}). ")
            if bound:
                txt += f"This machine's {label} bound is {bound:.3g} ({bound / pv:.2f}× {peer}); "
                txt += (f"{x} is beyond it in this run. " if bound < need else
                        f"{x} needs {need / bound:.0%} of it; the kernel is at "
                        f"{r['nnz_k_per_s'] / bound:.0%}. ")
            b = row_for(tp.get("breakdown"), k, th) if kern == "adam_epoch" else None
            if b:
                stages = {"forward": b["forward_batch_s"], "transpose": b["transpose_batch_s"],
                          "update": b["adam_update_s"]}
                top = max(stages, key=stages.get)
                st = row_for((ceil or {}).get("adam_state"), k, th)
                txt += (f"Profile: {top} is the largest stage ({stages[top] * 1e3:.3f} ms of "
                        f"{sum(stages.values()) * 1e3:.3f} ms per batch called separately)")
                if st:
                    txt += (f"; the update takes {b['adam_update_s'] / st['time_per_batch_s']:.1f}×"
                            " the bare state read-modify-write")
                    if b.get("adam_update_cached_rows_s"):
                        txt += (", and with its rows in cache (its arithmetic alone) "
                                f"{b['adam_update_cached_rows_s'] / st['time_per_batch_s']:.1f}×:"
                                " the Adam arithmetic, which the bound leaves out, is of the "
                                "order of the memory traffic")
                    floor = arithmetic_floor(b)
                    if floor and bound:
                        at_bound = b["nnz_per_batch"] * k / bound
                        txt += (f". The arithmetic of the update and the transpose alone (rows "
                                f"in cache, less the cost of an empty call; the transpose on one "
                                f"thread) is {floor * 1e3:.3f} ms per batch, against "
                                f"{at_bound * 1e3:.3f} ms at the bound: with every miss hidden "
                                f"behind it, an epoch would reach at most "
                                f"{min(1.0, at_bound / floor):.0%} of the bound")
                txt += (". A layout that would lower it: the P, M and S rows interleaved in "
                        "one table (one random row per feature instead of three)")
                if st and st.get("interleaved_time_s"):
                    txt += (f", whose bare read-modify-write runs "
                            f"{st['time_s'] / st['interleaved_time_s']:.2f}× faster in this run")
                txt += "."
            elif kern == "sgd_epoch":
                txt += ("Between the epoch and its bound lies what the bound leaves out: "
                        "the x values, the w column (1 + k wide rows, not k), the loss and "
                        "the update arithmetic.")
            out.append(txt)
    if out:
        out = ["### Epoch targets missed: by how much, and what profiling shows", ""] + out + [""]
    return out


def _or_failure(part, key, what, render):
    """render(part) where the part ran and produced `key`; a line naming its
    error where it failed; nothing where it was not run."""
    if not part:
        return []
    if part.get(key) is None:
        return [f"{what} failed: `{part.get('error')}`", ""]
    return render(part)


def md_table(header, rows):
    """A markdown table: the header, the separator and one line per row."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _header(results, stem):
    """Title, command, host, peers and how to read the ratios."""
    h = results["host"]
    th = h.get("threads", 2)
    L = [f"# fmnumba benchmark: {results['started'][:10]}, cpu{h['cpu_count']}", ""]
    if results.get("quick"):
        L += ["> **Quick run** (tiny data, few epochs): a smoke test of the harness, not "
              "figures to quote.", ""]
    cmd = results["command"]
    if results.get("peers") and "--peers-python" not in cmd:
        cmd = "FMNUMBA_PEERS_PYTHON=<peers venv>/bin/python " + cmd
    L += ["Command (from the repository root):", "", "```", cmd, "```", "",
          f"Host: {h['cpu']}, {h['cpu_count']} logical CPUs, {fmt(h.get('mem_gib'), '{:.0f}')} "
          f"GiB; Python {h['python']}, Numba {h['numba']}, NumPy {h['numpy']}; {th} threads "
          f"for every library. Load average at start {_fmt_load(h.get('loadavg_start'))}, "
          f"at end {_fmt_load(h.get('loadavg_end'))} (a load above the core count means "
          "other processes shared the CPUs and timings are inflated). Total "
          f"{results.get('total_s', 0) / 60:.1f} min. Raw numbers: `{stem}.json`.", "",
          "Peers: " + (", ".join(f"{p} {v}" for p, v in _peer_versions(results).items())
                       or "none") + (" (run in the interpreter given by --peers-python or "
                                     "FMNUMBA_PEERS_PYTHON, each through bench/peers/run_<name>.py"
                                     " with its tuned defaults)" if results.get("peers") else "")
          + ".", "",
          "Ratios: *fmnumba ÷ peer* for times (below 1: fmnumba faster) and *× sooner* / "
          "*×* for speedups (above 1: fmnumba faster). All figures are medians over the "
          "repeats noted; absolute figures drift between runs, compare ratios within one run.",
          ""]
    return L


def _targets_section(results):
    """The targets table and, for each epoch target missed, what the bounds show."""
    L = []
    rows = evaluate_targets(results)
    if rows:
        L += ["## Targets", "", md_table(["target", "measured", "result", "ratio"], rows), ""]
        L += epoch_misses_section(results)
    return L


def _curves_section(results, out_dir, stem):
    """Per data set: the final metrics, times to target and the curves plot."""
    from . import plots
    L = []
    # learning curves
    if results.get("datasets"):
        L += ["## Learning curves and final metrics", "",
              "Test metric after each epoch (or sweep) against cumulative fit time; fmnumba "
              "runs one `partial_fit` per epoch and only those calls are timed (warm JIT: "
              "compile time is reported separately). Each library runs in its own process; "
              "peak RSS is that whole process's (ru_maxrss).", ""]
    for name, d in results.get("datasets", {}).items():
        meta = d["meta"]
        task = meta["task"]
        m, tgt, desc = dataset_target(name, d)
        L += [f"### {name}", "",
              f"{meta['description']}; {meta['n_train']} train / {meta['n_test']} test rows, "
              f"{meta['n_features']} features, {meta['nnz_train'] / max(1, meta['n_train']):.1f} "
              f"nnz/row. Repeats: {d['repeats']} (repeat r uses seed r, so metrics are "
              f"medians over seeds as well as timings). Time-to-target: {m.upper()} "
              f"{fmt(tgt, '{:.4f}')} = {desc}.", ""]
        fm = d["libs"].get("fmnumba")
        t_fm = time_to(fm["curve"], m, tgt) if (fm and tgt is not None) else None
        mets = ["rmse"] if task == "regression" else ["auc", "logloss"]
        hdr = (["library", "solver", "epochs"] + [x.upper() for x in mets]
               + ["fit s", "fmnumba ÷ peer (fit)", "time to target s",
                  "fmnumba ÷ peer (to target)", "predict rows/s", "peak RSS MiB"])
        trs = []
        for lib, a in d["libs"].items():
            tt = time_to(a["curve"], m, tgt) if tgt is not None else None
            pr = meta["n_test"] / a["predict_s"] if a.get("predict_s") else None
            trs.append([f"**{lib}**" if lib == "fmnumba" else lib, a.get("solver") or "",
                        a.get("epochs")] + [fmt(a["final"].get(x), "{:.4f}") for x in mets]
                       + [fmt(a.get("fit_s"), "{:.2f}"),
                          "–" if lib == "fmnumba" or not fm else
                          fmt(ratio(fm.get("fit_s"), a.get("fit_s")), "{:.2f}"),
                          fmt(tt, "{:.2f}") if tgt is not None else "–",
                          "–" if lib == "fmnumba" else fmt(ratio(t_fm, tt), "{:.2f}"),
                          fmt(pr, "{:.3g}"), fmt(a.get("peak_rss_mib"), "{:.0f}")])
        L += [md_table(hdr, trs), ""]
        for lib, err in d.get("errors", {}).items():
            L += [f"- {lib} failed: `{err}`"]
        png = plots.plot_curves(name, task, d["libs"], tgt, out_dir / f"{stem}-curves-{name}.png")
        if png:
            L += ["", f"![{name} learning curves]({Path(png).name})", ""]
    return L


def _ceiling_section(ceil, th, bars):
    """The gather, stream, lazy-Adam and SGD bounds of this machine; appends its bars."""
    L = ["## Machine ceiling (same run)", "",
          f"Gather-and-sum of k-wide float32 rows per CSR row over the large set's "
          f"indices ({ceil['n_rows']} rows, {ceil['nnz']} nnz, {ceil['n_features']} "
          f"features); *uniform* replaces the indices by uniform random ones (no hot "
          f"rows). Threading layer: {ceil.get('numba_threading_layer')}.", ""]
    L += [md_table(["k", "indices", "threads", "nnz·k/s", "time s"],
                 [[g["k"], g["indices"], g["threads"], f"{g['nnz_k_per_s']:.3g}",
                   f"{g['time_s']:.4f}"] for g in ceil["gather"]]), ""]
    L += [md_table(["stream op", "threads", "GB/s"],
                 [[s["op"], s["threads"], f"{s['gb_per_s']:.1f}"] for s in ceil["stream"]]),
          ""]
    if ceil.get("adam_state"):
        a0 = ceil["adam_state"][0]
        L += [f"Lazy-Adam state bound: the bare read-modify-write of the P, M and S rows "
              f"each Adam batch touches, over the {a0['epoch_rows']} epoch rows in batches "
              f"of {a0['batch_size']} ({a0['rows_updated']} row updates for "
              f"{a0['epoch_nnz']} nnz), each thread prefetching the rows it updates "
              "1, 2, 4 or 8 rows later; the fastest distance counts. *interleaved* times "
              "the same with P, M and S in one table (row j = [p | m | s]). *Adam bound* "
              "adds the gather of the epoch's rows at the gather ceiling to the faster "
              "layout: no lazy Adam epoch on this machine can beat it.", "",
              md_table(["k", "threads", "state RMW s", "prefetch rows ahead", "µs per batch",
                      "interleaved P|M|S RMW s", "Adam bound nnz·k/s"],
                     [[c["k"], c["threads"], f"{c['time_s']:.4f}",
                       c.get("prefetch_distance", 1),
                       f"{c['time_per_batch_s'] * 1e6:.0f}",
                       fmt(c.get("interleaved_time_s"), "{:.4f}"),
                       f"{adam_bound(ceil, c['k'], c['threads']) or 0:.3g}"]
                      for c in ceil["adam_state"]]), ""]
    if ceil.get("sgd_bound"):
        s0 = ceil["sgd_bound"][0]
        L += [f"SGD bound: the same {s0['epoch_rows']} epoch rows ({s0['epoch_nnz']} nnz) "
              "visited in their shuffled order, one contiguous chunk per thread, gathering "
              "each row's k-wide rows (*read*), and also writing each of them back once "
              "(*read + write back*): a per-sample SGD epoch in a fresh random order does at "
              "least the latter, so no such epoch on this machine can beat it.", "",
              md_table(["k", "threads", "read nnz·k/s", "read + write back nnz·k/s"],
                     [[c["k"], c["threads"], f"{c['read_nnz_k_per_s']:.3g}",
                       f"{c['rmw_nnz_k_per_s']:.3g}"] for c in ceil["sgd_bound"]]), ""]
    for g in ceil["gather"]:
        if g["indices"] == "real" and g["threads"] == th:
            bars.append((f"k={g['k']}", "gather ceiling", g["nnz_k_per_s"]))
    return L


def _kernels_section(tp, ceil, th, bars):
    """fmnumba's kernel throughput against the ceilings; appends its bars."""
    L = ["## fmnumba kernel throughput on large", "",
          f"fmnumba.cpu kernels called directly (warm JIT, median of {tp['repeats']}); "
          f"predict over all {tp['n_rows']} rows ({tp['nnz']} nnz), Adam (batch "
          f"{tp['batch_size']}) and SGD epochs over {tp['epoch_rows']} random rows "
          f"({tp['epoch_nnz']} nnz). Fraction = kernel ÷ gather ceiling at the same k and "
          "threads (real indices), the ceiling timed in turn with predict in the same "
          "process (*same-process ceiling*; the separate ceiling run above drifts with "
          "the machine).", ""]
    trs = []
    for r in tp["kernels"]:
        c = predict_ceiling(tp, ceil, r["k"], r["threads"])
        bnd = r.get("bound_nnz_k_per_s")
        trs.append([r["kernel"], r["k"], r["threads"], f"{r['time_s']:.3f}",
                    f"{r['nnz_k_per_s']:.3g}", fmt(c, "{:.3g}"),
                    fmt(ratio(r["nnz_k_per_s"], c), "{:.1%}"),
                    f"{bnd:.3g} ({r['nnz_k_per_s'] / bnd:.0%})" if bnd else "–"])
        if r["threads"] == th:
            bars.append((f"k={r['k']}", f"fmnumba {r['kernel']}", r["nnz_k_per_s"]))
    L += [md_table(["kernel", "k", "threads", "time s", "nnz·k/s", "same-process ceiling",
                  "fraction of ceiling", "SGD bound, same process (fraction)"], trs), "",
          "*SGD bound*: bench/ceiling.py's shuffled gather + write-back over the epoch's "
          "rows, timed in turn with the SGD epoch.", ""]
    return L


def _peer_throughput_section(results, tp, ptp, th, bars):
    """The peers' epoch throughput beside fmnumba's; appends its bars."""
    L = []
    if ptp:
        L += ["### Peer epoch throughput on large (same training rows, one epoch or sweep)", ""]
        trs = []
        for key, r in ptp.items():
            lib, k = key.split("/")
            if peer_tp_ok(r):
                bars.append((f"k={k}", f"{lib} epoch", r["nnz_k_per_s"]))
                mine = [kernel_row(tp, kk, int(k), th) for kk in ("adam_epoch", "sgd_epoch")]
                trs.append([lib, r.get("solver") or "", k, f"{r.get('epoch_s', 0):.2f}",
                            f"{whole_epoch_fit_s(r):.2f}", f"{r['nnz_k_per_s']:.3g}"]
                           + [fmt(ratio(x["nnz_k_per_s"], r["nnz_k_per_s"]) if x else None,
                                 "{:.2f}×") for x in mine])
            elif r.get("nnz_k_per_s"):
                trs.append([lib, r.get("solver") or "", k, f"{r.get('epoch_s', 0):.2g}", "–",
                            "invalid (epoch time below 1 ms)", "–", "–"])
            else:
                trs.append([lib, "", k, "–", "–", f"failed: {r.get('error', '?')[:80]}", "–",
                            "–"])
        if results.get("args", {}).get("peer_throughput", "sgd") == "sgd":
            L += [f"Only the SGD-type peers are timed here (--peer-throughput sgd): "
                  f"{', '.join(MCMC_PEERS)} sweeps at k=64 on 1M features take many minutes.",
                  ""]
        L += [md_table(["peer", "solver", "k", "epoch s", "1-epoch fit s", "nnz·k/s",
                      "fmnumba Adam ÷ peer", "fmnumba SGD ÷ peer"], trs), "",
              "*epoch s* (and nnz·k/s, and the targets) is the peer's cost of one more epoch: "
              "a whole `fit` of one epoch where the runner trains from memory, and for xLearn, "
              "which re-reads a text file on every fit, (fit(N) − fit(1)) / (N − 1), its "
              "parsing and our text conversion excluded. *1-epoch fit s* is what a user waits "
              "for one epoch from a CSR matrix, conversion and parsing included; it is context "
              "only. fmnumba's figures are "
              "the bare epoch kernels with the L2 form a default fit passes.", ""]
    return L


def _memory_section(rss):
    """The memory footprint of a fit on large beside its ideal."""
    L = ["## Memory of a fit on large", "",
          md_table(["baseline RSS MiB", "peak RSS MiB", "fit footprint MiB", "CSR MiB",
                  "params MiB", "Adam state MiB", "ideal MiB", "footprint ÷ ideal"],
                 [[f"{rss['baseline_rss_mib']:.0f}", f"{rss['peak_rss_mib']:.0f}",
                   f"{rss['fit_footprint_mib']:.0f}", f"{rss['csr_mib']:.0f}",
                   f"{rss['params_mib']:.0f}", f"{rss['optimizer_mib']:.0f}",
                   f"{rss['ideal_mib']:.0f}",
                   f"{rss['fit_footprint_mib'] / rss['ideal_mib']:.2f}"]]), "",
          "Baseline: the worker's RSS after imports and a warm-up fit, with the high-water "
          "mark reset; footprint = peak RSS during loading the training CSR and one "
          f"{rss['epochs']}-epoch fit minus that baseline (y adds {rss['y_mib']:.0f} MiB).",
          ""]
    return L


def _compile_section(comp):
    """JIT compile time, cold and cached."""
    keys = ["import_s", "first_fit_adam_s", "first_predict_s", "first_run_s",
            "first_run_cpu_s", "first_fit_sgd_s", "first_fit_classifier_s",
            "second_fit_adam_s", "process_wall_s"]
    L = ["## Compile time", "",
          "Fresh processes with NUMBA_CACHE_DIR set to a temporary directory: empty "
          "(cold), then populated by the cold run (cached). float32 fits on a 2,000 x 300 "
          "sparse matrix (Adam: 3 epochs); *first_run* = import + first Adam fit + first "
          "predict (wall, and CPU seconds of the process); *second_fit_adam_s* is the "
          "same fit again in that process (no JIT), so first − second is the JIT (or "
          "cache-load) cost.", "",
          md_table(["seconds"] + keys, [["cold"] + [f"{comp['cold'][k]:.3f}" for k in keys],
                                      ["cached"] + [f"{comp['cached'][k]:.3f}"
                                                    for k in keys]]), ""]
    return L


def _gpu_section(results):
    """The CUDA figures, or why there are none."""
    L = []
    gpu = results.get("gpu")
    if gpu is not None:
        L += ["## GPU (CUDA)", ""]
        if not gpu.get("available"):
            L += [gpu["note"], ""]
        elif "error" in gpu:
            L += [f"bench/cuda_bench.py failed: `{gpu['error'][-300:]}`", ""]
        else:
            L += ["bench/cuda_bench.py --cpu (raw JSON below; CPU kernels timed in the same "
                  "run):", "", "```json", json.dumps(gpu["results"], indent=1), "```", ""]
    return L


def write_report(results, out_dir, stem):
    """Write <out_dir>/<stem>.md (and its PNGs) from a results dict; returns its path."""
    from . import plots
    out_dir = Path(out_dir)
    th = results["host"].get("threads", 2)
    tp, ceil = results.get("throughput"), results.get("ceiling")
    bars = []  # (group, series, nnz·k/s) of the throughput plot
    L = (_header(results, stem) + _targets_section(results)
         + _curves_section(results, out_dir, stem)
         + _or_failure(ceil, "gather", "Ceiling", lambda c: _ceiling_section(c, th, bars))
         + _or_failure(tp, "kernels", "Throughput",
                       lambda t: _kernels_section(t, ceil, th, bars))
         + _peer_throughput_section(results, tp, results.get("peer_throughput") or {}, th,
                                    bars))
    png = plots.plot_throughput(bars, out_dir / f"{stem}-throughput.png")
    if png:
        L += [f"![throughput vs ceiling]({Path(png).name})", ""]
    L += (_or_failure(results.get("rss"), "fit_footprint_mib", "RSS measurement",
                      _memory_section)
          + _or_failure(results.get("compile"), "cold", "Compile-time measurement",
                        _compile_section)
          + profiling_section(tp, ceil) + _gpu_section(results))
    if results.get("notes"):
        L += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    md = out_dir / f"{stem}.md"
    md.write_text("\n".join(L) + "\n")
    return md


def _peer_versions(results):
    out = {p: "" for p in results.get("peers", [])}
    for d in results.get("datasets", {}).values():
        for lib, a in d["libs"].items():
            if lib in out and a.get("version"):
                out[lib] = str(a["version"])
    return out


def _fmt_load(la):
    return "–" if not la else "/".join(f"{x:.1f}" for x in la)


def arithmetic_floor(b):
    """Seconds per batch of the Adam update's and the transpose's arithmetic
    (both timed with their rows in cache, less an empty call; the transpose
    runs on one thread beside the update's), or None when not measured."""
    try:
        upd = b["adam_update_cached_rows_s"] - b["adam_update_empty_call_s"]
        tr = b["transpose_cached_rows_s"] - b["transpose_empty_call_s"]
    except KeyError:
        return None
    return max(0.0, upd) + max(0.0, tr) / b["threads"]


def _ms(s):
    """Seconds as milliseconds to 3 decimals, or – when not measured."""
    return "–" if s is None else f"{s * 1e3:.3f}"


def profiling_section(tp, ceil=None):
    if not tp or not tp.get("breakdown"):
        return []
    L = ["## Where fmnumba's Adam time goes (profile)", "",
         "Each Adam batch runs three stages; here they are called one by one from Python "
         "over the same random batches of the large set (mean per batch). Inside an epoch "
         "the transpose of the next batch runs in the same parallel region as this batch's "
         "update (one thread transposes while the others take its share of the rows), so "
         "*epoch ms per batch* (the Adam epoch above ÷ its batches) can be below the sum of "
         "the stages. The *rows cached* columns run the transpose and the update again "
         "on the same batch with its CSR rows (transpose) or its P, M and S rows (update, "
         "remapped to the first rows of small tables) in cache: what is left is their "
         "arithmetic. *state bound* is "
         "this machine's time for the bare read-modify-write of the batch's touched P, M and "
         "S rows (bench/ceiling.py, same batches), which any lazy Adam must pay; *launch* is "
         "the cost of one empty `prange` region (Numba "
         f"{tp.get('numba_threading_layer')} threading layer).", ""]
    rows = []
    n_batches = -(-tp["epoch_rows"] // tp["batch_size"])
    for b in tp["breakdown"]:
        tot = b["forward_batch_s"] + b["transpose_batch_s"] + b["adam_update_s"]
        nnz = b["nnz_per_batch"]
        st = row_for((ceil or {}).get("adam_state"), b["k"], b["threads"])
        ep = kernel_row(tp, "adam_epoch", b["k"], b["threads"])
        rows.append([b["k"], b["threads"], f"{nnz:.0f}", f"{b['unique_features_per_batch']:.0f}",
                     f"{b['forward_batch_s'] * 1e3:.3f} ({b['forward_batch_s'] / tot:.0%})",
                     f"{b['transpose_batch_s'] * 1e3:.3f} ({b['transpose_batch_s'] / tot:.0%})",
                     f"{b['adam_update_s'] * 1e3:.3f} ({b['adam_update_s'] / tot:.0%})",
                     _ms(b.get("transpose_cached_rows_s")), _ms(b.get("adam_update_cached_rows_s")),
                     _ms(ep["time_s"] / n_batches if ep else None),
                     _ms(None if st is None else st["time_per_batch_s"]),
                     f"{tot / nnz * 1e9:.0f}"])
    L += [md_table(["k", "threads", "nnz/batch", "unique feats/batch", "forward ms", "transpose ms",
                  "adam_update ms", "transpose, rows cached ms", "update, rows cached ms",
                  "epoch ms per batch", "state bound ms",
                  "ns per nnz (stages)"], rows), ""]
    la = tp.get("parallel_launch_s") or {}
    if la:
        L += ["Empty parallel-region launch: " + ", ".join(
            f"{v * 1e6:.1f} µs at {k} thread(s)" for k, v in la.items())
            + " (an Adam batch launches two: forward_batch and the update with the next "
            "transpose).", ""]
    return L

