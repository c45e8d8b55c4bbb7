"""CUDA kernels (fmnumba/gpu) against the CPU kernels and a dense NumPy
formula. Under Numba's CUDA simulator by default (tests/conftest.py sets
NUMBA_ENABLE_CUDASIM=1; FMNUMBA_REAL_GPU=1 runs them on a GPU). Sizes are
small (≤ 200 rows, k ≤ 8): the simulator runs every GPU thread as a Python
thread.
"""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from fmnumba import backend

if not backend.cuda_available():
    pytest.skip("numba-cuda (simulator or GPU) is not available", allow_module_level=True)

import fmnumba.cpu as CPU  # noqa: E402
import fmnumba.gpu as GPU  # noqa: E402

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-12)}


def make_csr(n, p, density, dtype, seed, zeros=True):
    rng = np.random.default_rng(seed)
    X = sp.random(n, p, density=density, format="csr", random_state=rng, dtype=np.float64)
    X.data = rng.normal(0, 1, X.nnz)
    if zeros and X.nnz > 2:
        X.data[::7] = 0.0           # explicit zeros stay stored
    if n > 3:                       # an empty row
        X = sp.csr_matrix(sp.vstack([X[:2], sp.csr_matrix((1, p)), X[3:]]))
    X.sort_indices()
    X = sp.csr_matrix((X.data.astype(dtype), X.indices.astype(np.int32),
                       X.indptr.astype(np.int32)), shape=X.shape)
    return X


def dense_fm(X, w0, P):
    """ŷ = w0 + Xw + ½ Σ_f ((XV)_f² − (X²)(V²)_f), float64."""
    D = X.toarray().astype(np.float64)
    P = P.astype(np.float64)
    w, V = P[:, 0], P[:, 1:]
    return w0 + D @ w + 0.5 * ((D @ V) ** 2 - (D ** 2) @ (V ** 2)).sum(axis=1)


def params(p, k, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.3, (p, 1 + k)).astype(dtype)


def adam_args(X, dtype, seed, loss_code=0):
    rng = np.random.default_rng(seed)
    n, p = X.shape
    y = rng.normal(size=n).astype(dtype)
    if loss_code:
        y = np.where(y > 0, 1.0, -1.0).astype(dtype)
    sw = rng.uniform(0.5, 2.0, n).astype(dtype)
    lw = rng.uniform(0, 0.05, p).astype(dtype)
    lv = rng.uniform(0, 0.05, p).astype(dtype)
    if seed % 2:  # the kernels' shared form: one strength for every feature
        lw, lv = lw[:1].copy(), lv[:1].copy()
    return y, sw, lw, lv, rng.permutation(n).astype(np.int64)


def run_adam(kern, X, y, sw, order, bs, code, P0, lw, lv, t0=0, lr=0.02, epochs=1,
             decoupled=False):
    P = P0.copy()
    M = np.zeros_like(P)
    S = np.zeros_like(P)
    b = np.array([0.1, 0.0, 0.0])
    nbat = -(-order.shape[0] // bs)
    t = t0
    out = []
    for _ in range(epochs):
        bl, bw = np.zeros(nbat), np.zeros(nbat)
        t, done = kern.adam_epoch(X.indptr, X.indices, X.data, y, sw, order, bs, code, P, M,
                                  S, b, t, lr, 0.9, 0.999, 1e-8, lw, lv,
                                  np.zeros(X.shape[1], np.int64), bl, bw, decoupled)
        out.append((t, done, bl, bw))
    return P, M, S, b, out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 3, 8])
def test_predict_matches_cpu_and_dense(dtype, k):
    X = make_csr(50, 30, 0.2, dtype, seed=k)
    P = params(30, k, dtype, seed=k)
    w0 = dtype(0.25)
    out_g = np.empty(50, dtype)
    out_c = np.empty(50, dtype)
    GPU.predict_csr(X.indptr, X.indices, X.data, w0, P, out_g)
    CPU.predict_csr(X.indptr, X.indices, X.data, w0, P, out_c)
    np.testing.assert_allclose(out_g, out_c, **TOL[dtype])
    np.testing.assert_allclose(out_g, dense_fm(X, float(w0), P),
                               rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-5)


@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 40), p=st.integers(1, 20), k=st.integers(1, 8),
       density=st.floats(0.0, 0.6), seed=st.integers(0, 2**16))
def test_predict_property(n, p, k, density, seed):
    X = make_csr(n, p, density, np.float64, seed)
    P = params(p, k, np.float64, seed)
    out = np.empty(n)
    GPU.predict_csr(X.indptr, X.indices, X.data, -0.5, P, out)
    np.testing.assert_allclose(out, dense_fm(X, -0.5, P), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("code", [0, 1, 2])
def test_forward_batch_matches_cpu(code):
    dtype = np.float32
    X = make_csr(40, 20, 0.25, dtype, seed=3)
    P = params(20, 4, dtype)
    y, sw, _, _, order = adam_args(X, dtype, 3, code)
    rows = order[:17]
    outs = []
    for kern in (CPU, GPU):
        o = (np.empty(17, dtype), np.empty((17, 4), dtype), np.empty(17, dtype),
             np.empty(17))
        kern.forward_batch(X.indptr, X.indices, X.data, y, sw, rows, code, 0.3, P, *o)
        outs.append(o)
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_transpose_identical_to_cpu(seed):
    X = make_csr(60, 25, 0.3, np.float32, seed)
    rows = np.random.default_rng(seed).permutation(60)[:33].astype(np.int64)
    nnz = int(np.diff(X.indptr)[rows].sum())
    res = []
    for kern in (CPU, GPU):
        cnt = np.zeros(25, np.int64)
        uniq = np.zeros(nnz, np.int32)
        starts = np.zeros(nnz + 1, np.int64)
        er = np.zeros(nnz, np.int64)
        ev = np.zeros(nnz, np.float32)
        u = kern.transpose_batch(X.indptr, X.indices, X.data, rows, cnt, uniq, starts, er, ev)
        assert not cnt.any()
        m = int(starts[u])
        res.append((u, uniq[:u].copy(), starts[:u + 1].copy(), er[:m].copy(), ev[:m].copy()))
    assert res[0][0] == res[1][0]
    for a, b in zip(res[0][1:], res[1][1:]):
        np.testing.assert_array_equal(a, b)


def test_adam_update_matches_cpu():
    dtype = np.float32
    X = make_csr(30, 15, 0.3, dtype, seed=5)
    rng = np.random.default_rng(5)
    rows = np.arange(30, dtype=np.int64)
    nnz = X.nnz
    cnt = np.zeros(15, np.int64)
    uniq, starts = np.zeros(nnz, np.int32), np.zeros(nnz + 1, np.int64)
    er, ev = np.zeros(nnz, np.int64), np.zeros(nnz, dtype)
    u = CPU.transpose_batch(X.indptr, X.indices, X.data, rows, cnt, uniq, starts, er, ev)
    G = rng.normal(size=30).astype(dtype)
    sb = rng.uniform(0.5, 1.5, 30).astype(dtype)
    Q = rng.normal(size=(30, 3)).astype(dtype)
    lw = np.full(15, 0.01, dtype)
    lv = np.full(15, 0.02, dtype)
    P0 = params(15, 3, dtype)
    M0 = rng.normal(0, 0.01, P0.shape).astype(dtype)
    S0 = rng.uniform(0, 0.01, P0.shape).astype(dtype)
    for decoupled in (False, True):
        res = []
        for kern in (CPU, GPU):
            P, M, S = P0.copy(), M0.copy(), S0.copy()
            kern.adam_update(uniq, u, starts, er, ev, G, sb, Q, 1 / sb.sum(), P, M, S, 0.01,
                             0.9, 0.999, 1e-8, 0.19, 0.0399, lw, lv, decoupled)
            res.append((P, M, S))
        for a, b in zip(*res):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("dtype,code,bs", [(np.float32, 0, 16), (np.float64, 0, 16),
                                           (np.float32, 1, 50), (np.float64, 2, 200)])
def test_adam_epoch_matches_cpu(dtype, code, bs):
    n, p, k = 120, 40, 4
    X = make_csr(n, p, 0.15, dtype, seed=code)
    P0 = params(p, k, dtype, seed=code)
    y, sw, lw, lv, order = adam_args(X, dtype, code, code)
    rc = run_adam(CPU, X, y, sw, order, bs, code, P0, lw, lv, t0=2, epochs=2)
    rg = run_adam(GPU, X, y, sw, order, bs, code, P0, lw, lv, t0=2, epochs=2)
    for (tc, dc, blc, bwc), (tg, dg, blg, bwg) in zip(rc[4], rg[4]):
        assert (tc, dc) == (tg, dg)
        np.testing.assert_allclose(blg, blc, rtol=1e-4 if dtype == np.float32 else 1e-10)
        np.testing.assert_allclose(bwg, bwc, rtol=1e-6)
    tol = dict(rtol=1e-3, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
    for a, b in zip(rc[:4], rg[:4]):
        np.testing.assert_allclose(b, a, **tol)
    # lazy: rows never touched keep their values and zero moments
    untouched = np.setdiff1d(np.arange(p), X.indices[X.data != 0])
    np.testing.assert_array_equal(rg[0][untouched], P0[untouched])
    assert not rg[1][untouched].any()


def test_adam_epoch_deterministic():
    dtype = np.float32
    X = make_csr(100, 12, 0.4, dtype, seed=9)     # few features: long, contended segments
    P0 = params(12, 8, dtype, seed=9)
    y, sw, lw, lv, order = adam_args(X, dtype, 9)
    a = run_adam(GPU, X, y, sw, order, 100, 0, P0, lw, lv)
    b = run_adam(GPU, X, y, sw, order, 100, 0, P0, lw, lv)
    for u, v in zip(a[:4], b[:4]):
        np.testing.assert_array_equal(u, v)


def test_adam_epoch_stops_on_nonfinite_batch():
    dtype = np.float64
    X = make_csr(40, 10, 0.3, dtype, seed=2)
    P0 = params(10, 2, dtype)
    y, sw, lw, lv, order = adam_args(X, dtype, 2)
    y[order[25]] = np.inf                          # in the second batch of 16
    rc = run_adam(CPU, X, y, sw, order, 16, 0, P0, lw, lv)
    rg = run_adam(GPU, X, y, sw, order, 16, 0, P0, lw, lv)
    assert rg[4][0][:2] == rc[4][0][:2] == (1, 1)
    np.testing.assert_allclose(rg[0], rc[0], rtol=1e-9)
    np.testing.assert_allclose(rg[3], rc[3], rtol=1e-9)
    assert np.isinf(rg[4][0][2][1])


@pytest.mark.parametrize("code", [0, 1])
def test_sgd_sequential_matches_cpu(code):
    dtype = np.float32
    X = make_csr(80, 30, 0.2, dtype, seed=4)
    P0 = params(30, 3, dtype)
    y, sw, lw, lv, order = adam_args(X, dtype, 4, code)
    res = []
    for kern in (CPU, GPU):
        P, b, L = P0.copy(), np.array([0.2, 0.0, 0.0]), np.empty(80)
        kern.sgd_epoch(X.indptr, X.indices, X.data, y, sw, order, 1, code, P, b, 0.05,
                       lw, lv, L)
        res.append((P, b, L))
    for a, c in zip(*res):
        np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-5)


def test_sgd_hogwild_runs():
    dtype = np.float32
    X = make_csr(100, 20, 0.2, dtype, seed=6)
    P = params(20, 2, dtype)
    y, sw, lw, lv, order = adam_args(X, dtype, 6)
    b, L = np.array([0.0, 0.0, 0.0]), np.empty(100)
    GPU.sgd_epoch(X.indptr, X.indices, X.data, y, sw, order, 4, 0, P, b, 0.01, lw, lv, L)
    assert np.isfinite(P).all() and np.isfinite(L).all() and np.isfinite(b[0])


def test_session_keeps_parameters_resident():
    dtype = np.float64
    X = make_csr(20, 8, 0.4, dtype, seed=1)
    P = params(8, 2, dtype)
    expected = np.empty(20)
    CPU.predict_csr(X.indptr, X.indices, X.data, 0.0, P, expected)
    out = np.empty(20)
    with GPU.session():
        GPU.predict_csr(X.indptr, X.indices, X.data, 0.0, P, out)
        P[...] = 0.0                   # host write inside a session is not seen...
        GPU.predict_csr(X.indptr, X.indices, X.data, 0.0, P, out)
        np.testing.assert_allclose(out, expected)
        GPU.invalidate(P)              # ...until invalidated
        GPU.predict_csr(X.indptr, X.indices, X.data, 0.0, P, out)
        np.testing.assert_array_equal(out, 0.0)
    P[...] = 1.0                       # outside a session every call uploads
    GPU.predict_csr(X.indptr, X.indices, X.data, 0.0, P, out)
    CPU.predict_csr(X.indptr, X.indices, X.data, 0.0, P, expected)
    np.testing.assert_allclose(out, expected)


def test_data_cache_sees_in_place_edit():
    X = make_csr(20, 8, 0.4, np.float64, seed=2, zeros=False)
    P = params(8, 2, np.float64)
    out = np.empty(20)
    GPU.predict_csr(X.indptr, X.indices, X.data, 0.0, P, out)
    X.data *= 2.0
    GPU.predict_csr(X.indptr, X.indices, X.data, 0.0, P, out)
    np.testing.assert_allclose(out, dense_fm(X, 0.0, P), rtol=1e-10)


def test_backend_selection(monkeypatch):
    assert backend.get_kernels("cuda") is GPU
    assert backend.get_kernels("cpu") is CPU
    # the simulator is never chosen by "auto"
    assert backend.get_kernels("auto", n_nnz=10**12) is CPU
    with pytest.raises(ValueError, match="unknown"):
        backend.get_kernels("tpu")
    monkeypatch.setattr(backend, "cuda_status", lambda: (False, "no GPU"))
    with pytest.raises(backend.DeviceUnavailableError, match=r"fmnumba\[cuda12\]"):
        backend.get_kernels("cuda")
    assert backend.get_kernels("auto", n_nnz=10**12) is CPU


@pytest.mark.parametrize("solver", ["adam", "adamw", "sgd"])
def test_estimator_device_cuda_matches_cpu(solver):
    from fmnumba import FMRegressor
    X = make_csr(120, 30, 0.15, np.float64, seed=8)
    y = dense_fm(X, 1.0, params(30, 2, np.float64, seed=8))
    kw = dict(n_factors=3, solver=solver, max_iter=2, batch_size=32, random_state=0,
              dtype=np.float64, n_jobs=1)
    cpu = FMRegressor(device="cpu", **kw).fit(X, y)
    gpu = FMRegressor(device="cuda", **kw).fit(X, y)
    assert isinstance(gpu.coef_, np.ndarray) and isinstance(gpu.factors_, np.ndarray)
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gpu.factors_, cpu.factors_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gpu.history_["train_loss"], cpu.history_["train_loss"],
                               rtol=1e-9)
    np.testing.assert_allclose(gpu.predict(X), cpu.predict(X), rtol=1e-8)


# ---- against the dense reference tests/naive.py (when present) ----------------
try:
    import naive
except ImportError:  # written by another module's author; CPU comparisons above still run
    naive = None

needs_naive = pytest.mark.skipif(naive is None, reason="tests/naive.py not available")


@needs_naive
def test_predict_matches_naive():
    X = make_csr(30, 12, 0.3, np.float64, seed=11)
    P = params(12, 3, np.float64, seed=11)
    out = np.empty(30)
    GPU.predict_csr(X.indptr, X.indices, X.data, 0.7, P, out)
    np.testing.assert_allclose(out, naive.predict_pairwise(X.toarray(), 0.7, P),
                               rtol=1e-10, atol=1e-10)


@needs_naive
@pytest.mark.parametrize("code,decoupled", [(0, False), (1, False), (0, True), (1, True)])
def test_adam_epoch_matches_naive(code, decoupled):
    dtype = np.float64
    X = make_csr(48, 16, 0.2, dtype, seed=12 + code)
    P0 = params(16, 3, dtype, seed=12)
    y, sw, lw, lv, order = adam_args(X, dtype, 12, code)
    P, M, S, b, out = run_adam(GPU, X, y, sw, order, 16, code, P0, lw, lv, t0=1,
                               decoupled=decoupled)
    st = naive.AdamState(P0, np.zeros_like(P0), np.zeros_like(P0), [0.1, 0.0, 0.0], 1)
    t, done, bl, bw = naive.adam_epoch(st, X.toarray(), y, sw, order, 16, code, 0.02, 0.9,
                                       0.999, 1e-8, lw, lv, decoupled)
    assert (out[0][0], out[0][1]) == (t, done)
    np.testing.assert_allclose(out[0][2], bl, rtol=1e-9)
    np.testing.assert_allclose(P, st.P, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(M, st.M, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(b[0], st.w0, rtol=1e-9)


@needs_naive
def test_sgd_sequential_matches_naive():
    dtype = np.float64
    # no explicit zeros: fmnumba/cpu/sgd.py (mirrored here) applies L2 to rows
    # whose stored entry is an explicit 0, naive.sgd_step does not
    X = make_csr(40, 15, 0.2, dtype, seed=13, zeros=False)
    P0 = params(15, 2, dtype, seed=13)
    y, sw, lw, lv, order = adam_args(X, dtype, 13)
    P, b, L = P0.copy(), np.array([0.2, 0.0, 0.0]), np.empty(40)
    GPU.sgd_epoch(X.indptr, X.indices, X.data, y, sw, order, 1, 0, P, b, 0.05, lw, lv, L)
    Pn = P0.copy()
    w0, Ln = naive.sgd_epoch(X.toarray(), y, sw, order, 0.2, Pn, 0, 0.05, lw, lv)
    np.testing.assert_allclose(P, Pn, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(L, Ln, rtol=1e-9)
    np.testing.assert_allclose(b[0], w0, rtol=1e-9)
