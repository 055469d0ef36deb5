"""Block format version 2 (docs/format.md §1–§2): the compact header and
channel directory, written and read as the same in-memory structures as
version 1 (BlockInfo, ENTRY_DTYPE entries), so that everything after
parse_block is the same for both.

Version 2 stores what version 1 stores, in LEB128 varints and relative to
what the block already holds: an integer channel's minimum is its section's
base, the maximum, first and last are offsets from it, and the sums are
taken around the middle of the range, m = min + (max − min) >> 1, so that
they are small numbers: S1 = Σ(x − m) and S2 = Σ(x − m)², both mod 2^64
(hence sum = S1 + n·m and sumsq = S2 + 2m·S1 + n·m², exactly as version 1
keeps them, modulo 2^64 when flagged inexact).
"""
from __future__ import annotations

import numpy as np

from ..errors import CorruptDataError
from ..schema import DTYPE_BY_CODE
from .codes import DECIMAL, FLOATBITS, SHORT

VERSION = 2
MASK = (1 << 64) - 1
KIND_SUM_INEXACT, KIND_SUMSQ_INEXACT, KIND_COUNT = 0x08, 0x10, 0x20
FLOAT_CODES = (5, 6)
_CODEC_ALLOWED = 0x7F


def varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def zigzag(v: int) -> int:
    """Of an int64 (or a word read as one)."""
    v = _signed(v)
    return ((v << 1) ^ (v >> 63)) & MASK


def unzigzag(z: int) -> int:
    return ((z >> 1) ^ -(z & 1)) & MASK


def _signed(v: int) -> int:
    v &= MASK
    return v - (1 << 64) if v >> 63 else v


# --- writing -----------------------------------------------------------------------

def encode_header(n: int, n_channels: int, block_len: int, time_codec: int, t_first: int, t_last: int,
                  tick: int, stream_id: int, seq: int, time_len: int) -> bytes:
    return b"".join([b"SQB1", bytes([VERSION]), varint(block_len), bytes([n_channels, time_codec]),
                     varint(n), int(t_first).to_bytes(8, "little", signed=True),
                     varint((t_last - t_first) & MASK), varint(tick), varint(stream_id), varint(seq),
                     varint(time_len)])


def encode_entry(e, n: int) -> bytes:
    """One directory entry from a version-1 style ENTRY_DTYPE record."""
    dtype, codec = int(e["dtype"]), int(e["codec"])
    flags, count = int(e["flags"]), int(e["count"])
    kind = dtype | (KIND_SUM_INEXACT if flags & 1 else 0) | (KIND_SUMSQ_INEXACT if flags & 2 else 0)
    if count != n:
        kind |= KIND_COUNT
    parts = [bytes([kind, codec])]
    if codec & DECIMAL:
        parts.append(bytes([int(e["dexp"])]))
    parts.append(varint(int(e["data_len"])))
    if count != n:
        parts.append(varint(count))
    if dtype in FLOAT_CODES:
        parts += [varint(int(e["idx_min"])), varint(int(e["idx_max"]))]
        parts += [int(e[f]).to_bytes(8, "little", signed=True)
                  for f in ("min", "max", "first", "last", "sum", "sumsq")]
        return b"".join(parts)
    lo, hi = int(e["min"]), int(e["max"])
    m = (lo + ((hi - lo) >> 1)) & MASK
    s1 = (int(e["sum"]) - n * m) & MASK
    s2 = (int(e["sumsq"]) - 2 * m * int(e["sum"]) + n * m * m) & MASK
    parts += [varint((hi - lo) & MASK), varint((int(e["first"]) - lo) & MASK),
              varint((int(e["last"]) - lo) & MASK), varint(int(e["idx_min"])),
              varint(int(e["idx_max"])), varint(zigzag(s1)), varint(s2)]
    return b"".join(parts)


# --- reading -----------------------------------------------------------------------

class _Reader:
    """Varints and bytes from a block body, every read bounds-checked."""

    def __init__(self, body, pos: int, fail):
        self.body, self.pos, self.fail = body, pos, fail

    def byte(self) -> int:
        if self.pos >= len(self.body):
            self.fail("header or directory runs past the block")
        self.pos += 1
        return self.body[self.pos - 1]

    def varint(self) -> int:
        value = 0
        for i in range(10):
            b = self.byte()
            if i == 9 and b > 1:
                self.fail("a varint of more than 64 bits")
            value |= (b & 0x7F) << (7 * i)
            if b < 0x80:
                return value
        self.fail("a varint of more than 64 bits")

    def fixed(self, size: int) -> int:
        if self.pos + size > len(self.body):
            self.fail("header or directory runs past the block")
        self.pos += size
        return int.from_bytes(bytes(self.body[self.pos - size:self.pos]), "little")


def parse_header(body, fail) -> tuple:
    """(block_len, n_channels, time_codec, n, t_first, t_last, tick, stream_id, seq,
    time_len, directory offset) of a version-2 block body (without its CRC)."""
    r = _Reader(body, 5, fail)
    block_len = r.varint()
    n_channels, time_codec = r.byte(), r.byte()
    n = r.varint()
    t_first = _signed(r.fixed(8))
    span = r.varint()
    tick, stream_id, seq, time_len = r.varint(), r.varint(), r.varint(), r.varint()
    if stream_id >> 32 or tick >> 63 or tick < 1:
        fail("stream id or tick out of range")
    t_last = _signed(t_first + span)
    if t_last < t_first:
        fail("time range out of range")
    return block_len, n_channels, time_codec, n, t_first, t_last, tick, stream_id, seq, time_len, r.pos


def parse_directory(body, pos: int, n_channels: int, n: int, time_len: int, entries, fail) -> int:
    """Fill ``entries`` (ENTRY_DTYPE) from the directory at pos; returns where
    the time section starts.  An integer channel's minimum is its section's
    base, read from the section."""
    r = _Reader(body, pos, fail)
    relative = []
    for i in range(n_channels):
        kind, codec = r.byte(), r.byte()
        dtype = kind & 7
        if dtype not in DTYPE_BY_CODE or kind & 0xC0 or codec & ~_CODEC_ALLOWED or not codec & SHORT:
            fail(f"channel {i}: bad storage type or codec byte")
        e = entries[i]
        e["dtype"], e["codec"] = dtype, codec
        e["flags"] = (1 if kind & KIND_SUM_INEXACT else 0) | (2 if kind & KIND_SUMSQ_INEXACT else 0)
        e["dexp"] = r.byte() if codec & DECIMAL else 0
        e["data_len"] = _u32(r.varint(), fail)
        e["count"] = _u32(r.varint(), fail) if kind & KIND_COUNT else n
        if dtype in FLOAT_CODES:
            e["idx_min"], e["idx_max"] = _u32(r.varint(), fail), _u32(r.varint(), fail)
            for f in ("min", "max", "first", "last", "sum", "sumsq"):
                e[f] = _signed(r.fixed(8))
            continue
        if kind & KIND_COUNT:
            fail(f"channel {i}: an integer channel counts every sample")
        span, first, last = r.varint(), r.varint(), r.varint()
        e["idx_min"], e["idx_max"] = _u32(r.varint(), fail), _u32(r.varint(), fail)
        relative.append((i, span, first, last, unzigzag(r.varint()), r.varint()))
    start = r.pos
    ends = (start + time_len + np.cumsum(entries["data_len"].astype(np.int64))).tolist()
    for i, span, first, last, s1, s2 in relative:
        section = ends[i - 1] if i else start + time_len
        lo = _signed(unzigzag(_Reader(body[:min(ends[i], len(body))], section, fail).varint()))
        m = (lo + (span >> 1)) & MASK
        e = entries[i]
        e["min"], e["max"] = lo, _signed(lo + span)
        e["first"], e["last"] = _signed(lo + first), _signed(lo + last)
        e["sum"] = _signed(s1 + n * m)
        e["sumsq"] = _signed(s2 + 2 * m * s1 + n * m * m)
    return start


def _u32(v: int, fail) -> int:
    if v >> 32:
        fail("a count or length out of range")
    return v


def check_codec(codec: int, dtype: int, fail, what: str) -> None:
    is_float = dtype in FLOAT_CODES
    mode = codec & (DECIMAL | FLOATBITS)
    if (codec & 3) == 3 or (is_float and mode not in (DECIMAL, FLOATBITS)) or (not is_float and mode):
        fail(f"{what}: codec byte {codec:#x} does not fit storage type {DTYPE_BY_CODE.get(dtype)}")


__all__ = ["VERSION", "encode_header", "encode_entry", "parse_header", "parse_directory",
           "CorruptDataError"]
