"""Predict, lazy-Adam epoch and SGD epoch for three parameter-table layouts,
written once over row accessors (bench/layout.py times them).

A table (the parameters, or one Adam moment) is a pair (W, V):

* ``wv``: V = [w | V], n × (1 + k), as fmnumba stores P; W empty (0 × 0);
* ``split``: W (n,) holds w, V (n × k) the factors;
* ``padded``: V = [w | V | 0…], rows padded to a multiple of 64 bytes and
  the table 64-byte aligned; W empty (0 × 0); the columns past k are never
  touched.

The kernels read and write rows only through get_w/set_w/get_v/set_v and
prefetch, which W's type resolves at compile time (a 1-D W: split; a 2-D
one: w in V's column 0), and take k explicitly, so wv and padded run the
same compiled code on tables of different row strides. They follow
fmnumba.cpu's algorithms and loop structure (predict.py, forward.py,
adam.py's update_and_transpose_inline and _adam_epoch, sgd.py), prefetching
included, for unit sample weights and one L2 value per parameter kind.
"""
import numpy as np
from numba import njit, prange
from numba.extending import overload

from fmnumba._config import FASTMATH, PRANGE_ONLY
from fmnumba.cpu._atomic import fetch_add
from fmnumba.cpu._prefetch import prefetch_1d, prefetch_csr_ahead, prefetch_row, rows_ahead
from fmnumba.cpu.adam import N_SPLIT, UPDATE_AHEAD, _coefficients, intercept_step
from fmnumba.cpu.forward import N_CHUNKS
from fmnumba.cpu.predict import CHUNK
from fmnumba.cpu.transpose import batch_scratch, transpose_batch
from fmnumba.losses import loss_grad, loss_value

LAYOUTS = ("wv", "split", "padded")

_PAR = dict(cache=True, nogil=True, fastmath=FASTMATH, parallel=PRANGE_ONLY, boundscheck=False,
            error_model="numpy")
_INLINE = dict(inline="always", fastmath=FASTMATH, nogil=True)


def padded_width(k, dtype):
    """Columns of a padded row: 1 + k rounded up to a multiple of 64 bytes."""
    per_line = 64 // np.dtype(dtype).itemsize
    return -(-(1 + k) // per_line) * per_line


def _aligned_zeros(shape, dtype, align=64):
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = np.zeros(n + align, dtype=np.uint8)
    off = (-buf.ctypes.data) % align
    return buf[off:off + n].view(dtype).reshape(shape)


def to_layout(P, layout):
    """The table (W, V) of `layout` holding P = [w | V] (n × (1 + k), copied
    except for ``wv``, which uses P itself)."""
    empty = np.empty((0, 0), dtype=P.dtype)
    if layout == "wv":
        return empty, P
    if layout == "split":
        return P[:, 0].copy(), np.ascontiguousarray(P[:, 1:])
    if layout == "padded":
        V = _aligned_zeros((P.shape[0], padded_width(P.shape[1] - 1, P.dtype)), P.dtype)
        V[:, :P.shape[1]] = P
        return empty, V
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def from_layout(W, V, layout, k):
    """[w | V] (n × (1 + k)) of a table (W, V) of `layout`."""
    if layout == "split":
        return np.column_stack([W, V])
    return np.ascontiguousarray(V[:, :1 + k])


def bytes_per_feature(layout, k, dtype):
    """Bytes one feature's row takes in one table of `layout`."""
    cols = padded_width(k, dtype) if layout == "padded" else 1 + k
    return cols * np.dtype(dtype).itemsize


# The row accessors, chosen at compile time by W's type: a 1-D W holds w
# (split); a 2-D (empty) W means w is V's column 0 and v_jf its column 1 + f
# (wv and padded, which so share their compiled code).
def get_w(W, V, j):
    """w_j."""


def set_w(W, V, j, x):
    """w_j = x."""


def get_v(W, V, j, f):
    """v_jf."""


def set_v(W, V, j, f, x):
    """v_jf = x."""


def prefetch(W, V, j):
    """Prefetch the lines holding w_j and v_j (padded: exactly its row's lines)."""


def _apart(W):
    return W.ndim == 1


@overload(get_w, inline="always")
def _get_w(W, V, j):
    if _apart(W):
        return lambda W, V, j: W[j]
    return lambda W, V, j: V[j, 0]


@overload(set_w, inline="always")
def _set_w(W, V, j, x):
    if _apart(W):
        def impl(W, V, j, x):
            W[j] = x
    else:
        def impl(W, V, j, x):
            V[j, 0] = x
    return impl


@overload(get_v, inline="always")
def _get_v(W, V, j, f):
    off = 0 if _apart(W) else 1
    return lambda W, V, j, f: V[j, off + f]


@overload(set_v, inline="always")
def _set_v(W, V, j, f, x):
    off = 0 if _apart(W) else 1

    def impl(W, V, j, f, x):
        V[j, off + f] = x
    return impl


@overload(prefetch, inline="always")
def _prefetch(W, V, j):
    if _apart(W):
        def impl(W, V, j):
            prefetch_1d(W, j)
            prefetch_row(V, j)
    else:
        def impl(W, V, j):
            prefetch_row(V, j)
    return impl


@njit(**_INLINE)
def row_forward(indptr, indices, data, W, V, r, q, rn):
    """fmnumba.cpu._row.row_forward over the table (W, V); q (k,)."""
    k = q.shape[0]
    zero = V.dtype.type(0)
    for f in range(k):
        q[f] = zero
    lin = zero
    sq = zero
    p0 = indptr[r]
    pn = indptr[rn] - p0 if rn >= 0 else 0
    pn_end = indptr[rn + 1] if rn >= 0 else 0
    for p in range(p0, indptr[r + 1]):
        if p + pn < pn_end:
            prefetch(W, V, indices[p + pn])
        j = indices[p]
        x = data[p]
        lin += get_w(W, V, j) * x
        vv = zero
        for f in range(k):
            v = get_v(W, V, j, f)
            q[f] += v * x
            vv += v * v
        sq += vv * x * x
    for p in range(indptr[r + 1] + pn, pn_end):
        prefetch(W, V, indices[p])
    inter = zero
    for f in range(k):
        inter += q[f] * q[f]
    return lin + V.dtype.type(0.5) * (inter - sq)

@njit(**_PAR)
def predict(X, w0, W, V, k, out):
    """out[r] = ŷ(x_r) over CSR X = (indptr, indices, data), as
    fmnumba.cpu.predict_csr; (W, V) the parameter table, w0 a scalar."""
    indptr, indices, data = X
    n = out.shape[0]
    ahead = rows_ahead(V)  # predict_csr's prefetch distance
    for c in prange((n + CHUNK - 1) // CHUNK):
        q = np.empty(k, dtype=V.dtype)
        stop = min(n, (c + 1) * CHUNK)
        for r in range(c * CHUNK, stop):
            rn = r + ahead if r + ahead < stop else -1
            out[r] = w0 + row_forward(indptr, indices, data, W, V, r, q, rn)

@njit(cache=True, fastmath=FASTMATH, nogil=True, error_model="numpy")
def forward_rows(lo, hi, X, y, rows, loss_code, w0, W, V, out):
    """fmnumba.cpu.forward._forward_rows with unit weights."""
    indptr, indices, data = X
    yhat, Q, G, L = out
    nb = rows.shape[0]
    for i in range(lo, hi):
        r = rows[i]
        rn = rows[i + 1] if i + 1 < nb else -1
        prefetch_csr_ahead(rows, i, nb, indptr, indices, data, y, y)
        yh = w0 + row_forward(indptr, indices, data, W, V, r, Q[i], rn)
        yhat[i] = yh
        G[i] = loss_grad(loss_code, yh, y[r])
        L[i] = loss_value(loss_code, yh, y[r])

@njit(**_INLINE)
def forward_batch(X, y, rows, loss_code, w0, W, V, out):
    nb = rows.shape[0]
    n_chunks = min(nb, N_CHUNKS)
    for c in prange(n_chunks):
        forward_rows(c * nb // n_chunks, (c + 1) * nb // n_chunks, X, y, rows, loss_code,
                     w0, W, V, out)

@njit(**_INLINE)
def update_and_transpose(T, n_uniq, G, Q, tables, k, coef, l2, X, cnt, next_rows, next_T,
                         counters):
    """fmnumba.cpu.adam.update_and_transpose_inline over (W, V) tables,
    unit weights, L2 in the gradient."""
    uniq, starts, ent_row, ent_val = T
    PW, PV, MW, MV, SW, SV = tables
    lam_w, lam_v = l2
    beta1, beta2, one_m_beta1, one_m_beta2, step, inv_sqrt_bc2, eps, inv_s, _, _ = coef
    t = PV.dtype.type
    ahead = UPDATE_AHEAD * N_SPLIT  # as fmnumba's update
    counters[0] = 0
    for w in prange(N_SPLIT):
        if w == 0 and next_rows.shape[0] > 0:
            counters[1] = transpose_batch(X, next_rows, cnt, next_T)
        c = fetch_add(counters, 0, 1)
        if c < N_SPLIT:
            gq = np.empty(k, dtype=PV.dtype)
            while c < N_SPLIT:
                for a in range(c, n_uniq, N_SPLIT):
                    if a + ahead < n_uniq:
                        jn = uniq[a + ahead]
                        prefetch(PW, PV, jn)
                        prefetch(MW, MV, jn)
                        prefetch(SW, SV, jn)
                    j = uniq[a]
                    gw = t(0)
                    gx2 = t(0)
                    n_touch = t(0)
                    for f in range(k):
                        gq[f] = t(0)
                    for e in range(starts[a], starts[a + 1]):
                        i = ent_row[e]
                        x = ent_val[e]
                        gx = G[i] * x
                        gw += gx
                        gx2 += gx * x
                        n_touch += t(1)
                        for f in range(k):
                            gq[f] += gx * Q[i, f]
                    p = get_w(PW, PV, j)
                    g = (gw + lam_w * n_touch * p) * inv_s
                    m = beta1 * get_w(MW, MV, j) + one_m_beta1 * g
                    s = beta2 * get_w(SW, SV, j) + one_m_beta2 * g * g
                    set_w(MW, MV, j, m)
                    set_w(SW, SV, j, s)
                    set_w(PW, PV, j, p - step * m / (np.sqrt(s) * inv_sqrt_bc2 + eps))
                    reg_v = lam_v * n_touch
                    for f in range(k):
                        p = get_v(PW, PV, j, f)
                        g = (gq[f] - p * gx2 + reg_v * p) * inv_s
                        m = beta1 * get_v(MW, MV, j, f) + one_m_beta1 * g
                        s = beta2 * get_v(SW, SV, j, f) + one_m_beta2 * g * g
                        set_v(MW, MV, j, f, m)
                        set_v(SW, SV, j, f, s)
                        set_v(PW, PV, j, f, p - step * m / (np.sqrt(s) * inv_sqrt_bc2 + eps))
                c = fetch_add(counters, 0, 1)

@njit(**_PAR)
def adam_epoch(X, y, order, batch_size, loss_code, tables, k, intercept, t0, adam, l2,
               batch_loss, cnt):
    """One lazy-Adam epoch as fmnumba.cpu.adam_epoch with all sample
    weights 1; returns (t, n_batches_done).

    tables = (PW, PV, MW, MV, SW, SV): the parameter and moment tables;
    intercept [w0, m, s] float64; adam = (lr, beta1, beta2, eps, False); l2
    = (lam_w, lam_v) scalars of the tables' dtype; batch_loss (n_batches,)
    receives each batch's Σ ℓ; cnt (n_features,) int64 zero scratch, left zero.
    """
    indptr, indices, data = X
    PV = tables[1]
    n = order.shape[0]
    dt = PV.dtype
    nb_max = min(batch_size, n)
    yhat = np.empty(nb_max, dtype=dt)
    Q = np.empty((nb_max, k), dtype=dt)
    G = np.empty(nb_max, dtype=dt)
    L = np.empty(nb_max, dtype=np.float64)
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
        forward_batch(X, y, rows, loss_code, intercept[0], tables[0], PV,
                      (yhat[:nb], Q[:nb], G[:nb], L[:nb]))
        lsum = 0.0
        gsum = 0.0
        for i in range(nb):
            lsum += L[i]
            gsum += G[i]
        batch_loss[done] = lsum
        if not np.isfinite(lsum) or not np.isfinite(gsum):
            return t, done
        nx = 1 - cur
        t += 1
        inv_s = 1.0 / nb
        update_and_transpose((uniq[cur], starts[cur], ent_row[cur], ent_val[cur]), u,
                             G[:nb], Q[:nb], tables, k, _coefficients(PV, adam, t, inv_s),
                             l2, X, cnt, nxt, (uniq[nx], starts[nx], ent_row[nx], ent_val[nx]),
                             counters)
        u = counters[1]
        cur = nx
        intercept_step(intercept, gsum, inv_s, adam, t)
        done += 1
    return t, done

@njit(**_PAR)
def sgd_epoch(X, y, order, n_chunks, loss_code, W, V, k, intercept, lr, l2, L):
    """One Hogwild SGD epoch as fmnumba.cpu.sgd_epoch with unit weights;
    l2 = (lam_w, lam_v) scalars; L[pos] receives ℓ of row order[pos] before
    its update."""
    indptr, indices, data = X
    lam_w, lam_v = l2
    n = order.shape[0]
    t = V.dtype.type
    eta = t(lr)
    w_start = intercept[0]
    dw0 = np.zeros(n_chunks)
    for c in prange(n_chunks):
        q = np.empty(k, dtype=V.dtype)
        w0 = w_start
        stop = (c + 1) * n // n_chunks
        for pos in range(c * n // n_chunks, stop):
            r = order[pos]
            rn = order[pos + 1] if pos + 1 < stop else -1
            prefetch_csr_ahead(order, pos, stop, indptr, indices, data, y, y)
            yh = t(w0) + row_forward(indptr, indices, data, W, V, r, q, rn)
            loss = loss_value(loss_code, yh, y[r])
            L[pos] = loss
            if not np.isfinite(loss):
                continue
            g = t(loss_grad(loss_code, yh, y[r]))
            w0 -= lr * g
            for p in range(indptr[r], indptr[r + 1]):
                x = data[p]
                if x == 0:
                    continue
                j = indices[p]
                gx = g * x
                w = get_w(W, V, j)
                set_w(W, V, j, w - eta * (gx + lam_w * w))
                gx2 = gx * x
                for f in range(k):
                    v = get_v(W, V, j, f)
                    set_v(W, V, j, f, v - eta * (gx * q[f] - v * gx2 + lam_v * v))
        dw0[c] = w0 - w_start
    for c in range(n_chunks):
        intercept[0] += dw0[c]
