"""Numba CPU kernels. They take raw CSR arrays and the parameter table
P = [w | V] (n_features × (1 + k)) and write into arrays passed in; callers
validate first (bounds checks are off)."""
from .adam import adam_epoch, adam_update
from .forward import forward_batch
from .predict import predict_csr
from .sgd import sgd_epoch
from .transpose import transpose_batch

__all__ = ["adam_epoch", "adam_update", "forward_batch", "predict_csr",
           "sgd_epoch", "transpose_batch"]
