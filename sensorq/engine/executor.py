"""Typed plan → kernels over blocks → Result.

For an aggregate the executor (1) asks the store for the blocks that overlap
the time window, (2) classifies them with the zone maps, (3) folds blocks that
match entirely, lie inside the window and inside one bucket straight from
their statistics, (4) runs the kernels over the rest — skipped blocks are
never touched — and (5) merges the partial aggregates per bucket.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..query import plan as P
from ..result import TIME_UNIT, Result, ScanStats
from . import aggregates as A
from . import buckets, search
from . import tiers
from .layout import build_layouts
from .program import compile_query
from .zonemaps import ALL, NONE, classify


def run_query(cache, text: str, now_policy: str = "data", engine: str | None = None) -> Result:
    """Plan ``text`` against the cache's streams and run it.  ``engine`` picks
    the tier that scans blocks (tiers.py; None: $SENSORQ_ENGINE, else auto)."""
    query = plan_text(cache, text, now_policy)
    return execute(cache, query, text, engine)


def plan_text(cache, text: str, now_policy: str = "data"):
    from ..query.planner import plan_query
    return plan_query(text, cache.streams, cache.newest_ns, now_policy=now_policy)


def execute(cache, query, text: str = "", engine: str | None = None) -> Result:
    runners = {P.AggregateQuery: run_aggregate, P.FindQuery: search.run_find,
               P.EpisodesQuery: search.run_episodes, P.TopQuery: search.run_top,
               P.NewestQuery: search.run_newest}
    if type(query) not in runners:
        raise TypeError(f"cannot execute {type(query).__name__}")
    result = runners[type(query)](cache, query, text, engine)
    result.plan = query
    result.warnings = cache.gaps(query.stream, query.time.start_ns, query.time.end_ns)
    return result


# --- aggregates --------------------------------------------------------------------

def run_aggregate(cache, q: P.AggregateQuery, text: str, engine: str | None = None) -> Result:
    index = cache.blocks(q.stream, q.time.start_ns, q.time.end_ns)
    start, end = q.time.bounds()
    value = None if q.aggregate in ("count", "duration") else q.expr
    programs = compile_query(q.where, value)
    classes = classify(q.where, index)
    scan = ScanStats(blocks_total=len(index))
    if q.aggregate in ("median", "percentile"):
        return _run_percentile(q, index, classes, programs, start, end, scan, text, engine)
    use_stats = _stat_answerable(q, index, classes, value, start, end)
    decode = (classes != NONE) & ~use_stats
    scan.from_stats, scan.decoded = int(use_stats.sum()), int(decode.sum())
    scan.skipped = len(index) - scan.from_stats - scan.decoded
    tier = tiers.choose(engine, tiers.scan_values(index, decode, len(programs.channels)))
    scan.engine = tier.name
    bucket_ns = q.bucket_ns or 0
    if q.aggregate == "count" and not bucket_ns:
        total = int(index.n_samples[use_stats].sum())
        total += _count_decoded(tier, index, np.flatnonzero(decode), programs, q.where, start,
                                end)
        return Result("scalar", text, value=total, unit=q.result_unit, scan=scan)
    parts = [_stats_part(index, np.flatnonzero(use_stats), value, bucket_ns)]
    if scan.decoded:
        parts.append(_decode_part(tier, cache, q, index, np.flatnonzero(decode), programs,
                                  start, end))
    fp = np.concatenate([p[0] for p in parts])
    ip = np.concatenate([p[1] for p in parts])
    bucket_of = np.concatenate([p[2] for p in parts])
    order = np.concatenate([p[3] for p in parts])
    ids, mfp, mip = A.merge(fp, ip, bucket_of, order)
    values = A.finish(q.aggregate, mfp, mip)
    return _aggregate_result(q, text, index, start, end, ids, values, scan)


def _stat_answerable(q, index, classes, value, start, end) -> np.ndarray:
    channel = value if isinstance(value, P.ChannelRef) else None
    if q.aggregate != "count" and channel is None or not A.stats_can_answer(q, channel):
        return np.zeros(len(index), bool)
    ok = (classes == ALL) & (index.t_first >= start) & (index.t_last < end)
    if q.bucket_ns:
        ok &= index.t_first // q.bucket_ns == index.t_last // q.bucket_ns
    if channel is not None and q.aggregate in ("sum", "avg", "std", "var"):
        ok &= A.sums_are_exact(index, slice(None), channel)
    return ok


def _stats_part(index, rows, value, bucket_ns):
    channel = value if isinstance(value, P.ChannelRef) else None   # rows is empty otherwise
    fp, ip = A.stat_partials(index, rows, channel)
    bucket_of = index.t_first[rows] // bucket_ns if bucket_ns else np.zeros(len(rows), np.int64)
    return fp, ip, bucket_of, rows.astype(np.int64)


def _count_decoded(tier, index, rows, programs, where, start, end) -> int:
    """``count where …`` over blocks that must be decoded: only the predicate's
    channels, and the time column only for blocks the window cuts."""
    if len(rows) == 0:
        return 0
    cut = (index.t_first[rows] < start) | (index.t_last[rows] >= end)
    raw_int = where if isinstance(where, P.RawCompare) and where.channel.dtype.startswith("int") \
        else None
    total = 0
    for need_time in (False, True):
        chosen = rows[cut == need_time]
        if len(chosen) == 0:
            continue
        subset = index if len(chosen) == len(index) else index.select(chosen)
        for layout in build_layouts(subset, programs.slot_indices):
            local = np.arange(len(layout.blocks), dtype=np.int64)
            total += int(tier.count(layout, local, programs, raw_int, start, end, need_time).sum())
    return total


def _next_times(cache, q, index, end) -> np.ndarray:
    """Until when the last sample of each block may hold (time-weighted aggregates)."""
    next_t = np.empty(len(index), np.int64)
    next_t[:-1] = index.t_first[1:]
    if len(index):
        newest = cache.newest_ns(q.stream)
        next_t[-1] = end if newest is not None and end <= newest else index.t_last[-1]
    return next_t


@dataclass
class Slots:
    """Where each decoded block writes its partial aggregates: slots
    base..base+count-1, one per time bucket it touches, from bucket0 on; and
    what the kernel needs for time weights (next_t: when the block's last
    sample stops holding)."""
    base: np.ndarray
    count: np.ndarray
    bucket0: np.ndarray
    next_t: np.ndarray
    bucket_ns: int
    gap_ns: int
    time_weighted: bool
    wants: int                 # aggregates.WANT_* bits

    def pick(self, blocks) -> "Slots":
        return dataclasses.replace(self, base=self.base[blocks], count=self.count[blocks],
                                   bucket0=self.bucket0[blocks], next_t=self.next_t[blocks])


def _decode_part(tier, cache, q, index, rows, programs, start, end):
    """Run the partials kernel over blocks ``rows``; one slot per (block, bucket)."""
    bucket_ns = q.bucket_ns or 0
    time_weighted = q.aggregate in A.TIME_WEIGHTED
    gap = q.max_gap_ns or 0
    next_t = _next_times(cache, q, index, end)[rows]
    lo_t = np.maximum(index.t_first[rows], start)
    hi_t = np.minimum(index.t_last[rows], end - 1)
    if time_weighted:
        hold = np.minimum(next_t, index.t_last[rows] + gap) if gap else next_t
        hi_t = np.maximum(hi_t, np.minimum(hold, end) - 1)
    if bucket_ns:
        bucket0 = lo_t // bucket_ns
        slot_count = np.maximum(hi_t // bucket_ns - bucket0 + 1, 1)
    else:
        bucket0, slot_count = np.zeros(len(rows), np.int64), np.ones(len(rows), np.int64)
    slot_base = np.concatenate([[0], np.cumsum(slot_count)[:-1]]).astype(np.int64)
    slots = Slots(slot_base, slot_count, bucket0, next_t, bucket_ns, gap, time_weighted,
                  A.wants(q.aggregate))
    n_slots = int(slot_count.sum())
    fp, ip = np.empty((n_slots, A.N_F)), np.empty((n_slots, A.N_I), np.int64)
    for layout in build_layouts(index.select(rows), programs.slot_indices):
        local = np.arange(len(layout.blocks), dtype=np.int64)
        # blocks own disjoint slot ranges, so every layout writes straight into fp/ip
        tier.partials(layout, local, programs, start, end, slots.pick(layout.blocks), fp, ip)
    block_of_slot = np.repeat(rows, slot_count)
    local_slot = np.arange(n_slots) - np.repeat(slot_base, slot_count)
    bucket_of = (np.repeat(bucket0, slot_count) + local_slot) if bucket_ns else np.zeros(n_slots, np.int64)
    return fp, ip, bucket_of, block_of_slot.astype(np.int64)


def _aggregate_result(q, text, index, start, end, ids, values, scan) -> Result:
    unit = q.result_unit
    if not q.bucket_ns:
        value = values[0] if len(values) else A.finish(q.aggregate, *A.empty_partials(1))[0]
        if q.aggregate == "count":
            value = int(value)
        elif q.aggregate in ("argmax", "argmin"):
            value = None if np.isnan(value) else int(value)
        return Result("scalar", text, value=value, unit=unit, scan=scan)
    times, column = buckets.fill(q, index, start, end, ids, values)
    name = q.aggregate
    return Result("table", text, columns={"time": times, name: column},
                  units={"time": TIME_UNIT, name: unit}, scan=scan)


def _run_percentile(q, index, classes, programs, start, end, scan, text, engine):
    rows = np.flatnonzero(classes != NONE)
    tier = tiers.choose(engine, tiers.scan_values(index, rows, len(programs.channels)))
    scan.engine = tier.name
    times, values = search.gather_values(tier, index, rows, programs, start, end)
    scan.decoded = int((classes != NONE).sum())
    scan.skipped = len(index) - scan.decoded
    p = 50.0 if q.aggregate == "median" else q.percentile
    if not q.bucket_ns:
        value = float(np.percentile(values, p)) if len(values) else float("nan")
        return Result("scalar", text, value=value, unit=q.result_unit, scan=scan)
    bucket_of = times // q.bucket_ns
    ids = np.unique(bucket_of)
    sort = np.argsort(bucket_of, kind="stable")
    groups = np.split(values[sort], np.searchsorted(bucket_of[sort], ids)[1:])
    per_bucket = np.array([np.percentile(g, p) for g in groups]) if len(ids) else np.zeros(0)
    bucket_times, column = buckets.fill(q, index, start, end, ids, per_bucket)
    return Result("table", text, columns={"time": bucket_times, q.aggregate: column},
                  units={"time": TIME_UNIT, q.aggregate: q.result_unit}, scan=scan)


# --- explain -------------------------------------------------------------------------

def explain_query(cache, text: str, now_policy: str = "data", engine: str | None = None) -> str:
    """The plan, the program and what the scan did, as text."""
    from .explain import describe
    query = plan_text(cache, text, now_policy)
    result = execute(cache, query, text, engine)
    return describe(query, result)


__all__ = ["run_query", "execute", "explain_query", "plan_text"]
