"""Issue 12's command-line slips, each as a user hit it: options before the
command, demo --cache, --json/--csv on explain and compile, a malformed CSV
header, info on empty streams and on data that grew, the missing-cache
hint, --help defaults, what ingest --capacity evicted, and re-ingesting."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import sensorq
from sensorq.cli import build_parser, main

SECOND = 1_000_000_000


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "sensorq.cli", *args], capture_output=True,
                          text=True, timeout=300, input=stdin)


@pytest.fixture
def small(tmp_path):
    """A cache with one stream z (int16, mg) of 10 000 samples at 1 kHz."""
    path = tmp_path / "c"
    z = (np.arange(10_000) % 3000).astype(np.int16)
    with sensorq.open(path, create=True) as cache:
        cache.create_stream("imu", [sensorq.Channel("z", "int16", "mg")], block_samples=512)
        cache.append("imu", np.arange(10_000, dtype=np.int64) * 1_000_000, [z])
    return str(path), z


def test_engine_and_cache_before_the_command(small, capsys):
    path, z = small
    for argv in (["--engine", "compiled", "explain", "--cache", path, "count where z > 2g"],
                 ["--cache", path, "--engine", "interpreted", "explain", "count where z > 2g"],
                 ["--engine", "compiled", "--cache", path, "count where z > 2g"]):
        assert main(argv) == 0, argv
        out = capsys.readouterr().out
        assert out.strip().splitlines()[-1].strip() == str(int((z > 2000).sum()))
        if "explain" in argv:
            assert f"({argv[argv.index('--engine') + 1]})" in out


def test_demo_cache_dir_is_where_the_demo_goes(tmp_path):
    target = tmp_path / "mydemo"
    done = run("demo", "--cache", str(target))
    assert done.returncode == 0, done.stderr
    assert (target / "manifest.json").exists() and str(target) in done.stdout
    with sensorq.open(target, readonly=True) as cache:
        assert {"env", "gait", "imu"} <= set(cache.streams)
    clash = run("demo", "--cache", str(target), "--path", str(tmp_path / "other"))
    assert clash.returncode == 1 and "different" in clash.stderr


def test_explain_and_compile_json_and_refused_csv(small, capsys):
    path, z = small
    assert main(["explain", "--json", "--cache", path, "count where z > 2g"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["result"]["value"] == int((z > 2000).sum())
    assert out["scan"]["blocks"] == 20 and any("plan:" in line for line in out["explain"])
    assert main(["compile", "--device", "--json", "--cache", path, "count where z > 2g"]) == 0
    compiled = json.loads(capsys.readouterr().out)
    assert main(["compile", "--device", "--cache", path, "count where z > 2g"]) == 0
    c_text = capsys.readouterr().out
    numbers = re.findall(r"0x([0-9a-f]{2})", c_text.split("{", 1)[1])
    assert bytes(int(n, 16) for n in numbers) == bytes.fromhex(compiled["hex"])
    assert compiled["length"] == len(numbers)
    for command in (["explain"], ["compile", "--device"]):
        with pytest.raises(SystemExit) as stop:
            main(command + ["--csv", "--cache", path, "count"])
        assert stop.value.code == 2
        assert "--csv is not available here" in capsys.readouterr().err


def test_a_malformed_header_is_not_quoted_whole(tmp_path):
    header = ";".join(["time"] + [f"s{i:03d}_" + "x" * 56 for i in range(200)])     # 12 KB
    header = header + ";" + ";".join(f"pad{i:03d}" + "y" * 360 for i in range(50))   # 30 KB
    rows = [";".join([str(k)] + ["1"] * 250) for k in range(3)]
    src = tmp_path / "semi.csv"
    src.write_text("\n".join([header] + rows) + "\n")
    assert len(header) > 30_000
    done = run("ingest", "--cache", str(tmp_path / "c"), str(src))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr) < 600, done.stderr
    assert "--delimiter ';'" in done.stderr
    for argv in (["--time-column", "nope"], ["--unit", "nope=mg"]):
        wide = tmp_path / "wide.csv"
        wide.write_text(",".join(["time"] + [f"c{i:05d}" for i in range(5000)]) + "\n")
        done = run("ingest", "--cache", str(tmp_path / "c"), *argv, str(wide))
        assert done.returncode == 1 and len(done.stderr) < 600, done.stderr
        assert "more)" in done.stderr
    ok = run("ingest", "--cache", str(tmp_path / "c"), "--delimiter", ";", str(src))
    assert ok.returncode == 0, ok.stderr
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        assert len(cache.streams["semi"].channels) == 250


def test_info_on_an_empty_stream_and_on_data_that_grew(tmp_path):
    path = tmp_path / "c"
    with sensorq.open(path, create=True, compression="none") as cache:
        cache.create_stream("empty", [sensorq.Channel("x", "int8")])
        cache.create_stream("tiny", [sensorq.Channel("x", "int8")])
        cache.append("tiny", [5 * SECOND], [[1]])
    done = run("info", "--cache", str(path))
    assert done.returncode == 0, done.stderr
    assert "None" not in done.stdout
    assert "stream empty: 0 samples in 0 blocks, no samples" in done.stdout
    ratio = re.search(r"([0-9.]+)x (smaller|larger) than raw", done.stdout)
    assert ratio.group(2) == "larger" and float(ratio.group(1)) > 1


def test_a_missing_cache_says_how_to_make_one(tmp_path):
    for args in (["count"], ["info"], ["streams", "drop", "x"], ["export", "imu", "-o", "x.csv"]):
        done = run("--cache", str(tmp_path / "nowhere"), *args)
        assert done.returncode == 1, args
        assert "create=True" not in done.stderr and "sensorq ingest" in done.stderr
        assert "nowhere" in done.stderr and "Traceback" not in done.stderr


def _subparsers(parser):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, child in action.choices.items():
                yield name, child
                yield from ((f"{name} {n}", c) for n, c in _subparsers(child))


MINE = ("query", "explain", "compile", "plot", "shell", "info", "streams", "config", "ingest",
        "export", "demo")


def test_help_says_every_default():
    """Every option that has a default (not a flag) says what it is."""
    for name, sub in _subparsers(build_parser()):
        if name.split()[0] not in MINE:
            continue
        for action in sub._actions:
            if not action.option_strings or action.nargs == 0 or action.help is None:
                continue
            if action.option_strings[0] in ("-h", "--help"):
                continue
            text = action.help
            assert "default" in text or action.required, (name, action.option_strings)


def test_ingest_says_what_the_ring_evicted(tmp_path):
    n = 292_000
    rng = np.random.default_rng(4)
    t = 1_700_000_000 * SECOND + np.arange(n, dtype=np.int64) * 10_000_000
    src = tmp_path / "big.csv"
    with open(src, "w") as f:
        f.write("time,v\n")
        f.write("\n".join(f"{a},{b}" for a, b in zip(t // 1_000_000, rng.integers(-30000, 30000, n))))
        f.write("\n")
    done = run("ingest", "--cache", str(tmp_path / "c"), "--capacity", "100KB",
               "--time-unit", "ms", str(src))
    assert done.returncode == 0, done.stderr
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        kept = cache.extent("big")
    assert 0 < kept.samples < n
    text = done.stdout
    assert f"{n:,} rows into stream 'big'" in text
    assert f"keeps {kept.samples:,} of the {n:,} rows ingested" in text
    assert f"evicted its oldest {n - kept.samples:,} samples" in text
    from sensorq.store.prepare import iso
    assert f"({iso(t[0])} up to {iso(kept.t_first)})" in text and "--capacity" in text


def test_reingesting_is_refused_or_skips_what_is_present(tmp_path):
    src = tmp_path / "s.csv"
    src.write_text("time,v\n" + "".join(f"{k},{k * 2}\n" for k in range(100)))
    cache = str(tmp_path / "c")
    assert run("ingest", "--cache", cache, "--time-unit", "s", str(src)).returncode == 0
    again = run("ingest", "--cache", cache, "--time-unit", "s", str(src))
    assert again.returncode == 1
    assert "already" in again.stderr and "--skip-existing" in again.stderr
    assert "nothing was stored" in again.stderr
    src.write_text("time,v\n" + "".join(f"{k},{k * 2}\n" for k in range(150)))   # grew by 50 rows
    more = run("ingest", "--cache", cache, "--time-unit", "s", "--skip-existing", str(src))
    assert more.returncode == 0, more.stderr
    assert "50 rows into stream 's'" in more.stdout and "100 rows at or before" in more.stdout
    with sensorq.open(cache, readonly=True) as c:
        t, cols = c.read("s")
    assert np.array_equal(t, np.arange(150) * SECOND) and np.array_equal(cols["v"], np.arange(150) * 2)
