"""Threads under load: fit time with the default thread count against
n_jobs=1, and GridSearchCV(n_jobs=2) against n_jobs=1, on a quiet machine
and with competing CPU-bound processes that this benchmark starts itself,
for each of Numba's threading layers.

Every layer runs in its own worker process (the layer is fixed at import):
`omp` (GNU OpenMP as it comes), `omp-passive` (the same with
OMP_WAIT_POLICY=PASSIVE set before the runtime loads), `tbb` and
`workqueue`, and `fmnumba` (no setting: the layer fmnumba picks). The fit:
FMRegressor (Adam, k = 8, 5 epochs) on a sparse set of 160k rows over 160k
Zipf-popular features in 21 fields; the search: 4 candidates × 2 folds of
a 5-epoch FMRegressor on 100k MovieLens-shaped ratings. Medians of
--repeats runs, warm JIT; the load average before each run is recorded.
Writes bench/results/load.md and .json.

    python -m bench.load [--repeats 3] [--layers fmnumba,omp,omp-passive,tbb,workqueue]
                         [--busy 0,1]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
LAYERS = {"fmnumba": {}, "omp": {"NUMBA_THREADING_LAYER": "omp"},
          "omp-passive": {"NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "PASSIVE"},
          "tbb": {"NUMBA_THREADING_LAYER": "tbb"},
          "workqueue": {"NUMBA_THREADING_LAYER": "workqueue"}}
_SPIN = "import time\nt = time.time()\nwhile time.time() - t < 900: pass\n"


def _worker(repeats, quick):
    import numba
    import numpy as np
    from sklearn.model_selection import GridSearchCV

    from fmnumba import FMRegressor
    from fmnumba.datasets import large_field_sizes, make_fm_data, make_ratings

    n = 20_000 if quick else 200_000
    d = make_fm_data(n, large_field_sizes(n), random_state=0)
    X, _, y, _ = d.split(0.2)
    r = make_ratings(10_000 if quick else 100_000, n_users=943, n_items=1682, n_context=(),
                     random_state=0)
    FMRegressor(max_iter=1, random_state=0, n_jobs=1).fit(X[:2000], y[:2000])  # warm JIT
    FMRegressor(max_iter=1, random_state=0).fit(X[:2000], y[:2000])
    grid = {"learning_rate": [0.005, 0.01], "l2_reg_w": [0.003, 0.01]}

    def fit(n_jobs):
        t = time.perf_counter()
        FMRegressor(max_iter=5, random_state=0, n_jobs=n_jobs).fit(X, y)
        return time.perf_counter() - t

    def search(n_jobs):
        t = time.perf_counter()
        GridSearchCV(FMRegressor(max_iter=5, random_state=0), grid, cv=2,
                     n_jobs=n_jobs).fit(r.X, r.y)
        return time.perf_counter() - t

    search(2)  # start the loky workers (and warm their JIT cache)
    out = {"fit_1": [], "fit_default": [], "search_1": [], "search_2": [], "load": []}
    for _ in range(repeats):  # interleaved, so that drifting load hits both alike
        out["load"].append(os.getloadavg()[0])
        out["fit_1"].append(fit(1))
        out["fit_default"].append(fit(None))
        out["search_1"].append(search(1))
        out["search_2"].append(search(2))
    out["layer"] = numba.threading_layer()
    out["threads"] = numba.config.NUMBA_NUM_THREADS
    print("RESULT " + json.dumps(out), flush=True)


def _run_layer(name, busy, repeats, quick):
    env = dict(os.environ)
    for v in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY"):
        env.pop(v, None)
    env.update(LAYERS[name])
    spinners = [subprocess.Popen([sys.executable, "-c", _SPIN]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0)
        cmd = [sys.executable, "-m", "bench.load", "--worker", "--repeats", str(repeats)]
        p = subprocess.run(cmd + (["--quick"] if quick else []), env=env, capture_output=True,
                           text=True, timeout=1800, cwd=Path(__file__).resolve().parent.parent)
    finally:
        for s in spinners:
            s.kill()
            s.wait()
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not line:
        return {"error": (p.stderr or p.stdout)[-400:]}
    return json.loads(line[-1][7:])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--layers", default=",".join(LAYERS))
    p.add_argument("--busy", default="0,1", help="competing busy processes, per condition")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(RESULTS / "load"))
    a = p.parse_args(argv)
    if a.worker:
        _worker(a.repeats, a.quick)
        return 0
    res = []
    for busy in [int(b) for b in a.busy.split(",")]:
        for name in a.layers.split(","):
            r = _run_layer(name, busy, a.repeats, a.quick)
            r.update(name=name, busy=busy)
            res.append(r)
            print(json.dumps(r), flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps(res, indent=1))
    med = statistics.median
    lines = ["# Threads under load", "",
             f"Command: `python -m bench.load --repeats {a.repeats}`"
             + (" --quick" if a.quick else "") + f" on {os.cpu_count()} cores. "
             "Fit: FMRegressor, 5 epochs, 160k rows; search: GridSearchCV, 4 candidates × 2 "
             "folds. Medians of the repeats (seconds); ratios below 1 favour the default "
             "thread count or n_jobs=2. *busy*: CPU-bound processes the benchmark ran beside "
             "it; *load*: the 1-minute load average at the start of each repeat.", "",
             "| busy | layer | layer loaded | fit n_jobs=1 | fit default | default / 1 | "
             "search n_jobs=1 | search n_jobs=2 | 2 / 1 | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res:
        if "error" in r:
            lines.append(f"| {r['busy']} | {r['name']} | failed: "
                         f"{r['error'].splitlines()[-1] if r['error'] else '?'} |||||||| ")
            continue
        f1, fd, s1, s2 = (med(r[k]) for k in ("fit_1", "fit_default", "search_1", "search_2"))
        lines.append(f"| {r['busy']} | {r['name']} | {r['layer']} | {f1:.2f} | {fd:.2f} | "
                     f"{fd / f1:.2f} | {s1:.2f} | {s2:.2f} | {s2 / s1:.2f} | "
                     + ", ".join(f"{x:.1f}" for x in r["load"]) + " |")
    Path(a.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
