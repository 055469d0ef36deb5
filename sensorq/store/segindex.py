"""A segment's index file: what opening needs from a sealed segment without
reading it (docs/format.md §5, "Segment index files").

``segment-NNNNNNNNNN.sqi`` beside ``segment-NNNNNNNNNN.sqs`` lists every block
record of the segment's first ``covered_end`` bytes: where it lies, its header
fields and directory entries (the statistics queries answer from), its zstd
run, and the block's own CRC.  Opening a cache then costs a read of each index
instead of a read, two CRC passes and a parse of every block.

An index is a hint, never the truth: it is checksummed, bound to its segment
(the segment's header and the CRC of the bytes just before ``covered_end``),
and any index that is missing, torn, corrupt or does not match is ignored and
the segment scanned as before.  The blocks it lists are marked unverified; the
cache checks each one's CRC against the index's before the block is handed to
anything that reads its bytes (Cache.blocks), and a mismatch makes the cache
scan that segment again the ordinary way, which reports and skips the damage.

Written by the writer with one pwrite to a temporary file and a rename, after
the bytes it covers were fsynced; it is not fsynced itself: a power cut may
leave it missing or torn, which its CRC reveals.
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass

import numpy as np

from ..checksum import crc32
from ..codec.header import ENTRY_DTYPE, ENTRY_SIZE
from . import fileio
from .records import RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, check_segment_header, SEGMENT_VERSION
from .segment import read_exactly

INDEX_MAGIC = b"SQIX"
INDEX_VERSION = 1
# magic, version, 3 pad, segment number, covered_end, durable_end, rows, runs, tail length, tail CRC
INDEX_HEADER = struct.Struct("<4sB3xQQQIIII")
TAIL_BYTES = 64                 # the bytes before covered_end whose CRC binds the index to the file
MAX_ROWS = 1 << 24

ROW_DTYPE = np.dtype([
    ("rec_start", "<i8"), ("stored", "<i8"), ("offset", "<i8"), ("run", "<i4"), ("crc", "<u4"),
    ("stream_id", "<i8"), ("n_channels", "<i8"), ("length", "<i8"), ("n_samples", "<i8"),
    ("t_first", "<i8"), ("t_last", "<i8"), ("seq", "<i8"), ("tick", "<i8"),
    ("time_codec", "<i8"), ("time_len", "<i8")])


def index_file_name(number: int) -> str:
    return f"segment-{number:010d}.sqi"


def parse_index_file_name(name: str) -> int | None:
    if name.startswith("segment-") and name.endswith(".sqi") and len(name) == 22:
        digits = name[8:18]
        if digits.isdigit():
            return int(digits)
    return None


@dataclass
class SegmentIndex:
    """One segment's blocks as its index file lists them (in file order)."""
    number: int
    covered_end: int
    durable_end: int
    rows: np.ndarray               # ROW_DTYPE
    entries: np.ndarray            # uint8, each row's n_channels * ENTRY_SIZE bytes, in row order
    run_sizes: np.ndarray          # int64, decompressed bytes of each zstd run

    def entries_of(self, which: np.ndarray, n_channels: int) -> np.ndarray:
        """The directory entries of rows ``which`` (all with ``n_channels``)."""
        width = n_channels * ENTRY_SIZE
        if len(self.rows) and (self.rows["n_channels"] == n_channels).all():    # one width: a view
            table = self.entries.reshape(len(self.rows), width)
            picked = table if len(which) == len(self.rows) else table[which]
        else:                         # rows of several widths: one copy per row
            windows = np.lib.stride_tricks.as_strided(
                self.entries, (max(0, len(self.entries) - width + 1), width), (1, 1), writeable=False)
            picked = windows[self.entry_starts()[which]]
        return np.ascontiguousarray(picked).view(ENTRY_DTYPE).reshape(len(which), n_channels)

    def entry_starts(self) -> np.ndarray:
        sizes = self.rows["n_channels"] * ENTRY_SIZE
        return np.cumsum(sizes) - sizes

    def frames(self, run: int) -> list[tuple[int, int]]:
        """(payload start, payload length) of run ``run``'s zstd frames, in order."""
        mine = self.rows[self.rows["run"] == run]
        return list(zip((mine["rec_start"] + RECORD_HEADER_SIZE).tolist(),
                        (mine["stored"] - RECORD_HEADER_SIZE).tolist()))


def encode_index(number: int, covered_end: int, durable_end: int, tail: bytes,
                 rows: np.ndarray, entries: bytes, run_sizes: np.ndarray) -> bytes:
    head = INDEX_HEADER.pack(INDEX_MAGIC, INDEX_VERSION, number, covered_end, durable_end,
                             len(rows), len(run_sizes), len(tail), crc32(tail))
    body = head + rows.astype(ROW_DTYPE).tobytes() + np.asarray(run_sizes, "<i8").tobytes() + entries
    return body + crc32(body).to_bytes(4, "little")


def decode_index(data, number: int) -> tuple[SegmentIndex, int, int] | None:
    """(index, tail length, tail CRC), or None if ``data`` is not a whole,
    intact index of segment ``number``."""
    if len(data) < INDEX_HEADER.size + 4:
        return None
    if crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
        return None
    magic, version, found, covered, durable, n_rows, n_runs, tail_len, tail_crc = \
        INDEX_HEADER.unpack_from(data, 0)
    if magic != INDEX_MAGIC or version != INDEX_VERSION or found != number or n_rows > MAX_ROWS:
        return None
    pos = INDEX_HEADER.size
    rows_end = pos + n_rows * ROW_DTYPE.itemsize
    runs_end = rows_end + 8 * n_runs
    if runs_end > len(data) - 4:
        return None
    rows = np.frombuffer(data, ROW_DTYPE, n_rows, pos)
    run_sizes = np.frombuffer(data, "<i8", n_runs, rows_end).astype(np.int64)
    entries = np.frombuffer(data, np.uint8, len(data) - 4 - runs_end, runs_end)
    if int((rows["n_channels"] * ENTRY_SIZE).sum()) != len(entries):
        return None
    index = SegmentIndex(number, covered, durable, rows, entries, run_sizes)
    return (index, tail_len, tail_crc) if _plausible(index) else None


def _plausible(index: SegmentIndex) -> bool:
    """Row fields that later code relies on are within bounds (a CRC-valid index
    written by a buggy or foreign writer must not make anyone read out of range)."""
    rows = index.rows
    if not len(rows):
        return SEGMENT_HEADER_SIZE <= index.covered_end
    zstd = rows["run"] >= 0
    ends = rows["rec_start"] + rows["stored"]
    ok = (rows["rec_start"][0] >= SEGMENT_HEADER_SIZE and bool((np.diff(rows["rec_start"]) > 0).all())
          and bool((ends <= index.covered_end).all()) and bool((rows["stored"] > RECORD_HEADER_SIZE).all())
          and bool((rows["n_channels"] >= 1).all()) and bool((rows["n_samples"] >= 1).all())
          and bool((rows["length"] > 0).all()) and bool((rows["run"] < len(index.run_sizes)).all()))
    if not ok:
        return False
    plain = ~zstd
    if not (rows["offset"][plain] == rows["rec_start"][plain] + RECORD_HEADER_SIZE).all():
        return False
    if not (rows["length"][plain] == rows["stored"][plain] - RECORD_HEADER_SIZE).all():
        return False
    run_end = rows["offset"][zstd] + rows["length"][zstd]
    return bool(((rows["offset"][zstd] >= 0) & (run_end <= index.run_sizes[rows["run"][zstd]])).all())


def read_index(directory, number: int, fd: int, size: int) -> SegmentIndex | None:
    """The index of segment ``number`` (open as ``fd``, ``size`` bytes), if it
    exists, is intact and matches the segment's bytes; else None."""
    try:
        ifd = fileio.open_file(directory / index_file_name(number), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        size_of_index = fileio.size(ifd)
        if size_of_index < INDEX_HEADER.size + 4:
            return None
        # mapped, not read: the CRC pass and the copy into the stream tables
        # then read the page cache directly
        mapping = mmap.mmap(ifd, size_of_index, access=mmap.ACCESS_READ)
        decoded = decode_index(memoryview(mapping), number)
    finally:
        fileio.close(ifd)
    if decoded is None:
        return None
    index, tail_len, tail_crc = decoded
    if index.covered_end > size or tail_len > index.covered_end - SEGMENT_HEADER_SIZE:
        return None
    head = read_exactly(fd, SEGMENT_HEADER_SIZE, 0)
    if len(head) < SEGMENT_HEADER_SIZE or check_segment_header(head, number) or head[4] != SEGMENT_VERSION:
        return None
    tail = read_exactly(fd, tail_len, index.covered_end - tail_len)
    if crc32(tail) != tail_crc:
        return None
    return index


def write_index(directory, number: int, data: bytes) -> bool:
    """Put the index in place (a temporary file renamed over it).  False if
    that failed: the index is only a shortcut, so the failure is not an error."""
    path = directory / index_file_name(number)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = fileio.open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            if fileio.pwrite(fd, data, 0) != len(data):
                raise OSError(0, "short write")
        finally:
            fileio.close(fd)
        fileio.replace(tmp, path)
        return True
    except OSError:
        remove_quietly(tmp)
        return False


def remove_quietly(path) -> None:
    try:
        fileio.unlink(path)
    except OSError:
        pass
