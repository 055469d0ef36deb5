"""Progress bars: drawn on a terminal, throttled, never in a pipe or with -q."""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np

from sensorq.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_drawn_on_a_terminal_only(monkeypatch):
    clock = iter(np.arange(0, 100, 0.5))
    monkeypatch.setattr("sensorq.progress.time.perf_counter", lambda: float(next(clock)))
    screen = Terminal()
    bar = ProgressBar("x.csv", total=200, stream=screen)
    for done in range(0, 201, 50):
        bar.update(done, done * 10)
    bar.close()
    frames = screen.getvalue().split("\r")[1:]
    assert frames[-1].startswith("x.csv [##############################] 100.0% 2,000 rows")
    assert screen.getvalue().endswith("\n")
    pipe = io.StringIO()
    quiet = ProgressBar("x.csv", total=200, stream=pipe)
    quiet.update(100, 1)
    quiet.close()
    assert pipe.getvalue() == ""
    off = ProgressBar("x.csv", total=200, stream=Terminal(), enabled=False)
    off.update(100, 1)
    assert off.stream.getvalue() == ""


def test_throttled_to_ten_redraws_a_second(monkeypatch):
    monkeypatch.setattr("sensorq.progress.time.perf_counter", lambda: 5.0)   # no time passes
    screen = Terminal()
    bar = ProgressBar("f", total=10**6, stream=screen)
    for done in range(1, 1000):
        bar.update(done)
    assert screen.getvalue().count("\r") == 1
    bar.update(10**6)                      # the end is always drawn
    assert screen.getvalue().count("\r") == 2


def test_no_bar_when_ingest_writes_to_a_pipe(tmp_path):
    src = tmp_path / "a.csv"
    src.write_text("time,v\n" + "".join(f"{k},{k}\n" for k in range(1000)))
    done = subprocess.run([sys.executable, "-m", "sensorq.cli", "ingest", "--cache",
                           str(tmp_path / "c"), "--time-unit", "s", str(src)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "\r" not in done.stderr and "[" not in done.stderr
