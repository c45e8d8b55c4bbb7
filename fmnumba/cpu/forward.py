"""Mini-batch forward pass that keeps ŷ and q for the backward pass."""
from numba import njit, prange

from .._config import FASTMATH, kernel
from ..losses import loss_grad, loss_value
from ._prefetch import prefetch_csr_ahead
from ._row import row_forward

N_CHUNKS = 64  # contiguous runs of rows, as a static prange over rows would give


@kernel(parallel=True)
def forward_batch(X, y, sw, rows, loss_code, w0, P, out):
    """Forward pass over the batch rows[i], i < len(rows), in parallel.

    X = (indptr, indices, data); w0 a float64 scalar; out = (yhat, Q, G, L)
    receives yhat[i] = ŷ, Q[i, :] = q (batch × k), G[i] = s_r·∂ℓ/∂ŷ and
    L[i] = s_r·ℓ, all in P's dtype except L (float64).
    """
    forward_batch_inline(X, y, sw, rows, loss_code, w0, P, out)


# The parallel loop itself, inlined into forward_batch and into the Adam
# epoch (which so compiles no separate forward_batch of its own).
@njit(inline="always", nogil=True)
def forward_batch_inline(X, y, sw, rows, loss_code, w0, P, out):
    """forward_batch's body, for parallel kernels to inline."""
    nb = rows.shape[0]
    n_chunks = min(nb, N_CHUNKS)
    for c in prange(n_chunks):
        _forward_rows(c * nb // n_chunks, (c + 1) * nb // n_chunks, X, y, sw, rows,
                      loss_code, w0, P, out)


# Not inlined into the prange body: Numba compiles a parallel loop's body
# twice, so one call per chunk keeps a first fit's cold compile shorter at the
# same speed. (Adam's update is slower split out the same way: there the
# parallel body's no-alias arguments matter, so it is written out in place.)
@njit(fastmath=FASTMATH, nogil=True, error_model="numpy")
def _forward_rows(lo, hi, X, y, sw, rows, loss_code, w0, P, out):
    """forward_batch for batch positions lo <= i < hi."""
    indptr, indices, data = X
    yhat, Q, G, L = out
    nb = rows.shape[0]
    for i in range(lo, hi):
        r = rows[i]
        rn = rows[i + 1] if i + 1 < nb else -1
        prefetch_csr_ahead(rows, i, nb, indptr, indices, data, y, sw)
        yh = w0 + row_forward(indptr, indices, data, P, r, Q[i], rn)
        yhat[i] = yh
        G[i] = sw[r] * loss_grad(loss_code, yh, y[r])
        L[i] = sw[r] * loss_value(loss_code, yh, y[r])
