"""DaskFMRegressor and DaskFMClassifier: the single-machine estimators'
parameters and fitted attributes, trained on a Dask cluster (the
conventions of xgboost.dask and lightgbm.dask: dask collections in, dask
arrays out, ``client=None`` meaning the current client, ``to_local()``)."""
import numbers
import time
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .. import _validation as V
from .._fitted import FittedViews
from ..bayes import init_std_of
from ..estimators import FMClassifier, FMRegressor, store_params
from ..losses import LOSS_CODES
from ._inputs import PartSpec, blocks_of, is_dask_frame, partition_classes, vector_blocks
from ._train import Coordinator

from ..training import DivergenceError, FMState, epoch_learning_rate

MODES = ("sync", "local")


@dataclass
class _Config:
    loss_code: int
    solver: str
    learning_rate: float
    lr_decay: float
    batch_size: int
    l2_reg_w: np.ndarray
    l2_reg_v: np.ndarray
    sync_every: int
    device: str
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


def _predict_block(x, model, how):
    if x.shape[0] == 0:
        return np.zeros((0, 2) if how == "predict_proba" else 0)
    return getattr(model, how)(x)


class _DaskFM(FittedViews, BaseEstimator):
    _local_cls = None
    _max_retries = 3
    _on_step = None  # called as f(coordinator, step) after each synchronisation

    # --- helpers -------------------------------------------------------
    def _local_params(self):
        # the sampler's parameters (n_burnin, n_kept_samples) stay at their
        # defaults: the Dask estimators train with adam / adamw only
        names = self._local_cls._get_param_names()
        return {n: getattr(self, n) for n in names if hasattr(self, n)}

    def _client(self):
        if self.client is not None:
            return self.client
        from distributed import get_client
        try:
            return get_client()
        except ValueError:
            raise ValueError("no Dask client: pass client=distributed.Client(...) or create "
                             "one first (it becomes the default).") from None

    def _check_dask_params(self):
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is unknown; choose 'sync' (exact "
                             "data-parallel Adam) or 'local' (approximate, faster).")
        if (isinstance(self.sync_every, bool) or not isinstance(self.sync_every, numbers.Integral)
                or self.sync_every < 1):
            raise ValueError(f"sync_every must be an integer >= 1, got {self.sync_every!r}.")
        if self.solver not in V.ADAM_SOLVERS:
            raise ValueError(f"solver={self.solver!r}: the Dask estimators train with "
                             f"{' or '.join(map(repr, V.ADAM_SOLVERS))}; use one of them.")
        if self.scoring is not None:
            raise ValueError("scoring: the Dask estimators monitor the eval_set loss only; "
                             "leave scoring=None, or score to_local() on held-out data.")
        if self.early_stopping == "auto":
            raise ValueError("early_stopping='auto' is for single-machine fits; pass "
                             "early_stopping=True with an eval_set, or False.")
        if self.mode == "sync" and self.device != "cpu":
            raise ValueError(f"device={self.device!r} with mode='sync': sync mode's gradient "
                             "kernels run on CPU workers; use device='cpu' or mode='local'.")

    def _classes(self, client, y_blocks):
        return None

    def _l2(self, name, value, n_features, X, dtype):
        names = getattr(X, "columns", None)
        names = None if names is None else np.asarray(list(names), dtype=object)
        return V.per_feature_l2(name, value, self.groups, n_features, names).astype(dtype)

    # --- fit -----------------------------------------------------------
    def fit(self, X, y, sample_weight=None, eval_set=None):
        """Train on dask collections: X a dask array chunked by rows (scipy
        sparse or numpy blocks, one chunk along the columns) or a dask
        DataFrame of numeric columns; y, sample_weight 1-D dask arrays or
        Series with X's row partitions; eval_set (X_val, y_val[, sw_val])
        likewise. Partitions are canonicalised and kept on their workers."""
        local = self._local_cls(**self._local_params())
        V.check_params(local, local._valid_losses)
        self._check_dask_params()
        client = self._client()
        dtype = V.resolve_dtype(self.dtype)
        k = int(self.n_factors)
        xb, nf = blocks_of(X, "X")
        yb = vector_blocks(y, len(xb), "y")
        if y is None:
            raise ValueError("fit requires y to be passed, but the target y is None: pass one "
                             "target per row of X.")
        wb = vector_blocks(sample_weight, len(xb), "sample_weight")
        if nf == 0:
            raise ValueError("X: has 0 feature(s) while a minimum of 1 is required. Fitting "
                             "needs at least one feature column.")
        resume = self.warm_start and hasattr(self, "_state")
        if resume and (self._state.P.shape != (nf, 1 + k) or self._state.P.dtype != dtype):
            raise ValueError("warm_start: n_factors, dtype and the column count must match the "
                             "fitted model; set warm_start=False to start over.")
        classes = self._classes(client, yb) if not resume else getattr(self, "classes_", None)
        spec = PartSpec(dtype.str, nf, "X", None if classes is None else tuple(classes.tolist()))
        eval_blocks = []
        if eval_set is not None:
            if isinstance(eval_set, list) and len(eval_set) == 1:
                eval_set = eval_set[0]
            if not isinstance(eval_set, tuple) or len(eval_set) not in (2, 3):
                raise ValueError("eval_set must be a tuple (X_val, y_val) or "
                                 "(X_val, y_val, sample_weight_val) of dask collections.")
            exb, enf = blocks_of(eval_set[0], "eval_set[0]")
            if enf != nf:
                raise ValueError(f"eval_set[0] has {enf} features, but X has {nf}; pass data "
                                 "with the same columns.")
            eyb = vector_blocks(eval_set[1], len(exb), "eval_set[1]")
            ewb = vector_blocks(eval_set[2] if len(eval_set) == 3 else None, len(exb),
                                "eval_set[2]")
            eval_blocks = list(zip(exb, eyb, ewb))
        elif self.early_stopping:
            raise ValueError("early_stopping=True needs eval_set=(X_val, y_val) with the Dask "
                             "estimators (they do not split off a validation_fraction).")
        V.check_model_size(nf, k, dtype, self.solver)
        cfg = _Config(
            loss_code=LOSS_CODES[self.loss], solver=self.solver,
            learning_rate=float(self.learning_rate), lr_decay=float(self.lr_decay),
            batch_size=int(self.batch_size),
            l2_reg_w=self._l2("l2_reg_w", self.l2_reg_w, nf, X, dtype),
            l2_reg_v=self._l2("l2_reg_v", self.l2_reg_v, nf, X, dtype),
            sync_every=int(self.sync_every), device=self.device)
        coord = Coordinator(client, list(zip(xb, yb, wb)), eval_blocks, spec,
                            PartSpec(dtype.str, nf, "eval_set[0]", spec.classes), k, self.mode,
                            max_retries=self._max_retries, on_step=self._on_step)
        try:
            load = coord.build()
            if not resume:
                self._rng = check_random_state(self.random_state)
            rng = np.random.default_rng(self._rng.randint(0, 2**31 - 1))
            if not resume:
                w0 = self._init_w0(load)
                self._state = FMState.init(nf, k, dtype, init_std_of(self), w0, rng)
                self.history_ = {"train_loss": [], "val_loss": [], "val_score": [],
                                 "time_s": []}
                self.n_iter_ = 0
                self.n_features_in_ = nf
                if classes is not None:
                    self.classes_ = classes
                names = getattr(X, "columns", None)
                if names is not None and all(isinstance(c, str) for c in names):
                    self.feature_names_in_ = np.asarray(list(names), dtype=object)
            if isinstance(self, RegressorMixin):
                lo, hi = load["y_min"], load["y_max"]
                if resume and getattr(self, "target_range_", None) is not None:
                    lo, hi = min(lo, self.target_range_[0]), max(hi, self.target_range_[1])
                self.target_range_ = (lo, hi)
            self._state.ensure_adam()
            coord.push_state(self._state)
            self._train(coord, cfg, rng, eval_blocks)
        finally:
            self.dask_stats_ = dict(coord.stats, n_shards=len(getattr(coord, "shards", [])),
                                    n_rows=coord.n_rows, n_partitions=len(xb))
            coord.close()
        return self

    def _train(self, coord, cfg, rng, eval_blocks):
        st = self._state
        hist = self.history_
        best = (np.inf, None)
        no_improve = 0
        t_start = time.perf_counter() - (hist["time_s"][-1] if hist["time_s"] else 0.0)
        for _ in range(int(self.max_iter)):
            snap = (st.P.copy(), st.bias_state.copy())
            lr = epoch_learning_rate(cfg, len(hist["train_loss"]))
            lsum, wsum, ok = coord.run_epoch(st, cfg, lr, rng, rng)
            ok = ok and np.isfinite(lsum) and bool(np.isfinite(st.P).all()) \
                and bool(np.isfinite(st.bias_state).all())
            if not ok:
                st.P[...] = snap[0]
                st.bias_state[...] = snap[1]
                st.M[...] = 0
                st.S[...] = 0
                st.bias_state[1:] = 0
                st.t = 0
                msg = (f"training diverged in epoch {len(hist['train_loss']) + 1} (non-finite "
                       f"loss or parameters) at step size {lr:.6g} (learning_rate="
                       f"{cfg.learning_rate}, lr_decay={cfg.lr_decay}). The model keeps the "
                       "last finite parameters (from the end of the previous epoch). Try a "
                       "smaller learning_rate, stronger l2_reg_w/l2_reg_v, scaling X's values, "
                       "or dtype=np.float64.")
                if self.on_divergence == "warn":
                    warnings.warn(msg, RuntimeWarning, stacklevel=3)
                    break
                raise DivergenceError(msg)
            self.n_iter_ += 1
            train_loss = lsum / wsum if wsum > 0 else float("nan")
            hist["train_loss"].append(float(train_loss))
            hist["time_s"].append(time.perf_counter() - t_start)
            val_loss = None
            if eval_blocks:
                val_loss = coord.eval_loss(st, cfg)
                hist["val_loss"].append(float(val_loss))
            monitor = val_loss if (self.early_stopping and val_loss is not None) else train_loss
            if self.tol is None and not self.early_stopping:
                continue
            tol = self.tol or 0.0
            if monitor < best[0] - tol:
                keep = (st.P.copy(), st.bias_state.copy()) if self.early_stopping else None
                best = (monitor, keep)
                no_improve = 0
            else:
                no_improve += 1
                if no_improve >= int(self.n_iter_no_change):
                    break
        if self.early_stopping and best[1] is not None:
            st.P[...] = best[1][0]
            st.bias_state[...] = best[1][1]

    # --- conversion ---------------------------------------------------
    def to_local(self):
        """The fitted model as a single-machine FMRegressor / FMClassifier
        (same parameters and fitted state; save, load and predict as usual)."""
        check_is_fitted(self, "_state")
        est = self._local_cls(**self._local_params())
        st = self._state
        est._state = FMState(P=st.P.copy(), bias_state=st.bias_state.copy(),
                             M=None if st.M is None else st.M.copy(),
                             S=None if st.S is None else st.S.copy(), t=st.t)
        est.n_features_in_ = self.n_features_in_
        est.n_iter_ = self.n_iter_
        est.history_ = {k: list(v) for k, v in self.history_.items()}
        est._rng = self._rng
        for a in ("classes_", "feature_names_in_", "target_range_"):
            if hasattr(self, a):
                setattr(est, a, getattr(self, a))
        return est

    def save(self, path):
        """Write the fitted model (as its single-machine equivalent: load it
        with fmnumba.load)."""
        self.to_local().save(path)

    # --- prediction ----------------------------------------------------
    def _map(self, X, how, proba=False):
        check_is_fitted(self, "_state")
        import dask.array as da
        if is_dask_frame(X):
            X = X.to_dask_array()
        if not isinstance(X, da.Array):
            raise TypeError(f"X: expected a dask array or dask DataFrame, got "
                            f"{type(X).__name__}; for in-memory data use to_local().{how}(X).")
        if X.ndim != 2 or X.numblocks[1] != 1:
            raise ValueError("X: expected a 2-D dask array with one chunk along the columns; "
                             "use X.rechunk({1: -1}).")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        model = self._client().scatter(self.to_local(), broadcast=True, hash=False)
        if proba:
            return X.map_blocks(_predict_block, model, how, dtype=np.float64,
                                chunks=(X.chunks[0], (2,)), meta=np.empty((0, 2)))
        meta = np.empty(0, dtype=getattr(self, "classes_", np.empty(0)).dtype
                        if how == "predict" and hasattr(self, "classes_") else np.float64)
        return X.map_blocks(_predict_block, model, how, dtype=meta.dtype, drop_axis=1,
                            meta=meta)


_LOCAL_DOC = """
    Parameters are those of {local} plus

    client : distributed.Client or None
        The cluster to train on (None: the current default client).
    mode : "sync" or "local"
        "sync": synchronous data-parallel lazy Adam; each global mini-batch's
        gradient is summed over the workers and one Adam step applied, so the
        fit is the single-machine Adam fit on the same batches (bit for bit
        with one worker, to float rounding with more). "local": every worker
        trains on its own rows for sync_every mini-batches, then the touched
        rows (parameters and Adam moments) are averaged, weighted by how often
        each worker touched them: approximate, far fewer synchronisations.
    sync_every : int
        Mini-batches per worker between two averagings in mode "local".
"""


class DaskFMRegressor(RegressorMixin, _DaskFM):
    __doc__ = ("Factorization Machine regressor trained on a Dask cluster.\n"
               + _LOCAL_DOC.format(local="fmnumba.FMRegressor"))
    _local_cls = FMRegressor

    def __init__(self, n_factors=8, *, loss="squared", solver="adam",
                 learning_rate=0.01, lr_decay=1.0, max_iter=30, batch_size=256,
                 l2_reg_w=0.03, l2_reg_v=0.03, init_std=None, tol=None,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=5,
                 warm_start=False, random_state=None, n_jobs=None, device="cpu",
                 dtype=np.float32, verbose=0, on_divergence="raise", groups=None,
                 scoring=None, clip_predictions=True, client=None, mode="sync",
                 sync_every=16):
        store_params(self, locals())

    def _init_w0(self, load):
        return float(load["dot_sw_y"] / load["sum_sw"])

    def predict(self, X):
        """Predicted targets, a dask array (float64) chunked as X's rows."""
        return self._map(X, "predict")

    def score(self, X, y, sample_weight=None):
        """R² of predict(X) against y (computed on the cluster)."""
        import dask.array as da
        p = self.predict(X)
        y = y.to_dask_array() if hasattr(y, "to_dask_array") else y
        w = da.ones_like(p) if sample_weight is None else sample_weight
        ym = (w * y).sum() / w.sum()
        ss_res = (w * (y - p) ** 2).sum()
        ss_tot = (w * (y - ym) ** 2).sum()
        res, tot = da.compute(ss_res, ss_tot)
        return float(1 - res / tot) if tot > 0 else 0.0


class DaskFMClassifier(ClassifierMixin, _DaskFM):
    __doc__ = ("Factorization Machine binary classifier trained on a Dask cluster.\n"
               + _LOCAL_DOC.format(local="fmnumba.FMClassifier"))
    _local_cls = FMClassifier

    def __init__(self, n_factors=8, *, loss="logistic", solver="adam",
                 learning_rate=0.03, lr_decay=0.5, max_iter=30, batch_size=512,
                 l2_reg_w=0.001, l2_reg_v=0.01, init_std=None, tol=None,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=5,
                 warm_start=False, random_state=None, n_jobs=None, device="cpu",
                 dtype=np.float32, verbose=0, on_divergence="raise", groups=None,
                 scoring=None, client=None, mode="sync", sync_every=16):
        store_params(self, locals())

    def _classes(self, client, y_blocks):
        import dask
        parts = client.compute([dask.delayed(partition_classes)(b) for b in y_blocks])
        found = client.gather(parts)
        cls = np.unique(np.concatenate([np.asarray(c) for c in found]))
        if cls.shape[0] != 2:
            raise ValueError(
                f"y: DaskFMClassifier needs exactly 2 classes, got {cls.shape[0]} "
                f"({cls[:5].tolist()}). " + ("Add samples of a second class." if cls.shape[0] < 2
                                             else "Only binary classification is supported."))
        return cls

    def _init_w0(self, load):
        p = float(load["dot_sw_pos"] / load["sum_sw"])
        if self.loss == "logistic":
            p = min(max(p, 1e-6), 1 - 1e-6)
            return float(np.log(p / (1 - p)))
        return 2 * p - 1

    def decision_function(self, X):
        """Raw model output ŷ, a dask array (float64): > 0 means classes_[1]."""
        return self._map(X, "decision_function")

    def predict(self, X):
        """Predicted class labels, a dask array."""
        return self._map(X, "predict")

    _has_proba = FMClassifier._has_proba

    @available_if(_has_proba)
    def predict_proba(self, X):
        """[P(classes_[0]), P(classes_[1])] per row, a dask array (n × 2)."""
        return self._map(X, "predict_proba", proba=True)

    def score(self, X, y, sample_weight=None):
        """Accuracy of predict(X) against y (computed on the cluster)."""
        import dask.array as da
        y = y.to_dask_array() if hasattr(y, "to_dask_array") else y
        hit = (self.predict(X) == y).astype(np.float64)
        if sample_weight is None:
            return float(hit.mean().compute())
        return float(da.compute((hit * sample_weight).sum() / sample_weight.sum())[0])
