"""CPU-only machinery of fmnumba.cpu: thread-count independence, the
float32 path's LLVM IR, Hogwild chunks' private intercepts and loading a
cached kernel in a fresh process. What every backend computes is checked
against tests/naive.py in test_kernels.py."""
import re

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from fmnumba import FMRegressor
from fmnumba._config import FASTMATH
from fmnumba.cpu import adam_epoch, predict_csr, sgd_epoch
from fmnumba.cpu.predict import predict_parallel

try:
    from . import naive
    from . import strategies as S
except ImportError:
    import naive
    import strategies as S

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


@pytest.fixture(autouse=True, scope="module")
def _launch_numba_threads():
    """Start Numba's thread pool before any kernel runs (see
    test_adam_epoch_direct_call_in_fresh_process)."""
    numba.get_num_threads()


def test_predict_csr_float32_has_no_double_arithmetic():
    """The float32 predict path computes in float32 only (no promotion).

    The kernel's Python source is compiled again without caching or
    parallelism (prange runs as range) so that its LLVM IR can be read."""
    kern = numba.njit(fastmath=FASTMATH)(predict_parallel.py_func)
    X = sp.random(6, 5, density=0.5, format="csr", dtype=np.float32, random_state=1)
    P = np.ones((5, 4), np.float32)
    out = np.empty(6, np.float32)
    kern((X.indptr, X.indices, X.data), np.float32(0.5), P, out)
    ir = kern.inspect_llvm(kern.signatures[0])
    assert not re.search(r"fpext float .* to double", ir)
    assert not re.search(r"= f(add|sub|mul|div)( \w+)* double", ir)
    ref = naive.predict_pairwise(X.toarray(), 0.5, P)
    np.testing.assert_allclose(out, ref, rtol=1e-5)


# --------------------------------------------------------------------------


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
    lam_w, lam_v = S.lam_arrays(rng, p, np.float64)
    order = np.concatenate([rng.permutation(n // 2), n // 2 + rng.permutation(n // 2)])
    P, bstate, L = P0.copy(), np.array([0.3, 0.0, 0.0]), np.empty(n)
    sgd_epoch((X.indptr, X.indices, X.data), y, sw, order.astype(np.int64), 2, 0, P, bstate,
              0.05, (lam_w, lam_v), L)
    Pa, Pb = P0.copy(), P0.copy()
    wa, La = naive.sgd_epoch(D, y, sw, order[:n // 2], 0.3, Pa, 0, 0.05, lam_w, lam_v)
    wb, Lb = naive.sgd_epoch(D, y, sw, order[n // 2:], 0.3, Pb, 0, 0.05, lam_w, lam_v)
    expected = np.vstack([Pa[:p // 2], Pb[p // 2:]])
    np.testing.assert_allclose(P, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(L, np.concatenate([La, Lb]), rtol=1e-10, atol=1e-12)
    assert np.isclose(bstate[0], 0.3 + (wa - 0.3) + (wb - 0.3), rtol=1e-12, atol=1e-12)


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
    for order in orders:
        n_batches = -(-order.shape[0] // batch_size)
        bl, bw = np.zeros(n_batches), np.zeros(n_batches)
        t, done = adam_epoch((X.indptr, X.indices, X.data), y, sw, order, batch_size, 0,
                             (P, M, S_), bstate, t, (0.01, BETA1, BETA2, EPS, False),
                             (lam, lam), (bl, bw))
        assert done == n_batches
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
Xt = (X.indptr, X.indices, X.data)
forward_batch(Xt, y, sw, rows, 0, 0.5, P, o)
T = (np.empty(200, np.int32), np.empty(201, np.int64), np.empty(200, np.int64),
     np.empty(200, np.float32))
u = transpose_batch(Xt, rows, np.zeros(10, np.int64), T)
adam_update(T, u, (o[2], sw[:16], o[1]), 1 / 16, (P, M, S), (0.01, 0.9, 0.999, 1e-8, False),
            1, (lam, lam))
print('ok')
"""
_FRESH_ADAM = _FRESH_COMMON + """
from fmnumba.cpu import adam_epoch
t, d = adam_epoch((X.indptr, X.indices, X.data), y, sw, np.arange(50), 16, 0, (P, M, S),
                  np.zeros(3), 0, (0.01, 0.9, 0.999, 1e-8, False), (lam, lam),
                  (np.zeros(4), np.zeros(4)))
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
