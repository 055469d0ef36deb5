"""Durations and points in time, in exact integer nanoseconds.

* durations: a number and one of ns, us, ms, s, m (minutes), min, h, d, w —
  ``10m``, ``1.5s``, ``250ms`` — or several of these run together, ``1h30m``;
* epoch times: a number and one of s, ms, us, ns — ``1700000000s``;
* ISO 8601 dates and times: ``2026-11-24``, ``2026-11-24 11:50``,
  ``2026-11-24T11:50:00.250Z``, ``2026-11-24T12:50+01:00`` (no zone = UTC).

Arithmetic is done on fractions and integers, never on floats, so ``1.1s`` is
exactly 1 100 000 000 ns and ``1795521599999ms`` exactly 1 795 521 599 999 000 000
ns.  Errors are :class:`QueryError` subclasses pointing at the literal; a value
outside int64 nanoseconds (``last 1e400s``) is a :class:`QueryRangeError`.
"""
from __future__ import annotations

import datetime as _dt
import re
from fractions import Fraction

from ..errors import QuerySyntaxError, QueryTypeError, QueryUnitError
from .expressions import ExactDecimal, Number

NS_PER_UNIT: dict[str, int] = {
    "ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
    "m": 60_000_000_000, "min": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}
EPOCH_UNITS = ("s", "ms", "us", "ns")
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1

_ISO_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
                     r"(Z|[+-]\d{2}:?\d{2})?$")
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()


class QueryRangeError(QueryTypeError):
    """A time or duration that does not fit in 64-bit nanoseconds."""


def round_half_away(value: Fraction) -> int:
    """Nearest integer, halves away from zero (1.5ns -> 2ns), in integers only
    (math.floor/copysign would return a float and lose the low bits)."""
    n, d = abs(value.numerator), value.denominator
    rounded = (2 * n + d) // (2 * d)
    return -rounded if value < 0 else rounded


# No unit is longer than a day (8.64e13 ns), so a literal below 1e-16 is less
# than a hundredth of a nanosecond in any unit: it rounds to 0 without being
# expanded.  Nothing of 1e19 or more fits in an int64, in any unit.
_NEGLIGIBLE_TOP = -17
_TOO_LARGE_TOP = 19


def scaled_ns(value: ExactDecimal, ns_per_unit: int) -> int | None:
    """``value`` units in nanoseconds, rounded; None if that is outside int64.
    The magnitude is checked on the digits before anything is expanded, so
    ``1e400s`` and ``1e-99999999s`` cost nothing."""
    if not value.digits or value.top <= _NEGLIGIBLE_TOP:
        return 0
    if value.top >= _TOO_LARGE_TOP:
        return None
    ns = round_half_away(value.fraction() * ns_per_unit)
    return ns if INT64_MIN <= ns <= INT64_MAX else None


def duration_ns(number: Number, query: str, what: str = "a duration") -> int:
    """``10m`` → 600 000 000 000.  The unit is required."""
    if not number.unit:
        raise QueryUnitError(f"{what} needs a unit: {number.source}s, {number.source}ms, "
                             f"{number.source}m (minutes), ... (units: ns, us, ms, s, m, min, h, d, w)",
                             query, number.pos + 1)
    if number.unit in NS_PER_UNIT:
        return _in_range(scaled_ns(number.decimal, NS_PER_UNIT[number.unit]), number, query)
    parts = _compound_parts(number)
    if parts is None:
        raise QueryUnitError(f"{number.unit!r} is not a unit of time for {what}; use ns, us, ms, s, "
                             f"m (minutes), min, h, d or w (or combine them: 1h30m)", query, number.pos + 1)
    return _in_range(_compound_ns(parts, number.negative), number, query)


_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|min|s|m|h|d|w)")


def _compound_parts(number: Number) -> list[tuple[str, str]] | None:
    """``1h30m``, ``2m30s``, ``1d12h``: (number, unit) parts, or None if the
    text is not such a sum."""
    text = number.text + number.unit
    parts = _PART_RE.findall(text)
    if not parts or "".join(value + unit for value, unit in parts) != text:
        return None
    return parts


def _compound_ns(parts: list[tuple[str, str]], negative: bool) -> int | None:
    """The exact sum of the parts, rounded once; None outside int64.  A part has
    no exponent, so its exact value is at most as long as the query."""
    total = Fraction(0)
    for value, unit in parts:
        part = ExactDecimal.parse(value)
        if part.digits and part.top >= _TOO_LARGE_TOP:
            return None
        total += part.fraction() * NS_PER_UNIT[unit]
    ns = round_half_away(-total if negative else total)
    return ns if INT64_MIN <= ns <= INT64_MAX else None


def epoch_ns(number: Number, query: str) -> int:
    """``1700000000s`` → nanoseconds since the epoch."""
    if number.unit not in EPOCH_UNITS:
        hint = "needs its unit" if not number.unit else f"cannot be in {number.unit!r}"
        raise QueryUnitError(f"an epoch time {hint}: {number.text}s, {number.text}ms, "
                             f"{number.text}us or {number.text}ns", query, number.pos + 1)
    return _in_range(scaled_ns(number.decimal, NS_PER_UNIT[number.unit]), number, query)


def iso_ns(text: str, pos: int, query: str) -> int:
    """An ISO 8601 date or date-time (UTC unless it has a zone) → epoch ns."""
    match = _ISO_RE.match(text)
    if not match:
        raise QuerySyntaxError(f"{text!r} is not a date-time; write 2026-11-24, 2026-11-24 11:50 or "
                               f"2026-11-24T11:50:00Z", query, pos + 1)
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        date = _dt.date(int(year), int(month), int(day))
        time = _dt.time(int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError as exc:
        raise QuerySyntaxError(f"{text!r} is not a valid date-time: {exc}", query, pos + 1) from None
    seconds = ((date.toordinal() - _EPOCH_ORDINAL) * 86400 + time.hour * 3600 + time.minute * 60
               + time.second - _zone_seconds(zone, text, pos, query))
    nanos = int((fraction or "").ljust(9, "0"))
    ns = seconds * 1_000_000_000 + nanos
    if not INT64_MIN <= ns <= INT64_MAX:
        raise QueryRangeError(f"{text!r} is outside the range of 64-bit nanosecond timestamps "
                              f"(1677 to 2262)", query, pos + 1)
    return ns


def _zone_seconds(zone: str | None, text: str, pos: int, query: str) -> int:
    if not zone or zone == "Z":
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise QuerySyntaxError(f"{text!r} has an invalid zone offset {zone!r}", query, pos + 1)
    return sign * (hours * 3600 + minutes * 60)


def _in_range(ns: int | None, number: Number, query: str) -> int:
    if ns is None:
        raise QueryRangeError(f"{_quoted(number.source)} is out of range: times and durations are "
                              f"64-bit nanoseconds (about ±292 years; 1677 to 2262 as dates)",
                              query, number.pos + 1)
    return ns


def _quoted(text: str, limit: int = 40) -> str:
    """A literal as quoted in a message: a 5 000-digit number is cut short."""
    return text if len(text) <= limit else text[:limit] + "..."


def format_duration(ns: int) -> str:
    """The shortest exact text for a duration: 2000000000 -> "2s", 90 s -> "90s"."""
    for unit in ("w", "d", "h", "m", "s", "ms", "us"):
        if ns % NS_PER_UNIT[unit] == 0:
            return f"{ns // NS_PER_UNIT[unit]}{unit}"
    return f"{ns}ns"
