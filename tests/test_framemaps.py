"""Frame maps (codec/framemap.py, engine/framemaps.py): each mini-block's
smallest and largest value and where its values start, read from a FRAMES
section once and kept for the counts after it.

The map's rows are checked against numpy's min and max of each 32 values;
counts from a map against numpy's counts of the values (every operator,
thresholds at and around every mini-block's edges), in the codec's function
and through the engine, where the map is made the second time a count asks;
sections a map cannot hold are refused and counted as before."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sensorq
from sensorq.codec.block import encode_block, parse_block
from sensorq.codec.codes import DICT, FRAMES, MINI_BLOCK, PREDICTOR_MASK
from sensorq.codec.framemap import (FRAMED_FLAG, NOT_MAPPED, SPARE_BYTES, count_mapped,
                                    map_section)
from sensorq.codec.intcount import count_column
from sensorq.engine import framemaps
from sensorq.schema import Channel

SECOND = 10**9


def _sway(n, seed, noise=20, sway=400):
    """An accelerometer axis: a slow sway with noise on it, int16 (FRAMES' data)."""
    rng = np.random.default_rng(seed)
    slow = sway * np.sin(np.arange(n) / 700.0 + seed)
    return np.round(slow + rng.normal(0, noise, n)).astype(np.int16)


def _block_section(x):
    """The channel section of a block holding x (compact codec): (bytes, its codec)."""
    t = np.arange(len(x), dtype=np.int64) * 1_000_000
    block = encode_block(t, [x], codec="compact")
    info = parse_block(block)
    start, entry = int(info.section_offsets()[1]), info.entries[0]
    return np.frombuffer(block[start:start + int(entry["data_len"])], np.uint8).copy(), \
        int(entry["codec"])


class _Row:
    """A one-row frame map of a section (map_section)."""

    def __init__(self, section, codec, n, stride=None):
        stride = stride or n // MINI_BLOCK
        self.section, self.n = section, n
        self.lows, self.highs = np.zeros(stride, np.int16), np.zeros(stride, np.int16)
        self.starts, bases = np.zeros(stride, np.uint16), np.zeros(1, np.int64)
        self.widths = np.zeros(stride, np.uint8)
        scratch = np.zeros(max(n, MINI_BLOCK), np.uint64)
        self.heads = map_section(section, 0, len(section), n, codec, scratch, bases, self.lows,
                                 self.highs, self.starts, self.widths, 0, stride)
        self.base = int(bases[0])

    def count(self, threshold):
        mask = np.zeros((self.n // MINI_BLOCK + 63) // 64, np.uint64)
        spare = np.zeros(SPARE_BYTES, np.uint8)
        above, equal = count_mapped(self.section, 0, len(self.section), self.n // MINI_BLOCK,
                                    self.base, self.lows, self.highs, self.starts, self.widths, 0,
                                    threshold, mask, spare)
        return int(above), int(equal)


def _bits(section, bit, width):
    """``width`` bits at ``bit`` of the section, little-endian (plain Python)."""
    return (int.from_bytes(section.tobytes(), "little") >> bit) & ((1 << width) - 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_row_holds_each_mini_blocks_range_and_start(seed):
    x = _sway(4096, seed)
    section, codec = _block_section(x)
    assert codec & PREDICTOR_MASK == FRAMES         # what the map is for
    row = _Row(section, codec, len(x))
    assert row.heads != NOT_MAPPED
    groups = x.reshape(-1, MINI_BLOCK).astype(np.int64)
    assert np.array_equal(row.lows, groups.min(1))
    assert np.array_equal(row.highs, groups.max(1))
    # each start holds the mini-block's first value, less its frame's value
    # (framed: its smallest) or the section's base (bit-packed), in its width
    framed_seen = set()
    for m in range(len(groups)):
        h = int(section[row.heads + m])
        framed = h >= 0x41
        framed_seen.add(framed)
        width = h - 0x41 if framed else h
        assert row.widths[m] == width | (FRAMED_FLAG if framed else 0)
        offset = row.lows[m] if framed else row.base
        assert offset + _bits(section, int(row.starts[m]), width) == groups[m, 0]
    assert True in framed_seen


@given(seed=st.integers(0, 2**32 - 1), n_mini=st.integers(1, 128),
       noise=st.sampled_from([0, 3, 40]), picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=12))
@settings(max_examples=60, deadline=None)
def test_counts_from_a_map_are_numpys(seed, n_mini, noise, picks):
    x = _sway(n_mini * MINI_BLOCK, seed % 1000, noise=noise)
    section, codec = _block_section(x)
    row = _Row(section, codec, len(x))
    if row.heads == NOT_MAPPED:
        return                  # (a section the encoder did not frame: refused below)
    edges = np.unique(np.concatenate([row.lows, row.highs, row.lows - 1, row.highs + 1, x[:5]])
                      .astype(np.int64))
    for pick in picks:
        threshold = int(edges[pick % len(edges)])
        assert row.count(threshold) == (int((x > threshold).sum()), int((x == threshold).sum()))


def test_mini_blocks_at_the_sections_end_are_counted_from_a_copy():
    """The last mini-blocks, whose 72 bytes of count32 reading would pass the
    section's end, are counted from a copy: every threshold inside the last
    mini-block's range, against numpy."""
    x = _sway(4096, 5, noise=60)
    section, codec = _block_section(x)
    row = _Row(section, codec, len(x))
    assert row.heads != NOT_MAPPED
    assert len(section) * 8 - int(row.starts[-1]) < 72 * 8      # the copy's case
    for threshold in range(int(row.lows[-1]), int(row.highs[-1]) + 1):
        assert row.count(threshold) == (int((x > threshold).sum()), int((x == threshold).sum()))


def test_sections_a_map_cannot_hold_are_refused():
    rng = np.random.default_rng(3)
    cases = {
        "full-range noise (16-bit widths)": rng.integers(-32768, 32768, 4096).astype(np.int16),
        "a dozen levels (a dictionary)": rng.choice(np.arange(-20000, 20000, 3333).astype(np.int16),
                                                    4096),
        "a smooth walk (a predictor)": np.cumsum(rng.integers(-3, 4, 4096)).astype(np.int16),
        "n not whole mini-blocks": _sway(4090, 1),
    }
    seen = set()
    for name, x in cases.items():
        section, codec = _block_section(x)
        seen.add((codec & PREDICTOR_MASK == FRAMES, bool(codec & DICT)))
        assert _Row(section, codec, len(x), stride=128).heads == NOT_MAPPED, name
    assert (False, False) in seen and any(d for _, d in seen)     # the cases are what they say


def test_every_cut_of_a_section_is_refused():
    x = _sway(4096, 7)
    section, codec = _block_section(x)
    assert _Row(section, codec, len(x)).heads != NOT_MAPPED
    for cut in range(0, len(section), 7):
        assert _Row(section[:cut].copy(), codec, len(x)).heads == NOT_MAPPED


@given(seed=st.integers(0, 2**32 - 1), flips=st.lists(st.integers(0, 10**9), min_size=1,
                                                       max_size=6),
       picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=6))
@settings(max_examples=150, deadline=None)
def test_damaged_sections_are_refused_or_count_as_the_decoder_does(seed, flips, picks):
    """Bits flipped anywhere in a section: the map refuses it, or every count
    from it is the decoder's (intcount.count_column) of the same bytes."""
    x = _sway(1024, seed % 500, noise=30)
    section, codec = _block_section(x)
    for flip in flips:
        section[flip % len(section)] ^= np.uint8(1 << (flip >> 20) % 8)
    row = _Row(section, codec, len(x))
    if row.heads == NOT_MAPPED:
        return
    edges = np.unique(np.concatenate([row.lows, row.highs, row.lows - 1]).astype(np.int64))
    out, scratch = np.zeros(len(x) + 64, np.uint64), np.zeros(len(x) + 64, np.uint64)
    for pick in picks:
        threshold = int(edges[pick % len(edges)])
        tally = np.zeros(2, np.int64)
        status = count_column(section, 0, len(section), len(x), codec, threshold, 64, out, scratch,
                              tally)
        assert status == 0 and row.count(threshold) == (int(tally[0]), int(tally[1]))


# ---- through the engine -------------------------------------------------------

OPS = ("<", "<=", ">", ">=", "=", "!=")
NUMPY_OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
             "=": np.equal, "!=": np.not_equal}


def _cache(path, x, block_samples=512):
    cache = sensorq.open(path, create=True)
    cache.create_stream("s", [Channel("x", "int16")], block_samples=block_samples)
    t = 1_700_000_000 * SECOND + np.arange(len(x), dtype=np.int64) * 1_000_000
    cache.append("s", t, {"x": x})
    cache.flush()
    return cache


@pytest.fixture
def map_counts(monkeypatch):
    """How many blocks each count took from a frame map."""
    taken = []
    count = framemaps.FrameMap.count

    def spy(self, layout, blocks, op, threshold, counts):
        taken.append(len(blocks))
        return count(self, layout, blocks, op, threshold, counts)
    monkeypatch.setattr(framemaps.FrameMap, "count", spy)
    return taken


def test_the_second_count_makes_the_map_and_every_answer_is_numpys(tmp_path, map_counts):
    x = _sway(64 * 512, 11, noise=25, sway=60)     # every block holds 0: none settled whole
    x[5120:5632] = np.random.default_rng(1).integers(-32768, 32768, 512)   # a block it cannot map
    with _cache(tmp_path / "c", x) as cache:
        asks = 0
        for _ in range(2):
            for op in OPS:
                for threshold in (0, 17, -40, 39):
                    got = cache.query(f"count where x {op} {threshold}", engine="compiled").value
                    assert got == int(NUMPY_OPS[op](x, threshold).sum()), (op, threshold)
                    asks += 1
                    if asks == 1:
                        assert map_counts == []     # a one-off count makes no map
        # every count after the first took all blocks but the one it cannot map from it
        assert len(map_counts) == asks - 1
        assert min(map_counts) >= 40 and max(map_counts) <= 63


def test_a_one_off_count_over_many_segments_makes_no_map(tmp_path, map_counts):
    """The flag that the first count sets is asked once per count, not once
    per segment (each segment's blocks are a layout of their own)."""
    x = _sway(160 * 512, 14, noise=25, sway=60)
    cache = sensorq.open(tmp_path / "c", create=True, capacity=1 << 20)     # 64 KiB segments
    with cache:
        cache.create_stream("s", [Channel("x", "int16")], block_samples=512)
        t = 1_700_000_000 * SECOND + np.arange(len(x), dtype=np.int64) * 1_000_000
        cache.append("s", t, {"x": x})
        cache.flush()
        assert len(list((tmp_path / "c").glob("segment-*.sqs"))) >= 2
        assert cache.query("count where x > 0", engine="compiled").value == int((x > 0).sum())
        assert map_counts == []
        assert cache.query("count where x > 0", engine="compiled").value == int((x > 0).sum())
        assert sum(map_counts) >= 150


@given(seed=st.integers(0, 2**32 - 1), n_blocks=st.integers(32, 70), noise=st.integers(0, 300),
       threshold=st.integers(-600, 600))
@settings(max_examples=15, deadline=None)
def test_repeated_counts_follow_numpy(tmp_path_factory, seed, n_blocks, noise, threshold):
    x = _sway(n_blocks * 256, seed % 997, noise=noise)
    with _cache(tmp_path_factory.mktemp("m") / "c", x, block_samples=256) as cache:
        for op in (">", "=", "<="):
            want = int(NUMPY_OPS[op](x, threshold).sum())
            for _ in range(3):
                got = cache.query(f"count where x {op} {threshold}", engine="compiled").value
                assert got == want


def test_no_map_past_half_of_what_the_process_keeps(tmp_path, map_counts, monkeypatch):
    monkeypatch.setattr(framemaps, "FRAME_MAPS_BYTES", 10_000)
    x = _sway(64 * 512, 12)
    with _cache(tmp_path / "c", x) as cache:
        for _ in range(3):
            assert cache.query("count where x > 3", engine="compiled").value == int((x > 3).sum())
    assert map_counts == []


def test_counts_in_threads_share_one_map(tmp_path):
    x = _sway(128 * 512, 13)
    with _cache(tmp_path / "c", x) as cache:
        cache.query("count where x > 1", engine="compiled")      # the first ask: no map yet
        answers, want = [], {t: int((x > t).sum()) for t in range(-8, 8)}

        def ask(threshold):
            for _ in range(4):
                answers.append((threshold, cache.query(f"count where x > {threshold}",
                                                       engine="compiled").value))
        threads = [threading.Thread(target=ask, args=(t,)) for t in range(-8, 8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(answers) == 64 and all(got == want[t] for t, got in answers)


@pytest.mark.parametrize("budget", ["bytes", "count"])
def test_the_oldest_maps_are_dropped_past_the_process_budget(tmp_path, monkeypatch, budget):
    """Maps beyond FRAME_MAPS_BYTES, or beyond FRAME_MAPS_KEPT of them, in a
    process are dropped oldest first, and made again when a count asks twice
    more."""
    made = []
    init = framemaps.FrameRows.__init__

    def spy(self, capacity, stride, owner=None, first=0):
        made.append(capacity)
        init(self, capacity, stride, owner, first)
    monkeypatch.setattr(framemaps.FrameRows, "__init__", spy)
    monkeypatch.setattr(framemaps, "_KEPT", [])
    rows = framemaps._with_headroom(64)
    if budget == "bytes":       # two maps fit, a third does not
        monkeypatch.setattr(framemaps, "FRAME_MAPS_BYTES", framemaps.FrameRows.size(rows, 16) * 5 // 2)
    else:
        monkeypatch.setattr(framemaps, "FRAME_MAPS_KEPT", 2)
    x = _sway(64 * 512, 15, noise=25, sway=60)
    want = int((x > 2).sum())
    caches = [_cache(tmp_path / name, x) for name in "abc"]
    try:
        a, b, c = caches
        for cache in (a, a, b, b, c, c, b, a, a):     # a, b, c made; a dropped; b kept; a again
            assert cache.query("count where x > 2", engine="compiled").value == want
    finally:
        for cache in caches:
            cache.close()
    assert made == [rows] * 4
    assert len(framemaps._KEPT) == 2


def test_the_process_budget_holds_a_100m_sample_axis_map():
    """The maps' budget holds the map of an int16 axis of 24,415 blocks of
    4,096 samples (the benchmark's 100 M samples): a map may take half."""
    capacity = framemaps._with_headroom(24_415)
    rows = framemaps.FrameRows(capacity, 4096 // MINI_BLOCK)
    assert rows.nbytes <= framemaps.FRAME_MAPS_BYTES // 2
    assert rows.nbytes == framemaps.FrameRows.size(capacity, 128)     # what frame_map prices first


# --- maps that follow a live cache (blockindex.RangeMemo, FrameRows.moved) ---------

def _rows_of(reader):
    """The FrameRows a reader's count of x used last (kept by the process)."""
    return framemaps._KEPT[-1][3].rows


def _append_blocks(writer, x, at, block_samples=512):
    t = 1_700_000_000 * SECOND + (np.arange(len(x), dtype=np.int64) + at) * 1_000_000
    writer.append("s", t, {"x": x})
    writer.flush()
    return at + len(x)


def test_a_readers_next_block_range_takes_the_rows_already_filled(tmp_path, map_counts):
    """A writer seals blocks while a reader counts: each refresh gives the
    reader a new block range, whose map takes the last one's rows at once
    (no second ask) and fills only the new blocks' rows, also past the
    rows' headroom (moved, twice), and every answer is numpy's."""
    x = _sway(64 * 512 + 200 * 512, 21, noise=25, sway=60)
    with sensorq.open(tmp_path / "c", create=True) as writer:
        writer.create_stream("s", [Channel("x", "int16")], block_samples=512)
        at = _append_blocks(writer, x[:64 * 512], 0)
        with sensorq.open(tmp_path / "c", readonly=True) as reader:
            for _ in range(2):
                assert reader.query("count where x > 3", engine="compiled").value == \
                    int((x[:at] > 3).sum())
            seen = {id(_rows_of(reader)): _rows_of(reader)}
            assert map_counts and seen[id(_rows_of(reader))].filled >= map_counts[-1] >= 40
            for step in (1, 3, 30, 40, 60, 66):       # past 64 + 64 rows: moved, twice
                at = _append_blocks(writer, x[at:at + step * 512], at)
                reader.refresh()
                filled = sum(rows.filled for rows in seen.values())
                asks = len(map_counts)
                want = int((x[:at] > 3).sum())     # (the same count: the same blocks decoded)
                assert reader.query("count where x > 3", engine="compiled").value == want
                assert len(map_counts) == asks + 1      # the map, at the range's first ask
                rows = _rows_of(reader)
                seen[id(rows)] = rows
                assert 0 < sum(r.filled for r in seen.values()) - filled <= step
                assert rows.first == 0 and rows.capacity >= at // 512   # (seqs from 0)
            assert len(seen) == 3


def test_a_reader_of_a_ring_counts_as_numpy_while_blocks_come_and_go(tmp_path, map_counts):
    """A capacity-bounded cache evicts its oldest segments as the writer
    appends: the reader's ranges start later and end later, their maps
    follow (rows dropped at the front when moved), and every count is
    numpy's count of what the reader reads."""
    x = _sway(1500 * 512, 22, noise=30, sway=80)
    with sensorq.open(tmp_path / "c", create=True, capacity=256 << 10) as writer:
        writer.create_stream("s", [Channel("x", "int16")], block_samples=512)
        at = _append_blocks(writer, x[:100 * 512], 0)
        with sensorq.open(tmp_path / "c", readonly=True) as reader:
            evicted = False
            while at < len(x):
                at = _append_blocks(writer, x[at:at + 50 * 512], at)
                reader.refresh()
                _, columns = reader.read("s")
                evicted |= len(columns["x"]) < at
                for threshold in (0, 7):
                    want = int((columns["x"] > threshold).sum())
                    assert reader.query(f"count where x > {threshold}", engine="compiled").value \
                        == want
            assert evicted and len(map_counts) >= 50


@given(seed=st.integers(0, 2**32 - 1),
       rounds=st.lists(st.tuples(st.integers(1, 40), st.integers(-90, 90), st.integers(1, 3)),
                       min_size=2, max_size=6))
@settings(max_examples=8, deadline=None)
def test_following_maps_answer_as_numpy_whatever_comes_and_goes(tmp_path_factory, seed, rounds):
    """Random appends (blocks a round), thresholds and asks a round on a ring
    small enough to evict: every count is numpy's count of what the reader
    reads."""
    x = _sway(40 * 512 + sum(r[0] for r in rounds) * 512, seed % 991, noise=30, sway=90)
    path = tmp_path_factory.mktemp("f") / "c"
    with sensorq.open(path, create=True, capacity=128 << 10) as writer:
        writer.create_stream("s", [Channel("x", "int16")], block_samples=512)
        at = _append_blocks(writer, x[:40 * 512], 0)
        with sensorq.open(path, readonly=True) as reader:
            for blocks, threshold, asks in rounds:
                at = _append_blocks(writer, x[at:at + blocks * 512], at)
                reader.refresh()
                want = int((reader.read("s")[1]["x"] > threshold).sum())
                for _ in range(asks + 1):
                    got = reader.query(f"count where x > {threshold}", engine="compiled").value
                    assert got == want


def test_a_map_of_one_channel_is_never_another_ones(tmp_path, map_counts):
    """Rows are followed per channel: y's first count after x's map is made
    (a block on) makes no map, and counts y's own values."""
    x, y = _sway(64 * 512, 23, noise=25, sway=60), _sway(65 * 512, 24, noise=40, sway=10)
    with sensorq.open(tmp_path / "c", create=True) as writer:
        writer.create_stream("s", [Channel("x", "int16"), Channel("y", "int16")], block_samples=512)
        t = 1_700_000_000 * SECOND + np.arange(65 * 512, dtype=np.int64) * 1_000_000
        writer.append("s", t[:64 * 512], {"x": x, "y": y[:64 * 512]})
        writer.flush()
        with sensorq.open(tmp_path / "c", readonly=True) as reader:
            for _ in range(2):
                reader.query("count where x > 1", engine="compiled")
            made = len(map_counts)
            writer.append("s", t[64 * 512:], {"x": x[-512:], "y": y[64 * 512:]})
            writer.flush()
            reader.refresh()
            assert reader.query("count where y > 2", engine="compiled").value == int((y > 2).sum())
            assert len(map_counts) == made
            assert reader.query("count where y > 2", engine="compiled").value == int((y > 2).sum())
            assert len(map_counts) == made + 1


def test_the_ranges_of_a_stream_count_their_shared_rows_once(tmp_path, monkeypatch):
    monkeypatch.setattr(framemaps, "_KEPT", [])
    x = _sway(70 * 512, 25, noise=25, sway=60)
    with sensorq.open(tmp_path / "c", create=True) as writer:
        writer.create_stream("s", [Channel("x", "int16")], block_samples=512)
        at = _append_blocks(writer, x[:64 * 512], 0)
        with sensorq.open(tmp_path / "c", readonly=True) as reader:
            for _ in range(2):
                reader.query("count where x > 1", engine="compiled")
            for _ in range(3):
                at = _append_blocks(writer, x[at:at + 512], at)
                reader.refresh()
                reader.query("count where x > 1", engine="compiled")
            assert len(framemaps._KEPT) == 4
            rows = {id(kept[3].rows) for kept in framemaps._KEPT}
            assert len(rows) == 1
            assert framemaps._kept_bytes() == framemaps._KEPT[0][3].nbytes


# --- a writer's own counts: sealed blocks kept apart from the open one ---------------

@given(seed=st.integers(0, 2**32 - 1),
       steps=st.lists(st.tuples(st.integers(1, 3000), st.booleans(), st.integers(-60, 60),
                                st.sampled_from(OPS)), min_size=2, max_size=8))
@settings(max_examples=12, deadline=None)
def test_a_writers_counts_with_an_open_block_are_numpys(tmp_path_factory, seed, steps):
    """A writer counts its sealed blocks (plan, layouts and frame maps kept,
    as a reader's) and its open block (pending samples, encoded on the fly)
    apart: every count, with and without a window, is numpy's over every
    sample appended, flushed or not."""
    x = _sway(40 * 512 + sum(s[0] for s in steps), seed % 983, noise=30, sway=70)
    path = tmp_path_factory.mktemp("w") / "c"
    with sensorq.open(path, create=True) as writer:
        writer.create_stream("s", [Channel("x", "int16")], block_samples=512)
        at = _append_blocks(writer, x[:40 * 512], 0)
        for samples, flush, threshold, op in steps:
            t = 1_700_000_000 * SECOND + (np.arange(samples, dtype=np.int64) + at) * 1_000_000
            writer.append("s", t, {"x": x[at:at + samples]})
            at += samples
            if flush:
                writer.flush()
            for _ in range(2):
                got = writer.query(f"count where x {op} {threshold}", engine="compiled")
                assert got.value == int(NUMPY_OPS[op](x[:at], threshold).sum())
                assert got.scan.blocks_total == len(writer.blocks("s"))
            recent = writer.query(f"count where x {op} {threshold} last 2s", engine="compiled")
            assert recent.value == int(NUMPY_OPS[op](x[max(0, at - 2000):at], threshold).sum())


def test_a_writer_with_pending_samples_counts_from_its_maps(tmp_path, map_counts):
    x = _sway(64 * 512 + 300, 26, noise=25, sway=60)
    with sensorq.open(tmp_path / "c", create=True) as writer:
        writer.create_stream("s", [Channel("x", "int16")], block_samples=512)
        at = _append_blocks(writer, x[:64 * 512], 0)
        t = 1_700_000_000 * SECOND + (np.arange(300, dtype=np.int64) + at) * 1_000_000
        writer.append("s", t, {"x": x[at:]})           # an open block: not flushed
        for _ in range(3):
            assert writer.query("count where x > 2", engine="compiled").value == int((x > 2).sum())
        assert map_counts and map_counts[-1] >= 40      # the sealed blocks, from their map
