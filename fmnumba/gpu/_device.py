"""Device plumbing shared by the CUDA kernels: launch geometry, simulator
detection and the host↔device residency cache.

Residency (the trade-off, see also fmnumba/gpu/__init__.py)
-----------------------------------------------------------
The kernel functions keep the CPU kernels' signatures (host NumPy arrays in,
host arrays updated in place), so the solver runs unchanged. To avoid moving
the training data every epoch, *data* arrays (CSR arrays, y, sample weights,
per-feature L2) are cached on the device keyed on the host array's identity,
guarded by a fingerprint (shape, dtype, buffer address and a sampled
checksum). *Parameter* arrays (P, M, S, intercept) are uploaded at the start of
every call and copied back at its end (one round trip per epoch), unless a
`session()` is active: inside a session, a parameter array uploaded once
stays authoritative on the device and only the copy back happens each epoch.
"""
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
from numba import cuda

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"
# threads per block: small under the simulator (every thread is a Python
# thread there), a multiple of the warp size on a GPU
TPB = 32 if SIMULATOR else 256
DATA_CACHE_SIZE = 12
_lock = threading.RLock()
_data = OrderedDict()   # id -> (host array, fingerprint, device array)
_session = None         # None, or dict id -> (host array, device array)


def lanes_for(k):
    """Threads cooperating on one row / feature: a power of two ≤ 32 close
    to the row width k + 1 (lane l handles columns l, l + lanes, ...)."""
    n = 1
    while n * 2 <= k + 1 and n < 32:
        n *= 2
    return min(n, TPB)


def blocks(n_threads):
    return max(1, (n_threads + TPB - 1) // TPB)


def _fingerprint(a):
    flat = a.reshape(-1)
    step = max(1, flat.shape[0] // 4096)
    sample = np.ascontiguousarray(flat[::step])
    return (a.shape, a.dtype.str, a.__array_interface__["data"][0],
            hash(sample.tobytes()), hash(np.ascontiguousarray(flat[-64:]).tobytes()))


def data_to_device(a):
    """Device copy of a read-only data array, cached across calls."""
    a = np.ascontiguousarray(a)
    with _lock:
        key = id(a)
        fp = _fingerprint(a)
        hit = _data.get(key)
        if hit is not None and hit[0] is a and hit[1] == fp:
            _data.move_to_end(key)
            return hit[2]
        dev = cuda.to_device(a)
        _data[key] = (a, fp, dev)   # holding `a` keeps its id from being reused
        while len(_data) > DATA_CACHE_SIZE:
            _data.popitem(last=False)
        return dev


def csr_to_device(X):
    """Device copies of the CSR arrays X = (indptr, indices, data), cached."""
    return tuple(data_to_device(a) for a in X)


def param_to_device(a):
    """Device copy of a parameter array (P, M, S, intercept): uploaded on every
    call unless a session holds it already."""
    with _lock:
        if _session is not None:
            hit = _session.get(id(a))
            if hit is not None and hit[0] is a:
                return hit[1]
        dev = cuda.to_device(a)
        if _session is not None:
            _session[id(a)] = (a, dev)
        return dev


def param_to_host(dev, a):
    """Copy a device parameter array back into the host array in place."""
    if a.flags.c_contiguous:
        dev.copy_to_host(a)
    else:
        a[...] = dev.copy_to_host()


@contextmanager
def session():
    """Keep parameter arrays resident on the device for the block.

    Inside, the device copy of a parameter array is authoritative after its
    first upload: the host array is refreshed after each epoch call, but
    writes to the host array are NOT sent back to the device. Use it around
    a training loop whose only writes to P/M/S/intercept are the kernels' own.
    Leaving the outermost session also drops the cached data arrays, so a
    fit's device memory is freed when its loop ends.
    """
    global _session
    with _lock:
        outer = _session
        if outer is None:
            _session = {}
    try:
        yield
    finally:
        with _lock:
            if outer is None:
                _session = None
                _data.clear()


def invalidate(*arrays):
    """Forget device copies of these host arrays (after writing them on the host)."""
    with _lock:
        for a in arrays:
            if _session is not None:
                _session.pop(id(a), None)
            _data.pop(id(a), None)


def clear_cache():
    """Drop every cached device array."""
    with _lock:
        _data.clear()
        if _session is not None:
            _session.clear()
