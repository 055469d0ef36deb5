"""A time column's clock line (codec bit CLOCK, docs/format.md §3).

A sensor sampled at a rate that its timestamps' unit does not divide — 64 Hz
written in whole milliseconds, 30 Hz in ms, 44.1 kHz in µs — has steps that
alternate (15, 16, 16, 15, 16, … ms): no tick makes them equal, and the
predictors see a pattern of residuals.  Yet every time word (offset from
the block's first time, in ticks) lies on a line with a rational slope:

    word_k = floor((p·k + r) / q),   k = 0 … n − 1,

p/q the period in ticks (125/8 for 64 Hz in ms), 0 ≤ r < q its phase.  A
CLOCK section stores p, q and r as varints and then the residual words,
word_k − floor((p·k + r) / q), as an ordinary section: none at all for such a
clock (ZERO_RESIDUALS), the jitter alone for a clock that wanders about its
line (whose steps, the order-1 residuals, differ by twice as much).

The decoder adds the line in one vectorised pass: with a = p div q and
b = p mod q, floor((p·k + r) / q) = a·k + floor((b·k + r) / q), and b·k + r
< 2^33 (q ≤ 2^16, k < 2^16), so the quotient of two float64s, floored, is
exact.  The encoder finds the line among the convergents of the block's
mean step (continued fractions: the smallest denominators that come close),
each tried in two vectorised passes, and otherwise fits one by least squares
when the plain section is wide (codec/timecol.py ``encode_time``).
"""
from __future__ import annotations

import numpy as np

from ..jitcache import cached, digest
from .bits import ONE, U64, ZERO, bit_length, put_varint, read_varint, varint_status
from .codes import CLOCK_MAX_DENOMINATOR, ERR_BAD_CODE, OK

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)

# A line is sought only for words below this (the last time word): q · word
# and p · k then stay far inside int64.
SPAN_LIMIT = U64(1) << U64(40)
FIT_DENOMINATOR = U64(CLOCK_MAX_DENOMINATOR)    # a fitted line's slope, in 2^-16 ticks
NO_LINE = (ZERO, ZERO, ZERO)


@cached(_STAMP, nogil=True, refcounted=False)
def read_line(buf, pos, end):
    """The line's p, q, r at buf[pos:end]: (status, p, q, r, position after
    them).  ERR_BAD_CODE unless 1 ≤ q ≤ CLOCK_MAX_DENOMINATOR and r < q.
    (Three reads in turn: an array of three would be an allocation a block
    in the decoder.)"""
    p, pos = read_varint(buf, pos, end)
    if pos < 0:
        return varint_status(p), ZERO, ZERO, ZERO, -1
    q, pos = read_varint(buf, pos, end)
    if pos < 0:
        return varint_status(q), ZERO, ZERO, ZERO, -1
    r, pos = read_varint(buf, pos, end)
    if pos < 0:
        return varint_status(r), ZERO, ZERO, ZERO, -1
    if q == ZERO or q > U64(CLOCK_MAX_DENOMINATOR) or r >= q:
        return ERR_BAD_CODE, ZERO, ZERO, ZERO, -1
    return OK, p, q, r, pos


@cached(_STAMP, nogil=True)
def write_line(out, pos, p, q, r):
    """p, q, r as varints at out[pos:]; the offset after them."""
    pos = put_varint(out, pos, p)
    pos = put_varint(out, pos, q)
    return put_varint(out, pos, r)


@cached(_STAMP, nogil=True, refcounted=False)
def add_line(words, n, p, q, r, scale):
    """words[k] += scale · floor((p·k + r) / q) for k < n (mod 2^64): the
    time words (scale 1), or timestamps already scaled by the tick."""
    _line_pass(words, n, p, q, r, ZERO, scale, ~ZERO)


@cached(_STAMP, nogil=True, refcounted=False)
def line_into(words, n, p, q, r, offset, scale):
    """words[k] := offset + scale · floor((p·k + r) / q) (mod 2^64): the
    timestamps of an exact line, in one pass."""
    _line_pass(words, n, p, q, r, offset, scale, ZERO)


@cached(_STAMP, nogil=True, inline="always")
def _line_pass(words, n, p, q, r, offset, scale, keep):
    """words[k] := (words[k] & keep) + offset + scale · line_k."""
    a, b = p // q, p % q
    qf = np.float64(q)
    for k in range(U64(n)):
        words[k] = (words[k] & keep) + offset + scale * (a * k + U64(np.floor(np.float64(b * k + r) / qf)))


@cached(_STAMP, nogil=True)
def line_residuals(words, n, p, q, r, out):
    """out[k] := words[k] − floor((p·k + r) / q) (mod 2^64)."""
    for k in range(U64(n)):
        out[k] = words[k]
    minus_one = ZERO - ONE
    add_line(out, n, p, q, r, minus_one)


@cached(_STAMP, nogil=True)
def exact_line(words, n):
    """(p, q, r) with words[k] == floor((p·k + r) / q) for every k < n: the
    first such among the convergents of the mean step words[n − 1] / (n − 1)
    with q ≤ CLOCK_MAX_DENOMINATOR; (0, 0, 0) if none is.  words[0] is 0.

    A line exists iff some r has v_k ≤ r < v_k + q for every k, with v_k =
    q·words[k] − p·k: r = max v then works iff max v < min v + q.  When the
    words lie on a line p/q, the mean step is within 1/(n − 1) of p/q, so by
    Legendre's theorem p/q is one of its convergents once q < √((n − 1)/2)."""
    if n < 3 or words[n - 1] >= SPAN_LIMIT:
        return NO_LINE
    num, den = np.int64(words[n - 1]), np.int64(n - 1)
    h_before, h, k_before, k = np.int64(0), np.int64(1), np.int64(1), np.int64(0)
    while den != 0:
        a = num // den
        num, den = den, num - a * den
        h_before, h = h, a * h + h_before
        k_before, k = k, a * k + k_before
        if k > CLOCK_MAX_DENOMINATOR:
            break
        lowest, highest = _offsets_range(words, n, h, k)
        if highest < lowest + k:
            return U64(h), U64(k), U64(highest)
    return NO_LINE


@cached(_STAMP, nogil=True)
def _offsets_range(words, n, p, q):
    """(min, max) of q·words[k] − p·k over k < n (int64)."""
    lowest = highest = np.int64(0)
    for k in range(U64(n)):
        v = np.int64(U64(q) * words[k]) - p * np.int64(k)
        lowest = min(lowest, v)
        highest = max(highest, v)
    return lowest, highest


@cached(_STAMP, nogil=True)
def fitted_line(words, n):
    """The least-squares line through (k, words[k]), its slope rounded to
    FIT_DENOMINATOR ths of a tick: (p, q, 0).  The residuals' base takes the
    offset.  (0, 0, 0) for words beyond SPAN_LIMIT or a falling slope."""
    if n < 3 or words[n - 1] >= SPAN_LIMIT:
        return NO_LINE
    mean_k = (n - 1) / 2.0
    mean_w = 0.0
    for k in range(U64(n)):
        mean_w += np.float64(words[k])
    mean_w /= n
    spread = cross = 0.0
    for k in range(U64(n)):
        dk = np.float64(k) - mean_k
        spread += dk * dk
        cross += dk * (np.float64(words[k]) - mean_w)
    slope = cross / spread
    if not slope >= 0.0:
        return NO_LINE
    return U64(np.round(slope * np.float64(FIT_DENOMINATOR))), FIT_DENOMINATOR, ZERO


@cached(_STAMP, nogil=True)
def closer_than_steps(words, residuals, n):
    """Whether the residuals from a fitted line (read as int64) span fewer
    bits than the steps words[k] − words[k − 1] do: only then is a second
    encode, of the residuals, worth its time (a jittered clock's span half
    its steps'; a random walk's, far more).  n ≥ 2."""
    lowest = highest = np.int64(residuals[0])
    fewest = most = words[1] - words[0]
    for k in range(ONE, U64(n)):
        v = np.int64(residuals[k])
        lowest, highest = min(lowest, v), max(highest, v)
        step = words[k] - words[k - ONE]
        fewest, most = min(fewest, step), max(most, step)
    return bit_length(U64(highest - lowest)) < bit_length(most - fewest)
