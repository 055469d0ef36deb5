"""The planner: names, units, raw comparisons and time windows.

Streams are built by hand; expected thresholds are worked out by hand (2 g =
2000 mg) or with exact rational arithmetic (fractions.Fraction), and predicates
are checked by evaluating the plan on every value an integer type can hold and
comparing with numpy's own comparison of the physical values.
"""
from __future__ import annotations

import operator
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorq.errors import QueryError, QueryNameError, QuerySyntaxError, QueryTypeError, QueryUnitError
from sensorq.query import plan as P
from sensorq.query.planner import plan_query, result_unit
from sensorq.schema import Channel, Stream

MIN = 60_000_000_000
NEWEST = 1_795_521_000_000_000_000          # 2026-11-24T11:50:00Z
DOC = Path(__file__).resolve().parent.parent / "docs" / "query.md"

IMU = Stream("imu", tuple(Channel(c, "int16", "mg") for c in ("x", "y", "z", "accel")), max_gap_ns=5_000_000)
ENV = Stream("env", (Channel("temp", "int16", "degC", scale=0.01), Channel("temp_f", "float64", "degF"),
                     Channel("pressure", "float32", "hPa")))
GAIT = Stream("gait", tuple(Channel(c, "int16", "mg") for c in (
    "ankle_horiz_fwd", "ankle_vert", "ankle_horiz_lateral", "leg_horiz_fwd", "leg_vert",
    "leg_horiz_lateral", "trunk_horiz_fwd", "trunk_vert", "trunk_horiz_lateral")))
SI = Stream("si", (Channel("a", "int16", "m/s^2", scale=0.001), Channel("g_axis", "float64", "g"),
                   Channel("small", "int8", ""), Channel("depth", "float64", "m")))
STREAMS = {s.name: s for s in (IMU, ENV, GAIT)}
ALL = {**STREAMS, "si": SI}


def newest(name):
    return NEWEST


def plan(text, streams=STREAMS, **kw):
    return plan_query(text, streams, kw.pop("newest_ns", newest), **kw)


def where(text, streams=ALL):
    return plan(text, streams).where


def error(text, cls=QueryError, streams=STREAMS, **kw):
    with pytest.raises(cls) as info:
        plan(text, streams, **kw)
    return info.value


# --- a reference evaluator of plan predicates, straight from their definitions ------------

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
       "!=": operator.ne}


def value_of(expr, raw: dict) -> np.ndarray:
    if isinstance(expr, P.ChannelRef):
        return raw[expr.channel].astype(np.float64) * expr.scale
    if isinstance(expr, P.Const):
        return np.float64(expr.value)
    if isinstance(expr, P.UnaryOp):
        inner = value_of(expr.operand, raw)
        return {"neg": np.negative, "abs": np.abs, "sqrt": np.sqrt}[expr.op](inner)
    if isinstance(expr, P.BinaryOp):
        a, b = value_of(expr.left, raw), value_of(expr.right, raw)
        return {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}[expr.op](a, b)
    if isinstance(expr, P.Magnitude):
        return np.sqrt(sum(value_of(a, raw) ** 2 for a in expr.args))
    raise AssertionError(expr)


def holds(pred, raw: dict, n: int) -> np.ndarray:
    if isinstance(pred, P.BoolConst):
        return np.full(n, pred.value)
    if isinstance(pred, P.RawCompare):
        return OPS[pred.op](raw[pred.channel.channel], pred.threshold)
    if isinstance(pred, P.Compare):
        return np.broadcast_to(OPS[pred.op](value_of(pred.left, raw), value_of(pred.right, raw)), (n,))
    if isinstance(pred, P.And):
        return np.logical_and.reduce([holds(a, raw, n) for a in pred.args])
    if isinstance(pred, P.Or):
        return np.logical_or.reduce([holds(a, raw, n) for a in pred.args])
    if isinstance(pred, P.Not):
        return ~holds(pred.arg, raw, n)
    raise AssertionError(pred)


def exact_compare(values: np.ndarray, op: str, threshold: Fraction) -> np.ndarray:
    """``values OP threshold`` for integer values, exactly: v OP p/q  <=>  v*q OP p (q > 0)."""
    p, q = threshold.numerator, threshold.denominator
    assert abs(p) < 2 ** 62 and 40000 * q < 2 ** 62   # int64 arithmetic below is exact
    return OPS[op](values.astype(np.int64) * q, p)


def grid(dtype: str) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.arange(int(info.min), int(info.max) + 1, dtype=np.int64)


# --- the doc's examples ------------------------------------------------------------------

def doc_examples() -> list[str]:
    blocks = re.findall(r"```sensorq\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_every_doc_example_plans_on_the_demo_schema():
    examples = doc_examples()
    assert len(examples) >= 60
    for text in examples:
        query = plan(text)
        assert isinstance(query, (P.AggregateQuery, P.FindQuery, P.EpisodesQuery, P.TopQuery,
                                  P.NewestQuery)), text


def test_score_names_a_model_of_the_cache():
    """Planned against a cache without models, score names the missing model
    (with models: tests/test_models_query.py)."""
    err = error("score anomaly over 2s hop 500ms from imu", QueryNameError)
    assert "no model 'anomaly'" in err.reason and err.column == 7


# --- units and raw comparisons: hand-worked ------------------------------------------------

def raw(pred):
    assert isinstance(pred, P.RawCompare), pred
    return pred.channel.channel, pred.op, pred.threshold


def test_two_g_on_a_milli_g_channel_is_2000_raw():
    assert raw(where("count where z > 2g")) == ("z", ">", 2000.0)
    assert raw(where("count where z > 2000")) == ("z", ">", 2000.0)   # bare number: the channel's unit
    assert raw(where("count where z >= 1.5g")) == ("z", ">=", 1500.0)


def test_two_g_on_a_scaled_si_channel_rounds_onto_the_grid():
    # 2 g = 19.6133 m/s^2; / 0.001 = 19613.3 raw; "> 19613.3" on integers is ">= 19614"
    assert raw(where("count where a > 2g")) == ("a", ">=", 19614.0)
    assert raw(where("count where a < 2g")) == ("a", "<=", 19613.0)
    assert where("count where a == 2g") == P.BoolConst(False)
    assert where("count where a != 2g") == P.BoolConst(True)


def test_temperatures_convert_with_offsets_and_scale():
    # temp is int16 in 0.01 degC steps: 30 degC = 3000 raw; 86 degF = 30 degC; 300 K = 26.85 degC
    assert raw(where("count where temp > 30degC")) == ("temp", ">", 3000.0)
    assert raw(where("count where temp > 86degF")) == ("temp", ">", 3000.0)
    assert raw(where("count where temp > 300K")) == ("temp", ">", 2685.0)
    # float channel in degF: 30 degC = 86 degF, no rounding
    assert raw(where("count where temp_f < 30degC")) == ("temp_f", "<", pytest.approx(86.0))


def test_float_channels_keep_float_thresholds():
    assert raw(where("count where pressure > 1bar")) == ("pressure", ">", 1000.0)
    assert raw(where("count where pressure > 1013.25")) == ("pressure", ">", 1013.25)
    assert raw(where("count where g_axis > 500mg")) == ("g_axis", ">", 0.5)


@pytest.mark.parametrize("text, expected", [
    ("x > 1999.7", (">=", 2000.0)), ("x >= 1999.2", (">=", 2000.0)), ("x < 1999.2", ("<=", 1999.0)),
    ("x <= 1999.7", ("<=", 1999.0)), ("x > 2000", (">", 2000.0)), ("x == 2000", ("==", 2000.0)),
    ("x != 7", ("!=", 7.0)), ("x > -0.5", (">=", 0.0)), ("x < -0.5", ("<=", -1.0)),
])
def test_integer_rounding_rules(text, expected):
    assert raw(where(f"count where {text}"))[1:] == expected


@pytest.mark.parametrize("text, value", [
    ("x == 1999.5", False), ("x != 1999.5", True), ("x > 40000", False), ("x < 40000", True),
    ("x >= -32768", True), ("x < -32768", False), ("x > 32767", False), ("x <= 32767", True),
    ("x == 40000", False), ("x != -40000", True), ("small > 127", False), ("small >= -128", True),
    ("2 > 1 from imu", True), ("1g > 2000mg from imu", False),
])
def test_tests_no_stored_value_can_change_become_constants(text, value):
    assert where(f"count where {text}") == P.BoolConst(value)


def test_literals_as_written_are_not_snapped_but_conversions_are():
    # 1999.9999999999 is below 2000: "> 1999.9999999999" must let 2000 through
    assert raw(where("count where x > 1999.9999999999")) == ("x", ">=", 2000.0)
    assert raw(where("count where x < 1999.9999999999")) == ("x", "<=", 1999.0)
    # 0.29 / 0.01 is 28.999999999999996 and 1.15 / 0.01 is 114.99999999999999 in floats;
    # they mean exactly 29 and 115 raw
    assert raw(where("count where temp > 0.29degC")) == ("temp", ">", 29.0)
    assert raw(where("count where temp <= 1.15")) == ("temp", "<=", 115.0)
    assert raw(where("count where temp >= 30degC")) == ("temp", ">=", 3000.0)
    assert raw(where("count where x > 0.7 + 1299.3")) == ("x", ">", 1300.0)


def test_constant_on_the_left_is_flipped():
    assert raw(where("count where 2g < z")) == ("z", ">", 2000.0)
    assert raw(where("count where 1999.5 >= z")) == ("z", "<=", 1999.0)


def test_between_is_inclusive_both_ends():
    pred = where("count where x between -500mg and 1g")
    assert isinstance(pred, P.And)
    assert [raw(p) for p in pred.args] == [("x", ">=", -500.0), ("x", "<=", 1000.0)]
    err = error("count where x between 1g and 0", QueryTypeError)
    assert err.column == len("count where x between ") + 1


def test_not_folds_into_integer_comparisons_but_not_float_ones():
    assert raw(where("count where not x > 5")) == ("x", "<=", 5.0)
    assert where("count where not (x > 5 or y < 3)") == P.And((
        P.RawCompare(where("count where x > 0").channel, "<=", 5.0),
        P.RawCompare(where("count where y > 0").channel, ">=", 3.0)))
    assert isinstance(where("count where not pressure > 5"), P.Not)


def test_boolean_constants_simplify():
    assert raw(where("count where x > 5 and 2 > 1")) == ("x", ">", 5.0)
    assert where("count where x > 5 and x > 40000") == P.BoolConst(False)
    assert where("count where x > 5 or x < 40000") == P.BoolConst(True)


# --- hypothesis: the raw integer comparison selects exactly what the float comparison does --

_decimal = st.builds(lambda whole, frac, digits: f"{whole}.{frac:0{digits}d}" if digits else str(whole),
                     st.integers(-40000, 40000), st.integers(0, 999), st.sampled_from([0, 1, 2, 3]))
_op = st.sampled_from(["<", "<=", ">", ">=", "==", "!=", "="])


@settings(max_examples=200, deadline=None)
@given(_decimal, _op, st.sampled_from(["int8", "int16"]), st.booleans())
def test_raw_threshold_selects_the_same_integers(number, op, dtype, negate):
    stream = Stream("s", (Channel("v", dtype, "mg"),))
    text = f"count where {'not ' if negate else ''}v {op} {number}"
    pred = plan(text, {"s": stream}).where
    assert isinstance(pred, (P.RawCompare, P.BoolConst))
    values = grid(dtype)
    if isinstance(pred, P.RawCompare):
        assert pred.threshold == int(pred.threshold)
    got = holds(pred, {"v": values}, len(values))
    # independent reference: exact rational comparison of each stored value with the literal
    expected = exact_compare(values, "==" if op == "=" else op, Fraction(number))
    if negate:
        expected = ~expected
    assert np.array_equal(got, expected), (text, pred)


@settings(max_examples=200, deadline=None)
@given(st.integers(-2 ** 40, 2 ** 40), st.sampled_from(["", ".25", ".5", ".999"]), _op,
       st.sampled_from(["int32", "int64"]), st.booleans())
def test_wide_integer_thresholds_select_the_same_values(whole, fraction, op, dtype, negate):
    """int32 and int64: values around the threshold and at the ends of the type."""
    number = f"{whole}{fraction}"
    stream = Stream("s", (Channel("v", dtype, ""),))
    pred = plan(f"count where {'not ' if negate else ''}v {op} {number}", {"s": stream}).where
    info = np.iinfo(dtype)
    near = [whole + d for d in range(-2, 3) if info.min <= whole + d <= info.max]
    values = np.array(sorted({int(info.min), int(info.min) + 1, -1, 0, 1, int(info.max) - 1,
                              int(info.max), *near}), dtype=np.int64)
    got = holds(pred, {"v": values}, len(values))
    expected = np.array([OPS["==" if op == "=" else op](Fraction(int(v)), Fraction(number))
                         for v in values])
    assert np.array_equal(got, ~expected if negate else expected), (number, op, pred)


@settings(max_examples=120, deadline=None)
@given(st.integers(-25000, 25000), st.integers(0, 9), _op, st.sampled_from(["mg", "g", "m/s^2"]))
def test_scaled_channel_threshold_matches_exact_physical_comparison(whole, tenth, op, unit):
    """int16 in m/s^2 with scale 0.001: compare the planned raw test with the exact
    rational comparison of raw * 0.001 m/s^2 against the literal converted exactly."""
    literal = f"{whole}.{tenth}{unit}" if unit == "mg" else f"{whole / 1000:.4f}{unit}"
    pred = plan(f"count where a {op} {literal}", {"si": SI}).where
    values = grid("int16")
    got = holds(pred, {"a": values}, len(values))
    number = Fraction(re.match(r"-?[\d.]+", literal).group())
    g = Fraction("9.80665")
    to_si = {"mg": g / 1000, "g": g, "m/s^2": Fraction(1)}[unit]
    threshold_raw = number * to_si / Fraction(1, 1000)
    # a converted threshold within the planner's 1e-12 snapping tolerance of an integer is
    # that integer (literals of at most 6 significant digits never land that close otherwise)
    nearest = round(threshold_raw)
    tolerance = Fraction(1, 10 ** 12) * max(1, abs(nearest))
    if nearest != threshold_raw and abs(threshold_raw - nearest) <= tolerance:
        threshold_raw = Fraction(nearest)
    expected = exact_compare(values, "==" if op == "=" else op, threshold_raw)
    assert np.array_equal(got, expected), (literal, op, pred, float(threshold_raw))


# --- general comparisons and arithmetic ------------------------------------------------------

def test_expressions_compare_on_physical_values():
    pred = where("count where abs(x) > 1g")
    assert isinstance(pred, P.Compare) and pred.op == ">"
    assert pred.left == P.UnaryOp("abs", IMU_X, "mg") and pred.right == P.Const(1000.0, "mg")
    pred = where("count where mag(x, y, z) > 2g")
    assert pred.left == P.Magnitude((IMU_X, IMU_Y, IMU_Z), "mg") and pred.right.value == 2000.0


IMU_X = P.ChannelRef("x", 0, "int16", 1.0, "mg")
IMU_Y = P.ChannelRef("y", 1, "int16", 1.0, "mg")
IMU_Z = P.ChannelRef("z", 2, "int16", 1.0, "mg")
TEMP = P.ChannelRef("temp", 0, "int16", 0.01, "degC")


def test_channel_refs_carry_index_dtype_scale_unit():
    query = plan("avg temp last 1h")
    assert query.expr == TEMP and query.result_unit == "degC"
    assert plan("max accel").expr == P.ChannelRef("accel", 3, "int16", 1.0, "mg")


def test_constant_folding():
    assert raw(where("count where z > 1g + 500mg")) == ("z", ">", 1500.0)
    assert raw(where("count where z > 2 * 1000 - 500")) == ("z", ">", 1500.0)
    assert raw(where("count where z > -(-2g)")) == ("z", ">", 2000.0)
    assert raw(where("count where z > abs(-1g) / 2")) == ("z", ">", 500.0)
    assert raw(where("count where z > sqrt(4) * 1g")) == ("z", ">", 2000.0)
    err = error("count where z > 1 / 0", QueryTypeError)
    assert err.column == len("count where z > 1 / ") + 1


def test_units_of_arithmetic():
    assert plan("avg x * 2").expr.unit == "mg"
    assert plan("avg 2 * x").expr.unit == "mg"
    assert plan("avg x / 1000").expr.unit == "mg"
    assert plan("avg x * y").expr.unit == ""
    assert plan("avg x / y").expr.unit == ""
    assert plan("avg sqrt(x)").expr.unit == ""
    assert plan("avg abs(x)").expr.unit == "mg"
    assert plan("avg -x").expr == P.UnaryOp("neg", IMU_X, "mg")
    assert plan("avg x - 1g").expr == P.BinaryOp("-", IMU_X, P.Const(1000.0, "mg"), "mg")
    assert plan("avg x * 50%").expr == P.BinaryOp("*", IMU_X, P.Const(0.5, ""), "mg")


def test_two_channels_in_different_units_of_one_dimension():
    stream = Stream("s", (Channel("a", "float64", "g"), Channel("b", "float64", "mg"),
                          Channel("c", "float64", "degC"), Channel("f", "float64", "degF")))
    pred = plan("count where a > b", {"s": stream}).where
    values = {"a": np.array([1.0, 2.0, 0.5]), "b": np.array([500.0, 2500.0, 500.0])}
    # 1 g > 500 mg, 2 g < 2500 mg, 0.5 g == 500 mg
    assert list(holds(pred, values, 3)) == [True, False, False]
    pred = plan("count where c > f", {"s": stream}).where
    values = {"c": np.array([30.0, 30.0]), "f": np.array([85.0, 87.0])}   # 30 degC = 86 degF
    assert list(holds(pred, values, 2)) == [True, False]
    expr = plan("max a + b", {"s": stream}).expr    # b converted as an interval into g
    assert value_of(expr, {"a": np.array([1.0]), "b": np.array([500.0])})[0] == pytest.approx(1.5)


def test_mag_arguments_are_converted_to_the_first_ones_unit():
    stream = Stream("s", (Channel("a", "float64", "g"), Channel("b", "float64", "mg")))
    expr = plan("max mag(a, b)", {"s": stream}).expr
    assert expr.unit == "g"
    assert value_of(expr, {"a": np.array([0.3]), "b": np.array([400.0])})[0] == pytest.approx(0.5)
    expr = plan("max mag(300mg, b, 0)", {"s": stream}).expr      # constant first: its unit wins
    assert expr.unit == "mg"
    assert value_of(expr, {"b": np.array([400.0])})[0] == pytest.approx(500.0)
    expr = plan("max mag(0.3g, b)", {"s": stream}).expr
    assert expr.unit == "g"
    assert value_of(expr, {"b": np.array([400.0])})[0] == pytest.approx(0.5)
    # 3 g and 4 g make 5 g; a bare number takes the unit of the magnitude (g)
    assert plan("count where mag(3g, 4000mg) > 4.999 from s", {"s": stream}).where == P.BoolConst(True)
    assert plan("count where mag(3g, 4000mg) > 5001mg from s", {"s": stream}).where == P.BoolConst(False)


def test_unit_mismatch_names_both_dimensions_and_points_at_the_literal():
    text = "count where accel > 30degC"
    err = error(text, QueryUnitError)
    assert err.column == text.index("30degC") + 1
    assert "accel is acceleration (mg)" in err.reason and "30degC is temperature" in err.reason
    text = "count where 30degC < accel"
    assert error(text, QueryUnitError).column == text.index("30degC") + 1
    text = "avg temp + accel from env"
    err = error(text, QueryNameError)      # a second stream is a name error before units
    assert err.column == text.index("accel") + 1
    text = "count where temp > 1bar"
    assert error(text, QueryUnitError).column == text.index("1bar") + 1
    text = "max mag(x, 1degC)"
    assert error(text, QueryUnitError).column == text.index("1degC") + 1


def test_unknown_unit_lists_known_ones():
    text = "count where z > 2G"
    err = error(text, QueryUnitError)
    assert err.column == text.index("2G") + 1
    assert "did you mean g?" in err.reason and "mg" in err.reason and "hPa" in err.reason


# --- result units -------------------------------------------------------------------------

@pytest.mark.parametrize("agg, unit", [
    ("sum", "mg"), ("avg", "mg"), ("mean", "mg"), ("min", "mg"), ("max", "mg"), ("first", "mg"),
    ("last", "mg"), ("spread", "mg"), ("median", "mg"), ("percentile(90)", "mg"), ("std", "mg"),
    ("twa", "mg"), ("var", "mg^2"), ("rate", "mg/s"), ("derivative", "mg/s"), ("integral", "mg*s"),
    ("argmax", "ns"), ("argmin", "ns"),
])
def test_result_units(agg, unit):
    assert plan(f"{agg} z last 10m").result_unit == unit


def test_result_units_of_special_cases():
    assert plan("count where z > 2g").result_unit == ""
    assert plan("duration where z > 2g").result_unit == "s"
    assert result_unit("var", "m/s^2") == "(m/s^2)^2"
    assert result_unit("rate", "") == "1/s" and result_unit("var", "") == ""
    assert plan("rate x * y").result_unit == "1/s"


def test_aggregate_names_and_percentiles():
    assert plan("mean z").aggregate == "avg"
    assert plan("derivative z").aggregate == "rate"
    median = plan("median z")
    assert (median.aggregate, median.percentile) == ("median", 50.0)
    p = plan("percentile(99.9) z")
    assert (p.aggregate, p.percentile) == ("percentile", 99.9)
    assert plan("p95 z").percentile == 95.0
    assert plan("percentile(95, z)").expr == IMU_Z


# --- streams and names ------------------------------------------------------------------

def test_from_picks_the_stream():
    assert plan("count from env").stream == "env"
    assert plan("newest 3 from gait").stream == "gait"
    assert plan("count where z > 2g from imu").stream == "imu"


def test_only_stream_is_used_without_from():
    assert plan("count last 10m", {"imu": IMU}).stream == "imu"
    text = "count last 10m"
    err = error(text, QueryNameError)
    assert "from" in err.reason and "imu" in err.reason


def test_ambiguous_bare_name_lists_candidates():
    streams = {"imu": IMU, "other": Stream("other", (Channel("z", "int16", "mg"),))}
    text = "avg z last 10m"
    err = error(text, QueryNameError, streams)
    assert "imu.z" in err.reason and "other.z" in err.reason and err.column == text.index("z") + 1
    assert plan("avg other.z", streams).stream == "other"
    assert plan("avg z from other", streams).stream == "other"
    assert plan("avg z where x > 1g", streams).stream == "imu"   # x decides


def test_unknown_channel_suggests_nearest():
    text = "avg acel last 10m"
    err = error(text, QueryNameError)
    assert "did you mean accel?" in err.reason and err.column == text.index("acel") + 1
    text = "avg imu.tmp"
    err = error(text, QueryNameError)
    assert "in stream 'imu'" in err.reason and err.column == text.index("tmp") + 1
    text = "avg imx.z"
    err = error(text, QueryNameError)
    assert "did you mean imu?" in err.reason and err.column == text.index("imx") + 1
    text = "count from ebv"
    assert error(text, QueryNameError).column == text.index("ebv") + 1


def test_one_stream_per_query():
    text = "count where z > 2g and temp > 30degC"
    err = error(text, QueryNameError)
    assert err.column == text.index("temp") + 1 and "env" in err.reason
    text = "avg temp from imu"
    err = error(text, QueryNameError)
    assert err.column == text.index("temp") + 1 and "from imu" in err.reason
    text = "avg x + env.temp"
    assert error(text, QueryNameError).column == text.index("env.temp") + 1


def test_unknown_aggregate_and_function_list_the_known():
    err = error("avrage z", QueryNameError)
    assert "unknown aggregate 'avrage'" in err.reason and err.column == 1
    assert all(name in err.reason for name in ("count", "avg (mean)", "percentile(p)", "argmin"))
    text = "max mug(x, y)"
    err = error(text, QueryNameError)
    assert "did you mean mag?" in err.reason and "abs, sqrt, mag" in err.reason
    assert err.column == text.index("mug") + 1
    err = error("count where avg(z) > 1", QueryNameError)
    assert "start of the query" in err.reason


# --- query kinds -------------------------------------------------------------------------

def test_find_first_and_last():
    q = plan("find first where z > 2g")
    assert isinstance(q, P.FindQuery) and (q.direction, q.n) == ("first", 1)
    q = plan("find last 5 where accel > 3g last 10m")
    assert (q.direction, q.n, q.stream) == ("last", 5, "imu")
    assert raw(q.where) == ("accel", ">", 3000.0)
    assert error("find first from imu", QuerySyntaxError).column == 1


def test_episodes_min_duration_peak_and_gap():
    q = plan("find episodes where z > 2g for >= 50ms")
    assert isinstance(q, P.EpisodesQuery)
    assert q.min_duration_ns == 50_000_000 and q.peak == IMU_Z and q.peak_unit == "mg"
    assert q.max_gap_ns == IMU.max_gap_ns       # the stream's default
    assert plan("find episodes where z > 2g for > 50ms").min_duration_ns == 50_000_001
    assert plan("find episodes where z > 2g").min_duration_ns == 0
    q = plan("find episodes where mag(x, y, z) > 2g and x > 0 gap <= 1s")
    assert q.peak == P.Magnitude((IMU_X, IMU_Y, IMU_Z), "mg") and q.max_gap_ns == 1_000_000_000
    q = plan("find episodes where 2g < z")
    assert q.peak == IMU_Z
    q = plan("find episodes where temp between 20degC and 30degC")
    assert q.peak == TEMP and q.peak_unit == "degC"
    assert plan("find episodes where z > 2g gap < 1s").max_gap_ns == 999_999_999


def test_top_and_newest():
    q = plan("top 3 abs(x) where z > 2g last 1m")
    assert isinstance(q, P.TopQuery) and q.n == 3 and q.expr == P.UnaryOp("abs", IMU_X, "mg")
    assert q.unit == "mg" and raw(q.where) == ("z", ">", 2000.0)
    q = plan("newest 10 from imu")
    assert isinstance(q, P.NewestQuery) and q.n == 10 and q.where is None
    assert plan("newest where z > 2g").n == 1


def test_aggregate_options():
    q = plan("avg temp by 1h fill(prev) last 24h")
    assert q.bucket_ns == 3_600_000_000_000 and q.fill == P.Fill("prev")
    assert plan("avg temp by 1h fill(-1.5)").fill == P.Fill("value", -1.5)
    assert plan("avg temp by 1h fill(86degF)").fill.value == pytest.approx(30.0)
    assert plan("avg temp by 1h").fill == P.Fill("none")
    q = plan("duration where z > 2g last 1h")
    assert q.aggregate == "duration" and q.expr is None and q.max_gap_ns == IMU.max_gap_ns
    assert plan("twa temp gap <= 10s").max_gap_ns == 10_000_000_000
    assert plan("avg temp").max_gap_ns is None


@pytest.mark.parametrize("text, token, cls", [
    ("count z", "z", QueryTypeError),
    ("avg where z > 1", "where", QueryTypeError),
    ("duration last 1h from imu", "last", QueryTypeError),
    ("top 0 z", "0", QueryTypeError),
    ("top 2.5 z", "2.5", QueryTypeError),
    ("find first 3g where z > 1", "3g", QueryTypeError),
    ("percentile(101) z", "101", QueryTypeError),
    ("percentile(5g) z", "5g", QueryUnitError),
    ("avg z last 0s", "0s", QueryTypeError),
    ("avg z last 10", "10", QueryUnitError),
    ("avg z last 10g", "10g", QueryUnitError),
    ("avg z last 1h30", "1h30", QueryUnitError),
    ("avg z last 1h30g", "1h30g", QueryUnitError),
    ("avg z by 0ms", "0ms", QueryTypeError),
    ("avg z by 1m fill(sideways)", "fill", QueryNameError),
    ("avg z where z > 1 where z < 2", "where z < 2", QuerySyntaxError),
    ("avg z last 1m since now - 5m", "since", QuerySyntaxError),
    ("avg z for >= 1s", "for", QuerySyntaxError),
    ("avg z gap <= 1s", "gap", QueryTypeError),
    ("top 3 z by 1m", "by", QuerySyntaxError),
    ("avg z since 1700000000", "1700000000", QueryUnitError),
    ("avg z since 2026-13-01", "2026-13-01", QuerySyntaxError),
    ("avg z between now and now - 1h", "now - 1h", QueryTypeError),
    ("avg z since 2000s at 1000s", "2000s", QueryTypeError),
    ("avg z where sqrt(-4) > 1", "-4", QueryTypeError),
    ("avg abs(x, y)", "abs", QueryTypeError),
    ("percentile z", "z", QuerySyntaxError),
])
def test_semantic_errors_point_at_their_token(text, token, cls):
    err = error(text, cls)
    assert err.column == text.index(token, 4 if token == "z" else 0) + 1, str(err)
    assert err.query == text


# --- time windows ----------------------------------------------------------------------------

def window(text, **kw):
    q = plan(text, **kw)
    return q.time.start_ns, q.time.end_ns, q.now


def test_last_ends_just_after_the_newest_sample():
    start, end, now = window("count where z > 2g last 10m")
    assert now == P.Now("data", NEWEST + 1)
    assert (start, end) == (NEWEST + 1 - 10 * MIN, NEWEST + 1)


def test_no_window_reads_everything():
    assert window("count where z > 2g")[:2] == (None, None)


def test_iso_times_match_numpy_datetime64():
    def ns(iso):
        return int(np.datetime64(iso, "ns").astype(np.int64))
    cases = {
        "2026-11-24T11:50:00Z": ns("2026-11-24T11:50:00"),
        "2026-11-24 11:50": ns("2026-11-24T11:50"),
        "2026-11-24": ns("2026-11-24T00:00"),
        "2026-11-24T11:50:00.123456789Z": ns("2026-11-24T11:50:00.123456789"),
        "2026-11-24T12:50+01:00": ns("2026-11-24T11:50"),
        "2026-11-24T06:20-0530": ns("2026-11-24T11:50"),
        "1969-12-31T23:59:59.5Z": ns("1969-12-31T23:59:59.5"),
    }
    for iso, expected in cases.items():
        assert window(f"count since {iso} from imu", now_policy="clock",
                      clock_ns=ns("2030-01-01"))[0] == expected, iso


def test_since_between_and_epoch_units():
    start, end, _ = window("count since 2026-11-24T11:40Z from imu")
    assert (start, end) == (NEWEST - 10 * MIN, NEWEST + 1)
    start, end, _ = window("count between 2026-11-24T11:00Z and 2026-11-24T11:30Z from imu")
    assert (start, end) == (NEWEST - 50 * MIN, NEWEST - 20 * MIN)
    for literal in ("1795521000s", "1795521000000ms", "1795521000000000us", f"{NEWEST}ns", "1795521000.0s"):
        assert window(f"count since {literal} from imu")[0] == NEWEST, literal
    assert window("count since 1795520999.5s from imu")[0] == NEWEST - 500_000_000


def test_now_arithmetic_and_ago():
    now = NEWEST + 1
    assert window("count since now - 5m from imu")[0] == now - 5 * MIN
    assert window("count since 5m ago from imu")[0] == now - 5 * MIN
    assert window("count between now - 1h and now - 30m + 1.5s from imu")[:2] == (
        now - 60 * MIN, now - 30 * MIN + 1_500_000_000)


def test_at_anchors_now():
    at = NEWEST - 60 * MIN
    start, end, now = window("count last 10m at 2026-11-24T10:50Z from imu")
    assert now == P.Now("at", at) and (start, end) == (at - 10 * MIN, at)
    start, end, now = window("count at now - 1h from imu")
    assert now == P.Now("at", NEWEST + 1 - 60 * MIN) and (start, end) == (None, now.ns)


def test_clock_policy():
    start, end, now = window("count last 1m from imu", now_policy="clock", clock_ns=123 * MIN)
    assert now == P.Now("clock", 123 * MIN) and (start, end) == (122 * MIN, 123 * MIN)
    _, _, now = window("count last 1m from imu", now_policy="clock")
    import time
    assert abs(now.ns - time.time_ns()) < 60 * 1_000_000_000
    with pytest.raises(QueryError, match="now_policy"):
        plan("count last 1m from imu", now_policy="sundial")


def test_empty_stream_gives_empty_windows_not_errors():
    q = plan("count where z > 2g last 10m", newest_ns=lambda s: None)
    assert q.now == P.Now("data", 0) and q.time.start_ns == q.time.end_ns
    q = plan("avg z since 2026-11-24", newest_ns=lambda s: None)
    assert q.time.start_ns == q.time.end_ns


def test_durations_are_exact():
    for literal, ns in [("1.1s", 1_100_000_000), ("250ms", 250_000_000), ("10m", 600_000_000_000),
                        ("10min", 600_000_000_000), ("2h", 7_200_000_000_000), ("1d", 86_400_000_000_000),
                        ("1.5us", 1_500), ("7ns", 7), ("0.1s", 100_000_000),
                        ("1h30m", 90 * MIN), ("2m30s", 150_000_000_000), ("1d12h", 36 * 60 * MIN),
                        ("1s500ms", 1_500_000_000), ("5µs", 5_000)]:
        assert plan(f"avg temp by {literal}").bucket_ns == ns, literal


def test_since_in_the_future_of_data_is_an_empty_window():
    start, end, _ = window("count since 2030-01-01 from imu")
    assert start == end


# --- property: constant arithmetic folds to what exact arithmetic gives ---------------------

def _const_tree():
    leaves = st.integers(-50, 50).map(lambda v: ("num", v))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.tuples(st.sampled_from(["+", "-", "*", "/"]), inner, inner),
        st.tuples(st.just("neg"), inner)), max_leaves=7)


def _text(node) -> str:
    if node[0] == "num":
        return str(node[1]) if node[1] >= 0 else f"({node[1]})"
    if node[0] == "neg":
        return f"-{_text(node[1])}"
    return f"({_text(node[1])} {node[0]} {_text(node[2])})"


def _exact(node) -> Fraction:
    """Exact value of a generated tree; ZeroDivisionError on a division by zero."""
    if node[0] == "num":
        return Fraction(node[1])
    if node[0] == "neg":
        return -_exact(node[1])
    a, b = _exact(node[1]), _exact(node[2])
    if node[0] == "/":
        return a / b
    return {"+": a + b, "-": a - b, "*": a * b}[node[0]]


@settings(max_examples=150, deadline=None)
@given(_const_tree())
def test_constant_folding_matches_exact_arithmetic(tree):
    stream = {"s": Stream("s", (Channel("v", "float64", ""),))}
    text = f"count where v > {_text(tree)}"
    try:
        expected = _exact(tree)
    except ZeroDivisionError:
        with pytest.raises(QueryTypeError, match="division by zero"):
            plan(text, stream)
        return
    pred = plan(text, stream).where
    assert isinstance(pred, P.RawCompare)
    assert pred.threshold == pytest.approx(float(expected), rel=1e-9, abs=1e-9)


def test_keyword_named_channels_work_where_no_keyword_fits_or_qualified():
    names = ("at", "by", "last", "now", "top", "count", "where", "from", "nowcast", "bytes", "atmos")
    streams = {"s": Stream("s", tuple(Channel(c, "int16", "mg") for c in names))}
    for text, channel in [("count where at > 5", "at"), ("count where last > 5", "last"),
                          ("avg count", "count"), ("avg top", "top"), ("avg s.where last 1m", "where"),
                          ("max s.from", "from"), ("avg nowcast", "nowcast"), ("avg bytes by 1m", "bytes"),
                          ("count where atmos > 1", "atmos")]:
        q = plan(text, streams)
        ref = q.expr if q.expr is not None else q.where.channel
        assert ref.channel == channel, text
    with pytest.raises(QuerySyntaxError):
        plan("avg at", streams)       # 'at' here starts an at clause: write s.at


# --- property: any sequence of query words gives a plan or a QueryError, nothing else --------

_WORDS = ["count", "avg", "max", "percentile", "p95", "median", "duration", "find", "first", "last",
          "episodes", "top", "newest", "score", "over", "hop", "where", "from", "since", "between",
          "at", "by", "gap", "for", "fill", "and", "or", "not", "now", "ago", "x", "z", "temp", "imu",
          "env", "imu.z", "env.temp", "mag", "abs", "sqrt", "(", ")", ",", "+", "-", "*", "/", ">",
          ">=", "<", "<=", "=", "==", "!=", "2g", "500mg", "30degC", "0", "3", "1.5", "1e3", "1e400",
          "10m", "0s", "250ms", "2026-11-24", "2026-11-24T11:50Z", "1795521000s", "none", "prev"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=12))
def test_any_word_sequence_plans_or_raises_a_query_error(words):
    text = " ".join(words)
    try:
        query = plan(text)
    except QueryError as err:
        assert err.query == text
        assert err.column is None or 1 <= err.column <= len(text) + 1
        return
    assert query.stream in STREAMS
    start, end = query.time.start_ns, query.time.end_ns
    assert start is None or end is None or start <= end


_HEADS = ["count", "avg x", "max mag(x, y, z)", "percentile(50) z", "find first", "find last 2",
          "find episodes", "top 3 -z", "newest 2", "duration", "sum temp", "rate abs(temp) * 2",
          "integral z", "twa temp", "argmax x - y", "var sqrt(z)", "median 1g"]
_CLAUSES = ["where z > 2g", "where temp between 20degC and 1e400", "where x > y or not x < 1e3",
            "where not z != 1999.5", "where mag(x, 1g) > z / 2", "where temp > 86degF", "where temp > 2g",
            "last 10m", "last 1.5s", "since 5m ago", "since 2026-11-24", "since 2262-04-12",
            "between now - 1h and now", "between 2026-11-25 and 2026-11-24", "at 2026-11-24T11:00Z",
            "at now - 1d", "by 1m fill(prev)", "by 7ns", "by 1h fill(20degC)", "gap <= 1s",
            "gap < 1ns", "for > 5ms", "for 0s", "from imu", "from env", "from gait"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_HEADS), st.lists(st.sampled_from(_CLAUSES), max_size=4),
       st.sampled_from(["data", "clock"]), st.booleans())
def test_structured_random_queries_plan_or_raise_query_errors(head, clauses, policy, empty):
    text = " ".join([head, *clauses])
    newest_ns = (lambda s: None) if empty else newest
    try:
        query = plan(text, now_policy=policy, clock_ns=NEWEST, newest_ns=newest_ns)
    except QueryError as err:
        assert err.query == text and (err.column is None or 1 <= err.column <= len(text) + 1)
        return
    start, end = query.time.start_ns, query.time.end_ns
    assert start is None or end is None or start <= end
    if "last 10m" in clauses and "at" not in text:
        expected_now = 0 if (empty and policy == "data") else (NEWEST if policy == "clock" else NEWEST + 1)
        assert query.now.ns == expected_now


def test_a_query_that_does_not_start_with_a_head_says_so():
    for text, word in [("where z > 2g", "where"), ("  avrage z > 1", "avrage"), ("select avg(z)", "select")]:
        err = error(text, QueryNameError)
        assert f"unknown aggregate {word!r}" in err.reason and err.column == text.index(word) + 1
        assert "count" in err.reason and "find, top or newest" in err.reason
    err = error("conut where z > 2g last", QueryNameError)
    assert "did you mean count?" in err.reason
    # a valid head with a later syntax error stays a syntax error
    assert error("count where z > 2g last", QuerySyntaxError).column == len("count where z > 2g last") + 1


# --- categorical channels: names become codes ------------------------------------------------

MACHINE = Stream("machine", (Channel("state", "int8", categories=("idle", "running", "door open")),
                             Channel("speed", "int16", "rpm"),
                             Channel("mode", "int16", categories=("auto", "state"))))
CATS = {**STREAMS, "machine": MACHINE}
STATE = P.ChannelRef("state", 0, "int8", 1.0, "", ("idle", "running", "door open"))
SPEED = P.ChannelRef("speed", 1, "int16", 1.0, "rpm")


def test_a_category_name_becomes_an_integer_comparison_with_its_code():
    assert where("count where state == running", CATS) == P.RawCompare(STATE, "==", 1.0)
    assert where('count where "door open" != state', CATS) == P.RawCompare(STATE, "!=", 2.0)
    assert where("count where machine.state = idle", CATS) == P.RawCompare(STATE, "==", 0.0)
    assert where("count where state in (idle, running)", CATS) == \
        P.Or((P.RawCompare(STATE, "==", 0.0), P.RawCompare(STATE, "==", 1.0)))
    assert where("count where state not in (idle, running)", CATS) == \
        P.And((P.RawCompare(STATE, "!=", 0.0), P.RawCompare(STATE, "!=", 1.0)))
    assert where("count where not state == idle", CATS) == P.RawCompare(STATE, "!=", 0.0)
    assert P.render(where('count where state == "door open"', CATS), detail=True) == \
        'raw state == 2 ("door open")'
    assert P.render(where("count where state != idle", CATS)) == "state != idle"


def test_in_on_numbers_is_a_chain_of_equalities():
    assert where("count where x in (1, 2g)") == \
        P.Or((P.RawCompare(IMU_X, "==", 1.0), P.RawCompare(IMU_X, "==", 2000.0)))
    assert where("count where x not in (5)") == P.RawCompare(IMU_X, "!=", 5.0)
    assert where("count where x in (1.5, 2.5)") == P.BoolConst(False)   # no int16 equals them
    values = grid("int16")
    pred = where("count where x not in (-1, 0, 1g, y)")
    y = values[::-1].copy()
    expected = ~np.isin(values, [-1, 0, 1000]) & (values != y)
    assert np.array_equal(holds(pred, {"x": values, "y": y}, values.size), expected)


def test_a_category_name_decides_no_stream_and_is_no_channel():
    assert plan("count where running == state", CATS).stream == "machine"
    assert plan("count where mode == state", CATS).where == \
        P.RawCompare(P.ChannelRef("mode", 2, "int16", 1.0, "", ("auto", "state")), "==", 1.0)
    err = error("count where state == mode", QueryNameError, CATS)   # the left side is the channel
    assert "mode is not a category of state" in err.reason and err.column == 22
    err = error("count where Foo == Bar", QueryNameError, CATS)
    assert "unknown channel 'Foo'" in err.reason


@pytest.mark.parametrize("text,token,cls", [
    ("count where state == runing", "runing", QueryNameError),
    ("count where state > idle", ">", QueryTypeError),
    ("count where idle <= state", "<=", QueryTypeError),
    ("count where state between idle and running", "between", QueryTypeError),
    ("count where state == 1", "1", QueryTypeError),
    ("count where state == speed + 1", "speed", QueryTypeError),
    ("count where state * 2 > 1", "state", QueryTypeError),
    ("max mag(state, speed)", "state", QueryTypeError),
    ("avg state", "state", QueryTypeError),
    ("argmax state", "state", QueryTypeError),
    ("top 2 state", "state", QueryTypeError),
    ("last state by 1m fill(0)", "fill", QueryTypeError),
    ('count where speed == "idle"', '"idle"', QueryTypeError),
    ('count from "machine"', '"machine"', QuerySyntaxError),
])
def test_categorical_errors_point_at_their_token(text, token, cls):
    err = error(text, cls, CATS)
    assert err.column == text.index(token) + 1, err


def test_unknown_names_list_the_known_ones():
    err = error("count where state in (idle, Running)", QueryNameError, CATS)
    assert "did you mean running?" in err.reason and "idle, running, door open" in err.reason


def test_first_last_of_a_categorical_channel_and_episode_peaks():
    assert plan("first state", CATS).expr == STATE
    assert plan("last state by 1m fill(prev)", CATS).fill == P.Fill("prev")
    assert plan("find episodes where state == running", CATS).peak == STATE
    assert plan("find episodes where state == running and speed > 100", CATS).peak == SPEED
