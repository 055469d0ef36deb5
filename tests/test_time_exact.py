"""Time literals are exact integers from the text to the engine's int64 bounds.

Issue 9: ``since 1795521599999ms`` used to become ...999000064 ns (the value went
through a float) and missed the sample at exactly that instant, durations past
about 104 days were rounded, and ``last 1e400s`` was an OverflowError traceback.
Expected values here are worked out by hand in Python integers.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sensorq
from sensorq.errors import QueryError, QueryTypeError
from sensorq.query import plan as P
from sensorq.query.expressions import ExactDecimal
from sensorq.query.planner import plan_query
from sensorq.query.timeparse import QueryRangeError
from sensorq.schema import Channel, Stream

INT64_MAX = 2**63 - 1
DAY = 86_400 * 10**9
FACTOR = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
NEWEST = 1_795_521_600_000_000_000          # 2026-11-24T12:00:00Z
STREAMS = {"imu": Stream("imu", (Channel("x", "int16", "mg"),))}


def plan(text, newest=NEWEST):
    return plan_query(text, STREAMS, lambda name: newest)


def range_error(text) -> QueryError:
    with pytest.raises(QueryRangeError) as info:
        plan(text)
    return info.value


def round_half_away(numerator: int, denominator: int) -> int:
    """By hand: the nearest integer to n/d (d > 0, n >= 0), halves up."""
    whole, rest = divmod(numerator, denominator)
    return whole + (2 * rest >= denominator)


# --- end to end: the sample at exactly the bound -------------------------------------------

def test_since_an_epoch_millisecond_counts_the_sample_at_that_instant(tmp_path):
    ms = 1_795_521_599_999
    t = np.array([ms - 1, ms, ms + 1], np.int64) * 10**6
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("imu", [Channel("x", "int16", "mg")])
        cache.append("imu", t, {"x": np.array([1, 2, 3], np.int16)})
        assert cache.query(f"count since {ms}ms").value == 2
        assert cache.query(f"count between {ms}ms and {ms + 1}ms").value == 1
        assert cache.query(f"first x since {ms}ms").value == 2
        assert cache.query(f"count at {ms + 1}ms last 1ms").value == 1
        assert cache.query(f"count since {ms * 1000}us").value == 2


# --- hand-worked plans -------------------------------------------------------------------

def test_since_an_epoch_millisecond_is_that_many_nanoseconds_exactly():
    query = plan("count since 1795521599999ms")
    assert query.time.start_ns == 1_795_521_599_999_000_000
    query = plan("count between 1795521599999ms and 1795521599999999999ns")
    assert query.time == P.TimeRange(1_795_521_599_999_000_000, 1_795_521_599_999_999_999)


def test_long_durations_are_exact():
    now = NEWEST + 1
    query = plan("count by 200d last 300d")
    assert query.bucket_ns == 200 * DAY == 17_280_000_000_000_000
    assert query.time.start_ns == now - 300 * DAY
    assert plan("count since now - 200d").time.start_ns == now - 200 * DAY
    assert plan("count since 200d ago").time.start_ns == now - 200 * DAY
    assert plan("find episodes where x > 1 for >= 200d").min_duration_ns == 200 * DAY
    assert plan("duration where x > 1 gap <= 200d").max_gap_ns == 200 * DAY
    assert plan("count last 106751d").time.start_ns == now - 106_751 * DAY


def test_fractions_and_compound_durations_are_exact():
    assert plan("count last 1.1s").time.start_ns == NEWEST + 1 - 1_100_000_000
    assert plan("count by 1h30m last 1d").bucket_ns == 5_400 * 10**9
    assert plan("count by 1.5h15m last 1d").bucket_ns == 6_300 * 10**9
    # 0.0000000005s is half a nanosecond: it rounds away from zero
    assert plan("count by 1.0000000005s last 1d").bucket_ns == 1_000_000_001
    assert plan("count since 1795521599999.9999995ms").time.start_ns == 1_795_521_600_000_000_000


def test_the_int64_extremes_are_reachable_and_one_more_is_not():
    assert plan("count since 9223372036854775807ns").time.start_ns == INT64_MAX
    assert plan("count since 9223372036854775.807us").time.start_ns == INT64_MAX
    assert plan("find episodes where x > 1 for 9223372036854775807ns").min_duration_ns == INT64_MAX
    assert range_error("count since 9223372036854775808ns").column == 13
    assert range_error("find episodes where x > 1 for > 9223372036854775807ns").column == 33


@pytest.mark.parametrize("text, literal", [
    ("count last 1e400s", "1e400s"),
    ("count since 99999999999999999999s", "99999999999999999999s"),
    ("count since now - 1e400s", "1e400s"),
    ("count since 1e400s ago", "1e400s"),
    ("count between 1e400ms and now", "1e400ms"),
    ("count between now - 1h and 1e400ms", "1e400ms"),
    ("count by 1e400s last 1h", "1e400s"),
    ("find episodes where x > 1 for >= 1e400s", "1e400s"),
    ("duration where x > 1 gap <= 1e400s", "1e400s"),
    ("count at 1e400us last 1h", "1e400us"),
    ("count last 300000d", "300000d"),
    ("count last 1e99999999999s", "1e99999999999s"),
    ("count last 1h1" + "0" * 30 + "m", "1h1" + "0" * 30 + "m"),
])
def test_out_of_range_times_are_a_query_error_at_the_literal(text, literal):
    err = range_error(text)
    assert isinstance(err, QueryTypeError)
    assert err.column == text.index(literal) + 1
    assert "out of range" in err.reason and "64-bit" in err.reason


def test_offsets_that_carry_a_time_out_of_range_are_an_error_at_the_point():
    err = range_error("count since 9223372036854775807ns + 1ns")
    assert err.column == 13 and "outside 64-bit" in err.reason
    err = range_error("count since 2262-04-12")
    assert err.column == 13


def test_huge_and_tiny_exponents_cost_nothing():
    started = time.perf_counter()
    range_error("count last 1e999999999s")
    with pytest.raises(QueryTypeError, match="longer than 0"):
        plan("count last 1e-999999999s")
    with pytest.raises(QueryTypeError, match="1 to 10,000,000"):
        plan("top 1e999999999 x")
    range_error("count last " + "9" * 5000 + "s")           # more digits than int() converts at once
    assert plan("count last 0." + "0" * 5000 + "1e5010ns").time.start_ns == NEWEST + 1 - 10**9
    assert time.perf_counter() - started < 2


def test_exact_decimal_parts():
    assert ExactDecimal.parse("1795521599999") == ExactDecimal(False, "1795521599999", 0)
    assert ExactDecimal.parse("0012.5000e2") == ExactDecimal(False, "125", 1)
    assert ExactDecimal.parse(".5") == ExactDecimal(False, "5", -1)
    assert ExactDecimal.parse("1.") == ExactDecimal(False, "1", 0)
    assert ExactDecimal.parse("0.0e5", negative=True) == ExactDecimal(False, "", 4)
    assert ExactDecimal.parse("2.5E-3").top == -3
    assert ExactDecimal.parse("1e" + "9" * 50).exponent == 10**9


# --- properties --------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(unit=st.sampled_from(sorted(FACTOR)), data=st.data())
def test_random_integer_epoch_literals_plan_to_exact_bounds(unit, data):
    count = data.draw(st.integers(0, INT64_MAX // FACTOR[unit]))
    assert plan(f"count since {count}{unit}").time.start_ns == count * FACTOR[unit]
    end = data.draw(st.integers(count + 1, INT64_MAX // FACTOR[unit] + 1))
    ns = end * FACTOR[unit]
    if ns <= INT64_MAX:
        assert plan(f"count between {count}{unit} and {end}{unit}").time == \
            P.TimeRange(count * FACTOR[unit], ns)
    else:
        range_error(f"count between {count}{unit} and {end}{unit}")


@settings(max_examples=300, deadline=None)
@given(unit=st.sampled_from(sorted(FACTOR)), ns=st.integers(0, INT64_MAX),
       decimals=st.integers(0, 12), shift=st.integers(-3, 3))
def test_random_decimal_epoch_literals_round_half_away(unit, ns, decimals, shift):
    """``ns`` written in ``unit`` with ``decimals`` fraction digits (truncated),
    and the same value in e-notation: both round to the same hand-made integer."""
    scaled = ns * 10**decimals // FACTOR[unit]             # the literal's digits
    text = str(scaled).rjust(decimals + 1, "0")
    literal = f"{text[:len(text) - decimals]}.{text[len(text) - decimals:]}" if decimals else text
    expected = round_half_away(scaled * FACTOR[unit], 10**decimals)
    exponent_form = f"{scaled}e{-decimals + shift}" if shift else f"{scaled}e-{decimals}"
    expected_e = round_half_away(scaled * FACTOR[unit] * 10**max(shift, 0), 10**(decimals - min(shift, 0)))
    for text, want in ((literal, expected), (exponent_form, expected_e)):
        if want <= INT64_MAX:
            assert plan(f"count since {text}{unit}").time.start_ns == want, text
        else:
            range_error(f"count since {text}{unit}")


@settings(max_examples=200, deadline=None)
@given(unit=st.sampled_from(["ns", "us", "ms", "s", "m", "h", "d", "w"]), data=st.data())
def test_random_durations_are_exact(unit, data):
    factor = {**FACTOR, "m": 60 * 10**9, "h": 3_600 * 10**9, "d": DAY, "w": 7 * DAY}[unit]
    count = data.draw(st.integers(1, INT64_MAX // factor))
    query = plan(f"count by {count}{unit} last {count}{unit}", newest=INT64_MAX - 1)
    assert query.bucket_ns == count * factor
    assert query.time.start_ns == INT64_MAX - count * factor
