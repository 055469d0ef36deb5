"""Reading segment files into the block index: what every opener does (writer
and reader alike), what a reader's ``refresh`` repeats, and the writer's
recovery after a crash.

A segment's records are served up to its last commit record: each batch of
records ends with one, so a batch the writer is still writing - or one it
rolled back after a storage error, or one a crash cut off - is never served.
A batch can span segments (the writer rolls to a new segment in the middle of
it); the records after an older segment's last commit are served once a later
segment shows a commit (docs/format.md §5, "Commit records").

A segment with a valid index file (segindex.py) is not read: its blocks come
from the index, unverified, and each one's CRC is checked before its bytes are
first read (by ``Cache.blocks``, or, for a lazy index, by BlockIndex.verify);
one that fails has its segment read whole after all.

Eviction deletes the oldest segments first, so a segment that vanishes
between a reader's directory listing and its open means that every older one
is gone too: the reader drops them all, and what it serves stays one
contiguous stretch of every stream.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..checksum import crc32_spans
from ..codec.header import CRC_SIZE, check_blocks, parse_block, stored_crcs
from ..errors import CorruptDataError, SensorqError, StorageError
from . import fileio
from .records import (CLEAN, REC_BLOCK, REC_COMMIT, SEGMENT_HEADER_SIZE, SHORT, ScanResult,
                      parse_segment_file_name)
from .segindex import (SegmentIndex, index_file_name, parse_index_file_name, read_index,
                       remove_quietly)
from .blockindex import BlocksChanged, StreamBlocks, factorise
from .segment import Segment
from .zstdruns import RunBuilder, ZstdRuns


@dataclass
class _Scan:
    """One segment's new records, read and checked but not yet indexed."""
    segment: Segment
    fd: int | None = None               # None: a damaged segment, nothing new to read
    result: ScanResult | None = None
    data: bytes = b""
    listed: SegmentIndex | None = None  # the blocks its index file lists (before ``result``'s)

    @property
    def cut(self) -> int | None:
        """Where the records this scan can serve on its own end: just after the
        last commit record, or the whole valid prefix of a version 1 segment
        (no commit records) or of a damaged one (what precedes the damage was
        committed: a durable commit record follows it; and a segment after
        others, damaged or not, means the writer finished those)."""
        if self.result is None:
            return self.segment.valid_end
        if self.segment.legacy or self.segment.damaged:
            return self.result.valid_end
        if self.result.committed_end is None and self.listed is not None:
            return self.listed.covered_end      # an index covers only committed records
        return self.result.committed_end


class SegmentScanning:
    """Mixed into Cache: the read side of the segment files."""

    def _segment_numbers(self) -> list[int]:
        numbers = (parse_segment_file_name(name) for name in fileio.listdir(self.path))
        return sorted(n for n in numbers if n is not None)

    def _scan_segments(self) -> None:
        """Load new segments and what was appended to known ones; forget deleted ones."""
        on_disk = self._segment_numbers()
        self._forget_deleted(set(on_disk))
        # The writer appends to the newest segment, so it reads that one whole:
        # it must know exactly where the segment's verified records end.
        trusted = set(on_disk) - self._distrusted
        if not self.readonly and on_disk:
            trusted.discard(on_disk[-1])
        known = {s.number: s for s in self._segments}
        newest_known = self._segments[-1].number if self._segments else 0
        scans: list[_Scan] = []
        try:
            for number in on_disk:
                segment = known.get(number)
                if segment is None and number <= newest_known:
                    continue                 # an older segment appeared: never a writer's doing
                fresh = segment is None
                if fresh:
                    segment = Segment(self.path, number)
                scan = self._scan_segment(segment, fresh and number in trusted)
                if scan is False:            # deleted between the listing and the open
                    if not fresh:
                        self._forget_vanished(segment)
                    continue
                if fresh:
                    self._segments.append(segment)
                if scan is None and segment.damaged:
                    scan = _Scan(segment)
                if scan is not None:
                    scans.append(scan)
            self._serve(scans)
        finally:
            for scan in scans:
                if scan.fd is not None:
                    fileio.close(scan.fd)

    def _forget_deleted(self, present: set[int]) -> None:
        for segment in [s for s in self._segments if s.number not in present]:
            self._forget_vanished(segment)

    def _forget_vanished(self, segment: Segment) -> None:
        if segment not in self._segments:
            return
        if segment.n_blocks == 0:
            segment.release()               # a writer removed a segment that served nothing
            self._segments.remove(segment)
        else:
            self._forget_through(segment.number)   # evicted: always the oldest, so all before it too

    def _scan_segment(self, segment: Segment, use_index: bool = False):
        """A _Scan of what is new in the segment; None if nothing is; False if
        the file is gone.  ``use_index``: a fresh segment's blocks may come
        from its index file (segindex.py); only what follows is then read."""
        if segment.damaged or segment.fd is not None:
            return None           # nothing new can be trusted / the writer knows its own segment
        try:
            fd = fileio.open_file(segment.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            size = fileio.size(fd) if use_index else 0
            listed = read_index(self.path, segment.number, fd, size) if use_index else None
            if listed is not None:
                segment.adopt_index(listed.covered_end, listed.durable_end)
                result, data = segment.scan_more(fd) if size > listed.covered_end else (None, b"")
                return _Scan(segment, fd, result, data, listed)
            unchanged = fileio.size(fd) == segment.file_size and segment.outcome == CLEAN
            if unchanged and not segment.has_unserved:
                fileio.close(fd)
                return None
            result, data = segment.scan_more(fd)
        except BaseException:
            fileio.close(fd)
            raise
        if result is None:
            fileio.close(fd)
            return None
        return _Scan(segment, fd, result, data)

    def _serve(self, scans: list[_Scan]) -> None:
        """Index the scanned records up to the last commit seen in any of them."""
        last = max((i for i, scan in enumerate(scans) if scan.cut is not None), default=-1)
        self._reserve_listed(scans[:last + 1])
        for i, scan in enumerate(scans[:last + 1]):
            if scan.listed is not None and not self._index_listed(scan.segment, scan.listed):
                self._rescan_whole(scan)          # the index does not fit: read the segment
            if scan.result is None:
                if scan.listed is not None:
                    scan.segment.map_from(scan.fd)
                continue
            cut = scan.result.valid_end if i < last else scan.cut
            cut = scan.result.valid_end if cut is None else cut
            records = [rec for rec in scan.result.records if rec.end <= cut]
            self._index_records(scan.segment, records, scan.data, scan.result.base)
            scan.segment.served_end = max(scan.segment.served_end, cut)
            scan.segment.map_from(scan.fd)

    def _reserve_listed(self, scans: list[_Scan]) -> None:
        """Room in each stream's table for every block the index files list
        (one allocation, not one regrowth after another)."""
        listed = [scan.listed.rows["stream_id"] for scan in scans if scan.listed is not None]
        if listed:
            sids, codes = factorise(np.concatenate(listed))   # not np.unique: it imports numpy.ma
            for sid, count in zip(sids, np.bincount(codes).tolist()):
                if sid in self._blocks:
                    self._blocks[sid].reserve(count)

    def _rescan_whole(self, scan: _Scan) -> None:
        """Forget what the index said of the segment and scan all of it."""
        scan.segment.reset_scan()
        scan.listed = None
        scan.result, scan.data = scan.segment.scan_more(scan.fd)

    def _index_listed(self, segment: Segment, listed: SegmentIndex) -> bool:
        """Add the blocks a segment's index lists, in bulk and unverified.
        False (nothing added) if any of them would not pass the checks a
        scanned block passes (stream, channel types, order): the segment is
        then scanned, which reports each such block exactly."""
        rows = listed.rows
        groups = {}
        sids = rows["stream_id"]
        for sid in factorise(sids)[0]:      # not np.unique: it imports numpy.ma
            which = np.flatnonzero(sids == sid)
            part = rows if len(which) == len(rows) else rows[which]
            entries = listed.entries_of(which, int(part["n_channels"][0]))
            if sid not in self._manifest.dropped:
                self._stream_by_id(sid)     # a reader re-reads a manifest older than the block
            if sid not in self._manifest.dropped and not self._listed_fit(sid, part, entries):
                return False
            groups[sid] = (which, part, entries)
        keys = np.full(len(rows), segment.number, np.int64)
        if len(listed.run_sizes):
            run_keys = np.array([self._listed_run(segment, listed, r)
                                 for r in range(len(listed.run_sizes))], np.int64)
            zstd = rows["run"] >= 0
            keys[zstd] = run_keys[rows["run"][zstd]]
        for sid, (which, part, entries) in groups.items():
            blocks = self._blocks.get(sid)
            if blocks is None:                # a dropped stream this opener never saw
                blocks = self._blocks[sid] = StreamBlocks(int(part["n_channels"][0]))
            blocks.add_listed(part, entries, part["offset"], keys[which], segment.number)
            segment.n_blocks += len(which)
            if sid not in self._manifest.dropped:
                self._next_seq[sid] = int(part["seq"][-1]) + 1
                newest = int(part["t_last"].max())
                segment.stream_newest[sid] = max(segment.stream_newest.get(sid, newest), newest)
        return True

    def _listed_fit(self, sid: int, part: np.ndarray, entries: np.ndarray) -> bool:
        stream = self._manifest.stream_by_id().get(sid)
        if stream is None or (part["n_channels"] != len(stream.channels)).any():
            return False
        codes = np.frombuffer(self._rows[sid].dtype_codes, np.uint8)
        if not (entries["dtype"] == codes).all():
            return False
        return self._blocks[sid].follows(part["seq"], part["t_first"], part["t_last"])

    def _listed_run(self, segment: Segment, listed: SegmentIndex, run: int) -> int:
        key = self._zstd.new_run(segment)
        zrun = self._zstd.runs[key]
        zrun.frames, zrun.size = listed.frames(run), int(listed.run_sizes[run])
        mine = listed.rows[listed.rows["run"] == run]
        zrun.checks = list(zip(mine["offset"].tolist(), mine["length"].tolist(), mine["crc"].tolist()))
        return key

    def _index_records(self, segment: Segment, records, data: bytes, base: int) -> None:
        """Verify every record's block and add it to its stream's index (zstd
        blocks are decompressed to be verified, then grouped into runs)."""
        raw = np.frombuffer(data, np.uint8)
        runs = RunBuilder(self._zstd, segment)
        # Plain blocks are checked together (check_blocks: one Python call per
        # block was most of the time it takes to open a big cache); a block it
        # rejects goes through parse_block for the exact complaint.
        plain = [rec for rec in records if rec.rec_type == REC_BLOCK]
        checked = dict(zip((rec.start for rec in plain), check_blocks(
            raw, [rec.payload_start - base for rec in plain], [rec.payload_len for rec in plain])))
        for rec in records:
            if rec.rec_type == REC_COMMIT:
                continue
            where = f"segment {segment.path.name}, record at offset {rec.start}"
            try:
                if rec.rec_type == REC_BLOCK:
                    info = checked[rec.start] or parse_block(raw, rec.payload_start - base,
                                                             rec.payload_len)
                    key, offset = segment.number, rec.payload_start
                    crc = int.from_bytes(raw[rec.end - base - 4:rec.end - base].tobytes(), "little")
                else:
                    block = self._zstd.decompress(raw[rec.payload_start - base:rec.end - base])
                    key, offset = runs.add(rec.payload_start, rec.payload_len, block)
                    info = parse_block(block, 0, len(block))
                    crc = int.from_bytes(block[-4:], "little")
            except SensorqError as exc:
                self._problems.append(f"{where}: {exc}; skipped")
                segment.skipped += 1
                continue
            self._index_block(segment, info, offset, key, rec.size, where, rec.start, crc)
        runs.finish()

    def _index_block(self, segment: Segment, info, offset: int, key: int, stored: int,
                     where: str, rec_start: int = 0, crc: int = 0) -> None:
        stream = self._stream_by_id(info.stream_id)
        problem = self._block_mismatch(stream, info)
        if problem:
            self._problems.append(f"{where}: {problem}; skipped")
            segment.skipped += 1
            return
        sid = stream.stream_id
        self._blocks[sid].add(info, offset, key, segment.number, stored, rec_start, crc)
        self._next_seq[sid] = info.seq + 1
        segment.note_block(sid, info.t_last)

    # --- blocks listed by index files: checked before use -------------------------

    def _remove_stray_indexes(self) -> None:
        """Index files whose segment is gone (a crash between the two unlinks,
        or recovery deleted the segment) and temporary ones (a crash while
        writing one)."""
        numbers = {s.number for s in self._segments}
        for name in fileio.listdir(self.path):
            number = parse_index_file_name(name)
            if (number is not None and number not in numbers) or (
                    name.endswith(".sqi.tmp") and name.startswith("segment-")):
                remove_quietly(self.path / name)

    def _check_listed(self, stored: StreamBlocks, where: slice) -> set[int]:
        """Check the CRC of every block in ``where`` that came from an index file
        and has not been checked yet; returns the segments where one failed."""
        if not stored.unverified or where.stop <= where.start:
            return set()
        pos = np.arange(where.start, where.stop)[~stored.verified[where]]
        if not len(pos):
            return set()
        bad = self._crc_failures(self._buffer_for, stored.buf_key[pos], stored.cols["offset"][pos],
                                 stored.cols["length"][pos], stored.crc[pos], stored.segment[pos])
        stored.mark_verified(pos[~np.isin(stored.segment[pos], list(bad))])
        return bad

    @staticmethod
    def _crc_failures(fetch, keys, offsets, lengths, crcs, segments) -> set[int]:
        """The segments of the listed blocks (buffer key, offset, length, CRC)
        whose CRC fails, or whose buffer cannot be had (a zstd run that does
        not decompress); ``fetch`` turns a key into its buffer."""
        bad: set[int] = set()
        distinct, slot = factorise(keys)        # not np.unique: it imports numpy.ma
        for j, key in enumerate(distinct):
            mine = np.flatnonzero(slot == j)
            try:
                buf = fetch(key)
            except (CorruptDataError, StorageError):
                bad.add(int(segments[mine[0]]))
                continue
            starts, sizes = offsets[mine].astype(np.int64), lengths[mine].astype(np.int64)
            ends, expected = starts + sizes, crcs[mine].astype(np.uint32)
            whole = (sizes >= CRC_SIZE) & (ends <= len(buf))
            trailers = np.zeros(len(mine), np.uint32)
            if whole.any():
                trailers[whole] = stored_crcs(buf, starts[whole], sizes[whole])
            whole &= trailers == expected
            computed = crc32_spans(buf, starts[whole], ends[whole] - CRC_SIZE)
            bad.update(segments[mine[whole][computed != expected[whole]]].tolist())
            bad.update(segments[mine[~whole]].tolist())
        return bad

    def _lazy_check(self, stored: StreamBlocks, where: slice, fetch):
        """BlockIndex.check for the blocks ``where`` of ``stored`` (rows of the
        index numbered from 0): the CRCs of those not checked yet, when they are
        about to be read.  What it needs is taken now, so that the check does
        not depend on where the rows lie later (the table grows, eviction drops
        its head); blocks that pass are marked checked by their sequence number."""
        pending = ~stored.verified[where]
        if not pending.any():
            return None
        keys, offsets, lengths = stored.buf_key[where], stored.cols["offset"][where], \
            stored.cols["length"][where]
        crcs, segments, seqs = stored.crc[where], stored.segment[where], stored.cols["seq"][where]

        # A read-only rows array found all checked: a kept plan's (derived.py),
        # handed in again by the same query asked again, which then costs no
        # numpy here (~1 µs of a ~35 µs count).  Checked blocks never become
        # unchecked, and a read-only array cannot be changed, so it stays true.
        clean = [None]

        def check(asked: np.ndarray) -> None:
            if asked is clean[0]:
                return
            rows = asked[pending[asked]]
            if not len(rows):
                if not asked.flags.writeable:
                    clean[0] = asked
                return
            bad = self._crc_failures(fetch, keys[rows], offsets[rows], lengths[rows], crcs[rows],
                                     segments[rows])
            good = rows[~np.isin(segments[rows], list(bad))]
            pending[good] = False
            stored.mark_verified_seqs(seqs[good])
            if bad:
                self._rescan(bad)
                raise BlocksChanged(f"cache {self.path}: a block of segment(s) "
                                    f"{sorted(bad)} failed its checksum; the segment is read whole "
                                    f"from now on (see info() problems): ask again")
        return check

    def _checked_slice(self, sid: int, start_ns, end_ns) -> tuple[StreamBlocks, slice]:
        """The stream's blocks overlapping [start_ns, end_ns), every one verified
        (a block that fails makes its segment read whole, as if it had no index)."""
        while True:
            stored, where = self._listed_slice(sid, start_ns, end_ns)
            bad = self._check_listed(stored, where)
            if not bad:
                return stored, where
            self._rescan(bad)

    def _listed_slice(self, sid: int, start_ns, end_ns) -> tuple[StreamBlocks, slice]:
        """_checked_slice without checking CRCs: for a lazy BlockIndex (its
        check does, before a block is read)."""
        if self._damaged_listed:
            damaged, self._damaged_listed = self._damaged_listed, set()
            self._rescan(damaged)
        stored = self._blocks[sid]
        return stored, stored.range_slice(start_ns, end_ns)

    def _rescan(self, distrust: set[int]) -> None:
        """Index the cache again, reading the segments in ``distrust`` whole
        (their index files are not trusted again by this Cache, and a writer
        deletes them).  Blocks already handed out stay readable."""
        self._distrusted |= distrust
        if not self.readonly:
            for number in distrust:
                remove_quietly(self.path / index_file_name(number))
        active, next_seq = self._active, dict(self._next_seq)
        for segment in self._segments:
            if segment is not active:
                segment.release()
        self._segments, self._problems, self._zstd = [], [], ZstdRuns(self._zstd._next_key)
        self._blocks = {st.stream_id: StreamBlocks(len(st.channels))
                        for st in self._manifest.streams.values()}
        self._scan_segments()
        if active is not None:
            again = next(s for s in self._segments if s.number == active.number)
            again.fd, active.fd = active.fd, None
            self._active = again
        for sid, seq in next_seq.items():      # a writer never reuses a sequence number
            self._next_seq[sid] = max(seq, self._next_seq.get(sid, 0))

    def _check_everything(self) -> None:
        """Read every segment whose blocks came from an index file whole, as an
        open without index files would: every record and block checked, every
        problem found (info() reports them)."""
        listed = {s.number for s in self._segments if s.from_index}
        if listed:
            self._rescan(listed)

    # --- recovery (writer) ------------------------------------------------------

    def _recover_newest(self) -> None:
        """Undo what a crashed writer left unfinished, and pick the active segment.

        Segments at the end that serve nothing (a crash while creating one, or
        a batch that a crash cut off before its commit) are deleted; the newest
        remaining one is cut back to its last commit (a torn write, or the
        records of an unfinished batch) and writing continues there.  A
        damaged newest segment is left as it is and writing goes to a new one,
        as it does after a version 1 segment.  The directory is synced either
        way: a crashed writer may have created segments whose names it never
        made durable, and this writer's flushes will acknowledge their data."""
        while self._segments and self._serves_nothing(self._segments[-1]):
            newest = self._segments.pop()
            fileio.unlink(newest.path)
            newest.release()
        self._dir_dirty = True
        self._sync_directory()
        if not self._segments:
            return
        newest = self._segments[-1]
        if newest.damaged:
            self._drop_index_past_damage(newest)
        if newest.damaged or newest.legacy or newest.from_index:
            return        # (from_index: not read whole, so never appended to)
        fd = fileio.open_file(newest.path, os.O_RDWR)
        try:
            if newest.file_size > newest.served_end:
                fileio.ftruncate(fd, newest.served_end)
                fileio.fsync(fd)
        except BaseException:
            fileio.close(fd)
            raise
        newest.outcome, newest.detail = CLEAN, ""
        newest.valid_end = newest.file_size = newest.served_end
        newest.fd = fd
        self._active = newest

    def _drop_index_past_damage(self, segment: Segment) -> None:
        """The writer reads its newest segment whole and serves nothing past
        damage in it; a reader trusts the segment's index file (bound to its
        intact tail) and would serve the blocks the index lists past the
        damage, then this writer's next blocks under the same sequence
        numbers.  So the index goes (every reader then reads the segment as
        the writer did) and no number it lists is used again."""
        fd = fileio.open_file(segment.path, os.O_RDONLY)
        try:
            listed = read_index(self.path, segment.number, fd, fileio.size(fd))
        finally:
            fileio.close(fd)
        if listed is None:
            return
        sids, seqs = listed.rows["stream_id"], listed.rows["seq"]
        for sid in factorise(sids)[0]:
            beyond = int(seqs[sids == sid].max()) + 1
            self._next_seq[sid] = max(beyond, self._next_seq.get(sid, 0))
        remove_quietly(self.path / index_file_name(segment.number))
        self._dir_dirty = True
        self._sync_directory()

    @staticmethod
    def _serves_nothing(segment: Segment) -> bool:
        if segment.outcome == SHORT:
            return True
        return (not segment.damaged and segment.n_blocks == 0
                and segment.served_end <= SEGMENT_HEADER_SIZE)
