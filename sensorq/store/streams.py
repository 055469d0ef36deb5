"""Stream management: drop, rename, truncate before a time, change settings.

Segments are append-only and the ring deletes only whole segments, oldest
first, so none of these rewrite data.  Each is one atomic manifest write
(docs/format.md §5, manifest version 2):

* **drop** removes the stream's definition and records its id in
  ``dropped``.  Its blocks stay in their segments until the ring evicts them;
  every opener skips them silently (they are not problems) and retention no
  longer waits for them.  A later stream of the same name gets a new id, so
  the old blocks can never be read as the new stream's.
* **rename** changes the name only: blocks carry the stream id, not the name.
* **truncate** records a *floor*: samples before it are hidden from reads and
  queries.  ``Cache.blocks`` returns only the blocks at or after the floor,
  and the one block that straddles it is re-encoded in memory with the kept
  samples (as the writer's open block is), so the engine, which trusts a
  block's statistics, never sees a hidden sample.  Floors only move forward.

A crash leaves the old or the new manifest, so each operation happens whole
or not at all; the writer's lock keeps readers' views consistent, and a
reader picks a change up on ``refresh()``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..codec.header import parse_block
from ..errors import SchemaError
from ..schema import Stream, check_name
from . import fileio
from .blockindex import BlockIndex, LazyBuffers, StreamBlocks
from .manifest import write_manifest
from .prepare import iso
from .settings import parse_capacity, parse_compression, parse_retention

FLOOR_CACHE = 8          # re-encoded straddling blocks kept (a shell re-runs its queries)
NO_RETENTION = ("none", "off", "forever", "0")


@dataclass
class Extent:
    """What a stream holds (or what an operation removed): samples and their time range."""
    samples: int = 0
    t_first: int | None = None
    t_last: int | None = None

    def describe(self) -> str:
        if not self.samples:
            return "no samples"
        return f"{self.samples:,} samples, {iso(self.t_first)} .. {iso(self.t_last)}"

    def to_dict(self) -> dict:
        return {"samples": self.samples,
                "t_first": self.t_first, "t_last": self.t_last,
                "t_first_iso": iso(self.t_first) if self.t_first is not None else None,
                "t_last_iso": iso(self.t_last) if self.t_last is not None else None}


class StreamManagement:
    """Mixed into Cache, ahead of SegmentScanning (it hooks ``_index_block``)."""

    # --- the operations -----------------------------------------------------------

    def drop_stream(self, name: str) -> Extent:
        """Remove a stream: its definition now, its blocks' space as the ring
        evicts them.  Unflushed samples of it are discarded.  Returns what it held."""
        self._require_writer()
        st = self._stream(name)
        held = self.extent(st)
        sid = st.stream_id

        def change(m):
            del m.streams[st.name]
            m.dropped.append(sid)
            m.floors.pop(sid, None)
        self._change_manifest(change)
        self._open_blocks[sid].clear()
        self._rows[sid].clear()
        for segment in self._segments:
            segment.stream_newest.pop(sid, None)   # retention no longer waits for its blocks
        return held

    def rename_stream(self, old: str, new: str) -> Stream:
        """Give a stream a new name (its blocks are found by id, so nothing else changes)."""
        self._require_writer()
        st = self._stream(old)
        check_name("stream", new)
        if new in self._manifest.streams:
            raise SchemaError(f"cannot rename stream {old!r} to {new!r}: a stream {new!r} exists "
                              f"in cache {self.path}")
        renamed = replace(st, name=new)

        def change(m):
            m.streams = {(new if k == old else k): (renamed if k == old else v)
                         for k, v in m.streams.items()}
        self._change_manifest(change)
        return renamed

    def truncate_stream(self, name: str, before_ns: int) -> Extent:
        """Hide every sample of the stream with t < before_ns, from reads and
        queries, for good.  Returns what was hidden by this call."""
        self._require_writer()
        st = self._stream(name)
        before_ns = int(before_ns)
        old_floor = self._manifest.floors.get(st.stream_id)
        if old_floor is not None and before_ns <= old_floor:
            return Extent()
        self._drain_rows(st)
        had = self.extent(st)

        def change(m):
            m.floors[st.stream_id] = before_ns
        self._change_manifest(change)
        lost = had.samples - self.extent(st).samples
        if not lost:
            return Extent()
        return Extent(lost, had.t_first, min(had.t_last, before_ns - 1))

    def change_settings(self, capacity=None, retention=None, compression=None) -> dict:
        """Set capacity, retention ("none" removes it) and compression; a smaller
        ring evicts at once.  Returns {stream: Extent evicted} for what went."""
        self._require_writer()
        before = self.extents()

        def change(m):
            if capacity is not None:
                m.capacity = parse_capacity(capacity)
            if retention is not None:
                none = isinstance(retention, str) and retention.strip().lower() in NO_RETENTION
                m.retention_ns = None if none else parse_retention(retention)
            if compression is not None:
                m.compression = parse_compression(compression)
        self._change_manifest(change)
        with fileio.storage_errors(f"cannot evict segments of cache {self.path}"):
            self._evict(0)
            self._apply_retention()
        return lost_between(before, self.extents())

    # --- what streams hold ----------------------------------------------------------

    def floor_ns(self, stream) -> int | None:
        """The time before which the stream's samples are hidden (None: no floor)."""
        return self._manifest.floors.get(self._stream(stream).stream_id)

    def extent(self, stream) -> Extent:
        """The stream's visible stored samples (flushed or not) and their time range."""
        st = self._stream(stream)
        index = self.blocks(st)
        if not len(index):
            return Extent()
        return Extent(index.samples(), int(index.t_first[0]), int(index.t_last[-1]))

    def extents(self) -> dict[str, Extent]:
        return {name: self.extent(st) for name, st in self._manifest.streams.items()}

    def _visible_stored(self, st: Stream, floor: int) -> tuple[int, int | None]:
        """Samples of the stream's stored blocks at or after ``floor``, and the first one's time."""
        stored = self._blocks[st.stream_id]
        where = stored.range_slice(floor, None)
        if where.stop <= where.start:
            return 0, None
        n = stored.cols["n_samples"][where]
        if int(stored.cols["t_first"][where.start]) >= floor:
            return int(n.sum()), int(stored.cols["t_first"][where.start])
        clipped = self.blocks(st)            # its first block is the straddling one, clipped
        return int(n[1:].sum()) + int(clipped.n_samples[0]), int(clipped.t_first[0])

    # --- the manifest ---------------------------------------------------------------

    def _change_manifest(self, change) -> None:
        """Apply ``change`` to a copy of the manifest, write it atomically, and
        only then adopt it: a failed write changes nothing, in memory or on disk."""
        m = self._manifest
        copy = replace(m, streams=dict(m.streams), dropped=list(m.dropped), floors=dict(m.floors))
        change(copy)
        with fileio.storage_errors(f"cannot write the manifest of cache {self.path}"):
            write_manifest(self.path, copy)
        self._manifest = copy
        self._floor_blocks.clear()

    # --- hooks into reading -----------------------------------------------------------

    def _index_block(self, segment, info, offset: int, key: int, stored: int, where: str,
                     rec_start: int = 0, crc: int = 0) -> None:
        """A dropped stream's block is kept in a table of its own, never served
        or reported, so that forgetting its segment frees what it holds."""
        if info.stream_id not in self._manifest.dropped:
            self._stream_by_id(info.stream_id)    # a reader re-reads a manifest older than the block
        if info.stream_id in self._manifest.dropped:
            blocks = self._blocks.get(info.stream_id)
            if blocks is None:
                blocks = self._blocks[info.stream_id] = StreamBlocks(info.entries.shape[0])
            blocks.add(info, offset, key, segment.number, stored, rec_start, crc)
            segment.n_blocks += 1
            return
        super()._index_block(segment, info, offset, key, stored, where, rec_start, crc)

    def _clip_to_floor(self, index: BlockIndex, floor: int) -> BlockIndex:
        """The blocks of ``index`` with the samples before ``floor`` removed:
        a block that straddles it is re-encoded with its kept samples."""
        straddling = np.flatnonzero(index.t_first < floor)
        if not len(straddling):
            return index
        pieces = [self._floor_block(index, int(i), floor) for i in straddling]
        rest = index.select(np.flatnonzero(index.t_first >= floor))
        clipped = pieces[0]
        for piece in pieces[1:] + [rest]:
            clipped = concat_indexes(clipped, piece)
        return clipped

    def _floor_block(self, index: BlockIndex, i: int, floor: int) -> BlockIndex:
        st = index.stream
        key = (st.stream_id, int(index.seq[i]), int(index.n_samples[i]), floor)
        if key not in self._floor_blocks:
            t, cols = index.decode(i)
            keep = t >= floor
            from ..codec.block import encode_block
            block = encode_block(t[keep], [c[keep] for c in cols], stream_id=st.stream_id,
                                 seq=int(index.seq[i]), codec=st.codec)
            if len(self._floor_blocks) >= FLOOR_CACHE:
                self._floor_blocks.pop(next(iter(self._floor_blocks)))
            self._floor_blocks[key] = (np.frombuffer(block, np.uint8), parse_block(block))
        array, info = self._floor_blocks[key]
        return single_block_index(st, array, info)


def single_block_index(st: Stream, array: np.ndarray, info) -> BlockIndex:
    """A BlockIndex of one in-memory block."""
    one = lambda v: np.array([v], np.int64)   # noqa: E731
    return BlockIndex(st, [array], np.zeros(1, np.int32), one(0), one(info.block_len),
                      one(info.n_samples), one(info.t_first), one(info.t_last), one(info.seq),
                      info.entries.reshape(1, -1), one(info.tick), one(info.time_codec),
                      one(info.time_len))


def concat_indexes(a: BlockIndex, b: BlockIndex) -> BlockIndex:
    """Blocks of ``a``, then those of ``b``; lazy buffers stay lazy (a zstd run
    is decompressed only when one of its blocks is read)."""
    shift = len(a.buffers)
    cat = lambda x, y: np.concatenate([x, y])   # noqa: E731
    if isinstance(b.buffers, LazyBuffers) and not isinstance(a.buffers, LazyBuffers):
        buffers = LazyBuffers(list(a.buffers) + b.buffers.sources, b.buffers._fetch)
    else:
        buffers = a.buffers + b.buffers
    return BlockIndex(a.stream, buffers, cat(a.buffer_of, b.buffer_of + shift),
                      cat(a.offset, b.offset), cat(a.length, b.length), cat(a.n_samples, b.n_samples),
                      cat(a.t_first, b.t_first), cat(a.t_last, b.t_last), cat(a.seq, b.seq),
                      _cat_records(a.entries, b.entries), cat(a.tick, b.tick),
                      cat(a.time_codec, b.time_codec), cat(a.time_len, b.time_len),
                      check=_concat_checks(a, b))


def _cat_records(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.concatenate([a, b]) of two arrays of the same structured dtype, as
    their bytes: numpy copies a structured array field by field, element by
    element (a writer's query with samples in its open block concatenated
    its 4,886 blocks' statistics in ~400 us, ~26 as bytes)."""
    if a.dtype != b.dtype or a.shape[1:] != b.shape[1:] or not a.size or not b.size:
        return np.concatenate([a, b])
    as_bytes = [np.ascontiguousarray(x).view(np.uint8) for x in (a, b)]
    return np.concatenate(as_bytes).view(a.dtype)


def _concat_checks(a: BlockIndex, b: BlockIndex):
    """The check of a's rows then b's (None: neither has one)."""
    if a.check is None and b.check is None:
        return None
    n = len(a)

    def check(rows: np.ndarray) -> None:
        a.verify(rows[rows < n])
        b.verify(rows[rows >= n] - n)
    return check


def lost_between(before: dict, after: dict) -> dict:
    """{stream: Extent} of the samples each stream had in ``before`` and no
    longer has in ``after`` (the ring drops the oldest first)."""
    lost = {}
    for name, had in before.items():
        now = after.get(name, Extent())
        gone = had.samples - now.samples
        if gone > 0:
            end = now.t_first if now.samples else had.t_last
            lost[name] = Extent(gone, had.t_first, end)
    return lost

