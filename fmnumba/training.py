"""The training loop: shuffling, epochs, early stopping, divergence guard and
progress. It yields one EpochRecord per epoch; the estimator keeps the
history. Kernels come from backend.py; nothing here is per-row.
"""
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ._threads import numba_threads, serial_if_unsafe as _serial_if_unsafe
from ._validation import ADAM_SOLVERS
from .losses import loss_numpy


class DivergenceError(FloatingPointError):
    """Training ran away: a non-finite loss or parameter, a loss grown by
    RUNAWAY_FACTOR over its starting scale, or a parameter so large that its
    products overflow the dtype. The training state holds the parameters of
    the start of the failing epoch and, for Adam, freshly reset moments
    (M = S = 0, step count 0)."""


RUNAWAY_FACTOR = 1e6  # a loss this many times its starting scale has run away


def param_limit(dtype):
    """Largest |parameter| the guard accepts in `dtype`: beyond it, the
    products in ŷ and the squared loss can overflow (sqrt(max) / 16)."""
    return float(np.sqrt(np.finfo(dtype).max)) / 16


def init_std_limit(dtype):
    """Largest init_std for `dtype`: the squared loss of the initial
    interaction terms (~ init_std⁴) stays finite (max^(1/4) / 100)."""
    return float(np.finfo(dtype).max) ** 0.25 / 100


def check_init_std(init_std, dtype):
    """Refuse an init_std whose initial factors would overflow `dtype`."""
    lim = init_std_limit(dtype)
    if init_std > lim:
        raise ValueError(f"init_std={init_std!r} is too large for dtype={np.dtype(dtype).name}: "
                         f"the initial factors' products would overflow. Use at most {lim:.3g} "
                         "(typical values are 0.001 to 0.1).")


@dataclass
class FMState:
    """Everything a fit needs to resume: P = [w | V] (n_features × (1+k)),
    Adam moments M and S of P's shape, bias_state = [w0, m_w0, s_w0] (the
    global bias and its Adam moments, float64) and the global Adam step count
    t. Model files store bias_state as the array "bstate"."""
    P: np.ndarray
    bias_state: np.ndarray
    M: np.ndarray = None
    S: np.ndarray = None
    t: int = 0

    @classmethod
    def init(cls, n_features, k, dtype, init_std, w0, rng):
        P = np.zeros((n_features, 1 + k), dtype=dtype)
        # rng.normal(0, init_std, (n_features, k)) in blocks: the same draws
        # as one call, through one reused float64 buffer
        step = max(1, (1 << 20) // max(k, 1))
        buf = np.empty((min(step, n_features), k))
        for a in range(0, n_features, step):
            b = min(n_features, a + step)
            v = buf[:b - a]
            rng.standard_normal(out=v)
            v *= init_std
            P[a:b, 1:] = v
        big = abs_max(P)
        if not big <= param_limit(dtype):
            raise ValueError(f"init_std={init_std!r}: the initial factors reach {big:.3g}, "
                             f"beyond what dtype={np.dtype(dtype).name} can train with; "
                             "use a smaller init_std.")
        return cls(P=P, bias_state=np.array([w0, 0.0, 0.0]))

    def ensure_adam(self):
        if self.M is None:
            self.M = np.zeros_like(self.P)
            self.S = np.zeros_like(self.P)


@dataclass(frozen=True, eq=False)
class TrainConfig:
    """The settings of one fit call, fixed while it runs (built by the
    estimator from its validated hyperparameters)."""
    loss_code: int
    solver: str
    learning_rate: float
    batch_size: int
    l2_reg_w: np.ndarray  # per-feature L2 strengths (n_features,), or (1,) shared by all,
    l2_reg_v: np.ndarray  # in the model's dtype
    lr_decay: float = 0.0  # epoch e of the model's life runs at lr / (1 + lr_decay·e)
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    tol: float = None
    n_iter_no_change: int = 5
    early_stopping: bool = False
    on_divergence: str = "raise"
    verbose: int = 0


@dataclass(frozen=True)
class EpochRecord:
    """What one completed epoch produced: its weighted mean training loss,
    the validation loss (None without a validation set) and the seconds of
    training since the call started (validation passes before this epoch's
    included); val_score: the `scoring` value on it (higher is better)."""
    train_loss: float
    val_loss: float
    seconds: float
    val_score: float = None  # the scorer's value on the validation set (with scoring)


def abs_max(A, block_bytes=1 << 20):
    """max |A| over a 2-D array; NaN if any entry is NaN, 0.0 for an empty
    array. Row blocks of about block_bytes, each reduced by its max and min
    (no |A| temporary; the second pass reads the block from cache)."""
    rows = max(1, block_bytes // max(1, A.shape[1] * A.itemsize))
    m = 0.0
    for a in range(0, A.shape[0], rows):
        blk = A[a:a + rows]
        if blk.size:
            v = max(float(blk.max()), -float(blk.min()))
            if v != v:
                return v
            m = max(m, v)
    return m


def kernel_weights(sw, solver, dtype, rows=None):
    """Sample weights (float64, positive sum) as the epoch kernels take them,
    in the model's dtype: SGD scales them to mean 1 over the training rows
    (`rows`, default all), so that learning_rate is the step of an average
    row; Adam normalises per mini-batch itself."""
    if solver != "sgd":
        return sw.astype(dtype)
    return (sw / (sw.mean() if rows is None else sw[rows].mean())).astype(dtype)


def predict_raw(kern, X, state):
    """ŷ for every row of canonical CSR X (n_rows,), in P's dtype."""
    out = np.empty(X.shape[0], dtype=state.P.dtype)
    if X.shape[0]:
        with _serial_if_unsafe():
            kern.predict_csr((X.indptr, X.indices, X.data),
                             state.P.dtype.type(state.bias_state[0]), state.P, out)
    return out


def _weighted_loss(code, yhat, y, sw):
    return float(np.dot(sw, loss_numpy(code, yhat, y)) / sw.sum())


def epoch_learning_rate(cfg, epoch):
    """Step size of epoch `epoch` (0-based, counted over every fit and
    partial_fit call of the model): learning_rate / (1 + lr_decay·epoch)."""
    return cfg.learning_rate / (1.0 + cfg.lr_decay * epoch)


def _run_epoch(kern, X, y, sw, order, state, cfg, n_threads, lr):
    """One epoch at step size lr; returns (Σ s·ℓ, Σ s) over the rows visited
    before any non-finite loss, and whether everything stayed finite."""
    if cfg.solver in ADAM_SOLVERS:
        state.ensure_adam()
        n_batches = -(-order.shape[0] // cfg.batch_size)
        bl = np.zeros(n_batches)
        bw = np.zeros(n_batches)
        t, done = kern.adam_epoch(
            (X.indptr, X.indices, X.data), y, sw, order, cfg.batch_size, cfg.loss_code,
            (state.P, state.M, state.S), state.bias_state, state.t,
            (lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.solver == "adamw"),
            (cfg.l2_reg_w, cfg.l2_reg_v), (bl, bw))
        state.t = int(t)
        ok = done == n_batches
        return bl[:done].sum(), bw[:done].sum(), ok
    L = np.empty(order.shape[0])
    kern.sgd_epoch((X.indptr, X.indices, X.data), y, sw, order, n_threads, cfg.loss_code,
                   state.P, state.bias_state, lr, (cfg.l2_reg_w, cfg.l2_reg_v), L)
    fin = np.isfinite(L)
    return L[fin].sum(), sw[order][fin].sum(), bool(fin.all())


class _RowCopy:
    """A copy of the rows of P that an epoch can change (`rows`, an index
    array, or None for all rows) and of bias_state, refreshed in place."""

    def __init__(self, state, rows):
        n = state.P.shape[0] if rows is None else rows.shape[0]
        self.rows = rows
        self.P = np.empty((n, state.P.shape[1]), dtype=state.P.dtype)
        self.bias = np.empty_like(state.bias_state)
        self.take(state)

    def take(self, state):
        if self.rows is None:
            np.copyto(self.P, state.P)
        else:  # mode="clip": no hidden buffer (the indices are valid)
            np.take(state.P, self.rows, axis=0, out=self.P, mode="clip")
        np.copyto(self.bias, state.bias_state)

    def put(self, state):
        """Write the copy back: P's rows and w0 (and its moments)."""
        if self.rows is None:
            np.copyto(state.P, self.P)
        else:
            state.P[self.rows] = self.P
        np.copyto(state.bias_state, self.bias)


def changing_rows(X, n_features, row_bytes):
    """Indices (int32 where they fit) of the parameter rows an epoch on
    canonical CSR X can change, i.e. the features with an entry in X; None
    when copying every row costs no more than copying those with an index
    (a gather of rows costs about twice a contiguous copy per byte)."""
    seen = np.zeros(n_features, dtype=bool)
    seen[X.indices[:X.nnz]] = True
    n = int(np.count_nonzero(seen))
    it = np.int32 if n_features <= np.iinfo(np.int32).max else np.int64
    if n * (row_bytes + np.dtype(it).itemsize) >= 0.5 * n_features * row_bytes:
        return None
    return np.flatnonzero(seen).astype(it)


def _restore(state, snap):
    """Put back the parameters of `snap`. The Adam moments moved on since
    and were not saved (that would triple the memory), so Adam restarts:
    M, S, the w0 moments and the step count are reset."""
    snap.put(state)
    if state.M is not None:
        state.M[...] = 0
        state.S[...] = 0
        state.bias_state[1:] = 0
        state.t = 0


def loss_scale(cfg, y, sw, w0):
    """Starting scale of the loss, the reference of the runaway test: the
    larger weighted loss of the constant predictions 0 and w0, at least 1
    (targets that are all near 0 would otherwise flag any honest loss;
    O(n_rows))."""
    zero = _weighted_loss(cfg.loss_code, np.zeros_like(y), y, sw)
    bias = _weighted_loss(cfg.loss_code, np.full_like(y, w0), y, sw)
    return max(zero, bias, 1.0)


def probe_rows(X, y, sw, rows, m=1024):
    """Up to m evenly spaced training rows of X (`rows`, or None for all)
    with their targets and weights: the runaway test scores the parameters
    an epoch ends with on them."""
    n = X.shape[0] if rows is None else rows.shape[0]
    idx = np.arange(0, n, max(1, n // m))[:m]
    if rows is not None:
        idx = rows[idx]
    keep = np.zeros(X.shape[0], dtype=bool)
    keep[idx] = True
    from ._validation import take_rows
    return take_rows(X, keep), y[idx], sw[idx]


def divergence_reason(lsum, wsum, ok, state, scale, probe=None):
    """Why the epoch just run counts as diverged, or None: a non-finite loss
    or parameter (P, w0 or Adam state), a loss above RUNAWAY_FACTOR × scale
    (during the epoch, or with the final parameters on the rows of
    probe(), a function returning their weighted loss), or a parameter
    beyond param_limit (its products overflow the dtype)."""
    if not (ok and np.isfinite(lsum)):
        return "non-finite loss"
    big = max(abs_max(state.P), abs(float(state.bias_state[0])))
    if not (np.isfinite(big) and np.isfinite(state.bias_state).all()):
        return "non-finite parameters"
    # S finite implies M finite: both take the same gradients g, |m| <= max |g|,
    # and a g that is NaN, infinite or has an infinite g*g makes s non-finite
    if state.S is not None and not np.isfinite(abs_max(state.S)):
        return "non-finite Adam moments"
    loss = lsum / wsum if wsum > 0 else 0.0
    if loss > RUNAWAY_FACTOR * scale:
        return (f"the training loss reached {loss:.3g}, over {RUNAWAY_FACTOR:.0e} times its "
                f"starting scale {scale:.3g}")
    lim = param_limit(state.P.dtype)
    if big > lim:
        return (f"a parameter reached {big:.3g}; beyond {lim:.3g} its products overflow "
                f"{state.P.dtype}")
    if probe is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            end = probe()
        if not end <= RUNAWAY_FACTOR * scale:
            return (f"the loss of the parameters it ended with reached {end:.3g}, over "
                    f"{RUNAWAY_FACTOR:.0e} times its starting scale {scale:.3g}")
    return None


@contextmanager
def interrupts_deferred():
    """Hold a first Ctrl-C (SIGINT) until the caller asks; a second one
    raises KeyboardInterrupt at once. Yields pending(), true once a Ctrl-C
    is held. Outside the main thread, or when SIGINT has a handler other
    than Python's default, nothing is held (pending() is always false)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield lambda: False
        return
    held = []

    def hold(signum, frame):
        if held:
            raise KeyboardInterrupt
        held.append(signum)

    old = signal.signal(signal.SIGINT, hold)
    try:
        yield lambda: bool(held)
    finally:
        signal.signal(signal.SIGINT, old)


def _run_epoch_in_chunks(kern, X, y, sw, order, state, cfg, n_threads, lr, progress):
    """_run_epoch over `order` in row chunks of whole mini-batches, so that
    progress advances within a long epoch; the batches, their order and the
    step count are those of one call, so results are the same. Without
    progress, one call."""
    if progress is None:
        return _run_epoch(kern, X, y, sw, order, state, cfg, n_threads, lr)
    n = order.shape[0]
    unit = cfg.batch_size if cfg.solver in ADAM_SOLVERS else 1
    chunk = unit * max(1, -(-min(n, 4096) // unit))   # a first, short chunk measures the rate
    lsum = wsum = 0.0
    a = 0
    while a < n:
        b = min(n, a + chunk)
        t0 = time.perf_counter()
        ls, ws, ok = _run_epoch(kern, X, y, sw, order[a:b], state, cfg, n_threads, lr)
        dt = time.perf_counter() - t0
        lsum += ls
        wsum += ws
        if not ok:
            return lsum, wsum, False
        progress.advance(b - a)
        # aim at about PROGRESS_CHUNK_S seconds per call
        rate = (b - a) / max(dt, 1e-6)
        chunk = unit * max(1, int(rate * PROGRESS_CHUNK_S) // unit)
        a = b
    return lsum, wsum, True


PROGRESS_CHUNK_S = 0.5


def _epoch_figures(cfg, rec, score_name):
    """The figures the progress shows after an epoch, in the user's units."""
    from ._progress import loss_figure, score_figure
    figs = [loss_figure(cfg.loss_code, rec.train_loss)]
    if rec.val_loss is not None:
        f = loss_figure(cfg.loss_code, rec.val_loss)
        figs.append(None if f is None else ("val_" + f[0], f[1]))
    if rec.val_score is not None:
        f = score_figure(score_name, rec.val_score)
        figs.append(("val_" + f[0], f[1]))
    return [f for f in figs if f is not None]


def _monitored(cfg, rec, has_val):
    """The value early stopping and tol watch (lower is better): the
    validation score negated when a scorer is set, else the validation
    loss with early stopping, else the training loss."""
    if cfg.early_stopping and has_val:
        return -rec.val_score if rec.val_score is not None else rec.val_loss
    return rec.train_loss


def train(kern, X, y, sw, state, cfg, max_iter, rng, n_jobs=None, val=None, epochs_done=0,
          scorer=None, score_name=None, rows=None):
    """Run up to max_iter epochs on canonical CSR X with targets y (in the
    loss's encoding) and kernel weights sw (see kernel_weights), both in P's
    dtype; val = (Xv, yv, swv) or None. epochs_done: epochs the model ran
    before this call (they set the step-size schedule). scorer: None, or a
    callable (ŷ) -> float scoring the current parameters on the validation
    set (higher is better) from their raw predictions there (predict_raw),
    recorded per epoch and, with early stopping, monitored instead of the
    loss; score_name labels it in the progress.
    rows: the rows of X to train on (sorted int64 ids; None: all), so that
    a validation split needs no copy of the training rows; epochs visit
    them as they would visit a copy holding only them.

    A generator: updates `state` in place and yields one EpochRecord per
    completed epoch; with early stopping, `state` ends at the best epoch.
    On divergence (see divergence_reason) it puts back the parameters of the
    start of the failing epoch (with early stopping: of the best epoch so
    far, the one such a fit returns) and raises DivergenceError, or warns
    and stops with on_divergence="warn". A Ctrl-C is held until the epoch in
    flight has been yielded and the consumer asks for the next one, then
    raised as KeyboardInterrupt. Close it (contextlib.closing) when not
    running it to the end, so the thread count and the SIGINT handler are
    restored.
    """
    n = X.shape[0] if rows is None else rows.shape[0]
    scale = loss_scale(cfg, y if rows is None else y[rows], sw if rows is None else sw[rows],
                       state.bias_state[0])
    changing = changing_rows(X, state.P.shape[0], state.P.shape[1] * state.P.itemsize)
    Xp, yp, swp = probe_rows(X, y, sw, rows)

    def probe():
        return _weighted_loss(cfg.loss_code, predict_raw(kern, Xp, state), yp, swp)

    best = (np.inf, 0)
    no_improve = 0
    epochs = 0
    bar = None
    if cfg.verbose:
        from ._progress import Progress
        bar = Progress(total_rows=n * max_iter)
    t_start = time.perf_counter()
    try:
        # one copy of the changing rows: the epoch start, or with early
        # stopping the best epoch (restored on divergence as at the end)
        snap = None
        # a device backend keeps its parameter copy resident for the whole fit
        with _serial_if_unsafe(), numba_threads(n_jobs) as n_threads, kern.session(), \
                interrupts_deferred() as pending:
            for _ in range(max_iter):
                if pending():
                    raise KeyboardInterrupt
                if snap is None:
                    snap = _RowCopy(state, changing)
                elif not cfg.early_stopping:
                    snap.take(state)
                order = rng.permutation(n).astype(np.int64, copy=False)
                if rows is not None:
                    order = rows[order]
                lr = epoch_learning_rate(cfg, epochs_done + epochs)
                try:
                    lsum, wsum, ok = _run_epoch_in_chunks(kern, X, y, sw, order, state, cfg,
                                                          n_threads, lr, bar)
                except BaseException:  # Ctrl-C, MemoryError: the epoch is half done
                    _restore(state, snap)
                    raise
                del order
                why = divergence_reason(lsum, wsum, ok, state, scale, probe)
                if why is not None:
                    _restore(state, snap)
                    kept = ("from the best epoch so far" if cfg.early_stopping and best[1]
                            else "from the start of this epoch")
                    msg = (f"training diverged in epoch {epochs_done + epochs + 1} "
                           f"({why}) at step size {lr:.6g} "
                           f"(learning_rate={cfg.learning_rate}, lr_decay={cfg.lr_decay}). "
                           f"The model keeps the last good parameters ({kept}). "
                           "Try a smaller learning_rate, stronger l2_reg_w/l2_reg_v, "
                           "scaling X's values, or dtype=np.float64.")
                    if cfg.on_divergence == "warn":
                        warnings.warn(msg, RuntimeWarning, stacklevel=4)  # the user's fit call
                        break
                    raise DivergenceError(msg)
                epochs += 1
                train_loss = float(lsum / wsum) if wsum > 0 else float("nan")
                seconds = time.perf_counter() - t_start  # the validation pass not included
                val_loss = val_out = None
                if val is not None:
                    val_out = predict_raw(kern, val[0], state)
                    val_loss = _weighted_loss(cfg.loss_code, val_out, val[1], val[2])
                val_score = None if scorer is None else float(scorer(val_out))
                rec = EpochRecord(train_loss, val_loss, seconds, val_score)
                yield rec
                if bar is not None:
                    bar.epoch_done(epochs_done + epochs, epochs_done + max_iter,
                                   _epoch_figures(cfg, rec, score_name))
                monitor = _monitored(cfg, rec, val is not None)
                if cfg.tol is None and not cfg.early_stopping:
                    continue
                tol = cfg.tol or 0.0
                if monitor < best[0] - tol:
                    if cfg.early_stopping:
                        snap.take(state)
                    best = (monitor, epochs)
                    no_improve = 0
                else:
                    no_improve += 1
                    if no_improve >= cfg.n_iter_no_change:
                        break
            if cfg.early_stopping and snap is not None and best[1] < epochs:
                snap.put(state)
            if pending():
                raise KeyboardInterrupt
    finally:
        if bar is not None:
            bar.close()


def check_saveable(state, history, n_iter):
    """Refuse to write a training state that loading would reject: non-finite
    parameters or Adam moments, a malformed table, or history_ lists that
    disagree in length."""
    P = state.P
    fix = "Refit the model (or load the last saved file) before saving."
    if P.ndim != 2 or P.shape[1] < 2 or state.bias_state.shape != (3,) or any(
            a is not None and a.shape != P.shape for a in (state.M, state.S)):
        raise ValueError(f"save: the model's parameter tables are malformed. {fix}")
    for name, a in (("parameters", P), ("Adam first moments", state.M),
                    ("Adam second moments", state.S)):
        if a is not None and not np.isfinite(abs_max(a)):
            raise ValueError(f"save: the model's {name} hold NaN or inf. {fix}")
    if not np.isfinite(state.bias_state).all():
        raise ValueError(f"save: the model's intercept state holds NaN or inf. {fix}")
    n = len(history.get("train_loss", ()))
    if len(history.get("time_s", ())) != n or len(history.get("val_loss", ())) > n \
            or len(history.get("val_score", ())) > n:
        raise ValueError(f"save: the lists of history_ disagree in length ({n} training "
                         f"losses). {fix}")
