"""sensorq sync killed with SIGKILL at random moments: after every kill the
destination opens, holds a prefix of the source (nothing duplicated, nothing
out of order), and the next run goes on from there until the copy is whole;
a last run copies nothing.  SENSORQ_LONG_FAULTS=1 runs the long campaign."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

import sensorq
from sensorq import Channel
from sensorq.fleet.sync import sync

LONG = os.environ.get("SENSORQ_LONG_FAULTS") == "1"
T0 = 1_700_000_000_000_000_000
MS = 1_000_000

SYNCER = r"""
import sys, time
from sensorq.fleet.sync import sync
print("start", flush=True)
sync(sys.argv[1], sys.argv[2], batch_bytes=int(sys.argv[3]),
     on_batch=lambda s: time.sleep(float(sys.argv[4])))
print("done", flush=True)
"""


def make_source(path, n):
    rng = np.random.default_rng(5)
    with sensorq.open(path, create=True, device="pump-9", compression="auto") as cache:
        cache.create_stream("imu", [Channel(c, "int16", "mg") for c in "xyz"], block_samples=200)
        cache.create_stream("env", [Channel("temp", "int32")], block_samples=50)
        t = T0 + np.arange(n, dtype=np.int64) * MS
        cache.append("imu", t, {c: rng.integers(-4000, 4000, n).astype(np.int16) for c in "xyz"})
        cache.append("env", t[::7], {"temp": np.arange(len(t[::7]), dtype=np.int32)})


def read(path, stream):
    with sensorq.open(path, readonly=True) as cache:
        if stream not in cache.streams:
            return np.zeros(0, np.int64), {}
        return cache.read(stream)


def check_prefix(src, dst, stream) -> int:
    ts, cs = read(src, stream)
    td, cd = read(dst, stream)
    n = len(td)
    assert n <= len(ts) and np.array_equal(td, ts[:n]), f"{stream}: not a prefix of the source"
    for name, col in cd.items():
        assert np.array_equal(col, cs[name][:n])
    return n


def test_sync_survives_kill_9_at_any_moment(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_source(src, 120_000 if LONG else 40_000)
    rng = random.Random(11)
    kills, runs, limit = 0, 0, 80 if LONG else 6
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    while True:
        runs += 1
        proc = subprocess.Popen([sys.executable, "-c", SYNCER, str(src), str(dst), "1500", "0.01"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        if kills < limit:
            assert proc.stdout.readline().strip() == b"start"
            time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            assert b"done" in out, err.decode()
            break
        assert proc.returncode == -signal.SIGKILL, err.decode()
        kills += 1
        with sensorq.open(dst, readonly=True) as cache:      # always opens
            assert not [p for p in cache.info()["problems"] if "corrupt" in p]
        check_prefix(src, dst, "imu")
        check_prefix(src, dst, "env")
    assert kills >= min(limit, 4)                      # most runs were killed mid-copy
    assert check_prefix(src, dst, "imu") == len(read(src, "imu")[0])
    assert check_prefix(src, dst, "env") == len(read(src, "env")[0])
    with sensorq.open(dst, readonly=True) as cache:
        assert cache.info()["problems"] == []
        assert cache.device == "pump-9"
    assert sync(src, dst).blocks == 0
