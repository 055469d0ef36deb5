"""A reader beside a writer that evicts: the writer deletes segments between
the reader's directory listing and its opening of them (forced here at that
exact moment through the file-system hook), and the reader must still serve
one contiguous stretch of every stream, never a stream with a hole."""
from __future__ import annotations

import numpy as np
import pytest

import sensorq
from sensorq import Channel
from sensorq.store import fileio
from sensorq.store.fileio import FileSystem

from faultfs import scramble

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


x_of = scramble


class EvictAfterListing(FileSystem):
    """Runs ``action`` once, right after the next directory listing."""

    def __init__(self):
        self.action = None

    def listdir(self, path):
        names = super().listdir(path)
        action, self.action = self.action, None
        if action is not None:
            action()
        return names


def contiguous(cache) -> np.ndarray:
    t, cols = cache.read("s")
    k = cols["i"]
    assert np.array_equal(k, np.arange(k[0], k[0] + len(k))), "the reader serves a stream with a hole"
    assert np.array_equal(t, T0 + k * MS) and np.array_equal(cols["x"], x_of(k))
    return k


@pytest.mark.parametrize("beyond", [0, 1, 2])
def test_segments_evicted_between_listing_and_open_leave_no_hole(tmp_path, beyond):
    """The reader last saw the writer's active segment half full; the writer
    then filled it, moved on, and evicts it (and ``beyond`` more) just after
    the reader lists the directory."""
    fs = EvictAfterListing()
    state = {"k": 0}

    def write(cache, n):
        k = np.arange(state["k"], state["k"] + n, dtype=np.int64)
        cache.append("s", T0 + k * MS, {"x": x_of(k), "i": k})
        cache.flush()
        state["k"] += n

    with fileio.install(fs):
        writer = sensorq.open(tmp_path / "c", create=True, capacity="512KiB")
        writer.create_stream("s", [Channel("x", "int16"), Channel("i", "int64")], block_samples=500)
        while len(writer._segments) < 6:
            write(writer, 3000)
        write(writer, 1000)
        reader = sensorq.open(tmp_path / "c", readonly=True)
        contiguous(reader)
        half_full = reader._segments[-1].number
        assert half_full == writer._active.number
        while writer._active.number < half_full + 2 + beyond:   # it fills up, the writer moves on
            write(writer, 3000)

        def evict():
            while writer._segments[0].number <= half_full + beyond - 1 + (beyond == 0):
                write(writer, 3000)
        fs.action = evict
        reader.refresh()
        k = contiguous(reader)
        assert reader.info()["problems"] == []
        reader.refresh()                           # and the next refresh catches up
        k2 = contiguous(reader)
        assert k2[-1] == state["k"] - 1 and k2[-1] >= k[-1]
        reader.close()
        writer.close()
