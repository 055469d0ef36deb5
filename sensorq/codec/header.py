"""Block headers (docs/format.md §1–§2): the layout constants and the check
that every block passes before anything decodes it.

``parse_block`` checks a block completely — magic, version, lengths, codes,
CRC — and returns what its header and channel directory say.  It needs no
compiled code: opening and reading a cache never imports numba.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ..checksum import crc32, crc32_spans
from ..errors import CorruptDataError, FormatVersionError
from ..schema import DTYPE_BY_CODE, DTYPE_CODES, MAX_BLOCK_SAMPLES
from . import header2
from .codes import DECIMAL, ENTROPY, FLOATBITS, FRAMES, SHORT, SPLIT, ZERO_RESIDUALS

MAGIC = b"SQB1"
FORMAT_VERSION = 1
# Versions parse_block accepts unless told otherwise: the ones whose sections
# the engine can place.  engine/layout.py puts the time section at
# HEADER_SIZE + ENTRY_SIZE * n_channels, true of version 1 only; version 2
# (the compact directory, header2.py) is read by decode_block and by any
# caller that passes versions=ALL_VERSIONS.
ENGINE_VERSIONS = (1,)
ALL_VERSIONS = (1, 2)
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

FLOAT_CODES = (DTYPE_CODES["float32"], DTYPE_CODES["float64"])


# Version 1 codec bytes: any bits but SHORT (bit 6) without ENTROPY (bit 7),
# which is version 2's; both are SPLIT (codes.py).
def _short_alone(codec):
    """Whether codec (an int, or an array of them) has SHORT without ENTROPY."""
    return codec & SPLIT == SHORT


# Predictor field 3, FRAMES (codes.py): integer channels' mini-block payloads only
_NOT_FRAMES = ENTROPY | ZERO_RESIDUALS


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
    sections_start: int | None = None    # version 2: where the time section starts

    def section_offsets(self) -> np.ndarray:
        """Offset (from the block start) of the time section, then of each channel's."""
        start = self.sections_start
        if start is None:
            start = HEADER_SIZE + ENTRY_SIZE * self.n_channels
        lengths = np.concatenate([[self.time_len], self.entries["data_len"].astype(np.int64)])
        return start + np.concatenate([[0], np.cumsum(lengths)[:-1]])


# --- verification --------------------------------------------------------------

_HEADER = struct.Struct("<4sBBHIIqqqIIQ")   # HEADER_DTYPE, for one fast unpack
assert _HEADER.size == HEADER_SIZE


def parse_block(buf, offset: int = 0, length: int | None = None,
                versions: tuple = ENGINE_VERSIONS) -> BlockInfo:
    """Verify the block at buf[offset:offset+length] and return its header.

    Raises CorruptDataError (or FormatVersionError) naming what is wrong; a
    block that passes is safe to hand to the decoders.  ``versions``: the
    format versions accepted (ALL_VERSIONS for version 2 as well)."""
    view = memoryview(buf).cast("B")[offset:] if length is None else \
        memoryview(buf).cast("B")[offset:offset + length]
    if len(view) >= 5 and bytes(view[:4]) == MAGIC and view[4] == header2.VERSION:
        if header2.VERSION not in versions:
            raise FormatVersionError(f"block at offset {offset}: format version 2 (compact "
                                     f"directory), which the engine cannot place yet")
        return _parse_v2(view, offset, length)
    if len(view) < HEADER_SIZE + CRC_SIZE:
        raise CorruptDataError(f"block at offset {offset}: {len(view)} bytes is shorter than a header")
    header = _HEADER.unpack_from(view)
    magic, version, block_len = header[0], header[1], header[5]
    if magic != MAGIC:
        raise CorruptDataError(f"block at offset {offset}: bad magic {magic!r}")
    if version != FORMAT_VERSION:
        raise FormatVersionError(f"block at offset {offset}: format version {version}, "
                                 f"this sensorq reads versions {', '.join(map(str, versions))}")
    if block_len > len(view) or (length is not None and block_len != length):
        raise CorruptDataError(f"block at offset {offset}: says {block_len} bytes, "
                               f"{len(view)} are there")
    body = view[:block_len - CRC_SIZE]
    stored_crc = int.from_bytes(view[block_len - CRC_SIZE:block_len], "little")
    if crc32(body) != stored_crc:
        raise CorruptDataError(f"block at offset {offset}: checksum mismatch")
    return _check_structure(header, body, offset)


def _parse_v2(view, offset: int, length: int | None) -> BlockInfo:
    def fail(what: str):
        raise CorruptDataError(f"block at offset {offset}: {what}")

    block_len = header2._Reader(view, 5, fail).varint()
    if block_len > len(view) or (length is not None and block_len != length) or block_len < 16:
        fail(f"says {block_len} bytes, {len(view)} are there")
    body = view[:block_len - CRC_SIZE]
    if crc32(body) != int.from_bytes(view[block_len - CRC_SIZE:block_len], "little"):
        fail("checksum mismatch")
    (_, n_channels, time_codec, n, t_first, t_last, tick, stream_id, seq, time_len,
     pos) = header2.parse_header(body, fail)
    if not 1 <= n <= MAX_BLOCK_SAMPLES or not 1 <= n_channels <= MAX_CHANNELS:
        fail("sample or channel count out of range")
    if time_codec & ~0x7F or not time_codec & header2.SHORT or time_codec & (DECIMAL | FLOATBITS) \
            or (time_codec & 3) == 3:
        fail(f"bad time codec byte {time_codec:#x}")
    entries = np.zeros(n_channels, ENTRY_DTYPE)
    start = header2.parse_directory(body, pos, n_channels, n, time_len, entries, fail)
    for i, e in enumerate(entries.tolist()):
        header2.check_codec(e[1], e[0], fail, f"channel {i}")
        if e[2] > 18 or e[5] > n or e[7] >= n or e[8] >= n:
            fail(f"channel {i}: statistics out of range")
    total = start + time_len + int(entries["data_len"].sum(dtype=np.int64))
    if total != len(body):
        fail(f"sections add up to {total + CRC_SIZE} bytes, the block has {len(body) + CRC_SIZE}")
    return BlockInfo(n, n_channels, t_first, t_last, tick, stream_id, seq, block_len, time_codec,
                     time_len, entries, start)


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
    if _short_alone(time_codec) or time_codec & DECIMAL or (time_codec & 3) == 3:   # bit 4: CLOCK
        fail(f"bad time codec byte {time_codec:#x}")
    _check_entries(entries, n, fail)
    return BlockInfo(n, n_channels, t_first, t_last, tick, stream_id, seq, len(body) + CRC_SIZE,
                     time_codec, time_len, entries)


def _check_entries(entries: np.ndarray, n: int, fail) -> None:
    """Every directory entry (as plain Python tuples: numpy scalars are slow)."""
    for i, (dtype_code, codec, dexp, _, _, count, _, idx_min, idx_max, *_) in enumerate(entries.tolist()):
        if dtype_code not in DTYPE_BY_CODE:
            fail(f"channel {i}: unknown storage type code {dtype_code}")
        is_float = dtype_code in FLOAT_CODES
        if _short_alone(codec) or (codec & 3) == FRAMES and (is_float or codec & _NOT_FRAMES):
            fail(f"channel {i}: bad codec byte {codec:#x}")
        mode = codec & (DECIMAL | FLOATBITS)
        if is_float and mode == 0 or not is_float and mode:   # (both bits: ALP, alp.py)
            fail(f"channel {i}: codec byte {codec:#x} does not fit storage type "
                 f"{DTYPE_BY_CODE[dtype_code]}")
        if dexp > 18 or count > n or idx_min >= n or idx_max >= n:
            fail(f"channel {i}: statistics out of range")


# --- many blocks at once -------------------------------------------------------------

def check_blocks(raw: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> list:
    """The checks of :func:`parse_block` for many blocks of one buffer at once,
    the structural ones in numpy (one Python call per block was most of the
    time it took to open a big cache).

    Returns one BlockInfo per block, or None where a check fails (the caller
    asks parse_block for the exact complaint)."""
    offsets, lengths = np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)
    ok = (lengths >= HEADER_SIZE + CRC_SIZE) & (offsets + lengths <= len(raw))
    header = np.zeros(len(offsets), HEADER_DTYPE)
    header[ok] = _gather(raw, offsets[ok], HEADER_SIZE).view(HEADER_DTYPE)[:, 0]
    n, n_channels = header["n_samples"].astype(np.int64), header["n_channels"].astype(np.int64)
    body = lengths - CRC_SIZE
    dir_end = HEADER_SIZE + ENTRY_SIZE * n_channels
    ok &= (header["magic"] == MAGIC) & (header["version"] == FORMAT_VERSION)
    ok &= (header["block_len"] == lengths) & (n >= 1) & (n <= MAX_BLOCK_SAMPLES)
    ok &= (n_channels >= 1) & (n_channels <= MAX_CHANNELS) & (dir_end <= body)
    ok &= (header["tick"] >= 1) & (header["t_last"] >= header["t_first"])
    time_codec = header["time_codec"].astype(np.int64)
    ok &= ~_short_alone(time_codec) & ((time_codec & DECIMAL) == 0)     # bit 4: CLOCK
    ok &= (time_codec & 3) != 3
    infos = [None] * len(offsets)
    # a segment mixes streams of different widths; not np.unique: it imports numpy.ma
    # (10 ms of a one-off query's start-up)
    for c in sorted(set(n_channels[ok].tolist())):
        rows = np.flatnonzero(ok & (n_channels == c))
        entries = _gather(raw, offsets[rows] + HEADER_SIZE, ENTRY_SIZE * c).view(ENTRY_DTYPE)
        good = _entries_fit(entries, n[rows])
        total = dir_end[rows] + header["time_len"][rows] + entries["data_len"].sum(1, dtype=np.int64)
        good &= total == body[rows]
        good[good] = _crcs_match(raw, offsets[rows[good]], lengths[rows[good]])
        rows = rows[good]
        fields = zip(*(header[name][rows].tolist() for name in _INFO_FIELDS))
        for row, values, block_entries in zip(rows.tolist(), fields, entries[good]):
            n_samples, t_first, t_last, tick, stream_id, seq, block_len, codec, time_len = values
            infos[row] = BlockInfo(n_samples, int(c), t_first, t_last, tick, stream_id, seq,
                                   block_len, codec, time_len, block_entries)
    return infos


_INFO_FIELDS = ("n_samples", "t_first", "t_last", "tick", "stream_id", "seq", "block_len",
                "time_codec", "time_len")


def _crcs_match(raw: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per block: does the CRC it ends with match its body's?"""
    return crc32_spans(raw, offsets, offsets + lengths - CRC_SIZE) == stored_crcs(raw, offsets, lengths)


def stored_crcs(raw: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The CRC each block ends with (uint32), read for all of them at once (a
    Python read per block was ~0.8 us); every block must lie in raw and hold
    at least CRC_SIZE bytes."""
    ends = np.asarray(offsets, np.int64) + np.asarray(lengths, np.int64) - CRC_SIZE
    return np.ascontiguousarray(_gather(raw, ends, CRC_SIZE)).view("<u4").reshape(-1)


def _gather(raw: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """(len(starts), width) bytes: raw[start:start + width] for every start
    (whole rows of a strided view: one copy per row, not per byte)."""
    rows = np.lib.stride_tricks.as_strided(raw, (max(0, len(raw) - width + 1), width), (1, 1),
                                           writeable=False)
    return rows[starts]


def _entries_fit(entries: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Per block (a row of directory entries): does every entry pass _check_entries?"""
    dtype_code, codec = entries["dtype"].astype(np.int64), entries["codec"].astype(np.int64)
    known = np.isin(dtype_code, list(DTYPE_BY_CODE))
    is_float = np.isin(dtype_code, FLOAT_CODES)
    mode = codec & (DECIMAL | FLOATBITS)
    fits = np.where(is_float, mode != 0, mode == 0)
    frames_fit = ~is_float & ((codec & _NOT_FRAMES) == 0)
    good = known & fits & ~_short_alone(codec) & (((codec & 3) != FRAMES) | frames_fit)
    n = n[:, None]
    good &= (entries["dexp"] <= 18) & (entries["count"] <= n)
    good &= (entries["idx_min"] < n) & (entries["idx_max"] < n)
    return good.all(1)
