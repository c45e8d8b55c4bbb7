"""Checks on a command's file paths before any work is done: an output is
never the same file as an input (or as another output), and can be written;
a model file is a regular file (a FIFO or device would be read without end).
Imported when a command runs, like the rest of the command code."""
import os

from .._model_file import file_kind
from .encoding import SIDECAR_SUFFIX
from .errors import CLIError


def _stat(path):
    try:
        return os.stat(path)
    except OSError:
        return None


def _writable(label, path, regular_only):
    """Refuse an output path that cannot be written (CLIError, exit 2)."""
    st = _stat(path)
    if st is not None:
        what = file_kind(st.st_mode)
        if what is not None and (regular_only or what == "a directory"):
            raise CLIError(f"{label} {path}: is {what}, expected a regular file path")
        if what is None and not os.access(path, os.W_OK) and not regular_only:
            raise CLIError(f"{label} {path}: permission denied (the file is not writable)")
    folder = os.path.dirname(os.path.realpath(path)) or "."
    if not os.path.isdir(folder):
        raise CLIError(f"{label} {path}: the folder {folder} does not exist")
    # a model is written next to its target and renamed over it: the folder must be writable
    if (st is None or regular_only) and not os.access(folder, os.W_OK | os.X_OK):
        raise CLIError(f"{label} {path}: permission denied (cannot create files in {folder})")


def check_outputs(outputs, inputs):
    """outputs: [(label, path or None, regular_only)]; inputs: [(label, path
    or None)]. Raise CLIError when an output cannot be written or names the
    same file as an input or an earlier output ('-' is stdout, skipped)."""
    seen = []  # (label, path, identity): (device, inode) when it exists, else its real path
    for label, path in inputs:
        if path not in (None, "-"):
            st = _stat(path)
            if st is not None:
                seen.append((label, path, (st.st_dev, st.st_ino)))
    for label, path, regular_only in outputs:
        if path in (None, "-"):
            continue
        st = _stat(path)
        ident = (st.st_dev, st.st_ino) if st is not None else os.path.realpath(path)
        for other, other_path, other_ident in seen:
            if ident == other_ident:
                raise CLIError(f"{label} {path} is the same file as {other} {other_path}; "
                               "it would be overwritten: choose another path")
        _writable(label, path, regular_only)
        seen.append((label, path, ident))


def check_fit_paths(args):
    """fit's outputs (--model and its sidecar, --out, --plot) against TRAIN and --test."""
    model = getattr(args, "model", None)
    check_outputs([("--model", model, True),
                   ("--model's encoder sidecar", model and model + SIDECAR_SUFFIX, True),
                   ("--out", getattr(args, "out", None), False),
                   ("--plot", getattr(args, "plot", None), False)],
                  [("TRAIN", args.train)] + [(f"--{opt.replace('_', '-')}", getattr(args, opt, None))
                                             for opt in ("test", "validation", "meta",
                                                         "user_features", "item_features")])


def check_model_input(path):
    """MODEL must be an existing regular file."""
    st = _stat(path)
    if st is None:
        if not os.path.lexists(path):
            raise CLIError(f"MODEL {path}: no such file")
        raise CLIError(f"MODEL {path}: cannot be opened (a broken link or no permission)")
    what = file_kind(st.st_mode)
    if what is not None:
        raise CLIError(f"MODEL {path}: is {what}; expected the .npz file written by "
                       "'fmnumba fit --model' or estimator.save()")


def check_predict_paths(args):
    """predict's --out against MODEL, its sidecar and DATA."""
    check_outputs([("--out", getattr(args, "out", None), False)],
                  [("MODEL", args.model), ("MODEL's encoder sidecar", args.model + SIDECAR_SUFFIX),
                   ("DATA", args.data)])


def check_recommend_paths(args):
    """recommend's --out against MODEL, its sidecar and the id files."""
    check_outputs([("--out", getattr(args, "out", None), False)],
                  [("MODEL", args.model), ("MODEL's encoder sidecar", args.model + SIDECAR_SUFFIX)]
                  + [(f"--{opt}", getattr(args, opt, None)) for opt in ("users", "items",
                                                                       "exclude")])
