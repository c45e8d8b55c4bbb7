"""The ``fmnumba`` command line: ``fit``, ``predict``, ``evaluate`` and ``demo``.

Run ``fmnumba COMMAND --help`` for each command's options. Every command
exits with 0 on success and 2, with a one-line message on stderr, on a bad
argument, a missing or malformed file or data the model cannot use.

A model written by ``fmnumba fit --model M.npz`` comes with a JSON sidecar
``M.npz.encoder.json`` recording how the input was encoded (the format, the
libsvm index base and, for rating files, the user and item ids in column
order), so that ``predict`` and ``evaluate`` map new files onto the same
columns. It is plain JSON, never a pickle.
"""
import argparse
import json
import math
import os
import sys
import time
import zipfile

import numpy as np

EXIT_OK = 0
EXIT_ERROR = 2
SIDECAR_SUFFIX = ".encoder.json"
SIDECAR_FORMAT = "fmnumba-input-encoding"

_TASKS = {"regression": "regression", "r": "regression", "classification": "classification",
          "c": "classification", "binary": "classification"}
_FORMATS = ("auto", "libsvm", "libfm", "libffm", "ratings")

FIT_EPILOG = """\
libFM users: equivalent options
  libFM                      fmnumba fit
  -task r | -task c          --task regression | --task classification  (r, c accepted)
  -train FILE                TRAIN (positional)
  -test FILE                 --test FILE
  -dim '1,1,8'               --factors 8  (bias and linear terms are always on)
  -iter 100                  --epochs 100
  -method sgd                --solver sgd  (default adam; no mcmc/als yet)
  -learn_rate 0.01           --learning-rate 0.01
  -regular '0,0.01,0.01'     --l2-w 0.01 --l2-v 0.01
  -init_stdev 0.1            --init-std 0.1
  -out pred.txt              --out pred.txt  (add --proba for libFM's probabilities)
  -save_model m              --model m.npz
  -meta groups.txt           --group-by-field (libffm fields / rating user+item blocks)
  -seed 1                    --seed 1
  -verbosity 1               --verbose

examples
  fmnumba fit a9a --test a9a.t --task c --epochs 10 --model a9a.npz --out pred.txt --proba
  fmnumba fit u.data --task r --format ratings --test u.test --plot curve.png
  fmnumba fit train.libffm --task c --group-by-field --l2-v 0.001,0.01,0.01
"""


class CLIError(Exception):
    """A user error reported as one line on stderr with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line (exit status 2)."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ---------------------------------------------------------------------------
# argument types
# ---------------------------------------------------------------------------

def _task(value):
    try:
        return _TASKS[value.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"invalid task {value!r}; choose regression (r) or classification (c)") from None


def _positive_int(value):
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def _n_jobs(value):
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or -1, got {value!r}") from None
    if n == 0 or n < -1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or -1, got {value!r}")
    return n


def _float_arg(value, ok, what):
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not (math.isfinite(x) and ok(x)):
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
    return x


def _positive_float(value):
    return _float_arg(value, lambda x: x > 0, "a positive number")


def _nonneg_float(value):
    return _float_arg(value, lambda x: x >= 0, "a number >= 0")


def _l2(value):
    """'0.01' -> 0.01; '0.001,0.01' -> [0.001, 0.01] (one strength per group)."""
    parts = [p.strip() for p in value.split(",")]
    out = []
    for p in parts:
        try:
            x = float(p)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number or a comma-separated list of numbers, got {value!r}") from None
        if not (math.isfinite(x) and x >= 0):
            raise argparse.ArgumentTypeError(f"L2 strengths must be finite and >= 0, got {value!r}")
        out.append(x)
    return out[0] if len(out) == 1 else out


# ---------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------

_D = {}


def build_parser():
    from . import __version__
    from .estimators import FMClassifier, FMRegressor
    global _D
    reg, clf = FMRegressor().get_params(), FMClassifier().get_params()
    # --help shows the estimators' own defaults (per task where they differ)
    _D = {k: v if clf.get(k) == v else f"{v} for regression, {clf[k]} for classification"
          for k, v in reg.items()}
    parser = _Parser(
        prog="fmnumba",
        description="Factorization Machines on sparse data (Numba kernels).",
        epilog="Run 'fmnumba COMMAND --help' for a command's options. "
               "Exit status: 0 on success, 2 on bad arguments, files or data.")
    parser.add_argument("--version", action="version", version=f"fmnumba {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_format(p):
        p.add_argument("--format", choices=_FORMATS, default=None,
                       help="input format (default: the one recorded with the model, else "
                            "auto-detected: a:b:c tokens = libffm, a:b = libsvm/libFM, "
                            "delimited columns = ratings)")

    def add_verbosity(p):
        g = p.add_mutually_exclusive_group()
        g.add_argument("--verbose", "-v", dest="verbose", action="store_const", const=1,
                       default=None, help="show a progress bar on stderr (default when "
                                          "stderr is a terminal)")
        g.add_argument("--quiet", "-q", dest="verbose", action="store_const", const=0,
                       help="no progress bar")

    # fit ------------------------------------------------------------------
    p = sub.add_parser("fit", help="train a model on a libsvm/libFM, libffm or ratings file",
                       description="Train an FMRegressor or FMClassifier on TRAIN; optionally "
                                   "report metrics on, and write predictions for, --test.",
                       epilog=FIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("train", metavar="TRAIN", help="training data file")
    p.add_argument("--task", "-t", type=_task, required=True,
                   help="regression (r) or classification (c, binary labels)")
    p.add_argument("--test", metavar="TEST", help="test data file: metrics are printed, its "
                   "loss is recorded per epoch (validation curve) and --out predicts it")
    add_format(p)
    p.add_argument("--factors", "-k", type=_positive_int, default=None,
                   help=f"number of latent factors k (default {_D['n_factors']})")
    p.add_argument("--epochs", "--iter", type=_positive_int, default=None,
                   help=f"number of passes over TRAIN (default {_D['max_iter']})")
    p.add_argument("--loss", choices=("squared", "logistic", "hinge"), default=None,
                   help="loss (default: squared for regression, logistic for classification)")
    p.add_argument("--solver", choices=("adam", "adamw", "sgd"), default=None,
                   help="optimiser (default adam; adamw: Adam with decoupled weight decay, "
                        "the L2 strengths as decay rates)")
    p.add_argument("--learning-rate", "--lr", type=_positive_float, default=None,
                   help=f"step size (default {_D['learning_rate']})")
    p.add_argument("--lr-decay", type=_nonneg_float, default=None,
                   help=f"epoch e uses LR / (1 + LR_DECAY·e) (default {_D['lr_decay']})")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help=f"mini-batch size for adam (default {_D['batch_size']})")
    p.add_argument("--l2-w", type=_l2, default=None, metavar="L2",
                   help=f"L2 strength on linear weights (default {_D['l2_reg_w']}); a comma list gives one per group "
                        "(implies --group-by-field)")
    p.add_argument("--l2-v", type=_l2, default=None, metavar="L2",
                   help=f"L2 strength on factors (default {_D['l2_reg_v']}); a comma list gives one per group "
                        "(implies --group-by-field)")
    p.add_argument("--init-std", type=float, default=None,
                   help=f"standard deviation of the initial factors (default {_D['init_std']})")
    p.add_argument("--group-by-field", action="store_true",
                   help="regularise per group: libffm fields, or the user and item blocks "
                        "of a ratings file (group 0 = users, 1 = items)")
    p.add_argument("--early-stopping", action="store_true",
                   help="hold out 10%% of TRAIN and stop when its loss stops improving")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--n-jobs", "-j", type=_n_jobs, default=None,
                   help="threads (default: Numba's default, all cores; -1 = all)")
    p.add_argument("--model", "-m", metavar="PATH",
                   help="write the model here (.npz) plus PATH.encoder.json")
    p.add_argument("--plot", metavar="PNG", help="write the learning curve (train and "
                   "--test loss per epoch) to this image file (needs matplotlib)")
    p.add_argument("--out", "-o", metavar="FILE", help="write predictions for --test, one "
                   "per line ('-' = stdout)")
    p.add_argument("--proba", action="store_true",
                   help="with --out: write P(positive class) instead of labels "
                        "(logistic loss only)")
    p.add_argument("--json", action="store_true", help="print the test metrics as JSON")
    add_verbosity(p)
    p.set_defaults(func=cmd_fit)

    # predict --------------------------------------------------------------
    p = sub.add_parser("predict", help="write one prediction per line",
                       description="Predict DATA with a saved MODEL; one value per line. "
                                   "Labels in DATA are ignored (any placeholder works).")
    p.add_argument("model", metavar="MODEL", help="model file written by 'fmnumba fit --model'"
                                                  " or estimator.save()")
    p.add_argument("data", metavar="DATA", help="data file")
    p.add_argument("-o", "--out", metavar="FILE", default="-",
                   help="output file (default '-' = stdout)")
    p.add_argument("--proba", action="store_true",
                   help="classifier with logistic loss: write P(positive class)")
    add_format(p)
    p.add_argument("--n-jobs", "-j", type=_n_jobs, default=None, help="threads")
    p.set_defaults(func=cmd_predict)

    # evaluate -------------------------------------------------------------
    p = sub.add_parser("evaluate", help="print test metrics of a saved model",
                       description="Score MODEL on labelled DATA: RMSE and MAE for a "
                                   "regressor; AUC, logloss and accuracy for a classifier.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    add_format(p)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--n-jobs", "-j", type=_n_jobs, default=None, help="threads")
    p.set_defaults(func=cmd_evaluate)

    # demo -----------------------------------------------------------------
    p = sub.add_parser("demo", help="train on synthetic ratings and clicks and print metrics",
                       description="Train an FMRegressor on synthetic ratings and an "
                                   "FMClassifier on synthetic clicks; print test metrics "
                                   "next to a trivial baseline and the best achievable "
                                   "(planted-model) figure, with fit and compile times.")
    p.add_argument("--n-jobs", "-j", type=_n_jobs, default=None, help="threads")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quick", action="store_true", help="20k rows instead of 100k")
    p.set_defaults(func=cmd_demo)
    return parser


# ---------------------------------------------------------------------------
# data encoding (kept next to the model as JSON)
# ---------------------------------------------------------------------------

def _kind(path, fmt, info=None):
    from .readers import detect_format
    if fmt in (None, "auto"):
        kind = detect_format(path)
        if info is not None and kind != info["format"]:
            raise CLIError(f"{path} looks like {kind} data but the model was trained on "
                           f"{info['format']} data; pass a {info['format']} file (or "
                           f"--format {info['format']} if the detection is wrong)")
        return kind
    return "libsvm" if fmt == "libfm" else fmt


def _check_file(path, what):
    if not os.path.exists(path):
        raise CLIError(f"{what} {path}: no such file")
    if os.path.isdir(path):
        raise CLIError(f"{what} {path}: is a directory, expected a file")


def read_train(path, fmt=None):
    """Load a training file; returns (X, y, fields or None, info) where info
    is the JSON-able description of the encoding (see :func:`read_like`)."""
    from .readers import RatingEncoder, load_libffm, load_libsvm, load_ratings
    _check_file(path, "TRAIN")
    kind = _kind(path, fmt)
    if kind == "libsvm":
        X, y = load_libsvm(path, zero_based=True)
        # sklearn's "auto": a file without index 0 is one-based; decide once
        # here and record it, so narrower test files are read the same way.
        zero_based = bool(X.nnz == 0 or X.indices.min() == 0)
        if not zero_based:
            X = X[:, 1:]
        return X, y, None, {"format": "libsvm", "zero_based": zero_based,
                            "n_features": int(X.shape[1])}
    if kind == "libffm":
        X, y, fields = load_libffm(path)
        return X, y, fields, {"format": "libffm", "n_features": int(X.shape[1])}
    users, items, y = load_ratings(path)
    users, items = users.astype(str), items.astype(str)
    enc = RatingEncoder().fit(users, items)
    X = enc.transform(users, items)
    info = {"format": "ratings", "n_features": int(X.shape[1]),
            "users": enc.users_.tolist(), "items": enc.items_.tolist()}
    return X, y, enc.fields_, info


def _encoder_from_info(info):
    from .readers import RatingEncoder
    users, items = info.get("users"), info.get("items")
    if not (isinstance(users, list) and isinstance(items, list)
            and all(isinstance(u, str) for u in users) and all(isinstance(i, str) for i in items)):
        raise CLIError("the model's encoder sidecar is malformed (users/items must be "
                       "lists of strings); re-run 'fmnumba fit'")
    enc = RatingEncoder()
    enc.user_index_ = {k: n for n, k in enumerate(users)}
    enc.item_index_ = {k: n for n, k in enumerate(items)}
    enc.users_ = np.array(users, dtype=str)
    enc.items_ = np.array(items, dtype=str)
    enc.n_users_, enc.n_items_ = len(users), len(items)
    enc.n_output_features_ = len(users) + len(items)
    enc.fields_ = np.repeat(np.array([0, 1], dtype=np.int32), [len(users), len(items)])
    return enc


def _fit_width(load, n_features, path):
    """Call load(n_features); a file with features beyond the model's are
    loaded whole and cut to n_features (the model has no parameters for
    them), with a note on stderr."""
    try:
        return load(n_features)
    except ValueError as e:
        if "n_features was set" not in str(e):
            raise
    out = load(None)
    X = out[0]
    extra = X[:, n_features:].nnz
    print(f"fmnumba: note: {path} has features beyond the model's {n_features}; "
          f"{extra} such entries are ignored (the model has no parameters for them)",
          file=sys.stderr)
    return (X[:, :n_features],) + tuple(out[1:])


def read_like(path, fmt, info, n_features):
    """Load a file for a fitted model with n_features columns, encoded as
    recorded in `info` (the sidecar) when given. Returns (X, y)."""
    from .readers import load_libffm, load_libsvm, load_ratings
    _check_file(path, "DATA")
    kind = _kind(path, fmt, info)
    if info is not None and kind != info["format"]:
        raise CLIError(f"--format {kind} does not match the model, which was trained on "
                       f"{info['format']} data")
    if kind == "libsvm":
        zb = info.get("zero_based", "auto") if info else "auto"
        X, y = _fit_width(lambda n: load_libsvm(path, n_features=n, zero_based=zb),
                          n_features, path)
        return X, y
    if kind == "libffm":
        X, y, _ = _fit_width(lambda n: load_libffm(path, n_features=n), n_features, path)
        return X, y
    if info is None:
        raise CLIError(f"{path} is a ratings file, but the model has no encoder sidecar "
                       f"(MODEL{SIDECAR_SUFFIX}) mapping user and item ids to columns; "
                       "train it with 'fmnumba fit ... --model MODEL'")
    enc = _encoder_from_info(info)
    users, items, y = load_ratings(path)
    users, items = users.astype(str), items.astype(str)
    X = enc.transform(users, items)
    unknown = int(np.sum(np.diff(X.indptr) < 2))
    if unknown:
        print(f"fmnumba: note: {unknown} of {X.shape[0]} rows in {path} have a user or item "
              "not seen in training (predicted from the known part)", file=sys.stderr)
    return X, y


def sidecar_path(model_path):
    return os.fspath(model_path) + SIDECAR_SUFFIX


def write_sidecar(model_path, info, task):
    from . import __version__
    doc = {"format_tag": SIDECAR_FORMAT, "version": 1, "fmnumba_version": __version__,
           "task": task, **info}
    path = sidecar_path(model_path)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    os.replace(tmp, path)
    return path


def read_sidecar(model_path):
    path = sidecar_path(model_path)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CLIError(f"{path}: not a valid encoder sidecar ({e})") from None
    if not isinstance(doc, dict) or doc.get("format_tag") != SIDECAR_FORMAT \
            or doc.get("format") not in ("libsvm", "libffm", "ratings"):
        raise CLIError(f"{path}: not a valid fmnumba encoder sidecar")
    return doc


def load_model(path):
    from .io import load
    if not os.path.exists(path):
        raise CLIError(f"MODEL {path}: no such file")
    if os.path.isdir(path) or not zipfile.is_zipfile(path):
        raise CLIError(f"MODEL {path}: not an fmnumba model file (expected the .npz written "
                       "by 'fmnumba fit --model' or estimator.save())")
    return load(path), read_sidecar(path)


# ---------------------------------------------------------------------------
# metrics and output
# ---------------------------------------------------------------------------

def _is_classifier(model):
    return hasattr(model, "classes_")


def metrics(model, X, y):
    """Dict of test metrics: rmse/mae for a regressor; auc, logloss
    (logistic loss only) and accuracy for a classifier; plus n_rows."""
    from sklearn.metrics import log_loss, mean_absolute_error, roc_auc_score
    out = {"n_rows": int(X.shape[0])}
    if X.shape[0] == 0:
        raise CLIError("the data has no rows to evaluate")
    if not _is_classifier(model):
        pred = model.predict(X)
        out["rmse"] = float(np.sqrt(np.mean((pred - y) ** 2)))
        out["mae"] = float(mean_absolute_error(y, pred))
        return out
    classes = model.classes_
    known = np.isin(y, classes)
    if not known.all():
        raise CLIError(f"labels in the data ({np.unique(y[~known])[:5].tolist()}) are not the "
                       f"model's classes {classes.tolist()}")
    pos = (y == classes[1])
    d = model.decision_function(X)
    out["auc"] = float(roc_auc_score(pos, d)) if 0 < pos.sum() < pos.size else None
    if model.loss == "logistic":
        p = model.predict_proba(X)[:, 1]
        out["logloss"] = float(log_loss(pos, p, labels=[False, True]))
    out["accuracy"] = float(np.mean(model.predict(X) == y))
    return out


def format_metrics(m):
    lines = ["metric     value"]
    for key in ("rmse", "mae", "auc", "logloss", "accuracy", "n_rows"):
        if key in m:
            v = m[key]
            val = "n/a (one class)" if v is None else (f"{v:d}" if isinstance(v, int)
                                                      else f"{v:.4f}")
            lines.append(f"{key:<10} {val}")
    return "\n".join(lines)


def _format_values(values):
    values = np.asarray(values)
    if values.dtype.kind == "f":
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)) \
                and values.size and np.abs(values).max() < 2**53:
            return [str(int(v)) for v in values]
        return [f"{v:.7g}" for v in values]
    return [str(v) for v in values]


def write_predictions(values, out):
    text = "\n".join(_format_values(values))
    text = text + "\n" if text else text
    if out in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(text)


def _predictions(model, X, proba):
    if proba:
        if not _is_classifier(model):
            raise CLIError("--proba is for classifiers; this model is a regressor")
        if model.loss != "logistic":
            raise CLIError(f"--proba needs a classifier trained with the logistic loss "
                           f"(this one uses loss={model.loss!r})")
        return model.predict_proba(X)[:, 1]
    return model.predict(X)


def _verbosity(flag):
    if flag is not None:
        return flag
    try:
        return 1 if sys.stderr.isatty() else 0
    except (AttributeError, ValueError):
        return 0


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------

def cmd_fit(args):
    from .estimators import FMClassifier, FMRegressor
    X, y, fields, info = read_train(args.train, args.format)
    if X.shape[0] == 0:
        raise CLIError(f"TRAIN {args.train}: no data rows")
    cls = FMRegressor if args.task == "regression" else FMClassifier
    params = {"random_state": args.seed, "n_jobs": args.n_jobs,
              "verbose": _verbosity(args.verbose)}
    for opt, name in (("factors", "n_factors"), ("epochs", "max_iter"), ("loss", "loss"),
                      ("solver", "solver"), ("learning_rate", "learning_rate"),
                      ("lr_decay", "lr_decay"), ("batch_size", "batch_size"),
                      ("l2_w", "l2_reg_w"), ("l2_v", "l2_reg_v"), ("init_std", "init_std")):
        value = getattr(args, opt)
        if value is not None:
            params[name] = value
    if args.early_stopping:
        params["early_stopping"] = True
    per_group = isinstance(args.l2_w, list) or isinstance(args.l2_v, list)
    if args.group_by_field or per_group:
        if fields is None:
            why = "per-group L2 lists need" if per_group else "--group-by-field needs"
            raise CLIError(f"{why} groups: libffm input (fields) or a ratings file "
                           f"(user/item blocks); {args.train} is {info['format']}")
        groups = np.where(fields < 0, 0, fields).astype(np.int64)
        # a plain list keeps the parameters JSON-serialisable for the model file
        params["groups"] = groups.tolist()
        n_groups = int(groups.max()) + 1 if groups.size else 0
        for opt in ("l2_w", "l2_v"):
            v = getattr(args, opt)
            if isinstance(v, list) and len(v) != n_groups:
                raise CLIError(f"--{opt.replace('_', '-')} has {len(v)} values but "
                               f"{args.train} has {n_groups} groups "
                               f"({'fields' if info['format'] == 'libffm' else 'users, items'})")
    if args.proba and not args.out:
        raise CLIError("--proba applies to --out; add --out FILE")
    if args.out and not args.test:
        raise CLIError("--out writes predictions for --test; add --test FILE")
    Xte = yte = None
    if args.test:
        Xte, yte = read_like(args.test, args.format, info, X.shape[1])
    model = cls(**params)
    eval_set = None
    if Xte is not None and not args.early_stopping and Xte.shape[0] > 0:
        eval_set = (Xte, yte)
    # with --out - the predictions own stdout; the report goes to stderr
    report = sys.stderr if args.out == "-" else sys.stdout

    def say(*parts):
        print(*parts, file=report)

    t0 = time.perf_counter()
    model.fit(X, y, eval_set=eval_set)
    fit_s = time.perf_counter() - t0
    hist = model.history_
    say(f"fitted {cls.__name__} (k={model.n_factors}, loss={model.loss}, "
        f"solver={model.solver}) on {X.shape[0]} rows x {X.shape[1]} features: "
        f"{model.n_iter_} epochs in {fit_s:.2f} s, final train loss "
        f"{hist['train_loss'][-1]:.4f}")
    if Xte is not None:
        m = metrics(model, Xte, yte)
        if args.json:
            say(json.dumps(m))
        else:
            say(f"test ({args.test}):")
            say(format_metrics(m))
    if args.model:
        model.save(args.model)
        side = write_sidecar(args.model, info, args.task)
        say(f"model written to {args.model} (input encoding in {side})")
    if args.plot:
        from .plot import save_learning_curve
        save_learning_curve(model, args.plot)
        say(f"learning curve written to {args.plot}")
    if args.out:
        write_predictions(_predictions(model, Xte, args.proba), args.out)
        if args.out != "-":
            say(f"{Xte.shape[0]} predictions written to {args.out}")
    return EXIT_OK


def cmd_predict(args):
    model, info = load_model(args.model)
    if args.n_jobs is not None:
        model.set_params(n_jobs=args.n_jobs)
    X, _ = read_like(args.data, args.format, info, model.n_features_in_)
    write_predictions(_predictions(model, X, args.proba), args.out)
    return EXIT_OK


def cmd_evaluate(args):
    model, info = load_model(args.model)
    if args.n_jobs is not None:
        model.set_params(n_jobs=args.n_jobs)
    X, y = read_like(args.data, args.format, info, model.n_features_in_)
    m = metrics(model, X, y)
    if args.json:
        print(json.dumps(m))
    else:
        print(f"{type(model).__name__} on {args.data}:")
        print(format_metrics(m))
    return EXIT_OK


def _planted_decision(data, X):
    """The planted FM's ŷ on rows of X (the best any model can do)."""
    XV = X @ data.V
    sq = X.multiply(X) @ (data.V ** 2)
    return data.w0 + X @ data.w + 0.5 * ((XV ** 2).sum(axis=1) - sq.sum(axis=1))


def run_demo(n_jobs=None, seed=0, quick=False, out=None):
    """The ``fmnumba demo`` run; returns a dict of the figures it prints."""
    import numba
    from sklearn.metrics import log_loss, roc_auc_score

    from .datasets import make_clicks, make_ratings
    from .estimators import FMClassifier, FMRegressor
    out = out or sys.stdout
    n = 20_000 if quick else 100_000
    max_threads = numba.config.NUMBA_NUM_THREADS
    threads = numba.get_num_threads() if n_jobs is None else (
        max_threads if n_jobs == -1 else min(n_jobs, max_threads))
    fit_kw = dict(max_iter=30, early_stopping=True, n_iter_no_change=2, random_state=seed,
                  n_jobs=n_jobs)
    res = {}
    t_all = time.perf_counter()
    print(f"fmnumba demo: {n:,} rows per task, 80/20 split, k=8, {threads} thread(s), "
          f"seed {seed}", file=out)

    def timed_fit(cls, Xtr, ytr):
        t0 = time.perf_counter()  # first call: JIT compile or load from Numba's disk cache
        cls(max_iter=1, n_jobs=n_jobs, random_state=seed).fit(Xtr[:64], ytr[:64]).predict(Xtr[:8])
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = cls(**fit_kw).fit(Xtr, ytr)
        return model, time.perf_counter() - t0, compile_s

    # ratings
    rat = make_ratings(n, random_state=seed)
    Xtr, Xte, ytr, yte = rat.split(0.2, random_state=seed)
    reg, fit_s, comp_s = timed_fit(FMRegressor, Xtr, ytr)
    rmse = float(np.sqrt(np.mean((reg.predict(Xte) - yte) ** 2)))
    base = float(np.sqrt(np.mean((ytr.mean() - yte) ** 2)))
    print(f"\nratings ({rat.field_sizes[0]:,} users x {rat.field_sizes[1]:,} items + "
          f"{len(rat.field_sizes) - 2} context fields, planted FM + N(0, {rat.noise:g}²) noise)",
          file=out)
    print(f"  FMRegressor       test RMSE {rmse:.4f}   fit {fit_s:.2f} s ({reg.n_iter_} epochs, "
          f"early stopping)   compile {comp_s:.2f} s", file=out)
    print(f"  baseline          global mean RMSE {base:.4f}", file=out)
    print(f"  noise floor       RMSE {rat.noise:.4f} (the planted model's error)", file=out)
    res["ratings"] = {"rmse": rmse, "baseline_rmse": base, "noise_floor_rmse": rat.noise,
                      "fit_s": fit_s, "compile_s": comp_s, "epochs": reg.n_iter_}

    # clicks
    clk = make_clicks(n, random_state=seed)
    Xtr, Xte, ytr, yte = clk.split(0.2, random_state=seed)
    clf, fit_s, comp_s = timed_fit(FMClassifier, Xtr, ytr)
    p = clf.predict_proba(Xte)[:, 1]
    auc, ll = float(roc_auc_score(yte, p)), float(log_loss(yte, p, labels=[0, 1]))
    rate = float(ytr.mean())
    base_ll = float(log_loss(yte, np.full(yte.shape, rate), labels=[0, 1]))
    d_true = np.asarray(_planted_decision(clk, Xte)).ravel()
    p_true = 0.5 * (1 + np.tanh(0.5 * d_true))
    auc_true = float(roc_auc_score(yte, d_true))
    ll_true = float(log_loss(yte, p_true, labels=[0, 1]))
    print(f"\nclicks ({len(clk.field_sizes)} categorical fields, {sum(clk.field_sizes):,} "
          f"features, {rate:.1%} positives, P(click) = σ(planted FM))", file=out)
    print(f"  FMClassifier      test AUC {auc:.4f}  logloss {ll:.4f}   fit {fit_s:.2f} s "
          f"({clf.n_iter_} epochs, early stopping)   compile {comp_s:.2f} s", file=out)
    print(f"  baseline          base rate AUC 0.5000  logloss {base_ll:.4f}", file=out)
    print(f"  noise floor       AUC {auc_true:.4f}  logloss {ll_true:.4f} (the planted model)",
          file=out)
    res["clicks"] = {"auc": auc, "logloss": ll, "baseline_auc": 0.5, "baseline_logloss": base_ll,
                     "noise_floor_auc": auc_true, "noise_floor_logloss": ll_true,
                     "fit_s": fit_s, "compile_s": comp_s, "epochs": clf.n_iter_}
    total = time.perf_counter() - t_all
    res["total_s"] = total
    print(f"\ntotal {total:.1f} s (compile = first call: JIT compile, or load from Numba's "
          "on-disk cache)", file=out)
    return res


def cmd_demo(args):
    run_demo(n_jobs=args.n_jobs, seed=args.seed, quick=args.quick)
    return EXIT_OK


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------

def _one_line(exc):
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    msg = str(exc) or type(exc).__name__
    return " ".join(msg.split())


def main(argv=None):
    """Console entry point; returns the exit status (0 ok, 2 user error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else EXIT_ERROR
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("fmnumba: error: choose a command: fit, predict, evaluate or demo "
              "(see 'fmnumba --help')", file=sys.stderr)
        return EXIT_ERROR
    prog = f"fmnumba {args.command}"
    try:
        return args.func(args)
    except CLIError as e:
        msg = _one_line(e)
    except (ValueError, TypeError, OSError, ImportError, ArithmeticError, MemoryError) as e:
        # readers, estimators and model files report bad input this way (MemoryError:
        # a model too large for this machine, refused before allocation)
        msg = _one_line(e)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
