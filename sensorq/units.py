"""Physical units: what a channel's unit means, and how to convert between units.

A unit is a scale (and, for temperatures, an offset) onto an SI base unit with a
*dimension*.  Two quantities can be compared only when their dimensions agree;
the query compiler uses :func:`convert` to turn a literal such as ``2g`` into the
number a channel stores in its own unit, before any kernel runs.

In sensor data ``g`` is standard gravity (9.80665 m/s^2), never the gram.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import SchemaError

# Dimension exponents over (metre, kilogram, second, ampere, kelvin).
Dimension = tuple[int, int, int, int, int]

DIMENSIONLESS: Dimension = (0, 0, 0, 0, 0)
_ACCEL: Dimension = (1, 0, -2, 0, 0)
_PRESSURE: Dimension = (-1, 1, -2, 0, 0)
_VOLTAGE: Dimension = (2, 1, -3, -1, 0)
_CURRENT: Dimension = (0, 0, 0, 1, 0)
_POWER: Dimension = (2, 1, -3, 0, 0)
_TIME: Dimension = (0, 0, 1, 0, 0)
_FREQUENCY: Dimension = (0, 0, -1, 0, 0)
_LENGTH: Dimension = (1, 0, 0, 0, 0)
_SPEED: Dimension = (1, 0, -1, 0, 0)
_TEMPERATURE: Dimension = (0, 0, 0, 0, 1)
_ANGULAR_RATE: Dimension = (0, 0, -1, 0, 0)

_DIMENSION_NAMES = {
    DIMENSIONLESS: "dimensionless", _ACCEL: "acceleration", _PRESSURE: "pressure",
    _VOLTAGE: "voltage", _CURRENT: "current", _POWER: "power", _TIME: "time",
    _LENGTH: "length", _SPEED: "speed", _TEMPERATURE: "temperature",
    _FREQUENCY: "frequency",
}


@dataclass(frozen=True)
class Unit:
    """``si_value = value * factor + offset``."""

    symbol: str
    dimension: Dimension
    factor: float
    offset: float = 0.0

    @property
    def dimension_name(self) -> str:
        return _DIMENSION_NAMES.get(self.dimension, str(self.dimension))

    def to_si(self, value: float) -> float:
        return value * self.factor + self.offset

    def from_si(self, value: float) -> float:
        return (value - self.offset) / self.factor


STANDARD_GRAVITY = 9.80665

_UNITS: dict[str, Unit] = {}


def _define(dimension: Dimension, factor: float, *symbols: str, offset: float = 0.0) -> None:
    for symbol in symbols:
        _UNITS[symbol] = Unit(symbols[0], dimension, factor, offset)


_define(DIMENSIONLESS, 1.0, "", "1", "count")
_define(DIMENSIONLESS, 0.01, "%")
_define(DIMENSIONLESS, 1e-6, "ppm")
_define(_ACCEL, STANDARD_GRAVITY, "g")
_define(_ACCEL, STANDARD_GRAVITY * 1e-3, "mg")
_define(_ACCEL, 1.0, "m/s^2", "m/s2")
_define(_TEMPERATURE, 1.0, "degC", "C", offset=273.15)
_define(_TEMPERATURE, 5.0 / 9.0, "degF", "F", offset=273.15 - 32.0 * 5.0 / 9.0)
_define(_TEMPERATURE, 1.0, "K")
_define(_PRESSURE, 1.0, "Pa")
_define(_PRESSURE, 100.0, "hPa")
_define(_PRESSURE, 1000.0, "kPa")
_define(_PRESSURE, 1e5, "bar")
_define(_PRESSURE, 100.0, "mbar")
_define(_VOLTAGE, 1.0, "V")
_define(_VOLTAGE, 1e-3, "mV")
_define(_CURRENT, 1.0, "A")
_define(_CURRENT, 1e-3, "mA")
_define(_POWER, 1.0, "W")
_define(_POWER, 1e-3, "mW")
_define(_POWER, 1e3, "kW")
_define(_FREQUENCY, 1.0, "Hz")
_define(_FREQUENCY, 1e3, "kHz")
_define(_LENGTH, 1.0, "m")
_define(_LENGTH, 1e-3, "mm")
_define(_LENGTH, 1e-2, "cm")
_define(_LENGTH, 1e3, "km")
_define(_SPEED, 1.0, "m/s")
_define(_SPEED, 1000.0 / 3600.0, "km/h")
_define(_ANGULAR_RATE, 3.141592653589793 / 180.0, "deg/s", "dps")
_define(_ANGULAR_RATE, 1.0, "rad/s")
_define(_ANGULAR_RATE, 2 * 3.141592653589793 / 60.0, "rpm")


def known_units() -> list[str]:
    return sorted(s for s in _UNITS if s)


def parse_unit(symbol: str) -> Unit:
    """The :class:`Unit` for ``symbol``; :class:`SchemaError` if it is unknown."""
    try:
        return _UNITS[symbol]
    except KeyError:
        raise SchemaError(f"unknown unit {symbol!r}; known units: {', '.join(known_units())}") from None


def is_unit(symbol: str) -> bool:
    return symbol in _UNITS


def convert(value: float, from_unit: Unit, to_unit: Unit) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``.  Raises ValueError on a
    dimension mismatch (callers turn that into an error that names the column)."""
    if from_unit.dimension != to_unit.dimension:
        raise ValueError(f"cannot convert {from_unit.dimension_name} ({from_unit.symbol or '1'}) "
                         f"to {to_unit.dimension_name} ({to_unit.symbol or '1'})")
    return to_unit.from_si(from_unit.to_si(value))


def convert_interval(value: float, from_unit: Unit, to_unit: Unit) -> float:
    """Like :func:`convert` for a *difference* of two values (no offset): 5 degC of
    spread is 9 degF of spread, not 41."""
    if from_unit.dimension != to_unit.dimension:
        raise ValueError(f"cannot convert {from_unit.dimension_name} to {to_unit.dimension_name}")
    return value * from_unit.factor / to_unit.factor
