"""Lazy fused Adam on the GPU (twin of fmnumba/cpu/adam.py, same semantics).

Semantics are those of the CPU kernel (see fmnumba/cpu/adam.py): one global
step counter t, per-occurrence L2 with per-feature λ_w/λ_v on touched rows
(or, with decoupled=True, AdamW's decay of touched rows),
untouched rows and their moments left as they are, unregularised intercept
updated in float64 every batch, a batch whose weights sum to 0 counted but
taking no step (t unchanged), stop before updating on the first batch with
a non-finite loss or gradient sum.

Per batch, seven stream-ordered launches and no host synchronisation:
forward (ŷ, q, s·g, s·ℓ per row) → reduce (one block: Σ s·ℓ, Σ s, Σ s·g in
float64 in a fixed order; records the batch loss, checks finiteness and
raises the device halt flag, or marks a zero-weight batch idle, or counts
the step, writes its coefficients and updates the intercept) → transpose
(4 kernels, transpose.py) → update (a group of `lanes` threads per distinct feature;
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

from ..cpu.adam import _adam_hyper
from ._device import (TPB, blocks, csr_to_device, data_to_device, lanes_for,
                      param_to_device, param_to_host)
from ._row import group_sum, idle, l2_of
from .forward import launch_forward
from .transpose import Scratch, batch_offsets, launch_transpose


@cuda.jit
def reduce_kernel(out, sw, batch, b, intercept, hyper, bias, coef, batch_sums, flags,
                  counts):
    """One block: batch sums, batch record, divergence check, intercept.

    out = the forward's (yhat, Q, G, L); batch = (order, start, nb); hyper =
    (lr, beta1, beta2, eps) in float64; bias[s] = (1 − β1^t, 1 − β2^t) of
    the epoch's s-th step; coef receives (1 / Σ s, lr / (1 − β1^t),
    1 / √(1 − β2^t)) in P's dtype; counts = [batches done, steps taken].
    """
    G, L = out[2], out[3]
    order, start, nb = batch
    lr, beta1, beta2, eps = hyper
    batch_loss, batch_weight = batch_sums
    sl = cuda.shared.array(TPB, float64)
    ss = cuda.shared.array(TPB, float64)
    sg = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    a = 0.0
    c = 0.0
    g = 0.0
    if flags[0] == 0:
        for i in range(tid, nb, TPB):
            a += L[i]
            c += sw[order[start + i]]
            g += G[i]
    lsum = group_sum(sl, tid, tid, TPB, a)
    ssum = group_sum(ss, tid, tid, TPB, c)
    gsum = group_sum(sg, tid, tid, TPB, g)
    if tid == 0 and flags[0] == 0:
        batch_loss[b] = lsum
        batch_weight[b] = ssum
        flags[1] = 0
        if not (math.isfinite(lsum) and math.isfinite(gsum)):
            flags[0] = 1
        elif ssum <= 0:        # all weights zero: counted, but no step
            flags[1] = 1
            counts[0] += 1
        else:
            bc1 = bias[counts[1], 0]
            bc2 = bias[counts[1], 1]
            inv_s = 1.0 / ssum
            coef[0] = inv_s
            coef[1] = lr / bc1
            coef[2] = 1.0 / math.sqrt(bc2)
            g0 = gsum * inv_s
            intercept[1] = beta1 * intercept[1] + (1.0 - beta1) * g0
            intercept[2] = beta2 * intercept[2] + (1.0 - beta2) * g0 * g0
            intercept[0] -= lr / bc1 * intercept[1] / (math.sqrt(intercept[2] / bc2) + eps)
            counts[0] += 1
            counts[1] += 1


@cuda.jit
def update_kernel(sc, grads, tables, hyper, coef, l2, flags, lanes):
    """Adam update of the distinct features' rows; a group of `lanes` per row.

    grads = (G, Q, sw, order, start): the forward's s·g and q and the batch's
    rows; tables = (P, M, S); hyper = _hyper(...) in P's dtype; coef as
    written by reduce_kernel.
    """
    G, Q, sw, order, start = grads
    P, M, S = tables
    beta1, beta2, one_m_beta1, one_m_beta2, eps, l2_in_grad, decay, zero = hyper
    lam_w, lam_v = l2
    tid = cuda.grid(1)
    a = tid // lanes
    lane = tid % lanes
    if idle(flags) or a >= sc.nu[0]:
        return
    k = P.shape[1] - 1
    j = sc.uniq[a]
    lo = sc.starts[a]
    hi = lo + sc.lens[a]
    inv_s = coef[0]
    step = coef[1]
    inv_sqrt_bc2 = coef[2]
    for col in range(lane, k + 1, lanes):
        acc = zero
        gx2 = zero
        s_touch = zero
        for u in range(lo, hi):
            e = sc.seg[u]
            i = sc.ent_row[e]
            x = sc.ent_val[e]
            gx = G[i] * x
            gx2 += gx * x
            s_touch += sw[order[start + i]]
            if col == 0:
                acc += gx
            else:
                acc += gx * Q[i, col - 1]
        p = P[j, col]
        if col == 0:
            lam = l2_of(lam_w, j)
            g = (acc + l2_in_grad * lam * s_touch * p) * inv_s
        else:
            lam = l2_of(lam_v, j)
            g = (acc - p * gx2 + l2_in_grad * lam * s_touch * p) * inv_s
        m = beta1 * M[j, col] + one_m_beta1 * g
        s = beta2 * S[j, col] + one_m_beta2 * g * g
        M[j, col] = m
        S[j, col] = s
        P[j, col] = p - step * m / (math.sqrt(s) * inv_sqrt_bc2 + eps) - decay * lam * p


def _hyper(dt, adam):
    """(β1, β2, 1 − β1, 1 − β2, ε, l2_in_grad, decay, 0) in dtype dt:
    l2_in_grad is 1 with L2 in the gradient and 0 with decoupled decay,
    whose step size decay is lr (else 0)."""
    lr, beta1, beta2, eps, decoupled = adam
    c = dt.type
    return (c(beta1), c(beta2), c(1) - c(beta1), c(1) - c(beta2), c(eps),
            c(0 if decoupled else 1), c(lr if decoupled else 0), c(0))


def _bias(adam, t0, n_steps):
    """(n_steps, 2) float64: (1 − β1^t, 1 − β2^t) for t = t0 + 1, ...,
    computed as the CPU kernel does."""
    _, beta1, beta2, _, _ = adam
    return np.array([(1.0 - beta1 ** float(t), 1.0 - beta2 ** float(t))
                     for t in range(t0 + 1, t0 + 1 + max(n_steps, 1))], dtype=np.float64)


def launch_update(sc, grads, dtables, adam, dcoef, dl2, dflags):
    dP = dtables[0]
    lanes = lanes_for(dP.shape[1] - 1)
    update_kernel[blocks(sc.capacity * lanes), TPB](
        sc, grads, dtables, _hyper(dP.dtype, adam), dcoef, dl2, dflags, lanes)


def adam_epoch(X, y, sw, order, batch_size, loss_code, tables, intercept, t0, adam, l2,
               batch_sums):
    """Same contract as fmnumba.cpu.adam_epoch; returns (t, n_batches_done).

    Host arrays in; the tables, intercept and batch_sums are updated in
    place once, at the end (one device→host copy per epoch). X, y, sw and
    the L2 strengths stay cached on the device.
    """
    n = order.shape[0]
    P = tables[0]
    dt = P.dtype
    k = P.shape[1] - 1
    n_batches = -(-n // batch_size) if n else 0
    if n_batches == 0:
        return t0, 0
    adam = _adam_hyper(adam)
    order = np.ascontiguousarray(order, dtype=np.int64)
    eoff = batch_offsets(X[0], order)
    bounds = np.minimum(np.arange(n_batches + 1, dtype=np.int64) * batch_size, n)
    max_nnz = int(np.max(eoff[bounds[1:]] - eoff[bounds[:-1]]))
    nb_max = min(batch_size, n)
    dX = csr_to_device(X)
    dy, dsw = data_to_device(y), data_to_device(sw)
    dl2 = (data_to_device(l2[0]), data_to_device(l2[1]))
    dtables = tuple(param_to_device(a) for a in tables)
    dintercept = param_to_device(intercept)
    dorder, deoff = cuda.to_device(order), cuda.to_device(eoff)
    dout = (cuda.device_array(nb_max, dt), cuda.device_array((nb_max, k), dt),
            cuda.device_array(nb_max, dt), cuda.device_array(nb_max, np.float64))
    dsums = (cuda.to_device(np.zeros(n_batches)), cuda.to_device(np.zeros(n_batches)))
    dflags = cuda.to_device(np.zeros(2, np.int32))    # [diverged, batch idle]
    dcounts = cuda.to_device(np.zeros(2, np.int64))   # [batches done, steps taken]
    dbias = cuda.to_device(_bias(adam, int(t0), n_batches))
    dcoef = cuda.device_array(3, dt)
    hyper64 = adam[:4]
    sc = Scratch.empty(P.shape[0], max_nnz, dt)
    for b in range(n_batches):
        start = int(bounds[b])
        batch = (dorder, start, int(bounds[b + 1]) - start)
        launch_forward(dX, dy, dsw, batch, loss_code, dintercept, dtables[0], dout, dflags,
                       sc.nu)
        reduce_kernel[1, TPB](dout, dsw, batch, b, dintercept, hyper64, dbias, dcoef, dsums,
                              dflags, dcounts)
        launch_transpose(dX, batch, deoff, sc, dflags)
        launch_update(sc, (dout[2], dout[1], dsw, dorder, start), dtables, adam, dcoef, dl2,
                      dflags)
    done, steps = (int(v) for v in dcounts.copy_to_host())
    batch_sums[0][:n_batches] = dsums[0].copy_to_host()
    batch_sums[1][:n_batches] = dsums[1].copy_to_host()
    for dev, host in zip(dtables + (dintercept,), tuple(tables) + (intercept,)):
        param_to_host(dev, host)
    return t0 + steps, done


def adam_update(T, n_uniq, batch, inv_s, tables, adam, t, l2):
    """Same contract as fmnumba.cpu.adam_update (the CPU transpose layout in,
    the tables updated in place); runs the device update kernel."""
    if n_uniq == 0:
        return
    P = tables[0]
    dt = P.dtype
    G, sb, Q = batch
    _, beta1, beta2, _, _ = adam
    lr = float(adam[0])
    bc1 = 1.0 - float(beta1) ** float(t)
    bc2 = 1.0 - float(beta2) ** float(t)
    sc = Scratch.from_host(T, n_uniq, P.shape[0])
    dtables = tuple(cuda.to_device(a) for a in tables)
    grads = (cuda.to_device(np.ascontiguousarray(G)), cuda.to_device(np.ascontiguousarray(Q)),
             cuda.to_device(np.ascontiguousarray(sb)),
             cuda.to_device(np.arange(G.shape[0], dtype=np.int64)), 0)
    coef = cuda.to_device(np.array([inv_s, lr / bc1, 1.0 / np.sqrt(bc2)]).astype(dt))
    launch_update(sc, grads, dtables, adam, coef,
                  tuple(cuda.to_device(np.ascontiguousarray(a)) for a in l2),
                  cuda.to_device(np.zeros(2, np.int32)))
    for dev, host in zip(dtables, tables):
        param_to_host(dev, host)
