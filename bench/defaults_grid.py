"""The grid that chose fmnumba's default hyperparameters (README, "How the
defaults were chosen").

Three classification sets (for FMClassifier): a9a (from ../shared/data,
skipped when absent), make_clicks(100_000) and sparse clicks (200k rows over
200k Zipf-popular features in 21 fields, large_field_sizes); three regression
sets (for FMRegressor): a MovieLens-shaped synthetic set (943 users × 1682
items, 100k ratings, planted FM, σ = 0.9), make_ratings(100_000) (σ = 0.5)
and the sparse set of the same shape as the classification one (σ = 0.5),
a scaled-down twin of the benchmark's `large` set. For every
setting the test metric (AUC or RMSE) is recorded after each epoch; a
setting's score on a set is its relative gap to the best metric any setting
reached there, and each estimator's defaults are the setting with the
smallest worst gap over its task's sets at the default epoch count. One seed,
2 threads; writes bench/results/defaults-grid.md and .json.

Both Adam forms of L2 are in the grid: `adam` (L2 in the gradient, charged per
occurrence) with L2 {0.003, 0.01, 0.03}, and `adamw` (decoupled weight decay)
with decay rates {0.03, 0.1, 0.3} and lr_decay {0.5, 1} (a decay rate is not an
L2 strength: Adam's normalisation rescales an L2 gradient, so the two need
other values; constant steps ranked 10th at best under adam, so adamw leaves
them out).
--reuse JSON takes the rows of an earlier run that match a setting instead of
training it again.

    python -m bench.defaults_grid [--epochs 30] [--quick] [--reuse FILE.json]
"""
import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.data import SHARED_DATA

RESULTS = Path(__file__).resolve().parent / "results"


def _datasets(quick):
    from sklearn.datasets import load_svmlight_file

    from fmnumba.datasets import large_field_sizes, make_clicks, make_fm_data, make_ratings

    n = 20_000 if quick else 100_000
    sets = {}
    a9a = [SHARED_DATA / "a9a", SHARED_DATA / "a9a.t"]
    if all(p.exists() for p in a9a):
        Xtr, ytr = load_svmlight_file(str(a9a[0]), n_features=123)
        Xte, yte = load_svmlight_file(str(a9a[1]), n_features=123)
        if quick:
            Xtr, ytr = Xtr[:8000], ytr[:8000]
        sets["a9a"] = ("auc", Xtr.tocsr(), ytr, Xte.tocsr(), yte)
    d = make_clicks(n, random_state=0)
    Xtr, Xte, ytr, yte = d.split(0.2)
    sets["clicks"] = ("auc", Xtr, ytr, Xte, yte)
    ns = 2 * n
    d = make_clicks(ns, field_sizes=large_field_sizes(ns), random_state=0)
    Xtr, Xte, ytr, yte = d.split(0.2)
    sets["sparse_clicks"] = ("auc", Xtr, ytr, Xte, yte)
    for name, kw in (("movielens_shaped", dict(n_users=943, n_items=1682, n_context=(),
                                               noise=0.9)),
                     ("ratings", dict(noise=0.5))):
        d = make_ratings(n, random_state=0, **kw)
        Xtr, Xte, ytr, yte = d.split(0.2)
        sets[name] = ("rmse", Xtr, ytr, Xte, yte)
    d = make_fm_data(ns, large_field_sizes(ns), random_state=0)
    Xtr, Xte, ytr, yte = d.split(0.2)
    sets["sparse_ratings"] = ("rmse", Xtr, ytr, Xte, yte)
    return sets


def _curve(metric, params, Xtr, ytr, Xte, yte, epochs, seed):
    from sklearn.metrics import roc_auc_score

    from fmnumba import FMClassifier, FMRegressor

    cls = FMClassifier if metric == "auc" else FMRegressor
    m = cls(n_factors=8, random_state=seed, max_iter=1, **params)
    out = []
    t = 0.0
    for e in range(epochs):
        t0 = time.perf_counter()
        if e == 0 and metric == "auc":
            m.partial_fit(Xtr, ytr, classes=np.unique(ytr))
        else:
            m.partial_fit(Xtr, ytr)
        t += time.perf_counter() - t0
        if metric == "auc":
            out.append(float(roc_auc_score(yte, m.decision_function(Xte))))
        else:
            out.append(float(np.sqrt(np.mean((m.predict(Xte) - yte) ** 2))))
    return out, t


def _gap(metric, value, best):
    return (best - value) / best if metric == "auc" else (value - best) / best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--quick", action="store_true", help="small data and grid (smoke test)")
    p.add_argument("--out", default=str(RESULTS / "defaults-grid"))
    p.add_argument("--solvers", default="adam,adamw")
    p.add_argument("--reuse", default=None,
                   help="JSON of an earlier run: its rows (same epochs) are reused")
    a = p.parse_args(argv)
    import numba
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    sets = _datasets(a.quick)
    if a.quick:
        grid = {"learning_rate": [0.02], "lr_decay": [0.0, 1.0], "batch_size": [1024]}
        l2s = {"adam": [0.01], "adamw": [0.1]}
    else:
        grid = {"learning_rate": [0.002, 0.005, 0.01, 0.02], "lr_decay": [0.0, 0.5, 1.0],
                "batch_size": [256, 1024]}
        l2s = {"adam": [0.003, 0.01, 0.03], "adamw": [0.03, 0.1, 0.3]}
    done = {}
    if a.reuse:
        old = json.loads(Path(a.reuse).read_text())
        if old.get("epochs") == a.epochs:
            for r in old["rows"]:
                r["params"].setdefault("solver", "adam")
                done[json.dumps(r["params"], sort_keys=True)] = r
    rows = []
    settings = [(solver, lr, decay, bs, l2) for solver in a.solvers.split(",")
                for lr, decay, bs in itertools.product(*grid.values()) for l2 in l2s[solver]
                # adamw: only decaying schedules (under adam, constant steps ranked
                # 10th at best for either estimator)
                if solver == "adam" or decay > 0 or a.quick]
    for solver, lr, decay, bs, l2 in settings:
        params = dict(solver=solver, learning_rate=lr, lr_decay=decay, batch_size=bs,
                      l2_reg_w=l2, l2_reg_v=l2, init_std=0.01)
        key = json.dumps(params, sort_keys=True)
        if key in done and set(done[key]["curves"]) == set(sets):
            rows.append(done[key])
            continue
        row = {"params": params, "curves": {}, "fit_s": {}}
        for name, (metric, Xtr, ytr, Xte, yte) in sets.items():
            row["curves"][name], row["fit_s"][name] = _curve(metric, params, Xtr, ytr, Xte,
                                                             yte, a.epochs, seed=0)
        rows.append(row)
        print(params, {n: round(c[-1], 4) for n, c in row["curves"].items()}, flush=True)
    checkpoints = sorted({e for e in (10, 20, a.epochs) if e <= a.epochs})
    best = {}
    for name, (metric, *_rest) in sets.items():
        vals = [v for r in rows for v in r["curves"][name]]
        best[name] = max(vals) if metric == "auc" else min(vals)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out + ".json", "w") as f:
        json.dump({"epochs": a.epochs, "best": best, "rows": rows}, f, indent=1)
    lines = [f"# Defaults grid ({len(rows)} settings × {len(sets)} data sets, "
             f"{a.epochs} epochs, k = 8, seed 0, 2 threads)", "",
             "Command: `python -m bench.defaults_grid" + (" --quick" if a.quick else "") + "`", "",
             "Best test metric any setting reached: "
             + ", ".join(f"{n} {sets[n][0].upper()} {best[n]:.4f}" for n in sets) + ".",
             "Score: the worst relative gap to those bests over the estimator's data sets "
             "(lower is better); *first* is the first epoch within 0.5% of the best on every "
             "set. The old defaults (adam, learning rate 0.002, no decay, batch 256, L2 0.01) "
             "are marked *old*. For adamw the L2 column is the decay rate.", ""]
    for est, metric in (("FMClassifier", "auc"), ("FMRegressor", "rmse")):
        names = [n for n in sets if sets[n][0] == metric]
        if not names:
            continue
        for r in rows:
            r["worst_gap"] = {e: max(_gap(metric, r["curves"][n][e - 1], best[n]) for n in names)
                              for e in range(1, a.epochs + 1)}
            r["first"] = next((e for e in range(1, a.epochs + 1)
                               if r["worst_gap"][e] <= 0.005), None)
        ranked = sorted(rows, key=lambda r: r["worst_gap"][a.epochs])
        lines += [f"## {est} ({', '.join(names)})", "",
                  "| rank | solver | learning_rate | lr_decay | batch | L2 | "
                  + " | ".join(f"{n} @{a.epochs}" for n in names) + " | "
                  + " | ".join(f"worst gap @{e}" for e in checkpoints) + " | first |",
                  "|" + "---|" * (7 + len(names) + len(checkpoints))]
        shown = set()
        for i, r in enumerate(ranked):
            q = r["params"]
            old = (q["solver"], q["learning_rate"], q["lr_decay"], q["batch_size"],
                   q["l2_reg_w"]) == ("adam", 0.002, 0.0, 256, 0.01)
            # the 12 best, the old defaults and each solver's best
            if i >= 12 and not old and q["solver"] in shown:
                continue
            shown.add(q["solver"])
            lines.append(f"| {i + 1}{' (old)' if old else ''} | {q['solver']} | "
                         f"{q['learning_rate']} | "
                         f"{q['lr_decay']} | {q['batch_size']} | {q['l2_reg_w']} | "
                         + " | ".join(f"{r['curves'][n][-1]:.4f}" for n in names) + " | "
                         + " | ".join(f"{100 * r['worst_gap'][e]:.2f}%" for e in checkpoints)
                         + f" | {r['first'] or '–'} |")
        lines.append("")
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
