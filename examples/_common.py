"""What the example scripts share: their common options, timing and metrics."""
import argparse
import time
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_parser(doc):
    """An argument parser described by the first paragraph of the script's docstring."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0])


def add_data_dir(parser, holding):
    """--data-dir: the folder holding the files named in ``holding``."""
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR,
                        help=f"folder holding {holding} (default: ../shared/data "
                             "next to the repository)")


def add_model_options(parser, factors, epochs_help):
    """--factors (default ``factors``) and --epochs (help text ``epochs_help``)."""
    parser.add_argument("--factors", type=int, default=factors,
                        help=f"latent factors k (default {factors})")
    parser.add_argument("--epochs", type=int, default=None, help=epochs_help)


def add_run_options(parser):
    """--seed and --n-jobs."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="threads (default: all cores)")


def timed_fit(model, *args, **kwargs):
    """Fit ``model`` and return the seconds it took."""
    t0 = time.perf_counter()
    model.fit(*args, **kwargs)
    return time.perf_counter() - t0


def binary_scores(model, Xte, yte, ytr):
    """Test AUC, logloss and the base-rate logloss of a fitted classifier.

    AUC is NaN where the test labels hold one class only.
    """
    from sklearn.metrics import log_loss, roc_auc_score

    p = model.predict_proba(Xte)[:, 1]
    pos = yte == model.classes_[1]
    auc = roc_auc_score(pos, p) if 0 < pos.sum() < pos.size else float("nan")
    ll = log_loss(pos, p, labels=[False, True])
    base = log_loss(pos, np.full(pos.shape, np.mean(ytr == model.classes_[1])),
                    labels=[False, True])
    return auc, ll, base


def report_fit(model, fit_s):
    """The tail of the metric line: fit time and epochs run."""
    return f"fit {fit_s:.2f} s, {model.n_iter_} epochs"
