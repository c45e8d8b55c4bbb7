"""Peer runner: myFM (PyPI `myfm`, Bayesian FM trained by Gibbs sampling / MCMC).

    python bench/peers/run_myfm.py --train TR.npz --test TE.npz \
        --task classification --k 8 --epochs 200 [--out r.json]

--epochs is the number of Gibbs sweeps (n_iter). Classification is myFM's
probit model (P(y=1) = Phi(score)). The prediction is the posterior predictive
mean over the kept samples (myFM default: all but the first `--burn-in` = 5
sweeps). There is no learning rate or L2 strength: --lr/--reg are ignored
(priors are hierarchical and sampled). One fit() call; the learning curve is
taken from myFM's per-sweep callback: the callback keeps a running mean of
the test predictions of each sweep after burn-in (before burn-in: the current
sample alone), and the time spent inside the callback is subtracted from the
fit time. Training is single-threaded in myFM; --threads is used for predict
(n_workers) and for the OMP/BLAS env vars.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

DEFAULTS = {"init_stdev": 0.1, "burn_in": 5}


def extra(p):
    p.add_argument("--init-stdev", type=float, default=DEFAULTS["init_stdev"])
    p.add_argument("--burn-in", type=int, default=DEFAULTS["burn_in"],
                   help="sweeps not averaged (myFM default 5)")
    p.add_argument("--curve-every", type=int, default=None,
                   help="record a curve point every N sweeps (default: ~20 points)")


def main():
    a = C.parse_args(__doc__.splitlines()[0], "n/a (MCMC)", "n/a (MCMC)", extra)
    C.set_thread_env(a.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    import myfm
    from myfm.base import std_cdf

    Xtr, ytr, Xte, yte = C.load_train_test(a)
    n_iter = a.epochs
    n_kept = min(max(n_iter - a.burn_in, 5), n_iter)
    burn = n_iter - n_kept
    clf = a.task == "classification"
    Est = myfm.MyFMGibbsClassifier if clf else myfm.MyFMGibbsRegressor
    m = Est(rank=a.k, init_stdev=a.init_stdev, random_seed=a.seed)
    ytr_fit = ytr.astype(int) if clf else ytr

    res = {"library": "myfm", "version": getattr(myfm, "__version__", None),
           "solver": "gibbs (MCMC)" + (", probit" if clf else ""), "k": a.k,
           "task": a.task, "n_iter": n_iter, "n_kept_samples": n_kept,
           "init_stdev": a.init_stdev, "threads": a.threads,
           "n_train": Xtr.shape[0], "nnz_train": int(Xtr.nnz)}
    if a.lr is not None or a.reg is not None:
        res["ignored"] = "--lr/--reg have no meaning for Gibbs sampling"

    if a.throughput:
        state = {"t": []}

        def cb_t(i, fm, hyper, hist):
            state["t"].append(time.perf_counter())
            return False, None

        m.fit(Xtr, ytr_fit, n_iter=3, n_kept_samples=1, callback=cb_t)
        sweep = state["t"][2] - state["t"][1]
        res.update(mode="throughput", epoch_s=sweep, nnz_k_per_s=Xtr.nnz * a.k / sweep,
                   notes="time of one Gibbs sweep (3rd minus 2nd callback)")
        C.emit(res, a.out)
        return

    every = n_iter if a.no_curve else (a.curve_every or max(1, n_iter // 20))
    st = {"cb_s": 0.0, "sum": None, "n": 0, "t0": 0.0}
    curve = []

    def cb(i, fm, hyper, hist):  # i is 0-based sweep index
        t_in = time.perf_counter()
        e = i + 1
        record = (e % every == 0) or e == n_iter or (e <= 3 and not a.no_curve)
        if e > burn or record:
            s = fm.predict_score(Xte, [])
            p = std_cdf(s) if clf else s
            if e > burn:
                st["sum"] = p.copy() if st["sum"] is None else st["sum"] + p
                st["n"] += 1
            if record:
                pm = st["sum"] / st["n"] if st["n"] else p
                curve.append({"epoch": e, "time_s": t_in - st["t0"] - st["cb_s"],
                              "averaged_samples": st["n"], **C.metrics(a.task, yte, pm)})
        st["cb_s"] += time.perf_counter() - t_in
        return False, None

    st["t0"] = time.perf_counter()
    m.fit(Xtr, ytr_fit, n_iter=n_iter, n_kept_samples=n_kept, callback=cb)
    fit_s = time.perf_counter() - st["t0"] - st["cb_s"]
    t0 = time.perf_counter()
    pred = m.predict_proba(Xte, n_workers=a.threads) if clf else m.predict(Xte, n_workers=a.threads)
    predict_s = time.perf_counter() - t0
    final = {"epoch": n_iter, "time_s": fit_s, **C.metrics(a.task, yte, pred)}
    res.update(curve=curve, fit_s=fit_s, predict_s=predict_s, final=final,
               callback_s=st["cb_s"],
               notes="single fit(); curve from per-sweep callback with its own time "
                     "subtracted (running posterior mean after burn-in); final = "
                     "myFM's predict over kept samples")
    C.emit(res, a.out)


if __name__ == "__main__":
    main()
