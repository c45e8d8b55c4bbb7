"""The ``fmnumba`` command line: ``fit``, ``predict``, ``evaluate``,
``recommend`` and ``demo``; libFM's own command lines run too (see
:mod:`fmnumba.cli.libfm`).

Run ``fmnumba COMMAND --help`` for each command's options. Every command
exits with 0 on success and 2, with a one-line message on stderr, on a bad
argument, a missing or malformed file or data the model cannot use.

A model written by ``fmnumba fit --model M.npz`` comes with a JSON sidecar
``M.npz.encoder.json`` recording how the input was encoded, so that
``predict`` and ``evaluate`` map new files onto the same columns (see
:mod:`fmnumba.cli.encoding`).

Modules: ``parser`` (options, argument types, libFM equivalents),
``libfm`` (libFM command lines translated to fit's options),
``commands`` (what each command does), ``encoding`` (reading data files and
the sidecar), ``output`` (metrics and predictions), ``demo``, ``errors``
(exit statuses).
"""
import sys

from .demo import run_demo
from .errors import EXIT_ERROR, CLIError, one_line
from .libfm import LibFMError, is_libfm, translate
from .parser import build_parser

__all__ = ["main", "build_parser", "run_demo", "CLIError"]


def _fit_choices(parser, dest):
    """The choices of fit's option `dest` in `parser`."""
    import argparse
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    fit = sub.choices["fit"]
    return next(tuple(a.choices) for a in fit._actions if a.dest == dest)


def main(argv=None):
    """Console entry point; returns the exit status (0 ok, 2 user error)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if is_libfm(argv):
        try:
            argv, notes = translate(argv, _fit_choices(parser, "solver"))
        except LibFMError as e:
            print(f"fmnumba fit: error: {e}", file=sys.stderr)
            return EXIT_ERROR
        for note in notes:
            print(f"fmnumba fit: note: {note}", file=sys.stderr)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else EXIT_ERROR
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("fmnumba: error: choose a command: fit, predict, evaluate, recommend or demo "
              "(see 'fmnumba --help')", file=sys.stderr)
        return EXIT_ERROR
    prog = f"fmnumba {args.command}"
    try:
        return args.func(args)
    except CLIError as e:
        msg = one_line(e)
    except (ValueError, TypeError, OSError, ImportError, ArithmeticError, MemoryError) as e:
        # readers, estimators and model files report bad input this way (MemoryError:
        # a model too large for this machine, refused before allocation)
        msg = one_line(e)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return EXIT_ERROR
