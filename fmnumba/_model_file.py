"""The model file format: an uncompressed .npz of arrays plus JSON metadata,
never pickle.

Arrays: P, bstate (the bias state [w0, m_w0, s_w0]) and, when Adam state
exists, M and S. A Gibbs-sampled model (solver="mcmc", format version 2)
adds samples_P (n_kept × n_features × (1 + k), the kept samples),
samples_scalars (2 × n_kept: each sample's w0 and noise precision α) and
chain_hyper ((2 + 2k) × n_groups: μ_w, λ_w, then μ_v and λ_v per factor),
with meta["chain"] = {seed, sweeps, alpha}; version-1 files still load. `meta` holds UTF-8 JSON bytes with the format name and
version, fmnumba's version, the estimator class, its hyperparameters,
classes, dtype and fitted counters. This module writes and reads that
container; turning it back into an estimator is fmnumba.io.load's job, so
nothing here knows the estimator classes.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

from ._version import __version__

FORMAT = "fmnumba-model"
FORMAT_VERSION = 2
CLASS_KINDS = {"b", "i", "u", "f", "U"}   # dtype kinds of classes_ a file may hold
_MAX_MEMBERS = 16


class ModelFileError(ValueError):
    """A file is not a valid fmnumba model file (unreadable, foreign,
    truncated, inconsistent or crafted)."""


def invalid(path, why):
    """The ModelFileError for `path`, saying why and what to do."""
    return ModelFileError(f"{path!s}: not a valid fmnumba model file ({why}). "
                          "Re-save the model with fmnumba's save().")


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
        if cls.dtype.kind not in CLASS_KINDS:
            cls = cls.astype(str)
        meta["classes"] = cls.tolist()
        meta["classes_dtype"] = cls.dtype.str
    chain = getattr(est, "_chain", None)
    if chain is not None:
        meta["chain"] = {"seed": int(chain.seed), "sweeps": int(chain.sweeps),
                         "alpha": float(chain.alpha)}
    arrays = {"P": st.P, "bstate": st.bias_state,
              "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    if chain is not None:
        arrays["samples_P"] = chain.samples_P
        arrays["samples_scalars"] = np.stack([chain.samples_w0, chain.samples_alpha])
        arrays["chain_hyper"] = np.vstack([chain.mu_w[None], chain.lam_w[None], chain.mu_v,
                                           chain.lam_v])
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
        if len(infos) > _MAX_MEMBERS:
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


def read_model_file(path):
    """(meta dict, {name: array}) of a model file whose container is sound:
    a readable .npz without pickled members, JSON metadata with fmnumba's
    format tag and a version this fmnumba reads. Raises FileNotFoundError
    or ModelFileError."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file.")
    if os.path.isdir(path):
        raise invalid(path, "it is a directory")
    try:
        _check_members(path)
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError,
            KeyError, NotImplementedError, RuntimeError, MemoryError) as e:
        raise invalid(path, f"cannot read it as .npz: {e}") from None
    if "meta" not in arrays or arrays["meta"].dtype != np.uint8 or arrays["meta"].ndim != 1:
        raise invalid(path, "metadata missing")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise invalid(path, f"metadata is not JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise invalid(path, "wrong format tag")
    if not isinstance(meta.get("format_version"), int) or meta["format_version"] > FORMAT_VERSION:
        raise invalid(path, f"format version {meta.get('format_version')!r} is newer than this "
                            f"fmnumba reads ({FORMAT_VERSION}); upgrade fmnumba")
    return meta, arrays
