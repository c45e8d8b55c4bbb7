"""``fmnumba demo``: fit both estimators on planted synthetic data and print
their test figures beside a trivial baseline and the planted model's."""
import sys
import time


def _epochs(n):
    return f"{n} epoch{'' if n == 1 else 's'}"


def run_demo(n_jobs=None, seed=0, quick=False, out=None):
    """The ``fmnumba demo`` run; returns a dict of the figures it prints."""
    import numba
    import numpy as np
    from sklearn.metrics import log_loss, roc_auc_score

    from ..datasets import make_clicks, make_ratings
    from ..estimators import FMClassifier, FMRegressor

    out = out or sys.stdout
    n = 20_000 if quick else 100_000
    max_threads = numba.config.NUMBA_NUM_THREADS
    threads = numba.get_num_threads() if n_jobs is None else (
        max_threads if n_jobs == -1 else min(n_jobs, max_threads))
    fit_kw = dict(max_iter=30, early_stopping=True, n_iter_no_change=2, random_state=seed,
                  n_jobs=n_jobs)
    res = {}
    t_all = time.perf_counter()
    print(f"fmnumba demo: {n:,} rows per task, 80/20 split, k=8, {threads} thread(s), "
          f"seed {seed}", file=out)

    def timed_fit(cls, Xtr, ytr):
        t0 = time.perf_counter()  # first call: JIT compile or load from Numba's disk cache
        cls(max_iter=1, n_jobs=n_jobs, random_state=seed).fit(Xtr[:64], ytr[:64]).predict(Xtr[:8])
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = cls(**fit_kw).fit(Xtr, ytr)
        return model, time.perf_counter() - t0, compile_s

    # ratings
    rat = make_ratings(n, random_state=seed)
    Xtr, Xte, ytr, yte = rat.split(0.2, random_state=seed)
    reg, fit_s, comp_s = timed_fit(FMRegressor, Xtr, ytr)
    rmse = float(np.sqrt(np.mean((reg.predict(Xte) - yte) ** 2)))
    base = float(np.sqrt(np.mean((ytr.mean() - yte) ** 2)))
    print(f"\nratings ({rat.field_sizes[0]:,} users x {rat.field_sizes[1]:,} items + "
          f"{len(rat.field_sizes) - 2} context fields, planted FM + N(0, {rat.noise:g}²) noise)",
          file=out)
    print(f"  FMRegressor       test RMSE {rmse:.4f}   fit {fit_s:.2f} s ({_epochs(reg.n_iter_)}, "
          f"early stopping)   compile {comp_s:.2f} s", file=out)
    print(f"  baseline          global mean RMSE {base:.4f}", file=out)
    print(f"  noise floor       RMSE {rat.noise:.4f} (the planted model's error)", file=out)
    res["ratings"] = {"rmse": rmse, "baseline_rmse": base, "noise_floor_rmse": rat.noise,
                      "fit_s": fit_s, "compile_s": comp_s, "epochs": reg.n_iter_}

    # clicks
    clk = make_clicks(n, random_state=seed)
    Xtr, Xte, ytr, yte = clk.split(0.2, random_state=seed)
    clf, fit_s, comp_s = timed_fit(FMClassifier, Xtr, ytr)
    p = clf.predict_proba(Xte)[:, 1]
    auc, ll = float(roc_auc_score(yte, p)), float(log_loss(yte, p, labels=[0, 1]))
    rate = float(ytr.mean())
    base_ll = float(log_loss(yte, np.full(yte.shape, rate), labels=[0, 1]))
    d_true = clk.decision(Xte)
    p_true = 0.5 * (1 + np.tanh(0.5 * d_true))
    auc_true = float(roc_auc_score(yte, d_true))
    ll_true = float(log_loss(yte, p_true, labels=[0, 1]))
    print(f"\nclicks ({len(clk.field_sizes)} categorical fields, {sum(clk.field_sizes):,} "
          f"features, {rate:.1%} positives, P(click) = σ(planted FM))", file=out)
    print(f"  FMClassifier      test AUC {auc:.4f}  logloss {ll:.4f}   fit {fit_s:.2f} s "
          f"({_epochs(clf.n_iter_)}, early stopping)   compile {comp_s:.2f} s", file=out)
    print(f"  baseline          base rate AUC 0.5000  logloss {base_ll:.4f}", file=out)
    print(f"  noise floor       AUC {auc_true:.4f}  logloss {ll_true:.4f} (the planted model)",
          file=out)
    res["clicks"] = {"auc": auc, "logloss": ll, "baseline_auc": 0.5, "baseline_logloss": base_ll,
                     "noise_floor_auc": auc_true, "noise_floor_logloss": ll_true,
                     "fit_s": fit_s, "compile_s": comp_s, "epochs": clf.n_iter_}
    total = time.perf_counter() - t_all
    res["total_s"] = total
    print(f"\ntotal {total:.1f} s (compile = first call: JIT compile, or load from Numba's "
          "on-disk cache)", file=out)
    return res
