"""Peer runner: xLearn (PyPI `xlearn`, C++ FM with SGD/AdaGrad/FTRL, Hogwild threads).

    python bench/peers/run_xlearn.py --train TR.npz --test TE.npz \
        --task classification --k 8 --epochs 10 [--lr 0.03 --reg 3e-3] [--out r.json]

xlearn 0.40a1 (the PyPI build) has no in-memory DMatrix (`xl.DMatrix` is an
empty stub), so the CSR data is written to libsvm text files in a temp dir.
The train-file write time (`conversion_s`) is added to every fit time; each fit
also re-parses the text file (xlearn's .bin cache is deleted before each fit).
xlearn trains all epochs in one call, so the learning curve is made of separate
fresh fits with epoch = 1, 2, 4, 8, ..., --epochs (each point's time_s is that
fit's own wall time + conversion_s, not a cumulative sum).
xlearn's C++ logging goes to stdout; it is redirected to stderr, so the JSON on
stdout stays clean (prefer --out anyway).
"""
import glob
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

# tuned on a9a, k=8 (see README.md)
DEFAULTS = {
    "classification": dict(opt="adagrad", lr=0.03, reg=3e-3),  # a9a k=8, no norm
    "regression": dict(opt="adagrad", lr=0.05, reg=0.1),  # synthetic one-hot set
}


def extra(p):
    p.add_argument("--opt", default=None, choices=["sgd", "adagrad", "ftrl"])
    p.add_argument("--norm", action="store_true",
                   help="keep xlearn's instance-wise normalisation (default: disabled)")
    p.add_argument("--init", type=float, default=None, help="xlearn init scale")


class _StdoutToStderr:
    """Redirect fd 1 (C++ printf/cout) to fd 2 while inside the block."""

    def __enter__(self):
        sys.stdout.flush()
        self.saved = os.dup(1)
        os.dup2(2, 1)

    def __exit__(self, *exc):
        sys.stdout.flush()
        os.dup2(self.saved, 1)
        os.close(self.saved)
        return False


def main():
    a = C.parse_args(__doc__.splitlines()[0], "0.03 clf / 0.05 reg (adagrad)", "3e-3 clf / 0.1 reg", extra)
    C.set_thread_env(a.threads)
    # libxlearn builds its log path from getenv("USER") and aborts
    # (std::logic_error "construction from null") when USER is unset.
    os.environ.setdefault("USER", "xlearn")
    import numpy as np
    from sklearn.datasets import dump_svmlight_file
    import xlearn as xl

    version = C.dist_version("xlearn", xl)

    d = DEFAULTS[a.task]
    opt = a.opt or d["opt"]
    lr, reg = C.lr_reg(a, d)
    Xtr, ytr, Xte, yte = C.load_train_test(a)
    tmp = tempfile.mkdtemp(prefix="xlearn_peer_")
    ftr, fte = os.path.join(tmp, "train.svm"), os.path.join(tmp, "test.svm")
    fmodel, fout = os.path.join(tmp, "model.out"), os.path.join(tmp, "pred.txt")
    lab = (lambda y: 2.0 * y - 1.0) if a.task == "classification" else (lambda y: y)

    t0 = time.perf_counter()
    dump_svmlight_file(Xtr, lab(ytr), ftr, zero_based=True)
    conv_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dump_svmlight_file(Xte, lab(yte), fte, zero_based=True)
    conv_test_s = time.perf_counter() - t0

    param = {"task": "binary" if a.task == "classification" else "reg", "k": a.k,
             "lr": lr, "lambda": reg, "opt": opt, "nthread": a.threads,
             "log": os.path.join(tmp, "xlearn_log")}
    if a.init is not None:
        param["init"] = a.init

    def clear_cache():
        for f in glob.glob(os.path.join(tmp, "*.bin")):
            os.remove(f)

    def fit(epochs):
        clear_cache()
        m = xl.create_fm()
        m.setTrain(ftr)
        m.setQuiet()  # no per-epoch train-loss evaluation
        if not a.norm:
            m.disableNorm()
        t0 = time.perf_counter()
        with _StdoutToStderr():
            m.fit(dict(param, epoch=epochs), fmodel)
        return time.perf_counter() - t0

    def predict():
        m = xl.create_fm()
        m.setTest(fte)
        if a.task == "classification":
            m.setSigmoid()
        if not a.norm:
            m.disableNorm()
        with _StdoutToStderr():
            m.predict(fmodel, fout)
        return np.loadtxt(fout, dtype=np.float64, ndmin=1)

    res = {"library": "xlearn", "version": version,
           "solver": f"{opt} (lock-free Hogwild, nthread={a.threads})", "k": a.k,
           "task": a.task, "lr": lr, "reg": reg, "norm": bool(a.norm), "threads": a.threads,
           "n_train": Xtr.shape[0], "nnz_train": int(Xtr.nnz), "conversion_s": conv_s}
    try:
        if a.throughput:
            extra_ep = max(a.epochs, 4)
            t1 = fit(1)
            tn = fit(1 + extra_ep)
            ep = max(tn - t1, 1e-9) / extra_ep
            res.update(mode="throughput", epoch_s=ep, fit1_s=t1,
                       fitN_s=tn, N=1 + extra_ep, nnz_k_per_s=Xtr.nnz * a.k / ep,
                       notes="epoch time = (fit(epoch=N) - fit(epoch=1)) / (N-1), N = "
                             "1+max(--epochs,4); both parse the libsvm file; conversion "
                             "excluded")
            C.emit(res, a.out)
            return
        curve = []
        pts = [a.epochs] if a.no_curve else C.schedule(a.epochs)
        for e in pts:
            t = fit(e)
            curve.append({"epoch": e, "time_s": t + conv_s, "xlearn_fit_s": t,
                          **C.metrics(a.task, yte, predict())})
        t0 = time.perf_counter()
        predict()
        predict_s = time.perf_counter() - t0 + conv_test_s
        res.update(curve=curve, fit_s=curve[-1]["time_s"], predict_s=predict_s,
                   final=curve[-1],
                   notes="libsvm temp files (no DMatrix in xlearn 0.40a1): fit_s and curve "
                         "time_s include train-file write (conversion_s) and xlearn's text "
                         "parsing; curve points are separate fresh fits (epoch=1,2,4,..), "
                         "time_s not cumulative; predict_s includes test-file write, "
                         "parsing and reading the output file")
        C.emit(res, a.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
