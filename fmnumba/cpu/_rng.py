"""Counter-based random numbers for the samplers (Philox4x32-10).

Every draw is a pure function of a key (the seed, two 32-bit words) and a
counter of four 32-bit words (c0, c1, c2, c3); the samplers use
(sweep, stream tag, parameter index, attempt). No state is carried between
draws, so a draw does not depend on which thread makes it or in which order:
a parallel sweep gives bit-identical results at any thread count.

Philox4x32-10 is the generator of Salmon et al., "Parallel random numbers:
as easy as 1, 2, 3" (SC'11). Rejection samplers (gamma, truncated normal)
take their i-th proposal from attempt index i.
"""
import math

import numpy as np
from numba import njit

from .._config import FASTMATH

_MASK = np.uint64(0xFFFFFFFF)
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_S32 = np.uint64(32)
_TWO_PI = 2.0 * math.pi
_MAX_ATTEMPTS = 10_000


@njit(inline="always", nogil=True, fastmath=FASTMATH)
def philox4x32(k0, k1, c0, c1, c2, c3):
    """Philox4x32-10 block: four uint32 words (as uint64) from key and counter."""
    k0 = np.uint64(k0) & _MASK
    k1 = np.uint64(k1) & _MASK
    c0 = np.uint64(c0) & _MASK
    c1 = np.uint64(c1) & _MASK
    c2 = np.uint64(c2) & _MASK
    c3 = np.uint64(c3) & _MASK
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0 = p0 >> _S32
        lo0 = p0 & _MASK
        hi1 = p1 >> _S32
        lo1 = p1 & _MASK
        c0 = hi1 ^ c1 ^ k0
        c1 = lo1
        c2 = hi0 ^ c3 ^ k1
        c3 = lo0
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


@njit(inline="always", nogil=True, fastmath=FASTMATH)
def _open01(a, b):
    """Uniform in the open interval (0, 1) from two uint32 words (53 bits)."""
    hi = np.float64(a >> np.uint64(5))
    lo = np.float64(b >> np.uint64(6))
    return (hi * 67108864.0 + lo + 0.5) * (1.0 / 9007199254740992.0)


@njit(nogil=True, fastmath=FASTMATH)
def uniform(key, c0, c1, c2, c3):
    """U(0, 1) (open interval), float64, for counter (c0, c1, c2, c3)."""
    a, b, _, _ = philox4x32(key[0], key[1], c0, c1, c2, c3)
    return _open01(a, b)


@njit(nogil=True, fastmath=FASTMATH)
def uniform2(key, c0, c1, c2, c3):
    """Two independent U(0, 1) draws from one Philox block."""
    a, b, c, d = philox4x32(key[0], key[1], c0, c1, c2, c3)
    return _open01(a, b), _open01(c, d)


@njit(nogil=True, fastmath=FASTMATH)
def normal(key, c0, c1, c2, c3):
    """N(0, 1), float64 (Box–Muller on one Philox block)."""
    u1, u2 = uniform2(key, c0, c1, c2, c3)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)


@njit(nogil=True, fastmath=FASTMATH)
def gamma(key, c0, c1, c2, shape, rate):
    """Gamma(shape, rate) (mean shape/rate), float64; shape > 0, rate > 0.

    Marsaglia & Tsang (2000); proposal i uses attempt words 2i and 2i + 1.
    For shape < 1: Gamma(shape + 1) · U^(1/shape).
    """
    boost = 1.0
    a = shape
    if a < 1.0:
        boost = uniform(key, c0, c1, c2, 0x7FFFFFFF) ** (1.0 / a)
        a = a + 1.0
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    for i in range(_MAX_ATTEMPTS):
        z = normal(key, c0, c1, c2, 2 * i)
        u = uniform(key, c0, c1, c2, 2 * i + 1)
        t = 1.0 + c * z
        if t <= 0.0:
            continue
        v = t * t * t
        if math.log(u) < 0.5 * z * z + d - d * v + d * math.log(v):
            return d * v * boost / rate
    return d * boost / rate  # unreachable in practice (acceptance rate > 0.95)


@njit(nogil=True, fastmath=FASTMATH)
def normal_above(key, c0, c1, c2, a):
    """Standard normal conditioned on x > a, float64.

    a < 0: rejection from N(0, 1), both Box–Muller outputs of a block
    tried in turn (acceptance >= 1/2 each); a >= 0: Robert's (1995)
    exponential proposal with the optimal rate (acceptance >= 0.76).
    """
    if a < 0.0:
        for i in range(_MAX_ATTEMPTS):
            u1, u2 = uniform2(key, c0, c1, c2, i)
            r = math.sqrt(-2.0 * math.log(u1))
            x = r * math.cos(_TWO_PI * u2)
            if x > a:
                return x
            x = r * math.sin(_TWO_PI * u2)
            if x > a:
                return x
        return a
    lam = 0.5 * (a + math.sqrt(a * a + 4.0))
    for i in range(_MAX_ATTEMPTS):
        u1, u2 = uniform2(key, c0, c1, c2, i)
        x = a - math.log(u1) / lam
        d = x - lam
        if math.log(u2) <= -0.5 * d * d:
            return x
    return a


def seed_key(seed):
    """The 2-word Philox key (uint32 array) of an integer seed in [0, 2**64)."""
    seed = int(seed) % (1 << 64)
    return np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32)
