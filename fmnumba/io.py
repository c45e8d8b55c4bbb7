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
import numpy as np

from . import _validation as validation
from ._model_file import (CLASS_KINDS, FORMAT, FORMAT_VERSION, ModelFileError, invalid,
                          read_model_file, save_model)
from .estimators import FMClassifier, FMRegressor
from .readers import (  # noqa: F401  (aliases of fmnumba.readers, see the docstring)
    Dataset, RatingEncoder, detect_format, load_libffm, load_libsvm, load_movielens,
    load_ratings, read_data)
from .training import FMState

__all__ = ["load", "save_model", "ModelFileError", "FORMAT", "FORMAT_VERSION"]

_ESTIMATORS = {"FMRegressor": FMRegressor, "FMClassifier": FMClassifier}
_HISTORY_KEYS = ("train_loss", "val_loss", "time_s")


def _checked_arrays(path, arrays, n, k, dtype, chain=None):
    """The arrays of the file, each of the shape and dtype the metadata says
    and finite (chain: the Gibbs sampler's metadata of a version-2 file)."""
    expect = {"P": ((n, k + 1), dtype), "bstate": ((3,), np.dtype(np.float64))}
    if chain is not None:
        s, h = arrays.get("samples_P"), arrays.get("chain_hyper")
        if s is None or s.ndim != 3 or h is None or h.ndim != 2:
            raise invalid(path, "the posterior samples are missing or malformed")
        f64 = np.dtype(np.float64)
        expect.update(samples_P=((s.shape[0], n, k + 1), dtype),
                      samples_scalars=((2, s.shape[0]), f64),
                      chain_hyper=((2 + 2 * k, h.shape[1]), f64))
    if ("M" in arrays) != ("S" in arrays):
        raise invalid(path, "only one of the Adam moments M, S is present")
    if "M" in arrays:
        expect["M"] = expect["S"] = ((n, k + 1), dtype)
    for name, (shape, dt) in expect.items():
        a = arrays[name]
        if a.shape != shape or a.dtype != dt:
            raise invalid(path, f"array {name} has shape {a.shape} and dtype {a.dtype}, "
                                f"expected {shape} and {dt}")
        if not np.all(np.isfinite(a)):
            raise invalid(path, f"array {name} holds non-finite values")
    if set(arrays) - set(expect):
        raise invalid(path, f"unexpected arrays {sorted(set(arrays) - set(expect))}")
    return arrays


def _estimator(path, cls, meta, k, dtype):
    """cls built from the file's hyperparameters, checked as fit checks them."""
    params = dict(meta["params"])
    params["dtype"] = dtype.type
    unknown = set(params) - set(cls().get_params())
    if unknown:
        raise invalid(path, f"unknown parameters {sorted(unknown)}")
    est = cls(**params)
    if est.groups is not None:
        est.groups = np.asarray(est.groups)
    validation.check_params(est, est._valid_losses)
    if est.n_factors != k:
        raise invalid(path, f"n_factors={est.n_factors} but the factor table has {k} columns")
    return est


def _chain(path, chain, arrays, state, k):
    """The Gibbs sampler's state (kept samples, hyperparameters) of a file."""
    from .mcmc import ChainState
    for key in ("seed", "sweeps"):
        if isinstance(chain.get(key), bool) or not isinstance(chain.get(key), int) \
                or chain[key] < 0:
            raise invalid(path, f"chain {key} must be a non-negative integer")
    alpha = chain.get("alpha")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise invalid(path, "chain alpha must be a positive number")
    h = arrays["chain_hyper"]
    sc = arrays["samples_scalars"]
    if h.shape[1] < 1 or arrays["samples_P"].shape[0] < 1:
        raise invalid(path, "the posterior samples are missing or malformed")
    return ChainState(P=state.P, w0=float(state.bias_state[0]), alpha=float(alpha),
                      mu_w=h[0].copy(), lam_w=h[1].copy(), mu_v=h[2:2 + k].copy(),
                      lam_v=h[2 + k:].copy(), seed=chain["seed"], sweeps=chain["sweeps"],
                      samples_P=np.ascontiguousarray(arrays["samples_P"]),
                      samples_w0=sc[0].copy(), samples_alpha=sc[1].copy())


def _classes(path, meta):
    cdt = np.dtype(meta["classes_dtype"])
    if (cdt.kind not in CLASS_KINDS or not isinstance(meta["classes"], list)
            or len(meta["classes"]) != 2
            or not all(isinstance(c, (bool, int, float, str)) for c in meta["classes"])):
        raise invalid(path, "classes are malformed")
    classes = np.asarray(meta["classes"], dtype=cdt)
    if classes.shape != (2,) or classes[0] == classes[1]:
        raise invalid(path, "classes are malformed")
    return classes


def load(path):
    """Load a model written by `save`; returns a fitted FMRegressor or
    FMClassifier. Raises FileNotFoundError, or ModelFileError for a file
    that is not a valid model file."""
    meta, arrays = read_model_file(path)
    cls = _ESTIMATORS.get(meta.get("estimator"))
    if cls is None:
        raise invalid(path, f"unknown estimator {meta.get('estimator')!r}")
    try:
        dtype = np.dtype({"float32": np.float32, "float64": np.float64}[meta["dtype"]])
        n, k = int(meta["n_features"]), int(meta["n_factors"])
        chain = meta.get("chain")
        arrays = _checked_arrays(path, arrays, n, k, dtype, chain)
        est = _estimator(path, cls, meta, k, dtype)
        for key in ("t", "n_iter"):
            if isinstance(meta[key], bool) or not isinstance(meta[key], int) or meta[key] < 0:
                raise invalid(path, f"{key} must be a non-negative integer")
        history = meta["history"]
        if not isinstance(history, dict) or not all(
                isinstance(history.get(h, []), list) for h in _HISTORY_KEYS):
            raise invalid(path, "history is malformed")
        est._state = FMState(P=np.ascontiguousarray(arrays["P"]),
                             bias_state=arrays["bstate"].copy(), M=arrays.get("M"),
                             S=arrays.get("S"), t=int(meta["t"]))
        if chain is not None:
            est._chain = _chain(path, chain, arrays, est._state, k)
        est.n_features_in_ = n
        est.n_iter_ = int(meta["n_iter"])
        est.history_ = {key: [float(v) for v in history.get(key, [])] for key in _HISTORY_KEYS}
        if "feature_names_in" in meta:
            names = meta["feature_names_in"]
            if (not isinstance(names, list) or len(names) != n
                    or not all(isinstance(c, str) for c in names)):
                raise invalid(path, "feature_names_in is malformed")
            est.feature_names_in_ = np.asarray(names, dtype=object)
        if cls is FMClassifier:
            est.classes_ = _classes(path, meta)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError,
            RecursionError) as e:
        raise invalid(path, f"metadata is incomplete or malformed: {e!r}") from None
    return est
