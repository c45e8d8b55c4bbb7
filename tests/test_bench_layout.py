"""The layout benchmark's kernels (bench/layout_kernels.py) compute what
fmnumba's kernels compute, in every layout: predictions, the parameters and
moments after a lazy-Adam epoch, and the parameters after a serial SGD epoch
(float64, small random CSR with empty rows, duplicates and explicit zeros)."""
import numpy as np
import pytest
import scipy.sparse as sp

from bench import layout_kernels as LK
from fmnumba import cpu
from fmnumba.losses import LOSS_CODES

N_ROWS, N_FEATURES, K = 300, 40, 5
LR, ADAM = 0.01, (0.01, 0.9, 0.999, 1e-8, False)
LAM_W, LAM_V = 1e-3, 2e-3


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    lens = rng.integers(0, 9, N_ROWS)
    lens[:3] = 0  # empty rows
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    indices = rng.integers(0, N_FEATURES, indptr[-1]).astype(np.int32)  # duplicates too
    data = rng.normal(0, 1, indptr[-1])
    data[rng.random(indptr[-1]) < 0.1] = 0.0  # explicit zeros
    X = sp.csr_matrix((data, indices, indptr), shape=(N_ROWS, N_FEATURES))
    assert X.nnz == indptr[-1] and (data == 0).any()
    y = rng.normal(0, 1, N_ROWS)
    P = rng.normal(0, 0.3, (N_FEATURES, 1 + K))
    order = rng.permutation(N_ROWS).astype(np.int64)
    return (indptr, indices, data), y, P, order


def _moments(shape, rng):
    """A nonzero Adam state (M, S >= 0) in [w | V] form."""
    return rng.normal(0, 0.01, shape), rng.random(shape) * 1e-4


def _check_padding(V, layout):
    if layout == "padded":
        assert V.ctypes.data % 64 == 0
        assert V.shape[1] == LK.padded_width(K, V.dtype) and V.shape[1] * 8 % 64 == 0
        assert np.all(V[:, 1 + K:] == 0), "padding columns were written"


def test_predict_matches_fmnumba(problem):
    X, _, P, _ = problem
    ref = np.empty(N_ROWS)
    cpu.predict_csr(X, 0.25, P, ref)
    for layout in LK.LAYOUTS:
        W, V = LK.to_layout(P.copy(), layout)
        out = np.full(N_ROWS, np.nan)
        LK.predict(X, 0.25, W, V, K, out)
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12, err_msg=layout)
        assert np.all(out[:3] == 0.25)  # empty rows: the intercept alone


def test_adam_epoch_matches_fmnumba_in_every_layout(problem):
    X, y, P, order = problem
    rng = np.random.default_rng(1)
    code = LOSS_CODES["squared"]
    M0, S0 = _moments(P.shape, rng)
    Pr, Mr, Sr = P.copy(), M0.copy(), S0.copy()
    icp_ref = np.array([0.1, 0.0, 0.0])
    n_b = -(-N_ROWS // 32)
    bl, bw = np.zeros(n_b), np.zeros(n_b)
    lam = (np.array([LAM_W]), np.array([LAM_V]))
    t_ref, done_ref = cpu.adam_epoch(X, y, np.ones(N_ROWS), order, 32, code, (Pr, Mr, Sr),
                                     icp_ref, 3, ADAM, lam, (bl, bw))
    assert done_ref == n_b and not np.allclose(Pr, P)
    results = {}
    for layout in LK.LAYOUTS:
        PW, PV = LK.to_layout(P.copy(), layout)
        MW, MV = LK.to_layout(M0.copy(), layout)
        SW, SV = LK.to_layout(S0.copy(), layout)
        icp = np.array([0.1, 0.0, 0.0])
        loss = np.zeros(n_b)
        cnt = np.zeros(N_FEATURES, dtype=np.int64)
        t, done = LK.adam_epoch(X, y, order, 32, code, (PW, PV, MW, MV, SW, SV), K, icp, 3, ADAM,
                             (LAM_W, LAM_V), loss, cnt)
        assert (t, done) == (t_ref, done_ref) and not cnt.any()
        for V in (PV, MV, SV):
            _check_padding(V, layout)
        got = [LK.from_layout(W, V, layout, K) for W, V in ((PW, PV), (MW, MV), (SW, SV))]
        for name, a, b in zip("PMS", got, (Pr, Mr, Sr)):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10,
                                       err_msg=f"{layout} {name} vs fmnumba")
        np.testing.assert_allclose(loss, bl, rtol=1e-9)
        np.testing.assert_allclose(icp, icp_ref, rtol=1e-9, atol=1e-12)
        results[layout] = got
    for layout in ("split", "padded"):
        for a, b in zip(results[layout], results["wv"]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=layout)


def test_serial_sgd_epoch_matches_fmnumba_in_every_layout(problem):
    X, y, P, order = problem
    code = LOSS_CODES["squared"]
    Pr = P.copy()
    icp_ref = np.array([0.1, 0.0, 0.0])
    L_ref = np.empty(N_ROWS)
    cpu.sgd_epoch(X, y, np.ones(N_ROWS), order, 1, code, Pr, icp_ref, LR,
                  (np.array([LAM_W]), np.array([LAM_V])), L_ref)
    assert not np.allclose(Pr, P)
    results = {}
    for layout in LK.LAYOUTS:
        W, V = LK.to_layout(P.copy(), layout)
        icp = np.array([0.1, 0.0, 0.0])
        L = np.empty(N_ROWS)
        LK.sgd_epoch(X, y, order, 1, code, W, V, K, icp, LR, (LAM_W, LAM_V), L)
        _check_padding(V, layout)
        got = LK.from_layout(W, V, layout, K)
        np.testing.assert_allclose(got, Pr, rtol=1e-9, atol=1e-12, err_msg=layout)
        np.testing.assert_allclose(L, L_ref, rtol=1e-9, atol=1e-12, err_msg=layout)
        np.testing.assert_allclose(icp, icp_ref, rtol=1e-12, err_msg=layout)
        results[layout] = got
    for layout in ("split", "padded"):
        np.testing.assert_allclose(results[layout], results["wv"], rtol=1e-12, atol=1e-14)


def test_layout_helpers():
    P = np.arange(6 * (1 + K), dtype=np.float32).reshape(6, 1 + K)
    for layout in LK.LAYOUTS:
        W, V = LK.to_layout(P, layout)
        assert np.array_equal(LK.from_layout(W, V, layout, K), P)
    assert LK.padded_width(4, np.float32) == 16 and LK.padded_width(15, np.float32) == 16
    assert LK.padded_width(16, np.float32) == 32 and LK.padded_width(64, np.float32) == 80
    assert LK.bytes_per_feature("wv", 8, np.float32) == 36
    assert LK.bytes_per_feature("padded", 8, np.float32) == 64
    with pytest.raises(ValueError, match="layout"):
        LK.to_layout(P, "rows")
