"""One oracle suite for every backend: each kernel of fmnumba.cpu and of
fmnumba.gpu (under Numba's CUDA simulator unless FMNUMBA_REAL_GPU=1, see
conftest.py) against the dense reference tests/naive.py.

Data reach the kernels only through fmnumba._validation._canonical_csr (see
strategies.canonical), as in the package. Tolerances are relative to the
magnitudes involved (sums of absolute values of the terms), with rtol 1e-4
for float32 and 1e-10 for float64. The simulator runs every GPU thread as a
Python thread, so the gpu backend draws fewer and smaller examples.
Machinery of one backend alone is tested in test_cpu.py and test_gpu.py.
"""
import importlib

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fmnumba.backend import cuda_available

try:
    from . import naive
    from . import strategies as S
except ImportError:
    import naive
    import strategies as S

RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
FLOOR = {np.dtype(np.float32): 1e3 * np.finfo(np.float32).tiny,
         np.dtype(np.float64): 1e3 * np.finfo(np.float64).tiny}
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8

SLOW = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
GPU_EXAMPLES = 15   # hypothesis examples per test under the simulator
GPU_MAX_ROWS = 12   # and rows per drawn matrix


class _PinnedCPU:
    """fmnumba.cpu with predict_csr and adam_epoch pinned to the parallel
    kernels (fmnumba.cpu runs small inputs, as all of these tests' are, on
    serial twins; the twins are compared bit for bit below)."""

    def __init__(self):
        from fmnumba.cpu import adam, predict
        self._cpu = importlib.import_module("fmnumba.cpu")
        self._predict = predict.predict_parallel
        self._adam = adam

    def __getattr__(self, name):
        return getattr(self._cpu, name)

    def predict_csr(self, X, w0, P, out):
        self._predict(X, w0, P, out)

    def adam_epoch(self, *args):
        return self._adam.adam_epoch_on(self._adam._adam_epoch, *args)


class Backend:
    """A kernel module (fmnumba.cpu or fmnumba.gpu) with the example budget
    its tests can afford."""

    def __init__(self, name):
        self.name = name
        self.kern = importlib.import_module("fmnumba.gpu") if name == "gpu" else _PinnedCPU()
        self.max_rows = GPU_MAX_ROWS if name == "gpu" else 30

    def given(self, max_examples=None, **strategies):
        """hypothesis.given for a test body run inside the test function."""
        n = settings().max_examples if max_examples is None else max_examples
        if self.name == "gpu":
            n = min(n, GPU_EXAMPLES)
        return lambda f: given(**strategies)(settings(SLOW, max_examples=n)(f))

    def __repr__(self):
        return self.name


@pytest.fixture(scope="module", params=["cpu", "gpu"])
def backend(request):
    if request.param == "gpu" and not cuda_available():
        pytest.skip("numba-cuda (simulator or GPU) is not installed: pip install '.[test]'")
    return Backend(request.param)


@pytest.fixture(autouse=True, scope="module")
def _launch_numba_threads():
    """Start Numba's thread pool before any kernel runs: adam_epoch loaded
    from the on-disk cache crashes otherwise (see test_cpu.py,
    test_adam_epoch_direct_call_in_fresh_process)."""
    numba.get_num_threads()


def any_kind(**kw):
    return st.one_of(*(S.fm_problem(kind=k, **kw) for k in S.VALUE_KINDS))


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def kernel_arrays(X, index_dtype=None):
    """X = (indptr, indices, data) of a canonical CSR, optionally with the
    index arrays cast (int64 indices are what huge matrices get)."""
    if index_dtype is None:
        return X.indptr, X.indices, X.data
    return X.indptr.astype(index_dtype), X.indices.astype(index_dtype), X.data


def csr(X):
    return X.indptr, X.indices, X.data


def yhat_scale(Xabs, w0, P):
    """Per-row magnitude of ŷ's terms: |w0| + Σ|w_i x_i| + Σ_f (Σ_i |v_if x_i|)²."""
    Pa = np.abs(np.asarray(P, dtype=np.float64))
    return abs(w0) + Xabs @ Pa[:, 0] + ((Xabs @ Pa[:, 1:]) ** 2).sum(axis=1)


def assert_close(actual, expected, tol, what):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, what
    err = np.abs(actual - expected)
    bad = ~(err <= tol)
    if bad.any():
        i = np.argwhere(bad)[0]
        i = tuple(i)
        raise AssertionError(
            f"{what}: {int(bad.sum())} mismatches, first at {i}: got {actual[i]!r}, "
            f"expected {expected[i]!r}, |diff| {err[i]:.3g} > tol {np.broadcast_to(tol, err.shape)[i]:.3g}")


def run_adam_epoch(kern, X, y, sw, order, batch_size, code, P, M, S_, bstate, t0, lr, lam_w,
                   lam_v, beta1=BETA1, beta2=BETA2, eps=EPS, decoupled=False):
    n_batches = max(1, -(-order.shape[0] // batch_size))
    bl = np.full(n_batches, np.nan)
    bw = np.full(n_batches, np.nan)
    t, done = kern.adam_epoch(csr(X), y, sw, order, batch_size, code, (P, M, S_), bstate, t0,
                              (lr, beta1, beta2, eps, decoupled), (lam_w, lam_v), (bl, bw))
    # a batch that stopped the epoch is recorded too
    started = min(int(done) + 1, -(-order.shape[0] // batch_size))
    return int(t), int(done), bl[:started], bw[:started]


def transposed(kern, X, rows, dtype):
    """kern.transpose_batch of the batch rows: (T, u)."""
    total = int(sum(X.indptr[r + 1] - X.indptr[r] for r in rows))
    T = (np.empty(total, X.indices.dtype), np.empty(total + 1, np.int64),
         np.empty(total, np.int64), np.empty(total, dtype))
    u = kern.transpose_batch(csr(X), rows, np.zeros(X.shape[1], np.int64), T)
    return T, u


def grad_magnitude(Xb, yhat_tol, s, g, P, lam_w, lam_v):
    """Sum of |terms| of batch_objective_grad (same shape as P), including
    the error of g caused by an error yhat_tol in ŷ (Lipschitz ≤ 1)."""
    Xa = np.abs(Xb)
    Pa = np.abs(np.asarray(P, np.float64))
    ga = s * (np.abs(g) + yhat_tol)
    occ = s @ (Xb != 0)
    qa = Xa @ Pa[:, 1:]
    mag = np.zeros(P.shape)
    mag[:, 0] = ga @ Xa + naive.per_feature(lam_w, Pa.shape[0]) * Pa[:, 0] * occ
    mag[:, 1:] = (Xa * ga[:, None]).T @ qa + Pa[:, 1:] * ((Xa ** 2).T @ ga)[:, None] \
        + naive.per_feature(lam_v, Pa.shape[0])[:, None] * Pa[:, 1:] * occ[:, None]
    return mag / s.sum()


def near_hinge_kink(code, yhat, y, tol):
    return code == naive.HINGE and np.any(np.abs(np.asarray(y) * yhat - 1.0) <= tol)


# --------------------------------------------------------------------------
# the reference itself
# --------------------------------------------------------------------------
@given(prob=S.fm_problem(dtype=np.float64, max_rows=12, max_k=6))
def test_naive_identity_equals_pairwise(prob):
    """The O(nk) identity form and the x_i q_f − v_if x_i² gradient agree with
    the literal pairwise definitions (checks naive.py against itself)."""
    scale = yhat_scale(np.abs(prob.dense), prob.w0, prob.P)
    pair = naive.predict_pairwise(prob.dense, prob.w0, prob.P)
    ident = naive.predict_identity(prob.dense, prob.w0, prob.P)
    assert_close(ident, pair, 1e-12 * scale + 1e-300, "identity vs pairwise ŷ")
    _, _, dV = naive.grad_yhat(prob.dense, prob.P)
    dVi = naive.grad_yhat_identity(prob.dense, prob.P)
    qa = np.abs(prob.dense) @ np.abs(prob.P[:, 1:])
    mag = np.abs(prob.dense)[:, :, None] * qa[:, None, :] + 1e-300
    assert_close(dVi, dV, 1e-12 * mag, "identity vs pairwise dŷ/dV")


def test_naive_pairwise_by_hand():
    """A 2-feature example worked out by hand: ŷ = w0 + w·x + <v1,v2> x1 x2."""
    P = np.array([[0.5, 1.0, 2.0], [-1.0, 3.0, -1.0]])
    X = np.array([[2.0, 3.0], [0.0, 4.0], [0.0, 0.0]])
    # <v1, v2> = 3 - 2 = 1
    expected = np.array([0.1 + 1.0 - 3.0 + 1 * 6.0, 0.1 - 4.0, 0.1])
    np.testing.assert_allclose(naive.predict_pairwise(X, 0.1, P), expected)
    np.testing.assert_allclose(naive.predict_identity(X, 0.1, P), expected)


# --------------------------------------------------------------------------
# predict_csr
# --------------------------------------------------------------------------
def test_predict_csr_matches_pairwise(backend):
    @backend.given(prob=any_kind(max_rows=backend.max_rows), idx64=st.booleans())
    def check(prob, idx64):
        X = prob.X
        out = np.full(X.shape[0], np.nan, dtype=prob.dtype)
        backend.kern.predict_csr(kernel_arrays(X, np.int64 if idx64 else None),
                                 prob.dtype.type(prob.w0), prob.P, out)
        assert out.dtype == prob.dtype
        ref = naive.predict_pairwise(prob.dense, prob.w0, prob.P)
        scale = yhat_scale(np.abs(prob.dense), prob.w0, prob.P)
        tol = RTOL[prob.dtype] * scale + FLOOR[prob.dtype]
        assert_close(out, ref, tol, "predict_csr vs pairwise")
    check()


@given(prob=any_kind(max_rows=30), idx64=st.booleans())
@settings(SLOW)
def test_predict_serial_twin_is_the_parallel_kernel_bit_for_bit(prob, idx64):
    """Small inputs take the serial twin, large ones the parallel kernel: the
    same numbers either way (so a prediction does not depend on the size of
    the batch it is in)."""
    from fmnumba.cpu.predict import predict_parallel, predict_serial
    X = kernel_arrays(prob.X, np.int64 if idx64 else None)
    a = np.full(prob.X.shape[0], np.nan, dtype=prob.dtype)
    b = a.copy()
    predict_parallel(X, prob.dtype.type(prob.w0), prob.P, a)
    predict_serial(X, prob.dtype.type(prob.w0), prob.P, b)
    np.testing.assert_array_equal(a, b)


def test_predict_csr_takes_the_serial_twin_only_for_small_work(monkeypatch):
    from fmnumba.cpu import predict
    calls = []
    monkeypatch.setattr(predict, "predict_serial", lambda *a: calls.append("serial"))
    monkeypatch.setattr(predict, "predict_parallel", lambda *a: calls.append("parallel"))
    P = np.zeros((10, 5), np.float32)
    for nnz in (0, (predict.SERIAL_WORK - 1) // 5, -(-predict.SERIAL_WORK // 5)):  # × (1 + k) = 5
        X = (np.array([0, nnz], np.int64), np.zeros(nnz, np.int32), np.ones(nnz, np.float32))
        predict.predict_csr(X, np.float32(0), P, np.empty(1, np.float32))
    assert calls == ["serial", "serial", "parallel"]


def test_raw_duplicates_and_canonical_predict_like_dense(backend):
    """Any raw CSR (unsorted, duplicates, explicit zeros) canonicalised and
    predicted equals the pairwise model on the dense matrix of the raw input."""
    @backend.given(raw=S.raw_csr(kind="moderate", max_rows=backend.max_rows), data=st.data())
    def check(raw, data):
        dtype = raw.data.dtype
        X = S.canonical(raw)
        # canonical form: sorted unique indices per row, no stored zeros
        for r in range(X.shape[0]):
            cols = X.indices[X.indptr[r]:X.indptr[r + 1]]
            assert np.all(np.diff(cols) > 0)
        assert np.all(X.data != 0)
        assert X.data.dtype == dtype
        k = data.draw(st.integers(1, 16))
        P = data.draw(S.param_table(raw.shape[1], k, dtype))
        out = np.empty(X.shape[0], dtype=dtype)
        backend.kern.predict_csr(csr(X), dtype.type(0.25), P, out)
        ref = naive.predict_pairwise(raw.dense(), 0.25, P)
        Xabs = naive.csr_to_dense(raw.indptr, raw.indices, np.abs(raw.data), raw.shape[1])
        tol = RTOL[dtype] * yhat_scale(Xabs, 0.25, P) + FLOOR[dtype]
        assert_close(out, ref, tol, "canonical(raw) prediction vs dense(raw)")
        # a scipy matrix built from the raw arrays agrees as well (its own dense view)
        np.testing.assert_allclose(raw.to_scipy().toarray(), raw.dense(),
                                   rtol=RTOL[dtype], atol=FLOOR[dtype])
    check()


# --------------------------------------------------------------------------
# forward_batch
# --------------------------------------------------------------------------
def test_forward_batch_matches_naive(backend):
    @backend.given(prob=any_kind(max_rows=backend.max_rows), data=st.data())
    def check(prob, data):
        n = prob.X.shape[0]
        rng = np.random.default_rng(prob.seed)
        nb = data.draw(st.integers(0, n))
        rows = rng.permutation(n)[:nb].astype(np.int64)
        k = prob.k
        dt = prob.dtype
        yhat = np.full(nb, np.nan, dt)
        Q = np.full((nb, k), np.nan, dt)
        G = np.full(nb, np.nan, dt)
        L = np.full(nb, np.nan, np.float64)
        idx64 = data.draw(st.booleans())
        # w0 as a float64 scalar: what adam_epoch passes (bstate[0])
        backend.kern.forward_batch(kernel_arrays(prob.X, np.int64 if idx64 else None), prob.y,
                                   prob.sw, rows, prob.loss_code, float(prob.w0), prob.P,
                                   (yhat, Q, G, L))
        assert (yhat.dtype, Q.dtype, G.dtype, L.dtype) == (dt, dt, dt, np.float64)
        Xb = prob.dense[rows]
        yb = prob.y[rows].astype(np.float64)
        sb = prob.sw[rows].astype(np.float64)
        ref = naive.predict_pairwise(Xb, prob.w0, prob.P)
        scale = yhat_scale(np.abs(Xb), prob.w0, prob.P)
        tol = RTOL[dt] * scale + FLOOR[dt]
        assert_close(yhat, ref, tol, "forward_batch yhat")
        qref = naive.factor_sums(Xb, prob.P)
        qtol = RTOL[dt] * (np.abs(Xb) @ np.abs(prob.P[:, 1:].astype(np.float64))) + FLOOR[dt]
        assert_close(Q, qref, qtol, "forward_batch Q")
        g = naive.loss_grad(prob.loss_code, ref, yb)
        ell = naive.loss(prob.loss_code, ref, yb)
        if prob.loss_code == naive.HINGE:
            # within rounding of the kink either side is right: take the kernel's
            near = np.abs(yb * ref - 1.0) <= tol
            flat = G == 0
            steep = np.isclose(G, -sb * yb, rtol=1e-6, atol=0)
            assert np.all((flat | steep)[near])
            g = np.where(near, np.where(steep, -yb, 0.0), g)
        gtol = sb * (tol + RTOL[dt] * np.abs(g)) + FLOOR[dt]
        assert_close(G, sb * g, gtol, "forward_batch G = s·g")
        gl = np.abs(naive.loss_grad(prob.loss_code, ref, yb))
        ltol = sb * ((gl + tol) * tol + RTOL[dt] * np.abs(ell)) + 1e-300
        assert_close(L, sb * ell, ltol, "forward_batch L = s·ℓ")
    check()


# --------------------------------------------------------------------------
# transpose_batch
# --------------------------------------------------------------------------
def _check_transpose(kern, indptr, indices, data, n_features, rows):
    total = int(sum(indptr[r + 1] - indptr[r] for r in rows))
    cnt = np.zeros(n_features, dtype=np.int64)
    uniq = np.full(total, -1, dtype=indices.dtype)
    starts = np.full(total + 1, -1, dtype=np.int64)
    ent_row = np.full(total, -1, dtype=np.int64)
    ent_val = np.full(total, np.nan, dtype=data.dtype)
    u = kern.transpose_batch((indptr, indices, data), rows, cnt, (uniq, starts, ent_row, ent_val))
    ref_uniq, ref_groups = naive.transpose_batch(indptr, indices, data, rows)
    assert not cnt.any(), "cnt must be left all zero"
    assert u == len(ref_uniq)
    assert uniq[:u].tolist() == ref_uniq
    assert starts[0] == 0
    for a, grp in enumerate(ref_groups):
        lo, hi = int(starts[a]), int(starts[a + 1])
        got = list(zip(ent_row[lo:hi].tolist(), ent_val[lo:hi].astype(np.float64).tolist()))
        assert got == grp, f"feature {ref_uniq[a]}: {got} != {grp}"
    n_ent = sum(len(g) for g in ref_groups)
    assert starts[u] == n_ent
    # stored zeros skipped: exactly the nonzero stored entries were placed
    nz = sum(int(np.count_nonzero(data[indptr[r]:indptr[r + 1]])) for r in rows)
    assert n_ent == nz
    return u


def test_transpose_batch_groups_per_feature(backend):
    @backend.given(raw=S.raw_csr(kind="moderate", max_row_nnz=10, max_rows=backend.max_rows),
                   data=st.data())
    def check(raw, data):
        n = raw.shape[0]
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        nb = data.draw(st.integers(0, n))
        rows = rng.permutation(n)[:nb].astype(np.int64)
        # raw input: duplicates give several entries, stored zeros are skipped
        _check_transpose(backend.kern, raw.indptr, raw.indices, raw.data, raw.shape[1], rows)
        # canonical input (what adam_epoch sees)
        X = S.canonical(raw)
        u = _check_transpose(backend.kern, X.indptr, X.indices, X.data, X.shape[1], rows)
        assert u == np.count_nonzero((raw.dense()[rows] != 0).any(axis=0))
    check()


def test_transpose_batch_by_hand(backend):
    # rows: 0 -> {2: 1.0, 0: 0.0 (stored zero), 1: 5.0}; 1 -> {}; 2 -> {1: -2.0, 2: 3.0}
    indptr = np.array([0, 3, 3, 5], dtype=np.int32)
    indices = np.array([2, 0, 1, 1, 2], dtype=np.int32)
    data = np.array([1.0, 0.0, 5.0, -2.0, 3.0], dtype=np.float32)
    rows = np.array([2, 1, 0], dtype=np.int64)
    cnt = np.zeros(3, np.int64)
    uniq = np.empty(5, np.int32)
    starts = np.empty(6, np.int64)
    er = np.empty(5, np.int64)
    ev = np.empty(5, np.float32)
    u = backend.kern.transpose_batch((indptr, indices, data), rows, cnt, (uniq, starts, er, ev))
    assert u == 2
    assert uniq[:2].tolist() == [1, 2]
    assert starts[:3].tolist() == [0, 2, 4]
    assert er[:4].tolist() == [0, 2, 0, 2]
    assert ev[:4].tolist() == [-2.0, 5.0, 3.0, 1.0]
    assert not cnt.any()


# --------------------------------------------------------------------------
# adam_update (one step, both dtypes)
# --------------------------------------------------------------------------
def test_adam_update_matches_naive_step(backend):
    """One fused lazy Adam update: moments of touched rows = naive Adam
    moments of the exact batch gradient; P = bias-corrected step from those
    moments; untouched rows (and their moments) bit-for-bit unchanged. With
    decoupled=True (AdamW) the gradient has no L2 term and the step adds
    −lr·λ·p."""
    kern = backend.kern

    @backend.given(prob=S.fm_problem(kind="moderate", min_rows=1, max_rows=backend.max_rows),
                   data=st.data())
    def check(prob, data):
        X, dt, n = prob.X, prob.dtype, prob.X.shape[0]
        rng = np.random.default_rng(prob.seed)
        nb = data.draw(st.integers(1, n))
        rows = rng.permutation(n)[:nb].astype(np.int64)
        t = data.draw(st.integers(1, 40))
        lr = data.draw(st.sampled_from([1e-3, 1e-2, 0.1]))
        lam_w, lam_v = S.lam_arrays(rng, X.shape[1], dt, zero=data.draw(st.booleans()))
        decoupled = data.draw(st.booleans())
        # the L2 strengths inside the gradient: none with decoupled decay
        glam_w, glam_v = (np.zeros(1), np.zeros(1)) if decoupled else (lam_w, lam_v)
        k = prob.k
        yhat, Q, G, L = np.empty(nb, dt), np.empty((nb, k), dt), np.empty(nb, dt), np.empty(nb)
        kern.forward_batch(csr(X), prob.y, prob.sw, rows, prob.loss_code, float(prob.w0),
                           prob.P, (yhat, Q, G, L))
        sb = prob.sw[rows].copy()
        Xb = prob.dense[rows]
        yb = prob.y[rows].astype(np.float64)
        ref_yhat = naive.predict_pairwise(Xb, prob.w0, prob.P)
        ytol = RTOL[dt] * yhat_scale(np.abs(Xb), prob.w0, prob.P) + FLOOR[dt]
        assume(not near_hinge_kink(prob.loss_code, ref_yhat, yb, ytol))
        T, u = transposed(kern, X, rows, dt)
        M0 = (rng.normal(0, 0.1, prob.P.shape) * (t > 1)).astype(dt)
        S0 = (rng.uniform(0, 0.01, prob.P.shape) * (t > 1)).astype(dt)
        P, M, S_ = prob.P.copy(), M0.copy(), S0.copy()
        ssum = float(sb.astype(np.float64).sum())
        kern.adam_update(T, u, (G, sb, Q), 1.0 / ssum, (P, M, S_),
                         (lr, BETA1, BETA2, EPS, decoupled), t, (lam_w, lam_v))
        assert (P.dtype, M.dtype, S_.dtype) == (dt, dt, dt)

        _, gP = naive.batch_objective_grad(Xb, yb, sb, prob.w0, prob.P, prob.loss_code,
                                           glam_w, glam_v)
        touched = (Xb != 0).any(axis=0)
        assert sorted(T[0][:u].tolist()) == np.flatnonzero(touched).tolist()
        # untouched rows: bit-for-bit unchanged
        assert np.array_equal(P[~touched], prob.P[~touched])
        assert np.array_equal(M[~touched], M0[~touched])
        assert np.array_equal(S_[~touched], S0[~touched])
        g = naive.loss_grad(prob.loss_code, ref_yhat, yb)
        mag = grad_magnitude(Xb, ytol, sb, g, prob.P, glam_w, glam_v)
        gtol = 4 * RTOL[dt] * mag + FLOOR[dt]
        Mref, Sref = naive.adam_moments(M0.astype(np.float64), S0.astype(np.float64), gP,
                                        BETA1, BETA2)
        mtol = (1 - BETA1) * gtol + RTOL[dt] * np.abs(Mref)
        assert_close(M[touched], Mref[touched], mtol[touched], "Adam first moment")
        stol = (1 - BETA2) * (2 * np.abs(gP) * gtol + gtol ** 2) + RTOL[dt] * Sref
        assert_close(S_[touched], Sref[touched], stol[touched], "Adam second moment")
        # the step, from the kernel's own moments (no amplification of rounding)
        P0 = prob.P.astype(np.float64)
        Pref = naive.adam_param_step(P0, M.astype(np.float64), S_.astype(np.float64), t, lr,
                                     BETA1, BETA2, EPS)
        if decoupled:
            Pref = Pref - lr * naive.per_parameter(lam_w, lam_v, P0.shape) * P0
        step = np.abs(Pref - prob.P)
        ptol = 10 * np.finfo(dt).eps * (np.abs(prob.P) + step * 10) + FLOOR[dt]
        assert_close(P[touched], Pref[touched], ptol[touched], "Adam parameter step")
    check()


# --------------------------------------------------------------------------
# adam_epoch
# --------------------------------------------------------------------------
@given(prob=st.one_of(S.fm_problem(dtype=np.float32, kind="moderate", max_rows=30),
                      S.fm_problem(dtype=np.float64, kind="moderate", max_rows=30),
                      S.fm_problem(dtype=np.float64, zero_weights=True, max_rows=30)),
       data=st.data())
@settings(SLOW)
def test_adam_epoch_serial_twin_is_the_parallel_epoch_bit_for_bit(prob, data):
    """Small epochs run on the serial twin, large ones on the parallel epoch:
    the same parameters, moments, intercept and batch losses either way,
    over several epochs, with AdamW's decay or L2 in the gradient."""
    from fmnumba.cpu import adam
    X, n = prob.X, prob.X.shape[0]
    rng = np.random.default_rng(prob.seed)
    batch_size = data.draw(st.integers(1, n + 2))
    lam_w, lam_v = S.lam_arrays(rng, X.shape[1], prob.dtype, zero=data.draw(st.booleans()))
    hyper = (data.draw(st.sampled_from([1e-3, 0.05])), BETA1, BETA2, EPS,
             data.draw(st.booleans()))
    runs = []
    for epoch in (adam._adam_epoch, adam._adam_epoch_serial):
        P, M, S_ = prob.P.copy(), np.zeros_like(prob.P), np.zeros_like(prob.P)
        bstate, t, losses = np.array([prob.w0, 0.0, 0.0]), 0, []
        for e in range(2):
            order = np.random.default_rng(e).permutation(n).astype(np.int64)
            nb = -(-n // batch_size)
            bl, bw = np.zeros(nb), np.zeros(nb)
            t, _ = adam.adam_epoch_on(epoch, csr(X), prob.y, prob.sw, order, batch_size,
                                      prob.loss_code, (P, M, S_), bstate, t, hyper,
                                      (lam_w, lam_v), (bl, bw))
            losses.append(bl)
        runs.append((P, M, S_, bstate, np.concatenate(losses), t))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_adam_epoch_takes_the_serial_twin_only_for_small_work(monkeypatch):
    from fmnumba.cpu import adam
    seen = []
    monkeypatch.setattr(adam, "adam_epoch_on", lambda epoch, *a: seen.append(epoch))
    X = (np.array([0, 3, 6], np.int64), np.array([0, 1, 2, 0, 1, 2], np.int32),
         np.ones(6, np.float32))
    for n_features in (1000, 100_000):  # P, M, S of 3 x 1000 x 9 floats fit the cache
        P = np.zeros((n_features, 9), np.float32)
        adam.adam_epoch(X, None, None, None, 2, 0, (P, P, P), None, 0, None, None, None)
    assert seen == [adam._adam_epoch_serial, adam._adam_epoch]
    assert not adam.serial_is_faster(X, 1 << 20, np.zeros((10, 9), np.float32))  # heavy batch


def test_adam_epoch_matches_naive_float64(backend):
    """Several epochs of several batches (global t carried across calls) equal
    the naive lazy Adam trajectory, float64; batches whose weights sum to 0
    take no step."""
    problem = dict(dtype=np.float64, kind="moderate", p_scale=0.3, max_rows=backend.max_rows)

    @backend.given(prob=st.one_of(S.fm_problem(**problem),
                                  S.fm_problem(zero_weights=True, **problem)),
                   data=st.data())
    def check(prob, data):
        X, n = prob.X, prob.X.shape[0]
        rng = np.random.default_rng(prob.seed)
        batch_size = data.draw(st.integers(1, n + 2))
        n_epochs = data.draw(st.integers(1, 3))
        lr = data.draw(st.sampled_from([1e-3, 1e-2, 0.05]))
        t0 = data.draw(st.sampled_from([0, 3]))
        lam_w, lam_v = S.lam_arrays(rng, X.shape[1], np.float64, zero=data.draw(st.booleans()))
        decoupled = data.draw(st.booleans())
        P = prob.P.copy()
        M = np.zeros_like(P) if t0 == 0 else rng.normal(0, 0.05, P.shape)
        S_ = np.zeros_like(P) if t0 == 0 else rng.uniform(0, 0.01, P.shape)
        bstate = np.array([prob.w0, 0.0, 0.0]) if t0 == 0 else np.array([prob.w0, 0.02, 0.01])
        ref = naive.AdamState(P, M, S_, bstate, t0)
        t = t0
        for _ in range(n_epochs):
            order = rng.permutation(n).astype(np.int64)
            t, done, bl, bw = run_adam_epoch(backend.kern, X, prob.y, prob.sw, order,
                                             batch_size, prob.loss_code, P, M, S_, bstate, t,
                                             lr, lam_w, lam_v, decoupled=decoupled)
            rt, rdone, rbl, rbw = naive.adam_epoch(ref, prob.dense, prob.y, prob.sw, order,
                                                   batch_size, prob.loss_code, lr, BETA1,
                                                   BETA2, EPS, lam_w, lam_v, decoupled)
            assert (t, done) == (rt, rdone)
            assert done == -(-n // batch_size)
            np.testing.assert_allclose(bw, rbw, rtol=1e-12)
            np.testing.assert_allclose(bl, rbl, rtol=1e-8, atol=1e-10)
        if not (prob.sw == 0).any():
            assert t == t0 + n_epochs * -(-n // batch_size)
        atol = 1e-6 * lr * max(t, 1) + 1e-12
        np.testing.assert_allclose(P, ref.P, rtol=1e-8, atol=atol, err_msg="P")
        np.testing.assert_allclose(M, ref.M, rtol=1e-6, atol=1e-10, err_msg="M")
        np.testing.assert_allclose(S_, ref.S, rtol=1e-6, atol=1e-12, err_msg="S")
        np.testing.assert_allclose(bstate, [ref.w0, ref.m0, ref.s0], rtol=1e-8, atol=atol,
                                   err_msg="bstate [w0, m0, s0]")
        # rows never touched by any batch keep their initial values exactly
        untouched = ~(prob.dense != 0).any(axis=0)
        assert np.array_equal(P[untouched], prob.P[untouched])
    check()


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_adam_epoch_zero_weight_batches_take_no_step(backend, dt):
    """Batches of zero-weight rows between weighted ones: counted as done,
    recorded with weight 0, no step (t counts only the weighted batches, and
    the run equals the naive one in which those batches are skipped)."""
    rng = np.random.default_rng(5)
    D = rng.normal(0, 1, (12, 6)) * (rng.random((12, 6)) < 0.5)
    X = S._canonical_csr(sp.csr_matrix(D), np.dtype(dt), "X")
    y = rng.normal(0, 1, 12).astype(dt)
    sw = rng.uniform(0.5, 2.0, 12).astype(dt)
    sw[4:8] = 0                       # batch 1 of 4 rows: all weights zero
    order = np.arange(12, dtype=np.int64)
    P0 = rng.normal(0, 0.3, (6, 4)).astype(dt)
    lam = (np.full(1, 1e-2, dt), np.full(1, 1e-2, dt))
    P, M, S_ = P0.copy(), np.zeros_like(P0), np.zeros_like(P0)
    bstate = np.array([0.1, 0.0, 0.0])
    t, done, bl, bw = run_adam_epoch(backend.kern, X, y, sw, order, 4, 0, P, M, S_, bstate, 5,
                                     0.02, *lam)
    assert (t, done) == (7, 3)
    assert bw[1] == 0 and bl[1] == 0
    ref = naive.AdamState(P0, np.zeros_like(P0), np.zeros_like(P0), [0.1, 0.0, 0.0], 5)
    rt, rdone, rbl, rbw = naive.adam_epoch(ref, naive.csr_to_dense(*csr(X), 6), y, sw, order,
                                           4, 0, 0.02, BETA1, BETA2, EPS, *lam)
    assert (rt, rdone) == (t, done)
    tol = dict(rtol=1e-4, atol=1e-6) if dt == np.float32 else dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(P, ref.P, **tol)
    np.testing.assert_allclose(bstate, [ref.w0, ref.m0, ref.s0], **tol)
    np.testing.assert_allclose(bl, rbl, **tol)
    assert np.all(np.isfinite(P)) and np.all(np.isfinite(M)) and np.all(np.isfinite(S_))


def _float32_batches(backend):
    """Non-empty float32 problems with moderate values and small P, sized for `backend`."""
    return S.fm_problem(dtype=np.float32, kind="moderate", p_scale=0.3, min_rows=1,
                        max_rows=backend.max_rows)


def test_adam_epoch_float32_batch_by_batch(backend):
    """float32 adam_epoch, one batch per call with t carried: after every
    batch, moments = naive moments of the exact gradient at the kernel's own
    previous state, w0 and its moments = naive scalar Adam, t increments."""
    @backend.given(prob=_float32_batches(backend), data=st.data())
    def check(prob, data):
        X, n = prob.X, prob.X.shape[0]
        rng = np.random.default_rng(prob.seed)
        batch_size = data.draw(st.integers(1, n))
        lr = 0.01
        lam_w, lam_v = S.lam_arrays(rng, X.shape[1], np.float32)
        decoupled = data.draw(st.booleans())
        glam_w, glam_v = (np.zeros(1), np.zeros(1)) if decoupled else (lam_w, lam_v)
        P = prob.P.copy()
        M = np.zeros_like(P)
        S_ = np.zeros_like(P)
        bstate = np.array([prob.w0, 0.0, 0.0])
        order = rng.permutation(n).astype(np.int64)
        t = 0
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            prevP, prevM, prevS, prevb = P.copy(), M.copy(), S_.copy(), bstate.copy()
            ref = naive.AdamState(prevP, prevM, prevS, prevb, t)
            Xb, yb, sb = prob.dense[rows], prob.y[rows].astype(np.float64), prob.sw[rows]
            yh = naive.predict_pairwise(Xb, prevb[0], prevP)
            ytol = RTOL[np.dtype(np.float32)] * yhat_scale(np.abs(Xb), prevb[0], prevP)
            assume(not near_hinge_kink(prob.loss_code, yh, yb, ytol))
            t, done, bl, bw = run_adam_epoch(backend.kern, X, prob.y, prob.sw, rows, n,
                                             prob.loss_code, P, M, S_, bstate, t, lr, lam_w,
                                             lam_v, decoupled=decoupled)
            assert done == 1
            naive.adam_step(ref, Xb, yb, sb, prob.loss_code, lr, BETA1, BETA2, EPS, lam_w,
                            lam_v, decoupled)
            assert t == ref.t
            assert P.dtype == M.dtype == S_.dtype == np.float32
            g = naive.loss_grad(prob.loss_code, yh, yb)
            gtol = 4e-4 * grad_magnitude(Xb, ytol, sb.astype(np.float64), g, prevP, glam_w,
                                         glam_v) + 1e-30
            # float32 moments below the normal range underflow (S ~ g² does first)
            f32 = FLOOR[np.dtype(np.float32)]
            assert_close(M, ref.M, (1 - BETA1) * gtol + 1e-4 * np.abs(ref.M) + f32, "M")
            gref = (ref.M - BETA1 * prevM) / (1 - BETA1)
            stol = (1 - BETA2) * (2 * np.abs(gref) * gtol + gtol ** 2) + 1e-4 * ref.S + f32
            assert_close(S_, ref.S, stol, "S")
            Pstep = prevP.astype(np.float64)
            tch = (Xb != 0).any(axis=0)
            Pstep[tch] = naive.adam_param_step(Pstep[tch], M[tch].astype(np.float64),
                                               S_[tch].astype(np.float64), t, lr, BETA1,
                                               BETA2, EPS)
            if decoupled:
                Pstep[tch] -= lr * naive.per_parameter(lam_w, lam_v, P.shape)[tch] * prevP[tch]
            assert_close(P, Pstep, 1e-6 * (np.abs(prevP) + lr) + 1e-30, "P from own moments")
            sbd = sb.astype(np.float64)
            m0tol = (1 - BETA1) * np.dot(sbd, ytol + 1e-4 * np.abs(g)) / sbd.sum() + 1e-12
            assert abs(bstate[1] - ref.m0) <= m0tol, (bstate[1], ref.m0)
            assert np.isclose(bstate[0], naive.adam_param_step(prevb[0], bstate[1], bstate[2],
                                                               t, lr, BETA1, BETA2, EPS),
                              rtol=1e-12, atol=1e-15)
            assert np.isclose(bw[0], float(sb.astype(np.float64).sum()), rtol=1e-6)
    check()


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_adamw_decays_touched_rows_where_adam_takes_a_normalised_l2_step(backend, dt):
    """Hinge loss with every margin above 1: the data gradient is exactly 0.
    AdamW (decoupled) then only decays each touched row, p ← p − lr·λ·p, and
    leaves M and S at 0; Adam puts L2 in the gradient, which its
    normalisation turns into a step of about lr·sign(p) whatever λ is (why
    the two forms need different λ). Untouched rows stay as they were."""
    rng = np.random.default_rng(0)
    D = np.zeros((6, 5))
    D[:, :3] = rng.uniform(0.5, 1.5, (6, 3))  # features 3 and 4 are never touched
    X = sp.csr_matrix(D.astype(dt))
    y = np.ones(6, dt)
    sw = np.ones(6, dt)
    P0 = rng.uniform(0.1, 1.0, (5, 3)).astype(dt) * rng.choice([-1, 1], (5, 3)).astype(dt)
    P0[:, 1:] *= dt(0.01)  # keep the interactions small: margins stay near w0
    lam_w = np.array([0.05], dt)
    lam_v = np.array([0.2], dt)
    lr = 0.01
    order = np.arange(6, dtype=np.int64)
    out = {}
    for decoupled in (False, True):
        P, M, S_ = P0.copy(), np.zeros_like(P0), np.zeros_like(P0)
        bstate = np.array([5.0, 0.0, 0.0])  # every margin y·ŷ ≈ 5 > 1
        t, done, bl, _ = run_adam_epoch(backend.kern, X, y, sw, order, 6, 2, P, M, S_, bstate,
                                        0, lr, lam_w, lam_v, decoupled=decoupled)
        assert (t, done) == (1, 1) and bl[0] == 0.0
        assert np.array_equal(P[3:], P0[3:])
        out[decoupled] = P, M, S_
    P, M, S_ = out[True]
    lam = np.array([lam_w[0]] + [lam_v[0]] * 2, dt)
    np.testing.assert_allclose(P[:3], P0[:3] * (1 - lr * lam), rtol=4 * np.finfo(dt).eps)
    assert not M.any() and not S_.any()
    P, M, S_ = out[False]
    np.testing.assert_allclose(P[:3], P0[:3] - lr * np.sign(P0[:3]), rtol=0, atol=1e-4 * lr)
    assert (M[:3] != 0).all() and (S_[:3] > 0).all()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the simulator
@pytest.mark.parametrize("where", ["overflow", "inf target"])
def test_adam_epoch_stops_before_a_nonfinite_batch(backend, where):
    """A batch whose loss is not finite stops the epoch before any update of
    it: the earlier batches are applied, t counts them, the failing batch's
    loss is recorded."""
    dt = np.float32 if where == "overflow" else np.float64
    X = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=dt))
    y = np.array([0.0, 0.0, 1.0], dt)
    sw = np.ones(3, dt)
    P = np.array([[0.1, 0.0], [0.2, 0.0]], dt)
    if where == "overflow":
        P[1, 0] = 3e38          # row 1: 6e38 overflows float32
    else:
        y[1] = np.inf
    M, S_ = np.zeros_like(P), np.zeros_like(P)
    bstate = np.zeros(3)
    P0 = P.copy()
    lam = np.zeros(2, dt)
    t, done, bl, bw = run_adam_epoch(backend.kern, X, y, sw, np.array([0, 1, 2], np.int64), 1,
                                     0, P, M, S_, bstate, 7, 0.01, lam, lam)
    assert (t, done) == (8, 1)
    assert P[1, 0] == P0[1, 0] and M[1, 0] == 0  # the failing batch changed nothing
    assert P[0, 0] != P0[0, 0]                    # the first batch was applied
    assert np.isfinite(bl[0]) and not np.isfinite(bl[1])
    if where == "inf target":  # (the float64 reference cannot overflow where float32 does)
        ref = naive.AdamState(P0, np.zeros_like(P0), np.zeros_like(P0), [0.0, 0.0, 0.0], 7)
        rt, rdone, rbl, _ = naive.adam_epoch(ref, X.toarray(), y, sw, [0, 1, 2], 1, 0, 0.01,
                                             BETA1, BETA2, EPS, lam, lam)
        assert (rt, rdone) == (t, done) and not np.isfinite(rbl[1])
        np.testing.assert_allclose(P, ref.P, rtol=1e-12)


# --------------------------------------------------------------------------
# gradients: finite differences (float64)
# --------------------------------------------------------------------------
def _central(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


@given(prob=S.fm_problem(dtype=np.float64, kind="moderate", max_rows=6, max_k=4,
                         loss_codes=(0,)))
@settings(SLOW, max_examples=25)
def test_grad_yhat_matches_finite_differences(prob):
    """∂ŷ/∂w0 = 1, ∂ŷ/∂w_i = x_i, ∂ŷ/∂v_if (naive) = central differences of the
    pairwise ŷ (checks naive.py, whose gradients the kernel tests use)."""
    X, P, w0 = prob.dense, prob.P.astype(np.float64), prob.w0
    assume(X.shape[1] <= 8)
    d0, dw, dV = naive.grad_yhat(X, P)
    h = 1e-5
    fd0 = _central(lambda a: naive.predict_pairwise(X, a, P), w0, h)
    np.testing.assert_allclose(d0, fd0, rtol=1e-7, atol=1e-7)
    mag = 1.0 + yhat_scale(np.abs(X), w0, P)
    for j in range(P.shape[0]):
        for c in range(P.shape[1]):
            def f(v, j=j, c=c):
                Q = P.copy()
                Q[j, c] = v
                return naive.predict_pairwise(X, w0, Q)
            fd = _central(f, P[j, c], h)
            an = dw[:, j] if c == 0 else dV[:, j, c - 1]
            np.testing.assert_allclose(an, fd, rtol=1e-6, atol=1e-7 * mag.max(initial=1.0),
                                       err_msg=f"dŷ/dP[{j},{c}]")


def test_batch_objective_gradient_matches_finite_differences(backend):
    """The exact gradient of adam.py's batch objective — naive's analytic one
    and the kernel's (read from Adam's first moment with β1 = 0) — equals
    central differences of the naive objective."""
    @backend.given(max_examples=25,
                   prob=S.fm_problem(dtype=np.float64, kind="moderate", max_rows=6, max_k=4,
                                     min_rows=1, loss_codes=(0, 1)),
                   zero_lam=st.booleans())
    def check(prob, zero_lam):
        X, n = prob.X, prob.X.shape[0]
        assume(X.shape[1] <= 8)
        rng = np.random.default_rng(prob.seed)
        lam_w, lam_v = S.lam_arrays(rng, X.shape[1], np.float64, zero=zero_lam)
        P0 = prob.P.astype(np.float64)
        y = prob.y.astype(np.float64)
        s = prob.sw.astype(np.float64)

        def J(w0, P):
            return naive.batch_objective(prob.dense, y, s, w0, P, prob.loss_code, lam_w, lam_v)

        h = 1e-5
        fd = np.zeros_like(P0)
        for j in range(P0.shape[0]):
            for c in range(P0.shape[1]):
                Pp, Pm = P0.copy(), P0.copy()
                Pp[j, c] += h
                Pm[j, c] -= h
                fd[j, c] = (J(prob.w0, Pp) - J(prob.w0, Pm)) / (2 * h)
        fd0 = (J(prob.w0 + h, P0) - J(prob.w0 - h, P0)) / (2 * h)
        g0, gP = naive.batch_objective_grad(prob.dense, y, s, prob.w0, P0, prob.loss_code,
                                            lam_w, lam_v)
        scale = 1e-6 * (1.0 + abs(J(prob.w0, P0)) + np.abs(fd).max())
        np.testing.assert_allclose(gP, fd, rtol=1e-5, atol=scale, err_msg="naive dJ/dP")
        assert abs(g0 - fd0) <= 1e-5 * abs(fd0) + scale
        # kernel gradient: β1 = 0 makes M = g after one step (one batch = all rows)
        P, M, S_ = P0.copy(), np.zeros_like(P0), np.zeros_like(P0)
        bstate = np.array([prob.w0, 0.0, 0.0])
        order = np.arange(n, dtype=np.int64)
        t, done, _, _ = run_adam_epoch(backend.kern, X, prob.y, prob.sw, order, n,
                                       prob.loss_code, P, M, S_, bstate, 0, 1e-3, lam_w, lam_v,
                                       beta1=0.0, beta2=0.5)
        assert (t, done) == (1, 1)
        np.testing.assert_allclose(M, fd, rtol=1e-5, atol=scale, err_msg="kernel dJ/dP")
        assert abs(bstate[1] - fd0) <= 1e-5 * abs(fd0) + scale
        np.testing.assert_allclose(S_, M ** 2 * 0.5, rtol=1e-12, atol=1e-300)
    check()


# --------------------------------------------------------------------------
# sgd_epoch
# --------------------------------------------------------------------------
def test_sgd_epoch_sequential_matches_naive_float64(backend):
    @backend.given(prob=S.fm_problem(dtype=np.float64, kind="moderate", p_scale=0.3,
                                     max_rows=backend.max_rows),
                   data=st.data())
    def check(prob, data):
        X, n = prob.X, prob.X.shape[0]
        rng = np.random.default_rng(prob.seed)
        lr = data.draw(st.sampled_from([1e-3, 1e-2]))
        lam_w, lam_v = S.lam_arrays(rng, X.shape[1], np.float64, zero=data.draw(st.booleans()))
        P = prob.P.copy()
        Pref = prob.P.astype(np.float64).copy()
        bstate = np.array([prob.w0, 0.0, 0.0])
        w0 = float(prob.w0)
        Ls, Lrefs = [], []
        with np.errstate(all="ignore"):
            for _ in range(2):
                order = rng.permutation(n).astype(np.int64)
                L = np.full(n, np.nan)
                backend.kern.sgd_epoch(csr(X), prob.y, prob.sw, order, 1, prob.loss_code, P,
                                       bstate, lr, (lam_w, lam_v), L)
                w0, Lref = naive.sgd_epoch(prob.dense, prob.y, prob.sw, order, w0, Pref,
                                           prob.loss_code, lr, lam_w, lam_v)
                Ls.append(L)
                Lrefs.append(Lref)
        # plain SGD may diverge on such data; compare only stable trajectories
        assume(np.isfinite(Lrefs).all() and np.abs(Pref).max() < 1e3 and abs(w0) < 1e3)
        np.testing.assert_allclose(np.concatenate(Ls), np.concatenate(Lrefs), rtol=1e-8,
                                   atol=1e-10, err_msg="L")
        np.testing.assert_allclose(P, Pref, rtol=1e-8, atol=1e-10, err_msg="P")
        assert np.isclose(bstate[0], w0, rtol=1e-8, atol=1e-10)
        assert bstate[1] == 0 and bstate[2] == 0
    check()


def test_sgd_epoch_float32_sample_by_sample(backend):
    """float32 SGD: each per-sample update = naive sgd_step from the kernel's
    own previous state (so rounding does not accumulate)."""
    @backend.given(prob=_float32_batches(backend), data=st.data())
    def check(prob, data):
        X, n = prob.X, prob.X.shape[0]
        rng = np.random.default_rng(prob.seed)
        lam_w, lam_v = S.lam_arrays(rng, X.shape[1], np.float32)
        lr = 0.02
        P = prob.P.copy()
        bstate = np.array([prob.w0, 0.0, 0.0])
        for r in rng.permutation(n)[: min(n, 8)]:
            prevP, prevw0 = P.astype(np.float64), float(np.float32(bstate[0]))
            bstate_prev = float(bstate[0])
            x = prob.dense[r]
            yh = naive.predict_pairwise(x[None], prevw0, prevP)
            ytol = 1e-4 * yhat_scale(np.abs(x[None]), prevw0, prevP)
            assume(not near_hinge_kink(prob.loss_code, yh, [prob.y[r]], ytol[0]))
            L = np.full(1, np.nan)
            backend.kern.sgd_epoch(csr(X), prob.y, prob.sw, np.array([r], np.int64), 1,
                                   prob.loss_code, P, bstate, lr, (lam_w, lam_v), L)
            Pref = prevP.copy()
            _, ell = naive.sgd_step(x, float(prob.y[r]), float(prob.sw[r]), prevw0, Pref,
                                    prob.loss_code, lr, lam_w, lam_v)
            assert P.dtype == np.float32
            g = naive.loss_grad(prob.loss_code, yh, [prob.y[r]])
            mag = grad_magnitude(x[None], ytol, np.array([float(prob.sw[r])]), g, prevP, lam_w,
                                 lam_v)
            sr = float(prob.sw[r])
            tol = 4e-4 * lr * mag * max(sr, 1.0) + 1e-6 * np.abs(prevP) + 1e-30
            assert_close(P, Pref, tol, "SGD step")
            gabs = float(np.abs(g[0]))
            assert abs(L[0] - ell) <= sr * (gabs + ytol[0]) * ytol[0] + 1e-4 * abs(ell) + 1e-30
            # w0 is kept in float64: w0 -= lr·s·g
            w0_expected = bstate_prev - lr * sr * float(g[0])
            assert abs(bstate[0] - w0_expected) <= lr * sr * (ytol[0] + 1e-4 * gabs) + 1e-12
    check()


# Hogwild's final training loss may differ this much (relative) from the
# serial run's: concurrent chunks see each other's updates late, and each
# chunk's intercept starts from the epoch's (about 1% here on the CPU).
HOGWILD_RTOL = 0.05


def test_sgd_hogwild_loss_decreases_and_matches_serial(backend):
    """Hogwild SGD (several chunks, racy by design) on planted FM data: the
    training loss goes down epoch after epoch, and after 6 epochs it is
    within HOGWILD_RTOL (relative) of the serial run's from the same start
    and orders. The loss is that of the whole set at the epoch's end
    parameters, computed with naive.py."""
    rng = np.random.default_rng(6)
    n, p, k = 240, 30, 3
    D = rng.uniform(0.5, 1.5, (n, p)) * (rng.random((n, p)) < 0.12)
    Pt = rng.normal(0, 0.4, (p, 1 + k))
    y = naive.predict_identity(D, 0.5, Pt) + rng.normal(0, 0.05, n)
    X = S._canonical_csr(sp.csr_matrix(D), np.dtype(np.float64), "X")
    D = naive.csr_to_dense(*csr(X), p)
    sw = np.ones(n)
    lam = (np.full(1, 1e-4), np.full(1, 1e-4))
    P0 = rng.normal(0, 0.1, (p, 1 + k))
    orders = [rng.permutation(n).astype(np.int64) for _ in range(6)]
    curves = {}
    for chunks in (1, 4):
        P, bstate, L = P0.copy(), np.array([float(y.mean()), 0.0, 0.0]), np.empty(n)
        curve = [float(np.mean(naive.loss(0, naive.predict_identity(D, bstate[0], P), y)))]
        for order in orders:
            backend.kern.sgd_epoch(csr(X), y, sw, order, chunks, 0, P, bstate, 0.01, lam, L)
            assert np.isfinite(L).all()
            curve.append(float(np.mean(naive.loss(0, naive.predict_identity(D, bstate[0], P),
                                                  y))))
        curves[chunks] = np.array(curve)
    for chunks, curve in curves.items():
        assert np.all(np.diff(curve) < 0), f"{chunks} chunks: loss not decreasing {curve}"
        assert curve[-1] < 0.5 * curve[0], f"{chunks} chunks: {curve}"
    serial, hogwild = curves[1][-1], curves[4][-1]
    assert abs(hogwild - serial) <= HOGWILD_RTOL * serial, (hogwild, serial)


# --- on-disk cache of a read-only install ------------------------------------

_CACHE_CHILD = r"""
import json, os, sys
import numpy as np
import fmnumba
from fmnumba.cpu.predict import predict_parallel, predict_serial
from fmnumba.cpu.validate import csr_is_canonical
assert fmnumba.__file__.startswith(sys.argv[1]), fmnumba.__file__
X = (np.array([0, 1, 2], np.int32), np.array([0, 1], np.int32), np.ones(2, np.float32))
ok = csr_is_canonical(X, np.int64(2), True)
out = np.empty(2, np.float32)
for kern in (predict_parallel, predict_serial):  # a parallel kernel and its serial twin
    kern(X, np.float32(0.5), np.ones((2, 3), np.float32), out)
    ok = ok and out.tolist() == [1.5, 1.5]
st = [k.stats for k in (csr_is_canonical, predict_parallel, predict_serial)]
print(json.dumps({"ok": bool(ok), "hits": sum(len(s.cache_hits) for s in st),
                  "misses": sum(len(s.cache_misses) for s in st)}))
"""


def test_read_only_install_still_caches_between_runs(tmp_path):
    """An install whose package folders cannot hold __pycache__ (read-only
    site-packages): Numba must fall back to the user-wide cache dir, and a
    second process must load the kernels (a serial and a parallel one) from
    there instead of compiling."""
    import json
    import os
    import shutil
    import stat
    import subprocess
    import sys

    import fmnumba
    site = tmp_path / "site"
    shutil.copytree(os.path.dirname(fmnumba.__file__), site / "fmnumba",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", "*.pyc"))
    for d, _, _ in os.walk(site / "fmnumba"):
        # a file where __pycache__ would go: not writable even for root
        (tmp_path / d / "__pycache__").write_text("")
    for d, dirs, files in os.walk(site):
        for f in files:
            os.chmod(os.path.join(d, f), stat.S_IREAD)
        os.chmod(d, stat.S_IREAD | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(site), XDG_CACHE_HOME=str(tmp_path / "cache"),
               PYTHONDONTWRITEBYTECODE="1")

    def run():
        r = subprocess.run([sys.executable, "-c", _CACHE_CHILD, str(site)], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    try:
        first = run()
        assert first["ok"] and first["misses"] == 3 and first["hits"] == 0, first
        index = [f for _, _, fs in os.walk(tmp_path / "cache") for f in fs if f.endswith(".nbi")]
        for name in ("validate.csr_is_canonical", "predict.predict_parallel",
                     "predict.predict_serial"):
            assert any(f.startswith(name) for f in index), (name, index)
        second = run()
        assert second["ok"] and second["hits"] == 3 and second["misses"] == 0, second
    finally:
        for d, _, _ in os.walk(site):
            os.chmod(d, stat.S_IRWXU)


def test_front_door_bench_runs_on_a_small_matrix():
    from bench.front_door import measure
    X = sp.random(3000, 400, density=0.02, format="csr", random_state=0, dtype=np.float32)
    res = measure(X, ks=(4,), threads=1, repeats=1)
    (row,) = res["rows"]
    assert row["predict_s"] > 0 and row["ceiling_s"] > 0 and row["check_X_s"] > 0
