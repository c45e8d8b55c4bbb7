"""Per-feature (CSC) coordinate updates shared by the Gibbs sampler and ALS.

The model is linear in each single parameter θ: ŷ_r = g_r + θ·h_r with
h_r = x_rj for θ = w_j and h_r = x_rj (q_rf − v_jf x_rj) for θ = v_jf. With
the residuals e_r = t_r − ŷ_r and q_rf cached, the update of θ reads only
the rows where feature j occurs (its CSC column):

    A = Σ_r s_r h_r²,  B = Σ_r s_r h_r e_r
    precision = α A + λ,  mean = (α (B + θ A) + μ λ) / precision
    θ' = mean + noise · N(0, 1) / √precision

noise = 1 is the Gibbs draw from θ's conditional posterior under the prior
N(μ, 1/λ) and noise precision α; noise = 0 (α = 1, μ = 0) is the exact
minimiser of ½ Σ s e² + ½ λ θ² (ALS). Then e_r −= (θ' − θ) h_r and, for
v_jf, q_rf += (θ' − θ) x_rj. Sums are taken in float64 in the column's
storage order, so the result does not depend on who runs the update.

A sweep visits the columns in the order `cols` and, for each column j,
updates w_j, v_j1, ..., v_jk in turn (any fixed coordinate order is a valid
Gibbs scan and a valid coordinate descent). Columns are cut into segments;
the columns of a parallel segment never share a row (checked by the
caller), so they are updated in parallel chunks with the same result as in
order.
"""
import math

import numpy as np
from numba import njit, prange

from .._config import FASTMATH, kernel
from ._rng import normal, normal_above as _normal_above


@njit(fastmath=FASTMATH, nogil=True, error_model="numpy")
def _update_range(lo, hi, cols, cptr, ridx, cval, e, Q, sw, P, gid, mu_w, lam_w, mu_v, lam_v,
                  alpha, noise, key, sweep, tag_w, tag_v, unit_w, unit_x):
    """Update w_j, then v_j1 .. v_jk, for each j = cols[lo:hi] in turn.

    The column's rows are gathered once into contiguous buffers (e, q and,
    unless they are all 1, x and s), all 1 + k coordinates of j are updated
    there, and e and Q are written back: the random accesses to the row
    caches happen twice per column, not twice per coordinate. unit_w: every
    s_r is 1; unit_x: every stored x is 1 (one-hot or binary data).
    """
    k = Q.shape[1]
    dt = P.dtype.type
    one = dt(1)
    m_max = 0
    for p in range(lo, hi):
        j = cols[p]
        m_max = max(m_max, cptr[j + 1] - cptr[j])
    be = np.empty(m_max, dtype=P.dtype)
    bx = np.empty(m_max, dtype=P.dtype)
    bs = np.empty(m_max, dtype=P.dtype)
    bq = np.empty((k, m_max), dtype=P.dtype)
    for p in range(lo, hi):
        j = cols[p]
        c0 = cptr[j]
        m = cptr[j + 1] - c0
        for t in range(m):
            r = ridx[c0 + t]
            be[t] = e[r]
            if not unit_x:
                bx[t] = cval[c0 + t]
            if not unit_w:
                bs[t] = sw[r]
            for f in range(k):
                bq[f, t] = Q[r, f]
        g = gid[j]
        # linear weight: h = x
        a = 0.0
        b = 0.0
        for t in range(m):
            x = one if unit_x else bx[t]
            sx = x if unit_w else bs[t] * x
            a += sx * x
            b += sx * be[t]
        theta = P[j, 0]
        lj = lam_w[g]
        prec = alpha * a + lj
        if prec > 0.0:
            new = (alpha * (b + theta * a) + mu_w[g] * lj) / prec
            if noise:
                new += normal(key, sweep, tag_w, j, 0) / math.sqrt(prec)
            newt = dt(new)
            d = newt - theta
            for t in range(m):
                x = one if unit_x else bx[t]
                be[t] -= d * x
            P[j, 0] = newt
        # factors: h = x (q_f − v_jf x)
        for f in range(k):
            theta = P[j, f + 1]
            a = 0.0
            b = 0.0
            for t in range(m):
                x = one if unit_x else bx[t]
                h = x * (bq[f, t] - theta * x)
                sh = h if unit_w else bs[t] * h
                a += sh * h
                b += sh * be[t]
            lj = lam_v[f, g]
            prec = alpha * a + lj
            if prec <= 0.0:  # ALS without L2 on a feature that never occurs
                continue
            new = (alpha * (b + theta * a) + mu_v[f, g] * lj) / prec
            if noise:
                new += normal(key, sweep, tag_v + f, j, 0) / math.sqrt(prec)
            newt = dt(new)
            d = newt - theta
            for t in range(m):
                x = one if unit_x else bx[t]
                dx = d * x
                be[t] -= dx * (bq[f, t] - theta * x)
                bq[f, t] += dx
            P[j, f + 1] = newt
        for t in range(m):
            r = ridx[c0 + t]
            e[r] = be[t]
            for f in range(k):
                Q[r, f] = bq[f, t]


@kernel(parallel=True)
def _update_parallel(bounds, b0, b1, cols, cptr, ridx, cval, e, Q, sw, P, gid, mu_w, lam_w,
                     mu_v, lam_v, alpha, noise, key, sweep, tag_w, tag_v, unit_w, unit_x):
    """_update_range over the chunks bounds[b0:b1+1] of one parallel segment."""
    for c in prange(b1 - b0):
        _update_range(bounds[b0 + c], bounds[b0 + c + 1], cols, cptr, ridx, cval, e, Q, sw,
                      P, gid, mu_w, lam_w, mu_v, lam_v, alpha, noise, key, sweep, tag_w, tag_v,
                      unit_w, unit_x)


@kernel()
def update_sweep(seg_par, seg_b, bounds, cols, cptr, ridx, cval, e, Q, sw, P, gid, mu_w,
                 lam_w, mu_v, lam_v, alpha, noise, key, sweep, tag_w, tag_v, unit_w, unit_x):
    """One pass over every column: w_j then v_j1..v_jk for j in cols order.

    Segment s covers cols[bounds[seg_b[s]] : bounds[seg_b[s+1]]]; when
    seg_par[s], its chunks (bounds[seg_b[s]..seg_b[s+1]]) run in parallel.
    e (n_rows,), Q (n_rows, k) and P (n_features, 1 + k) are updated in
    place. Priors: mu_w, lam_w (G,), mu_v, lam_v (k, G) float64, indexed by
    gid[j]; key (2,) uint32; draw of w_j keyed (sweep, tag_w, j), of v_jf
    (sweep, tag_v + f, j). unit_w / unit_x: all weights / all stored values
    are 1 (sw / cval are then not read).
    """
    for s in range(seg_par.shape[0]):
        b0 = seg_b[s]
        b1 = seg_b[s + 1]
        if seg_par[s]:
            _update_parallel(bounds, b0, b1, cols, cptr, ridx, cval, e, Q, sw, P, gid, mu_w,
                             lam_w, mu_v, lam_v, alpha, noise, key, sweep, tag_w, tag_v,
                             unit_w, unit_x)
        else:
            _update_range(bounds[b0], bounds[b1], cols, cptr, ridx, cval, e, Q, sw, P, gid,
                          mu_w, lam_w, mu_v, lam_v, alpha, noise, key, sweep, tag_w, tag_v,
                          unit_w, unit_x)


_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@njit(fastmath=FASTMATH, nogil=True, error_model="numpy")
def log_ndtr(x):
    """log Φ(x), float64, accurate in the lower tail."""
    if x > -5.0:
        return math.log(0.5 * math.erfc(-x / math.sqrt(2.0)))
    x2 = x * x
    return -0.5 * x2 - math.log(-x) - _HALF_LOG_2PI + math.log1p(-1.0 / x2 + 3.0 / (x2 * x2))


N_CHUNKS = 64  # fixed row chunks: the partial sums do not depend on the thread count


@njit(inline="always", nogil=True, fastmath=FASTMATH)
def _latent_target(m, ysign_r, sw_r, key, sweep, tag, r):
    """Probit latent target t ~ N(m, 1) truncated to the side of ysign_r,
    and the row's loss term s_r log Φ(±m) (float64 both)."""
    if ysign_r > 0:
        nll = np.float64(sw_r) * log_ndtr(m)
        t = m + _normal_above(key, sweep, tag, r, -m)
    else:
        nll = np.float64(sw_r) * log_ndtr(-m)
        t = m - _normal_above(key, sweep, tag, r, m)
    return t, nll


@njit(inline="always", nogil=True, fastmath=FASTMATH)
def _add_residual(s0, s1, s2, er, sw_r):
    """(s0, s1, s2) + (s, s e, s e²) of one row, in float64."""
    ef = np.float64(er)
    s = np.float64(sw_r)
    return s0 + s, s1 + s * ef, s2 + s * ef * ef


@njit(inline="always", nogil=True)
def _store_sums(sums, c, s0, s1, s2, s3):
    """Row chunk c's four sums into sums[c]."""
    sums[c, 0] = s0
    sums[c, 1] = s1
    sums[c, 2] = s2
    sums[c, 3] = s3


@kernel(parallel=True)
def refresh_rows(indptr, indices, data, P, w0, target, ysign, probit, key, sweep, tag,
                 e, Q, sw, sums):
    """Recompute the caches from P: Q[r, f] = q_rf, e_r = t_r − ŷ_r.

    probit: first draw the latent target t_r ~ N(ŷ_r, 1) truncated to the
    side of ysign[r] (> 0: t > 0, else t < 0) into target[r]. sums[c] =
    (Σ s, Σ s e, Σ s e², Σ s (−log Φ(±ŷ))) over row chunk c of N_CHUNKS
    (float64); the last, the probit loss of the sample before the draw, is
    0 unless probit.
    """
    n = e.shape[0]
    k = P.shape[1] - 1
    dt = P.dtype.type
    half = dt(0.5)
    for c in prange(N_CHUNKS):
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for r in range(c * n // N_CHUNKS, (c + 1) * n // N_CHUNKS):
            lin = dt(0)
            sq = dt(0)
            for f in range(k):
                Q[r, f] = dt(0)
            for p in range(indptr[r], indptr[r + 1]):
                j = indices[p]
                x = data[p]
                lin += P[j, 0] * x
                for f in range(k):
                    v = P[j, f + 1] * x
                    Q[r, f] += v
                    sq += v * v
            inter = dt(0)
            for f in range(k):
                inter += Q[r, f] * Q[r, f]
            yh = w0 + lin + half * (inter - sq)
            if probit:
                m = np.float64(yh)
                t, nll = _latent_target(m, ysign[r], sw[r], key, sweep, tag, r)
                s3 -= nll
                target[r] = dt(t)
            er = target[r] - yh
            e[r] = er
            s0, s1, s2 = _add_residual(s0, s1, s2, er, sw[r])
        _store_sums(sums, c, s0, s1, s2, s3)


@kernel(parallel=True)
def latent_rows(target, ysign, probit, key, sweep, tag, e, sw, sums):
    """The O(n) part of refresh_rows, from the cached residuals: with
    ŷ_r = t_r − e_r, draw the probit latent target (when probit) and write
    e_r = t_r − ŷ_r and the chunk sums as refresh_rows does."""
    n = e.shape[0]
    dt = e.dtype.type
    for c in prange(N_CHUNKS):
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for r in range(c * n // N_CHUNKS, (c + 1) * n // N_CHUNKS):
            if probit:
                m = np.float64(target[r] - e[r])
                t, nll = _latent_target(m, ysign[r], sw[r], key, sweep, tag, r)
                s3 -= nll
                e[r] = dt(t - m)
                target[r] = dt(t)
            s0, s1, s2 = _add_residual(s0, s1, s2, e[r], sw[r])
        _store_sums(sums, c, s0, s1, s2, s3)


@kernel()
def residual_sums(e, sw, sums):
    """sums[c, :3] = (Σ s, Σ s e, Σ s e²) over row chunk c, sums[c, 3] = 0
    (serial: O(n) costs less than a parallel launch)."""
    n = e.shape[0]
    for c in range(N_CHUNKS):
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        for r in range(c * n // N_CHUNKS, (c + 1) * n // N_CHUNKS):
            s0, s1, s2 = _add_residual(s0, s1, s2, e[r], sw[r])
        _store_sums(sums, c, s0, s1, s2, 0.0)


@kernel(parallel=True)
def probit_loss(target, e, ysign, sw, out):
    """out[c] = −Σ s log Φ(±ŷ) over row chunk c, ŷ = target − e, sign of ysign."""
    n = e.shape[0]
    for c in prange(N_CHUNKS):
        acc = 0.0
        for r in range(c * n // N_CHUNKS, (c + 1) * n // N_CHUNKS):
            m = np.float64(target[r] - e[r])
            acc -= np.float64(sw[r]) * log_ndtr(m if ysign[r] > 0 else -m)
        out[c] = acc


@kernel()
def shift_residuals(e, d):
    """e −= d (the intercept moved by d); serial: O(n) is cheaper than a
    parallel launch here."""
    dd = e.dtype.type(d)
    for r in range(e.shape[0]):
        e[r] -= dd



@kernel()
def greedy_blocks(cptr, ridx, order, n_rows, starts):
    """Cut the column order into maximal runs whose columns share no row.

    Walks order[p] in turn and starts a new block when column order[p] has a
    row already used in the current block. Writes the block start positions
    into starts and returns how many there are.
    """
    mark = np.full(n_rows, -1, dtype=np.int64)
    nb = 0
    block = -1
    for p in range(order.shape[0]):
        j = order[p]
        clash = block < 0
        if not clash:
            for t in range(cptr[j], cptr[j + 1]):
                if mark[ridx[t]] == block:
                    clash = True
                    break
        if clash:
            block += 1
            starts[nb] = p
            nb += 1
        for t in range(cptr[j], cptr[j + 1]):
            mark[ridx[t]] = block
    return nb
