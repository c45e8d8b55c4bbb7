"""The model file format: an uncompressed .npz of arrays plus JSON metadata,
never pickle.

Arrays: P, bstate (the bias state [w0, m_w0, s_w0]), when Adam state
exists M and S, and (version 2) rng_keys, the 624 words of the training
random generator's Mersenne Twister state. `meta` holds UTF-8 JSON bytes
with the format name and version, fmnumba's version, the estimator class,
its hyperparameters, classes (each value tagged with its type, so labels
come back exactly), dtype, fitted counters and the rest of the generator
state. This module writes and reads that container; turning it back into
an estimator is fmnumba.io.load's job, so nothing here knows the estimator
classes. Every member is stored uncompressed, so every size the file
declares is bounded by the file's own size before anything is allocated.
"""
import datetime
import json
import numbers
import os
import re
import stat
import tempfile
import zipfile

import numpy as np

from ._version import __version__

FORMAT = "fmnumba-model"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
CLASS_KINDS = {"b", "i", "u", "f", "U", "M", "m", "O"}   # dtype kinds of classes_ a file may hold
_CLASS_DTYPE = re.compile(r"^[<>|=]?(b1|[iuf][1248]|U\d{1,10}|[Mm]8(\[\d*[a-zA-Z]+\])?|O8?)$")
_MAX_MEMBERS = 16


class ModelFileError(ValueError):
    """A file is not a valid fmnumba model file (unreadable, foreign,
    truncated, inconsistent or crafted)."""


def invalid(path, why):
    """The ModelFileError for `path`, saying why and what to do."""
    return ModelFileError(f"{path!s}: not a valid fmnumba model file ({why}). "
                          "Re-save the model with fmnumba's save().")


def _jsonable(name, value):
    """Plain JSON value for a hyperparameter (NumPy scalars and arrays included;
    other real numbers, e.g. a Fraction, as the float that training used)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, dict):  # groups as {feature-name prefix: group id}
        return {str(k): _jsonable(name, v) for k, v in value.items()}
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
    if callable(params.get("scoring")):  # a callable scorer is code: not stored
        params["scoring"] = None
    return {k: _jsonable(k, v) for k, v in params.items()}


# --- classes: every label tagged with its type, decoded to the same type and value

_TAGS = {bool: "bool", int: "int", float: "float", str: "str"}


def _encode_plain(a):
    """JSON list of a 1-D array of kind b, i, u, f, U, M or m."""
    return a.view(np.int64).tolist() if a.dtype.kind in "Mm" else a.tolist()


def _encode_label(v):
    """[type tag, value] of one label of an object array."""
    t = type(v)
    if t in _TAGS:
        return [_TAGS[t], v]
    if isinstance(v, np.generic) and v.dtype.kind in "biufUMm":
        return ["numpy", v.dtype.str, _encode_plain(np.asarray(v).reshape(1))[0]]
    if t is datetime.datetime or t is datetime.date:
        return [t.__name__, v.isoformat()]
    if t is datetime.timedelta:
        return ["timedelta", [v.days, v.seconds, v.microseconds]]
    raise TypeError(f"save: the class label {v!r} (type {t.__name__}) cannot be stored in a "
                    "model file; use labels that are numbers, strings, booleans, dates or "
                    "numpy scalars")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _decode_plain(values, dt):
    """1-D array of dtype dt from its JSON list (values checked, not trusted)."""
    kind = dt.kind
    ok = {"b": lambda v: isinstance(v, bool), "i": _is_int, "u": _is_int, "M": _is_int,
          "m": _is_int, "U": lambda v: isinstance(v, str),
          "f": lambda v: (_is_int(v) or isinstance(v, float)) and np.isfinite(v)}[kind]
    if not all(ok(v) for v in values):
        raise ValueError(f"class values {values!r} do not fit dtype {dt.str}")
    if kind in "Mm":
        return np.array(values, dtype=np.int64).view(dt)
    out = np.array(values, dtype=dt)  # out-of-range integers raise OverflowError
    if out.tolist() != values:
        raise ValueError(f"class values {values!r} do not fit dtype {dt.str}")
    return out


def _decode_label(item):
    if not isinstance(item, list) or len(item) not in (2, 3) or not isinstance(item[0], str):
        raise ValueError(f"class label {item!r} is malformed")
    tag, value = item[0], item[-1]
    if tag == "numpy" and len(item) == 3:
        dt = _class_dtype(item[1])
        if dt.kind == "O":
            raise ValueError("a numpy class label cannot be of object dtype")
        return _decode_plain([value], dt)[0]
    if len(item) != 2:
        raise ValueError(f"class label {item!r} is malformed")
    if tag == "bool" and isinstance(value, bool):
        return value
    if tag == "int" and _is_int(value):
        return value
    if tag == "float" and isinstance(value, float) and np.isfinite(value):
        return value
    if tag == "str" and isinstance(value, str):
        return value
    if tag in ("datetime", "date") and isinstance(value, str) and len(value) < 64:
        return getattr(datetime, tag).fromisoformat(value)
    if (tag == "timedelta" and isinstance(value, list) and len(value) == 3
            and all(_is_int(v) for v in value)):
        return datetime.timedelta(*value)
    raise ValueError(f"class label {item!r} is malformed")


def _class_dtype(text):
    if not isinstance(text, str) or not _CLASS_DTYPE.match(text):
        raise ValueError(f"classes_dtype {text!r} is not a label dtype fmnumba writes")
    return np.dtype(text)


def decode_classes(values, dtype_text, max_bytes):
    """classes_ from the file's JSON: 2 values of dtype `dtype_text` (string
    widths bounded by max_bytes, the file's size). Raises ValueError."""
    dt = _class_dtype(dtype_text)
    if not isinstance(values, list) or len(values) != 2:
        raise ValueError("there must be exactly 2 classes")
    if dt.itemsize * 2 > 4 * max_bytes + 64:
        raise ValueError(f"classes_dtype {dtype_text!r} is wider than the file could hold")
    if dt.kind != "O":
        return _decode_plain(values, dt)
    out = np.empty(2, dtype=object)
    for i, v in enumerate(values):
        out[i] = _decode_label(v)
    return out


def same_labels(a, b):
    """True when label arrays a and b have the same dtype, and equal values of
    the same types."""
    return (a.dtype == b.dtype and a.shape == b.shape
            and all(type(x) is type(y) and bool(x == y) for x, y in zip(a.tolist(), b.tolist()))
            and (a.dtype.kind != "O" or all(type(x) is type(y) for x, y in zip(a, b))))


def _encode_classes(classes):
    """(JSON list, dtype text) for classes_, checked to decode to the same labels."""
    cls = np.asarray(classes)
    if cls.dtype.kind not in CLASS_KINDS or cls.ndim != 1:
        raise TypeError(f"save: classes_ of dtype {cls.dtype} cannot be stored in a model file; "
                        "use labels that are numbers, strings, booleans or dates")
    values = ([_encode_label(v) for v in cls] if cls.dtype.kind == "O"
              else _encode_plain(cls))
    try:
        back = decode_classes(values, cls.dtype.str, np.inf)
    except (ValueError, OverflowError) as e:
        back, why = None, str(e)
    if back is None or not same_labels(back, cls):
        raise TypeError(f"save: the class labels {cls.tolist()!r} cannot be stored exactly in a "
                        f"model file ({why if back is None else 'they do not round-trip'}); "
                        "use labels that are numbers, strings, booleans or dates")
    return values, cls.dtype.str


# --- writing

def _umask():
    """The process's umask (read from /proc where possible: setting it, even
    back, races with other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o22)
    os.umask(old)
    return old


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def file_kind(mode):
    """'a directory', 'a FIFO', ... for a non-regular st_mode; None for a regular file."""
    for test, what in _KINDS:
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


def save_target(path):
    """(the file save writes, its os.stat or None): symlinks followed, an
    existing target that is not a regular file refused."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return real, None
    what = file_kind(st.st_mode)
    if what is not None:
        raise ValueError(f"save: {path} is {what}, not a regular file; pass the path of a "
                         "model file (.npz) to write")
    return real, st


def _metadata(est):
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "_state")
    st = est._state
    for name, a in (("P", st.P), ("bias_state", st.bias_state), ("M", st.M), ("S", st.S)):
        if a is not None and not np.all(np.isfinite(a)):
            raise ValueError(f"save: the model holds non-finite parameters ({name}); a model "
                             "file never stores them. Refit with a smaller learning_rate.")
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fmnumba_version": __version__,
        "estimator": type(est).__name__, "params": _jsonable_params(est),
        "dtype": st.P.dtype.name, "n_features": int(st.P.shape[0]),
        "n_factors": int(st.P.shape[1] - 1), "t": int(st.t), "n_iter": int(est.n_iter_),
        "history": est.history_,
    }
    if getattr(est, "target_range_", None) is not None:
        meta["target_range"] = [float(v) for v in est.target_range_]
    if hasattr(est, "feature_names_in_"):
        meta["feature_names_in"] = [str(c) for c in est.feature_names_in_]
    if hasattr(est, "classes_"):
        meta["classes"], meta["classes_dtype"] = _encode_classes(est.classes_)
    arrays = {"P": st.P, "bstate": st.bias_state}
    if st.M is not None:
        arrays["M"], arrays["S"] = st.M, st.S
    rng = getattr(est, "_rng", None)
    if isinstance(rng, np.random.RandomState):
        kind, keys, pos, has_gauss, cached = rng.get_state(legacy=True)
        arrays["rng_keys"] = np.asarray(keys, dtype=np.uint32)
        meta["rng"] = {"pos": int(pos), "has_gauss": int(has_gauss),
                       "cached_gaussian": float(cached)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return arrays


def save_model(est, path):
    """Atomically write fitted `est` to `path` (temporary file, then rename).

    A symlink is followed (its target is replaced); an existing path that is
    not a regular file is refused. The new file gets the replaced file's
    permissions, or those the umask gives a new file. Errors name `path`.
    """
    arrays = _metadata(est)
    path = os.fspath(path)
    real, old = save_target(path)
    mode = stat.S_IMODE(old.st_mode) if old is not None else 0o666 & ~_umask()
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".fmnumba-", suffix=".tmp",
                                   dir=os.path.dirname(real))
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            if old is not None and (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
                try:
                    os.fchown(fh.fileno(), old.st_uid, old.st_gid)
                except OSError:  # only root may give a file away
                    pass
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, real)
        tmp = None
    except OSError as e:
        raise type(e)(e.errno, f"cannot write the model file: {e.strerror or e}", path) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


# --- reading

def _check_members(fh, size):
    """Read the archive's directory and each array header before loading: at
    most _MAX_MEMBERS members, each stored uncompressed (as fmnumba writes
    them) and declaring no more bytes than the file holds, so a crafted file
    cannot make load allocate more than its own size."""
    with zipfile.ZipFile(fh) as zf:
        infos = zf.infolist()
        if len(infos) > _MAX_MEMBERS:
            raise ValueError(f"{len(infos)} members, a model file has at most 7")
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"member {info.filename} is compressed; fmnumba writes "
                                 "uncompressed members")
            if info.file_size > size or info.compress_size > size:
                raise ValueError(f"member {info.filename} claims {info.file_size} bytes, "
                                 f"more than the file's {size}")
            with zf.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise ValueError(f"member {info.filename}: .npy version {version}")
            if dtype.hasobject:
                raise ValueError(f"member {info.filename} holds Python objects (pickle), "
                                 "which fmnumba never writes and never loads")
            declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if declared > info.file_size:
                raise ValueError(f"member {info.filename} declares {declared} bytes of data "
                                 f"but holds {info.file_size}")


def open_model_file(path):
    """A binary file object on model file `path` and its os.stat, refusing
    anything but a regular file (a FIFO or device would read without end)."""
    path = os.fspath(path)
    try:
        what = file_kind(os.stat(path).st_mode)  # a socket cannot even be opened
        if what is not None:
            raise invalid(path, f"it is {what}, not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(2, "no such model file", path) from None
    except PermissionError:
        raise
    except OSError as e:  # a symlink loop, a name too long, ...
        raise invalid(path, f"cannot open it: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        what = file_kind(st.st_mode)
        if what is not None:
            raise invalid(path, f"it is {what}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st
    except BaseException:
        os.close(fd)
        raise


def read_model_file(path):
    """(meta dict, {name: array}, file size) of a model file whose container is
    sound: a regular file holding an .npz without pickled or compressed
    members, JSON metadata with fmnumba's format tag and a version this
    fmnumba reads. Raises FileNotFoundError, PermissionError or ModelFileError."""
    fh, st = open_model_file(path)
    with fh:
        try:
            _check_members(fh, st.st_size)
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as z:
                if not isinstance(z, np.lib.npyio.NpzFile):
                    raise ValueError("a single .npy array, not an .npz archive")
                arrays = {k: z[k] for k in z.files}
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever the parsers raise, the file is bad
            raise invalid(path, f"cannot read it as .npz: {e}") from None
    if "meta" not in arrays or arrays["meta"].dtype != np.uint8 or arrays["meta"].ndim != 1:
        raise invalid(path, "metadata missing")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise invalid(path, f"metadata is not JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise invalid(path, "wrong format tag")
    version = meta.get("format_version")
    if not _is_int(version) or version < 1:
        raise invalid(path, f"format version {version!r} is not a positive integer")
    if version not in READABLE_VERSIONS:
        raise invalid(path, f"format version {version!r} is newer than this fmnumba reads "
                            f"({FORMAT_VERSION}); upgrade fmnumba")
    return meta, arrays, st.st_size
