"""The one place that chooses between the CPU and the CUDA kernels.

device="cpu" → fmnumba.cpu; "cuda" → fmnumba.gpu (raises
DeviceUnavailableError, saying what to install, when no GPU is usable);
"auto" → fmnumba.gpu when a real GPU is usable (never the simulator) and the
data have at least AUTO_CUDA_MIN_NNZ stored entries, else fmnumba.cpu.
"""
import importlib
import os


class DeviceUnavailableError(RuntimeError):
    """device='cuda' was asked for but no usable GPU was found."""


def _simulator():
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"


def cuda_status():
    """(usable, reason): whether CUDA kernels can run here, and why not."""
    try:
        from numba import cuda
    except Exception as exc:  # noqa: BLE001 - numba-cuda missing or broken
        return False, f"numba's CUDA target could not be imported ({exc})"
    if _simulator():
        return True, "Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
    try:
        if cuda.is_available():
            return True, "CUDA GPU"
        return False, "no CUDA GPU / driver was found (numba.cuda.is_available() is False)"
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
        return False, f"the CUDA driver failed to initialise ({exc})"


def cuda_available(real_gpu=False):
    """True when numba-cuda is installed and a GPU (or, unless real_gpu, the
    simulator) answers."""
    ok, _ = cuda_status()
    return ok and not (real_gpu and _simulator())


def get_kernels(device="cpu", n_nnz=0):
    """Return the kernel module for `device` ("cpu", "cuda" or "auto")."""
    if device == "cpu":
        return importlib.import_module("fmnumba.cpu")
    if device == "cuda":
        ok, why = cuda_status()
        if ok:
            try:
                return importlib.import_module("fmnumba.gpu")
            except ImportError as exc:
                why = f"fmnumba.gpu failed to import ({exc})"
        raise DeviceUnavailableError(
            f"device='cuda' is not usable here: {why}. It needs an NVIDIA GPU with a "
            "working driver and numba-cuda with the CUDA libraries: pip install "
            "'fmnumba[cuda12]' (CUDA 12 drivers) or 'fmnumba[cuda13]' (CUDA 13 "
            "drivers). Use device='cpu', or device='auto' to use a GPU only when "
            "one is usable.")
    if device == "auto":
        if n_nnz >= AUTO_CUDA_MIN_NNZ and cuda_available(real_gpu=True):
            try:
                return importlib.import_module("fmnumba.gpu")
            except ImportError:
                pass
        return importlib.import_module("fmnumba.cpu")
    raise ValueError(f"device={device!r} is unknown; choose 'cpu', 'cuda' or 'auto'.")


# device="auto" uses the GPU from this many stored entries of X on. Below it,
# transfer and per-batch launch overhead (seven launches per Adam batch)
# should outweigh the GPU's gain. This is an ESTIMATE, not a measurement: no
# GPU was available when the CUDA kernels were written. Replace it with the
# crossover measured by bench/cuda_bench.py (run it at a few sizes).
AUTO_CUDA_MIN_NNZ = 2_000_000
