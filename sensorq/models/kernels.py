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
from numba import prange

from ..codec.bits import ONE, PREFETCH_AHEAD, U64, prefetch_block
from ..codec.clock import add_line, read_line
from ..codec.codes import CLOCK
from ..codec.intcodec import decode_column
from ..jitcache import cached, digest
from .model import BAND, CROSS, MAD, MAX, MEAN, MIN, PTP, RATIO, RMS, STD

_STAMP = digest("codec/*.py", "models/model.py")     # kernels filed under what they compile in (jitcache.py)

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# COS[k] = round(32767 * cos(2 pi k / 256)); the sine is COS[(k - 64) & 255].
COS_TABLE = np.round(32767.0 * np.cos(2 * np.pi * np.arange(256) / 256)).astype(np.int64)


@cached(_STAMP, inline="always")
def rdiv(a, b):
    """a / b rounded half away from zero (b > 0)."""
    if a >= 0:
        return (a + b // 2) // b
    return -((-a + b // 2) // b)


@cached(_STAMP, inline="always")
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


@cached(_STAMP, inline="always")
def clamp32(v):
    if v > INT32_MAX:
        return np.int64(INT32_MAX)
    if v < -INT32_MAX:
        return np.int64(-INT32_MAX)
    return v


@cached(_STAMP)
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


@cached(_STAMP)
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


@cached(_STAMP)
def stats_direct(u, win_lo, win_hi, stats):
    """S, Q, D (sum of |successive differences|), min, max of every signal
    over every window, one pass over each window's samples (_fold)."""
    st = np.empty(N_SEG_FIELDS, np.int64)
    for s in range(u.shape[0]):
        for w in range(win_lo.shape[0]):
            _fold(u[s], U64(win_lo[w]), U64(win_hi[w]), st)
            for k in range(SEG_MAX + 1):            # S, Q, D, min, max: stats' order
                stats[k, s, w] = st[k]


@cached(_STAMP)
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


@cached(_STAMP, inline="always")
def _basic_code(op, n64, S, Q, D, mn, mx, m16):
    """The code of a first-pass feature (MEAN ... MAD) from the window's sums."""
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
    return np.int64(0)


@cached(_STAMP)
def _code(op, row, lo, hi, n, S, Q, D, mn, mx, m16, steps, a0, b0, b1, cos):
    n64 = np.int64(n)
    if op <= MAD:
        return _basic_code(op, n64, S, Q, D, mn, mx, m16)
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


@cached(_STAMP)
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


@cached(_STAMP)
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


@cached(_STAMP)
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


@cached(_STAMP)
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


@cached(_STAMP)
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


# --- the fused path: blocks straight to hop-segment statistics --------------------------
#
# For a pipeline whose features are all first-pass statistics (MEAN ... MAD)
# of integer channels, a window's S, Q, D, min and max are sums (min, max) of
# those of the g-long segments it is made of, g = gcd(window, hop).  The
# kernels below decode each block's columns into block-sized scratch rows
# (never the whole stream), fold its samples into per-segment statistics,
# merge the segments that cross block edges and combine them per window.
# Integer sums are exact, so the codes equal int_features' on the same
# samples bit for bit.

SEG_S, SEG_Q, SEG_D, SEG_MIN, SEG_MAX, SEG_FIRST, SEG_LAST = range(7)
N_SEG_FIELDS = 7
ERR_RANGE = -100          # a decoded value does not fit its channel's storage type
# storage type code (1 int8, 2 int16, 3 int32, 4 int64) -> value range
_INT_LO = np.array([0, -2**7, -2**15, -2**31, -2**63], np.int64)
_INT_HI = np.array([0, 2**7 - 1, 2**15 - 1, 2**31 - 1, 2**63 - 1], np.int64)


@cached(_STAMP, inline="always")
def _is_clock(buf, start, length, codec, n, clocks, clock_meta):
    """Whether the time section buf[start:start + length] is, byte for byte,
    one of the sections ``clocks`` holds (clock_meta rows: n, offset, length,
    codec): the codec's own encoding of the words 0, 1, ..., n - 1, a sample
    every tick.  Equal bytes decode to equal words, so such a block's
    timestamps are t_first + i * tick without decoding them."""
    for j in range(clock_meta.shape[0]):
        if clock_meta[j, 0] != n or clock_meta[j, 2] != length or clock_meta[j, 3] != codec:
            continue
        at = clock_meta[j, 1]
        same = True
        for i in range(length):
            if buf[start + i] != clocks[at + i]:
                same = False
                break
        if same:
            return True
    return False


@cached(_STAMP)
def _block_rows(buf, b, n, lay_t, lay_c, in_dtype, in_shift, row_in, row_k, clocks, clock_meta, t,
                words, scratch, rows, lo_hi, start_ns, end_ns):
    """Block b's timestamps into t[:n] and, for its samples in [start, end)
    (lo_hi := their index range), the signal rows: rows[c] the integer u of
    input c (int_signal's arithmetic), then one row per mag() signal.  Returns
    a decoder status (or ERR_RANGE, as decode_verified refuses the block).
    A time section that is a regular clock's (_is_clock) is not decoded.

    Loops index with uint64 (U64): with a signed index numba guards every
    access against negative indices, which keeps LLVM from vectorising."""
    lo = hi = 0
    p = q = r = U64(0)          # a CLOCK time section's line
    for c in range(-1, lay_c.shape[1]):
        # one decode_column call site: numba compiles the decoder's IR into
        # this function once per call site (seconds of cold compile each)
        if c < 0:
            start, length, codec = lay_t[b, 3], lay_t[b, 4], lay_t[b, 2]
            clock = _is_clock(buf, start, length, codec, n, clocks, clock_meta)
            if codec & CLOCK:       # a clock line first (codec/clock.py), then its residuals' section
                status, p, q, r, at = read_line(buf, start, start + length)
                if status != 0:
                    return status
                start, length, codec = at, length - (at - start), codec ^ CLOCK
        else:
            start, length, codec = lay_c[b, c, 0], lay_c[b, c, 1], lay_c[b, c, 2]
            clock = False
        if not clock:
            status = decode_column(buf, start, start + length, n, codec, words, scratch)
            if status != 0:
                return status
        if c < 0:
            t_first = U64(lay_t[b, 0])
            tick = U64(lay_t[b, 1])
            if q != U64(0):
                add_line(words, n, p, q, r, U64(1))
            if clock:
                for i in range(U64(n)):
                    t[i] = np.int64(t_first + i * tick)
            else:
                for i in range(U64(n)):
                    t[i] = np.int64(t_first + words[i] * tick)
            lo = np.searchsorted(t[:n], start_ns)
            hi = np.searchsorted(t[:n], end_ns)
            lo_hi[0] = lo
            lo_hi[1] = hi
            if lo >= hi:
                return 0
            continue
        # every value is checked against the storage type, as decode_verified
        # does; all n are converted (in the same pass), [lo, hi) are used
        dt = in_dtype[c]
        vmin = _INT_HI[4]
        vmax = _INT_LO[4]
        row = rows[c]
        if dt <= 2:                      # int8 / int16: the value itself (exponent 0)
            for i in range(U64(n)):
                v = np.int64(words[i])
                vmin = min(vmin, v)
                vmax = max(vmax, v)
                row[i] = np.int32(v)
        else:
            sh = in_shift[c]
            for i in range(U64(n)):
                v = np.int64(words[i])
                vmin = min(vmin, v)
                vmax = max(vmax, v)
                row[i] = np.int32(min(max(v >> sh, -32768), 32767))
        if vmin < _INT_LO[dt] or vmax > _INT_HI[dt]:
            return ERR_RANGE
    n_in = lay_c.shape[1]
    for r in range(row_in.shape[0]):
        _mag_row(rows, row_in[r], row_k[r], rows[n_in + r], U64(lo), U64(hi))
    return 0


@cached(_STAMP, inline="always")
def _mag_row(rows, which, k, out, lo, hi):
    """out[lo:hi] := isqrt(sum of the squares of rows which[:k]) (k = 2..4).

    The sum is < 4 * 2^30 + 1: as a double it is exact, and its correctly
    rounded square root is never an integer's width (>= 2^-17) away from
    floor(sqrt(sum)), so truncating it gives isqrt exactly."""
    a = rows[which[0]]
    b = rows[which[1]]
    c = rows[which[2 if k > 2 else 0]]
    d = rows[which[3 if k > 3 else 0]]
    if k == 2:
        for i in range(lo, hi):
            acc = np.int64(a[i]) * np.int64(a[i]) + np.int64(b[i]) * np.int64(b[i])
            out[i] = np.int32(math.sqrt(np.float64(acc)))
    elif k == 3:
        for i in range(lo, hi):
            acc = np.int64(a[i]) * np.int64(a[i]) + np.int64(b[i]) * np.int64(b[i]) + \
                np.int64(c[i]) * np.int64(c[i])
            out[i] = np.int32(math.sqrt(np.float64(acc)))
    else:
        for i in range(lo, hi):
            acc = np.int64(a[i]) * np.int64(a[i]) + np.int64(b[i]) * np.int64(b[i]) + \
                np.int64(c[i]) * np.int64(c[i]) + np.int64(d[i]) * np.int64(d[i])
            out[i] = np.int32(math.sqrt(np.float64(acc)))


@cached(_STAMP, inline="always")
def _fold(row, lo, hi, st):
    """st := S, Q, D, min, max, first, last of row[lo:hi] (hi > lo; uint64 bounds)."""
    first = np.int64(row[lo])
    S = first
    Q = first * first
    D = np.int64(0)
    mn = first
    mx = first
    for i in range(lo + ONE, hi):
        v = np.int64(row[i])
        S += v
        Q += v * v
        D += abs(v - np.int64(row[i - ONE]))
        mn = min(mn, v)
        mx = max(mx, v)
    st[SEG_S] = S
    st[SEG_Q] = Q
    st[SEG_D] = D
    st[SEG_MIN] = mn
    st[SEG_MAX] = mx
    st[SEG_FIRST] = first
    st[SEG_LAST] = np.int64(row[hi - ONE])


def _block_segments(buf, lay_t, lay_c, pos, slot, start_ns, end_ns, g, in_dtype, in_shift,
                    row_in, row_k, sig_row, clocks, clock_meta, seg_k, seg_n, seg_st, counts, samples,
                    status):
    """Every block j of one layout: its g-segments' statistics per signal into
    the slots from slot[pos[j]] on (pos: the block's place in time order);
    counts / samples / status[pos[j]]: segments written, samples in range,
    decoder status."""
    n_rows = lay_c.shape[1] + row_in.shape[0]
    for j in prange(lay_t.shape[0]):
        n = lay_t[j, 5]
        if j + PREFETCH_AHEAD < lay_t.shape[0]:      # as the engine's kernels (codec/bits.py)
            prefetch_block(buf, j + PREFETCH_AHEAD, lay_t, lay_c, True)
        t = np.empty(n, np.int64)
        words = np.empty(n, np.uint64)
        scratch = np.empty(n, np.uint64)
        rows = np.empty((n_rows, n), np.int32)
        lo_hi = np.zeros(2, np.int64)
        p = pos[j]
        st = _block_rows(buf, j, n, lay_t, lay_c, in_dtype, in_shift, row_in, row_k, clocks,
                         clock_meta, t, words, scratch, rows, lo_hi, start_ns, end_ns)
        status[p] = st
        if st != 0:
            continue
        lo, hi = lo_hi[0], lo_hi[1]
        samples[p] = hi - lo
        x = slot[p]
        i = lo
        last_k = INT64_MAX // g             # (last_k + 1) * g would overflow
        while i < hi:
            k = t[i] // g
            stop = hi if k == last_k else i + np.searchsorted(t[i:hi], (k + 1) * g)
            seg_k[x] = k
            seg_n[x] = stop - i
            for s in range(sig_row.shape[0]):
                _fold(rows[sig_row[s]], U64(i), U64(stop), seg_st[x, s])
            x += 1
            i = stop
        counts[p] = x - slot[p]


# One build, across the cores numba is given (numba.set_num_threads(1): one
# core, as fast as a serial build): a second, serial build would cost another
# ~10 s of cold compile, since each carries the decoder.
block_segments = cached(_STAMP, parallel=True)(_block_segments)


@cached(_STAMP)
def merge_segments(seg_k, seg_n, seg_st, slot, counts):
    """Join the blocks' segment lists (in time order) into one, in place: a
    segment that continues across a block edge becomes one.  Returns the
    number of segments, or -1 if the blocks' samples are not in time order."""
    w = 0
    for b in range(slot.shape[0]):
        for x in range(slot[b], slot[b] + counts[b]):
            k = seg_k[x]
            if w > 0 and seg_k[w - 1] == k:
                for s in range(seg_st.shape[1]):
                    seg_st[w - 1, s, SEG_D] += seg_st[x, s, SEG_D] + \
                        abs(seg_st[x, s, SEG_FIRST] - seg_st[w - 1, s, SEG_LAST])
                    seg_st[w - 1, s, SEG_S] += seg_st[x, s, SEG_S]
                    seg_st[w - 1, s, SEG_Q] += seg_st[x, s, SEG_Q]
                    seg_st[w - 1, s, SEG_MIN] = min(seg_st[w - 1, s, SEG_MIN], seg_st[x, s, SEG_MIN])
                    seg_st[w - 1, s, SEG_MAX] = max(seg_st[w - 1, s, SEG_MAX], seg_st[x, s, SEG_MAX])
                    seg_st[w - 1, s, SEG_LAST] = seg_st[x, s, SEG_LAST]
                seg_n[w - 1] += seg_n[x]
                continue
            if w > 0 and k < seg_k[w - 1]:
                return -1
            if w != x:
                seg_k[w] = k
                seg_n[w] = seg_n[x]
                for s in range(seg_st.shape[1]):
                    for f in range(N_SEG_FIELDS):
                        seg_st[w, s, f] = seg_st[x, s, f]
            w += 1
    return w


@cached(_STAMP)
def segment_windows(seg_k, seg_n, seg_st, n_seg, r, m, k_first, k_last, min_samples, ops, sig,
                    codes, win_k, win_n):
    """Windows k (segments [k r, k r + m)) in [k_first, k_last] that hold a
    sample: those with at least min_samples samples get their feature codes in
    codes[w], k in win_k[w], sample count in win_n[w].  Returns (rows written,
    largest sample count of any window holding a sample)."""
    n_sig = seg_st.shape[1]
    acc = np.zeros((n_sig, 6), np.int64)
    w = 0
    big = np.int64(0)
    next_k = k_first
    p = 0
    for j in range(n_seg):
        q = seg_k[j]
        a = max(-((m - 1 - q) // r), next_k)        # ceil((q - m + 1) / r)
        z = min(q // r, k_last)
        for kw in range(a, z + 1):
            q0 = kw * r
            while seg_k[p] < q0:
                p += 1
            n = np.int64(0)
            x1 = p
            while x1 < n_seg and seg_k[x1] < q0 + m:
                n += seg_n[x1]
                x1 += 1
            big = max(big, n)
            if n < min_samples:
                continue
            for s in range(n_sig):
                S = seg_st[p, s, SEG_S]
                Q = seg_st[p, s, SEG_Q]
                D = seg_st[p, s, SEG_D]
                mn = seg_st[p, s, SEG_MIN]
                mx = seg_st[p, s, SEG_MAX]
                last = seg_st[p, s, SEG_LAST]
                for x in range(p + 1, x1):
                    S += seg_st[x, s, SEG_S]
                    Q += seg_st[x, s, SEG_Q]
                    D += seg_st[x, s, SEG_D] + abs(seg_st[x, s, SEG_FIRST] - last)
                    last = seg_st[x, s, SEG_LAST]
                    mn = min(mn, seg_st[x, s, SEG_MIN])
                    mx = max(mx, seg_st[x, s, SEG_MAX])
                acc[s, 0] = S
                acc[s, 1] = Q
                acc[s, 2] = D
                acc[s, 3] = mn
                acc[s, 4] = mx
                acc[s, 5] = rdiv(16 * S, n)       # M, once per signal (a division is dear)
            for f in range(ops.shape[0]):
                s = sig[f]
                codes[w, f] = clamp32(_basic_code(ops[f], n, acc[s, 0], acc[s, 1], acc[s, 2],
                                                  acc[s, 3], acc[s, 4], acc[s, 5]))
            win_k[w] = kw
            win_n[w] = n
            w += 1
        next_k = max(next_k, z + 1)
    return w, big
