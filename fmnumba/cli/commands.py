"""The commands: ``fit``, ``predict``, ``evaluate``, ``recommend`` and
``demo``. Each takes the parsed arguments and returns the exit status; user
errors raise CLIError. NumPy, the estimators and the kernels are imported
when a command runs, not when the parser is built."""
import json
import sys
import time

from .errors import EXIT_OK, CLIError

# fit's options that map one to one onto an estimator parameter
_FIT_PARAMS = (("factors", "n_factors"), ("epochs", "max_iter"), ("loss", "loss"),
               ("solver", "solver"), ("learning_rate", "learning_rate"),
               ("lr_decay", "lr_decay"), ("batch_size", "batch_size"),
               ("l2_w", "l2_reg_w"), ("l2_v", "l2_reg_v"), ("init_std", "init_std"),
               ("scoring", "scoring"))


def _verbosity(flag):
    if flag is not None:
        return flag
    try:
        return 1 if sys.stderr.isatty() else 0
    except (AttributeError, ValueError):
        return 0


def _group_params(args, fields, info, n_features):
    """{"groups": [...]} for --meta, --group-by-field or per-group L2 lists,
    else {}."""
    import numpy as np

    from ..readers import load_meta
    per_group = isinstance(args.l2_w, list) or isinstance(args.l2_v, list)
    if args.meta:
        if args.group_by_field:
            raise CLIError("--meta and --group-by-field both define the feature groups; "
                           "give one")
        try:
            groups = load_meta(args.meta, n_features)
        except OSError as e:
            raise CLIError(f"--meta {args.meta}: {e.strerror or e}") from None
        what = f"groups in --meta {args.meta}"
    elif args.group_by_field or per_group:
        if fields is None:
            why = "per-group L2 lists need" if per_group else "--group-by-field needs"
            raise CLIError(f"{why} groups: --meta FILE, libffm input (fields) or a ratings "
                           f"file (user/item blocks); {args.train} is {info['format']}")
        groups = np.where(fields < 0, 0, fields).astype(np.int64)
        what = ("fields" if info["format"] == "libffm"
                else "groups (" + ", ".join(info.get("groups", ("users", "items"))) + ")")
    else:
        return {}
    n_groups = int(groups.max()) + 1 if groups.size else 0
    for opt in ("l2_w", "l2_v"):
        v = getattr(args, opt)
        if isinstance(v, list) and len(v) != n_groups:
            raise CLIError(f"--{opt.replace('_', '-')} has {len(v)} values but "
                           f"{args.train} has {n_groups} {what}")
    # a plain list keeps the parameters JSON-serialisable for the model file
    return {"groups": groups.tolist()}


def cmd_fit(args):
    from ..estimators import FMClassifier, FMRegressor
    from .encoding import read_like, read_train, write_sidecar
    from .output import format_metrics, metrics, predictions, write_predictions

    if args.json and args.out == "-":
        raise CLIError("--json and --out - both write to stdout; write the predictions to "
                       "a file (--out FILE)")
    if args.proba and not args.out:
        raise CLIError("--proba applies to --out; add --out FILE")
    if args.out and not args.test:
        raise CLIError("--out writes predictions for --test; add --test FILE")
    from .paths import check_fit_paths
    check_fit_paths(args)  # before the fit: no output may overwrite an input
    X, y, fields, info = read_train(args.train, args.format, args.user_features,
                                    args.item_features)
    if X.shape[0] == 0:
        raise CLIError(f"TRAIN {args.train}: no data rows")
    cls = FMRegressor if args.task == "regression" else FMClassifier
    params = {"random_state": args.seed, "n_jobs": args.n_jobs,
              "verbose": _verbosity(args.verbose)}
    params.update({name: getattr(args, opt) for opt, name in _FIT_PARAMS
                   if getattr(args, opt) is not None})
    # without --early-stopping the --test rows are only reported, never monitored
    params["early_stopping"] = bool(args.early_stopping)
    params.update(_group_params(args, fields, info, X.shape[1]))
    Xte = yte = None
    if args.test:
        Xte, yte = read_like(args.test, args.format, info, X.shape[1])
    eval_set = None
    if args.validation:
        eval_set = read_like(args.validation, args.format, info, X.shape[1])
        if eval_set[0].shape[0] == 0:
            raise CLIError(f"--validation {args.validation}: no data rows")
    elif Xte is not None and not args.early_stopping and Xte.shape[0] > 0:
        eval_set = (Xte, yte)
    model = cls(**params)
    # stdout carries only the predictions (--out -) or the JSON document
    report = sys.stderr if (args.out == "-" or args.json) else sys.stdout

    def say(*parts):
        print(*parts, file=report)

    t0 = time.perf_counter()
    model.fit(X, y, eval_set=eval_set)
    fit_s = time.perf_counter() - t0
    epochs = f"{model.n_iter_} epoch{'' if model.n_iter_ == 1 else 's'}"
    train_loss = float(model.history_["train_loss"][-1])
    say(f"fitted {cls.__name__} (k={model.n_factors}, loss={model.loss}, "
        f"solver={model.solver}) on {X.shape[0]} rows x {X.shape[1]} features: "
        f"{epochs} in {fit_s:.2f} s, final train loss {train_loss:.4f}")
    doc = {"estimator": cls.__name__, "task": args.task, "n_factors": int(model.n_factors),
           "loss": model.loss, "solver": model.solver, "n_rows": int(X.shape[0]),
           "n_features": int(X.shape[1]), "epochs": int(model.n_iter_),
           "fit_seconds": fit_s, "train_loss": train_loss, "test": None, "model": None,
           "predictions": None}
    if Xte is not None:
        m = metrics(model, Xte, yte)
        doc["test"] = m
        if not args.json:
            say(f"test ({args.test}):")
            say(format_metrics(m))
    if args.model:
        model.save(args.model)
        side = write_sidecar(args.model, info, args.task)
        doc["model"] = args.model
        say(f"model written to {args.model} (input encoding in {side})")
    if args.plot:
        from ..plot import save_learning_curve
        save_learning_curve(model, args.plot)
        say(f"learning curve written to {args.plot}")
    if args.out:
        write_predictions(predictions(model, Xte, args.proba), args.out)
        doc["predictions"] = args.out
        if args.out != "-":
            say(f"{Xte.shape[0]} predictions written to {args.out}")
    if args.json:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()
    return EXIT_OK


def _load_for(args):
    """The saved model (with --n-jobs applied), and args.data read like its
    training file: (model, X, y)."""
    from .encoding import load_model, read_like
    model, info = load_model(args.model)
    if args.n_jobs is not None:
        model.set_params(n_jobs=args.n_jobs)
    X, y = read_like(args.data, args.format, info, model.n_features_in_)
    return model, X, y


def cmd_predict(args):
    from .output import predictions, write_predictions
    from .paths import check_predict_paths
    check_predict_paths(args)
    model, X, _ = _load_for(args)
    write_predictions(predictions(model, X, args.proba), args.out)
    return EXIT_OK


def cmd_evaluate(args):
    from .output import format_metrics, metrics
    model, X, y = _load_for(args)
    m = metrics(model, X, y)
    if args.json:
        print(json.dumps(m))
    else:
        print(f"{type(model).__name__} on {args.data}:")
        print(format_metrics(m))
    return EXIT_OK


def _read_ids(path, what):
    """Ids, one per line (first field; blank and # lines skipped), from a
    file or '-' (stdin)."""
    import os
    if path == "-":
        lines = sys.stdin.read().splitlines()
    else:
        if not os.path.isfile(path):
            raise CLIError(f"{what} {path}: no such file")
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    ids = [ln.split()[0] for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not ids:
        raise CLIError(f"{what} {path}: no ids")
    return ids


def cmd_recommend(args):
    from ..readers import load_ratings
    from ..recommend import recommend
    from .encoding import encoder_from_info, load_model
    from .output import format_value

    from .paths import check_recommend_paths
    check_recommend_paths(args)
    model, info = load_model(args.model)
    if info is None or info.get("format") != "ratings":
        raise CLIError(f"MODEL {args.model}: recommend needs a model trained on a ratings "
                       "file, with its encoder sidecar (MODEL.encoder.json) beside it")
    enc = encoder_from_info(info)
    users = _read_ids(args.users, "--users") if args.users else list(enc.user_index_)
    items = _read_ids(args.items, "--items") if args.items else None
    exclude = None
    if args.exclude:
        eu, ei, _ = load_ratings(args.exclude, id_type=str)
        exclude = (eu, ei)
    rec = recommend(model, enc, users, n=args.n, exclude=exclude, items=items,
                    n_jobs=args.n_jobs)
    if args.json:
        text = json.dumps({str(u): [[str(i), float(s)] for i, s in zip(row, srow)]
                           for u, row, srow in zip(rec.users, rec.items, rec.scores)}) + "\n"
    else:
        text = "".join(f"{u}\t{r + 1}\t{i}\t{format_value(s)}\n"
                       for u, row, srow in zip(rec.users, rec.items, rec.scores)
                       for r, (i, s) in enumerate(zip(row, srow)))
    if args.out in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    return EXIT_OK


def cmd_demo(args):
    from .demo import run_demo
    run_demo(n_jobs=args.n_jobs, seed=args.seed, quick=args.quick)
    return EXIT_OK
