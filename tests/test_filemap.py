"""Segment maps that grow without being made again (store/filemap.py).

A reader's refresh over a segment the writer is still appending to serves a
longer prefix of it; the prefix is a longer view of the same map while the
map has room, so the pages already mapped stay so.  Checked against the
file's own bytes (os.pread) and against numpy over what was appended."""
from __future__ import annotations

import contextlib
import gc
import os
import weakref

import numpy as np
import pytest

import sensorq
from sensorq import Channel
from sensorq.store import filemap

T0 = 1_700_000_000_000_000_000


def _newest_segment(cache):
    return max(cache._segments, key=lambda segment: segment.number)


def _append(writer, x, at):
    t = T0 + (np.arange(len(x), dtype=np.int64) + at) * 1_000_000
    writer.append("s", t, {"x": x})
    writer.flush()
    return at + len(x)


@contextlib.contextmanager
def _writer_and_reader(path, seed, n_blocks, first_blocks):
    """A writer that has appended first_blocks blocks of 1024 random int16
    values (of n_blocks made) and a reader: (writer, reader, x, appended)."""
    x = np.random.default_rng(seed).integers(-500, 500, n_blocks * 1024).astype(np.int16)
    with sensorq.open(path, create=True) as writer:
        writer.create_stream("s", [Channel("x", "int16")], block_samples=1024)
        at = _append(writer, x[:first_blocks * 1024], 0)
        with sensorq.open(path, readonly=True) as reader:
            yield writer, reader, x, at


def test_a_readers_growing_segment_is_one_map_viewed_longer(tmp_path):
    with _writer_and_reader(tmp_path / "c", 5, 40, 4) as (writer, reader, x, at):
        assert reader.query("count where x > 0").value == int((x[:at] > 0).sum())
        segment = _newest_segment(reader)
        first_map, first_view = segment._file_map, segment.buffer()
        assert first_map is not None and first_map.size >= filemap.RESERVE_MIN
        for _ in range(6):
            at = _append(writer, x[at:at + 6 * 1024], at)
            reader.refresh()
            want = int((x[:at] > 0).sum())
            assert reader.query("count where x > 0").value == want
            assert reader.query("count where x > 0", engine="compiled").value == want
            view = segment.buffer()
            assert segment._file_map is first_map      # the same map, a longer view
            assert len(view) == segment.served_end > len(first_view)
            fd = os.open(segment.path, os.O_RDONLY)
            try:
                assert view.tobytes() == os.pread(fd, len(view), 0)
            finally:
                os.close(fd)
        assert not view.flags.writeable
        # the first view still reads what it did
        assert first_view.tobytes() == view[:len(first_view)].tobytes()


def test_a_prefix_past_the_maps_room_makes_a_new_map(tmp_path, monkeypatch):
    monkeypatch.setattr(filemap, "RESERVE_MIN", 0)
    monkeypatch.setattr(filemap, "RESERVE_FRACTION", 1 << 30)      # room: a page at most
    with _writer_and_reader(tmp_path / "c", 6, 30, 2) as (writer, reader, x, at):
        reader.query("count where x > 0")
        segment = _newest_segment(reader)
        maps = [segment._file_map]          # (held: no id is reused)
        for _ in range(4):
            at = _append(writer, x[at:at + 7 * 1024], at)
            reader.refresh()
            assert reader.query("count where x < 3").value == int((x[:at] < 3).sum())
            maps.append(segment._file_map)
        assert len({id(m) for m in maps}) == 5


def test_without_the_c_librarys_mmap_segments_are_mapped_as_before(tmp_path, monkeypatch):
    monkeypatch.setattr(filemap, "_LIBC", None)
    x = np.arange(-3000, 3000, dtype=np.int16)
    with sensorq.open(tmp_path / "c", create=True) as writer:
        writer.create_stream("s", [Channel("x", "int16")], block_samples=512)
        at = _append(writer, x[:3000], 0)
        with sensorq.open(tmp_path / "c", readonly=True) as reader:
            assert reader.query("count where x >= -5").value == int((x[:at] >= -5).sum())
            _append(writer, x[3000:], at)
            reader.refresh()
            assert reader.query("count where x >= -5").value == int((x >= -5).sum())
            assert _newest_segment(reader)._file_map is None


def test_a_map_is_unmapped_once_no_view_holds_it(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 64)
    fd = os.open(path, os.O_RDONLY)
    try:
        made = filemap.map_file(fd, 10_000)
    finally:
        os.close(fd)
    if made is None:
        pytest.skip("no C library mmap here")
    view = made.view(10_000)
    assert view.tobytes() == (bytes(range(256)) * 64)[:10_000]
    with pytest.raises(ValueError, match="a view of"):
        made.view(made.size + 1)
    gone = weakref.ref(made)
    part = view[100:200]
    del made, view
    gc.collect()
    assert gone() is not None and part[0] == 100       # a slice keeps it mapped
    del part
    gc.collect()
    assert gone() is None
