"""JIT compile time: the first fit in a fresh process, cold and cached.

Each measurement is a fresh subprocess with NUMBA_CACHE_DIR pointing at a
temporary directory: empty the first time (cold: every kernel compiles),
populated by the first run the second time (cached: kernels load from disk).
The child times `import fmnumba` (with the estimators), the first
FMRegressor(dtype=float32, max_iter=3) Adam fit on a 2,000 x 300 sparse
matrix and its first predict (the first-run figure), then an SGD fit and an
FMClassifier fit (each compiling or loading what the earlier calls did
not). Every step is timed as wall (perf_counter) and CPU (process_time)
seconds: on a shared machine the CPU seconds are the steadier figure. The
child also reports, per fmnumba kernel, the seconds of its first compile
(inclusive of the kernels it compiles in turn) and how many specialisations
it compiled. Load averages are recorded around every child.

    python -m bench.compile_time --threads 2 --out c.json
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from bench.protocol import write_json
from bench.timing import tool_parser

CHILD = r"""
import json, sys, time
w_start, c_start = time.perf_counter(), time.process_time()
from numba.core import dispatcher as _dispatcher

compiles = {}  # kernel -> [inclusive seconds, specialisations]
_compile = _dispatcher.Dispatcher.compile
def _timed_compile(self, sig):
    n0, t0 = len(self.overloads), time.process_time()
    try:
        return _compile(self, sig)
    finally:
        name = f"{self.py_func.__module__}.{self.py_func.__qualname__}"
        if name.startswith("fmnumba.") and len(self.overloads) > n0:
            c = compiles.setdefault(name[len("fmnumba."):], [0.0, 0])
            c[0] += time.process_time() - t0
            c[1] += len(self.overloads) - n0
_dispatcher.Dispatcher.compile = _timed_compile

r = {}
def step(name, fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    r[name + "_s"] = time.perf_counter() - w
    r[name + "_cpu_s"] = time.process_time() - c
    return out

def _import():
    import fmnumba
    fmnumba.FMRegressor, fmnumba.FMClassifier
    return fmnumba
fmnumba = step("import", _import)
import numpy as np
import scipy.sparse as sp
X = sp.random(2000, 300, density=0.05, format="csr", random_state=0, dtype=np.float64)
y = np.random.default_rng(0).normal(size=2000)
m = step("first_fit_adam", lambda: fmnumba.FMRegressor(
    dtype=np.float32, max_iter=3, random_state=0).fit(X, y))
step("first_predict", lambda: m.predict(X))
r["first_run_s"] = time.perf_counter() - w_start
r["first_run_cpu_s"] = time.process_time() - c_start
step("first_fit_sgd", lambda: fmnumba.FMRegressor(
    dtype=np.float32, max_iter=1, solver="sgd", random_state=0).fit(X, y))
step("first_fit_classifier", lambda: fmnumba.FMClassifier(
    dtype=np.float32, max_iter=1, random_state=0).fit(X, (y > np.median(y)).astype(int)))
step("second_fit_adam", lambda: fmnumba.FMRegressor(
    dtype=np.float32, max_iter=3, random_state=0).fit(X, y))
r["total_first_calls_s"] = (r["first_fit_adam_s"] + r["first_predict_s"] + r["first_fit_sgd_s"]
                            + r["first_fit_classifier_s"])
r["kernels"] = {k: {"compile_cpu_s": v[0], "specialisations": v[1]}
                for k, v in compiles.items()}
print("RESULT " + json.dumps(r))
"""


def _child(cache_dir, threads, timeout):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, NUMBA_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                       timeout=timeout)
    wall = time.perf_counter() - t0
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[7:])
            r["process_wall_s"] = wall
            r["load_avg_before"] = list(load_before)
            r["load_avg_after"] = list(os.getloadavg())
            return r
    raise RuntimeError(f"compile-time child failed (rc={p.returncode}): {p.stderr[-2000:]}")


def measure(threads=2, timeout=600, cached_repeats=1, cold_repeats=1):
    """{'cold': {...}, 'cached': {...}} from fresh processes: each cold run
    with its own empty cache, each cached run reusing the first cold run's.
    With repeats, the run of median first-run CPU time is reported and all
    runs are kept under 'cold_runs' / 'cached_runs'."""
    def median(runs):
        return sorted(runs, key=lambda r: r["first_run_cpu_s"])[len(runs) // 2]

    with tempfile.TemporaryDirectory(prefix="fmnumba-numba-cache-") as d:
        colds = [_child(d, threads, timeout)]
        cached = [_child(d, threads, timeout) for _ in range(max(1, cached_repeats))]
    for _ in range(max(1, cold_repeats) - 1):
        with tempfile.TemporaryDirectory(prefix="fmnumba-numba-cache-") as d:
            colds.append(_child(d, threads, timeout))
    return {"cold": median(colds), "cached": median(cached), "threads": threads,
            "cold_runs": colds, "cached_runs": cached,
            "cold_repeats": len(colds), "cached_repeats": len(cached)}


def main(argv=None):
    p = tool_parser(__doc__, data=False)
    p.add_argument("--timeout", type=int, default=600)
    p.add_argument("--cached-repeats", type=int, default=1)
    p.add_argument("--cold-repeats", type=int, default=1)
    a = p.parse_args(argv)
    return write_json(measure(a.threads, a.timeout, a.cached_repeats, a.cold_repeats), a.out)


if __name__ == "__main__":
    sys.exit(main())
