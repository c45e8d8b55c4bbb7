"""Model files (.npz arrays + JSON metadata, never pickle) and data readers.

A model file is an uncompressed .npz holding the arrays P, bstate (the bias
state [w0, m_w0, s_w0]) and, when
Adam state exists, M and S, plus `meta`: UTF-8 JSON bytes with the format
name and version, fmnumba's version, the estimator class, its
hyperparameters, classes, dtype and fitted counters. `load` reads it with
allow_pickle=False and checks every shape and dtype before building the
estimator, so a crafted file cannot execute code.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

from . import _validation as validation
from .readers import (  # noqa: F401  (the readers' public home is fmnumba.io)
    Dataset, RatingEncoder, detect_format, load_libffm, load_libsvm, load_movielens,
    load_ratings, read_data)

FORMAT = "fmnumba-model"
FORMAT_VERSION = 1
_CLASS_KINDS = {"b", "i", "u", "f", "U"}


def _jsonable(name, value):
    """Plain JSON value for a hyperparameter (NumPy scalars and arrays included)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, list, tuple)):
        return [_jsonable(name, v) for v in np.asarray(value).tolist()]
    raise TypeError(f"save: parameter {name}={value!r} cannot be stored in a model file "
                    "(only numbers, strings, None and arrays of numbers); set it to one "
                    "of those before saving.")


def _jsonable_params(est):
    params = est.get_params()
    params["dtype"] = np.dtype(params["dtype"]).name
    if not (params["random_state"] is None
            or isinstance(params["random_state"], (int, np.integer))):
        params["random_state"] = None
    return {k: _jsonable(k, v) for k, v in params.items()}


def save_model(est, path):
    """Atomically write fitted `est` to `path` (temporary file, then rename)."""
    from sklearn.utils.validation import check_is_fitted

    from . import __version__
    check_is_fitted(est, "_state")
    st = est._state
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fmnumba_version": __version__,
        "estimator": type(est).__name__, "params": _jsonable_params(est),
        "dtype": st.P.dtype.name, "n_features": int(st.P.shape[0]),
        "n_factors": int(st.P.shape[1] - 1), "t": int(st.t), "n_iter": int(est.n_iter_),
        "history": est.history_,
    }
    if hasattr(est, "feature_names_in_"):
        meta["feature_names_in"] = [str(c) for c in est.feature_names_in_]
    if hasattr(est, "classes_"):
        cls = np.asarray(est.classes_)
        if cls.dtype.kind not in _CLASS_KINDS:
            cls = cls.astype(str)
        meta["classes"] = cls.tolist()
        meta["classes_dtype"] = cls.dtype.str
    arrays = {"P": st.P, "bstate": st.bias_state,
              "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    if st.M is not None:
        arrays["M"], arrays["S"] = st.M, st.S
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fmnumba-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_members(path):
    """Read the archive's directory and each array header before loading, so a
    crafted file cannot make load allocate far more than the file holds."""
    size = os.path.getsize(path)
    declared = 0
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > 16:
            raise ValueError(f"{len(infos)} members, a model file has at most 5")
        for info in infos:
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"member {info.filename}: .npy version {version}")
            if dtype.hasobject:
                raise ValueError(f"member {info.filename} holds Python objects (pickle), "
                                 "which fmnumba never writes and never loads")
            declared += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if declared > 1100 * size + (1 << 20):
        raise ValueError(f"its arrays claim {declared} bytes, far more than the file's {size}")


def _bad(path, why):
    return ValueError(f"{path!s}: not a valid fmnumba model file ({why}). "
                      "Re-save the model with fmnumba's save().")


def load(path):
    """Load a model written by `save`; returns a fitted FMRegressor or FMClassifier."""
    from . import estimators
    from .training import FMState
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file.")
    if os.path.isdir(path):
        raise _bad(path, "it is a directory")
    try:
        _check_members(path)
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError,
            KeyError, NotImplementedError, RuntimeError, MemoryError) as e:
        raise _bad(path, f"cannot read it as .npz: {e}") from None
    if "meta" not in arrays or arrays["meta"].dtype != np.uint8 or arrays["meta"].ndim != 1:
        raise _bad(path, "metadata missing")
    try:
        meta = json.loads(arrays["meta"].tobytes().decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _bad(path, f"metadata is not JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(path, "wrong format tag")
    if not isinstance(meta.get("format_version"), int) or meta["format_version"] > FORMAT_VERSION:
        raise _bad(path, f"format version {meta.get('format_version')!r} is newer than this "
                         f"fmnumba reads ({FORMAT_VERSION}); upgrade fmnumba")
    cls = {"FMRegressor": estimators.FMRegressor,
           "FMClassifier": estimators.FMClassifier}.get(meta.get("estimator"))
    if cls is None:
        raise _bad(path, f"unknown estimator {meta.get('estimator')!r}")
    try:
        dtype = np.dtype({"float32": np.float32, "float64": np.float64}[meta["dtype"]])
        n, k = int(meta["n_features"]), int(meta["n_factors"])
        P, b = arrays["P"], arrays["bstate"]
        expect = {"P": ((n, k + 1), dtype), "bstate": ((3,), np.dtype(np.float64))}
        if ("M" in arrays) != ("S" in arrays):
            raise _bad(path, "only one of the Adam moments M, S is present")
        if "M" in arrays:
            expect["M"] = expect["S"] = ((n, k + 1), dtype)
        for name, (shape, dt) in expect.items():
            a = arrays[name]
            if a.shape != shape or a.dtype != dt:
                raise _bad(path, f"array {name} has shape {a.shape} and dtype {a.dtype}, "
                                 f"expected {shape} and {dt}")
            if not np.all(np.isfinite(a)):
                raise _bad(path, f"array {name} holds non-finite values")
        if set(arrays) - {"P", "bstate", "M", "S", "meta"}:
            raise _bad(path, f"unexpected arrays {sorted(set(arrays) - set(expect) - {'meta'})}")
        params = dict(meta["params"])
        params["dtype"] = dtype.type
        valid = cls().get_params()
        unknown = set(params) - set(valid)
        if unknown:
            raise _bad(path, f"unknown parameters {sorted(unknown)}")
        est = cls(**params)
        if est.groups is not None:
            est.groups = np.asarray(est.groups)
        validation.check_params(est, est._valid_losses)
        if est.n_factors != k:
            raise _bad(path, f"n_factors={est.n_factors} but the factor table has {k} columns")
        for key in ("t", "n_iter"):
            if isinstance(meta[key], bool) or not isinstance(meta[key], int) or meta[key] < 0:
                raise _bad(path, f"{key} must be a non-negative integer")
        if not isinstance(meta["history"], dict) or not all(
                isinstance(meta["history"].get(h, []), list)
                for h in ("train_loss", "val_loss", "time_s")):
            raise _bad(path, "history is malformed")
        est._state = FMState(P=np.ascontiguousarray(P), bias_state=b.copy(), M=arrays.get("M"),
                             S=arrays.get("S"), t=int(meta["t"]))
        est.n_features_in_ = n
        est.n_iter_ = int(meta["n_iter"])
        est.history_ = {key: [float(v) for v in meta["history"].get(key, [])]
                        for key in ("train_loss", "val_loss", "time_s")}
        if "feature_names_in" in meta:
            names = meta["feature_names_in"]
            if (not isinstance(names, list) or len(names) != n
                    or not all(isinstance(c, str) for c in names)):
                raise _bad(path, "feature_names_in is malformed")
            est.feature_names_in_ = np.asarray(names, dtype=object)
        if cls is estimators.FMClassifier:
            cdt = np.dtype(meta["classes_dtype"])
            if (cdt.kind not in _CLASS_KINDS or not isinstance(meta["classes"], list)
                    or len(meta["classes"]) != 2
                    or not all(isinstance(c, (bool, int, float, str)) for c in meta["classes"])):
                raise _bad(path, "classes are malformed")
            est.classes_ = np.asarray(meta["classes"], dtype=cdt)
            if est.classes_.shape != (2,) or est.classes_[0] == est.classes_[1]:
                raise _bad(path, "classes are malformed")
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError,
            RecursionError) as e:
        if isinstance(e, ValueError) and "not a valid fmnumba model" in str(e):
            raise
        raise _bad(path, f"metadata is incomplete or malformed: {e!r}") from None
    return est
