"""Loss functions: codes shared by Python and the kernels, value and derivative.

Codes: 0 squared, 1 logistic, 2 hinge. Classification targets are -1/+1.
``loss_grad`` returns g = dℓ/dŷ. Both are stable for any finite margin (and
for ±inf margins): the logistic loss never goes through log(σ) or a division
that overflows, so saturated margins give g → 0 or ±1, never NaN.
"""
import numpy as np
from numba import njit

SQUARED, LOGISTIC, HINGE = 0, 1, 2
# float32 constants: exact, and they keep float32 arithmetic in float32 while
# float64 inputs still promote to float64
_ZERO, _HALF, _ONE = np.float32(0.0), np.float32(0.5), np.float32(1.0)
LOSS_CODES = {"squared": SQUARED, "logistic": LOGISTIC, "hinge": HINGE}


@njit(cache=True, nogil=True)
def loss_value(code, yhat, y):
    """ℓ(ŷ, y) for one sample."""
    if code == SQUARED:
        d = yhat - y
        return _HALF * d * d
    z = y * yhat
    if code == LOGISTIC:
        # log(1 + e^-z) = max(-z, 0) + log1p(e^-|z|)
        return (-z if z < _ZERO else _ZERO) + np.log1p(np.exp(-abs(z)))
    return (_ONE - z) if z < _ONE else _ZERO


@njit(cache=True, nogil=True)
def loss_grad(code, yhat, y):
    """g = ∂ℓ/∂ŷ for one sample."""
    if code == SQUARED:
        return yhat - y
    z = y * yhat
    if code == LOGISTIC:
        # -y·σ(-z), with σ evaluated on the side where exp cannot overflow
        if z >= 0:
            e = np.exp(-z)
            return -y * e / (_ONE + e)
        return -y / (_ONE + np.exp(z))
    return -y if z < _ONE else _ZERO * y


def loss_numpy(code, yhat, y):
    """Vectorised ℓ for arrays (float64), used for history and scores."""
    yhat = np.asarray(yhat, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if code == SQUARED:
        return 0.5 * (yhat - y) ** 2
    z = y * yhat
    if code == LOGISTIC:
        return np.maximum(-z, 0.0) + np.log1p(np.exp(-np.abs(z)))
    return np.maximum(0.0, 1.0 - z)
