"""The command line on the built-in demo cache, answers checked against numpy
over the same deterministic samples the demo is built from."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sensorq import demo

MINUTE = 60 * 1_000_000_000


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "sensorq.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "cache"
    done = run("demo", "--path", str(path))
    assert done.returncode == 0, done.stderr
    return str(path)


@pytest.fixture(scope="module")
def imu():
    """The demo's imu samples, regenerated exactly as build_demo makes them."""
    t, (x, y, z, accel) = demo.imu_samples(np.random.default_rng(demo.SEED))
    return t, x, y, z, accel


def test_count_last_10m_matches_numpy(demo_cache, imu):
    t, x, y, z, accel = imu
    done = run("--cache", demo_cache, "count where accel > 2g last 10m")
    assert done.returncode == 0, done.stderr
    now = t[-1] + 1
    expected = np.count_nonzero((accel > 2000) & (t >= now - 10 * MINUTE))
    assert int(done.stdout.strip()) == expected


@pytest.mark.parametrize("engine", ["compiled", "interpreted"])
def test_either_engine_gives_the_answer_and_explain_says_which_ran(demo_cache, imu, engine):
    t, x, y, z, accel = imu
    done = run("explain", "--engine", engine, "--cache", demo_cache, "count where accel > 2g last 10m")
    assert done.returncode == 0, done.stderr
    now = t[-1] + 1
    expected = np.count_nonzero((accel > 2000) & (t >= now - 10 * MINUTE))
    assert f"decoded ({engine})" in done.stdout
    assert "engine: auto" not in done.stdout            # chosen, not auto's choice
    assert done.stdout.strip().splitlines()[-1].strip() == str(expected)


def test_explain_says_why_auto_took_the_interpreter(demo_cache):
    """A fresh process has not loaded the kernels: auto's small scan goes to
    the interpreter, and explain says so, with the budget it has left."""
    env = {k: v for k, v in os.environ.items() if k != "SENSORQ_ENGINE"}
    done = run("explain", "--cache", demo_cache, "count where accel > 2g last 10m", env=env)
    assert done.returncode == 0, done.stderr
    assert "decoded (interpreted)" in done.stdout
    line = next(line for line in done.stdout.splitlines() if line.strip().startswith("engine:"))
    assert "auto takes the interpreter" in line and "of its 0.5 s" in line


def test_json_output_carries_units(demo_cache, imu):
    t, x, y, z, accel = imu
    done = run("--cache", demo_cache, "--json", "max z last 10m")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    now = t[-1] + 1
    assert out["unit"] == "mg"
    assert out["value"] == z[t >= now - 10 * MINUTE].max()


def test_csv_buckets_match_numpy_groupby(demo_cache, imu):
    t, x, y, z, accel = imu
    done = run("--cache", demo_cache, "--csv", "avg z by 5m")
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert rows[0] == ["time", "avg [mg]"]
    bucket = t // (5 * MINUTE)
    expected = [z[bucket == b].mean() for b in np.unique(bucket)]
    assert np.allclose([float(r[1]) for r in rows[1:]], expected, rtol=1e-9)


def test_query_error_points_at_the_column(demo_cache):
    done = run("--cache", demo_cache, "count where accel > 30degC")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    caret_line = [line for line in lines if line.strip() == "^"][0]
    query_line = lines[lines.index(caret_line) - 1]
    assert query_line[caret_line.index("^"):].startswith("30degC")


def test_unknown_channel_is_a_clear_error(demo_cache):
    done = run("--cache", demo_cache, "count where acel > 2g")
    assert done.returncode == 1
    assert "acel" in done.stderr and "accel" in done.stderr   # says what it is and suggests
    assert "Traceback" not in done.stderr


def test_info_and_explain(demo_cache):
    info = run("--cache", demo_cache, "info")
    assert info.returncode == 0, info.stderr
    for name in ("imu", "env", "gait", "accel", "temp", "degC"):
        assert name in info.stdout
    explain = run("explain", "--cache", demo_cache, "avg temp by 1h last 6h")
    assert explain.returncode == 0, explain.stderr
    assert "answered from statistics" in explain.stdout and "decoded" in explain.stdout


def test_missing_cache_is_a_clear_error(tmp_path):
    done = run("--cache", str(tmp_path / "nowhere"), "count")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "nowhere" in done.stderr
