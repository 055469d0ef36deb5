"""Blocks (docs/format.md §1–§2): encode and decode, with the compiled codec.

``encode_block`` is the write path of the cache (and, with ``codec="fast"``,
produces the same bytes as the device port's encoder).  Decoding starts with
``parse_block`` (header.py), so the decoders only ever see verified blocks.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..checksum import crc32
from ..errors import CorruptDataError
from ..schema import DTYPE_BY_CODE, DTYPE_CODES, MAX_BLOCK_SAMPLES
from . import header2
from .exact import encode_section, max_short_section_bytes
from .header import (ALL_VERSIONS, CRC_SIZE, ENTRY_DTYPE, ENTRY_SIZE, FORMAT_VERSION,  # noqa: F401
                     HEADER_DTYPE, FLOAT_CODES, HEADER_SIZE, MAGIC, MAX_CHANNELS, BlockInfo,
                     parse_block)
from .alp import ALP, encode_float_section
from .npdecode import alp_values, floatbits_values
from . import intcodec
from .intcodec import DECIMAL, FLOATBITS, OK, decode_column, encode_column_priced, max_section_bytes
from . import timecol
from .transforms import (float_stats, float_values, float_words, int_stats, time_values,
                         time_words)

# --- encoding ------------------------------------------------------------------

def encode_block(t: np.ndarray, columns: Sequence[np.ndarray], *, stream_id: int = 0,
                 seq: int = 0, codec: str = "compact", version: int = 1) -> bytes:
    """One block of len(t) samples.  ``t`` is non-decreasing int64 ns; every
    column is in its channel's storage dtype.  ``codec`` is "compact" (the
    analysis pass picks dictionary and Rice where they pay) or "fast".
    ``version`` 2 writes the compact directory and short sections with the
    exactly specified encoders (exact.py), the device port's bytes."""
    if version == 2:
        return _encode_v2(t, columns, stream_id, seq, codec == "compact")
    if version != 1:
        raise ValueError(f"format version {version} is not 1 or 2")
    t = np.ascontiguousarray(t, dtype=np.int64)
    n = t.shape[0]
    if not 1 <= n <= MAX_BLOCK_SAMPLES:
        raise ValueError(f"a block holds 1..{MAX_BLOCK_SAMPLES} samples, got {n}")
    if not 1 <= len(columns) <= MAX_CHANNELS:
        raise ValueError(f"a block holds 1..{MAX_CHANNELS} channels, got {len(columns)}")
    _check_steps(t)
    compact = codec == "compact"
    tick, words = time_words(t)
    time_section, time_codec = _encode_time(words, compact)
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
    return body + crc32(body).to_bytes(4, "little")


_HALF_RANGE = np.uint64(1 << 63)


def _check_steps(t: np.ndarray) -> None:
    """Refuse a step of 2^63 ns or more between consecutive samples (an unset
    clock, INT64_MIN, followed by a real time): the tick, the gcd of the
    offsets, could then be ≥ 2^63 and the block unreadable (format.md §3).
    The device seals a block early instead (sq_ring_append)."""
    steps = np.diff(t.view(np.uint64))      # mod 2^64: a decreasing t is a huge step too
    if len(steps) and steps.max() >= _HALF_RANGE:
        at = int(np.argmax(steps >= _HALF_RANGE))
        raise ValueError(f"timestamps {int(t[at])} → {int(t[at + 1])}: a block cannot hold a step "
                         f"of 2^63 ns or more, or a decreasing time; split the block there")


def _encode_words(words: np.ndarray, signed: bool, compact: bool, floats: bool = False,
                  patches: bool = False) -> tuple[bytes, int]:
    out = np.zeros(max_section_bytes(words.shape[0]), np.uint8)
    # read here: a benchmark varies them
    rice_cost = (intcodec.FLOAT_RICE_DECODE_COST if floats else intcodec.RICE_DECODE_COST) if compact else -1.0
    end, codec_bits = encode_column_priced(words, signed, compact, rice_cost, out, 0, patches,
                                           intcodec.entropy_form(compact, floats),
                                           compact and not floats and intcodec.FRAMES_SECTIONS)
    return out[:end].tobytes(), int(codec_bits)


def _encode_time(words: np.ndarray, compact: bool) -> tuple[bytes, int]:
    out = np.zeros(timecol.time_section_bytes(words.shape[0]), np.uint8)
    rice_cost = intcodec.RICE_DECODE_COST if compact else -1.0     # read here, as _encode_words does
    end, codec_bits = timecol.encode_time(words, compact, rice_cost, out, 0,
                                          intcodec.entropy_form(compact, True), timecol.CLOCK_LINES)
    return out[:end].tobytes(), int(codec_bits)


def _encode_channel(column: np.ndarray, n: int, compact: bool, version: int = 1):
    if column.shape != (n,):
        raise ValueError(f"every column must have {n} values, got shape {column.shape}")
    dtype_code = DTYPE_CODES.get(column.dtype.name)
    if dtype_code is None:
        raise ValueError(f"storage type {column.dtype} is not one of {', '.join(DTYPE_CODES)}")
    entry = np.zeros((), ENTRY_DTYPE)
    entry["dtype"] = dtype_code
    if dtype_code in FLOAT_CODES:
        stats = float_stats(column)
        stat_values = np.array(stats[4:], np.float64).view(np.int64)
        if version == 1:        # ALP or its fallbacks (alp.py); version 2 as the device writes it
            section, entry["codec"], entry["dexp"] = encode_float_section(
                column, lambda words, signed, patches: _encode_words(words, signed, compact, True, patches))
            return section, _fill_entry(entry, section, stats, stat_values)
        mode, exponent, words = float_words(column)
        entry["dexp"] = exponent
    else:
        values = column.astype(np.int64)
        mode, words = 0, values.view(np.uint64)
        stats = int_stats(values)
        stat_values = np.array(stats[4:], np.int64)
    if version == 2:
        section, codec_bits = _short_section(words, mode != FLOATBITS, compact, compact)
    else:
        section, codec_bits = _encode_words(words, mode != FLOATBITS, compact)
    entry["codec"] = codec_bits | mode
    return section, _fill_entry(entry, section, stats, stat_values)


def _fill_entry(entry, section: bytes, stats, stat_values):
    entry["data_len"] = len(section)
    entry["count"], entry["flags"], entry["idx_min"], entry["idx_max"] = stats[:4]
    for name, value in zip(("min", "max", "first", "last", "sum", "sumsq"), stat_values):
        entry[name] = value
    return entry


# --- version 2 ------------------------------------------------------------------

def _encode_v2(t, columns, stream_id: int, seq: int, compact: bool) -> bytes:
    t = np.ascontiguousarray(t, dtype=np.int64)
    n = t.shape[0]
    if not 1 <= n <= MAX_BLOCK_SAMPLES or not 1 <= len(columns) <= MAX_CHANNELS:
        raise ValueError(f"a block holds 1..{MAX_BLOCK_SAMPLES} samples and 1..{MAX_CHANNELS} channels")
    _check_steps(t)
    tick, words = time_words(t)
    time_section, time_codec = _short_section(words, False, False, compact)
    entries = np.zeros(len(columns), ENTRY_DTYPE)
    sections = [time_section]
    for i, column in enumerate(columns):
        section, entries[i] = _encode_channel(np.ascontiguousarray(column), n, compact, version=2)
        sections.append(section)
    directory = b"".join(header2.encode_entry(e, n) for e in entries)
    rest = len(directory) + sum(map(len, sections)) + CRC_SIZE
    block_len = 0
    while True:      # the header holds its own length as a varint: settle it
        header = header2.encode_header(n, len(columns), block_len, time_codec, int(t[0]), int(t[-1]),
                                       int(tick), stream_id, seq, len(time_section))
        if len(header) + rest == block_len:
            break
        block_len = len(header) + rest
    body = b"".join([header, directory, *sections])
    return body + crc32(body).to_bytes(4, "little")


def _short_section(words: np.ndarray, signed: bool, allow_dict: bool, compact: bool) -> tuple[bytes, int]:
    out = np.zeros(max_short_section_bytes(words.shape[0]), np.uint8)
    end, codec_bits = encode_section(words, signed, allow_dict, compact, out, 0)
    return out[:end].tobytes(), int(codec_bits)


# --- decoding ------------------------------------------------------------------

def decode_block(buf, offset: int = 0, length: int | None = None):
    """Verify, then decode a block of either format version: (t int64,
    [columns in their storage dtypes])."""
    info = parse_block(buf, offset, length, versions=ALL_VERSIONS)
    raw = np.frombuffer(buf, np.uint8, count=info.block_len, offset=offset)
    return decode_verified(raw, info)


def decode_verified(raw: np.ndarray, info: BlockInfo):
    """Decode a block that :func:`parse_block` accepted (raw = its bytes)."""
    n = info.n_samples
    starts = info.section_offsets()
    words = np.empty(n, np.uint64)
    scratch = np.empty(n, np.uint64)
    status = timecol.decode_time_words(raw, int(starts[0]), int(starts[0] + info.time_len), n,
                                       info.time_codec, words, scratch)
    if status != OK:
        raise CorruptDataError(f"block: time column does not decode (status {status})")
    t = np.empty(n, np.int64)
    time_values(words, n, info.t_first, info.tick, t)
    columns = []
    for i, e in enumerate(info.entries):
        start, end, codec = int(starts[i + 1]), int(starts[i + 1] + e["data_len"]), int(e["codec"])
        if codec & ALP == ALP and int(e["dtype"]) in FLOAT_CODES:
            columns.append(_alp_column(raw, start, end, n, codec, e, words, scratch, i))
            continue
        _decode_section(raw, start, end - start, n, codec, words, scratch, f"channel {i}")
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
        return floatbits_values(words[:n], dtype)
    values = np.empty(n, np.float64)
    float_values(words, n, DECIMAL, int(entry["dexp"]), dtype == np.float32, values)
    return values.astype(dtype)


def _alp_column(raw, start, end, n, codec, entry, words, scratch, i):
    """An ALP section: exceptions read by the numpy decoder, mantissas by the compiled one."""
    dtype = np.dtype(DTYPE_BY_CODE[int(entry["dtype"])])

    def mantissas(begin):
        _decode_section(raw, begin, end - begin, n, codec, words, scratch, f"channel {i}")
        return words[:n].view(np.int64)

    status, values = alp_values(raw, start, end, n, codec, dtype, mantissas)
    if status != OK:
        raise CorruptDataError(f"block: channel {i} column does not decode (status {status})")
    return values

