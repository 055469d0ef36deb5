"""Stream management in the store (store/streams.py): drop, rename, truncate
before a time, settings of an existing cache.  Answers are checked against
numpy over the samples the test appended; crash safety by failing the
manifest write (fileio) and by reopening."""
from __future__ import annotations

import json

import numpy as np
import pytest

import sensorq
from sensorq.store import fileio
from sensorq.store.manifest import MANIFEST_NAME

SECOND = 1_000_000_000


def make(path, n=5000, block=256, capacity="8MB", compression="none", streams=("a", "b"), codec="compact"):
    rng = np.random.default_rng(7)
    data = {}
    with sensorq.open(path, create=True, capacity=capacity, compression=compression) as cache:
        for k, name in enumerate(streams):
            cache.create_stream(name, [sensorq.Channel("v", "int16", "mg")], block_samples=block, codec=codec)
            t = (k * 7 + np.arange(n, dtype=np.int64)) * 10_000_000        # 100 Hz
            v = rng.integers(-1000, 1000, n).astype(np.int16)
            cache.append(name, t, [v])
            data[name] = (t, v)
        cache.flush()
    return data


def answers(cache, stream, t, v, floor):
    keep = t >= floor
    return {"count": (cache.query(f"count from {stream}").value, int(keep.sum())),
            "min": (cache.query(f"min v from {stream}").value, float(v[keep].min())),
            "sum": (cache.query(f"sum v from {stream}").value, float(v[keep].astype(np.int64).sum())),
            "first": (cache.query(f"first v from {stream}").value, float(v[keep][0])),
            "top": (sorted((-cache.query(f"top 3 -v from {stream}").columns["value"]).tolist()),
                    sorted(np.sort(v[keep])[:3].astype(float).tolist()))}


@pytest.mark.parametrize("floor_at", [0, 1, 255, 256, 1000, 2049, 4999])
def test_truncate_hides_older_samples_from_reads_and_queries(tmp_path, floor_at):
    data = make(tmp_path / "c")
    t, v = data["a"]
    floor = int(t[floor_at]) - (1 if floor_at % 2 else 0)     # on a sample and between two
    with sensorq.open(tmp_path / "c") as cache:
        hidden = cache.truncate_stream("a", floor)
        assert hidden.samples == int((t < floor).sum())
    for readonly in (True, False):
        with sensorq.open(tmp_path / "c", readonly=readonly) as cache:
            rt, cols = cache.read("a")
            assert np.array_equal(rt, t[t >= floor]) and np.array_equal(cols["v"], v[t >= floor])
            for name, (got, want) in answers(cache, "a", t, v, floor).items():
                assert got == want, name
            # a window that starts before the floor is clipped too
            assert cache.query(f"count from a between {int(t[0])}ns and {floor + 1}ns").value == \
                int(((t >= floor) & (t <= floor)).sum())
            # the other stream is untouched
            assert cache.query("count from b").value == len(data["b"][0])
            info = cache.info()["streams"]["a"]
            assert info["samples"] == int((t >= floor).sum()) and not cache.info()["problems"]


def test_truncate_clips_the_writers_open_block_and_later_appends(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [sensorq.Channel("x", "float64")], block_samples=1000)
        t = np.arange(500, dtype=np.int64) * SECOND
        x = np.arange(500, dtype=np.float64)
        cache.append("s", t, [x])              # all in the open block, not flushed
        cache.truncate_stream("s", 100 * SECOND)
        assert cache.query("count from s").value == 400
        assert cache.query("min x from s").value == 100.0
        cache.append("s", t + 500 * SECOND, [x + 500])
        assert cache.query("count from s").value == 900
        rt, cols = cache.read("s")
        assert rt[0] == 100 * SECOND and cols["x"][0] == 100.0
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        assert cache.query("count from s").value == 900


def test_floors_only_move_forward(tmp_path):
    data = make(tmp_path / "c")
    t, _ = data["a"]
    with sensorq.open(tmp_path / "c") as cache:
        assert cache.truncate_stream("a", int(t[2000])).samples == 2000
        assert cache.truncate_stream("a", int(t[1000])).samples == 0
        assert cache.query("count from a").value == len(t) - 2000
        assert cache.floor_ns("a") == int(t[2000])


def test_drop_skips_blocks_silently_and_ring_reclaims_their_space(tmp_path):
    data = make(tmp_path / "c", capacity="256KB")
    with sensorq.open(tmp_path / "c") as cache:
        held = cache.drop_stream("a")
        assert held.samples == 5000
        assert "a" not in cache.streams
    for readonly in (True, False):
        with sensorq.open(tmp_path / "c", readonly=readonly) as cache:
            info = cache.info()
            assert list(info["streams"]) == ["b"] and info["problems"] == []
            assert cache.query("count").value == len(data["b"][0])   # one stream: no `from` needed
            with pytest.raises(sensorq.QueryNameError, match="unknown stream .a."):
                cache.query("count from a")
    # a new stream of the same name is a new stream: the old blocks never come back
    with sensorq.open(tmp_path / "c") as cache:
        cache.create_stream("a", [sensorq.Channel("v", "int16", "mg")], block_samples=256)
        assert cache.query("count from a").value == 0
        first_segments = {p.name for p in (tmp_path / "c").glob("segment-*")}
        t0, rng = 10**12, np.random.default_rng(1)
        for i in range(40):     # fill the ring: the dropped stream's segments go first
            cache.append("b", t0 + (i * 5000 + np.arange(5000, dtype=np.int64)) * 10_000_000,
                         [rng.integers(-1000, 1000, 5000).astype(np.int16)])
        cache.flush()
        assert cache.info()["bytes_used"] <= 256_000
    assert not first_segments & {p.name for p in (tmp_path / "c").glob("segment-*")}


def test_dropped_streams_do_not_hold_back_retention(tmp_path):
    rng = np.random.default_rng(3)
    noise = lambda n: rng.integers(-30000, 30000, n).astype(np.int16)   # noqa: E731
    with sensorq.open(tmp_path / "c", create=True, retention="10s", capacity="1MB",
                      compression="none") as cache:
        cache.create_stream("old", [sensorq.Channel("v", "int16")], block_samples=1024)
        cache.create_stream("new", [sensorq.Channel("v", "int16")], block_samples=1024)
        cache.append("old", np.arange(100_000, dtype=np.int64) * 1_000_000, [noise(100_000)])
        cache.flush()
        cache.drop_stream("old")
        for k in range(10):
            t = (200 + k * 20) * SECOND + np.arange(20_000, dtype=np.int64) * 1_000_000
            cache.append("new", t, [noise(20_000)])
            cache.flush()
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        for blocks in cache._blocks.values():      # no block of the old stream is left
            assert blocks.first("t_first") is None or blocks.first("t_first") >= 200 * SECOND


def test_rename_keeps_the_data_and_readers_follow(tmp_path):
    data = make(tmp_path / "c")
    reader = sensorq.open(tmp_path / "c", readonly=True)
    with sensorq.open(tmp_path / "c") as cache:
        cache.rename_stream("a", "accel")
        with pytest.raises(sensorq.SchemaError, match="exists"):
            cache.rename_stream("accel", "b")
        with pytest.raises(sensorq.SchemaError):
            cache.rename_stream("accel", "not a name")
        cache.append("accel", data["a"][0][-1] + 1 + np.arange(10, dtype=np.int64),
                     [np.ones(10, np.int16)])
    reader.refresh()
    assert reader.query("count from accel").value == 5010
    reader.close()
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        assert sorted(cache.streams) == ["accel", "b"]
        assert np.array_equal(cache.read("accel")[1]["v"][:5000], data["a"][1])


class FailReplace(fileio.FileSystem):
    def replace(self, src, dst):
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("operation", ["drop", "rename", "truncate", "settings"])
def test_a_failed_manifest_write_changes_nothing(tmp_path, operation):
    data = make(tmp_path / "c")
    before = (tmp_path / "c" / MANIFEST_NAME).read_bytes()
    with sensorq.open(tmp_path / "c") as cache:
        with fileio.install(FailReplace()), pytest.raises(sensorq.StorageError, match="manifest"):
            {"drop": lambda: cache.drop_stream("a"),
             "rename": lambda: cache.rename_stream("a", "z"),
             "truncate": lambda: cache.truncate_stream("a", int(data["a"][0][100])),
             "settings": lambda: cache.change_settings(capacity="1MB", retention="1h")}[operation]()
        assert sorted(cache.streams) == ["a", "b"]
        assert cache.query("count from a").value == 5000 and cache.capacity == 8_000_000
    assert (tmp_path / "c" / MANIFEST_NAME).read_bytes() == before


def test_manifest_version_marks_what_older_sensorq_cannot_read(tmp_path):
    make(tmp_path / "c", codec="fast")                       # (compact streams: version 4)
    manifest = tmp_path / "c" / MANIFEST_NAME
    assert json.loads(manifest.read_text())["version"] == 1     # unchanged for plain caches
    with sensorq.open(tmp_path / "c") as cache:
        cache.drop_stream("b")
        cache.truncate_stream("a", 10**9)
    body = json.loads(manifest.read_text())
    assert body["version"] == 2 and body["dropped"] == [2] and body["floors"] == {"1": 10**9}
    make(tmp_path / "d")
    assert json.loads((tmp_path / "d" / MANIFEST_NAME).read_text())["version"] == 4


def test_change_settings_evicts_and_says_what_went(tmp_path):
    data = make(tmp_path / "c", n=100_000, block=512, capacity="4MB")
    with sensorq.open(tmp_path / "c") as cache:
        lost = cache.change_settings(capacity="128KB", retention="none")
        assert cache.info()["bytes_used"] <= 128_000 and cache.info()["retention_s"] is None
        for name, (t, _) in data.items():
            left = cache.extent(name)
            assert lost[name].samples == len(t) - left.samples > 0
            assert lost[name].t_first == t[0] and lost[name].t_last == left.t_first
        lost = cache.change_settings(retention="30s")
        assert cache.info()["retention_s"] == 30
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        assert cache.capacity == 128_000


@pytest.mark.parametrize("block", [2, 3, 4096])
def test_a_clock_jump_of_2_63_ns_seals_the_block_before_it(tmp_path, block):
    """No block holds a step of 2^63 ns or more (format.md §3): the store seals
    the block before it, within one append and across appends."""
    t = np.array([-2**63, -2**63 + 1, -500_000_000, 2**63 - 2, 2**63 - 1], np.int64)
    v = np.arange(5, dtype=np.int16)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("a", [sensorq.Channel("v", "int16")], block_samples=block)
        cache.create_stream("b", [sensorq.Channel("v", "int16")], block_samples=block)
        cache.append("a", t, [v])
        cache.append("b", t[:3], [v[:3]])       # the jump arrives with the next append
        cache.append("b", t[3:], [v[3:]])
        for name in "ab":      # the writer's view, open block included
            assert cache.read(name)[0].tolist() == t.tolist()
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        for name in "ab":
            rt, cols = cache.read(name)
            assert rt.tolist() == t.tolist() and cols["v"].tolist() == v.tolist()


@pytest.mark.parametrize("shape_a, shape_b", [((7, 3), (1, 3)), ((5,), (2,)), ((0, 3), (2, 3)),
                                              ((4, 2), (0, 2))])
def test_cat_records_matches_numpy(shape_a, shape_b):
    """A writer's index is its sealed blocks' statistics and its open block's,
    concatenated as bytes (streams._cat_records): the same array, byte for
    byte, as numpy's field-by-field concatenation."""
    from sensorq.codec.header import ENTRY_DTYPE
    from sensorq.store.streams import _cat_records
    rng = np.random.default_rng(5)

    def records(shape):
        raw = rng.integers(0, 256, int(np.prod(shape)) * ENTRY_DTYPE.itemsize, dtype=np.uint8)
        return raw.view(ENTRY_DTYPE).reshape(shape)
    a, b = records(shape_a), records(shape_b)
    joined = _cat_records(a, b[::-1])          # a reversed view: not contiguous in memory order
    expected = np.concatenate([a, b[::-1]])
    assert joined.dtype == expected.dtype and joined.shape == expected.shape
    assert joined.tobytes() == expected.tobytes()
