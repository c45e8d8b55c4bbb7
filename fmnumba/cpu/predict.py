"""Batch prediction over CSR rows."""
import numpy as np
from numba import prange

from .._config import SERIAL_WORK, kernel, serial_twin
from ._prefetch import rows_ahead
from ._row import row_forward

CHUNK = 1024


@kernel(parallel=True)
def predict_parallel(X, w0, P, out):
    """predict_csr on Numba's threads.

    Rows are split into chunks of CHUNK; each chunk owns one k-wide q buffer,
    so extra memory is O(threads·k) whatever the number of rows. Results do
    not depend on the thread count (each row is one thread's, in order).
    """
    indptr, indices, data = X
    n = out.shape[0]
    k = P.shape[1] - 1
    n_chunks = (n + CHUNK - 1) // CHUNK
    ahead = rows_ahead(P)  # each row prefetches the parameter rows of row r + ahead
    for c in prange(n_chunks):
        q = np.empty(k, dtype=P.dtype)
        stop = min(n, (c + 1) * CHUNK)
        for r in range(c * CHUNK, stop):
            rn = r + ahead if r + ahead < stop else -1
            out[r] = w0 + row_forward(indptr, indices, data, P, r, q, rn)


predict_serial = serial_twin(predict_parallel, "predict_serial")


def predict_csr(X, w0, P, out):
    """out[r] = ŷ(x_r) for every CSR row r of X = (indptr, indices, data);
    out (n_rows,) of P's dtype, w0 a scalar of P's dtype. Small inputs run
    the serial twin (a first small fit and predict then never compile the
    parallel kernel), which gives the same bits."""
    small = int(X[0][-1]) * P.shape[1] < SERIAL_WORK
    (predict_serial if small else predict_parallel)(X, w0, P, out)
