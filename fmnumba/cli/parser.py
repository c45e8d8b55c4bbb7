"""The argument parser: commands, options, argument types and the libFM
equivalents shown by ``fmnumba fit --help``.

It imports neither the estimators nor the kernels (``fmnumba --help`` and
``--version`` answer at once): the defaults it shows are read from the
estimators' source.
"""
import argparse
import ast
import math

from .._formats import FORMAT_ALIASES
from .._version import __version__
from . import commands
from .errors import EXIT_ERROR

_TASKS = {"regression": "regression", "r": "regression", "classification": "classification",
          "c": "classification", "binary": "classification"}

FIT_EPILOG = """\
libFM users: libFM's command lines run as written, e.g.
  fmnumba fit -task r -train a.libfm -test b.libfm -dim '1,1,8' -iter 100 -out pred.txt
They are translated to these options (a libFM flag without one is refused):
  libFM                      fmnumba fit
  -task r | -task c          --task regression | --task classification  (r, c accepted)
  -train FILE                TRAIN (positional)
  -test FILE                 --test FILE
  -dim '1,1,8'               --factors 8  (bias and linear terms are always on)
  -iter 100                  --epochs 100  (sweeps for mcmc and als)
  -method sgd|als|mcmc       --solver sgd|als|mcmc  (libFM's default mcmc; sgda: none)
  (mcmc burn-in, samples)    --burnin 5 --kept-samples 195
  -learn_rate 0.01           --learning-rate 0.01
  -regular '0,0.01,0.01'     --l2-w 0.01 --l2-v 0.01  (the bias is not regularised)
  -init_stdev 0.1            --init-std 0.1
  -out pred.txt              --out pred.txt  (with -task c: --proba, libFM's P(y=1))
  -save_model m              --model m.npz
  -meta groups.txt           --meta groups.txt  (group id per feature, for per-group L2)
  -validation FILE           --validation FILE
  -seed 1                    --seed 1
  -verbosity 1               --verbose  (0: --quiet)

examples
  fmnumba fit a9a --test a9a.t --task c --epochs 10 --model a9a.npz --out pred.txt --proba
  fmnumba fit u1.base --task r --test u1.test --item-features u.item --model ml.npz
  fmnumba fit train.libffm --task c --group-by-field --l2-v 0.001,0.01,0.01
"""

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
    if not 1 <= n < 2**63:
        raise argparse.ArgumentTypeError(f"expected a positive integer below 2**63, got "
                                         f"{value!r}")
    return n


def _nonneg_int(value):
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}")
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


def _init_defaults(classes, name):
    """{parameter: default} of class `name`'s __init__ in the parsed module
    (inherited from its first base that defines one)."""
    node = classes[name]
    init = next((f for f in node.body
                 if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
    if init is None:
        base = next(b.id for b in node.bases if isinstance(b, ast.Name) and b.id in classes)
        return _init_defaults(classes, base)
    a = init.args
    pairs = list(zip(a.args[len(a.args) - len(a.defaults):], a.defaults))
    pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
    out = {}
    for arg, d in pairs:
        try:
            out[arg.arg] = ast.literal_eval(d)
        except ValueError:
            out[arg.arg] = ast.unparse(d)
    return out


def estimator_defaults_from_source():
    """FMRegressor's and FMClassifier's defaults, read from the source of
    fmnumba.estimators without importing it (and so without Numba)."""
    import importlib.util
    spec = importlib.util.find_spec("fmnumba.estimators")
    with open(spec.origin, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    return _init_defaults(classes, "FMRegressor"), _init_defaults(classes, "FMClassifier")


def _estimator_defaults():
    """Each hyperparameter's default as --help shows it (per task where the
    regressor's and the classifier's differ)."""
    try:
        reg, clf = estimator_defaults_from_source()
    except (OSError, SyntaxError, StopIteration, KeyError, AttributeError):
        from ..estimators import FMClassifier, FMRegressor
        reg, clf = FMRegressor().get_params(), FMClassifier().get_params()
    return {k: v if k not in clf or clf[k] == v else f"{v} for regression, {clf[k]} for classification"
            for k, v in reg.items()}


# ---------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------

def _add_format(p):
    p.add_argument("--format", choices=("auto", *FORMAT_ALIASES), default=None,
                   help="input format (default: the one recorded with the model, else "
                        "auto-detected: a:b:c tokens = libffm, a:b = libsvm/libFM, "
                        "delimited columns = ratings)")


def _add_n_jobs(p, help="threads"):
    p.add_argument("--n-jobs", "-j", type=_n_jobs, default=None, help=help)


def _add_stdout_option(p):
    p.add_argument("-o", "--out", metavar="FILE", default="-",
                   help="output file (default '-' = stdout)")


def _add_verbosity(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--verbose", "-v", dest="verbose", action="store_const", const=1,
                   default=None, help="show a progress bar on stderr (default when "
                                      "stderr is a terminal)")
    g.add_argument("--quiet", "-q", dest="verbose", action="store_const", const=0,
                   help="no progress bar")


def _add_fit(sub, d):
    p = sub.add_parser("fit", help="train a model on a libsvm/libFM, libffm or ratings file",
                       description="Train an FMRegressor or FMClassifier on TRAIN; optionally "
                                   "report metrics on, and write predictions for, --test.",
                       epilog=FIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("train", metavar="TRAIN", help="training data file")
    p.add_argument("--task", "-t", type=_task, required=True,
                   help="regression (r) or classification (c, binary labels)")
    p.add_argument("--test", metavar="TEST", help="test data file: metrics are printed, its "
                   "loss is recorded per epoch (validation curve) and --out predicts it")
    _add_format(p)
    p.add_argument("--factors", "-k", type=_positive_int, default=None,
                   help=f"number of latent factors k (default {d['n_factors']})")
    p.add_argument("--epochs", "--iter", type=_positive_int, default=None,
                   help="number of passes over TRAIN (default 30 epochs; 200 sweeps for "
                        "mcmc, 100 for als)")
    p.add_argument("--loss", choices=("squared", "logistic", "hinge"), default=None,
                   help="loss (default: squared for regression, logistic for classification)")
    p.add_argument("--solver", "--method", choices=("adam", "adamw", "sgd", "mcmc", "als"),
                   default=None,
                   help="optimiser (default adam; adamw: Adam with decoupled weight decay, "
                        "the L2 strengths as decay rates; mcmc: Bayesian FM by Gibbs "
                        "sampling, no learning rate or L2 to set; als: alternating least "
                        "squares, regression only)")
    p.add_argument("--burnin", type=_nonneg_int, default=None,
                   help="mcmc: sweeps before samples are kept (default 5)")
    p.add_argument("--kept-samples", type=_positive_int, default=None,
                   help="mcmc: posterior samples kept and averaged by predict (default: "
                        "every sweep after burn-in, at most 1 GiB of them)")
    p.add_argument("--learning-rate", "--lr", type=_positive_float, default=None,
                   help=f"step size (default {d['learning_rate']})")
    p.add_argument("--lr-decay", type=_nonneg_float, default=None,
                   help=f"epoch e uses LR / (1 + LR_DECAY·e) (default {d['lr_decay']})")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help=f"mini-batch size for adam (default {d['batch_size']})")
    p.add_argument("--l2-w", type=_l2, default=None, metavar="L2",
                   help=f"L2 strength on linear weights (default {d['l2_reg_w']}); a comma "
                        "list gives one per group (implies --group-by-field)")
    p.add_argument("--l2-v", type=_l2, default=None, metavar="L2",
                   help=f"L2 strength on factors (default {d['l2_reg_v']}); a comma list "
                        "gives one per group (implies --group-by-field)")
    p.add_argument("--init-std", type=float, default=None,
                   help="standard deviation of the initial factors (default: 0.1 for als, "
                        "0.01 otherwise)")
    p.add_argument("--group-by-field", action="store_true",
                   help="regularise per group: libffm fields, or the user and item blocks "
                        "of a ratings file (group 0 = users, 1 = items)")
    p.add_argument("--early-stopping", action="store_true",
                   help="hold out 10%% of TRAIN and stop when its loss stops improving")
    p.add_argument("--scoring", default=None, metavar="SCORER",
                   help="scikit-learn scorer (e.g. roc_auc, neg_log_loss, "
                        "neg_root_mean_squared_error) recorded per epoch on the held-out "
                        "rows and monitored by --early-stopping instead of the loss")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_n_jobs(p, "threads (default: Numba's default, all cores; -1 = all)")
    p.add_argument("--model", "-m", metavar="PATH",
                   help="write the model here (.npz) plus PATH.encoder.json")
    p.add_argument("--plot", metavar="PNG", help="write the learning curve (train and "
                   "--test loss per epoch) to this image file (needs matplotlib)")
    p.add_argument("--out", "-o", metavar="FILE", help="write predictions for --test, one "
                   "per line ('-' = stdout)")
    p.add_argument("--proba", action="store_true",
                   help="with --out: write P(positive class) instead of labels "
                        "(logistic loss only)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document on stdout (the fit's figures and test "
                        "metrics); every other line goes to stderr")
    _add_verbosity(p)
    _add_fit_side_inputs(p)
    p.set_defaults(func=commands.cmd_fit)


def _add_fit_side_inputs(p):
    """fit's options for side features, feature groups and a validation file."""
    p.add_argument("--validation", metavar="FILE",
                   help="validation file: its loss is recorded per epoch and, with "
                        "--early-stopping, decides when to stop (instead of a 10%% holdout)")
    p.add_argument("--meta", metavar="FILE",
                   help="libFM group file: line j holds the group id of feature j "
                        "(per-group L2 lists then give one strength per group)")
    p.add_argument("--user-features", metavar="FILE",
                   help="ratings input: user attributes, one row per user id (MovieLens "
                        "u.user, or any delimited file with the id in the first column)")
    p.add_argument("--item-features", metavar="FILE",
                   help="ratings input: item attributes, one row per item id (MovieLens "
                        "u.item genres, or any delimited file with the id first)")


def _add_predict(sub):
    p = sub.add_parser("predict", help="write one prediction per line",
                       description="Predict DATA with a saved MODEL; one value per line. "
                                   "Labels in DATA are ignored (any placeholder works).")
    p.add_argument("model", metavar="MODEL", help="model file written by 'fmnumba fit --model'"
                                                  " or estimator.save()")
    p.add_argument("data", metavar="DATA", help="data file")
    _add_stdout_option(p)
    p.add_argument("--proba", action="store_true",
                   help="classifier with logistic loss: write P(positive class)")
    _add_format(p)
    _add_n_jobs(p)
    p.set_defaults(func=commands.cmd_predict)


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="print test metrics of a saved model",
                       description="Score MODEL on labelled DATA: RMSE and MAE for a "
                                   "regressor; AUC, logloss and accuracy for a classifier.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    _add_format(p)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_n_jobs(p)
    p.set_defaults(func=commands.cmd_evaluate)


def _add_recommend(sub):
    p = sub.add_parser("recommend", help="top-N items per user from a ratings model",
                       description="Rank every item for each user with a model trained on "
                                   "a ratings file and write the N best, one line per "
                                   "recommendation: user, rank, item, score (tab-separated).")
    p.add_argument("model", metavar="MODEL", help="model file written by 'fmnumba fit "
                   "--model' on a ratings file (its .encoder.json must lie beside it)")
    p.add_argument("--users", metavar="FILE", help="user ids, one per line ('-' = stdin; "
                   "default: every user the model knows)")
    p.add_argument("-n", type=_positive_int, default=10, help="items per user (default 10)")
    p.add_argument("--exclude", metavar="RATINGS", help="ratings file whose (user, item) "
                   "pairs are not recommended, e.g. the training file")
    p.add_argument("--items", metavar="FILE", help="candidate item ids, one per line "
                   "(default: every item the model knows)")
    _add_stdout_option(p)
    p.add_argument("--json", action="store_true",
                   help="one JSON document: {user: [[item, score], ...]}")
    _add_n_jobs(p)
    p.set_defaults(func=commands.cmd_recommend)


def _add_demo(sub):
    p = sub.add_parser("demo", help="train on synthetic ratings and clicks and print metrics",
                       description="Train an FMRegressor on synthetic ratings and an "
                                   "FMClassifier on synthetic clicks; print test metrics "
                                   "next to a trivial baseline and the best achievable "
                                   "(planted-model) figure, with fit and compile times.")
    _add_n_jobs(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quick", action="store_true", help="20k rows instead of 100k")
    p.set_defaults(func=commands.cmd_demo)


def build_parser():
    """The ``fmnumba`` parser; each command's namespace carries its `func`."""
    parser = _Parser(
        prog="fmnumba",
        description="Factorization Machines on sparse data (Numba kernels).",
        epilog="Run 'fmnumba COMMAND --help' for a command's options. "
               "Exit status: 0 on success, 2 on bad arguments, files or data.")
    parser.add_argument("--version", action="version", version=f"fmnumba {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_fit(sub, _estimator_defaults())
    _add_predict(sub)
    _add_evaluate(sub)
    _add_recommend(sub)
    _add_demo(sub)
    return parser
