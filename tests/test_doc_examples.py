"""Every query example in docs/query.md runs on the demo cache (the parser tests
check that they plan; this checks that the engine answers each of them), and a
few are recomputed with numpy."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import sensorq
from sensorq import demo

DOC = Path(__file__).resolve().parent.parent / "docs" / "query.md"
EXAMPLES = [line.strip() for block in re.findall(r"```sensorq\n(.*?)```", DOC.read_text(), re.S)
            for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = demo.build_demo(tmp_path_factory.mktemp("demo") / "cache")
    with sensorq.open(path, readonly=True) as c:
        yield c


@pytest.mark.parametrize("text", EXAMPLES)
def test_example_runs(cache, text):
    result = cache.query(text)
    assert result.kind in ("scalar", "table")


def test_examples_were_found():
    assert len(EXAMPLES) > 50


def test_a_few_examples_against_numpy(cache):
    t, (x, y, z, accel) = demo.imu_samples(np.random.default_rng(demo.SEED))
    last10 = t >= t[-1] + 1 - 600 * 10**9
    mag = np.sqrt(x.astype(float) ** 2 + y.astype(float) ** 2 + z.astype(float) ** 2)
    assert cache.query("max mag(x, y, z) last 10m").value == pytest.approx(mag[last10].max())
    assert cache.query("count where x between -500mg and 500mg").value == \
        np.count_nonzero((x >= -500) & (x <= 500))
    assert cache.query("count where z > 2g or abs(x) > 1g").value == \
        np.count_nonzero((z > 2000) | (np.abs(x.astype(int)) > 1000))
    top = cache.query("top 5 accel last 10m").columns["value"]
    assert list(top) == sorted(accel[last10], reverse=True)[:5]
