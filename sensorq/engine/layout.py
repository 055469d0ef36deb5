"""Where each column of each block lies, as flat int64 arrays for the kernels.

Built with numpy from the block index, without a Python loop over blocks
(except to pool blocks that sit in small buffers).
"""
from __future__ import annotations

import functools
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..codec.header import ENTRY_SIZE, HEADER_SIZE

# lay_t columns
T_FIRST, TICK, TIME_CODEC, TIME_START, TIME_LEN, N_SAMPLES = range(6)


@dataclass
class Layout:
    """Where the time and channel columns of some blocks of one buffer lie, for the kernels."""
    buf: np.ndarray          # uint8: the buffer holding these blocks
    blocks: np.ndarray       # positions of these blocks in the BlockIndex
    lay_t: np.ndarray        # (n, 6) int64, columns above
    lay_c: np.ndarray        # (n, slots, 5) int64: start, len, codec, dexp, dtype


@functools.lru_cache(maxsize=256)
def every_block(n: int) -> np.ndarray:
    """0, 1, ..., n - 1, one array for each n, which no one writes: a count
    over a layout's every block passes it (counting.run_count), and a frame
    map knows such a count by it (framemaps.FrameMap._rows).  (Writable: a
    read-only array is another type to numba, and its kernels would be
    compiled again for it.)"""
    return np.arange(n, dtype=np.int64)


def build_layouts(index, slot_channels: np.ndarray, group_min: int = 16) -> list[Layout]:
    """Layouts for the blocks of ``index``, with column slots for the stream
    channel indices ``slot_channels``.

    Blocks of a big buffer (a memory-mapped segment) are read in place; blocks
    that sit alone or in small buffers (zstd-decompressed blocks, the writer's
    tail) are copied into one buffer, so that one kernel call covers them all."""
    return [materialise(plan, index) for plan in plan_layouts(index, slot_channels, group_min)]


@dataclass(frozen=True)
class LayoutPlan:
    """A layout without its buffer: worked out from the index's positions and
    statistics alone, so that a query asked again over the same blocks can keep
    it (executor.py's count plans) and only fetch the bytes (materialise)."""
    buffer_no: int           # the index buffer read in place; POOLED: copied into one
    blocks: np.ndarray       # positions in the index
    lay_t: np.ndarray
    lay_c: np.ndarray

    def __post_init__(self):
        for array in (self.blocks, self.lay_t, self.lay_c):    # kept plans are shared
            array.flags.writeable = False


POOLED = -1


def plan_layouts(index, slot_channels: np.ndarray, group_min: int = 16,
                 chosen: np.ndarray | None = None) -> list[LayoutPlan]:
    """build_layouts' plans (see there), for the blocks ``chosen`` (positions
    in ``index``, ascending; default all of them), named by their positions
    in ``index`` (a count plans some of a range's blocks without making an
    index of them: BlockIndex.select copies every field of every entry)."""
    if chosen is None:
        chosen = np.arange(len(index))
    if len(chosen) == 0:
        return []
    if len(chosen) < group_min:      # a few blocks (a search, top N): one buffer
        return [few_blocks_plan(index, chosen, slot_channels)]
    buffer_of = index.buffer_of[chosen]
    big = np.bincount(buffer_of, minlength=len(index.buffers)) >= group_min
    plans = [_in_place_plan(index, int(buffer_no), chosen[buffer_of == buffer_no], slot_channels)
             for buffer_no in np.flatnonzero(big)]
    rest = chosen[~big[buffer_of]]
    if len(rest):
        plans.append(_pooled_plan(index, rest, slot_channels))
    return plans


def materialise(plan: LayoutPlan, index) -> Layout:
    """The layout of ``plan`` with its buffer: the index's own, or the blocks'
    bytes copied into one (read-only like a mapped segment: the kernels are
    then compiled, and cached, for one buffer type, not two).  The blocks'
    CRCs are checked first, where the index has not yet (BlockIndex.verify)."""
    index.verify(plan.blocks)
    if plan.buffer_no != POOLED:
        return Layout(index.buffers[plan.buffer_no], plan.blocks, plan.lay_t, plan.lay_c)
    buffers, blocks = index.buffers, plan.blocks     # index.raw, without its per-call lookups
    buf = np.concatenate([buffers[b][start:start + length] for b, start, length in zip(
        index.buffer_of[blocks].tolist(), index.offset[blocks].tolist(),
        index.length[blocks].tolist())])
    buf.flags.writeable = False
    return Layout(buf, plan.blocks, plan.lay_t, plan.lay_c)


def few_blocks_plan(index, chosen, slot_channels) -> LayoutPlan:
    """One layout for a few blocks ``chosen`` (positions in ``index``, in the
    order the layout lists them): read in place when they all lie in one
    buffer (most often one mapped segment), else pooled."""
    buffer_of = index.buffer_of[chosen]
    if len(chosen) and (buffer_of == buffer_of[0]).all():
        return _in_place_plan(index, int(buffer_of[0]), chosen, slot_channels)
    return _pooled_plan(index, chosen, slot_channels)


def _in_place_plan(index, buffer_no, chosen, slot_channels) -> LayoutPlan:
    owner, key = _layout_key(index, chosen, slot_channels)
    laid = _kept_layout(owner, key, index, chosen)
    if laid is None:
        laid = _layout(index.offset[chosen].astype(np.int64), index, chosen, slot_channels)
        _keep_layout(owner, key, index, chosen, laid)
    return LayoutPlan(buffer_no, chosen, *laid)


# In-place layouts of many blocks are kept per stream (the StreamBlocks a
# range's memo names: blockindex.RangeMemo), by the blocks' seqs: a block's
# seq names the same bytes at the same place in its buffer in every range, so
# a live reader's next range (a sealed block on) lays out again only the
# segment that grew (~0.5 ms a segment of 6,000 blocks, most of what a
# range's first count spent on planning over 100 M samples).
KEPT_LAYOUT_MIN_BLOCKS = 64
KEPT_LAYOUTS = 16           # per stream, the least recently used dropped first,
KEPT_LAYOUT_BYTES = 16 << 20    # and at most this much of them (~100 bytes a block)
_KEPT_LAYOUTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_KEPT_LAYOUTS_LOCK = threading.Lock()


def _layout_key(index, chosen, slot_channels):
    """(owner, key) under which the in-place layout of ``chosen`` is kept,
    or (None, None) where it is not (no memo naming an owner, few blocks)."""
    owner = getattr(index.memo, "owner", None)
    if owner is None or len(chosen) < KEPT_LAYOUT_MIN_BLOCKS:
        return None, None
    seq = index.seq
    return owner, (tuple(slot_channels.tolist()), int(seq[chosen[0]]), int(seq[chosen[-1]]),
                   len(chosen))


def _kept_layout(owner, key, index, chosen):
    """The kept (lay_t, lay_c) under ``key`` (_layout_key), if its blocks'
    seqs are still ``chosen``'s, else None."""
    if owner is None:
        return None
    with _KEPT_LAYOUTS_LOCK:
        layouts = _KEPT_LAYOUTS.get(owner, {})
        kept = layouts.get(key)
        if kept is not None:
            layouts.move_to_end(key)
    if kept is None or not np.array_equal(kept[0], index.seq[chosen]):
        return None
    return kept[1], kept[2]


def _keep_layout(owner, key, index, chosen, laid) -> None:
    if owner is None:
        return
    seqs = index.seq[chosen]
    for array in (seqs, *laid):     # shared by the plans that take them
        array.flags.writeable = False
    with _KEPT_LAYOUTS_LOCK:
        kept = _KEPT_LAYOUTS.setdefault(owner, OrderedDict())
        kept[key] = (seqs, *laid)
        kept.move_to_end(key)
        while len(kept) > KEPT_LAYOUTS or \
                sum(sum(a.nbytes for a in each) for each in kept.values()) > KEPT_LAYOUT_BYTES:
            kept.popitem(last=False)


def _pooled_plan(index, chosen, slot_channels) -> LayoutPlan:
    lengths = index.length[chosen].astype(np.int64)
    return LayoutPlan(POOLED, chosen, *_layout(np.cumsum(lengths) - lengths, index, chosen,
                                               slot_channels))


def _layout(offsets, index, chosen, slot_channels) -> tuple[np.ndarray, np.ndarray]:
    """(lay_t, lay_c) of blocks ``chosen`` of ``index``, each starting at its
    ``offsets`` in the layout's buffer."""
    # (numpy's fancy indexing of the structured entries is slow: fields first)
    every = len(chosen) == len(index) and bool((chosen == np.arange(len(chosen))).all())
    pick = slice(None) if every else chosen
    entries = index.entries
    n_channels = entries.shape[1]
    time_len = index.time_len[pick]
    lay_t = np.empty((len(chosen), 6), np.int64)
    lay_t[:, T_FIRST] = index.t_first[pick]
    lay_t[:, TICK] = index.tick[pick]
    lay_t[:, TIME_CODEC] = index.time_codec[pick]
    lay_t[:, TIME_START] = offsets + HEADER_SIZE + ENTRY_SIZE * n_channels
    lay_t[:, TIME_LEN] = time_len
    lay_t[:, N_SAMPLES] = index.n_samples[pick]
    data_len = entries["data_len"][pick]
    ends = np.cumsum(data_len, 1, dtype=np.int64)            # each channel section's end
    sections = lay_t[:, TIME_START] + time_len
    lay_c = np.empty((len(chosen), len(slot_channels), 5), np.int64)
    fields = [entries[name][pick] for name in ("codec", "dexp", "dtype")]
    for s, c in enumerate(slot_channels.tolist()):
        lay_c[:, s, 1] = data_len[:, c]
        lay_c[:, s, 0] = sections + ends[:, c] - lay_c[:, s, 1]
        for k, field in enumerate(fields, 2):
            lay_c[:, s, k] = field[:, c]
    return lay_t, lay_c
