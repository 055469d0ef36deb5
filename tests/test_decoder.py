"""The column decoder's fast paths against the format as docs/format.md §3 states
it: sections built here bit by bit (not by the encoder), every bit-packing
width, every bit alignment, sections that end exactly where readable memory
ends, and every truncation."""
from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensorq.codec import npdecode
from sensorq.codec.codes import LADDER_STEPS
from sensorq.codec.block import decode_block, encode_block, parse_block
from sensorq.codec.intcodec import decode_column, decode_column_scaled, undo_residuals
from sensorq.engine.kernels import decode_rows
from test_codec import blocks

MASK = (1 << 64) - 1
PAGE = mmap.PAGESIZE


def bit_stream(codes):
    """(value, bits) pairs, LSB-first, padded with zero bits to a byte."""
    acc, used = 0, 0
    for value, bits in codes:
        acc |= (value & ((1 << bits) - 1)) << used
        used += bits
    return acc.to_bytes((used + 7) // 8, "little")


def section(base, blocks):
    """A predictor-0 section: base, then one header per mini-block and the bits.
    ``blocks``: (header, values); header 0x80|k codes Rice(k), 0xC0|w patched
    at w bits (one value has bit w set), 0x41 + w framed at w bits (the
    frame, their smallest value, then each value less it)."""
    codes = []
    for header, values in blocks:
        if header >= 0xC0:      # patched: the low w bits, then the position of the value with bit w
            w = header & 0x3F
            codes += [(v, w) for v in values] + [(next(i for i, v in enumerate(values) if v >> w), 5)]
            continue
        if 0x41 <= header < 0x80:
            frame = min(values)
            codes += [(frame.bit_length(), 6), (frame, frame.bit_length())]
            codes += [(v - frame, header - 0x41) for v in values]
            continue
        for v in values:
            if header & 0x80:
                k = header & 0x3F
                codes += [(0, v >> k), (1, 1), (v, k)]
            else:
                codes.append((v, header))
    return base.to_bytes(8, "little") + bytes(h for h, _ in blocks) + bit_stream(codes)


def aligned_blocks(rng, width, shift, full, tail):
    """A Rice(0) mini-block whose length leaves the stream ``shift`` bits into a
    byte, then ``full`` mini-blocks of 32 and one of ``tail`` values at ``width``."""
    blocks = [(0x80, [shift] + [0] * 31)]   # shift + 1 + 31 bits
    top = 1 << width
    for size in [32] * full + ([tail] if tail else []):
        values = [int(v) for v in rng.integers(0, top, size, dtype=np.uint64, endpoint=False)] \
            if width < 64 else [int(v) for v in rng.integers(0, 2**64, size, dtype=np.uint64)]
        if width and size:
            values[0] = top - 1            # the widest value, all ones
        blocks.append((width, values))
    return blocks


def expected(base, blocks):
    return np.array([(base + v) & MASK for _, values in blocks for v in values], np.uint64)


class GuardedBuffer:
    """A page of bytes followed by an inaccessible page: a read past the end of
    the page is a crash, not a silent over-read."""

    def __init__(self):
        if not sys.platform.startswith("linux"):
            pytest.skip("needs mprotect")
        self.map = mmap.mmap(-1, 2 * PAGE)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mprotect(ctypes.c_void_p(address + PAGE), PAGE, 0) != 0:
            pytest.skip("mprotect failed")
        self.page = np.frombuffer(self.map, np.uint8, count=PAGE)

    def at_end(self, data: bytes):
        """Copy ``data`` to the end of the page; returns (buf, pos, end)."""
        pos = PAGE - len(data)
        self.page[:pos] = 0xA5
        self.page[pos:] = np.frombuffer(data, np.uint8)
        return self.page, pos, PAGE


@pytest.fixture(scope="module")
def guarded():
    return GuardedBuffer()


def decode(buf, pos, end, n, codec=0):
    out = np.empty(n, np.uint64)
    return decode_column(buf, pos, end, n, codec, out, np.empty(n, np.uint64)), out


@pytest.mark.parametrize("width", range(65))
def test_every_width_and_alignment_round_trips(width, guarded):
    rng = np.random.default_rng(width)
    base = int(rng.integers(0, 2**64, dtype=np.uint64))
    for shift in range(8):
        for full, tail in ((1, 0), (3, 0), (2, 5), (4, 31)):
            blocks = aligned_blocks(rng, width, shift, full, tail)
            data, want = section(base, blocks), expected(base, blocks)
            n = want.shape[0]
            # ending exactly at the guard page, and inside a bigger buffer
            status, got = decode(*guarded.at_end(data), n)
            assert status == 0 and (got == want).all(), (width, shift, full, tail)
            padded = np.frombuffer(b"\xff" * 3 + data + b"\xff" * 300, np.uint8)
            status, got = decode(padded, 3, 3 + len(data), n)
            assert status == 0 and (got == want).all(), (width, shift, full, tail)


@pytest.mark.parametrize("width", [0, 1, 7, 8, 13, 28, 29, 56, 57, 63, 64])
def test_every_truncation_gives_a_status(width, guarded):
    rng = np.random.default_rng(100 + width)
    blocks = aligned_blocks(rng, width, 5, 3, 7)
    data = section(12345, blocks)
    n = sum(len(v) for _, v in blocks)
    for cut in range(len(data)):
        status, _ = decode(*guarded.at_end(data[:cut]), n)
        assert status < 0, (width, cut)
    status, _ = decode(*guarded.at_end(data + b"\x00"), n)
    assert status < 0                       # a byte too many


def test_read_only_buffer_decodes():
    """The engine hands the decoder read-only memory maps."""
    rng = np.random.default_rng(3)
    blocks = aligned_blocks(rng, 11, 2, 3, 4)
    buf = np.frombuffer(section(7, blocks), np.uint8)
    assert not buf.flags.writeable
    status, got = decode(buf, 0, buf.shape[0], 3 * 32 + 32 + 4)
    assert status == 0 and (got == expected(7, blocks)).all()


def reference_undo(u, order, base):
    """docs/format.md §3, in Python integers."""
    s = []
    for i, r in enumerate(int(x) for x in u):
        d = (r >> 1) ^ -(r & 1)
        if order == 0 or i == 0:
            s.append(r)
        elif order == 1 or i == 1:
            s.append(s[-1] + d)
        else:
            s.append(2 * s[-1] - s[-2] + d)
    return np.array([(v + base) & MASK for v in s], np.uint64)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_undo_residuals_matches_the_spec(order):
    rng = np.random.default_rng(order)
    for n in list(range(0, 42)) + [4095, 4096]:
        for top in (2**6, 2**64):
            u = rng.integers(0, top, n, dtype=np.uint64, endpoint=False) if top < 2**64 \
                else rng.integers(0, 2**64, n, dtype=np.uint64)
            base = int(rng.integers(0, 2**64, dtype=np.uint64))
            got = u.copy()
            undo_residuals(got, np.int64(n), np.int64(order), np.uint64(base))
            assert (got == reference_undo(u, order, base)).all(), (order, n, top)


def rice_blocks(rng, k, full, tail):
    """Rice(k) mini-blocks whose quotients are mostly small (several codewords
    a word), sometimes long (a word or more of zeros), values up to 2^64 - 1."""
    blocks = [(0x80, [3] + [0] * 31)]                 # leaves the stream 3 bits into a byte
    for size in [32] * full + ([tail] if tail else []):
        q = np.where(rng.random(size) < 0.9, rng.integers(0, 4, size), rng.integers(0, 150, size))
        q = [min(int(a), (2**64 - 1) >> k) for a in q]
        values = [(a << k) | int(r) for a, r in zip(q, rng.integers(0, 2**k, size, dtype=np.uint64))]
        blocks.append((0x80 | k, values))
    return blocks


@pytest.mark.parametrize("k", [0, 1, 2, 4, 5, 9, 17, 31, 50, 62, 63])
def test_rice_round_trips_and_truncations(k, guarded):
    rng = np.random.default_rng(200 + k)
    for full, tail in ((1, 0), (3, 7), (5, 31)):
        blocks = rice_blocks(rng, k, full, tail)
        data, want = section(99, blocks), expected(99, blocks)
        n = want.shape[0]
        status, got = decode(*guarded.at_end(data), n)
        assert status == 0 and (got == want).all(), (k, full, tail)
        padded = np.frombuffer(data + b"\xff" * 64, np.uint8)
        status, got = decode(padded, 0, len(data), n)
        assert status == 0 and (got == want).all(), (k, full, tail)
    for cut in range(len(data)):
        status, _ = decode(*guarded.at_end(data[:cut]), n)
        assert status < 0, (k, cut)


@pytest.mark.parametrize("k", [50, 56, 60, 63])
def test_rice_quotient_too_big_for_64_bits_is_corrupt(k):
    """q << k must fit in 64 bits: one quotient bit more is a corrupt section."""
    q = (2**64 - 1) >> k
    ok = section(0, [(0x80 | k, [(q << k)] + [1] * 31)])
    status, got = decode(np.frombuffer(ok + b"\0" * 64, np.uint8), 0, len(ok), 32)
    assert status == 0 and int(got[0]) == q << k
    codes = [(0, q + 1), (1, 1), (0, k)] + [(1, 1), (1, k)] * 31
    bad = (0).to_bytes(8, "little") + bytes([0x80 | k]) + bit_stream(codes)
    status, _ = decode(np.frombuffer(bad + b"\0" * 64, np.uint8), 0, len(bad), 32)
    assert status < 0


def test_mixed_mini_blocks_round_trip(guarded):
    """Rice and bit-packed mini-blocks in turn, so every unpack starts at an odd
    bit; predictor order 1 on top."""
    rng = np.random.default_rng(7)
    blocks = []
    for m in range(40):
        if m % 2:
            blocks.append((int(rng.integers(0, 65)), None))
        else:
            blocks += rice_blocks(rng, int(rng.integers(0, 12)), 1, 0)[1:]
    filled = []
    for header, values in blocks:
        if values is None:
            top = 2**header
            values = [int(v) for v in rng.integers(0, 2**64, 32, dtype=np.uint64) % np.uint64(top)] \
                if header < 64 else [int(v) for v in rng.integers(0, 2**64, 32, dtype=np.uint64)]
        filled.append((header, values))
    data = section(5, filled)
    residuals = np.array([v for _, values in filled for v in values], np.uint64)
    n = residuals.shape[0]
    status, got = decode(*guarded.at_end(data), n, codec=1)
    assert status == 0 and (got == reference_undo(residuals, 1, 5)).all()


def payload(blocks):
    """Header bytes and bit stream of a payload (a section without its base)."""
    return section(0, blocks)[8:]


def test_dictionary_sections(guarded):
    """DICT: entries coded as gaps (a Rice and a bit-packed mini-block), ranks
    bit-packed after them; a rank past the dictionary is ERR_BAD_DICT; every
    truncation gives a status."""
    rng = np.random.default_rng(11)
    entries = np.unique(rng.integers(0, 10**6, 50))
    gaps = [int(entries[0])] + [int(b - a - 1) for a, b in zip(entries[:-1], entries[1:])]
    ranks = [int(r) for r in rng.integers(0, len(entries), 100)]
    head = (777).to_bytes(8, "little") + len(entries).to_bytes(4, "little") + \
        payload([(0x80 | 14, gaps[:32]), (20, gaps[32:])])
    data = head + payload([(6, ranks[:32]), (6, ranks[32:64]), (6, ranks[64:96]), (6, ranks[96:])])
    status, got = decode(*guarded.at_end(data), 100, codec=0x04)
    assert status == 0 and (got == np.array([777 + int(entries[r]) for r in ranks], np.uint64)).all()
    bad = head + payload([(6, [len(entries)] + ranks[1:32]), (6, ranks[32:64]), (6, ranks[64:96]),
                          (6, ranks[96:])])
    assert decode(*guarded.at_end(bad), 100, codec=0x04)[0] == -3
    for cut in range(len(data)):
        assert decode(*guarded.at_end(data[:cut]), 100, codec=0x04)[0] < 0, cut


def engine_rows(buf: bytes, read_only: bool):
    """The engine's block decoder on one block: (times, float64 rows)."""
    info = parse_block(buf)
    starts = info.section_offsets()
    n, c = info.n_samples, info.n_channels
    lay_t = np.array([[info.t_first, info.tick, info.time_codec, starts[0], info.time_len, n]], np.int64)
    lay_c = np.zeros((1, c, 5), np.int64)
    for s, e in enumerate(info.entries):
        lay_c[0, s] = (starts[s + 1], e["data_len"], e["codec"], e["dexp"], e["dtype"])
    raw = np.frombuffer(buf, np.uint8).copy()
    raw.flags.writeable = not read_only
    t, rows = np.empty(n, np.int64), np.empty((c, n), np.float64)
    status = decode_rows(raw, 0, n, lay_t, lay_c, True, t, rows, np.empty(n, np.uint64),
                         np.empty(n, np.uint64))
    return status, t, rows


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(blocks(), st.sampled_from(["compact", "fast"]), st.booleans())
def test_engine_rows_match_decode_block(block, codec, read_only):
    """Integer and decimal channels are written to float rows by the decoder's
    last pass, float bits through words: all must equal decode_block's values."""
    t, cols = block
    buf = encode_block(t, cols, codec=codec)
    status, t2, rows = engine_rows(buf, read_only)
    assert status == 0
    want_t, want_cols = decode_block(buf)
    assert (t2 == want_t).all()
    for row, col in zip(rows, want_cols):
        assert row.tobytes() == col.astype(np.float64).tobytes()


# --- any mix of mini-blocks, both decoders ------------------------------------------

@st.composite
def mini_block_mixes(draw):
    """(blocks, n): up to 6 mini-blocks of any kind — bit-packed at a width of
    0..64, Rice(k) for k of 0..63, patched at w of 0..63, or framed at w of
    0..62 — of 32 values, the last of 1..32; Rice
    quotients mostly small (several codewords a word), sometimes a word or more
    of zeros, never so big that q << k leaves 64 bits."""
    count = draw(st.integers(1, 6))
    blocks = []
    for m in range(count):
        size = 32 if m < count - 1 else draw(st.integers(1, 32))
        kind = draw(st.sampled_from(["packed", "rice", "patched", "framed"]))
        if kind == "framed":
            w = draw(st.integers(0, 62))
            # (frame + the offsets, < 2^62 each, < 2^63: the smallest, the
            # frame written, fits the frame's 6-bit length)
            frame = draw(st.one_of(st.integers(0, 1 << 10), st.integers(0, (1 << 62) - 1)))
            offsets = draw(st.lists(st.integers(0, (1 << w) - 1), min_size=size, max_size=size))
            blocks.append((0x41 + w, [frame + v for v in offsets]))
        elif kind == "packed":
            width = draw(st.integers(0, 64))
            values = draw(st.lists(st.integers(0, (1 << width) - 1), min_size=size, max_size=size))
            blocks.append((width, values))
        elif kind == "patched":
            w = draw(st.integers(0, 63))
            values = draw(st.lists(st.integers(0, (1 << w) - 1), min_size=size, max_size=size))
            values[draw(st.integers(0, size - 1))] |= 1 << w
            blocks.append((0xC0 | w, values))
        else:
            k = draw(st.integers(0, 63))
            top_q = MASK >> k
            quotients = draw(st.lists(st.one_of(st.integers(0, 3), st.integers(0, 150)),
                                      min_size=size, max_size=size))
            rests = draw(st.lists(st.integers(0, (1 << k) - 1), min_size=size, max_size=size))
            blocks.append((0x80 | k, [(min(q, top_q) << k) | r for q, r in zip(quotients, rests)]))
    return blocks, sum(len(v) for _, v in blocks)


def numpy_decode(buf, pos, end, n, codec=0):
    return npdecode.decode_column(buf, pos, end, n, codec)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mix=mini_block_mixes(), base=st.integers(0, MASK), order=st.integers(0, 2), data=st.data())
def test_any_mini_block_mix_decodes_in_both_decoders(mix, base, order, data, guarded):
    """A section built bit by bit here (not by the encoder) of any mix of
    mini-block kinds: the compiled and the numpy decoder give the format's
    words, where the section ends exactly at an unreadable page; cut short
    anywhere, both give an error status (and never read past the page)."""
    blocks, n = mix
    data_bytes = section(base, blocks)
    residuals = np.array([v for _, values in blocks for v in values], np.uint64)
    want = reference_undo(residuals, order, base)
    status, got = decode(*guarded.at_end(data_bytes), n, codec=order)
    assert status == 0 and (got == want).all()
    np_status, np_got = numpy_decode(*guarded.at_end(data_bytes), n, codec=order)
    assert np_status == 0 and (np_got == want).all()
    cut = data.draw(st.integers(0, len(data_bytes) - 1))
    status, _ = decode(*guarded.at_end(data_bytes[:cut]), n, codec=order)
    np_status, _ = numpy_decode(*guarded.at_end(data_bytes[:cut]), n, codec=order)
    assert status < 0 and np_status < 0, cut


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mix=mini_block_mixes(), data=st.data())
def test_damaged_mini_blocks_give_a_status_in_both_decoders(mix, data, guarded):
    """Bytes of the headers or the bit stream changed: no crash and no read
    past the section; both decoders agree on the status, and on the words when
    the damage still makes a valid section."""
    blocks, n = mix
    damaged = bytearray(section(7, blocks))
    for _ in range(data.draw(st.integers(1, 3))):
        damaged[data.draw(st.integers(8, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    status, got = decode(*guarded.at_end(bytes(damaged)), n)
    np_status, np_got = numpy_decode(*guarded.at_end(bytes(damaged)), n)
    assert status == np_status
    assert status <= 0
    if status == 0:
        assert (got == np_got).all()


@pytest.mark.parametrize("w", [0, 5, 63])
def test_a_patched_mini_block_is_corrupt_in_a_short_section(w, guarded):
    """Patched mini-blocks are version 1's only: in a version-2 (SHORT)
    section both decoders reject one (ERR_BAD_CODE), as the device does;
    the same bits in a version-1 section decode."""
    values = [0] * 31 + [1 << w]
    body = bytes([0xC0 | w]) + bit_stream([(v, w) for v in values] + [(31, 5)])
    status, got = decode(*guarded.at_end(bytes(8) + body), 32)
    assert status == 0 and got.tolist() == values
    assert numpy_decode(*guarded.at_end(bytes(8) + body), 32)[0] == 0
    short = b"\x00" + body            # base 0 as a varint
    assert decode(*guarded.at_end(short), 32, codec=0x40)[0] == -2
    assert numpy_decode(*guarded.at_end(short), 32, codec=0x40)[0] == -2


@pytest.mark.parametrize("frame, w", [(0, 0), (1000, 4), (2**51 - 1, 7), (2**62 + 5, 1)])
def test_a_framed_mini_block_by_hand(frame, w, guarded):
    """A framed mini-block written by hand from format.md §3 (header 0x41 + w,
    a 6-bit frame length, the frame, then the values less it at w bits)
    decodes to frame + each value in both decoders (frames of up to 51 bits
    read from one word, longer ones not); in a version-2 (SHORT) section it
    is corrupt (ERR_BAD_CODE), and cut inside its frame, truncated."""
    rng = np.random.default_rng(w)
    offsets = [int(v) for v in rng.integers(0, 1 << w, 32)] if w else [0] * 32
    body = bytes([0x41 + w]) + bit_stream([(frame.bit_length(), 6), (frame, frame.bit_length())]
                                          + [(v, w) for v in offsets])
    want = [frame + v for v in offsets]
    status, got = decode(*guarded.at_end(bytes(8) + body), 32)
    assert status == 0 and got.tolist() == want
    np_status, np_got = numpy_decode(*guarded.at_end(bytes(8) + body), 32)
    assert np_status == 0 and np_got.tolist() == want
    short = b"\x00" + body           # base 0 as a varint
    assert decode(*guarded.at_end(short), 32, codec=0x40)[0] == -2
    assert numpy_decode(*guarded.at_end(short), 32, codec=0x40)[0] == -2
    if frame.bit_length() > 8:       # the section ends inside the frame
        cut = bytes(8) + body[:2]
        assert decode(*guarded.at_end(cut), 32)[0] == -1
        assert numpy_decode(*guarded.at_end(cut), 32)[0] == -1


# --- FRAMES sections (predictor field 3: one frame length for the section) ---------

FRAMES = 3


def frames_section(base, blocks, length):
    """A FRAMES section (format.md §3): base, one header per mini-block, the
    frame length byte, then the bits: a framed mini-block (0x41 + w) its
    frame (its smallest value) in ``length`` bits, then each value less it at
    w bits; a bit-packed one its values."""
    codes = []
    for header, values in blocks:
        if header >= 0x41:
            frame = min(values)
            codes += [(frame, length)] + [(v - frame, header - 0x41) for v in values]
        else:
            codes += [(v, header) for v in values]
    return base.to_bytes(8, "little") + bytes(h for h, _ in blocks) + bytes([length]) \
        + bit_stream(codes)


@st.composite
def frames_mixes(draw):
    """(blocks, n, L): up to 6 mini-blocks of 32 values (the last 1..32), or
    up to 20 (a count walks whole ones eight at a time: bits.walk8),
    bit-packed at 0..64 bits or framed at 0..62 with a frame below 2^L."""
    length = draw(st.integers(0, 63))
    count = draw(st.integers(1, draw(st.sampled_from((6, 20)))))
    blocks = []
    for m in range(count):
        size = 32 if m < count - 1 else draw(st.integers(1, 32))
        if draw(st.booleans()):
            w = draw(st.integers(0, 62))
            frame = draw(st.integers(0, (1 << length) - 1))
            offsets = draw(st.lists(st.integers(0, (1 << w) - 1), min_size=size, max_size=size))
            offsets[0] = 0                          # the frame is the smallest value
            blocks.append((0x41 + w, [frame + v for v in offsets]))
        else:
            width = draw(st.integers(0, 64))
            blocks.append((width, draw(st.lists(st.integers(0, (1 << width) - 1), min_size=size,
                                                max_size=size))))
    return blocks, sum(len(v) for _, v in blocks), length


def count_status(buf, pos, end, n, codec, threshold, value_bits=64, ladder=None):
    """count_column's (status, tally) for a count of the words above
    ``threshold``; with ``ladder`` (True), of those at least threshold + j,
    j = 0..LADDER_STEPS."""
    from sensorq.codec.intcount import count_column
    tally = np.zeros(2 if ladder is None else LADDER_STEPS + 1, np.int64)
    status = count_column(buf, pos, end, n, codec, np.int64(threshold), value_bits,
                          np.empty(n, np.uint64), np.empty(n, np.uint64), tally, ladder)
    return status, tally


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mix=frames_mixes(), base=st.integers(0, MASK), data=st.data())
def test_frames_sections_decode_and_count_in_every_reader(mix, base, data, guarded):
    """A FRAMES section built bit by bit here: both decoders give its words
    and the count kernel (which settles mini-blocks by their range and
    unpacks the rest) counts them as numpy does, at the section's end page;
    cut short anywhere, every reader gives an error status."""
    blocks, n, length = mix
    data_bytes = frames_section(base, blocks, length)
    want = (np.array([v for _, values in blocks for v in values], np.uint64) + np.uint64(base))
    status, got = decode(*guarded.at_end(data_bytes), n, codec=FRAMES)
    assert status == 0 and (got == want).all()
    np_status, np_got = numpy_decode(*guarded.at_end(data_bytes), n, codec=FRAMES)
    assert np_status == 0 and (np_got == want).all()
    signed = want.view(np.int64)
    threshold = data.draw(st.one_of(st.sampled_from(signed.tolist()), st.integers(-2**63, 2**63 - 1)))
    status, tally = count_status(*guarded.at_end(data_bytes), n, FRAMES, threshold)
    assert status == 0 and tally.tolist() == [(signed > threshold).sum(), (signed == threshold).sum()]
    if threshold <= 2**63 - 1 - LADDER_STEPS:      # a percentile's ladder of counts
        status, steps = count_status(*guarded.at_end(data_bytes), n, FRAMES, threshold, ladder=True)
        assert status == 0 and steps.tolist() == \
            [(signed >= threshold + j).sum() for j in range(LADDER_STEPS + 1)]
    cut = data.draw(st.integers(0, len(data_bytes) - 1))
    for reader in (decode, numpy_decode):
        assert reader(*guarded.at_end(data_bytes[:cut]), n, codec=FRAMES)[0] < 0, cut
    assert count_status(*guarded.at_end(data_bytes[:cut]), n, FRAMES, threshold)[0] < 0, cut


@pytest.mark.parametrize("width", range(17))
def test_frames_count_of_every_narrow_width(width, guarded):
    """Framed mini-blocks of each width that the count reads in registers
    (bits.count32: 1..15) and of 0 and 16, which it unpacks, each threshold
    inside their ranges or at their edges: numpy's count, in int64 and int16
    lanes, and its ladder, the section ending at a page's end (count32 reads
    no further than count32_bytes says)."""
    rng = np.random.default_rng(width)
    blocks = []
    for m in range(12):
        size = 32 if m < 11 else 9                  # a short last one
        offsets = rng.integers(0, 1 << width, size)
        offsets[rng.integers(0, size)] = 0          # the frame is the smallest value
        frame = int(rng.integers(0, max(1, (1 << 15) - (1 << width) + 1)))
        blocks.append((0x41 + width, [frame + int(v) for v in offsets]))
    data_bytes = frames_section(2**64 - 2**14, blocks, 15)      # values from -2^14 up
    values = np.array([v for _, vs in blocks for v in vs], np.int64) - 2**14
    picks = rng.choice(values, 12)
    for threshold in sorted({*picks.tolist(), *(picks + 1).tolist(), *(picks - 1).tolist(),
                             int(values.min()) - 1, int(values.max())}):
        expected = [(values > threshold).sum(), (values == threshold).sum()]
        for value_bits in (64, 16) if values.max() < 2**15 else (64,):
            status, tally = count_status(*guarded.at_end(data_bytes), len(values), FRAMES,
                                         threshold, value_bits)
            assert status == 0 and tally.tolist() == expected, (threshold, value_bits)
        # a percentile's ladder: frames just above the threshold settle only
        # above its last step
        status, steps = count_status(*guarded.at_end(data_bytes), len(values), FRAMES, threshold,
                                     ladder=True)
        assert status == 0 and steps.tolist() == \
            [(values >= threshold + j).sum() for j in range(LADDER_STEPS + 1)], threshold


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mix=frames_mixes(), data=st.data())
def test_damaged_frames_sections_give_one_status_in_every_reader(mix, data, guarded):
    """A FRAMES section's headers, frame length or bits changed (a Rice or
    patched header, which the form does not allow, a length past 63): no
    crash and no read past the section; both decoders and the count give the
    same status, and the decoders the same words when it is still valid."""
    blocks, n, length = mix
    damaged = bytearray(frames_section(7, blocks, length))
    for _ in range(data.draw(st.integers(1, 3))):
        damaged[data.draw(st.integers(8, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    status, got = decode(*guarded.at_end(bytes(damaged)), n, codec=FRAMES)
    np_status, np_got = numpy_decode(*guarded.at_end(bytes(damaged)), n, codec=FRAMES)
    assert status == np_status and status <= 0
    assert count_status(*guarded.at_end(bytes(damaged)), n, FRAMES, 1 << 20)[0] == status
    if status == 0:
        assert (got == np_got).all()


def test_frames_headers_and_codec_bits_the_form_refuses(guarded):
    """In a FRAMES section a Rice or patched header, or a frame length past
    63, is corrupt (ERR_BAD_CODE) to both decoders; FRAMES with SHORT, ZERO
    or ENTROPY is a bad codec byte; the same bits as predictor order 0 read
    the frames' 6-bit lengths instead (a different section, not this one)."""
    blocks = [(0x41 + 3, [900 + v for v in range(8)] * 4), (5, list(range(32)))]
    good = frames_section(0, blocks, 10)
    assert decode(*guarded.at_end(good), 64, codec=FRAMES)[0] == 0
    for header in (0x80 | 4, 0xC0 | 5):
        bad = bytearray(good)
        bad[9] = header
        for reader in (decode, numpy_decode):
            assert reader(*guarded.at_end(bytes(bad)), 64, codec=FRAMES)[0] == -2
    bad = bytearray(good)
    bad[10] = 64                                    # the frame length byte
    for reader in (decode, numpy_decode):
        assert reader(*guarded.at_end(bytes(bad)), 64, codec=FRAMES)[0] == -2
    for codec in (FRAMES | 0x40, FRAMES | 0x20, FRAMES | 0x80):
        for reader in (decode, numpy_decode):
            assert reader(*guarded.at_end(good), 64, codec=codec)[0] == -2


def decode_scaled(buf, pos, end, n, codec, offset, scale):
    t = np.empty(n, np.int64)
    status = decode_column_scaled(buf, pos, end, n, codec, np.empty(n, np.uint64), np.empty(n, np.uint64),
                                  np.uint64(offset), np.uint64(scale), t)
    return status, t.view(np.uint64)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mix=mini_block_mixes(), base=st.integers(0, MASK), order=st.integers(0, 2),
       offset=st.integers(0, MASK), scale=st.one_of(st.integers(0, 10**9), st.integers(0, MASK)))
def test_scaled_decode_is_offset_plus_scale_times_the_words(mix, base, order, offset, scale, guarded):
    """The time column's decoder (timestamps t_first + tick * word, written by
    the last pass) against the format's words times scale plus offset, mod
    2^64, in Python integers; cut short, it gives a status."""
    blocks, n = mix
    data_bytes = section(base, blocks)
    residuals = np.array([v for _, values in blocks for v in values], np.uint64)
    words = reference_undo(residuals, order, base)
    want = np.array([(offset + scale * int(w)) & MASK for w in words], np.uint64)
    status, got = decode_scaled(*guarded.at_end(data_bytes), n, order, offset, scale)
    assert status == 0 and (got == want).all()
    status, _ = decode_scaled(*guarded.at_end(data_bytes[:len(data_bytes) // 2]), n, order, offset, scale)
    assert status < 0


@pytest.mark.parametrize("n", [1, 2, 3, 32, 33, 100, 4096])
def test_scaled_decode_of_steady_and_nearly_steady_clocks(n, guarded):
    """Order-2 sections whose residuals after the first two are all 0 (a
    steady clock: one pass fills the timestamps) and the same with one
    residual late in the section set (the general sums): both against the
    format's words times scale plus offset, mod 2^64."""
    rng = np.random.default_rng(n)
    for step in (0, 1, 15_625_000, 2**40 + 3):
        for late in (None, n - 1):
            first = int(rng.integers(0, 2**40))
            residuals = [first, 2 * step][:n] + [0] * max(0, n - 2)     # zigzag(step) = 2 step
            if late is not None and late >= 2:
                residuals[late] = 3
            blocks = [(max(chunk).bit_length(), chunk)       # width 0 where all are 0
                      for chunk in (residuals[i:i + 32] for i in range(0, n, 32))]
            data_bytes = section(0, blocks)
            words = reference_undo(np.array(residuals, np.uint64), 2, 0)
            offset, scale = int(rng.integers(0, 2**63)), int(rng.integers(1, 10**9))
            want = np.array([(offset + scale * int(w)) & MASK for w in words], np.uint64)
            status, got = decode_scaled(*guarded.at_end(data_bytes), n, 2, offset, scale)
            assert status == 0 and (got == want).all(), (step, late)


def test_scaled_decode_of_a_dictionary_section(guarded):
    rng = np.random.default_rng(12)
    entries = np.unique(rng.integers(0, 10**6, 40))
    gaps = [int(entries[0])] + [int(g) for g in np.diff(entries) - 1]
    ranks = [int(r) for r in rng.integers(0, len(entries), 70)]
    data = (5).to_bytes(8, "little") + len(entries).to_bytes(4, "little") + \
        payload([(20, gaps[:32]), (20, gaps[32:])]) + payload([(6, ranks[:32]), (6, ranks[32:64]), (6, ranks[64:])])
    status, got = decode_scaled(*guarded.at_end(data), 70, 0x04, 10**18, 1000)
    assert status == 0
    assert (got == np.array([10**18 + 1000 * (5 + int(entries[r])) for r in ranks], np.uint64)).all()


# count32 and unpack32 over every width and bit alignment, checked against
# the values they were given, in this process (the target's own code: one
# body for most widths where the target has AVX-512 VBMI) and in one compiled
# for a generic x86-64 core (a switch with a body per width).  (That neither
# reads past unpack32_bytes / count32_bytes is checked in this process, by the
# sections that end at a guard page above.)
COUNT32_CHECK = """
import sys
import numba
import numpy as np
from sensorq.codec.bits import count32, count32_bytes, has_byte_shuffles, unpack32, unpack32_bytes

@numba.njit
def count(buf, at, shift, width, threshold):
    return count32(buf, at, shift, width, threshold)

@numba.njit
def unpack(buf, at, shift, width, out):
    unpack32(buf, at, shift, width, out, 0)

rng = np.random.default_rng(11)
for width in range(65):
    for shift in range(8):
        values = rng.integers(0, 1 << width, 32, dtype=np.uint64) if width < 64 else \
            rng.integers(0, 2**64, 32, dtype=np.uint64)
        bits = sum(int(v) << (shift + i * width) for i, v in enumerate(values))
        room = unpack32_bytes(width)
        raw = bits.to_bytes(room, "little") if width else bytes(room)
        buf = np.frombuffer(bytes(64) + raw, np.uint8)
        out = np.full(32, 7, np.uint64)
        unpack(buf, 64, shift, width, out)
        assert np.array_equal(out, values if width else np.zeros(32, np.uint64)), (width, shift)
for width in range(1, 16):
    for shift in range(8):
        for _ in range(3):
            values = rng.integers(0, 1 << width, 32)
            values[rng.integers(0, 32, 4)] = rng.choice(values, 4)     # some equal ones
            bits = sum(int(v) << (shift + i * width) for i, v in enumerate(values))
            buf = np.frombuffer(bits.to_bytes(count32_bytes(width), "little"), np.uint8)
            for threshold in {0, (1 << width) - 1, *rng.choice(values, 5).tolist()}:
                got = count(buf, 0, shift, width, threshold)
                expected = (int((values > threshold).sum()), int((values == threshold).sum()))
                assert (got & 0xFFFFFFFF, got >> 32) == expected, (width, shift, threshold)
print(has_byte_shuffles())
"""


QUOTIENTS32_CHECK = """
import numba
import numpy as np
from sensorq.codec._vector_ir import QUOTIENTS32_MAX_K
from sensorq.codec.bits import has_byte_compress, quotients32
from sensorq.codec.intcodec import decode_column, encode_column_costed, max_section_bytes

@numba.njit
def quotients(buf, shift, k, out):
    return quotients32(buf, 0, shift, k, out, 0)

rng = np.random.default_rng(4)
for trial in range(3000):
    shift, k = int(rng.integers(0, 8)), int(rng.integers(0, QUOTIENTS32_MAX_K + 1))
    density = rng.choice([0.2, 0.35, 0.5, 0.8, 1.0])
    bits = (rng.random(128) < density).astype(np.uint8)
    buf = np.packbits(bits, bitorder="little")
    low = rng.integers(0, 1 << min(k, 62), 32, dtype=np.uint64) if k else np.zeros(32, np.uint64)
    out = low.copy()
    taken = int(quotients(buf, shift, k, out))
    ones = np.flatnonzero(bits[shift:])
    if len(ones) < 32 or not has_byte_compress():
        assert taken == 0 and (out == low).all(), trial
        continue
    q = np.diff(np.concatenate([[-1], ones[:32]])) - 1
    assert taken == ones[31] + 1, trial
    assert (out == (low | (q.astype(np.uint64) << np.uint64(k)))).all(), trial
for scale in (3, 40, 2000, 2.0**30, 2.0**44, 2.0**55):     # whole sections, either path
    for seed in range(4):
        r = np.random.default_rng(seed)
        v = np.rint(r.normal(0, scale, 3001) * (1 + 30 * (r.random(3001) < 0.01))).astype(np.int64)
        out = np.zeros(max_section_bytes(3001), np.uint8)
        end, codec = encode_column_costed(v.view(np.uint64), True, False, 0.0, out, 0, False, False)
        words = np.empty(3001, np.uint64)
        assert decode_column(out[:end], 0, int(end), 3001, int(codec), words, np.empty(3001, np.uint64)) == 0
        assert (words.view(np.int64) == v).all(), (scale, seed)
print(has_byte_compress())
"""


def _in_both_forms(check: str, tmp_path) -> tuple[str, str]:
    """What ``check`` prints, compiled for this core and for a generic x86-64
    (its own numba cache each); it must exit cleanly in both."""
    printed = []
    for name, extra in (("here", {}), ("generic", {"NUMBA_CPU_NAME": "generic"})):
        run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                             env={**os.environ, **extra, "NUMBA_CACHE_DIR": str(tmp_path / name)})
        assert run.returncode == 0, (name, run.stderr[-2000:])
        printed.append(run.stdout.strip())
    return printed[0], printed[1]


def test_split_rice_quotients_in_both_forms(tmp_path):
    """quotients32 (a vector compress of the one bits' positions, AVX-512
    VBMI2) against the quotients counted in numpy, and whole split sections
    decoded, here and compiled for a generic x86-64 (no VBMI2: quotients32
    declines, a code at a time reads them)."""
    from sensorq.codec.bits import has_byte_compress
    assert _in_both_forms(QUOTIENTS32_CHECK, tmp_path) == (str(has_byte_compress()), "False")


def test_count32_and_unpack32_in_both_forms(tmp_path):
    from sensorq.codec.bits import has_byte_shuffles
    assert _in_both_forms(COUNT32_CHECK, tmp_path) == (str(has_byte_shuffles()), "False")
