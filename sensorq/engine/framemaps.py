"""Frame maps: the mini-block zone maps of an integer channel, kept in memory.

A block's statistics settle ``count where x > 0mg`` only where the whole
block lies on one side of the threshold; a noisy axis counted at its median
has every block straddling it, and each block's FRAMES section must then be
walked, mini-block by mini-block, for the frames that settle most of it
(payload._settle_frames): ~300 ns a block, most of the count.  A frame map
(codec/framemap.py) is what that walk would learn, kept, and tighter: each
mini-block's smallest and largest value, its width and the bit where its
values start, 7 bytes a mini-block of 32 values (7/64 of the int16 values
it maps).  A
count with it is a vector pass over the map's row and a count in registers
of each mini-block the pass leaves unsettled, whose lines are asked for a
few blocks ahead (_count_chunk): the benchmark's ``count where x > 0mg``
over 20 M samples, one thread, ~2.4 -> ~1.0 ms (benchmarks/RESULTS.md,
twenty-first session).

A map (FrameMap) is one block range's view of a channel's rows (FrameRows),
kept in the range's memo (derived.py) as long as the same blocks are, and as
long as the process's budget for maps allows (FRAME_MAPS_BYTES,
FRAME_MAPS_KEPT: the oldest dropped first).  Rows are made the second time a
count of a range asks for a map (frame_map), and they are kept by the
blocks' sequence numbers, not by the range: an append or an eviction gives
the next query a new range, whose map takes the rows of the last one over
the same stream (a live reader's dashboard: bench_live.py).  Rows are
filled when a count first decodes their blocks (read from their bytes
after the CRC check, as any decode), under their lock, so two queries never
fill the same row at once.  A row's state is written after its data, so a
query that finds a row MAPPED without the lock reads it whole.  A row that
cannot be mapped (codec/framemap.py says which) stays so, and its block is
counted by the decoder as before.  Only counts over many blocks
(tiers.CompiledTier.FRAME_MAP_MIN_BLOCKS) use maps: a dashboard's count
over the last minutes decodes a few blocks and keeps nothing.
"""
from __future__ import annotations

import threading

import numpy as np
from numba import prange

from ..codec.bits import CACHE_LINE, U64, prefetch
from ..codec.codes import MINI_BLOCK
from ..codec.framemap import (NOT_MAPPED, SPARE_BYTES, count_unsettled, map_section,
                               prefetch_unsettled, settle_mapped)
from ..jitcache import cached, digest
from .kernels import _from_tally, _twins, chunk_range, count_chunks, most_samples
from .layout import every_block

_STAMP = digest("engine/framemaps.py", "engine/kernels.py", "codec/*.py")

# _count_chunk settles the block this many places ahead of the one it counts
# (count where x > 0mg over the 100 M-sample cache, one thread, medians of
# five rounds in turns: 7.6 ms at 2 ahead; 8.1 / 8.2 / 8.9 at 1 / 3 / 5;
# 15 with no lines asked for; with the widths in the map, 2 and 3 alike)
SETTLE_AHEAD = 2
UNREAD, MAPPED, UNMAPPED = 0, 1, 2      # FrameRows.state of a block


class FrameRows:
    """One channel's map rows over a stream's blocks: per block (row r is
    the block whose seq is ``first + r`` among ``owner``'s: a StreamBlocks,
    blockindex.RangeMemo) a state and its section's base, and ``stride``
    mini-blocks' lows and highs (int16), value starts (uint16) and widths
    (uint8, framemap.FRAMED_FLAG for a framed one), the rows end to end in
    flat arrays.  ``capacity`` rows, some past the blocks they were made
    for: the blocks a live cache appends next take them (frame_map)."""

    def __init__(self, capacity: int, stride: int, owner=None, first: int = 0):
        self.state = np.zeros(capacity, np.uint8)
        self.stride, self.owner, self.first = stride, owner, first
        self.bases = np.zeros(capacity, np.int64)
        self.lows = np.empty(capacity * stride, np.int16)
        self.highs = np.empty(capacity * stride, np.int16)
        self.starts = np.empty(capacity * stride, np.uint16)
        self.widths = np.empty(capacity * stride, np.uint8)
        self.lock = threading.Lock()
        self.filled = 0         # rows read from their blocks so far (the tests read it)

    @staticmethod
    def size(capacity: int, stride: int) -> int:
        """The nbytes of FrameRows(capacity, stride), before one is made: per
        block a state byte and a base, per mini-block 7 bytes."""
        return capacity * (1 + 8 + (2 + 2 + 2 + 1) * stride)

    @property
    def capacity(self) -> int:
        return int(self.state.shape[0])

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array, _ in self._columns())

    def _columns(self):
        """Each array of the rows, with its entries a row (1 or stride)."""
        return ((self.state, 1), (self.bases, 1), (self.lows, self.stride),
                (self.highs, self.stride), (self.starts, self.stride), (self.widths, self.stride))

    def holds(self, first: int, last: int) -> bool:
        """Whether there are rows for the seqs first..last."""
        return self.first <= first and last < self.first + self.capacity

    def moved(self, first: int, last: int) -> "FrameRows":
        """Rows for the seqs first..last and headroom after them, those of
        them these rows hold copied (under the lock: no row is copied half
        filled).  The caller checked that first ≥ self.first."""
        rows = FrameRows(_with_headroom(last - first + 1), self.stride, self.owner, first)
        with self.lock:
            keep = max(0, min(last + 1, self.first + self.capacity) - first)
            at = first - self.first
            for (mine, per_row), (theirs, _) in zip(rows._columns(), self._columns()):
                mine[:keep * per_row] = theirs[at * per_row:(at + keep) * per_row]
        return rows


class FrameMap:
    """A block range's view of a channel's FrameRows: block i of the range
    (its position in the index) is row ``row_of[i]`` (its seq less the
    rows' first)."""

    def __init__(self, rows: FrameRows, row_of: np.ndarray):
        self.rows, self.row_of = rows, row_of
        # per kept layout (its blocks array, which a kept count plan holds):
        # (that array, its rows, and once none of them is UNREAD, its mask)
        self._layouts: dict = {}

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes

    def mapped(self, layout, blocks) -> np.ndarray:
        """Which of a layout's ``blocks`` (positions in it) the map holds,
        as a mask: their rows filled first, where not yet read."""
        m = self.rows
        rows, known = self._rows(layout, blocks)
        if known is not None:
            return known
        unread = m.state[rows] == UNREAD
        if unread.any():
            with m.lock:     # (a row another query filled meanwhile is skipped by the kernel)
                fill = map_blocks if len(rows) >= _kernels().PARALLEL_MIN_BLOCKS else \
                    map_blocks_serial
                m.filled += int((m.state[rows[unread]] == UNREAD).sum())
                fill(layout.buf, blocks[unread], rows[unread], layout.lay_t, layout.lay_c,
                     m.state, m.bases, m.lows, m.highs, m.starts, m.widths, m.stride)
        mask = m.state[rows] == MAPPED
        if blocks is every_block(len(layout.blocks)):     # final: a read row's state stays
            self._layouts[id(layout.blocks)] = (layout.blocks, rows, mask)
        return mask

    def count(self, layout, blocks, op, threshold, counts) -> None:
        """counts[j] := how many values of block blocks[j] pass ``OP
        threshold`` (program.COMPARE_CODES), every one of them mapped."""
        m = self.rows
        kernel = count_by_map if len(blocks) >= _kernels().PARALLEL_MIN_BLOCKS else \
            count_by_map_serial
        kernel(layout.buf, blocks, self._rows(layout, blocks)[0], layout.lay_t, layout.lay_c,
               m.bases, m.lows, m.highs, m.starts, m.widths, m.stride, op, threshold, counts)

    def _rows(self, layout, blocks):
        """(the rows of a layout's ``blocks``, their mask of mapped rows or
        None): worked out once for a kept layout's every block (a repeated
        count's: two gathers and a compare over its blocks, ~3 % of the
        count over 100 M samples), else afresh."""
        if blocks is every_block(len(layout.blocks)):
            kept = self._layouts.get(id(layout.blocks))
            if kept is not None and kept[0] is layout.blocks:
                return kept[1], kept[2]
        return self.row_of[layout.blocks[blocks]], None


# Rows made for n blocks have room for n // HEADROOM more (at least
# MIN_HEADROOM): a live cache's next block ranges (a block more each, the
# oldest evicted) take the same rows until they pass the end, and only then
# are the rows moved (FrameRows.moved: one copy of what they hold).
HEADROOM = 8
MIN_HEADROOM = 64


def _with_headroom(n_blocks: int) -> int:
    return n_blocks + max(n_blocks // HEADROOM, MIN_HEADROOM)


def frame_map(index, channel) -> FrameMap | None:
    """The frame map of ``channel`` (a plan.ChannelRef, of an integer type)
    over ``index``, kept in its memo; None where the index keeps nothing,
    where the map would take more than half of FRAME_MAPS_BYTES, and the
    first time a count over these blocks asks: a map is made for a count
    asked again (a dashboard's, an uplink loop's), not for every one-off
    count, which it would cost three to four times the count (filling a row
    reads every value of its block, for the mini-blocks' ranges).  A block
    range of a stream whose blocks an earlier range's map holds (a live
    cache's, a block on: blockindex.RangeMemo) takes that map's rows at
    once, and fills only its new blocks' rows."""
    memo = index.memo
    if memo is None or len(index) == 0:
        return None
    key, asked = ("frame map", channel.index), ("frame map asked", channel.index)
    fmap = memo.get(key)
    if fmap is not None:
        return fmap
    stride = (int(index.n_samples.max()) + MINI_BLOCK - 1) // MINI_BLOCK
    first, last = int(index.seq[0]), int(index.seq[-1])
    if len(index) > 1 and not (np.diff(index.seq) > 0).all():
        return None     # (blocks are in seq order: a row a block, and none out of the rows)
    if FrameRows.size(_with_headroom(last - first + 1), stride) > FRAME_MAPS_BYTES // 2:
        return None
    owner = getattr(memo, "owner", None)
    rows = _rows_to_follow(owner, first, channel.index, stride)
    if rows is None:
        if not memo.get(asked):
            memo[asked] = True
            return None
        rows = FrameRows(_with_headroom(last - first + 1), stride, owner, first)
    elif not rows.holds(first, last):
        rows = rows.moved(first, last)
    fmap = FrameMap(rows, index.seq - rows.first)
    _keep(memo, key, fmap, channel.index)
    return fmap


def _rows_to_follow(owner, first: int, channel: int, stride: int):
    """The newest kept FrameRows of ``channel`` over ``owner``'s blocks
    with a row for seq ``first`` (whose first row is not after it), or None."""
    if owner is None:
        return None
    with _KEPT_LOCK:
        for _, _, kept_channel, fmap in reversed(_KEPT):
            rows = fmap.rows
            if kept_channel == channel and rows.owner is owner and rows.stride == stride \
                    and rows.first <= first < rows.first + rows.capacity:
                return rows
    return None


# The frame maps a process keeps, oldest first: (memo, key, channel, map).  A
# map lives in its block range's memo beside derived.py's arrays, outside
# their KEPT_BYTES: a live cache makes a new range whenever a block seals, and
# a stream keeps up to 8 ranges, so the maps are bounded here, all together,
# not per range (per range, eight 22 MB maps of one axis could be kept); the
# ranges of one stream share their rows, which are counted once.
FRAME_MAPS_BYTES = 64 << 20
FRAME_MAPS_KEPT = 8         # and at most this many (each holds its memo, and what is in it)
_KEPT: list = []
_KEPT_LOCK = threading.Lock()


def _keep(memo: dict, key: tuple, fmap: FrameMap, channel: int) -> None:
    """memo[key] := fmap, and the oldest maps dropped from their memos until
    the process keeps at most FRAME_MAPS_KEPT maps, whose rows hold
    FRAME_MAPS_BYTES in all (a map its memo no longer holds, cleared by
    derived.py, is forgotten here too)."""
    with _KEPT_LOCK:
        memo[key] = fmap
        _KEPT[:] = [kept for kept in _KEPT if kept[0].get(kept[1]) is kept[3]]
        _KEPT.append((memo, key, channel, fmap))
        while len(_KEPT) > FRAME_MAPS_KEPT or _kept_bytes() > FRAME_MAPS_BYTES:
            old_memo, old_key, _, old_map = _KEPT.pop(0)
            if old_memo.get(old_key) is old_map:
                del old_memo[old_key]


def _kept_bytes() -> int:
    """What the kept maps' rows hold, each FrameRows counted once."""
    return sum({id(kept[3].rows): kept[3].nbytes for kept in _KEPT}.values())


def _kernels():
    from . import tiers
    return tiers._kernels()


def _map_blocks(buf, blocks, rows, lay_t, lay_c, state, bases, lows, highs, starts,
                widths, stride):
    """Fill the map rows ``rows`` from the first channel slot of the layout's
    ``blocks`` (the same positions, in the index and in the layout)."""
    n_blocks = blocks.shape[0]
    n_chunks = count_chunks(n_blocks)
    for k in prange(n_chunks):
        first, last = chunk_range(n_blocks, n_chunks, k)
        scratch = np.empty(max(most_samples(blocks, lay_t, first, last), MINI_BLOCK), np.uint64)
        for j in range(first, last):
            b, r = blocks[j], rows[j]
            if state[r] != UNREAD:
                continue
            start = lay_c[b, 0, 0]
            heads = map_section(buf, start, start + lay_c[b, 0, 1], lay_t[b, 5], lay_c[b, 0, 2],
                                scratch, bases, lows, highs, starts, widths, r, stride)
            state[r] = MAPPED if heads != NOT_MAPPED else UNMAPPED


def _count_by_map(buf, blocks, rows, lay_t, lay_c, bases, lows, highs, starts, widths, stride, op,
                  threshold, counts):
    """kernels.count_raw_compare over mapped blocks (no window cut): each
    block's first channel slot counted from its map row (_count_chunk).
    Working arrays once per chunk, as there."""
    n_blocks = blocks.shape[0]
    n_chunks = count_chunks(n_blocks)
    for k in prange(n_chunks):
        first, last = chunk_range(n_blocks, n_chunks, k)
        masks = np.empty((SETTLE_AHEAD + 1) * _mask_words(stride), np.uint64)
        whole = np.empty(SETTLE_AHEAD + 1, np.int64)
        spare = np.empty(SPARE_BYTES, np.uint8)
        _count_chunk(buf, blocks, rows, first, last, lay_t, lay_c, bases, lows, highs, starts,
                     widths, stride, op, threshold, counts, masks, whole, spare)


@cached(_STAMP, refcounted=False)
def _count_chunk(buf, blocks, rows, first, last, lay_t, lay_c, bases, lows, highs, starts, widths,
                 stride, op, threshold, counts, masks, whole, spare):
    """counts[first:last] as _count_by_map, in a pipeline: the block
    SETTLE_AHEAD places on is settled (framemap.settle_mapped; its mask and
    whole count into ring slot j % (SETTLE_AHEAD + 1)) and the lines of its
    unsettled mini-blocks asked for while this one's are counted
    (count_unsettled).  (Asking for the first line of the block twice as
    far on as well, to start its page's address translation early, made
    the count over the 100 M-sample cache ~8 % slower.)  Without references
    counted: no row views, no atomic operations per block."""
    width = _mask_words(stride)
    for j in range(first, min(first + SETTLE_AHEAD, last)):
        _settle(buf, blocks[j], rows[j], lay_t, lay_c, lows, highs, starts, stride, threshold,
                masks, j % (SETTLE_AHEAD + 1), whole)
    for j in range(first, last):
        later = j + 2 * SETTLE_AHEAD
        if later < blocks.shape[0]:
            _prefetch_row(lows, highs, starts, widths, rows[later] * stride, stride)
        ahead = j + SETTLE_AHEAD
        if ahead < last:
            _settle(buf, blocks[ahead], rows[ahead], lay_t, lay_c, lows, highs, starts, stride,
                    threshold, masks, ahead % (SETTLE_AHEAD + 1), whole)
        b, r = blocks[j], rows[j]
        start, n = lay_c[b, 0, 0], lay_t[b, 5]
        slot = j % (SETTLE_AHEAD + 1)
        above, equal = count_unsettled(buf, start, start + lay_c[b, 0, 1], n // MINI_BLOCK,
                                       bases[r], lows, starts, widths, r * stride, threshold,
                                       masks, slot * width, spare)
        counts[j] = _from_tally(op, n, above + whole[slot], equal)


@cached(_STAMP, refcounted=False, inline="always")
def _prefetch_row(lows, highs, starts, widths, row_at, stride):
    """Ask for a map row's lows and highs (settle_mapped's reads), and its
    starts and widths (what prefetch_unsettled and count_unsettled read of
    the mini-blocks left): the rows a count visits are far apart where the
    statistics settle most blocks between them, and each was a wait on
    memory (count where z > 2g over the 100 M-sample cache's 3,152 decoded
    blocks, one thread: 2.3 -> 0.6-0.7 ms; count where x > 0mg over all its
    blocks, the starts and widths asked for too: 5.4-5.6 -> 5.2-5.3 ms with
    the caches emptied between asks, 4.5-5.0 -> 4.2-4.3 without)."""
    for at in range(row_at, row_at + stride, CACHE_LINE // 2):     # int16: 32 a line
        prefetch(lows, U64(at))
        prefetch(highs, U64(at))
        prefetch(starts, U64(at))
    for at in range(row_at, row_at + stride, CACHE_LINE):
        prefetch(widths, U64(at))


@cached(_STAMP, inline="always")
def _mask_words(stride):
    """Words of a block's mask of unsettled mini-blocks (a bit each)."""
    return (stride + 63) >> 6


@cached(_STAMP, refcounted=False, inline="always")
def _settle(buf, b, r, lay_t, lay_c, lows, highs, starts, stride, threshold, masks, slot, whole):
    """Settle block b (map row r) into ring slot ``slot`` (its mask and
    whole count), and ask for its unsettled mini-blocks' lines."""
    n_mini, at = lay_t[b, 5] // MINI_BLOCK, slot * _mask_words(stride)
    whole[slot] = settle_mapped(lows, highs, r * stride, n_mini, threshold, masks, at)
    prefetch_unsettled(buf, lay_c[b, 0, 0], n_mini, starts, r * stride, masks, at)


map_blocks, map_blocks_serial = _twins(_map_blocks, _STAMP)
count_by_map, count_by_map_serial = _twins(_count_by_map, _STAMP)
