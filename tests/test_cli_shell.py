"""`sensorq shell`: its command processor (queries checked against numpy,
modes, .timer, .explain, .engine, errors), completion, the loop fed by a
pipe in a subprocess, and history in a real terminal (a pty)."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

import numpy as np
import pytest

import sensorq
from sensorq.shell import Shell

MS = 1_000_000


@pytest.fixture
def cache_path(tmp_path):
    path = tmp_path / "c"
    t = np.arange(60_000, dtype=np.int64) * MS
    z = (np.arange(60_000) % 4000).astype(np.int16)
    with sensorq.open(path, create=True) as cache:
        cache.create_stream("imu", [sensorq.Channel("z", "int16", "mg"),
                                    sensorq.Channel("accel", "int16", "mg")])
        cache.create_stream("env", [sensorq.Channel("temp", "float32", "degC")])
        cache.append("imu", t, [z, z])
        cache.append("env", t[:10], [np.arange(10, dtype=np.float32)])
    return path


def test_queries_modes_and_switches(cache_path):
    z = (np.arange(60_000) % 4000)
    with sensorq.open(cache_path, readonly=True) as cache:
        shell = Shell(cache)
        assert shell.process("count where z > 2g") == str(int((z > 2000).sum()))
        assert shell.process("count where z > 2g;") == str(int((z > 2000).sum()))
        assert shell.process(".mode json") == "mode is json"
        assert json.loads(shell.process("max z from imu"))["value"] == z.max()
        assert shell.process(".mode csv") == "mode is csv"
        assert shell.process("avg temp").splitlines() == ["value,unit", "4.5,degC"]
        assert shell.process(".mode") == "mode is csv"
        assert shell.process(".mode html").startswith("error: mode 'html'")
        assert shell.process(".timer on") == "timer is on"
        out = shell.process("count from env").splitlines()
        assert out[1] == "10," and out[-1].startswith("time: ") and out[-1].endswith(" ms")
        assert shell.process(".timer off") == "timer is off"
        explained = shell.process(".explain count where z > 2g")
        assert "plan: AggregateQuery on stream 'imu'" in explained and "scan:" in explained
        assert shell.process(".explain on") == "explain is on"
        assert "scan:" in shell.process("count from env")
        assert shell.process(".engine interpreted") == "engine is interpreted"
        assert shell.engine == "interpreted"
        assert "imu: z (mg), accel (mg)" in shell.process(".streams")
        assert shell.process("count where acel > 2g").startswith("error: unknown channel 'acel'")
        assert shell.process(".nope").startswith("error: unknown command .nope")
        assert "⠀" in shell.process(".plot max z by 10s") or "⣿" in shell.process(".plot max z by 10s")
        assert not shell.done and shell.process(".quit") == "" and shell.done


def test_new_data_is_seen_without_leaving(cache_path):
    with sensorq.open(cache_path, readonly=True) as reader:
        shell = Shell(reader)
        assert shell.process("count from env") == "10"
        with sensorq.open(cache_path) as writer:
            writer.append("env", [10**12], [[1.0]])
            writer.flush()
            assert shell.process("count from env") == "11"


def test_completion_of_streams_channels_units_and_commands(cache_path):
    with sensorq.open(cache_path, readonly=True) as cache:
        shell = Shell(cache)
        assert shell.completions("count where ", "ac") == ["accel"]
        assert shell.completions("count from ", "en") == ["env"]
        assert "imu.accel" in shell.completions("avg ", "imu.")
        assert shell.completions("count where z > ", "2m") == ["2m", "2m/s", "2m/s2", "2m/s^2",
                                                              "2mA", "2mV", "2mW", "2mbar", "2mg",
                                                              "2mm"]
        assert shell.completions("count where temp > ", "30deg") == ["30deg/s", "30degC", "30degF"]
        assert shell.completions("", ".ti") == [".timer"]
        assert shell.completions(".mode ", "j") == ["json"]
        assert shell.completions(".engine ", "c") == ["compiled"]
        assert "percentile" in shell.completions("", "perc")


def test_shell_fed_by_a_pipe(cache_path):
    script = ".timer on\ncount where z > 2g\n.mode json\nmax z\n.quit\ncount\n"
    done = subprocess.run([sys.executable, "-m", "sensorq.cli", "shell", "--cache", str(cache_path)],
                          input=script, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    z = (np.arange(60_000) % 4000)
    assert lines[0] == "timer is on" and lines[1] == str(int((z > 2000).sum()))
    assert lines[2].startswith("time: ")
    tail = "\n".join(lines[4:])
    assert json.loads(tail[:tail.rindex("}") + 1])["value"] == z.max()
    assert done.stdout.count("time: ") == 2     # .quit stopped it before the last line


def test_history_in_a_terminal(cache_path, tmp_path):
    pty = pytest.importorskip("pty")
    history = tmp_path / "history"
    pid, fd = pty.fork()
    if pid == 0:      # the child: the shell on a terminal
        os.environ["SENSORQ_HISTORY"] = str(history)
        os.execv(sys.executable, [sys.executable, "-m", "sensorq.cli", "shell", "--cache",
                                  str(cache_path)])
    seen = b""

    def read_until(marker: bytes, timeout: float = 60):
        nonlocal seen
        end = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < end:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
        return marker in seen
    assert read_until(b"sensorq> ")
    os.write(fd, b"count from env\r")
    assert read_until(b"10\r\n")
    os.write(fd, b".quit\r")
    os.waitpid(pid, 0)
    assert "count from env" in history.read_text()
