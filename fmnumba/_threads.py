"""Numba's threading layer and fmnumba's default thread count.

At import fmnumba picks a threading layer that is both thread-safe and
fork-safe: TBB (the `tbb` wheel, whose library is loaded here because a
virtual environment's lib folder is not on the loader's path), else
Numba's workqueue. GNU OpenMP, Numba's usual pick on Linux, kills every
process forked after a parallel region ("fork() called from a process
already using GNU OpenMP"), which hangs multiprocessing pools, and its
spinning worker threads collapse under a competing load. A layer set by the
user (NUMBA_THREADING_LAYER) is kept.

The default thread count (n_jobs=None) honours the limits that joblib's
process backends give their workers (NUMBA_NUM_THREADS / OMP_NUM_THREADS
in the worker's environment), threadpoolctl's limits (Numba's pool is
registered with threadpoolctl as user_api "numba", so
`threadpool_limits(1)` and `threadpool_info()` see it) and is one thread
in a forked multiprocessing worker, so that parallel searches do not
oversubscribe the machine.
"""
import ctypes
import multiprocessing
import os
import threading
from contextlib import contextmanager

import numba
import threadpoolctl

_TBB_LIB = "libtbb.so.12"
_in_forked_child = False
_registered = False


def _load_tbb():
    """Load the `tbb` wheel's shared library (globally, so that Numba's
    tbbpool links against it); True when it is loaded."""
    try:
        ctypes.CDLL(_TBB_LIB, mode=ctypes.RTLD_GLOBAL)  # already on the loader's path
        return True
    except OSError:
        pass
    try:
        from importlib.metadata import PackageNotFoundError, distribution
        files = distribution("tbb").files or []
    except (ImportError, PackageNotFoundError):
        return False
    for f in files:
        if f.name == _TBB_LIB:
            try:
                ctypes.CDLL(str(f.locate()), mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                return False
    return False


def _tbb_usable():
    if not _load_tbb():
        return False
    try:
        from numba.np.ufunc import tbbpool  # noqa: F401
    except ImportError:  # missing or too old a TBB for this Numba
        return False
    return True


def _layer_already_chosen():
    try:
        numba.threading_layer()
        return True
    except ValueError:
        return False


def choose_threading_layer():
    """Set numba.config.THREADING_LAYER to 'tbb' or 'workqueue' unless the
    user chose one or a parallel region already ran; returns the layer
    configured."""
    wanted = os.environ.get("NUMBA_THREADING_LAYER", "").strip().lower()
    if wanted or _layer_already_chosen():
        if wanted in ("tbb", "default", "safe", "threadsafe", ""):
            _load_tbb()  # let Numba find it if it picks TBB
        return numba.config.THREADING_LAYER
    numba.config.THREADING_LAYER = "tbb" if _tbb_usable() else "workqueue"
    return numba.config.THREADING_LAYER


def _after_fork_in_child():
    global _in_forked_child
    _in_forked_child = True


def _env_thread_limit():
    """The smallest positive NUMBA_NUM_THREADS / OMP_NUM_THREADS in the
    environment now (joblib's loky and multiprocessing backends set them in
    their workers), or None."""
    limits = []
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        try:
            v = int(os.environ.get(var, ""))
        except ValueError:
            continue
        if v > 0:
            limits.append(v)
    return min(limits) if limits else None


def default_threads():
    """Threads a call with n_jobs=None uses: Numba's current count, limited
    by the environment's thread limits, and 1 in a process forked by
    multiprocessing (a pool worker, whose siblings share the cores)."""
    n = numba.get_num_threads()
    lim = _env_thread_limit()
    if lim is not None:
        n = min(n, lim)
    if _in_forked_child and multiprocessing.parent_process() is not None:
        n = 1
    return max(1, n)


def resolve_threads(n_jobs):
    """Thread count for n_jobs (None: default_threads(); -1: every thread
    Numba was started with; else at most that)."""
    top = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None:
        return min(default_threads(), top)
    return top if n_jobs == -1 else min(int(n_jobs), top)


@contextmanager
def numba_threads(n_jobs):
    """Set Numba's thread count for the block (see resolve_threads) and
    restore it afterwards; yields the count."""
    from ._validation import check_n_jobs
    check_n_jobs(n_jobs)  # set_params after fit is not validated until here
    old = numba.get_num_threads()
    n = resolve_threads(n_jobs)
    if n != old:
        numba.set_num_threads(n)
    try:
        yield n
    finally:
        if n != old:
            numba.set_num_threads(old)


_WORKQUEUE_LOCK = threading.RLock()


@contextmanager
def serial_if_unsafe():
    """Serialise kernel launches when Numba runs on its 'workqueue' threading
    layer, which aborts the process on concurrent parallel launches; the omp
    and tbb layers are thread-safe and run concurrent calls in parallel."""
    try:
        safe = numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # no parallel region has run yet: layer not chosen
        safe = numba.config.THREADING_LAYER == "tbb"
    if safe:
        yield
    else:
        with _WORKQUEUE_LOCK:
            yield


class NumbaPoolController(threadpoolctl.LibController):
    """threadpoolctl's handle on Numba's thread pool (whichever threading
    layer runs it): the limit is numba.set_num_threads's, per calling
    thread, capped at the threads Numba started with."""
    user_api = "numba"
    internal_api = "numba"
    filename_prefixes = ("tbbpool", "workqueue", "omppool")

    def get_num_threads(self):
        return numba.get_num_threads()

    def set_num_threads(self, num_threads):
        top = numba.config.NUMBA_NUM_THREADS
        numba.set_num_threads(max(1, min(int(num_threads), top)))

    def get_version(self):
        return numba.__version__

    def set_additional_attributes(self):
        self.threading_layer = numba.threading_layer()


def register_with_threadpoolctl():
    """Register NumbaPoolController and load the threading layer's library
    now (threadpoolctl finds pools by their loaded library, which Numba
    otherwise loads at the first parallel region); idempotent."""
    global _registered
    if not _registered:
        threadpoolctl.register(NumbaPoolController)
        _registered = True
    numba.get_num_threads()  # launches the pool: the layer is fixed from here on


os.register_at_fork(after_in_child=_after_fork_in_child)
choose_threading_layer()
register_with_threadpoolctl()
