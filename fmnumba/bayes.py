"""The estimators' side of solver="mcmc" and solver="als": parameter
checks, defaults, and the calls into fmnumba/mcmc.py and fmnumba/als.py.

mcmc (FMRegressor and FMClassifier, probit link) ignores learning_rate,
lr_decay, batch_size, l2_reg_w and l2_reg_v: the priors' precisions are
sampled (hierarchical priors, per group of `groups=`). als (FMRegressor)
uses l2_reg_w / l2_reg_v as strengths per sum of losses (libFM's and
fastFM's convention) and ignores learning_rate, lr_decay and batch_size.

max_iter=None means the solver's default: 200 sweeps for mcmc (as libFM
and myFM), 100 for als, 30 epochs for adam/adamw/sgd.
"""
import numbers
import time

import numpy as np

from ._validation import check_group_ids

# The samplers, ALS and SciPy's special functions load on first use: a fit
# with a gradient solver imports this module for its checks alone.

BAYES_SOLVERS = ("mcmc", "als")
DEFAULT_MAX_ITER = {"mcmc": 200, "als": 100}
GRADIENT_MAX_ITER = 30
# n_kept_samples=None keeps every sweep after burn-in, thinned to fit here
DEFAULT_SAMPLES_BYTES = 1 << 30
DEFAULT_BURNIN = 5  # myFM's default: all but the first 5 sweeps are averaged


def default_max_iter(solver):
    """Sweeps (mcmc, als) or epochs when max_iter is None."""
    return DEFAULT_MAX_ITER.get(solver, GRADIENT_MAX_ITER)


# From factors of std 0.01, ALS's exact coordinate steps start next to the
# V = 0 saddle (each factor's step scales with the others) and 200 sweeps end
# at a higher objective; 0.1 is libFM's and fastFM's start (bench/results/bayes.md).
DEFAULT_INIT_STD = {"als": 0.1}
GRADIENT_INIT_STD = 0.01


def init_std_of(est):
    """est.init_std as a float; None: its solver's default."""
    if est.init_std is None:
        return DEFAULT_INIT_STD.get(est.solver, GRADIENT_INIT_STD)
    return float(est.init_std)


def _int(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value!r}.")
    return int(value)


def sample_schedule(n_burnin, n_kept_samples, max_iter, n_features, n_factors, dtype):
    """(n_burnin, n_kept) for a call of max_iter sweeps, with clear errors.

    None: n_burnin = min(5, max_iter - 1); n_kept_samples = every sweep after
    burn-in, thinned evenly so that the samples take at most 1 GiB
    (n_kept × n_features × (1 + n_factors) × itemsize bytes).
    """
    from . import mcmc as MC
    if n_burnin is None:
        burn = min(DEFAULT_BURNIN, max_iter - 1)
    else:
        burn = _int("n_burnin", n_burnin, 0)
        if burn >= max_iter:
            raise ValueError(f"n_burnin={burn} must be smaller than max_iter={max_iter}: "
                             "no sweep would be kept. Raise max_iter or lower n_burnin.")
    room = max_iter - burn
    if n_kept_samples is None:
        per = MC.samples_nbytes(1, n_features, n_factors, dtype)
        kept = max(1, min(room, DEFAULT_SAMPLES_BYTES // max(1, per)))
    else:
        kept = _int("n_kept_samples", n_kept_samples, 1)
        if kept > room:
            raise ValueError(f"n_kept_samples={kept} is more than the {room} sweeps after "
                             f"burn-in (max_iter={max_iter} - n_burnin={burn}). Lower "
                             "n_kept_samples or raise max_iter.")
    return burn, kept


def check_solver_use(est, solver, eval_set, partial, is_classifier):
    """Clear errors for what these solvers do not do."""
    if solver == "als" and is_classifier:
        raise ValueError("solver='als' minimises the squared loss and is available for "
                         "FMRegressor only; for FMClassifier choose solver='mcmc' (probit), "
                         "'adam', 'adamw' or 'sgd'.")
    if solver == "mcmc" and is_classifier and est.loss != "logistic":
        raise ValueError(f"solver='mcmc' fits the probit model and takes loss='logistic' (the "
                         f"default), got loss={est.loss!r}.")
    if partial:
        raise ValueError(f"partial_fit is not available for solver={solver!r}; use fit "
                         "with warm_start=True to continue from the fitted model.")
    if est.early_stopping:
        raise ValueError(f"early_stopping=True is not supported with solver={solver!r} "
                         "(the sampler runs max_iter sweeps); set early_stopping=False.")
    if est.device == "cuda":
        raise ValueError(f"solver={solver!r} runs on the CPU only; use device='cpu' (or "
                         "'auto').")


def _groups(groups, n_features):
    """(group id per feature int32 in [0, G), G) or (None, 1)."""
    if groups is None:
        return None, 1
    g = check_group_ids(groups, n_features)
    uniq, inv = np.unique(g, return_inverse=True)
    return inv.astype(np.int32), int(uniq.shape[0])


def _val_loss(probit, pred, yv, swv):
    """Weighted mean loss of a validation prediction: ½ (y − ŷ)², or the log
    loss −log P(y) of the probit probability pred = P(y = +1)."""
    if probit:
        p = np.where(yv > 0, pred, 1.0 - pred)
        loss = -np.log(np.maximum(p, 1e-300))
    else:
        loss = 0.5 * (yv - pred) ** 2
    return float(np.dot(swv, loss) / swv.sum())


def fit_mcmc(X, y, sw, *, chain, probit, n_factors, dtype, max_iter, n_burnin, n_kept,
             init_std, seed, w0, groups, history, verbose=0, val=None):
    """Run max_iter Gibbs sweeps (continuing `chain` unless it is None) and
    keep n_kept samples; appends per-sweep train_loss and time_s to history.
    val = (Xv, yv, swv): history["val_loss"] gets, per sweep, the loss of
    the running average of the predictions since burn-in (before it: of the
    current sample), as libFM reports its test error. Returns the ChainState."""
    from scipy.special import ndtr

    from . import mcmc as MC
    gid, n_groups = _groups(groups, X.shape[1])
    if chain is None:
        chain = MC.ChainState.init(X.shape[1], n_factors, n_groups, dtype, init_std, w0,
                                   np.random.default_rng(seed), seed)
    else:
        chain.z = chain.z if chain.z is not None and chain.z.shape[0] == X.shape[0] else None
    MC.check_samples_fit(n_kept, X.shape[1], n_factors, dtype)
    t_start = time.perf_counter() - (history["time_s"][-1] if history["time_s"] else 0.0)
    bar = None
    if verbose:
        from tqdm.auto import tqdm
        bar = tqdm(total=max_iter, desc="fmnumba mcmc", unit="sweep")

    from .backend import get_kernels
    kern = get_kernels("cpu")
    acc = {"sum": None, "n": 0, "it": 0}
    if val is not None:
        out = np.empty(val[0].shape[0], dtype=dtype)
        yv = np.asarray(val[1], dtype=np.float64)
        swv = np.asarray(val[2], dtype=np.float64)

    def record(t, st, e, target):
        if val is not None:
            kern.predict_csr((val[0].indptr, val[0].indices, val[0].data),
                             st.P.dtype.type(st.w0), st.P, out)
            pred = out.astype(np.float64)
            if probit:
                pred = ndtr(pred)
            if acc["it"] >= n_burnin:
                acc["sum"] = pred if acc["sum"] is None else acc["sum"] + pred
                acc["n"] += 1
                pred = acc["sum"] / acc["n"]
            history["val_loss"].append(_val_loss(probit, pred, yv, swv))
        acc["it"] += 1
        history["time_s"].append(time.perf_counter() - t_start)
        if bar is not None:
            bar.update(1)

    try:
        MC.run_chain(X, y, sw, chain, max_iter=max_iter, n_burnin=n_burnin, n_kept=n_kept,
                     probit=probit, groups=gid, n_groups=n_groups, callback=record,
                     history=history)
    finally:
        if bar is not None:
            bar.close()
    return chain


def probit_w0(y, sw):
    """Φ⁻¹ of the weighted positive rate: the probit intercept of a constant model."""
    from scipy.special import ndtri
    p = float(np.dot(sw, y > 0) / np.sum(sw))
    return float(ndtri(min(max(p, 1e-6), 1 - 1e-6)))


def fit_als(X, y, sw, P, w0, *, max_iter, l2_reg_w, l2_reg_v, groups, history, val=None):
    """max_iter ALS sweeps on P in place; returns the new w0. history gets
    the training objective J / Σ s per sweep as train_loss and, with
    val = (Xv, yv, swv), the validation loss ½ (y − ŷ)² as val_loss."""
    from . import als as ALS
    from .column_view import build_column_view
    t_start = time.perf_counter() - (history["time_s"][-1] if history["time_s"] else 0.0)
    h = {"objective": [], "train_rmse": []}
    gid, _ = _groups(groups, X.shape[1])
    view = build_column_view(X, P.dtype, gid)
    total = float(np.sum(sw))
    snap = np.empty_like(P)
    for it in range(max_iter):  # one call per sweep: history and time per sweep
        np.copyto(snap, P)
        w_prev = w0
        try:
            w0 = ALS.run_als(X, y, sw, P, w0, max_iter=1, l2_reg_w=l2_reg_w,
                             l2_reg_v=l2_reg_v, view=view, history=h)
            if not (np.isfinite(P).all() and np.isfinite(w0)):
                raise FloatingPointError
        except FloatingPointError:
            from .training import DivergenceError
            np.copyto(P, snap)
            err = DivergenceError(
                f"als: sweep {len(history['train_loss']) + 1} produced non-finite "
                "parameters or residuals (values of X too large for the model dtype?). The "
                "model keeps the parameters of the previous sweep. Scale X's values, use "
                "dtype=np.float64 or stronger l2_reg_w/l2_reg_v.")
            err.w0 = w_prev  # the intercept that goes with the kept parameters
            raise err from None
        history["train_loss"].append(float(h["objective"][-1]) / total)
        if val is not None:
            out = np.empty(val[0].shape[0], dtype=P.dtype)
            from .backend import get_kernels
            get_kernels("cpu").predict_csr((val[0].indptr, val[0].indices, val[0].data),
                                           P.dtype.type(w0), P, out)
            history["val_loss"].append(_val_loss(False, out.astype(np.float64),
                                                 np.asarray(val[1], np.float64),
                                                 np.asarray(val[2], np.float64)))
        history["time_s"].append(time.perf_counter() - t_start)
    return w0


def predict_mcmc(kern, X, chain, probit):
    """(mean, var) over the kept samples, see mcmc.predict_samples."""
    from . import mcmc as MC
    if chain.samples_P is None or chain.samples_P.shape[0] == 0:
        raise ValueError("the model keeps no posterior samples; fit it with "
                         "n_kept_samples >= 1.")
    return MC.predict_samples(kern, X, chain, probit=probit)


# --------------------------------------------------------------------------
# the estimators' calls
# --------------------------------------------------------------------------
def fit_estimator(est, X, y, sw, dtype, rng, resume, max_iter, is_classifier, val=None):
    """Run solver est.solver on canonical CSR X (y encoded, sw weights) and
    set est._state (P = the last sample, or the ALS solution), est._chain
    (mcmc), history_ and n_iter_. resume: continue from the fitted model."""
    from . import mcmc as MC
    from .training import FMState
    n_features, k = X.shape[1], int(est.n_factors)
    if not resume:
        est.history_ = {"train_loss": [], "val_loss": [], "val_score": [], "time_s": []}
        est._chain = None
        w0 = probit_w0(y, sw) if is_classifier else float(np.dot(sw, y) / np.sum(sw))
        est._state = FMState.init(n_features, k, dtype, init_std_of(est), w0, rng)
    hist = est.history_
    try:
        from .training import numba_threads
        with numba_threads(est.n_jobs):
            if est.solver == "als":
                l2w = _l2(est, "l2_reg_w", n_features)
                l2v = _l2(est, "l2_reg_v", n_features)
                try:
                    est._state.bias_state[0] = fit_als(
                        X, y, sw, est._state.P, float(est._state.bias_state[0]),
                        max_iter=max_iter, l2_reg_w=l2w, l2_reg_v=l2v, groups=est.groups,
                        history=hist, val=val)
                except FloatingPointError as e:
                    est._state.bias_state[0] = getattr(e, "w0", est._state.bias_state[0])
                    raise
                est._chain = None
                return
            burn, kept = sample_schedule(est.n_burnin, est.n_kept_samples, max_iter,
                                         n_features, k, dtype)
            chain = getattr(est, "_chain", None) if resume else None
            if chain is None:  # start from the fitted parameters (or the initial ones)
                gid, n_groups = _groups(est.groups, n_features)
                seed = int(rng.integers(0, 2**63))
                chain = MC.ChainState.init(n_features, k, n_groups, dtype, 0.0,
                                           float(est._state.bias_state[0]),
                                           np.random.default_rng(0), seed)
                chain.P = est._state.P
            est._chain = fit_mcmc(X, y, sw, chain=chain, probit=is_classifier, n_factors=k,
                                  dtype=dtype, max_iter=max_iter, n_burnin=burn, n_kept=kept,
                                  init_std=0.0, seed=chain.seed, w0=chain.w0,
                                  groups=est.groups, history=hist, verbose=int(est.verbose),
                                  val=val)
            est._state.bias_state[0] = est._chain.w0
    finally:
        est.n_iter_ = len(hist["train_loss"])
        hist["time_s"] = hist["time_s"][:est.n_iter_]
        if val is not None:
            hist["val_loss"] = hist["val_loss"][:est.n_iter_]


def _l2(est, name, n_features):
    from . import _validation as validation
    return validation.per_feature_l2(name, getattr(est, name), est.groups, n_features)


def posterior(est, X):
    """(mean, var) of the mcmc model over the kept samples for canonical X
    (regression: ŷ and predictive variance; classification: P(y = 1), None)."""
    from .backend import get_kernels
    from .training import numba_threads
    with numba_threads(est.n_jobs):
        return predict_mcmc(get_kernels("cpu"), X, est._chain,
                            probit=hasattr(est, "classes_"))


def probit_score(p):
    """Φ⁻¹(p), finite: the decision value of a probit probability."""
    from scipy.special import ndtri
    eps = np.finfo(np.float64).eps
    return ndtri(np.clip(p, np.finfo(np.float64).tiny, 1 - eps))
