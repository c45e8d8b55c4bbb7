"""The training loop: shuffling, epochs, early stopping, divergence guard and
progress. It yields one EpochRecord per epoch; the estimator keeps the
history. Kernels come from backend.py; nothing here is per-row.
"""
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np

from ._validation import ADAM_SOLVERS, check_n_jobs
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
    included)."""
    train_loss: float
    val_loss: float
    seconds: float


def kernel_weights(sw, solver, dtype):
    """Sample weights (float64, positive sum) as the epoch kernels take them,
    in the model's dtype: SGD scales them to mean 1, so that learning_rate
    is the step of an average row; Adam normalises per mini-batch itself."""
    return (sw / sw.mean()).astype(dtype) if solver == "sgd" else sw.astype(dtype)


@contextmanager
def numba_threads(n_jobs):
    """Set Numba's thread count for the block and restore it afterwards."""
    check_n_jobs(n_jobs)  # set_params after fit is not validated until here
    if n_jobs is None:
        yield numba.get_num_threads()
        return
    old = numba.get_num_threads()
    n = numba.config.NUMBA_NUM_THREADS if n_jobs == -1 else min(n_jobs, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(old)


def predict_raw(kern, X, state):
    """ŷ for every row of canonical CSR X (n_rows,), in P's dtype."""
    out = np.empty(X.shape[0], dtype=state.P.dtype)
    if X.shape[0]:
        with _serial_if_unsafe():
            kern.predict_csr((X.indptr, X.indices, X.data),
                             state.P.dtype.type(state.bias_state[0]), state.P, out)
    return out


_WORKQUEUE_LOCK = threading.RLock()


@contextmanager
def _serial_if_unsafe():
    """Serialise kernel launches when Numba runs on its 'workqueue' threading
    layer, which aborts the process on concurrent parallel launches; the omp
    and tbb layers are thread-safe and run concurrent calls in parallel."""
    try:
        safe = numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # no parallel region has run yet: layer not chosen
        safe = False
    if safe:
        yield
    else:
        with _WORKQUEUE_LOCK:
            yield


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


def train(kern, X, y, sw, state, cfg, max_iter, rng, n_jobs=None, val=None, epochs_done=0):
    """Run up to max_iter epochs on canonical CSR X with targets y (in the
    loss's encoding) and kernel weights sw (see kernel_weights), both in P's
    dtype; val = (Xv, yv, swv) or None. epochs_done: epochs the model ran
    before this call (they set the step-size schedule).

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
        from tqdm.auto import tqdm
        bar = tqdm(total=max_iter, desc="fmnumba fit", unit="epoch")
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
                    lsum, wsum, ok = _run_epoch(kern, X, y, sw, order, state, cfg,
                                                n_threads, lr)
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
                yield EpochRecord(train_loss, val_loss, seconds)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(train_loss=f"{train_loss:.4f}",
                                    **({} if val_loss is None else {"val_loss": f"{val_loss:.4f}"}))
                monitor = val_loss if (cfg.early_stopping and val is not None) else train_loss
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
