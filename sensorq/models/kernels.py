"""numba kernels of the window features (docs/models.md, "Features").

``int_features`` is the integer definition the device reproduces bit for bit:
int64 accumulators, ``rdiv`` (round half away from zero), ``isqrt`` (floor),
a 256-entry Q15 cosine table indexed by the top 8 bits of a u32 phase.  Each
line maps to a line of C.  ``float_features`` is the host's float reference of
the same quantities (exact mean, std, DFT at the same frequencies).

Windows arrive as sample ranges [lo, hi) into the signal arrays; the caller
has dropped NaN samples and applied each input's exponent.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .model import BAND, CROSS, MAD, MAX, MEAN, MIN, PTP, RATIO, RMS, STD

INT32_MAX = 2**31 - 1
# COS[k] = round(32767 * cos(2 pi k / 256)); the sine is COS[(k - 64) & 255].
COS_TABLE = np.round(32767.0 * np.cos(2 * np.pi * np.arange(256) / 256)).astype(np.int64)


@njit(cache=True, inline="always")
def rdiv(a, b):
    """a / b rounded half away from zero (b > 0)."""
    if a >= 0:
        return (a + b // 2) // b
    return -((-a + b // 2) // b)


@njit(cache=True, inline="always")
def isqrt(v):
    """floor(sqrt(v)) for 0 <= v < 2^62, exact."""
    if v <= 0:
        return np.int64(0)
    r = np.int64(math.sqrt(v))
    while r * r > v:
        r -= 1
    while (r + 1) * (r + 1) <= v:
        r += 1
    return r


@njit(cache=True, inline="always")
def clamp32(v):
    if v > INT32_MAX:
        return np.int64(INT32_MAX)
    if v < -INT32_MAX:
        return np.int64(-INT32_MAX)
    return v


@njit(cache=True)
def _band_energy(u, lo, hi, m16, steps, s0, s1, cos):
    """Sum over the band's phase steps of rdiv(re, n 2^15)^2 + rdiv(im, n 2^15)^2,
    where re/im = sum of (16 u_i - M) * cos/sin(phase_i), phase_i = i * step mod 2^32."""
    n = hi - lo
    total = np.int64(0)
    den = np.int64(n) << 15
    for j in range(s0, s1):
        step = np.uint32(steps[j])
        phase = np.uint32(0)
        re = np.int64(0)
        im = np.int64(0)
        for i in range(lo, hi):
            x = 16 * np.int64(u[i]) - m16
            k = phase >> np.uint32(24)
            re += x * cos[k]
            im += x * cos[(k - np.uint32(64)) & np.uint32(255)]
            phase = np.uint32(phase + step)
        a = rdiv(re, den)
        b = rdiv(im, den)
        total += a * a + b * b
    return total


@njit(cache=True)
def int_features(u, win_lo, win_hi, stats, ops, sig, steps, a_start, b_start, b_end, out):
    """out[w, f] = the integer code of feature f over samples [win_lo[w], win_hi[w]).

    u: int32 (n_signals, n) signal values; stats: int64 (5, n_signals, n_windows),
    each window's S, Q, D, min, max (stats_direct or stats_by_segments).
    Spectral features read phase steps steps[a_start[f]:b_start[f]] (numerator
    / band) and steps[b_start[f]:b_end[f]]."""
    cos = COS_TABLE
    for w in range(win_lo.shape[0]):
        lo = win_lo[w]
        hi = win_hi[w]
        n = np.int64(hi - lo)
        for f in range(ops.shape[0]):
            s = sig[f]
            S = stats[0, s, w]
            m16 = rdiv(16 * S, n)
            out[w, f] = clamp32(_code(ops[f], u[s], lo, hi, n, S, stats[1, s, w], stats[2, s, w],
                                      stats[3, s, w], stats[4, s, w], m16, steps, a_start[f],
                                      b_start[f], b_end[f], cos))


@njit(cache=True)
def stats_direct(u, win_lo, win_hi, stats):
    """S, Q, D (sum of |successive differences|), min, max of every signal
    over every window, one pass over each window's samples."""
    for s in range(u.shape[0]):
        row = u[s]
        for w in range(win_lo.shape[0]):
            lo = win_lo[w]
            v = np.int64(row[lo])
            S = v
            Q = v * v
            D = np.int64(0)
            mn = v
            mx = v
            prev = v
            for i in range(lo + 1, win_hi[w]):
                v = np.int64(row[i])
                S += v
                Q += v * v
                D += abs(v - prev)
                prev = v
                mn = min(mn, v)
                mx = max(mx, v)
            stats[0, s, w] = S
            stats[1, s, w] = Q
            stats[2, s, w] = D
            stats[3, s, w] = mn
            stats[4, s, w] = mx


@njit(cache=True)
def stats_by_segments(u, seg_lo, seg_hi, win_seg, m, stats):
    """The same numbers as stats_direct when every window is m whole hops:
    each hop-long segment is summed once, then a window adds up its m
    segments (D also gains |first - last| across each joint between non-empty
    segments).  Integer sums are exact, so the result is identical."""
    n_seg = seg_lo.shape[0]
    for s in range(u.shape[0]):
        row = u[s]
        part = np.zeros((8, n_seg), np.int64)    # n, S, Q, D, min, max, first, last
        for j in range(n_seg):
            lo = seg_lo[j]
            hi = seg_hi[j]
            part[0, j] = hi - lo
            if hi == lo:
                continue
            v = np.int64(row[lo])
            S = v
            Q = v * v
            D = np.int64(0)
            mn = v
            mx = v
            prev = v
            for i in range(lo + 1, hi):
                v = np.int64(row[i])
                S += v
                Q += v * v
                D += abs(v - prev)
                prev = v
                mn = min(mn, v)
                mx = max(mx, v)
            part[1, j] = S
            part[2, j] = Q
            part[3, j] = D
            part[4, j] = mn
            part[5, j] = mx
            part[6, j] = np.int64(row[lo])
            part[7, j] = prev
        for w in range(win_seg.shape[0]):
            S = np.int64(0)
            Q = np.int64(0)
            D = np.int64(0)
            mn = np.int64(1) << 62
            mx = -(np.int64(1) << 62)
            seen = False
            last = np.int64(0)
            for j in range(win_seg[w], win_seg[w] + m):
                if part[0, j] == 0:
                    continue
                S += part[1, j]
                Q += part[2, j]
                D += part[3, j]
                if seen:
                    D += abs(part[6, j] - last)
                last = part[7, j]
                seen = True
                mn = min(mn, part[4, j])
                mx = max(mx, part[5, j])
            stats[0, s, w] = S
            stats[1, s, w] = Q
            stats[2, s, w] = D
            stats[3, s, w] = mn
            stats[4, s, w] = mx


@njit(cache=True)
def _code(op, row, lo, hi, n, S, Q, D, mn, mx, m16, steps, a0, b0, b1, cos):
    n64 = np.int64(n)
    if op == MEAN:
        return m16
    if op == STD:
        var2 = 256 * Q - 32 * m16 * S + n64 * m16 * m16      # = sum (16 u - M)^2, exact
        return isqrt(rdiv(var2, n64))
    if op == MIN:
        return mn
    if op == MAX:
        return mx
    if op == RMS:
        return isqrt(rdiv(256 * Q, n64))
    if op == PTP:
        return mx - mn
    if op == MAD:
        return rdiv(16 * D, n64 - 1)
    if op == CROSS:
        c = np.int64(0)
        above = 16 * np.int64(row[lo]) - m16 >= 0
        for i in range(lo + 1, hi):
            now = 16 * np.int64(row[i]) - m16 >= 0
            if now != above:
                c += 1
            above = now
        return rdiv(4096 * c, n64 - 1)
    if op == BAND:
        return isqrt(_band_energy(row, lo, hi, m16, steps, a0, b0, cos))
    if op == RATIO:
        ea = _band_energy(row, lo, hi, m16, steps, a0, b0, cos)
        eb = _band_energy(row, lo, hi, m16, steps, b0, b1, cos)
        if eb == 0:
            return np.int64(INT32_MAX)
        return rdiv(256 * ea, eb)
    return np.int64(0)


@njit(cache=True)
def float_features(x, win_lo, win_hi, ops, sig, freqs, a_start, b_start, b_end, out):
    """The float reference: the same features on float64 signals, in the units
    of the integer codes times their scale (so code * scale is close to it)."""
    for w in range(win_lo.shape[0]):
        lo = win_lo[w]
        hi = win_hi[w]
        n = hi - lo
        for f in range(ops.shape[0]):
            row = x[sig[f]]
            out[w, f] = _float_code(ops[f], row[lo:hi], n, freqs, a_start[f], b_start[f], b_end[f])


@njit(cache=True)
def _float_code(op, v, n, freqs, a0, b0, b1):
    total = 0.0
    for i in range(n):
        total += v[i]
    mean = total / n                   # the sum in sample order, over n
    if op == MEAN:
        return mean
    if op == STD or op == RMS:
        acc = 0.0
        for i in range(n):
            d = v[i] - mean if op == STD else v[i]
            acc += d * d
        return math.sqrt(acc / n)
    if op == MIN or op == MAX or op == PTP:
        lo = v[0]
        hi = v[0]
        for i in range(1, n):
            lo = min(lo, v[i])
            hi = max(hi, v[i])
        return lo if op == MIN else (hi if op == MAX else hi - lo)
    if op == MAD:
        acc = 0.0
        for i in range(1, n):
            acc += abs(v[i] - v[i - 1])
        return acc / (n - 1)
    if op == CROSS:
        c = 0
        above = v[0] >= mean
        for i in range(1, n):
            now = v[i] >= mean
            if now != above:
                c += 1
            above = now
        return c / (n - 1)
    if op == BAND:
        return math.sqrt(_float_energy(v, mean, n, freqs, a0, b0))
    if op == RATIO:
        eb = _float_energy(v, mean, n, freqs, b0, b1)
        if eb == 0.0:
            return INT32_MAX / 256.0
        return _float_energy(v, mean, n, freqs, a0, b0) / eb
    return 0.0


@njit(cache=True)
def _float_energy(v, mean, n, freqs, s0, s1):
    """Sum of |DFT(v - mean)/n|^2 at normalised frequencies freqs[s0:s1] (cycles per sample)."""
    total = 0.0
    for j in range(s0, s1):
        re = 0.0
        im = 0.0
        w = 2 * math.pi * freqs[j]
        for i in range(n):
            x = v[i] - mean
            re += x * math.cos(w * i)
            im += x * math.sin(w * i)
        re /= n
        im /= n
        total += re * re + im * im
    return total


@njit(cache=True)
def int_signal(values, exponent, is_float):
    """A stored column as the signal's integers: floor(v * 2^e) for integer
    columns (e <= 0: an arithmetic shift), round-half-even(v * 2^e) for float
    columns (multiplying by a power of two is exact), saturated to int16."""
    n = values.shape[0]
    out = np.empty(n, np.int32)
    for i in range(n):
        if is_float:
            r = np.rint(np.float64(values[i]) * 2.0 ** exponent)
            if r > 32767.0:
                r = 32767.0
            if r < -32768.0:
                r = -32768.0
            out[i] = np.int32(r)
        else:
            v = np.int64(values[i]) >> np.int64(-exponent)
            out[i] = np.int32(min(max(v, -32768), 32767))
    return out


@njit(cache=True)
def int_mag(rows):
    """isqrt of the sum of squares of up to 4 int16-range rows: < 2^16 + 1."""
    n = rows.shape[1]
    out = np.empty(n, np.int32)
    for i in range(n):
        acc = np.int64(0)
        for r in range(rows.shape[0]):
            acc += np.int64(rows[r, i]) * np.int64(rows[r, i])
        out[i] = np.int32(isqrt(acc))
    return out
