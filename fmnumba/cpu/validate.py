"""One fused pass over a CSR matrix that decides whether it can be used as
it is: every check the kernels rely on, parallel over rows, at memory speed.

It only answers yes or no. A "no" sends the caller to the NumPy/SciPy path,
which finds the first problem, names it, or converts the matrix; so this
kernel never has to produce an error message, and a "yes" is the only
answer that skips anything.
"""
import numpy as np
from numba import prange

from .._config import kernel

CHUNK = 4096  # rows per parallel task


@kernel(parallel=True)
def csr_is_canonical(X, n_cols, values):
    """True when X = (indptr, indices, data) is CSR the kernels can read as
    it is: 0 <= indptr[r] <= indptr[r+1] <= indptr[-1] for every row (the
    caller checks indptr[0] == 0 and that indptr[-1] fits indices and data),
    each row's indices strictly increasing (sorted, no duplicates) inside
    [0, n_cols), and (with `values`) every stored value finite and non-zero.
    Without `values` the data array is not read at all: half the bytes.

    Per chunk of rows: a pass over its indptr, then one flat, branch-free
    pass over its entries (vectorised, at memory speed) that counts the
    places where an index does not exceed the one before it; such a place
    is allowed only where a row starts, so the chunk is sorted exactly when
    that count equals the number of row starts (inside the chunk's entries)
    whose first index does not exceed the previous row's last.
    """
    indptr, indices, data = X
    n = indptr.shape[0] - 1
    nnz = indptr[n]
    n_chunks = (n + CHUNK - 1) // CHUNK
    bad = np.zeros(n_chunks, dtype=np.uint8)
    inf = np.inf
    for c in prange(n_chunks):
        r0 = c * CHUNK
        r1 = min(n, r0 + CHUNK)
        p0 = indptr[r0]
        p1 = indptr[r1]
        if p0 < 0 or p1 < p0 or p1 > nnz:
            bad[c] = 1
            continue
        prev = p0
        broken = False
        for r in range(r0 + 1, r1 + 1):  # monotone and inside [p0, p1]
            b = indptr[r]
            broken |= (b < prev) | (b > p1)
            prev = b
        if broken:
            bad[c] = 1
            continue
        allowed = 0  # row starts where a descent is allowed (and happens)
        last = p0
        for r in range(r0 + 1, r1):
            a = indptr[r]
            if a != last and a < p1:
                allowed += np.int64(indices[a] <= indices[a - 1])
                last = a
        if p1 == p0:
            continue
        descents = 0
        j0 = indices[p0]
        wrong = (j0 < 0) | (j0 >= n_cols)
        if values:  # one loop over both arrays (two loops are slower)
            v0 = data[p0]
            wrong |= (v0 == 0) | (not abs(v0) < inf)
            for p in range(p0 + 1, p1):
                j = indices[p]
                v = data[p]
                wrong |= (j < 0) | (j >= n_cols) | (v == 0) | (not abs(v) < inf)
                descents += np.int64(j <= indices[p - 1])
        else:
            for p in range(p0 + 1, p1):
                j = indices[p]
                wrong |= (j < 0) | (j >= n_cols)
                descents += np.int64(j <= indices[p - 1])
        if wrong or descents != allowed:
            bad[c] = 1
    for c in range(n_chunks):
        if bad[c]:
            return False
    return True
