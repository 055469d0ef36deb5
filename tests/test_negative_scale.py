"""A channel whose scale is negative (physical = raw × scale): comparisons in
physical units turn round on the raw values.  Hand-worked."""
from __future__ import annotations

import numpy as np
import pytest

import sensorq
from sensorq import Channel


@pytest.mark.parametrize("engine", ["interpreted", "compiled"])
def test_comparisons_on_a_negatively_scaled_channel(tmp_path, engine):
    raw = np.array([-100, -80, -60, -40], np.int16)          # physical 25, 20, 15, 10 mg
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [Channel("v", "int16", "mg", scale=-0.25)])
        cache.append("s", np.arange(4, dtype=np.int64) * 10**9, {"v": raw})
        ask = lambda q: cache.query(q, engine=engine).value     # noqa: E731
        assert ask("count where v > 20mg") == 1               # 25
        assert ask("count where v >= 20mg") == 2              # 25, 20
        assert ask("count where v < 15mg") == 1               # 10
        assert ask("count where v <= 15mg") == 2              # 15, 10
        assert ask("count where v == 20mg") == 1
        assert ask("count where v != 20mg") == 3
        assert ask("max v") == 25.0 and ask("min v") == 10.0
