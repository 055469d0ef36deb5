"""The blocks of one stream, as the engine sees them: a table of where each
verified block lives plus its header statistics, one row per block in time
(= seq) order.

Buffers are uint8 arrays holding whole, uncompressed blocks: a memory-mapped
segment file, a zstd-decompressed block, or the writer's not-yet-written tail
block.  Every block in a :class:`BlockIndex` has passed ``parse_block``, or
was listed by a checksummed segment index file (its header and statistics
are as written) and has its own CRC checked before its bytes are first read:
a *lazy* index (``Cache.blocks(..., lazy=True)``, what queries use) checks
in :meth:`BlockIndex.verify`, which ``raw``, ``decode`` and the engine's
``layout.materialise`` call, so that a query answered from statistics reads
no block's bytes at all.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..codec.header import ENTRY_DTYPE, BlockInfo
from ..errors import CorruptDataError
from ..schema import Stream

# Per-block columns, in the order StreamBlocks stores them (all int64).
BLOCK_FIELDS = ("offset", "length", "n_samples", "t_first", "t_last", "seq", "tick",
                "time_codec", "time_len")
KEPT_RANGES = 8             # StreamBlocks.memo_for: block ranges remembered per stream


class LazyBuffers(Sequence):
    """The buffers of a BlockIndex, fetched when first indexed: a zstd run is
    decompressed only if a block of it is actually read, not when a query
    answers its blocks from their statistics."""

    def __init__(self, sources: list, fetch=None):
        self.sources = list(sources)     # arrays, or keys that ``fetch`` turns into arrays
        self._fetch = fetch

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        source = self.sources[i]
        if not isinstance(source, np.ndarray):
            source = self.sources[i] = self._fetch(source)
        return source

    def __add__(self, other) -> "LazyBuffers":
        """Still lazy: the other side's buffers are appended as they are."""
        other_sources = other.sources if isinstance(other, LazyBuffers) else list(other)
        if isinstance(other, LazyBuffers) and other._fetch != self._fetch:
            other_sources = list(other)
        return LazyBuffers(self.sources + other_sources, self._fetch)


class RangeMemo(dict):
    """StreamBlocks.memo_for's dict, which also says whose rows it is for:
    ``owner``, the StreamBlocks.  Within one owner a block's seq names the
    same block in every range, so what is kept per block (engine/framemaps.py's
    rows) can pass from one block range to the next as a live cache appends
    and evicts (and as the owner's arrays grow)."""

    def __init__(self, owner):
        super().__init__()
        self.owner = owner


@dataclass
class BlockIndex:
    """Where a stream's blocks are (buffer, offset, length) and their statistics, one row a block."""
    stream: Stream
    buffers: list[np.ndarray]
    buffer_of: np.ndarray      # int32, index into buffers
    offset: np.ndarray         # int64, the block's first byte in its buffer
    length: np.ndarray         # int64, block_len
    n_samples: np.ndarray      # int64
    t_first: np.ndarray        # int64 ns
    t_last: np.ndarray         # int64 ns
    seq: np.ndarray            # int64
    entries: np.ndarray        # (n_blocks, n_channels) ENTRY_DTYPE
    tick: np.ndarray           # int64, header fields needed to decode without re-parsing
    time_codec: np.ndarray     # int64
    time_len: np.ndarray       # int64
    memo: dict | None = None   # StreamBlocks.memo_for these rows (None: not kept)
    check: object = None       # rows -> None: CRCs checked before a read (None: all checked)
    # a writer's index of its sealed blocks then its open one: (sealed, open),
    # the sealed blocks' index with its memo (a count takes each part apart)
    parts: tuple | None = None

    def __len__(self) -> int:
        return int(self.offset.shape[0])

    def select(self, which) -> "BlockIndex":
        """The blocks picked by a boolean mask, an index array or a slice."""
        if self._picks_all(which):
            # every block in order (a count that decodes the whole cache): the
            # same columns, not copies of them (~1 ms at 5,000 blocks)
            return replace(self, memo=None)
        check = None
        if self.check is not None:
            rows = np.arange(len(self), dtype=np.int64)[which]
            check = lambda picked, parent=self.check: parent(rows[picked])   # noqa: E731
        return BlockIndex(self.stream, self.buffers, self.buffer_of[which], self.offset[which],
                          self.length[which], self.n_samples[which], self.t_first[which],
                          self.t_last[which], self.seq[which], take_entries(self.entries, which),
                          self.tick[which], self.time_codec[which], self.time_len[which],
                          check=check)

    def _picks_all(self, which) -> bool:
        """Whether ``which`` is an index array of every row in order."""
        n = len(self)
        return isinstance(which, np.ndarray) and which.dtype.kind in "iu" and which.ndim == 1 \
            and len(which) == n > 0 and which[0] == 0 and which[-1] == n - 1 \
            and bool((np.diff(which) == 1).all())

    def verify(self, rows) -> None:
        """Check the CRC of every block in ``rows`` not checked yet, before its
        bytes are read.  One that fails makes the cache index that block's
        segment again and raises :class:`BlocksChanged`: this index is then
        stale, and the query is asked again (executor.execute)."""
        if self.check is not None:
            self.check(np.asarray(rows, dtype=np.int64))

    def raw(self, i: int) -> np.ndarray:
        """Block i's bytes (a view, no copy), its CRC checked first."""
        self.verify((i,))
        start = int(self.offset[i])
        return self.buffers[int(self.buffer_of[i])][start:start + int(self.length[i])]

    def info(self, i: int) -> BlockInfo:
        """Block i's header, rebuilt from the index (no second CRC pass)."""
        return BlockInfo(int(self.n_samples[i]), self.entries.shape[1], int(self.t_first[i]),
                         int(self.t_last[i]), int(self.tick[i]), self.stream.stream_id,
                         int(self.seq[i]), int(self.length[i]), int(self.time_codec[i]),
                         int(self.time_len[i]), self.entries[i])

    def decode(self, i: int):
        """(t int64, [columns in storage dtypes]) of block i."""
        from ..codec.block import decode_verified   # compiled: loaded by the first read-back
        return decode_verified(self.raw(i), self.info(i))

    def samples(self) -> int:
        return int(self.n_samples.sum())

    @classmethod
    def empty(cls, stream: Stream) -> "BlockIndex":
        z = np.zeros(0, np.int64)
        return cls(stream, [], np.zeros(0, np.int32), z, z, z, z, z, z,
                   np.zeros((0, len(stream.channels)), ENTRY_DTYPE), z, z, z)


class BlocksChanged(CorruptDataError):
    """A block listed by a segment index failed its CRC when a lazy index was
    about to read it; the cache has indexed its segment again (served up to
    the damage, as without an index file), so the index that found it is
    stale.  The engine asks the query again (executor.execute); anyone else
    sees a CorruptDataError that names the segment, and an index taken anew
    does not hold the damaged block."""


@dataclass
class SequenceGap:
    """Blocks missing from a stream: seq numbers after ``seq_before`` up to
    ``seq_after`` (exclusive), somewhere between ``t_before`` and ``t_after``."""
    seq_before: int
    seq_after: int
    t_before: int
    t_after: int

    def describe(self) -> str:
        missing = self.seq_after - self.seq_before - 1
        return (f"{missing} block{'s' if missing != 1 else ''} (seq {self.seq_before + 1}.."
                f"{self.seq_after - 1}) missing between t={self.t_before} ns and t={self.t_after} ns")


class StreamBlocks:
    """Growing per-stream block table: appends at the end (new blocks), drops
    from the front (eviction deletes the oldest segments first), so both are
    amortised O(1) and a time-range lookup is a binary search.  New rows are
    staged in a Python list and moved into the arrays in bulk on the next read,
    which keeps scanning a segment of many blocks cheap."""

    def __init__(self, n_channels: int, capacity: int = 64):
        self.n_channels = n_channels
        self.head = 0
        self.tail = 0
        self.cols = {name: np.zeros(capacity, np.int64) for name in BLOCK_FIELDS}
        self.buf_key = np.zeros(capacity, np.int64)     # which buffer (see Cache._buffer_for)
        self.segment = np.zeros(capacity, np.int64)     # segment number holding the record
        self.stored = np.zeros(capacity, np.int64)      # bytes the record takes on disk
        self.rec_start = np.zeros(capacity, np.int64)   # the record's offset in its segment
        self.crc = np.zeros(capacity, np.int64)         # the block's own CRC (its last 4 bytes)
        self.verified = np.zeros(capacity, bool)        # False: listed by an index, CRC not yet checked
        self.unverified = 0                             # rows with verified False
        self._last_range = None                         # range_slice's last answer
        self.entries = np.zeros((capacity, n_channels), ENTRY_DTYPE)
        self.total_samples = 0
        self.total_stored = 0
        self.last_seq: int | None = None                # of the newest block, staged or not
        self.last_t: int | None = None
        self.gaps: list[SequenceGap] = []               # breaks in seq continuity, oldest first
        self._staged: list[tuple] = []
        self._staged_entries: list[bytes] = []
        self._rows_memo = None                          # (buf_key array, {rows: memo})

    def __len__(self) -> int:
        return self.tail - self.head + len(self._staged)

    def _grow(self, needed: int) -> None:
        live = slice(self.head, self.tail)
        size = max(64, needed + needed // 2)
        def regrow(arr):
            new = np.zeros((size,) + arr.shape[1:], arr.dtype)
            _as_bytes(new)[:self.tail - self.head] = _as_bytes(arr[live])
            return new
        self.cols = {k: regrow(v) for k, v in self.cols.items()}
        self.buf_key, self.segment, self.stored, self.rec_start, self.crc, self.verified = map(
            regrow, (self.buf_key, self.segment, self.stored, self.rec_start, self.crc, self.verified))
        self.entries = regrow(self.entries)
        self.tail -= self.head
        self.head = 0

    def add(self, info: BlockInfo, offset: int, buf_key: int, segment: int, stored: int,
            rec_start: int = 0, crc: int = 0) -> None:
        """A block verified just now (its record scanned, or written by this writer)."""
        self._staged.append((offset, info.block_len, info.n_samples, info.t_first, info.t_last, info.seq,
                             info.tick, info.time_codec, info.time_len, buf_key, segment, stored,
                             rec_start, crc))
        self._staged_entries.append(info.entries.tobytes())   # joined in commit: np.stack of
        # thousands of small structured arrays costs ~20 us each in dtype promotion
        if self.last_seq is not None and info.seq != self.last_seq + 1:
            self.gaps.append(SequenceGap(self.last_seq, info.seq, self.last_t, info.t_first))
        self.last_seq, self.last_t = info.seq, info.t_last
        self.total_samples += info.n_samples
        self.total_stored += stored

    def commit(self) -> None:
        """Move staged rows into the arrays."""
        n = len(self._staged)
        if not n:
            return
        if self.tail + n > self.buf_key.shape[0]:
            self._grow(self.tail - self.head + n)
        rows = np.array(self._staged, np.int64)
        new = slice(self.tail, self.tail + n)
        for j, name in enumerate(BLOCK_FIELDS):
            self.cols[name][new] = rows[:, j]
        width = len(BLOCK_FIELDS)
        self.buf_key[new], self.segment[new], self.stored[new] = rows[:, width], rows[:, width + 1], \
            rows[:, width + 2]
        self.rec_start[new], self.crc[new] = rows[:, width + 3], rows[:, width + 4]
        self.verified[new] = True
        _as_bytes(self.entries)[new] = np.frombuffer(b"".join(self._staged_entries),
                                                     np.uint8).reshape(n, -1)
        self.tail += n
        self._staged, self._staged_entries = [], []

    def reserve(self, more: int) -> None:
        """Make room for ``more`` rows beyond those held and staged."""
        self.commit()
        if self.tail + more > self.buf_key.shape[0]:
            self._grow(self.tail - self.head + more)

    def add_listed(self, rows: np.ndarray, entries: np.ndarray, offset: np.ndarray,
                   buf_key: np.ndarray, segment: int) -> None:
        """Blocks a segment index lists (segindex.ROW_DTYPE rows of this stream,
        in order, already checked to follow this table's newest block), added
        in bulk and marked unverified: their CRCs are checked before use."""
        self.commit()
        n = len(rows)
        if not n:
            return
        if self.tail + n > self.buf_key.shape[0]:
            self._grow(self.tail - self.head + n)
        new = slice(self.tail, self.tail + n)
        self.cols["offset"][new] = offset
        for name in BLOCK_FIELDS[1:]:
            self.cols[name][new] = rows[name]
        self.buf_key[new], self.segment[new] = buf_key, segment
        self.stored[new], self.rec_start[new], self.crc[new] = rows["stored"], rows["rec_start"], rows["crc"]
        # a zstd block (negative key) is checked when its run is decompressed (zstdruns.py)
        self.verified[new] = self.buf_key[new] < 0
        _as_bytes(self.entries)[new] = _as_bytes(entries)
        self.tail += n
        self.unverified += int((~self.verified[new]).sum())
        seq, t_first = rows["seq"], rows["t_first"]
        before = np.concatenate([[self.last_seq if self.last_seq is not None else seq[0] - 1], seq[:-1]])
        t_before = np.concatenate([[self.last_t if self.last_t is not None else t_first[0]],
                                   rows["t_last"][:-1]])
        for i in np.flatnonzero(seq != before + 1).tolist():
            self.gaps.append(SequenceGap(int(before[i]), int(seq[i]), int(t_before[i]), int(t_first[i])))
        self.last_seq, self.last_t = int(seq[-1]), int(rows["t_last"][-1])
        self.total_samples += int(rows["n_samples"].sum())
        self.total_stored += int(rows["stored"].sum())

    def follows(self, seq: np.ndarray, t_first: np.ndarray, t_last: np.ndarray) -> bool:
        """Would blocks with these headers, in this order, all pass the order
        check (higher seq, t_first >= the previous block's t_last)?"""
        if not len(seq):
            return True
        ok = bool((np.diff(seq) > 0).all() and (t_first[1:] >= t_last[:-1]).all())
        if self.last_seq is not None:
            ok = ok and int(seq[0]) > self.last_seq and int(t_first[0]) >= self.last_t
        return ok

    def mark_verified(self, positions: np.ndarray) -> None:
        fresh = positions[~self.verified[positions]]
        self.verified[fresh] = True
        self.unverified -= len(fresh)

    def mark_verified_seqs(self, seqs: np.ndarray) -> None:
        """mark_verified by sequence number (rows since dropped are ignored)."""
        self.commit()
        live = self.cols["seq"][self.head:self.tail]
        if not len(live):
            return
        at = np.minimum(np.searchsorted(live, seqs), len(live) - 1)
        self.mark_verified(self.head + at[live[at] == seqs])

    def segment_rows(self, number: int) -> slice:
        """Positions (absolute) of the blocks stored in segment ``number``."""
        self.commit()
        seg = self.segment[self.head:self.tail]
        return slice(self.head + int(np.searchsorted(seg, number, side="left")),
                     self.head + int(np.searchsorted(seg, number, side="right")))

    def drop_through_segment(self, number: int) -> list[int]:
        """Forget the blocks stored in segments <= number; returns their buffer keys."""
        self.commit()
        seg = self.segment[self.head:self.tail]
        cut = int(np.searchsorted(seg, number, side="right"))
        dropped = slice(self.head, self.head + cut)
        keys = self.buf_key[dropped].tolist()
        self.total_samples -= int(self.cols["n_samples"][dropped].sum())
        self.total_stored -= int(self.stored[dropped].sum())
        self.unverified -= int((~self.verified[dropped]).sum())
        self.head += cut
        if not len(self):
            self.last_seq = self.last_t = None
        first_seq = self.cols["seq"][self.head] if len(self) else None
        self.gaps = [g for g in self.gaps if first_seq is not None and g.seq_before >= first_seq]
        return keys

    def gaps_within(self, start_ns: int | None, end_ns: int | None) -> list[SequenceGap]:
        """The gaps whose missing stretch overlaps [start_ns, end_ns)."""
        return [g for g in self.gaps if (start_ns is None or g.t_after > start_ns)
                and (end_ns is None or g.t_before < end_ns)]

    def last(self, name: str) -> int | None:
        self.commit()
        return int(self.cols[name][self.tail - 1]) if len(self) else None

    def first(self, name: str) -> int | None:
        self.commit()
        return int(self.cols[name][self.head]) if len(self) else None

    def memo_for(self, where: slice) -> dict:
        """A dict that lives as long as these rows stay where they are: for
        what is worked out from their keys and statistics alone (buffer_codes;
        the engine's derived.py: block bounds, top N's block order), so that a
        query asked again over the same blocks does not redo it (~70 us at
        24,000 blocks each).  Rows are never rewritten in place (new ones go
        after the tail, eviction moves the head, growing makes new arrays), so
        the same array object and the same positions hold the same blocks;
        the array is kept, so its id cannot be reused."""
        if self._rows_memo is None or self._rows_memo[0] is not self.buf_key:
            self._rows_memo = (self.buf_key, {})
        memos, rows = self._rows_memo[1], (where.start, where.stop)
        if rows not in memos:
            if len(memos) >= KEPT_RANGES:       # a dashboard asks about a few windows
                memos.pop(next(iter(memos), None), None)     # (another thread may have)
            memos[rows] = RangeMemo(self)
        return memos[rows]

    def buffer_codes(self, where: slice) -> tuple[list[int], np.ndarray]:
        """``factorise(self.buf_key[where])``, kept in memo_for(where)."""
        memo = self.memo_for(where)
        if "buffer codes" not in memo:
            keys, codes = factorise(self.buf_key[where])
            codes.flags.writeable = False
            memo["buffer codes"] = keys, codes
        return memo["buffer codes"]

    def range_slice(self, start_ns: int | None, end_ns: int | None) -> slice:
        """Positions (absolute) of the blocks overlapping [start_ns, end_ns)."""
        self.commit()
        # the same rows (see memo_for) give the same answer: a query asks twice
        # (its blocks, then its gaps), a dashboard again and again
        asked = (start_ns, end_ns, self.head, self.tail)
        last = self._last_range
        if last is not None and last[0] is self.buf_key and last[1] == asked:
            return last[2]
        t_first = self.cols["t_first"][self.head:self.tail]
        t_last = self.cols["t_last"][self.head:self.tail]
        lo = 0 if start_ns is None else int(t_last.searchsorted(start_ns, side="left"))
        hi = len(self) if end_ns is None else int(t_first.searchsorted(end_ns, side="left"))
        where = slice(self.head + lo, self.head + max(lo, hi))
        self._last_range = (self.buf_key, asked, where)
        return where


def factorise(keys: np.ndarray) -> tuple[list[int], np.ndarray]:
    """(distinct keys in increasing order, int32 position of each key among
    them): np.unique(keys, return_inverse=True) without its sort.  Buffer keys
    are dense (consecutive segment numbers, run keys counting down), so a
    table over their range costs O(len(keys))."""
    if not len(keys):
        return [], np.zeros(0, np.int32)
    low, high = int(keys.min()), int(keys.max())
    if high - low > 4 * len(keys) + 1024:
        distinct, inverse = np.unique(keys, return_inverse=True)
        return distinct.tolist(), inverse.astype(np.int32).reshape(-1)
    present = np.zeros(high - low + 1, bool)
    shifted = keys - low
    present[shifted] = True
    code = np.cumsum(present, dtype=np.int32) - 1
    return (np.flatnonzero(present) + low).tolist(), code[shifted]


def take_entries(entries: np.ndarray, rows, channel: int | None = None) -> np.ndarray:
    """``entries[rows]`` (or ``entries[rows, channel]``) of a (blocks,
    channels) table of statistics, gathered as 8-byte words: numpy's fancy
    indexing of a structured dtype copies field by field, ~4 ms for 24,000
    blocks of three channels (a first count over a 100 M-sample cache) against
    ~0.5 ms as words.  A slice is a view, as numpy gives it."""
    if isinstance(rows, slice) or entries.ndim != 2 or not entries.flags.c_contiguous \
            or entries.dtype.itemsize % 8:
        return entries[rows] if channel is None else entries[rows, channel]
    width = entries.dtype.itemsize // 8        # words an entry
    words = entries.view(np.uint64).reshape(entries.shape[0], entries.shape[1] * width)
    if channel is not None:
        words = words[:, channel * width:(channel + 1) * width]
    picked = words[rows].view(entries.dtype)
    return picked.reshape(-1) if channel is not None else picked


def _as_bytes(rows: np.ndarray) -> np.ndarray:
    """A (rows, bytes per row) uint8 view: copying structured arrays field by
    field is a hundred times slower than copying their bytes."""
    width = rows.dtype.itemsize * int(np.prod(rows.shape[1:], dtype=np.int64))
    return rows.view(np.uint8).reshape(rows.shape[0], width)
