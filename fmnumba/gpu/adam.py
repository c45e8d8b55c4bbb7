"""Lazy fused Adam on the GPU (twin of fmnumba/cpu/adam.py, same semantics).

Semantics are those of the CPU kernel (see fmnumba/cpu/adam.py): one global
step counter t, per-occurrence L2 with per-feature λ_w/λ_v on touched rows
(or, with decoupled=True, AdamW's decay of touched rows),
untouched rows and their moments left as they are, unregularised intercept
updated in float64 every batch, stop before updating on the first batch with
a non-finite loss or gradient sum.

Per batch, seven stream-ordered launches and no host synchronisation:
forward (ŷ, q, s·g, s·ℓ per row) → reduce (one block: Σ s·ℓ, Σ s, Σ s·g in
float64 in a fixed order; records the batch loss, checks finiteness, raises
the device `halt` flag or updates the intercept) → transpose (4 kernels,
transpose.py) → update (a group of `lanes` threads per distinct feature;
lane l owns columns l, l + lanes, ... of that feature's row, sums its
gradient over the feature's entries in batch order and applies Adam).

Deterministic mode is the only mode: each parameter row is owned by one
thread group and summed in batch order, so results are bit-identical from
run to run (no float atomics). They agree with the CPU kernels within
rounding (the forward sums the lanes' shares in a different order than the
CPU loop, and the CPU build uses fastmath reassociation).
"""
import math

import numpy as np
from numba import cuda, float64

from ._device import (TPB, blocks, data_to_device, lanes_for, param_to_device,
                      param_to_host)
from ._row import l2_of
from .forward import launch_forward
from .transpose import Scratch, batch_offsets, launch_transpose


@cuda.jit
def reduce_kernel(G, L, sw, order, start, nb, b, bst, beta1, beta2, eps, lr, bc1,
                  bc2, batch_loss, batch_weight, halt, done, inv):
    """One block: batch sums, batch loss record, divergence check, intercept."""
    sl = cuda.shared.array(TPB, float64)
    ss = cuda.shared.array(TPB, float64)
    sg = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    a = 0.0
    c = 0.0
    g = 0.0
    if halt[0] == 0:
        for i in range(tid, nb, TPB):
            a += L[i]
            c += sw[order[start + i]]
            g += G[i]
    sl[tid] = a
    ss[tid] = c
    sg[tid] = g
    cuda.syncthreads()
    s = TPB // 2
    while s > 0:
        if tid < s:
            sl[tid] += sl[tid + s]
            ss[tid] += ss[tid + s]
            sg[tid] += sg[tid + s]
        cuda.syncthreads()
        s //= 2
    if tid == 0 and halt[0] == 0:
        lsum = sl[0]
        ssum = ss[0]
        gsum = sg[0]
        batch_loss[b] = lsum
        batch_weight[b] = ssum
        if not (math.isfinite(lsum) and math.isfinite(gsum)):
            halt[0] = 1
        else:
            inv_s = 1.0 / ssum
            inv[0] = inv_s
            g0 = gsum * inv_s
            bst[1] = beta1 * bst[1] + (1.0 - beta1) * g0
            bst[2] = beta2 * bst[2] + (1.0 - beta2) * g0 * g0
            bst[0] -= lr / bc1 * bst[1] / (math.sqrt(bst[2] / bc2) + eps)
            done[0] += 1


@cuda.jit
def update_kernel(uniq, nu, starts, lens, seg, ent_row, ent_val, G, sw, order, start,
                  Q, inv, P, M, S, lanes, b1, b2, c1, c2, step, rbc2, ep, lg, wd, lam_w,
                  lam_v, halt, zero):
    """Adam update of the distinct features' rows; group of `lanes` per row."""
    tid = cuda.grid(1)
    a = tid // lanes
    lane = tid % lanes
    if halt[0] != 0 or a >= nu[0]:
        return
    k = P.shape[1] - 1
    j = uniq[a]
    lo = starts[a]
    hi = lo + lens[a]
    isum = inv[0]                 # 1 / Σ s, stored in P's dtype
    for col in range(lane, k + 1, lanes):
        acc = zero
        gx2 = zero
        sreg = zero
        for u in range(lo, hi):
            e = seg[u]
            i = ent_row[e]
            x = ent_val[e]
            gx = G[i] * x
            gx2 += gx * x
            sreg += sw[order[start + i]]
            if col == 0:
                acc += gx
            else:
                acc += gx * Q[i, col - 1]
        p = P[j, col]
        if col == 0:
            lam = l2_of(lam_w, j)
            g = (acc + lg * lam * sreg * p) * isum
        else:
            lam = l2_of(lam_v, j)
            g = (acc - p * gx2 + lg * lam * sreg * p) * isum
        m = b1 * M[j, col] + c1 * g
        s = b2 * S[j, col] + c2 * g * g
        M[j, col] = m
        S[j, col] = s
        P[j, col] = p - step * m / (math.sqrt(s) * rbc2 + ep) - wd * lam * p


def _adam_consts(dt, lr, beta1, beta2, eps, bc1, bc2, decoupled):
    t = dt.type
    # lg: L2 in the gradient (1) or not (0, AdamW); wd: AdamW's decay step
    return (t(beta1), t(beta2), t(1) - t(beta1), t(1) - t(beta2), t(lr / bc1),
            t(1.0 / np.sqrt(bc2)), t(eps), t(0 if decoupled else 1),
            t(lr if decoupled else 0))


def launch_update(sc, dG, dsw, dorder, start, dQ, dinv, dP, dM, dS, consts, dlw, dlv,
                  dhalt):
    k = dP.shape[1] - 1
    lanes = lanes_for(k)
    update_kernel[blocks(sc.max_nnz * lanes), TPB](
        sc.uniq, sc.nu, sc.starts, sc.lens, sc.seg, sc.ent_row, sc.ent_val, dG, dsw,
        dorder, start, dQ, dinv, dP, dM, dS, lanes, *consts, dlw, dlv, dhalt,
        dP.dtype.type(0))


def adam_epoch(indptr, indices, data, y, sw, order, batch_size, loss_code,
               P, M, S, bstate, t0, lr, beta1, beta2, eps, lam_w, lam_v, cnt,
               batch_loss, batch_weight, decoupled=False):
    """Same contract as fmnumba.cpu.adam_epoch; returns (t, n_batches_done).

    Host arrays in; P, M, S, bstate, batch_loss, batch_weight are updated in
    place once, at the end (one device→host copy per epoch). cnt (the CPU
    kernel's scratch) is not used. X, y, sw, λ stay cached on the device.
    """
    n = order.shape[0]
    dt = P.dtype
    k = P.shape[1] - 1
    n_batches = -(-n // batch_size) if n else 0
    if n_batches == 0:
        return t0, 0
    order = np.ascontiguousarray(order, dtype=np.int64)
    eoff = batch_offsets(indptr, order)
    bounds = np.minimum(np.arange(n_batches + 1, dtype=np.int64) * batch_size, n)
    max_nnz = int(np.max(eoff[bounds[1:]] - eoff[bounds[:-1]]))
    nb_max = min(batch_size, n)
    dX = (data_to_device(indptr), data_to_device(indices), data_to_device(data))
    dy, dsw = data_to_device(y), data_to_device(sw)
    dlw, dlv = data_to_device(lam_w), data_to_device(lam_v)
    dP, dM, dS = param_to_device(P), param_to_device(M), param_to_device(S)
    dbst = param_to_device(bstate)
    dorder, deoff = cuda.to_device(order), cuda.to_device(eoff)
    dyhat = cuda.device_array(nb_max, dt)
    dQ = cuda.device_array((nb_max, k), dt)
    dG = cuda.device_array(nb_max, dt)
    dL = cuda.device_array(nb_max, np.float64)
    dbl = cuda.to_device(np.zeros(n_batches))
    dbw = cuda.to_device(np.zeros(n_batches))
    dhalt = cuda.to_device(np.zeros(1, np.int32))
    ddone = cuda.to_device(np.zeros(1, np.int64))
    dinv = cuda.device_array(1, dt)
    sc = Scratch(P.shape[0], max_nnz, dt)
    for b in range(n_batches):
        start = int(bounds[b])
        nb = int(bounds[b + 1]) - start
        t = t0 + b + 1          # the step this batch takes if none before halted
        bc1 = 1.0 - beta1 ** t
        bc2 = 1.0 - beta2 ** t
        launch_forward(dX, dy, dsw, dorder, start, nb, loss_code, dbst, dP, dyhat, dQ,
                       dG, dL, dhalt, sc.nu)
        reduce_kernel[1, TPB](dG, dL, dsw, dorder, start, nb, b, dbst, float(beta1),
                              float(beta2), float(eps), float(lr), bc1, bc2, dbl, dbw,
                              dhalt, ddone, dinv)
        launch_transpose(dX, dorder, deoff, start, nb, sc, dhalt)
        launch_update(sc, dG, dsw, dorder, start, dQ, dinv, dP, dM, dS,
                      _adam_consts(dt, lr, beta1, beta2, eps, bc1, bc2, decoupled), dlw, dlv,
                      dhalt)
    done = int(ddone.copy_to_host()[0])
    batch_loss[:n_batches] = dbl.copy_to_host()
    batch_weight[:n_batches] = dbw.copy_to_host()
    for dev, host in ((dP, P), (dM, M), (dS, S), (dbst, bstate)):
        param_to_host(dev, host)
    return t0 + done, done


def adam_update(uniq, n_uniq, starts, ent_row, ent_val, G, sb, Q, inv_s,
                P, M, S, lr, beta1, beta2, eps, bc1, bc2, lam_w, lam_v, decoupled=False):
    """Same contract as fmnumba.cpu.adam_update (CPU transpose layout in,
    P, M, S updated in place); runs the device update kernel."""
    if n_uniq == 0:
        return
    dt = P.dtype
    n_ent = int(starts[n_uniq])

    class _L:   # the device layout of transpose.Scratch, built from the CPU one
        pass
    sc = _L()
    sc.uniq = cuda.to_device(np.ascontiguousarray(uniq[:n_uniq], dtype=np.int32))
    sc.nu = cuda.to_device(np.array([n_uniq, n_ent], dtype=np.int32))
    sc.starts = cuda.to_device(np.ascontiguousarray(starts[:n_uniq], dtype=np.int32))
    sc.lens = cuda.to_device(np.diff(starts[:n_uniq + 1]).astype(np.int32))
    sc.seg = cuda.to_device(np.arange(max(n_ent, 1), dtype=np.int32))
    sc.ent_row = cuda.to_device(np.ascontiguousarray(ent_row[:max(n_ent, 1)], dtype=np.int32))
    sc.ent_val = cuda.to_device(np.ascontiguousarray(ent_val[:max(n_ent, 1)]))
    sc.max_nnz = n_uniq
    nb = G.shape[0]
    dP, dM, dS = cuda.to_device(P), cuda.to_device(M), cuda.to_device(S)
    launch_update(sc, cuda.to_device(G), cuda.to_device(np.ascontiguousarray(sb)),
                  cuda.to_device(np.arange(nb, dtype=np.int64)), 0,
                  cuda.to_device(np.ascontiguousarray(Q)),
                  cuda.to_device(np.array([inv_s], dtype=dt)), dP, dM, dS,
                  _adam_consts(dt, lr, beta1, beta2, eps, bc1, bc2, decoupled),
                  cuda.to_device(np.ascontiguousarray(lam_w)),
                  cuda.to_device(np.ascontiguousarray(lam_v)),
                  cuda.to_device(np.zeros(1, np.int32)))
    for dev, host in ((dP, P), (dM, M), (dS, S)):
        param_to_host(dev, host)
