"""Mini-batch forward pass keeping ŷ and q (twin of fmnumba/cpu/forward.py).

Batch row i is row order[start + i]; a group of `lanes` threads per row
writes Q[i, :] = q, G[i] = s_r·∂ℓ/∂ŷ and L[i] = s_r·ℓ (float64). ŷ is
w0 + the row's sum in float64 (w0 = intercept[0] is float64, as on the CPU).
The kernel does nothing once a batch has diverged (flags[0] != 0); its
first thread resets the per-batch counters nu used by the transpose.
"""
import numpy as np
from numba import cuda, float64

from ._device import TPB, blocks, csr_to_device, data_to_device, lanes_for
from ._losses import loss_grad, loss_value
from ._row import group_sum, lane_share


@cuda.jit
def forward_kernel(X, y, sw, batch, loss_code, intercept, P, lanes, out, flags, nu,
                   consts):
    """batch = (order, start, nb); out = (yhat, Q, G, L)."""
    order, start, nb = batch
    yhat, Q, G, L = out
    red = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    lane = tid % lanes
    i = (cuda.blockIdx.x * TPB + tid) // lanes
    if cuda.blockIdx.x == 0 and tid == 0:
        nu[0] = 0
        nu[1] = 0
    live = i < nb and flags[0] == 0
    part = consts[0]
    r = 0
    if live:
        r = order[start + i]
        part = lane_share(X, P, r, lane, lanes, Q, i, consts)
    s = group_sum(red, tid, lane, lanes, part)
    if live and lane == 0:
        yh = intercept[0] + s
        yhat[i] = yh
        G[i] = sw[r] * loss_grad(loss_code, yh, y[r])
        L[i] = sw[r] * loss_value(loss_code, yh, y[r])


def launch_forward(dX, dy, dsw, batch, loss_code, dintercept, dP, dout, dflags, dnu):
    """forward_kernel for batch = (device order, start, nb)."""
    dt = dP.dtype
    lanes = lanes_for(dP.shape[1] - 1)
    forward_kernel[blocks(max(batch[2], 1) * lanes), TPB](
        dX, dy, dsw, batch, loss_code, dintercept, dP, lanes, dout, dflags, dnu,
        (dt.type(0), dt.type(0.5)))


def forward_batch(X, y, sw, rows, loss_code, w0, P, out):
    """Same contract as fmnumba.cpu.forward_batch (host arrays in and out)."""
    nb = rows.shape[0]
    if nb == 0:
        return
    k = P.shape[1] - 1
    dout = (cuda.device_array(nb, P.dtype), cuda.device_array((nb, k), P.dtype),
            cuda.device_array(nb, P.dtype), cuda.device_array(nb, np.float64))
    launch_forward(csr_to_device(X), data_to_device(y), data_to_device(sw),
                   (cuda.to_device(np.ascontiguousarray(rows)), 0, nb), loss_code,
                   cuda.to_device(np.array([w0], dtype=np.float64)), cuda.to_device(P), dout,
                   cuda.to_device(np.zeros(2, np.int32)), cuda.to_device(np.zeros(2, np.int32)))
    for host, dev in zip(out, dout):
        host[:nb] = dev.copy_to_host()
