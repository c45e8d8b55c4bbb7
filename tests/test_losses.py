"""Loss values and derivatives: numba scalars and loss_numpy against the
naive reference, finite differences, and stability at saturated margins."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fmnumba.losses import (HINGE, LOGISTIC, LOSS_CODES, SQUARED, loss_grad, loss_numpy,
                            loss_value)

try:
    from . import naive
except ImportError:
    import naive

CODES = {"squared": SQUARED, "logistic": LOGISTIC, "hinge": HINGE}
labels = st.sampled_from([-1.0, 1.0])
finite_yhat = st.floats(-1e30, 1e30, allow_nan=False, allow_infinity=False)
extreme_yhat = st.one_of(finite_yhat, st.sampled_from(
    [1e30, -1e30, 1e300, -1e300, 710.0, -710.0, 745.2, -745.2, 37.0, -37.0,
     math.inf, -math.inf, 0.0, -0.0, 1.0, -1.0, 5e-324]))


def test_loss_codes_match_reference():
    assert LOSS_CODES == {"squared": naive.SQUARED, "logistic": naive.LOGISTIC,
                          "hinge": naive.HINGE}


def test_losses_by_hand():
    """Values worked out by hand (independent of both implementations)."""
    assert loss_value(SQUARED, 3.0, 1.0) == 2.0
    assert loss_grad(SQUARED, 3.0, 1.0) == 2.0
    assert math.isclose(loss_value(LOGISTIC, 0.0, 1.0), math.log(2.0))
    assert math.isclose(loss_grad(LOGISTIC, 0.0, -1.0), 0.5)
    assert math.isclose(loss_grad(LOGISTIC, 0.0, 1.0), -0.5)
    assert math.isclose(loss_value(LOGISTIC, 2.0, 1.0), math.log1p(math.exp(-2.0)))
    assert loss_value(HINGE, 0.25, 1.0) == 0.75
    assert loss_grad(HINGE, 0.25, 1.0) == -1.0
    assert loss_grad(HINGE, 0.25, -1.0) == 1.0
    assert loss_value(HINGE, 2.0, 1.0) == 0.0
    assert loss_grad(HINGE, 2.0, 1.0) == 0.0


@given(code=st.sampled_from([LOGISTIC, HINGE]), yhat=extreme_yhat, y=labels)
def test_classification_losses_match_naive(code, yhat, y):
    val = loss_value(code, yhat, y)
    grad = loss_grad(code, yhat, y)
    ref_val = float(naive.loss(code, yhat, y))
    ref_grad = float(naive.loss_grad(code, yhat, y))
    if math.isinf(ref_val):
        assert val == ref_val
    else:
        assert math.isclose(val, ref_val, rel_tol=1e-12, abs_tol=1e-300)
    assert math.isclose(grad, ref_grad, rel_tol=1e-12, abs_tol=1e-300)
    vec = loss_numpy(code, np.array([yhat]), np.array([y]))
    assert vec.dtype == np.float64
    if math.isinf(ref_val):
        assert vec[0] == ref_val
    else:
        assert math.isclose(vec[0], ref_val, rel_tol=1e-12, abs_tol=1e-300)


@given(yhat=st.floats(-1e30, 1e30), y=st.floats(-1e6, 1e6))
def test_squared_loss_matches_naive(yhat, y):
    assert math.isclose(loss_value(SQUARED, yhat, y), float(naive.loss(SQUARED, yhat, y)),
                        rel_tol=1e-12, abs_tol=1e-300)
    assert math.isclose(loss_grad(SQUARED, yhat, y), float(naive.loss_grad(SQUARED, yhat, y)),
                        rel_tol=1e-12, abs_tol=1e-300)
    assert math.isclose(loss_numpy(SQUARED, [yhat], [y])[0],
                        float(naive.loss(SQUARED, yhat, y)), rel_tol=1e-12, abs_tol=1e-300)


@given(code=st.sampled_from([SQUARED, LOGISTIC, HINGE]),
       yhat=st.floats(-40.0, 40.0), y=labels)
def test_loss_grad_is_finite_difference_of_loss_value(code, yhat, y):
    """g = dℓ/dŷ (central differences, away from the hinge kink)."""
    h = 1e-6 * max(1.0, abs(yhat))
    if code == HINGE and abs(y * yhat - 1.0) <= 2 * h:
        return
    fd = (loss_value(code, yhat + h, y) - loss_value(code, yhat - h, y)) / (2 * h)
    g = loss_grad(code, yhat, y)
    scale = abs(loss_value(code, yhat, y)) + 1.0
    assert abs(g - fd) <= 1e-6 * abs(fd) + 1e-14 * scale / h, (g, fd)
    fdn = (loss_numpy(code, [yhat + h], [y])[0] - loss_numpy(code, [yhat - h], [y])[0]) / (2 * h)
    assert abs(g - fdn) <= 1e-6 * abs(fdn) + 1e-14 * scale / h


@given(code=st.sampled_from([LOGISTIC, HINGE]), yhat=extreme_yhat, y=labels)
def test_classification_losses_stable_at_saturated_margins(code, yhat, y):
    g = loss_grad(code, yhat, y)
    ell = loss_value(code, yhat, y)
    assert math.isfinite(g), (yhat, y, g)
    assert not math.isnan(ell)
    if math.isfinite(yhat):
        assert math.isfinite(ell)
    assert ell >= 0.0
    assert -1.0 <= y * g <= 0.0  # g points towards the label, |g| ≤ 1
    z = y * yhat
    if code == LOGISTIC:
        if z >= 40:
            assert abs(g) <= 1e-17   # saturated on the right side: g → 0
            assert ell <= 1e-17
        if z <= -40:
            assert math.isclose(g, -y, rel_tol=1e-15)   # wrong side: g → -y
            assert math.isclose(ell, -z, rel_tol=1e-15) or math.isinf(z)
    vec = loss_numpy(code, np.array([yhat]), np.array([y]))
    assert not np.isnan(vec).any()


@pytest.mark.parametrize("code", [LOGISTIC, HINGE])
def test_loss_numpy_vectorised_extremes(code):
    yhat = np.array([1e30, -1e30, np.inf, -np.inf, 745.2, -745.2, 0.0, 3.0])
    for y in (-1.0, 1.0):
        yy = np.full(yhat.shape, y)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            got = loss_numpy(code, yhat, yy)
        ref = naive.loss(code, yhat, yy)
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
        fin = np.isfinite(ref)
        np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-12, atol=1e-300)
        for a, b, gr in zip(yhat, yy, naive.loss_grad(code, yhat, yy)):
            assert math.isclose(loss_grad(code, a, b), gr, rel_tol=1e-12, abs_tol=1e-300)


def test_squared_loss_large_but_finite():
    for yhat in (1e30, -1e30):
        assert math.isfinite(loss_value(SQUARED, yhat, 1.0))
        assert math.isfinite(loss_grad(SQUARED, yhat, 1.0))


def test_loss_grad_float32_inputs_give_float32():
    """DESIGN §3: float32 paths never silently promote to float64. loss_grad
    computes G (stored in P's dtype) inside the kernels, so for float32
    arguments its numba return type must be float32."""
    for code in (SQUARED, LOGISTIC, HINGE):
        assert np.isclose(loss_grad(code, np.float32(0.5), np.float32(1.0)),
                          float(naive.loss_grad(code, 0.5, 1.0)))
    sigs = [s for s in loss_grad.nopython_signatures
            if str(s.args[1]) == "float32" and str(s.args[2]) == "float32"]
    assert sigs
    assert all(str(s.return_type) == "float32" for s in sigs), sigs
