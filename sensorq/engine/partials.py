"""Partial aggregates of an aggregate query, chunk by chunk: memory bounded by
the result, never by the data or by the span of the buckets.

A *slot* is one (block, time bucket) pair the kernels fold samples into.  A
block gets a slot per bucket it touches when those are about as many as its
samples (the usual case: consecutive buckets, found by a subtraction); when a
block spans far more buckets than it has samples — ``avg x by 1ns``, a clock
that jumps from 1970 to 2026 inside one block — only the buckets that will
hold something get a slot (*compact* slots: the bucket ids of its samples,
and for time-weighted aggregates of the intervals they hold, run-compacted in
time order), so a block costs O(samples), not O(span / bucket).

Blocks are scanned in time order, a chunk of about CHUNK_SLOTS slots at a
time.  Once a chunk is done, every bucket but its newest is complete (a
later block never reaches back), so those are merged, finished and counted
against the row limit; only the newest bucket's slots are carried into the
next chunk.  Each bucket is merged once, from the same slots in the same
order as a single merge of everything would, so the answers do not depend
on the chunking.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..query import plan as P
from . import aggregates as A
from . import limits
from .layout import build_layouts
from .program import compile_query
from .search import BlockReader
from .zonemaps import residual_groups

CHUNK_SLOTS = 1 << 16    # slots (128 bytes each) allocated at a time


@dataclass
class Slots:
    """Where each decoded block writes its partial aggregates: slots
    base..base+count-1, whose time buckets are ``bucket`` (one entry per slot,
    ascending within a block); and what the kernel needs for time weights
    (next_t: when the block's last sample stops holding)."""
    base: np.ndarray
    count: np.ndarray
    bucket: np.ndarray         # per slot, indexed like fp/ip (not per block)
    next_t: np.ndarray
    need_time: np.ndarray      # per block: decode its timestamps (kernels._scan_partials)
    bucket_ns: int
    gap_ns: int
    time_weighted: bool
    wants: int                 # aggregates.WANT_* bits

    def pick(self, blocks) -> "Slots":
        return dataclasses.replace(self, base=self.base[blocks], count=self.count[blocks],
                                   next_t=self.next_t[blocks], need_time=self.need_time[blocks])


@dataclass
class Scan:
    """What a chunked aggregate scan needs about the query."""
    cache: object
    query: object              # plan.AggregateQuery
    index: object              # BlockIndex
    programs: object
    tier: object
    start: int
    end: int
    limit: int                 # the row limit
    what: str                  # "the result of '…'" (error messages)


def scan_buckets(s: Scan, use_stats: np.ndarray, decode: np.ndarray, merger=None):
    """(bucket ids, finished values) of the aggregate over the blocks answered
    from statistics (``use_stats``) and the decoded ones (``decode``).
    ``merger``: a BucketMerger of another kind (mergeable.PartialMerger keeps
    the merged partials instead of finishing them)."""
    index, q = s.index, s.query
    rows = np.flatnonzero(use_stats | decode)
    next_t = _next_times(s.cache, q, index, s.end)
    value = None if q.aggregate in ("count", "duration") else q.expr
    merger = merger or BucketMerger(q.aggregate, s.limit, s.what)
    for chunk in _chunks(s, rows, decode, next_t):
        parts = []
        stats_rows = chunk[use_stats[chunk]]
        if len(stats_rows):
            parts.append(_stats_part(index, stats_rows, value, q.bucket_ns or 0))
        decode_rows = chunk[decode[chunk]]
        if len(decode_rows):
            parts.append(_decode_part(s, decode_rows, next_t, merger))
        merger.add(parts, final=chunk[-1] == rows[-1])
    return merger.result()


def _chunks(s: Scan, rows, decode, next_t) -> list:
    """Consecutive runs of ``rows`` of about CHUNK_SLOTS slots each (a decoded
    block costs at most its samples + 2 slots, a block from statistics one)."""
    cost = np.ones(len(rows), np.int64)
    if s.query.bucket_ns and len(rows):
        lo_t, hi_t = _slot_span(s, rows, next_t)
        cost[decode[rows]] = np.minimum(_span(lo_t, hi_t, s.query.bucket_ns),
                                        s.index.n_samples[rows] + 2)[decode[rows]]
    chunk_no = (np.cumsum(cost) - 1) // CHUNK_SLOTS
    return np.split(rows, np.flatnonzero(np.diff(chunk_no)) + 1) if len(rows) else []


def _span(lo_t, hi_t, bucket_ns) -> np.ndarray:
    """Buckets from lo_t's to hi_t's, as float64 (it may not fit an int64)."""
    return (hi_t // bucket_ns).astype(np.float64) - (lo_t // bucket_ns).astype(np.float64) + 1


def _slot_span(s: Scan, rows, next_t):
    """The time each block's slots must cover: its samples in the window and,
    for time-weighted aggregates, as long as its last sample holds."""
    index, q = s.index, s.query
    lo_t = np.maximum(index.t_first[rows], s.start)
    hi_t = np.minimum(index.t_last[rows], s.end - 1)
    if q.aggregate in A.TIME_WEIGHTED:
        gap = q.max_gap_ns or 0
        hold = np.minimum(next_t[rows], index.t_last[rows] + gap) if gap else next_t[rows]
        hi_t = np.maximum(hi_t, np.minimum(hold, s.end) - 1)
    return lo_t, hi_t


def _next_times(cache, q, index, end) -> np.ndarray:
    """Until when the last sample of each block may hold (time-weighted aggregates)."""
    next_t = np.empty(len(index), np.int64)
    next_t[:-1] = index.t_first[1:]
    if len(index):
        newest = cache.newest_ns(q.stream)
        next_t[-1] = end if newest is not None and end <= newest else index.t_last[-1]
    return next_t


def _stats_part(index, rows, value, bucket_ns):
    channel = value if isinstance(value, P.ChannelRef) else None   # rows is empty otherwise
    fp, ip = A.stat_partials(index, rows, channel)
    bucket_of = index.t_first[rows] // bucket_ns if bucket_ns else np.zeros(len(rows), np.int64)
    return fp, ip, bucket_of, rows.astype(np.int64)


def _decode_part(s: Scan, rows, next_t, merger):
    """Run the partials kernel over blocks ``rows``: (fp, ip, bucket, order)."""
    q = s.query
    slots = _plan_slots(s, rows, next_t, merger)
    n_slots = int(slots.count.sum())
    fp, ip = np.empty((n_slots, A.N_F)), np.empty((n_slots, A.N_I), np.int64)
    value = None if q.aggregate in ("count", "duration") else q.expr
    for residual, group in residual_groups(q.where, s.index, rows):
        # the predicate as the block statistics left it (zonemaps.residual_groups)
        programs = s.programs if residual is q.where else compile_query(residual, value)
        at = np.searchsorted(rows, group)
        for layout in build_layouts(s.index.select(group), programs.slot_indices):
            local = np.arange(len(layout.blocks), dtype=np.int64)
            # blocks own disjoint slot ranges, so every layout writes straight into fp/ip
            s.tier.partials(layout, local, programs, s.start, s.end,
                            slots.pick(at[layout.blocks]), fp, ip)
    bucket_of = slots.bucket if q.bucket_ns else np.zeros(n_slots, np.int64)
    return fp, ip, bucket_of, np.repeat(rows, slots.count).astype(np.int64)


def _plan_slots(s: Scan, rows, next_t, merger) -> Slots:
    """Slots of blocks ``rows``: consecutive buckets, or compact ones where a
    block spans more buckets than it has samples."""
    q = s.query
    bucket_ns = q.bucket_ns or 0
    first, count, compact = np.zeros(len(rows), np.int64), np.ones(len(rows), np.int64), {}
    if bucket_ns:
        lo_t, hi_t = _slot_span(s, rows, next_t)
        sparse = _span(lo_t, hi_t, bucket_ns) > s.index.n_samples[rows] + 1
        first = lo_t // bucket_ns
        count = np.where(sparse, 0, np.maximum(hi_t // bucket_ns - first + 1, 1))
        for j, buckets in _compact_slots(s, rows, np.flatnonzero(sparse), next_t, merger):
            compact[j], count[j] = buckets, len(buckets)
    base = (np.cumsum(count) - count).astype(np.int64)
    bucket = np.repeat(first, count) + (np.arange(int(count.sum())) - np.repeat(base, count))
    for j, buckets in compact.items():
        bucket[base[j]:base[j] + count[j]] = buckets
    index = s.index
    need_time = (index.t_first[rows] < s.start) | (index.t_last[rows] >= s.end) | (count != 1)
    if bucket_ns:
        need_time |= index.t_first[rows] // bucket_ns != index.t_last[rows] // bucket_ns
    if q.aggregate in A.NEEDS_TIMES or q.aggregate in A.TIME_WEIGHTED:
        need_time[:] = True
    return Slots(base, count, bucket, next_t[rows], need_time, bucket_ns, q.max_gap_ns or 0,
                 q.aggregate in A.TIME_WEIGHTED, A.wants(q.aggregate))


def _compact_slots(s: Scan, rows, which, next_t, merger):
    """(position in rows, bucket ids) for the blocks ``rows[which]``: evaluated
    once here (both tiers give the same mask and values) to learn which
    buckets their samples and holds reach."""
    q, programs = s.query, s.programs
    reader = BlockReader(s.tier, s.index, programs, rows=rows[which])
    for j in which:
        t, mask, values = reader.evaluate(rows[j])
        kept = mask & (t >= s.start) & (t < s.end)
        if programs.has_value:
            kept &= ~np.isnan(values)
        hold_ends = _hold_ends(t, next_t[rows[j]], q.max_gap_ns or 0, s.end) \
            if q.aggregate in A.TIME_WEIGHTED else None
        yield j, touched_buckets(t, kept, hold_ends, q.bucket_ns, merger.room(), s.limit,
                                 s.what)


def _hold_ends(t, next_t, gap_ns, end) -> np.ndarray:
    """When each sample's value stops holding, as the kernels compute it."""
    nxt = np.append(t[1:], next_t)
    if gap_ns > 0:
        nxt = np.minimum(nxt, t + gap_ns)
    return np.minimum(nxt, end)


def touched_buckets(t, kept, hold_ends, bucket_ns, room, limit, what) -> np.ndarray:
    """Ascending distinct buckets holding a kept sample, or (``hold_ends``
    given) part of the interval [t, hold_end) a kept sample holds for.  Both
    are in time order, so runs are compacted without a sort; more than
    ``room`` (rows left under the row limit ``limit``) is refused before
    they are allocated."""
    t0 = t[kept]
    first = t0 // bucket_ns
    if hold_ends is None or len(t0) == 0:
        return first[np.r_[True, first[1:] != first[:-1]]] if len(first) else first
    t1 = hold_ends[kept]
    last = np.where(t1 > t0, (t1 - 1) // bucket_ns, first)
    new_from = np.maximum(first, np.r_[first[0], last[:-1] + 1])   # skip what the previous reached
    pieces = np.maximum(last - new_from + 1, 0)
    if pieces.astype(np.float64).sum() > room + 1:       # +1: the first may merge with a carry
        raise limits.exceeded(limit, what)
    starts = np.cumsum(pieces) - pieces
    return np.repeat(new_from, pieces) + (np.arange(int(pieces.sum())) - np.repeat(starts, pieces))


class BucketMerger:
    """Merges chunks of slots into finished buckets, carrying the newest
    bucket's slots over to the next chunk, and counts rows against the limit."""

    def __init__(self, aggregate: str, limit: int, what: str):
        self.aggregate, self.limit, self.what = aggregate, limit, what
        self.carry: list = []
        self.ids: list = []
        self.values: list = []
        self.rows = 0

    def room(self) -> int:
        """Rows still allowed."""
        return self.limit - self.rows

    def add(self, parts: list, final: bool) -> None:
        fp, ip, bucket, order = (np.concatenate(c) for c in zip(*(self.carry + parts)))
        keep = (ip[:, A.I_COUNT] > 0) | (ip[:, A.I_TW_NS] > 0)
        fp, ip, bucket, order = fp[keep], ip[keep], bucket[keep], order[keep]
        self.carry = []
        if not final and len(bucket):
            newest = bucket == bucket.max()
            self.carry = [(fp[newest], ip[newest], bucket[newest], order[newest])]
            fp, ip, bucket, order = fp[~newest], ip[~newest], bucket[~newest], order[~newest]
        ids, mfp, mip = A.merge(fp, ip, bucket, order)
        self.rows += len(ids)
        if self.rows + len(self.carry) > self.limit:
            raise limits.exceeded(self.limit, self.what)
        self.ids.append(ids)
        self.values.append(self.finish(mfp, mip))

    def finish(self, fp: np.ndarray, ip: np.ndarray) -> np.ndarray:
        """Merged partials → the values this merger keeps per bucket."""
        return A.finish(self.aggregate, fp, ip)

    def result(self):
        """(bucket ids, values), every bucket with data, in time order."""
        if not self.ids:
            return np.zeros(0, np.int64), self.finish(*A.empty_partials(0))
        return np.concatenate(self.ids), np.concatenate(self.values)
