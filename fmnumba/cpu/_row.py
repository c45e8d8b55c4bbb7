"""The per-row FM forward pass shared by the kernels."""
from numba import njit

from .._config import FASTMATH


@njit(inline="always", fastmath=FASTMATH, nogil=True)
def row_forward(indptr, indices, data, P, r, q):
    """Return Σ_i w_i x_i + ½ Σ_f (q_f² − Σ_i v_if² x_i²) for CSR row r.

    q (k,) receives q_f = Σ_i v_if x_i. No intercept is added.
    """
    k = q.shape[0]
    zero = P.dtype.type(0)
    for f in range(k):
        q[f] = zero
    lin = zero
    sq = zero
    for p in range(indptr[r], indptr[r + 1]):
        j = indices[p]
        x = data[p]
        lin += P[j, 0] * x
        for f in range(k):
            v = P[j, f + 1] * x
            q[f] += v
            sq += v * v
    inter = zero
    for f in range(k):
        inter += q[f] * q[f]
    return lin + P.dtype.type(0.5) * (inter - sq)
