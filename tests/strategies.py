"""Hypothesis strategies: random (non-canonical) CSR input and FM parameters.

``raw_csr`` draws CSR arrays the way users hand them over: empty rows,
unsorted columns, duplicate (row, column) entries (including pairs that
cancel), explicit zeros, int32 or int64 indices, float32 or float64 values.
``canonical`` sends such input through fmnumba._validation._canonical_csr,
the only path by which data reaches a kernel. ``fm_problem`` bundles a
canonical matrix with its dense float64 reference, a parameter table
P = [w | V], w0, targets, sample weights and a loss code.
"""
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from hypothesis import strategies as st

try:
    from . import naive
except ImportError:
    import naive
from fmnumba._validation import _canonical_csr

FLOAT_DTYPES = (np.float32, np.float64)
INDEX_DTYPES = (np.int32, np.int64)

#: value regimes for X: name -> (magnitude bound, description)
VALUE_KINDS = ("moderate", "large", "tiny")


@dataclass
class RawCSR:
    """Raw CSR arrays (maybe unsorted, duplicated, with stored zeros)."""
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple

    def to_scipy(self):
        """A scipy csr_matrix wrapping copies of the arrays (not canonicalised)."""
        return sp.csr_matrix((self.data.copy(), self.indices.copy(), self.indptr.copy()),
                             shape=self.shape)

    def dense(self):
        """Dense float64 matrix (duplicates summed in float64)."""
        return naive.csr_to_dense(self.indptr, self.indices, self.data, self.shape[1])

    @property
    def has_duplicates(self):
        for r in range(self.shape[0]):
            cols = self.indices[self.indptr[r]:self.indptr[r + 1]]
            if np.unique(cols).shape[0] != cols.shape[0]:
                return True
        return False


def values(kind, dtype):
    """Strategy for one stored value of X (may be an explicit zero).

    moderate: |x| ≤ 4; large: |x| ≤ 1e3 with the bounds themselves likely;
    tiny: 1e-20 ≤ |x| ≤ 1e-18 (squares underflow float32's normal range).
    """
    width = 32 if np.dtype(dtype) == np.float32 else 64
    zero = st.just(0.0)
    if kind == "moderate":
        body = st.floats(-4.0, 4.0, width=width, allow_subnormal=False)
    elif kind == "large":
        body = st.one_of(st.floats(-1e3, 1e3, width=width, allow_subnormal=False),
                         st.sampled_from([1e3, -1e3, 999.5, -0.001]))
    elif kind == "tiny":
        body = st.builds(lambda sgn, m: sgn * m, st.sampled_from([1.0, -1.0]),
                         st.floats(float(np.float32(1e-20)), float(np.float32(1e-18)),
                                   width=width))
    else:
        raise ValueError(kind)
    return st.one_of(zero, body, body, body)


@st.composite
def raw_csr(draw, *, n_rows=None, n_features=None, max_rows=30, max_features=25,
            max_row_nnz=8, kind="moderate", dtype=None, index_dtype=None, min_rows=0):
    """Draw a RawCSR with 0..30 rows and 1..25 features (by default)."""
    n_rows = draw(st.integers(min_rows, max_rows)) if n_rows is None else n_rows
    n_feat = draw(st.integers(1, max_features)) if n_features is None else n_features
    dtype = draw(st.sampled_from(FLOAT_DTYPES)) if dtype is None else dtype
    idt = draw(st.sampled_from(INDEX_DTYPES)) if index_dtype is None else index_dtype
    val = values(kind, dtype)
    indptr, indices, data = [0], [], []
    for _ in range(n_rows):
        entries = draw(st.lists(st.tuples(st.integers(0, n_feat - 1), val),
                                max_size=max_row_nnz))
        if entries and draw(st.integers(0, 3)) == 0:
            # a duplicate pair that cancels exactly: column j stays untouched
            j = entries[0][0]
            v = draw(val.filter(lambda v: v != 0))
            entries = [e for e in entries if e[0] != j] + [(j, v), (j, -v)]
        if entries and draw(st.integers(0, 2)) == 0:
            # a plain duplicate of an existing column
            entries.append((entries[-1][0], draw(val)))
        if entries and draw(st.booleans()):
            entries = draw(st.permutations(entries))
        indices += [e[0] for e in entries]
        data += [e[1] for e in entries]
        indptr.append(len(indices))
    return RawCSR(np.asarray(indptr, dtype=idt), np.asarray(indices, dtype=idt),
                  np.asarray(data, dtype=dtype), (n_rows, n_feat))


def canonical(raw, dtype=None):
    """Canonical CSR (sorted, duplicates summed, zeros removed) of `raw`,
    through fmnumba's own validation path."""
    dtype = raw.data.dtype if dtype is None else np.dtype(dtype)
    return _canonical_csr(raw.to_scipy(), dtype, "X")


def lam_arrays(rng, n_features, dtype, zero=False):
    """Per-feature L2 strengths (lam_w, lam_v) drawn from rng; a third of the
    draws use the kernels' shared form, one value as a (1,) array."""
    if zero:
        z = np.zeros(n_features, dtype=dtype)
        return z, z.copy()
    if rng.random() < 1 / 3:
        return (np.array([rng.uniform(0, 0.1)], dtype=dtype),
                np.array([rng.uniform(0, 0.1)], dtype=dtype))
    return (rng.uniform(0, 0.1, n_features).astype(dtype),
            rng.uniform(0, 0.1, n_features).astype(dtype))


@st.composite
def param_table(draw, n_features, k, dtype, scale=None):
    """P = [w | V] of shape (n_features, 1 + k) and the given dtype.

    Entries are N(0, scale²) from a drawn seed; scale is drawn from
    {0, 0.01, 0.3, 1} unless given (0 gives the all-zero table).
    """
    seed = draw(st.integers(0, 2**32 - 1))
    if scale is None:
        scale = draw(st.sampled_from([0.0, 0.01, 0.3, 1.0]))
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_features, 1 + k)) * scale).astype(dtype)


@dataclass
class Problem:
    """A canonical batch problem with its float64 dense reference."""
    raw: RawCSR
    X: sp.csr_matrix
    dense: np.ndarray
    k: int
    dtype: np.dtype
    P: np.ndarray
    w0: float
    y: np.ndarray
    sw: np.ndarray
    loss_code: int
    seed: int


@st.composite
def fm_problem(draw, *, kind="moderate", dtype=None, loss_codes=(0, 1, 2), min_rows=0,
               max_rows=30, max_k=16, p_scale=None, zero_weights=False):
    """A canonical CSR X plus P, w0, y (±1 for codes 1, 2), sample weights.

    Sample weights are in [0.1, 3] (and may be 0 when zero_weights=True).
    ``dense`` is the float64 matrix of the canonical X (what the kernels see).
    """
    dtype = np.dtype(draw(st.sampled_from(FLOAT_DTYPES)) if dtype is None else dtype)
    raw = draw(raw_csr(kind=kind, dtype=dtype, min_rows=min_rows, max_rows=max_rows))
    X = canonical(raw)
    k = draw(st.integers(1, max_k))
    P = draw(param_table(X.shape[1], k, dtype, scale=p_scale))
    w0 = draw(st.sampled_from([0.0, 1.0, -0.75, 2.5]))
    code = draw(st.sampled_from(loss_codes))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    if code == 0:
        y = rng.normal(0.0, 2.0, n).astype(dtype)
    else:
        y = rng.choice([-1.0, 1.0], n).astype(dtype)
    sw = rng.uniform(0.1, 3.0, n)
    if zero_weights and n:
        sw[rng.random(n) < 0.3] = 0.0
    sw = sw.astype(dtype)
    dense = naive.csr_to_dense(X.indptr, X.indices, X.data, X.shape[1])
    return Problem(raw, X, dense, k, dtype, P, w0, y, sw, code, seed)


def squared_loss_problems(max_rows, max_k):
    """fm_problem with the squared loss, moderate values and small P, each float dtype."""
    return st.one_of(*(fm_problem(dtype=dt, kind="moderate", loss_codes=(0,), max_rows=max_rows,
                                  max_k=max_k, p_scale=0.3) for dt in FLOAT_DTYPES))


def make_binary(prob):
    """Turn prob into binary X (stored values 1) with unit sample weights, in place."""
    prob.X.data[:] = 1
    prob.dense = naive.csr_to_dense(prob.X.indptr, prob.X.indices, prob.X.data, prob.X.shape[1])
    prob.sw = np.ones_like(prob.sw)
