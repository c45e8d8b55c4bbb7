"""Hypothesis fuzzing of fmnumba's public entry points, run as a subprocess by
tests/test_fuzz.py so that a segfault or an abort fails that test instead of
killing pytest.

    python tests/_fuzz_worker.py --examples 2000 --out result.json

Each case builds adversarial input (hand-built CSR/CSC/COO with malformed
structure and odd dtypes, dense arrays, NaN/inf/huge/tiny values, bad labels,
weights and hyperparameters, mutated model files and model metadata, bad
recommend arguments, special files as paths, labels of every type through
save/load, text files with a byte-order mark, compressed or fed through a
pipe) and calls fit, predict, predict_proba, score, partial_fit, save, load,
recommend, the Dask estimators' fit and predict or the readers. The contract checked:

* the only exceptions are ValueError, TypeError (NotFittedError is a
  ValueError), MemoryError for impossible model sizes and DivergenceError;
  anything else (IndexError, AssertionError, a Numba typing error...) fails;
* a fit that returns leaves finite parameters; a prediction that returns is
  finite;
* a structurally valid matrix with finite values is accepted, and its
  predictions equal those of the same data given densely (unsorted indices
  and duplicates are sorted and summed);
* load rejects every invalid file with a ModelFileError, whatever its
  metadata declares, without growing the process by more than the bound
  below; special paths (devices, FIFOs, sockets, directories, links) give
  ValueError or OSError at once and save never replaces them;
* labels come back from save/load with their type and value, or save
  refuses them with a TypeError;
* a data file reads the same plain, with a BOM, compressed or from a pipe.

Before each case its description is written to --last, so a crash can be
reported. The result JSON holds the number of cases run and the failures.
"""
import argparse
import bz2
import datetime
import gzip
import json
import lzma
import os
import random
import resource
import shutil
import socket
import stat
import sys
import tempfile
import time
import traceback
import warnings
from fractions import Fraction

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fmnumba  # noqa: E402
from fmnumba import DivergenceError, FMClassifier, FMRegressor, _source, readers  # noqa: E402
from fmnumba._model_file import same_labels  # noqa: E402

try:
    from ._pipes import pipe_of  # noqa: E402
except ImportError:
    from _pipes import pipe_of  # noqa: E402

ALLOWED = (ValueError, TypeError, DivergenceError)
ADVERSARIAL = [0.0, -0.0, 1.0, -1.0, 1e-45, 5e-324, 1e-30, 1e30, -1e30, 3e38, 1e200,
               np.nan, np.inf, -np.inf]
INDEX_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.float64]
DATA_DTYPES = [np.float64, np.float32, np.int64, np.bool_, np.uint8, np.float16,
               np.complex128, np.longdouble]

STATE = {"cases": 0, "failures": [], "kinds": {}, "last": None}


def values(n):
    return st.lists(st.one_of(st.floats(-10, 10, allow_nan=False, width=32),
                              st.floats(-10, 10, allow_nan=False, width=32),
                              st.sampled_from(ADVERSARIAL)), min_size=n, max_size=n)


@st.composite
def raw_matrix(draw):
    """(description, matrix, structurally_valid) for a hand-built sparse matrix."""
    # hypothesis favours 0: map it to 1 so that empty shapes stay a minority
    n_rows = draw(st.integers(0, 6).map(lambda v: (v + 1) % 7))
    n_cols = draw(st.integers(0, 6).map(lambda v: (v + 1) % 7))
    nnz = draw(st.integers(0, 14))
    fmt = draw(st.sampled_from(["csr", "csr", "csr", "csc", "coo", "csr_array"]))
    major, minor = (n_cols, n_rows) if fmt == "csc" else (n_rows, n_cols)
    mode = "valid" if draw(st.integers(0, 99)) < 60 else draw(st.sampled_from(
        ["oor", "neg", "ptr_dec", "ptr_len", "ptr_start", "ptr_end", "dtype", "dtype"]))
    # a valid compressed structure, possibly unsorted with duplicates
    cuts = sorted(draw(st.lists(st.integers(0, nnz), min_size=max(major - 1, 0),
                                max_size=max(major - 1, 0))))
    indptr = np.array([0] + cuts + [nnz] if major else [0], dtype=np.int64)
    if major == 0:
        nnz = 0
    idx = np.array(draw(st.lists(st.integers(0, max(minor - 1, 0)), min_size=nnz, max_size=nnz)),
                   dtype=np.int64)
    if minor == 0 and nnz:
        indptr = np.zeros(major + 1, dtype=np.int64)
        idx = idx[:0]
        nnz = 0
    data = np.array(draw(values(nnz)), dtype=np.float64)
    ddt = draw(st.sampled_from(DATA_DTYPES)) if mode == "dtype" else draw(
        st.sampled_from([np.float64, np.float32]))
    idt = draw(st.sampled_from(INDEX_DTYPES)) if mode == "dtype" else draw(
        st.sampled_from([d for d in INDEX_DTYPES if np.dtype(d).kind in "iu"]))
    valid = mode in ("valid", "dtype")
    if mode == "oor" and nnz:
        idx[draw(st.integers(0, nnz - 1))] = minor + draw(st.integers(0, 3))
    elif mode == "neg" and nnz:
        idx[draw(st.integers(0, nnz - 1))] = -draw(st.integers(1, 3))
    elif mode == "ptr_dec" and major >= 2 and nnz:
        i = draw(st.integers(1, major - 1))
        indptr[i] = indptr[i + 1] + 1
    elif mode == "ptr_len":
        indptr = indptr[:-1] if draw(st.booleans()) else np.r_[indptr, nnz]
    elif mode == "ptr_start" and major:
        indptr = indptr + 1
    elif mode == "ptr_end":
        indptr[-1] += draw(st.integers(1, 3))
    else:
        valid = True
    with np.errstate(all="ignore"):
        try:
            data_c = data.astype(ddt)
        except (TypeError, ValueError):
            data_c = data
    desc = dict(fmt=fmt, mode=mode, shape=(n_rows, n_cols), indptr=indptr.tolist(),
                indices=idx.tolist(),
                data=(data_c.astype(np.float64) if data_c.dtype.kind == "f" and data_c.dtype.itemsize >= 4
                      else data).tolist(),
                ddt=np.dtype(ddt).name, idt=np.dtype(idt).name)
    if fmt == "coo":
        rows = np.repeat(np.arange(major), np.diff(indptr)) if valid else np.zeros(len(idx), int)
        if mode in ("ptr_dec", "ptr_len", "ptr_start", "ptr_end") and len(rows):
            rows[0] = n_rows + 1
            valid = False
        m = sp.coo_matrix((n_rows, n_cols), dtype=np.float64)
        m.row, m.col, m.data = rows.astype(idt), idx.astype(idt), data_c
        return desc, m, valid and mode != "dtype"
    cls = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "csr_array": sp.csr_array}[fmt]
    m = cls((n_rows, n_cols), dtype=np.float64)
    m.indptr = indptr.astype(idt if np.dtype(idt).kind in "iu" else np.int64)
    m.indices = idx.astype(idt)
    m.data = data_c
    sane_dtype = np.dtype(ddt) in (np.dtype(np.float64), np.dtype(np.float32))
    return desc, m, valid and mode != "dtype" and sane_dtype


@st.composite
def dense_matrix(draw):
    n_rows = draw(st.integers(0, 5).map(lambda v: (v + 1) % 6))
    n_cols = draw(st.integers(0, 5).map(lambda v: (v + 1) % 6))
    flat = draw(values(n_rows * n_cols))
    kind = draw(st.sampled_from(["f64", "f32", "object", "list", "f16", "bool", "int", "str"]))
    D = np.array(flat, dtype=np.float64).reshape(n_rows, n_cols)
    with np.errstate(all="ignore"):
        X = {"f64": lambda: D, "f32": lambda: D.astype(np.float32),
             "object": lambda: D.astype(object), "list": lambda: D.tolist(),
             "f16": lambda: D.astype(np.float16), "bool": lambda: D != 0,
             "int": lambda: np.nan_to_num(D).clip(-1e9, 1e9).astype(np.int64),
             "str": lambda: D.astype(str)}[kind]()
    return dict(kind="dense-" + kind, shape=(n_rows, n_cols), data=flat), X, False


def y_for(draw, n, classifier):
    mode = "good" if draw(st.integers(0, 99)) < 80 else draw(st.sampled_from(
        ["len", "nan", "huge", "2d", "none", "str", "one", "three"]))
    n_ = n + draw(st.sampled_from([-1, 1])) if mode == "len" and n else n
    if classifier:
        lab = draw(st.sampled_from([(0, 1), (-1, 1), (1, 2), ("a", "b"), (False, True)]))
        bits = draw(st.lists(st.booleans(), min_size=n_, max_size=n_))
        y = np.array([lab[int(b)] for b in bits], dtype=object if isinstance(lab[0], str) else None)
        if mode == "one":
            y = np.array([lab[0]] * n_)
        elif mode == "three":
            y = np.arange(n_) % 3
        elif mode == "nan":
            y = np.where(np.array(bits, dtype=bool), 1.0, np.nan) if n_ else np.array([np.nan])
    else:
        y = np.array(draw(values(n_)) if mode in ("nan", "huge") else
                     draw(st.lists(st.floats(-5, 5), min_size=n_, max_size=n_)), dtype=np.float64)
        if mode == "huge" and n_:
            y[0] = 1e35
        if mode == "str":
            y = np.array(["x"] * n_)
    if mode == "2d":
        y = np.stack([y, y], axis=1) if n_ else np.zeros((0, 2))
    if mode == "none":
        y = None
    ok = mode == "good" and y is not None and (not classifier or len(set(np.asarray(y).tolist())) == 2)
    return y, ok


def weights_for(draw, n):
    mode = draw(st.sampled_from(["none", "ones", "random", "huge", "tiny", "scalar"])) if draw(
        st.integers(0, 99)) < 85 else draw(st.sampled_from(["neg", "zero", "nan", "len"]))
    if mode == "none":
        return None, True
    if mode == "scalar":
        return 2.0, True
    if mode == "len":
        return np.ones(n + 1), False
    base = np.array(draw(st.lists(st.floats(0.0, 4.0), min_size=n, max_size=n)))
    sw = {"ones": np.ones(n), "random": base, "neg": -np.ones(n), "zero": np.zeros(n),
          "nan": np.full(n, np.nan), "huge": np.full(n, 1e300), "tiny": np.full(n, 1e-300)}[mode]
    ok = mode in ("ones", "huge", "tiny") or (mode == "random" and (n == 0 or base.max() > 0))
    return sw, ok


BAD_PARAM = [dict(n_factors=0), dict(learning_rate=-1.0), dict(learning_rate=float("nan")),
             dict(max_iter=0), dict(batch_size=0), dict(loss="nope"), dict(solver="nope"),
             dict(device="tpu"), dict(n_factors=2.5), dict(dtype=np.int32),
             dict(l2_reg_v=-1.0), dict(on_divergence="x"), dict(validation_fraction=1.5),
             dict(max_iter=2**70), dict(batch_size=2**64), dict(n_jobs=0), dict(n_jobs=1.5),
             dict(n_jobs="2"), dict(init_std=1e39), dict(init_std=-1.0),
             dict(learning_rate=Fraction(1, 3) * 1j)]


def params_for(draw):
    p = dict(n_factors=draw(st.integers(1, 4)), max_iter=1, random_state=0,
             batch_size=draw(st.sampled_from([1, 3, 256])),
             solver=draw(st.sampled_from(["adam", "adamw", "sgd", "mcmc", "als"])),
             dtype=draw(st.sampled_from([np.float32, np.float64])),
             learning_rate=draw(st.sampled_from([0.01, 0.3, 1e3, 1e6, 1e30, Fraction(1, 100)])),
             init_std=draw(st.sampled_from([0.01, 0.01, 1.0, 1e3, 1e-45])),
             on_divergence=draw(st.sampled_from(["raise", "warn"])),
             early_stopping=draw(st.sampled_from([False, False, True])))
    good = True
    if draw(st.integers(0, 99)) >= 90:
        p.update(draw(st.sampled_from(BAD_PARAM)))
        good = False
    return p, good


def check_finite_model(m):
    assert np.all(np.isfinite(m._state.P)), "non-finite parameters after fit"
    assert np.all(np.isfinite(m._state.bias_state)), "non-finite w0 after fit"


def _quietly_allowing(method, *args):
    """method(*args) with warnings silenced; an ALLOWED error is an accepted outcome."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            method(*args)
    except ALLOWED:
        pass


def call_predict(m, X, classifier):
    try:
        out = m._decision(X)
    except ALLOWED as e:
        return e
    assert np.all(np.isfinite(out)), "non-finite prediction returned"
    if classifier:
        m.predict(X)
        if m.loss == "logistic":
            pr = m.predict_proba(X)
            assert np.all((pr >= 0) & (pr <= 1)), "probability outside [0, 1]"
    return out


def dense_of(desc):
    """The matrix the user meant (duplicates summed), from a valid description."""
    n_rows, n_cols = desc["shape"]
    D = np.zeros((n_rows, n_cols))
    indptr = np.asarray(desc["indptr"])
    data = np.asarray(desc["data"], dtype=np.float64)
    csc = desc["fmt"] == "csc"
    for r in range(len(indptr) - 1):
        for p in range(indptr[r], indptr[r + 1]):
            i, j = (desc["indices"][p], r) if csc else (r, desc["indices"][p])
            D[i, j] += data[p]
    return D


def run_model_case(draw):
    classifier = draw(st.booleans())
    desc, X, valid = draw(st.one_of(raw_matrix(), raw_matrix(), dense_matrix()))
    n = X.shape[0] if hasattr(X, "shape") else len(X)
    y, y_ok = y_for(draw, n, classifier)
    sw, sw_ok = weights_for(draw, n)
    params, p_ok = params_for(draw)
    if classifier:
        params["loss"] = draw(st.sampled_from(["logistic", "hinge"])) if p_ok else params.get("loss", "logistic")
        if params["solver"] in ("mcmc", "als"):  # the classifier's Bayesian FM is probit
            params.update(solver="mcmc", loss="logistic")
    cls = FMClassifier if classifier else FMRegressor
    desc.update(estimator=cls.__name__, y_mode=str(y)[:200], sw=str(sw)[:100],
                params={k: str(v) for k, v in params.items()})
    STATE["last"] = desc
    m = cls(**params)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(X, y, sample_weight=sw)
        fitted = True
    except MemoryError:
        return "memory"
    except ALLOWED as e:
        fitted = isinstance(e, DivergenceError)
        if fitted:
            check_finite_model(m)
        # a clean, valid problem must not be rejected (divergence aside)
        vals = np.asarray(desc.get("data", []), dtype=np.float64)
        finite = valid and bool(np.all(np.abs(vals) < 1e6))
        if (finite and y_ok and sw_ok and p_ok and min(X.shape) > 0
                and not isinstance(e, DivergenceError) and not params["early_stopping"]):
            raise AssertionError(f"valid input rejected: {type(e).__name__}: {e}")
        if not fitted:
            return "rejected: " + str(e)[:30]
    check_finite_model(m)
    # predict on the same input and on a second adversarial matrix
    out = call_predict(m, X, classifier)
    if valid and not isinstance(out, Exception) and X.shape[1] == m.n_features_in_:
        D = dense_of(desc)
        if np.all(np.isfinite(D)) and np.abs(D).max(initial=0) < 1e6:
            ref = m._decision(D)
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * (1 + np.abs(ref).max(initial=0)))
    _, X2, _ = draw(st.one_of(raw_matrix(), dense_matrix()))
    call_predict(m, X2, classifier)
    n2 = X2.shape[0] if hasattr(X2, "shape") else len(X2)
    _quietly_allowing(m.score, X2, y_for(draw, n2, classifier)[0])
    if draw(st.booleans()):
        _quietly_allowing(m.partial_fit, X2, y_for(draw, n2, classifier)[0])
        check_finite_model(m)
    return "fitted"


_MODEL_BYTES = {}


def model_bytes():
    if not _MODEL_BYTES:
        rng = np.random.default_rng(0)
        X = sp.random(30, 5, density=0.5, format="csr", random_state=0)
        for name, est, y in (("reg", FMRegressor(n_factors=2, max_iter=1), rng.normal(size=30)),
                             ("clf", FMClassifier(n_factors=2, max_iter=1), np.arange(30) % 2 == 0)):
            with tempfile.TemporaryDirectory() as d:
                est.fit(X, y).save(os.path.join(d, "m.npz"))
                with open(os.path.join(d, "m.npz"), "rb") as fh:
                    _MODEL_BYTES[name] = fh.read()
    return _MODEL_BYTES


def run_load_case(draw, folder):
    raw = bytearray(model_bytes()[draw(st.sampled_from(["reg", "clf"]))])
    how = draw(st.sampled_from(["flip", "truncate", "splice"]))
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    elif how == "truncate":
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    else:
        a = draw(st.integers(0, len(raw)))
        raw[a:a] = draw(st.binary(min_size=1, max_size=40))
    STATE["last"] = dict(kind="load", how=how, size=len(raw))
    path = os.path.join(folder, "m.npz")
    with open(path, "wb") as fh:
        fh.write(bytes(raw))
    try:
        m = fmnumba.load(path)
    except fmnumba.ModelFileError:  # every rejected file, and only such files
        return "load-rejected"
    check_finite_model(m)
    return "load-ok"


# --- model metadata, special paths, labels and text inputs ---------------------

RSS_GROWTH_LIMIT = 1 << 30  # bytes a file case may add to the process's peak memory
JUNK = [2**64, 2**63, 10**20, -1, 0, 1, True, False, None, 1.5, float("nan"), float("inf"),
        -1e308, "", "<U999999999", "(99999999,)f8", "|O", "V99999999", "M8[as]", "float16",
        [], [0] * 50, [[[[]]]], {}, {"a": 1}, ["int", 2**70], ["numpy", "<U99999999", "x"]]


SIZE_KEYS = [("n_features",), ("n_factors",), ("classes_dtype",), ("t",), ("n_iter",),
             ("params", "n_factors"), ("params", "batch_size"), ("params", "max_iter"),
             ("rng", "pos")]
SIZE_TEXTS = [f"<U{10**e}" for e in range(2, 13)] + [f"({10**e},)f8" for e in range(3, 10)] + [
    "|S999999999", "<M8[999999999s]", "V" + "9" * 12]


def _max_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _meta_paths(meta, prefix=()):
    """Every (key path) of the JSON metadata, nested dicts included."""
    for k, v in meta.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _meta_paths(v, prefix + (k,))


def _load_checked(path, X=None):
    """load(path): a ModelFileError, or a model that predicts finite values."""
    try:
        m = fmnumba.load(path)
    except fmnumba.ModelFileError:
        return "rejected"
    check_finite_model(m)
    if X is not None:
        out = m._decision(X[:, :m.n_features_in_]) if X.shape[1] >= m.n_features_in_ else None
        assert out is None or np.all(np.isfinite(out)), "loaded model predicts non-finite"
    return "ok"


def run_meta_case(draw, folder):
    """A valid model file whose JSON metadata (or an array header) is mutated."""
    which = draw(st.sampled_from(["reg", "clf"]))
    with np.load(_model_file(which, folder)) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    paths = sorted(_meta_paths(meta))
    changes = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):  # a size the file declares
            key = draw(st.sampled_from([k for k in SIZE_KEYS if k in paths]))
            value = draw(st.one_of(st.integers(0, 2**66), st.sampled_from(SIZE_TEXTS)))
        else:
            key = draw(st.sampled_from(paths))
            value = draw(st.one_of(st.sampled_from(JUNK), st.integers(-2**70, 2**70),
                                   st.text(max_size=12), st.floats()))
        node = meta
        for k in key[:-1]:
            node = node[k] if isinstance(node.get(k), dict) else {}
        node[key[-1]] = value
        changes.append((".".join(key), repr(value)[:60]))
    if draw(st.integers(0, 4)) == 0:  # an array declaring a shape the file does not hold
        name = draw(st.sampled_from(sorted(k for k in arrays if k != "meta")))
        arrays[name] = np.zeros((draw(st.integers(0, 3)),) * draw(st.integers(0, 3)),
                                dtype=draw(st.sampled_from([np.float32, np.float64,
                                                            np.uint32, np.int8])))
        changes.append((name, "resized"))
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    STATE["last"] = dict(kind="meta", estimator=which, changes=changes)
    path = os.path.join(folder, "meta.npz")
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    before = _max_rss()
    result = _load_checked(path, sp.random(4, 5, density=0.5, format="csr", random_state=0))
    assert _max_rss() - before < RSS_GROWTH_LIMIT, "load grew the process past the bound"
    return "meta-" + result


def _model_file(which, folder):
    path = os.path.join(folder, f"good-{which}.npz")
    if not os.path.exists(path):
        with open(path, "wb") as fh:
            fh.write(model_bytes()[which])
    return path


def _special_path(draw, folder):
    """(description, path) of something that is not a regular model or data file."""
    kind = draw(st.sampled_from(["/dev/null", "/dev/zero", "/dev/urandom", "fifo", "dir",
                                 "dangling", "link-dir", "link-dev", "missing", "empty",
                                 "socket", "text"]))
    base = os.path.join(folder, "special")
    if kind.startswith("/dev/"):
        return kind, kind
    if kind == "fifo":
        os.mkfifo(base)
    elif kind == "dir":
        os.makedirs(base, exist_ok=True)
    elif kind == "dangling":
        os.symlink(os.path.join(folder, "nowhere"), base)
    elif kind == "link-dir":
        os.symlink(folder, base)
    elif kind == "link-dev":
        os.symlink("/dev/zero", base)
    elif kind == "empty":
        open(base, "wb").close()
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(base)
        s.close()
    elif kind == "text":
        with open(base, "w") as fh:
            fh.write(draw(st.text(max_size=40)))
    return kind, base


def run_path_case(draw, folder):
    folder = tempfile.mkdtemp(dir=folder)
    try:
        return _path_case(draw, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _path_case(draw, folder):
    kind, path = _special_path(draw, folder)
    call = draw(st.sampled_from(["load", "read_data", "detect_format", "save"]))
    STATE["last"] = dict(kind="path", path=kind, call=call)
    before = os.stat(path) if os.path.exists(path) else None
    t0 = time.perf_counter()
    try:
        if call == "load":
            try:
                fmnumba.load(path)
            except fmnumba.ModelFileError:
                pass
            except (FileNotFoundError, PermissionError) as e:
                assert kind in ("missing", "dangling"), f"load raised {e!r} for {kind}"
        elif call == "save":
            m = FMRegressor(n_factors=2, max_iter=1).fit(np.eye(3), np.arange(3.0))
            try:
                m.save(path)
            except ValueError:
                assert before is not None and not stat.S_ISREG(before.st_mode)
            after = os.stat(path)
            if before is not None and not stat.S_ISREG(before.st_mode):
                assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), \
                    "save replaced a non-regular file"
            elif kind != "missing":
                assert stat.S_ISREG(after.st_mode)
            if kind == "dangling":
                assert os.path.islink(path), "save replaced the symlink"
                os.unlink(os.path.realpath(path))
        else:
            try:
                getattr(readers, call)(path)
            except (ValueError, OSError):
                pass
    finally:
        if kind == "missing" and os.path.exists(path):
            os.unlink(path)
    assert time.perf_counter() - t0 < 30, f"{call} on {kind} took too long"
    return "path-" + call


_LABEL_KINDS = {
    "obj-int": lambda a, b: np.array([a, b], dtype=object),
    "obj-npint": lambda a, b: np.array([np.int64(a), np.int64(b)], dtype=object),
    "obj-mixed": lambda a, b: np.array([a, float(b)], dtype=object),
    "int64": lambda a, b: np.array([a, b], dtype=np.int64),
    "uint64": lambda a, b: np.array([abs(a), abs(b)], dtype=np.uint64),
    "float": lambda a, b: np.array([a, b], dtype=np.float64),
    "str": lambda a, b: np.array([f"é{a}", f"{b}\u2603"]),
    "obj-str": lambda a, b: np.array([str(a), str(b)], dtype=object),
    "bool": lambda a, b: np.array([a % 2 == 0, a % 2 == 1]),
    "dt64": lambda a, b: np.array([a, b], dtype="datetime64[s]"),
    "dt64-ns": lambda a, b: np.array([a, b], dtype="datetime64[ns]"),
    "td64": lambda a, b: np.array([a, b], dtype="timedelta64[ms]"),
    "obj-datetime": lambda a, b: np.array([datetime.datetime(2000, 1, 1) + datetime.timedelta(
        seconds=a % 10**8), datetime.datetime(1990, 5, 5) + datetime.timedelta(
        microseconds=b % 10**9)], dtype=object),
    "obj-date": lambda a, b: np.array([datetime.date(2000, 1, 1) + datetime.timedelta(
        days=a % 10**5), datetime.date(1800, 1, 1)], dtype=object),
    "obj-timedelta": lambda a, b: np.array([datetime.timedelta(seconds=a % 10**8),
                                            datetime.timedelta(days=-1)], dtype=object),
}


def run_label_case(draw, folder):
    kind = draw(st.sampled_from(sorted(_LABEL_KINDS)))
    a = draw(st.integers(-2**62, 2**62))
    b = draw(st.integers(-2**62, 2**62).filter(lambda v: v != a))
    pair = _LABEL_KINDS[kind](a, b)
    n = 12
    pick = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)) + [False, True])
    y = pair[pick.astype(int)]
    STATE["last"] = dict(kind="labels", labels=kind, pair=repr(pair)[:200])
    X = sp.random(n + 2, 3, density=0.6, format="csr", random_state=0)
    try:
        m = FMClassifier(n_factors=2, max_iter=1, random_state=0).fit(X, y)
    except (ValueError, TypeError):
        return "labels-fit-rejected"
    path = os.path.join(folder, "labels.npz")
    try:
        m.save(path)
    except TypeError:
        return "labels-save-refused"
    m2 = fmnumba.load(path)
    assert same_labels(m2.classes_, m.classes_), f"classes {m.classes_!r} -> {m2.classes_!r}"
    p, p2 = m.predict(X), m2.predict(X)
    assert p.dtype == p2.dtype and all(type(u) is type(v) and u == v for u, v in zip(p, p2)), \
        "loaded model predicts other labels"
    return "labels-ok"


@st.composite
def data_text(draw):
    fmt = draw(st.sampled_from(["libsvm", "libffm", "ratings"]))
    n = draw(st.integers(1, 40))
    rows = []
    for _ in range(n):
        label = draw(st.sampled_from(["0", "1", "-1", "2.5"]))
        k = draw(st.integers(0, 4))
        if fmt == "libsvm":
            toks = [f"{draw(st.integers(0, 9))}:{draw(st.integers(-3, 3))}" for _ in range(k)]
        elif fmt == "libffm":
            toks = [f"{draw(st.integers(0, 3))}:{draw(st.integers(0, 9))}:1" for _ in range(k)]
        else:
            rows.append(f"u{draw(st.integers(0, 5))}\t{draw(st.integers(0, 5))}\t{label}")
            continue
        rows.append(" ".join([label] + toks))
    if draw(st.integers(0, 9)) == 0:  # a malformed line somewhere
        rows.insert(draw(st.integers(0, len(rows))), draw(st.text(max_size=20)))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    return eol.join(rows) + eol


def _read(path):
    try:
        d = readers.read_data(path)
        return ("ok", d.X.shape, d.X.toarray().tolist(), d.y.tolist())
    except ValueError as e:
        return ("error", type(e).__name__)


def run_text_case(draw, folder):
    text = draw(data_text())
    bom = draw(st.booleans())
    pack = draw(st.sampled_from(["plain", "plain", "gzip", "bz2", "xz", "gzip-truncated"]))
    pipe = draw(st.booleans())
    STATE["last"] = dict(kind="text", text=text[:500], bom=bom, pack=pack, pipe=pipe)
    plain = os.path.join(folder, "plain.txt")
    with open(plain, "w", newline="") as fh:
        fh.write(text)
    ref = _read(plain)
    raw = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    if pack.startswith("gzip"):
        raw = gzip.compress(raw)
        if pack == "gzip-truncated":
            raw = raw[:max(2, len(raw) // 2)]
    elif pack == "bz2":
        raw = bz2.compress(raw)
    elif pack == "xz":
        raw = lzma.compress(raw)
    if pipe:
        path, r, t = pipe_of(raw)
        try:
            got = _read(path)
        finally:
            os.close(r)
            t.join()
    else:
        path = os.path.join(folder, "packed.dat")
        with open(path, "wb") as fh:
            fh.write(raw)
        got = _read(path)
    if pack == "gzip-truncated":
        assert got[0] == "error", "a truncated gzip file was read"
        return "text-rejected"
    assert got == ref, f"read differently than the plain file: {got[:2]} vs {ref[:2]}"
    return "text-" + ref[0]


DASK_ONE_IN = 10  # of the model cases: a Dask fit costs a task graph and a round trip


def _hashed(draw, n):
    """A uniform draw in range(n), through a seeded generator: hypothesis
    favours small and boundary values, so a range drawn directly would
    starve some branches."""
    return random.Random(draw(st.integers(0, 2**32 - 1))).randrange(n)


_DASK = {}


def dask_client():
    """One real LocalCluster (a worker process on 127.0.0.1) for the whole run."""
    if not _DASK:
        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None,
                               memory_limit=2 << 30)
        _DASK.update(cluster=cluster, client=Client(cluster))
    return _DASK["client"]


def close_dask():
    if _DASK:
        _DASK["client"].close()
        _DASK["cluster"].close()


def _as_dask(draw, a, rows):
    """a as a dask array of `rows`-row chunks (most of the time), else a
    itself; None when dask's own from_array cannot wrap it (then it is not
    an input anyone can give fmnumba)."""
    import dask.array as da
    if a is None or not hasattr(a, "shape") or draw(st.integers(0, 19)) == 0:
        return a
    chunks = (rows,) + (-1,) * (a.ndim - 1) if a.ndim else -1
    try:
        return da.from_array(a, chunks=chunks, asarray=False)
    except Exception:  # noqa: BLE001 - dask (or scipy) refusing the object itself
        return None


def run_dask_case(draw):
    """DaskFMRegressor / DaskFMClassifier fit and predict on a real cluster."""
    from fmnumba.dask import DaskFMClassifier, DaskFMRegressor
    classifier = draw(st.booleans())
    desc, X, valid = draw(st.one_of(raw_matrix(), dense_matrix()))
    n = X.shape[0] if hasattr(X, "shape") else len(X)
    y, y_ok = y_for(draw, n, classifier)
    sw, sw_ok = weights_for(draw, n)
    params = dict(n_factors=draw(st.integers(1, 3)), max_iter=1, random_state=0,
                  batch_size=draw(st.sampled_from([1, 4, 256])),
                  mode=draw(st.sampled_from(["sync", "local"])),
                  solver=draw(st.sampled_from(["adam", "adamw", "adam", "adam", "sgd", "mcmc"])),
                  dtype=draw(st.sampled_from([np.float32, np.float64])),
                  learning_rate=draw(st.sampled_from([0.01, 0.3, 1e6, 1e30])),
                  client=dask_client())
    p_ok = params["solver"] in ("adam", "adamw")
    if draw(st.integers(0, 99)) >= 85:
        params.update(draw(st.sampled_from([d for d in BAD_PARAM if "device" not in d])))
        p_ok = False
    rows = draw(st.integers(1, max(n, 1)))
    other = rows if draw(st.integers(0, 7)) else draw(st.integers(1, max(n, 1)))
    Xd = _as_dask(draw, X, rows)
    yd = _as_dask(draw, np.asarray(y) if y is not None else y, other)
    swd = _as_dask(draw, sw, rows) if isinstance(sw, np.ndarray) else sw
    if Xd is None or (y is not None and yd is None):
        return "dask-unwrappable"
    cls = DaskFMClassifier if classifier else DaskFMRegressor
    STATE["last"] = dict(desc, kind="dask", estimator=cls.__name__, y_mode=str(y)[:200],
                         sw=str(sw)[:100], params={k: str(v) for k, v in params.items()},
                         X_type=type(Xd).__name__)
    m = cls(**params)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(Xd, yd, sample_weight=swd)
    except MemoryError:
        return "dask-memory"
    except ALLOWED as e:
        if isinstance(e, DivergenceError):
            check_finite_model(m)
        vals = np.asarray(desc.get("data", []), dtype=np.float64)
        wrapped = (Xd is not X and yd is not y and other == rows
                   and (not isinstance(sw, np.ndarray) or swd is not sw))
        clean = (valid and bool(np.all(np.abs(vals) < 1e6)) and y_ok and sw_ok and p_ok
                 and wrapped and desc.get("fmt") != "coo" and min(X.shape) > 0
                 and params["learning_rate"] < 1)
        if clean and not isinstance(e, DivergenceError):
            raise AssertionError(f"valid input rejected: {type(e).__name__}: {e}")
        return "dask-rejected"
    check_finite_model(m)
    try:
        out = np.asarray(m.predict(Xd).compute() if hasattr(Xd, "compute") else m.predict(Xd))
    except ALLOWED:
        return "dask-fitted"
    if not classifier:
        assert np.all(np.isfinite(out)), "non-finite prediction returned"
    return "dask-fitted"


# every example also runs one of these
FILE_CASES = [run_meta_case, run_path_case, run_label_case, run_text_case]


_REC = {}


def rec_fixture():
    """A small fitted (model, encoder, rated pairs) for recommend cases."""
    if not _REC:
        from fmnumba.attributes import table_from_columns
        from fmnumba.readers import RatingEncoder
        rng = np.random.default_rng(1)
        users = rng.integers(0, 8, 60).tolist()
        items = [f"i{j}" for j in rng.integers(0, 6, 60)]
        t = table_from_columns([f"i{j}" for j in range(6)], {"g": ["a|b", "b"] * 3})
        enc = RatingEncoder(item_features=t).fit(users, items)
        model = FMRegressor(n_factors=2, max_iter=1).fit(enc.transform(users, items),
                                                         rng.normal(size=60))
        _REC.update(model=model, enc=enc, pairs=(users, items))
    return _REC["model"], _REC["enc"], _REC["pairs"]


ODD_IDS = [0, 1, 7, 8, -1, "0", "i1", None, 1.0, np.nan, True, (1,), [1], b"1", np.int64(3)]


def run_recommend_case(draw):
    model, enc, pairs = rec_fixture()
    # each argument is valid more often than not, so accepted calls get checked too
    users = draw(st.one_of(st.lists(st.integers(0, 7), min_size=1, max_size=5),
                           st.lists(st.integers(0, 7), min_size=1, max_size=5),
                           st.lists(st.sampled_from(ODD_IDS), max_size=5),
                           st.sampled_from([None, 3, "x", np.zeros((2, 2)), []])))
    n = draw(st.one_of(st.integers(1, 3), st.integers(-2, 8),
                       st.sampled_from([0, 6, 7, 10**12, 2.0, 2.5, True, None, "3",
                                        np.int32(2)])))
    exclude = draw(st.sampled_from([None, None, "pairs", "dict", "matrix", "bad-matrix",
                                    "short", "str", {0: "i1"}, {0: [None, "zz"]}]))
    if exclude == "pairs":
        exclude = pairs
    elif exclude == "dict":
        exclude = {u: [i] for u, i in zip(*pairs)}
    elif exclude in ("matrix", "bad-matrix"):
        shape = (enc.n_users_, enc.n_items_) if exclude == "matrix" else (2, 3)
        exclude = sp.random(*shape, density=0.5, format="csr", random_state=0)
    elif exclude == "short":
        exclude = ([0, 1], ["i1"])
    items = draw(st.sampled_from([None, None, None, ["i0", "i1", "i2"], ["i0", "zz"],
                                  ["i0", "i0"], [], "i1", [None]]))
    context = draw(st.sampled_from([None, None, None, "zeros", "nan", "short", "on-encoder"]))
    if context is not None:
        c = np.zeros(model.n_features_in_ if context != "short" else 2)
        if context == "nan":
            c[-1] = np.nan
        elif context == "on-encoder":
            c[0] = 1.0
        context = c
    STATE["last"] = dict(kind="recommend", users=repr(users)[:200], n=repr(n),
                         exclude=repr(exclude)[:200], items=repr(items),
                         context=repr(context)[:100])
    try:
        rec = fmnumba.recommend(model, enc, users, n=n, exclude=exclude, items=items,
                                context=context)
    except ALLOWED:
        return "recommend-rejected"
    assert rec.scores.shape == rec.items.shape == (len(rec.users), int(n))
    assert np.all(np.isfinite(rec.scores))
    assert np.all(np.diff(rec.scores, axis=1) <= 1e-9)
    return "recommend-ok"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--last", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="fmnumba-fuzz-")
    np.seterr(all="ignore")
    _source.PIPE_WAIT_S = 0.01  # a FIFO without a writer is refused without the long wait

    # compile (or load from the disk cache) outside the timed loop
    Xw = sp.random(20, 4, density=0.5, format="csr", random_state=0)
    for dt in (np.float32, np.float64):
        for solver in ("adam", "adamw", "sgd", "mcmc", "als"):
            FMRegressor(max_iter=1, dtype=dt, solver=solver).fit(Xw, np.ones(20)).predict(Xw)
        FMClassifier(max_iter=1, dtype=dt, solver="mcmc").fit(Xw, np.arange(20) % 2).predict(Xw)
    model_bytes()
    m, enc, _ = rec_fixture()
    fmnumba.recommend(m, enc, [0], n=1)

    t0 = time.perf_counter()
    last_fh = open(args.last, "w") if args.last else None

    @settings(max_examples=args.examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], report_multiple_bugs=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def case(data):
        STATE["cases"] += 1
        draw = data.draw
        try:
            pick = draw(st.integers(0, 19))
            if pick < 2:
                kind = run_load_case(draw, folder)
            elif pick == 2:
                kind = run_recommend_case(draw)
            elif _hashed(draw, DASK_ONE_IN) == 0:
                kind = run_dask_case(draw)
            else:
                kind = run_model_case(draw)
            STATE["kinds"][kind] = STATE["kinds"].get(kind, 0) + 1
            # and one file case
            extra = FILE_CASES[_hashed(draw, len(FILE_CASES))]
            kind = extra(draw, folder)
            STATE["kinds"][kind] = STATE["kinds"].get(kind, 0) + 1
        except Exception as e:  # noqa: BLE001 - every unexpected error is a finding
            STATE["failures"].append({"case": STATE["last"], "error": f"{type(e).__name__}: {e}",
                                      "traceback": traceback.format_exc()[-3000:]})
        finally:
            if last_fh is not None:
                last_fh.seek(0)
                last_fh.write(json.dumps(STATE["last"], default=str)[:20000])
                last_fh.truncate()
                last_fh.flush()

    try:
        case()
    finally:
        close_dask()
    result = {"cases": STATE["cases"], "failures": STATE["failures"][:20],
              "n_failures": len(STATE["failures"]), "kinds": STATE["kinds"],
              "seconds": time.perf_counter() - t0}
    with open(args.out, "w") as fh:
        json.dump(result, fh, default=str, indent=1)
    return 1 if STATE["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
