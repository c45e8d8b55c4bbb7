"""Property tests: every CPU kernel against the dense reference tests/naive.py.

Data reach the kernels only through fmnumba._validation._canonical_csr (see
strategies.canonical), as in the package. Tolerances are relative to the
magnitudes involved (sums of absolute values of the terms), with rtol 1e-4
for float32 and 1e-10 for float64.
"""
import re

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fmnumba import FMRegressor
from fmnumba._config import FASTMATH
from fmnumba.cpu import (adam_epoch, adam_update, forward_batch, predict_csr,
                         sgd_epoch, transpose_batch)

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

any_kind = st.one_of(*(S.fm_problem(kind=k) for k in S.VALUE_KINDS))


@pytest.fixture(autouse=True, scope="module")
def _launch_numba_threads():
    """Start Numba's thread pool before any kernel runs: adam_epoch loaded
    from the on-disk cache crashes otherwise (see
    test_adam_epoch_direct_call_in_fresh_process)."""
    numba.get_num_threads()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def kernel_arrays(X, index_dtype=None):
    """(indptr, indices, data) of a canonical CSR, optionally with the index
    arrays cast (int64 indices are what huge matrices get)."""
    if index_dtype is None:
        return X.indptr, X.indices, X.data
    return X.indptr.astype(index_dtype), X.indices.astype(index_dtype), X.data


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


def lam_arrays(rng, n_features, dtype, zero=False):
    """Per-feature L2 strengths; a third of the draws use the kernels' shared
    form, one value as a (1,) array."""
    if zero:
        z = np.zeros(n_features, dtype=dtype)
        return z, z.copy()
    if rng.random() < 1 / 3:
        return (np.array([rng.uniform(0, 0.1)], dtype=dtype),
                np.array([rng.uniform(0, 0.1)], dtype=dtype))
    return (rng.uniform(0, 0.1, n_features).astype(dtype),
            rng.uniform(0, 0.1, n_features).astype(dtype))


def run_adam_epoch(X, y, sw, order, batch_size, code, P, M, S_, bstate, t0, lr, lam_w,
                   lam_v, beta1=BETA1, beta2=BETA2, eps=EPS, cnt=None, decoupled=False):
    n_batches = max(1, -(-order.shape[0] // batch_size))
    bl = np.full(n_batches, np.nan)
    bw = np.full(n_batches, np.nan)
    cnt = np.zeros(X.shape[1], dtype=np.int64) if cnt is None else cnt
    t, done = adam_epoch(X.indptr, X.indices, X.data, y, sw, order, batch_size, code,
                         P, M, S_, bstate, t0, lr, beta1, beta2, eps, lam_w, lam_v, cnt,
                         bl, bw, decoupled)
    assert not cnt.any(), "adam_epoch left the cnt scratch non-zero"
    return int(t), int(done), bl[:done], bw[:done]


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
@given(prob=any_kind, idx64=st.booleans())
@SLOW
def test_predict_csr_matches_pairwise(prob, idx64):
    X = prob.X
    out = np.full(X.shape[0], np.nan, dtype=prob.dtype)
    ip, ix, dt = kernel_arrays(X, np.int64 if idx64 else None)
    predict_csr(ip, ix, dt, prob.dtype.type(prob.w0), prob.P, out)
    assert out.dtype == prob.dtype
    ref = naive.predict_pairwise(prob.dense, prob.w0, prob.P)
    scale = yhat_scale(np.abs(prob.dense), prob.w0, prob.P)
    tol = RTOL[prob.dtype] * scale + FLOOR[prob.dtype]
    assert_close(out, ref, tol, "predict_csr vs pairwise")


@given(raw=S.raw_csr(kind="moderate"), data=st.data())
@SLOW
def test_raw_duplicates_and_canonical_predict_like_dense(raw, data):
    """Any raw CSR (unsorted, duplicates, explicit zeros) canonicalised and
    predicted equals the pairwise model on the dense matrix of the raw input."""
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
    predict_csr(X.indptr, X.indices, X.data, dtype.type(0.25), P, out)
    ref = naive.predict_pairwise(raw.dense(), 0.25, P)
    Xabs = naive.csr_to_dense(raw.indptr, raw.indices, np.abs(raw.data), raw.shape[1])
    tol = RTOL[dtype] * yhat_scale(Xabs, 0.25, P) + FLOOR[dtype]
    assert_close(out, ref, tol, "canonical(raw) prediction vs dense(raw)")
    # a scipy matrix built from the raw arrays agrees as well (its own dense view)
    np.testing.assert_allclose(raw.to_scipy().toarray(), raw.dense(),
                               rtol=RTOL[dtype], atol=FLOOR[dtype])


def test_predict_csr_float32_has_no_double_arithmetic():
    """The float32 predict path computes in float32 only (no promotion).

    The kernel's Python source is compiled again without caching or
    parallelism (prange runs as range) so that its LLVM IR can be read."""
    kern = numba.njit(fastmath=FASTMATH)(predict_csr.py_func)
    X = sp.random(6, 5, density=0.5, format="csr", dtype=np.float32, random_state=1)
    P = np.ones((5, 4), np.float32)
    out = np.empty(6, np.float32)
    kern(X.indptr, X.indices, X.data, np.float32(0.5), P, out)
    ir = kern.inspect_llvm(kern.signatures[0])
    assert not re.search(r"fpext float .* to double", ir)
    assert not re.search(r"= f(add|sub|mul|div)( \w+)* double", ir)
    ref = naive.predict_pairwise(X.toarray(), 0.5, P)
    np.testing.assert_allclose(out, ref, rtol=1e-5)


# --------------------------------------------------------------------------
# forward_batch
# --------------------------------------------------------------------------
@given(prob=any_kind, data=st.data())
@SLOW
def test_forward_batch_matches_naive(prob, data):
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
    ip, ix, dd = kernel_arrays(prob.X, np.int64 if idx64 else None)
    # w0 as a float64 scalar: what adam_epoch passes (bstate[0])
    forward_batch(ip, ix, dd, prob.y, prob.sw, rows, prob.loss_code, float(prob.w0),
                  prob.P, yhat, Q, G, L)
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


# --------------------------------------------------------------------------
# transpose_batch
# --------------------------------------------------------------------------
def _check_transpose(indptr, indices, data, n_features, rows):
    total = int(sum(indptr[r + 1] - indptr[r] for r in rows))
    cnt = np.zeros(n_features, dtype=np.int64)
    uniq = np.full(total, -1, dtype=indices.dtype)
    starts = np.full(total + 1, -1, dtype=np.int64)
    ent_row = np.full(total, -1, dtype=np.int64)
    ent_val = np.full(total, np.nan, dtype=data.dtype)
    u = transpose_batch(indptr, indices, data, rows, cnt, uniq, starts, ent_row, ent_val)
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


@given(raw=S.raw_csr(kind="moderate", max_row_nnz=10), data=st.data())
@SLOW
def test_transpose_batch_groups_per_feature(raw, data):
    n = raw.shape[0]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    nb = data.draw(st.integers(0, n))
    rows = rng.permutation(n)[:nb].astype(np.int64)
    # raw input: duplicates give several entries, stored zeros are skipped
    _check_transpose(raw.indptr, raw.indices, raw.data, raw.shape[1], rows)
    # canonical input (what adam_epoch sees)
    X = S.canonical(raw)
    u = _check_transpose(X.indptr, X.indices, X.data, X.shape[1], rows)
    assert u == np.count_nonzero((raw.dense()[rows] != 0).any(axis=0))


def test_transpose_batch_by_hand():
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
    u = transpose_batch(indptr, indices, data, rows, cnt, uniq, starts, er, ev)
    assert u == 2
    assert uniq[:2].tolist() == [1, 2]
    assert starts[:3].tolist() == [0, 2, 4]
    assert er[:4].tolist() == [0, 2, 0, 2]
    assert ev[:4].tolist() == [-2.0, 5.0, 3.0, 1.0]
    assert not cnt.any()


# --------------------------------------------------------------------------
# adam_update (one step, both dtypes)
# --------------------------------------------------------------------------
@given(prob=S.fm_problem(kind="moderate", min_rows=1), data=st.data())
@SLOW
def test_adam_update_matches_naive_step(prob, data):
    """One fused lazy Adam update: moments of touched rows = naive Adam
    moments of the exact batch gradient; P = bias-corrected step from those
    moments; untouched rows (and their moments) bit-for-bit unchanged. With
    decoupled=True (AdamW) the gradient has no L2 term and the step adds
    −lr·λ·p."""
    X, dt, n = prob.X, prob.dtype, prob.X.shape[0]
    rng = np.random.default_rng(prob.seed)
    nb = data.draw(st.integers(1, n))
    rows = rng.permutation(n)[:nb].astype(np.int64)
    t = data.draw(st.integers(1, 40))
    lr = data.draw(st.sampled_from([1e-3, 1e-2, 0.1]))
    lam_w, lam_v = lam_arrays(rng, X.shape[1], dt, zero=data.draw(st.booleans()))
    decoupled = data.draw(st.booleans())
    # the L2 strengths inside the gradient: none with decoupled decay
    glam_w, glam_v = (np.zeros(1), np.zeros(1)) if decoupled else (lam_w, lam_v)
    k = prob.k
    yhat = np.empty(nb, dt)
    Q = np.empty((nb, k), dt)
    G = np.empty(nb, dt)
    L = np.empty(nb)
    forward_batch(X.indptr, X.indices, X.data, prob.y, prob.sw, rows, prob.loss_code,
                  float(prob.w0), prob.P, yhat, Q, G, L)
    sb = prob.sw[rows].copy()
    Xb = prob.dense[rows]
    yb = prob.y[rows].astype(np.float64)
    ref_yhat = naive.predict_pairwise(Xb, prob.w0, prob.P)
    ytol = RTOL[dt] * yhat_scale(np.abs(Xb), prob.w0, prob.P) + FLOOR[dt]
    assume(not near_hinge_kink(prob.loss_code, ref_yhat, yb, ytol))
    # kernel inputs: the transposed batch
    total = int(sum(X.indptr[r + 1] - X.indptr[r] for r in rows))
    cnt = np.zeros(X.shape[1], np.int64)
    uniq = np.empty(total, X.indices.dtype)
    starts = np.empty(total + 1, np.int64)
    er = np.empty(total, np.int64)
    ev = np.empty(total, dt)
    u = transpose_batch(X.indptr, X.indices, X.data, rows, cnt, uniq, starts, er, ev)
    M0 = (rng.normal(0, 0.1, prob.P.shape) * (t > 1)).astype(dt)
    S0 = (rng.uniform(0, 0.01, prob.P.shape) * (t > 1)).astype(dt)
    P, M, S_ = prob.P.copy(), M0.copy(), S0.copy()
    bc1, bc2 = 1.0 - BETA1 ** t, 1.0 - BETA2 ** t
    ssum = float(sb.astype(np.float64).sum())
    adam_update(uniq, u, starts, er, ev, G, sb, Q, 1.0 / ssum, P, M, S_, lr, BETA1, BETA2,
                EPS, bc1, bc2, lam_w, lam_v, decoupled)
    assert (P.dtype, M.dtype, S_.dtype) == (dt, dt, dt)

    _, gP = naive.batch_objective_grad(Xb, yb, sb, prob.w0, prob.P, prob.loss_code,
                                       glam_w, glam_v)
    touched = (Xb != 0).any(axis=0)
    assert sorted(uniq[:u].tolist()) == np.flatnonzero(touched).tolist()
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


# --------------------------------------------------------------------------
# adam_epoch
# --------------------------------------------------------------------------
@given(prob=st.one_of(S.fm_problem(dtype=np.float64, kind="moderate", p_scale=0.3),
                      S.fm_problem(dtype=np.float64, kind="moderate", p_scale=0.3,
                                   zero_weights=True)),
       data=st.data())
@SLOW
def test_adam_epoch_matches_naive_float64(prob, data):
    """Several epochs of several batches (global t carried across calls) equal
    the naive lazy Adam trajectory, float64."""
    X, n = prob.X, prob.X.shape[0]
    rng = np.random.default_rng(prob.seed)
    batch_size = data.draw(st.integers(1, n + 2))
    n_epochs = data.draw(st.integers(1, 3))
    lr = data.draw(st.sampled_from([1e-3, 1e-2, 0.05]))
    t0 = data.draw(st.sampled_from([0, 3]))
    lam_w, lam_v = lam_arrays(rng, X.shape[1], np.float64, zero=data.draw(st.booleans()))
    decoupled = data.draw(st.booleans())
    P = prob.P.copy()
    M = np.zeros_like(P) if t0 == 0 else rng.normal(0, 0.05, P.shape)
    S_ = np.zeros_like(P) if t0 == 0 else rng.uniform(0, 0.01, P.shape)
    bstate = np.array([prob.w0, 0.0, 0.0]) if t0 == 0 else np.array([prob.w0, 0.02, 0.01])
    ref = naive.AdamState(P, M, S_, bstate, t0)
    t = t0
    cnt = np.zeros(X.shape[1], np.int64)
    for _ in range(n_epochs):
        order = rng.permutation(n).astype(np.int64)
        t, done, bl, bw = run_adam_epoch(X, prob.y, prob.sw, order, batch_size,
                                         prob.loss_code, P, M, S_, bstate, t, lr, lam_w,
                                         lam_v, cnt=cnt, decoupled=decoupled)
        rt, rdone, rbl, rbw = naive.adam_epoch(ref, prob.dense, prob.y, prob.sw, order,
                                               batch_size, prob.loss_code, lr, BETA1, BETA2,
                                               EPS, lam_w, lam_v, decoupled)
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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sgd_epoch_chunks_keep_own_w0_and_sum_its_changes(seed):
    """Two chunks over disjoint features (no Hogwild race on P): each chunk is
    sequential SGD from the epoch's start w0, and w0 ends at the start plus
    the sum of the chunks' changes."""
    rng = np.random.default_rng(seed)
    n, p, k = 40, 12, 3
    D = np.zeros((n, p))
    for r in range(n):
        half = 0 if r < n // 2 else p // 2
        cols = rng.choice(p // 2, 3, replace=False) + half
        D[r, cols] = rng.normal(0, 1, 3)
    X = sp.csr_matrix(D)
    y = rng.normal(0, 1, n)
    sw = rng.uniform(0.5, 1.5, n)
    P0 = rng.normal(0, 0.2, (p, 1 + k))
    lam_w, lam_v = lam_arrays(rng, p, np.float64)
    order = np.concatenate([rng.permutation(n // 2), n // 2 + rng.permutation(n // 2)])
    P, bstate, L = P0.copy(), np.array([0.3, 0.0, 0.0]), np.empty(n)
    sgd_epoch(X.indptr, X.indices, X.data, y, sw, order.astype(np.int64), 2, 0, P, bstate,
              0.05, lam_w, lam_v, L)
    Pa, Pb = P0.copy(), P0.copy()
    wa, La = naive.sgd_epoch(D, y, sw, order[:n // 2], 0.3, Pa, 0, 0.05, lam_w, lam_v)
    wb, Lb = naive.sgd_epoch(D, y, sw, order[n // 2:], 0.3, Pb, 0, 0.05, lam_w, lam_v)
    expected = np.vstack([Pa[:p // 2], Pb[p // 2:]])
    np.testing.assert_allclose(P, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(L, np.concatenate([La, Lb]), rtol=1e-10, atol=1e-12)
    assert np.isclose(bstate[0], 0.3 + (wa - 0.3) + (wb - 0.3), rtol=1e-12, atol=1e-12)


@given(prob=S.fm_problem(dtype=np.float32, kind="moderate", p_scale=0.3, min_rows=1),
       data=st.data())
@SLOW
def test_adam_epoch_float32_batch_by_batch(prob, data):
    """float32 adam_epoch, one batch per call with t carried: after every
    batch, moments = naive moments of the exact gradient at the kernel's own
    previous state, w0 and its moments = naive scalar Adam, t increments."""
    X, n = prob.X, prob.X.shape[0]
    rng = np.random.default_rng(prob.seed)
    batch_size = data.draw(st.integers(1, n))
    lr = 0.01
    lam_w, lam_v = lam_arrays(rng, X.shape[1], np.float32)
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
        t, done, bl, bw = run_adam_epoch(X, prob.y, prob.sw, rows, n, prob.loss_code, P,
                                         M, S_, bstate, t, lr, lam_w, lam_v,
                                         decoupled=decoupled)
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
        assert np.isclose(bstate[0], naive.adam_param_step(prevb[0], bstate[1], bstate[2], t,
                                                           lr, BETA1, BETA2, EPS),
                          rtol=1e-12, atol=1e-15)
        assert np.isclose(bw[0], float(sb.astype(np.float64).sum()), rtol=1e-6)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_adamw_decays_touched_rows_where_adam_takes_a_normalised_l2_step(dt):
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
        t, done, bl, _ = run_adam_epoch(X, y, sw, order, 6, 2, P, M, S_, bstate, 0, lr,
                                        lam_w, lam_v, decoupled=decoupled)
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


def test_adam_epoch_skips_nonfinite_batch():
    """A batch whose loss overflows stops the epoch before any update of it."""
    X = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32))
    y = np.array([0.0, 0.0], np.float32)
    sw = np.ones(2, np.float32)
    P = np.array([[0.1, 0.0], [3e38, 0.0]], np.float32)  # row 1: 6e38 overflows float32
    M, S_ = np.zeros_like(P), np.zeros_like(P)
    bstate = np.zeros(3)
    P0 = P.copy()
    lam = np.zeros(2, np.float32)
    t, done, bl, bw = run_adam_epoch(X, y, sw, np.array([0, 1], np.int64), 1, 0, P, M, S_,
                                     bstate, 7, 0.01, lam, lam)
    assert (t, done) == (8, 1)
    assert P[1, 0] == P0[1, 0] and M[1, 0] == 0  # the overflowing batch changed nothing
    assert P[0, 0] != P0[0, 0]                    # the first batch was applied


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
    pairwise ŷ, and the kernel's ŷ has the same differences."""
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


@given(prob=S.fm_problem(dtype=np.float64, kind="moderate", max_rows=6, max_k=4,
                         min_rows=1, loss_codes=(0, 1)), zero_lam=st.booleans())
@settings(SLOW, max_examples=25)
def test_batch_objective_gradient_matches_finite_differences(prob, zero_lam):
    """The exact gradient of adam.py's batch objective — naive's analytic one
    and the kernel's (read from Adam's first moment with β1 = 0) — equals
    central differences of the naive objective."""
    X, n = prob.X, prob.X.shape[0]
    assume(X.shape[1] <= 8)
    rng = np.random.default_rng(prob.seed)
    lam_w, lam_v = lam_arrays(rng, X.shape[1], np.float64, zero=zero_lam)
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
    t, done, _, _ = run_adam_epoch(X, prob.y, prob.sw, order, n, prob.loss_code, P, M, S_,
                                   bstate, 0, 1e-3, lam_w, lam_v, beta1=0.0, beta2=0.5)
    assert (t, done) == (1, 1)
    np.testing.assert_allclose(M, fd, rtol=1e-5, atol=scale, err_msg="kernel dJ/dP")
    assert abs(bstate[1] - fd0) <= 1e-5 * abs(fd0) + scale
    np.testing.assert_allclose(S_, M ** 2 * 0.5, rtol=1e-12, atol=1e-300)


# --------------------------------------------------------------------------
# sgd_epoch
# --------------------------------------------------------------------------
@given(prob=S.fm_problem(dtype=np.float64, kind="moderate", p_scale=0.3), data=st.data())
@SLOW
def test_sgd_epoch_sequential_matches_naive_float64(prob, data):
    X, n = prob.X, prob.X.shape[0]
    rng = np.random.default_rng(prob.seed)
    lr = data.draw(st.sampled_from([1e-3, 1e-2]))
    lam_w, lam_v = lam_arrays(rng, X.shape[1], np.float64, zero=data.draw(st.booleans()))
    P = prob.P.copy()
    Pref = prob.P.astype(np.float64).copy()
    bstate = np.array([prob.w0, 0.0, 0.0])
    w0 = float(prob.w0)
    Ls, Lrefs = [], []
    with np.errstate(all="ignore"):
        for _ in range(2):
            order = rng.permutation(n).astype(np.int64)
            L = np.full(n, np.nan)
            sgd_epoch(X.indptr, X.indices, X.data, prob.y, prob.sw, order, 1,
                      prob.loss_code, P, bstate, lr, lam_w, lam_v, L)
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


@given(prob=S.fm_problem(dtype=np.float32, kind="moderate", p_scale=0.3, min_rows=1),
       data=st.data())
@SLOW
def test_sgd_epoch_float32_sample_by_sample(prob, data):
    """float32 SGD: each per-sample update = naive sgd_step from the kernel's
    own previous state (so rounding does not accumulate)."""
    X, n = prob.X, prob.X.shape[0]
    rng = np.random.default_rng(prob.seed)
    lam_w, lam_v = lam_arrays(rng, X.shape[1], np.float32)
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
        sgd_epoch(X.indptr, X.indices, X.data, prob.y, prob.sw, np.array([r], np.int64), 1,
                  prob.loss_code, P, bstate, lr, lam_w, lam_v, L)
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


# --------------------------------------------------------------------------
# thread-count independence
# --------------------------------------------------------------------------
def _big_problem(seed=0, n=2000, p=300, nnz_row=12, k=8, dtype=np.float32):
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, p + 1)
    pop /= pop.sum()
    cols = np.array([rng.choice(p, nnz_row, replace=False, p=pop) for _ in range(n)])
    vals = rng.uniform(0.2, 1.5, (n, nnz_row))
    X = sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(0, n * nnz_row + 1, nnz_row)),
                      shape=(n, p))
    X = S._canonical_csr(X, np.dtype(dtype), "X")
    w = rng.normal(0, 0.3, p)
    y = X @ w + rng.normal(0, 0.1, n)
    return X, y


@pytest.fixture
def restore_threads():
    old = numba.get_num_threads()
    yield
    numba.set_num_threads(old)


def _adam_run(X, y, sw, P0, orders, batch_size, lam):
    P, M, S_ = P0.copy(), np.zeros_like(P0), np.zeros_like(P0)
    bstate = np.array([float(y.mean()), 0.0, 0.0])
    t = 0
    losses = []
    cnt = np.zeros(X.shape[1], np.int64)
    for order in orders:
        n_batches = -(-order.shape[0] // batch_size)
        bl, bw = np.zeros(n_batches), np.zeros(n_batches)
        t, done = adam_epoch(X.indptr, X.indices, X.data, y, sw, order, batch_size, 0, P, M,
                             S_, bstate, t, 0.01, BETA1, BETA2, EPS, lam, lam, cnt, bl, bw)
        assert done == n_batches
        assert not cnt.any()
        losses.append(bl)
    return P, M, S_, bstate, t, np.concatenate(losses)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
@pytest.mark.parametrize("batch_size", [1500, 64])
def test_adam_epoch_bit_identical_1_vs_2_threads(restore_threads, batch_size):
    """2000 × 300, k = 8, 3 epochs; batches of 1500 rows then 500, or 32 batches of 64
    (each transposed while the previous one updates, with the rows handed out
    to whichever thread asks first): P, M, S, w0 state and batch losses
    identical with 1 and 2 threads."""
    X, y = _big_problem()
    dt = np.float32
    rng = np.random.default_rng(1)
    P0 = rng.normal(0, 0.05, (X.shape[1], 9)).astype(dt)
    lam = np.full(X.shape[1], 1e-3, dt)
    sw = rng.uniform(0.5, 2.0, X.shape[0]).astype(dt)
    orders = [rng.permutation(X.shape[0]).astype(np.int64) for _ in range(3)]
    y = y.astype(dt)
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        results.append(_adam_run(X, y, sw, P0, orders, batch_size, lam))
    ref, other = results
    assert ref[4] == 3 * -(-X.shape[0] // batch_size)
    assert not np.array_equal(ref[0], P0)
    for a, b in zip(ref, other):
        assert np.array_equal(a, b)


_FRESH_COMMON = """
import numpy as np, scipy.sparse as sp
X = sp.random(50, 10, density=0.3, format='csr', dtype=np.float32, random_state=0)
X.indices = X.indices.astype(np.int32); X.indptr = X.indptr.astype(np.int32)
P = np.full((10, 5), 0.1, np.float32); M = np.zeros_like(P); S = np.zeros_like(P)
lam = np.full(10, 1e-3, np.float32)
y = np.ones(50, np.float32); sw = np.ones(50, np.float32)
rows = np.arange(16)
"""
_FRESH_CALLEES = _FRESH_COMMON + """
from fmnumba.cpu import forward_batch, adam_update, transpose_batch
o = (np.empty(16, np.float32), np.empty((16, 4), np.float32), np.empty(16, np.float32),
     np.empty(16))
forward_batch(X.indptr, X.indices, X.data, y, sw, rows, 0, 0.5, P, *o)
uniq = np.empty(200, np.int32); starts = np.empty(201, np.int64)
er = np.empty(200, np.int64); ev = np.empty(200, np.float32)
u = transpose_batch(X.indptr, X.indices, X.data, rows, np.zeros(10, np.int64), uniq,
                    starts, er, ev)
adam_update(uniq, u, starts, er, ev, o[2], sw[:16], o[1], 1 / 16, P, M, S, 0.01, 0.9, 0.999,
            1e-8, 0.1, 0.001, lam, lam)
print('ok')
"""
_FRESH_ADAM = _FRESH_COMMON + """
from fmnumba.cpu import adam_epoch
t, d = adam_epoch(X.indptr, X.indices, X.data, y, sw, np.arange(50), 16, 0, P, M, S,
                  np.zeros(3), 0, 0.01, 0.9, 0.999, 1e-8, lam, lam, np.zeros(10, np.int64),
                  np.zeros(4), np.zeros(4))
assert (t, d) == (4, 4)
print('ok')
"""


def test_adam_epoch_direct_call_in_fresh_process(tmp_path):
    """adam_epoch called directly (as benchmarks and other callers of the
    kernels do) in a fresh interpreter must not crash.

    adam_epoch is compiled with parallel=False but calls parallel kernels.
    Sequence (private NUMBA_CACHE_DIR, so the outcome does not depend on
    the shared cache): process 1 caches the callees, process 2 compiles
    adam_epoch against them, process 3 loads adam_epoch from the cache
    before Numba's thread pool has started -> SIGSEGV (numba/numba#8578).
    The estimators are not affected: they call numba.get_num_threads()
    (which starts the pool) before any kernel.
    """
    import os
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"))
    callees = tmp_path / "callees.py"
    callees.write_text(_FRESH_CALLEES)
    adam = tmp_path / "adam.py"
    adam.write_text(_FRESH_ADAM)
    out = []
    for path in (callees, adam, adam):
        r = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                           env=env, timeout=300)
        out.append((path.name, r.returncode, r.stderr[-1500:]))
    for i, (name, rc, err) in enumerate(out):
        assert rc == 0, f"process {i + 1} ({name}) exit code {rc}: {err}"


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_fmregressor_bit_identical_n_jobs_1_vs_2(restore_threads):
    X, y = _big_problem(seed=3, n=4000)
    P = []
    for n_jobs in (1, 2):
        est = FMRegressor(n_jobs=n_jobs, random_state=0, max_iter=3, batch_size=1500)
        est.fit(X, y)
        P.append(est._state.P.copy())
        P.append(est._state.bias_state.copy())
    assert np.array_equal(P[0], P[2])
    assert np.array_equal(P[1], P[3])
