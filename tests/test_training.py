"""End-to-end training: planted data, sample weights, warm starts, early
stopping, thread-count handling, and the a9a benchmark (shared data)."""
import numba
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fmnumba import DivergenceError, FMClassifier, FMRegressor
from fmnumba.datasets import make_clicks, make_ratings

try:
    from . import naive
except ImportError:
    import naive


def _rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def _logloss(y01, p):
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y01 * np.log(p) + (1 - y01) * np.log(1 - p)))


def _planted_score(data, X):
    """ŷ of the planted model (the data generator's true FM) on X."""
    P = np.column_stack([data.w, data.V])
    return naive.predict_identity(X.toarray(), data.w0, P)


@pytest.fixture(scope="module")
def ratings():
    d = make_ratings(50_000, 150, 100, random_state=0)
    return d, d.split(0.2, random_state=0)


# --------------------------------------------------------------------------
# quality on planted data
# --------------------------------------------------------------------------
def test_default_regressor_reaches_noise_floor(ratings):
    """Test RMSE within 5% of σ (the planted model's own error)."""
    d, (Xtr, Xte, ytr, yte) = ratings
    # the planted model scores σ on this split: the floor is real
    assert _rmse(_planted_score(d, Xte), yte) == pytest.approx(d.noise, rel=0.05)
    est = FMRegressor(random_state=0).fit(Xtr, ytr)
    rmse = _rmse(est.predict(Xte), yte)
    assert rmse <= 1.05 * d.noise, f"test RMSE {rmse:.4f}, noise floor σ = {d.noise}"


@pytest.mark.parametrize("solver", ["adam", "adamw", "sgd"])
def test_both_solvers_beat_global_mean(ratings, solver):
    d, (Xtr, Xte, ytr, yte) = ratings
    baseline = _rmse(np.full(yte.shape, ytr.mean()), yte)
    est = FMRegressor(solver=solver, random_state=0).fit(Xtr, ytr)
    rmse = _rmse(est.predict(Xte), yte)
    assert rmse <= 0.5 * baseline, f"{solver}: RMSE {rmse:.4f} vs global mean {baseline:.4f}"


def test_classifier_beats_base_rate_on_clicks():
    """Test log-loss below the base rate's, capturing at least half of the
    gap between the base rate and the planted model's own log-loss."""
    d = make_clicks(50_000, (300, 200, 100, 50, 20, 10, 7, 3), random_state=0)
    Xtr, Xte, ytr, yte = d.split(0.2, random_state=0)
    base = _logloss(yte, np.full(yte.shape, ytr.mean()))
    bayes = _logloss(yte, 1.0 / (1.0 + np.exp(-_planted_score(d, Xte))))
    # the defaults' steps suit real click data; these planted clicks overfit
    # within a few epochs, which early stopping catches
    est = FMClassifier(early_stopping=True, random_state=0).fit(Xtr, ytr)
    assert est.classes_.tolist() == [0.0, 1.0]
    ll = _logloss(yte, est.predict_proba(Xte)[:, 1])
    assert ll < base
    assert ll <= base - 0.5 * (base - bayes), \
        f"log-loss {ll:.4f}; base rate {base:.4f}; planted model {bayes:.4f}"


def test_a9a_default_classifier_auc(shared_data):
    from sklearn.datasets import load_svmlight_file
    from sklearn.metrics import roc_auc_score
    Xtr, ytr = load_svmlight_file(str(shared_data / "a9a"), n_features=123)
    Xte, yte = load_svmlight_file(str(shared_data / "a9a.t"), n_features=123)
    est = FMClassifier(random_state=0).fit(Xtr, ytr)
    auc = roc_auc_score(yte, est.decision_function(Xte))
    assert auc >= 0.90, f"a9a test AUC {auc:.4f}"
    assert set(est.predict(Xte)) <= {-1.0, 1.0}


# --------------------------------------------------------------------------
# sample weights
# --------------------------------------------------------------------------
def _small_problem(n=300, seed=0):
    d = make_ratings(n, 20, 10, n_context=(5,), random_state=seed)
    return d.X, d.y


def _fit64(X, y, sw=None, **kw):
    params = dict(random_state=0, dtype=np.float64, max_iter=5, batch_size=100_000, n_jobs=1,
                  learning_rate=0.01)
    params.update(kw)
    return FMRegressor(**params).fit(X, y, sample_weight=sw)


def test_adamw_is_adam_without_l2_and_decays_weights_with_it():
    """solver='adamw' differs from 'adam' only in where L2 goes: with no L2
    the two fits are bit-identical; with L2 they differ, and a larger decay
    rate gives smaller weights."""
    X, y = _small_problem(n=400, seed=3)
    kw = dict(batch_size=32, max_iter=4)
    a = _fit64(X, y, solver="adam", l2_reg_w=0.0, l2_reg_v=0.0, **kw)
    w = _fit64(X, y, solver="adamw", l2_reg_w=0.0, l2_reg_v=0.0, **kw)
    np.testing.assert_array_equal(a._state.P, w._state.P)
    assert a.intercept_ == w.intercept_
    a = _fit64(X, y, solver="adam", l2_reg_w=0.5, l2_reg_v=0.5, **kw)
    weak = _fit64(X, y, solver="adamw", l2_reg_w=0.5, l2_reg_v=0.5, **kw)
    strong = _fit64(X, y, solver="adamw", l2_reg_w=20.0, l2_reg_v=20.0, **kw)
    assert not np.allclose(a._state.P, weak._state.P)
    assert np.linalg.norm(strong._state.P) < 0.9 * np.linalg.norm(weak._state.P)


def test_integer_weights_equal_row_duplication():
    """Adam objective at batch_size >= n (one batch per epoch): weight 3 on a
    row trains exactly like three copies of it."""
    X, y = _small_problem()
    rng = np.random.default_rng(0)
    sw = rng.integers(1, 4, X.shape[0])
    rep = np.repeat(np.arange(X.shape[0]), sw)
    a = _fit64(X, y, sw)
    b = _fit64(X[rep], y[rep])
    np.testing.assert_allclose(a._state.P, b._state.P, rtol=1e-7, atol=1e-9)
    assert a.intercept_ == pytest.approx(b.intercept_, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(a.history_["train_loss"], b.history_["train_loss"], rtol=1e-9)
    # and weights do matter: uniform weights give a different model
    c = _fit64(X, y)
    assert not np.allclose(a._state.P, c._state.P, rtol=1e-4, atol=1e-6)


def test_zero_weight_equals_row_removed():
    X, y = _small_problem()
    rng = np.random.default_rng(1)
    sw = rng.uniform(0.5, 2.0, X.shape[0])
    sw[rng.random(X.shape[0]) < 0.3] = 0.0
    keep = sw > 0
    a = _fit64(X, y, sw)
    b = _fit64(X[keep], y[keep], sw[keep])
    np.testing.assert_allclose(a._state.P, b._state.P, rtol=1e-7, atol=1e-9)
    assert a.intercept_ == pytest.approx(b.intercept_, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(a.history_["train_loss"], b.history_["train_loss"], rtol=1e-9)


@pytest.mark.parametrize("solver", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("batch_size", [1, 16, 100_000])
def test_zero_weight_rows_have_no_influence(solver, batch_size):
    """Rows with weight 0 do not influence the model, whatever their targets
    and whatever the batch size (a mini-batch may hold only such rows)."""
    X, y = _small_problem(n=120)
    rng = np.random.default_rng(2)
    sw = np.ones(X.shape[0])
    zero = rng.random(X.shape[0]) < 0.25
    sw[zero] = 0.0
    y2 = y.copy()
    y2[zero] = 1e3 * rng.normal(size=zero.sum())
    a = _fit64(X, y, sw, batch_size=batch_size, max_iter=3, solver=solver)
    b = _fit64(X, y2, sw, batch_size=batch_size, max_iter=3, solver=solver)
    assert np.all(np.isfinite(a._state.P))
    np.testing.assert_array_equal(a._state.P, b._state.P)
    assert a.intercept_ == b.intercept_


# --------------------------------------------------------------------------
# warm start and partial_fit
# --------------------------------------------------------------------------
def test_warm_start_continues_history_and_adam_step():
    X, y = _small_problem(n=1000, seed=3)
    nb = 10  # batches per epoch at batch_size 100
    est = FMRegressor(random_state=0, max_iter=2, batch_size=100)
    est.fit(X, y)
    assert len(est.history_["train_loss"]) == 2 and est._state.t == 2 * nb
    P_before = est._state.P.copy()
    est.set_params(warm_start=True)
    est.fit(X, y)
    assert len(est.history_["train_loss"]) == 4
    assert est.n_iter_ == 4
    assert est._state.t == 4 * nb
    assert not np.array_equal(est._state.P, P_before)
    h = est.history_["train_loss"]
    assert h[2] < h[0], h  # continued from the fitted model, not restarted
    # without warm_start a second fit starts over
    est.set_params(warm_start=False)
    est.fit(X, y)
    assert len(est.history_["train_loss"]) == 2 and est._state.t == 2 * nb


def test_partial_fit_one_epoch_per_call():
    X, y = _small_problem(n=1000, seed=4)
    est = FMRegressor(random_state=0, batch_size=100)
    ts = []
    for i in range(3):
        est.partial_fit(X, y)
        ts.append(est._state.t)
        assert len(est.history_["train_loss"]) == i + 1
    assert ts == [10, 20, 30]
    assert est.history_["train_loss"][2] < est.history_["train_loss"][0]
    clf = FMClassifier(random_state=0, batch_size=100)
    y01 = (y > np.median(y)).astype(int)
    clf.partial_fit(X[:500], y01[:500], classes=[0, 1])
    clf.partial_fit(X[500:], y01[500:])
    assert clf._state.t == 10 and len(clf.history_["train_loss"]) == 2


class _LrRecorder:
    """The CPU kernels, recording the step size each epoch kernel is given."""

    def __init__(self):
        from fmnumba import cpu
        self._cpu = cpu
        self.lrs = []

    def __getattr__(self, name):
        return getattr(self._cpu, name)

    def adam_epoch(self, *args):
        self.lrs.append(args[9][0])
        return self._cpu.adam_epoch(*args)

    def sgd_epoch(self, *args):
        self.lrs.append(args[8])
        return self._cpu.sgd_epoch(*args)


@pytest.mark.parametrize("solver", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("decay", [0.0, 0.5, 2.0])
def test_lr_decay_schedule_counts_epochs_across_calls(monkeypatch, solver, decay):
    """Epoch e (over fit, warm-started fit and partial_fit calls) runs at
    learning_rate / (1 + lr_decay·e); a fresh fit starts again at e = 0."""
    import fmnumba.estimators as E
    rec = _LrRecorder()
    monkeypatch.setattr(E, "get_kernels", lambda device, nnz=None: rec)
    X, y = _small_problem(n=300, seed=5)
    est = FMRegressor(solver=solver, learning_rate=0.01, lr_decay=decay, max_iter=3,
                      random_state=0)
    est.fit(X, y)
    est.partial_fit(X, y)
    est.set_params(warm_start=True, max_iter=2).fit(X, y)
    est.set_params(warm_start=False).fit(X, y)
    expected = [0.01 / (1 + decay * e) for e in (0, 1, 2, 3, 4, 5, 0, 1)]
    np.testing.assert_allclose(rec.lrs, expected, rtol=1e-15)


# --------------------------------------------------------------------------
# early stopping
# --------------------------------------------------------------------------
def test_early_stopping_keeps_best_validation_loss():
    d = make_ratings(3000, 300, 200, random_state=1)
    Xtr, Xv, ytr, yv = d.split(0.3, random_state=1)
    est = FMRegressor(n_factors=16, learning_rate=0.03, l2_reg_w=0.0, l2_reg_v=0.0,
                      max_iter=300, early_stopping=True, n_iter_no_change=3, random_state=0)
    est.fit(Xtr, ytr, eval_set=(Xv, yv))
    vl = est.history_["val_loss"]
    assert len(vl) == est.n_iter_ < 300
    best = int(np.argmin(vl))
    assert best < len(vl) - 1            # validation loss went up afterwards
    assert len(vl) - 1 - best >= 3       # stopped after n_iter_no_change worse epochs
    val_loss = 0.5 * np.mean((est.predict(Xv) - yv) ** 2)
    assert val_loss == pytest.approx(vl[best], rel=1e-6)
    assert val_loss < vl[-1]


# --------------------------------------------------------------------------
# thread count
# --------------------------------------------------------------------------
@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_n_jobs_restores_numba_thread_count():
    X, y = _small_problem(n=500, seed=5)
    old = numba.get_num_threads()
    try:
        for before, n_jobs in ((1, 2), (2, 1), (1, -1)):
            numba.set_num_threads(before)
            est = FMRegressor(n_jobs=n_jobs, max_iter=2, random_state=0).fit(X, y)
            assert numba.get_num_threads() == before
            est.predict(X)
            assert numba.get_num_threads() == before
            est.set_params(solver="sgd").fit(X, y)
            assert numba.get_num_threads() == before
        # also when fit fails
        numba.set_num_threads(1)
        with pytest.raises(DivergenceError):
            FMRegressor(n_jobs=2, learning_rate=1e30, max_iter=3,
                        random_state=0).fit(X, y)
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(old)


def test_sparse_formats_and_dense_train_alike():
    """COO, CSC, CSR with duplicates and the dense array are the same data."""
    X, y = _small_problem(n=200, seed=6)
    dense = X.toarray()
    coo = sp.coo_matrix(X)
    # split every value into two duplicate halves, plus explicit zeros
    dup = sp.coo_matrix((np.concatenate([coo.data / 2, coo.data / 2, np.zeros(5)]),
                         (np.concatenate([coo.row, coo.row, np.arange(5)]),
                          np.concatenate([coo.col, coo.col, np.arange(5)]))), shape=X.shape)
    fits = [_fit64(Z, y, max_iter=2).predict(dense) for Z in (X, dense, X.tocsc(), dup)]
    for f in fits[1:]:
        np.testing.assert_allclose(f, fits[0], rtol=1e-10, atol=1e-12)


@given(a=hnp.arrays(st.sampled_from([np.float32, np.float64]),
                    st.tuples(st.integers(0, 40), st.integers(1, 5)),
                    elements=st.floats(allow_nan=True, allow_infinity=True, width=32)),
       block=st.integers(1, 64))
@settings(max_examples=200, deadline=None)
def test_abs_max_is_the_largest_magnitude_and_keeps_nan(a, block):
    """training.abs_max in blocks of any size equals max |a| (NaN if any NaN,
    inf if any inf, 0 for an empty array)."""
    from fmnumba.training import abs_max
    got = abs_max(a, block_bytes=block)
    if a.size == 0:
        assert got == 0.0
    elif np.isnan(a).any():
        assert np.isnan(got)
    else:
        assert got == float(np.max(np.abs(a)))


@pytest.mark.parametrize("n, k", [(0, 3), (5, 1), (70_000, 64), (3_000_001, 1)])
def test_initial_factors_are_one_normal_draw_in_blocks(n, k):
    """FMState.init draws V as one rng.normal(0, init_std, (n, k)) call would
    (blocks through a buffer change nothing), with w = 0."""
    from fmnumba.training import FMState
    st_ = FMState.init(n, k, np.float32, 0.02, 1.5, np.random.default_rng(3))
    want = np.random.default_rng(3).normal(0.0, 0.02, size=(n, k)).astype(np.float32)
    assert np.array_equal(st_.P[:, 1:], want) and not st_.P[:, 0].any()
    assert st_.bias_state.tolist() == [1.5, 0.0, 0.0]
