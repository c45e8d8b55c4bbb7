"""The bad-input contract: every public entry point validates
before any kernel runs, and bad input gets a ValueError, TypeError or
NotFittedError whose message names the argument and the problem. Inputs that
can be repaired (unsorted or duplicate indices, int64 indices, any two labels,
empty rows) must work.

One test (or one parametrised case) per kind of bad input; fuzzing lives in test_fuzz.py.
"""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError

from fmnumba import DivergenceError, FMClassifier, FMRegressor
from fmnumba import _validation as validation

try:
    from ._failing_kernels import FailingKernels
except ImportError:
    from _failing_kernels import FailingKernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(n=40, p=6, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = sp.random(n, p, density=0.4, format="csr", random_state=seed, dtype=dtype)
    y = rng.normal(size=n)
    return X, y


X0, Y0 = _data()
YC = (np.arange(40) % 2).astype(int)


def reg(**kw):
    kw.setdefault("max_iter", 2)
    kw.setdefault("random_state", 0)
    return FMRegressor(n_factors=3, **kw)


def clf(**kw):
    kw.setdefault("max_iter", 2)
    kw.setdefault("random_state", 0)
    return FMClassifier(n_factors=3, **kw)


def raw_csr(data, indices, indptr, shape):
    """A CSR built by hand, bypassing scipy's checks (as a careless user might)."""
    m = sp.csr_matrix(shape, dtype=np.float64)
    m.data, m.indices, m.indptr = np.asarray(data), np.asarray(indices), np.asarray(indptr)
    return m


def expect(exc, *keywords, fn):
    with pytest.raises(exc) as ei:
        fn()
    msg = str(ei.value)
    for kw in keywords:
        assert kw.lower() in msg.lower(), f"{kw!r} not in message: {msg}"
    return msg


FITTED = reg().fit(X0, Y0)
FITTED_C = clf().fit(X0, YC)


# --- non-finite values ----------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind", ["dense", "csr", "coo", "csc"])
def test_nonfinite_X_rejected_with_position(bad, kind):
    D = X0.toarray()
    D[3, 2] = bad
    X = {"dense": D, "csr": sp.csr_matrix(D), "coo": sp.coo_matrix(D), "csc": sp.csc_matrix(D)}[kind]
    expect(ValueError, "X", "NaN or inf", "row 3", "column 2", fn=lambda: reg().fit(X, Y0))
    expect(ValueError, "X", "NaN or inf", "row 3", fn=lambda: FITTED.predict(X))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_y_rejected(bad):
    y = Y0.copy()
    y[7] = bad
    expect(ValueError, "y", "NaN or inf", "index 7", fn=lambda: reg().fit(X0, y))
    expect(ValueError, "y", "NaN", fn=lambda: clf().fit(X0, np.where(YC, 1.0, bad)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_sample_weight_rejected(bad):
    sw = np.ones(40)
    sw[5] = bad
    expect(ValueError, "sample_weight", "NaN or inf", fn=lambda: reg().fit(X0, Y0, sample_weight=sw))


def test_negative_sample_weight_rejected():
    sw = np.ones(40)
    sw[9] = -1
    expect(ValueError, "sample_weight", "negative", "index 9", fn=lambda: reg().fit(X0, Y0, sample_weight=sw))


def test_all_zero_sample_weight_rejected():
    expect(ValueError, "sample_weight", "zero", fn=lambda: reg().fit(X0, Y0, sample_weight=np.zeros(40)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_weight_rows_are_those_that_round_to_zero(dtype):
    """drop_zero_weight_rows keeps exactly the rows whose weight is > 0 in
    the model's dtype, and the kept rows keep X's index dtypes."""
    rng = np.random.default_rng(0)
    n = 400
    sw = np.exp(rng.uniform(-800, 0, n))
    sw[:5] = [0.0, 5e-324, 2.0 ** -150, np.nextafter(2.0 ** -150, 1), 2.0 ** -149]
    X = sp.random(n, 9, density=0.4, format="csr", random_state=1, dtype=dtype)
    X.indices, X.indptr = X.indices.astype(np.int64), X.indptr.astype(np.int64)
    y = rng.normal(size=n)
    Xk, yk, swk = validation.drop_zero_weight_rows(X, y, sw, np.dtype(dtype))
    keep = sw.astype(dtype) > 0
    assert 0 < keep.sum() < n
    np.testing.assert_array_equal(swk, sw[keep])
    np.testing.assert_array_equal(yk, y[keep])
    np.testing.assert_array_equal(Xk.toarray(), X.toarray()[keep])
    assert Xk.indices.dtype == Xk.indptr.dtype == np.int64
    assert Xk.has_canonical_format


def test_some_zero_weights_work_and_extreme_scales_are_exact():
    sw = np.r_[np.zeros(20), np.ones(20)]
    a = reg().fit(X0, Y0, sample_weight=sw).predict(X0)
    # the objective divides by Σ s: huge or tiny (but finite) weights must not
    # overflow float32 and give the same model as their rescaled version
    for scale in (2.0 ** 100, 2.0 ** -100, 1e300):
        b = reg().fit(X0, Y0, sample_weight=sw * scale).predict(X0)
        assert np.all(np.isfinite(b))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --- length mismatches, shapes, zero rows/columns ---------------------------

def test_length_mismatches():
    expect(ValueError, "y", "5", "40 rows", fn=lambda: reg().fit(X0, Y0[:5]))
    expect(ValueError, "y", "40 rows", fn=lambda: clf().fit(X0, YC[:5]))
    expect(ValueError, "sample_weight", "40 rows", fn=lambda: reg().fit(X0, Y0, sample_weight=np.ones(3)))
    expect(ValueError, "y", "1-D", fn=lambda: reg().fit(X0, np.ones((40, 2))))


def test_zero_rows():
    expect(ValueError, "X", "0 sample", fn=lambda: reg().fit(sp.csr_matrix((0, 6)), []))
    expect(ValueError, "X", "0 sample", fn=lambda: reg().fit(np.zeros((0, 6)), []))
    # predicting on nothing is fine
    assert FITTED.predict(sp.csr_matrix((0, 6))).shape == (0,)
    assert FITTED.predict(np.zeros((0, 6))).shape == (0,)
    assert FITTED_C.predict_proba(sp.csr_matrix((0, 6))).shape == (0, 2)


def test_zero_columns():
    expect(ValueError, "X", "0 feature", fn=lambda: reg().fit(sp.csr_matrix((5, 0)), np.ones(5)))
    expect(ValueError, "X", "0 feature", fn=lambda: reg().fit(np.zeros((5, 0)), np.ones(5)))


@pytest.mark.parametrize("X", [np.ones(5), np.ones((2, 2, 2))], ids=["1d", "3d"])
def test_wrong_dimensionality(X):
    expect(ValueError, "X", fn=lambda: reg().fit(X, np.ones(len(X))))


def test_none_and_string_X():
    expect(TypeError, "X", "None", fn=lambda: reg().fit(None, Y0))
    expect(TypeError, "X", "string", fn=lambda: FITTED.predict("data.libsvm"))
    expect(ValueError, "y", "None", fn=lambda: reg().fit(X0, None))


# --- malformed hand-built CSR -----------------------------------------------

MALFORMED = {
    "col out of range": (raw_csr(np.ones(2), np.array([0, 7], np.int32), np.array([0, 1, 2], np.int32), (2, 6)),
                         ["index 7", "row 1", "out of range"]),
    "negative col": (raw_csr(np.ones(2), np.array([0, -1], np.int32), np.array([0, 1, 2], np.int32), (2, 6)),
                     ["index -1", "row 1", "out of range"]),
    "indptr decreasing": (raw_csr(np.ones(2), np.array([0, 1], np.int32), np.array([0, 2, 1], np.int32), (2, 6)),
                          ["indptr", "decreases", "row 1"]),
    "indptr too short": (raw_csr(np.ones(2), np.array([0, 1], np.int32), np.array([0, 2], np.int32), (2, 6)),
                         ["indptr", "length 2", "expected 3"]),
    "indptr too long": (raw_csr(np.ones(2), np.array([0, 1], np.int32), np.array([0, 1, 2, 2], np.int32), (2, 6)),
                        ["indptr", "length 4"]),
    "indptr not at 0": (raw_csr(np.ones(3), np.array([0, 1, 2], np.int32), np.array([1, 2, 3], np.int32), (2, 6)),
                        ["indptr[0]", "must be 0"]),
    "indptr past nnz": (raw_csr(np.ones(2), np.array([0, 1], np.int32), np.array([0, 1, 9], np.int32), (2, 6)),
                        ["indptr[-1]", "9"]),
    "2-D data": (raw_csr(np.ones((2, 1)), np.array([0, 1], np.int32), np.array([0, 1, 2], np.int32), (2, 6)),
                 ["1-D"]),
    "float indices": (raw_csr(np.ones(2), np.array([0.0, 1.0]), np.array([0, 1, 2], np.int32), (2, 6)),
                      ["integer"]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_csr_rejected_at_fit_and_predict(case):
    X, keywords = MALFORMED[case]
    exc = TypeError if case == "float indices" else ValueError
    expect(exc, "X", *keywords, fn=lambda: reg().fit(X, np.ones(2)))
    expect(exc, "X", *keywords, fn=lambda: FITTED.predict(X))
    expect(exc, "eval_set[0]", fn=lambda: reg().fit(X0, Y0, eval_set=(X, np.ones(2))))


def test_malformed_coo_rejected():
    m = sp.coo_matrix((3, 6))
    m.row, m.col, m.data = np.array([0, 5]), np.array([1, 2]), np.ones(2)
    expect(ValueError, "X", "row index", "out of range", fn=lambda: FITTED.predict(m))


def test_unsorted_and_duplicate_indices_are_sorted_and_summed():
    # row 0: cols 3, 1, 3 (duplicate 3 sums to 2.5); row 1: empty; row 2: 5, 0
    X = raw_csr(np.array([1.0, 2.0, 1.5, 3.0, -1.0]), np.array([3, 1, 3, 5, 0], np.int32),
                np.array([0, 3, 3, 5], np.int32), (3, 6))
    D = np.zeros((3, 6))
    D[0, 3], D[0, 1], D[2, 5], D[2, 0] = 2.5, 2.0, 3.0, -1.0
    before = (X.data.copy(), X.indices.copy())
    np.testing.assert_allclose(FITTED.predict(X), FITTED.predict(D), rtol=1e-6)
    np.testing.assert_array_equal(X.data, before[0])  # the caller's matrix is untouched
    np.testing.assert_array_equal(X.indices, before[1])
    m = reg().fit(sp.vstack([X] * 10).tocsr(), np.ones(30))
    assert np.all(np.isfinite(m.coef_))


def test_int64_indices_work():
    X64 = X0.copy()
    X64.indices = X64.indices.astype(np.int64)
    X64.indptr = X64.indptr.astype(np.int64)
    np.testing.assert_array_equal(FITTED.predict(X64), FITTED.predict(X0))
    a = reg().fit(X64, Y0).predict(X0)
    np.testing.assert_array_equal(a, FITTED.predict(X0))


INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


def _with_index_dtype(X, dt):
    Z = X.copy()  # X0 has 40 rows and under 127 entries: every dtype holds its indices
    Z.indptr, Z.indices = Z.indptr.astype(dt), Z.indices.astype(dt)
    return Z


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("dt", INT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_integer_index_dtype_works_and_is_checked(dt, fmt):
    X = X0.asformat(fmt, copy=True)
    np.testing.assert_allclose(FITTED.predict(_with_index_dtype(X, dt)), FITTED.predict(X0),
                               rtol=1e-6)
    reg().fit(_with_index_dtype(X, dt), Y0)
    top = np.iinfo(dt).max
    # a decreasing indptr (np.diff of an unsigned one wraps instead of going negative)
    Z = _with_index_dtype(X, dt)
    Z.indptr[5] = min(top, 10**6)
    for fn in (lambda: FITTED.predict(Z), lambda: reg().fit(Z, Y0)):
        expect(ValueError, "X", "indptr", fn=fn)
    # an index past the end, the largest the dtype holds
    Z = _with_index_dtype(X, dt)
    Z.indices[3] = top
    for fn in (lambda: FITTED.predict(Z), lambda: reg().fit(Z, Y0)):
        expect(ValueError, "X", "out of range", fn=fn)
    if np.dtype(dt).kind == "i":  # a negative index
        Z = _with_index_dtype(X, dt)
        Z.indices[3] = -1
        expect(ValueError, "X", "index -1", "out of range", fn=lambda: FITTED.predict(Z))


def test_unsigned_indptr_reproducer_does_not_crash():
    """In a child process: a crash there fails the test instead of the run."""
    code = textwrap.dedent("""
        import numpy as np, scipy.sparse as sp
        from fmnumba import FMRegressor
        X = sp.random(40, 6, density=0.4, format="csr", random_state=0)
        m = FMRegressor(max_iter=1).fit(X, np.ones(40))
        X.indptr = X.indptr.astype(np.uint64)
        X.indptr[5] = 10**6
        for fn in (lambda: m.predict(X), lambda: FMRegressor(max_iter=1).fit(X, np.ones(40))):
            try:
                fn()
            except ValueError as e:
                assert "indptr" in str(e), e
            else:
                raise SystemExit("accepted")
        print("OK")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "OK" in r.stdout, (r.returncode, r.stderr[-2000:])


@pytest.mark.parametrize("dt", INT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_integer_coo_and_bsr_index_dtype_is_checked(dt):
    C = X0.tocoo()
    m = sp.coo_matrix(C.shape)
    m.row, m.col, m.data = C.row.astype(dt), C.col.astype(dt), C.data
    np.testing.assert_allclose(FITTED.predict(m), FITTED.predict(X0), rtol=1e-6)
    col = C.col.astype(dt)
    col[0] = np.iinfo(dt).max
    m = sp.coo_matrix(C.shape)
    m.row, m.col, m.data = C.row.astype(dt), col, C.data
    expect(ValueError, "X", "out of range", fn=lambda: FITTED.predict(m))
    B = X0.tobsr(blocksize=(1, 1))
    B.indptr, B.indices = B.indptr.astype(dt), B.indices.astype(dt)
    B.indptr[5] = min(np.iinfo(dt).max, 10**6)
    expect(ValueError, "X", "BSR", fn=lambda: FITTED.predict(B))


@pytest.mark.parametrize("change", ["unsorted", "duplicate", "zero", "nan", "inf", "oor",
                                    "neg", "ptr_dec", "ptr_neg", "tail"])
@pytest.mark.parametrize("it", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("near", [0, 4095, 4096, 9999])  # parallel chunks are 4096 rows
def test_fused_check_sends_every_defect_to_the_detailed_path(change, it, dtype, near):
    """The one-pass kernel accepts only what needs no change; anything else
    takes the NumPy path (which repairs it or names the problem)."""
    from fmnumba.cpu.validate import csr_is_canonical
    X = sp.random(10_000, 50, density=0.06, format="csr", random_state=1, dtype=dtype)
    X.data[X.data == 0] = 1.0
    X.sum_duplicates()
    indptr, indices, data = X.indptr.astype(it), X.indices.astype(it), X.data.copy()
    assert csr_is_canonical((indptr, indices, data), np.int64(50), True)
    assert csr_is_canonical((indptr, indices, data), np.int64(50), False)
    lens = np.diff(X.indptr)
    rows = np.flatnonzero(lens >= 3)
    r = int(rows[np.argmin(np.abs(rows - near))])
    a, b = indptr[r], indptr[r + 1]
    if change == "unsorted":
        indices[a], indices[a + 1] = indices[a + 1], indices[a]
    elif change == "duplicate":
        indices[a + 1] = indices[a]
    elif change in ("zero", "nan", "inf"):
        data[a + 1] = {"zero": 0.0, "nan": np.nan, "inf": -np.inf}[change]
    elif change == "oor":
        indices[b - 1] = 50
    elif change == "neg":
        indices[a] = -1
    elif change == "ptr_dec":
        indptr[r] = indptr[r + 1] + 1
    elif change == "ptr_neg":
        indptr[r] = -1
    elif change == "tail":
        indptr[-1] = indptr[-2] - 1  # the last row ends before it starts
    assert not csr_is_canonical((indptr, indices, data), np.int64(50), True)
    # without the values check only the stored values may be anything
    structural = change not in ("zero", "nan", "inf")
    assert csr_is_canonical((indptr, indices, data), np.int64(50), False) is not structural


@pytest.mark.parametrize("fused", [False, True])
def test_canonical_csr_is_shared_not_copied(fused, monkeypatch):
    if fused:  # the one-pass kernel, used from _FUSED_MIN_NNZ entries on
        monkeypatch.setattr(validation, "_FUSED_MIN_NNZ", 0)
    X = X0.astype(np.float32)
    est = reg(dtype=np.float32).fit(X, Y0)
    out = validation.check_X(est, X, reset=False, dtype=np.dtype(np.float32))
    assert out.data is X.data or np.shares_memory(out.data, X.data)
    assert np.shares_memory(out.indices, X.indices) and out.indptr is X.indptr


def test_fused_path_gives_the_detailed_paths_answers(monkeypatch):
    """Small inputs take the NumPy path; with the fused kernel forced on, the
    malformed cases get the same errors and valid ones the same predictions."""
    monkeypatch.setattr(validation, "_FUSED_MIN_NNZ", 0)
    for case, (X, keywords) in MALFORMED.items():
        exc = TypeError if case == "float indices" else ValueError
        expect(exc, "X", *keywords, fn=lambda: FITTED.predict(X))
    Z = X0.copy()
    Z.data[::3] = 0.0
    np.testing.assert_array_equal(FITTED.predict(Z), FITTED.predict(Z.toarray()))
    for bad in (np.nan, np.inf, -np.inf):  # prediction reads values unchecked
        Z = X0.copy()
        Z.data[7] = bad
        row = int(np.searchsorted(Z.indptr, 7, side="right") - 1)
        expect(ValueError, "X", "NaN or inf", f"row {row}", fn=lambda: FITTED.predict(Z))
        expect(ValueError, "X", "NaN or inf", fn=lambda: FITTED_C.predict_proba(Z))
    for dt in INT_DTYPES:
        Z = _with_index_dtype(X0, dt)
        Z.indptr[5] = min(np.iinfo(dt).max, 10**6)
        expect(ValueError, "X", "indptr", fn=lambda: FITTED.predict(Z))


@pytest.mark.parametrize("fmt", ["csc", "coo", "lil", "dok", "bsr", "csr_array", "dia"])
def test_every_sparse_format_works(fmt):
    X = sp.csr_array(X0) if fmt == "csr_array" else X0.asformat(fmt)
    np.testing.assert_allclose(FITTED.predict(X), FITTED.predict(X0), rtol=1e-6)


def test_explicit_zeros_are_ignored():
    X = X0.copy()
    X.data[::3] = 0.0  # stored zeros
    np.testing.assert_array_equal(FITTED.predict(X), FITTED.predict(X.toarray()))


# --- dtypes -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.bool_, np.int8, np.uint64, np.int64,
                                   np.float32, np.longdouble, object])
def test_numeric_dtypes_are_converted(dtype):
    D = (X0.toarray() != 0).astype(dtype)
    ref = FITTED.predict((X0.toarray() != 0).astype(np.float64))
    np.testing.assert_allclose(FITTED.predict(D), ref, rtol=1e-6)
    if dtype not in (np.float16, object):  # scipy.sparse has no float16/object CSR
        np.testing.assert_allclose(FITTED.predict(sp.csr_matrix(D)), ref, rtol=1e-6)
    reg().fit(D, Y0)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_np_matrix_and_lists_work():
    D = X0.toarray()
    np.testing.assert_array_equal(FITTED.predict(np.asmatrix(D)), FITTED.predict(D))
    np.testing.assert_array_equal(FITTED.predict(D.tolist()), FITTED.predict(D))


def test_complex_rejected():
    # ValueError, as scikit-learn's estimator checks require for complex data
    expect(ValueError, "X", "complex", fn=lambda: reg().fit(X0.toarray() + 1j, Y0))
    expect(ValueError, "X", "complex", fn=lambda: FITTED.predict(sp.csr_matrix(X0 * (1 + 1j))))
    expect(ValueError, "y", "complex", fn=lambda: clf().fit(X0, YC + 0j))


def test_non_numeric_rejected():
    obj = X0.toarray().astype(object)
    obj[1, 1] = "a"
    expect(TypeError, "X", "non-numeric", fn=lambda: reg().fit(obj, Y0))
    expect(TypeError, "X", "not numeric", fn=lambda: reg().fit(np.array([["a", "b"]]), [1.0]))
    expect(ValueError, "y", "numeric", fn=lambda: reg().fit(X0, np.array(["a"] * 40)))
    expect(TypeError, "X", fn=lambda: reg().fit([[1, [2, 3]], [4, 5]], [1, 2]))


def test_values_that_overflow_the_dtype():
    # a float64 value beyond float32's range: caught at conversion
    X = X0.copy()
    X.data[4] = 1e60
    expect(ValueError, "X", "too large", "float32", "float64", fn=lambda: FITTED.predict(X))
    # finite float32 values whose ŷ overflows: caught after the kernel, never returned
    expect(ValueError, "X", "overflowed", "row", fn=lambda: FITTED.predict(X0 * 1e30))
    # float64 models take them
    m = reg(dtype=np.float64).fit(X0, Y0)
    assert np.all(np.isfinite(m.predict(X)))
    # targets whose squared loss overflows float32
    expect(ValueError, "y", "too large", "float64", fn=lambda: reg().fit(X0, Y0 * 1e30))


# --- columns at predict -----------------------------------------------------

@pytest.mark.parametrize("p", [5, 7])
def test_column_count_must_match(p):
    Xp = sp.random(3, p, density=0.5, format="csr", random_state=1)
    expect(ValueError, f"{p} features", "expecting 6", "same columns", fn=lambda: FITTED.predict(Xp))
    expect(ValueError, f"{p} features", fn=lambda: FITTED.predict(Xp.toarray()))
    expect(ValueError, "eval_set[0]", fn=lambda: reg().fit(X0, Y0, eval_set=(Xp, np.ones(3))))
    expect(ValueError, f"{p} features", fn=lambda: reg(warm_start=True).fit(X0, Y0).fit(Xp, np.ones(3)))


def test_feature_names_checked():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X0.toarray(), columns=[f"c{i}" for i in range(6)])
    m = reg().fit(df, Y0)
    np.testing.assert_array_equal(m.predict(df), m.predict(X0.toarray()))
    expect(ValueError, "feature names", fn=lambda: m.predict(df[df.columns[::-1]]))


# --- labels -----------------------------------------------------------------

def test_one_class_rejected():
    expect(ValueError, "y", "2 classes", "got 1", fn=lambda: clf().fit(X0, np.zeros(40)))


def test_three_classes_rejected():
    expect(ValueError, "y", "2 classes", "got 3", "OneVsRest", fn=lambda: clf().fit(X0, np.arange(40) % 3))


def test_continuous_labels_rejected():
    expect(ValueError, "y", "continuous", "FMRegressor", fn=lambda: clf().fit(X0, Y0))


@pytest.mark.parametrize("labels", [(0, 1), (-1, 1), (1, 2), ("no", "yes"), (False, True), (0.0, 1.0)])
def test_any_two_labels_work(labels):
    y = np.where(YC == 1, labels[1], labels[0])
    m = clf().fit(X0, y)
    ref = clf().fit(X0, YC)
    assert list(m.classes_) == list(labels)
    np.testing.assert_array_equal(m.decision_function(X0), ref.decision_function(X0))
    assert set(m.predict(X0)) <= set(labels)
    assert 0 <= m.score(X0, y) <= 1
    np.testing.assert_allclose(m.predict_proba(X0).sum(axis=1), 1)


def test_unseen_or_mixed_labels():
    m = clf().fit(X0, YC)
    expect(ValueError, "label 5", fn=lambda: m.partial_fit(X0, np.where(YC, 5, 0)))
    mixed = np.array([1, "a"] * 20, dtype=object)
    expect(TypeError, "y", "mixes label types", fn=lambda: clf().fit(X0, mixed))
    expect(ValueError, "y", "NaN", fn=lambda: clf().fit(X0, np.array([1.0, np.nan] * 20, dtype=object)))


def test_partial_fit_classes():
    m = clf()
    m.partial_fit(X0[:2], [0, 0], classes=[0, 1])  # one class in the first batch is fine
    assert list(m.classes_) == [0, 1]
    expect(ValueError, "2 classes", fn=lambda: clf().partial_fit(X0[:2], [0, 0]))


# --- hyperparameters ----------------------------------------------------------

BAD_PARAMS = [
    ("n_factors", 0, ">= 1"), ("n_factors", 2.5, "integer"), ("n_factors", True, "integer"),
    ("learning_rate", -0.1, "> 0"), ("learning_rate", 0.0, "> 0"), ("learning_rate", np.nan, "finite"),
    ("learning_rate", np.inf, "finite"), ("learning_rate", "fast", "number"),
    ("lr_decay", -0.5, ">= 0"), ("lr_decay", np.nan, "finite"), ("lr_decay", "1", "number"),
    ("max_iter", 0, ">= 1"), ("max_iter", 2.0, "integer"), ("batch_size", 0, ">= 1"),
    ("batch_size", -5, ">= 1"), ("init_std", -1.0, ">= 0"), ("tol", -1e-3, ">= 0"),
    ("validation_fraction", 1.0, "(0, 1)"), ("validation_fraction", 0.0, "> 0"),
    ("n_iter_no_change", 0, ">= 1"), ("n_jobs", 0, "positive"), ("n_jobs", -3, ">= -1"),
    ("loss", "absolute", "squared"), ("solver", "lbfgs", "'adam', 'adamw' or 'sgd'"),
    ("device", "tpu", "'cpu', 'cuda' or 'auto'"), ("dtype", np.int32, "float32"),
    ("dtype", np.float16, "float64"), ("on_divergence", "ignore", "'raise' or 'warn'"),
    ("l2_reg_w", -1.0, ">= 0"), ("l2_reg_v", np.nan, "finite"), ("verbose", "loud", "integer"),
    ("random_state", "seed", "integer"), ("random_state", -1, "[0, 2**32)"),
    ("groups", [0, 1], "one group id per feature"),
]


@pytest.mark.parametrize("name,value,keyword", BAD_PARAMS, ids=[f"{n}={v!r}" for n, v, _ in BAD_PARAMS])
def test_invalid_hyperparameters_reported_at_fit(name, value, keyword):
    est = reg().set_params(**{name: value})
    expect(ValueError, name, keyword, fn=lambda: est.fit(X0, Y0))


def test_classifier_loss_choices_listed():
    expect(ValueError, "loss", "hinge", "logistic", fn=lambda: clf(loss="squared").fit(X0, YC))


def test_rejected_refit_keeps_the_fitted_model():
    m = reg().fit(X0, Y0)
    before = m.predict(X0)
    Xw = sp.random(40, 9, density=0.3, format="csr", random_state=3)
    with pytest.raises(ValueError):
        m.fit(Xw, Y0, sample_weight=-np.ones(40))
    assert m.n_features_in_ == 6
    np.testing.assert_array_equal(m.predict(X0), before)
    c = clf().fit(X0, YC)
    with pytest.raises(ValueError):
        c.fit(X0, np.where(YC, "b", "a"), sample_weight=np.zeros(40))
    assert list(c.classes_) == [0, 1]


def test_impossible_model_size_refused_before_allocating():
    X = sp.csr_matrix((np.ones(1), np.array([0]), np.array([0, 1])), shape=(1, 2**40))
    expect(MemoryError, "features", "GiB", "n_factors", fn=lambda: reg().fit(X, [1.0]))


# --- predict before fit -------------------------------------------------------

@pytest.mark.parametrize("method", ["predict", "decision_function", "predict_proba", "score", "save"])
def test_not_fitted(method, tmp_path):
    est = FMClassifier()
    args = {"score": (X0, YC), "save": (tmp_path / "m.npz",)}.get(method, (X0,))
    with pytest.raises(NotFittedError, match="not fitted"):
        getattr(est, method)(*args)
    with pytest.raises(NotFittedError):
        FMRegressor().coef_


def test_predict_proba_only_for_logistic():
    m = clf(loss="hinge").fit(X0, YC)
    assert not hasattr(m, "predict_proba")
    with pytest.raises(AttributeError, match="predict_proba"):
        m.predict_proba(X0)


# --- empty rows -------------------------------------------------------------

def test_empty_rows_predict_w0():
    m = reg().fit(X0, Y0)
    out = m.predict(sp.csr_matrix((4, 6)))
    np.testing.assert_array_equal(out, np.float32(m.intercept_))
    Xe = sp.vstack([X0, sp.csr_matrix((3, 6))]).tocsr()
    assert np.all(m.predict(Xe)[-3:] == out[0])


def test_all_empty_matrix_fits():
    m = reg().fit(sp.csr_matrix((5, 4)), np.full(5, 2.0))
    np.testing.assert_allclose(m.predict(sp.csr_matrix((2, 4))), 2.0)
    assert np.all(np.isfinite(m.factors_))
    c = clf().fit(sp.csr_matrix((4, 3)), [0, 1, 1, 1])
    assert c.predict(sp.csr_matrix((2, 3))).tolist() == [1, 1]


# --- divergence guard ------------------------------------------------------

@pytest.mark.parametrize("solver", ["adam", "adamw", "sgd"])
def test_divergence_raises_and_restores_last_finite_parameters(solver):
    m = reg(solver=solver, max_iter=2).fit(X0, Y0)
    P_good = m._state.P.copy()
    w0_good = m.intercept_
    hist = list(m.history_["train_loss"])
    m.set_params(learning_rate=1e25, warm_start=True)
    expect(DivergenceError, "diverged", "learning_rate", "smaller",
           fn=lambda: m.fit(X0 * 1e6, Y0 * 1e6))
    np.testing.assert_array_equal(m._state.P, P_good)
    assert m.intercept_ == w0_good
    assert m.history_["train_loss"] == hist and m.n_iter_ == len(hist)
    assert np.all(np.isfinite(m.predict(X0)))
    if solver == "adam":  # Adam restarts from clean moments
        assert m._state.t == 0 and not m._state.M.any()
        m.set_params(learning_rate=0.01).fit(X0, Y0)  # and training can continue
        assert np.all(np.isfinite(m.coef_))


def test_divergence_warn_keeps_last_good_state():
    m = reg(on_divergence="warn", learning_rate=1e25, max_iter=5)
    with pytest.warns(RuntimeWarning, match="diverged"):
        m.fit(X0 * 1e6, Y0 * 1e6)
    assert np.all(np.isfinite(m._state.P)) and np.isfinite(m.intercept_)
    assert np.all(np.isfinite(m.predict(X0)))
    assert all(np.isfinite(m.history_["train_loss"]))


def test_divergence_is_an_arithmetic_error():
    assert issubclass(DivergenceError, FloatingPointError)


# --- interrupted fit ----------------------------------------------------------


@pytest.mark.parametrize("solver", ["adam", "adamw", "sgd"])
def test_keyboard_interrupt_keeps_last_completed_epoch(monkeypatch, solver):
    ref = reg(solver=solver, max_iter=2, n_jobs=1).fit(X0, Y0)
    monkeypatch.setattr("fmnumba.estimators.get_kernels", lambda *a, **k: FailingKernels(3))
    m = reg(solver=solver, max_iter=10, n_jobs=1)
    with pytest.raises(KeyboardInterrupt):
        m.fit(X0, Y0)
    assert m.n_iter_ == 2 and len(m.history_["train_loss"]) == 2
    np.testing.assert_array_equal(m._state.P, ref._state.P)
    assert m.intercept_ == ref.intercept_
    np.testing.assert_array_equal(m.predict(X0), ref.predict(X0))
    monkeypatch.undo()
    m.partial_fit(X0, Y0)  # usable and resumable
    assert m.n_iter_ == 3 and np.all(np.isfinite(m.predict(X0)))


def test_real_sigint_during_fit_keeps_a_usable_model(tmp_path):
    script = textwrap.dedent(f"""
        import json, sys, time
        import numpy as np
        sys.path.insert(0, {ROOT!r})
        import fmnumba
        from fmnumba.datasets import make_fm_data
        d = make_fm_data(20000, (500, 300, 50, 7), random_state=0)
        m = fmnumba.FMRegressor(n_factors=4, max_iter=1, batch_size=64).fit(d.X[:100], d.y[:100])
        m.set_params(max_iter=100000, warm_start=True)
        print("ready", flush=True)
        try:
            m.fit(d.X, d.y)
        except KeyboardInterrupt:
            pred = m.predict(d.X)
            print(json.dumps({{"n_iter": m.n_iter_, "hist": len(m.history_["train_loss"]),
                               "finite": bool(np.all(np.isfinite(pred))
                                              and np.all(np.isfinite(m._state.P)))}}))
            sys.exit(0)
        sys.exit(3)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    try:
        assert proc.stdout.readline().strip() == "ready"
        import time
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    import json
    r = json.loads(out.strip().splitlines()[-1])
    assert r["finite"] and r["n_iter"] == r["hist"] >= 1


# --- memory --------------------------------------------------------------------

def test_canonical_csr_is_not_copied():
    X, _ = _data(2000, 50, dtype=np.float32)
    X.sort_indices()
    Xc = validation.check_X(reg(), X, reset=True, dtype=np.dtype(np.float32))
    for name in ("data", "indices", "indptr"):
        assert np.shares_memory(getattr(Xc, name), getattr(X, name)), name
    Xd = X.astype(np.float64)  # the model's dtype differs: converted once
    Xdc = validation.check_X(reg(), Xd, reset=True, dtype=np.dtype(np.float32))
    assert not np.shares_memory(Xdc.data, Xd.data)


def test_predict_and_fit_allocate_no_dense_blocks():
    n, p, k = 50_000, 1000, 16
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((np.ones(n * 2, np.float32), rng.integers(0, p, n * 2).astype(np.int32),
                       np.arange(0, 2 * n + 1, 2, dtype=np.int32)), shape=(n, p))
    X.sum_duplicates()
    y = rng.normal(size=n)
    m = FMRegressor(n_factors=k, max_iter=1, random_state=0).fit(X[:1000], y[:1000])
    dense_nk = n * k * 4
    tracemalloc.start()
    try:
        m.predict(X)
        _, peak = tracemalloc.get_traced_memory()
        assert peak < n * 8 + dense_nk // 4, peak  # the output and small change
        tracemalloc.reset_peak()
        m.set_params(warm_start=True).fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
        # y/weights/order vectors and P-sized state only, never n × k or a copy of X
        assert peak < 8 * n * 8 + 5 * p * (k + 1) * 4, peak
    finally:
        tracemalloc.stop()


# --- concurrency ------------------------------------------------------------------

def test_concurrent_predict_matches_serial():
    X, y = _data(5_000, 100, seed=2, dtype=np.float32)
    m = reg().fit(X, y)
    c = clf().fit(X, y > 0)
    ref, ref_p = m.predict(X), c.predict_proba(X)
    with ThreadPoolExecutor(max_workers=4) as ex:
        outs = list(ex.map(lambda i: m.predict(X) if i % 2 else c.predict_proba(X), range(12)))
    for i, o in enumerate(outs):
        np.testing.assert_array_equal(o, ref if i % 2 else ref_p)


def test_concurrent_predict_on_workqueue_layer_does_not_abort():
    """Numba's workqueue threading layer aborts the process on concurrent
    parallel launches; fmnumba serialises its kernels there."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {ROOT!r})
        import numpy as np, scipy.sparse as sp
        from concurrent.futures import ThreadPoolExecutor
        import fmnumba
        X = sp.random(20000, 100, density=0.05, format="csr", random_state=0, dtype=np.float32)
        y = np.random.default_rng(0).normal(size=20000)
        m = fmnumba.FMRegressor(max_iter=1).fit(X, y)
        ref = m.predict(X)
        with ThreadPoolExecutor(4) as ex:
            outs = list(ex.map(lambda i: m.predict(X), range(12)))
        assert all(np.array_equal(o, ref) for o in outs)
        print("ok")
    """)
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


def test_fit_in_threads_is_safe():
    X, y = _data(2000, 30, seed=4)
    results = [None] * 4

    def work(i):
        results[i] = reg(random_state=i, n_jobs=1 + i % 2).fit(X, y).predict(X)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for i in range(4):
        np.testing.assert_array_equal(results[i], reg(random_state=i, n_jobs=1).fit(X, y).predict(X))


# --- misc entry points ------------------------------------------------------------------

def test_eval_set_validated():
    expect(ValueError, "eval_set", "tuple", fn=lambda: reg().fit(X0, Y0, eval_set=[X0]))
    expect(ValueError, "eval_set[1]", fn=lambda: reg().fit(X0, Y0, eval_set=(X0, Y0[:3])))
    expect(ValueError, "eval_set[0]", "0 rows", fn=lambda: reg().fit(X0, Y0, eval_set=(X0[:0], Y0[:0])))


def test_score_validates_X():
    expect(ValueError, "NaN", fn=lambda: FITTED.score(np.full((2, 6), np.nan), [1, 2]))


def test_warnings_are_not_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg().fit(X0, Y0).predict(X0)
        clf().fit(X0, YC).predict_proba(X0)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_canonical_detection_across_chunk_boundaries(monkeypatch, chunk):
    """The chunked O(nnz) scans must agree with a direct check at any chunk size."""
    monkeypatch.setattr(validation, "_CHUNK", chunk)
    rng = np.random.default_rng(chunk)
    for _ in range(40):
        n, p = rng.integers(1, 8), rng.integers(1, 8)
        nnz = rng.integers(0, 20)
        indptr = np.r_[0, np.sort(rng.integers(0, nnz + 1, n - 1)), nnz].astype(np.int32)
        indices = rng.integers(0, p, nnz).astype(np.int32)
        data = rng.choice([0.0, 1.0, -2.0, 0.5], nnz).astype(np.float32)
        expected = all(np.all(np.diff(indices[indptr[r]:indptr[r + 1]]) > 0) for r in range(n)) \
            and np.all(data != 0)
        assert validation._is_canonical(indptr, indices, data) == expected
        X = raw_csr(data, indices, indptr, (n, p))
        Xc = validation.check_X(reg(), X, reset=True, dtype=np.dtype(np.float32))
        assert np.shares_memory(Xc.indices, X.indices) == bool(expected and nnz)
        D = np.zeros((n, p))
        for r in range(n):
            np.add.at(D[r], indices[indptr[r]:indptr[r + 1]], data[indptr[r]:indptr[r + 1]])
        np.testing.assert_allclose(Xc.toarray(), D, rtol=1e-6)
        bad = data.astype(np.float64)
        if nnz:
            bad[rng.integers(0, nnz)] = np.nan
            with pytest.raises(ValueError, match="NaN"):
                validation.check_X(reg(), raw_csr(bad, indices, indptr, (n, p)), reset=True,
                                   dtype=np.dtype(np.float32))
