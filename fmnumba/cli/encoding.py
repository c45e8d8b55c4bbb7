"""How data files become X for the CLI, and the JSON sidecar that records it.

A model written by ``fmnumba fit --model M.npz`` comes with ``M.npz.encoder.json``
recording how the training file was encoded (the format, the libsvm index
base and, for rating files, the user and item ids in column order and the
attribute tables of side features), so that
``predict`` and ``evaluate`` map new files onto the same columns. It is plain
JSON, never a pickle.
"""
import json
import os
import stat
import sys
import zipfile

import numpy as np

from .._version import __version__
from ..io import load
from .._source import open_source
from ..readers import RatingEncoder, read_data, resolve_format
from .errors import CLIError

SIDECAR_SUFFIX = ".encoder.json"
SIDECAR_FORMAT = "fmnumba-input-encoding"
_SIDECAR_KINDS = ("libsvm", "libffm", "ratings")


def _check_file(path, what):
    if not os.path.exists(path):
        raise CLIError(f"{what} {path}: no such file")
    if os.path.isdir(path):
        raise CLIError(f"{what} {path}: is a directory, expected a file")


def _format_of(path, fmt, info=None):
    """The canonical format to read `path` as: --format, else the format
    detected from the file, which must then match the model's."""
    if fmt not in (None, "auto"):
        kind = resolve_format(path, fmt)
        if info is not None and kind != info["format"]:
            raise CLIError(f"--format {kind} does not match the model, which was trained on "
                           f"{info['format']} data")
        return kind
    kind = resolve_format(path, "auto")
    if info is not None and kind != info["format"]:
        raise CLIError(f"{path} looks like {kind} data but the model was trained on "
                       f"{info['format']} data; pass a {info['format']} file (or "
                       f"--format {info['format']} if the detection is wrong)")
    return kind


def read_train(path, fmt=None, user_features=None, item_features=None):
    """Load a training file; returns (X, y, fields or None, info) where info
    is the JSON-able description of the encoding (see :func:`read_like`).
    `user_features` / `item_features`: attribute files for a ratings file."""
    _check_file(path, "TRAIN")
    path = open_source(path)  # a pipe can be read only once
    kind = _format_of(path, fmt)
    side = {"user_features": user_features, "item_features": item_features}
    for opt, f in side.items():
        if f is not None:
            if kind != "ratings":
                raise CLIError(f"--{opt.replace('_', '-')} is for ratings files; {path} is "
                               f"{kind} data")
            _check_file(f, f"--{opt.replace('_', '-')}")
    if kind == "libsvm":
        data = read_data(path, kind, zero_based=True)
        # sklearn's "auto": a file without index 0 is one-based; decide once
        # here and record it, so narrower test files are read the same way.
        X = data.X
        zero_based = bool(X.nnz == 0 or X.indices.min() == 0)
        if not zero_based:
            X = X[:, 1:]
        return X, data.y, None, {"format": kind, "zero_based": zero_based,
                                 "n_features": int(X.shape[1])}
    # ratings: ids ordered as load_movielens orders them (numerically when
    # all are integers); the sidecar lists them as text, in column order
    data = read_data(path, kind, **(side if kind == "ratings" else {}))
    info = {"format": kind, "n_features": int(data.X.shape[1])}
    if data.encoder is not None:
        info.update(data.encoder.to_json())
        info["groups"] = data.encoder.group_names_
    return data.X, data.y, data.fields, info


def encoder_from_info(info):
    """The RatingEncoder recorded in a ratings model's sidecar (ids as text)."""
    try:
        return RatingEncoder.from_json(info)
    except (ValueError, TypeError) as e:
        raise CLIError(f"the model's encoder sidecar is malformed ({e}); re-run "
                       "'fmnumba fit'") from None


def _reader_options(kind, info, path):
    """Keyword arguments that make read_data encode a file as the model's
    training file was (info: the sidecar, or None)."""
    if kind == "libsvm":
        return {"zero_based": info.get("zero_based", "auto") if info else "auto"}
    if kind == "ratings":
        if info is None:
            raise CLIError(f"{path} is a ratings file, but the model has no encoder sidecar "
                           f"(MODEL{SIDECAR_SUFFIX}) mapping user and item ids to columns; "
                           "train it with 'fmnumba fit ... --model MODEL'")
        return {"id_type": str, "encoder": encoder_from_info(info)}
    return {}


def _fit_width(read, n_features, path):
    """read(n_features); a file with features beyond the model's is read
    whole and cut to n_features (the model has no parameters for them),
    with a note on stderr."""
    try:
        return read(n_features)
    except ValueError as e:
        if "n_features was set" not in str(e):
            raise
    data = read(None)
    extra = data.X[:, n_features:].nnz
    print(f"fmnumba: note: {path} has features beyond the model's {n_features}; "
          f"{extra} such entries are ignored (the model has no parameters for them)",
          file=sys.stderr)
    return data._replace(X=data.X[:, :n_features])


def read_like(path, fmt, info, n_features):
    """Load a file for a fitted model with n_features columns, encoded as
    recorded in `info` (the sidecar) when given. Returns (X, y)."""
    _check_file(path, "DATA")
    path = open_source(path)
    kind = _format_of(path, fmt, info)
    options = _reader_options(kind, info, path)
    if kind == "ratings":
        data = read_data(path, kind, **options)
        enc = options["encoder"]
        one_hot = data.X[:, :enc.n_users_ + enc.n_items_]
        unknown = int(np.sum(np.diff(one_hot.indptr) < 2))
        if unknown:
            print(f"fmnumba: note: {unknown} of {data.X.shape[0]} rows in {path} have a user "
                  "or item not seen in training (predicted from the known part)",
                  file=sys.stderr)
    else:
        data = _fit_width(lambda n: read_data(path, kind, n_features=n, **options),
                          n_features, path)
    return data.X, data.y


def sidecar_path(model_path):
    return os.fspath(model_path) + SIDECAR_SUFFIX


def write_sidecar(model_path, info, task):
    """Write the encoding `info` of a model's training file next to it."""
    doc = {"format_tag": SIDECAR_FORMAT, "version": 1, "fmnumba_version": __version__,
           "task": task, **info}
    path = sidecar_path(model_path)
    real = os.path.realpath(path)  # a symlink is followed, as the model's save does
    tmp = real + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    if os.path.isfile(real):
        os.chmod(tmp, stat.S_IMODE(os.stat(real).st_mode))
    os.replace(tmp, real)
    return path


def read_sidecar(model_path):
    """The sidecar of `model_path` as a dict, or None when there is none."""
    path = sidecar_path(model_path)
    if not os.path.exists(path):
        return None
    if not os.path.isfile(path):
        raise CLIError(f"{path}: the encoder sidecar is not a regular file")
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CLIError(f"{path}: not a valid encoder sidecar ({e})") from None
    if not isinstance(doc, dict) or doc.get("format_tag") != SIDECAR_FORMAT \
            or doc.get("format") not in _SIDECAR_KINDS:
        raise CLIError(f"{path}: not a valid fmnumba encoder sidecar")
    return doc


def load_model(path):
    """(fitted estimator, sidecar dict or None) for a model file."""
    from .paths import check_model_input
    check_model_input(path)
    if not zipfile.is_zipfile(path):
        raise CLIError(f"MODEL {path}: not an fmnumba model file (expected the .npz written "
                       "by 'fmnumba fit --model' or estimator.save())")
    return load(path), read_sidecar(path)
