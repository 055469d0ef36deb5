"""One segment file as the cache tracks it: how much of it is verified, how it
is mapped into memory, which streams' data it holds and how new it is."""
from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

from . import filemap, fileio
from .records import (BAD_HEADER, CLEAN, CORRUPT, INCOMPLETE, LEGACY_SEGMENT_VERSION,
                      SEGMENT_HEADER_SIZE, SEGMENT_VERSION, SHORT, ScanResult, check_segment_header,
                      scan_records, segment_file_name, segment_version)


class Segment:
    def __init__(self, directory: Path, number: int):
        self.number = number
        self.path = directory / segment_file_name(number)
        self.valid_end = 0            # bytes verified from the start of the file
        self.served_end = 0           # bytes whose records are indexed: up to the last commit
        self.durable_end = 0          # just after the last durable commit record (0: none seen)
        self.file_size = 0            # bytes on disk when last seen
        self.version = SEGMENT_VERSION
        self.outcome = SHORT
        self.detail = ""
        self.stream_newest: dict[int, int] = {}   # stream_id -> newest t_last stored here
        self.n_blocks = 0
        self.skipped = 0              # records scanned but not served (reported as problems)
        self.indexed_end = 0          # covered_end of the index file known to be on disk
        self.from_index = False       # its blocks came from its index file (CRCs checked lazily)
        self.fd: int | None = None    # the writer's fd on its active segment
        self._array: np.ndarray | None = None
        self._file_map: filemap.FileMap | None = None     # what _array views, with room to grow
        self._mapped = 0

    # --- scanning ------------------------------------------------------------

    def scan_more(self, fd: int) -> tuple[ScanResult | None, bytes]:
        """Read what lies beyond the served prefix and scan it.  Returns the
        scan and the bytes read (record offsets are absolute file offsets; the
        bytes start at the old ``served_end``, or 0 for a fresh segment).  The
        records after the last commit are scanned again next time: they belong
        to a batch still being written (or one that failed and was cut off)."""
        size = fileio.size(fd)
        self.file_size = size
        if self.outcome in (CORRUPT, BAD_HEADER):
            return None, b""          # nothing after damage is trusted
        if self.served_end == 0:
            if size < SEGMENT_HEADER_SIZE:
                self.outcome, self.detail = SHORT, f"{size} bytes, shorter than a segment header"
                return None, b""
            head = read_exactly(fd, SEGMENT_HEADER_SIZE, 0)
            problem = check_segment_header(head, self.number)
            if problem:
                self.outcome, self.detail = BAD_HEADER, problem
                return None, b""
            self.version = segment_version(head)
            self.valid_end = self.served_end = SEGMENT_HEADER_SIZE
        base = self.served_end
        data = read_exactly(fd, max(0, size - base), base)
        result = scan_records(data, base, self.number, self.version)
        self.valid_end = result.valid_end
        if result.durable_end is not None:
            self.durable_end = result.durable_end
        self.outcome, self.detail = result.outcome, result.detail
        return result, data

    def adopt_index(self, covered_end: int, durable_end: int) -> None:
        """Take the first ``covered_end`` bytes as its index file describes them
        (segindex.py): committed records, served, their blocks not yet verified."""
        self.version = SEGMENT_VERSION
        self.valid_end = self.served_end = self.file_size = self.indexed_end = covered_end
        self.durable_end = durable_end
        self.outcome, self.detail = CLEAN, ""
        self.from_index = True

    def reset_scan(self) -> None:
        """Back to a segment never scanned (its index did not fit)."""
        self.valid_end = self.served_end = self.durable_end = self.file_size = self.indexed_end = 0
        self.version, self.outcome, self.detail = SEGMENT_VERSION, SHORT, ""
        self.from_index = False

    @property
    def legacy(self) -> bool:
        """A version 1 segment: no commit records, every valid record is served."""
        return self.version == LEGACY_SEGMENT_VERSION

    @property
    def has_unserved(self) -> bool:
        return self.served_end < self.valid_end

    def note_block(self, stream_id: int, t_last: int) -> None:
        self.n_blocks += 1
        if t_last > self.stream_newest.get(stream_id, t_last - 1):
            self.stream_newest[stream_id] = t_last

    @property
    def damaged(self) -> bool:
        return self.outcome in (CORRUPT, BAD_HEADER)

    @property
    def clean(self) -> bool:
        return self.outcome == CLEAN

    def problem(self, newest: bool) -> str | None:
        """Text for info()["problems"], or None.  An incomplete tail of the newest
        segment is a write in progress (or a crash's torn write), not a problem."""
        if self.damaged or (not newest and self.outcome in (INCOMPLETE, SHORT)):
            return (f"segment {self.path.name}: {self.detail}; the data after offset "
                    f"{self.served_end} in this segment is not served")
        return None

    # --- memory mapping ------------------------------------------------------

    def buffer(self) -> np.ndarray:
        """The served prefix as a read-only uint8 array (memory-mapped).  Only
        committed, verified bytes are in it, and nobody truncates a file below
        its last commit record, so touching it can never fault."""
        if self._array is None or self._mapped < self.served_end:
            fd = self.fd if self.fd is not None else fileio.open_file(self.path, os.O_RDONLY)
            try:
                self._map(fd)
            finally:
                if fd != self.fd:
                    fileio.close(fd)
        return self._array

    def map_from(self, fd: int) -> None:
        """Map the served prefix using an fd already open on the file (so a
        concurrent delete cannot get between the scan and the mapping)."""
        if self.served_end > 0 and self._mapped < self.served_end:
            self._map(fd)

    def _map(self, fd: int) -> None:
        """self._array := the served prefix: a longer view of the map already
        made where it has room (filemap.py: the pages the last prefix had
        mapped stay so, and a reader's next query over a growing segment
        does not fault them in again), else a new map with room to grow, or
        Python's map of the prefix alone where the C library's is not at hand."""
        if self._file_map is None or self._file_map.size < self.served_end:
            self._file_map = filemap.map_file(fd, self.served_end)
        if self._file_map is not None:
            self._array = self._file_map.view(self.served_end)
        else:
            self._array = np.frombuffer(mmap.mmap(fd, self.served_end, access=mmap.ACCESS_READ),
                                        np.uint8)
        self._mapped = self.served_end

    def release(self) -> None:
        """Forget the mapping (arrays handed out keep it alive until dropped)."""
        self._array = None
        self._file_map = None
        self._mapped = 0
        if self.fd is not None:
            fileio.close(self.fd)
            self.fd = None


def read_exactly(fd: int, n: int, offset: int) -> bytes:
    parts, done = [], 0
    while done < n:
        chunk = fileio.pread(fd, min(n - done, 1 << 30), offset + done)
        if not chunk:
            break                     # the file shrank under us: scan what is there
        parts.append(chunk)
        done += len(chunk)
    return b"".join(parts)
