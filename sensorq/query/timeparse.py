"""Durations and points in time, in exact integer nanoseconds.

* durations: a number and one of ns, us, ms, s, m (minutes), min, h, d —
  ``10m``, ``1.5s``, ``250ms`` — or several of these run together, ``1h30m``;
* epoch times: a number and one of s, ms, us, ns — ``1700000000s``;
* ISO 8601 dates and times: ``2026-11-24``, ``2026-11-24 11:50``,
  ``2026-11-24T11:50:00.250Z``, ``2026-11-24T12:50+01:00`` (no zone = UTC).

Arithmetic is done on fractions and integers, never on floats, so ``1.1s`` is
exactly 1 100 000 000 ns.  Errors are :class:`QueryError` subclasses pointing at
the literal.
"""
from __future__ import annotations

import datetime as _dt
import math
import re
from fractions import Fraction

from ..errors import QuerySyntaxError, QueryUnitError
from .expressions import Number

NS_PER_UNIT: dict[str, int] = {
    "ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
    "m": 60_000_000_000, "min": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000,
}
EPOCH_UNITS = ("s", "ms", "us", "ns")
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1

_ISO_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
                     r"(Z|[+-]\d{2}:?\d{2})?$")
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()


def _round_ns(value: Fraction) -> int:
    """Nearest integer, halves away from zero (1.5ns -> 2ns)."""
    return int(math.copysign(math.floor(abs(value) + Fraction(1, 2)), value))


def duration_ns(number: Number, query: str, what: str = "a duration") -> int:
    """``10m`` → 600 000 000 000.  The unit is required."""
    if not number.unit:
        raise QueryUnitError(f"{what} needs a unit: {number.source}s, {number.source}ms, "
                             f"{number.source}m (minutes), ... (units: ns, us, ms, s, m, min, h, d)",
                             query, number.pos + 1)
    if number.unit in NS_PER_UNIT:
        return _check_int64(_round_ns(number.exact * NS_PER_UNIT[number.unit]), number, query)
    compound = _compound_ns(number)
    if compound is None:
        raise QueryUnitError(f"{number.unit!r} is not a unit of time for {what}; use ns, us, ms, s, "
                             f"m (minutes), min, h or d (or combine them: 1h30m)", query, number.pos + 1)
    return _check_int64(compound, number, query)


_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|min|s|m|h|d)")


def _compound_ns(number: Number) -> int | None:
    """``1h30m``, ``2m30s``, ``1d12h``: a sum of parts, each a number and a unit."""
    text = number.text + number.unit
    parts = _PART_RE.findall(text)
    if not parts or "".join(value + unit for value, unit in parts) != text:
        return None
    total = sum(Fraction(value) * NS_PER_UNIT[unit] for value, unit in parts)
    return _round_ns(-total if number.negative else total)


def epoch_ns(number: Number, query: str) -> int:
    """``1700000000s`` → nanoseconds since the epoch."""
    if number.unit not in EPOCH_UNITS:
        hint = "needs its unit" if not number.unit else f"cannot be in {number.unit!r}"
        raise QueryUnitError(f"an epoch time {hint}: {number.text}s, {number.text}ms, "
                             f"{number.text}us or {number.text}ns", query, number.pos + 1)
    return _check_int64(_round_ns(number.exact * NS_PER_UNIT[number.unit]), number, query)


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
        raise QuerySyntaxError(f"{text!r} is outside the range of 64-bit nanosecond timestamps "
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


def _check_int64(ns: int, number: Number, query: str) -> int:
    if not INT64_MIN <= ns <= INT64_MAX:
        raise QueryUnitError(f"{number.source} is too large: times are 64-bit nanoseconds "
                             f"(about ±292 years)", query, number.pos + 1)
    return ns
