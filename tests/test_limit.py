"""``limit N`` keeps the first N rows of a table, in order; ``max_rows`` on
Cache.query sets the row limit.  Checked against the unlimited answer."""
from __future__ import annotations

import numpy as np
import pytest

import sensorq
from sensorq.errors import QueryError, RowLimitError
from sensorq import demo


@pytest.fixture(scope="module")
def cache():
    with sensorq.open(demo.ensure_demo(), readonly=True) as c:
        yield c


@pytest.mark.parametrize("text", ["find episodes where z > 2g for >= 50ms", "avg z by 1m",
                                  "find first 20 where z > 2g", "top 15 z", "newest 9 from imu",
                                  "count where z > 2g by 10s last 10m"])
@pytest.mark.parametrize("n", [1, 3, 7])
def test_limit_keeps_the_first_rows(cache, text, n):
    full, limited = cache.query(text), cache.query(f"{text} limit {n}")
    assert list(limited.columns) == list(full.columns)
    for name in full.columns:
        assert np.array_equal(limited.columns[name], full.columns[name][:n]), name


def test_limit_errors_point_at_the_clause(cache):
    with pytest.raises(QueryError) as info:
        cache.query("count where z > 2g limit 3")
    assert info.value.column == 20 and "one value" in str(info.value)
    with pytest.raises(QueryError, match="whole number"):
        cache.query("avg z by 1m limit 2.5")


def test_max_rows_on_cache_query(cache):
    with pytest.raises(RowLimitError, match="100"):
        cache.query("avg z by 1s last 10m", max_rows=100)
    assert len(cache.query("avg z by 1s last 10m", max_rows=600)) == 600
