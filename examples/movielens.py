#!/usr/bin/env python
"""Rating prediction on MovieLens with an FMRegressor (one-hot user + item).

MovieLens may not be redistributed, so the file is not shipped: download
ml-100k from https://grouplens.org/datasets/movielens/ and pass the path of
its ``u.data`` (tab-separated ``user item rating timestamp``)::

    python examples/movielens.py path/to/ml-100k/u.data
    python examples/movielens.py path/to/u.data --quick

Any ``user item rating`` file that fmnumba.readers.load_ratings reads works
(``::``, comma or tab separated; ml-1m's ratings.dat included).
"""
import sys

import numpy as np
from _common import add_model_options, add_run_options, make_parser, report_fit, timed_fit


def build_parser():
    """The script's options (each with its help text)."""
    parser = make_parser(__doc__)
    parser.add_argument("path", nargs="?", help="MovieLens u.data (or ratings.dat / CSV)")
    parser.add_argument("--quick", action="store_true", help="5 epochs instead of 30")
    add_model_options(parser, 8, "epochs (default 30; 5 with --quick)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="held-out share (0.2)")
    add_run_options(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.path is None:
        print("movielens.py: no ratings file given. MovieLens cannot be redistributed: "
              "download ml-100k from https://grouplens.org/datasets/movielens/ and run "
              "'python examples/movielens.py path/to/u.data'", file=sys.stderr)
        return 2

    from fmnumba import FMRegressor
    from fmnumba.readers import load_movielens

    try:
        X, y, encoder = load_movielens(args.path)
    except (OSError, ValueError) as e:
        print(f"movielens.py: error: {e}", file=sys.stderr)
        return 2
    print(f"{X.shape[0]:,} ratings, {encoder.n_users_:,} users, {encoder.n_items_:,} items")
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(X.shape[0])
    n_test = int(round(args.test_fraction * X.shape[0]))
    te, tr = perm[:n_test], perm[n_test:]
    epochs = args.epochs or (5 if args.quick else 30)
    model = FMRegressor(n_factors=args.factors, max_iter=epochs, learning_rate=0.003,
                        early_stopping=False,  # the test rows are reported, not monitored
                        random_state=args.seed, n_jobs=args.n_jobs)
    fit_s = timed_fit(model, X[tr], y[tr], eval_set=(X[te], y[te]))
    pred = np.clip(model.predict(X[te]), y.min(), y.max())
    rmse = float(np.sqrt(np.mean((pred - y[te]) ** 2)))
    base = float(np.sqrt(np.mean((y[tr].mean() - y[te]) ** 2)))
    print(f"test RMSE: {rmse:.4f} (global mean: {base:.4f}) "
          + report_fit(model, fit_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
