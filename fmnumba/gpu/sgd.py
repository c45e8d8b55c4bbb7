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

from ._device import TPB, blocks, data_to_device, param_to_device, param_to_host
from ._losses import loss_grad, loss_value
from ._row import l2_of

HOGWILD_CHUNKS = 8192


@cuda.jit
def sgd_kernel(indptr, indices, data, y, sw, order, n, n_chunks, loss_code, P, bst,
               lr, eta, lam_w, lam_v, L, Qs, zero, half):
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
        Qs[c, k] = bst[0]                       # w0 in P's dtype, as on the CPU
        yh = Qs[c, k] + (lin + half * (inter - sq))
        loss = sw[r] * loss_value(loss_code, yh, y[r])
        L[pos] = loss
        if not (loss - loss == 0):              # non-finite: skip the update
            continue
        Qs[c, k] = sw[r] * loss_grad(loss_code, yh, y[r])
        g = Qs[c, k]                            # g in P's dtype
        cuda.atomic.add(bst, 0, -(lr * g))
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


def sgd_epoch(indptr, indices, data, y, sw, order, n_chunks, loss_code, P,
              bstate, lr, lam_w, lam_v, L):
    """Same contract as fmnumba.cpu.sgd_epoch (host arrays; P, bstate and L
    written back once at the end). n_chunks > 1 means Hogwild with at least
    HOGWILD_CHUNKS chunks (see the module docstring)."""
    n = order.shape[0]
    if n == 0:
        return
    dt = P.dtype
    k = P.shape[1] - 1
    chunks = 1 if n_chunks <= 1 else min(n, max(int(n_chunks), HOGWILD_CHUNKS))
    dP, dbst = param_to_device(P), param_to_device(bstate)
    dL = cuda.device_array(n, np.float64)
    dQ = cuda.device_array((chunks, k + 1), dt)
    sgd_kernel[blocks(chunks), TPB](
        data_to_device(indptr), data_to_device(indices), data_to_device(data),
        data_to_device(y), data_to_device(sw),
        cuda.to_device(np.ascontiguousarray(order, dtype=np.int64)), n, chunks,
        loss_code, dP, dbst, float(lr), dt.type(lr), data_to_device(lam_w),
        data_to_device(lam_v), dL, dQ, dt.type(0), dt.type(0.5))
    L[:n] = dL.copy_to_host()
    param_to_host(dP, P)
    param_to_host(dbst, bstate)
