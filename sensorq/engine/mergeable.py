"""Per-cache partial aggregates, not yet finished: what a fleet query
(sensorq/fleet/) computes where each cache lies and merges across caches.

``aggregate_partials`` runs an aggregate exactly as ``executor.run_aggregate``
does - zone maps, blocks answered from statistics, the kernels over the rest,
the chunked per-bucket merge of partials.py - and stops before
``aggregates.finish``: it returns each bucket's merged partial row (count,
sum, min, max, first, last with their times, mean and M2, time-weighted sum
and time) so that rows of many caches can be merged again, exactly as the
slots of one cache are.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..query import plan as P
from ..result import ScanStats
from . import aggregates as A
from . import limits, partials
from .executor import _what, aggregated_value, count_total, plan_decode
from .program import compile_query
from .zonemaps import classify


@dataclass
class Partials:
    """One cache's merged partials of an aggregate, per time bucket."""
    ids: np.ndarray                 # int64 bucket ids (0 without buckets), ascending
    fp: np.ndarray                  # (len(ids), aggregates.N_F) float64
    ip: np.ndarray                  # (len(ids), aggregates.N_I) int64
    data_first: int | None = None   # the window's data span, for fill (buckets.bucket_range)
    data_last: int | None = None
    scan: ScanStats = field(default_factory=ScanStats)


class PartialMerger(partials.BucketMerger):
    """Keeps each bucket's merged partial row instead of its finished value
    (fp and ip side by side in one float64 row: ip's int64 bits are viewed, not
    converted, so they come back exactly)."""

    def finish(self, fp: np.ndarray, ip: np.ndarray) -> np.ndarray:
        return np.concatenate([fp, ip.view(np.float64)], axis=1)

    def partial_result(self):
        ids, rows = self.result()
        rows = np.ascontiguousarray(rows.reshape(-1, A.N_F + A.N_I))
        return ids, rows[:, :A.N_F].copy(), rows[:, A.N_F:].copy().view(np.int64)


def aggregate_partials(cache, q: P.AggregateQuery, text: str = "", engine: str | None = None,
                       max_rows: int | None = None) -> Partials:
    """The merged partials of aggregate query ``q`` over ``cache`` (not
    percentiles: they are answered by selection, see fleet/percentiles.py)."""
    if q.aggregate in ("median", "percentile"):
        raise ValueError("percentiles have no mergeable partials; select them by passes")
    limit = limits.max_rows(max_rows)
    index = cache.blocks(q.stream, q.time.start_ns, q.time.end_ns)
    start, end = q.time.bounds()
    programs = compile_query(q.where, aggregated_value(q))
    classes = classify(q.where, index)
    use_stats, decode, scan, tier = plan_decode(cache, q, index, classes, programs, start, end,
                                                engine, limit, text)
    span = (int(index.t_first[0]), int(index.t_last[-1])) if len(index) else (None, None)
    if q.aggregate == "count" and not q.bucket_ns:
        fp, ip = A.empty_partials(1)
        ip[0, A.I_COUNT] = count_total(tier, index, use_stats, decode, programs, q.where, start, end)
        return Partials(np.zeros(1, np.int64), fp, ip, *span, scan=scan)
    merger = PartialMerger(q.aggregate, limit, _what(text))
    partials.scan_buckets(partials.Scan(cache, q, index, programs, tier, start, end, limit,
                                        _what(text)), use_stats, decode, merger)
    ids, fp, ip = merger.partial_result()
    return Partials(ids, fp, ip, *span, scan=scan)


__all__ = ["Partials", "PartialMerger", "aggregate_partials"]
