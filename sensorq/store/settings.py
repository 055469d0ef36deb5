"""Cache settings given as text or numbers: capacity, retention, compression.

``capacity`` accepts bytes as an int or text such as ``"64MB"`` (powers of ten)
and ``"1GiB"`` (powers of two); ``retention`` accepts seconds as a number or
text such as ``"24h"``, ``"30m"``, ``"7d"``.  Both reject anything else with a
:class:`~sensorq.errors.StorageError` that quotes the value.
"""
from __future__ import annotations

import math
import re

from ..errors import StorageError

KIB = 1024
MIB = 1024 * KIB
MIN_CAPACITY = 64 * KIB
DEFAULT_CAPACITY = 256 * MIB
MIN_SEGMENT = 64 * KIB
MAX_SEGMENT = 64 * MIB
SEGMENTS_PER_CAPACITY = 16

COMPRESSIONS = ("auto", "none", "zstd")

_SIZE_FACTORS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
                 "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12,
                 "tib": 2**40}
_DURATION_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "sec": 10**9, "m": 60 * 10**9,
                "min": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9, "w": 7 * 86400 * 10**9}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")


def parse_capacity(value) -> int:
    """Bytes, from an int or text like "64MB" / "1GiB"; at least 64 KiB."""
    if isinstance(value, bool):
        raise StorageError(f"capacity {value!r} is not a size")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        size = _finite_number(value, "capacity")
    elif isinstance(value, str):
        number, unit = _split(value, "capacity", "a size such as 64MB or 1GiB")
        factor = _SIZE_FACTORS.get(unit.lower())
        if factor is None:
            raise StorageError(f"capacity {value!r}: unknown size unit {unit!r}; "
                               f"use B, KB, MB, GB, KiB, MiB or GiB")
        size = number * factor
    else:
        raise StorageError(f"capacity {value!r} is not a size")
    size = int(size)
    if size < MIN_CAPACITY:
        raise StorageError(f"capacity {value!r} is below the minimum of {MIN_CAPACITY} bytes (64 KiB)")
    return size


def parse_retention(value) -> int | None:
    """Nanoseconds, from seconds (a number) or text like "24h"; None keeps everything."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise StorageError(f"retention {value!r} is not a duration")
    if isinstance(value, (int, float)):
        ns = _finite_number(value, "retention") * 10**9
    elif isinstance(value, str):
        number, unit = _split(value, "retention", "a duration such as 24h or 30m")
        factor = _DURATION_NS.get(unit.lower() or "s")
        if factor is None:
            raise StorageError(f"retention {value!r}: unknown time unit {unit!r}; "
                               f"use ms, s, m, h, d or w")
        ns = number * factor
    else:
        raise StorageError(f"retention {value!r} is not a duration")
    if ns <= 0:
        raise StorageError(f"retention {value!r} must be positive")
    return int(ns)


def parse_compression(value) -> str:
    if value is None:
        return "auto"
    if value not in COMPRESSIONS:
        raise StorageError(f"compression {value!r} is not one of {', '.join(COMPRESSIONS)}")
    return value


def segment_target(capacity: int) -> int:
    """Bytes at which the writer starts a new segment: capacity/16 within
    [64 KiB, 64 MiB], and never more than half the capacity, so that eviction
    always has a whole older segment to delete."""
    size = min(max(capacity // SEGMENTS_PER_CAPACITY, MIN_SEGMENT), MAX_SEGMENT)
    return min(size, capacity // 2)


def _finite_number(value, what: str) -> float:
    if not math.isfinite(value):
        raise StorageError(f"{what} {value!r} is not a finite number")
    return value


def _split(text: str, what: str, expected: str) -> tuple[float, str]:
    match = _NUMBER_UNIT.match(text)
    if not match:
        raise StorageError(f"{what} {text!r} is not {expected}")
    return float(match.group(1)), match.group(2)
