"""The training loop: shuffling, epochs, early stopping, divergence guard and
progress. It yields one EpochRecord per epoch; the estimator keeps the
history. Kernels come from backend.py; nothing here is per-row.
"""
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ._threads import numba_threads, serial_if_unsafe as _serial_if_unsafe
from ._validation import ADAM_SOLVERS
from .losses import loss_numpy


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or parameter; the model holds the
    last finite parameters (those at the start of the failing epoch) and, for
    Adam, freshly reset moments (M = S = 0, step count 0)."""


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
        step = max(1, (1 << 20) // max(k, 1))  # same draws as one call, bounded float64 temporary
        for a in range(0, n_features, step):
            b = min(n_features, a + step)
            P[a:b, 1:] = rng.normal(0.0, init_std, size=(b - a, k))
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


def kernel_weights(sw, solver, dtype):
    """Sample weights (float64, positive sum) as the epoch kernels take them,
    in the model's dtype: SGD scales them to mean 1, so that learning_rate
    is the step of an average row; Adam normalises per mini-batch itself."""
    return (sw / sw.mean()).astype(dtype) if solver == "sgd" else sw.astype(dtype)


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


# Adam runs two parallel regions per mini-batch. When the parameter tables are
# cache-resident and a batch is light, waking the second thread costs more than
# it saves, so such epochs run on one thread. Adam's results do not depend on
# the thread count, so this changes speed only.
_SMALL_TABLES = 2 << 20      # bytes of P, M and S together
_LIGHT_BATCH = 1 << 20       # batch_size × mean nnz per row × (1 + k)


def _adam_serial_is_faster(X, state, cfg):
    work = cfg.batch_size * X.nnz / max(1, X.shape[0]) * state.P.shape[1]
    return 3 * state.P.nbytes <= _SMALL_TABLES and work < _LIGHT_BATCH


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
        with numba_threads(1 if _adam_serial_is_faster(X, state, cfg) else None):
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


def _restore(state, snap):
    """Put back the parameters of the epoch start. The Adam moments moved on
    during the failed epoch and were not saved (that would double the memory),
    so Adam restarts: M, S, the w0 moments and the step count are reset."""
    state.P[...] = snap[0]
    state.bias_state[...] = snap[1]
    if state.M is not None:
        state.M[...] = 0
        state.S[...] = 0
        state.bias_state[1:] = 0
        state.t = 0


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
          scorer=None, score_name=None):
    """Run up to max_iter epochs on canonical CSR X with targets y (in the
    loss's encoding) and kernel weights sw (see kernel_weights), both in P's
    dtype; val = (Xv, yv, swv) or None. epochs_done: epochs the model ran
    before this call (they set the step-size schedule). scorer: None, or a
    callable () -> float scoring the current parameters on the validation
    set (higher is better), recorded per epoch and, with early stopping,
    monitored instead of the loss; score_name labels it in the progress.

    A generator: updates `state` in place and yields one EpochRecord per
    completed epoch; with early stopping, `state` ends at the best epoch.
    Raises DivergenceError (or warns and stops, with on_divergence="warn")
    after restoring the last finite parameters. Close it (contextlib.closing)
    when not running it to the end, so the thread count is restored.
    """
    n = X.shape[0]
    best = (np.inf, None, 0)
    no_improve = 0
    epochs = 0
    bar = None
    if cfg.verbose:
        from ._progress import Progress
        bar = Progress(total_rows=n * max_iter)
    t_start = time.perf_counter()
    try:
        snap = None
        # a device backend keeps its parameter copy resident for the whole fit
        with _serial_if_unsafe(), numba_threads(n_jobs) as n_threads, kern.session():
            for _ in range(max_iter):
                if snap is None:
                    snap = (state.P.copy(), state.bias_state.copy())
                else:  # reuse the buffer: never two snapshots alive at once
                    np.copyto(snap[0], state.P)
                    np.copyto(snap[1], state.bias_state)
                order = rng.permutation(n).astype(np.int64, copy=False)
                lr = epoch_learning_rate(cfg, epochs_done + epochs)
                try:
                    lsum, wsum, ok = _run_epoch_in_chunks(kern, X, y, sw, order, state, cfg,
                                                          n_threads, lr, bar)
                except KeyboardInterrupt:
                    _restore(state, snap)
                    raise
                ok = ok and np.isfinite(lsum) and bool(np.isfinite(state.P).all()) \
                    and bool(np.isfinite(state.bias_state).all())
                if not ok:
                    _restore(state, snap)
                    msg = (f"training diverged in epoch {epochs_done + epochs + 1} "
                           f"(non-finite loss or parameters) at step size {lr:.6g} "
                           f"(learning_rate={cfg.learning_rate}, lr_decay={cfg.lr_decay}). "
                           "The model keeps the last finite parameters "
                           "(from the end of the previous epoch). Try a smaller learning_rate, "
                           "stronger l2_reg_w/l2_reg_v, scaling X's values, or dtype=np.float64.")
                    if cfg.on_divergence == "warn":
                        warnings.warn(msg, RuntimeWarning, stacklevel=4)  # the user's fit call
                        break
                    raise DivergenceError(msg)
                epochs += 1
                train_loss = float(lsum / wsum) if wsum > 0 else float("nan")
                seconds = time.perf_counter() - t_start  # the validation pass not included
                val_loss = None
                if val is not None:
                    val_loss = _weighted_loss(cfg.loss_code, predict_raw(kern, val[0], state),
                                              val[1], val[2])
                val_score = None if scorer is None else float(scorer())
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
                    keep = (state.P.copy(), state.bias_state.copy()) if cfg.early_stopping else None
                    best = (monitor, keep, epochs)
                    no_improve = 0
                else:
                    no_improve += 1
                    if no_improve >= cfg.n_iter_no_change:
                        break
    finally:
        if bar is not None:
            bar.close()
    if cfg.early_stopping and best[1] is not None and best[2] < epochs:
        state.P[...] = best[1][0]
        state.bias_state[...] = best[1][1]
