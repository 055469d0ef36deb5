"""Float channels: the ALP mode (codec/alp.py, docs/format.md §3) and its
fallbacks.  Every float that goes in comes out bit for bit (NaN payloads,
±inf, −0.0, subnormals); the engine's kernels, the numpy tier and
decode_block agree value for value; damaged ALP sections give a status, never
a read outside the section; queries over float channels equal numpy."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from samples import make_cache
from test_decoder import engine_rows

from sensorq.codec import alp, npdecode
from sensorq.codec.block import _encode_words, decode_block, encode_block, parse_block
from sensorq.codec.codes import DECIMAL, FLOATBITS, OK
from sensorq.codec.intcodec import decode_column
from sensorq.codec.scaling import divide_row
from sensorq.codec.transforms import float_words
from sensorq.errors import CorruptDataError

SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
MODE = DECIMAL | FLOATBITS


@st.composite
def float_columns(draw, n=None):
    """Float columns of the kinds sensors produce, with every special value
    mixed in: arbitrary bit patterns (NaN payloads included), decimals of
    0-12 places, integers scaled by 0.001 (float64 products), fixed point."""
    dtype = np.dtype(draw(st.sampled_from(["float32", "float64"])))
    n = n or draw(st.one_of(st.integers(1, 40), st.integers(1, 5000)))
    kind = draw(st.sampled_from(["bits", "decimal", "scaled", "fixed", "mixed", "any scale", "divided",
                                 "widened"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    walk = np.cumsum(rng.integers(-50, 51, n))
    if kind == "bits":
        uint = np.uint32 if dtype == np.float32 else np.uint64
        x = draw(hnp.arrays(uint, n, elements=hnp.from_dtype(np.dtype(uint)))).view(dtype)
    elif kind == "decimal":
        x = np.round(walk / 10.0 ** draw(st.integers(0, 12)), 12).astype(dtype)
    elif kind == "scaled":
        x = (walk * 0.001).astype(dtype)
    elif kind == "fixed":
        x = (walk * 2.0 ** -draw(st.integers(0, 30))).astype(dtype)
    elif kind == "any scale":        # integers times a constant the encoder has to find
        x = (walk * draw(st.floats(1e-6, 1e3))).astype(dtype)
    elif kind == "divided":
        x = (walk / draw(st.integers(2, 1000))).astype(dtype)
    elif kind == "widened":          # float32 (or half) values held as float64
        narrow = draw(st.sampled_from([np.float16, np.float32]))
        x = (np.sin(walk / 50.0) * 10.0 ** rng.integers(-3, 4)).astype(narrow).astype(dtype)
    else:
        x = (walk * 0.01).astype(dtype)       # decimals, a fifth of them full-precision outliers
        outliers = rng.random(n) < 0.2
        x[outliers] = (rng.normal(0, 1, n) * 10.0 ** rng.integers(-30, 30, n))[outliers]
    specials = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, -2.5e-310, 1e-40,
                         np.finfo(dtype).max, np.finfo(dtype).tiny / 4], dtype)
    payload_nan = np.array([0x7FF0000000000001, 0xFFF8DEADBEEF0001], np.uint64).view(np.float64)
    specials = np.concatenate([specials, payload_nan.astype(dtype) if dtype == np.float64 else
                               np.array([0x7F800001, 0xFFC0BEEF], np.uint32).view(np.float32)])
    picks = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, len(specials) - 1)),
                          max_size=draw(st.sampled_from([0, 3, n]))))
    for at, which in picks:
        x[at] = specials[which]
    return np.ascontiguousarray(x)


def timestamps(n: int) -> np.ndarray:
    return 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 10_000_000


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


# --- round trips -----------------------------------------------------------------------

@SETTINGS
@given(float_columns(), st.sampled_from(["compact", "fast"]))
def test_every_float_comes_back_bit_for_bit(x, codec):
    buf = encode_block(timestamps(len(x)), [x, x[::-1].copy()], codec=codec)
    _, (a, b) = decode_block(buf)
    assert same_bits(a, x) and same_bits(b, x[::-1])


@SETTINGS
@given(float_columns(), st.sampled_from(["compact", "fast"]), st.booleans())
def test_kernels_numpy_tier_and_decode_block_agree(x, codec, read_only):
    buf = encode_block(timestamps(len(x)), [x], codec=codec)
    status, _, rows = engine_rows(buf, read_only)
    assert status == OK
    _, (want,) = decode_block(buf)
    assert rows[0].tobytes() == want.astype(np.float64).tobytes()
    info = parse_block(buf)
    start = int(info.section_offsets()[1])
    end = start + int(info.entries["data_len"][0])
    codec_byte = int(info.entries["codec"][0])
    raw = np.frombuffer(buf, np.uint8)
    if codec_byte & MODE == MODE:
        status, values = npdecode.alp_values(raw, start, end, len(x), codec_byte, x.dtype)
        assert status == OK and same_bits(values, x)


@SETTINGS
@given(st.integers(0, 18), st.sampled_from([2**7, 2**30, 2**53, 2**63 - 1]), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_division_by_a_power_of_ten_is_the_division_bit_for_bit(e, bound, is32, seed):
    """divide_row's two fused multiply-adds (no divide instruction) give
    numpy's correctly rounded m / 10^e (then f32) for integers m up to 2^63,
    extremes included; any other divisor is divided."""
    m = np.random.default_rng(seed).integers(-bound, bound, 3000, endpoint=True).astype(np.float64)
    m[:6] = [0, 1, -1, bound, -bound, 2.0**63]
    for c in (10.0 ** e, 3.0 * (e + 1)):
        want = m / c
        if is32:
            want = want.astype(np.float32).astype(np.float64)
        row = m.copy()
        divide_row(row, len(row), c, is32)
        assert row.tobytes() == want.tobytes()


def test_real_decimals_stay_in_the_decimal_mode_older_readers_know():
    """Decimals of at most 9 places without specials: the DECIMAL section, as
    the transform of earlier versions wrote it, byte for byte."""
    x = np.round(np.random.default_rng(3).normal(20, 3, 4096), 2)
    info = parse_block(buf := encode_block(timestamps(len(x)), [x]))
    mode, exponent, words = float_words(x)
    section, codec_bits = _encode_words(words, True, True, floats=True)
    assert int(info.entries["codec"][0]) == codec_bits | DECIMAL == codec_bits | mode
    assert int(info.entries["dexp"][0]) == exponent == 2
    start = int(info.section_offsets()[1])
    assert buf[start:start + len(section)] == section


def test_an_alp_section_byte_by_byte():
    """Daphnet-like mg × 0.001 in float64, one NaN: kind 1 (multiply), c =
    0.001, one exception at position 2 with the NaN's bits, then the mantissas."""
    mg = np.array([1000, 1010, 0, -990, 5, 7, 1001, 999] * 8, np.int64)
    x = mg * 0.001
    x[2] = np.nan
    buf = encode_block(timestamps(len(x)), [x], codec="fast")
    info = parse_block(buf)
    assert int(info.entries["codec"][0]) & MODE == MODE
    start = int(info.section_offsets()[1])
    head = buf[start:start + 13 + 2 + 8]
    assert head[0] == alp.MULTIPLY
    assert np.frombuffer(head[1:9], "<f8")[0] == 0.001
    assert int.from_bytes(head[9:13], "little") == 1
    assert int.from_bytes(head[13:15], "little") == 2
    assert head[15:23] == x[2:3].tobytes()
    mantissas = mg.copy()
    mantissas[2] = mantissas[1]          # an exception repeats the mantissa before it
    section, bits = _encode_words(mantissas.view(np.uint64), True, False)
    assert buf[start + 23:start + 23 + len(section)] == section
    assert int(info.entries["codec"][0]) == bits | MODE


def test_values_with_ten_decimals_are_not_raw_bits():
    """The issue's recording: values that need 10 decimal places (more than
    DECIMAL's 9) take ALP, well under the raw bits' 8 bytes."""
    rng = np.random.default_rng(10)
    x = np.round(0.5 + np.cumsum(rng.normal(0, 5e-5, 4096)), 10)
    buf = encode_block(timestamps(len(x)), [x])
    info = parse_block(buf)
    assert int(info.entries["codec"][0]) & MODE == MODE
    assert info.entries["data_len"][0] < 0.45 * x.nbytes
    assert same_bits(decode_block(buf)[1][0], x)


def test_a_misleading_sample_is_caught_by_the_exceptions():
    """Decimals of 2 places where the encoder samples, 4 places everywhere
    else: the sample's choice leaves most values exceptions, so the encoder
    prices every value and takes 4 places."""
    n = 4096
    rng = np.random.default_rng(4)
    x = np.round(rng.normal(20, 3, n), 4)
    runs = np.zeros(n, bool)
    for r in range(alp.SAMPLE_RUNS):
        runs[r * (n // alp.SAMPLE_RUNS):r * (n // alp.SAMPLE_RUNS) + alp.SAMPLE_RUN] = True
    x[runs] = np.round(x[runs], 2)
    assert alp.choose(x, False, alp.SAMPLE_RUNS)[:2] == (alp.DIVIDE, 100.0)
    buf = encode_block(timestamps(n), [x])
    info = parse_block(buf)
    assert int(info.entries["codec"][0]) & MODE == DECIMAL and info.entries["dexp"][0] == 4
    assert same_bits(decode_block(buf)[1][0], x)


@pytest.mark.parametrize("codec", ["compact", "fast"])
def test_device_format_blocks_never_use_alp(codec):
    """Version 2 (the device port's bytes, exact.py / header2.py) keeps DECIMAL
    and FLOATBITS: the device reads no ALP section."""
    x = np.cumsum(np.random.default_rng(2).integers(-5, 6, 500)) * 0.001
    x[7] = np.nan
    buf = encode_block(timestamps(len(x)), [x], codec=codec, version=2)
    info = parse_block(buf, versions=(1, 2))
    assert int(info.entries["codec"][0]) & MODE == FLOATBITS
    assert same_bits(decode_block(buf)[1][0], x)


@pytest.mark.parametrize("scale, kind", [(0.00980665, alp.MULTIPLY), (1 / 3, alp.MULTIPLY), (3.0, alp.DIVIDE)])
def test_a_scale_that_is_no_power_is_found(scale, kind):
    """mg × 0.00980665 (m/s²), × 1/3, or / 3: integers times an arbitrary
    constant, which the encoder finds from the values (a float gcd, then the
    double within 3 ulps that gives every value back)."""
    mg = np.cumsum(np.random.default_rng(6).integers(-40, 41, 4096))
    x = mg / scale if kind == alp.DIVIDE else mg * scale
    buf = encode_block(timestamps(len(x)), [x])
    info = parse_block(buf)
    start = int(info.section_offsets()[1])
    assert int(info.entries["codec"][0]) & MODE == MODE and buf[start] == kind
    assert info.entries["data_len"][0] < 0.2 * x.nbytes       # ~7 bits a value, not 64
    assert same_bits(decode_block(buf)[1][0], x)


def test_widened_float32_values_cost_what_float32_costs():
    """float32 values held as float64 (their bits' low 29 are zero): the
    SHIFT kind stores the order-preserving words >> 29, about what the same
    values cost as float32, where the bit patterns took a third more."""
    rng = np.random.default_rng(12)
    narrow = (np.sin(np.arange(4096) / 500) + rng.normal(0, 1e-3, 4096)).astype(np.float32)
    wide = narrow.astype(np.float64)
    wide[[9, 99]] = [np.nan, 1 / 3]           # exceptions: a NaN payload, a full double
    buf = encode_block(timestamps(len(wide)), [wide])
    info = parse_block(buf)
    start = int(info.section_offsets()[1])
    assert int(info.entries["codec"][0]) & MODE == MODE and buf[start] == alp.SHIFT
    assert int.from_bytes(buf[start + 1:start + 9], "little") == 29
    narrow_len = parse_block(encode_block(timestamps(len(narrow)), [narrow])).entries["data_len"][0]
    assert info.entries["data_len"][0] < 1.1 * narrow_len
    assert same_bits(decode_block(buf)[1][0], wide)
    status, _, rows = engine_rows(buf, True)
    assert status == OK and rows[0].tobytes() == wide.tobytes()


def test_float32_decimals_held_as_float64_round_through_float32():
    """BasicMotions-like decimals rounded to float32, held as float64: kind
    0 with the NARROW flag (x = (f64) (f32) (m / 10^6)), a few bits a value."""
    rng = np.random.default_rng(13)
    x = np.round(np.cumsum(rng.normal(0, 0.01, 4096)), 6).astype(np.float32).astype(np.float64)
    x[5] = 0.1                                # a double that no float32 is: an exception
    buf = encode_block(timestamps(len(x)), [x])
    info = parse_block(buf)
    start = int(info.section_offsets()[1])
    assert int(info.entries["codec"][0]) & MODE == MODE and buf[start] == alp.DIVIDE | alp.NARROW
    assert info.entries["data_len"][0] < 0.4 * x.nbytes
    assert same_bits(decode_block(buf)[1][0], x)
    status, _, rows = engine_rows(buf, True)
    assert status == OK and rows[0].tobytes() == x.tobytes()


@pytest.mark.parametrize("dtype, kind", [("float32", alp.DIVIDE), ("float64", alp.SHIFT)])
def test_narrow_only_on_float64_divide_and_multiply(dtype, kind):
    """The NARROW flag on a float32 column, or on SHIFT, is corrupt."""
    if kind == alp.SHIFT:
        x = np.sin(np.arange(300) / 50).astype(np.float32).astype(np.float64)
    else:
        x = (np.cumsum(np.random.default_rng(1).integers(-9, 10, 300)) * 0.001).astype(dtype)
        x[4] = np.nan
    buf = bytearray(encode_block(timestamps(len(x)), [x], codec="fast"))
    info = parse_block(bytes(buf))
    start, length = int(info.section_offsets()[1]), int(info.entries["data_len"][0])
    assert int(info.entries["codec"][0]) & MODE == MODE and buf[start] & 0x7F == kind
    buf[start] = kind | alp.NARROW
    damaged = _reseal(buf)
    status, _, _ = engine_rows(damaged, True)
    np_status, _ = npdecode.alp_values(np.frombuffer(damaged, np.uint8), start, start + length,
                                       len(x), int(info.entries["codec"][0]), x.dtype)
    assert status == np_status == -2


@pytest.mark.parametrize("q", [0, 64, 2**40])
def test_a_shift_out_of_range_is_corrupt(q):
    wide = np.sin(np.arange(300) / 50).astype(np.float32).astype(np.float64)
    buf = bytearray(encode_block(timestamps(len(wide)), [wide], codec="fast"))
    info = parse_block(bytes(buf))
    start, length = int(info.section_offsets()[1]), int(info.entries["data_len"][0])
    assert buf[start] == alp.SHIFT
    buf[start + 1:start + 9] = q.to_bytes(8, "little")
    damaged = _reseal(buf)
    assert _all_decoders_fail_alike(damaged, start, length, len(wide)) == (-2, -2)


def test_true_doubles_fall_back_to_the_bit_patterns():
    x = np.random.default_rng(1).normal(0, 1, 4096)
    info = parse_block(encode_block(timestamps(len(x)), [x]))
    assert int(info.entries["codec"][0]) & MODE == FLOATBITS


# --- damage -----------------------------------------------------------------------------

def _alp_block(rng_seed: int = 0):
    rng = np.random.default_rng(rng_seed)
    x = np.cumsum(rng.integers(-50, 51, 300)) * 0.001
    x[[3, 50, 51, 299]] = [np.nan, np.inf, -0.0, 1e300]
    buf = bytearray(encode_block(timestamps(len(x)), [x], codec="fast"))
    info = parse_block(bytes(buf))
    assert int(info.entries["codec"][0]) & MODE == MODE
    return buf, int(info.section_offsets()[1]), int(info.entries["data_len"][0]), len(x)


def _reseal(buf: bytearray) -> bytes:
    """Recompute the CRC, so that the damage gets past parse_block to the decoders."""
    buf[-4:] = zlib.crc32(bytes(buf[:-4])).to_bytes(4, "little")
    return bytes(buf)


def _all_decoders_fail_alike(buf: bytes, start: int, length: int, n: int):
    status, _, _ = engine_rows(buf, True)
    info = parse_block(buf)
    codec = int(info.entries["codec"][0])
    raw = np.frombuffer(buf, np.uint8)
    np_status, _ = npdecode.alp_values(raw, start, start + length, n, codec, np.float64)
    return status, np_status


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_damaged_exception_sections_give_a_status(data):
    buf, start, length, n = _alp_block()
    at = start + data.draw(st.integers(0, 13 + 4 * 10 - 1))     # header, positions, bits
    buf[at] = data.draw(st.integers(0, 255))
    damaged = _reseal(buf)
    status, np_status = _all_decoders_fail_alike(damaged, start, length, n)
    assert status == np_status
    if status == OK:                     # damage that still decodes: the same values everywhere
        _, rows = engine_rows(damaged, True)[1:]
        assert rows[0].tobytes() == decode_block(damaged)[1][0].tobytes()
    else:
        with pytest.raises(CorruptDataError):
            decode_block(damaged)


@pytest.mark.parametrize("field, value, status", [
    (0, b"\x02", -2),                                     # kind 2 is not defined
    (1, np.float64(0.0).tobytes(), -2),                   # c = 0
    (1, np.float64(np.nan).tobytes(), -2),                # c = NaN
    (1, np.float64(-0.001).tobytes(), -2),                # c < 0
    (9, (301).to_bytes(4, "little"), -4),                 # more exceptions than values
    (9, (200).to_bytes(4, "little"), -1),                 # exceptions run past the section
    (9, (2**32 - 1).to_bytes(4, "little"), -4),
    (13, (300).to_bytes(2, "little"), -2),                # a position past the block
    (15, (3).to_bytes(2, "little"), -2),                  # positions not increasing
])
def test_each_bad_field_is_caught(field, value, status):
    buf, start, length, n = _alp_block()
    buf[start + field:start + field + len(value)] = value
    damaged = _reseal(buf)
    assert _all_decoders_fail_alike(damaged, start, length, n) == (status, status)
    with pytest.raises(CorruptDataError):
        decode_block(damaged)


def test_a_section_cut_short_gives_a_status():
    buf, start, length, n = _alp_block()
    raw = np.frombuffer(bytes(buf), np.uint8)
    info = parse_block(bytes(buf))
    codec = int(info.entries["codec"][0])
    words, scratch = np.empty(n, np.uint64), np.empty(n, np.uint64)
    for cut in range(length):
        status, _ = npdecode.alp_values(raw, start, start + cut, n, codec, np.float64)
        begin = alp.mantissa_start(raw, start, start + cut, n, False)
        if begin >= 0:     # the exceptions are whole: the mantissas are cut
            begin = decode_column(raw, begin, start + cut, n, codec, words, scratch)
        assert status < 0 and begin < 0, cut


# --- queries ----------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["compiled", "interpreted"])
def test_queries_over_float_channels_match_numpy(tmp_path, monkeypatch, engine):
    monkeypatch.setenv("SENSORQ_ENGINE", engine)
    rng = np.random.default_rng(8)
    n = 3000
    t = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 10_000_000
    a = np.cumsum(rng.integers(-40, 41, n)).astype(np.int16)
    b = rng.integers(1500, 3500, n).astype(np.int32)
    f = np.cumsum(rng.integers(-30, 31, n)) * 0.001          # mg x 0.001: ALP, multiply
    f[rng.random(n) < 0.03] = np.nan
    f[[10, 20]] = [np.inf, -0.0]
    with make_cache(tmp_path, t, a, b, f) as cache:
        finite = f[np.isfinite(f)]
        assert cache.query("count where f > 0.01V").value == (f > 0.01).sum()
        assert cache.query("max f").value == np.nanmax(f)
        assert cache.query("min f").value == np.nanmin(f)
        assert cache.query("count where f < 0V").value == (f < 0).sum()
        assert cache.query("avg f where f < 1000V").value == pytest.approx(finite.mean(), rel=1e-12)
