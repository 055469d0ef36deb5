"""The predictors of the integer column codec (docs/format.md §3): a
column's order-0, 1 or 2 prediction residuals, zigzagged.

Kept apart from intcodec.py so that the ENTROPY coder (tans.py), which
intcodec.py calls, can make residuals too without importing it back.  The
decoder's side (undoing them, fused with the scaling) is in intcodec.py.
"""
from __future__ import annotations

from ..jitcache import cached, digest
from .bits import ONE, U64, ZERO
from .codes import FRAMES, PREDICTOR_MASK

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)


@cached(_STAMP, nogil=True, inline="always")
def predictor_order(codec):
    """The predictor order of a section's codec byte: its field, with FRAMES
    (3, codes.py) an order-0 section."""
    order = codec & PREDICTOR_MASK
    return 0 if order == FRAMES else order


@cached(_STAMP, nogil=True)
def zigzag(d):
    return (d << ONE) ^ (ZERO - (d >> U64(63)))


@cached(_STAMP, nogil=True)
def unzigzag(u):
    return (u >> ONE) ^ (ZERO - (u & ONE))


@cached(_STAMP, nogil=True)
def residuals(s, order, u):
    """u := the order-``order`` prediction residuals of s (mod 2^64, zigzagged)."""
    n = s.shape[0]
    if n == 0:
        return
    u[0] = s[0]
    # unsigned indices: with signed ones numba's negative-index wraparound
    # on s[i - 2] kept the order-2 loop scalar (~1.4 ns a value against 0.1)
    if order == 0:
        for i in range(ONE, U64(n)):
            u[i] = s[i]
    elif order == 1:
        for i in range(ONE, U64(n)):
            u[i] = zigzag(s[i] - s[i - ONE])
    else:
        if n > 1:
            u[1] = zigzag(s[1] - s[0])
        for i in range(U64(2), U64(n)):
            u[i] = zigzag(s[i] - U64(2) * s[i - ONE] + s[i - U64(2)])


