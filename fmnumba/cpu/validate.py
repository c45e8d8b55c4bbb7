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
def csr_is_canonical(X, n_cols):
    """True when X = (indptr, indices, data) is CSR the kernels can read as
    it is: 0 <= indptr[r] <= indptr[r+1] <= indptr[-1] for every row (the
    caller checks indptr[0] == 0 and that indptr[-1] fits indices and data),
    each row's indices strictly increasing (sorted, no duplicates) inside
    [0, n_cols), and every stored value finite and non-zero.

    Branch-free inside a row (so the loop streams at memory speed); a chunk
    stops at its first bad row.
    """
    indptr, indices, data = X
    n = indptr.shape[0] - 1
    nnz = indptr[n]
    n_chunks = (n + CHUNK - 1) // CHUNK
    bad = np.zeros(n_chunks, dtype=np.uint8)
    inf = np.inf
    for c in prange(n_chunks):
        stop = min(n, (c + 1) * CHUNK)
        for r in range(c * CHUNK, stop):
            a = indptr[r]
            b = indptr[r + 1]
            if a < 0 or b < a or b > nnz:
                bad[c] = 1
                break
            ok = True
            prev = np.int64(-1)
            for p in range(a, b):
                j = np.int64(indices[p])
                v = data[p]
                ok &= (j > prev) & (j < n_cols) & (v != 0) & (abs(v) < inf)
                prev = j
            if not ok:
                bad[c] = 1
                break
    for c in range(n_chunks):
        if bad[c]:
            return False
    return True
