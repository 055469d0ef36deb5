"""CRC-32, the checksum of every sensorq file format (the zlib polynomial:
blocks, records, segment indexes, the manifest, model files and device
images; docs/format.md).

Computed by ISA-L (the ``isal`` package) where it is installed, else by
zlib: the same function, bit for bit.  ISA-L folds with carry-less
multiplies; measured on the development machine: 56 against 4.2 GB/s on
8 MB, 79 against 266 ns on 600 bytes, 1.2 against 6 µs on a 12 KB block
read from a mapped segment.  A query checks its blocks when it first reads
them (store/scan.py): the first ask of ``count where z > 2g`` on the 20
M-sample benchmark cache (621 blocks) went from 7.5–8.3 to 5.9–6.4 ms, the
rest of it mostly the faults that map the segment's pages in (an
madvise(MADV_POPULATE_READ) per run of nearby blocks was tried and taken
out: at ~7 µs a call it cost more than the faults it saved, first asks
0.3-4 ms slower on a later machine, Linux 6.18); ingest, which
checksums every block it writes, from 53 to 61 M rows/s.
"""
from __future__ import annotations

try:
    from isal.isal_zlib import crc32
except ImportError:          # a platform without ISA-L's wheels: zlib's own
    from zlib import crc32

__all__ = ["crc32", "crc32_spans"]


def crc32_spans(buf, starts, ends):
    """The CRC-32 of each buf[start:end] (int sequences or arrays of them), as
    a uint32 array: memoryview slices mapped through crc32, ~0.9 µs a ~11 KB
    block where a loop over numpy slices comparing each cost ~1.2 (the lazy
    checks of a first count over 24,000 blocks: ~8 ms less)."""
    import numpy as np      # (here: the module itself needs no numpy for crc32)
    view = memoryview(buf)
    starts, ends = np.asarray(starts).tolist(), np.asarray(ends).tolist()
    return np.fromiter(map(crc32, [view[a:b] for a, b in zip(starts, ends)]), np.uint32, len(starts))
