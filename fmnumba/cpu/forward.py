"""Mini-batch forward pass that keeps ŷ and q for the backward pass."""
from numba import njit, prange

from .._config import FASTMATH, kernel
from ..losses import loss_grad, loss_value
from ._prefetch import prefetch_csr_ahead
from ._row import row_forward


@njit(inline="always", fastmath=FASTMATH, nogil=True)
def _forward_one(i, indptr, indices, data, y, sw, rows, loss_code, w0, P, yhat, Q, G, L):
    r = rows[i]
    rn = rows[i + 1] if i + 1 < rows.shape[0] else -1
    prefetch_csr_ahead(rows, i, rows.shape[0], indptr, indices, data, y, sw)
    yh = w0 + row_forward(indptr, indices, data, P, r, Q[i], rn)
    yhat[i] = yh
    G[i] = sw[r] * loss_grad(loss_code, yh, y[r])
    L[i] = sw[r] * loss_value(loss_code, yh, y[r])


@kernel(parallel=True)
def forward_batch(indptr, indices, data, y, sw, rows, loss_code, w0, P,
                  yhat, Q, G, L):
    """Forward pass over the batch rows[i], i < len(rows), in parallel.

    Writes yhat[i] = ŷ, Q[i, :] = q (batch × k), G[i] = s_r·∂ℓ/∂ŷ and
    L[i] = s_r·ℓ, all in P's dtype except L (float64).
    """
    for i in prange(rows.shape[0]):
        _forward_one(i, indptr, indices, data, y, sw, rows, loss_code, w0, P, yhat, Q, G, L)
