"""Transforms between stored values and the unsigned words the integer codec
codes (docs/format.md §3), and the per-channel block statistics (§2).
"""
from __future__ import annotations

import numpy as np

from ..jitcache import cached, digest
from .bits import ONE, U64, ZERO
from .intcodec import DECIMAL, FLOATBITS

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)

SIGN64 = np.uint64(1 << 63)
SIGN32 = np.uint64(1 << 31)
MASK32 = np.uint64(0xFFFFFFFF)
MAX_DECIMAL_EXPONENT = 9     # 1e-9 resolution covers every sensor we know of

SUM_INEXACT = 1
SUMSQ_INEXACT = 2


# --- time ----------------------------------------------------------------------

def time_words(t):
    """(tick, words) with words = (t - t_first) / tick, tick the gcd of the
    offsets (1 if all are 0).  ``t``: non-decreasing, at least one sample, no
    step of 2^63 ns or more (the block encoders refuse those first)."""
    words = np.empty(t.shape[0], np.uint64)
    tick, _ = time_words_into(t, words)
    return tick, words


_HALF_RANGE = U64(1 << 63)
_EXACT_FLOAT = U64(1 << 53)       # integers below this are exact in float64


@cached(_STAMP, nogil=True)
def _divides(d, x):
    """Does d divide x?  One float division instead of an integer one where both are exact."""
    if x < _EXACT_FLOAT and d < _EXACT_FLOAT:
        return U64(np.float64(x) / np.float64(d)) * d == x
    return x % d == ZERO


@cached(_STAMP, nogil=True)
def _gcd(a, b):
    while b != ZERO:
        a, b = b, a % b
    return a


@cached(_STAMP, nogil=True)
def time_words_into(t, words):
    """time_words with the words in ``words``: tick = the gcd of
    the offsets from t[0] (1 if all are 0), words = offsets / tick, exact.
    Returns (tick, index of the first step of 2^63 ns or more, or -1).

    That gcd is two integer divisions a sample; here, the first non-zero
    offset (the smallest: t is non-decreasing) is the gcd whenever it divides
    every offset, which two vectorised passes check and divide with float64
    (exact for integers below 2^53).  Other clocks take the gcd loop."""
    n = t.shape[0]
    first = U64(t[0])
    words[0] = ZERO
    bad = False
    for i in range(1, n):
        bad |= U64(t[i]) - U64(t[i - 1]) >= _HALF_RANGE
        words[i] = U64(t[i]) - first
    if bad:
        for i in range(1, n):
            if U64(t[i]) - U64(t[i - 1]) >= _HALF_RANGE:
                return np.int64(1), i - 1
    j = 0
    while j < n and words[j] == ZERO:
        j += 1
    if j == n:
        return np.int64(1), -1
    if words[n - 1] < _EXACT_FLOAT:
        tick = words[j]
        scale = np.float64(tick)
        divides = True
        for i in range(n):        # from 0, not j: loops from a scanned index do not vectorise
            divides &= U64(np.float64(words[i]) / scale) * tick == words[i]
        if divides:
            _divide_words(words, tick)
            return np.int64(tick), -1
    return _time_words_gcd(words), -1


@cached(_STAMP, nogil=True)
def _time_words_gcd(words):
    """The tick of offsets ``words`` (at least one non-zero) and words /= tick."""
    n = words.shape[0]
    tick = ZERO
    for i in range(n):
        off = words[i]
        if off != ZERO and (tick == ZERO or not _divides(tick, off)):
            tick = _gcd(off, tick)
    if tick != ONE:
        _divide_words(words, tick)
    return np.int64(tick)


@cached(_STAMP, nogil=True, inline="always")
def _divide_words(words, tick):
    """words //= tick, each a multiple of it: in float64 (one vectorised
    pass) where every word is below 2^53, else integer division."""
    n = words.shape[0]
    if words[n - 1] < _EXACT_FLOAT:      # non-decreasing: the last is the largest
        scale = np.float64(tick)
        for i in range(n):
            words[i] = U64(np.float64(words[i]) / scale)
    else:
        for i in range(n):
            words[i] //= tick


@cached(_STAMP, nogil=True, refcounted=False)
def time_values(words, n, t_first, tick, out):
    for i in range(n):
        out[i] = np.int64(U64(t_first) + words[i] * U64(tick))


# --- floats --------------------------------------------------------------------

@cached(_STAMP, nogil=True)
def decimal_exponent(x, is32):
    """The smallest e ≤ MAX_DECIMAL_EXPONENT such that every x == m / 10^e for
    an int64 m, compared bit for bit (after rounding to x's own precision);
    -1 if there is none (NaN, ±inf, -0.0 or too many digits)."""
    for e in range(MAX_DECIMAL_EXPONENT + 1):
        power = 10.0 ** e
        ok = True
        for i in range(x.shape[0]):
            v = np.float64(x[i])
            scaled = v * power
            if not (abs(scaled) < 9.0e18):
                ok = False
                break
            m = np.int64(np.round(scaled))
            back = np.float64(m) / power
            if is32:
                same = np.float32(back) == x[i] and not (back == 0.0 and np.signbit(x[i]))
            else:
                same = back == v and not (back == 0.0 and np.signbit(v))
            if not same:
                ok = False
                break
        if ok:
            return e
    return -1


@cached(_STAMP, nogil=True)
def decimal_words(x, e):
    power = 10.0 ** e
    out = np.empty(x.shape[0], np.uint64)
    for i in range(x.shape[0]):
        out[i] = U64(np.int64(np.round(np.float64(x[i]) * power)))
    return out


@cached(_STAMP, nogil=True)
def floatbits_words(bits, sign):
    """IEEE bits → order-preserving unsigned words (bits given as uint64)."""
    out = np.empty(bits.shape[0], np.uint64)
    ones = (sign << ONE) - ONE if sign != SIGN64 else U64(0xFFFFFFFFFFFFFFFF)
    for i in range(bits.shape[0]):
        b = bits[i]
        out[i] = (b ^ ones) if (b & sign) else (b | sign)
    return out


@cached(_STAMP, nogil=True)
def floatbits_from_word(w, sign):
    ones = (sign << ONE) - ONE if sign != SIGN64 else U64(0xFFFFFFFFFFFFFFFF)
    return (w ^ sign) if (w & sign) else (w ^ ones)


def float_words(x: np.ndarray) -> tuple[int, int, np.ndarray]:
    """(codec mode bit, decimal exponent, words) for a float column."""
    e = decimal_exponent(x, x.dtype == np.float32)
    if e >= 0:
        return DECIMAL, e, decimal_words(x, e)
    if x.dtype == np.float32:
        return FLOATBITS, 0, floatbits_words(x.view(np.uint32).astype(np.uint64), SIGN32)
    return FLOATBITS, 0, floatbits_words(x.view(np.uint64), SIGN64)


@cached(_STAMP, nogil=True, refcounted=False)
def float_values(words, n, mode, e, is32, out):
    """Words back to float64 values (float32 values are exact in float64)."""
    if mode == DECIMAL:
        power = 10.0 ** e
        for i in range(n):
            out[i] = _decimal(np.float64(np.int64(words[i])), power, is32)
    elif is32:
        for i in range(n):
            b = np.uint32(floatbits_from_word(words[i], SIGN32) & MASK32)
            out[i] = np.float64(_f32_from_bits(b))
    else:
        for i in range(n):
            out[i] = _f64_from_bits(floatbits_from_word(words[i], SIGN64))


@cached(_STAMP, nogil=True)
def _decimal(mantissa, power, is32):
    v = mantissa / power
    return np.float64(np.float32(v)) if is32 else v


# scalar views: a bit cast (a one-element array per value made FLOATBITS
# decode at 0.04 G values/s)
@cached(_STAMP, nogil=True, inline="always")
def _f64_from_bits(b):
    return U64(b).view(np.float64)


@cached(_STAMP, nogil=True, inline="always")
def _f32_from_bits(b):
    return np.uint32(b).view(np.float32)


# --- statistics ----------------------------------------------------------------

@cached(_STAMP, nogil=True)
def int_stats(v):
    """(count, flags, idx_min, idx_max, min, max, first, last, sum, sumsq bits)
    over int64 values (docs/format.md §2).

    The sum is kept as a 128-bit two's complement number (carry word ``high``)
    so that SUM_INEXACT is set exactly when the true sum leaves the int64
    range; the arithmetic is unsigned because signed overflow is undefined to
    the compiler, which would optimise a naive check away."""
    n = v.shape[0]
    lo, hi, i_lo, i_hi = v[0], v[0], 0, 0
    low, high = ZERO, np.int64(0)
    squares, squares_overflow = ZERO, False
    for i in range(n):
        x = v[i]
        if x < lo:
            lo, i_lo = x, i
        if x > hi:
            hi, i_hi = x, i
        new_low = low + U64(x)
        high += np.int64(new_low < low) - np.int64(x < 0)
        low = new_low
        magnitude = U64(x) if x >= 0 else ZERO - U64(x)
        if magnitude >= U64(1 << 32):
            squares_overflow = True
        new_squares = squares + magnitude * magnitude
        if new_squares < squares:
            squares_overflow = True
        squares = new_squares
    flags = 0
    if high != (np.int64(-1) if low >> U64(63) else np.int64(0)):
        flags |= SUM_INEXACT
    if squares_overflow:
        flags |= SUMSQ_INEXACT
    return n, flags, i_lo, i_hi, lo, hi, v[0], v[n - 1], np.int64(low), np.int64(squares)


@cached(_STAMP, nogil=True)
def float_stats(v):
    """Statistics of a float column over its non-NaN values, as float64."""
    n = v.shape[0]
    count, i_lo, i_hi = 0, 0, 0
    lo, hi, total, squares = np.nan, np.nan, 0.0, 0.0
    for i in range(n):
        x = np.float64(v[i])
        if np.isnan(x):
            continue
        if count == 0 or x < lo:
            lo, i_lo = x, i
        if count == 0 or x > hi:
            hi, i_hi = x, i
        total += x
        squares += x * x
        count += 1
    if count == 0:
        total, squares = np.nan, np.nan
    return (count, SUM_INEXACT | SUMSQ_INEXACT, i_lo, i_hi, lo, hi,
            np.float64(v[0]), np.float64(v[n - 1]), total, squares)
