"""Bayesian FM by Gibbs sampling (libFM's MCMC, myFM): the sweep loop,
hyperparameter draws, kept samples and prediction from them.

One sweep: draw the probit latent targets (classification) and update the
residuals e (every REFRESH_EVERY sweeps and at the start of a call, e and
q are rebuilt from the sample instead of carried over), draw the noise precision α
(regression) and every group's (μ, λ) pairs, then w0 and, column by column,
w_j, v_j1, ..., v_jk (cpu/_columns.update_sweep). A sweep costs
O(nnz·k). Random numbers are keyed by (seed, sweep, parameter), so a fit is
bit-identical at any thread count.

Sample weights s_r act as frequency weights in the likelihood: row r's
precision is α·s_r and α's posterior counts Σ s_r observations (an integer
weight equals repeating the row). For the probit model s_r scales the
precision of the latent target's likelihood.

Memory: the kept samples take n_kept × n_features × (1 + k) × itemsize
bytes, besides the caches (n_rows × (k + 2) values) and the CSC copy of X.
"""
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

from ._validation import _physical_memory
from .column_view import build_column_view
from .cpu import mcmc as K
from .cpu._columns import N_CHUNKS
from .cpu._rng import seed_key


# Sweeps between two rebuilds of the caches e and q from the sample (in
# between they are updated incrementally; the rebuild bounds rounding drift).
REFRESH_EVERY = 10


@dataclass
class Hyper:
    """Hyperprior constants: Gamma(shape, rate) priors on the precisions.

    The defaults are libFM's and myFM's (α_0 = β_0 = 1 in their
    parameterisation Gamma(α_0/2, β_0/2)): α, λ ~ Gamma(1/2, 1/2),
    μ | λ ~ N(0, 1/λ); w0 ~ N(0, 10²).
    """
    a_alpha: float = 0.5   # α ~ Gamma(a_alpha, b_alpha)
    b_alpha: float = 0.5
    a_lam: float = 0.5     # λ ~ Gamma(a_lam, b_lam)
    b_lam: float = 0.5
    mu0: float = 0.0       # μ | λ ~ N(mu0, 1/(gamma0 λ))
    gamma0: float = 1.0
    lam0: float = 1e-2     # w0 ~ N(0, 1/lam0)


@dataclass
class ChainState:
    """The chain's current sample and hyperparameters, and the kept samples.

    P (n_features, 1 + k) model dtype; w0 float; alpha float; mu_w, lam_w
    (G,), mu_v, lam_v (k, G) float64; z (n_rows,) the probit latent targets
    of the training rows (None for regression); sweeps: sweeps run so far.
    samples_P (n_kept, n_features, 1 + k), samples_w0 and samples_alpha
    (n_kept,) float64.
    """
    P: np.ndarray
    w0: float
    alpha: float
    mu_w: np.ndarray
    lam_w: np.ndarray
    mu_v: np.ndarray
    lam_v: np.ndarray
    seed: int
    sweeps: int = 0
    z: np.ndarray = None
    samples_P: np.ndarray = None
    samples_w0: np.ndarray = None
    samples_alpha: np.ndarray = None
    history: dict = field(default_factory=lambda: {"train_rmse": [], "alpha": []})

    @classmethod
    def init(cls, n_features, k, n_groups, dtype, init_std, w0, rng, seed):
        P = np.zeros((n_features, 1 + k), dtype=dtype)
        if k:
            P[:, 1:] = rng.normal(0.0, init_std, size=(n_features, k))
        return cls(P=P, w0=float(np.dtype(dtype).type(w0)), alpha=1.0,
                   mu_w=np.zeros(n_groups), lam_w=np.ones(n_groups),
                   mu_v=np.zeros((k, n_groups)), lam_v=np.ones((k, n_groups)),
                   seed=int(seed))


def samples_nbytes(n_kept, n_features, n_factors, dtype):
    """Bytes the kept samples take: n_kept × n_features × (1 + k) × itemsize."""
    return int(n_kept) * int(n_features) * (1 + int(n_factors)) * np.dtype(dtype).itemsize


def check_samples_fit(n_kept, n_features, n_factors, dtype):
    """MemoryError, before allocating, when the kept samples cannot fit in RAM."""
    need = samples_nbytes(n_kept, n_features, n_factors, dtype)
    have = _physical_memory()
    if have and need > have // 2:
        raise MemoryError(
            f"n_kept_samples={n_kept}: keeping {n_kept} samples of {n_features:,} features × "
            f"(1 + n_factors={n_factors}) needs {need / 2**30:.1f} GiB, more than half of this "
            f"machine's {have / 2**30:.1f} GiB. Lower n_kept_samples (the samples are thinned "
            "evenly over the sweeps after burn-in) or n_factors.")


def kept_sweeps(max_iter, n_burnin, n_kept):
    """Indices (within a call of max_iter sweeps) of the kept sweeps: n_kept
    evenly spaced after the first n_burnin, the last sweep always kept."""
    m = max_iter - n_burnin
    if n_kept <= 0 or m <= 0:
        return np.zeros(0, dtype=np.int64)
    return n_burnin + (np.arange(1, n_kept + 1) * m) // n_kept - 1


def run_chain(X, y, sw, state, *, max_iter, n_burnin, n_kept, probit=False, groups=None,
              n_groups=1, hyper=None, fixed_hyper=False, view=None, callback=None,
              history=None):
    """Run max_iter Gibbs sweeps on canonical CSR X, continuing `state`.

    y (n_rows,): targets (regression) or ±1 labels (probit), any float
    dtype; sw (n_rows,) positive weights. Keeps n_kept samples evenly after
    n_burnin sweeps into state.samples_* (replacing earlier ones).
    fixed_hyper: keep α, μ and λ at their values in `state` (used to check
    the sampler against closed-form posteriors). groups (n_features,) ints
    in [0, n_groups) or None. callback(sweep, state, e, target) after each
    sweep (e: the residuals target − ŷ of the training rows). history: a
    dict whose "train_loss" list gets the weighted mean training loss of
    each sweep's sample (½ (y − ŷ)², or −log Φ(±ŷ) for probit).
    Returns the ColumnView (reusable for another call on the same X).
    """
    hyper = hyper or Hyper()
    P = state.P
    dtype = P.dtype
    n_rows, n_features = X.shape
    k = P.shape[1] - 1
    kept = kept_sweeps(max_iter, n_burnin, n_kept)
    check_samples_fit(kept.shape[0], n_features, k, dtype)
    if view is None:
        view = build_column_view(X, dtype, groups)
    gid = (np.zeros(n_features, dtype=np.int32) if groups is None
           else np.asarray(groups, dtype=np.int32))
    key = seed_key(state.seed)
    sw_k = np.ascontiguousarray(sw, dtype=dtype)
    unit_w = bool(np.all(sw_k == 1))
    ysign = np.ascontiguousarray(y, dtype=dtype)
    if probit:
        if state.z is None or state.z.shape[0] != n_rows:
            state.z = np.where(ysign > 0, 0.5, -0.5).astype(dtype)
        target = state.z
    else:
        target = ysign
    e = np.empty(n_rows, dtype=dtype)
    Q = np.empty((n_rows, k), dtype=dtype)
    sums = np.zeros((N_CHUNKS, 4))
    loss_chunks = np.zeros(N_CHUNKS)
    cnt = np.zeros(n_groups)
    s1 = np.zeros(n_groups)
    state.samples_P = np.empty((kept.shape[0], n_features, 1 + k), dtype=dtype)
    state.samples_w0 = np.empty(kept.shape[0])
    state.samples_alpha = np.empty(kept.shape[0])
    kept_pos = {int(s): i for i, s in enumerate(kept)}
    have_sums = False
    snap = np.empty_like(P)  # the sample before the sweep: put back if it diverges
    snap_w0 = state.w0
    n_good = 0  # samples written and finite
    last_kept = False  # whether the last sweep's sample was written
    try:
        for it in range(max_iter):
            t = state.sweeps
            if it == 0 or t % REFRESH_EVERY == 0:
                K.refresh_rows(X.indptr, X.indices, X.data, P, dtype.type(state.w0), target, ysign,
                               probit, key, t, K.TAG_Z, e, Q, sw_k, sums)
            elif probit:
                K.latent_rows(target, ysign, probit, key, t, K.TAG_Z, e, sw_k, sums)
            elif not have_sums:
                K.residual_sums(e, sw_k, sums)
            sum_w, sum_we, sum_we2, prev_loss = sums.sum(axis=0)
            if history is not None and probit and it > 0:  # the previous sweep's sample
                history["train_loss"].append(float(prev_loss / sum_w) if sum_w > 0 else np.nan)
            if not np.isfinite(sum_we2):
                if last_kept:
                    n_good -= 1  # the diverged sweep's sample
                _diverged(state, snap, snap_w0, it, t)
            state.history["train_rmse"].append(float(np.sqrt(sum_we2 / sum_w)) if sum_w > 0
                                               else float("nan"))
            if not fixed_hyper:
                if not probit:
                    state.alpha = K.draw_alpha(key, t, sum_w, sum_we2, hyper.a_alpha, hyper.b_alpha)
                K.draw_group_hyper(P, 0, gid, n_groups, state.mu_w, state.lam_w, key, t,
                                   K.TAG_HYPER_W, 0, hyper.mu0, hyper.gamma0, hyper.a_lam,
                                   hyper.b_lam, cnt, s1)
                for f in range(k):
                    K.draw_group_hyper(P, f + 1, gid, n_groups, state.mu_v[f], state.lam_v[f],
                                       key, t, K.TAG_HYPER_V, 2 * n_groups * f, hyper.mu0,
                                       hyper.gamma0, hyper.a_lam, hyper.b_lam, cnt, s1)
            state.history["alpha"].append(state.alpha)
            alpha = 1.0 if probit else state.alpha
            w0 = float(dtype.type(K.draw_w0(key, t, state.w0, sum_w, sum_we, alpha, hyper.lam0)))
            np.copyto(snap, P)
            snap_w0 = state.w0
            K.shift_residuals(e, w0 - state.w0)
            state.w0 = w0
            K.update_sweep(view.seg_par, view.seg_b, view.bounds, view.cols, view.cptr,
                           view.ridx, view.cval, e, Q, sw_k, P, gid, state.mu_w, state.lam_w,
                           state.mu_v, state.lam_v, alpha, True, key, t, K.TAG_W, K.TAG_V,
                           unit_w, view.unit_x)
            state.sweeps += 1
            i = kept_pos.get(it)
            last_kept = i is not None
            if last_kept:
                state.samples_P[i] = P
                state.samples_w0[i] = state.w0
                state.samples_alpha[i] = alpha
                n_good = i + 1
            have_sums = False
            if history is not None and not probit:  # this sweep's sample; sums reused next sweep
                K.residual_sums(e, sw_k, sums)
                have_sums = True
                history["train_loss"].append(float(0.5 * sums[:, 2].sum() / sum_w) if sum_w > 0
                                             else float("nan"))
            if callback is not None:
                callback(t, state, e, target)
        if history is not None and probit and max_iter > 0:  # the last sweep's sample
            K.probit_loss(target, e, ysign, sw_k, loss_chunks)
            history["train_loss"].append(float(loss_chunks.sum() / sum_w) if sum_w > 0
                                         else float("nan"))
        if max_iter and not (np.isfinite(P).all() and np.isfinite(state.w0)):
            if last_kept:
                n_good -= 1
            _diverged(state, snap, snap_w0, 1, state.sweeps - 1)
    finally:  # interrupted or diverged: keep the finite samples written so far
        if n_good < kept.shape[0]:
            state.samples_P = state.samples_P[:n_good]
            state.samples_w0 = state.samples_w0[:n_good]
            state.samples_alpha = state.samples_alpha[:n_good]
    return view


def _diverged(state, snap, snap_w0, it, sweep):
    """Put back the last finite sample and raise DivergenceError."""
    from .training import DivergenceError
    if it > 0:
        np.copyto(state.P, snap)
        state.w0 = snap_w0
    raise DivergenceError(
        f"mcmc: sweep {sweep} produced non-finite predictions on the training data (values "
        "of X too large for the model dtype?). The model keeps the last finite sample. "
        "Scale X's values or use dtype=np.float64.")


def predict_samples(kern, X, state, probit=False):
    """Average over the kept samples for canonical CSR X.

    Returns (mean, var): regression: mean of ŷ_s and the posterior
    predictive variance var_s(ŷ_s) + mean_s(1/α_s); probit: mean of Φ(ŷ_s)
    and var = None. Both (n_rows,) float64.
    """
    n = X.shape[0]
    S = state.samples_P
    acc = np.zeros(n)
    acc2 = np.zeros(n)
    out = np.empty(n, dtype=state.P.dtype)
    for s in range(S.shape[0]):
        if n:
            kern.predict_csr((X.indptr, X.indices, X.data), S.dtype.type(state.samples_w0[s]),
                             S[s], out)
        o = out.astype(np.float64)
        if probit:
            acc += ndtr(o)
        else:
            acc += o
            acc2 += o * o
    m = S.shape[0]
    mean = acc / m
    if probit:
        return mean, None
    var = np.maximum(acc2 / m - mean * mean, 0.0) + float(np.mean(1.0 / state.samples_alpha))
    return mean, var
