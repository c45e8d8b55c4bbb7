"""Peak memory of FMRegressor.fit on the 1,000,000-row synthetic set.

    python bench/memory.py            # writes bench/results/memory.md

The data set (make_fm_data(1_000_000, large_field_sizes(), n_factors=4,
random_state=0): 21 nnz per row, 1M features) is generated once and cached
as raw .npy arrays; the measurement then runs in a fresh subprocess that
imports fmnumba, warms the (disk-cached) kernels up on a tiny problem, loads
the CSR arrays and fits a k = 8 model for one epoch. Peak resident memory
comes from the kernel's high-water mark (VmHWM, reset after the warm-up
through /proc/self/clear_refs; loading the raw arrays cannot push it above
the fit's own peak), cross-checked by a thread that samples RSS every
millisecond.

Budget: peak RSS of the fit, counted from before the data were loaded (so
the input itself is included), must stay within
1.5 × (input CSR + parameters P + Adam state M, S).
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.protocol import proc_status_bytes, reset_peak_rss  # noqa: E402

N_ROWS = 1_000_000
K = 8


def _rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak():
    """Peak RSS so far in bytes: VmHWM, else ru_maxrss."""
    hwm = proc_status_bytes("VmHWM")
    return hwm if hwm is not None else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def make_cache(folder):
    import numpy as np

    from fmnumba.datasets import large_field_sizes, make_fm_data
    folder = Path(folder)
    if (folder / "done").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    d = make_fm_data(N_ROWS, large_field_sizes(), n_factors=4, random_state=0)
    for name in ("data", "indices", "indptr"):
        np.save(folder / f"{name}.npy", getattr(d.X, name))
    np.save(folder / "y.npy", d.y)
    np.save(folder / "shape.npy", np.array(d.X.shape))
    (folder / "done").write_text("ok")


def child(folder):
    import threading

    import numpy as np
    import scipy.sparse as sp

    import fmnumba
    folder = Path(folder)
    # warm up: load the cached kernels so compilation is not counted
    Xs = sp.random(50, 20, density=0.3, format="csr", dtype=np.float32, random_state=0)
    fmnumba.FMRegressor(n_factors=K, max_iter=1).fit(Xs, np.ones(50)).predict(Xs)
    import gc
    gc.collect()
    reset_ok = reset_peak_rss()  # the warm-up's (compilation) peak must not count
    base = _rss()
    peak_before = _peak()
    data = np.load(folder / "data.npy")
    indices = np.load(folder / "indices.npy")
    indptr = np.load(folder / "indptr.npy")
    y = np.load(folder / "y.npy")
    shape = tuple(int(s) for s in np.load(folder / "shape.npy"))
    X = sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)
    del data, indices, indptr
    loaded = _rss()
    peak_loaded = _peak()
    sampled = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            sampled[0] = max(sampled[0], _rss())
            time.sleep(0.001)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    est = fmnumba.FMRegressor(n_factors=K, max_iter=1, random_state=0).fit(X, y)
    fit_s = time.perf_counter() - t0
    stop.set()
    th.join()
    peak_fit = _peak()
    st = est._state
    out = {
        "baseline_rss": base, "peak_before_load": peak_before, "rss_loaded": loaded,
        "peak_loaded": peak_loaded, "peak_fit": max(peak_fit, sampled[0]),
        "sampled_peak_fit": sampled[0], "fit_s": fit_s,
        "csr_bytes": X.data.nbytes + X.indices.nbytes + X.indptr.nbytes,
        "y_bytes": y.nbytes, "P_bytes": st.P.nbytes + st.bias_state.nbytes,
        "adam_bytes": st.M.nbytes + st.S.nbytes, "shape": list(X.shape), "nnz": int(X.nnz),
        "index_dtype": str(X.indices.dtype), "train_loss": est.history_["train_loss"],
        "hwm_reset": reset_ok,
    }
    print(json.dumps(out))


def main():
    cache = Path(os.environ.get("FMNUMBA_BENCH_CACHE", Path(tempfile.gettempdir()) / "fmnumba_mem_1m"))
    print(f"data cache: {cache}", flush=True)
    make_cache(cache)
    res = subprocess.run([sys.executable, __file__, "--child", str(cache)], check=True,
                         capture_output=True, text=True, cwd=ROOT)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    mb = 1e6
    need = r["csr_bytes"] + r["P_bytes"] + r["adam_bytes"]
    used = r["peak_fit"] - r["baseline_rss"]
    growth = r["peak_fit"] - r["rss_loaded"]
    ratio = used / need
    lines = [
        "# Peak memory of fit",
        "",
        "Command: `python bench/memory.py` (fresh subprocess; k = 8, 1 epoch, "
        "float32, lazy Adam, default batch size)",
        "",
        f"Data: make_fm_data({N_ROWS:_}, large_field_sizes(), n_factors=4, random_state=0): "
        f"{r['shape'][0]:,} rows × {r['shape'][1]:,} features, {r['nnz']:,} nonzeros, "
        f"{r['index_dtype']} indices.",
        "",
        "| quantity | MB |",
        "|---|---:|",
        f"| input CSR (data + indices + indptr) | {r['csr_bytes'] / mb:.1f} |",
        f"| parameters P = [w, V] (+ w0 state) | {r['P_bytes'] / mb:.1f} |",
        f"| Adam state M, S | {r['adam_bytes'] / mb:.1f} |",
        f"| **budget unit** (CSR + P + M + S) | **{need / mb:.1f}** |",
        f"| y (float64, not in the unit) | {r['y_bytes'] / mb:.1f} |",
        f"| RSS after loading X, y (above baseline) | {(r['rss_loaded'] - r['baseline_rss']) / mb:.1f} |",
        f"| peak RSS during fit, above the pre-load baseline | {used / mb:.1f} |",
        f"| growth during fit (peak − RSS with X, y loaded) | {growth / mb:.1f} |",
        "",
        f"**Peak / (CSR + P + M + S) = {ratio:.2f}×** (limit 1.5×): "
        f"{'within' if ratio <= 1.5 else 'OVER'} budget. Fit time {r['fit_s']:.1f} s "
        f"(one epoch, includes validation), train loss {r['train_loss'][0]:.4f}.",
        "",
        "Peak source: the kernel's high-water mark (VmHWM, "
        + ("reset after the warm-up" if r["hwm_reset"] else "NOT resettable here: includes the "
           "warm-up, so an upper bound") + f"); a 1 ms RSS sampler saw "
        f"{(r['sampled_peak_fit'] - r['baseline_rss']) / mb:.1f} MB above the baseline.",
        "",
        "What the fit holds above the unit: one snapshot of P for the divergence guard "
        "(36 MB), the y, weight and shuffle-order vectors (~40 MB) and the per-feature L2 and "
        "scratch arrays (~24 MB). A canonical CSR of the model's dtype is used without a "
        "copy, and the factors are initialised in 1M-value chunks.",
        "",
    ]
    text = "\n".join(lines)
    out = ROOT / "bench" / "results" / "memory.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        sys.exit(main())
