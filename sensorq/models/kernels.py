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
def int_features(u, win_lo, win_hi, ops, sig, steps, a_start, b_start, b_end, out):
    """out[w, f] = the integer code of feature f over samples [win_lo[w], win_hi[w]).

    u: int32 (n_signals, n) signal values.  Spectral features read phase steps
    steps[a_start[f]:b_start[f]] (numerator / band) and steps[b_start[f]:b_end[f]]."""
    n_sig = u.shape[0]
    cos = COS_TABLE
    S = np.zeros(n_sig, np.int64)
    Q = np.zeros(n_sig, np.int64)
    D = np.zeros(n_sig, np.int64)
    MN = np.zeros(n_sig, np.int64)
    MX = np.zeros(n_sig, np.int64)
    M = np.zeros(n_sig, np.int64)
    done = np.zeros(n_sig, np.bool_)
    for w in range(win_lo.shape[0]):
        lo = win_lo[w]
        hi = win_hi[w]
        n = hi - lo
        done[:] = False
        for f in range(ops.shape[0]):
            s = sig[f]
            row = u[s]
            if not done[s]:
                _pass_one(row, lo, hi, s, S, Q, D, MN, MX)
                M[s] = rdiv(16 * S[s], np.int64(n))
                done[s] = True
            out[w, f] = clamp32(_code(ops[f], row, lo, hi, n, S[s], Q[s], D[s], MN[s], MX[s], M[s],
                                      steps, a_start[f], b_start[f], b_end[f], cos))


@njit(cache=True, inline="always")
def _pass_one(row, lo, hi, s, S, Q, D, MN, MX):
    v = np.int64(row[lo])
    s_ = v
    q = v * v
    d = np.int64(0)
    mn = v
    mx = v
    prev = v
    for i in range(lo + 1, hi):
        v = np.int64(row[i])
        s_ += v
        q += v * v
        d += abs(v - prev)
        prev = v
        if v < mn:
            mn = v
        if v > mx:
            mx = v
    S[s] = s_
    Q[s] = q
    D[s] = d
    MN[s] = mn
    MX[s] = mx


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
    mean = v.sum() / n
    if op == MEAN:
        return mean
    if op == STD:
        return math.sqrt(((v - mean) ** 2).sum() / n)
    if op == MIN:
        return v.min()
    if op == MAX:
        return v.max()
    if op == RMS:
        return math.sqrt((v * v).sum() / n)
    if op == PTP:
        return v.max() - v.min()
    if op == MAD:
        return np.abs(v[1:] - v[:-1]).sum() / (n - 1)
    if op == CROSS:
        above = v >= mean
        return (above[1:] != above[:-1]).sum() / (n - 1)
    if op == BAND:
        return math.sqrt(_float_energy(v - mean, n, freqs, a0, b0))
    if op == RATIO:
        eb = _float_energy(v - mean, n, freqs, b0, b1)
        if eb == 0.0:
            return INT32_MAX / 256.0
        return _float_energy(v - mean, n, freqs, a0, b0) / eb
    return 0.0


@njit(cache=True)
def _float_energy(x, n, freqs, s0, s1):
    """Sum of |DFT(x)/n|^2 at normalised frequencies freqs[s0:s1] (cycles per sample)."""
    total = 0.0
    i = np.arange(n)
    for j in range(s0, s1):
        ang = 2 * math.pi * freqs[j] * i
        re = (x * np.cos(ang)).sum() / n
        im = (x * np.sin(ang)).sum() / n
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
