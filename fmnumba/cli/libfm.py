"""libFM's command line, run as it is written: ``fmnumba fit -task r -train
a.libfm -test b.libfm -dim '1,1,8' -iter 100 -out pred.txt`` (or the same
without ``fit``) is translated to ``fmnumba fit``'s options before parsing.

A command line is libFM's when it starts with ``fit`` or a libFM flag and
holds one of libFM's single-dash long flags (``-task``, ``-train``, ...).
fmnumba's own options may be mixed in (``--n-jobs 2``). A libFM flag with
no counterpart is refused with a message naming it.
"""

# libFM flag -> fmnumba option (flags handled specially map to None)
FLAGS = {
    "-task": None, "-train": None, "-test": "--test", "-dim": None, "-iter": "--epochs",
    "-method": None, "-learn_rate": "--learning-rate", "-regular": None,
    "-init_stdev": "--init-std", "-out": "--out", "-meta": "--meta",
    "-validation": "--validation", "-seed": "--seed", "-verbosity": None,
    "-save_model": "--model",
}

# libFM flags without a counterpart, and what to do instead
NO_COUNTERPART = {
    "-relation": "relational (block structure) data is not supported; join the relation's "
                 "features into the design matrix, or give them as --user-features / "
                 "--item-features of a ratings file",
    "-load_model": "to use a saved model run 'fmnumba predict MODEL DATA'",
    "-rlog": "per-epoch losses are in the model's history_; use --plot PNG or --json",
    "-cache_size": "fmnumba reads the data into memory",
    "-help": "run 'fmnumba fit --help' (it lists the libFM equivalents)",
}

_METHODS = {"sgd": "sgd", "als": "als", "mcmc": "mcmc"}


class LibFMError(Exception):
    """A libFM command line that cannot be translated (exit status 2)."""


def is_libfm(argv):
    """Whether `argv` (without the program name) is a libFM command line."""
    if not argv:
        return False
    start = 1 if argv[0] == "fit" else 0
    if start == 0 and argv[0] not in FLAGS and argv[0] not in NO_COUNTERPART:
        return False
    return any(t in FLAGS or t in NO_COUNTERPART for t in argv[start:])


def _is_number(tok):
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _floats(flag, value, n_ok):
    try:
        vals = [float(p) for p in value.split(",")]
    except ValueError:
        raise LibFMError(f"{flag} {value!r}: expected comma-separated numbers") from None
    if len(vals) not in n_ok:
        raise LibFMError(f"{flag} {value!r}: expected {' or '.join(map(str, n_ok))} values")
    return vals


def translate(argv, solvers):
    """(fmnumba fit argv, notes): `argv` a libFM command line (see
    :func:`is_libfm`), `solvers` the --solver choices of this version."""
    args = list(argv[1:] if argv and argv[0] == "fit" else argv)
    opts, passthrough, notes = {}, [], []
    i = 0
    while i < len(args):
        tok = args[i]
        if tok in NO_COUNTERPART:
            raise LibFMError(f"libFM flag {tok} has no counterpart in fmnumba: "
                             f"{NO_COUNTERPART[tok]}")
        if tok in FLAGS:
            if i + 1 >= len(args):
                raise LibFMError(f"libFM flag {tok} needs a value")
            if tok in opts:
                raise LibFMError(f"libFM flag {tok} is given twice")
            opts[tok] = args[i + 1]
            i += 2
            continue
        if tok.startswith("-") and not tok.startswith("--") and len(tok) > 2 \
                and not _is_number(tok):
            raise LibFMError(f"unknown libFM flag {tok} (libFM's flags: "
                             f"{', '.join(sorted(FLAGS))}; or use fmnumba's --options)")
        passthrough.append(tok)
        i += 1

    if "-train" not in opts:
        raise LibFMError("a libFM command line needs -train FILE")
    if "-task" not in opts:
        raise LibFMError("a libFM command line needs -task r (regression) or -task c "
                         "(classification)")
    task = opts["-task"].lower()
    if task not in ("r", "c"):
        raise LibFMError(f"-task {opts['-task']!r}: expected r (regression) or c "
                         "(classification)")
    out = ["fit", opts["-train"], "--task", "regression" if task == "r" else "classification"]
    for flag, target in FLAGS.items():
        if target is not None and flag in opts:
            out += [target, opts[flag]]
    if "-dim" in opts:
        try:
            k0, k1, k = (int(p) for p in opts["-dim"].split(","))
        except ValueError:
            raise LibFMError(f"-dim {opts['-dim']!r}: expected 'k0,k1,k' (e.g. '1,1,8')") \
                from None
        if (k0, k1) != (1, 1):
            raise LibFMError(f"-dim {opts['-dim']!r}: fmnumba always fits the bias and the "
                             "linear terms; use -dim '1,1,k'")
        if k < 1:
            raise LibFMError(f"-dim {opts['-dim']!r}: k must be >= 1 (a model without "
                             "factors has no counterpart)")
        out += ["--factors", str(k)]
    method = opts.get("-method")
    if method is None:
        if "mcmc" in solvers:
            out += ["--solver", "mcmc"]
        else:
            notes.append("libFM's default -method mcmc is not available in this version; "
                         "training with fmnumba's default solver (give -method sgd to "
                         "choose SGD)")
    elif method.lower() == "sgda":
        raise LibFMError("libFM flag -method sgda (SGD with adaptive regularisation) has no "
                         "counterpart; use -method sgd, or --solver adam with --validation "
                         "FILE --early-stopping")
    elif method.lower() not in _METHODS:
        raise LibFMError(f"-method {method!r}: expected sgd, sgda, als or mcmc")
    elif _METHODS[method.lower()] not in solvers:
        raise LibFMError(f"-method {method}: the {method.upper()} solver is not available "
                         f"in this version of fmnumba (solvers: {', '.join(solvers)}); use "
                         "-method sgd or --solver adam")
    else:
        out += ["--solver", _METHODS[method.lower()]]
    if "-regular" in opts:
        vals = _floats("-regular", opts["-regular"], (1, 3))
        r0, rw, rv = vals * 3 if len(vals) == 1 else vals
        if r0 != 0:
            notes.append(f"-regular: the bias w0 is not regularised in fmnumba; r0={r0:g} "
                         "is ignored")
        out += ["--l2-w", repr(rw), "--l2-v", repr(rv)]
    if "-verbosity" in opts:
        try:
            level = int(opts["-verbosity"])
        except ValueError:
            raise LibFMError(f"-verbosity {opts['-verbosity']!r}: expected an integer") \
                from None
        out.append("--verbose" if level > 0 else "--quiet")
    if "-out" in opts and task == "c":
        out.append("--proba")  # libFM writes P(y = 1) for classification
    return out + passthrough, notes
