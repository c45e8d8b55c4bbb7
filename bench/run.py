"""Benchmark harness (GitHub issue 4): fmnumba against peer FM libraries.

    python -m bench                      # everything, ~20 min on 2 cores
    python -m bench --quick              # tiny sizes, ~1 min
    python -m bench --datasets a9a,small --repeats 3 --threads 2 \
        --movielens path/to/u.data --peers-python path/to/peer-venv/bin/python

Every library runs in its own subprocess with a timeout, on the same npz
files (cached under bench/.cache): fmnumba through this module's worker
(``python -m bench worker ...``), each peer through bench/peers/run_X.py in
the peers' interpreter, given by --peers-python or the FMNUMBA_PEERS_PYTHON
environment variable (peers are skipped, with a note in the report, when
neither is set). All write the same JSON: a learning curve
[{epoch, time_s, rmse | auc, logloss}] of test metrics against cumulative
fit time, fit_s, predict_s, peak_rss_mib, version.

Besides the learning curves the run measures kernel throughput
(bench/throughput.py), this machine's gather and bandwidth ceiling
(bench/ceiling.py), JIT compile time cold and cached (bench/compile_time.py)
and the peak RSS of a fit on the large set, then writes
<out>/<date>-<host kind>.md (+ .json and PNGs) and a copy LATEST.md.
"""
import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
PEERS_DIR = REPO / "bench" / "peers"
DEFAULT_CACHE = REPO / "bench" / ".cache"
ALL_DATASETS = ("a9a", "criteo", "small", "large")
ALL_PARTS = ("curves", "rss", "throughput", "ceiling", "compile", "gpu")

# epochs for fmnumba and the SGD-type peers / sweeps for MCMC and ALS peers
EPOCHS = {"a9a": (20, 200), "criteo": (20, 100), "small": (20, 200), "movielens": (20, 200),
          "large": (2, 3)}
QUICK_EPOCHS = (3, 5)
MCMC_PEERS = ("myfm", "fastfm")            # runners whose --epochs are sweeps
PEER_MODULES = {"xlearn": "xlearn", "modernfm": "modern_fm", "myfm": "myfm",
                "fastfm": "fastFM"}
# fmnumba's settings per data set; where absent, the estimators' defaults
# (chosen by bench/defaults_grid.py). The peers' runners carry settings tuned on
# a9a for classification (bench/peers/run_*.py); fmnumba gets the same: the
# best a9a setting of the defaults grid, with a weaker L2 on w.
FM_PARAMS = {"a9a": {"learning_rate": 0.02, "lr_decay": 1.0, "batch_size": 1024,
                     "l2_reg_w": 0.001, "l2_reg_v": 0.01}}

# targets of issue 4
A9A_AUC_TARGET = 0.903
A9A_FINAL_AUC = 0.904
A9A_FINAL_LOGLOSS = 0.322
SOONER = 1.5
PREDICT_CEILING_FRACTION = 0.60
EPOCH_PEER_FACTOR = 5.0
RSS_FACTOR = 1.5
COMPILE_COLD_S = 10.0
COMPILE_CACHED_S = 1.0


# ---------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------

def _save_npz(path, X, y):
    import scipy.sparse as sp
    X = sp.csr_matrix(X)
    X.sort_indices()
    np.savez(path, indptr=X.indptr.astype(np.int64), indices=X.indices.astype(np.int32),
             data=X.data.astype(np.float32), shape=np.array(X.shape, dtype=np.int64),
             y=np.asarray(y, dtype=np.float64))


def load_npz(path):
    """(CSR float32 with int32 indices, y float64) from a harness npz."""
    import scipy.sparse as sp
    z = np.load(path)
    X = sp.csr_matrix((z["data"], z["indices"], z["indptr"]),
                      shape=tuple(int(s) for s in z["shape"]))
    return X, np.asarray(z["y"], dtype=np.float64)


def _split(X, y, seed=0, test_fraction=0.2):
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    n_test = int(round(test_fraction * X.shape[0]))
    te, tr = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return X[tr], y[tr], X[te], y[te]


def _align(Xtr, Xte):
    import scipy.sparse as sp
    n = max(Xtr.shape[1], Xte.shape[1])
    fix = lambda X: sp.csr_matrix((X.data, X.indices, X.indptr), shape=(X.shape[0], n))  # noqa: E731
    return fix(Xtr), fix(Xte)


def build_dataset(name, quick, movielens=None):
    """(task, Xtr, ytr, Xte, yte, description); labels of classification in {0, 1}."""
    from fmnumba import datasets as D
    from fmnumba import readers as R
    if name == "a9a":
        Xtr, ytr = R.load_libsvm(SHARED_DATA / "a9a", n_features=123, zero_based=False)
        Xte, yte = R.load_libsvm(SHARED_DATA / "a9a.t", n_features=123, zero_based=False)
        ytr, yte = (ytr > 0).astype(float), (yte > 0).astype(float)
        if quick:
            Xtr, ytr, Xte, yte = Xtr[:4000], ytr[:4000], Xte[:2000], yte[:2000]
        return "classification", Xtr, ytr, Xte, yte, "LIBSVM a9a (UCI Adult), given split"
    if name == "criteo":
        Xtr, ytr, _ = R.load_libffm(SHARED_DATA / "criteo_small_train.libffm")
        Xte, yte, _ = R.load_libffm(SHARED_DATA / "criteo_small_test.libffm")
        Xtr, Xte = _align(Xtr, Xte)
        return ("classification", Xtr, (ytr > 0).astype(float), Xte, (yte > 0).astype(float),
                "xLearn's 200+200-row Criteo libffm sample (fields ignored)")
    if name == "small":
        n = 5_000 if quick else 100_000
        d = D.make_ratings(n, n_users=300, n_items=200) if quick else D.make_ratings(n)
        return ("regression", *_split(d.X, d.y),
                f"make_ratings({n}) 80/20, planted FM, noise σ = {d.noise} (best RMSE)")
    if name == "large":
        n, nf = (20_000, 50_000) if quick else (1_000_000, 1_000_000)
        d = D.make_fm_data(n, D.large_field_sizes(nf), random_state=0)
        return ("regression", *_split(d.X, d.y),
                f"make_fm_data({n}, large_field_sizes({nf})) 80/20: {d.X.nnz / n:.0f} nnz/row, "
                f"{nf} features, Zipf popularity, noise σ = {d.noise}")
    if name == "movielens":
        X, y, _ = R.load_movielens(movielens)
        if quick:
            X, y = X[:20_000], y[:20_000]
        Xtr, ytr, Xte, yte = _split(X, y)
        return "regression", Xtr, ytr, Xte, yte, f"MovieLens {Path(movielens).name}, one-hot " \
            "user+item, 80/20 split by default_rng(0).permutation"
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(ALL_DATASETS)}, movielens")


def prepare(name, quick, cache, movielens=None, log=print):
    """Write (once) name_train.npz / name_test.npz / name.json under the cache dir."""
    sub = Path(cache) / ("quick" if quick else "full")
    sub.mkdir(parents=True, exist_ok=True)
    key = name
    if name == "movielens":
        st = os.stat(movielens)
        key += "-" + hashlib.sha1(f"{os.path.abspath(movielens)}:{st.st_size}:{st.st_mtime}"
                                  .encode()).hexdigest()[:8]
    tr, te, meta_p = sub / f"{key}_train.npz", sub / f"{key}_test.npz", sub / f"{key}.json"
    if tr.exists() and te.exists() and meta_p.exists():
        return tr, te, json.loads(meta_p.read_text())
    t0 = time.perf_counter()
    task, Xtr, ytr, Xte, yte, desc = build_dataset(name, quick, movielens)
    _save_npz(tr, Xtr, ytr)
    _save_npz(te, Xte, yte)
    meta = {"name": name, "task": task, "description": desc, "n_train": int(Xtr.shape[0]),
            "n_test": int(Xte.shape[0]), "n_features": int(Xtr.shape[1]),
            "nnz_train": int(Xtr.nnz), "nnz_test": int(Xte.nnz),
            "build_s": time.perf_counter() - t0}
    meta_p.write_text(json.dumps(meta, indent=1))
    log(f"  built {name}: {meta['n_train']} + {meta['n_test']} rows, "
        f"{meta['n_features']} features in {meta['build_s']:.1f} s")
    return tr, te, meta


# ---------------------------------------------------------------------------
# the fmnumba worker (runs in its own process, same JSON as the peer runners)
# ---------------------------------------------------------------------------

def _metrics(task, y, p):
    if task == "regression":
        return {"rmse": float(np.sqrt(np.mean((np.asarray(p) - y) ** 2)))}
    from sklearn.metrics import log_loss, roc_auc_score
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-15, 1 - 1e-15)
    return {"auc": float(roc_auc_score(y, p)), "logloss": float(log_loss(y, p, labels=[0, 1]))}


def _proc_status(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB -> MiB
    except OSError:
        pass
    return None


def _peak_rss_mib():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_main(argv):
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
    a = p.parse_args(argv)
    import fmnumba
    from fmnumba import FMClassifier, FMRegressor

    params = dict(json.loads(a.params))
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
    wm = make(max_iter=1).fit(Xtr[:nw], yw)
    predict(wm, Xtr[:nw])
    warm_s = time.perf_counter() - t0
    est = make()
    res = {"library": "fmnumba", "version": fmnumba.__version__,
           "solver": (f"{est.solver} (batch {est.batch_size}, lr {est.learning_rate}"
                      + (f"/(1+{est.lr_decay}·epoch)" if est.lr_decay else "")
                      + (f", L2 {est.l2_reg_w}" if est.l2_reg_w == est.l2_reg_v
                         else f", L2 w {est.l2_reg_w} V {est.l2_reg_v}") + ")"),
           "k": a.k, "task": a.task, "threads": a.threads, "params": params,
           "n_train": int(Xtr.shape[0]), "nnz_train": int(Xtr.nnz), "warmup_s": warm_s}

    if a.rss_only:
        import gc
        del Xtr, ytr, wm
        gc.collect()
        try:  # reset the high-water mark (Linux >= 4.0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        base = _proc_status("VmRSS")
        Xtr, ytr = load_npz(a.train)
        m = make(max_iter=a.epochs)
        t0 = time.perf_counter()
        m.fit(Xtr, ytr)
        fit_s = time.perf_counter() - t0
        hwm = _proc_status("VmHWM")
        st = m._state
        csr_b = Xtr.indptr.nbytes + Xtr.indices.nbytes + Xtr.data.nbytes
        par_b = st.P.nbytes
        opt_b = (st.M.nbytes + st.S.nbytes) if st.M is not None else 0
        ideal = (csr_b + par_b + opt_b) / 2**20
        res.update(mode="rss", epochs=a.epochs, fit_s=fit_s, baseline_rss_mib=base,
                   peak_rss_mib=hwm, fit_footprint_mib=(hwm - base) if hwm and base else None,
                   csr_mib=csr_b / 2**20, params_mib=par_b / 2**20, optimizer_mib=opt_b / 2**20,
                   ideal_mib=ideal, y_mib=ytr.nbytes / 2**20)
        _emit(res, a.out)
        return 0

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
        curve.append({"epoch": e, "time_s": fit_s, **_metrics(a.task, yte, predict(est, Xte))})
    t0 = time.perf_counter()
    predict(est, Xte)
    predict_s = time.perf_counter() - t0
    res.update(curve=curve, fit_s=fit_s, predict_s=predict_s, final=curve[-1],
               peak_rss_mib=_peak_rss_mib(),
               notes="one partial_fit per epoch (Adam state kept), only the partial_fit "
                     "calls timed (input validation included); JIT warmed on 512 rows first")
    _emit(res, a.out)
    return 0


def _emit(res, out):
    txt = json.dumps(res, indent=1)
    if out:
        Path(out).write_text(txt + "\n")
    print(txt)


# ---------------------------------------------------------------------------
# orchestration
# ---------------------------------------------------------------------------

def _thread_env(threads, extra=None):
    env = dict(os.environ)
    for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        env[v] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [x for x in
                                                      [os.environ.get("PYTHONPATH")] if x])
    env.setdefault("USER", "bench")
    env.setdefault("TQDM_DISABLE", "1")
    if extra:
        env.update(extra)
    return env


def run_json(cmd, out_json, timeout, threads, log, label):
    """Run cmd (writes JSON to out_json); return (dict or None, error or None, wall s)."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=_thread_env(threads), capture_output=True, text=True,
                           timeout=timeout, cwd=str(REPO))
    except subprocess.TimeoutExpired:
        wall = time.perf_counter() - t0
        log(f"    {label}: TIMEOUT after {timeout} s")
        return None, f"timeout after {timeout} s", wall
    wall = time.perf_counter() - t0
    if p.returncode != 0 or not Path(out_json).exists():
        tail = (p.stderr or p.stdout or "").strip().splitlines()[-3:]
        err = f"exit {p.returncode}: " + " | ".join(tail)[-400:]
        log(f"    {label}: FAILED ({err})")
        return None, err, wall
    try:
        return json.loads(Path(out_json).read_text()), None, wall
    except ValueError as exc:
        return None, f"bad JSON: {exc}", wall


def find_peers(args, log):
    """{name: runner path} of usable peers and a list of notes."""
    notes = []
    py = args.peers_python or os.environ.get("FMNUMBA_PEERS_PYTHON")
    if args.no_peers:
        notes.append("peers skipped (--no-peers).")
        return None, {}, notes
    if not py:
        notes.append("peers skipped: no peer interpreter given (pass --peers-python PATH or set "
                     "FMNUMBA_PEERS_PYTHON to a Python whose environment holds the peer "
                     "libraries; see bench/peers/README.md).")
        return None, {}, notes
    if not Path(py).exists():
        notes.append(f"peers skipped: peer interpreter {py} does not exist.")
        return None, {}, notes
    runners = {}
    for f in sorted(PEERS_DIR.glob("run_*.py")):
        name = f.stem[4:]
        if args.libs and name not in args.libs:
            continue
        mod = PEER_MODULES.get(name)
        if mod:
            p = subprocess.run([py, "-c", f"import {mod}"], capture_output=True, text=True,
                               env=_thread_env(1), timeout=120)
            if p.returncode != 0:
                msg = (p.stderr.strip().splitlines() or ["?"])[-1]
                notes.append(f"peer {name} skipped: `import {mod}` fails in {py} ({msg}).")
                continue
        runners[name] = f
    log(f"  peers: {', '.join(runners) or 'none'} (python: {py})")
    return py, runners, notes


def _median(xs):
    xs = [x for x in xs if x is not None]
    return float(statistics.median(xs)) if xs else None


def aggregate(runs):
    """Median over repeats of the scalar results and of each curve point."""
    ok = [r for r in runs if r]
    if not ok:
        return None
    agg = {k: ok[0].get(k) for k in ("library", "version", "solver", "k", "task", "threads",
                                     "n_train", "nnz_train", "notes", "params")}
    agg["repeats"] = len(ok)
    for key in ("fit_s", "predict_s", "peak_rss_mib", "warmup_s"):
        agg[key] = _median([r.get(key) for r in ok])
    n = min(len(r.get("curve") or []) for r in ok)
    curve = []
    for i in range(n):
        pts = [r["curve"][i] for r in ok]
        pt = {"epoch": pts[0]["epoch"]}
        for m in ("time_s", "rmse", "auc", "logloss"):
            if m in pts[0]:
                pt[m] = _median([q.get(m) for q in pts])
        curve.append(pt)
    agg["curve"] = curve
    finals = [r.get("final") or (r["curve"][-1] if r.get("curve") else {}) for r in ok]
    agg["final"] = {m: _median([f.get(m) for f in finals]) for m in ("rmse", "auc", "logloss")
                    if m in finals[0]}
    agg["fit_s_all"] = [r.get("fit_s") for r in ok]
    return agg


def primary(task):
    return "rmse" if task == "regression" else "auc"


def better(metric, a, b):
    """a at least as good as b."""
    return a <= b if metric in ("rmse", "logloss") else a >= b


def time_to(curve, metric, target):
    for pt in curve or []:
        v = pt.get(metric)
        if v is not None and better(metric, v, target):
            return pt["time_s"]
    return None


def is_sgd_type(agg):
    s = (agg.get("solver") or "").lower()
    return any(w in s for w in ("sgd", "adagrad", "adam", "ftrl"))


def run_curves(args, name, tr, te, meta, peers_py, runners, log):
    task = meta["task"]
    ep_fm, ep_mc = QUICK_EPOCHS if args.quick else EPOCHS.get(name, (20, 200))
    repeats = min(args.repeats, args.large_repeats) if name == "large" else args.repeats
    libs = {}
    work = Path(args._work)
    jobs = []
    if not args.libs or "fmnumba" in args.libs:
        params = {**FM_PARAMS.get(name, {}), **args.fm_params}
        jobs.append(("fmnumba", [sys.executable, "-m", "bench", "worker", "--params",
                                 json.dumps(params)], ep_fm))
    for pname, f in runners.items():
        jobs.append((pname, [peers_py, str(f)], ep_mc if pname in MCMC_PEERS else ep_fm))
    errors = {}
    for lib, base, epochs in jobs:
        runs = []
        for rep in range(repeats):
            out = work / f"{name}-{lib}-{rep}.json"
            cmd = base + ["--train", str(tr), "--test", str(te), "--task", task, "--k",
                          str(args.k), "--epochs", str(epochs), "--threads", str(args.threads),
                          "--seed", str(rep), "--out", str(out)]  # repeat r: seed r
            r, err, wall = run_json(cmd, out, args.timeout, args.threads, log,
                                    f"{name}/{lib}#{rep}")
            if r is None:
                errors[lib] = err
                break
            r["_cmd"] = " ".join(shlex.quote(c) for c in cmd)
            runs.append(r)
            m = r.get("final") or {}
            log(f"    {name}/{lib}#{rep}: fit {r.get('fit_s', float('nan')):.2f} s, "
                + ", ".join(f"{k} {v:.4f}" for k, v in m.items()
                            if k in ("rmse", "auc", "logloss")) + f" (wall {wall:.0f} s)")
        agg = aggregate(runs)
        if agg:
            agg["epochs"] = epochs
            libs[lib] = agg
    return {"meta": meta, "libs": libs, "errors": errors, "repeats": repeats}


# Beside its runner's default solver, each peer's plain SGD is timed too: it
# does less work per entry than AdaGrad, and "the fastest peer" is the fastest
# of all these (xLearn's SGD epoch runs about 1.6x its AdaGrad epoch).
PEER_PLAIN_SGD = {"xlearn": ["--opt", "sgd"], "modernfm": ["--optimizer", "sgd"]}


def run_peer_throughput(args, tr, te, peers_py, runners, log):
    out = {}
    work = Path(args._work)
    for pname, f in runners.items():
        if args.peer_throughput == "sgd" and pname in MCMC_PEERS:
            continue
        variants = [(pname, [])]
        if pname in PEER_PLAIN_SGD:
            variants.append((f"{pname}:sgd", PEER_PLAIN_SGD[pname]))
        for name, extra in variants:
            for k in args.throughput_k:
                o = work / f"tp-{name.replace(':', '-')}-{k}.json"
                cmd = [peers_py, str(f), "--train", str(tr), "--test", str(te), "--task",
                       "regression", "--k", str(k), "--epochs", "1", "--threads",
                       str(args.threads), "--throughput", "--out", str(o)] + extra
                r, err, _ = run_json(cmd, o, args.timeout, args.threads, log,
                                     f"throughput/{name}/k{k}")
                out[f"{name}/{k}"] = r if r else {"error": err}
                if r:
                    log(f"    peer epoch throughput {name} k={k}: "
                        f"{r.get('nnz_k_per_s', float('nan')):.3g} nnz·k/s")
    return out


def run_gpu(args, log):
    """fmnumba on CUDA (bench/cuda_bench.py, with the CPU kernels in the same
    run) when a real GPU answers; otherwise a note saying none was present."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    probe = subprocess.run([sys.executable, "-c", "from numba import cuda; "
                            "print(int(cuda.is_available()))"], capture_output=True,
                           text=True, env=env, timeout=120)
    if probe.stdout.strip() != "1":
        return {"available": False,
                "note": "no usable CUDA GPU on this machine (or numba-cuda not installed): "
                        "CUDA figures not measured; none are claimed."}
    log("== fmnumba on CUDA (bench/cuda_bench.py --cpu)")
    rows = "20000" if args.quick else "1000000"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "cuda_bench.py"), "--cpu",
                        "--rows", rows], capture_output=True, text=True, env=env,
                       timeout=args.timeout * 4)
    if r.returncode != 0:
        return {"available": True, "error": r.stderr[-2000:]}
    return {"available": True, "results": json.loads(r.stdout)}


def host_info(threads):
    import numba
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) / 2**20
                break
    except OSError:
        pass
    return {"cpu_count": os.cpu_count(), "cpu": cpu, "mem_gib": mem, "python":
            platform.python_version(), "numba": numba.__version__, "numpy": np.__version__,
            "platform": platform.platform(), "threads": threads,
            "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Subcommand: `python -m bench worker --help` (the "
                                       "fmnumba runner).")
    p.add_argument("--datasets", default=",".join(ALL_DATASETS),
                   help="comma list from a9a,criteo,small,large (movielens is added when "
                        "--movielens is given)")
    p.add_argument("--movielens", default=None, help="path to a MovieLens u.data file")
    p.add_argument("--repeats", type=int, default=3, help="repeats per measurement (median)")
    p.add_argument("--large-repeats", type=int, default=1,
                   help="cap on the learning-curve repeats on `large` (default 1, to fit the "
                        "time budget; kernel throughput always uses --repeats)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--k", type=int, default=8, help="factors for the learning curves")
    p.add_argument("--throughput-k", default="8,64")
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few epochs (~1 min)")
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    p.add_argument("--cache-dir", default=os.environ.get("FMNUMBA_BENCH_CACHE",
                                                         str(DEFAULT_CACHE)))
    p.add_argument("--peers-python", default=None,
                   help="Python of the peers' venv (default: $FMNUMBA_PEERS_PYTHON; "
                        "peers are skipped when neither is given)")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--peer-throughput", default="sgd", choices=["sgd", "all", "none"],
                   help="peers timed for epoch throughput on large: the SGD-type ones "
                        "(default; MCMC/ALS sweeps at k=64 on 1M features take many minutes), "
                        "all, or none")
    p.add_argument("--libs", default=None,
                   help="comma list of libraries to run (fmnumba and/or peer names)")
    p.add_argument("--parts", default=None,
                   help=f"comma list from {','.join(ALL_PARTS)} (default: all; --quick "
                        "leaves out compile)")
    p.add_argument("--fm-params", default="{}", help="JSON of FMRegressor/FMClassifier "
                   "parameters applied on every dataset")
    p.add_argument("--epoch-rows", type=int, default=None,
                   help="rows per timed Adam/SGD epoch in the throughput part "
                        "(default 200000, quick 5000)")
    p.add_argument("--timeout", type=int, default=None,
                   help="seconds per subprocess (default 900, quick 120)")
    p.add_argument("--tag", default=None, help="file stem (default <date>-cpu<N>)")
    p.add_argument("--report-only", default=None, metavar="RESULTS.json",
                   help="rewrite the markdown and PNGs from a saved results JSON into --out")
    a = p.parse_args(argv)
    a.datasets = [d for d in a.datasets.split(",") if d]
    if a.movielens and "movielens" not in a.datasets:
        a.datasets.append("movielens")
    a.libs = [x for x in a.libs.split(",") if x] if a.libs else None
    a.parts = a.parts.split(",") if a.parts else [x for x in ALL_PARTS
                                                  if not (a.quick and x == "compile")]
    bad = set(a.parts) - set(ALL_PARTS)
    if bad:
        p.error(f"--parts: unknown {sorted(bad)}; choose from {','.join(ALL_PARTS)}")
    a.throughput_k = [int(x) for x in a.throughput_k.split(",") if x]
    a.fm_params = json.loads(a.fm_params)
    a.timeout = a.timeout or (120 if a.quick else 900)
    a.epoch_rows = a.epoch_rows or (5_000 if a.quick else 200_000)
    return a


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "worker":
        return worker_main(argv[1:])
    args = parse_args(argv)
    if args.report_only:
        results = json.loads(Path(args.report_only).read_text())
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        md = write_report(results, out_dir, results["stem"])
        shutil.copyfile(md, out_dir / "LATEST.md")
        print(f"wrote {md} and {out_dir / 'LATEST.md'}")
        return 0
    t_start = time.perf_counter()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.tag or f"{_dt.date.today().isoformat()}-cpu{os.cpu_count()}"
    command = "python -m bench " + " ".join(shlex.quote(x) for x in argv)

    def log(msg):
        print(msg, flush=True)

    args._work = tempfile.mkdtemp(prefix="fmnumba-bench-")
    results = {"command": command, "stem": stem, "quick": args.quick,
               "host": host_info(args.threads), "datasets": {}, "notes": [],
               "started": _dt.datetime.now().isoformat(timespec="seconds"),
               "args": {k: _portable(v) for k, v in vars(args).items() if not k.startswith("_")}}
    if "movielens" in args.datasets and not args.movielens:
        results["notes"].append("movielens skipped: pass --movielens PATH/u.data.")
        args.datasets.remove("movielens")
    log(f"fmnumba bench -> {out_dir}/{stem}.md ({'quick' if args.quick else 'full'}; "
        f"parts {','.join(args.parts)})")
    peers_py, runners, notes = find_peers(args, log)
    results["notes"] += notes
    results["peers"] = sorted(runners)
    need_large = any(x in args.parts for x in ("rss", "throughput", "ceiling"))
    paths = {}
    for name in args.datasets + (["large"] if need_large and "large" not in args.datasets
                                 else []):
        if name in ("a9a", "criteo") and not SHARED_DATA.exists():
            results["notes"].append(f"{name} skipped: {SHARED_DATA} not found.")
            continue
        try:
            paths[name] = prepare(name, args.quick, args.cache_dir, args.movielens, log)
        except Exception as exc:  # noqa: BLE001
            results["notes"].append(f"{name} skipped: could not build it ({exc}).")
    try:
        if "large" in paths and "ceiling" in args.parts:
            log("== ceiling (gather + bandwidth) on large")
            o = Path(args._work) / "ceiling.json"
            cmd = [sys.executable, "-m", "bench.ceiling", "--data", str(paths["large"][0]),
                   "--k", ",".join(map(str, args.throughput_k)), "--threads", str(args.threads),
                   "--repeats", str(args.repeats), "--stream-mib", "32" if args.quick else "512",
                   "--epoch-rows", str(args.epoch_rows), "--out", str(o)]
            r, err, _ = run_json(cmd, o, args.timeout, args.threads, log, "ceiling")
            results["ceiling"] = r or {"error": err}
        if "large" in paths and "throughput" in args.parts:
            log("== fmnumba kernel throughput on large")
            o = Path(args._work) / "throughput.json"
            cmd = [sys.executable, "-m", "bench.throughput", "--data", str(paths["large"][0]),
                   "--k", ",".join(map(str, args.throughput_k)), "--threads", str(args.threads),
                   "--repeats", str(args.repeats), "--epoch-rows", str(args.epoch_rows),
                   "--out", str(o)]
            r, err, _ = run_json(cmd, o, args.timeout, args.threads, log, "throughput")
            results["throughput"] = r or {"error": err}
            if runners and args.peer_throughput != "none":
                log("== peer epoch throughput on large")
                results["peer_throughput"] = run_peer_throughput(
                    args, paths["large"][0], paths["large"][1], peers_py, runners, log)
        if "large" in paths and "rss" in args.parts:
            log("== peak RSS of an fmnumba fit on large")
            o = Path(args._work) / "rss.json"
            cmd = [sys.executable, "-m", "bench", "worker", "--rss-only", "--train",
                   str(paths["large"][0]), "--test", str(paths["large"][1]), "--task",
                   "regression", "--k", str(args.k), "--epochs", "1", "--threads",
                   str(args.threads), "--params", json.dumps(args.fm_params), "--out", str(o)]
            r, err, _ = run_json(cmd, o, args.timeout, args.threads, log, "rss")
            results["rss"] = r or {"error": err}
        if "curves" in args.parts:
            for name in args.datasets:
                if name not in paths:
                    continue
                tr, te, meta = paths[name]
                log(f"== learning curves: {name} ({meta['n_train']} rows)")
                results["datasets"][name] = run_curves(args, name, tr, te, meta, peers_py,
                                                       runners, log)
        if "gpu" in args.parts:
            results["gpu"] = run_gpu(args, log)
        if "compile" in args.parts:
            log("== compile time (cold and cached, fresh processes)")
            o = Path(args._work) / "compile.json"
            cmd = [sys.executable, "-m", "bench.compile_time", "--threads", str(args.threads),
                   "--cached-repeats", str(max(1, args.repeats)), "--out", str(o)]
            r, err, _ = run_json(cmd, o, args.timeout * 2, args.threads, log, "compile")
            results["compile"] = r or {"error": err}
    finally:
        results["host"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
        results["total_s"] = time.perf_counter() - t_start
        shutil.rmtree(args._work, ignore_errors=True)
        (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
        md = write_report(results, out_dir, stem)
        shutil.copyfile(md, out_dir / "LATEST.md")
        log(f"wrote {md} and {out_dir / 'LATEST.md'} in {results['total_s']:.0f} s")
    return 0


# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------

def _f(x, fmt="{:.3g}"):
    return "–" if x is None else fmt.format(x)


def _ratio(a, b):
    return a / b if (a is not None and b) else None


def _row(rows, k, threads, **match):
    """The entry of `rows` (a list of result dicts) for k and threads whose
    other keys equal `match`, or None."""
    for r in rows or []:
        if r["k"] == k and r["threads"] == threads and all(r.get(a) == v
                                                            for a, v in match.items()):
            return r
    return None


def _ceiling_for(ceil, k, threads, which="real"):
    g = _row((ceil or {}).get("gather"), k, threads, indices=which)
    return g["nnz_k_per_s"] if g else None


def _kernel(tp, name, k, threads):
    return _row((tp or {}).get("kernels"), k, threads, kernel=name)


def _predict_ceiling(tp, ceil, k, threads):
    """The gather ceiling timed in turn with predict, else the ceiling run's."""
    own = (_kernel(tp, "predict_csr", k, threads) or {}).get("ceiling_nnz_k_per_s")
    return own or _ceiling_for(ceil, k, threads)


def dataset_target(name, res):
    """(metric, target value, description) for time-to-target."""
    task = res["meta"]["task"]
    m = primary(task)
    if name == "a9a":
        return m, A9A_AUC_TARGET, f"AUC {A9A_AUC_TARGET} (issue 4)"
    sgd = [(lib, a) for lib, a in res["libs"].items() if lib != "fmnumba" and is_sgd_type(a)
           and a["final"].get(m) is not None]
    if not sgd:
        return m, None, "no SGD-type peer result"
    pick = min if m == "rmse" else max
    lib, a = pick(sgd, key=lambda la: la[1]["final"][m])
    return m, a["final"][m], f"best SGD-type peer's final {m.upper()} ({lib})"


def _whole_epoch_fit_s(r):
    """Seconds of a whole one-epoch fit from a CSR matrix (conversion included)."""
    if "fit1_s" in r:
        return r["fit1_s"] + r.get("conversion_s", 0.0)
    return r.get("epoch_s", 0.0)


def _fastest_peer(ptp, k):
    """(name, nnz·k/s) of the fastest usable peer epoch at k, or None."""
    peers = [(key.split("/")[0], r["nnz_k_per_s"]) for key, r in (ptp or {}).items()
             if key.endswith(f"/{k}") and _peer_tp_ok(r)]
    return max(peers, key=lambda x: x[1]) if peers else None


def _epoch_bound(kern, ceil, k, threads, tp):
    """This machine's bound (nnz·k/s) on the epoch kernel `kern`, or None."""
    return adam_bound(ceil, k, threads) if kern == "adam_epoch" else \
        sgd_bound(ceil, k, threads, tp)


def _peer_tp_ok(r):
    """A peer --throughput result is usable (xlearn's fit(2) − fit(1) can be ~0 on tiny data)."""
    return bool(r and r.get("nnz_k_per_s") and (r.get("epoch_s") or 0) >= 1e-3)


def evaluate_targets(results):
    """[(target, measured, result, ratio)] rows of the targets table."""
    rows = []
    th = results.get("host", {}).get("threads", 2)

    def verdict(ok):
        return "n/a" if ok is None else ("**pass**" if ok else "**miss**")

    dsets = results.get("datasets", {})
    a9 = dsets.get("a9a")
    if a9:
        fm = a9["libs"].get("fmnumba")
        t_fm = time_to(fm["curve"], "auc", A9A_AUC_TARGET) if fm else None
        peer_t = [(lib, time_to(a["curve"], "auc", A9A_AUC_TARGET))
                  for lib, a in a9["libs"].items() if lib != "fmnumba"]
        peer_t = [(lib, t) for lib, t in peer_t if t is not None]
        best = min(peer_t, key=lambda x: x[1]) if peer_t else None
        sp = _ratio(best[1], t_fm) if best else None
        rows.append((f"a9a k=8: AUC {A9A_AUC_TARGET} reached ≥ {SOONER}× sooner than the "
                     "fastest peer",
                     f"fmnumba {_f(t_fm, '{:.2f}')} s; fastest peer "
                     + (f"{best[0]} {best[1]:.2f} s" if best else "none reached it / no peers"),
                     "**miss**" if t_fm is None else verdict(None if sp is None else sp >= SOONER),
                     "fmnumba never reached it" if t_fm is None else _f(sp, "{:.2f}× sooner")))
        if fm:
            auc, ll = fm["final"].get("auc"), fm["final"].get("logloss")
            rows.append((f"a9a final AUC ≥ {A9A_FINAL_AUC}", _f(auc, "{:.4f}"),
                         verdict(auc >= A9A_FINAL_AUC), f"{auc / A9A_FINAL_AUC:.4f}"))
            rows.append((f"a9a final logloss ≤ {A9A_FINAL_LOGLOSS}", _f(ll, "{:.4f}"),
                         verdict(ll <= A9A_FINAL_LOGLOSS), f"{ll / A9A_FINAL_LOGLOSS:.4f}"))
    for name in ("small", "movielens"):
        d = dsets.get(name)
        if not d or "fmnumba" not in d["libs"]:
            continue
        m, tgt, desc = dataset_target(name, d)
        if tgt is None:
            rows.append((f"{name}: reach best SGD-type peer's final RMSE ≥ {SOONER}× sooner",
                         "no SGD-type peer ran", "n/a", "–"))
            continue
        lib = desc.split("(")[-1].rstrip(")")
        t_peer = time_to(d["libs"][lib]["curve"], m, tgt)
        t_fm = time_to(d["libs"]["fmnumba"]["curve"], m, tgt)
        sp = _ratio(t_peer, t_fm)
        rows.append((f"{name}: reach best SGD-type peer's final RMSE ({tgt:.4f}, {lib}) "
                     f"≥ {SOONER}× sooner",
                     f"fmnumba {_f(t_fm, '{:.2f}')} s vs {lib} {_f(t_peer, '{:.2f}')} s",
                     verdict(sp >= SOONER) if sp else "**miss**",
                     f"{sp:.2f}× sooner" if sp else "fmnumba never reached it"))
    tp, ceil = results.get("throughput"), results.get("ceiling")
    for k in results.get("args", {}).get("throughput_k", [8, 64]):
        pr = _kernel(tp, "predict_csr", k, th)
        c = _predict_ceiling(tp, ceil, k, th)
        if pr and c:
            fr = pr["nnz_k_per_s"] / c
            rows.append((f"large k={k}: predict ≥ {PREDICT_CEILING_FRACTION:.0%} of the gather "
                         f"ceiling ({th} threads)",
                         f"{pr['nnz_k_per_s']:.3g} vs ceiling {c:.3g} nnz·k/s",
                         verdict(fr >= PREDICT_CEILING_FRACTION), f"{fr:.0%} of ceiling"))
    ptp = results.get("peer_throughput") or {}
    for k in results.get("args", {}).get("throughput_k", [8, 64]):
        best = _fastest_peer(ptp, k)
        for kern, label in (("adam_epoch", "Adam"), ("sgd_epoch", "SGD")):
            r = _kernel(tp, kern, k, th)
            if not r:
                continue
            if not best:
                rows.append((f"large k={k}: {label} epoch ≥ {EPOCH_PEER_FACTOR:.0f}× the fastest "
                             "peer's epoch throughput", f"fmnumba {r['nnz_k_per_s']:.3g} nnz·k/s; "
                             "no peer measured", "n/a", "–"))
                continue
            x = r["nnz_k_per_s"] / best[1]
            measured = f"fmnumba {r['nnz_k_per_s']:.3g} vs {best[0]} {best[1]:.3g} nnz·k/s"
            bound = _epoch_bound(kern, ceil, k, th, tp)
            if bound:
                measured += (f"; this machine's {'lazy-Adam' if kern == 'adam_epoch' else 'SGD'}"
                             f" bound {bound:.3g} = {bound / best[1]:.2f}× {best[0]}")
            rows.append((f"large k={k}: {label} epoch ≥ {EPOCH_PEER_FACTOR:.0f}× the fastest "
                         "peer's epoch throughput", measured,
                         verdict(x >= EPOCH_PEER_FACTOR), f"{x:.2f}×"))
    rss = results.get("rss")
    if rss and rss.get("fit_footprint_mib"):
        x = rss["fit_footprint_mib"] / rss["ideal_mib"]
        rows.append((f"large: peak RSS of a fit ≤ {RSS_FACTOR}× (input CSR + params + "
                     "optimizer state)",
                     f"{rss['fit_footprint_mib']:.0f} MiB over baseline vs "
                     f"{rss['ideal_mib']:.0f} MiB", verdict(x <= RSS_FACTOR), f"{x:.2f}×"))
    comp = results.get("compile")
    if comp and "cold" in comp:
        c, w = comp["cold"]["first_fit_adam_s"], comp["cached"]["first_fit_adam_s"]
        rows.append((f"compile: first fit cold ≤ {COMPILE_COLD_S:.0f} s", f"{c:.2f} s",
                     verdict(c <= COMPILE_COLD_S), f"{c / COMPILE_COLD_S:.2f}× the limit"))
        rows.append((f"compile: first fit cached ≤ {COMPILE_CACHED_S:.0f} s", f"{w:.2f} s",
                     verdict(w <= COMPILE_CACHED_S), f"{w / COMPILE_CACHED_S:.2f}× the limit"))
    return rows


def epoch_misses_section(results):
    """Lines saying, for each epoch target missed, by how much, what this
    run's bounds and Adam profile show, and where the next change must aim."""
    tp, ceil = results.get("throughput") or {}, results.get("ceiling")
    th = results.get("host", {}).get("threads", 2)
    x = f"{EPOCH_PEER_FACTOR:.0f}×"
    out = []
    for k in results.get("args", {}).get("throughput_k", [8, 64]):
        best = _fastest_peer(results.get("peer_throughput"), k)
        if not best:
            continue
        peer, pv = best
        need = EPOCH_PEER_FACTOR * pv
        for kern, label in (("sgd_epoch", "SGD"), ("adam_epoch", "Adam")):
            r = _kernel(tp, kern, k, th)
            if not r or r["nnz_k_per_s"] >= need:
                continue
            bound = _epoch_bound(kern, ceil, k, th, tp)
            txt = (f"- **{label} epoch, k={k}**: {r['nnz_k_per_s']:.3g} nnz·k/s, "
                   f"{need / r['nnz_k_per_s']:.2f}× short of {x} {peer} ({need:.3g}). ")
            if bound:
                txt += f"This machine's {label} bound is {bound:.3g} ({bound / pv:.2f}× {peer}); "
                txt += (f"{x} is beyond it in this run. " if bound < need else
                        f"{x} needs {need / bound:.0%} of it; the kernel is at "
                        f"{r['nnz_k_per_s'] / bound:.0%}. ")
            b = _row(tp.get("breakdown"), k, th) if kern == "adam_epoch" else None
            if b:
                stages = {"forward": b["forward_batch_s"], "transpose": b["transpose_batch_s"],
                          "update": b["adam_update_s"]}
                top = max(stages, key=stages.get)
                st = _row((ceil or {}).get("adam_state"), k, th)
                txt += (f"Profile: {top} is the largest stage ({stages[top] * 1e3:.3f} ms of "
                        f"{sum(stages.values()) * 1e3:.3f} ms per batch called separately)")
                if st:
                    txt += (f"; the update takes {b['adam_update_s'] / st['time_per_batch_s']:.1f}×"
                            " the bare state read-modify-write")
                txt += (". Next change aimed there: the P, M and S rows interleaved in one "
                        "table (one random row per feature instead of three)")
                if st and st.get("interleaved_time_s"):
                    txt += (f", whose bare read-modify-write runs "
                            f"{st['time_s'] / st['interleaved_time_s']:.2f}× faster in this run")
                txt += "."
            elif kern == "sgd_epoch":
                txt += ("Between the epoch and its bound lies what the bound leaves out: "
                        "the x values, the w column (1 + k wide rows, not k), the loss and "
                        "the update arithmetic.")
            out.append(txt)
    if out:
        out = ["### Epoch targets missed: by how much, and what profiling shows", ""] + out + [""]
    return out


def adam_bound(ceil, k, threads):
    """Upper bound (nnz·k/s) on a lazy-Adam epoch on this machine: the bare
    read-modify-write of the touched P, M, S rows (separate or interleaved
    tables, the faster) plus the gather of the epoch's rows at the gather
    ceiling (bench/ceiling.py), or None."""
    st = _row((ceil or {}).get("adam_state"), k, threads)
    g = _ceiling_for(ceil, k, threads)
    if not st or not g:
        return None
    work = st["epoch_nnz"] * k
    rmw = min(st["time_s"], st.get("interleaved_time_s") or st["time_s"])  # either layout
    return work / (rmw + work / g)


def sgd_bound(ceil, k, threads, tp=None):
    """Upper bound (nnz·k/s) on a per-sample SGD epoch in shuffled order on
    this machine: bench/ceiling.py's shuffled gather + write-back, as timed in
    turn with the SGD epoch (bench/throughput.py) when available, else from
    the separate ceiling run; or None."""
    own = (_kernel(tp, "sgd_epoch", k, threads) or {}).get("bound_nnz_k_per_s")
    if own:
        return own
    st = _row((ceil or {}).get("sgd_bound"), k, threads)
    return st["rmw_nnz_k_per_s"] if st else None


def _table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def write_report(results, out_dir, stem):
    from . import plots
    out_dir = Path(out_dir)
    h = results["host"]
    th = h.get("threads", 2)
    L = [f"# fmnumba benchmark: {results['started'][:10]}, cpu{h['cpu_count']}", ""]
    if results.get("quick"):
        L += ["> **Quick run** (tiny data, few epochs): a smoke test of the harness, not "
              "figures to quote.", ""]
    cmd = results["command"]
    if results.get("peers") and "--peers-python" not in cmd:
        cmd = "FMNUMBA_PEERS_PYTHON=<peers venv>/bin/python " + cmd
    L += ["Command (from the repository root):", "", "```", cmd, "```", "",
          f"Host: {h['cpu']}, {h['cpu_count']} logical CPUs, {_f(h.get('mem_gib'), '{:.0f}')} "
          f"GiB; Python {h['python']}, Numba {h['numba']}, NumPy {h['numpy']}; {th} threads "
          f"for every library. Load average at start {_fmt_load(h.get('loadavg_start'))}, "
          f"at end {_fmt_load(h.get('loadavg_end'))} (a load above the core count means "
          "other processes shared the CPUs and timings are inflated). Total "
          f"{results.get('total_s', 0) / 60:.1f} min. Raw numbers: `{stem}.json`.", "",
          "Peers: " + (", ".join(f"{p} {v}" for p, v in _peer_versions(results).items())
                       or "none") + (" (run in the interpreter given by --peers-python or "
                                     "FMNUMBA_PEERS_PYTHON, each through bench/peers/run_<name>.py"
                                     " with its tuned defaults)" if results.get("peers") else "")
          + ".", "",
          "Ratios: *fmnumba ÷ peer* for times (below 1: fmnumba faster) and *× sooner* / "
          "*×* for speedups (above 1: fmnumba faster). All figures are medians over the "
          "repeats noted; absolute figures drift between runs, compare ratios within one run.",
          ""]
    rows = evaluate_targets(results)
    if rows:
        L += ["## Targets (issue 4)", "", _table(["target", "measured", "result", "ratio"], rows),
              ""]
        L += epoch_misses_section(results)
    # learning curves
    if results.get("datasets"):
        L += ["## Learning curves and final metrics", "",
              "Test metric after each epoch (or sweep) against cumulative fit time; fmnumba "
              "runs one `partial_fit` per epoch and only those calls are timed (warm JIT: "
              "compile time is reported separately). Each library runs in its own process; "
              "peak RSS is that whole process's (ru_maxrss).", ""]
    for name, d in results.get("datasets", {}).items():
        meta = d["meta"]
        task = meta["task"]
        m, tgt, desc = dataset_target(name, d)
        L += [f"### {name}", "",
              f"{meta['description']}; {meta['n_train']} train / {meta['n_test']} test rows, "
              f"{meta['n_features']} features, {meta['nnz_train'] / max(1, meta['n_train']):.1f} "
              f"nnz/row. Repeats: {d['repeats']} (repeat r uses seed r, so metrics are "
              f"medians over seeds as well as timings). Time-to-target: {m.upper()} "
              f"{_f(tgt, '{:.4f}')} = {desc}.", ""]
        fm = d["libs"].get("fmnumba")
        t_fm = time_to(fm["curve"], m, tgt) if (fm and tgt is not None) else None
        mets = ["rmse"] if task == "regression" else ["auc", "logloss"]
        hdr = (["library", "solver", "epochs"] + [x.upper() for x in mets]
               + ["fit s", "fmnumba ÷ peer (fit)", "time to target s",
                  "fmnumba ÷ peer (to target)", "predict rows/s", "peak RSS MiB"])
        trs = []
        for lib, a in d["libs"].items():
            tt = time_to(a["curve"], m, tgt) if tgt is not None else None
            pr = meta["n_test"] / a["predict_s"] if a.get("predict_s") else None
            trs.append([f"**{lib}**" if lib == "fmnumba" else lib, a.get("solver") or "",
                        a.get("epochs")] + [_f(a["final"].get(x), "{:.4f}") for x in mets]
                       + [_f(a.get("fit_s"), "{:.2f}"),
                          "–" if lib == "fmnumba" or not fm else
                          _f(_ratio(fm.get("fit_s"), a.get("fit_s")), "{:.2f}"),
                          _f(tt, "{:.2f}") if tgt is not None else "–",
                          "–" if lib == "fmnumba" else _f(_ratio(t_fm, tt), "{:.2f}"),
                          _f(pr, "{:.3g}"), _f(a.get("peak_rss_mib"), "{:.0f}")])
        L += [_table(hdr, trs), ""]
        for lib, err in d.get("errors", {}).items():
            L += [f"- {lib} failed: `{err}`"]
        png = plots.plot_curves(name, task, d["libs"], tgt, out_dir / f"{stem}-curves-{name}.png")
        if png:
            L += ["", f"![{name} learning curves]({Path(png).name})", ""]
    # throughput
    tp, ceil = results.get("throughput"), results.get("ceiling")
    ptp = results.get("peer_throughput") or {}
    bars = []
    if ceil and "gather" in ceil:
        L += ["## Machine ceiling (same run)", "",
              f"Gather-and-sum of k-wide float32 rows per CSR row over the large set's "
              f"indices ({ceil['n_rows']} rows, {ceil['nnz']} nnz, {ceil['n_features']} "
              f"features); *uniform* replaces the indices by uniform random ones (no hot "
              f"rows). Threading layer: {ceil.get('numba_threading_layer')}.", ""]
        L += [_table(["k", "indices", "threads", "nnz·k/s", "time s"],
                     [[g["k"], g["indices"], g["threads"], f"{g['nnz_k_per_s']:.3g}",
                       f"{g['time_s']:.4f}"] for g in ceil["gather"]]), ""]
        L += [_table(["stream op", "threads", "GB/s"],
                     [[s["op"], s["threads"], f"{s['gb_per_s']:.1f}"] for s in ceil["stream"]]),
              ""]
        if ceil.get("adam_state"):
            a0 = ceil["adam_state"][0]
            L += [f"Lazy-Adam state bound: the bare read-modify-write of the P, M and S rows "
                  f"each Adam batch touches, over the {a0['epoch_rows']} epoch rows in batches "
                  f"of {a0['batch_size']} ({a0['rows_updated']} row updates for "
                  f"{a0['epoch_nnz']} nnz), each thread prefetching the rows it updates "
                  "1, 2, 4 or 8 rows later; the fastest distance counts. *interleaved* times "
                  "the same with P, M and S in one table (row j = [p | m | s]). *Adam bound* "
                  "adds the gather of the epoch's rows at the gather ceiling to the faster "
                  "layout: no lazy Adam epoch on this machine can beat it.", "",
                  _table(["k", "threads", "state RMW s", "prefetch rows ahead", "µs per batch",
                          "interleaved P|M|S RMW s", "Adam bound nnz·k/s"],
                         [[c["k"], c["threads"], f"{c['time_s']:.4f}",
                           c.get("prefetch_distance", 1),
                           f"{c['time_per_batch_s'] * 1e6:.0f}",
                           _f(c.get("interleaved_time_s"), "{:.4f}"),
                           f"{adam_bound(ceil, c['k'], c['threads']) or 0:.3g}"]
                          for c in ceil["adam_state"]]), ""]
        if ceil.get("sgd_bound"):
            s0 = ceil["sgd_bound"][0]
            L += [f"SGD bound: the same {s0['epoch_rows']} epoch rows ({s0['epoch_nnz']} nnz) "
                  "visited in their shuffled order, one contiguous chunk per thread, gathering "
                  "each row's k-wide rows (*read*), and also writing each of them back once "
                  "(*read + write back*): a per-sample SGD epoch in a fresh random order does at "
                  "least the latter, so no such epoch on this machine can beat it.", "",
                  _table(["k", "threads", "read nnz·k/s", "read + write back nnz·k/s"],
                         [[c["k"], c["threads"], f"{c['read_nnz_k_per_s']:.3g}",
                           f"{c['rmw_nnz_k_per_s']:.3g}"] for c in ceil["sgd_bound"]]), ""]
        for g in ceil["gather"]:
            if g["indices"] == "real" and g["threads"] == th:
                bars.append((f"k={g['k']}", "gather ceiling", g["nnz_k_per_s"]))
    elif ceil:
        L += [f"Ceiling failed: `{ceil.get('error')}`", ""]
    if tp and "kernels" in tp:
        L += ["## fmnumba kernel throughput on large", "",
              f"fmnumba.cpu kernels called directly (warm JIT, median of {tp['repeats']}); "
              f"predict over all {tp['n_rows']} rows ({tp['nnz']} nnz), Adam (batch "
              f"{tp['batch_size']}) and SGD epochs over {tp['epoch_rows']} random rows "
              f"({tp['epoch_nnz']} nnz). Fraction = kernel ÷ gather ceiling at the same k and "
              "threads (real indices), the ceiling timed in turn with predict in the same "
              "process (*same-process ceiling*; the separate ceiling run above drifts with "
              "the machine).", ""]
        trs = []
        for r in tp["kernels"]:
            c = _predict_ceiling(tp, ceil, r["k"], r["threads"])
            bnd = r.get("bound_nnz_k_per_s")
            trs.append([r["kernel"], r["k"], r["threads"], f"{r['time_s']:.3f}",
                        f"{r['nnz_k_per_s']:.3g}", _f(c, "{:.3g}"),
                        _f(_ratio(r["nnz_k_per_s"], c), "{:.1%}"),
                        f"{bnd:.3g} ({r['nnz_k_per_s'] / bnd:.0%})" if bnd else "–"])
            if r["threads"] == th:
                bars.append((f"k={r['k']}", f"fmnumba {r['kernel']}", r["nnz_k_per_s"]))
        L += [_table(["kernel", "k", "threads", "time s", "nnz·k/s", "same-process ceiling",
                      "fraction of ceiling", "SGD bound, same process (fraction)"], trs), "",
              "*SGD bound*: bench/ceiling.py's shuffled gather + write-back over the epoch's "
              "rows, timed in turn with the SGD epoch.", ""]
    elif tp:
        L += [f"Throughput failed: `{tp.get('error')}`", ""]
    if ptp:
        L += ["### Peer epoch throughput on large (same training rows, one epoch or sweep)", ""]
        trs = []
        for key, r in ptp.items():
            lib, k = key.split("/")
            if _peer_tp_ok(r):
                bars.append((f"k={k}", f"{lib} epoch", r["nnz_k_per_s"]))
                mine = [_kernel(tp, kk, int(k), th) for kk in ("adam_epoch", "sgd_epoch")]
                trs.append([lib, r.get("solver") or "", k, f"{r.get('epoch_s', 0):.2f}",
                            f"{_whole_epoch_fit_s(r):.2f}", f"{r['nnz_k_per_s']:.3g}"]
                           + [_f(_ratio(x["nnz_k_per_s"], r["nnz_k_per_s"]) if x else None,
                                 "{:.2f}×") for x in mine])
            elif r.get("nnz_k_per_s"):
                trs.append([lib, r.get("solver") or "", k, f"{r.get('epoch_s', 0):.2g}", "–",
                            "invalid (epoch time below 1 ms)", "–", "–"])
            else:
                trs.append([lib, "", k, "–", "–", f"failed: {r.get('error', '?')[:80]}", "–",
                            "–"])
        if results.get("args", {}).get("peer_throughput", "sgd") == "sgd":
            L += [f"Only the SGD-type peers are timed here (--peer-throughput sgd): "
                  f"{', '.join(MCMC_PEERS)} sweeps at k=64 on 1M features take many minutes.",
                  ""]
        L += [_table(["peer", "solver", "k", "epoch s", "1-epoch fit s", "nnz·k/s",
                      "fmnumba Adam ÷ peer", "fmnumba SGD ÷ peer"], trs), "",
              "*epoch s* (and nnz·k/s, and the targets) is the peer's cost of one more epoch: "
              "a whole `fit` of one epoch where the runner trains from memory, and for xLearn, "
              "which re-reads a text file on every fit, (fit(N) − fit(1)) / (N − 1), its "
              "parsing and our text conversion excluded. *1-epoch fit s* is what a user waits "
              "for one epoch from a CSR matrix, conversion and parsing included (the issue's "
              "scale note quotes xLearn this way); it is context only. fmnumba's figures are "
              "the bare epoch kernels with the L2 form a default fit passes.", ""]
    png = plots.plot_throughput(bars, out_dir / f"{stem}-throughput.png")
    if png:
        L += [f"![throughput vs ceiling]({Path(png).name})", ""]
    rss = results.get("rss")
    if rss and rss.get("fit_footprint_mib") is not None:
        L += ["## Memory of a fit on large", "",
              _table(["baseline RSS MiB", "peak RSS MiB", "fit footprint MiB", "CSR MiB",
                      "params MiB", "Adam state MiB", "ideal MiB", "footprint ÷ ideal"],
                     [[f"{rss['baseline_rss_mib']:.0f}", f"{rss['peak_rss_mib']:.0f}",
                       f"{rss['fit_footprint_mib']:.0f}", f"{rss['csr_mib']:.0f}",
                       f"{rss['params_mib']:.0f}", f"{rss['optimizer_mib']:.0f}",
                       f"{rss['ideal_mib']:.0f}",
                       f"{rss['fit_footprint_mib'] / rss['ideal_mib']:.2f}"]]), "",
              "Baseline: the worker's RSS after imports and a warm-up fit, with the high-water "
              "mark reset; footprint = peak RSS during loading the training CSR and one "
              f"{rss['epochs']}-epoch fit minus that baseline (y adds {rss['y_mib']:.0f} MiB).",
              ""]
    elif rss:
        L += [f"RSS measurement failed: `{rss.get('error')}`", ""]
    comp = results.get("compile")
    if comp and "cold" in comp:
        keys = ["import_s", "first_fit_adam_s", "first_predict_s", "first_fit_sgd_s",
                "first_fit_classifier_s", "second_fit_adam_s", "process_wall_s"]
        L += ["## Compile time", "",
              "Fresh processes with NUMBA_CACHE_DIR set to a temporary directory: empty "
              "(cold), then populated by the cold run (cached). Fits on 2000 rating rows, "
              "1 epoch; *second_fit_adam_s* is the same fit again in that process (no JIT), "
              "so first − second is the JIT (or cache-load) cost.", "",
              _table(["seconds"] + keys, [["cold"] + [f"{comp['cold'][k]:.3f}" for k in keys],
                                          ["cached"] + [f"{comp['cached'][k]:.3f}"
                                                        for k in keys]]), ""]
    elif comp:
        L += [f"Compile-time measurement failed: `{comp.get('error')}`", ""]
    L += profiling_section(tp, results.get("ceiling"))
    gpu = results.get("gpu")
    if gpu is not None:
        L += ["## GPU (CUDA)", ""]
        if not gpu.get("available"):
            L += [gpu["note"], ""]
        elif "error" in gpu:
            L += [f"bench/cuda_bench.py failed: `{gpu['error'][-300:]}`", ""]
        else:
            L += ["bench/cuda_bench.py --cpu (raw JSON below; CPU kernels timed in the same "
                  "run):", "", "```json", json.dumps(gpu["results"], indent=1), "```", ""]
    if results.get("notes"):
        L += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    md = out_dir / f"{stem}.md"
    md.write_text("\n".join(L) + "\n")
    return md


def _peer_versions(results):
    out = {p: "" for p in results.get("peers", [])}
    for d in results.get("datasets", {}).values():
        for lib, a in d["libs"].items():
            if lib in out and a.get("version"):
                out[lib] = str(a["version"])
    return out


def _fmt_load(la):
    return "–" if not la else "/".join(f"{x:.1f}" for x in la)


def profiling_section(tp, ceil=None):
    if not tp or not tp.get("breakdown"):
        return []
    L = ["## Where fmnumba's Adam time goes (profile)", "",
         "Each Adam batch runs three stages; here they are called one by one from Python "
         "over the same random batches of the large set (mean per batch). Inside an epoch "
         "the transpose of the next batch runs in the same parallel region as this batch's "
         "update (one thread transposes while the others take its share of the rows), so "
         "*epoch ms per batch* (the Adam epoch above ÷ its batches) can be below the sum of "
         "the stages. *state bound* is "
         "this machine's time for the bare read-modify-write of the batch's touched P, M and "
         "S rows (bench/ceiling.py, same batches), which any lazy Adam must pay; *launch* is "
         "the cost of one empty `prange` region (Numba "
         f"{tp.get('numba_threading_layer')} threading layer).", ""]
    rows = []
    n_batches = -(-tp["epoch_rows"] // tp["batch_size"])
    for b in tp["breakdown"]:
        tot = b["forward_batch_s"] + b["transpose_batch_s"] + b["adam_update_s"]
        nnz = b["nnz_per_batch"]
        st = _row((ceil or {}).get("adam_state"), b["k"], b["threads"])
        ep = _kernel(tp, "adam_epoch", b["k"], b["threads"])
        rows.append([b["k"], b["threads"], f"{nnz:.0f}", f"{b['unique_features_per_batch']:.0f}",
                     f"{b['forward_batch_s'] * 1e3:.3f} ({b['forward_batch_s'] / tot:.0%})",
                     f"{b['transpose_batch_s'] * 1e3:.3f} ({b['transpose_batch_s'] / tot:.0%})",
                     f"{b['adam_update_s'] * 1e3:.3f} ({b['adam_update_s'] / tot:.0%})",
                     "–" if not ep else f"{ep['time_s'] / n_batches * 1e3:.3f}",
                     "–" if st is None else f"{st['time_per_batch_s'] * 1e3:.3f}",
                     f"{tot / nnz * 1e9:.0f}"])
    L += [_table(["k", "threads", "nnz/batch", "unique feats/batch", "forward ms", "transpose ms",
                  "adam_update ms", "epoch ms per batch", "state bound ms",
                  "ns per nnz (stages)"], rows), ""]
    la = tp.get("parallel_launch_s") or {}
    if la:
        L += ["Empty parallel-region launch: " + ", ".join(
            f"{v * 1e6:.1f} µs at {k} thread(s)" for k, v in la.items())
            + " (an Adam batch launches two: forward_batch and the update with the next "
            "transpose).", ""]
    return L


def _portable(value):
    """Paths inside the repository as relative paths; other paths by name only
    (results files never record a machine's absolute paths)."""
    if isinstance(value, (str, Path)) and os.path.isabs(str(value)):
        p = Path(value).resolve()
        root = Path(__file__).resolve().parents[1]
        try:
            return str(p.relative_to(root))
        except ValueError:
            return f"<{p.name}>"
    return value
