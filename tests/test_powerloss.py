"""Power cuts under a strict POSIX crash model (tests/faultfs.py): a file's
bytes are durable only up to its last fsync - later writes may land in any
order or torn - and a name only after an fsync of its directory.  A workload
(a writer that crashes, a second writer that adopts its segments, evictions)
is recorded once; a power cut is then simulated after every file operation,
several ways each, and every resulting directory must open with every
acknowledged sample and nothing wrong.

Quick by default; ``SENSORQ_LONG_FAULTS=1`` makes more states per point."""
from __future__ import annotations

import os
import random
import shutil

import numpy as np

import sensorq
from sensorq import Channel
from sensorq.store import fileio

from faultfs import RecordingFS, crash_states, scramble

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
LONG = os.environ.get("SENSORQ_LONG_FAULTS") == "1"


x_of = scramble


def append(cache, start: int, n: int) -> int:
    k = np.arange(start, start + n, dtype=np.int64)
    cache.append("s", T0 + k * MS, {"x": x_of(k), "i": k})
    return start + n


def abandon(cache) -> None:
    """What a SIGKILL does to a writer: nothing more is written or synced."""
    for segment in cache._segments:
        segment.release()
    cache._release_lock()
    cache._closed = True


def workload(path, fs: RecordingFS) -> None:
    rng = random.Random(3)
    k = 0
    cache = sensorq.open(path, create=True, capacity="64KiB")
    cache.create_stream("s", [Channel("x", "int16"), Channel("i", "int64")], block_samples=400)
    for _ in range(20):                                  # writer 1: appends, some flushes
        k = append(cache, k, rng.choice([150, 900, 2500, 5000]))
        if rng.random() < 0.5:
            cache.flush()
            fs.mark(k)                                   # acknowledged from here on
    cache.flush()
    fs.mark(k)
    newest = cache._active.number
    while cache._active.number == newest:                # a new segment, never flushed ...
        k = append(cache, k, 400)
    abandon(cache)                                       # ... and the writer dies
    cache = sensorq.open(path)                           # writer 2 adopts what is there
    newest = cache.newest_ns("s")
    k = (newest - T0) // MS + 1
    for _ in range(6):
        k = append(cache, k, rng.choice([150, 400]))
        cache.flush()
        fs.mark(k)
    cache.close()


def check_state(directory, acked) -> str:
    """Open a crash state as the next writer would; returns its outcome."""
    cache_dir = directory / "c"
    if acked is None:
        if not (cache_dir / "manifest.json").exists():
            return "no cache yet"
    with sensorq.open(cache_dir) as cache:
        assert cache.info()["problems"] == [], cache.info()["problems"]
        newest = cache.newest_ns("s") if "s" in cache.streams else None
        if acked is not None:
            assert newest is not None and (newest - T0) // MS + 1 >= acked, "acknowledged samples lost"
        if newest is None:
            return "empty"
        t, cols = cache.read("s")
        k = cols["i"]
        assert np.array_equal(k, np.arange(k[0], k[0] + len(k))), "not one contiguous stretch"
        assert np.array_equal(t, T0 + k * MS) and np.array_equal(cols["x"], x_of(k)), "wrong values"
        end = int(k[-1]) + 1
        append(cache, end, 10)                           # and the cache goes on working
        cache.flush()
        assert cache.read("s")[1]["i"][-1] == end + 9
    return "beyond acknowledged" if acked is not None and end > acked else "as acknowledged"


def test_power_cut_after_every_operation_keeps_every_acknowledged_sample(tmp_path):
    fs = RecordingFS(tmp_path / "live")
    (tmp_path / "live").mkdir()
    with fileio.install(fs):
        workload(tmp_path / "live" / "c", fs)
    assert sum(op.kind == "unlink" for op in fs.log) >= 2          # the ring turned over
    assert sum(op.kind == "mark" for op in fs.log) >= 8
    outcomes: dict[str, int] = {}
    states = 0
    rng = random.Random(11)
    for directory, acked in crash_states(fs.log, tmp_path / "states", rng, 6 if LONG else 1):
        try:
            outcome = check_state(directory, acked)
        except AssertionError as exc:
            raise AssertionError(f"crash state {directory.name} (acknowledged {acked}): {exc}") from None
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        states += 1
        shutil.rmtree(directory)
    print(f"\npower-loss states: {states}; " + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
    assert states > 300
