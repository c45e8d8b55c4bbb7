"""JIT compile time: the first fit in a fresh process, cold and cached.

Each measurement is a fresh subprocess with NUMBA_CACHE_DIR pointing at a
temporary directory: empty the first time (cold: every kernel compiles),
populated by the first run the second time (cached: kernels load from disk).
The child times `import fmnumba`, the first FMRegressor (Adam) fit, the first
predict, and then an SGD fit and an FMClassifier fit (each compiling or
loading what the earlier calls did not).

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
t0 = time.perf_counter()
import numpy as np
import fmnumba
from fmnumba.datasets import make_ratings
t_import = time.perf_counter() - t0
d = make_ratings(2000, n_users=100, n_items=50, random_state=0)
X, y = d.X, d.y
r = {"import_s": t_import}
t0 = time.perf_counter()
m = fmnumba.FMRegressor(8, max_iter=1, random_state=0).fit(X, y)
r["first_fit_adam_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
m.predict(X)
r["first_predict_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
fmnumba.FMRegressor(8, max_iter=1, solver="sgd", random_state=0).fit(X, y)
r["first_fit_sgd_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
fmnumba.FMClassifier(8, max_iter=1, random_state=0).fit(X, (y > np.median(y)).astype(int))
r["first_fit_classifier_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
fmnumba.FMRegressor(8, max_iter=1, random_state=0).fit(X, y)
r["second_fit_adam_s"] = time.perf_counter() - t0
r["total_first_calls_s"] = (r["first_fit_adam_s"] + r["first_predict_s"] + r["first_fit_sgd_s"]
                            + r["first_fit_classifier_s"])
print("RESULT " + json.dumps(r))
"""


def _child(cache_dir, threads, timeout):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, NUMBA_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                       timeout=timeout)
    wall = time.perf_counter() - t0
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[7:])
            r["process_wall_s"] = wall
            return r
    raise RuntimeError(f"compile-time child failed (rc={p.returncode}): {p.stderr[-2000:]}")


def measure(threads=2, timeout=600, cached_repeats=1):
    """{'cold': {...}, 'cached': {...}} from two fresh processes sharing a tmp cache."""
    with tempfile.TemporaryDirectory(prefix="fmnumba-numba-cache-") as d:
        cold = _child(d, threads, timeout)
        cached = [_child(d, threads, timeout) for _ in range(max(1, cached_repeats))]
    # the cached figure is the median run by first-fit time
    cached.sort(key=lambda r: r["first_fit_adam_s"])
    return {"cold": cold, "cached": cached[len(cached) // 2], "threads": threads,
            "cached_repeats": len(cached)}


def main(argv=None):
    p = tool_parser(__doc__, data=False)
    p.add_argument("--timeout", type=int, default=600)
    p.add_argument("--cached-repeats", type=int, default=1)
    a = p.parse_args(argv)
    return write_json(measure(a.threads, a.timeout, a.cached_repeats), a.out)


if __name__ == "__main__":
    sys.exit(main())
