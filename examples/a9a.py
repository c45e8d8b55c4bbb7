#!/usr/bin/env python
"""Binary classification on a9a (UCI Adult, libsvm format) with an FMClassifier.

Reads ``a9a`` and ``a9a.t`` from ../shared/data next to the repository
(or --data-dir) and prints test AUC and logloss next to the base rate::

    python examples/a9a.py
    python examples/a9a.py --quick            # 5,000 training rows, 5 epochs
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def build_parser():
    """The script's options (each with its help text)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR,
                        help="folder holding a9a and a9a.t (default: ../shared/data "
                             "next to the repository)")
    parser.add_argument("--quick", action="store_true", help="5,000 training rows, 5 epochs")
    parser.add_argument("--max-rows", type=int, default=None,
                        help="use only this many training rows")
    parser.add_argument("--factors", type=int, default=8, help="latent factors k (default 8)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs (default 10; 5 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="threads (default: all cores)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    train, test = args.data_dir / "a9a", args.data_dir / "a9a.t"
    if not train.exists() or not test.exists():
        print(f"a9a.py: {train} or {test} not found; pass --data-dir", file=sys.stderr)
        return 2

    from sklearn.metrics import log_loss, roc_auc_score

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
    t0 = time.perf_counter()
    model.fit(Xtr, ytr)
    fit_s = time.perf_counter() - t0
    p = model.predict_proba(Xte)[:, 1]
    pos = yte == model.classes_[1]
    auc, ll = roc_auc_score(pos, p), log_loss(pos, p)
    base = log_loss(pos, np.full(pos.shape, np.mean(ytr == model.classes_[1])))
    print(f"{Xtr.shape[0]:,} training rows, {Xte.shape[0]:,} test rows, {Xtr.shape[1]} features")
    print(f"test AUC: {auc:.4f} logloss: {ll:.4f} (base rate logloss {base:.4f}) "
          f"fit {fit_s:.2f} s, {model.n_iter_} epochs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
