"""Hogwild SGD epoch: per-sample updates over a given order.

Rows of `order` are cut into n_chunks contiguous chunks run in parallel with
no locks (Hogwild): with one chunk the epoch is sequential and deterministic;
with several, concurrent writes to shared rows make it racy by design.
Per sample r: g = s_r·∂ℓ/∂ŷ, then w0 -= lr·g and for each nonzero j of r
w_j -= lr(g·x + λ_w w_j), v_jf -= lr(g(x q_f − v_jf x²) + λ_v v_jf), with q
computed before the sample's update. L2 is charged per occurrence as in
adam.py but, as in libFM's SGD, not scaled by s_r (s is normalised to mean 1
by the solver, and rows of weight 0 are dropped before training).
"""
import numpy as np
from numba import prange

from .._config import kernel
from ..losses import loss_grad, loss_value
from ._prefetch import prefetch_csr_ahead
from ._row import l2_of, row_forward


@kernel(parallel=True)
def sgd_epoch(X, y, sw, order, n_chunks, loss_code, P, intercept, lr, l2, L):
    """One SGD epoch over X = (indptr, indices, data) in the given order.

    intercept = [w0, ., .] (float64; only w0 is used); l2 = (lam_w, lam_v),
    per-feature L2 in P's dtype, each (n_features,) or (1,) for one value
    shared by all features; L[pos] receives s·ℓ of row order[pos] measured
    before its update (NaN-free unless the model diverged).

    Each chunk updates its own copy of w0 and the chunks' changes are summed
    at the end (with one chunk: plain sequential SGD); a shared w0 written
    after every sample would bounce its cache line between the cores.
    """
    indptr, indices, data = X
    lam_w, lam_v = l2
    n = order.shape[0]
    k = P.shape[1] - 1
    t = P.dtype.type
    eta = t(lr)
    w_start = intercept[0]
    dw0 = np.zeros(n_chunks)
    for c in prange(n_chunks):
        q = np.empty(k, dtype=P.dtype)
        w0 = w_start
        stop = (c + 1) * n // n_chunks
        for pos in range(c * n // n_chunks, stop):
            r = order[pos]
            rn = order[pos + 1] if pos + 1 < stop else -1
            prefetch_csr_ahead(order, pos, stop, indptr, indices, data, y, sw)
            yh = t(w0) + row_forward(indptr, indices, data, P, r, q, rn)
            loss = sw[r] * loss_value(loss_code, yh, y[r])
            L[pos] = loss
            if not np.isfinite(loss):
                continue
            g = t(sw[r] * loss_grad(loss_code, yh, y[r]))
            w0 -= lr * g
            for p in range(indptr[r], indptr[r + 1]):
                x = data[p]
                if x == 0:  # explicit zeros neither touch nor regularise a row
                    continue
                j = indices[p]
                gx = g * x
                lw = l2_of(lam_w, j)
                lv = l2_of(lam_v, j)
                w = P[j, 0]
                P[j, 0] = w - eta * (gx + lw * w)
                gx2 = gx * x
                for f in range(k):
                    v = P[j, f + 1]
                    P[j, f + 1] = v - eta * (gx * q[f] - v * gx2 + lv * v)
        dw0[c] = w0 - w_start
    for c in range(n_chunks):
        intercept[0] += dw0[c]
