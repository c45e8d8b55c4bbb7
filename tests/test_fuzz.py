"""Hypothesis fuzzing of malformed and adversarial input.

Every example also runs one file case: mutated model metadata, special files
as paths, labels of every type through save/load, or a text file with a BOM,
compressed or fed through a pipe. Some model cases go through the Dask
estimators on a real LocalCluster instead. The fuzz loop runs in a subprocess (tests/_fuzz_worker.py) so that a crash
(segfault, abort, hang) fails this test instead of killing pytest. At least
2,000 generated cases per run; FMNUMBA_FUZZ_EXAMPLES raises (or, for a quick
local run, lowers) the count.
"""
import json
import os
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "_fuzz_worker.py")
N_EXAMPLES = int(os.environ.get("FMNUMBA_FUZZ_EXAMPLES", "2000"))


def test_fuzz_public_entry_points_never_crash(tmp_path):
    out, last = tmp_path / "result.json", tmp_path / "last_case.json"
    env = dict(os.environ)
    # one kernel thread: the fuzz targets the Python guard, not the threading,
    # and oversubscribed parallel launches on tiny inputs only cost time
    env.setdefault("NUMBA_NUM_THREADS", "1")
    env.pop("HYPOTHESIS_PROFILE", None)
    try:
        proc = subprocess.run(
            [sys.executable, WORKER, "--examples", str(N_EXAMPLES), "--out", str(out),
             "--last", str(last)],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    except subprocess.TimeoutExpired:
        raise AssertionError("fuzz worker hung; last case: "
                             + (last.read_text() if last.exists() else "?")) from None
    where = last.read_text() if last.exists() else "?"
    assert proc.returncode >= 0, (
        f"fuzz worker crashed with signal {signal.Signals(-proc.returncode).name}; "
        f"last case: {where}\n{proc.stderr[-3000:]}")
    assert out.exists(), f"no result (exit {proc.returncode}); last case: {where}\n{proc.stderr[-3000:]}"
    result = json.loads(out.read_text())
    failures = "\n\n".join(f"{f['error']}\ncase: {json.dumps(f['case'], default=str)[:1500]}\n"
                           f"{f['traceback']}" for f in result["failures"][:5])
    assert result["n_failures"] == 0, f"{result['n_failures']} failing cases:\n{failures}"
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["cases"] >= N_EXAMPLES, result
    kinds = result["kinds"]
    # the generator must reach every branch: fits that succeed, rejections, model files
    assert kinds.get("fitted", 0) >= N_EXAMPLES // 20, kinds
    assert sum(v for k, v in kinds.items() if k.startswith("rejected")) >= N_EXAMPLES // 10, kinds
    assert kinds.get("load-rejected", 0) >= N_EXAMPLES // 50, kinds
    # Dask fits on a real LocalCluster, accepted and refused
    assert kinds.get("dask-fitted", 0) >= N_EXAMPLES // 200, kinds
    assert kinds.get("dask-rejected", 0) >= N_EXAMPLES // 50, kinds
    # and every file kind: mutated metadata, special paths, label types, text inputs
    for prefix in ("meta-rejected", "path-load", "path-save", "path-read_data", "labels-ok",
                   "text-ok", "text-rejected"):
        assert kinds.get(prefix, 0) >= N_EXAMPLES // 100, (prefix, kinds)
