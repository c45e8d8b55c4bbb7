#!/usr/bin/env python
"""Binary classification on a9a (UCI Adult, libsvm format) with an FMClassifier.

Reads ``a9a`` and ``a9a.t`` from ../shared/data next to the repository
(or --data-dir) and prints test AUC and logloss next to the base rate::

    python examples/a9a.py
    python examples/a9a.py --quick            # 5,000 training rows, 5 epochs
"""
import sys

from _common import (add_data_dir, add_model_options, add_run_options, binary_scores,
                     make_parser, report_fit, timed_fit)


def build_parser():
    """The script's options (each with its help text)."""
    parser = make_parser(__doc__)
    add_data_dir(parser, "a9a and a9a.t")
    parser.add_argument("--quick", action="store_true", help="5,000 training rows, 5 epochs")
    parser.add_argument("--max-rows", type=int, default=None,
                        help="use only this many training rows")
    add_model_options(parser, 8, "epochs (default 10; 5 with --quick)")
    add_run_options(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    train, test = args.data_dir / "a9a", args.data_dir / "a9a.t"
    if not train.exists() or not test.exists():
        print(f"a9a.py: {train} or {test} not found; pass --data-dir", file=sys.stderr)
        return 2

    from fmnumba import FMClassifier
    from fmnumba.readers import load_libsvm

    # a9a is one-based; say so for both files so their columns line up
    Xtr, ytr = load_libsvm(train, zero_based=False)
    Xte, yte = load_libsvm(test, zero_based=False, n_features=max(Xtr.shape[1], 123))
    if Xtr.shape[1] < Xte.shape[1]:
        Xtr.resize(Xtr.shape[0], Xte.shape[1])
    n_rows = args.max_rows or (5000 if args.quick else None)
    if n_rows:
        Xtr, ytr = Xtr[:n_rows], ytr[:n_rows]
    epochs = args.epochs or (5 if args.quick else 10)
    model = FMClassifier(n_factors=args.factors, max_iter=epochs, random_state=args.seed,
                         n_jobs=args.n_jobs)
    fit_s = timed_fit(model, Xtr, ytr)
    auc, ll, base = binary_scores(model, Xte, yte, ytr)
    print(f"{Xtr.shape[0]:,} training rows, {Xte.shape[0]:,} test rows, {Xtr.shape[1]} features")
    print(f"test AUC: {auc:.4f} logloss: {ll:.4f} (base rate logloss {base:.4f}) "
          + report_fit(model, fit_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
