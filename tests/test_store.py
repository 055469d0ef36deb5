"""The cache store: round trips, ranges, the block index, validation, locking.

Every check compares against an independent reference: the numpy arrays that
were appended (bit patterns for floats), sliced with plain numpy.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import sensorq
from sensorq import Channel
from sensorq.codec.block import decode_block
from sensorq.errors import (CapacityError, CorruptDataError, DataError, LockedError, OutOfOrderError,
                            SchemaError, StorageError, ValueRangeError)
from sensorq.store.settings import parse_capacity, parse_retention

DTYPES = ["int8", "int16", "int32", "int64", "float32", "float64"]
T0 = 1_700_000_000_000_000_000


def bits(a: np.ndarray) -> np.ndarray:
    """Bit patterns, so NaN payloads, -0.0 and subnormals compare exactly."""
    a = np.asarray(a)
    return a.view(f"u{a.dtype.itemsize}") if a.dtype.kind == "f" else a


def same(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(bits(a), bits(b))


def column_strategy(dtype: str, n: int):
    if dtype.startswith("int"):
        info = np.iinfo(dtype)
        extremes = st.sampled_from([info.min, info.max, 0, -1, 1])
        elements = st.one_of(extremes, st.integers(info.min, info.max))
    else:
        width = 32 if dtype == "float32" else 64
        special = st.sampled_from([np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324 if width == 64 else 1e-45,
                                   np.finfo(dtype).max, np.finfo(dtype).min, np.finfo(dtype).tiny])
        elements = st.one_of(special, st.floats(width=width, allow_nan=True, allow_subnormal=True))
    return hnp.arrays(dtype, n, elements=elements)


@st.composite
def stream_data(draw, max_n=300):
    dtypes = draw(st.lists(st.sampled_from(DTYPES), min_size=1, max_size=3))
    n = draw(st.integers(0, max_n))
    # irregular steps with duplicates (step 0) and large jumps
    steps = draw(hnp.arrays(np.int64, n, elements=st.one_of(st.just(0), st.integers(1, 10**6),
                                                            st.integers(1, 10**15))))
    t = T0 + np.cumsum(steps)
    cols = [draw(column_strategy(d, n)) for d in dtypes]
    block_samples = draw(st.integers(1, 70))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=8)))
    flush_after = draw(st.lists(st.booleans(), min_size=len(cuts) + 1, max_size=len(cuts) + 1))
    compression = draw(st.sampled_from(["auto", "none", "zstd"]))
    codec = draw(st.sampled_from(["compact", "fast"]))
    return dtypes, t, cols, block_samples, cuts, flush_after, compression, codec


def make_stream(cache, dtypes, block_samples=4096, codec="compact", name="s"):
    return cache.create_stream(name, [Channel(f"c{i}", d) for i, d in enumerate(dtypes)],
                               block_samples=block_samples, codec=codec)


def check_read(cache, t, cols, start=None, end=None, name="s"):
    got_t, got = cache.read(name, start, end)
    lo = 0 if start is None else np.searchsorted(t, start, "left")
    hi = len(t) if end is None else np.searchsorted(t, end, "left")
    hi = max(lo, hi)
    assert np.array_equal(got_t, t[lo:hi])
    for i, col in enumerate(cols):
        assert same(got[f"c{i}"], col[lo:hi]), f"channel c{i}"


@settings(max_examples=120, deadline=None)
@given(stream_data())
def test_round_trip_through_flushes_and_reopen(data):
    dtypes, t, cols, block_samples, cuts, flush_after, compression, codec = data
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c"
        with sensorq.open(path, create=True, compression=compression) as cache:
            make_stream(cache, dtypes, block_samples, codec)
            bounds = [0, *cuts, len(t)]
            for (a, b), do_flush in zip(zip(bounds, bounds[1:]), flush_after):
                cache.append("s", t[a:b], [c[a:b] for c in cols])
                if do_flush:
                    cache.flush()
                # the writer sees everything appended, flushed or not
                check_read(cache, t[:b], [c[:b] for c in cols])
        with sensorq.open(path, readonly=True) as reader:
            check_read(reader, t, cols)
            assert reader.info()["problems"] == []
            if len(t):
                mid = int(t[len(t) // 2])
                check_read(reader, t, cols, start=mid)
                check_read(reader, t, cols, end=mid)
                check_read(reader, t, cols, start=int(t[0]) + 1, end=mid + 1)
        # append after reopen continues the stream
        more_t = (t[-1] if len(t) else T0) + np.arange(1, 6, dtype=np.int64)
        more = [np.zeros(5, d) for d in dtypes]
        with sensorq.open(path) as cache:
            cache.append("s", more_t, more)
        with sensorq.open(path, readonly=True) as reader:
            check_read(reader, np.concatenate([t, more_t]),
                       [np.concatenate([c, m]) for c, m in zip(cols, more)])


@settings(max_examples=60, deadline=None)
@given(stream_data(max_n=400), st.data())
def test_blocks_overlapping_a_range_are_exactly_those_found(data, draw):
    dtypes, t, cols, block_samples, _, _, compression, codec = data
    if len(t) == 0:
        return
    with tempfile.TemporaryDirectory() as tmp:
        with sensorq.open(Path(tmp) / "c", create=True, compression=compression) as cache:
            make_stream(cache, dtypes, block_samples, codec)
            cache.append("s", t, cols)
            everything = cache.blocks("s")
            assert everything.n_samples.sum() == len(t)
            assert np.all(np.diff(everything.seq) > 0)
            start = draw.draw(st.integers(int(t[0]) - 5, int(t[-1]) + 5))
            end = draw.draw(st.integers(start, int(t[-1]) + 10))
            found = cache.blocks("s", start, end)
            overlap = (everything.t_last >= start) & (everything.t_first < end)
            assert np.array_equal(found.seq, everything.seq[overlap])
            for i in range(len(found)):
                bt, bcols = found.decode(i)
                bt2, bcols2 = decode_block(found.raw(i).tobytes())   # re-verifies the CRC
                assert np.array_equal(bt, bt2)
                assert found.t_first[i] == bt[0] and found.t_last[i] == bt[-1]
                assert found.n_samples[i] == len(bt)
                lo = np.searchsorted(t, bt[0], "left")
                # blocks hold consecutive samples of the stream, in order
                seq_start = int(everything.n_samples[everything.seq < found.seq[i]].sum())
                assert np.array_equal(bt, t[seq_start:seq_start + len(bt)])
                assert lo <= seq_start
                for c, ref in zip(bcols, cols):
                    assert same(c, ref[seq_start:seq_start + len(bt)])
            sub = found.select(slice(0, 1))
            assert len(sub) == min(1, len(found))


def test_float_specials_keep_their_bits(tmp_path):
    values = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, -5e-324, 1.5, 2.2250738585072014e-308])
    payload_nan = np.array([0x7FF0000000000001, 0xFFF8000000000123], np.uint64).view(np.float64)
    values = np.concatenate([values, payload_nan])
    with np.errstate(invalid="ignore"):
        values32 = values.astype(np.float32)
    t = T0 + np.arange(len(values), dtype=np.int64)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        make_stream(cache, ["float64", "float32"])
        cache.append("s", t, [values, values32])
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        _, got = cache.read("s")
    assert np.array_equal(bits(got["c0"]), bits(values))
    assert np.array_equal(bits(got["c1"]), bits(values32))


def test_empty_and_one_sample_streams(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        make_stream(cache, ["int16"], name="empty")
        make_stream(cache, ["int16"], name="one")
        cache.append_one("one", T0, (7,))
        cache.append("empty", np.zeros(0, np.int64), [np.zeros(0, np.int16)])
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        t, cols = cache.read("empty")
        assert t.shape == (0,) and cols["c0"].dtype == np.int16 and cols["c0"].shape == (0,)
        assert cache.newest_ns("empty") is None
        assert len(cache.blocks("empty")) == 0
        t, cols = cache.read("one")
        assert t.tolist() == [T0] and cols["c0"].tolist() == [7]
        assert cache.newest_ns("one") == T0
        info = cache.info()["streams"]
        assert info["one"]["samples"] == 1 and info["empty"]["samples"] == 0


def test_timestamp_forms_agree(tmp_path):
    ns = T0 + np.arange(3, dtype=np.int64) * 1_000_000_000
    with sensorq.open(tmp_path / "c", create=True) as cache:
        for name, t in (("a", ns), ("b", ns.astype("datetime64[ns]")), ("c", ns / 1e9),
                        ("d", ns.astype("datetime64[ns]").astype("datetime64[ms]"))):
            cache.create_stream(name, [Channel("v", "int32")])
            cache.append(name, t, {"v": [1, 2, 3]})
            assert np.array_equal(cache.read(name)[0], ns), name


def test_append_one_dict_and_values(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [Channel("a", "int16"), Channel("b", "float64")])
        cache.append_one("s", T0, {"a": 1, "b": 0.5})
        cache.append_one("s", T0 + 1, [2, 1.5])
        cache.append_one("s", T0 + 1, (3, np.nan))
        t, cols = cache.read("s")
    assert t.tolist() == [T0, T0 + 1, T0 + 1]
    assert cols["a"].tolist() == [1, 2, 3]
    assert same(cols["b"], np.array([0.5, 1.5, np.nan]))


def snapshot(cache, name="s"):
    t, cols = cache.read(name)
    return t.copy(), {k: v.copy() for k, v in cols.items()}, cache.newest_ns(name)


def assert_unchanged(cache, before, name="s"):
    t, cols, newest = snapshot(cache, name)
    assert np.array_equal(t, before[0]) and newest == before[2]
    for k in cols:
        assert same(cols[k], before[1][k])


def test_rejected_batches_change_nothing(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [Channel("a", "int8"), Channel("b", "float32")], block_samples=4)
        cache.append("s", T0 + np.arange(6), {"a": np.arange(6), "b": np.ones(6)})
        before = snapshot(cache)
        bad_batches = [
            (T0 + np.array([10, 9]), {"a": [1, 2], "b": [1.0, 2.0]}, OutOfOrderError, "index 1"),
            (T0 + np.array([4, 20]), {"a": [1, 2], "b": [1.0, 2.0]}, OutOfOrderError, "index 0"),
            (T0 + np.array([10, 11]), {"a": [1, 200], "b": [1.0, 2.0]}, ValueRangeError, "200"),
            (T0 + np.array([10, 11]), {"a": [1, 2.5], "b": [1.0, 2.0]}, ValueRangeError, "2.5"),
            (T0 + np.array([10, 11]), {"a": [1, np.nan], "b": [1.0, 2.0]}, ValueRangeError, "index 1"),
            (T0 + np.array([10, 11]), {"a": [1, 2], "b": [1.0, 1e300]}, ValueRangeError, "'b'"),
            (T0 + np.array([10, 11]), {"a": [1, 2]}, SchemaError, "b"),
            (T0 + np.array([10, 11]), {"a": [1, 2], "b": [1.0, 2.0], "zz": [1, 2]}, SchemaError, "zz"),
            (T0 + np.array([10, 11]), {"a": [1, 2, 3], "b": [1.0, 2.0]}, DataError, "3 values"),
            (T0 + np.array([10, 11]), {"a": ["x", "y"], "b": [1.0, 2.0]}, DataError, "not numbers"),
            (np.array([np.nan, 1.0]), {"a": [1, 2], "b": [1.0, 2.0]}, DataError, "index 0"),
        ]
        for t, cols, error, text in bad_batches:
            with pytest.raises(error, match=text) as info:
                cache.append("s", t, cols)
            assert "'s'" in str(info.value) or "stream" in str(info.value)
            assert_unchanged(cache, before)
        with pytest.raises(SchemaError, match="nope"):
            cache.append("nope", [T0], [[1]])
        message = None
        try:
            cache.append("s", T0 + np.array([1]), {"a": [1], "b": [1.0]})
        except OutOfOrderError as exc:
            message = str(exc)
        assert "2023-11-14T22:13:20.000000001" in message and "2023-11-14T22:13:20.000000005" in message
        cache.flush()
        assert_unchanged(cache, before)


def test_integral_floats_are_accepted_for_int_channels(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [Channel("a", "int64")])
        cache.append("s", [T0, T0 + 1], {"a": np.array([-2.0**63, 2.0**62])})
        with pytest.raises(ValueRangeError):
            cache.append("s", [T0 + 2], {"a": np.array([2.0**63])})
        assert cache.read("s")[1]["a"].tolist() == [-2**63, 2**62]


def test_second_writer_is_locked_out_and_readers_are_not(tmp_path):
    path = tmp_path / "c"
    with sensorq.open(path, create=True) as cache:
        cache.create_stream("s", [Channel("a", "int16")])
        with pytest.raises(LockedError, match=str(path)):
            sensorq.open(path)
        with sensorq.open(path, readonly=True) as reader:
            assert "s" in reader.streams
            with pytest.raises(StorageError, match="read-only"):
                reader.append("s", [T0], [[1]])
    with sensorq.open(path) as again:      # the lock is released on close
        assert "s" in again.streams


def test_missing_cache_and_settings_errors(tmp_path):
    with pytest.raises(StorageError, match="no sensorq cache"):
        sensorq.open(tmp_path / "missing")
    with pytest.raises(StorageError, match="no sensorq cache"):
        sensorq.open(tmp_path / "missing", readonly=True)
    assert not (tmp_path / "missing").exists()
    for bad in ("12 parsecs", "-5MB", "abc", "1KB"):
        with pytest.raises(StorageError):
            sensorq.open(tmp_path / "x", create=True, capacity=bad)
    with pytest.raises(StorageError):
        sensorq.open(tmp_path / "y", create=True, compression="lz4")
    (tmp_path / "file").write_text("not a cache")
    for readonly in (True, False):
        with pytest.raises(StorageError, match="not a directory"):
            sensorq.open(tmp_path / "file", create=True, readonly=readonly)
    assert parse_capacity("64MB") == 64_000_000 and parse_capacity("1GiB") == 2**30
    assert parse_capacity(100_000) == 100_000 and parse_capacity("1.5 MiB") == 1_572_864
    assert parse_retention("24h") == 24 * 3600 * 10**9 and parse_retention(90) == 90 * 10**9
    assert parse_retention("500ms") == 500 * 10**6


def test_stream_definitions_persist_and_conflicts_are_errors(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        s = cache.create_stream("imu", [Channel("x", "int16", "mg", scale=None)], rate_hz=100,
                                block_samples=128, max_gap_ns=5, codec="fast")
        assert cache.create_stream("imu", [Channel("x", "int16", "mg")], rate_hz=100, block_samples=128,
                                   max_gap_ns=5, codec="fast") == s
        with pytest.raises(SchemaError, match="already exists"):
            cache.create_stream("imu", [Channel("x", "int32", "mg")])
        other = cache.create_stream("env", [Channel("temp", "int16", "degC", scale=0.01)])
        assert other.stream_id != s.stream_id
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        assert cache.streams["imu"] == s
        assert cache.streams["env"].channels[0].scale == 0.01
        info = cache.info()
        assert info["streams"]["env"]["channels"][0] == {"name": "temp", "dtype": "int16",
                                                          "unit": "degC", "scale": 0.01}


def test_corrupt_manifest_is_a_clear_error(tmp_path):
    path = tmp_path / "c"
    with sensorq.open(path, create=True) as cache:
        cache.create_stream("env", [Channel("temp", "int16", "degC", scale=0.01)])
    text = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(text.replace("0.01", "0.03"))   # still valid JSON
    for readonly in (True, False):
        with pytest.raises(CorruptDataError, match="manifest.json"):
            sensorq.open(path, readonly=readonly)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptDataError, match="manifest.json"):
        sensorq.open(path, readonly=True)


def test_single_block_larger_than_capacity(tmp_path):
    with sensorq.open(tmp_path / "c", create=True, capacity="64KiB", compression="none") as cache:
        cache.create_stream("s", [Channel(f"c{i}", "float64") for i in range(8)], block_samples=4096)
        rng = np.random.default_rng(0)
        cols = [rng.normal(size=4096) for _ in range(8)]
        with pytest.raises(CapacityError, match="capacity"):
            cache.append("s", T0 + np.arange(4096), cols)
        assert cache.newest_ns("s") is None
        cache.append("s", T0 + np.arange(10), [c[:10] for c in cols])   # small ones still fit


def test_writer_query_index_includes_open_block(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        make_stream(cache, ["int32"], block_samples=100)
        t = T0 + np.arange(250, dtype=np.int64)
        cache.append("s", t, [np.arange(250, dtype=np.int32)])
        index = cache.blocks("s")
        assert index.n_samples.tolist() == [100, 100, 50]
        assert index.seq.tolist() == [0, 1, 2]
        assert len(cache.blocks("s", int(t[-1]), None)) == 1
        with sensorq.open(tmp_path / "c", readonly=True) as reader:   # sees sealed blocks only
            assert reader.blocks("s").n_samples.tolist() == [100, 100]
        cache.flush()
        with sensorq.open(tmp_path / "c", readonly=True) as reader:
            assert reader.blocks("s").n_samples.tolist() == [100, 100, 50]


def test_info_reports_sizes(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        make_stream(cache, ["int16", "int16"])
        n = 10_000
        cache.append("s", T0 + np.arange(n) * 1_000_000, [np.arange(n, dtype=np.int16) % 100,
                                                           np.zeros(n, np.int16)])
        cache.flush()
        info = cache.info()
    s = info["streams"]["s"]
    assert s["samples"] == n and s["blocks"] == 3
    assert s["t_first_iso"].startswith("2023-11-14T22:13:20")
    assert 0 < s["bytes"] <= info["bytes_used"] <= info["capacity"]
    assert s["bytes_per_sample"] == pytest.approx(s["bytes"] / n)
    assert s["ratio_to_raw"] == pytest.approx(n * 12 / s["bytes"])
    assert sum(p.stat().st_size for p in (tmp_path / "c").glob("segment-*.sqs")) == info["bytes_used"]


def test_refresh_sees_new_streams_and_blocks(tmp_path):
    path = tmp_path / "c"
    with sensorq.open(path, create=True) as writer:
        reader = sensorq.open(path, readonly=True)
        writer.create_stream("late", [Channel("v", "int16")])
        writer.append("late", T0 + np.arange(5), [np.arange(5)])
        writer.flush()
        reader.refresh()
        assert reader.read("late")[1]["v"].tolist() == [0, 1, 2, 3, 4]
        reader.close()
        with pytest.raises(StorageError, match="closed"):
            reader.read("late")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.one_of(st.integers(-200, 200), st.floats(-1e3, 1e3),
                                                       st.just(1e300), st.just(float("nan"))),
                          st.sampled_from(["tuple", "dict", "numpy", "batch", "flush"])),
                max_size=80))
def test_append_one_mixed_with_batches_matches_a_reference(ops):
    """Good samples are stored in order, bad ones raise and change nothing,
    whatever mix of buffered one-by-one appends, batches and flushes."""
    ref_t, ref_a, ref_b = [], [], []
    last = None
    with tempfile.TemporaryDirectory() as tmp:
        with sensorq.open(Path(tmp) / "c", create=True) as cache:
            cache.create_stream("s", [Channel("a", "int8"), Channel("b", "float32")], block_samples=7)
            for step, value, how in ops:
                t = (T0 if last is None else last) + step - 1      # step 0 goes back in time
                fits = (isinstance(value, int) and -128 <= value <= 127
                        or isinstance(value, float) and abs(value) < 128 and value == int(value))
                ok = (last is None or t >= last) and fits
                a = value
                try:
                    if how == "tuple":
                        cache.append_one("s", t, (a, 0.25))
                    elif how == "dict":
                        cache.append_one("s", t, {"b": 0.25, "a": a})
                    elif how == "numpy":
                        cache.append_one("s", np.int64(t), (np.float64(a), np.float32(0.25)))
                    elif how == "batch":
                        cache.append("s", [t], {"a": [a], "b": [0.25]})
                    else:
                        cache.flush()
                        continue
                except (ValueRangeError, OutOfOrderError):
                    assert not ok
                else:
                    assert ok
                    ref_t.append(t)
                    ref_a.append(int(a))
                    ref_b.append(0.25)
                    last = t
                assert cache.newest_ns("s") == (ref_t[-1] if ref_t else None)
            t, cols = cache.read("s")
            assert t.tolist() == ref_t and cols["a"].tolist() == ref_a and cols["b"].tolist() == ref_b
        with sensorq.open(Path(tmp) / "c", readonly=True) as reader:
            t, cols = reader.read("s")
            assert t.tolist() == ref_t and cols["a"].tolist() == ref_a


def test_zstd_runs_are_decompressed_on_demand_within_a_memory_budget(tmp_path, monkeypatch):
    from sensorq.store import zstdruns
    monkeypatch.setattr(zstdruns, "RUN_BYTES", 20_000)
    monkeypatch.setattr(zstdruns, "CACHE_BYTES", 50_000)
    rng = np.random.default_rng(5)
    n = 60_000
    t = T0 + np.cumsum(rng.integers(1, 5, n)).astype(np.int64)
    x = rng.integers(-300, 300, n).astype(np.int16)
    y = np.round(rng.normal(size=n), 2)
    path = tmp_path / "c"
    with sensorq.open(path, create=True, compression="zstd") as cache:
        cache.create_stream("s", [Channel("c0", "int16"), Channel("c1", "float64")], block_samples=500)
        for a in range(0, n, 7000):
            cache.append("s", t[a:a + 7000], [x[a:a + 7000], y[a:a + 7000]])
        check_read(cache, t, [x, y])                          # the writer, from its own files
        assert cache._zstd.cached_bytes <= 50_000 + 20_000
    with sensorq.open(path, readonly=True) as reader:
        assert len(reader._zstd.runs) > 5
        reader._zstd.cache.clear()
        reader._zstd.cached_bytes = 0
        index = reader.blocks("s")
        assert len(reader._zstd.cache) == 0                   # nothing decompressed yet
        bt, (bx, by) = index.decode(len(index) - 1)
        assert len(reader._zstd.cache) == 1                   # just the run of that block
        assert np.array_equal(bt, t[-len(bt):]) and same(bx, x[-len(bt):]) and same(by, y[-len(bt):])
        check_read(reader, t, [x, y])
        check_read(reader, t, [x, y], start=int(t[n // 3]), end=int(t[n // 2]))
        assert reader._zstd.cached_bytes <= 50_000 + 20_000


def _zstd_blocks(cache, stream: str) -> int:
    """Blocks of ``stream`` stored as zstd frames (their buffers are zstd runs: negative keys)."""
    index = cache.blocks(stream)
    keys = np.array([index.buffers.sources[b] for b in index.buffer_of])   # not fetched yet
    return int((keys < 0).sum())


def test_auto_compression_wraps_only_blocks_that_zstd_shrinks_by_a_quarter(tmp_path):
    """An accelerometer at rest (gravity and noise), which the codec codes near
    its entropy (zstd saves 7-9 %, enough for the old 5 % bar), stays plain
    and is read in place; a waveform that repeats a random pattern exactly
    (the codec's predictors see noise, zstd sees the repeats) is wrapped."""
    from sensorq.store.writing import ZSTD_MIN_SAVING
    import zstandard
    rng = np.random.default_rng(5)
    n = 40_000
    t = np.arange(n, dtype=np.int64) * 1_000_000
    pattern = rng.integers(-2000, 2000, 500)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("noise", [Channel("v", "int16")], block_samples=4096)
        cache.create_stream("pattern", [Channel("v", "int16")], block_samples=4096)
        cache.append("noise", t, [(1000 + rng.normal(0, 20, n)).astype(np.int16)])
        cache.append("pattern", t, [np.tile(pattern, n // 500).astype(np.int16)])
        cache.flush()
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        for stream, expect_wrapped in (("noise", False), ("pattern", True)):
            index = cache.blocks(stream)
            # the rule, checked against zstd itself on the plain bytes
            whole = [i for i in range(len(index)) if index.n_samples[i] == 4096]
            for i in whole:
                block = bytes(index.buffers[int(index.buffer_of[i])][
                    int(index.offset[i]):int(index.offset[i]) + int(index.length[i])])
                saving = 1 - len(zstandard.ZstdCompressor(level=3).compress(block)) / len(block)
                assert (saving >= ZSTD_MIN_SAVING) == expect_wrapped, (stream, saving)
                assert saving >= 0.05           # over the old 5 % bar: the case the rule decides
            assert (_zstd_blocks(cache, stream) >= len(whole)) == expect_wrapped
            assert cache.query(f"count from {stream}").value == n


def test_manifest_versions_mark_float_and_compact_streams_so_older_sensorq_refuses_them(tmp_path):
    """Float blocks may be ALP-coded, and compact blocks may hold split Rice
    mini-blocks (codec bits 6 and 7), both of which older sensorq reads as
    corrupt: such a cache says version 3 (floats) or 4 (a compact stream),
    and a writer upgrades an older manifest before it writes a block."""
    import json
    from sensorq.store.manifest import read_manifest, write_manifest
    path = tmp_path / "c"
    with sensorq.open(path, create=True) as cache:
        cache.create_stream("ints", [Channel("v", "int16")], codec="fast")
        assert json.loads((path / "manifest.json").read_text())["version"] == 1
        cache.create_stream("temps", [Channel("c", "float64")], codec="fast")
        assert json.loads((path / "manifest.json").read_text())["version"] == 3
        cache.create_stream("packed", [Channel("v", "int16")])          # compact, the default
        assert json.loads((path / "manifest.json").read_text())["version"] == 4
    # an older sensorq's manifest of the same cache (version 1), as written before ALP
    manifest = read_manifest(path)
    manifest.version = lambda: 1
    write_manifest(path, manifest)
    assert json.loads((path / "manifest.json").read_text())["version"] == 1
    with sensorq.open(path, readonly=True):
        pass                                          # a reader leaves it as it is
    assert json.loads((path / "manifest.json").read_text())["version"] == 1
    with sensorq.open(path) as cache:                 # a writer rewrites it first
        assert json.loads((path / "manifest.json").read_text())["version"] == 4
        cache.append("temps", np.arange(3, dtype=np.int64), [np.array([0.1, 0.2, 0.30000000000000004])])
    with sensorq.open(path, readonly=True) as cache:
        assert cache.query("count from temps").value == 3
