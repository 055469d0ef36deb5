"""CSV cells to numbers and times: the conversions of ingest.py, done with
numpy on fixed-width byte arrays of cells (see ``_Column`` there: cells are
converted by width class, so the cost follows the bytes, not the longest cell).

Times are ISO 8601 text (any zone offset, fractional seconds to the
nanosecond) or epoch numbers in a unit given or guessed from the magnitude;
every time is exact in int64 nanoseconds, and a time outside what int64
nanoseconds hold is an error at its line and column.
"""
from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..ingest import _Column

TIME_UNITS_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SPACE = 32


def _texts(cells: np.ndarray) -> np.ndarray:
    """A (rows, width) byte array as numpy byte strings (trailing zeros dropped)."""
    return cells.view(f"S{cells.shape[1]}")[:, 0]


def _convert(column: _Column, dtype, prepare=None) -> np.ndarray:
    """Every cell converted with numpy (int() or float() of its bytes)."""
    out = np.empty(len(column.starts), dtype)
    for rows, cells in column.classes():
        if prepare is not None:
            cells = prepare(cells)
        out[rows] = _texts(cells).astype(dtype)
    return out


# --- times ---------------------------------------------------------------------------------

def _times(column: _Column, time_unit) -> np.ndarray:
    """int64 ns from ISO text or epoch numbers."""
    numeric = _epoch_numbers(column)
    if numeric is not None:
        return _epoch_to_ns(numeric, time_unit or _unit_from_magnitude(numeric), column)
    return _iso_to_ns(column)


def _epoch_numbers(column: _Column):
    for dtype in (np.int64, np.float64):
        try:
            return _convert(column, dtype)
        except (ValueError, OverflowError):
            continue
    return None


def _unit_from_magnitude(numbers: np.ndarray) -> str:
    top = float(np.nanmax(np.abs(numbers.astype(np.float64)))) if numbers.size else 0.0
    for unit, limit in (("s", 1e11), ("ms", 1e14), ("us", 1e17)):
        if top < limit:
            return unit
    return "ns"


def _guessed_unit(column: _Column) -> str | None:
    """Fix the unit guessed from the first chunk for the rest of the file."""
    numeric = _epoch_numbers(column)
    return _unit_from_magnitude(numeric) if numeric is not None else None


def _epoch_to_ns(numbers: np.ndarray, unit: str, column: _Column) -> np.ndarray:
    factor = TIME_UNITS_NS[unit]
    limit = 9.2e18 / factor
    with np.errstate(invalid="ignore"):
        bad = (numbers >= limit) | (numbers <= -limit)   # not abs(): abs(int64 min) < 0
        if numbers.dtype.kind == "f":
            bad |= ~np.isfinite(numbers)
    if bad.any():
        column.fail(int(np.argmax(bad)), f"is not a time in {unit} since the epoch (or is beyond "
                                         f"1677 to 2262, what 64-bit nanoseconds hold)")
    if numbers.dtype.kind == "i":
        return numbers * factor
    return np.rint(numbers * factor).astype(np.int64)


# Seconds whose every nanosecond fits in int64: inside these bounds numpy's
# datetime64[ns] parse is exact; outside them a time is checked in Python.
_SAFE_SECONDS = (INT64_MIN // 10**9 + 1, INT64_MAX // 10**9 - 1)


def _iso_to_ns(column: _Column) -> np.ndarray:
    out = np.empty(len(column.starts), np.int64)
    for rows, cells in column.classes():
        out[rows] = _iso_class(column, rows, _stripped(cells))
    return out


def _iso_class(column: _Column, rows: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """ISO times of one width class: the zone cut off and checked, the rest
    parsed by numpy twice (ns for the value, s for the range)."""
    offset_s = _cut_zones(column, rows, cells)
    digit_first = (cells[:, 0] >= 48) & (cells[:, 0] <= 57)     # numpy would also take "today"
    if not digit_first.all():
        column.fail(int(rows[np.argmax(~digit_first)]), "is not a time (ISO 8601 or epoch number)")
    texts = _texts(cells)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ns = texts.astype("datetime64[ns]").view(np.int64)
            seconds = texts.astype("datetime64[s]").view(np.int64)
    except (ValueError, UserWarning, DeprecationWarning):
        _bad_iso(column, rows, texts)
    utc_seconds = seconds - offset_s
    low, high = _SAFE_SECONDS
    safe = (seconds >= low) & (seconds <= high) & (utc_seconds >= low) & (utc_seconds <= high)
    out = ns - offset_s * 10**9
    for k in np.flatnonzero(~safe):         # within a second of 1677 or 2262, or beyond
        out[k] = _edge_time(column, int(rows[k]), int(utc_seconds[k]), texts[k])
    return out


def _stripped(cells: np.ndarray) -> np.ndarray:
    """Cells without leading and trailing blanks (still zero-padded)."""
    solid = cells > _SPACE
    lead = np.argmax(solid, axis=1)
    if lead.any():
        shift = np.minimum(np.arange(cells.shape[1]) + lead[:, None], cells.shape[1] - 1)
        cells = np.take_along_axis(cells, shift, axis=1)
        cells[np.arange(cells.shape[1]) >= cells.shape[1] - lead[:, None]] = 0
        solid = cells > _SPACE
    length = np.where(solid.any(axis=1), cells.shape[1] - np.argmax(solid[:, ::-1], axis=1), 0)
    cells[np.arange(cells.shape[1]) >= length[:, None]] = 0
    return cells


def _cut_zones(column: _Column, rows: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Seconds east of UTC of each cell's zone (Z, +HH:MM, +HHMM), which is then
    cut off; DataError at an offset past 23 hours or 59 minutes."""
    n, width = cells.shape
    length = (cells != 0).sum(axis=1)

    def back(i):          # the i-th byte from the end of each cell (0 before its start)
        pos = length - i
        return np.where(pos >= 0, cells[np.arange(n), np.maximum(pos, 0)], 0).astype(np.int64)

    def digit(b):
        return (b >= 48) & (b <= 57)

    def sign(b):
        return (b == 43) | (b == 45)

    b = {i: back(i) for i in range(1, 7)}
    colon = sign(b[6]) & digit(b[5]) & digit(b[4]) & (b[3] == 58) & digit(b[2]) & digit(b[1])
    compact = ~colon & sign(b[5]) & digit(b[4]) & digit(b[3]) & digit(b[2]) & digit(b[1])
    hours = np.where(colon, (b[5] - 48) * 10 + b[4] - 48, (b[4] - 48) * 10 + b[3] - 48)
    minutes = (b[2] - 48) * 10 + b[1] - 48
    zoned = colon | compact
    bad = zoned & ((hours > 23) | (minutes > 59))
    if bad.any():
        column.fail(int(rows[np.argmax(bad)]), "has an invalid zone offset (hours 00 to 23, "
                                               "minutes 00 to 59)")
    east = np.where(np.where(colon, b[6], b[5]) == 45, -1, 1)
    cut = np.where(colon, 6, np.where(compact, 5, np.where(b[1] == ord("Z"), 1, 0)))
    cells[np.arange(width) >= (length - cut)[:, None]] = 0
    return np.where(zoned, east * (hours * 3600 + minutes * 60), 0)


def _bad_iso(column: _Column, rows: np.ndarray, texts: np.ndarray) -> None:
    for k, text in enumerate(texts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                np.datetime64(text.decode("ascii"), "ns")
        except (ValueError, UnicodeDecodeError, UserWarning, DeprecationWarning):
            column.fail(int(rows[k]), "is not a time (ISO 8601 or epoch number)")
    column.fail(int(rows[0]), "is not a time (ISO 8601 or epoch number)")


_FRACTION = re.compile(rb"[T ]\d\d:\d\d:\d\d\.(\d+)")


def _edge_time(column: _Column, k: int, utc_seconds: int, text: bytes) -> int:
    """A time near or past the ends of int64 ns, exactly (Python integers)."""
    match = _FRACTION.search(text)
    fraction = int((match.group(1).decode() + "000000000")[:9]) if match else 0
    ns = utc_seconds * 10**9 + fraction
    if not INT64_MIN <= ns <= INT64_MAX:
        column.fail(k, "is outside the range of 64-bit nanosecond times "
                       "(1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z)")
    return ns
