"""Read-only maps of segment files that grow without being made again.

A reader maps a segment's served prefix (segment.Segment.buffer).  The newest
segment grows while a writer appends, and a reader's refresh served more of
it; a new map of the whole prefix then started with no page of it in the
process's page tables, and the next query that read the segment took a page
fault for every 64 KiB of it: ~4.5 ms for a 55 MB segment on the development
machine, as much as the count over all 100 M samples of a cache that a live
dashboard asks after each sealed block (benchmarks/RESULTS.md, twenty-second
session).  So a map is made with room beyond the prefix (RESERVE), past the
file's end, and a longer prefix is a longer view of the same map, whose
pages stay mapped: only the new bytes fault in.  Bytes past the served prefix
are never in a view, and nothing reads past a view (a page past the file's
end would raise SIGBUS, as one past a map's end would fault today).

Python's mmap will not map past a file's end, so the map is made with the C
library's mmap through ctypes (POSIX); where that is missing, or fails, the
caller maps the prefix with Python's mmap as before (``map_file`` returns
None).
"""
from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np

PAGE = mmap.PAGESIZE
# Room a map has past the prefix it was made for: a quarter more, at least
# 8 MiB (a segment of 64 MiB grows from nothing in about ten maps).
RESERVE_FRACTION = 4
RESERVE_MIN = 8 << 20


def reserve_for(length: int) -> int:
    """The bytes a map made for ``length`` bytes covers (whole pages)."""
    wanted = length + max(length // RESERVE_FRACTION, RESERVE_MIN)
    return (wanted + PAGE - 1) // PAGE * PAGE


class FileMap:
    """``size`` bytes of a file mapped read-only and shared from offset 0,
    unmapped when the map and every view of it are gone."""

    def __init__(self, address: int, size: int):
        self.address, self.size = address, size

    def view(self, length: int) -> np.ndarray:
        """The first ``length`` (≤ size) bytes as a read-only uint8 array
        that keeps the map alive."""
        if not 0 < length <= self.size:
            raise ValueError(f"a view of {length} bytes of a {self.size}-byte map")
        memory = (ctypes.c_uint8 * length).from_address(self.address)
        memory._map = self              # the map lives as long as the memory does
        array = np.frombuffer(memory, np.uint8)
        array.flags.writeable = False
        return array

    def __del__(self):
        if _LIBC is not None and self.address:
            _LIBC.munmap(ctypes.c_void_p(self.address), ctypes.c_size_t(self.size))
            self.address = 0


def map_file(fd: int, length: int) -> FileMap | None:
    """A FileMap of the file ``fd`` with room for ``length`` bytes and more
    (reserve_for), or None where the C library's mmap is not at hand or
    fails (the caller then maps with Python's mmap)."""
    if _LIBC is None or length <= 0:
        return None
    size = reserve_for(length)
    address = _LIBC.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if address is None or address == _MAP_FAILED:
        return None
    return FileMap(address, size)


def _load_libc():
    if os.name != "posix" or not hasattr(mmap, "MAP_SHARED"):
        return None
    try:
        # the process's own symbols, libc's among them (ctypes.util.find_library
        # would cost ~5 ms of start-up: it imports subprocess)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long)     # (off_t: a long)
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()
_MAP_FAILED = ctypes.c_void_p(-1).value
