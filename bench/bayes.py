"""Bayesian FM benchmark: fmnumba's Gibbs sampler (solver="mcmc") against
myFM side by side, on the synthetic MovieLens-shaped ratings, a9a and w8a
(and MovieLens itself with --movielens PATH).

    python -m bench.bayes [--datasets small,a9a,w8a] [--repeats 3] [--quick]

Each (library, data set, repeat) runs in its own process (peak RSS is per
process), the two libraries alternating which goes first. Both fit k = 8
with 200 sweeps, keep the last 195 samples (myFM's default: all after 5
burn-in sweeps) and average their predictions. fmnumba warms its JIT cache
on a 2-sweep fit first (reported as compile_s) and runs on --threads
threads; myFM trains on one thread (its sampler is sequential). Both
processes get OMP_WAIT_POLICY=PASSIVE unless --spin: on a machine shared
with other work, spinning OpenMP threads fight for the cores.

Reported per run: test RMSE or AUC / log loss, fit time, time per sweep,
nnz·k/s of a sweep beside that of one Adam epoch on the same data, peak
RSS; for fmnumba also where a sweep's time goes (cProfile over the kernel
calls of a 20-sweep fit). Writes bench/results/bayes.{json,md,png}.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .data import DEFAULT_CACHE, REPO, SHARED_DATA, prepare
from .protocol import load_npz, metrics, peak_rss_mib, save_npz, thread_env

RESULTS = REPO / "bench" / "results"
DATASETS = ("small", "a9a", "w8a")
MYFM_BURN_IN = 5


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
def _estimator(task, k, sweeps, seed, n_jobs, n_burnin=MYFM_BURN_IN, n_kept=None):
    """fmnumba's Bayesian FM with its defaults, keeping myFM's number of samples."""
    from fmnumba import FMClassifier, FMRegressor
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


def worker(a):
    from fmnumba.column_view import build_column_view
    Xtr, ytr = load_npz(a.train)
    Xte, yte = load_npz(a.test)
    if Xte.shape[1] < Xtr.shape[1]:
        import scipy.sparse as sp
        Xte = sp.csr_matrix((Xte.data, Xte.indices, Xte.indptr), shape=(Xte.shape[0], Xtr.shape[1]))
    Xte = Xte[:, :Xtr.shape[1]]
    Xtr, Xte = Xtr.astype(np.float32), Xte.astype(np.float32)
    t0 = time.perf_counter()
    _estimator(a.task, a.k, 2, a.seed, a.threads, n_burnin=0, n_kept=1).fit(Xtr, ytr)
    compile_s = time.perf_counter() - t0
    est = _estimator(a.task, a.k, a.sweeps, a.seed, a.threads)
    t0 = time.perf_counter()
    est.fit(Xtr, ytr)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = _predict(est, a.task, Xte)
    predict_s = time.perf_counter() - t0
    rss = peak_rss_mib()
    sweep_s = fit_s / a.sweeps
    view = build_column_view(Xtr.tocsr(), np.float32)
    par_nnz = sum(int(view.cptr[j + 1] - view.cptr[j]) for s in range(len(view.seg_par))
                  if view.seg_par[s]
                  for j in view.cols[view.bounds[view.seg_b[s]]:view.bounds[view.seg_b[s + 1]]])
    res = {"library": "fmnumba", "solver": "mcmc" + (", probit" if a.task != "regression"
                                                      else ""),
           "threads": a.threads, "seed": a.seed, "n_iter": a.sweeps,
           "n_kept_samples": a.sweeps - MYFM_BURN_IN, "n_train": int(Xtr.shape[0]),
           "nnz_train": int(Xtr.nnz), "compile_s": compile_s, "fit_s": fit_s,
           "predict_s": predict_s, "sweep_s": sweep_s,
           "nnz_k_per_s": Xtr.nnz * a.k / sweep_s, "peak_rss_mib": rss,
           "parallel_nnz_fraction": par_nnz / max(1, Xtr.nnz),
           "final": metrics(a.task, yte, pred)}
    if a.profile:
        res["profile_ms_per_sweep"] = _profile(est, Xtr, ytr)
        adam_s = _adam_epoch(a.task, Xtr, ytr, a.k, a.threads)
        res["adam_epoch_s"] = adam_s
        res["adam_nnz_k_per_s"] = Xtr.nnz * a.k / adam_s
    print(json.dumps(res))


# --------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------
def _run(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    text = out.stdout
    return json.loads(text[text.index("{"):])


def _fmnumba_cmd(tr, te, task, a, seed, profile):
    cmd = [sys.executable, "-m", "bench.bayes", "--worker", "--train", str(tr), "--test",
           str(te), "--task", task, "--k", str(a.k), "--sweeps", str(a.sweeps), "--threads",
           str(a.threads), "--seed", str(seed)]
    return cmd + (["--profile"] if profile else [])


def _myfm_cmd(tr, te, task, a, seed):
    return [a.peer_python or sys.executable, str(REPO / "bench" / "peers" / "run_myfm.py"),
            "--train", str(tr), "--test", str(te), "--task", task, "--k", str(a.k),
            "--epochs", str(a.sweeps), "--threads", str(a.threads), "--seed", str(seed),
            "--burn-in", str(MYFM_BURN_IN), "--no-curve"]


def _median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return float(np.median(vals)) if vals else None


def _load():
    try:
        return os.getloadavg()
    except OSError:
        return None


def run_all(a):
    env = dict(os.environ, **thread_env(a.threads), TQDM_DISABLE="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if not a.spin:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    out = {"k": a.k, "sweeps": a.sweeps, "threads": a.threads, "repeats": a.repeats,
           "omp_wait_policy": env.get("OMP_WAIT_POLICY", "default"), "quick": a.quick,
           "cpu_count": os.cpu_count(), "load_start": _load(), "started": time.ctime(),
           "datasets": {}}
    names = [d for d in a.datasets.split(",") if d] + (["movielens"] if a.movielens else [])
    for name in names:
        tr, te, meta = dataset(name, a.cache, a.quick, a.movielens)
        task = meta["task"]
        runs = {"fmnumba": [], "myfm": []}
        loads = []
        for r in range(a.repeats):
            order = ("fmnumba", "myfm") if r % 2 == 0 else ("myfm", "fmnumba")
            for lib in order:
                loads.append(_load())
                if lib == "fmnumba":
                    res = _run(_fmnumba_cmd(tr, te, task, a, r, profile=(r == 0)), env)
                else:
                    res = _run(_myfm_cmd(tr, te, task, a, r), env)
                    res["sweep_s"] = res["fit_s"] / a.sweeps
                    res["nnz_k_per_s"] = res["nnz_train"] * a.k / res["sweep_s"]
                runs[lib].append(res)
                print(f"{name} repeat {r} {lib}: fit {res['fit_s']:.2f} s, {res['final']}",
                      flush=True)
        ratios = [m["fit_s"] / f["fit_s"] for f, m in zip(runs["fmnumba"], runs["myfm"])]
        out["datasets"][name] = {"task": task, "description": meta.get("description"),
                                 "runs": runs, "fit_time_ratio_myfm_over_fmnumba": ratios,
                                 "load_during": loads}
    out["load_end"] = _load()
    return out


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def _agg(runs, task):
    keys = ("rmse",) if task == "regression" else ("auc", "logloss")
    m = {k: float(np.median([r["final"][k] for r in runs])) for k in keys}
    m.update({k: _median(runs, k) for k in ("fit_s", "sweep_s", "nnz_k_per_s",
                                            "peak_rss_mib", "compile_s")})
    return m


def _intro(res):
    """Title and how the runs were made."""
    return ["# Bayesian FM: fmnumba mcmc vs myFM (Gibbs sampling)", "",
            f"k = {res['k']}, {res['sweeps']} sweeps, 195 kept samples, fmnumba on "
            f"{res['threads']} threads, myFM on one (its sampler is sequential); "
            f"{res['repeats']} repeats per library, alternating which runs first; medians. "
            f"OMP_WAIT_POLICY={res['omp_wait_policy']}. Machine: {res['cpu_count']} cores, "
            f"load average (1, 5, 15 min) {_fmt_load(res['load_start'])} at the start and "
            f"{_fmt_load(res['load_end'])} at the end (shared with other work: timings "
            "are noisy, compare the ratios).", ""]


def report(res, path_md, path_png):
    from .report import md_table
    fits = []
    for name, d in res["datasets"].items():
        task = d["task"]
        for lib in ("fmnumba", "myfm"):
            m = _agg(d["runs"][lib], task)
            ratio = d["fit_time_ratio_myfm_over_fmnumba"]
            rtxt = (f"{np.median(ratio):.2f}× (runs: {', '.join(f'{x:.2f}' for x in ratio)})"
                    if lib == "fmnumba" else "")
            fits.append([name, lib, _f(m.get("rmse")), _f(m.get("auc")), _f(m.get("logloss")),
                         f"{m['fit_s']:.2f}", f"{m['sweep_s'] * 1e3:.1f} ms",
                         f"{m['nnz_k_per_s']:.3g}", f"{m['peak_rss_mib']:.0f}", rtxt])
    kernels = []
    for name, d in res["datasets"].items():
        f0 = d["runs"]["fmnumba"][0]
        parts = f0.get("profile_ms_per_sweep") or {}
        total = sum(parts.values()) or 1.0
        shown = {k: v for k, v in parts.items() if v >= 0.02 * total}
        shown["rest"] = total - sum(shown.values())
        prof = ", ".join(f"{k} {v:.2f} ({100 * v / total:.0f}%)" for k, v in shown.items())
        kernels.append([name, f"{f0['compile_s']:.1f}", f"{f0.get('adam_nnz_k_per_s', 0):.3g}",
                        f"{f0['nnz_k_per_s']:.3g}",
                        f"{100 * f0['parallel_nnz_fraction']:.0f}%", prof])
    lines = _intro(res) + [
        md_table(["data", "library", "RMSE", "AUC", "log loss", "fit s", "s/sweep",
                  "nnz·k/s per sweep", "peak RSS MiB", "myFM fit / fmnumba fit"], fits),
        "", "Per-run figures (every repeat) are in bayes.json.", "",
        "## Sweep throughput beside Adam, and where a sweep's time goes", "",
        "fmnumba, first repeat: compile time of the warm-up fit, one Adam epoch "
        "(fmnumba's defaults) on the same training data, the share of nonzeros in "
        "parallel (one-hot) blocks, and cProfile's own time per sweep of each kernel "
        "over a 20-sweep fit (update_sweep: the draws of w and V; latent_rows: the "
        "probit latent targets and residual sums; refresh_rows: the rebuild of e and q "
        "every 10 sweeps; draw_group_hyper: μ, λ).", "",
        md_table(["data", "compile s", "Adam epoch nnz·k/s", "mcmc sweep nnz·k/s",
                  "parallel nnz", "ms per sweep by kernel"], kernels)]
    Path(path_md).write_text("\n".join(lines) + "\n")
    _plot(res, path_png)


def _f(x):
    return "" if x is None else f"{x:.4f}"


def _fmt_load(x):
    return "n/a" if not x else ", ".join(f"{v:.2f}" for v in x)


def _plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(res["datasets"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    x = np.arange(len(names))
    for i, lib in enumerate(("fmnumba", "myfm")):
        fit = [_agg(res["datasets"][n]["runs"][lib], res["datasets"][n]["task"])["fit_s"]
               for n in names]
        axes[0].bar(x + (i - 0.5) * 0.38, fit, 0.38, label=lib,
                    color=("#d62728", "#9467bd")[i])
    axes[0].set_xticks(x, names)
    axes[0].set_ylabel(f"fit time, s ({res['sweeps']} sweeps)")
    axes[0].set_title("fit time (median)")
    axes[0].legend()
    rel = []
    for n in names:
        d = res["datasets"][n]
        key = "rmse" if d["task"] == "regression" else "logloss"
        f = _agg(d["runs"]["fmnumba"], d["task"])[key]
        m = _agg(d["runs"]["myfm"], d["task"])[key]
        rel.append(100 * (f / m - 1))
    axes[1].bar(x, rel, 0.5, color=["#2ca02c" if v <= 0 else "#d62728" for v in rel])
    axes[1].axhline(0, color="grey", lw=0.8)
    labels = [f"{n}\n({'RMSE' if res['datasets'][n]['task'] == 'regression' else 'log loss'})"
              for n in names]
    axes[1].set_xticks(x, labels)
    axes[1].set_ylabel("fmnumba vs myFM, % (lower is better)")
    axes[1].set_title("test error relative to myFM (median)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--movielens", default=None, help="a MovieLens ratings file (u.data, ...)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sweeps", type=int, default=200)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="small subsets (a smoke run)")
    p.add_argument("--spin", action="store_true", help="keep OpenMP's default wait policy")
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--peer-python", default=None, help="interpreter with myfm installed")
    p.add_argument("--out-dir", default=str(RESULTS))
    # worker mode
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--train")
    p.add_argument("--test")
    p.add_argument("--task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true")
    a = p.parse_args(argv)
    if a.worker:
        worker(a)
        return 0
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
