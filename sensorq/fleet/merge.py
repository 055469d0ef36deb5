"""Devices' answers into one: merged partial aggregates, rows in order, and
one row per device.

**Aggregates** merge the per-bucket partial rows of every device as one
cache merges the partial rows of its blocks (aggregates.merge): counts,
sums, time-weighted sums and durations add; min and max take the best value
and, for argmin/argmax, the oldest time it was reached; first (last) takes
the value of the oldest (newest) sample; mean and M2 combine by Chan et al.,
so avg, std and var are exact up to floating-point reassociation.  Ties
between devices (equal timestamps) go to the device first in name order
(last for ``last``).  Each device's values hold until its own next sample
(duration, twa, integral): a fleet's duration is the sum of its devices'.

**Rows** (find, newest, top, episodes, score) are each device's own rows,
with a ``device`` column, put in the query's order across devices (time;
value then time for top) and cut to its N and ``limit``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..engine import aggregates as A
from ..engine import buckets, limits
from ..query import plan as P
from ..query.categories import names_of
from ..result import TIME_MISSING, TIME_UNIT, Result, ScanStats

ORDERS = ((A.I_TFIRST, (A.F_FIRST,), (A.I_TFIRST,)), (A.I_TLAST, (A.F_LAST,), (A.I_TLAST,)),
          (A.I_TMIN, (A.F_MIN,), (A.I_TMIN,)), (A.I_TMAX, (A.F_MAX,), (A.I_TMAX,)))


@dataclasses.dataclass
class _Span:
    """What buckets.fill reads of an index: where the data starts and ends."""
    t_first: np.ndarray
    t_last: np.ndarray

    def __len__(self) -> int:
        return len(self.t_first)


def merge_partials(parts: list, categories: list | None = None):
    """(bucket ids, fp, ip) of many devices' Partials, merged bucket by bucket."""
    if categories is not None:
        parts = _common_codes(parts, categories[0], categories[1])
    ids = np.concatenate([p.ids for p in parts])
    fp = np.concatenate([p.fp for p in parts])
    ip = np.concatenate([p.ip for p in parts])
    device = np.concatenate([np.full(len(p.ids), k, np.int64) for k, p in enumerate(parts)])
    merged = None
    for time_col, f_cols, i_cols in ORDERS:
        rank = np.empty(len(ids), np.int64)
        rank[np.lexsort((device, ip[:, time_col]))] = np.arange(len(ids))
        out_ids, out_f, out_i = A.merge(fp, ip, ids, rank)
        if merged is None:
            merged = out_ids, out_f, out_i        # sums and moments: in time order of first samples
        for c in f_cols:
            merged[1][:, c] = out_f[:, c]
        for c in i_cols:
            merged[2][:, c] = out_i[:, c]
    return merged


def _common_codes(parts, per_device: list, union: tuple):
    """A categorical channel's codes (first, last) of each device as codes of
    ``union``: devices may have numbered the same names differently."""
    out = []
    where = {name: k for k, name in enumerate(union)}
    for p, names in zip(parts, per_device):
        lookup = np.array([where[n] for n in names], np.float64) if names else np.zeros(0)
        fp = p.fp.copy()
        for col in (A.F_FIRST, A.F_LAST):
            codes = fp[:, col]
            known = ~np.isnan(codes) & (codes >= 0) & (codes < len(lookup))
            codes[known] = lookup[codes[known].astype(np.int64)]
        out.append(dataclasses.replace(p, fp=fp))
    return out


def finish_aggregate(q: P.AggregateQuery, parts: list, text: str, categories=None,
                     limit: int | None = None) -> Result:
    """One merged answer (a scalar, or a table by buckets) from Partials."""
    union = categories[1] if categories else None
    if parts:
        ids, fp, ip = merge_partials(parts, categories)
    else:
        ids, (fp, ip) = np.zeros(0, np.int64), A.empty_partials(0)
    values = A.finish(q.aggregate, fp, ip)
    firsts = [p.data_first for p in parts if p.data_first is not None]
    lasts = [p.data_last for p in parts if p.data_last is not None]
    span = _Span(np.array(firsts[:1] and [min(firsts)], np.int64),
                 np.array(lasts[:1] and [max(lasts)], np.int64))
    return aggregate_result(q, text, ids, values, span, union, limit)


def aggregate_result(q, text: str, ids, values, span: _Span, union=None,
                     limit: int | None = None) -> Result:
    """A Result from finished values per bucket (as executor._aggregate_result),
    held to the row limit ``limit`` (None: the one in force)."""
    limit = limits.max_rows(limit)
    unit = q.result_unit
    if not q.bucket_ns:
        value = values[0] if len(values) else A.finish(q.aggregate, *A.empty_partials(1))[0]
        if q.aggregate == "count":
            value = int(value)
        elif q.aggregate in A.TIMESTAMP_AGGREGATES:
            value = None if value == TIME_MISSING else int(value)
        elif union is not None:
            value = names_of(np.array([value], np.float64), union)[0]
        return Result("scalar", text, value=value, unit=unit)
    start, end = q.time.bounds()
    limits.check_rows(len(ids), limit, f"the result of {text!r}")
    if q.fill.mode != "none" and len(span):
        limits.check_rows(buckets.window_rows(q, span, start, end), limit,
                          f"the result of {text!r}")
    times, column = buckets.fill(q, span, start, end, ids, values)
    if union is not None:
        column = names_of(column, union)
    if getattr(q, "limit", None) is not None:
        times, column = times[:q.limit], column[:q.limit]
    return Result("table", text, columns={"time": times, q.aggregate: column},
                  units={"time": TIME_UNIT, q.aggregate: unit})


# --- rows --------------------------------------------------------------------------------

def merge_rows(q, named: list, text: str, max_rows: int) -> Result:
    """Every device's rows (``named``: (device name, Result)) in the query's
    order, cut to its N, then to its ``limit``."""
    tables = [(name, r) for name, r in named if r.kind == "table"]
    columns, units = stack_tables(tables, "device")
    order = _row_order(q, columns)
    n = getattr(q, "n", None) if isinstance(q, (P.FindQuery, P.NewestQuery, P.TopQuery)) else None
    n = len(order) if n is None else min(n, len(order))
    keep = order[len(order) - n:] if _keeps_newest(q) else order[:n]
    if getattr(q, "limit", None) is not None:
        keep = keep[:q.limit]
    if len(keep) > max_rows:
        raise limits.exceeded(max_rows, f"the result of {text!r}")
    return Result("table", text, columns={k: v[keep] for k, v in columns.items()}, units=units)


def _keeps_newest(q) -> bool:
    return isinstance(q, P.NewestQuery) or (isinstance(q, P.FindQuery) and q.direction == "last")


def _row_order(q, columns: dict) -> np.ndarray:
    """Positions of the stacked rows in the query's order (ties: device order,
    which is the stacking order): time (an episode's or window's start), and
    for top the largest value first."""
    position = np.arange(len(columns["device"]))
    if isinstance(q, P.TopQuery):
        return np.lexsort((position, columns["time"], -columns["value"]))
    key = columns["time"] if "time" in columns else columns["start"]
    return np.lexsort((position, key))


def stack_tables(named: list, label: str):
    """Tables of several devices one under the other, a ``label`` column first
    (a column a device lacks is missing there: NaN, or None for names)."""
    names = []
    for _, r in named:
        names += [c for c in r.columns if c not in names]
    units = {label: ""}
    for _, r in named:
        for c, u in r.units.items():
            units.setdefault(c, u)
    columns = {label: np.array([n for n, r in named for _ in range(len(r))], object)}
    for c in names:
        parts = [r.columns[c] if c in r.columns else _missing(len(r), named, c) for _, r in named]
        columns[c] = np.concatenate(parts) if parts else np.zeros(0)
    if not named:
        columns = {label: np.zeros(0, object)}
    return columns, units


def _missing(n: int, named, column: str) -> np.ndarray:
    like = next(r.columns[column] for _, r in named if column in r.columns)
    if like.dtype == object:
        return np.full(n, None, object)
    if like.dtype.kind in "iu":
        return np.full(n, TIME_MISSING, like.dtype)
    return np.full(n, np.nan)


def per_device(named: list, q, text: str, label: str = "device") -> Result:
    """One row per device (``by device``): each device's own answer."""
    if all(r.kind == "scalar" for _, r in named) and named:
        name = getattr(q, "aggregate", "value")
        values = [r.value for _, r in named]
        column = _scalar_column(values, named[0][1].unit)
        return Result("table", text, columns={label: np.array([n for n, _ in named], object),
                                              name: column},
                      units={label: "", name: named[0][1].unit})
    columns, units = stack_tables(named, label)
    return Result("table", text, columns=columns, units=units)


def _scalar_column(values: list, unit: str) -> np.ndarray:
    if any(isinstance(v, str) for v in values):
        return np.array(values, object)
    if unit == TIME_UNIT or all(isinstance(v, (int, np.integer)) for v in values):
        return np.array([TIME_MISSING if v is None else v for v in values], np.int64)
    return np.array([np.nan if v is None else v for v in values], np.float64)


def sum_scans(scans: list) -> ScanStats:
    total = ScanStats()
    for s in scans:
        total.blocks_total += s.blocks_total
        total.from_stats += s.from_stats
        total.skipped += s.skipped
        total.decoded += s.decoded
    total.engine = ", ".join(sorted({s.engine for s in scans if s.engine}))
    return total


__all__ = ["merge_partials", "finish_aggregate", "aggregate_result", "merge_rows", "per_device",
           "stack_tables", "sum_scans"]
