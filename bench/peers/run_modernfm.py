"""Peer runner: modern-fm (PyPI `modern-fm`, Rust FM with SGD/AdaGrad/Adam/FTRL).

    python bench/peers/run_modernfm.py --train TR.npz --test TE.npz \
        --task classification --k 8 --epochs 10 [--lr 0.02 --reg 3e-3] [--out r.json]

Learning curve: one warm-started `fit(max_iter=1)` call per epoch (optimizer
state carried over by modern-fm's warm_start; `random_state` bumped each epoch
so the row shuffle changes). Each call's input validation (CSR float64 check) is
included in fit time. Evaluation happens between calls and is excluded.
Note: modern-fm's `n_jobs` only parallelises *within a mini-batch*, so with the
default per-row SGD (batch_size=1) training is effectively single-threaded.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

# tuned on a9a, k=8 (see README.md)
DEFAULTS = {
    "classification": dict(optimizer="adagrad", lr=0.02, reg=3e-3),  # a9a k=8
    "regression": dict(optimizer="adagrad", lr=0.05, reg=0.1),  # synthetic one-hot set
}


def extra(p):
    p.add_argument("--optimizer", default=None, choices=["sgd", "adagrad", "adam", "ftrl"])
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--init-scale", type=float, default=0.01)


def main():
    a = C.parse_args(__doc__.splitlines()[0], "0.02 clf / 0.05 reg (adagrad)", "3e-3 clf / 0.1 reg", extra)
    C.set_thread_env(a.threads)
    import modern_fm

    d = DEFAULTS[a.task]
    opt = a.optimizer or d["optimizer"]
    lr, reg = C.lr_reg(a, d)
    Xtr, ytr, Xte, yte = C.load_train_test(a)
    Est = modern_fm.FMClassifier if a.task == "classification" else modern_fm.FMRegressor

    def make(max_iter, warm):
        return Est(n_factors=a.k, optimizer=opt, learning_rate=lr, l2_linear=reg,
                   l2_factors=reg, max_iter=max_iter, batch_size=a.batch_size,
                   init_scale=a.init_scale, warm_start=warm, n_jobs=a.threads,
                   random_state=a.seed, dtype="float64")

    def predict(m):
        if a.task == "classification":
            return m.predict_proba(Xte)[:, 1]
        return m.predict(Xte)

    res = {"library": "modern-fm", "version": modern_fm.__version__,
           "solver": f"{opt} (batch_size={a.batch_size})", "k": a.k, "task": a.task,
           "lr": lr, "reg": reg, "threads": a.threads,
           "n_train": Xtr.shape[0], "nnz_train": int(Xtr.nnz)}

    if a.throughput:
        make(1, False).fit(Xtr[:100], ytr[:100])  # warm-up (imports, page-in)
        m = make(1, False)
        t0 = time.perf_counter()
        m.fit(Xtr, ytr)
        dt = time.perf_counter() - t0
        res.update(mode="throughput", epoch_s=dt, nnz_k_per_s=Xtr.nnz * a.k / dt,
                   notes="one epoch via fit(max_iter=1), includes input validation")
        C.emit(res, a.out)
        return

    curve = []
    fit_s = 0.0
    if a.no_curve:
        m = make(a.epochs, False)
        t0 = time.perf_counter()
        m.fit(Xtr, ytr)
        fit_s = time.perf_counter() - t0
        curve.append({"epoch": a.epochs, "time_s": fit_s, **C.metrics(a.task, yte, predict(m))})
        notes = "single fit(max_iter=epochs) call; curve has only the final point"
    else:
        m = make(1, True)
        for e in range(1, a.epochs + 1):
            m.set_params(random_state=a.seed + e - 1)  # init uses seed; later only shuffles
            t0 = time.perf_counter()
            m.fit(Xtr, ytr)
            fit_s += time.perf_counter() - t0
            curve.append({"epoch": e, "time_s": fit_s, **C.metrics(a.task, yte, predict(m))})
        notes = ("curve from warm_start fit(max_iter=1) per epoch (optimizer state kept); "
                 "per-call validation overhead counted in fit time")
    t0 = time.perf_counter()
    predict(m)
    predict_s = time.perf_counter() - t0
    res.update(curve=curve, fit_s=fit_s, predict_s=predict_s, final=curve[-1],
               notes=notes + "; n_jobs only parallelises within a mini-batch")
    C.emit(res, a.out)


if __name__ == "__main__":
    main()
