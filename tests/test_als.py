"""ALS (fmnumba/als.py, fmnumba/cpu/als.py, cpu/_columns.py) against the
dense coordinate minimisers of tests/naive.py."""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from fmnumba import als as A
from fmnumba.backend import get_kernels
from fmnumba.column_view import build_column_view
from fmnumba.datasets import make_ratings

try:
    from . import naive
    from . import strategies as S
except ImportError:
    import naive
    import strategies as S

DTYPES = (np.float32, np.float64)


def _l2(data, p):
    """(lam_w, lam_v) for the solver ((1,) or (p,)) and per feature for naive."""
    if data.draw(st.booleans()):
        lw, lv = data.draw(st.floats(0.01, 3.0)), data.draw(st.floats(0.01, 3.0))
        return np.array([lw]), np.array([lv]), np.full(p, lw), np.full(p, lv)
    lw = np.array(data.draw(st.lists(st.floats(0.01, 3.0), min_size=p, max_size=p)))
    lv = np.array(data.draw(st.lists(st.floats(0.01, 3.0), min_size=p, max_size=p)))
    return lw, lv, lw, lv



@given(prob=S.squared_loss_problems(max_rows=12, max_k=4), data=st.data())
@settings(max_examples=40)
def test_als_sweep_matches_dense_coordinate_minimisers(prob, data):
    """Each coordinate step of a sweep is the dense closed-form minimiser."""
    lw, lv, lw_p, lv_p = _l2(data, prob.X.shape[1])
    if data.draw(st.booleans()):  # the one-hot / unit-weight fast path
        S.make_binary(prob)
    P = prob.P.copy()
    w0 = float(prob.dtype.type(prob.w0))
    view = build_column_view(prob.X, prob.dtype)
    hist = {}
    new_w0 = A.run_als(prob.X, prob.y, prob.sw, P, w0, max_iter=1, l2_reg_w=lw, l2_reg_v=lv,
                       view=view, history=hist)
    w0_ref, P_ref = naive.als_sweep(prob.dense, prob.y, prob.sw, w0, prob.P, view.cols,
                                    lw_p, lv_p)
    tol = 1e-8 if prob.dtype == np.float64 else 2e-3
    np.testing.assert_allclose(new_w0, w0_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(P, P_ref, rtol=tol, atol=tol)
    J = [naive.als_objective(prob.dense, prob.y, prob.sw, w0, prob.P, lw_p, lv_p),
         naive.als_objective(prob.dense, prob.y, prob.sw, w0_ref, P_ref, lw_p, lv_p)]
    np.testing.assert_allclose(hist["objective"], J, rtol=10 * tol, atol=10 * tol)


@given(prob=S.squared_loss_problems(max_rows=30, max_k=6), data=st.data())
@settings(max_examples=30)
def test_als_objective_never_increases(prob, data):
    lw, lv, _, _ = _l2(data, prob.X.shape[1])
    hist = {}
    A.run_als(prob.X, prob.y, prob.sw, prob.P.copy(), float(prob.dtype.type(prob.w0)),
              max_iter=15, l2_reg_w=lw, l2_reg_v=lv, history=hist)
    J = np.array(hist["objective"])
    assert J.shape == (16,) and np.isfinite(J).all()
    slack = (1e-9 if prob.dtype == np.float64 else 1e-4) * max(1.0, J[0])
    assert np.all(np.diff(J) <= slack), np.diff(J).max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_als_recovers_planted_model(dtype):
    """Test RMSE within 5% of the noise floor on planted one-hot ratings."""
    d = make_ratings(60_000, 300, 200, n_context=(), n_factors=4, noise=0.5, random_state=0)
    Xtr, Xte, ytr, yte = d.split()
    Xtr, Xte = sp.csr_matrix(Xtr), sp.csr_matrix(Xte)
    rng = np.random.default_rng(0)
    P = np.zeros((Xtr.shape[1], 5), dtype=dtype)
    P[:, 1:] = rng.normal(0, 0.1, (Xtr.shape[1], 4))
    w0 = A.run_als(Xtr, ytr, np.ones(Xtr.shape[0]), P, float(ytr.mean()), max_iter=40,
                   l2_reg_w=np.array([5.0]), l2_reg_v=np.array([5.0]))
    out = np.empty(Xte.shape[0], dtype=dtype)
    get_kernels("cpu").predict_csr((Xte.indptr, Xte.indices, Xte.data), dtype(w0), P, out)
    rmse = float(np.sqrt(np.mean((out - yte) ** 2)))
    assert rmse < 1.05 * d.noise, rmse


def test_als_without_l2_leaves_unseen_features_alone():
    """λ = 0: a feature that never occurs has no minimiser; it keeps its value."""
    X = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.5, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    P = np.full((3, 3), 0.3)
    A.run_als(X, np.array([1.0, 2.0, 3.0]), np.ones(3), P, 0.0, max_iter=3,
              l2_reg_w=np.array([0.0]), l2_reg_v=np.array([0.0]))
    np.testing.assert_array_equal(P[1], 0.3)
    assert np.isfinite(P).all()


# --------------------------------------------------------------------------
# FMRegressor(solver="als")
# --------------------------------------------------------------------------
from fmnumba import FMClassifier, FMRegressor, load  # noqa: E402


def test_als_estimator_objective_monotone_and_warm_start_continues(tmp_path):
    d = make_ratings(3000, 30, 20, n_context=(), n_factors=2, random_state=1)
    Xtr, Xte, ytr, _ = d.split()
    m = FMRegressor(n_factors=2, solver="als", max_iter=8, l2_reg_w=1.0, l2_reg_v=1.0,
                    random_state=0, dtype=np.float64).fit(Xtr, ytr)
    J = np.array(m.history_["train_loss"])
    assert m.n_iter_ == 8 and np.all(np.diff(J) <= 1e-12 * J[0])
    m.save(tmp_path / "m.npz")
    b = load(tmp_path / "m.npz")
    np.testing.assert_array_equal(b.predict(Xte), m.predict(Xte))
    m.set_params(warm_start=True, max_iter=4).fit(Xtr, ytr)
    J2 = np.array(m.history_["train_loss"])
    assert m.n_iter_ == 12 and np.all(np.diff(J2) <= 1e-12 * J2[0])
    assert FMRegressor(n_factors=2, solver="als").fit(Xtr[:50], ytr[:50]).n_iter_ == 100


def test_als_on_the_classifier_names_the_solvers_that_work():
    X = sp.csr_matrix(np.eye(4))
    with pytest.raises(ValueError, match="FMRegressor only; for FMClassifier choose "
                                         "solver='mcmc' .probit., 'adam', 'adamw' or 'sgd'"):
        FMClassifier(solver="als").fit(X, [0, 1, 0, 1])


@pytest.mark.parametrize("params,match", [
    (dict(l2_reg_v=-1.0), "l2_reg_v must be >= 0"),
    (dict(early_stopping=True), "early_stopping=True is not supported with solver='als'"),
    (dict(max_iter=0), "max_iter must be >= 1"),
])
def test_als_bad_arguments_get_clear_errors(params, match):
    X = sp.csr_matrix(np.eye(4))
    with pytest.raises(ValueError, match=match):
        FMRegressor(solver="als", **params).fit(X, [0.0, 1.0, 0.0, 1.0])


def test_als_integer_weights_equal_repeated_rows():
    d = make_ratings(400, 15, 10, n_context=(), n_factors=2, random_state=2)
    X, y = sp.csr_matrix(d.X), d.y
    w = np.random.default_rng(0).integers(1, 4, X.shape[0])
    rep = np.repeat(np.arange(X.shape[0]), w)
    kw = dict(n_factors=2, solver="als", max_iter=5, l2_reg_w=0.5, l2_reg_v=0.5,
              random_state=0, dtype=np.float64)
    a = FMRegressor(**kw).fit(X, y, sample_weight=w)
    b = FMRegressor(**kw).fit(X[rep], y[rep])
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("solver, std", [("als", 0.1), ("adam", 0.01), ("mcmc", 0.01)])
def test_init_std_none_is_the_solvers_default(solver, std):
    """init_std=None starts from the solver's spread (ALS: libFM's 0.1);
    the same fit as giving that spread explicitly, and not the other one."""
    d = make_ratings(600, n_users=30, n_items=20, n_context=(), random_state=2)
    kw = dict(solver=solver, max_iter=3, random_state=0, n_factors=3)
    if solver == "mcmc":
        kw["n_kept_samples"] = 1
        kw["n_burnin"] = 1
    auto = FMRegressor(**kw).fit(d.X, d.y)
    same = FMRegressor(init_std=std, **kw).fit(d.X, d.y)
    other = FMRegressor(init_std=0.1 if std == 0.01 else 0.01, **kw).fit(d.X, d.y)
    assert auto.get_params()["init_std"] is None
    np.testing.assert_array_equal(auto.factors_, same.factors_)
    assert not np.array_equal(auto.factors_, other.factors_)
