"""Gibbs sampling kernels of the Bayesian FM (as in libFM's MCMC and myFM).

Priors: w0 ~ N(0, 1/λ0) (wide); w_j ~ N(μ_w[g], 1/λ_w[g]) and
v_jf ~ N(μ_v[g, f], 1/λ_v[g, f]) for the group g of feature j; each (μ, λ)
pair has the Normal–Gamma hyperprior λ ~ Gamma(a_λ, b_λ),
μ | λ ~ N(μ0, 1/(γ0 λ)); the noise precision α ~ Gamma(a_α, b_α). The
parameter draws themselves are in _columns.update_sweep (noise = 1).

Random draws are keyed by (seed, sweep, stream tag, index): the tags below.
"""
import numpy as np

from .._config import kernel
from ._columns import (latent_rows, probit_loss, refresh_rows, residual_sums, shift_residuals,
                       update_sweep)
from ._rng import gamma, normal

TAG_ALPHA = 0
TAG_HYPER_W = 1
TAG_HYPER_V = 2
TAG_W0 = 3
TAG_W = 4
TAG_Z = 5
TAG_V = 8  # factor f uses TAG_V + f


@kernel()
def draw_group_hyper(P, c, gid, n_groups, mu, lam, key, sweep, tag, tag_base, mu0, gamma0,
                     a_lam, b_lam, cnt, s1):
    """Draw (λ, μ) of every group for column c of P, in place (float64 mu, lam).

    λ[g] | μ, θ ~ Gamma(a_λ + (n_g + 1)/2, b_λ + (γ0 (μ − μ0)² + Σ (θ − μ)²)/2),
    then μ[g] | λ, θ ~ N((γ0 μ0 + Σ θ)/(n_g + γ0), 1/((n_g + γ0) λ)).
    cnt, s1: float64 scratch of n_groups. Index of the draws: tag_base + 2g (+1).
    """
    for g in range(n_groups):
        cnt[g] = 0.0
        s1[g] = 0.0
    for j in range(P.shape[0]):
        g = gid[j]
        cnt[g] += 1.0
        s1[g] += np.float64(P[j, c])
    ss = np.zeros(n_groups)
    for j in range(P.shape[0]):
        g = gid[j]
        d = np.float64(P[j, c]) - mu[g]
        ss[g] += d * d
    for g in range(n_groups):
        dm = mu[g] - mu0
        shape = a_lam + 0.5 * (cnt[g] + 1.0)
        rate = b_lam + 0.5 * (gamma0 * dm * dm + ss[g])
        lam[g] = gamma(key, sweep, tag, tag_base + 2 * g, shape, rate)
        prec = (cnt[g] + gamma0) * lam[g]
        mean = (gamma0 * mu0 + s1[g]) / (cnt[g] + gamma0)
        mu[g] = mean + normal(key, sweep, tag, tag_base + 2 * g + 1, 0) / np.sqrt(prec)


def draw_alpha(key, sweep, sum_w, sum_we2, a_alpha, b_alpha):
    """Noise precision α | e ~ Gamma(a_α + Σ s / 2, b_α + Σ s e² / 2)."""
    return float(gamma(key, sweep, TAG_ALPHA, 0, a_alpha + 0.5 * sum_w, b_alpha + 0.5 * sum_we2))


def draw_w0(key, sweep, w0, sum_w, sum_we, alpha, lam0):
    """w0 | rest ~ N(α(Σ s e + w0 Σ s) / p, 1/p) with p = α Σ s + λ0 (prior mean 0)."""
    prec = alpha * sum_w + lam0
    mean = alpha * (sum_we + w0 * sum_w) / prec
    return float(mean + normal(key, sweep, TAG_W0, 0, 0) / np.sqrt(prec))


__all__ = ["TAG_ALPHA", "TAG_HYPER_W", "TAG_HYPER_V", "TAG_W0", "TAG_W", "TAG_Z", "TAG_V",
           "draw_group_hyper", "draw_alpha", "draw_w0", "latent_rows", "probit_loss",
           "refresh_rows", "residual_sums", "shift_residuals", "update_sweep"]
