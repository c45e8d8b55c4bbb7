"""Lazy Adam split in two halves that can run on different machines.

``batch_pieces`` computes, for the rows of one mini-batch that a machine
holds, the per-feature gradient pieces of lazy Adam (fmnumba.cpu.adam):

    gw_j   = Σ s_r g_r x_rj             gx2_j = Σ s_r g_r x_rj²
    sreg_j = Σ s_r  (per occurrence)    gq_jf = Σ s_r g_r x_rj q_rf

summed over the batch's entries of feature j in batch order, plus the
batch's Σ s·ℓ, Σ s and Σ s·g. The pieces are additive over disjoint row
sets, so partial pieces from several machines, summed, are the pieces of the
whole batch. ``adam_apply`` then applies one lazy Adam step (and the
intercept's) from the summed pieces, with the arithmetic of
fmnumba.cpu.adam: with all rows on one machine the two halves give the
single-machine step bit for bit.

``touch_counts`` counts, per feature, the mini-batches of an order that
touch it (the weights of the local-training average).
"""
import numpy as np
from numba import njit, prange

from .._config import ADAM_FASTMATH, kernel
from .adam import _adam_hyper, _coefficients, intercept_step
from .forward import forward_batch
from ._row import l2_of

# pieces[a] = [gw, gx2, sreg, gq_0 .. gq_{k-1}] of feature uniq[a]
N_HEAD = 3


@kernel(fastmath=ADAM_FASTMATH)
def _accumulate(indptr, indices, data, sw, rows, Q, G, L, slot, uniq, pieces, sums):
    """Scatter the entries of the batch rows into per-feature pieces."""
    nb = rows.shape[0]
    k = Q.shape[1]
    dt = pieces.dtype.type
    lsum = 0.0
    ssum = 0.0
    gsum = 0.0
    for i in range(nb):
        lsum += L[i]
        ssum += sw[rows[i]]
        gsum += G[i]
    sums[0] = lsum
    sums[1] = ssum
    sums[2] = gsum
    u = 0
    for i in range(nb):
        r = rows[i]
        gi = G[i]
        si = sw[r]
        for p in range(indptr[r], indptr[r + 1]):
            x = data[p]
            if x != 0:
                j = indices[p]
                a = slot[j] - 1
                if a < 0:
                    a = u
                    slot[j] = u + 1
                    uniq[u] = j
                    for c in range(N_HEAD + k):
                        pieces[u, c] = dt(0)
                    u += 1
                gx = gi * x
                pieces[a, 0] += gx
                pieces[a, 1] += gx * x
                pieces[a, 2] += si
                for f in range(k):
                    pieces[a, N_HEAD + f] += gx * Q[i, f]
    for a in range(u):
        slot[uniq[a]] = 0
    return u


def batch_pieces(indptr, indices, data, y, sw, rows, loss_code, w0, P, slot, uniq, pieces,
                 scratch, sums):
    """Gradient pieces of the batch rows `rows` (local row ids, batch order).

    Canonical CSR (indptr, indices, data), y and sw (n_rows,) in P's dtype;
    w0 the intercept (float64); slot (n_features,) int64 zero scratch, left
    zero; uniq (≥ nnz of the rows,) receives the touched features in
    first-appearance order and pieces (≥ that × (3 + k), P's dtype) their
    pieces; scratch = (yhat, Q, G, L) as forward_batch's out (nb, nb × k,
    nb in P's dtype, nb float64); sums (3,) float64 receives Σ s·ℓ, Σ s,
    Σ s·g. Returns the number of touched features.
    """
    if rows.shape[0] == 0:
        sums[:] = 0.0
        return 0
    forward_batch((indptr, indices, data), y, sw, rows, loss_code, w0, P, scratch)
    _, Q, G, L = scratch
    return _accumulate(indptr, indices, data, sw, rows, Q, G, L, slot, uniq, pieces, sums)


@njit(inline="always", fastmath=ADAM_FASTMATH, nogil=True)
def _apply_row(a, uniq, pieces, P, M, S, b1, b2, c1, c2, step, rbc2, ep, isum, lg, wd,
               lam_w, lam_v):
    k = P.shape[1] - 1
    j = uniq[a]
    gw = pieces[a, 0]
    gx2 = pieces[a, 1]
    sreg = pieces[a, 2]
    lw = l2_of(lam_w, j)
    lv = l2_of(lam_v, j)
    rw = lg * lw * sreg
    rv = lg * lv * sreg
    dw = wd * lw
    dv = wd * lv
    for col in range(k + 1):
        p = P[j, col]
        if col == 0:
            g = (gw + rw * p) * isum
            d = dw
        else:
            g = (pieces[a, N_HEAD + col - 1] - p * gx2 + rv * p) * isum
            d = dv
        m = b1 * M[j, col] + c1 * g
        s = b2 * S[j, col] + c2 * g * g
        M[j, col] = m
        S[j, col] = s
        P[j, col] = p - step * m / (np.sqrt(s) * rbc2 + ep) - d * p


@kernel(parallel=True, fastmath=ADAM_FASTMATH)
def _apply_rows(uniq, n_uniq, pieces, inv_s, P, M, S, adam, t, lam_w, lam_v):
    b1, b2, c1, c2, step, rbc2, ep, isum, lg, wd = _coefficients(P, adam, t, inv_s)
    n_split = 64
    for c in prange(n_split):
        for a in range(c, n_uniq, n_split):
            _apply_row(a, uniq, pieces, P, M, S, b1, b2, c1, c2, step, rbc2, ep, isum, lg,
                       wd, lam_w, lam_v)


@kernel(fastmath=ADAM_FASTMATH)
def _apply_intercept(bstate, gsum, inv_s, adam, t):
    intercept_step(bstate, gsum, inv_s, adam, t)


def adam_apply(uniq, n_uniq, pieces, ssum, gsum, t, P, M, S, bstate, lr, beta1, beta2, eps,
               lam_w, lam_v, decoupled=False):
    """One lazy Adam step at global step t (already advanced, t ≥ 1) from
    summed pieces: rows uniq[:n_uniq] of P, M, S and the intercept state
    bstate = [w0, m, s] are updated in place. ssum = Σ s and gsum = Σ s·g
    over the whole batch (float64, ssum > 0); lam_w, lam_v as in
    fmnumba.cpu.adam (per feature or (1,), P's dtype)."""
    adam = _adam_hyper((lr, beta1, beta2, eps, decoupled))
    inv_s = 1.0 / ssum
    if n_uniq:
        _apply_rows(uniq, n_uniq, pieces, inv_s, P, M, S, adam, np.int64(t), lam_w, lam_v)
    _apply_intercept(bstate, gsum, inv_s, adam, np.int64(t))


@kernel(fastmath=ADAM_FASTMATH)
def touch_counts(indptr, indices, data, order, batch_size, stamp, counts):
    """counts[j] += number of mini-batches (consecutive batch_size runs of
    order) with a nonzero of feature j. stamp (n_features,) int64 scratch
    that must hold no value in [1, n_batches]; it is left zero."""
    n = order.shape[0]
    b = 0
    for start in range(0, n, batch_size):
        b += 1
        for i in range(start, min(n, start + batch_size)):
            r = order[i]
            for p in range(indptr[r], indptr[r + 1]):
                if data[p] != 0:
                    j = indices[p]
                    if stamp[j] != b:
                        stamp[j] = b
                        counts[j] += 1
    for i in range(n):
        r = order[i]
        for p in range(indptr[r], indptr[r + 1]):
            stamp[indices[p]] = 0
