"""Peak memory of FMRegressor.fit against the budget unit (input CSR +
parameters + optimiser state), for a data-dominated and three
parameter-dominated fits.

    python bench/memory.py              # writes bench/results/memory.md
    python bench/memory.py --scale 0.25 # the same cases at a quarter of the size

Cases (float32, lazy Adam, one epoch unless early stopping stops later):
  data:      make_fm_data(1_000_000, large_field_sizes(), n_factors=4): 21 nnz
             per row, 1M features, k = 8;
  p20m-k1:   20M features, k = 1, 1M rows × 20 uniformly drawn features;
  p20m-k1-es the same with early_stopping=True (validation split inside fit);
  p5m-k8-es: 5M features, k = 8, 1M rows × 20 features, early stopping.

Each data set is generated once and cached as raw .npy arrays; each
measurement runs in a fresh subprocess that imports fmnumba, warms the
(disk-cached) kernels up on a tiny problem, loads the CSR arrays and fits.
Peak resident memory comes from the kernel's high-water mark (VmHWM, reset
after the warm-up through /proc/self/clear_refs), cross-checked by a thread
that samples RSS every millisecond. The table also gives what
fmnumba._validation.fit_memory predicts the fit allocates.
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

CASES = {  # name: (generator, n_rows, n_features, nnz per row, k, early stopping)
    "data": ("fm", 1_000_000, None, None, 8, False),
    "p20m-k1": ("uniform", 1_000_000, 20_000_000, 20, 1, False),
    "p20m-k1-es": ("uniform", 1_000_000, 20_000_000, 20, 1, True),
    "p5m-k8-es": ("uniform", 1_000_000, 5_000_000, 20, 8, True),
}


def _rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak():
    """Peak RSS so far in bytes: VmHWM, else ru_maxrss."""
    hwm = proc_status_bytes("VmHWM")
    return hwm if hwm is not None else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _uniform(n_rows, n_features, per_row, seed=0):
    """CSR with per_row distinct uniformly drawn features per row (values
    1.0, float32) and y = a random linear model + noise."""
    import numpy as np
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_features, size=(n_rows, per_row), dtype=np.int64)
    idx.sort(axis=1)
    dup = np.zeros_like(idx, dtype=bool)
    dup[:, 1:] = idx[:, 1:] == idx[:, :-1]
    keep = ~dup
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    indices = idx[keep].astype(np.int32)
    X = sp.csr_matrix((np.ones(indices.shape[0], dtype=np.float32), indices,
                       indptr.astype(np.int32)), shape=(n_rows, n_features))
    w = rng.normal(0, 0.3, n_features).astype(np.float32)
    y = X @ w + rng.normal(0, 0.5, n_rows)
    return X, y


def make_cache(folder, case, scale):
    import numpy as np
    folder = Path(folder)
    if (folder / "done").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    gen, n_rows, n_features, per_row, _, _ = CASES[case]
    n_rows = int(n_rows * scale)
    if gen == "fm":
        from fmnumba.datasets import large_field_sizes, make_fm_data
        d = make_fm_data(n_rows, large_field_sizes(), n_factors=4, random_state=0)
        X, y = d.X, d.y
    else:
        X, y = _uniform(n_rows, int(n_features * scale), per_row)
    for name in ("data", "indices", "indptr"):
        np.save(folder / f"{name}.npy", getattr(X, name))
    np.save(folder / "y.npy", y)
    np.save(folder / "shape.npy", np.array(X.shape))
    (folder / "done").write_text("ok")


def child(folder, case):
    import threading

    import numpy as np
    import scipy.sparse as sp

    import fmnumba
    from fmnumba import _validation
    folder = Path(folder)
    k, es = CASES[case][4], CASES[case][5]
    # warm up: load the cached kernels so compilation is not counted
    Xs = sp.random(50, 20, density=0.3, format="csr", dtype=np.float32, random_state=0)
    fmnumba.FMRegressor(n_factors=k, max_iter=1).fit(Xs, np.ones(50)).predict(Xs)
    fmnumba.FMRegressor(n_factors=k, max_iter=2, early_stopping=es).fit(Xs, np.ones(50))
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
    est = fmnumba.FMRegressor(n_factors=k, max_iter=3 if es else 1, random_state=0,
                              early_stopping=es, n_iter_no_change=1).fit(X, y)
    fit_s = time.perf_counter() - t0
    stop.set()
    th.join()
    peak_fit = _peak()
    st = est._state
    parts = _validation.fit_memory(
        X.shape[1], k, np.float32, "adam", n_rows=X.shape[0],
        batch_nnz=_validation.max_batch_nnz(X, est.batch_size), batch_size=est.batch_size,
        split_nnz=X.nnz // 10 if es else 0)
    present = int(np.count_nonzero(np.bincount(X.indices, minlength=X.shape[1])))
    out = {
        "baseline_rss": base, "peak_before_load": peak_before, "rss_loaded": loaded,
        "peak_loaded": peak_loaded, "peak_fit": max(peak_fit, sampled[0]),
        "sampled_peak_fit": sampled[0], "fit_s": fit_s,
        "csr_bytes": X.data.nbytes + X.indices.nbytes + X.indptr.nbytes,
        "y_bytes": y.nbytes, "P_bytes": st.P.nbytes + st.bias_state.nbytes,
        "adam_bytes": st.M.nbytes + st.S.nbytes, "shape": list(X.shape), "nnz": int(X.nnz),
        "index_dtype": str(X.indices.dtype), "train_loss": est.history_["train_loss"],
        "n_iter": est.n_iter_, "hwm_reset": reset_ok, "parts": parts,
        "features_present": present, "k": k, "early_stopping": es,
    }
    print(json.dumps(out))


def _measure(case, scale, cache_root):
    cache = Path(cache_root) / f"fmnumba_mem_{case}_{scale:g}"
    print(f"{case}: data cache {cache}", flush=True)
    make_cache(cache, case, scale)
    res = subprocess.run([sys.executable, __file__, "--child", str(cache), case], check=True,
                         capture_output=True, text=True, cwd=ROOT)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _row(case, r):
    mb = 1e6
    unit = r["csr_bytes"] + r["P_bytes"] + r["adam_bytes"]
    used = r["peak_fit"] - r["baseline_rss"]
    predicted = r["csr_bytes"] + r["y_bytes"] + sum(r["parts"].values())
    return (f"| {case} | {r['shape'][0]:,} × {r['shape'][1]:,}, nnz {r['nnz']:,} "
            f"({r['features_present'] / r['shape'][1]:.0%} of features present) | {r['k']} | "
            f"{'yes' if r['early_stopping'] else 'no'} | {r['csr_bytes'] / mb:.0f} | "
            f"{(r['P_bytes'] + r['adam_bytes']) / mb:.0f} | {used / mb:.0f} | "
            f"**{used / unit:.2f}×** | {predicted / mb:.0f} | {r['n_iter']} | {r['fit_s']:.1f} |")


def main(argv):
    scale = 1.0
    if "--scale" in argv:
        scale = float(argv[argv.index("--scale") + 1])
    cache_root = os.environ.get("FMNUMBA_BENCH_CACHE", tempfile.gettempdir())
    results = {case: _measure(case, scale, cache_root) for case in CASES}
    lines = [
        "# Peak memory of fit",
        "",
        f"Command: `python bench/memory.py{'' if scale == 1 else f' --scale {scale:g}'}` "
        "(each case in a fresh subprocess; float32, lazy Adam, default batch size; one "
        "epoch, or up to 3 with early stopping and n_iter_no_change=1).",
        "",
        "Unit = input CSR + parameters P (+ w0 state) + Adam state M, S. Peak = highest "
        "RSS during the fit above the baseline before the data were loaded (so the input "
        "and y are included). Predicted = CSR + y + what `fit_memory` (the budget "
        "`check_model_size` enforces) counts for the fit.",
        "",
        "| case | data | k | early stopping | CSR MB | P + M + S MB | peak MB | "
        "peak / unit | predicted MB | epochs | fit s |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_row(case, r) for case, r in results.items()]
    lines += [
        "",
        "Where the extra memory goes (fit_memory's parts, MB):",
        "",
        "| case | " + " | ".join(next(iter(results.values()))["parts"]) + " |",
        "|---|" + "---:|" * len(next(iter(results.values()))["parts"]),
    ]
    for case, r in results.items():
        lines.append(f"| {case} | " + " | ".join(f"{v / 1e6:.0f}" for v in r["parts"].values())
                     + " |")
    hw = all(r["hwm_reset"] for r in results.values())
    lines += [
        "",
        "tables: P, M, S; copy: the divergence guard's copy of P (the best epoch's with "
        "early stopping), counted in full although only the rows of features present in "
        "the training rows are copied when that is smaller; features: Adam's count per "
        "feature (int64, kept by the kernels between fits) and a one-byte mask; rows: order, targets, weights and loss terms per row, "
        "plus the validation rows' copy of the CSR with early stopping (the training rows "
        "are not copied); batch: the Adam "
        "kernel's per-batch buffers.",
        "",
        "Peak source: the kernel's high-water mark (VmHWM, "
        + ("reset after the warm-up" if hw else "NOT resettable here: includes the warm-up, "
           "so an upper bound") + "), cross-checked by a 1 ms RSS sampler.",
        "",
    ]
    text = "\n".join(lines)
    out = ROOT / "bench" / "results" / "memory.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    (ROOT / "bench" / "results" / "memory.json").write_text(json.dumps(results, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main(sys.argv[1:]))
