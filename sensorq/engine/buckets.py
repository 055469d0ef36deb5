"""Time buckets: epoch-aligned ``by DUR`` rows and their ``fill`` policy.

Bucket k covers [k·DUR, (k+1)·DUR) in ns since the epoch, so the same query
gives the same bucket edges on every device.  ``fill(none)`` (the default)
lists only buckets with data; the other modes list every bucket from the
first to the last one the window (clipped to the data) touches.
"""
from __future__ import annotations

import numpy as np

ZERO_WHEN_EMPTY = ("count", "duration")


def bucket_range(q, index, start: int, end: int) -> tuple[int, int]:
    """First and last bucket id the window, clipped to the data, touches."""
    lo = max(start, int(index.t_first[0]))
    hi = min(end - 1, int(index.t_last[-1]))
    return lo // q.bucket_ns, hi // q.bucket_ns


def fill(q, index, start: int, end: int, ids: np.ndarray, values: np.ndarray):
    """(bucket start times, values) after the fill policy."""
    mode = q.fill.mode
    if mode == "none" or len(index) == 0:
        return ids * q.bucket_ns, values
    first, last = bucket_range(q, index, start, end)
    if last < first:
        return np.zeros(0, np.int64), np.zeros(0)
    all_ids = np.arange(first, last + 1, dtype=np.int64)
    empty_value = 0.0 if q.aggregate in ZERO_WHEN_EMPTY else np.nan
    out = np.full(len(all_ids), empty_value)
    present = np.zeros(len(all_ids), bool)
    inside = (ids >= first) & (ids <= last)
    out[ids[inside] - first] = values[inside]
    present[ids[inside] - first] = True
    if q.aggregate not in ZERO_WHEN_EMPTY:
        out = _fill_missing(mode, q.fill.value, all_ids, out, present)
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
