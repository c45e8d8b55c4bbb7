"""The markdown report and plot of bench/bayes.py, written from its results
dict alone (bench/results/bayes.json)."""
from pathlib import Path

import numpy as np

LABELS = {"fmnumba": ("fmnumba", "mcmc"), "myfm": ("myFM", "gibbs"),
          "fastfm": ("fastFM", "mcmc"), "fmnumba als": ("fmnumba", "als"),
          "fastfm als": ("fastFM", "als")}
COLORS = {"fmnumba": "#d62728", "myfm": "#9467bd", "fastfm": "#1f77b4",
          "fmnumba als": "#ff9896", "fastfm als": "#aec7e8"}


def _ok(runs):
    return [r for r in runs if "error" not in r]


def _agg(runs, task):
    """Medians over the runs that did not fail (None where all failed)."""
    runs = _ok(runs)
    keys = ("rmse",) if task == "regression" else ("auc", "logloss")
    m = {k: float(np.median([r["final"][k] for r in runs])) if runs else None for k in keys}
    for k in ("fit_s", "sweep_s", "nnz_k_per_s", "peak_rss_mib", "compile_s"):
        vals = [r[k] for r in runs if r.get(k) is not None]
        m[k] = float(np.median(vals)) if vals else None
    return m


def _f(x, fmt=".4f"):
    return "" if x is None else format(x, fmt)


def _fmt_load(x):
    return "n/a" if not x else ", ".join(f"{v:.2f}" for v in x)


def _versions(res):
    seen = {}
    for d in res["datasets"].values():
        for key, runs in d["runs"].items():
            for r in _ok(runs):
                if r.get("version"):
                    seen[LABELS[key][0]] = r["version"]
    return ", ".join(f"{k} {v}" for k, v in sorted(seen.items()))


def _intro(res):
    """Title and how the runs were made."""
    kept = res["sweeps"] - res.get("n_burnin", 5)
    als = any(" als" in k for d in res["datasets"].values() for k in d["runs"])
    lines = [
        "# Bayesian FM and ALS: fmnumba vs myFM and fastFM", "",
        f"k = {res['k']} and {res['sweeps']} sweeps for every fit; fmnumba on "
        f"{res['threads']} threads, myFM and fastFM on one (their solvers are sequential); "
        f"{res['repeats']} repeat{'s' if res['repeats'] != 1 else ''} per library, each in its own process, the order of the "
        "libraries rotating from repeat to repeat; medians. "
        f"OMP_WAIT_POLICY={res['omp_wait_policy']}. Machine: {res['cpu_count']} cores, "
        f"load average (1, 5, 15 min) {_fmt_load(res['load_start'])} at the start and "
        f"{_fmt_load(res['load_end'])} at the end (shared with other work: timings are "
        "noisy, compare the ratios). Peers: " + (_versions(res) or "none") + ".", "",
        f"- MCMC: fmnumba and myFM average the predictions of {kept} kept samples (all "
        f"after {res.get('n_burnin', 5)} burn-in sweeps, myFM's default) and can predict "
        "any rows after fit. fastFM's MCMC (fit_predict for regression, "
        "fit_predict_proba for the probit classifier) only predicts the test set handed "
        "to it at fit time: it averages that set's predictions over all "
        f"{res['sweeps']} sweeps (it has no burn-in setting) and keeps no samples, so its "
        "fit time includes predicting the test set once per sweep.",
    ]
    if als:
        lines.append(
            "- ALS (regression sets; fmnumba's ALS is for FMRegressor): fmnumba "
            "solver=\"als\" (float32) and fastFM's als.FMRegression (float64) minimise the "
            "same objective ½ Σ (y − ŷ)² + ½ λ ‖w‖² + ½ λ ‖V‖² (w0 not regularised) with "
            f"λ = {res.get('als_l2', 1.0):g} for both (the best of 0.1, 0.3, 1, 3, 10, 30, "
            "100 for fmnumba's ALS on a 20% validation split of the synthetic ratings' "
            "training rows), both starting from factors of standard deviation "
            f"{res.get('als_init_std', 0.1):g} (the default of both).")
    lines += [
        "- Everything else is each library's default, e.g. the MCMC fits' initial factor "
        "standard deviation: 0.01 (fmnumba), 0.1 (myFM, fastFM); repeat r uses seed r "
        "(fastFM r + 1). "
        "fastFM's times include its CSR → CSC conversion.",
        "- Last column: the peer's fit time over fmnumba's with the same solver, same "
        "repeat. A failed run is listed with its error.", ""]
    return lines


def _row(name, key, d, res):
    task, runs = d["task"], d["runs"][key]
    m = _agg(runs, task)
    lib, solver = LABELS[key]
    failed = [r for r in runs if "error" in r]
    fit = _f(m["fit_s"], ".2f")
    if failed:
        fit = (fit + "; " if fit else "") + (f"failed {len(failed)} of {len(runs)} runs: "
                                             f"{failed[0]['error']}".replace("|", "/"))
    ratio = d.get("fit_time_ratio_over_fmnumba", {}).get(key)
    rtxt = ""
    if ratio and any(x is not None for x in ratio):
        good = [x for x in ratio if x is not None]
        rtxt = (f"{np.median(good):.2f}× (runs: "
                f"{', '.join('failed' if x is None else f'{x:.2f}' for x in ratio)})")
    sweep = "" if m["sweep_s"] is None else f"{m['sweep_s'] * 1e3:.1f} ms"
    return [name, lib, solver, _f(m.get("rmse")), _f(m.get("auc")), _f(m.get("logloss")), fit,
            sweep, _f(m["nnz_k_per_s"], ".3g"), _f(m["peak_rss_mib"], ".0f"), rtxt]


def _kernel_rows(res):
    rows = []
    for name, d in res["datasets"].items():
        f0 = d["runs"]["fmnumba"][0]
        if "error" in f0:
            continue
        parts = f0.get("profile_ms_per_sweep") or {}
        total = sum(parts.values()) or 1.0
        shown = {k: v for k, v in parts.items() if v >= 0.02 * total}
        shown["rest"] = total - sum(shown.values())
        prof = ", ".join(f"{k} {v:.2f} ({100 * v / total:.0f}%)" for k, v in shown.items())
        rows.append([name, f"{f0['compile_s']:.1f}", f"{f0.get('adam_nnz_k_per_s', 0):.3g}",
                     f"{f0['nnz_k_per_s']:.3g}", f"{100 * f0['parallel_nnz_fraction']:.0f}%",
                     prof])
    return rows


def report(res, path_md, path_png):
    from .report import md_table
    fits = [_row(name, key, d, res) for name, d in res["datasets"].items() for key in d["runs"]]
    lines = _intro(res) + [
        md_table(["data", "library", "solver", "RMSE", "AUC", "log loss", "fit s", "s/sweep",
                  "nnz·k/s per sweep", "peak RSS MiB", "fit / fmnumba fit"], fits),
        "", "Per-run figures (every repeat) are in bayes.json; the plot is bayes.png.", "",
        "## fmnumba's sweep beside Adam, and where a sweep's time goes", "",
        "fmnumba mcmc, first repeat: compile time of the warm-up fit, one Adam epoch "
        "(fmnumba's defaults) on the same training data, the share of nonzeros in "
        "parallel (one-hot) blocks, and cProfile's own time per sweep of each kernel "
        "over a 20-sweep fit (update_sweep: the draws of w and V; latent_rows: the "
        "probit latent targets and residual sums; refresh_rows: the rebuild of e and q "
        "every 10 sweeps; draw_group_hyper: μ, λ).", "",
        md_table(["data", "compile s", "Adam epoch nnz·k/s", "mcmc sweep nnz·k/s",
                  "parallel nnz", "ms per sweep by kernel"], _kernel_rows(res))]
    Path(path_md).write_text("\n".join(lines) + "\n")
    _plot(res, path_png)


def _plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(res["datasets"])
    keys = [k for k in LABELS if any(k in res["datasets"][n]["runs"] for n in names)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    x = np.arange(len(names))
    w = 0.8 / len(keys)

    def med(n, key, metric):
        d = res["datasets"][n]
        if key not in d["runs"]:
            return np.nan
        v = _agg(d["runs"][key], d["task"])[metric]
        return np.nan if v is None else v

    for i, key in enumerate(keys):
        axes[0].bar(x + (i - (len(keys) - 1) / 2) * w, [med(n, key, "fit_s") for n in names],
                    w, label=" ".join(LABELS[key]), color=COLORS[key])
    axes[0].set_xticks(x, names)
    axes[0].set_ylabel(f"fit time, s ({res['sweeps']} sweeps)")
    axes[0].set_title("fit time (median)")
    axes[0].legend(fontsize=8)
    others = [k for k in keys if k != "fmnumba"]
    w2 = 0.8 / max(1, len(others))
    for i, key in enumerate(others):
        rel = []
        for n in names:
            metric = "rmse" if res["datasets"][n]["task"] == "regression" else "logloss"
            rel.append(100 * (med(n, key, metric) / med(n, "fmnumba", metric) - 1))
        axes[1].bar(x + (i - (len(others) - 1) / 2) * w2, rel, w2, label=" ".join(LABELS[key]),
                    color=COLORS[key])
    axes[1].axhline(0, color="grey", lw=0.8)
    labels = [f"{n}\n({'RMSE' if res['datasets'][n]['task'] == 'regression' else 'log loss'})"
              for n in names]
    axes[1].set_xticks(x, labels)
    axes[1].set_ylabel("% above fmnumba mcmc (lower is better)")
    axes[1].set_title("test error relative to fmnumba mcmc (median)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
