"""The model commands, end to end through the command line: ingest a CSV with a
label column, train, list, query the model's outputs, fit, export and add on
another cache.  Answers checked against the model's own scores."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import sensorq
from sensorq.models.derived import query_view

pytest.importorskip("sklearn")


def run(*args):
    done = subprocess.run([sys.executable, "-m", "sensorq.cli", *args], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 10 Hz stream whose label follows the signal: 'high' when x is near 900."""
    root = tmp_path_factory.mktemp("cli-models")
    rng = np.random.default_rng(4)
    n = 3000
    high = np.repeat(rng.integers(0, 2, n // 50), 50).astype(bool)
    x = np.where(high, 900, 100) + rng.normal(0, 30, n)
    lines = ["timestamp,x,y,state,split"]
    for i in range(n):
        lines.append(f"{1_790_000_000_000 + 100 * i},{x[i]:.1f},{rng.normal(0, 5):.1f},"
                     f"{'high' if high[i] else 'low'},{'train' if i < 2000 else 'test'}")
    csv_path = root / "data.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    cache = str(root / "c")
    run("--cache", cache, "ingest", str(csv_path), "--stream", "s")
    out = run("--cache", cache, "model", "train", "level", "--stream", "s", "--label", "state",
              "--where", "split == train", "--test-where", "split == test", "--exclude", "split",
              "--trees", "3", "--depth", "3")
    assert "model 'level': forest trained on" in out
    return root, cache


def test_models_lists_the_model(trained):
    _, cache = trained
    listed = json.loads(run("--cache", cache, "models", "--json"))
    assert [m["name"] for m in listed] == ["level"]
    assert listed[0]["accuracy"] > 0.9 and listed[0]["stream"] == "s"


def test_queries_over_the_model_equal_its_scores(trained):
    _, cache = trained
    count = json.loads(run("--cache", cache, "--json", "count where level == high"))["value"]
    with sensorq.open(cache, readonly=True) as c:
        scored = query_view(c).scored("level")
        classes = c.query("score level").columns["level"]
    assert count == int(np.sum(classes == "high")) and len(classes) == len(scored.start)
    rows = json.loads(run("--cache", cache, "--json", "score level last 5s"))["rows"]
    assert rows and set(rows[0]) == {"start", "end", "level", "level_high", "level_low"}


def test_export_and_add_on_another_cache_give_the_same_answers(trained):
    root, cache = trained
    out = run("--cache", cache, "model", "export", "level", "-o", str(root / "level.sqm"), "--device")
    assert "bytes written" in out
    other = str(root / "other")
    run("--cache", other, "ingest", str(root / "data.csv"), "--stream", "s")
    run("--cache", other, "model", "add", str(root / "level.sqm"))
    q = "count where level == high by 1m"
    assert json.loads(run("--cache", other, "--json", q)) == json.loads(run("--cache", cache, "--json", q))


def test_fit_keeps_a_variant_within_the_budget(trained):
    _, cache = trained
    out = run("--cache", cache, "model", "fit", "level", "--flash", "400B", "--ram", "256B")
    assert "kept:" in out
    listed = json.loads(run("--cache", cache, "models", "--json"))[0]
    assert listed["device_flash"] <= 400 and listed["device_ram"] <= 256


def test_a_damaged_model_file_is_refused(trained):
    root, cache = trained
    run("--cache", cache, "model", "export", "level", "-o", str(root / "whole.sqm"))
    data = bytearray((root / "whole.sqm").read_bytes())
    data[len(data) // 2] ^= 0x40
    (root / "bad.sqm").write_bytes(bytes(data))
    done = subprocess.run([sys.executable, "-m", "sensorq.cli", "--cache", cache, "model", "add",
                           str(root / "bad.sqm"), "--name", "bad"], capture_output=True, text=True)
    assert done.returncode == 1 and "bad.sqm" in done.stderr and "Traceback" not in done.stderr
