"""Model files: :func:`save_model` and :func:`load` (also ``fmnumba.load``
and ``estimator.save``).

The format is described in fmnumba._model_file: an .npz of arrays plus JSON
metadata, never pickle. `load` reads it with allow_pickle=False and checks
every shape and dtype before building the estimator, so a crafted file
cannot execute code; any invalid file raises :class:`ModelFileError` (a
ValueError).

The data readers live in :mod:`fmnumba.readers`; their names
(``load_libsvm``, ``load_libffm``, ``load_ratings``, ``load_movielens``,
``RatingEncoder``, ``read_data``, ``detect_format``, ``Dataset``) stay
importable from here as aliases for code written against earlier versions.
"""
import math

import numpy as np

from . import _validation as validation
from ._model_file import (FORMAT, FORMAT_VERSION, ModelFileError, decode_classes, invalid,
                          read_model_file, same_labels, save_model)
from .estimators import FMClassifier, FMRegressor
from .readers import (  # noqa: F401  (aliases of fmnumba.readers, see the docstring)
    Dataset, RatingEncoder, detect_format, load_libffm, load_libsvm, load_movielens,
    load_ratings, read_data)
from .training import FMState

__all__ = ["load", "save_model", "ModelFileError", "FORMAT", "FORMAT_VERSION"]

_ESTIMATORS = {"FMRegressor": FMRegressor, "FMClassifier": FMClassifier}
_HISTORY_KEYS = ("train_loss", "val_loss", "val_score", "time_s")
_META_KEYS = {"format", "format_version", "fmnumba_version", "estimator", "params", "dtype",
              "n_features", "n_factors", "t", "n_iter", "history", "feature_names_in",
              "classes", "classes_dtype", "rng", "target_range"}
_INT64_MAX = 2**63 - 1
_MT_WORDS = 624


class _Bad(Exception):
    """A field of the file is not what a fit can produce (message: why)."""


def _is_count(v):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _INT64_MAX


def _count(meta, key, lo=0):
    v = meta.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= _INT64_MAX:
        raise _Bad(f"{key} must be an integer in [{lo}, 2**63), got {v!r}")
    return v


def _checked_arrays(arrays, n, k, dtype, has_rng):
    """The arrays of the file, each of the shape and dtype the metadata says,
    finite, with non-negative second moments."""
    expect = {"P": ((n, k + 1), dtype), "bstate": ((3,), np.dtype(np.float64))}
    if ("M" in arrays) != ("S" in arrays):
        raise _Bad("only one of the Adam moments M, S is present")
    if "M" in arrays:
        expect["M"] = expect["S"] = ((n, k + 1), dtype)
    if has_rng:
        expect["rng_keys"] = ((_MT_WORDS,), np.dtype(np.uint32))
    if set(arrays) - set(expect):
        raise _Bad(f"unexpected arrays {sorted(set(arrays) - set(expect))}")
    if set(expect) - set(arrays):
        raise _Bad(f"missing arrays {sorted(set(expect) - set(arrays))}")
    for name, (shape, dt) in expect.items():
        a = arrays[name]
        if a.shape != shape or a.dtype != dt:
            raise _Bad(f"array {name} has shape {a.shape} and dtype {a.dtype}, "
                       f"expected {shape} and {dt}")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise _Bad(f"array {name} holds non-finite values")
    if "S" in arrays and (arrays["S"].min(initial=0) < 0):
        raise _Bad("the Adam second moments S hold negative values")
    if arrays["bstate"][2] < 0:
        raise _Bad("the bias's Adam second moment is negative")
    return arrays


def _estimator(cls, meta, n, k, dtype, names):
    """cls built from the file's hyperparameters, checked as fit checks them."""
    if not isinstance(meta.get("params"), dict):
        raise _Bad("params is not a mapping")
    params = dict(meta["params"])
    if params.get("dtype") != dtype.name:
        raise _Bad(f"params dtype {params.get('dtype')!r} differs from the arrays' {dtype.name}")
    params["dtype"] = dtype.type
    unknown = set(params) - set(cls().get_params())
    if unknown:
        raise _Bad(f"unknown parameters {sorted(unknown)}")
    est = cls(**params)
    if isinstance(est.groups, dict):  # feature-name prefixes -> group ids
        if not all(_is_count(g) for g in est.groups.values()):
            raise _Bad("groups maps a prefix to something other than a group id")
    elif est.groups is not None:
        if not isinstance(est.groups, list):
            raise _Bad("groups is not a list")
        est.groups = np.asarray(est.groups)
    validation.check_params(est, est._valid_losses)
    if est.n_factors != k:
        raise _Bad(f"n_factors={est.n_factors} but the factor table has {k} columns")
    for name in ("l2_reg_w", "l2_reg_v"):
        value = getattr(est, name)
        if isinstance(value, list):
            setattr(est, name, value := np.asarray(value, dtype=np.float64))
        validation.per_feature_l2(name, value, est.groups, n, names)
    return est


def _floats(values, what, allow_nan):
    if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise _Bad(f"history {what} is not a list of numbers")
    out = [float(v) for v in values]
    if not all((allow_nan and math.isnan(v)) or (math.isfinite(v) and v >= 0) for v in out):
        raise _Bad(f"history {what} holds negative or infinite values")
    return out


def _history(meta, n_iter):
    history = meta.get("history")
    if not isinstance(history, dict) or set(history) - set(_HISTORY_KEYS):
        raise _Bad("history is malformed")
    out = {key: _floats(history.get(key, []), key, allow_nan=key != "time_s")
           for key in _HISTORY_KEYS}
    if len(out["train_loss"]) != n_iter or len(out["time_s"]) != n_iter:
        raise _Bad(f"history has {len(out['train_loss'])} train losses and "
                   f"{len(out['time_s'])} times for n_iter={n_iter} epochs")
    if len(out["val_loss"]) > n_iter or len(out["val_score"]) > n_iter:
        raise _Bad("history has more validation losses or scores than epochs")
    if any(b < a for a, b in zip(out["time_s"], out["time_s"][1:])):
        raise _Bad("history time_s decreases")
    return out


def _classes(meta, size):
    try:
        classes = decode_classes(meta.get("classes"), meta.get("classes_dtype"), size)
    except (ValueError, OverflowError, TypeError) as e:
        raise _Bad(f"classes are malformed: {e}") from None
    try:
        ordered = np.unique(classes)
    except TypeError:
        raise _Bad("classes cannot be compared with each other") from None
    if ordered.shape != (2,) or not same_labels(ordered, classes):
        raise _Bad("classes are not two distinct labels in sorted order")
    return classes


def _random_state(meta, keys):
    rng = meta["rng"]
    if not isinstance(rng, dict) or set(rng) != {"pos", "has_gauss", "cached_gaussian"}:
        raise _Bad("rng is malformed")
    pos = _count(rng, "pos")
    has_gauss = _count(rng, "has_gauss")
    cached = rng["cached_gaussian"]
    if (pos > _MT_WORDS or has_gauss > 1 or not isinstance(cached, (int, float))
            or isinstance(cached, bool) or not math.isfinite(cached) or not keys.any()):
        raise _Bad("rng state is not one a Mersenne Twister can be in")
    state = np.random.RandomState()
    state.set_state(("MT19937", keys, pos, has_gauss, float(cached)))
    return state


def _target_range(meta, cls):
    """(lo, hi) of the regressor's training targets, finite and ordered."""
    value = meta["target_range"]
    if (cls is not FMRegressor or not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not all(math.isfinite(v) for v in value) or value[0] > value[1]):
        raise _Bad("target_range is malformed")
    return (float(value[0]), float(value[1]))


def _build(meta, arrays, size):
    unknown = set(meta) - _META_KEYS
    if unknown:
        raise _Bad(f"unknown fields {sorted(unknown)}")
    if not isinstance(meta.get("fmnumba_version"), str):
        raise _Bad("fmnumba_version is not a string")
    cls = _ESTIMATORS.get(meta.get("estimator")) if isinstance(meta.get("estimator"), str) \
        else None
    if cls is None:
        raise _Bad(f"unknown estimator {meta.get('estimator')!r}")
    dtypes = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}
    if not isinstance(meta.get("dtype"), str) or meta["dtype"] not in dtypes:
        raise _Bad(f"dtype {meta.get('dtype')!r} is not float32 or float64")
    dtype = dtypes[meta["dtype"]]
    n, k = _count(meta, "n_features", 1), _count(meta, "n_factors", 1)
    arrays = _checked_arrays(arrays, n, k, dtype, "rng" in meta)
    names = meta.get("feature_names_in")
    if names is not None and (not isinstance(names, list) or len(names) != n
                              or not all(isinstance(c, str) for c in names)):
        raise _Bad("feature_names_in is malformed")
    est = _estimator(cls, meta, n, k, dtype, names)
    t, n_iter = _count(meta, "t"), _count(meta, "n_iter")
    if "M" not in arrays and t:
        raise _Bad(f"Adam step count t={t} without Adam moments")
    history = _history(meta, n_iter)
    if (cls is FMClassifier) != ("classes" in meta) or ("classes" in meta) != (
            "classes_dtype" in meta):
        raise _Bad("classes are missing or present on a regressor")
    classes = _classes(meta, size) if cls is FMClassifier else None
    rng = _random_state(meta, arrays["rng_keys"]) if "rng" in meta else None
    target_range = _target_range(meta, cls) if "target_range" in meta else None

    est._state = FMState(P=np.ascontiguousarray(arrays["P"]),
                         bias_state=arrays["bstate"].copy(), M=arrays.get("M"),
                         S=arrays.get("S"), t=t)
    est.n_features_in_ = n
    est.n_iter_ = n_iter
    est.history_ = history
    if names is not None:
        est.feature_names_in_ = np.asarray(names, dtype=object)
    if classes is not None:
        est.classes_ = classes
    if rng is not None:
        est._rng = rng
    if target_range is not None:
        est.target_range_ = target_range
    return est


def load(path):
    """Load a model written by `save`; returns a fitted FMRegressor or
    FMClassifier, which predicts as the saved one did and continues training
    (partial_fit, warm_start) exactly as it would have. Raises
    FileNotFoundError or PermissionError for a file that cannot be opened, and
    ModelFileError (a ValueError) for anything that is not a valid model file:
    not a regular file, unreadable, foreign, truncated, inconsistent, or
    holding a value no fit produces."""
    meta, arrays, size = read_model_file(path)
    try:
        return _build(meta, arrays, size)
    except _Bad as e:
        raise invalid(path, str(e)) from None
    except ModelFileError:
        raise
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any other failure: the file is not valid
        raise invalid(path, f"metadata is incomplete or malformed: {e!r}") from None
