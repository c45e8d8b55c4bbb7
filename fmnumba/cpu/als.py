"""Alternating least squares (coordinate descent) kernels for the FM.

Each coordinate is set to its exact minimiser of

    J = ½ Σ_r s_r (y_r − ŷ_r)² + ½ Σ_j λ_w[j] w_j² + ½ Σ_jf λ_v[j] v_jf²

(w0 unregularised), so J never increases. The column update is
_columns.update_sweep with α = 1, μ = 0 and no noise; the caches are
refreshed by _columns.refresh_rows.
"""
from .._config import kernel
from ._columns import refresh_rows, shift_residuals, update_sweep


@kernel()
def als_objective_l2(P, gid, lam_w, lam_v):
    """½ Σ λ_w[gid j] w_j² + ½ Σ λ_v[gid j] v_jf² (float64)."""
    tot = 0.0
    for j in range(P.shape[0]):
        g = gid[j]
        w = float(P[j, 0])
        sv = 0.0
        for f in range(1, P.shape[1]):
            v = float(P[j, f])
            sv += v * v
        tot += lam_w[g] * w * w + lam_v[g] * sv
    return 0.5 * tot


def als_w0(w0, sum_w, sum_we):
    """The minimising intercept: w0 + Σ s e / Σ s."""
    return w0 + sum_we / sum_w if sum_w > 0 else w0


__all__ = ["als_objective_l2", "als_w0", "refresh_rows", "shift_residuals", "update_sweep"]
