"""What the commands print: test metrics and one prediction per line."""
import sys

import numpy as np

from .errors import CLIError


def is_classifier(model):
    return hasattr(model, "classes_")


def metrics(model, X, y):
    """Dict of test metrics: rmse/mae for a regressor; auc, logloss
    (logistic loss only) and accuracy for a classifier; plus n_rows."""
    from sklearn.metrics import log_loss, mean_absolute_error, roc_auc_score
    out = {"n_rows": int(X.shape[0])}
    if X.shape[0] == 0:
        raise CLIError("the data has no rows to evaluate")
    if not is_classifier(model):
        pred = model.predict(X)
        out["rmse"] = float(np.sqrt(np.mean((pred - y) ** 2)))
        out["mae"] = float(mean_absolute_error(y, pred))
        return out
    classes = model.classes_
    known = np.isin(y, classes)
    if not known.all():
        raise CLIError(f"labels in the data ({np.unique(y[~known])[:5].tolist()}) are not the "
                       f"model's classes {classes.tolist()}")
    pos = (y == classes[1])
    d = model.decision_function(X)
    out["auc"] = float(roc_auc_score(pos, d)) if 0 < pos.sum() < pos.size else None
    if model.loss == "logistic":
        p = model.predict_proba(X)[:, 1]
        out["logloss"] = float(log_loss(pos, p, labels=[False, True]))
    out["accuracy"] = float(np.mean(model.predict(X) == y))
    return out


def format_metrics(m):
    """The metrics dict as a two-column table."""
    lines = ["metric     value"]
    for key in ("rmse", "mae", "auc", "logloss", "accuracy", "n_rows"):
        if key in m:
            v = m[key]
            val = "n/a (one class)" if v is None else (f"{v:d}" if isinstance(v, int)
                                                      else f"{v:.4f}")
            lines.append(f"{key:<10} {val}")
    return "\n".join(lines)


def _format_values(values):
    values = np.asarray(values)
    if values.dtype.kind == "f":
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)) \
                and values.size and np.abs(values).max() < 2**53:
            return [str(int(v)) for v in values]
        return [f"{v:.7g}" for v in values]
    return [str(v) for v in values]


def format_value(v):
    """One score as written in predictions and recommendations."""
    return f"{float(v):.7g}"


def write_predictions(values, out):
    """One value per line to the file `out` ('-' or None: stdout)."""
    text = "\n".join(_format_values(values))
    text = text + "\n" if text else text
    if out in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(text)


def predictions(model, X, proba):
    """model.predict(X), or P(positive class) with proba."""
    if proba:
        if not is_classifier(model):
            raise CLIError("--proba is for classifiers; this model is a regressor")
        if model.loss != "logistic":
            raise CLIError(f"--proba needs a classifier trained with the logistic loss "
                           f"(this one uses loss={model.loss!r})")
        return model.predict_proba(X)[:, 1]
    return model.predict(X)
