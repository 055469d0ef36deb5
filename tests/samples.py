"""Random sensor streams and caches holding them, shared by the engine tests
(test_engine.py checks answers against numpy, test_tiers.py checks the two
engine tiers against each other)."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import sensorq
from sensorq.schema import Channel

SECOND = 1_000_000_000


def make_cache(tmp_path, t, a, b, f, block_samples=97, name="c"):
    cache = sensorq.open(tmp_path / name, create=True)
    cache.create_stream("s", [Channel("a", "int16", "mg"), Channel("b", "int32", "degC", scale=0.01),
                              Channel("f", "float64", "V")], block_samples=block_samples)
    if len(t):
        cache.append("s", t, [a, b, f])
    return cache


@st.composite
def streams(draw):
    n = draw(st.integers(0, 1500))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    steps = rng.choice([0, 1, 2, 5], size=n, p=[0.1, 0.6, 0.2, 0.1]) * 10_000_000  # 10 ms ticks, duplicates
    t = 1_700_000_000 * SECOND + np.cumsum(steps).astype(np.int64)
    a = np.cumsum(rng.integers(-40, 41, n)).astype(np.int16)
    b = rng.integers(1500, 3500, n).astype(np.int32)
    f = np.round(rng.normal(3.3, 0.5, n), 3)
    f[rng.random(n) < 0.05] = np.nan
    return t, a, b, f
