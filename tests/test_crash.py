"""Crash safety: a writer process is SIGKILLed at random moments; after each
kill everything it reported flushed is intact, anything more is a correct
continuation, and a new writer appends where the data ends.  Quick by default
(about ten kills); ``SENSORQ_LONG_FAULTS=1`` runs the long campaign."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import sensorq

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
LONG = os.environ.get("SENSORQ_LONG_FAULTS") == "1"
KILLS, KILL_SECONDS = (200, 600) if LONG else (10, 12)
CUTS = 60 if LONG else 5

# The writer: sample k has t = T0 + k ms, x = a scramble of k, i = k; so any
# surviving data can be checked against the index alone.
WRITER = r"""
import sys
import numpy as np
import pytest
import sensorq
from sensorq import Channel

path, capacity, limit, max_batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
T0, MS = 1_700_000_000_000_000_000, 1_000_000

def x_of(idx):
    return ((idx * 7919) % 65536 - 32768).astype(np.int16)

with sensorq.open(path, create=True, capacity=capacity) as cache:
    cache.create_stream("s", [Channel("x", "int16"), Channel("i", "int64")], block_samples=1000)
    newest = cache.newest_ns("s")
    k = 0 if newest is None else (newest - T0) // MS + 1
    print("start", k, flush=True)
    rng = np.random.default_rng(k)
    while k < limit:
        for _ in range(int(rng.integers(1, 5))):
            if rng.random() < 0.2:
                cache.append_one("s", T0 + k * MS, (int(x_of(np.array([k]))[0]), k))
                k += 1
                continue
            idx = np.arange(k, k + int(rng.integers(1, max_batch)), dtype=np.int64)
            cache.append("s", T0 + idx * MS, [x_of(idx), idx])
            k = int(idx[-1]) + 1
        cache.flush()
        active = cache._active          # where the flushed bytes end, for the power-cut test
        print("flushed", k, active.path.name, active.valid_end, flush=True)
print("done", flush=True)
"""


def x_of(idx: np.ndarray) -> np.ndarray:
    return ((idx * 7919) % 65536 - 32768).astype(np.int16)


def check_consistent(t: np.ndarray, cols: dict, first_index: int = 0) -> None:
    idx = np.arange(first_index, first_index + len(t), dtype=np.int64)
    assert np.array_equal(cols["i"], idx)
    assert np.array_equal(t, T0 + idx * MS)
    assert np.array_equal(cols["x"], x_of(idx))


def start_writer(path, capacity="64MB", limit=10**9, max_batch=3000):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), capacity, str(limit), str(max_batch)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    started = threading.Event()

    def pump():
        for line in proc.stdout:
            if not line.endswith("\n") or len(line.split()) not in (2, 4) and line != "done\n":
                continue            # cut short by the kill: not a report
            lines.append(line.split())
            if line.startswith("flushed"):
                started.set()       # past start-up (imports, numba cache): writing for real
        started.set()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return proc, lines, started, thread


def wait_started(proc, started, seconds=60) -> None:
    """Fail if the writer has not flushed within ``seconds`` (a cold numba
    cache compiles for a while first), killing it first: a writer left
    behind would append to its cache until the machine's end."""
    if not started.wait(seconds):
        proc.kill()
        proc.wait()
        pytest.fail(f"the writer did not flush within {seconds} s: {proc.stderr.read()[-2000:]}")


def test_sigkill_at_random_moments_loses_nothing_flushed(tmp_path):
    path = tmp_path / "c"
    rng = random.Random(20261125)
    last_reported = 0
    deadline = time.monotonic() + KILL_SECONDS
    kills = 0
    while kills < KILLS and time.monotonic() < deadline:
        proc, lines, started, thread = start_writer(path, max_batch=300)
        wait_started(proc, started)
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        thread.join(5)
        kills += 1
        assert not any(line and line[0] == "done" for line in lines)
        flushed = [int(line[1]) for line in lines if line and line[0] == "flushed"]
        starts = [int(line[1]) for line in lines if line and line[0] == "start"]
        assert starts and starts[0] >= last_reported       # it resumed after everything flushed
        if flushed:
            last_reported = flushed[-1]
        with sensorq.open(path) as cache:                  # recovery, as the next writer does it
            t, cols = cache.read("s")
            assert len(t) >= last_reported, f"lost flushed samples after kill {kills}"
            check_consistent(t, cols)
            assert cache.info()["problems"] == []
    assert kills >= 5          # ~10 on an idle 2-core machine
    # appends work again after the last kill, and survive a reopen
    with sensorq.open(path) as cache:
        n = len(cache.read("s")[0])
        idx = np.arange(n, n + 10, dtype=np.int64)
        cache.append("s", T0 + idx * MS, {"x": x_of(idx), "i": idx})
    with sensorq.open(path, readonly=True) as cache:
        t, cols = cache.read("s")
        assert len(t) == n + 10
        check_consistent(t, cols)


def test_power_cut_loses_only_unflushed_bytes(tmp_path):
    """A power cut keeps what was fsynced and an arbitrary prefix of the rest,
    perhaps followed by zeros: simulate that after a kill (cut the active
    segment anywhere after the last flush, drop segments started after it, pad
    with zeros) and check that recovery keeps every flushed sample."""
    path = tmp_path / "c"
    rng = random.Random(7)
    last_reported = 0
    for cut in range(CUTS):
        proc, lines, started, thread = start_writer(path, max_batch=2000)
        wait_started(proc, started)
        time.sleep(rng.uniform(0.05, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        thread.join(5)
        flushed = [line for line in lines if line and line[0] == "flushed"]
        last_reported = int(flushed[-1][1])
        name, durable = flushed[-1][2], int(flushed[-1][3])
        for later in sorted(path.glob("segment-*.sqs")):
            if later.name > name:
                later.unlink()
        victim = path / name
        size = victim.stat().st_size
        with open(victim, "r+b") as f:
            f.truncate(rng.randint(durable, size))
            if rng.random() < 0.5:
                f.seek(0, 2)
                f.write(b"\0" * rng.randint(1, 5000))
        with sensorq.open(path) as cache:
            t, cols = cache.read("s")
            assert len(t) >= last_reported, f"lost flushed samples after cut {cut}"
            check_consistent(t, cols)
            assert cache.info()["problems"] == []
