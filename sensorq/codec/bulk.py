"""Many blocks in a few compiled calls: the ingest path of a large append.

``encode_block`` (block.py) makes one block with a dozen Python calls around
the kernels; for an append of millions of samples that per-block Python work
took more time than the kernels themselves, and it holds the GIL, so a second
encoding thread mostly waited for the first.  Here each pass runs over every
block of a run of blocks inside one numba call that releases the GIL:

1. the time pass: the step check, tick and words, the time section of every block;
2. one channel pass per channel: statistics and the channel's section of every block;
3. headers and directories for all blocks at once, in numpy;
4. one copy pass that lays the blocks out back to back, then a CRC per block.

A large run is cut into contiguous parts that threads encode at the same
time (each part is a whole set of passes); the blocks come back in order.

The bytes are exactly those of ``encode_block`` (version 1, integer channels;
the same kernels choose and write every section): the tests compare them
block for block.  Float channels and format version 2 take encode_block, one
call per block.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..checksum import crc32
from ..jitcache import cached, digest
from ..schema import DTYPE_CODES, MAX_BLOCK_SAMPLES
from . import intcodec, tans_call, timecol
from .bits import U64, ZERO
from .header import (CRC_SIZE, ENTRY_DTYPE, ENTRY_SIZE, FORMAT_VERSION, HEADER_DTYPE, HEADER_SIZE,
                     MAGIC, MAX_CHANNELS)
from .intcodec import encode_column_costed, max_section_bytes
from .timecol import encode_time, time_section_bytes
from .transforms import int_stats, time_words_into

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)

_STAT_FIELDS = ("count", "flags", "idx_min", "idx_max", "min", "max", "first", "last", "sum", "sumsq")
INTEGER_DTYPES = ("int8", "int16", "int32", "int64")

# A run is cut into parts of at least this many samples (large enough that a
# part's Python steps and GIL hand-offs are small against its kernels' time),
# PARTS_PER_THREAD a thread, that the threads take in turn.  One part a thread
# measured best: the checks and CRCs that end a part release and retake the
# GIL per block, and the more parts end at the same time, the more the threads
# wait for each other there (10 M rows, 2 threads: 39.5 M rows/s with 1 part
# a thread, 35.9 with 3, 29.4 on one thread, in one run).
MIN_SAMPLES_PER_PART = 1 << 18
PARTS_PER_THREAD = 1


@dataclass
class EncodedRun:
    """Blocks back to back in ``raw`` (uint8): block i is
    raw[offsets[i]:offsets[i] + lengths[i]]."""
    raw: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    prepared: object = None     # what ``finish`` made of it, in the thread that encoded it

    def __len__(self) -> int:
        return len(self.offsets)

    def blocks(self) -> list[memoryview]:
        view = memoryview(self.raw)
        return [view[o:o + n] for o, n in zip(self.offsets.tolist(), self.lengths.tolist())]


def bulk_supported(columns: Sequence[np.ndarray], version: int = 1) -> bool:
    """Can :func:`encode_run` take these columns (integer storage types, version 1)?"""
    return version == 1 and 1 <= len(columns) <= MAX_CHANNELS and \
        all(c.dtype.name in INTEGER_DTYPES for c in columns)


def encode_blocks(t: np.ndarray, columns: Sequence[np.ndarray], bounds: np.ndarray, *,
                  stream_id: int = 0, seq: int = 0, codec: str = "compact", pool=None,
                  threads: int = 1, finish=None) -> list:
    """The blocks t[bounds[i]:bounds[i + 1]] as a list of EncodedRuns (integer
    channels) or of block bytes (float channels: encode_block per block, on
    the pool's threads when there are many).  ``finish``: see encode_run."""
    if bulk_supported(columns):
        return encode_run(t, columns, bounds, stream_id=stream_id, seq=seq, codec=codec, pool=pool,
                          threads=threads, finish=finish)
    from .block import encode_block
    bounds = np.asarray(bounds, np.int64).tolist()

    def encode(i: int) -> bytes:
        lo, hi = bounds[i], bounds[i + 1]
        return encode_block(t[lo:hi], [c[lo:hi] for c in columns], stream_id=stream_id, seq=seq + i,
                            codec=codec)

    n_blocks = len(bounds) - 1
    if pool is not None and n_blocks >= 2 * threads > 2:
        return list(pool.map(encode, range(n_blocks)))
    return [encode(i) for i in range(n_blocks)]


def encode_run(t: np.ndarray, columns: Sequence[np.ndarray], bounds: np.ndarray, *,
               stream_id: int = 0, seq: int = 0, codec: str = "compact", pool=None,
               threads: int = 1, finish=None) -> list[EncodedRun]:
    """The blocks t[bounds[i]:bounds[i + 1]] (with the same rows of every
    column), sequence numbers seq, seq + 1, ..., as ``encode_block`` writes
    them.  ``pool`` (an executor) and ``threads``: encode parts of the run on
    that many threads when it is large enough.  ``finish(part)``, if given,
    runs on each part in the thread that encoded it, its result kept in
    ``part.prepared`` (the store checks and frames its records there).
    Returns the parts in order."""
    t = np.ascontiguousarray(t, dtype=np.int64)
    columns = [np.ascontiguousarray(c) for c in columns]
    bounds = np.asarray(bounds, np.int64)
    _check_run(t, columns, bounds)
    n_blocks = len(bounds) - 1
    parts = _split(bounds, threads if pool is not None else 1)
    rice_cost = intcodec.RICE_DECODE_COST if codec == "compact" else -1.0   # read here: a benchmark varies it

    def encode_part(first_block: int, last_block: int) -> EncodedRun:
        part = _encode_part(t, columns, bounds[first_block:last_block + 1], stream_id,
                            seq + first_block, codec == "compact", rice_cost)
        if finish is not None:
            part.prepared = finish(part)
        return part

    if len(parts) == 1:
        return [encode_part(0, n_blocks)]
    done: list = [None] * len(parts)
    taken = itertools.count()          # next() of a count is atomic under the GIL

    def take_parts() -> None:
        for i in iter(taken.__next__, len(parts)):
            if i >= len(parts):
                return
            done[i] = encode_part(*parts[i])

    helpers = [pool.submit(take_parts) for _ in range(min(threads, len(parts)) - 1)]
    try:
        take_parts()                    # this thread takes parts too
    finally:
        for helper in helpers:
            helper.result()             # waits, and raises a helper's error
    return done


def _check_run(t: np.ndarray, columns, bounds: np.ndarray) -> None:
    if not 1 <= len(columns) <= MAX_CHANNELS:
        raise ValueError(f"a block holds 1..{MAX_CHANNELS} channels, got {len(columns)}")
    for column in columns:
        if column.shape != t.shape:
            raise ValueError(f"every column must have {t.shape[0]} values, got shape {column.shape}")
        if column.dtype.name not in INTEGER_DTYPES:
            raise ValueError(f"storage type {column.dtype} is not one of {', '.join(INTEGER_DTYPES)}")
    sizes = np.diff(bounds)
    if len(bounds) < 2 or bounds[0] < 0 or bounds[-1] > t.shape[0] or \
            sizes.min() < 1 or sizes.max() > MAX_BLOCK_SAMPLES:
        raise ValueError(f"a block holds 1..{MAX_BLOCK_SAMPLES} samples; bounds {bounds[:4]}... "
                         f"do not cut {t.shape[0]} samples so")


def _split(bounds: np.ndarray, threads: int) -> list[tuple[int, int]]:
    """(first block, end block) of each part: contiguous, about equal in samples."""
    n_blocks = len(bounds) - 1
    samples = int(bounds[-1] - bounds[0])
    if threads < 2:
        return [(0, n_blocks)]
    k = max(1, min(PARTS_PER_THREAD * threads, n_blocks, samples // MIN_SAMPLES_PER_PART))
    if k == 1:
        return [(0, n_blocks)]
    targets = bounds[0] + samples * np.arange(1, k) // k
    cuts = np.searchsorted(bounds, targets)
    edges = [0] + sorted(set(int(c) for c in cuts if 0 < c < n_blocks)) + [n_blocks]
    return list(zip(edges[:-1], edges[1:]))


def _encode_part(t, columns, bounds, stream_id: int, seq: int, compact: bool,
                 rice_cost: float) -> EncodedRun:
    n_blocks = len(bounds) - 1
    n = np.diff(bounds)
    samples = int(n.sum())
    time_sections = _new_sections(n_blocks, samples // 4)
    ticks = np.empty(n_blocks, np.int64)
    frames = compact and intcodec.FRAMES_SECTIONS      # read here, as block.py does
    lines = timecol.CLOCK_LINES          # read here too
    bad, time_raw = _time_pass(t, bounds, compact, rice_cost, intcodec.entropy_form(compact, True), lines,
                               *time_sections, ticks)
    if bad >= 0:
        raise ValueError(f"timestamps {int(t[bad])} → {int(t[bad + 1])}: a block cannot hold a step "
                         f"of 2^63 ns or more, or a decreasing time; split the block there")
    entries = np.zeros((n_blocks, len(columns)), ENTRY_DTYPE)
    channel_raws = []
    for c, column in enumerate(columns):
        sections = _new_sections(n_blocks, samples * column.dtype.itemsize // 2)
        stats = np.empty((n_blocks, len(_STAT_FIELDS)), np.int64)
        channel_raws.append(_channel_pass(column, bounds, compact, rice_cost,
                                          intcodec.entropy_form(compact, False), frames, *sections,
                                          stats))
        _fill_entries(entries[:, c], DTYPE_CODES[column.dtype.name], sections, stats)
        channel_raws[-1] = (channel_raws[-1], sections[0], sections[1])
    header = _headers(t, bounds, n, ticks, time_sections, entries, stream_id, seq)
    return _lay_out(header, entries, (time_raw, time_sections[0], time_sections[1]), channel_raws)


def _new_sections(n_blocks: int, guess: int):
    """(start, length, codec) per block, and a first output buffer of about
    ``guess`` bytes (half the raw size for a channel: the passes double it
    when the sections need more)."""
    return (np.empty(n_blocks, np.int64), np.empty(n_blocks, np.int64), np.empty(n_blocks, np.int64),
            np.empty(guess + (1 << 16), np.uint8))


def _fill_entries(entries, dtype_code: int, sections, stats) -> None:
    entries["dtype"] = dtype_code
    entries["codec"] = sections[2]
    entries["data_len"] = sections[1]
    for j, name in enumerate(_STAT_FIELDS):
        entries[name] = stats[:, j]


def _headers(t, bounds, n, ticks, time_sections, entries, stream_id: int, seq: int) -> np.ndarray:
    n_blocks, n_channels = entries.shape
    header = np.zeros(n_blocks, HEADER_DTYPE)
    header["magic"], header["version"] = MAGIC, FORMAT_VERSION
    header["time_codec"], header["n_channels"], header["n_samples"] = time_sections[2], n_channels, n
    header["t_first"], header["t_last"] = t[bounds[:-1]], t[bounds[1:] - 1]
    header["tick"], header["stream_id"], header["time_len"] = ticks, stream_id, time_sections[1]
    header["seq"] = seq + np.arange(n_blocks, dtype=np.uint64)
    header["block_len"] = (HEADER_SIZE + ENTRY_SIZE * n_channels + time_sections[1]
                           + entries["data_len"].sum(1, dtype=np.int64) + CRC_SIZE)
    return header


def _lay_out(header, entries, time_part, channel_parts) -> EncodedRun:
    """The blocks back to back: header, directory, sections, CRC-32 of all before it."""
    n_blocks, n_channels = entries.shape
    lengths = header["block_len"].astype(np.int64)
    offsets = np.cumsum(lengths) - lengths
    raw = np.empty(int(lengths.sum()), np.uint8)
    at = offsets.copy()
    _place(raw, at, header.view(np.uint8), np.arange(n_blocks) * HEADER_SIZE,
           np.full(n_blocks, HEADER_SIZE))
    width = ENTRY_SIZE * n_channels
    _place(raw, at, entries.view(np.uint8).reshape(-1), np.arange(n_blocks) * width,
           np.full(n_blocks, width))
    for buf, starts, lens in [time_part, *channel_parts]:
        _place(raw, at, buf, starts, lens)
    view = memoryview(raw)
    for o, size in zip(offsets.tolist(), lengths.tolist()):
        end = o + size - CRC_SIZE
        view[end:end + CRC_SIZE] = crc32(view[o:end]).to_bytes(CRC_SIZE, "little")
    return EncodedRun(raw, offsets, lengths)


# --- kernels ---------------------------------------------------------------------

@cached(_STAMP, nogil=True)
def _room(out, used, need):
    """``out``, or a copy twice as large with its first ``used`` bytes, when
    ``need`` bytes do not fit after them."""
    if used + need <= out.shape[0]:
        return out
    bigger = np.empty(max(2 * out.shape[0], used + need), np.uint8)
    bigger[:used] = out[:used]
    return bigger


@cached(_STAMP, before_compile=tans_call.link_encoder, nogil=True)
def _time_pass(t, bounds, compact, rice_cost, entropy, lines, starts, lengths, codecs, out, ticks):
    """The time section of every block; (index of a bad step or -1, buffer)."""
    pos = 0
    words = np.empty(MAX_BLOCK_SAMPLES, np.uint64)
    regular = -1            # the last block whose words were 0, 1, ..., n - 1 (a steady clock)
    for b in range(bounds.shape[0] - 1):
        lo, hi = bounds[b], bounds[b + 1]
        tick, bad = time_words_into(t[lo:hi], words[:hi - lo])
        if bad >= 0:
            return lo + bad, out
        ticks[b] = tick
        out = _room(out, pos, time_section_bytes(hi - lo))
        if regular >= 0 and hi - lo == bounds[regular + 1] - bounds[regular] and _counts_up(words, hi - lo):
            # the same words as that block's: the same section, copied, not encoded again
            size = lengths[regular]
            out[pos:pos + size] = out[starts[regular]:starts[regular] + size]
            starts[b], lengths[b], codecs[b] = pos, size, codecs[regular]
            pos += size
            continue
        end, bits = encode_time(words[:hi - lo], compact, rice_cost, out, pos, entropy, lines)
        starts[b], lengths[b], codecs[b] = pos, end - pos, bits
        pos = end
        if _counts_up(words, hi - lo):
            regular = b
    return -1, out


@cached(_STAMP, nogil=True)
def _counts_up(words, n):
    """Are words[:n] 0, 1, ..., n - 1?"""
    off = ZERO
    for i in range(n):
        off |= words[i] ^ U64(i)
    return off == ZERO


@cached(_STAMP, before_compile=tans_call.link_encoder, nogil=True)
def _channel_pass(values, bounds, compact, rice_cost, entropy, frames, starts, lengths, codecs, out,
                  stats):
    """Statistics and section of one integer channel in every block; the buffer."""
    pos = 0
    wide = np.empty(MAX_BLOCK_SAMPLES, np.int64)
    for b in range(bounds.shape[0] - 1):
        lo, hi = bounds[b], bounds[b + 1]
        v = wide[:hi - lo]
        count, flags, i_lo, i_hi, v_min, v_max, v_first, v_last, total, squares = \
            _widen_with_stats(values, lo, hi, v)
        stats[b, 0], stats[b, 1], stats[b, 2], stats[b, 3] = count, flags, i_lo, i_hi
        stats[b, 4], stats[b, 5], stats[b, 6], stats[b, 7] = v_min, v_max, v_first, v_last
        stats[b, 8], stats[b, 9] = total, squares
        out = _room(out, pos, max_section_bytes(hi - lo))
        end, bits = encode_column_costed(v.view(np.uint64), True, compact, rice_cost, out, pos, entropy,
                                         frames)
        starts[b], lengths[b], codecs[b] = pos, end - pos, bits
        pos = end
    return out


_SMALL_VALUE = 1 << 23      # |x| below this: no sum of 2^16 values or of their squares can overflow


@cached(_STAMP, nogil=True)
def _widen_with_stats(values, lo, hi, v):
    """v := values[lo:hi] as int64, and transforms.int_stats(v): in one pass
    that vectorises (no overflow checks, the first min and max found after)
    when every |value| is small enough that nothing can overflow; else by
    int_stats itself."""
    n = hi - lo
    v_min = np.int64(values[lo])
    v_max = v_min
    total, squares = ZERO, ZERO
    for i in range(n):
        x = np.int64(values[lo + i])
        v[i] = x
        v_min = min(v_min, x)
        v_max = max(v_max, x)
        total += U64(x)
        squares += U64(x) * U64(x)
    if v_min <= -_SMALL_VALUE or v_max >= _SMALL_VALUE:
        return int_stats(v)
    i_lo, i_hi = 0, 0
    while v[i_lo] != v_min:
        i_lo += 1
    while v[i_hi] != v_max:
        i_hi += 1
    return n, 0, i_lo, i_hi, v_min, v_max, v[0], v[n - 1], np.int64(total), np.int64(squares)


@cached(_STAMP, nogil=True)
def _place(dest, at, src, starts, lengths):
    """dest[at[b]:] := src[starts[b]:starts[b] + lengths[b]] for every block b; at[b] moves on."""
    for b in range(at.shape[0]):
        d, s, size = at[b], starts[b], lengths[b]
        dest[d:d + size] = src[s:s + size]
        at[b] = d + size
