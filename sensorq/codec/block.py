"""Blocks (docs/format.md §1–§2): encode, verify and decode.

``encode_block`` is the write path of the cache (and, with ``codec="fast"``,
produces the same bytes as the device port's encoder).  ``parse_block``
checks a block completely — magic, version, lengths, codes, CRC — before
anything decodes it; the query kernels only ever see blocks that passed it.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import CorruptDataError, FormatVersionError
from ..schema import DTYPE_BY_CODE, DTYPE_CODES, MAX_BLOCK_SAMPLES
from .intcodec import (DECIMAL, FLOATBITS, OK, decode_column, encode_column,
                       max_section_bytes)
from .transforms import (float_stats, float_values, float_words, int_stats, time_values,
                         time_words)

MAGIC = b"SQB1"
FORMAT_VERSION = 1
HEADER_SIZE = 56
ENTRY_SIZE = 80
CRC_SIZE = 4
MAX_CHANNELS = 255

HEADER_DTYPE = np.dtype([
    ("magic", "S4"), ("version", "u1"), ("time_codec", "u1"), ("n_channels", "<u2"),
    ("n_samples", "<u4"), ("block_len", "<u4"), ("t_first", "<i8"), ("t_last", "<i8"),
    ("tick", "<i8"), ("stream_id", "<u4"), ("time_len", "<u4"), ("seq", "<u8")])

# min..sumsq hold int64 bit patterns; float channels view them as float64.
ENTRY_DTYPE = np.dtype([
    ("dtype", "u1"), ("codec", "u1"), ("dexp", "u1"), ("reserved", "u1"),
    ("data_len", "<u4"), ("count", "<u4"), ("flags", "<u4"), ("idx_min", "<u4"),
    ("idx_max", "<u4"), ("min", "<i8"), ("max", "<i8"), ("first", "<i8"), ("last", "<i8"),
    ("sum", "<i8"), ("sumsq", "<i8"), ("reserved2", "<i8")])
assert HEADER_DTYPE.itemsize == HEADER_SIZE and ENTRY_DTYPE.itemsize == ENTRY_SIZE

_FLOAT_CODES = (DTYPE_CODES["float32"], DTYPE_CODES["float64"])
_CODEC_ALLOWED = 0x3F


@dataclass(frozen=True)
class BlockInfo:
    """What a verified block's header and directory say."""
    n_samples: int
    n_channels: int
    t_first: int
    t_last: int
    tick: int
    stream_id: int
    seq: int
    block_len: int
    time_codec: int
    time_len: int
    entries: np.ndarray      # ENTRY_DTYPE, one per channel

    def section_offsets(self) -> np.ndarray:
        """Offset (from the block start) of the time section, then of each channel's."""
        start = HEADER_SIZE + ENTRY_SIZE * self.n_channels
        lengths = np.concatenate([[self.time_len], self.entries["data_len"].astype(np.int64)])
        return start + np.concatenate([[0], np.cumsum(lengths)[:-1]])


# --- encoding ------------------------------------------------------------------

def encode_block(t: np.ndarray, columns: Sequence[np.ndarray], *, stream_id: int = 0,
                 seq: int = 0, codec: str = "compact") -> bytes:
    """One block of len(t) samples.  ``t`` is non-decreasing int64 ns; every
    column is in its channel's storage dtype.  ``codec`` is "compact" (the
    analysis pass picks dictionary and Rice where they pay) or "fast"."""
    t = np.ascontiguousarray(t, dtype=np.int64)
    n = t.shape[0]
    if not 1 <= n <= MAX_BLOCK_SAMPLES:
        raise ValueError(f"a block holds 1..{MAX_BLOCK_SAMPLES} samples, got {n}")
    if not 1 <= len(columns) <= MAX_CHANNELS:
        raise ValueError(f"a block holds 1..{MAX_CHANNELS} channels, got {len(columns)}")
    compact = codec == "compact"
    tick, words = time_words(t)
    time_section, time_codec = _encode_words(words, False, compact)
    entries = np.zeros(len(columns), ENTRY_DTYPE)
    sections = [time_section]
    for i, column in enumerate(columns):
        section, entries[i] = _encode_channel(np.ascontiguousarray(column), n, compact)
        sections.append(section)
    header = np.zeros(1, HEADER_DTYPE)
    header[0] = (MAGIC, FORMAT_VERSION, time_codec, len(columns), n, 0, t[0], t[-1], tick,
                 stream_id, len(time_section), seq)
    block_len = HEADER_SIZE + ENTRY_SIZE * len(columns) + sum(map(len, sections)) + CRC_SIZE
    header["block_len"] = block_len
    body = b"".join([header.tobytes(), entries.tobytes(), *sections])
    return body + zlib.crc32(body).to_bytes(4, "little")


def _encode_words(words: np.ndarray, signed: bool, compact: bool) -> tuple[bytes, int]:
    out = np.zeros(max_section_bytes(words.shape[0]), np.uint8)
    end, codec_bits = encode_column(words, signed, compact, compact, out, 0)
    return out[:end].tobytes(), int(codec_bits)


def _encode_channel(column: np.ndarray, n: int, compact: bool):
    if column.shape != (n,):
        raise ValueError(f"every column must have {n} values, got shape {column.shape}")
    dtype_code = DTYPE_CODES.get(column.dtype.name)
    if dtype_code is None:
        raise ValueError(f"storage type {column.dtype} is not one of {', '.join(DTYPE_CODES)}")
    entry = np.zeros((), ENTRY_DTYPE)
    entry["dtype"] = dtype_code
    if dtype_code in _FLOAT_CODES:
        mode, exponent, words = float_words(column)
        stats = float_stats(column)
        entry["dexp"] = exponent
        stat_values = np.array(stats[4:], np.float64).view(np.int64)
    else:
        values = column.astype(np.int64)
        mode, words = 0, values.view(np.uint64)
        stats = int_stats(values)
        stat_values = np.array(stats[4:], np.int64)
    section, codec_bits = _encode_words(words, mode != FLOATBITS, compact)
    entry["codec"] = codec_bits | mode
    entry["data_len"] = len(section)
    entry["count"], entry["flags"], entry["idx_min"], entry["idx_max"] = stats[:4]
    for name, value in zip(("min", "max", "first", "last", "sum", "sumsq"), stat_values):
        entry[name] = value
    return section, entry


# --- verification --------------------------------------------------------------

_HEADER = struct.Struct("<4sBBHIIqqqIIQ")   # HEADER_DTYPE, for one fast unpack
assert _HEADER.size == HEADER_SIZE


def parse_block(buf, offset: int = 0, length: int | None = None) -> BlockInfo:
    """Verify the block at buf[offset:offset+length] and return its header.

    Raises CorruptDataError (or FormatVersionError) naming what is wrong; a
    block that passes is safe to hand to the decoders."""
    view = memoryview(buf).cast("B")[offset:] if length is None else \
        memoryview(buf).cast("B")[offset:offset + length]
    if len(view) < HEADER_SIZE + CRC_SIZE:
        raise CorruptDataError(f"block at offset {offset}: {len(view)} bytes is shorter than a header")
    header = _HEADER.unpack_from(view)
    magic, version, block_len = header[0], header[1], header[5]
    if magic != MAGIC:
        raise CorruptDataError(f"block at offset {offset}: bad magic {magic!r}")
    if version != FORMAT_VERSION:
        raise FormatVersionError(f"block at offset {offset}: format version {version}, "
                                 f"this sensorq reads version {FORMAT_VERSION}")
    if block_len > len(view) or (length is not None and block_len != length):
        raise CorruptDataError(f"block at offset {offset}: says {block_len} bytes, "
                               f"{len(view)} are there")
    body = view[:block_len - CRC_SIZE]
    stored_crc = int.from_bytes(view[block_len - CRC_SIZE:block_len], "little")
    if zlib.crc32(body) != stored_crc:
        raise CorruptDataError(f"block at offset {offset}: checksum mismatch")
    return _check_structure(header, body, offset)


def _check_structure(header, body, offset: int) -> BlockInfo:
    def fail(what: str):
        raise CorruptDataError(f"block at offset {offset}: {what}")

    (_, _, time_codec, n_channels, n, _, t_first, t_last, tick, stream_id, time_len, seq) = header
    if not 1 <= n <= MAX_BLOCK_SAMPLES:
        fail(f"sample count {n} out of range")
    if not 1 <= n_channels <= MAX_CHANNELS:
        fail(f"channel count {n_channels} out of range")
    dir_end = HEADER_SIZE + ENTRY_SIZE * n_channels
    if dir_end > len(body):
        fail("channel directory runs past the block")
    entries = np.frombuffer(body, ENTRY_DTYPE, count=n_channels, offset=HEADER_SIZE).copy()
    total = dir_end + time_len + int(entries["data_len"].sum(dtype=np.int64))
    if total != len(body):
        fail(f"sections add up to {total + CRC_SIZE} bytes, the block has {len(body) + CRC_SIZE}")
    if tick < 1 or t_last < t_first:
        fail("time range or tick out of range")
    if time_codec & ~_CODEC_ALLOWED or time_codec & (DECIMAL | FLOATBITS) or (time_codec & 3) == 3:
        fail(f"bad time codec byte {time_codec:#x}")
    _check_entries(entries, n, fail)
    return BlockInfo(n, n_channels, t_first, t_last, tick, stream_id, seq, len(body) + CRC_SIZE,
                     time_codec, time_len, entries)


def _check_entries(entries: np.ndarray, n: int, fail) -> None:
    """Every directory entry (as plain Python tuples: numpy scalars are slow)."""
    for i, (dtype_code, codec, dexp, _, _, count, _, idx_min, idx_max, *_) in enumerate(entries.tolist()):
        if dtype_code not in DTYPE_BY_CODE:
            fail(f"channel {i}: unknown storage type code {dtype_code}")
        if codec & ~_CODEC_ALLOWED or (codec & 3) == 3:
            fail(f"channel {i}: bad codec byte {codec:#x}")
        is_float = dtype_code in _FLOAT_CODES
        mode = codec & (DECIMAL | FLOATBITS)
        if is_float and mode not in (DECIMAL, FLOATBITS) or not is_float and mode:
            fail(f"channel {i}: codec byte {codec:#x} does not fit storage type "
                 f"{DTYPE_BY_CODE[dtype_code]}")
        if dexp > 18 or count > n or idx_min >= n or idx_max >= n:
            fail(f"channel {i}: statistics out of range")


# --- decoding ------------------------------------------------------------------

def decode_block(buf, offset: int = 0, length: int | None = None):
    """Verify, then decode a block: (t int64, [columns in their storage dtypes])."""
    info = parse_block(buf, offset, length)
    raw = np.frombuffer(buf, np.uint8, count=info.block_len, offset=offset)
    return decode_verified(raw, info)


def decode_verified(raw: np.ndarray, info: BlockInfo):
    """Decode a block that :func:`parse_block` accepted (raw = its bytes)."""
    n = info.n_samples
    starts = info.section_offsets()
    words = np.empty(n, np.uint64)
    scratch = np.empty(n, np.uint64)
    _decode_section(raw, starts[0], info.time_len, n, info.time_codec, words, scratch, "time")
    t = np.empty(n, np.int64)
    time_values(words, n, info.t_first, info.tick, t)
    columns = []
    for i, e in enumerate(info.entries):
        _decode_section(raw, starts[i + 1], int(e["data_len"]), n, int(e["codec"]), words, scratch,
                        f"channel {i}")
        columns.append(_words_to_values(words, n, e))
    return t, columns


def _decode_section(raw, start, length, n, codec, words, scratch, what):
    status = decode_column(raw, int(start), int(start + length), n, codec, words, scratch)
    if status != OK:
        raise CorruptDataError(f"block: {what} column does not decode (status {status})")


def _words_to_values(words: np.ndarray, n: int, entry) -> np.ndarray:
    dtype = np.dtype(DTYPE_BY_CODE[int(entry["dtype"])])
    if dtype.kind == "i":
        values = words[:n].view(np.int64)
        info = np.iinfo(dtype)
        if n and (values.min() < info.min or values.max() > info.max):
            raise CorruptDataError(f"block: a value does not fit the column's storage type {dtype}")
        return values.astype(dtype)
    codec = int(entry["codec"])
    if codec & FLOATBITS:
        return _floatbits_to_values(words[:n], dtype)
    values = np.empty(n, np.float64)
    float_values(words, n, DECIMAL, int(entry["dexp"]), dtype == np.float32, values)
    return values.astype(dtype)


def _floatbits_to_values(words: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of the order-preserving map, straight to the IEEE bits (so NaN
    payloads survive, which a detour through float64 would not promise)."""
    bits = 8 * dtype.itemsize
    sign = np.uint64(1) << np.uint64(bits - 1)
    ones = np.uint64((1 << bits) - 1)
    raw = np.where(words & sign, words ^ sign, words ^ ones) & ones
    return raw.astype(np.uint32 if bits == 32 else np.uint64).view(dtype)
