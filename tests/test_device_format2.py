"""Block format version 2 (docs/format.md §1–§3): the compact directory and
short sections, written and read by the host (sensorq/codec) and the device
port alike.

* every block decodes to its samples, and its directory reads back into the
  very ENTRY_DTYPE statistics version 1 keeps (what the engine reads);
* the compiled and the numpy decoders agree on version-2 sections, damaged
  ones included;
* the exact encoders' choices are the cheapest by brute force (every Rice
  parameter, every candidate section);
* on the Daphnet recording: at most 1.25 B/value with 128-sample blocks and
  1.0 with 512, all overhead counted, with the device's blocks byte for
  byte the host's.
"""
from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sensorq.codec import npdecode
from sensorq.codec.block import decode_block, encode_block, parse_block
from sensorq.codec.exact import mini_block_choice
from sensorq.codec.header import ALL_VERSIONS
from sensorq.codec.intcodec import decode_column, residuals
from sensorq.errors import CorruptDataError, FormatVersionError

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
STAT_FIELDS = ("dtype", "dexp", "count", "flags", "idx_min", "idx_max", "min", "max", "first", "last",
               "sum", "sumsq")
DTYPES = ["int8", "int16", "int32", "int64", "float32", "float64"]


@st.composite
def blocks(draw, max_n=300):
    n = draw(st.integers(1, max_n))
    start = draw(st.integers(-2**62, 2**62))
    steps = draw(hnp.arrays(np.int64, n, elements=st.sampled_from([0, 1, 1000, 15_625_000, 2**40])))
    steps[0] = 0
    t = start + np.cumsum(steps)
    cols = []
    for d in draw(st.lists(st.sampled_from(DTYPES), min_size=1, max_size=4)):
        kind = draw(st.sampled_from(["any", "walk", "lattice", "constant"]))
        if kind == "any":
            cols.append(draw(hnp.arrays(d, n, elements=hnp.from_dtype(np.dtype(d), allow_nan=True))))
        elif kind == "walk":
            walk = np.cumsum(draw(hnp.arrays(np.int64, n, elements=st.integers(-9, 9))))
            cols.append((walk / 100).astype(d) if d.startswith("float") else walk.astype(d))
        elif kind == "lattice":
            cols.append(draw(hnp.arrays(d, n, elements=st.sampled_from([-100, 0, 7, 120]))))
        else:
            cols.append(np.full(n, draw(st.integers(-100, 100)), d))
    return t, cols


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()      # NaN payloads and -0.0 too


@SETTINGS
@given(blocks(), st.sampled_from(["compact", "fast"]), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))
@example((np.array([0, 0]), [np.array([0.02, 0.04])]), "compact", 0, 0)       # v1 ALP, v2 DECIMAL
@example((np.array([0]), [np.array([9.0072e15], np.float32)]), "compact", 0, 0)
@example((np.array([0, 0]), [np.array([1.0, 2.0**53 + 2])]), "compact", 0, 0)     # DECIMAL past 2^53
@example((np.zeros(31, np.int64), [(8151450823375594 + 1000 * np.array(   # 16 digits: bits price lower
    [0, 1, 0, -1, -1, -1, 0, 2, 1, 3, 4, 1, 4, 6, 8, 6, 9, 11, 13, 14, 15, 17, 15, 15, 13, 13, 11, 8, 5, 4, 6]))
    / 1e9]), "compact", 0, 0)
def test_version_2_round_trip_and_the_same_statistics(block, codec, stream_id, seq):
    t, cols = block
    v1 = encode_block(t, cols, codec=codec, stream_id=stream_id, seq=seq)
    v2 = encode_block(t, cols, codec=codec, stream_id=stream_id, seq=seq, version=2)
    a, b = parse_block(v1), parse_block(v2, versions=ALL_VERSIONS)
    for name in ("n_samples", "n_channels", "t_first", "t_last", "tick", "stream_id", "seq"):
        assert getattr(a, name) == getattr(b, name), name
    # the same transforms, but where version 1 takes ALP (both float bits, 0x18),
    # which version 2 never does: there version 2 keeps DECIMAL or FLOATBITS,
    # and only DECIMAL records its exponent (dexp)
    mode1, mode2 = a.entries["codec"] & 0x18, b.entries["codec"] & 0x18
    assert (mode2 != 0x18).all()
    assert ((mode1 == mode2) | (mode1 == 0x18)).all()
    same_mode = mode1 == mode2
    for field in STAT_FIELDS:
        if field == "dexp":
            assert (a.entries[field][same_mode] == b.entries[field][same_mode]).all(), field
            assert (a.entries[field][~same_mode] == 0).all(), field
        else:
            assert a.entries[field].tobytes() == b.entries[field].tobytes(), field
    t2, cols2 = decode_block(v2)
    assert np.array_equal(t2, t) and all(same(x, y) for x, y in zip(cols2, cols))


def test_the_store_default_refuses_version_2_until_the_engine_can_place_it():
    t = np.arange(10, dtype=np.int64)
    block = encode_block(t, [t.astype(np.int16)], version=2)
    with pytest.raises(FormatVersionError, match="version 2"):
        parse_block(block)
    assert parse_block(block, versions=ALL_VERSIONS).n_samples == 10


@SETTINGS
@given(blocks(max_n=200), st.data())
def test_damaged_version_2_blocks_are_refused_or_decode_the_same_way(block, data):
    """Bytes changed behind a recomputed CRC: the host refuses the block or
    decodes it, and then both column decoders give the same words."""
    t, cols = block
    buf = bytearray(encode_block(t, cols, codec=data.draw(st.sampled_from(["compact", "fast"])), version=2))
    for _ in range(data.draw(st.integers(1, 4))):
        buf[data.draw(st.integers(0, len(buf) - 5))] = data.draw(st.integers(0, 255))
    buf[-4:] = zlib.crc32(bytes(buf[:-4])).to_bytes(4, "little")
    try:
        info = parse_block(bytes(buf), versions=ALL_VERSIONS)
    except CorruptDataError:
        return
    raw = np.frombuffer(bytes(buf), np.uint8)
    starts = info.section_offsets()
    lengths = [info.time_len] + info.entries["data_len"].tolist()
    codecs = [info.time_codec] + info.entries["codec"].tolist()
    for start, length, codec in zip(starts.tolist(), lengths, codecs):
        words, scratch = np.empty(info.n_samples, np.uint64), np.empty(info.n_samples, np.uint64)
        status = decode_column(raw, start, start + length, info.n_samples, codec, words, scratch)
        np_status, np_words = npdecode.decode_column(raw, start, start + length, info.n_samples, codec)
        assert status == np_status
        if status == 0:
            assert np.array_equal(words, np_words)


# --- the exact encoders' rules ---------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(hnp.arrays(np.uint64, st.integers(1, 32), elements=st.one_of(
    st.integers(0, 40), st.integers(0, 2**20), st.integers(0, 2**64 - 1))))
def test_mini_block_choice_is_the_cheapest(u):
    """Bit-packing at the bit length, or the least-cost Rice parameter (its
    smallest k), whichever is strictly smaller: checked against every k."""
    header, bits = mini_block_choice(u, 0, len(u), True)
    width = max(int(x) for x in u).bit_length()
    costs = {k: sum(int(x) >> k for x in u) + len(u) * (k + 1) for k in range(64)}
    best_k = min(costs, key=lambda k: (costs[k], k))
    if costs[best_k] < len(u) * width:
        assert (header, bits) == (0x80 | best_k, costs[best_k])
    else:
        assert (header, bits) == (width, len(u) * width)


@SETTINGS
@given(hnp.arrays(np.int16, st.integers(1, 200), elements=st.integers(-300, 300)),
       st.sampled_from(["compact", "fast"]))
def test_sections_are_the_smallest_candidate(values, codec):
    """The chosen channel section is no larger than any candidate priced
    independently here (orders 0-2, with and without a dictionary)."""
    t = np.arange(len(values), dtype=np.int64)
    info = parse_block(encode_block(t, [values], codec=codec, version=2), versions=ALL_VERSIONS)
    chosen = int(info.entries["data_len"][0])
    y = (values.astype(np.int64) - int(values.min())).astype(np.uint64)
    base_bytes = len(_varint(_zigzag(int(values.min()))))
    if not y.any():
        assert chosen == base_bytes
        return
    rice = codec == "compact"
    candidates = [base_bytes + _payload(y, order, rice) for order in range(3)]
    if rice:
        entries = np.unique(y)
        ranks = np.searchsorted(entries, y).astype(np.uint64)
        gaps = np.diff(entries, prepend=np.uint64(0)) - np.uint64(1)
        gaps[0] = entries[0]
        d = base_bytes + len(_varint(len(entries))) + _payload(gaps.astype(np.uint64), 0, True)
        candidates += [d + _payload(ranks, order, True) for order in range(3)]
    assert chosen == min(candidates)


def _payload(s: np.ndarray, order: int, rice: bool) -> int:
    u = np.empty(len(s), np.uint64)
    residuals(s, order, u)
    bits = sum(mini_block_choice(u, lo, min(len(u), lo + 32), rice)[1] for lo in range(0, len(u), 32))
    return (len(u) + 31) // 32 + (bits + 7) // 8


def _zigzag(v: int) -> int:
    return ((v << 1) ^ (v >> 63)) & (2**64 - 1)


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    return bytes(out + bytes([v]))


# --- Daphnet --------------------------------------------------------------------------

def daphnet():
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    try:
        from bench_storage import daphnet as load
    finally:
        sys.path.pop(0)
    _, t, cols, _ = load()
    return t, cols


@pytest.mark.parametrize("block_samples, target", [(128, 1.25), (512, 1.0)])
def test_daphnet_bytes_per_value_host_and_device_alike(dev, block_samples, target):
    """The Daphnet recording (9 int16 axes at 64 Hz, 7,040 samples) sealed by
    the device in blocks of block_samples: every block is the host's, and
    all bytes (headers, directories, sections, CRCs) per stored value meet
    the target."""
    t, cols = daphnet()
    ring = dev.ring(["int16"] * 9, block_samples, region_len=400_000)
    ring.append_many(t, cols)
    ring.flush()
    device = ring.blocks()
    host = [encode_block(t[i:i + block_samples], [c[i:i + block_samples] for c in cols], seq=k,
                         codec="compact", version=2) for k, i in enumerate(range(0, len(t), block_samples))]
    assert device == host
    per_value = sum(map(len, device)) / (len(t) * len(cols))
    print(f"\nDaphnet, {block_samples}-sample blocks: {per_value:.3f} B/value (target {target})")
    assert per_value <= target
