"""Typed plan → kernels over blocks → Result.

For an aggregate the executor (1) asks the store for the blocks that overlap
the time window, (2) classifies them with the zone maps, (3) folds blocks that
match entirely, lie inside the window and inside one bucket straight from
their statistics, (4) runs the kernels over the rest — skipped blocks are
never touched — and (5) merges the partial aggregates per bucket, a chunk of
blocks at a time (partials.py), so memory follows the result, not the data.
Results are held to the row limit (limits.py).

A one-off query is a process start, so this module imports only what every
aggregate needs; the modules of other query shapes (search, selection,
partials, buckets, modelscan) are imported by the functions that use them,
and the numba kernels only by the compiled tier (tiers.py).
"""
from __future__ import annotations

import dataclasses
import os
import re
import time
import weakref

import numpy as np

from ..errors import QueryError, QueryMemoryError
from ..query import plan as P
from ..store.blockindex import BlocksChanged
from ..store.manifest import MODELS_DIR
from ..query.categories import label_result
from ..result import TIME_MISSING, TIME_UNIT, Result, ScanStats
from . import aggregates as A
from . import counting, limits, tiers
from .derived import derived
from .plancache import plans_of
from .program import compile_query
from .zonemaps import ALL, NONE, classify

MODEL_SUFFIX = ".sqm"       # models/registry.py: one NAME.sqm file per model in MODELS_DIR
MAX_REINDEX_ROUNDS = 64     # a query asked again after damage was found (_run_to_the_end)


def run_query(cache, text: str, now_policy: str = "data", engine: str | None = None,
              max_rows: int | None = None) -> Result:
    """Plan ``text`` against the cache's streams and run it.  ``engine`` picks
    the tier that scans blocks (tiers.py; None: $SENSORQ_ENGINE, else auto);
    ``max_rows`` the row limit (limits.py; None: $SENSORQ_MAX_ROWS, else 10
    million).  Running out of memory is a QueryMemoryError naming the query."""
    def run():
        view, query = _plan_in_view(cache, text, now_policy)
        return execute(view, query, text, engine, max_rows)
    return _guard_memory(text, run)


def _plan_in_view(cache, text: str, now_policy: str, fresh: bool = False):
    """(the cache as the query sees it, the query's plan).  A query that names
    no model (no word that is a model's name or starts with NAME_, as every
    channel of a model's derived stream does) on a cache of several streams is
    planned over the real streams first: the models' code is not imported and
    their files are not read, as in a cache without models.  That plan is the
    one the models' view would give (their streams and channels cannot be
    named by such a query, and with several streams none is taken by default);
    if planning fails, the query is planned again in the view, so that errors
    (and their hints) are as they always were.  A damaged model file thus
    fails the queries that may use the model, not the others."""
    if not _may_name_a_model(cache, text):
        try:
            return cache, plan_text(cache, text, now_policy, fresh)
        except QueryError:
            pass
    view = _with_models(cache)
    return view, plan_text(view, text, now_policy, fresh)


def _may_name_a_model(cache, text: str) -> bool:
    names = model_names(cache)
    if not names:
        return False
    if len(cache.streams) < 2:
        return True
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    return any(word == name or word.startswith(name + "_") for word in words for name in names)


# A listing of a models directory is used again while the directory's mtime
# stays (a model is written as a temporary file renamed into place, and
# removed by unlink: each changes it), unless that mtime is this recent: on
# file systems with coarse timestamps (FAT on an SD card: 2 s) a model added
# in the same tick as the listing would leave the mtime as it was.
_RACY_LISTING_NS = 3_000_000_000
_LISTINGS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def model_names(cache) -> tuple[str, ...]:
    """The names of the cache's models (its models directory's NAME.sqm
    files), as every query looks for them: one access() when the cache has
    no models directory (~1 µs; listing a missing one raised, ~3 µs), one
    stat() while the listing kept still holds."""
    referable = _weakly_referable(cache)
    kept = _LISTINGS.get(cache) if referable else None
    if kept is None:
        kept = (os.path.join(cache.path, MODELS_DIR), None, ())
        if referable:
            _LISTINGS[cache] = kept
    directory = kept[0]
    if not os.access(directory, os.F_OK):
        return ()
    try:
        mtime = os.stat(directory).st_mtime_ns
        if kept[1] == mtime:
            return kept[2]
        names = tuple(f[:-len(MODEL_SUFFIX)] for f in os.listdir(directory) if f.endswith(MODEL_SUFFIX))
    except OSError:         # removed since: no models
        return ()
    if referable and time.time_ns() - mtime > _RACY_LISTING_NS:
        _LISTINGS[cache] = (directory, mtime, names)
    return names


def _weakly_referable(cache) -> bool:
    return hasattr(type(cache), "__weakref__")


def _with_models(cache):
    """The cache with its models' derived streams (sensorq/models/derived.py);
    the models code is not even imported for a cache that has none."""
    if not os.path.isdir(os.path.join(cache.path, MODELS_DIR)):
        return cache
    from ..models.derived import query_view
    return query_view(cache)


def _empty_window(cache, query) -> list[str]:
    """With now = the clock, a window after the stream's newest sample holds no
    data: say so, rather than let a 0 pass for an answer about a quiet sensor."""
    if query.now.source != "clock" or query.time.start_ns is None:
        return []
    newest = cache.newest_ns(query.stream)
    if newest is not None and newest >= query.time.start_ns:
        return []
    from ..result import iso
    seen = "has no samples" if newest is None else f"ends at {iso(newest)}"
    return [f"the window [{iso(query.time.start_ns)}, {iso(query.time.end_ns)}) holds no data: "
            f"stream {query.stream!r} {seen} (now is the clock; --now data measures from the "
            f"stream's newest sample)"]


def _guard_memory(text: str, run):
    """``run()``, with a MemoryError turned into a SensorqError.  It is raised
    outside the ``except`` clause, so that the failed query's frames (and
    the arrays they hold) are freed before the caller sees the error."""
    try:
        return run()
    except MemoryError as exc:
        if isinstance(exc, QueryMemoryError):
            raise
        detail = str(exc)
    raise limits.out_of_memory(text, detail)


def plan_text(cache, text: str, now_policy: str = "data", fresh: bool = False):
    """The plan of ``text`` over the cache's streams: the one a recent call
    made, when nothing it depended on has changed (plancache.py), unless
    ``fresh`` (explain: a kept plan of a query over the whole stream reports
    the now it was made at)."""
    if now_policy != "data" or fresh:       # (the wall clock's now: a plan is good once)
        from ..query.planner import plan_query
        return plan_query(text, cache.streams, cache.newest_ns, now_policy=now_policy)
    return plans_of(cache).plan(cache, text)


_RUNNERS: dict = {}      # plan type -> its runner, once its module is imported


def _runner(query):
    """The function that runs a plan of this type (its module imported by the
    first query of that type; after that a dict's read, where an import
    statement in each call cost ~1.5 µs of a ~70 µs top N)."""
    kind = type(query)
    if kind is P.AggregateQuery:
        return run_aggregate
    runner = _RUNNERS.get(kind)
    if runner is None:
        runner = _RUNNERS[kind] = _import_runner(kind)
    return runner


def _import_runner(kind):
    if kind in (P.FindQuery, P.EpisodesQuery, P.NewestQuery):
        from . import search
        return {P.FindQuery: search.run_find, P.EpisodesQuery: search.run_episodes,
                P.NewestQuery: search.run_newest}[kind]
    if kind is P.TopQuery:
        from .selection import run_top
        return run_top
    if kind is P.ModelQuery:
        from .modelscan import run_score
        return run_score
    raise TypeError(f"cannot execute {kind.__name__}")


def execute(cache, query, text: str = "", engine: str | None = None,
            max_rows: int | None = None) -> Result:
    result = _run_to_the_end(cache, query, text, engine, limits.max_rows(max_rows))
    result = label_result(result, query, cache.streams)     # categorical codes shown as names
    if query.limit is not None and result.kind == "table":
        result.columns = {name: column[:query.limit] for name, column in result.columns.items()}
    result.plan = query
    # blocks the query did not read were answered from their statistics, which
    # are as written: only damage found so far is a gap in this answer
    result.warnings = cache.gaps(query.stream, query.time.start_ns, query.time.end_ns, check=False)
    result.warnings += _empty_window(cache, query)
    if hasattr(cache, "explain_model"):
        result.scan.model = cache.explain_model(query.stream)
    return result


def _run_to_the_end(cache, query, text, engine, max_rows) -> Result:
    """The query's runner, asked again when a block it was about to read failed
    its CRC: the cache has then indexed that block's segment again (read whole,
    as without an index file), so the blocks are taken afresh.  Each time one
    more segment is read whole, which bounds the rounds."""
    runner = _runner(query)
    for round_no in range(MAX_REINDEX_ROUNDS + 1):
        try:
            return runner(cache, query, text, engine, max_rows)
        except BlocksChanged:
            if round_no == MAX_REINDEX_ROUNDS:
                raise


# --- aggregates --------------------------------------------------------------------

def run_aggregate(cache, q: P.AggregateQuery, text: str, engine: str | None = None,
                  max_rows: int | None = None) -> Result:
    limit = limits.max_rows(max_rows)
    index = cache.blocks(q.stream, q.time.start_ns, q.time.end_ns, lazy=True)
    start, end = q.time.bounds()
    if q.bucket_ns and q.fill.mode != "none" and len(index):
        # a fill lists every bucket of the window: refused before anything is read
        from . import buckets
        limits.check_rows(buckets.window_rows(q, index, start, end), limit, _what(text))
    value = aggregated_value(q)
    programs = compile_query(q.where, value)
    if q.aggregate == "count" and not q.bucket_ns and index.parts is not None:
        return _run_count_in_parts(q, text, index.parts, programs, start, end, engine)
    classes = classify(q.where, index)
    if q.aggregate in ("median", "percentile"):
        scan = ScanStats(blocks_total=len(index))
        return _run_percentile(q, index, classes, programs, start, end, scan, text, engine, limit)
    if q.aggregate == "count" and not q.bucket_ns:
        return _run_count(q, text, index, classes, programs, start, end, engine)
    use_stats, decode, scan, tier = plan_decode(cache, q, index, classes, programs, start, end,
                                                engine, limit, text)
    from . import partials
    ids, values = partials.scan_buckets(
        partials.Scan(cache, q, index, programs, tier, start, end, limit, _what(text)),
        use_stats, decode)
    return _aggregate_result(q, text, index, start, end, ids, values, scan)


def aggregated_value(q: P.AggregateQuery):
    """The expression an aggregate reads (None: count and duration read none)."""
    return None if q.aggregate in ("count", "duration") else q.expr


def plan_decode(cache, q: P.AggregateQuery, index, classes, programs, start, end, engine, limit,
                text):
    """Which blocks an aggregate answers from statistics and which it decodes,
    and on which tier: (use_stats, decode, scan, tier).  run_aggregate and the
    fleet's aggregate_partials (mergeable.py) plan the same way."""
    use_stats, decode = _split_blocks(q, index, classes, start, end)
    tier = tiers.choose(engine, lambda: tiers.aggregate_cost(index, decode, programs.channels,
                                                                q.bucket_ns))
    scan = _scan_stats(index, int(use_stats.sum()), int(decode.sum()), tier)
    if q.aggregate in EXTREMES and not q.bucket_ns and decode.any():
        # blocks that cannot hold the extreme are not read (a partial row's
        # other columns are then partial: only the extreme and its time are used)
        decode = _prune_extremes(cache, q, index, programs, tier, start, end, limit, text,
                                 use_stats, decode)
        scan = _scan_stats(index, scan.from_stats, int(decode.sum()), tier)
    return use_stats, decode, scan, tier


def _split_blocks(q, index, classes, start, end):
    """(use_stats, decode): the blocks an aggregate answers from their
    statistics, and those it must decode (the rest are skipped)."""
    use_stats = _stat_answerable(q, index, classes, aggregated_value(q), start, end)
    return use_stats, (classes != NONE) & ~use_stats


def _scan_stats(index, from_stats: int, decoded: int, tier) -> ScanStats:
    return ScanStats(blocks_total=len(index), from_stats=from_stats, decoded=decoded,
                     skipped=len(index) - from_stats - decoded, engine=tier.name)


def count_total(tier, index, use_stats, decode, programs, where, start, end) -> int:
    """``count where …`` without buckets: blocks whole from statistics, the rest decoded."""
    return counting.run_count(tier, index, counting.count_plan(index, where, use_stats, decode,
                                                               start, end), start, end)


def _run_count(q, text, index, classes, programs, start, end, engine) -> Result:
    """A count without buckets, its plan kept for the next identical query over
    the same blocks (counting.py)."""
    def plan():
        use_stats, decode = _split_blocks(q, index, classes, start, end)
        return counting.count_plan(index, q.where, use_stats, decode, start, end), \
            int(use_stats.sum()), decode
    count_plan, from_stats, decode = derived(index, ("count plan", q.where, start, end), plan,
                                             size=lambda kept: counting.plan_bytes(kept[0])
                                             + kept[2].nbytes, most=counting.KEPT_PLAN_BYTES)
    # priced only where auto weighs the scan (the kernels not yet loaded): an
    # O(blocks) pass, ~0.4 ms of a new block range's first count over 100 M samples
    tier = tiers.choose(engine, lambda: tiers.aggregate_cost(index, decode, programs.channels, 0))
    scan = _scan_stats(index, from_stats, count_plan.decoded_blocks, tier)
    total = counting.run_count(tier, index, count_plan, start, end)
    return Result("scalar", text, value=total, unit=q.result_unit, scan=scan)


def _run_count_in_parts(q, text, parts, programs, start, end, engine) -> Result:
    """A count over a writer's index: its sealed blocks (whose plan, layouts
    and frame maps are kept as a reader's are: _run_count) and its open block,
    which changes with every append, counted apart and added."""
    results = [_run_count(q, text, part, classify(q.where, part), programs, start, end, engine)
               for part in parts]
    sealed, open_block = (result.scan for result in results)
    scan = ScanStats(blocks_total=sealed.blocks_total + open_block.blocks_total,
                     from_stats=sealed.from_stats + open_block.from_stats,
                     skipped=sealed.skipped + open_block.skipped,
                     decoded=sealed.decoded + open_block.decoded,
                     engine=sealed.engine if sealed.decoded or not open_block.decoded
                     else open_block.engine)
    return Result("scalar", text, value=sum(result.value for result in results),
                  unit=q.result_unit, scan=scan)


EXTREMES = {"max": 1, "argmax": 1, "min": -1, "argmin": -1}
SEED_BLOCKS = 4     # blocks decoded first to learn a bound on the extreme


def _prune_extremes(cache, q, index, programs, tier, start, end, limit, text, use_stats, decode):
    """``max`` (``min``, ``argmax``, ``argmin``) without a bucket: only blocks
    that may hold the answer are decoded.  The blocks whose upper bound (the
    zone maps' interval arithmetic over their statistics, as top N uses) is
    highest are decoded first; their largest matching value is a floor for the
    answer, and a block whose bound lies below that floor cannot hold the
    answer, nor a value equal to it (the first of equal extremes is the
    argmax).  Seed batches double until the floor is found.  The answer is
    then computed as before, from the blocks left: the same numbers in the
    same order, less the ones that could not win."""
    from . import partials, selection
    sign = EXTREMES[q.aggregate]
    lo, hi = selection.value_bounds(q.expr, index)
    bound = hi if sign > 0 else -lo
    bound = np.where(np.isnan(bound), np.inf, bound)     # -inf widened by a hair: no bound
    if decode.sum() < 4 * SEED_BLOCKS:
        return decode
    floor = -np.inf
    if use_stats.any():      # blocks answered from statistics: bare channels, exact bounds
        floor = float(bound[use_stats].max())
    order = np.flatnonzero(decode)
    order = order[np.argsort(-bound[order], kind="stable")]
    seed = dataclasses.replace(q, aggregate="max" if sign > 0 else "min")
    nothing = np.zeros(len(index), bool)
    tried, batch = 0, SEED_BLOCKS
    while tried < len(order) and bound[order[tried]] >= floor and tried < len(order) // 4:
        chosen = nothing.copy()
        chosen[order[tried:tried + batch]] = True
        _, values = partials.scan_buckets(
            partials.Scan(cache, seed, index, programs, tier, start, end, limit, _what(text)),
            nothing, chosen)
        tried += batch
        batch *= 2
        if len(values) and not np.isnan(values[0]):
            floor = max(floor, sign * float(values[0]))
            break
    return decode & (bound >= floor)


def _what(text: str) -> str:
    return f"the result of {text!r}" if text else "the result"


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


def _aggregate_result(q, text, index, start, end, ids, values, scan) -> Result:
    unit = q.result_unit
    if not q.bucket_ns:
        value = values[0] if len(values) else A.finish(q.aggregate, *A.empty_partials(1))[0]
        if q.aggregate == "count":
            value = int(value)
        elif q.aggregate in A.TIMESTAMP_AGGREGATES:   # int64 ns end to end, never a float
            value = None if value == TIME_MISSING else int(value)
        return Result("scalar", text, value=value, unit=unit, scan=scan)
    from . import buckets
    times, column = buckets.fill(q, index, start, end, ids, values)
    name = q.aggregate
    return Result("table", text, columns={"time": times, name: column},
                  units={"time": TIME_UNIT, name: unit}, scan=scan)


def _run_percentile(q, index, classes, programs, start, end, scan, text, engine, limit):
    """Percentiles by selection (selection.py): memory bounded by GATHER_LIMIT
    values, or per bucket by the largest bucket below that."""
    from . import buckets, selection
    rows = np.flatnonzero(classes != NONE)
    tier = tiers.choose(engine, lambda: tiers.scan_values(index, rows, programs.channels))
    scan.engine = tier.name
    scan.decoded = len(rows)
    scan.skipped = len(index) - scan.decoded
    p = 50.0 if q.aggregate == "median" else q.percentile
    counted = selection.histogram_percentiles(tier, index, rows, programs, q.expr, p, start, end,
                                              q.bucket_ns or 0, limit, _what(text))
    if counted is not None:
        ids, per_bucket = counted
        if not q.bucket_ns:
            value = float(per_bucket[0]) if len(per_bucket) else float("nan")
            return Result("scalar", text, value=value, unit=q.result_unit, scan=scan)
        bucket_times, column = buckets.fill(q, index, start, end, ids, per_bucket)
        return Result("table", text, columns={"time": bucket_times, q.aggregate: column},
                      units={"time": TIME_UNIT, q.aggregate: q.result_unit}, scan=scan)
    source = selection.ValueSource(tier, index, rows, programs, q.expr, start, end)
    if not q.bucket_ns:
        value = selection.select_percentile(source, p)
        return Result("scalar", text, value=value, unit=q.result_unit, scan=scan)
    ids, per_bucket = selection.bucket_percentiles(source, p, q.bucket_ns, limit, _what(text))
    bucket_times, column = buckets.fill(q, index, start, end, ids, per_bucket)
    return Result("table", text, columns={"time": bucket_times, q.aggregate: column},
                  units={"time": TIME_UNIT, q.aggregate: q.result_unit}, scan=scan)


# --- explain -------------------------------------------------------------------------

def explain_query(cache, text: str, now_policy: str = "data", engine: str | None = None,
                  max_rows: int | None = None) -> str:
    """The plan, the program and what the scan did, as text."""
    from .explain import describe
    cache, query = _plan_in_view(cache, text, now_policy, fresh=True)
    result = _guard_memory(text, lambda: execute(cache, query, text, engine, max_rows))
    return describe(query, result, engine)


__all__ = ["run_query", "execute", "explain_query", "plan_text"]
