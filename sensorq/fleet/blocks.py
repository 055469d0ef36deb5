"""Sealed blocks as sync moves them: a device's version-2 block reframed as
version 1, and the identity of a block wherever it is stored.

**Reframing** (docs/format.md §1.1, §3.1).  A version-2 block holds what a
version-1 block holds, in a compact header and directory and with *short*
sections: a section's base is a zigzag varint instead of 8 bytes, a
dictionary's size a varint instead of a u32, and its codec byte has SHORT
set.  Everything after them - dictionary gaps, mini-block headers, bit
streams - is the same bytes.  So ``to_version1`` rewrites the header, the
directory (the statistics ``parse_block`` derived) and those two fields of
each section, copies the rest, and computes the new CRC: no sample is decoded
or re-encoded, and the result passes ``parse_block`` like any block the host
writes.  (The host's engine reads version 1 only: engine/layout.py.)

**Identity.**  Sync gives a copied block the destination's stream id and,
when it must, another sequence number (store/importing.py), so a block is
"the same" in two caches when every byte but those two fields and the CRC
is.  ``block_key`` is that: what sync compares to find where a destination
stands in its source.
"""
from __future__ import annotations


import numpy as np

from ..checksum import crc32
from ..codec.codes import DICT, SHORT
from ..codec.header import (
    ALL_VERSIONS,
    CRC_SIZE,
    ENTRY_DTYPE,
    FORMAT_VERSION,
    HEADER_DTYPE,
    MAGIC,
    parse_block,
)
from ..errors import CorruptDataError

STREAM_ID_AT, SEQ_AT, HEADER_END = 40, 48, 56


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if b < 0x80:
            return value, pos
        shift += 7


def _widen_section(section: bytes, codec: int) -> bytes:
    """A short section as a version-1 one: base as 8 bytes, dictionary size as a u32."""
    zz, pos = _varint(section, 0)
    base = ((zz >> 1) ^ -(zz & 1)) & 0xFFFFFFFFFFFFFFFF
    out = [base.to_bytes(8, "little")]
    if codec & DICT:
        size, pos = _varint(section, pos)
        out.append(size.to_bytes(4, "little"))
    out.append(section[pos:])
    return b"".join(out)


def to_version1(block: bytes) -> bytes:
    """A verified version-1 block holding exactly what the version-2 ``block``
    holds (CorruptDataError if ``block`` fails verification)."""
    info = parse_block(block, versions=ALL_VERSIONS)
    data = bytes(block[:info.block_len])
    if data[4] == FORMAT_VERSION:
        return data
    offsets = info.section_offsets()
    lengths = [info.time_len] + [int(x) for x in info.entries["data_len"]]
    codecs = [info.time_codec] + [int(x) for x in info.entries["codec"]]
    sections = [_widen_section(data[o:o + n], c) for o, n, c in zip(offsets, lengths, codecs)]
    entries = np.array(info.entries, ENTRY_DTYPE, copy=True)
    entries["codec"] &= np.uint8(0xFF ^ SHORT)
    entries["data_len"] = [len(s) for s in sections[1:]]
    entries["reserved"], entries["reserved2"] = 0, 0
    header = np.zeros(1, HEADER_DTYPE)
    block_len = HEADER_END + entries.nbytes + sum(map(len, sections)) + CRC_SIZE
    header[0] = (MAGIC, FORMAT_VERSION, info.time_codec & (0xFF ^ SHORT), info.n_channels,
                 info.n_samples,
                 block_len, info.t_first, info.t_last, info.tick, info.stream_id, len(sections[0]),
                 info.seq)
    body = header.tobytes() + entries.tobytes() + b"".join(sections)
    out = body + crc32(body).to_bytes(4, "little")
    parse_block(out)          # the engine's own check, before anything stores it
    return out


def block_key(block) -> bytes:
    """The bytes that make a (version-1) block what it is: all but its stream
    id, sequence number and CRC."""
    data = bytes(block)
    if len(data) < HEADER_END + CRC_SIZE:
        raise CorruptDataError("a block shorter than its header")
    return data[:STREAM_ID_AT] + data[STREAM_ID_AT + 4:SEQ_AT] + data[HEADER_END:-CRC_SIZE]


__all__ = ["to_version1", "block_key"]
