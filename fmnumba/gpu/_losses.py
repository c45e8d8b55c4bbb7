"""Device versions of fmnumba.losses.loss_value / loss_grad (same formulas,
same codes, same stability: no log(σ), no overflowing division)."""
import math

from numba import cuda

from ..losses import LOGISTIC, SQUARED


@cuda.jit(device=True)
def loss_value(code, yhat, y):
    if code == SQUARED:
        d = yhat - y
        return 0.5 * d * d
    z = y * yhat
    if code == LOGISTIC:
        return max(-z, 0.0) + math.log1p(math.exp(-abs(z)))
    return max(0.0, 1.0 - z)


@cuda.jit(device=True)
def loss_grad(code, yhat, y):
    if code == SQUARED:
        return yhat - y
    z = y * yhat
    if code == LOGISTIC:
        if z >= 0:
            e = math.exp(-z)
            return -y * e / (1.0 + e)
        return -y / (1.0 + math.exp(z))
    if z < 1.0:
        return -y
    return 0.0 * y
