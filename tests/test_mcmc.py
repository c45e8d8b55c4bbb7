"""The Gibbs sampler (fmnumba/mcmc.py, fmnumba/cpu/mcmc.py, cpu/_columns.py)
and its counter-based generator (cpu/_rng.py), against tests/naive.py and
closed-form distributions."""
import math

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from fmnumba import mcmc as M
from fmnumba.backend import get_kernels
from fmnumba.column_view import build_column_view
from fmnumba.cpu import mcmc as K
from fmnumba.cpu._columns import N_CHUNKS
from fmnumba.cpu._rng import gamma, normal, normal_above, philox4x32, seed_key, uniform
from fmnumba.datasets import make_ratings

try:
    from . import naive
    from . import strategies as S
except ImportError:
    import naive
    import strategies as S

DTYPES = (np.float32, np.float64)


# --------------------------------------------------------------------------
# counter-based generator
# --------------------------------------------------------------------------
def test_philox_known_answers():
    """Philox4x32-10 known-answer vectors of the Random123 distribution."""
    out = philox4x32(0, 0, 0, 0, 0, 0)
    assert [int(v) for v in out] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    m = 0xFFFFFFFF
    out = philox4x32(m, m, m, m, m, m)
    assert [int(v) for v in out] == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]


@njit
def _fill(kind, key, n, a, b):
    out = np.empty(n)
    for i in range(n):
        if kind == 0:
            out[i] = uniform(key, 7, 1, i, 0)
        elif kind == 1:
            out[i] = normal(key, 7, 2, i, 0)
        elif kind == 2:
            out[i] = gamma(key, 7, 3, i, a, b)
        else:
            out[i] = normal_above(key, 7, 4, i, a)
    return out


N_DRAWS = 200_000


def _moments_ok(x, mean, var, z=5.0):
    """Sample mean and variance within z standard errors of the truth."""
    n = x.shape[0]
    se_mean = math.sqrt(var / n)
    m4 = np.mean((x - mean) ** 4)
    se_var = math.sqrt(max(m4 - var * var, 1e-300) / n)
    assert abs(x.mean() - mean) < z * se_mean, (x.mean(), mean)
    assert abs(x.var() - var) < z * se_var, (x.var(), var)


def test_uniform_and_normal_moments():
    key = seed_key(12345)
    u = _fill(0, key, N_DRAWS, 0.0, 0.0)
    assert u.min() > 0 and u.max() < 1
    _moments_ok(u, 0.5, 1 / 12)
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 0.97 * N_DRAWS / 10
    z = _fill(1, key, N_DRAWS, 0.0, 0.0)
    _moments_ok(z, 0.0, 1.0)
    assert abs(np.mean(z ** 3)) < 5 * math.sqrt(15 / N_DRAWS)          # skewness 0
    assert abs(np.mean(z ** 4) - 3) < 5 * math.sqrt(96 / N_DRAWS)      # kurtosis 3
    # neighbouring counters are uncorrelated
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / math.sqrt(N_DRAWS)


def test_draws_depend_on_every_counter_word_and_the_key():
    k1, k2 = seed_key(1), seed_key(2)
    base = normal(k1, 1, 2, 3, 4)
    for other in (normal(k2, 1, 2, 3, 4), normal(k1, 0, 2, 3, 4), normal(k1, 1, 0, 3, 4),
                  normal(k1, 1, 2, 0, 4), normal(k1, 1, 2, 3, 0)):
        assert other != base
    assert normal(k1, 1, 2, 3, 4) == base  # stateless


@pytest.mark.parametrize("shape,rate", [(0.3, 1.0), (1.0, 2.0), (3.7, 0.5), (250.0, 40.0)])
def test_gamma_moments(shape, rate):
    x = _fill(2, seed_key(99), N_DRAWS, shape, rate)
    assert x.min() > 0
    _moments_ok(x, shape / rate, shape / rate ** 2)


@pytest.mark.parametrize("a", [-3.0, -0.5, -1e-9, 0.0, 0.4, 1.5, 6.0])
def test_normal_above_moments(a):
    x = _fill(3, seed_key(5), N_DRAWS, a, 0.0)
    assert x.min() > a
    # x − a is N(−a, 1) truncated to (0, ∞)
    mean, var = naive.truncated_normal_moments(-a, True)
    _moments_ok(x, mean + a, var)


# --------------------------------------------------------------------------
# probit latent targets
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [-3.0, -0.5, 0.0, 1.2, 4.0])
def test_probit_latent_draws_match_truncated_normal(m, dtype):
    """t_r ~ N(ŷ_r, 1) truncated to y_r's side, ŷ_r = w0 + w_0 x_r0."""
    n = 40_000
    X = sp.csr_matrix((np.full(n, 0.5, dtype), np.zeros(n, np.int32),
                       np.arange(n + 1, dtype=np.int32)), shape=(n, 1))
    P = np.array([[2.0 * (m - 0.25), 0.1]], dtype=dtype)  # x·w = m − 0.25
    ysign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0).astype(dtype)
    target = np.zeros(n, dtype)
    e = np.empty(n, dtype)
    Q = np.empty((n, 1), dtype)
    sums = np.zeros((N_CHUNKS, 4))
    K.refresh_rows(X.indptr, X.indices, X.data, P, dtype(0.25), target, ysign, True,
                   seed_key(3), 0, K.TAG_Z, e, Q, np.ones(n, dtype), sums)
    yhat = dtype(0.25) + P[0, 0] * dtype(0.5)  # the interaction of one feature is 0
    for positive, rows in ((True, target[0::2]), (False, target[1::2])):
        assert (rows > 0).all() if positive else (rows < 0).all()
        mean, var = naive.truncated_normal_moments(float(yhat), positive)
        _moments_ok(rows.astype(np.float64), mean, var)
    np.testing.assert_allclose(e, target - yhat, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------
# one sweep against the dense reference
# --------------------------------------------------------------------------
def _state(P, w0, alpha, mu_w, lam_w, mu_v, lam_v, seed):
    return M.ChainState(P=P.copy(), w0=float(w0), alpha=alpha, mu_w=mu_w.copy(),
                        lam_w=lam_w.copy(), mu_v=mu_v.copy(), lam_v=lam_v.copy(), seed=seed)



@given(prob=S.squared_loss_problems(max_rows=12, max_k=4), data=st.data())
@settings(max_examples=40)
def test_gibbs_sweep_matches_dense_reference(prob, data):
    """A sweep with fixed hyperparameters equals naive.gibbs_sweep fed the
    same standard-normal draws (keyed by sweep, tag and feature)."""
    p, k = prob.X.shape[1], prob.k
    if data.draw(st.booleans()):  # the one-hot / unit-weight fast path
        S.make_binary(prob)
    n_groups = data.draw(st.integers(1, 3))
    groups = np.array(data.draw(st.lists(st.integers(0, n_groups - 1), min_size=p, max_size=p)))
    rng = np.random.default_rng(prob.seed)
    alpha = float(rng.uniform(0.5, 3))
    mu_w, lam_w = rng.normal(0, 0.3, n_groups), rng.uniform(0.5, 5, n_groups)
    mu_v, lam_v = rng.normal(0, 0.3, (k, n_groups)), rng.uniform(0.5, 5, (k, n_groups))
    lam0 = 0.7
    seed = int(rng.integers(0, 2**63))
    state = _state(prob.P, prob.dtype.type(prob.w0), alpha, mu_w, lam_w, mu_v, lam_v, seed)
    view = M.run_chain(prob.X, prob.y, prob.sw, state, max_iter=1, n_burnin=0, n_kept=1,
                       groups=groups, n_groups=n_groups, hyper=M.Hyper(lam0=lam0),
                       fixed_hyper=True)
    key = seed_key(seed)

    def draw(c, j):
        if c < 0:
            return normal(key, 0, K.TAG_W0, 0, 0)
        return normal(key, 0, K.TAG_W if c == 0 else K.TAG_V + c - 1, j, 0)

    w0, P = naive.gibbs_sweep(prob.dense, prob.y, prob.sw, float(prob.dtype.type(prob.w0)),
                              prob.P, view.cols, alpha, lam0, mu_w, lam_w, mu_v, lam_v,
                              groups, draw)
    tol = 1e-8 if prob.dtype == np.float64 else 2e-3
    np.testing.assert_allclose(state.w0, w0, rtol=tol, atol=tol)
    np.testing.assert_allclose(state.P, P, rtol=tol, atol=tol)
    np.testing.assert_array_equal(state.samples_P[0], state.P)


def test_group_hyperparameters_follow_normal_gamma_conditionals():
    """draw_group_hyper: λ | μ, θ is Gamma and μ | λ, θ is Normal, per group."""
    rng = np.random.default_rng(0)
    P = rng.normal(0.4, 0.7, (30, 2))
    gid = np.array([0] * 20 + [1] * 10, dtype=np.int32)
    mu_fix = np.array([0.1, -0.3])
    n = 20_000
    lams, mus = np.empty((n, 2)), np.empty((n, 2))
    key = seed_key(8)
    for i in range(n):
        mu, lam = mu_fix.copy(), np.ones(2)
        K.draw_group_hyper(P, 1, gid, 2, mu, lam, key, i, K.TAG_HYPER_V, 0, 0.0, 1.0, 0.5, 0.5,
                           np.zeros(2), np.zeros(2))
        lams[i], mus[i] = lam, mu
    for g in range(2):
        theta = P[gid == g, 1]
        shape, rate, m, c = naive.normal_gamma_conditionals(theta, mu_fix[g], 0.0, 1.0, 0.5, 0.5)
        _moments_ok(lams[:, g], shape / rate, shape / rate ** 2)
        # μ | λ: standardised draws are N(0, 1)
        zs = (mus[:, g] - m) * np.sqrt(c * lams[:, g])
        _moments_ok(zs, 0.0, 1.0)


# --------------------------------------------------------------------------
# k = 0: the sampler's posterior is the closed-form Bayesian linear regression
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_posterior_matches_closed_form(dtype):
    rng = np.random.default_rng(1)
    n, p = 40, 3
    Xd = rng.normal(0, 1, (n, p))
    Xd[rng.random((n, p)) < 0.2] = 0.0
    y = 0.5 + Xd @ np.array([1.0, -2.0, 0.5]) + rng.normal(0, 0.7, n)
    sw = rng.uniform(0.5, 2.0, n)
    alpha, lam0 = 2.0, 0.5
    mu_w, lam_w = np.array([0.3]), np.array([1.5])
    X = sp.csr_matrix(Xd.astype(dtype))
    state = _state(np.zeros((p, 1), dtype), 0.0, alpha, mu_w, lam_w, np.zeros((0, 1)),
                   np.ones((0, 1)), seed=2024)
    n_iter, burn = 30_000, 200
    M.run_chain(X, y, sw, state, max_iter=n_iter, n_burnin=burn, n_kept=n_iter - burn,
                hyper=M.Hyper(lam0=lam0), fixed_hyper=True)
    draws = np.column_stack([state.samples_w0, state.samples_P[:, :, 0]])
    mean, cov = naive.blr_posterior(Xd.astype(dtype), y, sw, alpha, lam0,
                                    np.full(p, mu_w[0]), np.full(p, lam_w[0]))
    # Monte-Carlo error of the mean from batch means (the draws are autocorrelated)
    batches = draws.reshape(50, -1, p + 1).mean(axis=1)
    se = batches.std(axis=0, ddof=1) / np.sqrt(50)
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 5 * se + 1e-6), (draws.mean(0), mean, se)
    sd = np.sqrt(np.diag(cov))
    emp = np.cov(draws.T)
    np.testing.assert_allclose(emp / np.outer(sd, sd), cov / np.outer(sd, sd), atol=0.08)


# --------------------------------------------------------------------------
# whole fits
# --------------------------------------------------------------------------
def _ratings(n=60_000, users=300, items=200, noise=0.5, seed=0):
    d = make_ratings(n, users, items, n_context=(), n_factors=4, noise=noise, random_state=seed)
    Xtr, Xte, ytr, yte = d.split()
    return sp.csr_matrix(Xtr), sp.csr_matrix(Xte), ytr, yte, d.noise


def _chain(X, y, k, dtype, seed, n_iter=100, n_burnin=20, n_kept=40, probit=False):
    init_w0 = 0.0 if probit else float(np.mean(y))
    state = M.ChainState.init(X.shape[1], k, 1, dtype, 0.1, init_w0,
                              np.random.default_rng(seed), seed)
    M.run_chain(X, y, np.ones(X.shape[0]), state, max_iter=n_iter, n_burnin=n_burnin,
                n_kept=n_kept, probit=probit)
    return state


@pytest.mark.parametrize("dtype", DTYPES)
def test_recovers_planted_model(dtype):
    """Test RMSE within 5% of the noise floor on planted one-hot ratings."""
    Xtr, Xte, ytr, yte, noise = _ratings()
    state = _chain(Xtr, ytr, 4, dtype, 0, n_iter=150, n_burnin=30, n_kept=60)
    mean, var = M.predict_samples(get_kernels("cpu"), Xte, state)
    rmse = float(np.sqrt(np.mean((mean - yte) ** 2)))
    assert rmse < 1.05 * noise, rmse
    # the posterior predictive std is about the noise level (and includes it)
    assert 0.95 * noise < np.sqrt(var).mean() < 1.15 * noise
    assert np.all(np.sqrt(var) >= np.sqrt(np.mean(1 / state.samples_alpha)) - 1e-12)


def test_predict_samples_matches_dense_reference():
    Xtr, Xte, ytr, yte, _ = _ratings(n=2000, users=30, items=20)
    state = _chain(Xtr, ytr, 3, np.float64, 1, n_iter=12, n_burnin=2, n_kept=5)
    Xd = Xte[:50].toarray()
    preds = np.array([naive.predict_identity(Xd, w0, P)
                      for w0, P in zip(state.samples_w0, state.samples_P)])
    mean, var = M.predict_samples(get_kernels("cpu"), Xte[:50], state)
    np.testing.assert_allclose(mean, preds.mean(0), rtol=1e-10)
    np.testing.assert_allclose(var, preds.var(0) + np.mean(1 / state.samples_alpha), rtol=1e-8)
    yc = np.where(ytr > np.median(ytr), 1.0, -1.0)
    state = _chain(Xtr, yc, 3, np.float64, 1, n_iter=12, n_burnin=2, n_kept=5, probit=True)
    from scipy.special import ndtr
    preds = np.array([ndtr(naive.predict_identity(Xd, w0, P))
                      for w0, P in zip(state.samples_w0, state.samples_P)])
    proba, none = M.predict_samples(get_kernels("cpu"), Xte[:50], state, probit=True)
    assert none is None
    np.testing.assert_allclose(proba, preds.mean(0), rtol=1e-10)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
@pytest.mark.parametrize("probit", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bit_identical_at_any_thread_count(dtype, probit):
    Xtr, _, ytr, _, _ = _ratings(n=20_000)
    assert build_column_view(Xtr, dtype).parallel_fraction > 0.9  # users, items in parallel
    y = np.where(ytr > np.median(ytr), 1.0, -1.0) if probit else ytr
    old = numba.get_num_threads()
    try:
        runs = []
        for n_threads in (1, 2):
            numba.set_num_threads(n_threads)
            runs.append(_chain(Xtr, y, 4, dtype, 7, n_iter=8, n_burnin=2, n_kept=3,
                               probit=probit))
    finally:
        numba.set_num_threads(old)
    a, b = runs
    assert np.array_equal(a.samples_P, b.samples_P)
    assert np.array_equal(a.samples_w0, b.samples_w0)
    assert np.array_equal(a.lam_v, b.lam_v) and a.alpha == b.alpha


def test_continuing_a_chain_equals_one_long_run():
    """Split where the long run rebuilds its caches anyway, a continued chain
    is the same chain bit for bit."""
    Xtr, _, ytr, _, _ = _ratings(n=5000, users=50, items=40)
    n = 2 * M.REFRESH_EVERY
    a = _chain(Xtr, ytr, 2, np.float64, 3, n_iter=n, n_burnin=n - 1, n_kept=1)
    b = M.ChainState.init(Xtr.shape[1], 2, 1, np.float64, 0.1, float(np.mean(ytr)),
                          np.random.default_rng(3), 3)
    sw = np.ones(Xtr.shape[0])
    view = M.run_chain(Xtr, ytr, sw, b, max_iter=M.REFRESH_EVERY, n_burnin=0, n_kept=1)
    M.run_chain(Xtr, ytr, sw, b, max_iter=M.REFRESH_EVERY, n_burnin=0, n_kept=1, view=view)
    assert b.sweeps == n
    assert np.array_equal(a.P, b.P) and a.w0 == b.w0
    assert np.array_equal(a.samples_P, b.samples_P)


def test_kept_sweeps_schedule_and_memory_check(monkeypatch):
    np.testing.assert_array_equal(M.kept_sweeps(10, 4, 3), [5, 7, 9])
    np.testing.assert_array_equal(M.kept_sweeps(10, 4, 6), [4, 5, 6, 7, 8, 9])
    assert M.kept_sweeps(10, 4, 0).shape == (0,)
    assert M.samples_nbytes(100, 1000, 8, np.float32) == 100 * 1000 * 9 * 4
    monkeypatch.setattr(M, "_physical_memory", lambda: 2 * 100 * 1000 * 9 * 4 - 1)
    with pytest.raises(MemoryError, match="n_kept_samples=100"):
        M.check_samples_fit(100, 1000, 8, np.float32)
    M.check_samples_fit(99, 1000, 8, np.float32)


def test_history_records_each_samples_training_loss():
    from scipy.special import log_ndtr
    Xtr, _, ytr, _, _ = _ratings(n=3000, users=30, items=20)
    yc = np.where(ytr > np.median(ytr), 1.0, -1.0)
    for probit, y in ((False, ytr), (True, yc)):
        seen = []

        def keep(t, st, e, target):
            seen.append((st.P.copy(), st.w0))

        state = M.ChainState.init(Xtr.shape[1], 2, 1, np.float64, 0.1, 0.0,
                                  np.random.default_rng(0), 0)
        sw = np.random.default_rng(1).uniform(0.5, 2, Xtr.shape[0])
        hist = {"train_loss": []}
        M.run_chain(Xtr, y, sw, state, max_iter=3, n_burnin=0, n_kept=1, probit=probit,
                    callback=keep, history=hist)
        Xd = Xtr.toarray()
        for (P, w0), loss in zip(seen, hist["train_loss"]):
            yhat = naive.predict_identity(Xd, w0, P)
            ref = (-np.dot(sw, log_ndtr(y * yhat)) if probit
                   else 0.5 * np.dot(sw, (y - yhat) ** 2)) / sw.sum()
            np.testing.assert_allclose(loss, ref, rtol=1e-7)


# --------------------------------------------------------------------------
# the estimators with solver="mcmc"
# --------------------------------------------------------------------------
from fmnumba import FMClassifier, FMRegressor, load  # noqa: E402
from fmnumba.training import DivergenceError  # noqa: E402


def _clicks(n=3000, seed=0):
    Xtr, Xte, ytr, _, _ = _ratings(n=n, users=30, items=20, seed=seed)
    return Xtr, Xte, np.where(ytr > np.median(ytr), "yes", "no")


def test_estimators_predict_by_averaging_the_kept_samples():
    Xtr, Xte, ytr, _, _ = _ratings(n=3000, users=30, items=20)
    m = FMRegressor(n_factors=3, solver="mcmc", max_iter=12, n_burnin=2, n_kept_samples=4,
                    random_state=0, dtype=np.float64).fit(Xtr, ytr)
    assert m.n_iter_ == 12 and len(m.history_["train_loss"]) == 12
    ch = m._chain
    assert ch.samples_P.shape == (4, Xtr.shape[1], 4)
    np.testing.assert_array_equal(ch.samples_P[-1], m._state.P)  # coef_: the last sample
    preds = np.array([naive.predict_identity(Xte.toarray(), w0, P)
                      for w0, P in zip(ch.samples_w0, ch.samples_P)])
    mean, std = m.predict(Xte, return_std=True)
    np.testing.assert_allclose(m.predict(Xte), preds.mean(0), rtol=1e-10)
    np.testing.assert_allclose(std ** 2, preds.var(0) + np.mean(1 / ch.samples_alpha),
                               rtol=1e-8)
    Xc, Xce, yc = _clicks()
    c = FMClassifier(n_factors=3, solver="mcmc", max_iter=12, n_burnin=2, n_kept_samples=4,
                     random_state=0, dtype=np.float64).fit(Xc, yc)
    from scipy.special import ndtr
    ch = c._chain
    proba = np.mean([ndtr(naive.predict_identity(Xce.toarray(), w0, P))
                     for w0, P in zip(ch.samples_w0, ch.samples_P)], axis=0)
    np.testing.assert_allclose(c.predict_proba(Xce)[:, 1], proba, rtol=1e-10)
    np.testing.assert_array_equal(c.predict(Xce), np.where(proba > 0.5, "yes", "no"))
    assert np.all((c.decision_function(Xce) > 0) == (proba > 0.5))
    np.testing.assert_allclose(np.exp(c.predict_log_proba(Xce)), c.predict_proba(Xce))


def test_return_std_needs_the_sampler():
    Xtr, Xte, ytr, _, _ = _ratings(n=500, users=10, items=10)
    m = FMRegressor(max_iter=1).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="return_std=True needs a model fitted with "
                                         "solver='mcmc'"):
        m.predict(Xte, return_std=True)


def test_max_iter_none_means_200_sweeps_and_init_stores_it_unchanged():
    m = FMRegressor(solver="mcmc")
    assert m.get_params()["max_iter"] is None and m.n_burnin is None
    Xtr, _, ytr, _, _ = _ratings(n=400, users=10, items=10)
    m.set_params(n_factors=2, n_kept_samples=3).fit(Xtr, ytr)
    assert m.n_iter_ == 200 and m.max_iter is None
    assert FMRegressor(max_iter=None, n_factors=2).fit(Xtr, ytr).n_iter_ == 30


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_load_round_trip_is_bit_exact_and_the_chain_continues(tmp_path, dtype):
    Xtr, Xte, ytr, _, _ = _ratings(n=2000, users=20, items=15)
    kw = dict(n_factors=2, solver="mcmc", max_iter=M.REFRESH_EVERY, n_burnin=0,
              random_state=1, dtype=dtype)
    a = FMRegressor(**kw).fit(Xtr, ytr)
    a.save(tmp_path / "m.npz")
    b = load(tmp_path / "m.npz")
    for x, y in zip(a.predict(Xte, return_std=True), b.predict(Xte, return_std=True)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a._chain.samples_P, b._chain.samples_P)
    # warm_start continues the chain, from memory or from the file alike
    for m in (a, b):
        m.set_params(warm_start=True).fit(Xtr, ytr)
    np.testing.assert_array_equal(a._state.P, b._state.P)
    one = FMRegressor(**dict(kw, max_iter=2 * M.REFRESH_EVERY)).fit(Xtr, ytr)
    np.testing.assert_array_equal(a._state.P, one._state.P)  # one chain, split in two
    assert a.n_iter_ == 2 * M.REFRESH_EVERY and a._chain.sweeps == 2 * M.REFRESH_EVERY
    Xc, Xce, yc = _clicks(800)
    c = FMClassifier(n_factors=2, solver="mcmc", max_iter=5, random_state=0,
                     dtype=dtype).fit(Xc, yc)
    c.save(tmp_path / "c.npz")
    np.testing.assert_array_equal(c.predict_proba(Xce), load(tmp_path / "c.npz").predict_proba(Xce))


def test_version_1_model_files_still_load(tmp_path):
    import json
    Xtr, Xte, ytr, _, _ = _ratings(n=500, users=10, items=10)
    m = FMRegressor(n_factors=2, max_iter=2, random_state=0).fit(Xtr, ytr)
    m.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    meta["format_version"] = 1
    meta["params"] = {k: v for k, v in meta["params"].items()
                      if k not in ("n_burnin", "n_kept_samples")}
    meta["params"]["max_iter"] = 2
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v1.npz", **arrays)
    np.testing.assert_array_equal(load(tmp_path / "v1.npz").predict(Xte), m.predict(Xte))


@pytest.mark.parametrize("params,match", [
    (dict(max_iter=10, n_burnin=10), "n_burnin=10 must be smaller than max_iter=10"),
    (dict(max_iter=10, n_burnin=4, n_kept_samples=7),
     "n_kept_samples=7 is more than the 6 sweeps after burn-in"),
    (dict(n_burnin=-1), "n_burnin must be >= 0"),
    (dict(n_kept_samples=-3), "n_kept_samples must be >= 1"),
    (dict(n_kept_samples=0), "n_kept_samples must be >= 1"),
    (dict(n_burnin=2.5), "n_burnin must be an integer"),
    (dict(max_iter=-5), "max_iter must be >= 1"),
    (dict(early_stopping=True), "early_stopping=True is not supported with solver='mcmc'"),
    (dict(device="cuda"), "solver='mcmc' runs on the CPU only"),
])
def test_bad_sampler_arguments_get_clear_errors(params, match):
    Xtr, _, ytr, _, _ = _ratings(n=300, users=10, items=10)
    ok = FMRegressor(n_factors=2, solver="mcmc", max_iter=3, random_state=0).fit(Xtr, ytr)
    before = ok.predict(Xtr)
    with pytest.raises(ValueError, match=match):
        ok.set_params(**params).fit(Xtr, ytr)
    np.testing.assert_array_equal(ok.predict(Xtr), before)  # a rejected call changes nothing


def test_sampler_refuses_what_it_does_not_do():
    Xtr, Xte, ytr, yte, _ = _ratings(n=300, users=10, items=10)
    m = FMRegressor(n_factors=2, solver="mcmc", max_iter=3)
    with pytest.raises(ValueError, match="partial_fit is not available for solver='mcmc'"):
        m.partial_fit(Xtr, ytr)
    Xc, _, yc = _clicks(300)
    with pytest.raises(ValueError, match="takes loss='logistic'"):
        FMClassifier(solver="mcmc", loss="hinge", max_iter=3).fit(Xc, yc)


def test_eval_set_records_the_running_posterior_mean_loss():
    Xtr, Xte, ytr, yte, _ = _ratings(n=2000, users=20, items=15)
    m = FMRegressor(n_factors=2, solver="mcmc", max_iter=8, n_burnin=3, n_kept_samples=5,
                    random_state=0, dtype=np.float64).fit(Xtr, ytr, eval_set=(Xte, yte))
    assert len(m.history_["val_loss"]) == 8
    np.testing.assert_allclose(m.history_["val_loss"][-1],
                               0.5 * np.mean((yte - m.predict(Xte)) ** 2), rtol=1e-9)
    Xc, _, yc = _clicks(800)
    c = FMClassifier(n_factors=2, solver="mcmc", max_iter=6, n_burnin=1, n_kept_samples=5,
                     random_state=0, dtype=np.float64).fit(Xc, yc, eval_set=(Xc, yc))
    from sklearn.metrics import log_loss
    np.testing.assert_allclose(c.history_["val_loss"][-1],
                               log_loss(yc, c.predict_proba(Xc), labels=c.classes_), rtol=1e-9)


def test_kept_samples_that_cannot_fit_raise_memory_error_before_allocating(monkeypatch):
    Xtr, _, ytr, _, _ = _ratings(n=300, users=10, items=10)
    monkeypatch.setattr(M, "_physical_memory", lambda: 10_000)
    with pytest.raises(MemoryError, match="Lower n_kept_samples"):
        FMRegressor(n_factors=2, solver="mcmc", max_iter=50, n_kept_samples=40).fit(Xtr, ytr)


def test_divergence_keeps_the_last_finite_sample():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.normal(0, 1, (50, 3)) * np.array([1.0, 1.0, 3e37]), dtype=np.float32)
    m = FMRegressor(n_factors=2, solver="mcmc", max_iter=20)
    with pytest.raises(DivergenceError, match="keeps the last finite sample"):
        m.fit(X, rng.normal(size=50))
    assert np.isfinite(m._state.P).all() and np.isfinite(m.intercept_)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_estimator_is_bit_identical_at_n_jobs_1_and_2():
    Xtr, Xte, ytr, _, _ = _ratings(n=20_000)
    a, b = (FMRegressor(solver="mcmc", max_iter=6, n_jobs=j, random_state=3).fit(Xtr, ytr)
            for j in (1, 2))
    np.testing.assert_array_equal(a.predict(Xte, return_std=True)[1],
                                  b.predict(Xte, return_std=True)[1])
