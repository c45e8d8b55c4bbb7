"""Per-batch transpose of CSR rows into feature-major entry lists."""
import numpy as np
from numba import njit

from .._config import kernel
from ._prefetch import prefetch_1d, prefetch_rows_ahead


@kernel()
def transpose_batch(X, rows, cnt, T):
    """Counting sort of the batch's nonzero entries by feature.

    X = (indptr, indices, data): the CSR arrays; rows (nb,): the batch's row
    ids. cnt (n_features,) int64 must be all zero on entry and is left all
    zero. T = (uniq, starts, ent_row, ent_val) receives the transposed batch:
    uniq[:u] the distinct features (first-appearance order), starts[:u+1]
    their offsets, and ent_row/ent_val[starts[a]:starts[a+1]] the (position
    in batch, x) of uniq[a]'s entries in batch order (stable, so sums are
    deterministic). Explicit zeros are skipped: they neither touch a row nor
    count. Returns u, the number of distinct features.
    """
    indptr, indices, data = X
    uniq, starts, ent_row, ent_val = T
    u = 0
    nb = rows.shape[0]
    for i in range(nb):
        # Adam transposes the next batch before its forward pass has read its
        # rows: fetch them ahead
        prefetch_rows_ahead(rows, i, nb, indptr, indices, data)
        r = rows[i]
        rn = rows[i + 1] if i + 1 < nb else r
        d = indptr[rn] - indptr[r]  # the next row's entry at the same step
        for p in range(indptr[r], indptr[r + 1]):
            if p + d < indptr[rn + 1]:  # cnt is a random gather: overlap its misses
                prefetch_1d(cnt, indices[p + d])
            if data[p] != 0:
                j = indices[p]
                if cnt[j] == 0:
                    uniq[u] = j
                    u += 1
                cnt[j] += 1
    starts[0] = 0
    for a in range(u):
        j = uniq[a]
        starts[a + 1] = starts[a] + cnt[j]
        cnt[j] = starts[a]  # reuse as write cursor
    for i in range(rows.shape[0]):
        r = rows[i]
        for p in range(indptr[r], indptr[r + 1]):
            if data[p] != 0:
                j = indices[p]
                e = cnt[j]
                ent_row[e] = i
                ent_val[e] = data[p]
                cnt[j] = e + 1
    for a in range(u):
        cnt[uniq[a]] = 0
    return u


@njit(inline="always", nogil=True)
def batch_scratch(indptr, indices, order, batch_size, dt):
    """Two transposed-batch buffers T = (uniq, starts, ent_row, ent_val),
    each row of the (2, ·) arrays one T, sized for the largest batch
    order[b·batch_size : (b+1)·batch_size]: batch b's is read while batch
    b + 1's is written. Values in dtype dt."""
    n = order.shape[0]
    max_nnz = 0
    for start in range(0, n, batch_size):
        tot = 0
        for i in range(start, min(n, start + batch_size)):
            r = order[i]
            tot += indptr[r + 1] - indptr[r]
        max_nnz = max(max_nnz, tot)
    return (np.empty((2, max_nnz), dtype=indices.dtype),
            np.empty((2, max_nnz + 1), dtype=np.int64),
            np.empty((2, max_nnz), dtype=np.int32),  # positions in a batch
            np.empty((2, max_nnz), dtype=dt))
