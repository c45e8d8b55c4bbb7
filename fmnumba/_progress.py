"""Progress of a fit (verbose=1): rows trained, rate and ETA, and the last
epoch's figures in the units the user reads (RMSE for squared loss,
logloss, the scorer's value when `scoring` is set).

On a terminal it is a tqdm bar that advances per chunk of rows; elsewhere
(a file, a CI log) it writes plain lines, at most one per `interval`
seconds plus one per finished fit, formatted by tqdm's format_meter.
"""
import math
import sys
import time

from .losses import SQUARED

_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} rows " \
              "[{elapsed}<{remaining}, {rate_fmt}{postfix}]"
_LINE_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} rows " \
               "[{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def loss_figure(loss_code, value):
    """(name, value) of a mean loss in the units the user reads: squared
    loss ½·(ŷ − y)² is shown as RMSE = √(2·loss); others as they are."""
    if value is None or not math.isfinite(value):
        return None
    if loss_code == SQUARED:
        return "rmse", math.sqrt(max(2.0 * value, 0.0))
    return {1: "logloss", 2: "hinge"}.get(loss_code, "loss"), value


def score_figure(name, score):
    """(name, value) of a scorer's result: 'neg_…' scorers are shown positive."""
    if score is None:
        return None
    name = name if isinstance(name, str) else "score"
    if name.startswith("neg_"):
        return name[4:], -score
    return name, score


class Progress:
    """Rows trained over `total_rows` (n_rows × max_iter)."""

    def __init__(self, total_rows, desc="fmnumba fit", file=None, interval=10.0):
        self.file = sys.stderr if file is None else file
        self.total = int(total_rows)
        self.desc = desc
        self.interval = float(interval)
        self.n = 0
        self.postfix = ""
        self.t0 = time.monotonic()
        self._last_line = -math.inf
        isatty = getattr(self.file, "isatty", None)
        self.tty = bool(isatty and isatty())
        self._bar = None
        if self.tty:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=self.total, desc=desc, unit="rows", unit_scale=True,
                             file=self.file, bar_format=_BAR_FORMAT, mininterval=0.5)

    def advance(self, rows):
        """rows more trained."""
        self.n += int(rows)
        if self._bar is not None:
            self._bar.update(int(rows))
        else:
            self._maybe_line()

    def epoch_done(self, epoch, max_iter, figures):
        """After epoch `epoch` (1-based): show [(name, value)] of its figures."""
        parts = [f"epoch={epoch}/{max_iter}"] + [f"{n}={v:.4f}" for n, v in figures if n]
        self.postfix = ", ".join(parts)
        if self._bar is not None:
            self._bar.set_postfix_str(self.postfix)
        else:
            self._maybe_line()

    def _maybe_line(self, force=False):
        now = time.monotonic()
        if not force and now - self._last_line < self.interval:
            return
        self._last_line = now
        from tqdm import tqdm
        line = tqdm.format_meter(self.n, self.total, now - self.t0, prefix=self.desc,
                                 unit="rows", unit_scale=True, bar_format=_LINE_FORMAT,
                                 postfix=self.postfix)
        self.file.write(line + "\n")
        self.file.flush()

    def close(self):
        if self._bar is not None:
            self._bar.close()
        else:
            self._maybe_line(force=True)
