"""An atomic fetch-and-add, for handing out work units to threads."""
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def fetch_add(typingctx, arr, i, v):
    """Atomically add v to arr[i] (1-D integer array); return the old value.

    Monotonic ordering: enough for a work counter, whose value publishes no
    other data (the results are read after the parallel region's barrier).
    """
    if not (isinstance(arr, types.Array) and arr.ndim == 1
            and isinstance(arr.dtype, types.Integer) and isinstance(i, types.Integer)
            and isinstance(v, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        aryty, ity, vty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary,
                                       [context.cast(builder, args[1], ity, types.intp)],
                                       wraparound=False)
        val = context.cast(builder, args[2], vty, aryty.dtype)
        return builder.atomic_rmw("add", ptr, val, "monotonic")

    return arr.dtype(arr, i, v), codegen
