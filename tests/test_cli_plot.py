"""`sensorq plot`: the series drawn are the query's (read back from
matplotlib's lines and compared with numpy over the samples), episodes are
drawn as spans over the signal, and a terminal chart is drawn without -o."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import sensorq
from sensorq.plot import PlotError, plot_query

pytest.importorskip("matplotlib")
MS = 1_000_000
MINUTE = 60_000 * MS


@pytest.fixture(scope="module")
def signal(tmp_path_factory):
    """z in mg at 1 kHz for 20 minutes, with four shocks of known length."""
    path = tmp_path_factory.mktemp("plot") / "c"
    n = 20 * 60_000
    t = np.arange(n, dtype=np.int64) * MS
    z = (1000 + 20 * np.sin(np.arange(n) / 5000)).astype(np.int16)
    for at, length in ((100_000, 80), (400_000, 30), (700_000, 120), (1_100_000, 60)):
        z[at:at + length] = 3000
    with sensorq.open(path, create=True) as cache:
        cache.create_stream("imu", [sensorq.Channel("z", "int16", "mg")], block_samples=4096)
        cache.append("imu", t, [z])
    return path, t, z


def test_png_lines_are_the_buckets_of_the_query(signal, tmp_path):
    path, t, z = signal
    with sensorq.open(path, readonly=True) as cache:
        drawn = plot_query(cache, "avg z by 1m last 10m", tmp_path / "z.png")
    assert (tmp_path / "z.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (x, y), = drawn.lines
    now = t[-1] + 1
    keep = t >= now - 10 * MINUTE
    buckets = t[keep] // MINUTE
    want_t = np.unique(buckets) * MINUTE
    want_y = [z[keep][buckets == b].mean() for b in np.unique(buckets)]
    assert np.array_equal(np.asarray(x).astype("datetime64[ns]").view(np.int64), want_t)
    assert np.allclose(np.asarray(y, float), want_y, rtol=1e-12)


def test_episodes_are_spans_over_the_signal(signal, tmp_path):
    path, t, z = signal
    with sensorq.open(path, readonly=True) as cache:
        drawn = plot_query(cache, "find episodes where z > 2g for >= 50ms", tmp_path / "e.png")
    # the runs of z > 2000 lasting >= 50 ms: start at the first sample, end at the next sample
    assert drawn.spans == [(100_000 * MS, 100_080 * MS), (700_000 * MS, 700_120 * MS),
                           (1_100_000 * MS, 1_100_060 * MS)]
    band = drawn.series[0]
    assert band.kind == "band" and band.label == "z"
    bucket = int(band.t[1] - band.t[0])
    ids = t // bucket
    order = np.unique(ids)
    assert np.array_equal(band.t, order * bucket)
    assert np.array_equal(band.y2, [z[ids == b].max() for b in order])
    assert np.array_equal(band.y, [z[ids == b].min() for b in order])
    (x_max, y_max), (x_min, y_min) = drawn.lines          # what matplotlib drew
    assert np.array_equal(np.asarray(y_max, float), band.y2)
    assert np.array_equal(np.asarray(y_min, float), band.y)


def test_terminal_chart_and_the_command_line(signal, tmp_path):
    path, t, z = signal
    with sensorq.open(path, readonly=True) as cache:
        drawn = plot_query(cache, "max z by 1m", width=60, height=8)
        with pytest.raises(PlotError, match="by DUR"):
            plot_query(cache, "max z last 10m")
    lines = drawn.text.splitlines()
    assert lines[0] == "max z by 1m  [mg]" and len(lines) == 1 + 8 + 2
    assert all(len(line) == 12 + 60 for line in lines[1:9])
    assert "3000 ┤" in lines[1] and any(ch != "\u2800" for ch in lines[1][12:])
    done = subprocess.run([sys.executable, "-m", "sensorq.cli", "plot", "--cache", str(path),
                           "find episodes where z > 2g for >= 50ms", "--width", "60"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "3 episodes" in done.stdout and "█" in done.stdout
    png = tmp_path / "cli.png"
    done = subprocess.run([sys.executable, "-m", "sensorq.cli", "plot", "--cache", str(path),
                           "avg z by 1m", "-o", str(png)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and png.exists() and "20 values of avg" in done.stderr
