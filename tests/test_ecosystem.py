"""fmnumba with the rest of the ecosystem: progress output, learning-curve
plots, per-group L2, and scikit-learn pipelines / model selection."""
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction import FeatureHasher
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from fmnumba import FMClassifier, FMRegressor
from fmnumba.datasets import make_ratings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ratings():
    d = make_ratings(3000, n_users=60, n_items=40, n_context=(), random_state=1)
    return d, np.repeat([0, 1], [60, 40])


# --- progress ----------------------------------------------------------------

def test_verbose_0_prints_nothing(capsys, ratings):
    d, _ = ratings
    FMRegressor(max_iter=3, verbose=0, random_state=0).fit(d.X, d.y)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_verbose_1_writes_a_bar_to_stderr(capsys, ratings):
    d, _ = ratings
    FMRegressor(max_iter=3, verbose=1, random_state=0).fit(d.X, d.y, eval_set=(d.X, d.y))
    out, err = capsys.readouterr()
    assert out == ""
    assert "fmnumba fit" in err and "3/3" in err
    assert "rmse=" in err and "val_rmse=" in err   # RMSE, not the ½·MSE loss


# --- plots -------------------------------------------------------------------

def test_learning_curve_png(tmp_path, ratings):
    pytest.importorskip("matplotlib")
    from fmnumba.plot import learning_curve, save_learning_curve
    d, _ = ratings
    m = FMRegressor(max_iter=4, random_state=0).fit(d.X[:2000], d.y[:2000],
                                                    eval_set=(d.X[2000:], d.y[2000:]))
    path = tmp_path / "curve.png"
    save_learning_curve(m, path)
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)
    # on a given Axes: one line per curve, one point per epoch
    from matplotlib.figure import Figure
    ax = Figure().add_subplot()
    assert learning_curve(m, ax=ax) is ax
    lines = ax.get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_ydata(), m.history_["train_loss"])
    np.testing.assert_allclose(lines[1].get_ydata(), m.history_["val_loss"])
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3, 4])


def test_learning_curve_needs_a_fitted_model():
    pytest.importorskip("matplotlib")
    from fmnumba.plot import learning_curve
    with pytest.raises(ValueError, match="fit"):
        learning_curve(FMRegressor())


def test_plot_without_matplotlib_names_the_extra(monkeypatch, ratings):
    from fmnumba import plot
    d, _ = ratings
    m = FMRegressor(max_iter=1).fit(d.X, d.y)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ImportError, match=r"fmnumba\[plot\]"):
        plot.learning_curve(m)


# --- per-group L2 -----------------------------------------------------------

def _rms(a):
    return float(np.sqrt(np.mean(np.square(a))))


def test_huge_l2_on_one_group_crushes_only_that_group(ratings):
    """groups: users = 0, items = 1. λ = 1e6 on the items drives their
    weights and factors to ~0 (to within Adam's step size, which the
    normalised gradient bounds), while users keep theirs."""
    d, groups = ratings
    m = FMRegressor(max_iter=3, batch_size=32, n_jobs=1, groups=groups, l2_reg_w=[0.0, 1e6],
                    l2_reg_v=[0.0, 1e6], random_state=0).fit(d.X, d.y)
    V, w = m.factors_, m.coef_
    assert _rms(V[60:]) < 0.05 * _rms(V[:60])
    assert _rms(w[60:]) < 0.05 * _rms(w[:60])
    free = FMRegressor(max_iter=3, batch_size=32, n_jobs=1, random_state=0, l2_reg_w=0.0,
                       l2_reg_v=0.0).fit(d.X, d.y)
    assert _rms(V[60:]) < 0.05 * _rms(free.factors_[60:])
    # and only the factors: a huge λ_v on users leaves their linear weights alive
    m2 = FMRegressor(max_iter=3, batch_size=32, n_jobs=1, groups=groups, l2_reg_w=0.0,
                     l2_reg_v=[1e6, 0.0], random_state=0).fit(d.X, d.y)
    assert _rms(m2.factors_[:60]) < 0.05 * _rms(m2.factors_[60:])
    assert _rms(m2.coef_[:60]) > 0.5 * _rms(free.coef_[:60])


@pytest.mark.parametrize("solver", ["adam", "adamw", "sgd"])
def test_equal_group_values_equal_the_scalar(ratings, solver):
    d, groups = ratings
    kw = dict(max_iter=2, solver=solver, random_state=3, n_jobs=1)
    scalar = FMRegressor(l2_reg_w=0.01, l2_reg_v=0.02, **kw).fit(d.X, d.y)
    grouped = FMRegressor(groups=groups, l2_reg_w=[0.01, 0.01], l2_reg_v=[0.02, 0.02],
                          **kw).fit(d.X, d.y)
    np.testing.assert_array_equal(scalar.coef_, grouped.coef_)
    np.testing.assert_array_equal(scalar.factors_, grouped.factors_)
    assert scalar.intercept_ == grouped.intercept_


def test_groups_from_the_readers(tmp_path):
    """The readers' groups hold one group id per column of X: a ratings
    file's RatingEncoder.fields_ is 0 on the user block and 1 on the item
    block; libffm's fields are the field each feature is written under (-1
    for a feature that never occurs). As an estimator's groups, each id
    selects that block's L2 strength."""
    from fmnumba.readers import load_libffm, load_movielens
    d = make_ratings(500, n_users=20, n_items=10, n_context=(), random_state=0)
    cols = d.X.indices.reshape(-1, 2)
    p = tmp_path / "u.data"
    p.write_text("".join(f"{u}\t{i}\t{r:.2f}\t0\n" for (u, i), r in zip(cols, d.y)))
    X, y, enc = load_movielens(p)
    n_users, n_items = len(np.unique(cols[:, 0])), len(np.unique(cols[:, 1]))
    assert (enc.n_users_, enc.n_items_) == (n_users, n_items) and X.shape[1] == n_users + n_items
    np.testing.assert_array_equal(enc.fields_, np.repeat([0, 1], [n_users, n_items]))
    # every row: its user's column in group 0, its item's column in group 1
    np.testing.assert_array_equal(enc.fields_[X.indices.reshape(-1, 2)],
                                  np.tile([0, 1], (X.shape[0], 1)))
    kw = dict(max_iter=3, batch_size=32, n_jobs=1, l2_reg_w=0.0, random_state=0)
    free = FMRegressor(groups=enc.fields_, l2_reg_v=[0.0, 0.0], **kw).fit(X, y)
    users, items = slice(None, n_users), slice(n_users, None)
    for held, block, other in ((0, users, items), (1, items, users)):
        l2_v = [1e6 if g == held else 0.0 for g in (0, 1)]
        m = FMRegressor(groups=enc.fields_, l2_reg_v=l2_v, **kw).fit(X, y)
        assert _rms(m.factors_[block]) < 0.05 * _rms(free.factors_[block]), held
        assert _rms(m.factors_[other]) > 0.25 * _rms(free.factors_[other]), held

    q = tmp_path / "x.libffm"
    q.write_text("1 0:0:1 1:3:1\n0 0:1:1 1:4:1 2:5:1\n1 0:2:1 2:6:1 1:8:1\n")
    X, y, fields = load_libffm(q)
    assert X.shape == (3, 9) and fields.dtype == np.int32
    np.testing.assert_array_equal(fields, [0, 0, 0, 1, 1, 2, 2, -1, 1])
    used = fields >= 0
    groups = np.where(used, fields, 0)
    clf = FMClassifier(max_iter=1, groups=groups, l2_reg_v=[0.0, 0.1, 1.0]).fit(X, y)
    assert clf.factors_.shape == (9, clf.n_factors)


# --- scikit-learn pipelines -------------------------------------------------

def _frame(n=600, seed=0):
    """Categorical columns (user, item, weekday) and a rating with an
    interaction, as a list of dicts and a 2-D object array."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 30, n)
    items = rng.integers(0, 20, n)
    days = rng.integers(0, 7, n)
    u_f, i_f = rng.normal(size=(30, 2)), rng.normal(size=(20, 2))
    y = 3 + (u_f[users] * i_f[items]).sum(1) + 0.1 * rng.normal(size=n)
    rows = np.column_stack([np.char.add("u", users.astype(str)),
                            np.char.add("i", items.astype(str)), days.astype(str)]).astype(object)
    return rows, y


def test_onehot_pipeline_regressor():
    rows, y = _frame()
    # 500 rows: smaller batches than the default 256, or 30 epochs are only
    # 60 decaying Adam steps (README: defaults are tuned on 100k+ rows)
    pipe = make_pipeline(OneHotEncoder(handle_unknown="ignore"),
                         FMRegressor(n_factors=4, max_iter=30, batch_size=32, random_state=0))
    pipe.fit(rows[:500], y[:500])
    pred = pipe.predict(rows[500:])
    rmse = np.sqrt(np.mean((pred - y[500:]) ** 2))
    assert rmse < np.std(y[500:])
    assert pipe.score(rows[500:], y[500:]) > 0


def test_feature_hasher_pipeline_classifier():
    rows, y = _frame(seed=1)
    labels = np.where(y > np.median(y), "click", "no-click")
    to_tokens = FunctionTransformer(
        lambda X: [[f"c{j}={v}" for j, v in enumerate(r)] for r in X])
    pipe = make_pipeline(to_tokens, FeatureHasher(n_features=2**10, input_type="string"),
                         FMClassifier(n_factors=4, max_iter=20, random_state=0))
    pipe.fit(rows, labels)
    assert set(pipe.classes_) == {"click", "no-click"}
    proba = pipe.predict_proba(rows)
    assert proba.shape == (len(rows), 2)
    assert np.mean(pipe.predict(rows) == labels) > 0.6


def test_column_transformer_and_grid_search():
    rows, y = _frame(seed=2)
    pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), [0, 1, 2])])
    pipe = make_pipeline(pre, FMRegressor(max_iter=10, random_state=0))
    grid = GridSearchCV(pipe, {"fmregressor__n_factors": [2, 4],
                               "fmregressor__l2_reg_v": [1e-4, 1e-2]}, cv=2)
    grid.fit(rows, y)
    assert set(grid.best_params_) == {"fmregressor__n_factors", "fmregressor__l2_reg_v"}
    assert grid.best_estimator_[-1].n_factors in (2, 4)
    assert len(grid.cv_results_["mean_test_score"]) == 4


def test_clone_get_set_params():
    groups = np.array([0, 0, 1])
    est = FMClassifier(n_factors=3, learning_rate=0.02, groups=groups, l2_reg_v=[0.1, 0.2])
    params = est.get_params()
    assert params["n_factors"] == 3 and params["groups"] is groups
    c = clone(est)
    assert c is not est and c.get_params()["l2_reg_v"] == [0.1, 0.2]
    c.set_params(n_factors=5, loss="hinge")
    assert c.n_factors == 5 and est.n_factors == 3 and c.loss == "hinge"
    X = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    c.fit(X, [0, 1, 0, 1, 0, 1])
    assert not hasattr(est, "classes_")
    fitted_clone = clone(c)
    assert not hasattr(fitted_clone, "classes_")
