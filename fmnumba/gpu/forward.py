"""Mini-batch forward pass keeping ŷ and q (twin of fmnumba/cpu/forward.py).

Batch row i is row order[start + i]; a group of `lanes` threads per row
writes Q[i, :] = q, G[i] = s_r·∂ℓ/∂ŷ and L[i] = s_r·ℓ (float64). ŷ is
w0 + the row's sum in float64 (w0 = bst[0] is float64, as on the CPU).
The kernel does nothing when halt[0] != 0 (a previous batch diverged); its
first thread resets the per-batch counters nu used by the transpose.
"""
import numpy as np
from numba import cuda, float64

from ._device import TPB, blocks, data_to_device, lanes_for
from ._losses import loss_grad, loss_value
from ._row import group_sum, lane_share


@cuda.jit
def forward_kernel(indptr, indices, data, y, sw, order, start, nb, loss_code,
                   bst, P, lanes, yhat, Q, G, L, halt, nu, zero, half):
    red = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    lane = tid % lanes
    i = (cuda.blockIdx.x * TPB + tid) // lanes
    if cuda.blockIdx.x == 0 and tid == 0:
        nu[0] = 0
        nu[1] = 0
    live = i < nb and halt[0] == 0
    part = zero
    r = 0
    if live:
        r = order[start + i]
        part = lane_share(indptr, indices, data, P, r, lane, lanes, Q, i, True,
                          zero, half)
    s = group_sum(red, tid, lane, lanes, part)
    if live and lane == 0:
        yh = bst[0] + s
        yhat[i] = yh
        G[i] = sw[r] * loss_grad(loss_code, yh, y[r])
        L[i] = sw[r] * loss_value(loss_code, yh, y[r])


def launch_forward(dX, dy, dsw, dorder, start, nb, loss_code, dbst, dP, dyhat,
                   dQ, dG, dL, dhalt, dnu):
    dt = dP.dtype
    lanes = lanes_for(dP.shape[1] - 1)
    forward_kernel[blocks(max(nb, 1) * lanes), TPB](
        dX[0], dX[1], dX[2], dy, dsw, dorder, start, nb, loss_code, dbst, dP,
        lanes, dyhat, dQ, dG, dL, dhalt, dnu, dt.type(0), dt.type(0.5))


def forward_batch(indptr, indices, data, y, sw, rows, loss_code, w0, P,
                  yhat, Q, G, L):
    """Same contract as fmnumba.cpu.forward_batch (host arrays in and out)."""
    nb = rows.shape[0]
    if nb == 0:
        return
    dX = (data_to_device(indptr), data_to_device(indices), data_to_device(data))
    dP = cuda.to_device(P)
    dyhat = cuda.device_array(nb, P.dtype)
    dQ = cuda.device_array((nb, P.shape[1] - 1), P.dtype)
    dG = cuda.device_array(nb, P.dtype)
    dL = cuda.device_array(nb, np.float64)
    launch_forward(dX, data_to_device(y), data_to_device(sw),
                   cuda.to_device(np.ascontiguousarray(rows)), 0, nb, loss_code,
                   cuda.to_device(np.array([w0], dtype=np.float64)), dP, dyhat, dQ, dG,
                   dL, cuda.to_device(np.zeros(1, np.int32)),
                   cuda.to_device(np.zeros(2, np.int32)))
    yhat[:nb] = dyhat.copy_to_host()
    Q[:nb] = dQ.copy_to_host()
    G[:nb] = dG.copy_to_host()
    L[:nb] = dL.copy_to_host()
