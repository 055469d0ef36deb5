"""CRC-32, the checksum of every sensorq file format (the zlib polynomial:
blocks, records, segment indexes, the manifest, model files and device
images; docs/format.md).

Computed by ISA-L (the ``isal`` package) where it is installed, else by
zlib: the same function, bit for bit.  ISA-L folds with carry-less
multiplies and is 10–15 times faster on the machine these numbers come
from (56 against 4.2 GB/s on 8 MB; 79 against 266 ns a 600-byte section).
That is most of a query's first read of its blocks, whose checksums are
checked then (store/scan.py): the first ask of ``count where z > 2g`` on the
20 M-sample benchmark cache checks 621 blocks' sections, about 4 ms of
zlib's 6.6 ms in all.
"""
from __future__ import annotations

try:
    from isal.isal_zlib import crc32
except ImportError:          # a platform without ISA-L's wheels: zlib's own
    from zlib import crc32

__all__ = ["crc32"]
