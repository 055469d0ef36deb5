"""Storage faults under the writer: disk full, I/O errors, short writes and
failed fsyncs, injected at every write-path call of a scripted workload
(tests/faultfs.py).  Whatever fails, a failed call stores nothing, what earlier
calls accepted survives, nothing unsynced is ever acknowledged, and the cache
reopens with every acknowledged sample.

The campaign is quick by default (a sample of the injection points);
``SENSORQ_LONG_FAULTS=1`` tries every one."""
from __future__ import annotations

import errno
import os
import random

import numpy as np
import pytest

import sensorq
from sensorq import Channel
from sensorq.errors import SensorqError, StorageError
from sensorq.store import fileio

from faultfs import FaultyFS, scramble

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
LONG = os.environ.get("SENSORQ_LONG_FAULTS") == "1"


x_of = scramble


def batch(start: int, n: int):
    k = np.arange(start, start + n, dtype=np.int64)
    return T0 + k * MS, {"x": x_of(k), "i": k}


def stored_indices(path) -> np.ndarray:
    with sensorq.open(path, readonly=True) as cache:
        assert cache.info()["problems"] == []
        t, cols = cache.read("s")
    k = cols["i"]
    assert np.array_equal(t, T0 + k * MS) and np.array_equal(cols["x"], x_of(k))
    return k


def new_cache(path, capacity="256KB"):
    cache = sensorq.open(path, create=True, capacity=capacity)
    try:
        cache.create_stream("s", [Channel("x", "int16"), Channel("i", "int64")], block_samples=300)
    except BaseException:
        cache.close()
        raise
    return cache


# --- the defects as reported ------------------------------------------------------


def test_a_full_disk_in_append_keeps_earlier_samples_and_stores_none_of_the_batch(tmp_path):
    """Issue 9's reproduction: blocks of 4096 on a disk that fills up."""
    path = tmp_path / "c"
    with sensorq.open(path, create=True, compression="none") as cache:
        cache.create_stream("s", [Channel("x", "int16"), Channel("i", "int64")], block_samples=4096)
        t, cols = batch(0, 3 * 4096)
        cache.append("s", t, cols)
        cache.flush()
        with fileio.install(FaultyFS(budget=100)):        # less than one record fits
            t, cols = batch(3 * 4096, 1000)
            cache.append("s", t, cols)                     # held in the open block: returns
            t, cols = batch(3 * 4096 + 1000, 12_288)
            with pytest.raises(StorageError, match="none of the 12288 samples.*1000 samples"):
                cache.append("s", t, cols)
        cache.flush()                                      # space is free again
        assert cache.info()["problems"] == []
    k = stored_indices(path)
    assert np.array_equal(k, np.arange(3 * 4096 + 1000))   # the 1,000 are there, none of the rest


def test_a_failed_fsync_is_never_followed_by_an_acknowledged_flush(tmp_path):
    path = tmp_path / "c"
    cache = new_cache(path)
    t, cols = batch(0, 1000)
    cache.append("s", t, cols)
    with fileio.install(FaultyFS("fsync", 0)):
        with pytest.raises(StorageError, match="fsync"):
            cache.flush()
    for retry in (cache.flush, lambda: cache.append("s", *batch(1000, 10))):
        with pytest.raises(StorageError, match="accepts nothing more"):
            retry()                       # Linux would report success here: we refuse
    with pytest.raises(StorageError):
        cache.close()
    assert cache._lock_fd is None         # closed all the same: the cache can be reopened
    k = stored_indices(path)
    assert np.array_equal(k, np.arange(len(k)))


def test_bit_rot_in_the_last_flushed_record_is_reported_not_cut(tmp_path):
    path = tmp_path / "c"
    with new_cache(path, capacity="4MB") as cache:
        t, cols = batch(0, 3000)
        cache.append("s", t, cols)
        cache.flush()
    newest = sorted(path.glob("segment-*.sqs"))[-1]
    data = bytearray(newest.read_bytes())
    data[-100] ^= 0x04              # inside the last block record, before the commit records
    newest.write_bytes(bytes(data))
    for readonly in (True, False, True):
        with sensorq.open(path, readonly=readonly) as cache:
            problems = cache.info()["problems"]
            assert any("checksum" in p and newest.name in p for p in problems), problems
    assert newest.stat().st_size == len(data)          # the writer cut nothing


def test_the_new_cache_directory_is_made_durable(tmp_path):
    from faultfs import RecordingFS
    fs = RecordingFS(tmp_path)
    with fileio.install(fs):
        new_cache(tmp_path / "a" / "b").close()
    made = [op.path for op in fs.log if op.kind == "mkdir"]
    synced = [op.path for op in fs.log if op.kind == "fsync_directory"]
    assert made == ["a", "a/b"]
    assert synced.index(".") < synced.index("a") and "a/b" in synced


def test_a_write_that_cannot_be_undone_poisons_the_writer(tmp_path):
    """The batch's undo (a truncate) fails too: nothing more is accepted, and
    the reopened cache holds a clean prefix."""
    path = tmp_path / "c"
    cache = new_cache(path)
    cache.append("s", *batch(0, 1000))
    cache.flush()

    class Both(FaultyFS):
        def ftruncate(self, fd, size):
            raise OSError(errno.EIO, "I/O error")
    # the batch's records go down in one pwrite (one per segment they fill), then its commit
    # record in another: the first fails, mid-batch
    with fileio.install(Both("pwrite", 0)):
        with pytest.raises(StorageError, match="could not be undone"):
            cache.append("s", *batch(1000, 3000))
    with pytest.raises(StorageError, match="accepts nothing more"):
        cache.append("s", *batch(1000, 10))
    with pytest.raises(StorageError):
        cache.close()
    k = stored_indices(path)
    assert np.array_equal(k, np.arange(len(k))) and len(k) >= 1000
    with sensorq.open(path) as again:                 # the next writer cuts the unfinished batch
        again.append("s", *batch(len(k), 10))
    assert np.array_equal(stored_indices(path), np.arange(len(k) + 10))


# --- the campaign: a fault at every write-path call -----------------------------


KINDS = [("pwrite", errno.ENOSPC, False), ("pwrite", errno.EIO, False), ("pwrite", 0, True),
         ("fsync", errno.EIO, False), ("unlink", errno.EIO, False),
         ("create", errno.ENOSPC, False), ("fsync_directory", errno.EIO, False),
         ("replace", errno.ENOSPC, False)]


class Workload:
    """Appends (batches and single samples), flushes, a new stream and a reopen,
    retrying after a failure as an application would; keeps the reference of
    what was accepted and what was acknowledged."""

    def __init__(self, path, seed: int):
        self.path, self.rng = path, random.Random(seed)
        self.accepted = 0         # samples whose append returned
        self.acked = 0            # samples covered by a flush that returned
        self.poisoned = False
        self.errors = 0

    def run(self, fs: FaultyFS | None) -> None:
        cache = None
        with fileio.install(fs or FaultyFS()):
            for step in range(80):
                try:
                    if cache is None:
                        cache = new_cache(self.path, capacity="64KiB")
                        self.resume(cache)
                    self.step(cache, step)
                except StorageError:
                    self.errors += 1
                    if cache is not None and cache._failure is not None:
                        self.poisoned = True
                        self.reopen(cache)
                        cache = None
            if cache is not None:
                try:
                    cache.close()
                    self.acked = self.accepted
                except StorageError:
                    self.errors += 1
                    self.poisoned = True

    def step(self, cache, step: int) -> None:
        r = self.rng.random()
        if r < 0.55:
            n = self.rng.choice([1, 50, 299, 300, 700, 2000, 6000])
            cache.append("s", *batch(self.accepted, n))
            self.accepted += n
        elif r < 0.7:
            for _ in range(self.rng.randint(1, 40)):
                k = self.accepted
                cache.append_one("s", T0 + k * MS, (int(x_of(np.array([k]))[0]), k))
                self.accepted += 1
        elif r < 0.95:
            cache.flush()
            self.acked = self.accepted
        else:
            cache.create_stream(f"extra{step}", [Channel("v", "float32")])

    def reopen(self, cache) -> None:
        """A poisoned writer: close it (it refuses to flush) and start again;
        what it held unflushed may be gone, what it stored stays a prefix."""
        try:
            cache.close()
        except SensorqError:
            pass

    def resume(self, cache) -> None:
        """After a reopen, go on after what is stored (at least all acknowledged)."""
        newest = cache.newest_ns("s")
        end = 0 if newest is None else (newest - T0) // MS + 1
        assert self.acked <= end <= self.accepted, (self.acked, end, self.accepted)
        self.accepted = end


def campaign_points(counts: dict[str, int], rng: random.Random):
    for call, code, short in KINDS:
        total = counts.get(call, 0)
        points = range(total) if LONG else sorted(rng.sample(range(total), min(total, 20)))
        for at in points:
            yield call, code, short, at


def test_a_fault_at_any_write_path_call_loses_nothing_acknowledged(tmp_path):
    counter = FaultyFS()
    dry = Workload(tmp_path / "dry", 5)
    dry.run(counter)
    k = stored_indices(tmp_path / "dry")
    assert counter.counts.get("unlink", 0) >= 2 and k[0] > 0          # the ring turned over
    assert np.array_equal(k, np.arange(k[0], dry.accepted))        # and kept the newest
    rng = random.Random(9)
    outcomes: dict[str, int] = {}
    for n, (call, code, short, at) in enumerate(campaign_points(counter.counts, rng)):
        path = tmp_path / f"run{n}"
        work = Workload(path, 5)
        fs = FaultyFS(call, at, code or errno.EIO, short)
        work.run(fs)
        assert fs.fired == 1
        k = stored_indices(path)
        assert np.array_equal(k, np.arange(k[0], k[0] + len(k)) if len(k) else k), \
            f"{call}#{at}: not one contiguous stretch"
        end = int(k[-1]) + 1 if len(k) else 0
        assert end >= work.acked, f"{call}#{at}: acknowledged samples lost"
        if not work.poisoned:
            assert end == work.accepted, f"{call}#{at}: stored {end}, accepted {work.accepted}"
        key = f"{call}/{os.strerror(code) if code else 'short write'}"
        outcomes[key] = outcomes.get(key, 0) + 1
    print("\nfault campaign:", ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))

