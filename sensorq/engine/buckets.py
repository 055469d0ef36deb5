"""Time buckets: epoch-aligned ``by DUR`` rows and their ``fill`` policy.

Bucket k covers [k·DUR, (k+1)·DUR) in ns since the epoch, so the same query
gives the same bucket edges on every device.  ``fill(none)`` (the default)
lists only buckets with data; the other modes list every bucket from the
first to the last one the window (clipped to the data) touches — so many
that the executor checks window_rows() against the row limit before it
reads a block.  argmax/argmin columns are int64 timestamps, and stay int64
through every fill (TIME_MISSING where there is no value).
"""
from __future__ import annotations

import numpy as np

from ..result import TIME_MISSING

ZERO_WHEN_EMPTY = ("count", "duration")


def bucket_range(q, index, start: int, end: int) -> tuple[int, int]:
    """First and last bucket id the window, clipped to the data, touches."""
    lo = max(start, int(index.t_first[0]))
    hi = min(end - 1, int(index.t_last[-1]))
    return lo // q.bucket_ns, hi // q.bucket_ns


def window_rows(q, index, start: int, end: int) -> int:
    """Rows a fill other than none gives (a Python int: it may be astronomic)."""
    first, last = bucket_range(q, index, start, end)
    return max(last - first + 1, 0)


def fill(q, index, start: int, end: int, ids: np.ndarray, values: np.ndarray):
    """(bucket start times, values) after the fill policy."""
    mode = q.fill.mode
    if mode == "none" or len(index) == 0:
        return ids * q.bucket_ns, values
    first, last = bucket_range(q, index, start, end)
    if last < first:
        return np.zeros(0, np.int64), np.zeros(0, values.dtype)
    all_ids = np.arange(first, last + 1, dtype=np.int64)
    times = values.dtype.kind == "i"
    empty_value = 0 if q.aggregate in ZERO_WHEN_EMPTY else TIME_MISSING if times else np.nan
    out = np.full(len(all_ids), empty_value, values.dtype)
    present = np.zeros(len(all_ids), bool)
    inside = (ids >= first) & (ids <= last)
    out[ids[inside] - first] = values[inside]
    present[ids[inside] - first] = True
    if q.aggregate not in ZERO_WHEN_EMPTY:
        fill_missing = _fill_missing_times if times else _fill_missing
        out = fill_missing(mode, q.fill.value, all_ids, out, present)
    return all_ids * q.bucket_ns, out


def _fill_missing(mode, constant, ids, out, present):
    if mode == "value":
        return np.where(present, out, constant)
    if mode == "prev":
        last_seen = np.maximum.accumulate(np.where(present, np.arange(len(out)), -1))
        return np.where(last_seen >= 0, out[np.maximum(last_seen, 0)], np.nan)
    if mode == "linear":
        known = np.flatnonzero(present)
        if len(known) == 0:
            return out
        interpolated = np.interp(ids, ids[known], out[known])
        outside = (ids < ids[known[0]]) | (ids > ids[known[-1]])
        return np.where(present, out, np.where(outside, np.nan, interpolated))
    return out   # "null"


def _fill_missing_times(mode, constant, ids, out, present):
    """_fill_missing for int64 timestamps: no float ever holds a timestamp (a
    linear fill interpolates the offset from the earlier neighbour)."""
    if mode == "value":
        fits = np.isfinite(constant) and -2**63 < constant < 2**63
        return np.where(present, out, int(round(constant)) if fits else TIME_MISSING)
    if mode == "prev":
        last_seen = np.maximum.accumulate(np.where(present, np.arange(len(out)), -1))
        return np.where(last_seen >= 0, out[np.maximum(last_seen, 0)], TIME_MISSING)
    if mode == "linear":
        known = np.flatnonzero(present)
        if len(known) == 0:
            return out
        right = np.minimum(np.searchsorted(known, np.arange(len(out))), len(known) - 1)
        inner = ~present & (right > 0) & (np.arange(len(out)) < known[-1])
        lo, hi = known[np.maximum(right - 1, 0)], known[right]
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = (ids - ids[lo]) / (ids[hi] - ids[lo])
            offset = np.where(inner, np.round((out[hi] - out[lo]) * fraction), 0).astype(np.int64)
        return np.where(present, out, np.where(inner, out[lo] + offset, TIME_MISSING))
    return out   # "null"
