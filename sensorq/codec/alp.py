"""ALP mode for float channels (docs/format.md §3): each value as an integer
mantissa m with x = m / c or x = m × c for one f64 constant c per block, the
mantissas coded by the integer column codec, and every value that does not
come back bit for bit (NaN, ±inf, −0.0, a value with more digits than the
rest) kept whole as an *exception*: its position and its IEEE bits.

After ALP (Afroozeh, Kuffo and Boncz, SIGMOD 2024; DuckDB's float encoding):
the encoder samples the block to choose the constant, the decoder does one
multiply or divide a value and patches the exceptions.  Unlike ALP's fixed
pair of powers of ten, c is one of several families, because sensor floats
come from different arithmetic:

* ``m / 10^e``: decimals parsed from text (a CSV's "0.079106") are the
  nearest doubles to m / 10^e, which is what the correctly rounded division
  gives back — every one of them, so they raise no exceptions;
* ``m × 10^-e`` (the double nearest 10^-e, or the float32 one): integers
  scaled in software (Daphnet's mg × 0.001), which a division misses for
  about a third of the values;
* ``m × 2^k``: fixed-point values (an ADC's LSB of 2^-14 g);
* ``m × 10^f``: integers with trailing zeros.

Decoding is as fast as the DECIMAL mode it generalises: the mantissas come
out of the integer decoder already in float64, one vectorised pass scales
them, and the exceptions are patched by position.
"""
from __future__ import annotations

import numpy as np

from ..jitcache import cached, digest
from .bits import U64, bit_length, trailing_zeros
from .codes import DECIMAL, ERR_BAD_CODE, ERR_LENGTH, ERR_TRUNCATED, FLOATBITS
from .scaling import DIVIDE, MULTIPLY          # kinds 0, 1: x = m / c, x = m × c
from .transforms import (MAX_DECIMAL_EXPONENT, SIGN32, SIGN64, decimal_exponent, decimal_words,
                         floatbits_from_word, floatbits_words)

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)

ALP = DECIMAL | FLOATBITS        # both mode bits of the codec byte: this mode
SHIFT = 2                        # x's order-preserving word = w << q (its low q bits zero)
NARROW = 0x80                    # on kinds 0, 1 of a float64 column: the result rounded to float32
HEADER_BYTES = 13                # kind (1), c (f64), exception count (u32)
MAX_MANTISSA = 2.0 ** 53         # |m| up to this converts to float64 exactly

POW10 = np.array([10.0 ** e for e in range(19)])
INV10 = np.array([float(f"1e-{e}") for e in range(19)])                       # nearest doubles
INV10_32 = np.array([float(np.float32(f"1e-{e}")) for e in range(19)])         # nearest floats

SAMPLE_RUNS = 8        # the sample: runs of consecutive values spread over the block,
SAMPLE_RUN = 32        # so that the predictor's steps can be priced


# --- the transform ------------------------------------------------------------------

@cached(_STAMP, nogil=True, inline="always", error_model="numpy")
def _value(m, kind, c, is32):
    v = np.float64(m) / c if kind == DIVIDE else np.float64(m) * c
    return np.float64(np.float32(v)) if is32 else v


@cached(_STAMP, nogil=True, inline="always", error_model="numpy")
def _mantissa(x, kind, c, is32):
    """(m, True) if x comes back bit for bit from m, else (0, False)."""
    q = x * c if kind == DIVIDE else x / c
    if not abs(q) <= MAX_MANTISSA:          # also NaN and ±inf
        return np.int64(0), False
    m = np.int64(np.round(q))
    v = _value(m, kind, c, is32)
    return m, v == x and np.signbit(v) == np.signbit(x)


# --- choosing the constant from a sample ---------------------------------------------

@cached(_STAMP, nogil=True, error_model="numpy")   # (a division by 0: inf, never a raise)
def _sample_cost(x, kind, c, is32, exception_bits, runs):
    """(estimated bits, exceptions) of the sample under (kind, c): the bit
    length of each step between consecutive mantissas (what the order-1
    predictor leaves), plus each exception's position and bits."""
    n = x.shape[0]
    runs = max(1, min(runs, (n + SAMPLE_RUN - 1) // SAMPLE_RUN))
    stride = n // runs
    bits, exceptions = 0, 0
    for r in range(runs):
        lo = r * stride
        have, prev = False, np.int64(0)
        for i in range(lo, min(n, lo + SAMPLE_RUN)):
            m, ok = _mantissa(np.float64(x[i]), kind, c, is32)
            if not ok:
                exceptions += 1
                continue
            if have:
                d = m - prev
                bits += bit_length(U64((d << 1) ^ (d >> 63)))
            have, prev = True, m
    return bits + exceptions * exception_bits, exceptions


@cached(_STAMP, nogil=True)
def _floatbits_sample_cost(x, is32, runs):
    """The same estimate for the FLOATBITS mode (order-preserving words, order 1)."""
    n = x.shape[0]
    runs = max(1, min(runs, (n + SAMPLE_RUN - 1) // SAMPLE_RUN))
    stride = n // runs
    bits = 0
    for r in range(runs):
        lo = r * stride
        for i in range(lo + 1, min(n, lo + SAMPLE_RUN)):
            d = np.int64(_ordered(x[i], is32) - _ordered(x[i - 1], is32))
            bits += bit_length(U64((d << 1) ^ (d >> 63)))
    return bits


@cached(_STAMP, nogil=True, inline="always")
def _ordered(v, is32):
    if is32:
        b = U64(np.float32(v).view(np.uint32))
        return (b ^ U64(0xFFFFFFFF)) if b >> U64(31) else (b | U64(1 << 31))
    b = np.float64(v).view(np.uint64)
    return ~b if b >> U64(63) else (b | U64(1 << 63))


@cached(_STAMP, nogil=True)
def _power_of_two(x, runs):
    """The k that makes every sampled finite x an integer times 2^-k (the
    place of its lowest set bit), within ±1000; 0 if there are none."""
    n = x.shape[0]
    k = -1100
    step = max(1, n // (runs * SAMPLE_RUN))
    for i in range(0, n, step):
        bits = np.float64(x[i]).view(np.uint64)
        biased = np.int64((bits >> U64(52)) & U64(0x7FF))
        mant = bits & U64((1 << 52) - 1)
        if biased == 0x7FF or (biased == 0 and mant == U64(0)):     # ±inf, NaN, ±0
            continue
        if biased:
            mant |= U64(1 << 52)
        lowest = max(biased, 1) - 1075 + trailing_zeros(mant)
        k = max(k, -lowest)
    return 0 if k == -1100 else max(-1000, min(1000, k))


@cached(_STAMP, nogil=True, error_model="numpy")
def _common_step(x, runs, tolerance):
    """An approximate greatest common divisor of the sampled |x| (Euclid's
    algorithm on floats, remainders below ``tolerance`` of the largest value
    taken as zero): the step of integers scaled by an arbitrary constant,
    such as mg × 0.00980665 in m/s².  0 when the sample has no finite
    nonzero value."""
    n = x.shape[0]
    step = max(1, n // (runs * SAMPLE_RUN))
    top = 0.0
    for i in range(0, n, step):
        v = abs(np.float64(x[i]))
        if v < np.inf:
            top = max(top, v)
    g = 0.0
    for i in range(0, n, step):
        v = abs(np.float64(x[i]))
        if not (v > tolerance * top and v < np.inf):
            continue
        a, b = max(v, g), min(v, g)
        for _ in range(100):        # a continued fraction's length, at most
            if b <= tolerance * top:
                break
            a, b = b, a % b
        g = a
    return g


@cached(_STAMP, nogil=True, error_model="numpy")
def _exact_step(x, g, runs):
    """The double nearest the sampled x / m for the sample's largest integer
    m = |x| / g: the multiplier's estimate with the least rounding in it."""
    n = x.shape[0]
    step = max(1, n // (runs * SAMPLE_RUN))
    best_m, best_x = 0.0, 0.0
    for i in range(0, n, step):
        v = abs(np.float64(x[i]))
        if v < np.inf:
            m = np.round(v / g)
            if m > best_m and m <= MAX_MANTISSA:
                best_m, best_x = m, v
    return best_x / best_m if best_m > 0.0 else g


@cached(_STAMP, nogil=True)
def _zero_low_bits(x, is32, runs):
    """The fewest trailing zero bits among the sampled values' IEEE bits
    (float32 values widened to float64 have at least 29: pcodec's "float
    quantisation"); 0 if there are none."""
    n = x.shape[0]
    step = max(1, n // (runs * SAMPLE_RUN))
    q = 64
    for i in range(0, n, step):
        b = U64(np.float32(x[i]).view(np.uint32)) if is32 else np.float64(x[i]).view(np.uint64)
        q = min(q, trailing_zeros(b) if b else 64)
    return min(q, 31 if is32 else 63)


@cached(_STAMP, nogil=True)
def _shift_sample_cost(x, q, is32, exception_bits, runs):
    """_sample_cost for SHIFT: steps between the shifted order-preserving words."""
    n = x.shape[0]
    runs = max(1, min(runs, (n + SAMPLE_RUN - 1) // SAMPLE_RUN))
    stride = n // runs
    low = (U64(1) << U64(q)) - U64(1)
    bits, exceptions = 0, 0
    for r in range(runs):
        lo = r * stride
        have, prev = False, U64(0)
        for i in range(lo, min(n, lo + SAMPLE_RUN)):
            b = U64(np.float32(x[i]).view(np.uint32)) if is32 else np.float64(x[i]).view(np.uint64)
            if b & low:
                exceptions += 1
                continue
            w = _ordered(x[i], is32) >> U64(q)
            if have:
                d = np.int64(w - prev)
                bits += bit_length(U64((d << 1) ^ (d >> 63)))
            have, prev = True, w
    return bits + exceptions * exception_bits


@cached(_STAMP, nogil=True, error_model="numpy")
def choose(x, is32, runs, shift_ok=True):
    """(kind, c, estimated bits, FLOATBITS' estimated bits) for the block x,
    from ``runs`` runs of SAMPLE_RUN values (n / SAMPLE_RUN: every value)."""
    exception_bits = 16 + (32 if is32 else 64)
    best_kind, best_c, best = DIVIDE, 1.0, np.int64(1) << 62
    integer_cost = np.int64(-1)
    for e in range(19):                 # decimals: the smallest exponent without exceptions
        cost, exceptions = _sample_cost(x, DIVIDE, POW10[e], is32, exception_bits, runs)
        if cost < best:
            best_kind, best_c, best = DIVIDE, POW10[e], cost
        if exceptions == 0:
            integer_cost = cost if e == 0 else integer_cost
            break
    for family in range(2):             # scaled integers
        for e in range(1, 19):
            c = INV10[e] if family == 0 else INV10_32[e]
            cost, exceptions = _sample_cost(x, MULTIPLY, c, is32, exception_bits, runs)
            if cost < best:
                best_kind, best_c, best = MULTIPLY, c, cost
            if exceptions == 0:
                break
    c = 2.0 ** np.float64(-_power_of_two(x, runs))          # fixed point
    cost, exceptions = _sample_cost(x, MULTIPLY, c, is32, exception_bits, runs)
    if cost < best:
        best_kind, best_c, best = MULTIPLY, c, cost
    if exceptions and integer_cost < 0:   # integers times any constant: c within 3 ulps of x / m
        g = _common_step(x, runs, 1e-5 if is32 else 1e-9)    # (float32's rounding is coarser)
        if g > 0.0:
            estimate = np.float64(_exact_step(x, g, runs)).view(np.int64)
            for k in range(-3, 4):
                c = np.int64(estimate + k).view(np.float64)
                if not (c > 0.0 and c < np.inf):
                    continue
                cost, _ = _sample_cost(x, MULTIPLY, c, is32, exception_bits, runs)
                if cost < best:
                    best_kind, best_c, best = MULTIPLY, c, cost
            divisor = np.round(1.0 / g)               # integers over a whole number (x / 3)
            if divisor >= 2.0 and abs(divisor * g - 1.0) < 1e-6 and divisor <= MAX_MANTISSA:
                cost, _ = _sample_cost(x, DIVIDE, divisor, is32, exception_bits, runs)
                if cost < best:
                    best_kind, best_c, best = DIVIDE, divisor, cost
    if integer_cost >= 0:               # integers: trailing zeros
        for f in range(1, 19):
            cost, exceptions = _sample_cost(x, MULTIPLY, POW10[f], is32, exception_bits, runs)
            if exceptions or cost >= integer_cost:
                break
            integer_cost = cost
            if cost < best:
                best_kind, best_c, best = MULTIPLY, POW10[f], cost
    q = _zero_low_bits(x, is32, runs) if shift_ok else 0
    if q > 0:                           # bit patterns with zero low bits (float32 widened)
        cost = _shift_sample_cost(x, q, is32, exception_bits, runs)
        if cost < best:
            best_kind, best_c, best = SHIFT, np.float64(q), cost
    return best_kind, best_c, best, _floatbits_sample_cost(x, is32, runs)


@cached(_STAMP, nogil=True, error_model="numpy")
def mantissas(x, kind, c, is32):
    """(words, exception positions): the mantissas as uint64 words, an
    exception's word being the mantissa before it (the first one's: the
    first mantissa), which costs the predictor nothing."""
    n = x.shape[0]
    words = np.empty(n, np.uint64)
    positions = np.empty(n, np.int64)
    count = 0
    prev, first = np.int64(0), -1
    for i in range(n):
        m, ok = _mantissa(np.float64(x[i]), kind, c, is32)
        if ok:
            prev = m
            if first < 0:
                first = i
        else:
            positions[count] = i
            count += 1
        words[i] = U64(prev)
    if first > 0:
        words[:first] = words[first]
    return words, positions[:count]


@cached(_STAMP, nogil=True)
def shifted_words(x, q, is32):
    """(words, exception positions) for SHIFT: the order-preserving words
    >> q; a value with a low bit set is an exception (its word the one
    before it, as for mantissas)."""
    n = x.shape[0]
    words = np.empty(n, np.uint64)
    positions = np.empty(n, np.int64)
    low = (U64(1) << U64(q)) - U64(1)
    count, prev, first = 0, U64(0), -1
    for i in range(n):
        b = U64(np.float32(x[i]).view(np.uint32)) if is32 else np.float64(x[i]).view(np.uint64)
        if b & low:
            positions[count] = i
            count += 1
        else:
            prev = _ordered(x[i], is32) >> U64(q)
            if first < 0:
                first = i
        words[i] = prev
    if first > 0:
        words[:first] = words[first]
    return words, positions[:count]


# --- decoding (the engine's kernels) --------------------------------------------------

@cached(_STAMP, nogil=True, refcounted=False)
def _read_u32(buf, pos):
    return (np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8) | (np.int64(buf[pos + 2]) << 16)
            | (np.int64(buf[pos + 3]) << 24))


@cached(_STAMP, nogil=True, refcounted=False)
def _read_u64(buf, pos):
    v = U64(0)
    for i in range(8):
        v |= U64(buf[pos + i]) << U64(8 * i)
    return v


@cached(_STAMP, nogil=True, refcounted=False)
def mantissa_start(buf, start, end, n, is32):
    """Check an ALP section's header and exceptions (buf[start:end]); return
    where its mantissa section starts, or a negative status.  After this,
    :func:`scale`, :func:`patch_exceptions` and :func:`finish_shift` read
    only checked bytes."""
    if start + HEADER_BYTES > end:
        return ERR_TRUNCATED
    kind = buf[start] & ~NARROW
    parameter = U64(_read_u64(buf, start + 1))
    c = parameter.view(np.float64)
    width = 4 if is32 else 8
    if kind > SHIFT or kind == SHIFT and not (parameter >= U64(1) and parameter < U64(8 * width)) \
            or kind < SHIFT and not (c > 0.0 and c < np.inf) \
            or (buf[start] & NARROW) != 0 and (is32 or kind == SHIFT):
        return ERR_BAD_CODE
    count = _read_u32(buf, start + 9)
    if count > n:
        return ERR_LENGTH
    pos = start + HEADER_BYTES
    if count * (2 + width) > end - pos:
        return ERR_TRUNCATED
    last = -1
    for j in range(count):          # strictly increasing, inside the block
        at = np.int64(buf[pos + 2 * j]) | (np.int64(buf[pos + 2 * j + 1]) << 8)
        if at <= last or at >= n:
            return ERR_BAD_CODE
        last = at
    return pos + count * (2 + width)


@cached(_STAMP, nogil=True, refcounted=False)
def scale(buf, start, is32):
    """(kind, c, through f32) of the ALP section at ``start`` (checked by
    mantissa_start, kind 0 or 1): what scaling.scale_row takes."""
    return (np.int64(buf[start] & ~NARROW), U64(_read_u64(buf, start + 1)).view(np.float64),
            is32 or (buf[start] & NARROW) != 0)


@cached(_STAMP, nogil=True, refcounted=False)
def is_shift(buf, start):
    """Whether the ALP section at ``start`` (checked by mantissa_start) is SHIFT."""
    return buf[start] == SHIFT


@cached(_STAMP, nogil=True, refcounted=False)
def finish_shift(buf, start, n, is32, words, row):
    """A SHIFT section's words (decoded by the integer decoder) to values in
    row[:n], then the exceptions.  The section passed mantissa_start."""
    q = U64(_read_u64(buf, start + 1))
    low = (U64(1) << q) - U64(1)
    sign = U64(1 << 31) if is32 else U64(1 << 63)
    for i in range(n):
        o = words[i] << q
        o = o if o & sign else o | low        # a negative value's low bits were ones
        if is32:
            b = np.uint32(floatbits_from_word(o, SIGN32) & U64(0xFFFFFFFF))
            row[i] = np.float64(b.view(np.float32))
        else:
            row[i] = U64(floatbits_from_word(o, SIGN64)).view(np.float64)
    patch_exceptions(buf, start, is32, row)


@cached(_STAMP, nogil=True, refcounted=False)
def patch_exceptions(buf, start, is32, row):
    count = _read_u32(buf, start + 9)
    pos = start + HEADER_BYTES
    values = pos + 2 * count
    for j in range(count):
        at = np.int64(buf[pos + 2 * j]) | (np.int64(buf[pos + 2 * j + 1]) << 8)
        if is32:
            bits = np.uint32(_read_u32(buf, values + 4 * j))
            row[at] = np.float64(bits.view(np.float32))
        else:
            row[at] = U64(_read_u64(buf, values + 8 * j)).view(np.float64)


# --- encoding (Python side) ------------------------------------------------------------

def section_header(kind: int, c: float, positions: np.ndarray, x: np.ndarray) -> bytes:
    """Kind, c, the exception count, positions (u16) and IEEE bits of an ALP section."""
    bits = x.view(np.uint32 if x.dtype == np.float32 else np.uint64)[positions]
    parameter = np.uint64(int(c)) if kind == SHIFT else np.float64(c)
    return b"".join([bytes([kind]), parameter.tobytes(), len(positions).to_bytes(4, "little"),
                     positions.astype("<u2").tobytes(), bits.astype(bits.dtype.newbyteorder("<")).tobytes()])


def _floatbits_section(x: np.ndarray, encode_words) -> tuple[bytes, int, int]:
    if x.dtype == np.float32:
        words = floatbits_words(x.view(np.uint32).astype(np.uint64), SIGN32)
    else:
        words = floatbits_words(x.view(np.uint64), SIGN64)
    section, codec_bits = encode_words(words, False, False)
    return section, codec_bits | FLOATBITS, 0


def encode_float_section(x: np.ndarray, encode_words) -> tuple[bytes, int, int]:
    """(section, codec byte, decimal exponent) of a float column (version 1),
    ``encode_words(words, signed, patches)`` coding integer columns (block.py's;
    patched mini-blocks only in ALP sections, which older readers reject anyway):
    DECIMAL when every value is an exact decimal of at most 9 places (the
    bytes older readers know), else ALP, or FLOATBITS when the sample says
    the bit patterns are cheaper.  A section with many exceptions (the
    sample misjudged the block, or its values have no such structure) is
    compared with the choice from every value and with FLOATBITS."""
    section = _priced_float_section(x, encode_words)
    if section[1] & ALP != FLOATBITS:
        return section
    # FLOATBITS only for blocks DECIMAL cannot code, as in version 2 (transforms.float_words):
    # the bit patterns price lower only for decimals of 16 or more significant digits, and
    # DECIMAL's mantissas may pass the 2^53 that the sampled candidates stop at
    exponent = decimal_exponent(x, x.dtype == np.float32)
    if exponent < 0:
        return section
    words, codec_bits = encode_words(decimal_words(x, exponent), True, False)
    return words, codec_bits | DECIMAL, exponent


def _priced_float_section(x: np.ndarray, encode_words) -> tuple[bytes, int, int]:
    is32 = x.dtype == np.float32
    kind, c, cost, floatbits_cost = choose(x, is32, SAMPLE_RUNS)
    if not is32 and _mostly_float32(x):       # float32 results held as float64
        narrow_kind, narrow_c, narrow_cost, _ = choose(x, True, SAMPLE_RUNS, False)
        if narrow_cost < min(cost, floatbits_cost):
            kind, c, cost = narrow_kind | NARROW, narrow_c, narrow_cost
    if floatbits_cost < cost:
        return _floatbits_section(x, encode_words)
    section, codec, exponent, exceptions = _alp_section(x, kind, c, encode_words)
    if exceptions * 32 <= len(x):
        return section, codec, exponent
    candidates = [(section, codec, exponent), _floatbits_section(x, encode_words)]
    whole_kind, whole_c, _, _ = choose(x, is32, len(x) // SAMPLE_RUN + 1)
    if (whole_kind, whole_c) != (kind, c):
        candidates.append(_alp_section(x, whole_kind, whole_c, encode_words)[:3])
    return min(candidates, key=lambda candidate: len(candidate[0]))


def _mostly_float32(x: np.ndarray) -> bool:
    """Whether most sampled float64 values are float32 values widened."""
    sample = x[::max(1, len(x) // (SAMPLE_RUNS * SAMPLE_RUN))]
    with np.errstate(over="ignore", invalid="ignore"):
        return np.count_nonzero(sample.astype(np.float32).astype(np.float64) == sample) * 2 > len(sample)


def _alp_section(x: np.ndarray, kind: int, c: float, encode_words):
    """(section, codec byte, decimal exponent, exceptions) in ALP mode, or
    DECIMAL when it is a decimal transform without exceptions."""
    rounded = x.dtype == np.float32 or bool(kind & NARROW)
    if kind == SHIFT:
        words, positions = shifted_words(x, int(c), x.dtype == np.float32)
    else:
        words, positions = mantissas(x, kind & ~NARROW, c, rounded)
    if not len(positions) and kind == DIVIDE and c in POW10[:MAX_DECIMAL_EXPONENT + 1]:
        section, codec_bits = encode_words(words, True, False)     # as older readers know it
        return section, codec_bits | DECIMAL, int(np.flatnonzero(POW10 == c)[0]), 0
    section, codec_bits = encode_words(words, kind != SHIFT, True)
    return section_header(kind, c, positions, x) + section, codec_bits | ALP, 0, len(positions)
