"""Plots of a fitted model's training history (needs matplotlib: the `plot` extra).

matplotlib is imported only when a function here is called, so importing
fmnumba never needs it.
"""

_LOSS_NAMES = {"squared": "squared loss (½(ŷ − y)²)", "logistic": "logistic loss",
               "hinge": "hinge loss"}


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "fmnumba.plot needs matplotlib, which is not installed; install the "
            "'plot' extra: pip install 'fmnumba[plot]'") from e


def _history(model):
    hist = getattr(model, "history_", None)
    if not isinstance(hist, dict) or not hist.get("train_loss"):
        raise ValueError(f"{type(model).__name__} has no training history; "
                         "call fit(X, y) before plotting its learning curve.")
    return hist


def learning_curve(model, ax=None, *, x="epoch", log_y=False):
    """Draw the training loss (and the validation loss, when fit had an
    eval_set or early_stopping) per epoch from ``model.history_``.

    Parameters
    ----------
    model : fitted FMRegressor or FMClassifier
    ax : matplotlib Axes, optional
        Axes to draw on; a new figure is made with pyplot when None.
    x : {"epoch", "time"}
        Horizontal axis: the epoch number, or the cumulative training time
        in seconds (``history_["time_s"]``).
    log_y : bool
        Logarithmic loss axis.

    Returns
    -------
    The matplotlib Axes.
    """
    _require_matplotlib()
    hist = _history(model)
    if x not in ("epoch", "time"):
        raise ValueError(f"x={x!r}; choose 'epoch' or 'time'.")
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(6, 4))
    train = hist["train_loss"]
    if x == "epoch":
        from matplotlib.ticker import MaxNLocator
        xs = list(range(1, len(train) + 1))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        xs = list(hist["time_s"][:len(train)])
        ax.set_xlabel("training time (s)")
    ax.plot(xs, train, marker="o", markersize=3, label="train")
    val = hist.get("val_loss") or []
    if val:
        ax.plot(xs[:len(val)], val, marker="s", markersize=3, label="validation")
    loss = getattr(model, "loss", None)
    ax.set_ylabel(_LOSS_NAMES.get(loss, "loss"))
    if log_y:
        ax.set_yscale("log")
    ax.set_title(f"{type(model).__name__} learning curve")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return ax


def save_learning_curve(model, path, *, x="epoch", dpi=100):
    """Write :func:`learning_curve` to an image file (PNG, SVG, PDF... from
    the extension) without pyplot or a display (Agg canvas)."""
    _require_matplotlib()
    _history(model)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    learning_curve(model, ax=ax, x=x)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
