"""ENTROPY sections (docs/format.md §3, sensorq/codec/tans.py): a tANS
example worked by hand, round trips of low-entropy streams through the
encoder (every predictor, dictionary ranks, floats, time columns), the
compiled, engine and numpy decoders against each other and against the
values that went in, and damaged sections rejected with a status."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensorq.codec import npdecode, tans
from sensorq.codec import intcodec
from sensorq.codec.bits import unpack32_bytes
from sensorq.codec.block import decode_block, encode_block, parse_block
from sensorq.codec.codes import (DECIMAL, DICT, ENTROPY, ENTROPY_BINNED, ENTROPY_OFF, ENTROPY_SYMBOLS,
                                 ERR_BAD_CODE, ERR_LENGTH, ERR_TRUNCATED, FLOATBITS, SHORT, ZERO_RESIDUALS)
from sensorq.codec.intcodec import (decode_column, encode_column, encode_column_priced,
                                    max_section_bytes)
from sensorq.errors import CorruptDataError
from test_decoder import engine_rows, guarded  # noqa: F401  (a fixture)

SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def compiled(buf, pos, end, n, codec):
    out = np.empty(n, np.uint64)
    return decode_column(buf, pos, end, n, codec, out, np.empty(n, np.uint64)), out


def encode(words: np.ndarray, signed: bool = False):
    out = np.zeros(max_section_bytes(len(words)), np.uint8)
    end, codec = encode_column(words, signed, True, True, out, 0)
    return out[:end].copy(), int(codec)


def both_decode(section: np.ndarray, n: int, codec: int):
    """(status, words) of the compiled decoder, after checking that the numpy
    decoder agrees: the same status, and on success the same words."""
    status, words = compiled(section, 0, len(section), n, codec)
    np_status, np_words = npdecode.decode_column(section, 0, len(section), n, codec)
    assert np_status == status
    if status == 0:
        assert (np_words == words).all()
    return status, words


# --- the coding, by hand ----------------------------------------------------------

# L = 5 (32 slots), two symbols: value 0 with f = 24, value 3 with f = 8.  The
# spread's step is 16 + 4 + 3 = 23: symbol 0 takes slots 0, 23, 14, 5, 28, 19,
# 10, 1, 24, 15, 6, 29, 20, 11, 2, 25, 16, 7, 30, 21, 12, 3, 26, 17 and symbol 1
# the next eight: 8, 31, 22, 13, 4, 27, 18, 9.
HAND_SPREAD = [0] * 32
for _slot in (8, 31, 22, 13, 4, 27, 18, 9):
    HAND_SPREAD[_slot] = 1


def test_spread_and_decoding_table_by_hand():
    slots = np.empty(32, np.int64)
    tans.spread(np.array([24, 8]), 2, 5, slots)
    assert slots.tolist() == HAND_SPREAD
    # symbol 1's slots in slot order 4, 8, 9, 13, 18, 22, 27, 31 get k = 8..15:
    # nb = 5 - floor(log2 k) = 2, base = 4k - 32 = 0, 4, ..., 28
    value, bits, base = npdecode._entropy_table([24, 8], 5, [0, 3])
    assert [base[x] for x in (4, 8, 9, 13, 18, 22, 27, 31)] == list(range(0, 32, 4))
    assert {bits[x] for x in (4, 8, 9, 13, 18, 22, 27, 31)} == {2}
    # symbol 0's first eight slots (0, 1, 2, 3, 5, 6, 7, 10) get k = 24..31: one
    # bit, base 2k - 32; the other sixteen k = 32..47: no bits, base k - 32
    assert [(bits[x], base[x]) for x in (0, 1, 2, 3, 5, 6, 7, 10)] == [(1, b) for b in range(16, 32, 2)]
    assert [(bits[x], base[x]) for x in (11, 12, 14, 15, 16, 17, 19, 20, 21, 23, 24, 25, 26, 28, 29, 30)] \
        == [(0, b) for b in range(16)]
    assert [value[x] for x in range(32)] == [3 * s for s in HAND_SPREAD]


def test_tiny_payload_by_hand(guarded):  # noqa: F811
    """Residuals [0, 3] (predictor 0) with the table above.  Encoding runs
    backwards from every state at 2^5 = 32: state 1 codes the 3 (f = 8:
    nb = 2 since 32 >> 1 = 16 is not below 2f, bits 32 & 3 = 0, k = 32 >> 2 =
    8: symbol 1's first slot, 4); state 0 codes the 0 (f = 24: nb = 0, k = 32:
    symbol 0's ninth slot, 11).  States 2-7 stay at slot 0."""
    # L, S - 1, values 0 and gap 3 - 0 - 1 = 2; then the bits: f_0 - 1 = 23, x_0 = 11,
    # x_1 = 4, x_2..x_7 = 0 (5 bits each), then 0 bits for the 0 and 2 bits (00) for
    # the 3: 47 bits, 23 | 11 << 5 | 4 << 10 = 0x1177
    check_hand_payload(guarded, [0, 3], 0, bytes([5, 1, 0, 2, 0x77, 0x11, 0, 0, 0, 0]))


def check_hand_payload(guarded, residuals, low_bits, want):  # noqa: F811
    """tans.write of ``residuals`` (predictor 0) with the table above (L = 5,
    f = (24, 8), symbols 0 and 3) and ``low_bits`` gives the bytes ``want``;
    after a base of 1000, both decoders give back 1000 + each residual."""
    values = np.array([0, 3] + [0] * 62, np.uint64)
    freqs = np.array([24, 8] + [0] * 62, np.int64)
    out = np.zeros(64, np.uint8)
    end = tans.write(np.array(residuals, np.uint64), 0, low_bits, values, freqs, 5, 2, out, 0)
    assert out[:end].tobytes() == want
    section = (1000).to_bytes(8, "little") + want
    expected = [1000 + r for r in residuals]
    status, words = compiled(*guarded.at_end(section), len(residuals), ENTROPY)
    assert status == 0 and words.tolist() == expected
    assert npdecode.decode_column(np.frombuffer(section, np.uint8), 0, len(section), len(residuals),
                                  ENTROPY)[1].tolist() == expected


def reference_payload(u, values, freqs, table_log, low_bits=0):
    """An ENTROPY payload (predictor 0) written from docs/format.md §3 in
    plain Python: the spread, then coding backwards from state 2^L, the
    bits written forwards; with ``low_bits``, the low bits of each residual
    packed after the header and the symbols the residuals' high parts."""
    low = [v & ((1 << low_bits) - 1) for v in u]
    u = [v >> low_bits for v in u]
    size = 1 << table_log
    step = (size >> 1) + (size >> 3) + 3
    symbol_of, slot = [0] * size, 0
    for s, f in enumerate(freqs):
        for _ in range(f):
            symbol_of[slot] = s
            slot = (slot + step) & (size - 1)
    slots = [[x for x in range(size) if symbol_of[x] == s] for s in range(len(freqs))]
    index = {v: s for s, v in enumerate(values)}
    states, chunks = [size] * 8, [None] * len(u)
    for i in range(len(u) - 1, -1, -1):
        s = index[u[i]]
        f, x = freqs[s], states[i % 8]
        nb = 0
        while x >> nb >= 2 * f:
            nb += 1
        chunks[i] = (x & ((1 << nb) - 1), nb)
        states[i % 8] = size + slots[s][(x >> nb) - f]
    head = bytearray([table_log | low_bits << 3, len(values) - 1])
    for i, v in enumerate(values):
        gap = v if i == 0 else v - values[i - 1] - 1
        while gap >= 0x80:
            head.append(gap & 0x7F | 0x80)
            gap >>= 7
        head.append(gap)
    packed = sum(v << (i * low_bits) for i, v in enumerate(low))
    head += packed.to_bytes((low_bits * len(low) + 7) // 8, "little")
    fields = [(f - 1, table_log) for f in freqs[:-1]] + [(x - size, table_log) for x in states]
    acc, used = 0, 0
    for value, bits in fields + chunks:
        acc |= value << used
        used += bits
    return bytes(head) + acc.to_bytes((used + 7) // 8, "little")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 200), st.integers(1, 64),
       st.sampled_from([100, 5000, 2**40, 2**64]))
def test_payload_equals_the_reference_encoder(seed, n, n_symbols, top):
    """tans.write against reference_payload, with the frequencies and L the
    encoder's pricing chose (a bit lost where the encoder's accumulator
    was nearly full once went unnoticed by round trips of large streams)."""
    rng = np.random.default_rng(seed)
    symbols = rng.integers(0, top, min(n, n_symbols), dtype=np.uint64, endpoint=False)
    u = symbols[rng.integers(0, len(symbols), n)]
    values = np.empty(64, np.uint64)
    counts = np.empty(64, np.int64)
    freqs = np.empty(64, np.int64)
    _, table_log, n_symbols = tans.plan(u, 0, 0, values, counts, freqs)
    if n_symbols <= 0:
        return
    out = np.zeros(16 * n + 1000, np.uint8)
    end = tans.write(u, 0, 0, values, freqs, table_log, n_symbols, out, 0)
    assert out[:end].tobytes() == reference_payload(
        [int(v) for v in u], [int(v) for v in values[:n_symbols]], [int(f) for f in freqs[:n_symbols]],
        table_log)
    section = np.frombuffer((0).to_bytes(8, "little") + out[:end].tobytes(), np.uint8)
    status, words = both_decode(section, n, ENTROPY)
    assert status == 0 and (words == u).all()


def test_binned_payload_by_hand(guarded):  # noqa: F811
    """The payload above with two low bits: residuals [1, 14] are high parts
    [0, 3] (coded as above) and low parts 1 and 2, packed after the
    symbols' values: 01, then 10, LSB-first, 0b1001."""
    check_hand_payload(guarded, [1, 14], 2, bytes([5 | 2 << 3, 1, 0, 2, 0b1001, 0x77, 0x11, 0, 0, 0, 0]))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 300), st.integers(1, 31), st.integers(0, 40))
def test_binned_payload_equals_the_reference_encoder(seed, n, low_bits, spread_bits):
    """tans.write with low bits against reference_payload; both decoders
    give the residuals back (one symbol or many: the high parts of values
    spread over 2^spread_bits)."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 2**spread_bits, n, dtype=np.uint64, endpoint=True)
    values = np.empty(64, np.uint64)
    counts = np.empty(64, np.int64)
    freqs = np.empty(64, np.int64)
    _, table_log, n_symbols = tans.plan(u, 0, low_bits, values, counts, freqs)
    if n_symbols <= 0:
        assert len(np.unique(u >> np.uint64(low_bits))) > 64
        return
    out = np.zeros(16 * n + 1000, np.uint8)
    end = tans.write(u, 0, low_bits, values, freqs, table_log, n_symbols, out, 0)
    assert out[:end].tobytes() == reference_payload(
        [int(v) for v in u], [int(v) for v in values[:n_symbols]], [int(f) for f in freqs[:n_symbols]],
        table_log, low_bits)
    section = np.frombuffer((0).to_bytes(8, "little") + out[:end].tobytes(), np.uint8)
    status, words = both_decode(section, n, ENTROPY)
    assert status == 0 and (words == u).all()


def test_low_bits_copy_is_padded_for_the_vector_unpacker():
    assert tans._LOW_BITS_PADDING >= max(unpack32_bytes(w) for w in range(1, tans.LOW_BITS_MAX + 1))


def test_symbol_values_lie_within_the_value_span():
    """A decoding table slot holds the symbol's value less the smallest in
    54 bits: a payload whose values span 2^54 or more is corrupt to both
    decoders, one just inside decodes, and the encoder never writes one."""
    u = [0, 1, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0]
    for top, want in ((2**54 - 1, 0), (2**54, ERR_BAD_CODE)):
        words = [top if v == 5 else v for v in u]
        payload = reference_payload(words, [0, 1, top], [20, 8, 4], 5)
        section = np.frombuffer((7).to_bytes(8, "little") + payload, np.uint8)
        status, decoded = both_decode(section, len(words), ENTROPY)
        assert status == want
        if status == 0:
            assert decoded.tolist() == [(7 + w) % 2**64 for w in words]
    wide = np.array([0, 2**60] * 8 + [0] * 4000, np.uint64)
    assert tans.plan(wide, 0, 0, *(np.empty(64, t) for t in (np.uint64, np.int64, np.int64)))[0] == -1
    section, codec = encode(wide)
    assert not codec & ENTROPY and (both_decode(section, len(wide), codec)[1] == wide).all()


@pytest.mark.parametrize("low", [0, 3, 2**54 - 5, 2**54 - 4, 2**60, 2**64 - 2**53])
def test_symbol_values_far_from_zero_decode_exactly(low):
    """The decoder's slots hold a symbol's value itself while every value of
    the payload is under 2^54, else its offset from the smallest (added after
    the decode loop): both forms, and the boundary between them, decode to
    the values that went in, in both decoders."""
    rng = np.random.default_rng(low % 1000)
    symbols = [low, low + 1, low + 4]           # the largest under 2^54 or not, around the boundary
    words = [symbols[k] for k in rng.choice(3, 203, p=[0.7, 0.2, 0.1])]
    payload = reference_payload(words, symbols, [20, 8, 4], 5)
    section = np.frombuffer((0).to_bytes(8, "little") + payload, np.uint8)
    status, decoded = both_decode(section, len(words), ENTROPY)
    assert status == 0 and decoded.tolist() == words


# --- round trips through the encoder ------------------------------------------------

@st.composite
def low_entropy_words(draw):
    """Words whose order-0, 1 or 2 residuals take a few values, mostly one:
    a level, a walk, a ramp; symbols small or anywhere in 64 bits."""
    n = draw(st.integers(1, 5000))
    n_symbols = draw(st.integers(1, 70))
    seed = draw(st.integers(0, 2**32 - 1))
    order = draw(st.integers(0, 2))
    rng = np.random.default_rng(seed)
    top = draw(st.sampled_from([3, 300, 2**20, 2**63]))
    symbols = rng.integers(0, top, n_symbols, dtype=np.uint64, endpoint=True)
    weights = rng.random(n_symbols) ** draw(st.sampled_from([1, 4, 12]))
    steps = symbols[rng.choice(n_symbols, n, p=weights / weights.sum())]
    for _ in range(order):
        steps = np.cumsum(steps, dtype=np.uint64)
    return steps


@SETTINGS
@given(low_entropy_words(), st.booleans())
def test_low_entropy_words_round_trip_in_both_decoders(words, signed):
    section, codec = encode(words, signed)
    status, decoded = both_decode(section, len(words), codec)
    assert status == 0 and (decoded == words).all()


def test_low_entropy_streams_take_the_entropy_form_at_every_order():
    rng = np.random.default_rng(3)
    steps = rng.choice(np.array([0, 1, 2], np.uint64), 4096, p=[0.9, 0.05, 0.05]) + np.uint64(5000)
    for order in range(3):
        words = steps.copy()
        for _ in range(order):
            words = np.cumsum(words, dtype=np.uint64)
        section, codec = encode(words)
        assert codec & ENTROPY and codec & 3 == order, (order, codec)
        assert len(section) < 4096 * 0.12          # ~0.6 bits a value of entropy
        assert (both_decode(section, 4096, codec)[1] == words).all()


def test_dictionary_ranks_take_the_entropy_form():
    """Lattice values (Daphnet-like mg steps) in a slow walk: the ranks' steps
    are a few symbols, coded after the dictionary."""
    rng = np.random.default_rng(5)
    lattice = np.rint(np.arange(-40, 40) * 9.81).astype(np.int64)
    ranks = np.clip(np.cumsum(rng.choice([-1, 0, 1], 4096, p=[0.1, 0.8, 0.1])) + 40, 0, 79)
    words = lattice[ranks].view(np.uint64)
    section, codec = encode(words, True)
    assert codec & ENTROPY and codec & DICT
    assert (both_decode(section, 4096, codec)[1] == words).all()


def test_noise_keeps_the_mini_block_form():
    words = np.random.default_rng(7).integers(0, 2**20, 4096).astype(np.uint64)
    assert not encode(words)[1] & ENTROPY


# --- blocks: floats, time columns, the engine's decoder ---------------------------

def irregular_clock(rng, n):
    """Daphnet's 15/16 ms steps, and a radio link whose steps are 10 ms or 250 ms."""
    steps = rng.choice([15_000_000, 16_000_000], n) if rng.random() < 0.5 \
        else np.where(rng.random(n) < 0.25, 250_000_000, 10_000_000)
    return 1_795_478_400_000_000_000 + np.cumsum(steps).astype(np.int64)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.sampled_from([np.float64, np.float32]))
def test_float_and_time_columns_round_trip_in_every_decoder(seed, decimals, dtype):
    """A 1 Hz temperature with 1-3 decimals (DECIMAL or ALP mantissas) and an
    irregular clock: decode_block, the engine's rows and the numpy tier all
    give back the values bit for bit."""
    rng = np.random.default_rng(seed)
    n = 4096
    temps = np.round(21 + np.cumsum(rng.choice([-1, 0, 1], n, p=[0.1, 0.8, 0.1])) / 10 ** decimals,
                     decimals).astype(dtype)
    ints = np.cumsum(rng.choice([-1, 0, 1], n, p=[0.05, 0.9, 0.05])).astype(np.int16)
    t = irregular_clock(rng, n)
    buf = encode_block(t, [temps, ints])
    info = parse_block(buf)
    assert info.time_codec & ENTROPY
    assert all(e["codec"] & ENTROPY for e in info.entries), info.entries["codec"]
    t2, (temps2, ints2) = decode_block(buf)
    assert (t2 == t).all() and temps2.tobytes() == temps.tobytes() and (ints2 == ints).all()
    status, t3, rows = engine_rows(buf, True)
    assert status == 0 and (t3 == t).all()
    assert rows[0].tobytes() == temps.astype(np.float64).tobytes()
    assert (rows[1] == ints).all()
    raw = np.frombuffer(buf, np.uint8)
    starts = info.section_offsets()
    st_, words = npdecode.decode_column(raw, int(starts[0]), int(starts[0] + info.time_len), n,
                                        info.time_codec)
    assert st_ == 0 and (npdecode.time_values(words, info.t_first, info.tick) == t).all()


def test_version_2_blocks_refuse_the_entropy_bit():
    """ENTROPY is version 1's: with ZERO the section is corrupt; with SHORT
    it is SPLIT (a mini-block payload), which a tANS payload is not."""
    section, codec = encode(np.cumsum(np.random.default_rng(1).choice([15, 16], 4096)).astype(np.uint64))
    assert codec & ENTROPY
    assert both_decode(section, 4096, codec | ZERO_RESIDUALS)[0] == ERR_BAD_CODE
    assert both_decode(section, 4096, codec | SHORT)[0] != 0


# --- damaged sections ----------------------------------------------------------------

def entropy_section():
    rng = np.random.default_rng(11)
    words = np.cumsum(rng.choice(np.array([0, 1, 2, 9], np.uint64), 1000, p=[0.7, 0.1, 0.1, 0.1]))
    section, codec = encode(words)
    assert codec & ENTROPY and codec & 3 == 1
    return section, codec


def binned_section():
    """A walk of normal steps (sd 10: 5.4 bits of entropy, ~80 values, where
    bit packing takes ~6.5): priced with low bits allowed and no Rice (split
    Rice at its price takes such steps), it takes them."""
    steps = np.round(np.random.default_rng(12).normal(0, 10, 1000))
    words = (np.cumsum(steps) + 10**6).astype(np.uint64)
    out = np.zeros(max_section_bytes(1000), np.uint8)
    end, codec = encode_column_priced(words, False, True, -1.0, out, 0, False, ENTROPY_BINNED, False)
    section = out[:end].copy()
    assert codec & ENTROPY and section[8] >> 3 > 0          # the payload's L byte: low bits
    assert (both_decode(section, 1000, codec)[1] == words).all()
    return section, int(codec)


SECTIONS = [entropy_section, binned_section]


@pytest.mark.parametrize("make", SECTIONS)
def test_every_truncation_is_rejected(guarded, make):  # noqa: F811
    section, codec = make()
    data = section.tobytes()
    for cut in range(len(data)):
        status, _ = compiled(*guarded.at_end(data[:cut]), 1000, codec)
        assert status in (ERR_TRUNCATED, ERR_BAD_CODE, ERR_LENGTH), cut
        assert npdecode.decode_column(np.frombuffer(data[:cut], np.uint8), 0, cut, 1000, codec)[0] \
            == status, cut


def test_bad_tables_are_rejected():
    section, codec = entropy_section()
    at = 8                                  # the payload, after the base
    for table_log in (0, 4, 8, 0xFC):       # L outside 5..7 (the byte's low 3 bits; 0xFC: L 4, 31 low bits)
        bad = section.copy()
        bad[at] = table_log
        assert both_decode(bad, 1000, codec)[0] == ERR_BAD_CODE
    bad = section.copy()
    bad[at + 1] = 200                       # more symbols than MAX_SYMBOLS
    assert both_decode(bad, 1000, codec)[0] == ERR_BAD_CODE
    # frequencies that fill the table before the last symbol: all fields ones
    n_symbols = int(section[at + 1]) + 1
    pos = at + 2 + n_symbols               # the values' varints are one byte each here
    assert section[at + 2:pos].max() < 0x80
    bad = section.copy()
    bad[pos + 1:pos + 3] = 0xFF
    bad[pos] = 0xFF
    assert both_decode(bad, 1000, codec)[0] in (ERR_BAD_CODE, ERR_LENGTH)
    bad = np.concatenate([section, np.zeros(1, np.uint8)])
    assert both_decode(bad, 1000, codec)[0] == ERR_LENGTH


@pytest.mark.parametrize("make", SECTIONS)
@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_sections_give_the_same_status_in_both_decoders(make, data):
    section, codec = make()
    bad = section.copy()
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(8, len(bad) - 1))
        bad[at] ^= data.draw(st.integers(1, 255))
    both_decode(bad, 1000, codec)          # equal statuses, equal words; never a crash


def test_damaged_block_is_a_corrupt_error():
    rng = np.random.default_rng(2)
    t = irregular_clock(rng, 2000)
    buf = encode_block(t, [np.zeros(2000, np.int16)])
    info = parse_block(buf)
    assert info.time_codec & ENTROPY
    raw = bytearray(buf)
    at = int(info.section_offsets()[0]) + 8
    raw[at] = 9                            # the time section's L: out of range
    import zlib
    body = bytes(raw[:-4])
    raw[-4:] = zlib.crc32(body).to_bytes(4, "little")
    with pytest.raises(CorruptDataError):
        decode_block(bytes(raw))


def test_codec_byte_is_checked_by_the_header():
    """Version 1 headers admit bit 7 (ENTROPY) beside bits 0-5."""
    t = irregular_clock(np.random.default_rng(4), 500)
    assert parse_block(encode_block(t, [np.zeros(500, np.int16)])).time_codec & ENTROPY
    assert DECIMAL | FLOATBITS | ENTROPY < 0x100


# --- binned payloads: low bits stored as they are ------------------------------------

T0 = 1_795_478_400_000_000_000


def _without_binning(monkeypatch):
    monkeypatch.setattr(intcodec, "entropy_form",
                        lambda compact, binned: ENTROPY_SYMBOLS if compact else ENTROPY_OFF)


def _check_block(buf, t, column):
    t2, (column2,) = decode_block(buf)
    assert (t2 == t).all() and column2.tobytes() == column.tobytes()
    status, t3, rows = engine_rows(buf, True)
    assert status == 0 and (t3 == t).all() and rows[0].tobytes() == column.astype(np.float64).tobytes()
    info = parse_block(buf)
    starts = info.section_offsets()
    status, words = npdecode.decode_time_words(np.frombuffer(buf, np.uint8), int(starts[0]),
                                               int(starts[0] + info.time_len), len(t), info.time_codec)
    assert status == 0 and (npdecode.time_values(words, info.t_first, info.tick) == t).all()


def test_jittered_clock_takes_low_bits(monkeypatch):
    """A 1 kHz clock in ns with ±20 µs of jitter: its residuals from the
    clock line spread over 40,000 values (15.3 bits of entropy), which bit
    packing stores in 16 bits and a header; binned, ~5 symbols and 13 low
    bits come within a few per cent of the entropy."""
    rng = np.random.default_rng(8)
    n = 4096
    t = np.sort(T0 + np.arange(n, dtype=np.int64) * 1_000_000 + rng.integers(-20_000, 20_000, n))
    zeros = np.zeros(n, np.int16)
    buf = encode_block(t, [zeros])
    info = parse_block(buf)
    assert info.time_codec & ENTROPY
    assert info.time_len < n * 15.6 / 8
    _check_block(buf, t, zeros)
    _without_binning(monkeypatch)
    assert parse_block(encode_block(t, [zeros])).time_len > info.time_len * 1.04


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float_thousandths_take_low_bits(monkeypatch, dtype):
    """A 1 Hz temperature walk in thousandths of a degree: its mantissas'
    steps (sd 10) spread over ~80 values; binned, they come out smaller
    than bit packed, and every decoder gives back the same bits.  (Rice
    priced as whole codewords were: at split Rice's price the encoder
    takes a Rice payload, a few per cent bigger and faster to decode.)"""
    monkeypatch.setattr(intcodec, "FLOAT_RICE_DECODE_COST", 3.0)
    rng = np.random.default_rng(9)
    n = 4096
    temps = np.round(21 + np.cumsum(rng.normal(0, 0.01, n)), 3).astype(dtype)
    t = T0 + np.arange(n, dtype=np.int64) * 1_000_000_000
    buf = encode_block(t, [temps])
    binned = int(parse_block(buf).entries[0]["data_len"])
    _check_block(buf, t, temps)
    _without_binning(monkeypatch)
    assert int(parse_block(encode_block(t, [temps])).entries[0]["data_len"]) > binned * 1.05


def test_integer_channels_are_not_binned(monkeypatch):
    """An integer channel's noise would take low bits (a few per cent
    smaller), but counts settle its mini-blocks by their frames: it keeps
    the mini-block form."""
    rng = np.random.default_rng(10)
    n = 4096
    noise = np.round(rng.normal(0, 200, n)).astype(np.int16)
    t = T0 + np.arange(n, dtype=np.int64) * 1_000_000
    plain = parse_block(encode_block(t, [noise])).entries[0]
    assert not plain["codec"] & ENTROPY
    monkeypatch.setattr(intcodec, "entropy_form", lambda compact, binned: ENTROPY_BINNED)
    everywhere = parse_block(encode_block(t, [noise])).entries[0]
    assert everywhere["codec"] & ENTROPY and everywhere["data_len"] < plain["data_len"]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.integers(0, 2**32 - 1), st.integers(2, 6), st.sampled_from([0.3, 3.0, 30.0, 300.0]),
       st.sampled_from([np.float64, np.float32]), st.integers(1, 200_000))
def test_smooth_columns_and_jittered_clocks_round_trip_exactly(seed, decimals, steps, dtype, jitter):
    """Walks whose steps span a few to a few thousand units of their last
    decimal (binned or not, whichever the pricing takes) and clocks with up
    to ±200 µs of jitter: decode_block, the engine's rows and the numpy
    tier give back every bit."""
    rng = np.random.default_rng(seed)
    n = 4096
    walk = np.round(20 + np.cumsum(rng.normal(0, steps / 10 ** decimals, n)), decimals).astype(dtype)
    t = np.sort(T0 + np.arange(n, dtype=np.int64) * 1_000_000 + rng.integers(-jitter, jitter + 1, n))
    _check_block(encode_block(t, [walk]), t, walk)
