"""Compilation settings shared by every CPU kernel (one place, as in STUMPY).

``FASTMATH`` deliberately leaves out ``nnan`` and ``ninf``: the divergence
guard and the validation of predictions rely on NaN and inf surviving.
``reassoc`` lets LLVM vectorise the k-wide sums (without it every sum is a
serial chain of dependent additions), so two compiles of the same source can
round differently. A given kernel gives bit-identical results at any thread
count (each output is computed by one thread in a fixed order), and the
serial twins that small inputs run on (``serial_twin``: predict, the Adam
epoch) are tested bit for bit against their parallel kernels.

``error_model="numpy"``: a float division by zero gives inf or NaN, which the
divergence guard catches, instead of Python's exception checks in every loop.

Numba's on-disk cache is keyed on each kernel file's timestamp: after changing
these flags, delete the ``__pycache__/*.nbi``/``*.nbc`` files.
"""
from numba import njit

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


# Only explicit prange loops are parallelised; Numba's other array-expression
# rewrites find nothing in these kernels and only cost compile time.
PRANGE_ONLY = {"prange": True, "comprehension": False, "numpy": False, "reduction": False,
               "setitem": False, "stencil": False, "fusion": False, "inplace_binop": False}


# The Adam update's kernels (cpu/adam.py, cpu/batch_grad.py) leave out nsz:
# with nsz and reassoc together LLVM rewrites the update's arithmetic
# differently in a parallel loop body and in a serial compile, and the Adam
# epoch, its serial twin and the data-parallel (Dask) update must give the
# same bits.
ADAM_FASTMATH = FASTMATH - {"nsz"}


def kernel(parallel=False, fastmath=FASTMATH):
    """Decorator for a CPU kernel: lazily compiled, cached on disk, GIL released."""
    return njit(cache=True, nogil=True, fastmath=fastmath,
                parallel=PRANGE_ONLY if parallel else False, boundscheck=False,
                error_model="numpy")


# Work of one parallel region, in nnz·(1 + k) (a predict call, an Adam batch),
# below which waking the other threads costs more than they save.
SERIAL_WORK = 1 << 20


def serial_twin(parallel_kernel, name):
    """A serial compile (prange as range) of parallel_kernel's Python source,
    under its own name and cache files. Work too small for threads runs on
    it, and it compiles in a quarter to two thirds of the parallel kernel's
    time (no parallel-region outlining): a first small fit and predict wait
    less."""
    import types
    f = parallel_kernel.py_func
    g = types.FunctionType(f.__code__, f.__globals__, name, f.__defaults__, f.__closure__)
    g.__qualname__ = name
    g.__module__ = f.__module__
    g.__doc__ = f"Serial twin of {f.__name__} (same arguments and results)."
    return kernel(parallel=False, fastmath=parallel_kernel.targetoptions["fastmath"])(g)
