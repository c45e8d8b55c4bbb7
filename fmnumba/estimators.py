"""scikit-learn estimators: validate, run the training loop, hold fitted state."""
import copy
from contextlib import closing

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d

from . import _validation as validation
from . import bayes
from ._fitted import FittedViews
from ._model_file import save_model
from .backend import get_kernels
from .losses import LOSS_CODES
from .training import (DivergenceError, FMState, TrainConfig, check_init_std, check_saveable,
                       kernel_weights, numba_threads, predict_raw, train)


def store_params(est, params):
    """Set each constructor argument (params: the constructor's locals())
    as an attribute of est, as scikit-learn's get_params expects."""
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(est, name, value)


class _BaseFM(FittedViews, BaseEstimator):
    """Shared parameters and machinery of FMRegressor and FMClassifier."""

    _valid_losses = ()

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
        (None: self.max_iter). A fresh fit builds its state aside and swaps
        it in when it returns; see _FitTransaction for what an exception
        leaves."""
        with _FitTransaction(self) as tx:
            validation.check_params(self, self._valid_losses)
            self._check_monitor_params()
            dtype = validation.resolve_dtype(self.dtype)
            check_init_std(bayes.init_std_of(self), dtype)
            if max_iter is None:
                max_iter = (bayes.default_max_iter(self.solver) if self.max_iter is None
                            else int(self.max_iter))
            bayesian = self.solver in bayes.BAYES_SOLVERS
            if bayesian:
                bayes.check_solver_use(self, self.solver, eval_set, partial,
                                       isinstance(self, ClassifierMixin))
            resume = hasattr(self, "_state") and (partial or self.warm_start)
            tx.resume = resume
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
            tx.keep_rng(self._rng)
            rng = np.random.default_rng(self._rng.randint(0, 2**31 - 1))
            val, rows = None, None
            early_stopping = not bayesian and self._early_stopping_on(Xc.shape[0], partial)
            if eval_set is not None:
                val = self._check_eval_set(eval_set, dtype)
            elif early_stopping:
                rows, val = _split_validation(Xc, y_enc, sw, self.validation_fraction, rng)
            kern = get_kernels(self.device, Xc.nnz)
            if bayesian:
                if not resume:
                    validation.check_model_size(Xc.shape[1], int(self.n_factors), dtype,
                                                self.solver)
                bayes.sample_schedule(self.n_burnin, self.n_kept_samples, max_iter, Xc.shape[1],
                                      int(self.n_factors), dtype)  # bad values fail here
                self._fit_bayes(tx, Xc, y_enc, sw, dtype, rng, resume, max_iter, val)
                return self
            validation.check_model_size(
                Xc.shape[1], int(self.n_factors), dtype, self.solver, n_rows=Xc.shape[0],
                batch_nnz=validation.max_batch_nnz(Xc, self.batch_size),
                batch_size=int(self.batch_size),
                split_nnz=0 if val is None else val[0].nnz,
                existing=0 if not resume else (1 if self._state.M is None else 3),
                held=0 if resume else _held_bytes(self))
            cfg = self._config(Xc.shape[1], dtype, early_stopping=early_stopping)
            self.__dict__.pop("_chain", None)
            if resume:
                state, history = self._state, self.history_
            else:
                state = FMState.init(Xc.shape[1], int(self.n_factors), dtype,
                                     bayes.init_std_of(self), self._init_w0(y_enc, sw), rng)
                history = {"train_loss": [], "val_loss": [], "val_score": [], "time_s": []}
            tx.started(state, history)
            self._record_target_range(y_enc if rows is None else y_enc[rows], resume)
            # the scorer predicts with the state being trained, not the one a
            # refit keeps until it returns
            model = copy.copy(self)
            model._state = state
            scorer = model._validation_scorer(val)
            self._train(kern, Xc, y_enc.astype(dtype),
                        kernel_weights(sw, cfg.solver, dtype, rows), cfg, max_iter, rng, val,
                        state, history, rows, scorer)
        return self

    def _fit_bayes(self, tx, Xc, y_enc, sw, dtype, rng, resume, max_iter, val):
        """solver mcmc / als: bayes.fit_estimator sets _state, _chain and
        history_ itself; the transaction keeps or restores them as for the
        gradient solvers."""
        before = len(self.history_["train_loss"]) if resume else 0
        self._record_target_range(y_enc, resume)
        try:
            bayes.fit_estimator(self, Xc, y_enc, sw, dtype, rng, resume, max_iter,
                                isinstance(self, ClassifierMixin), val)
        finally:
            if hasattr(self, "_state") and getattr(self, "history_", None) is not None:
                tx.started(self._state, self.history_)
                tx.epochs_before = before

    def _train(self, kern, X, y, sw, cfg, max_iter, rng, val, state, history, rows=None,
               scorer=None):
        """Run the training loop on `state`, appending each epoch to
        `history` as it completes (every list of an epoch or none of them,
        so an interrupted or diverged fit keeps the epochs before it)."""
        hist = history
        seconds_before = hist["time_s"][-1] if hist["time_s"] else 0.0
        with closing(train(kern, X, y, sw, state, cfg, max_iter, rng,
                           n_jobs=self.n_jobs, val=val,
                           epochs_done=len(hist["train_loss"]), scorer=scorer,
                           score_name=self.scoring, rows=rows)) as epochs:
            for epoch in epochs:
                _append_epoch(hist, epoch, seconds_before)

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
        """A callable (ŷ) -> float: `scoring` on the validation rows for the
        current parameters, given their raw predictions there (which the
        scorer's calls reuse instead of predicting again), or None without
        scoring or validation set."""
        if self.scoring is None or val is None:
            return None
        scorer = _scorer(self, self.scoring)
        Xv, yv, swv = val[0], self._decode_y(val[1]), val[2]
        kw = {} if np.all(swv == swv[0]) else {"sample_weight": swv}

        def score(raw):
            self._known_decision = (Xv, raw)
            try:
                return scorer(self, Xv, yv, **kw)
            finally:
                del self._known_decision
        return score

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
        known = self.__dict__.get("_known_decision")  # set while scoring a validation set
        dtype = self._state.P.dtype
        if known is not None and known[0] is X:
            out = known[1]
        elif getattr(self, "_chain", None) is not None:
            return self._posterior(validation.check_X(self, X, reset=False, dtype=dtype))[0]
        else:
            Xc = validation.check_X(self, X, reset=False, dtype=dtype, values=False)
            kern = get_kernels("cpu")
            with numba_threads(self.n_jobs):
                out = predict_raw(kern, Xc, self._state)
        if not np.all(np.isfinite(out)):
            validation.check_X(self, X, reset=False, dtype=dtype)  # a NaN or inf in X?
            bad = int(np.argmin(np.isfinite(out)))
            raise ValueError(
                f"X: the prediction for row {bad} overflowed {dtype} "
                "(values too large for the model). Scale X's values or use dtype=np.float64.")
        return out.astype(np.float64)

    def _posterior(self, Xc):
        """mcmc: (mean, var) over the kept samples for canonical Xc (see
        bayes.posterior); the classifier's mean is turned into Φ⁻¹(P(y = 1))."""
        mean, var = bayes.posterior(self, Xc)
        if not np.all(np.isfinite(mean)):
            bad = int(np.argmin(np.isfinite(mean)))
            raise ValueError(
                f"X: the prediction for row {bad} overflowed {self._state.P.dtype} "
                "(values too large for the model). Scale X's values or use dtype=np.float64.")
        return (bayes.probit_score(mean), mean) if hasattr(self, "classes_") else (mean, var)

    def save(self, path):
        """Write the fitted model to `path` (.npz + JSON metadata, no pickle)."""
        check_is_fitted(self, "_state")
        check_saveable(self._state, self.history_, self.n_iter_)
        save_model(self, path)


def _append_epoch(hist, epoch, seconds_before):
    """Append one EpochRecord to history: all of its lists or none."""
    lens = {key: len(v) for key, v in hist.items()}
    try:
        hist["train_loss"].append(epoch.train_loss)
        if epoch.val_loss is not None:
            hist["val_loss"].append(epoch.val_loss)
        if epoch.val_score is not None:
            hist.setdefault("val_score", []).append(epoch.val_score)
        hist["time_s"].append(seconds_before + epoch.seconds)
    except BaseException:
        for key in list(hist):
            del hist[key][lens.get(key, 0):]
        raise


def _held_bytes(est):
    """Bytes of the fitted state a fresh fit keeps alive until it returns."""
    st = est.__dict__.get("_state")
    if st is None:
        return 0
    return sum(a.nbytes for a in (st.P, st.M, st.S) if a is not None)


class _FitTransaction:
    """What a fit call leaves when it raises (Ctrl-C, MemoryError, a
    rejected argument, DivergenceError, anything):

    - before any epoch of the call completed, or in a fresh fit of an
      already fitted model: the estimator exactly as it was (every fitted
      attribute, the training state, history_, n_iter_ and the state of
      the random generator it draws from);
    - warm_start / partial_fit after some epochs: those epochs (the state
      as the training loop left it, consistent with history_ and n_iter_);
    - a first fit after some epochs, or stopped by DivergenceError: the
      model of its last completed epoch (the initial one if none completed).

    A fit that returns swaps its new state, history_ and n_iter_ in.
    """

    def __init__(self, est):
        self.est = est
        self.saved = dict(est.__dict__)
        self.resume = False
        self.rngs = []
        self.state = self.history = None

    def keep_rng(self, rs):
        self.rngs.append((rs, rs.get_state()))

    def started(self, state, history):
        self.state, self.history = state, history
        self.epochs_before = len(history["train_loss"])

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        est = self.est
        progressed = self.history is not None and \
            len(self.history["train_loss"]) > self.epochs_before
        # a first fit keeps what training left, even a divergence in epoch 1 (the
        # initial parameters): the guard's contract is a fitted, finite model
        first = "_state" not in self.saved and self.history is not None and (
            progressed or (kind is not None and issubclass(kind, DivergenceError)))
        if kind is None or (progressed and self.resume) or first:
            est._state, est.history_ = self.state, self.history
            est.n_iter_ = len(self.history["train_loss"])
            return False
        est.__dict__.clear()
        est.__dict__.update(self.saved)
        for rs, st in self.rngs:
            rs.set_state(st)
        return False
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

_BAYES_DOC = """
    solver="mcmc" (Bayesian FM, Gibbs sampling as libFM's MCMC and myFM):
    hierarchical priors (per group of `groups`) are sampled, so there is no
    learning rate or L2 strength to tune: learning_rate, lr_decay,
    batch_size, l2_reg_w and l2_reg_v are ignored. max_iter counts sweeps
    (None: 200); the first n_burnin sweeps (None: 5) are not kept and
    n_kept_samples (None: all the rest, thinned to at most 1 GiB) samples
    of (w0, w, V), evenly spaced, are averaged by predict. They take
    n_kept_samples × n_features × (1 + n_factors) × itemsize bytes
    (MemoryError before allocating when that cannot fit). coef_, factors_
    and intercept_ hold the chain's last sample; warm_start=True continues
    the chain. Sample weights are frequency weights in the likelihood.
    solver="als" (FMRegressor; libFM's and fastFM's ALS): exact coordinate
    minimisation of ½ Σ s (y − ŷ)² + ½ λ_w ‖w‖² + ½ λ_v ‖V‖², L2 strengths
    per sum of losses; max_iter counts sweeps (None: 100); learning_rate,
    lr_decay and batch_size are ignored. With eval_set, history_
    ["val_loss"] records each sweep's validation loss (mcmc: of the running
    average of the predictions since burn-in). Neither takes early_stopping
    or partial_fit, and both run on the CPU.
    """


def _split_validation(X, y, sw, fraction, rng):
    """Split off a validation_fraction of the rows: (ids of the training
    rows, sorted int64; (X_val, y_val, sw_val)). The training rows are not
    copied; the loop visits them in X."""
    n = X.shape[0]
    n_val = int(np.ceil(fraction * n))
    if n_val < 1 or n - n_val < 1:
        raise ValueError(f"early_stopping needs at least 2 samples to split off a "
                         f"validation_fraction={fraction} (got {n}).")
    is_val = np.zeros(n, dtype=bool)
    is_val[rng.permutation(n)[:n_val]] = True
    return (np.flatnonzero(~is_val).astype(np.int64),
            (validation.take_rows(X, is_val), y[is_val], sw[is_val]))


class FMRegressor(RegressorMixin, _BaseFM):
    """Factorization Machine regressor (squared loss) on sparse or dense X.

    ŷ(x) = w0 + Σ_i w_i x_i + Σ_{i<j} <v_i, v_j> x_i x_j, trained with lazy
    mini-batch Adam (default), Hogwild SGD, Gibbs sampling (solver="mcmc")
    or ALS (solver="als"). See fmnumba's README for the measured defaults.
    """

    _valid_losses = ("squared",)

    def __init__(self, n_factors=8, *, loss="squared", solver="adam",
                 learning_rate=0.01, lr_decay=1.0, max_iter=None, batch_size=256,
                 l2_reg_w=0.03, l2_reg_v=0.03, init_std=None, tol=None,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=5,
                 warm_start=False, random_state=None, n_jobs=None, device="cpu",
                 dtype=np.float32, verbose=0, on_divergence="raise", groups=None,
                 scoring=None, clip_predictions=True, n_burnin=None, n_kept_samples=None):
        store_params(self, locals())

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

    def predict(self, X, return_std=False):
        """Predicted targets ŷ, shape (n_samples,), float64; with
        clip_predictions (the default) clipped to target_range_, the range
        of the targets seen in training, as libFM does.

        return_std=True (solver="mcmc" only): also the posterior predictive
        standard deviation, the spread of the kept samples' predictions plus
        the noise variance 1/α (as BayesianRidge's return_std).
        """
        std = None
        if not return_std:
            out = self._decision(X)
        else:
            check_is_fitted(self, "_state")
            if getattr(self, "_chain", None) is None:
                raise ValueError("return_std=True needs a model fitted with solver='mcmc' "
                                 f"(it has solver={self.solver!r}).")
            Xc = validation.check_X(self, X, reset=False, dtype=self._state.P.dtype)
            out, var = self._posterior(Xc)
            std = np.sqrt(var)
        rng = getattr(self, "target_range_", None)
        if self.clip_predictions and rng is not None:
            np.clip(out, rng[0], rng[1], out=out)
        return out if std is None else (out, std)


FMRegressor.__doc__ += _BAYES_DOC


class FMClassifier(ClassifierMixin, _BaseFM):
    """Factorization Machine binary classifier (logistic or hinge loss).

    Labels may be any two classes (classes_); predict returns them, and
    predict_proba (logistic loss only) returns [P(classes_[0]), P(classes_[1])].
    With solver="mcmc" the model is the probit FM (latent targets drawn from
    truncated normals): predict_proba averages Φ(ŷ_s) over the kept samples,
    decision_function is Φ⁻¹ of that probability.
    """

    _valid_losses = ("logistic", "hinge")

    def __init__(self, n_factors=8, *, loss="logistic", solver="adam",
                 learning_rate=0.03, lr_decay=0.5, max_iter=None, batch_size=512,
                 l2_reg_w=0.001, l2_reg_v=0.01, init_std=None, tol=None,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=5,
                 warm_start=False, random_state=None, n_jobs=None, device="cpu",
                 dtype=np.float32, verbose=0, on_divergence="raise", groups=None,
                 scoring=None, n_burnin=None, n_kept_samples=None):
        store_params(self, locals())

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
        if getattr(self, "_chain", None) is not None:
            check_is_fitted(self, "_state")
            Xc = validation.check_X(self, X, reset=False, dtype=self._state.P.dtype)
            p1 = self._posterior(Xc)[1]
            return np.column_stack([1.0 - p1, p1])
        d = self.decision_function(X)
        p1 = 0.5 * (1.0 + np.tanh(0.5 * d))  # σ(d) without overflow
        return np.column_stack([1.0 - p1, p1])

    @available_if(_has_proba)
    def predict_log_proba(self, X):
        """log of predict_proba, computed stably; logistic loss only."""
        if getattr(self, "_chain", None) is not None:
            with np.errstate(divide="ignore"):
                return np.log(self.predict_proba(X))
        d = self.decision_function(X)
        return -np.column_stack([np.logaddexp(0, d), np.logaddexp(0, -d)])


FMClassifier.__doc__ += _BAYES_DOC
