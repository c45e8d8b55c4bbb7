"""Numba CUDA kernels: the GPU twins of fmnumba/cpu/, file for file, with the
same functions, signatures and semantics (host NumPy arrays in, host arrays
written), so the training loop drives either unchanged. (The package is
named gpu/, not cuda/: numba-cuda claims module names containing
"numba.cuda".)

    predict.py    predict_csr     a group of lanes per row, q_f in registers
    forward.py    forward_batch   mini-batch forward keeping q (batch × k)
    transpose.py  transpose_batch per-batch transpose on the device
    adam.py       adam_epoch, adam_update   lazy fused Adam, deterministic
    sgd.py        sgd_epoch       Hogwild SGD (sequential when n_chunks == 1)

Residency and round trips (the trade-off of keeping the CPU signatures)
----------------------------------------------------------------------
* Training data (indptr, indices, data, y, sample weights, per-feature L2)
  move to the device on first use and stay cached, keyed on the host array's
  identity and checked against a fingerprint (shape, dtype, address, sampled
  checksum) each call; `clear_cache()` drops them.
* Within an epoch everything stays on the device: batches are slices of the
  device copy of the epoch's order, the transpose runs on the device, the
  intercept and the divergence check live on the device (a halt flag makes
  the remaining launches no-ops). The host reads back once per epoch: the
  batch losses and P, M, S, intercept (so host arrays are always current and
  save/load, CPU predict and early-stopping snapshots work unchanged).
* Parameters are *uploaded* at the start of every call, because the host may
  have changed them (warm_start, the solver's restore after divergence).
  That costs one extra host→device copy of P, M, S per epoch. Wrapping the
  epoch loop in `session()` (a no-op in fmnumba.cpu) removes it: inside a
  session the first upload is kept and the device copy stays authoritative
  (host writes are not seen; `invalidate(arr)` forgets a copy).

Determinism: Adam is deterministic (no float atomics; see transpose.py and
adam.py); prediction and forward are deterministic; SGD is deterministic only
with n_chunks == 1. Results agree with the CPU kernels within rounding.
"""
from ._device import clear_cache, invalidate, session
from .adam import adam_epoch, adam_update
from .forward import forward_batch
from .predict import predict_csr
from .sgd import sgd_epoch
from .transpose import transpose_batch

__all__ = ["adam_epoch", "adam_update", "forward_batch", "predict_csr",
           "sgd_epoch", "transpose_batch", "session", "invalidate", "clear_cache"]
