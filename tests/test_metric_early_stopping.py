"""Early stopping and history on a scikit-learn scorer, early_stopping="auto",
and the regressor's clipping of predictions to the training targets' range."""
import numpy as np
import pytest
from sklearn.metrics import make_scorer, mean_absolute_error, roc_auc_score

from fmnumba import FMClassifier, FMRegressor, load
from fmnumba.datasets import make_clicks, make_ratings
from fmnumba.estimators import AUTO_EARLY_STOPPING_ROWS


@pytest.fixture(scope="module")
def clicks():
    d = make_clicks(6000, random_state=0)
    Xtr, Xv, ytr, yv = d.split(0.3)
    return Xtr, ytr, Xv, yv


@pytest.fixture(scope="module")
def ratings():
    d = make_ratings(4000, n_users=80, n_items=60, n_context=(), random_state=0)
    return d.split(0.25)


def test_val_score_is_the_scorers_value_each_epoch(clicks):
    Xtr, ytr, Xv, yv = clicks
    m = FMClassifier(max_iter=4, scoring="roc_auc", early_stopping=False, batch_size=256,
                     random_state=0).fit(Xtr, ytr, eval_set=(Xv, yv))
    h = m.history_["val_score"]
    assert len(h) == len(m.history_["train_loss"]) == 4
    assert h[-1] == pytest.approx(roc_auc_score(yv, m.decision_function(Xv)), abs=1e-12)
    # one epoch less from the same seed reproduces the previous entry
    m3 = FMClassifier(max_iter=3, scoring="roc_auc", early_stopping=False, batch_size=256,
                      random_state=0).fit(Xtr, ytr, eval_set=(Xv, yv))
    assert m3.history_["val_score"] == h[:3]


def test_early_stopping_on_a_score_keeps_its_best_epoch(clicks):
    Xtr, ytr, Xv, yv = clicks
    # a large step overfits quickly, so the score peaks and falls
    m = FMClassifier(max_iter=40, scoring="roc_auc", early_stopping=True, n_iter_no_change=3,
                     learning_rate=0.05, lr_decay=0.0, l2_reg_w=0.0, l2_reg_v=0.0,
                     batch_size=64, random_state=0).fit(Xtr, ytr, eval_set=(Xv, yv))
    h = np.array(m.history_["val_score"])
    best = int(np.argmax(h))
    assert m.n_iter_ < 40 and m.n_iter_ == best + 1 + 3
    assert roc_auc_score(yv, m.decision_function(Xv)) == pytest.approx(h[best], abs=1e-12)
    # the loss-monitored run does not keep the same epoch necessarily, but both
    # keep an epoch whose monitored value is their history's best
    ml = FMClassifier(max_iter=40, early_stopping=True, n_iter_no_change=3,
                      learning_rate=0.05, lr_decay=0.0, l2_reg_w=0.0, l2_reg_v=0.0,
                      batch_size=64, random_state=0).fit(Xtr, ytr, eval_set=(Xv, yv))
    assert ml.history_["val_score"] == []
    assert ml.n_iter_ == int(np.argmin(ml.history_["val_loss"])) + 1 + 3


def test_tol_applies_to_the_score(clicks):
    Xtr, ytr, Xv, yv = clicks
    # no epoch improves AUC by a whole point: stop after n_iter_no_change + 1
    m = FMClassifier(max_iter=30, scoring="roc_auc", early_stopping=True, tol=1.0,
                     n_iter_no_change=2, random_state=0).fit(Xtr, ytr, eval_set=(Xv, yv))
    assert m.n_iter_ == 3
    assert roc_auc_score(yv, m.decision_function(Xv)) == pytest.approx(
        m.history_["val_score"][0], abs=1e-12)


def test_score_on_the_validation_fraction_split_matches_the_loss(ratings):
    Xtr, _, ytr, _ = ratings
    m = FMRegressor(max_iter=3, scoring="neg_root_mean_squared_error", early_stopping=True,
                    clip_predictions=False, random_state=0).fit(Xtr, ytr)
    # the squared loss is ½·(ŷ − y)²: RMSE = √(2·loss) on the same held-out rows
    np.testing.assert_allclose(-np.array(m.history_["val_score"]),
                               np.sqrt(2 * np.array(m.history_["val_loss"])), rtol=1e-5)


def test_callable_scorer_and_bad_scoring(ratings):
    Xtr, Xv, ytr, yv = ratings
    mae = make_scorer(mean_absolute_error, greater_is_better=False)
    m = FMRegressor(max_iter=2, scoring=mae, random_state=0).fit(Xtr, ytr, eval_set=(Xv, yv))
    assert m.history_["val_score"][-1] == pytest.approx(-mean_absolute_error(yv, m.predict(Xv)))
    with pytest.raises(ValueError, match="scoring='no_such_metric'"):
        FMRegressor(scoring="no_such_metric").fit(Xtr, ytr)
    with pytest.raises(ValueError, match="early_stopping must be"):
        FMRegressor(early_stopping="sometimes").fit(Xtr, ytr)


def test_early_stopping_auto_switches_on_above_the_row_count():
    small = make_ratings(AUTO_EARLY_STOPPING_ROWS, n_users=50, n_items=40, n_context=(),
                         random_state=0)
    m = FMRegressor(max_iter=2, early_stopping="auto", random_state=0).fit(small.X, small.y)
    assert m.history_["val_loss"] == []
    big = make_ratings(AUTO_EARLY_STOPPING_ROWS + 1, n_users=50, n_items=40, n_context=(),
                       random_state=0)
    m = FMRegressor(max_iter=2, early_stopping="auto", random_state=0).fit(big.X, big.y)
    assert len(m.history_["val_loss"]) == 2
    m = FMRegressor(max_iter=2, early_stopping=False, random_state=0).fit(big.X, big.y)
    assert m.history_["val_loss"] == []


def _extrapolating(ratings):
    """Star ratings in 1..5 and inputs on which a regressor's raw output
    leaves that range (values scaled up)."""
    Xtr, Xv, ytr, _ = ratings
    return Xtr, np.clip(np.round(ytr), 1, 5), Xv * 3.0


def test_predictions_are_clipped_to_the_training_range(ratings):
    Xtr, ytr, Xbig = _extrapolating(ratings)
    m = FMRegressor(max_iter=5, random_state=0).fit(Xtr, ytr)
    assert m.target_range_ == (float(ytr.min()), float(ytr.max()))
    raw = m.set_params(clip_predictions=False).predict(Xbig)
    assert (raw < ytr.min()).any() or (raw > ytr.max()).any()
    clipped = m.set_params(clip_predictions=True).predict(Xbig)
    np.testing.assert_array_equal(clipped, np.clip(raw, ytr.min(), ytr.max()))


def test_clipping_survives_save_and_load(ratings, tmp_path):
    Xtr, ytr, Xbig = _extrapolating(ratings)
    m = FMRegressor(max_iter=3, random_state=0).fit(Xtr, ytr)
    m.save(tmp_path / "m.npz")
    m2 = load(tmp_path / "m.npz")
    assert m2.target_range_ == m.target_range_ and m2.clip_predictions
    np.testing.assert_array_equal(m2.predict(Xbig), m.predict(Xbig))
    m.set_params(clip_predictions=False).save(tmp_path / "raw.npz")
    m3 = load(tmp_path / "raw.npz")
    assert not m3.clip_predictions
    np.testing.assert_array_equal(m3.predict(Xbig), m.predict(Xbig))


def test_partial_fit_widens_the_range(ratings):
    Xtr, ytr, _ = _extrapolating(ratings)
    m = FMRegressor(random_state=0).partial_fit(Xtr, ytr)
    m.partial_fit(Xtr[:10], np.full(10, 100.0))
    assert m.target_range_ == (float(ytr.min()), 100.0)


def test_scoring_predicts_the_validation_set_once_per_epoch(clicks, monkeypatch):
    """With scoring and an eval_set, each epoch's validation loss and score
    come from one prediction of the validation rows; the user's model is
    left without the scorer's cached predictions."""
    from fmnumba import cpu
    Xtr, ytr, Xv, yv = clicks
    sizes = []
    real = cpu.predict_csr

    def spy(X, w0, P, out):
        sizes.append(out.shape[0])
        return real(X, w0, P, out)

    monkeypatch.setattr(cpu, "predict_csr", spy)
    m = FMClassifier(max_iter=3, scoring="roc_auc", early_stopping=False, batch_size=256,
                     random_state=0).fit(Xtr, ytr, eval_set=(Xv, yv))
    assert sizes.count(Xv.shape[0]) == 3
    assert "_known_decision" not in m.__dict__
    assert m.history_["val_score"][-1] == pytest.approx(
        roc_auc_score(yv, m.decision_function(Xv)), abs=1e-12)
