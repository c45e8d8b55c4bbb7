"""Numba CPU kernels. They take raw CSR arrays X = (indptr, indices, data)
and the parameter table P = [w | V] (n_features × (1 + k)) and write into
arrays passed in; callers validate first (bounds checks are off)."""
from contextlib import contextmanager

from .adam import adam_epoch, adam_update
from .forward import forward_batch
from .predict import predict_csr
from .sgd import sgd_epoch
from .transpose import transpose_batch


@contextmanager
def session():
    """The GPU backend's residency block; host arrays are the parameters'
    only copy here, so it does nothing."""
    yield


__all__ = ["adam_epoch", "adam_update", "forward_batch", "predict_csr",
           "sgd_epoch", "transpose_batch", "session"]
