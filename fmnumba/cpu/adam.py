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
* A batch whose sample weights sum to 0 carries no objective: it is counted
  as done but takes no step (t unchanged, nothing updated).
* decoupled=True (solver "adamw") takes L2 out of the gradient and instead
  decays each touched row once per batch after its Adam step, by the epoch's
  (not bias-corrected) step size: p ← p − lr·(m̂/(√ŝ + ε)) − lr·λ·p, as
  AdamW does (Loshchilov & Hutter), lazily: untouched rows do not decay.
"""
import threading

import numba
import numpy as np
from numba import njit, prange

from .._config import ADAM_FASTMATH, SERIAL_WORK, kernel, serial_twin
from ._atomic import fetch_add
from ._prefetch import prefetch_row
from ._row import l2_of
from .forward import forward_batch_inline
from .transpose import batch_scratch, transpose_batch

N_SPLIT = 64  # interleaved work units per update: spreads hot features
# Rows ahead whose P, M and S rows the update prefetches. A row's update
# computes for about as long as its misses take to arrive, so the lead must
# cover several rows; 8 was the fastest of 2, 4, 8 and 16 at k = 8 and 64.
UPDATE_AHEAD = 8


@njit(inline="always", fastmath=ADAM_FASTMATH, nogil=True)
def _coefficients(P, adam, t, inv_s):
    """Adam's constants for step t (≥ 1) in P's dtype: (β1, β2, 1 − β1,
    1 − β2, lr / (1 − β1^t), 1 / √(1 − β2^t), ε, 1 / Σ s, l2_in_grad, decay).

    l2_in_grad is 1 when L2 goes into the gradient, 0 with decoupled decay;
    decay is the step size of the decoupled decay (lr, or 0).
    """
    lr, beta1, beta2, eps, decoupled = adam
    c = P.dtype.type
    one = c(1)
    bc1 = 1.0 - beta1 ** np.float64(t)
    bc2 = 1.0 - beta2 ** np.float64(t)
    return (c(beta1), c(beta2), one - c(beta1), one - c(beta2), c(lr / bc1),
            c(1.0 / np.sqrt(bc2)), c(eps), c(inv_s), c(0) if decoupled else one,
            c(lr) if decoupled else c(0))


@njit(inline="always", nogil=True)
def intercept_step(intercept, gsum, inv_s, adam, t):
    """Plain Adam (float64) on intercept = [w0, m, s] at step t (≥ 1) from
    the batch's Σ s·g (gsum) and 1 / Σ s (inv_s)."""
    lr, beta1, beta2, eps, _ = adam
    g0 = gsum * inv_s
    bc1 = 1.0 - beta1 ** np.float64(t)
    bc2 = 1.0 - beta2 ** np.float64(t)
    intercept[1] = beta1 * intercept[1] + (1.0 - beta1) * g0
    intercept[2] = beta2 * intercept[2] + (1.0 - beta2) * g0 * g0
    intercept[0] -= lr / bc1 * intercept[1] / (np.sqrt(intercept[2] / bc2) + eps)


@kernel(parallel=True, fastmath=ADAM_FASTMATH)
def update_and_transpose(T, n_uniq, batch, tables, coef, l2, X, cnt, next_rows, next_T,
                         counters):
    """update_and_transpose_inline as a kernel of its own (adam_update's)."""
    update_and_transpose_inline(T, n_uniq, batch, tables, coef, l2, X, cnt, next_rows, next_T,
                                counters)


# Inlined into update_and_transpose and into the Adam epoch, which so
# compiles no separate update kernel of its own.
@njit(inline="always", fastmath=ADAM_FASTMATH, nogil=True)
def update_and_transpose_inline(T, n_uniq, batch, tables, coef, l2, X, cnt, next_rows, next_T,
                                counters):
    """adam_update of this batch, and transpose_batch of the next one
    (next_rows; none when empty) into next_T, at the same time.

    coef is _coefficients' tuple. One thread transposes first; the Adam rows
    are handed out in N_SPLIT interleaved units (unit c: the rows uniq[a],
    a = c, c + N_SPLIT, ...) through the work counter counters[0] (int64
    (2,)), so the other threads take on the units it would have done.
    counters[1] receives the next batch's number of distinct features.
    Results are those of adam_update followed by transpose_batch, whatever
    the thread count.
    """
    # The arrays enter the parallel region one by one, not in tuples, and
    # the row update is written out in its body: tuples of arrays handed to
    # an inlined helper there cost the update several per cent.
    uniq, starts, ent_row, ent_val = T
    G, sb, Q = batch
    P, M, S = tables
    lam_w, lam_v = l2
    beta1, beta2, one_m_beta1, one_m_beta2, step, inv_sqrt_bc2, eps, inv_s, \
        l2_in_grad, decay = coef
    k = P.shape[1] - 1
    t = P.dtype.type
    # Prefetch the rows this thread updates UPDATE_AHEAD of its rows later.
    ahead = UPDATE_AHEAD * N_SPLIT
    counters[0] = 0
    # Each thread runs a block of these iterations; iteration 0's thread
    # transposes first. The iterations only take units from the counter, so
    # their number (not the thread count, whose query is uncacheable) is moot.
    for w in prange(N_SPLIT):
        if w == 0 and next_rows.shape[0] > 0:
            counters[1] = transpose_batch(X, next_rows, cnt, next_T)
        c = fetch_add(counters, 0, 1)
        if c < N_SPLIT:  # most iterations find the units all taken: no scratch for them
            gq = np.empty(k, dtype=P.dtype)
            while c < N_SPLIT:
                for a in range(c, n_uniq, N_SPLIT):
                    if a + ahead < n_uniq:  # a row updated later: overlap its misses
                        jn = uniq[a + ahead]
                        prefetch_row(P, jn)
                        prefetch_row(M, jn)
                        prefetch_row(S, jn)
                    j = uniq[a]
                    gw = t(0)
                    gx2 = t(0)
                    s_touch = t(0)  # Σ s_r over the rows touching j: the L2 term's weight
                    for f in range(k):
                        gq[f] = t(0)
                    for e in range(starts[a], starts[a + 1]):
                        i = ent_row[e]
                        x = ent_val[e]
                        gx = G[i] * x
                        gw += gx
                        gx2 += gx * x
                        s_touch += sb[i]
                        for f in range(k):
                            gq[f] += gx * Q[i, f]
                    lw = l2_of(lam_w, j)
                    lv = l2_of(lam_v, j)
                    reg_w = l2_in_grad * lw * s_touch
                    reg_v = l2_in_grad * lv * s_touch
                    for col in range(k + 1):
                        p = P[j, col]
                        if col == 0:
                            g = (gw + reg_w * p) * inv_s
                            d = decay * lw
                        else:
                            g = (gq[col - 1] - p * gx2 + reg_v * p) * inv_s
                            d = decay * lv
                        m = beta1 * M[j, col] + one_m_beta1 * g
                        s = beta2 * S[j, col] + one_m_beta2 * g * g
                        M[j, col] = m
                        S[j, col] = s
                        P[j, col] = p - step * m / (np.sqrt(s) * inv_sqrt_bc2 + eps) - d * p
                c = fetch_add(counters, 0, 1)


def _adam_hyper(adam):
    """(lr, beta1, beta2, eps, decoupled) as (float × 4, bool): one compiled type."""
    lr, beta1, beta2, eps, decoupled = adam
    return float(lr), float(beta1), float(beta2), float(eps), bool(decoupled)


def adam_update(T, n_uniq, batch, inv_s, tables, adam, t, l2):
    """Adam step t (≥ 1, the global step count) of the rows uniq[:n_uniq] of
    P (and of M, S) in place.

    T = (uniq, starts, ent_row, ent_val) is the batch transposed by
    transpose_batch; batch = (G, sb, Q) with G (nb,) holding s_r·g_r, sb (nb,)
    s_r, Q (nb × k) the cached q; inv_s is 1 / Σ_batch s_r (> 0); tables =
    (P, M, S); adam = (lr, beta1, beta2, eps, decoupled), decoupled selecting
    AdamW's decay (module docstring); l2 = (lam_w, lam_v), the per-feature L2
    strengths (of P's dtype), each (n_features,) or (1,) for one value shared
    by all. Each row's gradient is summed in batch order and each row is
    owned by one thread, so results do not depend on the thread count.
    """
    none = np.empty(0, dtype=np.int64)  # no next batch: the CSR and next_T go unread
    dt = tables[0].dtype.type  # (returned to Python as floats: back to P's dtype, exactly)
    coef = tuple(dt(c) for c in _coefficients(tables[0], _adam_hyper(adam), t, inv_s))
    update_and_transpose(T, n_uniq, batch, tables, coef, l2, (none, T[0], T[3]), none, none,
                         T, np.zeros(2, np.int64))


_scratch = threading.local()


def _feature_counts(n_features):
    """An all-zero int64 (n_features,) array for transpose_batch, kept by the
    calling thread from one epoch to the next (the kernels leave it all
    zero): a fresh one would cost each epoch a memset and page faults."""
    cnt = getattr(_scratch, "cnt", None)
    if cnt is None or cnt.shape[0] != n_features:
        cnt = _scratch.cnt = np.zeros(n_features, dtype=np.int64)
    return cnt


def adam_epoch(X, y, sw, order, batch_size, loss_code, tables, intercept, t0, adam, l2,
               batch_sums):
    """One epoch of mini-batch lazy Adam; see _adam_epoch for the arguments.
    Runs on the epoch's serial twin when serial_is_faster."""
    serial = serial_is_faster(X, batch_size, tables[0])
    return adam_epoch_on(_adam_epoch_serial if serial else _adam_epoch, X, y, sw, order,
                         batch_size, loss_code, tables, intercept, t0, adam, l2, batch_sums)


def adam_epoch_on(epoch, X, y, sw, order, batch_size, loss_code, tables, intercept, t0, adam,
                  l2, batch_sums):
    """adam_epoch on the given compiled epoch: _adam_epoch or its serial twin.

    Starts Numba's thread pool first: a cached serial function that calls
    parallel kernels segfaults when loaded before the pool exists
    (numba/numba#8578).
    """
    numba.get_num_threads()
    return epoch(X, y, sw, order, batch_size, loss_code, tables, intercept, t0,
                 _adam_hyper(adam), l2, batch_sums, _feature_counts(tables[0].shape[0]))


# Adam runs two parallel regions per mini-batch. When the parameter tables are
# cache-resident and a batch is light (under SERIAL_WORK), waking the second
# thread costs more than it saves, so such epochs run on the epoch's serial
# twin, which also compiles faster (a first small fit waits less). The twins
# give the same bits, so this changes speed only.
_SMALL_TABLES = 2 << 20      # bytes of P, M and S together


def serial_is_faster(X, batch_size, P):
    """Whether an Adam epoch over X = (indptr, indices, data) with this batch
    size and table P runs faster serially (see above)."""
    indptr = X[0]
    work = batch_size * int(indptr[-1]) / max(1, indptr.shape[0] - 1) * P.shape[1]
    return 3 * P.nbytes <= _SMALL_TABLES and work < SERIAL_WORK


@kernel(parallel=True, fastmath=ADAM_FASTMATH)
def _adam_epoch(X, y, sw, order, batch_size, loss_code, tables, intercept, t0, adam, l2,
                batch_sums, cnt):
    """One epoch of mini-batch lazy Adam over the rows of X = (indptr,
    indices, data) in the given order.

    tables = (P, M, S): parameters and moments, updated in place; intercept
    = [w0, m_w0, s_w0] (float64), updated in place; t0 is the global step
    count before the epoch; adam = (lr, beta1, beta2, eps, decoupled); l2 =
    (lam_w, lam_v), per-feature L2, (n_features,) or (1,), P's dtype (with
    decoupled=True, AdamW decay rates instead: module docstring).
    batch_sums = (batch_loss, batch_weight): entry b receives batch b's Σ s·ℓ
    and Σ s (measured before its update). A batch whose weights sum to 0
    is counted as done but takes no step (t unchanged). Stops before
    updating on the first non-finite batch loss. cnt (n_features,) int64 is
    zero scratch, left zero. Returns (t, n_batches_done).
    """
    indptr, indices, data = X
    P = tables[0]
    batch_loss, batch_weight = batch_sums
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
    uniq, starts, ent_row, ent_val = batch_scratch(indptr, indices, order, batch_size, dt)
    counters = np.zeros(2, dtype=np.int64)
    cur = 0
    u = transpose_batch(X, order[:nb_max], cnt, (uniq[0], starts[0], ent_row[0], ent_val[0]))
    t = t0
    done = 0
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        nb = stop - start
        rows = order[start:stop]
        nxt = order[stop:min(n, stop + batch_size)]
        forward_batch_inline(X, y, sw, rows, loss_code, intercept[0], P,
                             (yhat[:nb], Q[:nb], G[:nb], L[:nb]))
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
        next_T = (uniq[nx], starts[nx], ent_row[nx], ent_val[nx])
        if ssum <= 0:  # all weights zero: nothing to learn from this batch
            u = transpose_batch(X, nxt, cnt, next_T)
            cur = nx
            done += 1
            continue
        t += 1
        inv_s = 1.0 / ssum
        update_and_transpose_inline((uniq[cur], starts[cur], ent_row[cur], ent_val[cur]), u,
                                    (G[:nb], sb[:nb], Q[:nb]), tables,
                                    _coefficients(P, adam, t, inv_s), l2, X, cnt, nxt, next_T,
                                    counters)
        u = counters[1]
        cur = nx
        intercept_step(intercept, gsum, inv_s, adam, t)
        done += 1
    return t, done


_adam_epoch_serial = serial_twin(_adam_epoch, "_adam_epoch_serial")
