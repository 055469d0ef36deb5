"""The ring: capacity and retention evict the oldest whole segments; what
remains is always the newest data, intact, and never more than the capacity."""
from __future__ import annotations

import numpy as np
import pytest

import sensorq
from sensorq import Channel
from sensorq.store.settings import segment_target

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def segment_bytes(path) -> int:
    return sum(p.stat().st_size for p in path.glob("segment-*.sqs"))


def noisy(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-30000, 30000, n).astype(np.int16)


@pytest.mark.parametrize("compression", ["none", "auto"])
def test_capacity_evicts_oldest_keeps_newest(tmp_path, compression):
    capacity = 256 * 1024
    path = tmp_path / "c"
    n_total = 0
    all_t, all_x = [], []
    with sensorq.open(path, create=True, capacity=capacity, compression=compression) as cache:
        cache.create_stream("s", [Channel("x", "int16")], block_samples=1000)
        for i in range(40):                                   # ~40 x 20 KB of incompressible data
            t = T0 + (n_total + np.arange(10_000, dtype=np.int64)) * MS
            x = noisy(10_000, i)
            cache.append("s", t, [x])
            n_total += 10_000
            all_t.append(t)
            all_x.append(x)
            assert segment_bytes(path) <= capacity
            assert cache.info()["bytes_used"] == segment_bytes(path)
        cache.flush()
        assert segment_bytes(path) <= capacity
        t_ref, x_ref = np.concatenate(all_t), np.concatenate(all_x)
        got_t, got = cache.read("s")
    # what is left is a suffix of what was written: the oldest went first
    assert 0 < len(got_t) < len(t_ref)
    k = len(t_ref) - len(got_t)
    assert np.array_equal(got_t, t_ref[k:]) and np.array_equal(got["x"], x_ref[k:])
    # and at least capacity minus one segment's worth of data is still there
    assert len(got_t) * 2 >= (capacity - 2 * segment_target(capacity)) * 0.9
    with sensorq.open(path, readonly=True) as reader:
        t2, d2 = reader.read("s")
        assert np.array_equal(t2, got_t) and np.array_equal(d2["x"], got["x"])
        assert reader.info()["problems"] == []
        assert reader.blocks("s").t_first[0] == got_t[0]


def test_eviction_is_shared_by_streams_and_queries_skip_evicted(tmp_path):
    path = tmp_path / "c"
    with sensorq.open(path, create=True, capacity="200KiB", compression="none") as cache:
        cache.create_stream("a", [Channel("x", "int16")], block_samples=500)
        cache.create_stream("b", [Channel("y", "int32")], block_samples=500)
        for i in range(30):
            t = T0 + (i * 5000 + np.arange(5000, dtype=np.int64)) * MS
            cache.append("a", t, [noisy(5000, i)])
            cache.append("b", t, [np.arange(5000, dtype=np.int32) + i * 5000])
        cache.flush()
        ta, _ = cache.read("a")
        tb, b = cache.read("b")
        assert segment_bytes(path) <= 200 * 1024
        # b's values are their own global index: the survivors are a contiguous suffix
        assert np.array_equal(b["y"], np.arange(150_000 - len(tb), 150_000, dtype=np.int32))
        assert ta[-1] == tb[-1] == T0 + (150_000 - 1) * MS
        early = cache.blocks("a", T0, T0 + 1000 * MS)
        assert len(early) == 0                      # evicted data is simply gone
        assert cache.newest_ns("a") == T0 + (150_000 - 1) * MS


def test_retention_drops_old_segments(tmp_path):
    path = tmp_path / "c"
    hour = 3600 * 10**9
    with sensorq.open(path, create=True, capacity="2MiB", retention="2h", compression="none") as cache:
        # 2 MiB / 16 = 128 KiB segments; 10 Hz of noise is ~20 B/s: a segment holds ~1.8 h
        cache.create_stream("s", [Channel("x", "int16")], block_samples=1000)
        for h in range(10):
            t = T0 + h * hour + np.arange(36_000, dtype=np.int64) * 100 * MS
            cache.append("s", t, [noisy(36_000, h)])
            cache.flush()
        t, _ = cache.read("s")
        assert cache.info()["segments"] >= 2
    newest = T0 + 10 * hour - 100 * MS
    assert t[-1] == newest
    # nothing within the retention window was dropped ...
    assert t[0] <= newest - 2 * hour
    # ... and at most about one segment's worth (~1.8 h) more is kept
    assert t[0] >= newest - 4 * hour
    with sensorq.open(path, readonly=True) as reader:
        assert reader.info()["retention_s"] == 2 * 3600
        assert np.array_equal(reader.read("s")[0], t)


def test_retention_applies_per_segment_with_many_segments(tmp_path):
    path = tmp_path / "c"
    with sensorq.open(path, create=True, capacity="4MB", retention=60, compression="none") as cache:
        # 4MB/16 = 256 KB segments; 1 kHz of noise is ~2 KB/s: a segment holds ~2 minutes
        cache.create_stream("s", [Channel("x", "int16")], block_samples=1000)
        for minute in range(20):
            t = T0 + (minute * 60_000 + np.arange(60_000, dtype=np.int64)) * MS
            cache.append("s", t, [noisy(60_000, minute)])
        cache.flush()
        t, _ = cache.read("s")
        newest = T0 + (20 * 60_000 - 1) * MS
        assert t[-1] == newest
        assert t[0] <= newest - 60 * 10**9
        assert t[0] >= newest - 60 * 10**9 - 2 * 256 * 1024 // 2 * MS   # at most ~one segment more
        assert segment_bytes(path) < 4_000_000


def test_smaller_capacity_on_reopen_evicts(tmp_path):
    path = tmp_path / "c"
    with sensorq.open(path, create=True, capacity="2MB", compression="none") as cache:
        cache.create_stream("s", [Channel("x", "int16")], block_samples=1000)
        cache.append("s", T0 + np.arange(600_000, dtype=np.int64) * MS, [noisy(600_000, 1)])
    assert segment_bytes(path) > 1_000_000
    with sensorq.open(path, capacity="512KiB") as cache:
        assert segment_bytes(path) <= 512 * 1024
        t, x = cache.read("s")
        assert t[-1] == T0 + (600_000 - 1) * MS
        assert np.array_equal(x["x"], noisy(600_000, 1)[-len(t):])


def test_reader_follows_the_ring_with_refresh(tmp_path):
    path = tmp_path / "c"
    writer = sensorq.open(path, create=True, capacity="300KiB", compression="none")
    writer.create_stream("s", [Channel("x", "int16"), Channel("k", "int64")], block_samples=700)
    reader = sensorq.open(path, readonly=True)
    k0 = 0
    for i in range(25):
        k = np.arange(k0, k0 + 9000, dtype=np.int64)
        writer.append("s", T0 + k * MS, [noisy(9000, i), k])
        writer.flush()
        k0 += 9000
        reader.refresh()
        t, cols = reader.read("s")
        wt, wcols = writer.read("s")
        assert np.array_equal(t, wt) and np.array_equal(cols["k"], wcols["k"])
        assert np.array_equal(cols["k"], np.arange(k0 - len(t), k0))    # a suffix, no gaps
        assert reader.info()["problems"] == []
    assert t[0] > T0                      # the ring has turned
    writer.close()
    reader.close()


def test_torn_new_segment_removed_by_writer_does_not_hide_older_data(tmp_path):
    path = tmp_path / "c"
    with sensorq.open(path, create=True, capacity="1MiB", compression="none") as writer:
        writer.create_stream("s", [Channel("k", "int64")], block_samples=500)
        k = np.arange(200_000, dtype=np.int64)
        writer.append("s", T0 + k * MS, [noisy(200_000, 3).astype(np.int64)])
    segments = sorted(path.glob("segment-*.sqs"))
    assert len(segments) >= 2
    number = int(segments[-1].name[8:18]) + 1
    torn = path / f"segment-{number:010d}.sqs"
    torn.write_bytes(b"SQSG\x01")          # a crash right after creating the next segment
    reader = sensorq.open(path, readonly=True)
    before = reader.read("s")[0]
    assert reader.info()["problems"] == []
    with sensorq.open(path):
        assert not torn.exists()
    reader.refresh()
    assert np.array_equal(reader.read("s")[0], before)
    with sensorq.open(path) as writer:
        writer.append("s", [T0 + 10**12], [[5]])
    reader.refresh()
    t, cols = reader.read("s")
    assert np.array_equal(t[:-1], before) and t[-1] == T0 + 10**12 and cols["k"][-1] == 5
    reader.close()
