"""Bayesian FM and ALS benchmark: fmnumba's Gibbs sampler (solver="mcmc")
against myFM's and fastFM's, and fmnumba's ALS against fastFM's, side by
side on the synthetic MovieLens-shaped ratings, a9a and w8a (and MovieLens
itself with --movielens PATH).

    python -m bench.bayes [--datasets small,a9a,w8a] [--repeats 3] [--quick]
                          [--peer-python PY] [--peers myfm,fastfm]

Each (library, solver, data set, repeat) runs in its own process (peak RSS
is per process); the order of the libraries rotates from repeat to repeat.
Every fit has k = 8 and --sweeps (200) sweeps. MCMC: fmnumba and myFM keep
the last 195 samples (myFM's default: all after 5 burn-in sweeps) and
average their predictions; fastFM has no burn-in setting and can only
predict the test set handed to fit_predict, averaging its predictions over
every sweep inside the sampler (so its fit time includes 200 test-set
predictions). ALS (regression sets only; fmnumba's ALS is for FMRegressor):
fmnumba solver="als" and fastFM's als.FMRegression minimise the same
objective with λ_w = λ_v = --als-l2. Everything else is each library's
default (init_std 0.01 for fmnumba, init_stdev 0.1 for myFM and fastFM).
fmnumba warms its JIT cache on a 2-sweep fit first (reported as compile_s)
and runs on --threads threads; myFM and fastFM train on one (their solvers
are sequential). All processes get OMP_WAIT_POLICY=PASSIVE unless --spin.
A peer run that fails is recorded with its error, not dropped.

Reported per run: test RMSE or AUC / log loss, fit time, time per sweep,
nnz·k/s per sweep, peak RSS, each peer's fit time over fmnumba's (same
solver); for fmnumba's mcmc also one Adam epoch's nnz·k/s on the same data
and where a sweep's time goes (cProfile over the kernel calls of a 20-sweep
fit). Writes bench/results/bayes.{json,md,png} (bench/bayes_report.py).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .bayes_report import report
from .data import DEFAULT_CACHE, REPO, SHARED_DATA, prepare
from .protocol import load_npz, metrics, peak_rss_mib, save_npz, thread_env

RESULTS = REPO / "bench" / "results"
DATASETS = ("small", "a9a", "w8a")
MYFM_BURN_IN = 5
# λ_w = λ_v of both ALS fits: the best of 0.1, 0.3, 1, 3, 10, 30, 100 for
# fmnumba's ALS on a 20% validation split of the synthetic ratings' training rows
ALS_L2 = 1.0
# both ALS fits start from factors of this standard deviation (fastFM's
# default); fmnumba's ALS also runs with its own default (the "default" row)
ALS_INIT_STD = 0.1
PEERS = ("myfm", "fastfm")
RUN_TIMEOUT_S = 1800


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------
def _prepare_w8a(cache, quick):
    """w8a 80/20 by numpy.random.default_rng(0).permutation (rows kept in order)."""
    from fmnumba import readers as R
    sub = Path(cache) / ("quick" if quick else "full")
    sub.mkdir(parents=True, exist_ok=True)
    tr, te = sub / "w8a_train.npz", sub / "w8a_test.npz"
    if not (tr.exists() and te.exists()):
        X, y = R.load_libsvm(SHARED_DATA / "w8a", n_features=300, zero_based=False)
        y = (y > 0).astype(float)
        if quick:
            X, y = X[:6000], y[:6000]
        perm = np.random.default_rng(0).permutation(X.shape[0])
        n_test = int(round(0.2 * X.shape[0]))
        te_i, tr_i = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        save_npz(tr, X[tr_i], y[tr_i])
        save_npz(te, X[te_i], y[te_i])
    return tr, te, {"name": "w8a", "task": "classification",
                    "description": "LIBSVM w8a, 80/20 split by default_rng(0).permutation"}


def dataset(name, cache, quick, movielens=None):
    if name == "w8a":
        return _prepare_w8a(cache, quick)
    return prepare(name, quick, cache, movielens=movielens, log=lambda *a: None)


# --------------------------------------------------------------------------
# the fmnumba worker (runs in its own process)
# --------------------------------------------------------------------------
def _estimator(task, solver, k, sweeps, seed, n_jobs, l2=ALS_L2, init_std=None,
               n_burnin=MYFM_BURN_IN, n_kept=None):
    """fmnumba with its defaults: mcmc keeping myFM's number of samples, or
    ALS with λ_w = λ_v = l2 (and init_std unless None)."""
    from fmnumba import FMClassifier, FMRegressor
    if solver == "als":
        init = {} if init_std is None else {"init_std": init_std}
        return FMRegressor(n_factors=k, solver="als", max_iter=sweeps, l2_reg_w=l2,
                           l2_reg_v=l2, random_state=seed, n_jobs=n_jobs, **init)
    Est = FMRegressor if task == "regression" else FMClassifier
    return Est(n_factors=k, solver="mcmc", max_iter=sweeps, n_burnin=n_burnin,
               n_kept_samples=sweeps - n_burnin if n_kept is None else n_kept,
               random_state=seed, n_jobs=n_jobs)


def _predict(est, task, X):
    return est.predict(X) if task == "regression" else est.predict_proba(X)[:, 1]


def _profile(est, Xtr, ytr, n_sweeps=20):
    """ms per sweep spent in each kernel (cProfile's own time of the calls)."""
    import cProfile
    import pstats
    est.set_params(max_iter=n_sweeps, n_burnin=0, n_kept_samples=1)
    prof = cProfile.Profile()
    prof.enable()
    est.fit(Xtr, ytr)
    prof.disable()
    st = pstats.Stats(prof)
    parts = {}
    total = 0.0
    for (file, _, func), (_, _, tottime, _, _) in st.stats.items():
        total += tottime
        if "fmnumba/cpu" in file.replace("\\", "/"):
            parts[func] = parts.get(func, 0.0) + tottime
    parts["python + other"] = total - sum(parts.values())
    return {name: 1e3 * t / n_sweeps for name, t in sorted(parts.items(), key=lambda x: -x[1])}


def _adam_epoch(task, Xtr, ytr, k, n_jobs):
    """Seconds of one Adam epoch with fmnumba's defaults (after a warm-up epoch)."""
    from fmnumba import FMClassifier, FMRegressor
    Est = FMRegressor if task == "regression" else FMClassifier
    est = Est(n_factors=k, max_iter=1, random_state=0, n_jobs=n_jobs).fit(Xtr, ytr)
    t0 = time.perf_counter()
    est.set_params(warm_start=True).fit(Xtr, ytr)
    return time.perf_counter() - t0


def _parallel_nnz(Xtr):
    """Nonzeros of Xtr in the column view's parallel (one-hot) blocks."""
    from fmnumba.column_view import build_column_view
    view = build_column_view(Xtr.tocsr(), np.float32)
    return sum(int(view.cptr[j + 1] - view.cptr[j]) for s in range(len(view.seg_par))
               if view.seg_par[s]
               for j in view.cols[view.bounds[view.seg_b[s]]:view.bounds[view.seg_b[s + 1]]])


def worker(a):
    Xtr, ytr = load_npz(a.train)
    Xte, yte = load_npz(a.test)
    if Xte.shape[1] < Xtr.shape[1]:
        import scipy.sparse as sp
        Xte = sp.csr_matrix((Xte.data, Xte.indices, Xte.indptr), shape=(Xte.shape[0], Xtr.shape[1]))
    Xte = Xte[:, :Xtr.shape[1]]
    Xtr, Xte = Xtr.astype(np.float32), Xte.astype(np.float32)
    t0 = time.perf_counter()
    _estimator(a.task, a.solver, a.k, 2, a.seed, a.threads, a.als_l2, a.init_std, n_burnin=0,
               n_kept=1).fit(Xtr, ytr)
    compile_s = time.perf_counter() - t0
    est = _estimator(a.task, a.solver, a.k, a.sweeps, a.seed, a.threads, a.als_l2, a.init_std)
    t0 = time.perf_counter()
    est.fit(Xtr, ytr)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = _predict(est, a.task, Xte)
    predict_s = time.perf_counter() - t0
    rss = peak_rss_mib()
    sweep_s = fit_s / a.sweeps
    mcmc = a.solver == "mcmc"
    res = {"library": "fmnumba",
           "solver": a.solver + (", probit" if mcmc and a.task != "regression" else ""),
           "threads": a.threads, "seed": a.seed, "n_iter": a.sweeps,
           "n_train": int(Xtr.shape[0]), "nnz_train": int(Xtr.nnz), "compile_s": compile_s,
           "fit_s": fit_s, "predict_s": predict_s, "sweep_s": sweep_s,
           "nnz_k_per_s": Xtr.nnz * a.k / sweep_s, "peak_rss_mib": rss,
           "parallel_nnz_fraction": _parallel_nnz(Xtr) / max(1, Xtr.nnz),
           "final": metrics(a.task, yte, pred)}
    res.update({"n_kept_samples": a.sweeps - MYFM_BURN_IN} if mcmc else
               {"l2": a.als_l2, "init_std": est.init_std})
    if a.profile and mcmc:
        res["profile_ms_per_sweep"] = _profile(est, Xtr, ytr)
        adam_s = _adam_epoch(a.task, Xtr, ytr, a.k, a.threads)
        res["adam_epoch_s"] = adam_s
        res["adam_nnz_k_per_s"] = Xtr.nnz * a.k / adam_s
    print(json.dumps(res))


# --------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------
def _run(cmd, env):
    """The JSON result of one run, or {"error": ...} when it failed."""
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO,
                             timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {RUN_TIMEOUT_S} s"}
    text = out.stdout
    if out.returncode or "{" not in text:
        lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
        return {"error": (lines[-1] if lines else f"exit status {out.returncode}")[:300],
                "returncode": out.returncode, "stderr_tail": out.stderr[-3000:]}
    return json.loads(text[text.index("{"):])


def _fmnumba_cmd(tr, te, task, a, seed, solver, init_std, profile):
    cmd = [sys.executable, "-m", "bench.bayes", "--worker", "--train", str(tr), "--test",
           str(te), "--task", task, "--k", str(a.k), "--sweeps", str(a.sweeps), "--threads",
           str(a.threads), "--seed", str(seed), "--solver", solver, "--als-l2", str(a.als_l2)]
    return (cmd + (["--init-std", str(init_std)] if init_std is not None else [])
            + (["--profile"] if profile else []))


def _peer_cmd(lib, tr, te, task, a, seed, solver, init_std):
    """myFM's Gibbs sampler, or fastFM's mcmc / als, through bench/peers."""
    runner = REPO / "bench" / "peers" / f"run_{lib}.py"
    cmd = [a.peer_python or sys.executable, str(runner), "--train", str(tr), "--test", str(te),
           "--task", task, "--k", str(a.k), "--epochs", str(a.sweeps), "--threads",
           str(a.threads), "--seed", str(seed), "--no-curve"]
    if lib == "myfm":
        return cmd + ["--burn-in", str(MYFM_BURN_IN)]
    return (cmd + ["--solver", solver] + (["--reg", str(a.als_l2)] if solver == "als" else [])
            + (["--init-stdev", str(init_std)] if init_std is not None else []))


def _load():
    try:
        return os.getloadavg()
    except OSError:
        return None


def run_keys(task, peers):
    """(run key, library, solver, init std or None for the default) of every
    fit on a data set: mcmc for all libraries (their default inits), ALS for
    fmnumba and fastFM on regression sets from the same init (fmnumba's ALS
    default, fastFM's default)."""
    keys = [("fmnumba", "fmnumba", "mcmc", None)] + [(p, p, "mcmc", None) for p in peers]
    if task == "regression" and "fastfm" in peers:
        keys += [("fmnumba als", "fmnumba", "als", ALS_INIT_STD),
                 ("fastfm als", "fastfm", "als", ALS_INIT_STD)]
    return keys


def baseline(key):
    """The fmnumba run key a peer's run key is compared with (same solver)."""
    return "fmnumba als" if " als" in key else "fmnumba"


def _ratios(runs, key):
    base = runs[baseline(key)]
    return [p["fit_s"] / f["fit_s"] if "error" not in p and "error" not in f else None
            for f, p in zip(base, runs[key])]


def run_all(a):
    env = dict(os.environ, **thread_env(a.threads), TQDM_DISABLE="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if not a.spin:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    peers = [p for p in a.peers.split(",") if p]
    out = {"k": a.k, "sweeps": a.sweeps, "threads": a.threads, "repeats": a.repeats,
           "n_burnin": MYFM_BURN_IN, "als_l2": a.als_l2, "als_init_std": ALS_INIT_STD,
           "peers": peers,
           "omp_wait_policy": env.get("OMP_WAIT_POLICY", "default"), "quick": a.quick,
           "cpu_count": os.cpu_count(), "load_start": _load(), "started": time.ctime(),
           "datasets": {}}
    names = [d for d in a.datasets.split(",") if d] + (["movielens"] if a.movielens else [])
    for name in names:
        tr, te, meta = dataset(name, a.cache, a.quick, a.movielens)
        task = meta["task"]
        keys = run_keys(task, peers)
        runs = {key[0]: [] for key in keys}
        loads = []
        for r in range(a.repeats):
            for key, lib, solver, init in keys[r % len(keys):] + keys[:r % len(keys)]:
                loads.append(_load())
                if lib == "fmnumba":
                    cmd = _fmnumba_cmd(tr, te, task, a, r, solver, init, profile=(r == 0))
                else:
                    cmd = _peer_cmd(lib, tr, te, task, a, r, solver, init)
                res = _run(cmd, env)
                if "error" in res:
                    print(f"{name} repeat {r} {key}: FAILED: {res['error']}", flush=True)
                else:
                    res.setdefault("sweep_s", res["fit_s"] / a.sweeps)
                    res.setdefault("nnz_k_per_s", res["nnz_train"] * a.k / res["sweep_s"])
                    print(f"{name} repeat {r} {key}: fit {res['fit_s']:.2f} s, {res['final']}",
                          flush=True)
                runs[key].append(res)
        out["datasets"][name] = {
            "task": task, "description": meta.get("description"), "runs": runs,
            "fit_time_ratio_over_fmnumba": {k: _ratios(runs, k) for k, lib, _, _ in keys
                                            if lib != "fmnumba"},
            "load_during": loads}
    out["load_end"] = _load()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--movielens", default=None, help="a MovieLens ratings file (u.data, ...)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sweeps", type=int, default=200)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="small subsets (a smoke run)")
    p.add_argument("--spin", action="store_true", help="keep OpenMP's default wait policy")
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--peer-python", default=os.environ.get("FMNUMBA_PEERS_PYTHON"),
                   help="interpreter with the peers installed (default: "
                        "$FMNUMBA_PEERS_PYTHON, else this one)")
    p.add_argument("--peers", default=",".join(PEERS),
                   help="comma-separated peers to run beside fmnumba (myfm, fastfm)")
    p.add_argument("--als-l2", type=float, default=ALS_L2,
                   help="λ_w = λ_v of the ALS fits (fmnumba and fastFM)")
    p.add_argument("--out-dir", default=str(RESULTS))
    # worker mode
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--train")
    p.add_argument("--test")
    p.add_argument("--task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--solver", default="mcmc", choices=["mcmc", "als"])
    p.add_argument("--init-std", type=float, default=None)
    p.add_argument("--report-only", metavar="JSON", default=None,
                   help="rewrite the markdown and plot from a results JSON; run nothing")
    a = p.parse_args(argv)
    bad = set(a.peers.split(",")) - set(PEERS) - {""}
    if bad:
        p.error(f"--peers: unknown {', '.join(sorted(bad))}; choose from {', '.join(PEERS)}")
    if a.worker:
        worker(a)
        return 0
    if a.report_only:
        src = Path(a.report_only)
        out, stem = src.parent, src.stem
        res = json.loads(src.read_text())
    else:
        res = run_all(a)
        out = Path(a.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = "bayes-quick" if a.quick else "bayes"
        (out / f"{stem}.json").write_text(json.dumps(res, indent=1))
    report(res, out / f"{stem}.md", out / f"{stem}.png")
    print((out / f"{stem}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
