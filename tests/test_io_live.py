"""`sensorq ingest -`: a sensor loop piped in, flushed every --flush-every
seconds; a kill -9 loses at most the last interval (checked by killing the
process), EOF and SIGTERM store everything, a bad line stops with a clear
error and what came before it stored."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np

import sensorq

T0_MS = 1_700_000_000_000


def start(cache, *extra):
    return subprocess.Popen([sys.executable, "-m", "sensorq.cli", "ingest", "-", "--stream", "loop",
                             "--cache", str(cache), "--time-unit", "ms", *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def line(k: int) -> bytes:
    return f"{T0_MS + 10 * k},{k * 0.25},{'run' if k % 5 else 'idle'}\n".encode()


def send(proc, lines) -> None:
    proc.stdin.write(b"".join(lines))
    proc.stdin.flush()


def stored(cache):
    with sensorq.open(cache, readonly=True) as c:
        t, cols = c.read("loop")
        state = c.streams["loop"].channel("state")
        return t, cols["temp"], [state.name_of(v) for v in cols["state"]]


def expected(n):
    k = np.arange(n)
    return ((T0_MS + 10 * k) * 1_000_000, k * 0.25, ["run" if i % 5 else "idle" for i in k])


def check(cache, n):
    t, temp, state = stored(cache)
    want_t, want_temp, want_state = expected(n)
    assert np.array_equal(t, want_t) and np.array_equal(temp, want_temp) and state == want_state


def test_a_kill_loses_at_most_the_last_interval(tmp_path):
    cache = tmp_path / "c"
    proc = start(cache, "--flush-every", "0.2")
    send(proc, [b"time,temp,state\n"])
    sent = 0
    for burst in range(5):                     # bursts with quiet pipes between them
        send(proc, [line(k) for k in range(sent, sent + 300)])
        sent += 300
        time.sleep(0.8)                        # four intervals: the burst is flushed
    send(proc, [line(k) for k in range(sent, sent + 7)])     # inside the last interval
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    t, _, _ = stored(cache)
    assert sent <= len(t) <= sent + 7
    check(cache, len(t))


def test_eof_and_sigterm_store_everything(tmp_path):
    proc = start(tmp_path / "a", "--flush-every", "30")
    out, err = proc.communicate(b"time,temp,state\n" + b"".join(line(k) for k in range(1000)),
                                timeout=60)
    assert proc.returncode == 0, err
    assert b"1,000 rows into stream 'loop'" in out
    check(tmp_path / "a", 1000)

    proc = start(tmp_path / "b", "--flush-every", "30")
    send(proc, [b"time,temp,state\n"] + [line(k) for k in range(250)])
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
    check(tmp_path / "b", 250)


def test_a_bad_line_stops_with_its_number_and_keeps_what_came_before(tmp_path):
    proc = start(tmp_path / "c", "--flush-every", "0.2")
    send(proc, [b"time,temp,state\n"] + [line(k) for k in range(100)])
    time.sleep(0.8)
    send(proc, [line(100), b"1700000009999,warm,run\n"])
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert b"line 103" in err and b"'warm'" in err and b"100 rows before this batch" in err
    check(tmp_path / "c", 100)


def test_stdin_needs_a_stream_name(tmp_path):
    done = subprocess.run([sys.executable, "-m", "sensorq.cli", "ingest", "-", "--cache",
                           str(tmp_path / "c")], capture_output=True, text=True, input="", timeout=60)
    assert done.returncode == 1 and "--stream" in done.stderr
