"""The targets a benchmark run is checked against, and the lookups into a
results dict (bench/run.py's JSON) that the targets and the report share."""

MCMC_PEERS = ("myfm", "fastfm")            # runners whose --epochs are sweeps

A9A_AUC_TARGET = 0.903
A9A_FINAL_AUC = 0.904
A9A_FINAL_LOGLOSS = 0.322
SOONER = 1.5
PREDICT_CEILING_FRACTION = 0.60
EPOCH_PEER_FACTOR = 5.0
RSS_FACTOR = 1.5
COMPILE_COLD_S = 8.0
COMPILE_CACHED_S = 0.5


def primary(task):
    """The metric a task's time-to-target is measured in."""
    return "rmse" if task == "regression" else "auc"


def better(metric, a, b):
    """a at least as good as b."""
    return a <= b if metric in ("rmse", "logloss") else a >= b


def time_to(curve, metric, target):
    """time_s of the first curve point at least as good as target, or None."""
    for pt in curve or []:
        v = pt.get(metric)
        if v is not None and better(metric, v, target):
            return pt["time_s"]
    return None


def is_sgd_type(agg):
    """Whether a runner's result comes from a gradient-type (epoch) solver."""
    s = (agg.get("solver") or "").lower()
    return any(w in s for w in ("sgd", "adagrad", "adam", "ftrl"))


def fmt(x, spec="{:.3g}"):
    """x formatted by `spec`, or a dash for None."""
    return "–" if x is None else spec.format(x)


def ratio(a, b):
    """a / b, or None where either is missing (or b is 0)."""
    return a / b if (a is not None and b) else None


def row_for(rows, k, threads, **match):
    """The entry of `rows` (a list of result dicts) for k and threads whose
    other keys equal `match`, or None."""
    for r in rows or []:
        if r["k"] == k and r["threads"] == threads and all(r.get(a) == v
                                                            for a, v in match.items()):
            return r
    return None


def gather_ceiling(ceil, k, threads, which="real"):
    """The ceiling run's gather ceiling (nnz·k/s) at k and threads, or None."""
    g = row_for((ceil or {}).get("gather"), k, threads, indices=which)
    return g["nnz_k_per_s"] if g else None


def kernel_row(tp, name, k, threads):
    """The throughput run's entry of kernel `name` at k and threads, or None."""
    return row_for((tp or {}).get("kernels"), k, threads, kernel=name)


def predict_ceiling(tp, ceil, k, threads):
    """The gather ceiling timed in turn with predict, else the ceiling run's."""
    own = (kernel_row(tp, "predict_csr", k, threads) or {}).get("ceiling_nnz_k_per_s")
    return own or gather_ceiling(ceil, k, threads)


def dataset_target(name, res):
    """(metric, target value, description) for time-to-target."""
    task = res["meta"]["task"]
    m = primary(task)
    if name == "a9a":
        return m, A9A_AUC_TARGET, f"the a9a target AUC {A9A_AUC_TARGET}"
    sgd = [(lib, a) for lib, a in res["libs"].items() if lib != "fmnumba" and is_sgd_type(a)
           and a["final"].get(m) is not None]
    if not sgd:
        return m, None, "no SGD-type peer result"
    pick = min if m == "rmse" else max
    lib, a = pick(sgd, key=lambda la: la[1]["final"][m])
    return m, a["final"][m], f"best SGD-type peer's final {m.upper()} ({lib})"


def whole_epoch_fit_s(r):
    """Seconds of a whole one-epoch fit from a CSR matrix (conversion included)."""
    if "fit1_s" in r:
        return r["fit1_s"] + r.get("conversion_s", 0.0)
    return r.get("epoch_s", 0.0)


def fastest_peer(ptp, k):
    """(name, nnz·k/s) of the fastest usable peer epoch at k, or None."""
    peers = [(key.split("/")[0], r["nnz_k_per_s"]) for key, r in (ptp or {}).items()
             if key.endswith(f"/{k}") and peer_tp_ok(r)]
    return max(peers, key=lambda x: x[1]) if peers else None


def epoch_bound(kern, ceil, k, threads, tp):
    """This machine's bound (nnz·k/s) on the epoch kernel `kern`, or None."""
    return adam_bound(ceil, k, threads) if kern == "adam_epoch" else \
        sgd_bound(ceil, k, threads, tp)


def peer_tp_ok(r):
    """A peer --throughput result is usable (xlearn's fit(2) − fit(1) can be ~0 on tiny data)."""
    return bool(r and r.get("nnz_k_per_s") and (r.get("epoch_s") or 0) >= 1e-3)


def evaluate_targets(results):
    """[(target, measured, result, ratio)] rows of the targets table."""
    rows = []
    th = results.get("host", {}).get("threads", 2)

    def verdict(ok):
        return "n/a" if ok is None else ("**pass**" if ok else "**miss**")

    dsets = results.get("datasets", {})
    a9 = dsets.get("a9a")
    if a9:
        fm = a9["libs"].get("fmnumba")
        t_fm = time_to(fm["curve"], "auc", A9A_AUC_TARGET) if fm else None
        peer_t = [(lib, time_to(a["curve"], "auc", A9A_AUC_TARGET))
                  for lib, a in a9["libs"].items() if lib != "fmnumba"]
        peer_t = [(lib, t) for lib, t in peer_t if t is not None]
        best = min(peer_t, key=lambda x: x[1]) if peer_t else None
        sp = ratio(best[1], t_fm) if best else None
        rows.append((f"a9a k=8: AUC {A9A_AUC_TARGET} reached ≥ {SOONER}× sooner than the "
                     "fastest peer",
                     f"fmnumba {fmt(t_fm, '{:.2f}')} s; fastest peer "
                     + (f"{best[0]} {best[1]:.2f} s" if best else "none reached it / no peers"),
                     "**miss**" if t_fm is None else verdict(None if sp is None else sp >= SOONER),
                     "fmnumba never reached it" if t_fm is None else fmt(sp, "{:.2f}× sooner")))
        if fm:
            auc, ll = fm["final"].get("auc"), fm["final"].get("logloss")
            rows.append((f"a9a final AUC ≥ {A9A_FINAL_AUC}", fmt(auc, "{:.4f}"),
                         verdict(auc >= A9A_FINAL_AUC), f"{auc / A9A_FINAL_AUC:.4f}"))
            rows.append((f"a9a final logloss ≤ {A9A_FINAL_LOGLOSS}", fmt(ll, "{:.4f}"),
                         verdict(ll <= A9A_FINAL_LOGLOSS), f"{ll / A9A_FINAL_LOGLOSS:.4f}"))
    for name in ("small", "movielens"):
        d = dsets.get(name)
        if not d or "fmnumba" not in d["libs"]:
            continue
        m, tgt, desc = dataset_target(name, d)
        if tgt is None:
            rows.append((f"{name}: reach best SGD-type peer's final RMSE ≥ {SOONER}× sooner",
                         "no SGD-type peer ran", "n/a", "–"))
            continue
        lib = desc.split("(")[-1].rstrip(")")
        t_peer = time_to(d["libs"][lib]["curve"], m, tgt)
        t_fm = time_to(d["libs"]["fmnumba"]["curve"], m, tgt)
        sp = ratio(t_peer, t_fm)
        rows.append((f"{name}: reach best SGD-type peer's final RMSE ({tgt:.4f}, {lib}) "
                     f"≥ {SOONER}× sooner",
                     f"fmnumba {fmt(t_fm, '{:.2f}')} s vs {lib} {fmt(t_peer, '{:.2f}')} s",
                     verdict(sp >= SOONER) if sp else "**miss**",
                     f"{sp:.2f}× sooner" if sp else "fmnumba never reached it"))
    tp, ceil = results.get("throughput"), results.get("ceiling")
    for k in results.get("args", {}).get("throughput_k", [8, 64]):
        pr = kernel_row(tp, "predict_csr", k, th)
        c = predict_ceiling(tp, ceil, k, th)
        if pr and c:
            fr = pr["nnz_k_per_s"] / c
            rows.append((f"large k={k}: predict ≥ {PREDICT_CEILING_FRACTION:.0%} of the gather "
                         f"ceiling ({th} threads)",
                         f"{pr['nnz_k_per_s']:.3g} vs ceiling {c:.3g} nnz·k/s",
                         verdict(fr >= PREDICT_CEILING_FRACTION), f"{fr:.0%} of ceiling"))
    ptp = results.get("peer_throughput") or {}
    for k in results.get("args", {}).get("throughput_k", [8, 64]):
        best = fastest_peer(ptp, k)
        for kern, label in (("adam_epoch", "Adam"), ("sgd_epoch", "SGD")):
            r = kernel_row(tp, kern, k, th)
            if not r:
                continue
            if not best:
                rows.append((f"large k={k}: {label} epoch ≥ {EPOCH_PEER_FACTOR:.0f}× the fastest "
                             "peer's epoch throughput", f"fmnumba {r['nnz_k_per_s']:.3g} nnz·k/s; "
                             "no peer measured", "n/a", "–"))
                continue
            x = r["nnz_k_per_s"] / best[1]
            measured = f"fmnumba {r['nnz_k_per_s']:.3g} vs {best[0]} {best[1]:.3g} nnz·k/s"
            bound = epoch_bound(kern, ceil, k, th, tp)
            if bound:
                measured += (f"; this machine's {'lazy-Adam' if kern == 'adam_epoch' else 'SGD'}"
                             f" bound {bound:.3g} = {bound / best[1]:.2f}× {best[0]}")
            rows.append((f"large k={k}: {label} epoch ≥ {EPOCH_PEER_FACTOR:.0f}× the fastest "
                         "peer's epoch throughput", measured,
                         verdict(x >= EPOCH_PEER_FACTOR), f"{x:.2f}×"))
    rss = results.get("rss")
    if rss and rss.get("fit_footprint_mib"):
        x = rss["fit_footprint_mib"] / rss["ideal_mib"]
        rows.append((f"large: peak RSS of a fit ≤ {RSS_FACTOR}× (input CSR + params + "
                     "optimizer state)",
                     f"{rss['fit_footprint_mib']:.0f} MiB over baseline vs "
                     f"{rss['ideal_mib']:.0f} MiB", verdict(x <= RSS_FACTOR), f"{x:.2f}×"))
    comp = results.get("compile")
    if comp and "cold" in comp:
        # older result files time the first fit alone
        key, what = (("first_run_s", "import + first fit + predict") if "first_run_s" in
                     comp["cold"] else ("first_fit_adam_s", "first fit"))
        c, w = comp["cold"][key], comp["cached"][key]
        rows.append((f"compile: {what}, cold ≤ {COMPILE_COLD_S:g} s",
                     f"{c:.2f} s", verdict(c <= COMPILE_COLD_S),
                     f"{c / COMPILE_COLD_S:.2f}× the limit"))
        rows.append((f"compile: {what}, cached ≤ {COMPILE_CACHED_S:g} s",
                     f"{w:.2f} s", verdict(w <= COMPILE_CACHED_S),
                     f"{w / COMPILE_CACHED_S:.2f}× the limit"))
    return rows



def adam_bound(ceil, k, threads):
    """Upper bound (nnz·k/s) on a lazy-Adam epoch on this machine: the bare
    read-modify-write of the touched P, M, S rows (separate or interleaved
    tables, the faster) plus the gather of the epoch's rows at the gather
    ceiling (bench/ceiling.py), or None."""
    st = row_for((ceil or {}).get("adam_state"), k, threads)
    g = gather_ceiling(ceil, k, threads)
    if not st or not g:
        return None
    work = st["epoch_nnz"] * k
    rmw = min(st["time_s"], st.get("interleaved_time_s") or st["time_s"])  # either layout
    return work / (rmw + work / g)


def sgd_bound(ceil, k, threads, tp=None):
    """Upper bound (nnz·k/s) on a per-sample SGD epoch in shuffled order on
    this machine: bench/ceiling.py's shuffled gather + write-back, as timed in
    turn with the SGD epoch (bench/throughput.py) when available, else from
    the separate ceiling run; or None."""
    own = (kernel_row(tp, "sgd_epoch", k, threads) or {}).get("bound_nnz_k_per_s")
    if own:
        return own
    st = row_for((ceil or {}).get("sgd_bound"), k, threads)
    return st["rmw_nnz_k_per_s"] if st else None
