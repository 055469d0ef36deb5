"""Mantissas to float values, in place (docs/format.md §3): DECIMAL's
x = m / 10^e and ALP's kinds 0 and 1, x = m / c or m × c, each done in f64
on (f64) m (then rounded to f32 for float32 values).

The engine's decoder applies them to a row of mantissas, or to a column's
dictionary before its ranks are looked up (a dictionary's entries are fewer
than its values: the Daphnet floats' lookup then writes the values
themselves, and no pass over the row follows).
"""
from __future__ import annotations

import numpy as np

from ..jitcache import cached, digest
from .bits import fma

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)

DIVIDE, MULTIPLY = 0, 1          # x = m / c, x = m × c (ALP's kinds 0 and 1)
NO_SCALE = -1                    # integer values: the mantissas are the values
EXACT_POWERS = np.array([10.0 ** e for e in range(19)])    # the divisors divide_row multiplies by


@cached(_STAMP, nogil=True, refcounted=False)
def scale_row(row, n, kind, c, is32):
    """In place: row[:n] (integers, as float64) to m / c (kind DIVIDE) or
    m × c (MULTIPLY), then through f32 if ``is32``; NO_SCALE: unchanged."""
    if kind == DIVIDE:
        divide_row(row, n, c, is32)
    elif kind == MULTIPLY:
        if is32:
            for i in range(n):
                row[i] = np.float64(np.float32(row[i] * c))
        else:
            for i in range(n):
                row[i] = row[i] * c


@cached(_STAMP, nogil=True, refcounted=False)
def divide_row(row, n, c, is32):
    """In place: row[i] := row[i] / c in f64, correctly rounded (then rounded
    to f32 if ``is32``), for rows of integers (mantissas) with |row[i]| ≤ 2^64.

    For c = 10^e, e ≤ 18, without a divide instruction (vdivpd: about 2
    cycles a value, most of a decimal column's decode): q = a·y with
    y = RN(10^-e), r = RN(a − q·c), q' = RN(q + r·y) (two fused
    multiply-adds).  q' is RN(a / c), the division's own result, for every
    such a.  Why: q is within 2 ulps of x = a / c, so q + r·y is within
    about 2^-51 ulp of x.  A quotient x that is a double comes out exactly.
    One that is not lies at least 2^-43 ulp from every midpoint between two
    doubles: with ulp(x) = 2^t, x minus a midpoint is (a − (2k+1)·2^(t−1)·c)
    / c, whose numerator is a non-zero multiple of 2^min(0, t−1+e) (a is an
    integer, c = 2^e·5^e), so the distance is at least 2^(t−1)/5^e ≥ ulp /
    (2·5^18) > 2^-43 ulp (or 1/c, more still).  So both round alike.  No
    underflow or overflow for integers a; a = 0 gives +0, as the division
    does.  tests/test_floats.py checks it against numpy's division.  Any
    other c: the division."""
    exact = False
    for e in range(EXACT_POWERS.shape[0]):
        exact |= c == EXACT_POWERS[e]
    if not exact:
        for i in range(n):
            v = row[i] / c
            row[i] = np.float64(np.float32(v)) if is32 else v
        return
    y = 1.0 / c
    for i in range(n):
        a = row[i]
        q = a * y
        v = fma(fma(-q, c, a), y, q)
        row[i] = np.float64(np.float32(v)) if is32 else v
