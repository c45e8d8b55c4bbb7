"""The fmnumba runner, ``python -m bench worker``: trains in its own process
on the harness npz files and writes the same JSON as the peer runners
(bench/peers/): a learning curve of test metrics against cumulative fit
time, fit_s, predict_s, peak_rss_mib; with --rss-only the memory footprint
of one fit instead."""
import argparse
import json
import time

from .protocol import (load_npz, metrics, peak_rss_mib, proc_status_bytes, reset_peak_rss,
                       write_json)

MIB = 2**20


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m bench worker",
                                description="fmnumba runner with the peers' JSON output")
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--task", required=True, choices=["regression", "classification"])
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--params", default="{}", help="JSON of estimator parameters")
    p.add_argument("--rss-only", action="store_true",
                   help="measure the footprint of one fit on --train (no test, no curve)")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def _solver_label(est):
    """E.g. 'adam (batch 1024, lr 0.02/(1+1.0·epoch), L2 w 0.001 V 0.01)'."""
    return (f"{est.solver} (batch {est.batch_size}, lr {est.learning_rate}"
            + (f"/(1+{est.lr_decay}·epoch)" if est.lr_decay else "")
            + (f", L2 {est.l2_reg_w}" if est.l2_reg_w == est.l2_reg_v
               else f", L2 w {est.l2_reg_w} V {est.l2_reg_v}") + ")")


def _footprint(a, make):
    """Resident memory of loading --train and one fit of --epochs, above the
    baseline of this warmed-up process, beside the ideal (CSR + P + Adam
    state), MiB."""
    import gc
    gc.collect()
    reset_peak_rss()
    base = proc_status_bytes("VmRSS")
    Xtr, ytr = load_npz(a.train)
    m = make(max_iter=a.epochs)
    t0 = time.perf_counter()
    m.fit(Xtr, ytr)
    fit_s = time.perf_counter() - t0
    hwm = proc_status_bytes("VmHWM")
    base, hwm = (None if b is None else b / MIB for b in (base, hwm))
    st = m._state
    csr_b = Xtr.indptr.nbytes + Xtr.indices.nbytes + Xtr.data.nbytes
    par_b = st.P.nbytes
    opt_b = (st.M.nbytes + st.S.nbytes) if st.M is not None else 0
    return dict(mode="rss", epochs=a.epochs, fit_s=fit_s, baseline_rss_mib=base,
                peak_rss_mib=hwm, fit_footprint_mib=(hwm - base) if hwm and base else None,
                csr_mib=csr_b / MIB, params_mib=par_b / MIB, optimizer_mib=opt_b / MIB,
                ideal_mib=(csr_b + par_b + opt_b) / MIB, y_mib=ytr.nbytes / MIB)


def main(argv):
    """Run one fmnumba measurement (see the module docstring); returns 0."""
    a = _parse(argv)
    import fmnumba
    from fmnumba import FMClassifier, FMRegressor

    params = dict(json.loads(a.params))
    params.setdefault("early_stopping", False)  # fixed epoch counts, as the peers run
    clf = a.task == "classification"
    Est = FMClassifier if clf else FMRegressor

    def make(**kw):
        return Est(n_factors=a.k, n_jobs=a.threads, random_state=a.seed, **{**params, **kw})

    def predict(m, X):
        return m.predict_proba(X)[:, 1] if clf else m.predict(X)

    # warm the JIT (from the on-disk cache, or compiling) on a few rows
    t0 = time.perf_counter()
    Xtr, ytr = load_npz(a.train)
    nw = min(Xtr.shape[0], 512)
    yw = ytr[:nw].copy()
    if clf:
        yw[:2] = (0, 1)
    predict(make(max_iter=1).fit(Xtr[:nw], yw), Xtr[:nw])
    warm_s = time.perf_counter() - t0
    est = make()
    res = {"library": "fmnumba", "version": fmnumba.__version__, "solver": _solver_label(est),
           "k": a.k, "task": a.task, "threads": a.threads, "params": params,
           "n_train": int(Xtr.shape[0]), "nnz_train": int(Xtr.nnz), "warmup_s": warm_s}
    if a.rss_only:
        del Xtr, ytr
        res.update(_footprint(a, make))
        return write_json(res, a.out)

    Xte, yte = load_npz(a.test)
    curve = []
    fit_s = 0.0
    for e in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        if clf:
            est.partial_fit(Xtr, ytr, classes=[0.0, 1.0])
        else:
            est.partial_fit(Xtr, ytr)
        fit_s += time.perf_counter() - t0
        curve.append({"epoch": e, "time_s": fit_s, **metrics(a.task, yte, predict(est, Xte))})
    t0 = time.perf_counter()
    predict(est, Xte)
    predict_s = time.perf_counter() - t0
    res.update(curve=curve, fit_s=fit_s, predict_s=predict_s, final=curve[-1],
               peak_rss_mib=peak_rss_mib(),
               notes="one partial_fit per epoch (Adam state kept), only the partial_fit "
                     "calls timed (input validation included); JIT warmed on 512 rows first")
    return write_json(res, a.out)
