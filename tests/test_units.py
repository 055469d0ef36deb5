"""Unit conversion, checked against hand-worked values."""
import math

import pytest

from sensorq.errors import SchemaError
from sensorq.units import convert, convert_interval, parse_unit


def test_two_g_in_milli_g():
    assert convert(2, parse_unit("g"), parse_unit("mg")) == pytest.approx(2000)


def test_acceleration_in_si():
    assert convert(1, parse_unit("g"), parse_unit("m/s^2")) == pytest.approx(9.80665)


def test_temperatures_use_offsets_but_intervals_do_not():
    assert convert(30, parse_unit("degC"), parse_unit("K")) == pytest.approx(303.15)
    assert convert(212, parse_unit("degF"), parse_unit("degC")) == pytest.approx(100)
    assert convert_interval(9, parse_unit("degF"), parse_unit("degC")) == pytest.approx(5)


def test_pressure_prefixes():
    assert convert(1013, parse_unit("hPa"), parse_unit("Pa")) == pytest.approx(101300)
    assert convert(1, parse_unit("bar"), parse_unit("kPa")) == pytest.approx(100)


def test_dimension_mismatch_names_both_dimensions():
    with pytest.raises(ValueError, match="acceleration.*temperature"):
        convert(2, parse_unit("g"), parse_unit("degC"))


def test_unknown_unit_is_a_schema_error():
    with pytest.raises(SchemaError, match="unknown unit 'furlong'"):
        parse_unit("furlong")


def test_angular_rate():
    assert convert(60, parse_unit("rpm"), parse_unit("rad/s")) == pytest.approx(2 * math.pi)
