"""Top-N scoring of every candidate item for each user by the FM's
decomposition.

A (user, item) row is x = a + b with a the user part (user one-hot, user
attributes, fixed context) and b the item part, on disjoint columns. Then

    ŷ(a + b) = w0 + s(a) + s(b) + <q(a), q(b)>,
    s(x) = Σ_j w_j x_j + ½ (‖q(x)‖² − Σ_j x_j² ‖v_j‖²),   q(x) = Σ_j x_j v_j,

so with s and q precomputed for the users and for the items, a user's
scores for all items cost O(n_items·k).
"""
import numpy as np
from numba import prange

from .._config import kernel


@kernel(parallel=True)
def row_terms(indptr, indices, data, P, s, Q):
    """s[r] = s(x_r) and Q[r] = q(x_r) (see the module docstring) for every
    CSR row r; P = [w | V] (n_features × (1 + k)); s (n,), Q (n, k) float64."""
    k = P.shape[1] - 1
    for r in prange(s.shape[0]):
        lin = 0.0
        sq = 0.0
        for f in range(k):
            Q[r, f] = 0.0
        for p in range(indptr[r], indptr[r + 1]):
            j = indices[p]
            x = np.float64(data[p])
            lin += np.float64(P[j, 0]) * x
            for f in range(k):
                v = np.float64(P[j, 1 + f]) * x
                Q[r, f] += v
                sq += v * v
        norm = 0.0
        for f in range(k):
            norm += Q[r, f] * Q[r, f]
        s[r] = lin + 0.5 * (norm - sq)


@kernel()
def _better(sa, ia, sb, ib):
    """Whether (score sa, item ia) ranks before (sb, ib): higher score,
    then lower item position."""
    return sa > sb or (sa == sb and ia < ib)


@kernel()
def _sift_down(hs, hi, size, pos):
    """Restore the heap below pos; the root holds the worst kept entry."""
    while True:
        c = 2 * pos + 1
        if c >= size:
            return
        if c + 1 < size and _better(hs[c], hi[c], hs[c + 1], hi[c + 1]):
            c += 1  # the worse child
        if _better(hs[c], hi[c], hs[pos], hi[pos]):
            return
        hs[pos], hs[c] = hs[c], hs[pos]
        hi[pos], hi[c] = hi[c], hi[pos]
        pos = c


@kernel(parallel=True)
def top_n(su, Qu, si, Qi, excl_indptr, excl_indices, n, out_items, out_scores, counts):
    """For each user u: the n best candidate items by su[u] + si[i] +
    <Qu[u], Qi[i]>, leaving out the candidate positions
    excl_indices[excl_indptr[u]:excl_indptr[u + 1]]; best first (ties: lower
    position first). out_items (n_users, n) int64 positions, out_scores
    (n_users, n) float64; counts[u] = candidates left after exclusion (when
    < n, row u of the outputs is incomplete)."""
    n_users = su.shape[0]
    n_items = si.shape[0]
    k = Qu.shape[1]
    for u in prange(n_users):
        skip = np.zeros(n_items, dtype=np.bool_)
        for p in range(excl_indptr[u], excl_indptr[u + 1]):
            skip[excl_indices[p]] = True
        hs = np.empty(n, dtype=np.float64)
        hi = np.empty(n, dtype=np.int64)
        size = 0
        left = 0
        for i in range(n_items):
            if skip[i]:
                continue
            left += 1
            sc = su[u] + si[i]
            for f in range(k):
                sc += Qu[u, f] * Qi[i, f]
            if size < n:
                # insert at the end and sift up (parent better -> swap)
                pos = size
                hs[pos] = sc
                hi[pos] = i
                size += 1
                while pos > 0:
                    par = (pos - 1) // 2
                    if _better(hs[par], hi[par], hs[pos], hi[pos]):
                        hs[pos], hs[par] = hs[par], hs[pos]
                        hi[pos], hi[par] = hi[par], hi[pos]
                        pos = par
                    else:
                        break
            elif _better(sc, i, hs[0], hi[0]):
                hs[0] = sc
                hi[0] = i
                _sift_down(hs, hi, size, 0)
        counts[u] = left
        # pop the worst first: fill the outputs from the back
        for slot in range(size - 1, -1, -1):
            out_scores[u, slot] = hs[0]
            out_items[u, slot] = hi[0]
            size -= 1
            if size > 0:
                hs[0] = hs[size]
                hi[0] = hi[size]
                _sift_down(hs, hi, size, 0)
