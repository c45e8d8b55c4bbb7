"""Every check of user input, with messages that name the argument and the fix.

The kernels run with bounds checks off, so nothing reaches them without
passing through here: structure of hand-built sparse matrices is checked
before SciPy touches them (a malformed indptr can crash SciPy's C++ code).
"""
import math
import numbers
import os

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import (_check_feature_names, _check_n_features, check_array,
                                      column_or_1d)

ADAM_SOLVERS = ("adam", "adamw")  # lazy Adam, L2 in the gradient or decoupled (AdamW)
SOLVERS = ADAM_SOLVERS + ("sgd", "mcmc", "als")  # mcmc, als: fmnumba/bayes.py

_INT32_MAX = np.iinfo(np.int32).max
_INT64_MAX = np.iinfo(np.int64).max


def _fail(name, what, fix):
    raise ValueError(f"{name}: {what}. {fix}")


def _check_compressed(X, name):
    """Structural check of a CSR/CSC matrix's raw arrays."""
    major, minor = (X.shape[0], X.shape[1]) if X.format == "csr" else (X.shape[1], X.shape[0])
    indptr, indices = np.asarray(X.indptr), np.asarray(X.indices)
    fix = "Build the matrix with scipy.sparse constructors or call .check_format()."
    if indices.ndim != 1 or np.ndim(X.data) != 1:
        _fail(name, f"indices and data must be 1-D arrays, got shapes {indices.shape} and "
                    f"{np.shape(X.data)}", fix)
    if indptr.ndim != 1 or indptr.shape[0] != major + 1:
        _fail(name, f"indptr has length {indptr.shape[0]}, expected {major + 1} "
                    f"(number of {'rows' if X.format == 'csr' else 'columns'} + 1)", fix)
    if not np.issubdtype(indptr.dtype, np.integer) or not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"{name}: indptr and indices must be integer arrays, got "
                        f"{indptr.dtype} and {indices.dtype}. {fix}")
    if major and indptr[0] != 0:
        _fail(name, f"indptr[0] is {indptr[0]}, must be 0", fix)
    # compare neighbours, never subtract them: np.diff of an unsigned indptr wraps
    dec = indptr[1:] < indptr[:-1]
    if dec.any():
        bad = int(np.argmax(dec))
        _fail(name, f"indptr decreases at row {bad} ({indptr[bad]} -> {indptr[bad + 1]}); "
                    "it must be non-decreasing", fix)
    nnz = int(indptr[-1]) if major else 0
    if nnz > indices.shape[0] or nnz > np.asarray(X.data).shape[0]:
        _fail(name, f"indptr[-1] is {nnz} but indices has {indices.shape[0]} and data "
                    f"{np.asarray(X.data).shape[0]} entries", fix)
    used = indices[:nnz]
    if used.size and (used.min() < 0 or used.max() >= minor):
        pos = int(np.argmax((used < 0) | (used >= minor)))
        row = int(np.searchsorted(indptr, pos, side="right") - 1)
        _fail(name, f"index {int(used[pos])} at row {row} is out of range [0, {minor})", fix)


def _check_coo(X, name):
    row, col = np.asarray(X.row), np.asarray(X.col)
    n, m = X.shape
    if row.shape != col.shape or row.shape[0] != np.asarray(X.data).shape[0]:
        _fail(name, "row, col and data of the COO matrix differ in length",
              "Build the matrix with scipy.sparse.coo_matrix((data, (row, col))).")
    for arr, lim, what in ((row, n, "row"), (col, m, "column")):
        if arr.size and (arr.min() < 0 or arr.max() >= lim):
            _fail(name, f"a {what} index ({int(arr[(arr < 0) | (arr >= lim)][0])}) "
                        f"is out of range [0, {lim})", "Fix the COO indices.")


def _check_dtype(X, name):
    kind = np.dtype(X.dtype).kind if hasattr(X, "dtype") else None
    if kind == "c":
        raise ValueError(f"{name}: Complex data not supported (dtype {X.dtype}). "
                        "Pass real numbers, e.g. X.real.")
    if kind in ("U", "S", "M", "m", "V"):
        raise TypeError(f"{name}: dtype {X.dtype} is not numeric. Encode it first, "
                        "e.g. with sklearn.preprocessing.OneHotEncoder.")


_CHUNK = 1 << 20  # entries per block in the O(nnz) scans: bounded temporaries


def _first_nonfinite(data):
    """Position of the first non-finite value of `data`, or -1 (chunked scan)."""
    if data.dtype.kind not in "fc":
        return -1
    for a in range(0, data.shape[0], _CHUNK):
        fin = np.isfinite(data[a:a + _CHUNK])
        if not fin.all():
            return a + int(np.argmin(fin))
    return -1


def _is_canonical(indptr, indices, data):
    """True when every row's indices strictly increase (sorted, no duplicates)
    and no stored value is zero. Structure must already be checked."""
    nnz = int(indptr[-1])
    for a in range(0, nnz, _CHUNK):
        b = min(nnz, a + _CHUNK + 1)
        if not np.all(data[a:b]):
            return False
        bad = np.flatnonzero(indices[a + 1:b] <= indices[a:b - 1]) + (a + 1)
        if bad.size:  # a decrease is fine only where a new row starts
            at = np.searchsorted(indptr, bad)
            if np.any(indptr[np.minimum(at, indptr.shape[0] - 1)] != bad):
                return False
    return True


def _row_col(X, pos):
    row = int(np.searchsorted(X.indptr, pos, side="right") - 1)
    return row, int(X.indices[pos])


def _canonical_csr(X, dtype, name, n_jobs=None, values=True):
    """Return a CSR with sorted indices, summed duplicates, no explicit zeros,
    finite values of `dtype` and int32 indices where they fit; never mutates X.

    A CSR that is already in that form is used as it is (its arrays are
    shared, not copied), so large canonical inputs cost no extra memory.
    values=False: see check_X.
    """
    if not sp.issparse(X):
        if hasattr(X, "dtype") and np.dtype(X.dtype).kind == "O":
            try:
                X = np.asarray(X, dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise TypeError(f"{name}: object array with non-numeric values ({e}). "
                                "Pass numbers only.") from None
        if np.dtype(X.dtype) == np.float16:
            X = X.astype(np.float32)
        X = sp.csr_matrix(X)
    fmt = X.format
    if fmt == "csr":
        fast = _fast_canonical(X, dtype, n_jobs, values)
        if fast is not None:
            return fast
    if fmt in ("csr", "csc"):
        _check_compressed(X, name)
    elif fmt == "coo":
        _check_coo(X, name)
    elif fmt == "bsr":
        _check_bsr(X, name)
    _check_dtype(X, name)
    if np.dtype(X.dtype).kind == "O":
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name}: sparse object array with non-numeric values ({e}). "
                            "Pass numbers only.") from None
    if fmt == "csr":
        nnz = int(X.indptr[-1]) if X.shape[0] else 0
        indptr, indices, data = X.indptr, X.indices[:nnz], X.data[:nnz]
        pos = _first_nonfinite(data)
        if pos >= 0:
            row, col = _row_col(X, pos)
            _fail(name, f"contains NaN or inf (first at row {row}, column {col})",
                  "Remove or impute non-finite values before fitting or predicting.")
        it = np.int32 if max(X.shape[1], nnz) <= _INT32_MAX else np.int64
        if (data.dtype == dtype and indices.dtype == it and indptr.dtype == indices.dtype
                and _is_canonical(indptr, indices, data)):
            out = sp.csr_matrix(X.shape, dtype=dtype)
            out.data, out.indices, out.indptr = data, indices, indptr
            out.has_sorted_indices = True
            out.has_canonical_format = True
            return out
    X = sp.csr_matrix(X, copy=True)
    X.sum_duplicates()  # also sorts indices
    pos = _first_nonfinite(X.data)
    if pos >= 0:
        row, col = _row_col(X, pos)
        _fail(name, f"contains NaN or inf (first at row {row}, column {col}; an inf can also "
                    "come from summing duplicate entries)",
              "Remove or impute non-finite values before fitting or predicting.")
    if X.dtype != dtype:
        with np.errstate(over="ignore", invalid="ignore"):
            X = X.astype(dtype, copy=False)
        pos = _first_nonfinite(X.data)
        if pos >= 0:
            row, col = _row_col(X, pos)
            _fail(name, f"the value at row {row}, column {col} is too large for "
                        f"dtype={dtype.name} (it overflows to inf)",
                  "Scale X's values, or use dtype=np.float64.")
    X.eliminate_zeros()
    it = np.int32 if max(X.shape[1], X.nnz) <= _INT32_MAX else np.int64
    X.indices = X.indices.astype(it, copy=False)
    X.indptr = X.indptr.astype(np.int64 if X.nnz > _INT32_MAX else it, copy=False)
    return X


_FAST_INDEX = (np.dtype(np.int32), np.dtype(np.int64))
# Below this many entries the NumPy checks take a few ms, less than compiling
# the fused kernel on a first run (1-3 s): small inputs never compile it.
_FUSED_MIN_NNZ = 1 << 20


def _fast_canonical(X, dtype, n_jobs, values=True):
    """X's own arrays as canonical CSR when one fused kernel pass
    (fmnumba.cpu.validate) finds them valid and canonical in `dtype` with
    the index dtype check_X would choose; None when anything must be checked
    in detail or changed (the NumPy path then names the problem or converts).
    n_jobs: the estimator's (None: the default thread count); values=False
    leaves the stored values unchecked (see check_X)."""
    indptr, indices, data = X.indptr, X.indices, X.data
    if not (isinstance(indptr, np.ndarray) and isinstance(indices, np.ndarray)
            and isinstance(data, np.ndarray)):
        return None
    n = X.shape[0]
    if (n == 0 or indptr.ndim != 1 or indices.ndim != 1 or data.ndim != 1
            or indptr.shape[0] != n + 1 or data.dtype != dtype
            or indices.dtype not in _FAST_INDEX or indptr.dtype != indices.dtype
            or not (indptr.flags.c_contiguous and indices.flags.c_contiguous
                    and data.flags.c_contiguous)):
        return None
    nnz = int(indptr[-1])
    if indptr[0] != 0 or not 0 <= nnz <= min(indices.shape[0], data.shape[0]):
        return None
    if nnz < _FUSED_MIN_NNZ:
        return None
    it = np.int32 if max(X.shape[1], nnz) <= _INT32_MAX else np.int64
    if indices.dtype != it:
        return None
    indices, data = indices[:nnz], data[:nnz]
    from ._threads import numba_threads, serial_if_unsafe
    from .cpu.validate import csr_is_canonical
    with serial_if_unsafe(), numba_threads(n_jobs):
        ok = csr_is_canonical((indptr, indices, data), np.int64(X.shape[1]), values)
    if not ok:
        return None
    out = sp.csr_matrix(X.shape, dtype=dtype)
    out.data, out.indices, out.indptr = data, indices, indptr
    out.has_sorted_indices = True
    out.has_canonical_format = True
    return out


def _threads_for(est):
    """est's n_jobs for the validation kernel; None (the default count) when
    it is not a valid n_jobs (the call's kernels then report it)."""
    n_jobs = getattr(est, "n_jobs", None)
    try:
        check_n_jobs(n_jobs)
    except ValueError:
        return None
    return n_jobs


def _check_bsr(X, name):
    indptr, indices = np.asarray(X.indptr), np.asarray(X.indices)
    r, c = X.blocksize
    n_br, n_bc = X.shape[0] // r, X.shape[1] // c
    fix = "Build the matrix with scipy.sparse constructors or call .check_format()."
    if (indptr.ndim != 1 or indptr.shape[0] != n_br + 1 or not np.issubdtype(indptr.dtype, np.integer)
            or not np.issubdtype(indices.dtype, np.integer)):
        _fail(name, "the BSR matrix's indptr or indices are malformed", fix)
    if (indptr[0] != 0 or np.any(indptr[1:] < indptr[:-1]) or indptr[-1] > indices.shape[0]
            or indptr[-1] > np.asarray(X.data).shape[0]):
        _fail(name, "the BSR matrix's indptr is malformed", fix)
    used = indices[:indptr[-1]]
    if used.size and (used.min() < 0 or used.max() >= n_bc):
        _fail(name, "a block column index of the BSR matrix is out of range", fix)


def _n_features(est, X, reset, name):
    """Record (reset) or check the column count."""
    try:
        _check_n_features(est, X, reset=reset)  # names: checked before conversion
    except ValueError as e:
        msg = str(e)
        if name != "X" and msg.startswith("X "):
            msg = name + msg[1:]
        raise ValueError(f"{msg} Pass data with the same columns as at fit (the same "
                         "encoder or feature mapping).") from None


def check_X(est, X, *, reset, dtype, name="X", values=True):
    """Validate X for `est` and return it as canonical CSR of `dtype` (the
    model's numpy dtype, see resolve_dtype).

    reset=True (fit) records n_features_in_ (and feature names) and needs at
    least one row and one column; reset=False checks the column count against
    the fitted model and allows zero rows.

    values=False (prediction) lets a large CSR whose structure is canonical
    through without reading its values: an explicit zero then adds exactly
    zero and a NaN or inf makes that row's prediction non-finite, so the
    caller must validate again with values=True (which names the value)
    before reporting a non-finite prediction. Half the bytes of the check.
    """
    if X is None:
        raise TypeError(f"{name} is None; pass a 2-D array or a scipy sparse matrix.")
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} is a string; pass a 2-D array or a scipy sparse matrix "
                        "(to read a file, use fmnumba.readers).")
    if sp.issparse(X):
        if X.ndim != 2:
            _fail(name, f"expected a 2-D matrix, got {X.ndim}-D", "Reshape it.")
        if X.format not in ("csr", "csc", "coo", "bsr"):
            X = X.tocoo()  # dok, lil, dia: their own constructors keep them consistent
        _n_features(est, X, reset, name)
    else:
        if hasattr(X, "dtype"):
            _check_dtype(X, name)
        if isinstance(X, np.matrix):
            X = np.asarray(X)
        _check_feature_names(est, X, reset=reset)  # before conversion drops the names
        try:
            X = check_array(X, accept_sparse=False, dtype=None, ensure_all_finite=False,
                            ensure_min_samples=0, ensure_min_features=0, input_name=name)
        except TypeError as e:
            raise TypeError(f"{name}: cannot be read as a 2-D numeric array ({e}).") from None
        except ValueError as e:
            msg = str(e)
            if "could not convert" in msg or "setting an array element" in msg:
                raise TypeError(f"{name}: cannot be read as a 2-D numeric array ({msg}). "
                                "Pass numbers only.") from None
            raise ValueError(f"{name}: {msg}") from None
        _check_dtype(X, name)
        _n_features(est, X, reset, name)
    if reset and X.shape[0] == 0:
        _fail(name, f"has 0 sample(s) (shape={X.shape}) while a minimum of 1 is required",
              "Fitting needs at least one row.")
    if reset and X.shape[1] == 0:
        _fail(name, f"has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required",
              "Fitting needs at least one feature column.")
    return _canonical_csr(X, dtype, name, _threads_for(est), values)


def resolve_dtype(dtype):
    """The `dtype` parameter as a numpy dtype: float32 or float64."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}.")
    return dt


def check_y_numeric(y, n_rows, name="y", dtype=None):
    """y as a finite float64 vector of length n_rows (and, with `dtype`,
    small enough that the squared loss cannot overflow that dtype)."""
    if y is None:
        raise ValueError(f"fit requires y to be passed, but the target y is None ({name}): "
                         "pass one target per row of X.")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    if y.ndim != 1:
        _fail(name, f"expected a 1-D target, got shape {y.shape}", "Pass one target per row.")
    if y.shape[0] != n_rows:
        _fail(name, f"has {y.shape[0]} entries but X has {n_rows} rows", "Pass one target per row of X.")
    if y.dtype.kind == "c":
        _fail(name, f"complex targets (dtype {y.dtype}) are not supported",
              "Pass real numbers, e.g. y.real if the imaginary parts are zero.")
    if y.dtype.kind in "USVMm":
        raise ValueError(f"{name}: regression targets must be numeric, got dtype {y.dtype}. "
                         "Convert them to numbers first.")
    if y.dtype.kind == "O" and any(isinstance(v, (complex, np.complexfloating, str, bytes))
                                   for v in y.tolist()):
        raise ValueError(f"{name}: regression targets must be real numbers; the object array "
                         "holds complex numbers or strings. Convert them to floats first.")
    y = _as_float64(y, f"{name}: regression targets")
    if not np.all(np.isfinite(y)):
        _fail(name, f"contains NaN or inf (first at index {int(np.argmin(np.isfinite(y)))})",
              "Remove those rows or impute the target.")
    if dtype is not None and y.size:
        limit = np.sqrt(np.finfo(dtype).max) / 16
        big = float(np.abs(y).max())
        if big > limit:
            _fail(name, f"holds a value of magnitude {big:.3g} (index "
                        f"{int(np.argmax(np.abs(y)))}), too large for the squared loss in "
                        f"{np.dtype(dtype).name} (limit {limit:.3g})",
                  "Standardise y (subtract its mean, divide by its standard deviation) "
                  "or use dtype=np.float64.")
        _warn_if_unresolved(y, dtype, name)
    return y


class TargetPrecisionWarning(UserWarning):
    """The targets vary by less than the model's dtype resolves at their magnitude."""


def _warn_if_unresolved(y, dtype, name):
    """Warn when rounding to `dtype` at max |y| alone is noise of more than
    5% of y's standard deviation (spacing / sqrt(12) > 0.05 std): the model
    computes ŷ − y in that dtype, so it cannot fit the differences between
    the targets (e.g. 1e15 + N(0, 1) in float32)."""
    import warnings

    spread = float(np.std(y))
    if spread == 0.0:
        return
    big = float(np.abs(y).max())
    resolution = float(np.spacing(np.dtype(dtype).type(big)))
    if resolution / np.sqrt(12.0) > 0.05 * spread:
        warnings.warn(
            f"{name}: targets of magnitude {big:.3g} vary with a standard deviation of only "
            f"{spread:.3g}, too little for what {np.dtype(dtype).name} resolves there (steps "
            f"of {resolution:.3g}): the fit cannot represent their differences. Centre y "
            "(subtract its mean and add it back to the predictions), or use dtype=np.float64 "
            "if that is not enough.", TargetPrecisionWarning, stacklevel=6)


def check_sample_weight(sample_weight, n_rows):
    """Non-negative finite weights (float64, length n_rows) with a positive sum."""
    if sample_weight is None:
        return np.ones(n_rows)
    sw = np.asarray(sample_weight)
    if sw.ndim == 0:
        sw = np.full(n_rows, sw)
    if sw.ndim != 1 or sw.shape[0] != n_rows:
        _fail("sample_weight", f"has shape {sw.shape} but X has {n_rows} rows",
              "Pass one weight per row of X.")
    sw = _as_float64(sw, "sample_weight")
    if not np.all(np.isfinite(sw)):
        _fail("sample_weight", "contains NaN or inf", "Pass finite weights.")
    if sw.min(initial=0.0) < 0:
        _fail("sample_weight", f"contains negative values (first at index {int(np.argmax(sw < 0))})",
              "Weights must be >= 0.")
    if n_rows and sw.max() <= 0:
        _fail("sample_weight", "sums to zero", "At least one row needs a positive weight.")
    if n_rows:
        # The objective divides by Σ s, so scaling all weights by a power of two
        # changes nothing but keeps Σ s and s·ℓ inside float32's range.
        top = float(sw.max())
        if not 2.0 ** -20 <= top <= 2.0 ** 20:  # ldexp: 2**1074 itself would overflow
            sw = np.ldexp(sw, -int(np.floor(np.log2(top))))
    return sw


def _short(value):
    """repr of value for a message, cut to 60 characters."""
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


def _as_float64(a, what):
    """a as float64; a ValueError naming `what` when it is not numeric."""
    try:
        return a.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numeric, got dtype {a.dtype}.") from None


def _num(name, value, lo, lo_open, hi=None, integer=False):
    """Check that value is a number (an integer with `integer`, then at most
    int64's maximum) in the range given by lo, lo_open and hi."""
    ok_type = numbers.Integral if integer else numbers.Real
    what = "integer" if integer else "number"
    if isinstance(value, bool) or not isinstance(value, ok_type):
        raise ValueError(f"{name} must be a finite {what}, got {_short(value)}.")
    if integer:
        value = int(value)
        if abs(value) > _INT64_MAX:
            raise ValueError(f"{name} must be an integer within int64's range "
                             f"(at most {_INT64_MAX}), got {_short(value)}.")
    else:
        try:
            finite = math.isfinite(float(value))  # Fraction, Decimal-like Reals
        except (OverflowError, TypeError, ValueError):
            finite = False
        if not finite:
            raise ValueError(f"{name} must be a finite number, got {_short(value)}.")
    if (value <= lo if lo_open else value < lo) or (hi is not None and value > hi):
        rng = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
        raise ValueError(f"{name} must be {rng}, got {_short(value)}.")


def check_params(est, valid_losses):
    """Validate hyperparameters at fit (dtype: see resolve_dtype); messages
    list the valid choices."""
    _num("n_factors", est.n_factors, 1, False, integer=True)
    _num("learning_rate", est.learning_rate, 0, True)
    _num("lr_decay", est.lr_decay, 0, False)
    if est.max_iter is not None:  # None: the solver's default
        _num("max_iter", est.max_iter, 1, False, integer=True)
    _num("batch_size", est.batch_size, 1, False, integer=True)
    if est.init_std is not None:  # None: the solver's default
        _num("init_std", est.init_std, 0, False)
    _num("validation_fraction", est.validation_fraction, 0, True, hi=1)
    if est.validation_fraction >= 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {est.validation_fraction!r}.")
    _num("n_iter_no_change", est.n_iter_no_change, 1, False, integer=True)
    if est.tol is not None:
        _num("tol", est.tol, 0, False)
    if est.loss not in valid_losses:
        raise ValueError(f"loss={est.loss!r} is not supported by {type(est).__name__}; "
                         f"choose one of {sorted(valid_losses)}.")
    if est.solver not in SOLVERS:
        raise ValueError(f"solver={est.solver!r} is unknown; choose 'adam', 'adamw' or 'sgd' "
                         "(gradient steps), 'mcmc' (Gibbs sampling) or 'als' (alternating "
                         "least squares).")
    if est.device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device={est.device!r} is unknown; choose 'cpu', 'cuda' or 'auto'.")
    check_n_jobs(est.n_jobs)
    if not isinstance(est.verbose, numbers.Integral):
        raise ValueError(f"verbose must be an integer (0 silent, 1 progress bar), got "
                         f"{est.verbose!r}.")
    if not (est.random_state is None or isinstance(est.random_state, np.random.RandomState)
            or (isinstance(est.random_state, numbers.Integral)
                and not isinstance(est.random_state, bool)
                and 0 <= est.random_state < 2**32)):
        raise ValueError(f"random_state must be None, an integer in [0, 2**32) or a "
                         f"numpy.random.RandomState, got {est.random_state!r}.")
    if est.on_divergence not in ("raise", "warn"):
        raise ValueError(f"on_divergence={est.on_divergence!r}; choose 'raise' or 'warn'.")


def check_n_jobs(n_jobs):
    """n_jobs must be None, -1 (all cores) or a positive integer."""
    if n_jobs is None:
        return
    if (isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral)
            or not (n_jobs == -1 or 1 <= n_jobs <= _INT64_MAX)):
        raise ValueError(f"n_jobs must be None, -1 (all cores) or a positive integer "
                         f"(>= -1, not 0), got {_short(n_jobs)}; set it with "
                         "set_params(n_jobs=...).")


def groups_from_prefixes(groups, feature_names, n_features):
    """Resolve `groups` given as {feature-name prefix: group id} to one group
    id per feature: each name takes the id of its longest matching prefix
    ("" matches every name)."""
    if feature_names is None:
        raise ValueError("groups is a mapping of feature-name prefixes but X has no feature "
                         "names; fit on a pandas DataFrame (e.g. a ColumnTransformer with "
                         ".set_output(transform='pandas')), or pass one group id per feature.")
    names = [str(f) for f in feature_names]
    if len(names) != n_features:
        raise ValueError(f"groups: {len(names)} feature names for {n_features} features.")
    items = sorted(((str(p), g) for p, g in groups.items()), key=lambda t: -len(t[0]))
    for p, g in items:
        if isinstance(g, (bool, np.bool_)) or not isinstance(g, (numbers.Integral)) or g < 0:
            raise ValueError(f"groups[{p!r}] is {g!r}; group ids must be integers >= 0.")
    out = np.empty(n_features, dtype=np.int64)
    for j, f in enumerate(names):
        gid = next((g for p, g in items if f.startswith(p)), None)
        if gid is None:
            raise ValueError(f"groups: feature {f!r} matches none of the prefixes "
                             f"{sorted(p for p, _ in items)}; add its prefix, or '' for a "
                             "default group.")
        out[j] = gid
    return out


def check_group_ids(groups, n_features):
    """groups as an integer array, one id >= 0 per feature (n_features,)."""
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != n_features or not np.issubdtype(g.dtype, np.integer):
        raise ValueError(f"groups must be an integer array with one group id per feature "
                         f"({n_features}), got shape {g.shape} and dtype {g.dtype}.")
    if g.size and g.min() < 0:
        raise ValueError("groups: group ids must be >= 0.")
    return g


def per_feature_l2(name, value, groups, n_features, feature_names=None):
    """An L2 strength in the kernels' form: one value per feature, shape
    (n_features,), or shape (1,) when every feature has the same strength
    (the kernels then skip a random read per entry).

    value is a number, or with `groups` (int array, one group id in
    [0, n_groups) per feature, or a mapping of feature-name prefixes to
    group ids resolved against `feature_names`) a sequence with one
    strength per group.
    """
    if isinstance(groups, dict):
        groups = groups_from_prefixes(groups, feature_names, n_features)
    if groups is None:
        if np.ndim(value) != 0:
            raise ValueError(f"{name} is a sequence but groups=None; pass a single number, "
                             "or groups= with one group id per feature.")
        _num(name, value, 0, False)
        return np.array([float(value)])
    g = check_group_ids(groups, n_features)
    top = int(g.max()) if g.size else -1
    if top > _INT32_MAX:
        raise ValueError(f"groups: group id {top} is too large (at most {_INT32_MAX}); "
                         "number the groups 0, 1, 2, ...")
    if np.ndim(value) == 0:  # one strength for every group: no per-group table
        _num(name, value, 0, False)
        return np.array([float(value)])
    try:
        vals = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a sequence of numbers, one per "
                         "group.") from None
    n_groups = top + 1
    if vals.shape != (n_groups,):
        raise ValueError(f"{name} has {vals.shape[0] if vals.ndim else 1} values but groups "
                         f"defines {n_groups} groups (ids 0 to {top}); pass one strength "
                         "per group.")
    bad = ~(np.isfinite(vals) & (vals >= 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name}[{i}] must be a finite number >= 0, got {vals[i]!r}.")
    if vals.size and (vals == vals[0]).all():
        return vals[:1].copy()
    return vals[g]


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def max_batch_nnz(X, batch_size):
    """Upper bound on the entries of one mini-batch of canonical CSR X: the
    sum of its batch_size longest rows."""
    lengths = np.diff(X.indptr)
    m = min(int(batch_size), lengths.shape[0])
    if m == 0:
        return 0
    if m == lengths.shape[0]:
        return int(X.nnz)
    return int(np.partition(lengths, lengths.shape[0] - m)[-m:].sum())


def fit_memory(n_features, n_factors, dtype, solver, *, n_rows=0, batch_nnz=0,
               batch_size=256, split_nnz=0, existing=0, n_threads=None):
    """Bytes a fit allocates beyond its input, by purpose (a dict):

    tables: P = [w | V] (n_features × (1 + n_factors)) and, for Adam, M and
    S, less the `existing` ones (0 for a fresh fit, 1 or 3 when resuming);
    copy: one copy of P for the divergence guard (with early stopping, the
    best epoch's); features: Adam's int64 count per feature (kept by the
    kernels between epochs) and the one-byte mask of the features present;
    init: the float64 block the factors are drawn in; rows: per-row vectors (order,
    targets and weights in the model's dtype, loss terms, the training row
    ids of an early-stopping split) and the split's copy of its split_nnz
    validation entries; batch: the Adam kernel's per-batch buffers (ŷ, q of
    batch × n_factors, the two transposes of up to batch_nnz entries);
    threads: per-thread vectors of n_factors.
    """
    from numba import config

    item = np.dtype(dtype).itemsize
    row = (1 + n_factors) * item
    adam = solver in ADAM_SOLVERS
    threads = n_threads or config.NUMBA_NUM_THREADS
    nb = min(int(batch_size), int(n_rows)) if adam else 0
    step = max(1, (1 << 20) // max(n_factors, 1))
    return {
        "tables": n_features * row * max(0, (3 if adam else 1) - existing),
        "copy": n_features * row,
        "features": n_features * (9 if adam else 1),
        "init": 0 if existing else min(step, n_features) * n_factors * 8,
        "rows": n_rows * (48 + 2 * item) + split_nnz * (item + 8),
        "batch": nb * (n_factors * item + 3 * item + 8) + 2 * batch_nnz * (20 + item),
        "threads": threads * 2 * n_factors * item,
    }


def check_model_size(n_features, n_factors, dtype, solver, name="X", *, n_rows=0,
                     batch_nnz=0, batch_size=256, split_nnz=0, existing=0, held=0):
    """Refuse, before allocating, a fit whose memory (fit_memory, plus `held`
    bytes of a previous model kept until the fit returns) exceeds this
    machine's physical memory, with a message naming the largest part."""
    parts = fit_memory(n_features, n_factors, dtype, solver, n_rows=n_rows,
                       batch_nnz=batch_nnz, batch_size=batch_size, split_nnz=split_nnz,
                       existing=existing)
    need = sum(parts.values()) + held
    have = _physical_memory()
    if have and need > have:
        top = max(parts, key=parts.get)
        why = {"tables": f"the parameter table and its {solver} state",
               "copy": "the copy of the parameters kept by the divergence guard",
               "features": "the per-feature scratch",
               "init": "the block the initial factors are drawn in",
               "rows": "the per-row vectors",
               "batch": f"the per-batch buffers (batch_size={batch_size} × n_factors)",
               "threads": "the per-thread vectors of n_factors"}[top]
        raise MemoryError(
            f"{name} has {n_features:,} features: with n_factors={n_factors} this fit "
            f"needs {need / 2**30:.1f} GiB (most of it, {parts[top] / 2**30:.1f} GiB, for "
            f"{why}"
            + (f"; {held / 2**30:.1f} GiB hold the previous model until the fit returns"
               if held else "")
            + f") but this machine has {have / 2**30:.1f} GiB. Reduce n_factors"
            + (" or batch_size" if top == "batch" else "")
            + ", hash or prune rare features, or use solver='sgd' (no optimiser state).")


def take_rows(X, keep):
    """The rows of canonical CSR X where the boolean mask `keep` is True, as
    canonical CSR with X's index dtypes (chosen once, by check_X; SciPy's row
    indexing may pick others)."""
    out = X[np.flatnonzero(keep)]
    out.indices = out.indices.astype(X.indices.dtype, copy=False)
    out.indptr = out.indptr.astype(X.indptr.dtype, copy=False)
    return out


def drop_zero_weight_rows(X, y, sw, dtype):
    """Remove the rows whose weight is zero in the model's dtype (float64
    weights below half its smallest subnormal round to 0 there).

    A zero weight means "not in the objective", as in scikit-learn: the row
    is dropped, so it neither shapes a mini-batch nor draws L2 decay, and a
    mini-batch can never have a zero total weight. Returns (X, y, sw)
    unchanged (no copy) when every weight is positive.
    """
    keep = sw > np.float64(np.finfo(dtype).smallest_subnormal) / 2
    if keep.all():
        return X, y, sw
    return take_rows(X, keep), y[keep], sw[keep]
