"""Benchmark harness: fmnumba against peer FM libraries.

    python -m bench                      # everything, ~20 min on 2 cores
    python -m bench --quick              # tiny sizes, ~1 min
    python -m bench --datasets a9a,small --repeats 3 --threads 2 \
        --movielens path/to/u.data --peers-python path/to/peer-venv/bin/python

Every library runs in its own subprocess with a timeout, on the same npz
files (cached under bench/.cache): fmnumba through this module's worker
(bench/worker.py, ``python -m bench worker ...``), each peer through bench/peers/run_X.py in
the peers' interpreter, given by --peers-python or the FMNUMBA_PEERS_PYTHON
environment variable (peers are skipped, with a note in the report, when
neither is set). All write the same JSON: a learning curve
[{epoch, time_s, rmse | auc, logloss}] of test metrics against cumulative
fit time, fit_s, predict_s, peak_rss_mib, version.

Besides the learning curves the run measures kernel throughput
(bench/throughput.py), this machine's gather and bandwidth ceiling
(bench/ceiling.py), JIT compile time cold and cached (bench/compile_time.py)
and the peak RSS of a fit on the large set, then writes
<out>/<date>-<host kind>.md (+ .json and PNGs; bench/report.py) and a copy
LATEST.md. This module runs the parts and collects their JSON; the data sets
are built by bench/data.py and the targets checked by bench/targets.py.
"""
import argparse
import datetime as _dt
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

from . import worker
from .data import ALL_DATASETS, DEFAULT_CACHE, REPO, SHARED_DATA, prepare
from .protocol import thread_env
from .report import write_report
from .targets import MCMC_PEERS

PEERS_DIR = REPO / "bench" / "peers"
ALL_PARTS = ("curves", "rss", "throughput", "ceiling", "compile", "gpu")

# epochs for fmnumba and the SGD-type peers / sweeps for MCMC and ALS peers
EPOCHS = {"a9a": (20, 200), "criteo": (20, 100), "small": (20, 200), "movielens": (20, 200),
          "large": (2, 3)}
QUICK_EPOCHS = (3, 5)
PEER_MODULES = {"xlearn": "xlearn", "modernfm": "modern_fm", "myfm": "myfm",
                "fastfm": "fastFM"}
# fmnumba's settings per data set; where absent, the estimators' defaults
# (chosen by bench/defaults_grid.py). The peers' runners carry settings tuned on
# a9a for classification (bench/peers/run_*.py); fmnumba gets the same: the
# best a9a setting of the defaults grid, with a weaker L2 on w.
FM_PARAMS = {"a9a": {"learning_rate": 0.02, "lr_decay": 1.0, "batch_size": 1024,
                     "l2_reg_w": 0.001, "l2_reg_v": 0.01}}


def _thread_env(threads):
    """This process's environment with the thread counts pinned and the
    repository on PYTHONPATH, for a runner's subprocess."""
    env = {**os.environ, **thread_env(threads)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [x for x in
                                                      [os.environ.get("PYTHONPATH")] if x])
    env.setdefault("USER", "bench")
    env.setdefault("TQDM_DISABLE", "1")
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


def _part(args, name, cmd, log, timeout=None):
    """Run one measuring subprocess `cmd` + ['--out', <work>/name.json]; its
    JSON, or {'error': ...}."""
    o = Path(args._work) / f"{name}.json"
    r, err, _ = run_json(cmd + ["--out", str(o)], o, timeout or args.timeout, args.threads,
                         log, name)
    return r or {"error": err}


def _prepare_datasets(args, results, log):
    """{name: (train npz, test npz, meta)} of the data sets the parts need."""
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
    return paths


def _run_parts(args, paths, peers_py, runners, results, log):
    """Each requested part, its JSON stored under its key in `results`."""
    py, th = sys.executable, str(args.threads)
    ks = ",".join(map(str, args.throughput_k))
    if "large" in paths:
        large_tr, large_te, _ = paths["large"]
        if "ceiling" in args.parts:
            log("== ceiling (gather + bandwidth) on large")
            results["ceiling"] = _part(args, "ceiling", [
                py, "-m", "bench.ceiling", "--data", str(large_tr), "--k", ks, "--threads", th,
                "--repeats", str(args.repeats), "--stream-mib", "32" if args.quick else "512",
                "--epoch-rows", str(args.epoch_rows)], log)
        if "throughput" in args.parts:
            log("== fmnumba kernel throughput on large")
            results["throughput"] = _part(args, "throughput", [
                py, "-m", "bench.throughput", "--data", str(large_tr), "--k", ks,
                "--threads", th, "--repeats", str(args.repeats),
                "--epoch-rows", str(args.epoch_rows)], log)
            if runners and args.peer_throughput != "none":
                log("== peer epoch throughput on large")
                results["peer_throughput"] = run_peer_throughput(
                    args, large_tr, large_te, peers_py, runners, log)
        if "rss" in args.parts:
            log("== peak RSS of an fmnumba fit on large")
            results["rss"] = _part(args, "rss", [
                py, "-m", "bench", "worker", "--rss-only", "--train", str(large_tr),
                "--test", str(large_te), "--task", "regression", "--k", str(args.k),
                "--epochs", "1", "--threads", th, "--params", json.dumps(args.fm_params)], log)
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
        results["compile"] = _part(args, "compile", [
            py, "-m", "bench.compile_time", "--threads", th,
            "--cached-repeats", str(max(1, args.repeats))], log, timeout=args.timeout * 2)


def _write(results, out_dir, stem, log=print, took=""):
    """The report <stem>.md and its copy LATEST.md in out_dir."""
    md = write_report(results, out_dir, stem)
    shutil.copyfile(md, out_dir / "LATEST.md")
    log(f"wrote {md} and {out_dir / 'LATEST.md'}{took}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "worker":
        return worker.main(argv[1:])
    args = parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        results = json.loads(Path(args.report_only).read_text())
        _write(results, out_dir, results["stem"])
        return 0
    t_start = time.perf_counter()
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
    paths = _prepare_datasets(args, results, log)
    try:
        _run_parts(args, paths, peers_py, runners, results, log)
    finally:
        results["host"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
        results["total_s"] = time.perf_counter() - t_start
        shutil.rmtree(args._work, ignore_errors=True)
        (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
        _write(results, out_dir, stem, log, f" in {results['total_s']:.0f} s")
    return 0


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
