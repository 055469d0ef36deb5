"""The writer's side of the segment files: batches of records, commit records,
syncing, the ring's eviction and retention.

A *batch* is the records of one ``append`` (the blocks it sealed) or of one
``flush`` (every stream's open block).  Its records are written one by one,
then a commit record; only then are they indexed, and readers serve records
only up to a commit.  If any write fails before the commit is whole (disk
full, I/O error, a short write), the batch is undone: the active segment is
cut back to where the batch began and the segments it created are deleted,
so a failed call stores nothing and what earlier calls accepted is kept.

``flush`` then fsyncs and writes a *durable* commit record: everything before
it reached the disk, so damage there later is corruption to report, never a
torn write to cut off.  An fsync that fails poisons the writer (Linux reports
a writeback error once and may have dropped the pages): every later write or
flush is refused, so nothing unsynced is ever acknowledged.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import zstandard

from ..codec.header import check_blocks, parse_block
from ..errors import StorageError
from . import fileio
from .records import (CLEAN, COMMIT_RECORD_SIZE, REC_BLOCK, REC_BLOCK_ZSTD, RECORD_HEADER,
                      RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, commit_record, record_crc, segment_header)
from .blockindex import BLOCK_FIELDS
from .segindex import ROW_DTYPE, TAIL_BYTES, encode_index, index_file_name, remove_quietly, write_index
from .segment import Segment
from .settings import segment_target
from .zstdruns import RunBuilder

# "auto" keeps a zstd frame only if it is >= 25 % smaller: a zstd block is
# decompressed again by every query once its run has left the 64 MiB LRU, which
# made scans of a 100 M-sample cache 8-43x slower for 7 % of bytes (format.md §5).
ZSTD_MIN_SAVING = 0.25
ZSTD_LEVEL = 3
COMMIT_ROOM = 2 * COMMIT_RECORD_SIZE   # a batch's commit and a flush's durable commit


@dataclass
class _Placed:
    """A record written in the current batch, indexed once the batch commits."""
    stream_id: int
    info: object
    segment: Segment
    payload_start: int
    payload_len: int
    rec_type: int
    block: bytes
    record_len: int


@dataclass
class _Records:
    """A batch's records back to back (``data``), and what each holds."""
    data: np.ndarray
    sizes: list[int]
    stream_ids: list[int]
    infos: list
    blocks: list
    rec_types: list[int]

    @property
    def view(self) -> memoryview:
        return memoryview(self.data)


@dataclass
class _Prepared:
    """Blocks checked and wrapped, ready to be framed as records."""
    infos: list
    blocks: list
    payloads: list
    rec_types: list[int]
    crcs: list[int]
    stream_ids: list[int] = field(default_factory=list)


@dataclass
class _Batch:
    """Where the files stood when a batch began, to put them back if it fails."""
    start: Segment | None
    start_end: int
    created: list[Segment] = field(default_factory=list)
    placed: list[_Placed] = field(default_factory=list)


class RecordWriting:
    """Mixed into Cache: the write side of the segment files."""

    # --- batches ----------------------------------------------------------------

    def _write_batch(self, items) -> None:
        """Write ``items`` (pairs of a stream and its sealed blocks, in order:
        block bytes or EncodedRuns of many) as one batch and index them; all
        or nothing."""
        self._require_healthy()
        records = self._frame(items)     # every block checked before anything is written
        active = self._active
        batch = _Batch(active, active.valid_end if active is not None else 0)
        try:
            self._write_records(records, batch)
            if batch.placed:
                self._write_commit(durable=False)
        except StorageError:
            self._undo(batch)
            raise
        for segment in {id(p.segment): p.segment for p in batch.placed}.values():
            segment.served_end = segment.valid_end   # the tails of segments the batch rolled past
        self._index_placed(batch.placed)

    def _frame(self, items) -> _Records:
        """The records of every block of ``items``, back to back in one buffer.
        Each block is checked first (parse_block, or check_blocks for a run of
        them): our own output, before it can become durable."""
        prepared: list[_Prepared] = []
        for st, encoded in items:
            for element in encoded:
                if hasattr(element, "offsets"):          # an EncodedRun (codec/bulk.py)
                    ready = element.prepared if element.prepared is not None else \
                        self._prepare_records(element)
                else:
                    ready = self._prepare_one(element)
                ready.stream_ids = [st.stream_id] * len(ready.infos)
                prepared.append(ready)
        sizes = [RECORD_HEADER_SIZE + len(payload) for ready in prepared for payload in ready.payloads]
        data = np.empty(sum(sizes), np.uint8)
        view = memoryview(data)
        pos = 0
        for ready in prepared:
            for payload, rec_type, crc in zip(ready.payloads, ready.rec_types, ready.crcs):
                RECORD_HEADER.pack_into(view, pos, len(payload), crc, rec_type)
                view[pos + RECORD_HEADER_SIZE:pos + RECORD_HEADER_SIZE + len(payload)] = payload
                pos += RECORD_HEADER_SIZE + len(payload)
        joined = lambda name: [x for ready in prepared for x in getattr(ready, name)]   # noqa: E731
        return _Records(data, sizes, joined("stream_ids"), joined("infos"), joined("blocks"),
                        joined("rec_types"))

    def _prepare_records(self, run) -> _Prepared:
        """Check a run's blocks and make their record payloads and CRCs.  The
        bulk encoder calls this in the thread that encoded the run (the CRCs
        and zstd release the GIL), so it must not touch the writer's state:
        it reads the compression mode and makes its own compressor."""
        infos = check_blocks(run.raw, run.offsets, run.lengths)
        for i, info in enumerate(infos):
            if info is None:                  # parse_block says what is wrong
                parse_block(run.raw, int(run.offsets[i]), int(run.lengths[i]))
        blocks = run.blocks()
        mode = self._manifest.compression
        compressor = None if mode == "none" else zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        wrapped = [_wrap(block, mode, compressor) for block in blocks]
        return _Prepared(infos, blocks, [w[0] for w in wrapped], [w[1] for w in wrapped],
                         [record_crc(w[1], w[0]) for w in wrapped])

    def _prepare_one(self, block) -> _Prepared:
        payload, rec_type = _wrap(block, self._manifest.compression, self._compressor)
        return _Prepared([parse_block(block)], [block], [payload], [rec_type],
                         [record_crc(rec_type, payload)])

    def _write_records(self, records: _Records, batch: _Batch) -> None:
        """Write the records, each where ``_reserve`` puts it, with one pwrite
        for each span of them that lands in the same segment without evicting
        anything (a span ends where the next record would roll or evict, and
        ``_reserve`` decides for that record exactly as for a lone one)."""
        target = segment_target(self._manifest.capacity)
        capacity = self._manifest.capacity
        sizes, n = records.sizes, len(records.sizes)
        i, start = 0, 0
        while i < n:
            segment = self._reserve(sizes[i] + COMMIT_ROOM, batch)
            offset = segment.valid_end
            on_disk = self._bytes_on_disk()
            end, j = offset + sizes[i], i + 1
            while j < n and end + sizes[j] + COMMIT_ROOM <= target and \
                    on_disk + (end - offset) + sizes[j] + COMMIT_ROOM <= capacity:
                end += sizes[j]
                j += 1
            stop = start + (end - offset)
            self._append_bytes(segment, records.view[start:stop])
            at = offset
            for k in range(i, j):
                payload_len = sizes[k] - RECORD_HEADER_SIZE
                batch.placed.append(_Placed(records.stream_ids[k], records.infos[k], segment,
                                            at + RECORD_HEADER_SIZE, payload_len, records.rec_types[k],
                                            records.blocks[k], sizes[k]))
                at += sizes[k]
            i, start = j, stop

    def _write_commit(self, durable: bool) -> None:
        """A commit record at the end of the active segment (it never rolls:
        every record reserved room for its batch's commits)."""
        self._evict(COMMIT_RECORD_SIZE)
        segment = self._active
        self._append_bytes(segment, commit_record(segment.number, segment.valid_end, durable))
        segment.served_end = segment.valid_end
        self._unsynced = True

    def _append_bytes(self, segment: Segment, data: bytes) -> None:
        """One pwrite at the end of the segment; a failed one leaves no torn bytes."""
        start = segment.valid_end
        try:
            written = fileio.pwrite(segment.fd, data, start)
            if written != len(data):
                raise OSError(0, f"short write ({written} of {len(data)} bytes)")
        except OSError as exc:
            try:
                fileio.ftruncate(segment.fd, start)
            except OSError:
                pass                  # the batch's undo cuts it back, or poisons the writer
            raise StorageError(f"cannot write to {segment.path}: {exc.strerror or exc}") from None
        segment.valid_end = segment.file_size = start + len(data)
        self._unsynced = True

    def _index_placed(self, placed: list[_Placed]) -> None:
        """Add a committed batch's records to the index (those of segments the
        batch itself evicted, when it was larger than the ring, are gone)."""
        runs: RunBuilder | None = None
        live = set(map(id, self._segments))
        for p in placed:
            if id(p.segment) not in live:
                continue
            if p.rec_type == REC_BLOCK:
                key, offset = p.segment.number, p.payload_start
            else:
                if runs is None or runs.segment is not p.segment:
                    if runs is not None:
                        runs.finish()
                    runs = RunBuilder(self._zstd, p.segment)
                key, offset = runs.add(p.payload_start, p.payload_len, p.block)
            self._blocks[p.stream_id].add(p.info, offset, key, p.segment.number, p.record_len,
                                          p.payload_start - RECORD_HEADER_SIZE,
                                          int.from_bytes(p.block[-4:], "little"))
            self._next_seq[p.stream_id] = p.info.seq + 1
            p.segment.note_block(p.stream_id, p.info.t_last)
        if runs is not None:
            runs.finish()

    def _undo(self, batch: _Batch) -> None:
        """Put the files back as they were before the batch (the segments it
        evicted stay evicted: the ring would have dropped them anyway)."""
        try:
            for segment in reversed(batch.created):
                if segment in self._segments:
                    self._segments.remove(segment)
                segment.release()
                try:
                    fileio.unlink(segment.path)
                except FileNotFoundError:
                    pass
                self._dir_dirty = True
            self._active = None
            start = batch.start
            if start is not None and start in self._segments:
                if start.fd is None:
                    start.fd = fileio.open_file(start.path, os.O_RDWR)
                # No fsync needed: the cut-off records have no commit after them,
                # so a reader never serves them and recovery would cut them too.
                fileio.ftruncate(start.fd, batch.start_end)
                start.valid_end = start.file_size = batch.start_end
                self._active = start
        except OSError as exc:
            self._poison(f"a failed write could not be undone ({exc.strerror or exc})")

    # --- durability ---------------------------------------------------------------

    def _sync(self) -> None:
        """Make every committed batch durable, then say so with a durable commit."""
        if self._active is None or not self._unsynced:
            return
        self._fsync(self._active)
        self._sync_directory()
        self._write_commit(durable=True)
        self._unsynced = False
        self._marker_unsynced = True
        self._write_indexes(include_active=False)

    # --- segment index files (segindex.py) ---------------------------------------

    def _write_indexes(self, include_active: bool) -> None:
        """Write the index file of every segment that lacks a current one and
        whose bytes are synced: the segments before the active one (each was
        fsynced when the writer moved on) and, at close, the active one too.
        Only a segment whose every record was served is indexed."""
        for segment in self._segments:
            if (segment is self._active and not include_active) or not self._indexable(segment):
                continue
            data = self._index_bytes(segment)
            if data is not None and write_index(self.path, segment.number, data):
                segment.indexed_end = segment.served_end

    @staticmethod
    def _indexable(segment: Segment) -> bool:
        return (segment.indexed_end != segment.served_end and segment.clean and not segment.legacy
                and not segment.from_index and not segment.skipped
                and segment.served_end == segment.valid_end == segment.file_size
                and segment.served_end >= SEGMENT_HEADER_SIZE + TAIL_BYTES)

    def _index_bytes(self, segment: Segment) -> bytes | None:
        """The index file of ``segment``, from the rows of every stream table."""
        parts, entries, keys = [], [], []
        for sid, blocks in self._blocks.items():
            where = blocks.segment_rows(segment.number)
            n = where.stop - where.start
            if not n:
                continue
            if not blocks.verified[where].all():
                return None
            part = np.zeros(n, ROW_DTYPE)
            for name in BLOCK_FIELDS:
                part[name] = blocks.cols[name][where]
            part["rec_start"], part["stored"], part["crc"] = \
                blocks.rec_start[where], blocks.stored[where], blocks.crc[where]
            part["stream_id"], part["n_channels"], part["run"] = sid, blocks.n_channels, -1
            parts.append(part)
            entries.append(blocks.entries[where].view(np.uint8).reshape(n, -1))
            keys.append(blocks.buf_key[where])
        rows = np.concatenate(parts) if parts else np.zeros(0, ROW_DTYPE)
        key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        order = np.argsort(rows["rec_start"], kind="stable")
        rows, key = rows[order], key[order]
        run_sizes = []
        for k in dict.fromkeys(key[key < 0].tolist()):       # runs, in the order they start
            run = self._zstd.runs.get(k)
            mine = key == k
            frames = list(zip((rows["rec_start"][mine] + RECORD_HEADER_SIZE).tolist(),
                              (rows["stored"][mine] - RECORD_HEADER_SIZE).tolist()))
            if run is None or run.frames != frames:
                return None                 # a run holding records of no table: never index it
            rows["run"][mine] = len(run_sizes)
            run_sizes.append(run.size)
        flat = b"".join(e.tobytes() for e in entries)
        widths = np.concatenate([np.full(len(e), e.shape[1]) for e in entries]) if entries \
            else np.zeros(0, np.int64)
        starts = np.cumsum(widths) - widths
        picked = np.frombuffer(flat, np.uint8)[
            np.repeat(starts[order], widths[order]) + _ranks(widths[order])] if len(flat) else b""
        tail = segment.buffer()[segment.served_end - TAIL_BYTES:segment.served_end].tobytes()
        return encode_index(segment.number, segment.served_end, segment.durable_end, tail, rows,
                            bytes(picked), np.array(run_sizes, np.int64))

    def _fsync(self, segment: Segment) -> None:
        try:
            fileio.fsync(segment.fd)
        except OSError as exc:
            self._poison(f"fsync of {segment.path} failed ({exc.strerror or exc})")

    def _sync_directory(self) -> None:
        if not self._dir_dirty:
            return
        try:
            fileio.fsync_directory(self.path)
        except OSError as exc:
            self._poison(f"fsync of the directory {self.path} failed ({exc.strerror or exc})")
        self._dir_dirty = False

    def _poison(self, why: str) -> None:
        """No later write or flush may succeed: what was not synced may be lost."""
        self._failure = why
        raise StorageError(f"cache {self.path}: {why}; data appended since the last successful "
                           f"flush() may not be on disk, and this writer accepts nothing more: "
                           f"close it and open the cache again (opening checks what is on disk)")

    def _require_healthy(self) -> None:
        if self._failure is not None:
            raise StorageError(f"cache {self.path}: an earlier {self._failure}; this writer "
                               f"accepts nothing more: close it and open the cache again")

    # --- the ring ---------------------------------------------------------------------

    def _bytes_on_disk(self) -> int:
        return sum(s.file_size for s in self._segments)

    def _reserve(self, room: int, batch: _Batch | None = None) -> Segment:
        """The segment to write ``room`` bytes to, after rolling to a new segment
        and evicting the oldest ones as needed to stay within capacity."""
        active = self._active
        target = segment_target(self._manifest.capacity)
        if active is None or (active.valid_end > SEGMENT_HEADER_SIZE
                              and active.valid_end + room > target):
            active = self._new_segment(batch)
        self._evict(room)
        return active

    def _evict(self, incoming: int) -> None:
        """Delete the oldest segments until ``incoming`` more bytes fit."""
        capacity = self._manifest.capacity
        while self._bytes_on_disk() + incoming > capacity and self._segments:
            oldest = self._segments[0]
            if oldest is self._active:
                break                       # cannot happen with segment_target <= capacity / 2
            self._delete_segment(oldest)

    def _apply_retention(self) -> None:
        """Delete the oldest segments whose every block is older than its stream's
        newest sample minus the retention (the ring stays a suffix of the data)."""
        retention = self._manifest.retention_ns
        if retention is None:
            return
        newest = {sid: blocks.last("t_last") for sid, blocks in self._blocks.items()}
        while self._segments and self._segments[0] is not self._active:
            oldest = self._segments[0]
            if all(newest.get(sid) is not None and t < newest[sid] - retention
                   for sid, t in oldest.stream_newest.items()):
                self._delete_segment(oldest)
            else:
                break

    def _delete_segment(self, segment: Segment) -> None:
        with fileio.storage_errors(f"cannot delete segment {segment.path}"):
            try:
                fileio.unlink(segment.path)
            except FileNotFoundError:
                pass
        remove_quietly(self.path / index_file_name(segment.number))
        self._dir_dirty = True
        self._forget_through(segment.number)

    def _new_segment(self, batch: _Batch | None) -> Segment:
        """Start the next segment; the one before is synced first, so that a
        batch spanning both is durable up to where the new one begins."""
        number = self._segments[-1].number + 1 if self._segments else 1
        segment = Segment(self.path, number)
        if self._active is not None:
            self._fsync(self._active)
            self._active.release()
            self._active = None
        with fileio.storage_errors(f"cannot start segment {segment.path}"):
            segment.fd = fileio.open_file(segment.path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        self._segments.append(segment)
        self._dir_dirty = True
        if batch is not None:
            batch.created.append(segment)
        self._active = segment
        self._append_bytes(segment, segment_header(number))
        segment.served_end = segment.valid_end
        segment.outcome = CLEAN
        return segment


def _wrap(block, mode: str, compressor) -> tuple[bytes, int]:
    """A block's record payload and type under the compression mode."""
    if mode == "none":
        return block, REC_BLOCK
    frame = compressor.compress(block)
    if mode == "zstd" or len(frame) <= (1 - ZSTD_MIN_SAVING) * len(block):
        return frame, REC_BLOCK_ZSTD
    return block, REC_BLOCK


def _ranks(widths: np.ndarray) -> np.ndarray:
    """0..w-1 for each width w, concatenated."""
    total = int(widths.sum())
    return np.arange(total) - np.repeat(np.cumsum(widths) - widths, widths)
