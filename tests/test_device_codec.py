"""The device port's block codec and ring (C, through ctypes) against the host codec.

* blocks the device seals are byte for byte the host's ``encode_block(...,
  version=2)`` of the same samples, with either codec;
* the host decodes device blocks and the device decodes host blocks of both
  codecs (dictionary and Rice included), exactly;
* damaged blocks give error codes, never a crash (also under ASan/UBSan);
* the ring evicts oldest first, keeps sequence numbers contiguous, rejects
  out-of-order and out-of-range samples without storing anything."""
from __future__ import annotations

import ctypes
import sys
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sensorq.codec import intcodec
from sensorq.codec.codes import CLOCK, SPLIT, ZERO_RESIDUALS
from sensorq.codec.block import decode_block, encode_block, parse_block
from sensorq.codec.header import ALL_VERSIONS
from sensorq.codec.header2 import varint
from sensorq.device.vectors import block_info
from sensorq.codec.intcodec import decode_column
from sensorq.device.native import DeviceError, DeviceLib, build_library
from sensorq.errors import CorruptDataError

from sanitized import run_under_sanitizers

@pytest.fixture(scope="module")
def dev_v1(tmp_path_factory):
    """The device port built with READ_V1=1: it also reads format version 1."""
    try:
        return DeviceLib(build_library(tmp_path_factory.mktemp("device_v1"), options=("READ_V1=1",)))
    except Exception as exc:  # noqa: BLE001 — no compiler here: the dev fixture skips too
        pytest.skip(f"no host build: {exc}")


@contextmanager
def without_entropy_sections():
    """Version 1 blocks as a READ_V1 library reads them: ENTROPY sections
    (codec bit 7, tANS) are the host's alone (docs/device.md)."""
    saved = intcodec.ENTROPY_SECTIONS
    intcodec.ENTROPY_SECTIONS = False
    try:
        yield
    finally:
        intcodec.ENTROPY_SECTIONS = saved


def _variant(tmp_path_factory, name: str, option: str) -> DeviceLib:
    """The host library built with one Makefile option (skipped without a compiler)."""
    try:
        return DeviceLib(build_library(tmp_path_factory.mktemp(name), options=(option,)))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no host build: {exc}")


@pytest.fixture(scope="module")
def dev_fast(tmp_path_factory):
    """The device port built with NO_COMPACT=1: the fast codec only (no compact encoder nor reader)."""
    return _variant(tmp_path_factory, "device_fast", "NO_COMPACT=1")


SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
INT_TYPES = ["int8", "int16", "int32", "int64"]


@st.composite
def timestamps(draw, n):
    kind = draw(st.sampled_from(["regular", "irregular", "extreme"]))
    if kind == "regular":
        start = draw(st.integers(-2**62, 2**62))
        step = draw(st.sampled_from([0, 1, 15_625_000, 1_000_000, 1_000_000_000]))
        return start + np.arange(n, dtype=np.int64) * step
    if kind == "irregular":
        start = draw(st.integers(-2**62, 2**62))
        steps = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 10**9)))
        steps[0] = 0
        return start + np.cumsum(steps)
    steps = draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n))
    t, now = [], -2**63
    for s in steps:
        now = min(now + s, 2**63 - 1)
        t.append(now)
    return np.array(t, np.int64)


@st.composite
def integer_blocks(draw, max_n=300):
    n = draw(st.integers(1, max_n))
    dtypes = draw(st.lists(st.sampled_from(INT_TYPES), min_size=1, max_size=4))
    cols = []
    for d in dtypes:
        kind = draw(st.sampled_from(["any", "small", "lattice", "constant"]))
        if kind == "any":
            cols.append(draw(hnp.arrays(d, n, elements=hnp.from_dtype(np.dtype(d)))))
        elif kind == "small":
            cols.append(draw(hnp.arrays(d, n, elements=st.integers(-20, 20))))
        elif kind == "lattice":   # few distinct values far apart: the compact codec's dictionary
            values = draw(hnp.arrays(d, n, elements=st.sampled_from([-100, 0, 7, 120])))
            cols.append(values)
        else:
            cols.append(np.full(n, draw(st.integers(-100, 100)), d))
    return draw(timestamps(n)), cols


def seal_on_device(dev, t, cols, stream_id=0, codec="compact"):
    ring = dev.ring([c.dtype.name for c in cols], len(t), stream_id=stream_id, codec=codec)
    ring.append_many(t, cols)
    blocks = ring.blocks()
    assert len(blocks) == 1 and ring.staged == 0
    return blocks[0]


@SETTINGS
@given(integer_blocks(), st.integers(0, 2**32 - 1), st.sampled_from(["compact", "fast"]))
def test_device_block_bytes_equal_host_encoder(dev, block, stream_id, codec):
    """Format version 2, both codecs: the device writes the host's bytes."""
    t, cols = block
    device = seal_on_device(dev, t, cols, stream_id, codec)
    assert device == encode_block(t, cols, stream_id=stream_id, seq=0, codec=codec, version=2)
    t2, cols2 = decode_block(device)         # the host reads what the device wrote
    assert np.array_equal(t2, t)
    for a, b in zip(cols2, cols):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@SETTINGS
@given(integer_blocks(max_n=2000), st.sampled_from(["compact", "fast"]))
def test_device_decodes_host_blocks(dev, block, codec):
    t, cols = block
    host = encode_block(t, cols, codec=codec, version=2)
    t2, cols2 = dev.decode(host)
    assert np.array_equal(t2, t)
    for a, b in zip(cols2, cols):
        assert np.array_equal(a, b.astype(np.int64))


def varint_end(data: bytes, at: int) -> int:
    while data[at] & 0x80:
        at += 1
    return at + 1


@pytest.mark.parametrize("version", [2, 1])
def test_compact_blocks_with_dictionary_and_rice_decode(dev, dev_v1, version):
    """Make sure the compact codec's dictionary and Rice paths are really hit
    (version 1 blocks: by a library built with READ_V1=1)."""
    rng = np.random.default_rng(7)
    n = 3000
    t = np.arange(n, dtype=np.int64) * 1_000_000
    lattice = rng.choice(np.array([-30000, -12345, 0, 999, 31000], np.int16), n)
    geometric = (rng.geometric(0.02, n) * rng.choice([-1, 1], n)).astype(np.int32)
    with without_entropy_sections():
        host = encode_block(t, [lattice, geometric], codec="compact", version=version)
    entries = block_info(host).entries
    assert entries["codec"][0] & 0x04, "expected a dictionary"
    offsets = block_info(host).section_offsets()
    section = host[offsets[2]:offsets[2] + entries["data_len"][1]]
    headers = 8 if version == 1 else varint_end(section, 0)
    n_mini = (n + 31) // 32
    assert any(h & 0x80 for h in section[headers:headers + n_mini]), "expected Rice mini-blocks"
    t2, (a, b) = (dev if version == 2 else dev_v1).decode(host)
    assert np.array_equal(t2, t) and np.array_equal(a, lattice) and np.array_equal(b, geometric)


@contextmanager
def rice_priced(price: float):
    """The compact encoder with Rice at ``price`` bits a value (0: wherever
    it is smaller) and no FRAMES sections, which hold no Rice."""
    saved = intcodec.RICE_DECODE_COST, intcodec.FRAMES_SECTIONS
    intcodec.RICE_DECODE_COST, intcodec.FRAMES_SECTIONS = price, False
    try:
        with without_entropy_sections():
            yield
    finally:
        intcodec.RICE_DECODE_COST, intcodec.FRAMES_SECTIONS = saved


def test_version_1_split_rice_sections_decode(dev_v1):
    """Version 1 holds Rice mini-blocks split (codes.SPLIT: every value's low
    bits, then the quotients), in the time column, a channel and a
    dictionary here; a READ_V1 library reads them exactly."""
    rng = np.random.default_rng(5)
    n = 3001                                  # a short last mini-block
    t = np.cumsum(rng.geometric(0.001, n)).astype(np.int64) * 1000
    noise = (rng.geometric(0.02, n) * rng.choice([-1, 1], n)).astype(np.int32)
    lattice = (rng.choice(np.arange(-300, 300) * 97, n) + rng.geometric(0.3, n)).astype(np.int32)
    with rice_priced(0.0):
        host = encode_block(t, [noise, lattice], codec="compact")
    info = block_info(host)
    assert info.time_codec & SPLIT == SPLIT
    assert all(c & SPLIT == SPLIT for c in info.entries["codec"].tolist())
    assert info.entries["codec"][1] & 0x04, "expected a dictionary"
    t2, (a, b) = dev_v1.decode(host)
    assert np.array_equal(t2, t) and np.array_equal(a, noise) and np.array_equal(b, lattice)


@SETTINGS
@given(block=integer_blocks(max_n=500), price=st.sampled_from([0.0, 0.5]))
def test_version_1_split_rice_blocks_read_with_the_build_option(dev_v1, block, price):
    """Random blocks with Rice cheap: whatever mix of split Rice, bit-packed
    and framed mini-blocks they take, a READ_V1 library reads them exactly."""
    t, cols = block
    with rice_priced(price):
        host = encode_block(t, cols, codec="compact")
    t2, cols2 = dev_v1.decode(host)
    assert np.array_equal(t2, t)
    for a, b in zip(cols2, cols):
        assert np.array_equal(a, b.astype(np.int64))


@SETTINGS
@given(integer_blocks(max_n=500), st.sampled_from(["compact", "fast"]))
def test_version_1_blocks_read_with_the_build_option(dev, dev_v1, block, codec):
    """Format version 1 (the host's store): SQ_ERR_VERSION by default, read
    exactly by a library built with READ_V1=1 (written without ENTROPY
    sections, which it refuses: a test below)."""
    t, cols = block
    with without_entropy_sections():
        host = encode_block(t, cols, codec=codec)
    with pytest.raises(DeviceError) as info:
        dev.decode(host)
    assert info.value.name == "SQ_ERR_VERSION"
    t2, cols2 = dev_v1.decode(host)
    assert np.array_equal(t2, t)
    for a, b in zip(cols2, cols):
        assert np.array_equal(a, b.astype(np.int64))


@pytest.mark.parametrize("codec,frames", [("compact", True), ("compact", False), ("fast", False)])
def test_version_1_framed_mini_blocks_read_with_the_build_option(dev_v1, codec, frames, monkeypatch):
    """Framed mini-blocks (format.md §3: a frame, then values less it), which
    the host writes for noise on a slow sway, read by a READ_V1 build: each
    frame with its own length, or (compact) a FRAMES section's one length."""
    monkeypatch.setattr(intcodec, "FRAMES_SECTIONS", frames)
    rng = np.random.default_rng(11)
    n = 4096
    t = np.arange(n, dtype=np.int64) * 1_000_000
    sway = np.rint(rng.normal(0, 12, n) + 80 * np.sin(np.arange(n) / 700)).astype(np.int16)
    with without_entropy_sections():
        host = encode_block(t, [sway], codec=codec)
    entries = block_info(host).entries
    offsets = block_info(host).section_offsets()
    headers = np.frombuffer(host, np.uint8)[offsets[1] + 8:offsets[1] + 8 + (n + 31) // 32]
    assert entries["codec"][0] & 0x07 == (3 if frames else 0)
    assert ((headers >= 0x41) & (headers < 0x80)).any()
    t2, (a,) = dev_v1.decode(host)
    assert np.array_equal(t2, t) and np.array_equal(a, sway.astype(np.int64))
    if frames:      # a frame length past 63 is corrupt, to the device as to the host
        bad = bytearray(host)
        bad[offsets[1] + 8 + (n + 31) // 32] = 64
        with pytest.raises(DeviceError) as info:
            bad[-4:] = zlib.crc32(bytes(bad[:-4])).to_bytes(4, "little")
            dev_v1.decode(bytes(bad))
        assert info.value.name == "SQ_ERR_CORRUPT"


def test_version_1_entropy_sections_are_refused_by_the_device(dev_v1):
    """A version 1 block with an ENTROPY section (here the time column of an
    irregular clock) is refused as corrupt by READ_V1 builds, not misread."""
    steps = np.random.default_rng(3).choice([15_000_000, 16_000_000], 2000)
    t = np.cumsum(steps).astype(np.int64)
    host = encode_block(t, [np.zeros(2000, np.int16)], codec="compact")
    assert parse_block(host).time_codec & intcodec.ENTROPY
    with pytest.raises(DeviceError) as info:
        dev_v1.decode(host)
    assert info.value.name == "SQ_ERR_CORRUPT"


@SETTINGS
@given(st.integers(32, 3000), st.integers(1, 10**7), st.integers(1, 2**16), st.data())
def test_version_1_clock_sections_read_with_the_build_option(dev_v1, n, p, q, data):
    """A version 1 block whose time column is a CLOCK section (a clock line,
    format.md §3: 64 Hz in whole ms is floor((125 k + r) / 8) ms), exact or
    with jitter about the line, read by READ_V1 builds word for word (their
    running sum of the line against numpy's floor division)."""
    r = data.draw(st.integers(0, q - 1))
    k = np.arange(n, dtype=np.int64)
    t = 10**15 + (p * k + r) // q * 1000
    if data.draw(st.booleans()):
        t = np.sort(t + np.random.default_rng(n).integers(-40_000, 40_000, n))
    with without_entropy_sections():
        host = encode_block(t, [np.zeros(n, np.int16)], codec="compact")
    t2, _ = dev_v1.decode(host)
    assert np.array_equal(t2, t)


def test_daphnets_clock_and_a_jittered_one_are_lines_on_the_device(dev_v1):
    """Daphnet's 64 Hz in ms (a CLOCK section of no residuals) and 1 kHz
    with ±20 µs of jitter (a fitted line and the jitter, in split Rice
    mini-blocks), read back."""
    n = 2000
    k = np.arange(n, dtype=np.int64)
    daphnet = k * 15_625_000 // 1_000_000 * 1_000_000
    jittered = np.sort(k * 1_000_000 + np.random.default_rng(5).integers(-20_000, 20_000, n))
    for t, codec in ((daphnet, CLOCK | ZERO_RESIDUALS), (jittered, CLOCK | SPLIT)):
        with without_entropy_sections():
            host = encode_block(t, [np.zeros(n, np.int16)], codec="compact")
        assert parse_block(host).time_codec == codec
        t2, _ = dev_v1.decode(host)
        assert np.array_equal(t2, t)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(integer_blocks())
def test_build_without_the_compact_encoder(dev_fast, block):
    """NO_COMPACT=1: fast blocks as the host's, a compact stream refused."""
    t, cols = block
    assert seal_on_device(dev_fast, t, cols, codec="fast") == encode_block(t, cols, codec="fast", version=2)
    with pytest.raises(DeviceError) as info:
        dev_fast.ring([c.dtype.name for c in cols], len(t), codec="compact")
    assert info.value.name == "SQ_ERR_UNSUPPORTED"


class ChanStats(ctypes.Structure):
    """sq_chan_stats (sensorq.h)."""
    _fields_ = [("dtype", ctypes.c_uint8), ("codec", ctypes.c_uint8), ("dexp", ctypes.c_uint8),
                ("data_len", ctypes.c_uint32), ("count", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("idx_min", ctypes.c_uint32), ("idx_max", ctypes.c_uint32), ("min", ctypes.c_int64),
                ("max", ctypes.c_int64), ("first", ctypes.c_int64), ("last", ctypes.c_int64),
                ("sum", ctypes.c_int64), ("sumsq", ctypes.c_uint64)]


@SETTINGS
@given(integer_blocks(), st.sampled_from(["fast", "compact"]))
def test_channel_statistics_are_the_hosts(dev, block, codec):
    """sq_block_channel makes a version-2 entry absolute — min, max, first,
    last, sum and sumsq (S2 + 2m·S1 + n·m², which the query path never needs
    and so only this call computes) — exactly as the host's parser does."""
    t, cols = block
    buf = encode_block(t, cols, codec=codec, version=2)
    host = parse_block(buf, versions=ALL_VERSIONS).entries
    info = dev.verify(buf)
    for ch in range(len(cols)):
        got = ChanStats()
        dev.check(dev.lib.sq_block_channel(buf, ctypes.byref(info), ch, ctypes.byref(got)), "channel")
        for field in ("dtype", "codec", "data_len", "count", "flags", "idx_min", "idx_max", "min", "max",
                      "first", "last", "sum"):
            assert getattr(got, field) == int(host[field][ch]), field
        assert got.sumsq == int(host["sumsq"][ch]) % 2**64


def test_a_fast_only_build_refuses_compact_columns(dev, dev_fast):
    """NO_COMPACT=1 also leaves the compact reader out: a block the host wrote
    "compact" (a dictionary column; a Rice-coded one) still verifies, but its
    compact column is refused with SQ_ERR_UNSUPPORTED, never misread; the
    full build decodes it exactly, and both decode the "fast" block."""
    rng = np.random.default_rng(7)
    t = 1_700_000_000_000_000_000 + np.arange(256, dtype=np.int64) * 1_000_000
    dictionary = rng.choice(np.array([-300, 5, 4000], dtype=np.int16), 256)      # three values
    rice = (rng.geometric(0.02, 256) * rng.choice([-1, 1], 256)).astype(np.int32)   # skewed residuals
    for column in (dictionary, rice):
        compact = encode_block(t, [column], codec="compact", version=2)
        fast = encode_block(t, [column], codec="fast", version=2)
        assert len(compact) < len(fast)          # the compact codec was used
        assert dev_fast.verify(compact).n_samples == 256
        with pytest.raises(DeviceError) as info:
            dev_fast.decode(compact)
        assert info.value.name == "SQ_ERR_UNSUPPORTED"
        for lib, block in ((dev, compact), (dev, fast), (dev_fast, fast)):
            t2, (got,) = lib.decode(block)
            assert np.array_equal(t2, t) and np.array_equal(got, column.astype(np.int64))


@pytest.fixture(scope="module")
def dev_crc_table(tmp_path_factory):
    """The device port built with CRC_TABLE=1: CRC-32 through a nibble table."""
    return _variant(tmp_path_factory, "device_crc", "CRC_TABLE=1")


@pytest.mark.parametrize("which", ["bitwise", "table"])
def test_crc_matches_zlib(dev, dev_crc_table, which):
    lib = dev if which == "bitwise" else dev_crc_table
    rng = np.random.default_rng(3)
    for size in (0, 1, 7, 100, 4096):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert lib.crc32(data) == zlib.crc32(data)


# --- damaged blocks ---------------------------------------------------------------

def device_outcome(dev, block: bytes):
    try:
        return dev.decode(block)
    except DeviceError as exc:
        return exc.name


def host_outcome(block: bytes):
    try:
        t, cols = decode_block(block, length=len(block))
        return t, [c.astype(np.int64) for c in cols]
    except CorruptDataError:
        return "corrupt"


@SETTINGS
@given(integer_blocks(max_n=200), st.data())
def test_bit_flips_and_truncation_are_rejected(dev, block, data):
    t, cols = block
    good = encode_block(t, cols, codec=data.draw(st.sampled_from(["compact", "fast"])), version=2)
    buf = bytearray(good)
    for _ in range(data.draw(st.integers(1, 3))):
        bit = data.draw(st.integers(0, 8 * len(buf) - 1))
        buf[bit // 8] ^= 1 << (bit % 8)
    outcome = device_outcome(dev, bytes(buf))
    assert outcome in ("SQ_ERR_CRC", "SQ_ERR_CORRUPT", "SQ_ERR_VERSION") or bytes(buf) == good
    cut = data.draw(st.integers(0, len(good) - 1))
    assert device_outcome(dev, good[:cut]) in ("SQ_ERR_CORRUPT", "SQ_ERR_CRC")


def recrc(buf: bytearray) -> bytes:
    buf[-4:] = zlib.crc32(bytes(buf[:-4])).to_bytes(4, "little")
    return bytes(buf)


@SETTINGS
@given(integer_blocks(max_n=200), st.data())
def test_damage_behind_a_valid_crc_is_caught_or_decodes_like_the_host(dev, block, data):
    """Mutations with the CRC recomputed reach the structural checks and the
    decoder: the device either rejects the block or decodes what the host
    decodes, and accepts whatever the host accepts."""
    t, cols = block
    buf = bytearray(encode_block(t, cols, codec=data.draw(st.sampled_from(["compact", "fast"])), version=2))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(buf) - 5))
        buf[at] = data.draw(st.integers(0, 255))
    damaged = recrc(buf)
    mine, host = device_outcome(dev, damaged), host_outcome(damaged)
    if isinstance(mine, str):
        assert mine in ("SQ_ERR_CORRUPT", "SQ_ERR_VERSION", "SQ_ERR_UNSUPPORTED")
        if mine == "SQ_ERR_UNSUPPORTED":      # a dtype byte became a float type: the host decodes floats
            return
        assert host == "corrupt" or not _words_fit(damaged), "the host accepted it"
    else:
        assert not isinstance(host, str), "the device accepted a block the host rejects"
        assert np.array_equal(mine[0], host[0])
        for a, b in zip(mine[1], host[1]):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("seq", [2**63 - 1, 2**63, 2**64 - 1])
def test_ten_byte_varints_read_and_an_eleventh_bit_group_refused(dev, seq):
    """The varint reader (its length first, then its groups from the last
    byte): a sequence number of 9 or 10 bytes reads back as the host reads
    it; a tenth byte above 1 (more than 64 bits) is refused by both."""
    t = np.arange(5, dtype=np.int64) * 1000
    block = encode_block(t, [np.arange(5, dtype=np.int16)], codec="fast", version=2, seq=seq)
    assert dev.verify(block).seq == seq == parse_block(block, versions=ALL_VERSIONS).seq
    code = varint(seq)
    assert block.count(code) == 1        # the header's seq varint, nowhere else
    at = block.index(code)
    if len(code) == 10:
        for tenth in (2, 0x7F):
            buf = bytearray(block)
            buf[at + 9] = tenth
            damaged = recrc(buf)
            assert device_outcome(dev, damaged) == "SQ_ERR_CORRUPT"
            assert host_outcome(damaged) == "corrupt"


def _words_fit(block: bytes) -> bool:
    """Whether every integer channel's decoded words fit its storage type (the
    device rejects a block where one does not; the host's decode_block wraps
    it into the dtype)."""
    info = block_info(block)
    raw = np.frombuffer(block, np.uint8)
    starts = info.section_offsets()
    words, scratch = np.empty(info.n_samples, np.uint64), np.empty(info.n_samples, np.uint64)
    for i, e in enumerate(info.entries):
        if int(e["dtype"]) > 4:
            continue
        decode_column(raw, int(starts[i + 1]), int(starts[i + 1] + e["data_len"]), info.n_samples,
                      int(e["codec"]), words, scratch)
        lim = np.iinfo(INT_TYPES[int(e["dtype"]) - 1])
        values = words.view(np.int64)
        if values.min() < lim.min or values.max() > lim.max:
            return False
    return True


def test_sanitized_build_survives_damaged_blocks_and_bytecode(tmp_path):
    """The same kind of damage, run in a child process against the library built
    with -fsanitize=address,undefined: any out-of-bounds read aborts it."""
    done = run_under_sanitizers(tmp_path, Path(__file__), [], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "damaged inputs: " in done.stdout


def sanitized_main(lib_path: str) -> None:
    """Child process of the test above: random damage, every call must return."""
    from sensorq.device.bytecode import compile_plan
    from sensorq.query import plan as P
    from sensorq.schema import Channel, Stream

    dev = DeviceLib(Path(lib_path))
    rng = np.random.default_rng(11)
    stream = Stream("s", (Channel("a", "int16"), Channel("b", "int32")))
    ref = P.ChannelRef("b", 1, "int32", 1.0, "")
    plan = P.AggregateQuery("s", "sum", ref, P.RawCompare(P.ChannelRef("a", 0, "int16", 1.0, ""), ">", 3.0),
                            P.TimeRange(10, 2000), P.Now("data", 1000), "")
    code = compile_plan(plan, stream)
    runs = 0
    for i in range(400):
        n = int(rng.integers(1, 300))
        t = np.cumsum(rng.integers(0, 5, n)).astype(np.int64)
        a = rng.integers(-50, 50, n).astype(np.int16)
        b = (rng.geometric(0.05, n) * rng.choice([-1, 1], n)).astype(np.int32)
        buf = bytearray(encode_block(t, [a, b], codec="compact" if i % 2 else "fast", version=2))
        for _ in range(int(rng.integers(1, 4))):
            buf[int(rng.integers(0, len(buf) - 4))] = int(rng.integers(0, 256))
        for block in (recrc(buf), bytes(buf), recrc(buf)[:int(rng.integers(0, len(buf)))]):
            device_outcome(dev, block)
            try:
                dev.run_blocks(code, [block], 1000)
            except DeviceError:
                pass
            runs += 1
        bad = bytearray(code)
        bad[int(rng.integers(0, len(bad)))] = int(rng.integers(0, 256))
        for candidate in (bytes(bad), recrc(bad), bytes(bad[:int(rng.integers(0, len(bad)))])):
            try:
                dev.run_blocks(candidate, [bytes(encode_block(t, [a, b], version=2))], 1000)
            except DeviceError:
                pass
            runs += 1
    runs += damaged_rings(dev, code, rng)
    print(f"damaged inputs: {runs}")


def damaged_rings(dev, code: bytes, rng) -> int:
    """Rings over damaged memory: a RAM region and a flash partition with
    random bytes changed (or all random), re-opened or mounted, then
    iterated, queried and appended to.  Every call must return."""
    import ctypes
    from sensorq.device.native import code_schema
    from sensorq.device.flashsim import NorFlash
    runs = 0
    t = np.cumsum(rng.integers(1, 5, 400)).astype(np.int64)
    a = rng.integers(-50, 50, 400).astype(np.int16)
    b = (rng.geometric(0.05, 400) * rng.choice([-1, 1], 400)).astype(np.int32)
    for i in range(60):
        schema = code_schema(code)
        if i % 2:
            ring = dev.ring(["int16", "int32"], 16, region_len=12_000, schema=schema)
        else:
            ring = dev.ring(["int16", "int32"], 16, schema=schema, flash=NorFlash(8192, 256, 4))
        ring.append_many(t, [a, b])
        memory = ring.region if i % 2 else ring.flash.mem.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
        size = ring.region_len if i % 2 else ring.flash.size
        for _ in range(int(rng.integers(1, 40))) if i % 10 else []:
            memory[int(rng.integers(0, size))] = int(rng.integers(0, 256))
        if i % 10 == 0:
            ctypes.memmove(memory, rng.integers(0, 256, size, dtype=np.uint8).tobytes(), size)
        try:
            if i % 2:
                ring.reopen()
            else:
                ring = dev.ring(["int16", "int32"], 16, schema=schema, flash=ring.flash,
                                mount="resume" if i % 4 else True, work=ring.work)
        except DeviceError:
            runs += 1
            continue
        for call in (ring.blocks, lambda: ring.query(code, 1000), ring.stats, lambda: ring.blocks_after(3),
                     lambda: ring.append_many(t[-1] + t[:40], [a[:40], b[:40]]), ring.flush):
            try:
                call()
            except DeviceError:
                pass
            runs += 1
    return runs


# --- the ring -----------------------------------------------------------------------

def test_ring_evicts_oldest_blocks_and_keeps_sequence(dev):
    rng = np.random.default_rng(5)
    block_samples, total = 50, 5000
    ring = dev.ring(["int16", "int8"], block_samples)
    ring = dev.ring(["int16", "int8"], block_samples, region_len=ring.region_len * 3)
    t = np.cumsum(rng.integers(1, 4, total)).astype(np.int64) * 1000
    x = rng.integers(-3000, 3000, total).astype(np.int16)
    y = rng.integers(-100, 100, total).astype(np.int8)
    kept_counts = []
    for start in range(0, total, 250):
        ring.append_many(t[start:start + 250], [x[start:start + 250], y[start:start + 250]])
        blocks = ring.blocks()
        kept_counts.append(len(blocks))
        seqs = [block_info(b).seq for b in blocks]
        newest = (start + 250) // block_samples - 1
        assert seqs == list(range(newest - len(seqs) + 1, newest + 1)), "oldest first, no gaps"
        for b, seq in zip(blocks, seqs):
            lo = seq * block_samples
            bt, (bx, by) = decode_block(b)
            assert np.array_equal(bt, t[lo:lo + block_samples])
            assert np.array_equal(bx, x[lo:lo + block_samples])
            assert np.array_equal(by, y[lo:lo + block_samples])
    assert max(kept_counts) > 2 and kept_counts[-1] < total // block_samples


def test_ring_rejects_bad_samples_without_storing_them(dev):
    ring = dev.ring(["int8", "int32"], 4)
    ring.append(100, [1, 2])
    for t, values, name in [(99, [1, 2], "SQ_ERR_ORDER"), (100, [128, 0], "SQ_ERR_RANGE"),
                            (100, [-129, 0], "SQ_ERR_RANGE"), (100, [0, 2**31], "SQ_ERR_RANGE")]:
        with pytest.raises(DeviceError) as info:
            ring.append(t, values)
        assert info.value.name == name
    assert ring.staged == 1
    ring.append(100, [-128, -2**31])
    ring.append(101, [127, 2**31 - 1])
    ring.seal()
    (block,) = ring.blocks()
    t, (a, b) = decode_block(block)
    assert t.tolist() == [100, 100, 101] and a.tolist() == [1, -128, 127]
    assert b.tolist() == [2, -2**31, 2**31 - 1]


def test_ring_init_errors(dev):
    with pytest.raises(DeviceError) as info:
        dev.ring(["int16"], 64, region_len=100)
    assert info.value.name == "SQ_ERR_FULL"
    with pytest.raises(DeviceError) as info:
        dev.ring(["int16"], 0)
    assert info.value.name == "SQ_ERR_ARG"


if __name__ == "__main__":
    sanitized_main(sys.argv[1])
