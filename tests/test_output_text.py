"""What results say in text: durations are the shortest decimal of their exact
nanoseconds, and an empty window under the clock's now is named."""
from __future__ import annotations

import numpy as np

import sensorq
from sensorq import Channel

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def test_durations_print_as_their_exact_decimal(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [Channel("x", "int16")], max_gap_ns=1000 * MS)
        t = T0 + np.array([0, 30, 60, 90, 217, 1000], np.int64) * MS
        cache.append("s", t, {"x": np.array([1, 1, 1, 1, 0, 0], np.int16)})
        assert cache.query("duration where x > 0").to_csv().splitlines() == ["value,unit", "0.217,s"]
        episodes = cache.query("find episodes where x > 0").to_csv().splitlines()
        assert episodes[1].split(",")[2] == "0.217"


def test_an_empty_window_under_the_clock_says_so(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [Channel("x", "int16")])
        cache.append("s", [T0], {"x": [5]})
        result = cache.query("count where x > 0 last 10m", now_policy="clock")
        assert result.value == 0 and "holds no data" in result.warnings[0]
        assert cache.query("count where x > 0 last 10m").warnings == []    # now = the data's
