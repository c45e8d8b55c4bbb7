"""Machinery of fmnumba.gpu alone: lane groups wider and narrower than a
row, run-to-run determinism without float atomics, the device residency
cache and session(), backend selection, and the estimators on device="cuda".
What the kernels compute is checked against tests/naive.py for every
backend in test_kernels.py. Under Numba's CUDA simulator by default
(conftest.py; FMNUMBA_REAL_GPU=1 runs them on a GPU), at small sizes: the
simulator runs every GPU thread as a Python thread.
"""
import numpy as np
import pytest
import scipy.sparse as sp

from fmnumba import backend

if not backend.cuda_available():
    pytest.skip("numba-cuda (simulator or GPU) is not installed: pip install '.[test]'",
                allow_module_level=True)

import fmnumba.cpu as CPU  # noqa: E402
import fmnumba.gpu as GPU  # noqa: E402
from fmnumba.gpu._device import TPB, lanes_for  # noqa: E402

try:
    from . import naive
except ImportError:
    import naive


def make_csr(n, p, density, dtype, seed, zeros=True):
    rng = np.random.default_rng(seed)
    X = sp.random(n, p, density=density, format="csr", random_state=rng, dtype=np.float64)
    X.data = rng.normal(0, 1, X.nnz)
    if zeros and X.nnz > 2:
        X.data[::7] = 0.0           # explicit zeros stay stored
    if n > 3:                       # an empty row
        X = sp.csr_matrix(sp.vstack([X[:2], sp.csr_matrix((1, p)), X[3:]]))
    X.sort_indices()
    return sp.csr_matrix((X.data.astype(dtype), X.indices.astype(np.int32),
                          X.indptr.astype(np.int32)), shape=X.shape)


def csr(X):
    return X.indptr, X.indices, X.data


def params(p, k, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.3, (p, 1 + k)).astype(dtype)


def adam_args(X, dtype, seed):
    rng = np.random.default_rng(seed)
    n, p = X.shape
    y = rng.normal(size=n).astype(dtype)
    sw = rng.uniform(0.5, 2.0, n).astype(dtype)
    l2 = (rng.uniform(0, 0.05, p).astype(dtype), rng.uniform(0, 0.05, p).astype(dtype))
    return y, sw, l2, rng.permutation(n).astype(np.int64)


def run_adam(X, y, sw, order, bs, P0, l2, lr=0.02):
    P, M, S = P0.copy(), np.zeros_like(P0), np.zeros_like(P0)
    b = np.array([0.1, 0.0, 0.0])
    nbat = -(-order.shape[0] // bs)
    bl, bw = np.zeros(nbat), np.zeros(nbat)
    t, done = GPU.adam_epoch(csr(X), y, sw, order, bs, 0, (P, M, S), b, 0,
                             (lr, 0.9, 0.999, 1e-8, False), l2, (bl, bw))
    return P, M, S, b, bl, (t, done)


def test_lanes_are_powers_of_two_up_to_a_warp():
    for k in range(0, 200):
        lanes = lanes_for(k)
        assert lanes & (lanes - 1) == 0 and 1 <= lanes <= min(32, TPB)
        assert lanes <= k + 1 and (lanes == 32 or 2 * lanes > k + 1)


@pytest.mark.parametrize("k", [1, 2, 7, 40])
def test_predict_with_rows_narrower_and_wider_than_the_lanes(k):
    """k + 1 columns over lanes_for(k) lanes: one column per lane, several
    (k = 40: 41 columns over 32 lanes), and 2 lanes for 3 columns."""
    X = make_csr(30, 12, 0.3, np.float64, seed=k)
    P = params(12, k, np.float64, seed=k)
    out = np.empty(30)
    GPU.predict_csr(csr(X), 0.7, P, out)
    np.testing.assert_allclose(out, naive.predict_pairwise(X.toarray(), 0.7, P),
                               rtol=1e-10, atol=1e-10)


def test_adam_epoch_is_bit_identical_from_run_to_run():
    """Atomics decide where a feature's segment lives, never the order of
    its sums: two runs give the same bits (few features: long, contended
    segments)."""
    X = make_csr(100, 12, 0.4, np.float32, seed=9)
    P0 = params(12, 8, np.float32, seed=9)
    y, sw, l2, order = adam_args(X, np.float32, 9)
    a = run_adam(X, y, sw, order, 100, P0, l2)
    b = run_adam(X, y, sw, order, 100, P0, l2)
    for u, v in zip(a[:5], b[:5]):
        np.testing.assert_array_equal(u, v)
    assert a[5] == b[5] == (1, 1)


def test_session_keeps_parameters_resident():
    X = make_csr(20, 8, 0.4, np.float64, seed=1)
    P = params(8, 2, np.float64)
    expected = naive.predict_pairwise(X.toarray(), 0.0, P)
    out = np.empty(20)
    with GPU.session():
        GPU.predict_csr(csr(X), 0.0, P, out)
        P[...] = 0.0                   # host write inside a session is not seen...
        GPU.predict_csr(csr(X), 0.0, P, out)
        np.testing.assert_allclose(out, expected, rtol=1e-10)
        GPU.invalidate(P)              # ...until invalidated
        GPU.predict_csr(csr(X), 0.0, P, out)
        np.testing.assert_array_equal(out, 0.0)
    P[...] = 1.0                       # outside a session every call uploads
    GPU.predict_csr(csr(X), 0.0, P, out)
    np.testing.assert_allclose(out, naive.predict_pairwise(X.toarray(), 0.0, P), rtol=1e-10)


def test_data_cache_sees_in_place_edit():
    X = make_csr(20, 8, 0.4, np.float64, seed=2, zeros=False)
    P = params(8, 2, np.float64)
    out = np.empty(20)
    GPU.predict_csr(csr(X), 0.0, P, out)
    X.data *= 2.0
    GPU.predict_csr(csr(X), 0.0, P, out)
    np.testing.assert_allclose(out, naive.predict_pairwise(X.toarray(), 0.0, P), rtol=1e-10)


def test_backends_expose_the_same_functions():
    names = set(CPU.__all__) - {"session"}
    assert names <= set(GPU.__all__)
    for name in names | {"session"}:
        assert callable(getattr(CPU, name)) and callable(getattr(GPU, name))
    with CPU.session(), GPU.session():
        pass


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
    y = naive.predict_identity(X.toarray(), 1.0, params(30, 2, np.float64, seed=8))
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
