"""scikit-learn estimators: validate, run the training loop, hold fitted state."""
from contextlib import closing

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d

from . import _validation as validation
from ._model_file import save_model
from .backend import get_kernels
from .losses import LOSS_CODES
from .training import FMState, TrainConfig, kernel_weights, numba_threads, predict_raw, train


class _BaseFM(BaseEstimator):
    """Shared parameters and machinery of FMRegressor and FMClassifier."""

    _valid_losses = ()

    def __init__(self, n_factors=8, *, loss="squared", solver="adam",
                 learning_rate=0.01, lr_decay=1.0, max_iter=30, batch_size=256,
                 l2_reg_w=0.03, l2_reg_v=0.03, init_std=0.01, tol=None,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=5,
                 warm_start=False, random_state=None, n_jobs=None, device="cpu",
                 dtype=np.float32, verbose=0, on_divergence="raise", groups=None,
                 scoring=None):
        self.n_factors = n_factors
        self.loss = loss
        self.solver = solver
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.l2_reg_w = l2_reg_w
        self.l2_reg_v = l2_reg_v
        self.init_std = init_std
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.device = device
        self.dtype = dtype
        self.verbose = verbose
        self.on_divergence = on_divergence
        self.groups = groups
        self.scoring = scoring

    # --- fitted views -------------------------------------------------
    @property
    def coef_(self):
        """Linear weights w, shape (n_features,): a view of the table P."""
        check_is_fitted(self, "_state")
        return self._state.P[:, 0]

    @property
    def factors_(self):
        """Factor matrix V, shape (n_features, n_factors): a view of P."""
        check_is_fitted(self, "_state")
        return self._state.P[:, 1:]

    @property
    def intercept_(self):
        """Global bias w0 (float)."""
        check_is_fitted(self, "_state")
        return float(self._state.bias_state[0])

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_state")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # --- training -----------------------------------------------------
    def _encode_y(self, y, n_rows, fitting, dtype, classes=None, name="y"):
        """y checked and encoded for the loss (float64, (n_rows,)); dtype:
        the model's."""
        raise NotImplementedError

    def _init_w0(self, y, sw):
        raise NotImplementedError

    def _config(self, n_features, dtype, early_stopping=False):
        """The TrainConfig of this fit, L2 strengths in the model's dtype."""
        def l2(name, value):
            return validation.per_feature_l2(name, value, self.groups, n_features,
                                             getattr(self, "feature_names_in_", None)).astype(dtype)

        return TrainConfig(
            loss_code=LOSS_CODES[self.loss], solver=self.solver,
            learning_rate=float(self.learning_rate), lr_decay=float(self.lr_decay),
            batch_size=int(self.batch_size),
            l2_reg_w=l2("l2_reg_w", self.l2_reg_w), l2_reg_v=l2("l2_reg_v", self.l2_reg_v),
            tol=self.tol, n_iter_no_change=int(self.n_iter_no_change),
            early_stopping=bool(early_stopping), on_divergence=self.on_divergence,
            verbose=int(self.verbose))

    def _fit(self, X, y, sample_weight, eval_set, max_iter, partial, classes=None):
        """Validate, (re)initialise unless resuming, and run max_iter epochs
        (None: self.max_iter)."""
        saved = {a: self.__dict__[a] for a in _FIT_ATTRS if a in self.__dict__}
        try:  # a call rejected by validation leaves a fitted model as it was
            validation.check_params(self, self._valid_losses)
            self._check_monitor_params()
            dtype = validation.resolve_dtype(self.dtype)
            max_iter = int(self.max_iter) if max_iter is None else max_iter
            resume = hasattr(self, "_state") and (partial or self.warm_start)
            Xc = validation.check_X(self, X, reset=not resume, dtype=dtype)
            y_enc = self._encode_y(y, Xc.shape[0], fitting=not resume, dtype=dtype,
                                   classes=classes)
            sw = validation.check_sample_weight(sample_weight, Xc.shape[0])
            Xc, y_enc, sw = validation.drop_zero_weight_rows(Xc, y_enc, sw, dtype)
            if resume and (self._state.P.dtype != dtype
                           or self._state.P.shape[1] != 1 + self.n_factors):
                raise ValueError("warm_start/partial_fit: n_factors and dtype must match the "
                                 "fitted model; set warm_start=False to start over.")
            if not hasattr(self, "_rng") or not resume:
                self._rng = check_random_state(self.random_state)
            rng = np.random.default_rng(self._rng.randint(0, 2**31 - 1))
            val = None
            early_stopping = self._early_stopping_on(Xc.shape[0], partial)
            if eval_set is not None:
                val = self._check_eval_set(eval_set, dtype)
            elif early_stopping:
                Xc, y_enc, sw, val = _split_validation(Xc, y_enc, sw, self.validation_fraction,
                                                       rng)
            kern = get_kernels(self.device, Xc.nnz)
            if not resume:
                validation.check_model_size(Xc.shape[1], int(self.n_factors), dtype, self.solver)
            cfg = self._config(Xc.shape[1], dtype, early_stopping=early_stopping)
            scorer = self._validation_scorer(val)
        except BaseException:
            for a in _FIT_ATTRS:
                self.__dict__.pop(a, None)
            self.__dict__.update(saved)
            raise
        if not resume:
            self._state = FMState.init(Xc.shape[1], int(self.n_factors), dtype,
                                       float(self.init_std), self._init_w0(y_enc, sw), rng)
            self.history_ = {"train_loss": [], "val_loss": [], "val_score": [], "time_s": []}
        self._record_target_range(y_enc, resume)
        self._train(kern, Xc, y_enc.astype(dtype), kernel_weights(sw, cfg.solver, dtype), cfg,
                    max_iter, rng, val, scorer)
        return self

    def _train(self, kern, X, y, sw, cfg, max_iter, rng, val, scorer=None):
        """Run the training loop on self._state, appending each epoch to
        history_ as it completes (so an interrupted or diverged fit keeps
        the epochs before it); n_iter_ is the number of epochs recorded."""
        hist = self.history_
        seconds_before = hist["time_s"][-1] if hist["time_s"] else 0.0
        try:
            with closing(train(kern, X, y, sw, self._state, cfg, max_iter, rng,
                               n_jobs=self.n_jobs, val=val,
                               epochs_done=len(hist["train_loss"]), scorer=scorer,
                               score_name=self.scoring)) as epochs:
                for epoch in epochs:
                    hist["train_loss"].append(epoch.train_loss)
                    if epoch.val_loss is not None:
                        hist["val_loss"].append(epoch.val_loss)
                    if epoch.val_score is not None:
                        hist.setdefault("val_score", []).append(epoch.val_score)
                    hist["time_s"].append(seconds_before + epoch.seconds)
        finally:
            self.n_iter_ = len(hist["train_loss"])

    # --- early stopping and the monitored metric ------------------------
    def _check_monitor_params(self):
        """early_stopping and scoring are valid (clear errors at fit)."""
        if not (isinstance(self.early_stopping, (bool, np.bool_)) or self.early_stopping == "auto"):
            raise ValueError(f"early_stopping must be True, False or 'auto' (on above "
                             f"{AUTO_EARLY_STOPPING_ROWS} rows), got {self.early_stopping!r}.")
        if self.scoring is not None:
            _scorer(self, self.scoring)

    def _early_stopping_on(self, n_rows, partial):
        """Whether this fit stops early: never in partial_fit; 'auto' means
        on when the training set has more than AUTO_EARLY_STOPPING_ROWS rows."""
        if partial:
            return False
        if isinstance(self.early_stopping, str):
            return n_rows > AUTO_EARLY_STOPPING_ROWS
        return bool(self.early_stopping)

    def _decode_y(self, y_enc):
        """Targets as the user gave them, from the loss's encoding."""
        return y_enc

    def _validation_scorer(self, val):
        """A callable () -> float: `scoring` on the validation rows for the
        current parameters, or None without scoring or validation set."""
        if self.scoring is None or val is None:
            return None
        scorer = _scorer(self, self.scoring)
        Xv, yv, swv = val[0], self._decode_y(val[1]), val[2]
        kw = {} if np.all(swv == swv[0]) else {"sample_weight": swv}
        return lambda: scorer(self, Xv, yv, **kw)

    def _record_target_range(self, y_enc, resume):
        """Regression keeps the range of its training targets (see
        FMRegressor's clip_predictions)."""

    def _check_eval_set(self, eval_set, dtype):
        """(X_val, y_val, sample_weight_val) checked like the training data."""
        if isinstance(eval_set, list) and len(eval_set) == 1:
            eval_set = eval_set[0]
        if not isinstance(eval_set, tuple) or len(eval_set) not in (2, 3):
            raise ValueError("eval_set must be a tuple (X_val, y_val) or "
                             "(X_val, y_val, sample_weight_val).")
        Xv = validation.check_X(self, eval_set[0], reset=False, dtype=dtype, name="eval_set[0]")
        yv = self._encode_y(eval_set[1], Xv.shape[0], fitting=False, dtype=dtype,
                            name="eval_set[1]")
        swv = validation.check_sample_weight(eval_set[2] if len(eval_set) == 3 else None, Xv.shape[0])
        if Xv.shape[0] == 0:
            raise ValueError("eval_set[0] has 0 rows; pass a non-empty validation set.")
        return Xv, yv, swv

    def fit(self, X, y, sample_weight=None, eval_set=None):
        """Train for up to max_iter epochs (from scratch unless warm_start).

        X: (n_samples, n_features) sparse or dense; y: (n_samples,);
        sample_weight: (n_samples,) non-negative; eval_set: (X_val, y_val)
        whose loss is recorded in history_ and used by early_stopping.
        """
        return self._fit(X, y, sample_weight, eval_set, None, partial=False)

    def partial_fit(self, X, y, sample_weight=None, eval_set=None, **kw):
        """One epoch over (X, y), continuing from the fitted state (Adam
        moments and step count kept)."""
        return self._fit(X, y, sample_weight, eval_set, 1, partial=True, **kw)

    def _decision(self, X):
        """Raw model output ŷ, shape (n_samples,), float64."""
        check_is_fitted(self, "_state")
        Xc = validation.check_X(self, X, reset=False, dtype=self._state.P.dtype)
        kern = get_kernels("cpu")
        with numba_threads(self.n_jobs):
            out = predict_raw(kern, Xc, self._state)
        if not np.all(np.isfinite(out)):
            bad = int(np.argmin(np.isfinite(out)))
            raise ValueError(
                f"X: the prediction for row {bad} overflowed {self._state.P.dtype} "
                "(values too large for the model). Scale X's values or use dtype=np.float64.")
        return out.astype(np.float64)

    def save(self, path):
        """Write the fitted model to `path` (.npz + JSON metadata, no pickle)."""
        save_model(self, path)


# set by validation in _fit; restored when a call is rejected
_FIT_ATTRS = ("n_features_in_", "feature_names_in_", "classes_", "_rng")
# early_stopping="auto" holds out validation_fraction and stops early above
# this many training rows (as scikit-learn's HistGradientBoosting does)
AUTO_EARLY_STOPPING_ROWS = 10_000


def _scorer(est, scoring):
    """scikit-learn's scorer for `scoring` (a scorer name or callable)."""
    from sklearn.metrics import check_scoring
    try:
        return check_scoring(est, scoring=scoring)
    except (ValueError, TypeError) as e:
        raise ValueError(f"scoring={scoring!r} is not a scikit-learn scorer ({e}). Pass a name "
                         "from sklearn.metrics.get_scorer_names(), e.g. 'roc_auc', "
                         "'neg_log_loss' or 'neg_root_mean_squared_error', or a callable "
                         "scorer(estimator, X, y).") from None


def _split_validation(X, y, sw, fraction, rng):
    n = X.shape[0]
    n_val = int(np.ceil(fraction * n))
    if n_val < 1 or n - n_val < 1:
        raise ValueError(f"early_stopping needs at least 2 samples to split off a "
                         f"validation_fraction={fraction} (got {n}).")
    is_val = np.zeros(n, dtype=bool)
    is_val[rng.permutation(n)[:n_val]] = True
    tr = ~is_val
    return (validation.take_rows(X, tr), y[tr], sw[tr],
            (validation.take_rows(X, is_val), y[is_val], sw[is_val]))


class FMRegressor(RegressorMixin, _BaseFM):
    """Factorization Machine regressor (squared loss) on sparse or dense X.

    ŷ(x) = w0 + Σ_i w_i x_i + Σ_{i<j} <v_i, v_j> x_i x_j, trained with lazy
    mini-batch Adam (default) or Hogwild SGD. See fmnumba's README for the
    measured defaults.
    """

    _valid_losses = ("squared",)

    def __init__(self, n_factors=8, *, loss="squared", solver="adam",
                 learning_rate=0.01, lr_decay=1.0, max_iter=30, batch_size=256,
                 l2_reg_w=0.03, l2_reg_v=0.03, init_std=0.01, tol=None,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=5,
                 warm_start=False, random_state=None, n_jobs=None, device="cpu",
                 dtype=np.float32, verbose=0, on_divergence="raise", groups=None,
                 scoring=None, clip_predictions=True):
        super().__init__(
            n_factors, loss=loss, solver=solver, learning_rate=learning_rate,
            lr_decay=lr_decay, max_iter=max_iter, batch_size=batch_size,
            l2_reg_w=l2_reg_w, l2_reg_v=l2_reg_v, init_std=init_std, tol=tol,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change, warm_start=warm_start,
            random_state=random_state, n_jobs=n_jobs, device=device, dtype=dtype,
            verbose=verbose, on_divergence=on_divergence, groups=groups, scoring=scoring)
        self.clip_predictions = clip_predictions

    def _encode_y(self, y, n_rows, fitting, dtype, classes=None, name="y"):
        return validation.check_y_numeric(y, n_rows, name=name, dtype=dtype)

    def _init_w0(self, y, sw):
        return float(np.dot(sw, y) / sw.sum())

    def _check_monitor_params(self):
        super()._check_monitor_params()
        if not isinstance(self.clip_predictions, (bool, np.bool_)):
            raise ValueError(f"clip_predictions must be True or False, got "
                             f"{self.clip_predictions!r}.")

    def _record_target_range(self, y_enc, resume):
        lo, hi = float(np.min(y_enc)), float(np.max(y_enc))
        if resume and getattr(self, "target_range_", None) is not None:
            lo, hi = min(lo, self.target_range_[0]), max(hi, self.target_range_[1])
        self.target_range_ = (lo, hi)

    def predict(self, X):
        """Predicted targets ŷ, shape (n_samples,), float64; with
        clip_predictions (the default) clipped to target_range_, the range
        of the targets seen in training, as libFM does."""
        out = self._decision(X)
        rng = getattr(self, "target_range_", None)
        if self.clip_predictions and rng is not None:
            np.clip(out, rng[0], rng[1], out=out)
        return out


class FMClassifier(ClassifierMixin, _BaseFM):
    """Factorization Machine binary classifier (logistic or hinge loss).

    Labels may be any two classes (classes_); predict returns them, and
    predict_proba (logistic loss only) returns [P(classes_[0]), P(classes_[1])].
    """

    _valid_losses = ("logistic", "hinge")

    def __init__(self, n_factors=8, *, loss="logistic", solver="adam",
                 learning_rate=0.02, lr_decay=1.0, max_iter=30, batch_size=256,
                 l2_reg_w=0.003, l2_reg_v=0.003, init_std=0.01, tol=None,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=5,
                 warm_start=False, random_state=None, n_jobs=None, device="cpu",
                 dtype=np.float32, verbose=0, on_divergence="raise", groups=None,
                 scoring=None):
        super().__init__(
            n_factors, loss=loss, solver=solver, learning_rate=learning_rate,
            lr_decay=lr_decay, max_iter=max_iter, batch_size=batch_size,
            l2_reg_w=l2_reg_w, l2_reg_v=l2_reg_v, init_std=init_std, tol=tol,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change, warm_start=warm_start,
            random_state=random_state, n_jobs=n_jobs, device=device, dtype=dtype,
            verbose=verbose, on_divergence=on_divergence, groups=groups, scoring=scoring)

    def _encode_y(self, y, n_rows, fitting, dtype, classes=None, name="y"):
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             f"y is None ({name}): fit needs a label for every row of X.")
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D array of labels, got shape {y.shape}.")
        if y.shape[0] != n_rows:
            raise ValueError(f"{name} has {y.shape[0]} labels but X has {n_rows} rows; "
                             "pass one label per row of X.")
        if y.dtype.kind == "c":
            raise ValueError(f"{name}: Complex data not supported as labels; pass two classes.")
        if y.dtype.kind == "O" and any(isinstance(v, float) and not np.isfinite(v) for v in y):
            raise ValueError(f"{name} contains NaN or inf (missing labels); remove those rows.")
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError(f"{name} contains NaN or inf; remove those rows.")
        if y.dtype.kind == "O" and len({type(v) for v in y[:10_000]}) > 1:
            try:
                np.unique(y)
            except TypeError:
                raise TypeError(f"{name} mixes label types ({sorted({type(v).__name__ for v in y})}) "
                                "that cannot be compared; convert the labels to one type, "
                                "e.g. y.astype(str).") from None
        if fitting:
            if classes is not None:
                cls = np.unique(np.asarray(classes))
            else:
                kind = type_of_target(y, input_name=name)
                if kind == "continuous":
                    raise ValueError(f"Unknown label type: {name} holds continuous values; "
                                     "FMClassifier needs two classes (use FMRegressor for "
                                     "regression).")
                cls = np.unique(y)
            if cls.shape[0] != 2:
                raise ValueError(
                    f"{name}: FMClassifier needs exactly 2 classes, got {cls.shape[0]} "
                    f"class{'es' if cls.shape[0] != 1 else ''} ({cls[:5].tolist()}). "
                    + ("Add samples of a second class." if cls.shape[0] < 2 else
                       "Only binary classification is supported. For more classes wrap "
                       "it in sklearn.multiclass.OneVsRestClassifier."))
            self.classes_ = cls
        pos = np.isin(y, self.classes_)
        if not pos.all():
            bad = y[~pos][0]
            bad = bad.item() if isinstance(bad, np.generic) else bad
            raise ValueError(f"{name} contains the label {bad!r}, which is not one of the "
                             f"classes seen at fit {self.classes_.tolist()}.")
        return np.where(y == self.classes_[1], 1.0, -1.0)

    def _decode_y(self, y_enc):
        return self.classes_[(np.asarray(y_enc) > 0).astype(np.intp)]

    def _init_w0(self, y, sw):
        p = float(np.dot(sw, y > 0) / sw.sum())
        if self.loss == "logistic":
            p = min(max(p, 1e-6), 1 - 1e-6)
            return float(np.log(p / (1 - p)))
        return 2 * p - 1

    def partial_fit(self, X, y, sample_weight=None, eval_set=None, classes=None):
        """One epoch on (X, y), continuing from the fitted state. The first
        call takes the two labels from `classes`, or from y when omitted."""
        return super().partial_fit(X, y, sample_weight, eval_set, classes=classes)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def decision_function(self, X):
        """Raw model output ŷ, shape (n_samples,), float64: > 0 means classes_[1]."""
        return self._decision(X)

    def predict(self, X):
        """Predicted class labels, shape (n_samples,)."""
        d = self.decision_function(X)
        return self.classes_[(d > 0).astype(np.intp)]

    def _has_proba(self):
        if self.loss != "logistic":
            raise AttributeError(f"predict_proba is not available for loss={self.loss!r}; "
                                 "use loss='logistic'.")
        return True

    @available_if(_has_proba)
    def predict_proba(self, X):
        """Class probabilities [1 − σ(ŷ), σ(ŷ)], shape (n_samples, 2); logistic loss only."""
        d = self.decision_function(X)
        p1 = 0.5 * (1.0 + np.tanh(0.5 * d))  # σ(d) without overflow
        return np.column_stack([1.0 - p1, p1])

    @available_if(_has_proba)
    def predict_log_proba(self, X):
        """log of predict_proba, computed stably; logistic loss only."""
        d = self.decision_function(X)
        return -np.column_stack([np.logaddexp(0, d), np.logaddexp(0, -d)])
