"""Partial aggregates: made from block statistics or by the kernels, merged
per bucket, finished into the answer.

Semantics (docs/query.md): NaN values are skipped; an empty input gives
count 0 and duration 0, and NaN (shown as null) for everything else; std and
var are sample statistics (n − 1); rate is (last − first) / Δt in seconds;
integral, twa and duration hold each value until the next sample (at most
the gap limit, never past the end of the window; the newest sample holds for 0).
"""
from __future__ import annotations

import numpy as np

from ..result import TIME_MISSING
from ..store.blockindex import take_entries

# Partial aggregate columns (float64 matrix ``fp`` and int64 matrix ``ip``),
# one row per slot: what the kernels write and merge() combines.
F_SUM, F_MIN, F_MAX, F_FIRST, F_LAST, F_MEAN, F_M2, F_TW_SUM, N_F = range(9)
I_COUNT, I_TMIN, I_TMAX, I_TFIRST, I_TLAST, I_TW_NS, N_I = range(7)

# Aggregates a block that matches entirely can answer from its statistics,
# when the value is a bare channel.
FROM_STATS = {"count", "sum", "avg", "min", "max", "spread", "first", "last", "rate", "std", "var"}
TIME_WEIGHTED = {"integral", "twa", "duration"}
NEEDS_M2 = {"std", "var"}
NEEDS_EXTREMES = {"min", "max", "spread", "argmin", "argmax"}
WANT_EXTREMES, WANT_M2 = 1, 2      # what a scan computes beyond count, sum, first and last
EXACT_M2_TYPES = {"int8", "int16"}
TIMESTAMP_AGGREGATES = {"argmax", "argmin"}     # their values are int64 ns, never floats
NEEDS_TIMES = {"rate", "argmax", "argmin"}      # use the partials' sample times (I_T*)


def wants(aggregate: str) -> int:
    """The WANT_* bits of the partials ``aggregate`` needs."""
    return (WANT_EXTREMES if aggregate in NEEDS_EXTREMES else 0) | \
        (WANT_M2 if aggregate in NEEDS_M2 else 0)


def stats_can_answer(query, channel) -> bool:
    """Can an ALL block inside one bucket be folded in from its statistics?"""
    agg = query.aggregate
    if agg not in FROM_STATS:
        return False
    if agg == "count":
        return True
    if channel is None or query.expr != channel or not channel.dtype.startswith("int"):
        return False   # float sums are inexact and first/last may be NaN: decode
    return agg not in NEEDS_M2 or channel.dtype in EXACT_M2_TYPES


def empty_partials(n: int) -> tuple[np.ndarray, np.ndarray]:
    fp = np.zeros((n, N_F))
    fp[:, F_MIN], fp[:, F_MAX] = np.inf, -np.inf
    fp[:, F_FIRST] = fp[:, F_LAST] = np.nan
    return fp, np.zeros((n, N_I), np.int64)


def stat_partials(index, rows: np.ndarray, channel) -> tuple[np.ndarray, np.ndarray]:
    """Partial rows for blocks ``rows`` (all samples match, all in range) from
    their statistics; ``channel`` None means a plain count."""
    fp, ip = empty_partials(len(rows))
    ip[:, I_COUNT] = index.n_samples[rows]
    ip[:, I_TFIRST], ip[:, I_TLAST] = index.t_first[rows], index.t_last[rows]
    if channel is None:
        return fp, ip
    entries = take_entries(index.entries, rows, channel.index)
    s = channel.scale
    lo, hi = entries["min"].astype(np.float64) * s, entries["max"].astype(np.float64) * s
    fp[:, F_MIN], fp[:, F_MAX] = (lo, hi) if s > 0 else (hi, lo)
    fp[:, F_FIRST] = entries["first"].astype(np.float64) * s
    fp[:, F_LAST] = entries["last"].astype(np.float64) * s
    fp[:, F_SUM] = entries["sum"].astype(np.float64) * s
    count = entries["count"].astype(np.int64)
    total = entries["sum"].astype(np.int64)
    fp[:, F_MEAN] = total / count * s
    m2 = count * entries["sumsq"].astype(np.int64) - total * total   # exact for int8/int16
    fp[:, F_M2] = m2 / count * s * s
    return fp, ip


def sums_are_exact(index, rows, channel) -> np.ndarray:
    """Blocks whose sum (and sum of squares) statistics are exact."""
    flags = take_entries(index.entries, rows, channel.index)["flags"]
    return (flags & 3) == 0


def merge(fp: np.ndarray, ip: np.ndarray, bucket: np.ndarray, order: np.ndarray):
    """Merge slots into buckets.  ``order`` ranks slots in time (ties keep the
    earlier block first).  Returns (bucket ids, merged fp, merged ip)."""
    keep = (ip[:, I_COUNT] > 0) | (ip[:, I_TW_NS] > 0)
    fp, ip, bucket, order = fp[keep], ip[keep], bucket[keep], order[keep]
    if len(bucket) == 0:
        return np.zeros(0, np.int64), *empty_partials(0)
    sort = np.lexsort((order, bucket))
    fp, ip, bucket = fp[sort], ip[sort], bucket[sort]
    ids, starts = np.unique(bucket, return_index=True)
    group = np.repeat(np.arange(len(ids)), np.diff(np.append(starts, len(bucket))))
    out_f, out_i = empty_partials(len(ids))
    count = np.add.reduceat(ip[:, I_COUNT], starts)
    out_i[:, I_COUNT] = count
    out_i[:, I_TW_NS] = np.add.reduceat(ip[:, I_TW_NS], starts)
    out_f[:, F_SUM] = np.add.reduceat(fp[:, F_SUM], starts)
    out_f[:, F_TW_SUM] = np.add.reduceat(fp[:, F_TW_SUM], starts)
    position = np.arange(len(bucket))
    has = ip[:, I_COUNT] > 0
    big = len(bucket)
    for f_col, t_col, pick in ((F_MIN, I_TMIN, np.minimum), (F_MAX, I_TMAX, np.maximum)):
        best = pick.reduceat(fp[:, f_col], starts)
        first_best = np.minimum.reduceat(np.where(has & (fp[:, f_col] == best[group]), position, big),
                                         starts)
        out_f[:, f_col] = best
        found = first_best < big
        out_i[found, t_col] = ip[first_best[found], t_col]
    first = np.minimum.reduceat(np.where(has, position, big), starts)
    last = np.maximum.reduceat(np.where(has, position, -1), starts)
    found = first < big
    out_f[found, F_FIRST], out_i[found, I_TFIRST] = fp[first[found], F_FIRST], ip[first[found], I_TFIRST]
    out_f[found, F_LAST], out_i[found, I_TLAST] = fp[last[found], F_LAST], ip[last[found], I_TLAST]
    _merge_moments(fp, ip, starts, group, count, out_f)
    return ids, out_f, out_i


def _merge_moments(fp, ip, starts, group, count, out_f):
    """Chan et al.'s parallel merge of (count, mean, M2)."""
    n = ip[:, I_COUNT].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.add.reduceat(n * fp[:, F_MEAN], starts) / count
        spread = n * (fp[:, F_MEAN] - mean[group]) ** 2
        out_f[:, F_MEAN] = mean
        out_f[:, F_M2] = np.add.reduceat(np.where(n > 0, fp[:, F_M2] + spread, 0.0), starts)


def finish(aggregate: str, fp: np.ndarray, ip: np.ndarray) -> np.ndarray:
    """The aggregate's value per merged bucket: float64, NaN where empty;
    for argmax/argmin int64 timestamps, TIME_MISSING where empty (a float64
    holds ns since the epoch only to ±128 ns)."""
    count = ip[:, I_COUNT]
    with np.errstate(invalid="ignore", divide="ignore"):
        empty = count == 0
        if aggregate in TIMESTAMP_AGGREGATES:
            column = I_TMAX if aggregate == "argmax" else I_TMIN
            return np.where(empty, TIME_MISSING, ip[:, column])
        if aggregate == "count":
            return count.astype(np.float64)
        if aggregate == "duration":
            return ip[:, I_TW_NS] / 1e9     # one rounding: 0.217, not 0.21700000000000003
        if aggregate == "integral":
            return np.where(ip[:, I_TW_NS] > 0, fp[:, F_TW_SUM], np.where(empty, np.nan, 0.0))
        if aggregate == "twa":
            return np.where(ip[:, I_TW_NS] > 0, fp[:, F_TW_SUM] / (ip[:, I_TW_NS] / 1e9), np.nan)
        simple = {
            "sum": fp[:, F_SUM], "avg": fp[:, F_SUM] / count, "min": fp[:, F_MIN],
            "max": fp[:, F_MAX], "spread": fp[:, F_MAX] - fp[:, F_MIN],
            "first": fp[:, F_FIRST], "last": fp[:, F_LAST],
            "var": np.where(count > 1, fp[:, F_M2] / (count - 1), np.nan),
        }
        if aggregate == "std":
            return np.sqrt(np.maximum(simple["var"], 0.0))
        if aggregate == "rate":
            dt = (ip[:, I_TLAST] - ip[:, I_TFIRST]) / 1e9
            return np.where(dt > 0, (fp[:, F_LAST] - fp[:, F_FIRST]) / dt, np.nan)
        return np.where(empty, np.nan, simple[aggregate])


__all__ = ["FROM_STATS", "TIME_WEIGHTED", "NEEDS_M2", "TIMESTAMP_AGGREGATES", "stats_can_answer",
           "stat_partials", "sums_are_exact", "merge", "finish", "empty_partials"]
