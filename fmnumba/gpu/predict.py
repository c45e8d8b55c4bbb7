"""Batch prediction over CSR rows on the GPU (twin of fmnumba/cpu/predict.py).

A group of `lanes` threads (lanes_for(k): 8 at k = 8, 32 at k = 64) per row;
each lane keeps its q_f in a register, the lanes' shares are summed in a
fixed order (_row.group_sum), so results are deterministic and agree with
the CPU kernel within rounding.
"""
from numba import cuda, float64

from ._device import TPB, blocks, csr_to_device, lanes_for, param_to_device
from ._row import group_sum, lane_share


@cuda.jit
def predict_kernel(X, w0, P, lanes, out, qdummy, consts):
    """out[r] = w0 + the lanes' summed shares; qdummy is an unused 2-d array
    (q stays in registers)."""
    red = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    lane = tid % lanes
    r = (cuda.blockIdx.x * TPB + tid) // lanes
    live = r < out.shape[0]
    part = consts[0]
    if live:
        part = lane_share(X, P, r, lane, lanes, qdummy, -1, consts)
    s = group_sum(red, tid, lane, lanes, part)
    if live and lane == 0:
        out[r] = w0 + s


def predict_device(dX, w0, dP, n_rows):
    """ŷ on the device for device CSR arrays dX = (indptr, indices, data)."""
    dt = dP.dtype
    k = dP.shape[1] - 1
    lanes = lanes_for(k)
    dout = cuda.device_array(n_rows, dtype=dt)
    if n_rows:
        predict_kernel[blocks(n_rows * lanes), TPB](
            dX, float(w0), dP, lanes, dout, cuda.device_array((1, 1), dt),
            (dt.type(0), dt.type(0.5)))
    return dout


def predict_csr(X, w0, P, out):
    """out[r] = ŷ(x_r) for every CSR row r of X = (indptr, indices, data);
    out (n_rows,) of P's dtype.

    Same signature as the CPU kernel; X is cached on the device (see
    _device), P is taken from the session or uploaded.
    """
    dout = predict_device(csr_to_device(X), w0, param_to_device(P), out.shape[0])
    if out.shape[0]:
        out[...] = dout.copy_to_host()
    return out
