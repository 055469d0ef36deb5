"""The README's command-line examples run, in order, on a copy of the demo
cache, and the shell session shown there answers what it shows."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sensorq

README = Path(__file__).resolve().parent.parent / "README.md"
READINGS = "time;state;level\n" + "".join(
    f"2026-11-24T12:00:{k:02d}Z;{'run' if k % 3 else 'idle'};{k * 1.5}\n" for k in range(20))
LOOP = "time,temp\n" + "".join(f"{1_795_521_600 + k},{20 + k / 10}\n" for k in range(30))


def section() -> str:
    text = README.read_text()
    return text[text.index("## Command line"):text.index("## Layout")]


def commands() -> list[str]:
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", section(), re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


@pytest.fixture(scope="module")
def demo_copy(tmp_path_factory):
    work = tmp_path_factory.mktemp("readme")
    done = subprocess.run([sys.executable, "-m", "sensorq.cli", "demo", "--cache",
                           str(work / "demo")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return work


def test_the_examples_run(demo_copy):
    work = demo_copy
    (work / "readings.csv").write_text(READINGS)
    bin_dir = work / "bin"
    bin_dir.mkdir(exist_ok=True)
    sensorq_cmd = bin_dir / "sensorq"
    sensorq_cmd.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m sensorq.cli "$@"\n')
    loop = bin_dir / "my_sensor_loop"
    loop.write_text("#!/bin/sh\ncat <<'EOF'\n" + LOOP + "EOF\n")
    for f in (sensorq_cmd, loop):
        f.chmod(0o755)
    env = dict(os.environ, SENSORQ_CACHE=str(work / "demo"),
               PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert len(commands()) >= 12
    for command in commands():
        done = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert (work / "z.png").read_bytes()[:4] == b"\x89PNG"
    with sensorq.open(work / "demo", readonly=True) as cache:
        assert sorted(cache.streams) == ["env", "imu", "loop", "motions", "readings"]
        from sensorq.models.registry import ModelRegistry
        assert ModelRegistry(cache).names() == ["gesture", "motion"]
    assert (work / "motion.sqm").read_bytes()[:4] == b"SQM1"
    with sensorq.open(work / "demo", readonly=True) as cache:
        assert cache.query("count from loop").value == 30
        assert cache.query("count where state == run").value == 13
        assert cache.streams["readings"].rate_hz == 10 and cache.capacity == 64_000_000
    with sensorq.open(work / "copy", readonly=True) as cache:
        assert cache.query("count from shocks").value == 600_000


def test_the_shell_session_answers_as_shown(demo_copy):
    block = re.search(r"```text\n\$ sensorq shell\n(.*?)```", section(), re.S).group(1)
    lines = block.splitlines()
    inputs = [line[len("sensorq> "):] for line in lines if line.startswith("sensorq> ")]
    shown = [line for line in lines if not line.startswith("sensorq> ")]
    done = subprocess.run([sys.executable, "-m", "sensorq.cli", "shell", "--cache",
                           str(demo_copy / "demo")], input="\n".join(inputs) + "\n",
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got = done.stdout.splitlines()
    assert len(got) == len(shown)
    for want, have in zip(shown, got):
        if want.startswith("time: "):
            assert re.fullmatch(r"time: [0-9.]+ ms", have)
        else:
            assert have == want
