"""Clock lines (codec/clock.py, docs/format.md §3, the time codec's CLOCK
bit): a clock off its tick but on a line is stored as the line alone, a
jittered one as the line and the jitter, and the three decoders — the
Python API's, the engine's kernels and its numpy tier — read back every
timestamp.  References: the timestamps themselves, Daphnet's own clock, and
numpy's floor division for the lines."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sensorq
from sensorq import Channel
from sensorq.codec import npdecode, timecol
from sensorq.codec.block import decode_block, encode_block
from sensorq.codec.clock import exact_line
from sensorq.codec.codes import CLOCK, ERR_BAD_CODE, ERR_TRUNCATED, OK, ZERO_RESIDUALS
from sensorq.codec.header import parse_block
from sensorq.codec.transforms import time_words
from sensorq.demo import DAPHNET_CSV
from sensorq.engine.kernels import decode_time
from sensorq.errors import CorruptDataError

from test_codec import timestamps

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def daphnet_times() -> np.ndarray:
    with open(DAPHNET_CSV, newline="") as f:
        rows = list(csv.reader(f))[1:]
    return np.array([np.datetime64(r[0].replace(" ", "T"), "ns") for r in rows]).view(np.int64)


def compiled_times(block: bytes) -> np.ndarray:
    """The engine kernels' timestamps of a block (kernels.decode_time)."""
    info = parse_block(block)
    raw = np.frombuffer(block, np.uint8)
    n = info.n_samples
    lay_t = np.array([[info.t_first, info.tick, info.time_codec, info.section_offsets()[0],
                       info.time_len, n]], np.int64)
    t = np.empty(n, np.int64)
    status = decode_time(raw, 0, n, lay_t, t, np.empty(n, np.uint64), np.empty(n, np.uint64))
    assert status == OK
    return t


def interpreted_times(block: bytes) -> np.ndarray:
    """The numpy tier's timestamps of a block (npdecode)."""
    info = parse_block(block)
    start = int(info.section_offsets()[0])
    status, words = npdecode.decode_time_words(np.frombuffer(block, np.uint8), start, start + info.time_len,
                                               info.n_samples, info.time_codec)
    assert status == OK
    return npdecode.time_values(words, info.t_first, info.tick)


def time_section(block: bytes) -> tuple[int, int]:
    """(time codec, bytes of the time section)."""
    info = parse_block(block)
    return info.time_codec, info.time_len


def test_daphnets_64_hz_clock_in_whole_ms_is_the_line_125_over_8():
    """Daphnet's timestamps (64 Hz written in ms: steps of 15 and 16 ms)
    are floor((125 k + r) / 8) ms from the first: the section is the line
    and an 8-byte base, where the plain section took 511 bytes of tANS."""
    t = daphnet_times()[:4096]
    tick, words = time_words(t)
    assert tick == 1_000_000
    p, q, r = (int(v) for v in exact_line(words, len(words)))
    assert (p, q) == (125, 8) and 0 <= r < 8
    k = np.arange(len(words), dtype=np.int64)
    assert np.array_equal((125 * k + r) // 8, words.astype(np.int64))
    block = encode_block(t, [np.zeros(len(t), np.int16)], codec="compact")
    codec, size = time_section(block)
    assert codec == CLOCK | ZERO_RESIDUALS and size <= 16
    for decoded in (decode_block(block)[0], compiled_times(block), interpreted_times(block)):
        assert np.array_equal(decoded, t)


def test_a_steady_clock_is_written_as_before():
    """Words 0, 1, …, n − 1: no line (model kernels recognise that section
    byte for byte, models/kernels.py _is_clock)."""
    t = np.arange(5000, dtype=np.int64) * 1_000_000
    lines = encode_block(t, [np.zeros(5000, np.int16)], codec="compact")
    saved = timecol.CLOCK_LINES
    timecol.CLOCK_LINES = False
    try:
        plain = encode_block(t, [np.zeros(5000, np.int16)], codec="compact")
    finally:
        timecol.CLOCK_LINES = saved
    assert lines == plain and not time_section(lines)[0] & CLOCK


def test_a_jittered_clock_takes_a_fitted_line():
    """1 kHz with ±20 µs of uniform jitter: its steps differ by up to 80
    µs, its samples from the line by 20; the fitted line's section is
    smaller than the plain one (2.18 → 2.04 B a sample when measured)."""
    rng = np.random.default_rng(23)
    n = 4096
    t = np.sort(np.arange(n, dtype=np.int64) * 1_000_000 + rng.integers(-20_000, 20_000, n))
    block = encode_block(t, [np.zeros(n, np.int16)], codec="compact")
    saved = timecol.CLOCK_LINES
    timecol.CLOCK_LINES = False
    try:
        plain = encode_block(t, [np.zeros(n, np.int16)], codec="compact")
    finally:
        timecol.CLOCK_LINES = saved
    codec, size = time_section(block)
    assert codec & CLOCK and size < 0.97 * time_section(plain)[1]
    for decoded in (decode_block(block)[0], compiled_times(block), interpreted_times(block)):
        assert np.array_equal(decoded, t)


@SETTINGS
@given(st.integers(1, 3000).flatmap(timestamps), st.sampled_from(["compact", "fast"]))
def test_every_clock_reads_back_through_all_three_decoders(t, codec):
    """Whatever the clock (regular, irregular, on a line, jittered about one,
    extreme), each decoder gives back the timestamps written."""
    block = encode_block(t, [np.zeros(len(t), np.int16)], codec=codec)
    for decoded in (decode_block(block)[0], compiled_times(block), interpreted_times(block)):
        assert np.array_equal(decoded, t)


@SETTINGS
@given(st.integers(3, 5000), st.integers(0, 10**9), st.integers(1, 2**16), st.data())
def test_a_line_is_found_where_one_exists(n, p, q, data):
    """Words floor((p k + r) / q): exact_line finds a line that gives every
    word back, whenever q < √((n − 1)/2) (Legendre: p/q is then a
    convergent of the mean step), and never one that does not."""
    r = data.draw(st.integers(0, q - 1))
    k = np.arange(n, dtype=np.int64)
    words = (p * k + r) // q
    words -= words[0]
    if words[-1] >= 2**40:
        return
    got_p, got_q, got_r = (int(v) for v in exact_line(words.astype(np.uint64), n))
    if got_q:
        assert np.array_equal((got_p * k + got_r) // got_q, words)
    if q * q < (n - 1) / 2:
        assert got_q and got_q <= q


@pytest.mark.parametrize("line, status", [
    ((125, 0, 0), ERR_BAD_CODE),            # q = 0
    ((125, 2**16 + 1, 0), ERR_BAD_CODE),    # q past 65,536
    ((125, 8, 8), ERR_BAD_CODE),            # r ≥ q
    (None, ERR_TRUNCATED),                  # the section ends inside the line
])
def test_a_damaged_line_is_refused_by_every_decoder(line, status):
    """A CLOCK section whose line is out of range or cut short decodes to an
    error status, and its block (checksum made good again) to
    CorruptDataError, in each decoder, never to times."""
    n = 100
    if line is None:
        section = bytes([0x80, 0x80])                       # a varint that never ends
    else:
        section = b"".join(_varint(v) for v in line) + bytes(8)
    buf = np.frombuffer(section, np.uint8)
    got, _ = npdecode.decode_time_words(buf, 0, len(buf), n, CLOCK | ZERO_RESIDUALS)
    assert got == status
    out, scratch = np.empty(n, np.uint64), np.empty(n, np.uint64)
    assert timecol.decode_time_words(buf, 0, len(buf), n, CLOCK | ZERO_RESIDUALS, out, scratch) == status
    t = np.empty(n, np.int64)
    assert timecol.decode_times(buf, 0, len(buf), n, CLOCK | ZERO_RESIDUALS, out, scratch,
                                np.uint64(0), np.uint64(1), t) == status


def test_a_damaged_line_in_a_block_with_a_good_checksum_is_corrupt():
    """The line's q set to 0 and the CRC recomputed: decode_block refuses."""
    t = daphnet_times()[:512]
    block = bytearray(encode_block(t, [np.zeros(512, np.int16)], codec="compact"))
    info = parse_block(bytes(block))
    at = int(info.section_offsets()[0])
    assert block[at:at + 2] == bytes([125, 8])             # p = 125, q = 8: one byte each
    block[at + 1] = 0
    from sensorq.checksum import crc32
    block[-4:] = crc32(bytes(block[:-4])).to_bytes(4, "little")
    with pytest.raises(CorruptDataError):
        decode_block(bytes(block))


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def test_queries_over_a_clock_line_match_numpy(tmp_path):
    """A cache of Daphnet (CLOCK time sections): a windowed count and
    per-10 s means, both tiers, against numpy over the CSV's values."""
    with open(DAPHNET_CSV, newline="") as f:
        rows = list(csv.reader(f))[1:]
    t = daphnet_times()
    vert = np.array([int(r[2]) for r in rows], np.int16)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [Channel("vert", "int16")], codec="compact")
        cache.append("s", t, [vert])
        cache.flush()
        assert all(c & CLOCK for c in cache.blocks("s").time_codec)
        end = int(t[-1]) + 1
        in_window = (t >= end - 10_000_000_000) & (vert > 1200)
        edges = (t // 10_000_000_000) * 10_000_000_000
        means = [vert[edges == e].mean() for e in np.unique(edges)]
        for engine in ("compiled", "interpreted"):
            assert cache.query("count where vert > 1200 last 10s", engine=engine).value == in_window.sum()
            got = cache.query("avg vert by 10s", engine=engine)
            assert np.allclose(got.columns["avg"], means, rtol=0, atol=1e-9)
