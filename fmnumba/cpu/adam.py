"""Lazy fused Adam: gradient, moment update and parameter update in place.

Semantics (mirrored exactly by tests/naive.py):

* One global step counter t, incremented once per mini-batch (t = 1 for the
  first batch ever, carried across epochs and partial_fit calls); bias
  corrections use it.
* The batch objective is Σ_r s_r [ℓ(ŷ_r, y_r) + ½ Σ_{j: x_rj ≠ 0}
  (λ_w w_j² + λ_v ‖v_j‖²)] / Σ_r s_r over the batch rows: L2 is charged per
  occurrence, as libFM's SGD does, so only touched rows are regularised.
* Only rows j with a nonzero in the batch ("touched") change: their moments
  m, s and parameters get the Adam update; untouched rows and their moments
  are left exactly as they are (no decay), like PyTorch's SparseAdam.
* The intercept w0 is unregularised and updated every batch.
* decoupled=True (solver "adamw") takes L2 out of the gradient and instead
  decays each touched row once per batch after its Adam step, by the epoch's
  (not bias-corrected) step size: p ← p − lr·(m̂/(√ŝ + ε)) − lr·λ·p, as
  AdamW does (Loshchilov & Hutter), lazily: untouched rows do not decay.
"""
import numba
import numpy as np
from numba import njit, prange

from .._config import FASTMATH, kernel
from ._atomic import fetch_add
from ._prefetch import prefetch_row
from ._row import l2_of
from .forward import forward_batch
from .transpose import transpose_batch

N_SPLIT = 64  # interleaved work units per update: spreads hot features


@njit(inline="always", fastmath=FASTMATH, nogil=True)
def _adam_row(a, an, gq, uniq, starts, ent_row, ent_val, G, sb, Q, isum, P, M, S,
              b1, b2, c1, c2, step, rbc2, ep, lg, wd, lam_w, lam_v):
    """Gradient and Adam update of row uniq[a] (see adam_update); the P, M
    and S rows of uniq[an] (an >= 0) are prefetched."""
    k = P.shape[1] - 1
    t = P.dtype.type
    if an >= 0:  # a row this thread updates later: overlap its misses with this one
        jn = uniq[an]
        prefetch_row(P, jn)
        prefetch_row(M, jn)
        prefetch_row(S, jn)
    j = uniq[a]
    gw = t(0)
    gx2 = t(0)
    sreg = t(0)
    for f in range(k):
        gq[f] = t(0)
    for e in range(starts[a], starts[a + 1]):
        i = ent_row[e]
        x = ent_val[e]
        gx = G[i] * x
        gw += gx
        gx2 += gx * x
        sreg += sb[i]
        for f in range(k):
            gq[f] += gx * Q[i, f]
    lw = l2_of(lam_w, j)
    lv = l2_of(lam_v, j)
    rw = lg * lw * sreg  # L2 in the gradient (lg = 1), or decoupled (lg = 0, wd = lr)
    rv = lg * lv * sreg
    dw = wd * lw
    dv = wd * lv
    for col in range(k + 1):
        p = P[j, col]
        if col == 0:
            g = (gw + rw * p) * isum
            d = dw
        else:
            g = (gq[col - 1] - p * gx2 + rv * p) * isum
            d = dv
        m = b1 * M[j, col] + c1 * g
        s = b2 * S[j, col] + c2 * g * g
        M[j, col] = m
        S[j, col] = s
        P[j, col] = p - step * m / (np.sqrt(s) * rbc2 + ep) - d * p


@njit(inline="always", fastmath=FASTMATH, nogil=True)
def _adam_consts(P, lr, beta1, beta2, eps, bc1, bc2, inv_s, decoupled):
    t = P.dtype.type
    one = t(1)
    lg = t(0) if decoupled else one
    wd = t(lr) if decoupled else t(0)
    return (t(beta1), t(beta2), one - t(beta1), one - t(beta2), t(lr / bc1),
            t(1.0 / np.sqrt(bc2)), t(eps), t(inv_s), lg, wd)


@kernel(parallel=True)
def update_and_transpose(uniq, n_uniq, starts, ent_row, ent_val, G, sb, Q, inv_s,
                         P, M, S, lr, beta1, beta2, eps, bc1, bc2, lam_w, lam_v, decoupled,
                         indptr, indices, data, next_rows, cnt, next_uniq, next_starts,
                         next_ent_row, next_ent_val, next_u, work):
    """adam_update of this batch, and transpose_batch of the next one
    (next_rows; none when empty) into the next_* buffers, at the same time.

    One thread transposes first; the Adam rows are handed out in N_SPLIT
    interleaved units through the counter work (int64 (1,)), so the other
    threads take on the units it would have done (k=8, 2 threads: 1.3x
    faster epochs than transposing between the parallel regions). next_u[0]
    receives the next batch's number of distinct features. Results are those
    of adam_update followed by transpose_batch, whatever the thread count.
    """
    b1, b2, c1, c2, step, rbc2, ep, isum, lg, wd = _adam_consts(
        P, lr, beta1, beta2, eps, bc1, bc2, inv_s, decoupled)
    # Prefetch the rows this thread updates `ahead` rows later: a row that
    # fits a cache line leaves room for 4 in flight (k=8: 1.25x faster than 1
    # ahead on the benchmark's large set); longer rows, 2 (k=64: 1.05x).
    ahead = (4 if P.shape[1] * P.itemsize <= 64 else 2) * N_SPLIT
    work[0] = 0
    # Each thread runs a block of these iterations; iteration 0's thread
    # transposes first. The iterations only take units from the counter, so
    # their number (not the thread count, whose query is uncacheable) is moot.
    for w in prange(N_SPLIT):
        if w == 0 and next_rows.shape[0] > 0:
            next_u[0] = transpose_batch(indptr, indices, data, next_rows, cnt, next_uniq,
                                        next_starts, next_ent_row, next_ent_val)
        c = fetch_add(work, 0, 1)
        if c < N_SPLIT:  # most iterations find the units all taken: no scratch for them
            gq = np.empty(P.shape[1] - 1, dtype=P.dtype)
            while c < N_SPLIT:
                for a in range(c, n_uniq, N_SPLIT):
                    an = a + ahead if a + ahead < n_uniq else -1
                    _adam_row(a, an, gq, uniq, starts, ent_row, ent_val, G, sb, Q, isum, P, M,
                              S, b1, b2, c1, c2, step, rbc2, ep, lg, wd, lam_w, lam_v)
                c = fetch_add(work, 0, 1)


def adam_update(uniq, n_uniq, starts, ent_row, ent_val, G, sb, Q, inv_s,
                P, M, S, lr, beta1, beta2, eps, bc1, bc2, lam_w, lam_v, decoupled=False):
    """Adam update of the rows uniq[:n_uniq] of P (and of M, S) in place.

    G (nb,) holds s_r·g_r, sb (nb,) s_r, Q (nb × k) the cached q; inv_s is
    1 / Σ_batch s_r; lam_w, lam_v are the per-feature L2 strengths (of P's
    dtype), (n_features,) or (1,) for one value shared by all; bc1, bc2 =
    1 − β^t; decoupled selects AdamW's decay (module docstring). Each row's
    gradient is summed in batch order and each row is owned by one thread, so
    results do not depend on the thread count.
    """
    none = np.empty(0, dtype=np.int64)  # no next batch: the CSR and next_* go unread
    update_and_transpose(uniq, n_uniq, starts, ent_row, ent_val, G, sb, Q, inv_s, P, M, S,
                         lr, beta1, beta2, eps, bc1, bc2, lam_w, lam_v, decoupled,
                         none, uniq, ent_val, none, none, uniq, starts, ent_row, ent_val,
                         np.zeros(1, np.int64), np.zeros(1, np.int64))


def adam_epoch(*args):
    """One epoch of mini-batch lazy Adam; see _adam_epoch for the arguments.

    Starts Numba's thread pool first: a cached serial function that calls
    parallel kernels segfaults when loaded before the pool exists
    (numba/numba#8578).
    """
    numba.get_num_threads()
    return _adam_epoch(*args)


@kernel()
def _adam_epoch(indptr, indices, data, y, sw, order, batch_size, loss_code,
               P, M, S, bstate, t0, lr, beta1, beta2, eps, lam_w, lam_v, cnt,
               batch_loss, batch_weight, decoupled=False):
    """One epoch of mini-batch lazy Adam over rows in the given order.

    lam_w, lam_v: per-feature L2, (n_features,) or (1,), P's dtype; with
    decoupled=True they are AdamW decay rates instead (module docstring).
    bstate = [w0, m_w0, s_w0] is updated in place; t0 is the global step
    count before the epoch. batch_loss[b] / batch_weight[b] receive the
    batch's Σ s·ℓ and Σ s (measured before its update). cnt (n_features,)
    int64 is zero scratch. Stops before updating on the first non-finite
    batch loss. Returns (t, n_batches_done).
    """
    n = order.shape[0]
    k = P.shape[1] - 1
    dt = P.dtype
    nb_max = min(batch_size, n)
    if nb_max >= 2 ** 31:  # batch positions are stored as int32
        raise ValueError("batch_size must be below 2**31 rows")
    yhat = np.empty(nb_max, dtype=dt)
    Q = np.empty((nb_max, k), dtype=dt)
    G = np.empty(nb_max, dtype=dt)
    L = np.empty(nb_max, dtype=np.float64)
    sb = np.empty(nb_max, dtype=dt)
    max_nnz = 0
    for start in range(0, n, batch_size):
        tot = 0
        for i in range(start, min(n, start + batch_size)):
            r = order[i]
            tot += indptr[r + 1] - indptr[r]
        max_nnz = max(max_nnz, tot)
    # two transpose buffers: batch b's is read while batch b + 1's is written
    uniq = np.empty((2, max_nnz), dtype=indices.dtype)
    starts = np.empty((2, max_nnz + 1), dtype=np.int64)
    ent_row = np.empty((2, max_nnz), dtype=np.int32)  # positions in a batch
    ent_val = np.empty((2, max_nnz), dtype=dt)
    next_u = np.zeros(1, dtype=np.int64)
    work = np.zeros(1, dtype=np.int64)
    cur = 0
    u = transpose_batch(indptr, indices, data, order[:nb_max], cnt, uniq[0], starts[0],
                        ent_row[0], ent_val[0])
    t = t0
    done = 0
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        nb = stop - start
        rows = order[start:stop]
        nxt = order[stop:min(n, stop + batch_size)]
        forward_batch(indptr, indices, data, y, sw, rows, loss_code,
                      bstate[0], P, yhat[:nb], Q[:nb], G[:nb], L[:nb])
        lsum = 0.0
        ssum = 0.0
        gsum = 0.0
        for i in range(nb):
            lsum += L[i]
            sb[i] = sw[rows[i]]
            ssum += sb[i]
            gsum += G[i]
        batch_loss[done] = lsum
        batch_weight[done] = ssum
        if not np.isfinite(lsum) or not np.isfinite(gsum):
            return t, done
        nx = 1 - cur
        if ssum <= 0:  # all weights zero: nothing to learn from this batch
            u = transpose_batch(indptr, indices, data, nxt, cnt, uniq[nx], starts[nx],
                                ent_row[nx], ent_val[nx])
            cur = nx
            done += 1
            continue
        t += 1
        bc1 = 1.0 - beta1 ** t
        bc2 = 1.0 - beta2 ** t
        inv_s = 1.0 / ssum
        update_and_transpose(uniq[cur], u, starts[cur], ent_row[cur], ent_val[cur], G[:nb],
                             sb[:nb], Q[:nb], inv_s, P, M, S, lr, beta1, beta2, eps, bc1, bc2,
                             lam_w, lam_v, decoupled, indptr, indices, data, nxt, cnt,
                             uniq[nx], starts[nx], ent_row[nx], ent_val[nx], next_u, work)
        u = next_u[0]
        cur = nx
        # intercept: plain Adam on the scalar, in float64
        g0 = gsum * inv_s
        bstate[1] = beta1 * bstate[1] + (1.0 - beta1) * g0
        bstate[2] = beta2 * bstate[2] + (1.0 - beta2) * g0 * g0
        bstate[0] -= lr / bc1 * bstate[1] / (np.sqrt(bstate[2] / bc2) + eps)
        done += 1
    return t, done
