"""Hogwild SGD epoch on the GPU (twin of fmnumba/cpu/sgd.py, same update).

Rows of `order` are cut into contiguous chunks, one GPU thread per chunk,
each walking its chunk sequentially (q in a per-chunk scratch row, cached in
L1). n_chunks == 1 (the solver's n_jobs=1) runs the whole epoch on one thread
in order: sequential and deterministic, the CPU kernel's n_jobs=1 result
within rounding (and very slow: use it for checks, not speed). Any other
n_chunks is raised to at least HOGWILD_CHUNKS concurrent chunks: lock-free
Hogwild, racy by design exactly as on the CPU (concurrent updates of shared
rows may be lost or see stale q), not deterministic. The intercept is
updated with a float64 atomic add.
"""
import numpy as np
from numba import cuda

from ._device import TPB, blocks, csr_to_device, data_to_device, param_to_device, param_to_host
from ._losses import loss_grad, loss_value
from ._row import l2_of

HOGWILD_CHUNKS = 8192


@cuda.jit
def sgd_kernel(X, y, sw, order, loss_code, P, intercept, rates, l2, L, Qs, consts):
    """Chunk c = thread c of Qs.shape[0] chunks; rates = (lr float64, lr in
    P's dtype); Qs (chunks × (k + 1)) is per-chunk scratch; consts = (0, ½)
    in P's dtype."""
    indptr, indices, data = X
    lr, eta = rates
    lam_w, lam_v = l2
    zero, half = consts
    n_chunks = Qs.shape[0]
    n = order.shape[0]
    c = cuda.grid(1)
    if c >= n_chunks:
        return
    k = P.shape[1] - 1
    for pos in range(c * n // n_chunks, (c + 1) * n // n_chunks):
        r = order[pos]
        p0 = indptr[r]
        p1 = indptr[r + 1]
        lin = zero
        sq = zero
        inter = zero
        for f in range(k):
            Qs[c, f] = zero
        for p in range(p0, p1):
            j = indices[p]
            x = data[p]
            lin += P[j, 0] * x
            for f in range(k):
                v = P[j, f + 1] * x
                Qs[c, f] += v
                sq += v * v
        for f in range(k):
            inter += Qs[c, f] * Qs[c, f]
        Qs[c, k] = intercept[0]                 # w0 in P's dtype, as on the CPU
        yh = Qs[c, k] + (lin + half * (inter - sq))
        loss = sw[r] * loss_value(loss_code, yh, y[r])
        L[pos] = loss
        if not (loss - loss == 0):              # non-finite: skip the update
            continue
        Qs[c, k] = sw[r] * loss_grad(loss_code, yh, y[r])
        g = Qs[c, k]                            # g in P's dtype
        cuda.atomic.add(intercept, 0, -(lr * g))
        for p in range(p0, p1):
            x = data[p]
            if x == 0:                          # explicit zeros: no update, as on the CPU
                continue
            j = indices[p]
            gx = g * x
            w = P[j, 0]
            P[j, 0] = w - eta * (gx + l2_of(lam_w, j) * w)
            gx2 = gx * x
            lv = l2_of(lam_v, j)
            for f in range(k):
                v = P[j, f + 1]
                P[j, f + 1] = v - eta * (gx * Qs[c, f] - v * gx2 + lv * v)


def sgd_epoch(X, y, sw, order, n_chunks, loss_code, P, intercept, lr, l2, L):
    """Same contract as fmnumba.cpu.sgd_epoch (host arrays; P, intercept and
    L written back once at the end). n_chunks > 1 means Hogwild with at least
    HOGWILD_CHUNKS chunks (see the module docstring)."""
    n = order.shape[0]
    if n == 0:
        return
    dt = P.dtype
    k = P.shape[1] - 1
    chunks = 1 if n_chunks <= 1 else min(n, max(int(n_chunks), HOGWILD_CHUNKS))
    dP, dintercept = param_to_device(P), param_to_device(intercept)
    dL = cuda.device_array(n, np.float64)
    sgd_kernel[blocks(chunks), TPB](
        csr_to_device(X), data_to_device(y), data_to_device(sw),
        cuda.to_device(np.ascontiguousarray(order, dtype=np.int64)), loss_code, dP,
        dintercept, (float(lr), dt.type(lr)), (data_to_device(l2[0]), data_to_device(l2[1])),
        dL, cuda.device_array((chunks, k + 1), dt), (dt.type(0), dt.type(0.5)))
    L[:n] = dL.copy_to_host()
    param_to_host(dP, P)
    param_to_host(dintercept, intercept)
