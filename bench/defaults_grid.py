"""The grid that chose fmnumba's default hyperparameters (README, "Defaults").

Classification sets (FMClassifier): the real LIBSVM sets a9a (given
train/test split) and w8a (80/20 by numpy.random.default_rng(0).permutation),
both scored by test AUC and logloss, plus two synthetic click sets scored by
AUC: make_clicks(100_000) and sparse clicks (200k rows over 200k
Zipf-popular features in 21 fields). Regression sets (FMRegressor): a
MovieLens-shaped synthetic set (943 users × 1682 items, 100k ratings,
planted FM, σ = 0.9), make_ratings(100_000) (σ = 0.5) and a sparse set of
the click set's shape (σ = 0.5), scored by test RMSE. Real sets are skipped
when ../shared/data lacks them.

Every setting of the grid (Adam; learning rate, lr_decay, batch size, L2
on w and on V) is trained epoch by epoch with partial_fit and scored after
each epoch; a setting's gap on a metric is its distance to the best value
any setting reached after the last epoch (AUC in absolute points, logloss
and RMSE relative). The classifier's defaults are chosen on the
real sets (a default must not lose there to win on synthetic data): among
the settings whose worst real-set gap at the default epoch count is within
the targets (0.2 AUC points, 2% logloss), the one with the smallest worst
gap on the synthetic sets. The regressor is ranked likewise with the
MovieLens-shaped set (target 1% RMSE) in the real sets' place.

The last sections fit each estimator with its *actual* defaults (fit, no
arguments but random_state=0) on every set, with and without early
stopping, so the adaptive `early_stopping="auto"` is measured too, and
refit them on the targeted sets with other seeds (--seeds) to show how far
seed noise moves the gaps.

The grid runs one seed (0), 2 threads; writes bench/results/defaults-grid.md
and .json.
--reuse JSON takes the curves of an earlier run that match a setting and a
set instead of training them again (training is deterministic at any
thread count).

    python -m bench.defaults_grid [--epochs 30] [--quick] [--reuse FILE.json]
                                  [--seeds 0,1,2]
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
AUC_TARGET = 0.002      # absolute AUC (0.2 points)
LOGLOSS_TARGET = 0.02   # relative
RMSE_TARGET = 0.01      # relative
HEADROOM = 0.75         # rank settings within 3/4 of their targets alike (seed noise)


def _split80(X, y):
    perm = np.random.default_rng(0).permutation(X.shape[0])
    n_test = int(round(0.2 * X.shape[0]))
    te, tr = perm[:n_test], perm[n_test:]
    return X[tr], y[tr], X[te], y[te]


def _datasets(quick):
    """{name: (task, real, Xtr, ytr, Xte, yte)}; classification labels in {0, 1}."""
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
        sets["a9a"] = ("clf", True, Xtr.tocsr(), (ytr > 0) * 1.0, Xte.tocsr(), (yte > 0) * 1.0)
    if (SHARED_DATA / "w8a").exists():
        X, y = load_svmlight_file(str(SHARED_DATA / "w8a"), n_features=300)
        Xtr, ytr, Xte, yte = _split80(X.tocsr(), (y > 0) * 1.0)
        if quick:
            Xtr, ytr = Xtr[:8000], ytr[:8000]
        sets["w8a"] = ("clf", True, Xtr, ytr, Xte, yte)
    d = make_clicks(n, random_state=0)
    Xtr, Xte, ytr, yte = d.split(0.2)
    sets["clicks"] = ("clf", False, Xtr, ytr, Xte, yte)
    ns = 2 * n
    d = make_clicks(ns, field_sizes=large_field_sizes(ns), random_state=0)
    Xtr, Xte, ytr, yte = d.split(0.2)
    sets["sparse_clicks"] = ("clf", False, Xtr, ytr, Xte, yte)
    for name, kw in (("movielens_shaped", dict(n_users=943, n_items=1682, n_context=(),
                                               noise=0.9)),
                     ("ratings", dict(noise=0.5))):
        d = make_ratings(n, random_state=0, **kw)
        Xtr, Xte, ytr, yte = d.split(0.2)
        sets[name] = ("reg", False, Xtr, ytr, Xte, yte)
    d = make_fm_data(ns, large_field_sizes(ns), random_state=0)
    Xtr, Xte, ytr, yte = d.split(0.2)
    sets["sparse_ratings"] = ("reg", False, Xtr, ytr, Xte, yte)
    return sets


def _metrics(task, real, model, Xte, yte):
    """{metric: value} of a fitted model on the test rows."""
    from sklearn.metrics import log_loss, roc_auc_score
    if task == "reg":
        return {"rmse": float(np.sqrt(np.mean((model.predict(Xte) - yte) ** 2)))}
    out = {"auc": float(roc_auc_score(yte, model.decision_function(Xte)))}
    if real:
        out["logloss"] = float(log_loss(yte, model.predict_proba(Xte)[:, 1], labels=[0, 1]))
    return out


def _estimator(task, **params):
    from fmnumba import FMClassifier, FMRegressor
    return (FMClassifier if task == "clf" else FMRegressor)(**params)


def _curves(task, real, params, Xtr, ytr, Xte, yte, epochs, seed):
    """({metric: [value after each epoch]}, fit seconds)."""
    m = _estimator(task, n_factors=8, random_state=seed, max_iter=1, **params)
    out = {}
    t = 0.0
    for e in range(epochs):
        t0 = time.perf_counter()
        if e == 0 and task == "clf":
            m.partial_fit(Xtr, ytr, classes=np.array([0.0, 1.0]))
        else:
            m.partial_fit(Xtr, ytr)
        t += time.perf_counter() - t0
        for k, v in _metrics(task, real, m, Xte, yte).items():
            out.setdefault(k, []).append(v)
    return out, t


def _gap(metric, value, best):
    """How far value is behind best: AUC in absolute points, others relative."""
    return best - value if metric == "auc" else (value - best) / best


def _target(metric):
    return {"auc": AUC_TARGET, "logloss": LOGLOSS_TARGET, "rmse": RMSE_TARGET}[metric]


def _fmt_gap(metric, g):
    return f"{100 * g:.2f} pt" if metric == "auc" else f"{100 * g:.2f}%"


def _grid(quick):
    """{task: [params]}: the settings each estimator is ranked over."""
    if quick:
        clf = [dict(learning_rate=lr, lr_decay=d, batch_size=256, l2_reg_w=0.003,
                    l2_reg_v=0.003) for lr in (0.005, 0.02) for d in (0.0, 1.0)]
        return {"clf": clf, "reg": clf}
    clf = [dict(learning_rate=lr, lr_decay=d, batch_size=bs, l2_reg_w=l2, l2_reg_v=l2)
           for lr, d, bs, l2 in itertools.product((0.002, 0.005, 0.01, 0.02, 0.05),
                                                  (0.0, 0.5, 1.0), (256, 1024),
                                                  (0.001, 0.003, 0.01))]
    # finer around the real sets' best region, with separate L2 on w and V
    clf += [dict(learning_rate=lr, lr_decay=d, batch_size=bs, l2_reg_w=lw, l2_reg_v=lv)
            for lr, d, bs, lw, lv in itertools.product((0.015, 0.02, 0.03), (0.25, 0.5),
                                                       (256, 512), (0.001, 0.003),
                                                       (0.005, 0.01, 0.02))]
    reg = [dict(learning_rate=lr, lr_decay=d, batch_size=bs, l2_reg_w=l2, l2_reg_v=l2)
           for lr, d, bs, l2 in itertools.product((0.002, 0.005, 0.01, 0.02),
                                                  (0.0, 0.5, 1.0), (256, 1024),
                                                  (0.003, 0.01, 0.03))]
    return {"clf": clf, "reg": reg}


def _old_rows(path, epochs):
    """{(params key, set): {metric: curve}} from an earlier run's JSON."""
    if not path:
        return {}
    old = json.loads(Path(path).read_text())
    if old.get("epochs") != epochs:
        return {}
    done = {}
    for r in old["rows"]:
        q = dict(r["params"])
        if q.pop("solver", "adam") != "adam":
            continue
        q.pop("init_std", None)
        for name, c in r["curves"].items():
            # earlier files held a bare AUC or RMSE list per set
            curves = c if isinstance(c, dict) else {("auc" if name in ("a9a", "clicks",
                                                                   "sparse_clicks")
                                                     else "rmse"): c}
            done[(json.dumps(q, sort_keys=True), name)] = (curves, r["fit_s"].get(name))
    return done


def _run_grid(sets, grid, epochs, done):
    rows = {"clf": [], "reg": []}
    for task, settings in grid.items():
        names = [n for n in sets if sets[n][0] == task]
        for params in settings:
            key = json.dumps(params, sort_keys=True)
            row = {"params": params, "curves": {}, "fit_s": {}}
            for name in names:
                _, real, Xtr, ytr, Xte, yte = sets[name]
                need = {"auc", "logloss"} if real else {"auc"} if task == "clf" else {"rmse"}
                old = done.get((key, name))
                if old is not None and need <= set(old[0]):
                    row["curves"][name], row["fit_s"][name] = old
                    continue
                row["curves"][name], row["fit_s"][name] = _curves(
                    task, real, params, Xtr, ytr, Xte, yte, epochs, seed=0)
            rows[task].append(row)
            print(task, params, {n: {k: round(v[-1], 4) for k, v in c.items()}
                                 for n, c in row["curves"].items()}, flush=True)
    return rows


def _bests(sets, rows, epochs):
    """{(set, metric): the best value of any setting after `epochs` epochs}."""
    best = {}
    for task, task_rows in rows.items():
        for r in task_rows:
            for name, curves in r["curves"].items():
                for metric, c in curves.items():
                    v = c[epochs - 1]
                    b = best.get((name, metric))
                    if b is None or (v > b if metric == "auc" else v < b):
                        best[(name, metric)] = v
    return best


def _targeted(sets, name):
    """Whether a set carries a target: the real sets for the classifier,
    the MovieLens-shaped one for the regressor."""
    return sets[name][1] or name == "movielens_shaped"


def _score_rows(sets, rows, best, epochs):
    """Adds to every row its gaps at `epochs`: per (set, metric), and the
    worst over the targeted and the other sets, each divided by its target."""
    for task, task_rows in rows.items():
        for r in task_rows:
            gaps = {f"{n}/{m}": _gap(m, c[epochs - 1], best[(n, m)])
                    for n, curves in r["curves"].items() for m, c in curves.items()}
            real = [g / _target(k.split("/")[1]) for k, g in gaps.items()
                    if _targeted(sets, k.split("/")[0])]
            synth = [g / _target(k.split("/")[1]) for k, g in gaps.items()
                     if not _targeted(sets, k.split("/")[0])]
            r["gaps"] = gaps
            r["real_score"] = max(real) if real else 0.0
            r["synthetic_score"] = max(synth) if synth else 0.0


def _ranked(task_rows):
    """Targeted sets first: within their targets (score <= 1), then the others."""
    return sorted(task_rows, key=lambda r: (max(r["real_score"], HEADROOM),
                                            r["synthetic_score"], r["real_score"]))


def _defaults(sets, task, early_stopping):
    """Fit the estimator with its defaults on each of the task's sets."""
    out = {}
    for name, (t, real, Xtr, ytr, Xte, yte) in sets.items():
        if t != task:
            continue
        kw = {} if early_stopping is None else {"early_stopping": early_stopping}
        m = _estimator(task, random_state=0, **kw)
        t0 = time.perf_counter()
        m.fit(Xtr, ytr)
        out[name] = {"metrics": _metrics(task, real, m, Xte, yte),
                     "epochs": int(m.n_iter_), "fit_s": time.perf_counter() - t0}
    return out


def _seed_runs(sets, task, seeds):
    """{set: [{metric: value} per seed]}: the defaults refit on each targeted set."""
    out = {}
    for name, (t, real, Xtr, ytr, Xte, yte) in sets.items():
        if t != task or not _targeted(sets, name):
            continue
        for seed in seeds:
            m = _estimator(task, random_state=seed).fit(Xtr, ytr)
            out.setdefault(name, []).append(_metrics(task, real, m, Xte, yte))
    return out


def _seeds_table(task, runs, best, seeds):
    lines = ["| data set | metric | best in grid | " + " | ".join(f"seed {s}" for s in seeds)
             + " | worst gap |", "|---|---|---|" + "---|" * (len(seeds) + 1)]
    for name, per_seed in runs.items():
        for m in per_seed[0]:
            vals = [r[m] for r in per_seed]
            g = max(_gap(m, v, best[(name, m)]) for v in vals)
            lines.append(f"| {name} | {m} | {best[(name, m)]:.4f} | "
                         + " | ".join(f"{v:.4f}" for v in vals)
                         + f" | {_fmt_gap(m, g)} {'✓' if g <= _target(m) else '✗'} |")
    return lines


def _table(sets, task, ranked, best, epochs, params_of_default):
    names = [n for n in sets if sets[n][0] == task]
    cols = [(n, m) for n in names for m in (("auc", "logloss") if sets[n][1] and task == "clf"
                                            else ("auc",) if task == "clf" else ("rmse",))]
    lines = ["| rank | learning_rate | lr_decay | batch | L2 w | L2 V | "
             + " | ".join(f"{n} {m}" for n, m in cols) + " | targeted / target | others / target |",
             "|" + "---|" * (8 + len(cols))]
    for i, r in enumerate(ranked):
        q = r["params"]
        mark = " (default)" if q == params_of_default else ""
        if i >= 15 and not mark:
            continue
        lines.append(f"| {i + 1}{mark} | {q['learning_rate']} | {q['lr_decay']} | "
                     f"{q['batch_size']} | {q['l2_reg_w']} | {q['l2_reg_v']} | "
                     + " | ".join(f"{r['curves'][n][m][epochs - 1]:.4f}" for n, m in cols)
                     + f" | {r['real_score']:.2f} | {r['synthetic_score']:.2f} |")
    return lines


def _defaults_table(sets, task, runs, best):
    lines = ["| data set | metric | best in grid | early_stopping | value | gap | epochs | "
             "fit s |", "|---|---|---|---|---|---|---|---|"]
    for label, res in runs.items():
        for name, r in res.items():
            for m, v in r["metrics"].items():
                g = _gap(m, v, best[(name, m)])
                ok = "" if not _targeted(sets, name) else \
                    (" ✓" if g <= _target(m) else " ✗")
                lines.append(f"| {name} | {m} | {best[(name, m)]:.4f} | {label} | {v:.4f} | "
                             f"{_fmt_gap(m, g)}{ok} | {r['epochs']} | {r['fit_s']:.2f} |")
    return lines


CHOICE = [
    "Choice: the classifier's default is rank 1 (learning rate 0.03, lr_decay 0.5, batch 512, "
    "L2 0.001 on w and 0.01 on V). Fit with its defaults (seed 0) it is within every real-set "
    "target: a9a 0.15 AUC points and 0.69% logloss, w8a 0.16 points and 1.96% logloss. The "
    "two real sets pull apart: a9a's AUC wants an L2 on V of 0.01 or more, w8a's logloss one "
    "of 0.005 (its best, 0.0416, is such a setting, 0.29 AUC points short on a9a). The margin "
    "on w8a's logloss is within seed noise: refit with seeds 1 and 2 it is 1.77% and 2.69% "
    "(last classifier table); ranks 2 to 5, refit with the same three seeds, were within "
    "every target at one seed of three, the default at two. On the synthetic sets its grid "
    "row is 4.06 (clicks) and 4.82 (sparse clicks) AUC points short of the best, against "
    "3.02 and 8.66 for the former default (learning rate 0.02, lr_decay 1, batch 256, L2 "
    "0.003; now rank 54, 0.26 points short on a9a's AUC and 5.0% on w8a's logloss). The "
    "regressor's default is rank 1. early_stopping='auto' (on above 10,000 rows, as "
    "scikit-learn's HistGradientBoosting) was measured and is not the default: holding out "
    "10% of the rows costs more on these sets than stopping saves (w8a's logloss 7.2% short "
    "with it; last tables).", ""]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--quick", action="store_true", help="small data and grid (smoke test)")
    p.add_argument("--out", default=str(RESULTS / "defaults-grid"))
    p.add_argument("--reuse", default=None,
                   help="JSON of an earlier run: its curves (same epochs) are reused")
    p.add_argument("--seeds", default="0,1,2",
                   help="comma list: seeds the defaults are refit with on the targeted sets")
    a = p.parse_args(argv)
    seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    import numba
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    from fmnumba import FMClassifier, FMRegressor
    sets = _datasets(a.quick)
    rows = _run_grid(sets, _grid(a.quick), a.epochs, _old_rows(a.reuse, a.epochs))
    best = _bests(sets, rows, a.epochs)
    _score_rows(sets, rows, best, a.epochs)
    defaults = {task: {"False (default)": _defaults(sets, task, False),
                       "auto": _defaults(sets, task, "auto")}
                for task in ("clf", "reg")}
    seed_runs = {task: _seed_runs(sets, task, seeds) for task in ("clf", "reg")}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out + ".json", "w") as f:
        json.dump({"epochs": a.epochs, "best": {f"{n}/{m}": v for (n, m), v in best.items()},
                   "rows": rows["clf"] + rows["reg"], "defaults": defaults,
                   "seeds": seeds, "defaults_by_seed": seed_runs}, f, indent=1)
    n_sets = len(sets)
    lines = [f"# Defaults grid ({len(rows['clf'])} classifier and {len(rows['reg'])} regressor "
             f"settings, {n_sets} data sets, up to {a.epochs} epochs, k = 8, Adam, seed 0, "
             "2 threads)", "",
             "Command: `python -m bench.defaults_grid" + (" --quick" if a.quick else "") + "`", "",
             f"Best test metric of any setting after {a.epochs} epochs: "
             + ", ".join(f"{n} {m} {v:.4f}" for (n, m), v in best.items()) + ".", "",
             "Gaps to those bests at the last epoch: AUC in absolute points, logloss and RMSE "
             "relative. *targeted / target* is the worst gap over the sets with a target (the "
             "real a9a and w8a for the classifier, the MovieLens-shaped set for the "
             "regressor) divided by its target (0.2 AUC points, 2% logloss, 1% RMSE): 1.00 "
             "or less is within every target; *others / target* the same over the other "
             "(synthetic) sets. Settings are ranked by the first (those within 3/4 of "
             f"their targets alike, room for seed noise), then the second: a default may "
             "not lose on real data to win on synthetic data.", ""] + CHOICE
    defaults_params = {}
    for task, est in (("clf", FMClassifier()), ("reg", FMRegressor())):
        q = {k: est.get_params()[k] for k in ("learning_rate", "lr_decay", "batch_size",
                                               "l2_reg_w", "l2_reg_v")}
        defaults_params[task] = q
    for task, title in (("clf", "FMClassifier"), ("reg", "FMRegressor")):
        names = [n for n in sets if sets[n][0] == task]
        lines += [f"## {title} ({', '.join(names)}), after {a.epochs} epochs", ""]
        lines += _table(sets, task, _ranked(rows[task]), best, a.epochs,
                        defaults_params[task])
        lines += ["", f"### {title}() with its defaults, fit on each set", ""]
        lines += _defaults_table(sets, task, defaults[task], best)
        if seed_runs[task]:
            lines += ["", f"### {title}() with its defaults, by seed (targeted sets)", ""]
            lines += _seeds_table(task, seed_runs[task], best, seeds)
        lines.append("")
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
