#!/usr/bin/env python
"""Click prediction on a Criteo sample (libffm format) with an FMClassifier.

Reads ``criteo_small_train.libffm`` and ``criteo_small_test.libffm`` (200
rows each, the xLearn demo sample) from ../shared/data next to the
repository, or from --data-dir, and prints test AUC and logloss. With
--group-by-field each libffm field gets its own L2 strength group::

    python examples/criteo.py
    python examples/criteo.py --group-by-field --l2-v 0.01
"""
import sys

import numpy as np
from _common import (add_data_dir, add_model_options, add_run_options, binary_scores,
                     make_parser, report_fit, timed_fit)


def build_parser():
    """The script's options (each with its help text)."""
    parser = make_parser(__doc__)
    add_data_dir(parser, "criteo_small_{train,test}.libffm")
    parser.add_argument("--quick", action="store_true", help="3 epochs")
    add_model_options(parser, 4, "epochs (default 5; 3 with --quick)")
    parser.add_argument("--l2-v", type=float, default=1e-3, help="L2 on factors (1e-3)")
    parser.add_argument("--group-by-field", action="store_true",
                        help="one L2 group per libffm field (same strength for each)")
    add_run_options(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    train = args.data_dir / "criteo_small_train.libffm"
    test = args.data_dir / "criteo_small_test.libffm"
    if not train.exists() or not test.exists():
        print(f"criteo.py: {train} or {test} not found; pass --data-dir", file=sys.stderr)
        return 2

    from fmnumba import FMClassifier
    from fmnumba.readers import load_libffm

    Xtr, ytr, fields = load_libffm(train)
    Xte, yte, _ = load_libffm(test)
    # hashed features seen only in the test file have no trained parameters:
    # drop them by cutting the test matrix to the training columns
    n = Xtr.shape[1]
    if Xte.shape[1] > n:
        Xte = Xte[:, :n]
    elif Xte.shape[1] < n:
        Xte.resize(Xte.shape[0], n)
    groups = None
    if args.group_by_field:
        groups = np.where(fields < 0, 0, fields)
    epochs = args.epochs or (3 if args.quick else 5)
    model = FMClassifier(n_factors=args.factors, max_iter=epochs, batch_size=32,
                         l2_reg_v=args.l2_v, groups=groups, random_state=args.seed,
                         n_jobs=args.n_jobs)
    fit_s = timed_fit(model, Xtr, ytr)
    auc, ll, base = binary_scores(model, Xte, yte, ytr)
    print(f"{Xtr.shape[0]} training rows, {Xte.shape[0]} test rows, {n} features, "
          f"{len(set(fields[fields >= 0].tolist()))} fields")
    print(f"test AUC: {auc:.4f} logloss: {ll:.4f} (base rate logloss {base:.4f}) "
          + report_fit(model, fit_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
