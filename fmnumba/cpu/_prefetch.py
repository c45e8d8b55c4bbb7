"""Software prefetch for the random gathers of parameter rows.

The kernels are bound by the latency of fetching P[j] (and M[j], S[j]) rows
at random j. While a kernel works on one CSR row (or Adam on one feature
row) it asks for the rows of the next one, so the misses overlap.
Prefetches are hints: they never fault and never change results.
"""
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


def _emit(context, builder, aryty, ary_val, idx_vals):
    ary = context.make_array(aryty)(context, builder, ary_val)
    ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx_vals, wraparound=False)
    i8p = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
    # read access, high temporal locality, data cache
    builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                      ir.Constant(i32, 1)])


@intrinsic
def prefetch_at(typingctx, arr, i, c):
    """Prefetch the cache line holding arr[i, c] (2-D C array)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 2
            and isinstance(i, types.Integer) and isinstance(c, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        aryty, ity, cty = signature.args
        _emit(context, builder, aryty, args[0],
              [context.cast(builder, args[1], ity, types.intp),
               context.cast(builder, args[2], cty, types.intp)])
        return context.get_dummy_value()

    return types.void(arr, i, c), codegen


@intrinsic
def prefetch_1d(typingctx, arr, i):
    """Prefetch the cache line holding arr[i] (1-D array)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        aryty, ity = signature.args
        _emit(context, builder, aryty, args[0], [context.cast(builder, args[1], ity, types.intp)])
        return context.get_dummy_value()

    return types.void(arr, i), codegen


@njit(inline="always", nogil=True)
def prefetch_span(arr, a, b):
    """Prefetch every cache line of arr[a:b] (1-D array)."""
    for p in range(a, b, max(1, 64 // arr.itemsize)):
        prefetch_1d(arr, p)
    if b > a:
        prefetch_1d(arr, b - 1)


@njit(inline="always", nogil=True)
def prefetch_csr_ahead(order, pos, stop, indptr, indices, data, y, sw):
    """Prefetch CSR storage and targets for rows visited later in a random order.

    Row order[pos + 2]'s indices and data lines (its indptr entries were
    prefetched two calls earlier) and its y and sw entries, and the indptr
    entry of order[pos + 4], so that row_forward's prefetch of
    order[pos + 1]'s parameter rows finds its indices in cache and the loss
    does not wait for y[r], sw[r]: in a shuffled order these are random
    reads too.
    """
    prefetch_rows_ahead(order, pos, stop, indptr, indices, data)
    if pos + 2 < stop:
        r = order[pos + 2]
        prefetch_1d(y, r)
        prefetch_1d(sw, r)


@njit(inline="always", nogil=True)
def prefetch_rows_ahead(order, pos, stop, indptr, indices, data):
    """Prefetch row order[pos + 2]'s indices and data lines and the indptr
    entry of order[pos + 4] (the CSR part of prefetch_csr_ahead)."""
    if pos + 4 < stop:
        prefetch_1d(indptr, order[pos + 4])
    if pos + 2 < stop:
        r = order[pos + 2]
        prefetch_span(indices, indptr[r], indptr[r + 1])
        prefetch_span(data, indptr[r], indptr[r + 1])


@njit(inline="always", nogil=True)
def prefetch_row(P, j):
    """Prefetch every cache line of row P[j] (a row of 1 + k values spans
    several lines when k is large)."""
    step = max(1, 64 // P.itemsize)
    ncol = P.shape[1]
    for c in range(0, ncol, step):
        prefetch_at(P, j, c)
    prefetch_at(P, j, ncol - 1)


@njit(inline="always", nogil=True)
def rows_ahead(P):
    """How many rows ahead to prefetch table P's rows: 4 when a row fits one
    cache line (more of them fit in flight), else 2."""
    return 4 if P.shape[1] * P.itemsize <= 64 else 2
