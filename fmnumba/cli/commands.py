"""The commands: ``fit``, ``predict``, ``evaluate`` and ``demo``. Each takes
the parsed arguments and returns the exit status; user errors raise CLIError."""
import json
import sys
import time

import numpy as np

from ..estimators import FMClassifier, FMRegressor
from .demo import run_demo
from .encoding import load_model, read_like, read_train, write_sidecar
from .errors import EXIT_OK, CLIError
from .output import format_metrics, metrics, predictions, write_predictions

# fit's options that map one to one onto an estimator parameter
_FIT_PARAMS = (("factors", "n_factors"), ("epochs", "max_iter"), ("loss", "loss"),
               ("solver", "solver"), ("learning_rate", "learning_rate"),
               ("lr_decay", "lr_decay"), ("batch_size", "batch_size"),
               ("l2_w", "l2_reg_w"), ("l2_v", "l2_reg_v"), ("init_std", "init_std"),
               ("burnin", "n_burnin"), ("kept_samples", "n_kept_samples"))
_NO_EVAL_SET = ("mcmc", "als")  # solvers that record no validation curve


def _verbosity(flag):
    if flag is not None:
        return flag
    try:
        return 1 if sys.stderr.isatty() else 0
    except (AttributeError, ValueError):
        return 0


def _group_params(args, fields, info):
    """{"groups": [...]} for --group-by-field or per-group L2 lists, else {}."""
    per_group = isinstance(args.l2_w, list) or isinstance(args.l2_v, list)
    if not (args.group_by_field or per_group):
        return {}
    if fields is None:
        why = "per-group L2 lists need" if per_group else "--group-by-field needs"
        raise CLIError(f"{why} groups: libffm input (fields) or a ratings file "
                       f"(user/item blocks); {args.train} is {info['format']}")
    groups = np.where(fields < 0, 0, fields).astype(np.int64)
    n_groups = int(groups.max()) + 1 if groups.size else 0
    for opt in ("l2_w", "l2_v"):
        v = getattr(args, opt)
        if isinstance(v, list) and len(v) != n_groups:
            raise CLIError(f"--{opt.replace('_', '-')} has {len(v)} values but "
                           f"{args.train} has {n_groups} groups "
                           f"({'fields' if info['format'] == 'libffm' else 'users, items'})")
    # a plain list keeps the parameters JSON-serialisable for the model file
    return {"groups": groups.tolist()}


def cmd_fit(args):
    X, y, fields, info = read_train(args.train, args.format)
    if X.shape[0] == 0:
        raise CLIError(f"TRAIN {args.train}: no data rows")
    cls = FMRegressor if args.task == "regression" else FMClassifier
    params = {"random_state": args.seed, "n_jobs": args.n_jobs,
              "verbose": _verbosity(args.verbose)}
    params.update({name: getattr(args, opt) for opt, name in _FIT_PARAMS
                   if getattr(args, opt) is not None})
    if args.early_stopping:
        params["early_stopping"] = True
    params.update(_group_params(args, fields, info))
    if args.proba and not args.out:
        raise CLIError("--proba applies to --out; add --out FILE")
    if args.out and not args.test:
        raise CLIError("--out writes predictions for --test; add --test FILE")
    Xte = yte = None
    if args.test:
        Xte, yte = read_like(args.test, args.format, info, X.shape[1])
    model = cls(**params)
    eval_set = None
    if (Xte is not None and not args.early_stopping and Xte.shape[0] > 0
            and model.solver not in _NO_EVAL_SET):
        eval_set = (Xte, yte)
    # with --out - the predictions own stdout; the report goes to stderr
    report = sys.stderr if args.out == "-" else sys.stdout

    def say(*parts):
        print(*parts, file=report)

    t0 = time.perf_counter()
    model.fit(X, y, eval_set=eval_set)
    fit_s = time.perf_counter() - t0
    say(f"fitted {cls.__name__} (k={model.n_factors}, loss={model.loss}, "
        f"solver={model.solver}) on {X.shape[0]} rows x {X.shape[1]} features: "
        f"{model.n_iter_} {'sweeps' if model.solver in _NO_EVAL_SET else 'epochs'} in "
        f"{fit_s:.2f} s, final train loss "
        f"{model.history_['train_loss'][-1]:.4f}")
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
        from ..plot import save_learning_curve
        save_learning_curve(model, args.plot)
        say(f"learning curve written to {args.plot}")
    if args.out:
        write_predictions(predictions(model, Xte, args.proba), args.out)
        if args.out != "-":
            say(f"{Xte.shape[0]} predictions written to {args.out}")
    return EXIT_OK


def _load_for(args):
    """The saved model (with --n-jobs applied), and args.data read like its
    training file: (model, X, y)."""
    model, info = load_model(args.model)
    if args.n_jobs is not None:
        model.set_params(n_jobs=args.n_jobs)
    X, y = read_like(args.data, args.format, info, model.n_features_in_)
    return model, X, y


def cmd_predict(args):
    model, X, _ = _load_for(args)
    write_predictions(predictions(model, X, args.proba), args.out)
    return EXIT_OK


def cmd_evaluate(args):
    model, X, y = _load_for(args)
    m = metrics(model, X, y)
    if args.json:
        print(json.dumps(m))
    else:
        print(f"{type(model).__name__} on {args.data}:")
        print(format_metrics(m))
    return EXIT_OK


def cmd_demo(args):
    run_demo(n_jobs=args.n_jobs, seed=args.seed, quick=args.quick)
    return EXIT_OK
