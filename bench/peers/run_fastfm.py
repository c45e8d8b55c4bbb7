"""Peer runner: fastFM (PyPI `fastFM`, C FM library with ALS / MCMC / SGD solvers).

    python bench/peers/run_fastfm.py --train TR.npz --test TE.npz \
        --task classification --k 8 --epochs 100 [--solver mcmc|als] [--out r.json]

--epochs = ALS sweeps or MCMC samples (fastFM's n_iter).
 * ALS (`fastFM.als`): warm start via fit(n_more_iter=...), so the learning
   curve is cumulative (blocks of --curve-every sweeps). Classification ALS is
   fastFM's least-squares fit on +-1 labels with P = Phi(score). --reg = l2_reg
   (same for w and V).
 * MCMC (`fastFM.mcmc`): fit_predict() samples and averages test predictions
   inside the C loop, so test prediction cost is part of every sweep (predict_s
   is reported as 0 / included). Regression supports warm start
   (n_more_iter): cumulative curve. Classification has no warm start: the curve
   is separate fresh fits with n_iter = 1, 2, 4, ..., --epochs (time_s of each
   point is that fit's own time). --lr/--reg are ignored (hyper-priors sampled).
fastFM-core is single-threaded (--threads only sets OMP/BLAS env vars).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

# tuned on a9a, k=8 (see README.md)
DEFAULTS = {"solver": "mcmc", "init_stdev": 0.1,
            "als_reg": {"classification": 100.0, "regression": 10.0}}


def extra(p):
    p.add_argument("--solver", default=DEFAULTS["solver"], choices=["als", "mcmc"])
    p.add_argument("--init-stdev", type=float, default=DEFAULTS["init_stdev"])
    p.add_argument("--curve-every", type=int, default=None,
                   help="sweeps per curve block for warm-startable solvers (default ~20 pts)")


def main():
    a = C.parse_args(__doc__.splitlines()[0], "n/a", "100 clf / 10 reg (ALS only)", extra)
    C.set_thread_env(a.threads)
    import scipy.sparse as sp
    import fastFM
    from fastFM import als, mcmc

    version = C.dist_version("fastFM", fastFM)

    Xtr, ytr, Xte, yte = C.load_train_test(a)
    clf = a.task == "classification"
    t0 = time.perf_counter()
    Xtr_c, Xte_c = sp.csc_matrix(Xtr), sp.csc_matrix(Xte)
    conv_s = time.perf_counter() - t0
    ytr_f = 2.0 * ytr - 1.0 if clf else ytr
    reg = a.reg if a.reg is not None else DEFAULTS["als_reg"][a.task]
    n = a.epochs
    every = n if a.no_curve else (a.curve_every or max(1, n // 20))

    res = {"library": "fastFM", "version": version, "solver": a.solver, "k": a.k,
           "task": a.task, "threads": a.threads, "init_stdev": a.init_stdev,
           "n_train": Xtr.shape[0], "nnz_train": int(Xtr.nnz), "conversion_s": conv_s}
    if a.solver == "als":
        res["reg"] = reg
    else:
        res["n_kept_samples"] = a.epochs  # fit_predict averages every sweep: no burn-in
        if a.lr is not None or a.reg is not None:
            res["ignored"] = "--lr/--reg have no meaning for MCMC"

    def make(n_iter):
        if a.solver == "als":
            Est = als.FMClassification if clf else als.FMRegression
            return Est(n_iter=n_iter, init_stdev=a.init_stdev, rank=a.k,
                       random_state=a.seed + 1, l2_reg_w=reg, l2_reg_V=reg)
        Est = mcmc.FMClassification if clf else mcmc.FMRegression
        return Est(n_iter=n_iter, init_stdev=a.init_stdev, rank=a.k, random_state=a.seed + 1)

    def als_pred(m):
        return m.predict_proba(Xte_c) if clf else m.predict(Xte_c)

    if a.throughput:
        if a.solver == "als":
            m = make(1)
            m.fit(Xtr_c, ytr_f)
            t0 = time.perf_counter()
            m.fit(Xtr_c, ytr_f, n_more_iter=1)
            ep = time.perf_counter() - t0
        else:
            ts = []
            for k in (1, 3):
                m = make(k)
                t0 = time.perf_counter()
                (m.fit_predict_proba if clf else m.fit_predict)(Xtr_c, ytr_f, Xte_c)
                ts.append(time.perf_counter() - t0)
            ep = (ts[1] - ts[0]) / 2
        res.update(mode="throughput", epoch_s=ep, nnz_k_per_s=Xtr.nnz * a.k / ep,
                   notes="one ALS sweep (warm start) / one MCMC sample incl. its test "
                         "prediction ((t(3)-t(1))/2)")
        C.emit(res, a.out)
        return

    curve, fit_s, predict_s = [], 0.0, 0.0
    if a.solver == "als" or (a.solver == "mcmc" and not clf):
        done = 0
        m = None
        while done < n:
            step = min(every if done else min(every, n), n - done)
            t0 = time.perf_counter()
            if a.solver == "als":
                if m is None:
                    m = make(step)
                    m.fit(Xtr_c, ytr_f)
                else:
                    m.fit(Xtr_c, ytr_f, n_more_iter=step)
                fit_s += time.perf_counter() - t0
                pred = als_pred(m)
            else:
                if m is None:
                    m = make(step)
                    pred = m.fit_predict(Xtr_c, ytr_f, Xte_c)
                else:
                    pred = m.fit_predict(Xtr_c, ytr_f, Xte_c, n_more_iter=step)
                fit_s += time.perf_counter() - t0
            done += step
            curve.append({"epoch": done, "time_s": fit_s + conv_s,
                          **C.metrics(a.task, yte, pred)})
        if a.solver == "als":
            t0 = time.perf_counter()
            als_pred(m)
            predict_s = time.perf_counter() - t0
        fit_s += conv_s
        how = "cumulative warm-start blocks (n_more_iter)"
    else:  # mcmc classification: no warm start
        for e in ([n] if a.no_curve else C.schedule(n)):
            m = make(e)
            t0 = time.perf_counter()
            pred = m.fit_predict_proba(Xtr_c, ytr_f, Xte_c)
            t = time.perf_counter() - t0 + conv_s
            curve.append({"epoch": e, "time_s": t, **C.metrics(a.task, yte, pred)})
        fit_s = curve[-1]["time_s"]
        how = "separate fresh fits n_iter=1,2,4,.. (no warm start for MCMC classification)"
    res.update(curve=curve, fit_s=fit_s, predict_s=predict_s, final=curve[-1],
               notes=f"curve: {how}; times include CSR->CSC conversion (conversion_s)"
                     + ("; MCMC predicts the test set inside each sweep, so predict_s=0 "
                        "and fit_s includes test prediction" if a.solver == "mcmc" else ""))
    C.emit(res, a.out)


if __name__ == "__main__":
    main()
