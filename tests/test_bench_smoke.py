"""Smoke test of the benchmark harness (bench/): tiny data, one repeat.

Checks that `python -m bench --quick` runs end to end and writes the
markdown report (with its targets table and exact command) and PNG figures.
Timings are not checked. Peers are left out (no FMNUMBA_PEERS_PYTHON), so the
report must say they were skipped.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytest.importorskip("matplotlib")


def test_quick_bench_writes_report_and_plots(tmp_path):
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if k != "FMNUMBA_PEERS_PYTHON"}
    env["FMNUMBA_BENCH_CACHE"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-m", "bench", "--quick", "--datasets", "small", "--repeats", "1",
           "--parts", "curves,rss,throughput,ceiling", "--throughput-k", "8",
           "--out", str(out), "--tag", "smoke"]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]

    md = (out / "smoke.md").read_text()
    assert (out / "LATEST.md").read_text() == md
    assert "python -m bench --quick --datasets small" in md
    assert "## Targets" in md
    assert "### small" in md and "fmnumba" in md
    assert "peers skipped" in md
    assert "fraction of ceiling" in md and "same-process ceiling" in md
    assert "Lazy-Adam state bound" in md and "state bound ms" in md
    pngs = sorted(out.glob("smoke-*.png"))
    assert any("curves-small" in p.name for p in pngs), pngs
    assert any("throughput" in p.name for p in pngs), pngs
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png.name})" in md

    res = json.loads((out / "smoke.json").read_text())
    curve = res["datasets"]["small"]["libs"]["fmnumba"]["curve"]
    assert len(curve) >= 1 and all("rmse" in pt and "time_s" in pt for pt in curve)
    assert res["throughput"]["kernels"] and res["ceiling"]["gather"]
    assert res["ceiling"]["adam_state"] and all(
        c["time_s"] > 0 and c["rows_updated"] > 0 and c["interleaved_time_s"] > 0
        and c["prefetch_distance"] in (1, 2, 4, 8) for c in res["ceiling"]["adam_state"])
    assert res["ceiling"]["sgd_bound"] and all(
        c["read_time_s"] > 0 and c["rmw_time_s"] > 0 and c["epoch_nnz"] > 0
        for c in res["ceiling"]["sgd_bound"])
    assert "SGD bound" in md
    assert all(r["bound_nnz_k_per_s"] > 0 for r in res["throughput"]["kernels"]
               if r["kernel"] == "sgd_epoch")
    assert all(r["ceiling_nnz_k_per_s"] > 0 for r in res["throughput"]["kernels"]
               if r["kernel"] == "predict_csr")
    assert res["rss"]["ideal_mib"] > 0

    # the report can be rebuilt from the saved JSON
    again = tmp_path / "again"
    p = subprocess.run([sys.executable, "-m", "bench", "--report-only", str(out / "smoke.json"),
                        "--out", str(again)], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (again / "smoke.md").exists() and (again / "LATEST.md").exists()


def test_peer_runners_share_the_harness_npz_format(tmp_path):
    """A file written by the harness reads back the same through the peers'
    _common (in a fresh interpreter, as a peer runner imports it) and through
    bench.protocol; the curve schedule of runners without warm start doubles."""
    code = r"""
import sys
import numpy as np
import scipy.sparse as sp
sys.path.insert(0, "bench/peers")
import _common as C
from bench import protocol
X = sp.csr_matrix(np.array([[0, 2.5, 0], [0, 0, 0], [1, 0, -3]]))
X = sp.csr_matrix((X.data, X.indices, X.indptr), shape=(3, 5))
C.save_npz(sys.argv[1], X, [1, 0, 1])
Xp, yp = C.load_npz(sys.argv[1], np.float64)
Xh, yh = protocol.load_npz(sys.argv[1])
assert Xp.dtype == np.float64 and Xh.dtype == np.float32 and Xh.indices.dtype == np.int32
assert Xp.shape == Xh.shape == (3, 5)
assert (Xp.toarray() == X.toarray()).all() and (Xh.toarray() == X.toarray()).all()
assert list(yp) == list(yh) == [1.0, 0.0, 1.0]
A, B = C.align_features(Xp, Xp[:, :2])
assert A.shape == (3, 5) and B.shape == (3, 5) and (B.toarray()[:, :2] == Xp.toarray()[:, :2]).all()
assert C.schedule(10) == [1, 2, 4, 8, 10] and C.schedule(1) == [1]
assert "fmnumba" not in sys.modules
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.npz")], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]


def test_fit_profile_accounts_for_the_fit(tmp_path):
    """bench.fit_profile on a small set: kernel, step and setup times are
    parts of the fit's wall time, and its report states the per-epoch share."""
    import numpy as np

    from bench import fit_profile
    from fmnumba.datasets import large_field_sizes, make_fm_data
    d = make_fm_data(3000, large_field_sizes(2000), random_state=0)
    res = fit_profile.measure(d.X, d.y, ks=(2,), threads=1, epochs=2, repeats=1)
    (row,) = res["rows"]
    assert 0 < row["kernel_s"] < row["wall_s"]
    assert 0 < row["setup_s"] < row["wall_s"] - row["kernel_s"]
    assert all(v >= 0 for v in row["steps_s"].values())
    assert row["steps_s"]["guard setup"] > 0 and row["steps_s"]["snapshot"] > 0
    assert np.isclose(row["per_epoch_outside_share"],
                      (row["wall_s"] - row["kernel_s"] - row["setup_s"]) / 2
                      / row["epoch_kernel_s"])
    md = fit_profile.report(res, ("0", "0"))
    assert "Per epoch, outside the kernels" in md and "k=2" in md
