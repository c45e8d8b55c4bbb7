"""The per-row FM forward pass shared by the kernels."""
from numba import njit

from .._config import FASTMATH
from ._prefetch import prefetch_row


@njit(inline="always", fastmath=FASTMATH, nogil=True)
def row_forward(indptr, indices, data, P, r, q, rn):
    """Return Σ_i w_i x_i + ½ Σ_f (q_f² − Σ_i v_if² x_i²) for CSR row r.

    q (k,) receives q_f = Σ_i v_if x_i. No intercept is added. rn is a row
    the caller will visit later (-1: none): its parameter rows are
    prefetched one per entry of this row, so their misses overlap this
    row's work without flooding the memory system.
    """
    k = q.shape[0]
    zero = P.dtype.type(0)
    for f in range(k):
        q[f] = zero
    lin = zero
    sq = zero
    p0 = indptr[r]
    pn = indptr[rn] - p0 if rn >= 0 else 0  # row rn's entry at the same step
    pn_end = indptr[rn + 1] if rn >= 0 else 0
    for p in range(p0, indptr[r + 1]):
        if p + pn < pn_end:
            prefetch_row(P, indices[p + pn])
        j = indices[p]
        x = data[p]
        lin += P[j, 0] * x
        # Σ_f v_jf² starts from zero for every entry, so its k-wide sum does
        # not wait on the previous entry's: only the one add into sq does.
        vv = zero
        for f in range(k):
            v = P[j, f + 1]
            q[f] += v * x
            vv += v * v
        sq += vv * x * x
    for p in range(indptr[r + 1] + pn, pn_end):  # row rn longer than this one
        prefetch_row(P, indices[p])
    inter = zero
    for f in range(k):
        inter += q[f] * q[f]
    return lin + P.dtype.type(0.5) * (inter - sq)


@njit(inline="always", nogil=True)
def l2_of(lam, j):
    """Per-feature L2 strength of feature j: lam has one value per feature, or
    a single value shared by all (which saves a random read per entry)."""
    return lam[0] if lam.shape[0] == 1 else lam[j]
