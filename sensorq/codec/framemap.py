"""Frame maps of FRAMES sections (docs/format.md §3): for each mini-block of
a section, its smallest and largest value and the bit where its values
start, read from the section once so that the counts after it settle the
section's mini-blocks from flat arrays (engine/framemaps.py keeps them).

A count of a FRAMES section (payload._settle_frames) must walk the header
bytes and frames in the bit stream to learn each mini-block's range and
start: a chain of sums from one mini-block to the next, most of a
whole-block count's time once few mini-blocks need their values read.  With
the map a count is a vector pass over the map's row (range against the
threshold) and a visit of the mini-blocks it leaves unsettled, each counted
in registers (bits.count32) where it starts.  The ranges are the values'
own (unpacked when the row is made), tighter than the frame's bounds.

A section is mapped only where the map holds all of it in 16-bit fields and
every unsettled mini-block can be counted in registers: order 0 without a
dictionary, whole mini-blocks only (n a multiple of 32), every width at most
COUNT32_MAX_WIDTH, every value within int16 and no mini-block's base +
frame more than 2^15 below its smallest value, the values' starts within
the section's first 2^16 bits, and the payload ending where the section
does.  Any other section, a damaged one too, is left to
intcount.count_column, which reports what is wrong with it.
"""
from __future__ import annotations

import numpy as np

from ..jitcache import cached, digest
from .bits import COUNT32_MAX_WIDTH, U64, count32, count32_bytes, cttz64_or_64, \
    prefetch_near, range32, unpack32, unpack32_bytes
from .codes import FRAMED, FRAMES, MINI_BLOCK, OK, PREDICTOR_MASK, RICE
from .intcodec import read_head
from .payload import _frames_header, _read_fixed_frame, _unpack

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)

MAP_VALUE_MIN, MAP_VALUE_MAX = -(1 << 15), (1 << 15) - 1     # a map's lows are int16
MAP_POSITION_LIMIT = 1 << 16        # and its starts uint16 bits from the section's start
NOT_MAPPED = -1
FRAMED_FLAG = 0x80      # widths[i]: w, and this bit for a framed mini-block
# A mini-block's values are its residuals (< 2^w ≤ 2^15) plus base + frame;
# a map takes sections whose base + frame lies at most this far below a
# mini-block's smallest value, so that a count's threshold less it stays small.
ONE_WIDE = np.int64(1 << 15)
# count_unsettled's working array: a mini-block's bytes copied where count32
# would read past the section's end
SPARE_BYTES = 80


@cached(_STAMP, nogil=True, refcounted=False)
def map_section(buf, pos, end, n, codec, scratch, bases, lows, highs, starts, widths, row,
                stride):
    """Row ``row`` of a frame map (``stride`` mini-blocks a row, its arrays
    flat) from the section buf[pos:end] (n values, ``codec``): bases[row] :=
    the section's base; for mini-block m, at i = row * stride + m, lows[i]
    and highs[i] := its smallest and largest value (its values unpacked: the
    bounds of its frame, base + f to base + f + 2^w − 1, left a third more
    mini-blocks unsettled at the median of the benchmark's x), starts[i] :=
    the bit of its first value, from pos, widths[i] := its width w, with
    FRAMED_FLAG for a framed one.  Returns where its header bytes start,
    from pos, or NOT_MAPPED where the section is not of the kind a map
    holds (the module's docstring), damaged ones included.  ``scratch``: room for a
    dictionary (read_head reads one before it is refused), and for 32
    values.  (The map's arrays are whole and flat, indexed by row and
    mini-block: a row's view, made per block in a kernel that counts
    references, cost two atomic operations a view, and a 2-D index's
    negative-index fix-up kept the settling pass from being vectorised.)"""
    n_mini = n // MINI_BLOCK
    if codec & ~0xFF or codec & PREDICTOR_MASK != FRAMES or n % MINI_BLOCK or n_mini > stride:
        return NOT_MAPPED
    status, base, n_entries, heads = read_head(buf, pos, end, n, codec, scratch)
    if status != OK or n_entries:
        return NOT_MAPPED
    start = heads + n_mini
    if start + 9 > end:                 # L, and at least a word of bit stream
        return NOT_MAPPED
    frame_length = np.int64(buf[U64(start)])
    start += 1
    if frame_length > 56:
        return NOT_MAPPED
    limit = (end - start) * 8
    bit_pos = np.int64(0)
    for m in range(n_mini):
        h = np.int64(buf[U64(heads + m)])
        if h >= RICE:
            return NOT_MAPPED
        width, length = _frames_header(h, frame_length)
        if width > COUNT32_MAX_WIDTH:
            return NOT_MAPPED
        values_at, frame = _read_fixed_frame(buf, start, end, bit_pos, length)
        bit_pos = values_at + MINI_BLOCK * width
        if bit_pos > limit:
            return NOT_MAPPED
        offset = np.int64(base + frame)      # what the residuals are added to
        smallest, largest = _range32(buf, start, end, values_at, width, scratch)
        low, high = offset + smallest, offset + largest
        at = (start - pos) * 8 + values_at
        # a framed mini-block's residuals are counted against its smallest
        # value (count_unsettled): its frame must be that, as encoders write it
        if not (MAP_VALUE_MIN <= low <= high <= MAP_VALUE_MAX and offset >= low - ONE_WIDE
                and at < MAP_POSITION_LIMIT and (h < FRAMED or smallest == 0)):
            return NOT_MAPPED
        i = U64(row * stride + m)
        lows[i], highs[i], starts[i] = low, high, at
        widths[i] = width | (FRAMED_FLAG if h >= FRAMED else 0)
    if start + (bit_pos + 7) // 8 != end:   # count_column would call it damaged
        return NOT_MAPPED
    bases[row] = np.int64(base)
    return heads - pos


@cached(_STAMP, nogil=True, refcounted=False, inline="always")
def _range32(buf, start, end, bit_pos, width, out):
    """(smallest, largest) of the 32 values of ``width`` bits at bit_pos of
    the stream at ``start`` (unpacked into out[:32]; all in the section), by
    vector reductions (bits.range32: a loop of 32 compares took ~20 ns a
    mini-block, five times the whole of this)."""
    byte = start + (bit_pos >> 3)
    if byte + unpack32_bytes(width) <= end:
        unpack32(buf, U64(byte), bit_pos & 7, width, out, 0)
    else:
        _unpack(buf, start, end, bit_pos, width, out, 0, MINI_BLOCK)
    smallest, largest = range32(out, 0)
    return np.int64(smallest), np.int64(largest)


@cached(_STAMP, nogil=True, refcounted=False)
def count_mapped(buf, pos, end, n_mini, base, lows, highs, starts, widths, row_at, threshold, mask,
                 spare):
    """(above, equal): how many values of a mapped section at pos (its
    ``base``, its map row at row_at = row * stride) are above
    ``threshold`` and how many equal it: settle_mapped, then
    count_unsettled (``mask``: ceil(n_mini / 64) uint64 words, ``spare``:
    SPARE_BYTES)."""
    whole_above = settle_mapped(lows, highs, row_at, n_mini, threshold, mask, 0)
    above, equal = count_unsettled(buf, pos, end, n_mini, base, lows, starts, widths, row_at,
                                   threshold, mask, 0, spare)
    return above + whole_above, equal


@cached(_STAMP, nogil=True, refcounted=False)
def settle_mapped(lows, highs, row_at, n_mini, threshold, masks, at):
    """A pass without branches over a map row's lows and highs (from
    row_at), in int32 lanes: returns how many values lie in mini-blocks
    wholly above ``threshold``, and sets in the words masks[at:] (one bit a
    mini-block, ceil(n_mini / 64) words) the bits of those whose range
    holds it.  Each word is made in registers (a vector compare, its lanes
    gathered into bits), not through a byte a mini-block in memory (whose
    stores made the pass's speed depend on where the arrays lay: 4K
    aliasing, 1.05 or 1.42 ms for the same count from one process to the
    next).  The threshold is clamped to ±2^20 for the lanes: the values are
    int16, so no comparison changes."""
    lane_threshold = np.int32(min(max(threshold, -(1 << 20)), 1 << 20))
    whole_above = np.int32(0)
    for word in range(U64((n_mini + 63) >> 6)):
        first = U64(row_at) + (word << U64(6))
        lanes = min(U64(64), U64(n_mini) - (word << U64(6)))
        bits = U64(0)
        for k in range(lanes):      # (unsigned: no negative-index fix-up)
            low, high = np.int32(lows[first + k]), np.int32(highs[first + k])
            whole_above += np.int32(low > lane_threshold)
            bits |= U64((low <= lane_threshold) & (high >= lane_threshold)) << k
        masks[U64(at) + word] = bits
    return np.int64(whole_above) * MINI_BLOCK


@cached(_STAMP, nogil=True, refcounted=False)
def prefetch_unsettled(buf, pos, n_mini, starts, row_at, mask, at):
    """Ask for the cache lines of the values of the mini-blocks mask[at:]
    marks (settle_mapped), some blocks before count_unsettled reads them:
    the line of the first value and the one after (count32 reads 40 or 72
    bytes; the exact last line was no better), into every cache level."""
    for word in range(0, n_mini, 64):
        left = mask[U64(at + (word >> 6))]
        while left != U64(0):
            m = word + np.int64(cttz64_or_64(left))
            left &= left - U64(1)
            byte = pos + (np.int64(starts[U64(row_at + m)]) >> 3)
            prefetch_near(buf, U64(byte))
            prefetch_near(buf, U64(byte + 63))


@cached(_STAMP, nogil=True, refcounted=False)
def count_unsettled(buf, pos, end, n_mini, base, lows, starts, widths, row_at, threshold, mask, at,
                    spare):
    """(above, equal) among the mini-blocks mask[at:] marks (settle_mapped),
    visited by the mask's 64-bit words, each counted in registers where its
    values start (count32; the last few, whose 72 bytes of reading would
    pass the section's end, from a copy in ``spare``, SPARE_BYTES).
    Each mini-block's values are compared as its residuals, with the
    threshold less its smallest value (framed: base + frame is that) or
    less the section's ``base`` (bit-packed)."""
    above, equal = np.int64(0), np.int64(0)
    for word in range(0, n_mini, 64):
        left = mask[U64(at + (word >> 6))]
        while left != U64(0):
            m = word + np.int64(cttz64_or_64(left))
            left &= left - U64(1)
            h = np.int64(widths[U64(row_at + m)])
            framed = h >= FRAMED_FLAG
            width = h & (FRAMED_FLAG - 1)
            below = threshold - (np.int64(lows[U64(row_at + m)]) if framed else base)
            if width == 0:                  # every value is the threshold
                equal += MINI_BLOCK
                continue
            bit = pos * 8 + np.int64(starts[U64(row_at + m)])
            byte = bit >> 3
            if byte + count32_bytes(width) <= end:
                counted = count32(buf, U64(byte), bit & 7, width, below)
            else:
                counted = _count_copied(buf, byte, end, bit & 7, width, below, spare)
            above += counted & 0xFFFFFFFF
            equal += counted >> 32
    return above, equal


@cached(_STAMP, nogil=True, refcounted=False)
def _count_copied(buf, byte, end, shift, width, below, spare):
    """count32 of a mini-block near its section's end: its bytes copied into
    ``spare`` (zeros after them), where count32 may read its 72 bytes."""
    stop = min(byte + SPARE_BYTES, end)
    for i in range(SPARE_BYTES):
        spare[i] = buf[U64(byte + i)] if byte + i < stop else np.uint8(0)
    return count32(spare, U64(0), shift, width, below)
