"""The per-feature (CSC) view of a training matrix used by mcmc and als.

Built once per fit. Columns are visited in a fixed order (grouped by
`groups=` when given, else by index), cut greedily into blocks of columns
that never share a row: such a block's parameters are conditionally
independent given the rest (one-hot user or item columns are the common
case), so it is updated in parallel. Small blocks are merged into
sequential segments, since a parallel launch costs more than they hold.
Which blocks run in parallel changes speed only, never the result.
"""
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .cpu._columns import greedy_blocks

MIN_PAR_COLS = 16      # a block is drawn in parallel when it has this many columns
MIN_PAR_NNZ = 4096     # ... and this many stored entries
N_PAR_CHUNKS = 64      # nnz-balanced chunks of a parallel block


@dataclass
class ColumnView:
    """cptr (n_features + 1,) int64, ridx (nnz,) int32, cval (nnz,) of the
    model dtype; cols: the visiting order; segments: seg_par (n_seg,) bool,
    seg_b (n_seg + 1,) into bounds, bounds: positions in cols; unit_x: all
    stored values are 1."""
    cptr: np.ndarray
    ridx: np.ndarray
    cval: np.ndarray
    cols: np.ndarray
    seg_par: np.ndarray
    seg_b: np.ndarray
    bounds: np.ndarray
    n_parallel_cols: int
    unit_x: bool = False  # every stored value is 1 (one-hot or binary X)

    @property
    def parallel_fraction(self):
        """Fraction of the columns drawn in parallel blocks."""
        return self.n_parallel_cols / max(1, self.cols.shape[0])


def build_column_view(X, dtype, groups=None):
    """ColumnView of canonical CSR X (n_rows × n_features); groups
    (n_features,) ints or None."""
    n_rows, n_features = X.shape
    C = sp.csc_matrix(X)
    C.sort_indices()
    cptr = C.indptr.astype(np.int64)
    ridx = C.indices.astype(np.int32)
    cval = C.data.astype(dtype)
    if groups is None:
        cols = np.arange(n_features, dtype=np.int64)
    else:
        cols = np.argsort(np.asarray(groups), kind="stable").astype(np.int64)
    starts = np.empty(max(1, n_features), dtype=np.int64)
    nb = greedy_blocks(cptr, ridx, cols, n_rows, starts) if n_features else 0
    starts = np.append(starts[:nb], n_features)
    col_nnz = np.diff(cptr)[cols]
    cum = np.concatenate([[0], np.cumsum(col_nnz)])
    seg_par, seg_b, bounds = [], [0], [0]
    n_par = 0
    for b in range(nb):
        lo, hi = int(starts[b]), int(starts[b + 1])
        nnz = int(cum[hi] - cum[lo])
        if hi - lo >= MIN_PAR_COLS and nnz >= MIN_PAR_NNZ:
            # nnz-balanced chunks, each at least one column
            cuts = np.searchsorted(cum[lo:hi + 1], np.linspace(0, nnz, N_PAR_CHUNKS + 1)[1:-1])
            cuts = np.unique(np.clip(cuts + lo, lo + 1, hi - 1))
            edges = [int(c) for c in cuts] + [hi]
            seg_par.append(True)
            bounds.extend(edges)
            seg_b.append(len(bounds) - 1)
            n_par += hi - lo
        elif seg_par and not seg_par[-1]:  # extend the open sequential segment
            bounds[-1] = hi
        else:
            seg_par.append(False)
            bounds.append(hi)
            seg_b.append(len(bounds) - 1)
    return ColumnView(cptr, ridx, cval, cols, np.array(seg_par, dtype=np.bool_),
                      np.array(seg_b, dtype=np.int64), np.array(bounds, dtype=np.int64), n_par,
                      bool(np.all(cval == 1)))
