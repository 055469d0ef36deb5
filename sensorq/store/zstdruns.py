"""Blocks stored zstd-wrapped, decompressed on demand.

A *run* is a group of consecutive zstd records of one segment (at most
``RUN_BYTES`` once decompressed).  Its blocks are verified when the segment is
scanned (or when the writer writes them); afterwards the run only remembers
where its frames lie in the segment file.  When a query needs one of its
blocks, the whole run is decompressed from the segment's memory map into one
buffer - the same bytes, at the same offsets, as at verification - and kept in
a small LRU cache, so memory stays bounded however big the cache directory is.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import zstandard

from ..checksum import crc32
from ..errors import CorruptDataError
from .segment import Segment

RUN_BYTES = 4 * 1024 * 1024          # a run's blocks, decompressed
CACHE_BYTES = 64 * 1024 * 1024       # decompressed runs kept in memory
MAX_BLOCK_BYTES = 1 << 28


@dataclass
class ZstdRun:
    """Consecutive zstd records of one segment, decompressed together when a block of theirs is needed."""
    segment: Segment
    frames: list[tuple[int, int]] = field(default_factory=list)   # (payload start, length) in the file
    size: int = 0                                                  # bytes once decompressed
    # (offset, length, CRC) of its blocks while they are unverified (listed by
    # an index file, segindex.py): checked when the run is first decompressed
    checks: list[tuple[int, int, int]] | None = None


class ZstdRuns:
    """All runs of a cache, by buffer key (negative ints; segments use positive ones)."""

    def __init__(self, next_key: int = -1):
        self.runs: dict[int, ZstdRun] = {}
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cached_bytes = 0
        self._next_key = next_key     # never reused, even by a new ZstdRuns of the same cache
        self._dctx = zstandard.ZstdDecompressor()

    def decompress(self, payload, limit: int = MAX_BLOCK_BYTES) -> bytes:
        """A frame's bytes, at most ``limit`` of them.  A frame that declares
        its size is decompressed into a buffer of that size whatever
        max_output_size says, so the declared size is checked first: a bit
        flip there would otherwise ask for up to 2^64 bytes (a MemoryError,
        not the CorruptDataError it is)."""
        frame = bytes(payload)
        try:
            declared = zstandard.frame_content_size(frame)      # -1: not declared
            if declared > limit:
                raise CorruptDataError(f"zstd frame declares {declared} bytes, more than the "
                                       f"{limit} it can hold")
            return self._dctx.decompress(frame, max_output_size=limit)
        except zstandard.ZstdError as exc:
            raise CorruptDataError(f"zstd frame does not decompress ({exc})") from None

    def new_run(self, segment: Segment) -> int:
        key = self._next_key
        self._next_key -= 1
        self.runs[key] = ZstdRun(segment)
        return key

    def buffer(self, key: int) -> np.ndarray:
        """The run's blocks, decompressed (from the LRU cache if it is there)."""
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        run = self.runs[key]
        mapped = run.segment.buffer()
        pieces, left = [], run.size
        for start, length in run.frames:      # no frame may hold more than the run has left
            pieces.append(self.decompress(mapped[start:start + length], left))
            left -= len(pieces[-1])
        data = b"".join(pieces)
        if len(data) != run.size:
            raise CorruptDataError(f"segment {run.segment.path.name} changed on disk after it was "
                                   f"verified")
        if run.checks is not None:
            if not all(crc32(data[start:start + length - 4]) == crc == int.from_bytes(
                    data[start + length - 4:start + length], "little") for start, length, crc in run.checks):
                raise CorruptDataError(f"segment {run.segment.path.name}: a zstd block does not match "
                                       f"its checksum")
            run.checks = None
        array = np.frombuffer(data, np.uint8)
        self.remember(key, array)
        return array

    def remember(self, key: int, array: np.ndarray) -> None:
        self.cache[key] = array
        self.cached_bytes += array.nbytes
        while self.cached_bytes > CACHE_BYTES and len(self.cache) > 1:
            _, old = self.cache.popitem(last=False)
            self.cached_bytes -= old.nbytes

    def drop(self, key: int) -> None:
        self.runs.pop(key, None)
        old = self.cache.pop(key, None)
        if old is not None:
            self.cached_bytes -= old.nbytes


class RunBuilder:
    """Groups the zstd blocks of one segment, as they are verified, into runs."""

    def __init__(self, runs: ZstdRuns, segment: Segment):
        self.runs, self.segment = runs, segment
        self.key: int | None = None
        self.pieces: list[bytes] = []

    def add(self, payload_start: int, payload_len: int, block: bytes) -> tuple[int, int]:
        """Register a block (its record payload's place, its bytes); (buffer key, offset)."""
        run = self.runs.runs.get(self.key) if self.key is not None else None
        if run is None or (run.size and run.size + len(block) > RUN_BYTES):
            self.finish()
            self.key = self.runs.new_run(self.segment)
            run = self.runs.runs[self.key]
        offset = run.size
        run.frames.append((payload_start, payload_len))
        run.size += len(block)
        self.pieces.append(block)
        return self.key, offset

    def finish(self) -> None:
        """Close the current run; its bytes, at hand anyway, go to the LRU cache."""
        if self.key is not None and self.pieces and self.key in self.runs.runs:
            self.runs.remember(self.key, np.frombuffer(b"".join(self.pieces), np.uint8))
        self.key, self.pieces = None, []
