"""Selections whose memory follows the answer, not the data: ``top N`` and
percentiles (``median``, ``percentile(p)``, also ``by`` buckets).

top N visits blocks from the largest upper bound of the expression down (the
zone maps' interval arithmetic over block statistics) and stops once the
N-th best value so far beats every block not yet visited; it keeps about 2N
candidates, never all of them.  Order: largest value first, then oldest,
then the order the samples were appended in (what a stable sort of all
samples gave before).

A percentile is answered by passes over the blocks (radix selection on the
values' order-preserving 64-bit keys): a pass counts the values into 65 536
bins of a key range, the next one looks only inside the bin holding the
wanted rank (skipping blocks whose statistics lie outside it), until that
bin holds at most GATHER_LIMIT values, which are then sorted, or holds one
value only.  The answer is numpy's "linear" percentile, computed with
numpy's own arithmetic (percentile_plan, lerp), so it equals what
np.percentile of all the values gives.  By buckets, values are kept one
bucket at a time (blocks come in time order); a bucket that might hold more
than GATHER_LIMIT values is answered by passes over its own time range.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codec.codes import LADDER_STEPS
from ..query import plan as P
from ..result import TIME_UNIT, Result, ScanStats
from ..store.blockindex import take_entries
from . import limits, tiers
from .layout import POOLED, build_layouts, few_blocks_plan, materialise
from .derived import derived
from .program import compile_query
from .search import READ_AHEAD_BLOCKS, BlockReader
from .zonemaps import NONE, bounds, classify

BITS = 16                        # a pass splits its key range into 1 << BITS bins
GATHER_LIMIT = 1 << 18           # values a percentile sorts at once (2 MB)
COUNT_BATCH = 1 << 18            # bin numbers counted at once (bincount copies them to intp)
KEY_MAX = (1 << 64) - 1
_SIGN = np.uint64(1 << 63)


# --- order-preserving keys --------------------------------------------------------------

def float_keys(v: np.ndarray) -> np.ndarray:
    """uint64 keys in the order of the float64 values (NaN excluded; -0.0
    just below 0.0), as the codec's FLOATBITS transform."""
    u = np.ascontiguousarray(v, np.float64).view(np.uint64)
    return np.where(u >= _SIGN, ~u, u | _SIGN)


def key_value(key: int) -> float:
    u = np.uint64(key)
    u = u & ~_SIGN if u >= _SIGN else ~u
    return float(np.array([u], np.uint64).view(np.float64)[0])


KEY_NEG_INF, KEY_POS_INF = (int(k) for k in float_keys(np.array([-np.inf, np.inf])))


def key_range_values(lo: int, hi: int) -> tuple[float, float]:
    """The values whose keys lie in [lo, hi] (NaN keys stand for ±inf)."""
    return (-np.inf if lo <= KEY_NEG_INF else key_value(lo),
            np.inf if hi >= KEY_POS_INF else key_value(hi))


# --- numpy's percentile, step by step -------------------------------------------------

def percentile_plan(counts: np.ndarray, p: float):
    """For groups of ``counts`` values: the ranks (0-based, ascending order) of
    the two values to interpolate between, and the weight — as
    np.percentile(…, method="linear") computes them, operation for operation."""
    q = np.true_divide(p, 100)
    virtual = (counts - 1) * q
    above = virtual >= counts - 1             # numpy takes the last value twice
    previous = np.where(above, -1, np.floor(virtual)).astype(np.int64)
    gamma = virtual - previous                # with -1 above, as numpy has it
    a = np.where(above, counts - 1, previous)
    b = np.where(above, counts - 1, previous + 1)
    return a, b, gamma


def lerp(a, b, gamma):
    """numpy's _lerp: a + (b − a)·γ, or b − (b − a)·(1 − γ) from γ = 0.5 on."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = b - a
        return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


def grouped_percentiles(ids: np.ndarray, values: np.ndarray, p: float):
    """(distinct ids, the p-th percentile of each id's values); ids ascending."""
    order = np.lexsort((values, ids))
    ids, values = ids[order], values[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    counts = np.diff(np.r_[starts, len(ids)])
    a, b, gamma = percentile_plan(counts, p)
    return ids[starts], lerp(values[starts + a], values[starts + b], gamma)


# --- the values a percentile reads ----------------------------------------------------

class ValueSource:
    """Matching, non-NaN values of ``expr`` in [start, end) of blocks ``rows``
    (time order), block by block; each block's value bounds (zone maps) let
    a pass over a narrow range of values skip the blocks outside it."""

    def __init__(self, tier, index, rows, programs, expr, start, end, reader=None):
        self.index, self.rows, self.start, self.end = index, np.asarray(rows), start, end
        self.reader = reader or BlockReader(tier, index, programs, rows=self.rows)
        self.expr, self.tier, self.programs = expr, tier, programs
        self.lo, self.hi = value_bounds(expr, index.select(self.rows))

    def restricted(self, start: int, end: int) -> "ValueSource":
        """The same values in [start, end) ∩ this window (the same decoder)."""
        start, end = max(start, self.start), min(end, self.end)
        index = self.index
        rows = self.rows[(index.t_last[self.rows] >= start) & (index.t_first[self.rows] < end)]
        return ValueSource(self.tier, index, rows, self.programs, self.expr, start, end,
                           self.reader)

    def upper_count(self) -> int:
        return int(self.index.n_samples[self.rows].sum())

    def samples(self, lo: float = -np.inf, hi: float = np.inf, skip=None):
        """(times, values) per block that may hold a value in [lo, hi] (and is
        not marked in ``skip``)."""
        near = (self.hi >= lo) & (self.lo <= hi)
        if skip is not None:
            near &= ~skip
        for b in self.rows[near]:
            t, v, _ = self.reader.gather(b, self.start, self.end)
            ok = ~np.isnan(v)
            yield t[ok], v[ok]

    def keys(self, lo: int = 0, hi: int = KEY_MAX):
        """Keys in [lo, hi] per block that may hold one."""
        whole = lo == 0 and hi == KEY_MAX
        for _, v in self.samples(*key_range_values(lo, hi)):
            keys = float_keys(v)
            yield keys if whole else keys[(keys >= lo) & (keys <= hi)]


def value_bounds(expr, index):
    """Per-block (lo, hi) of ``expr``: exact for a channel (its statistics
    times its scale, the multiplication the VM does); widened by a hair for
    an expression, against rounding in the interval arithmetic."""
    b = bounds(expr, index)
    if isinstance(expr, P.ChannelRef):
        return b.lo, b.hi
    with np.errstate(invalid="ignore", over="ignore"):
        return b.lo - np.abs(b.lo) * 1e-12 - 1e-300, b.hi + np.abs(b.hi) * 1e-12 + 1e-300


# --- percentiles ----------------------------------------------------------------------

def select_percentile(source: ValueSource, p: float) -> float:
    """The p-th percentile of the source's values (NaN when it has none)."""
    n, value = _select(source, p)
    return value if n else float("nan")


def _select(source: ValueSource, p: float) -> tuple[int, float]:
    """(count of values, their p-th percentile) by passes over the blocks."""
    if source.upper_count() <= GATHER_LIMIT:
        return _from_sorted(_gather(source, 0, KEY_MAX), 0, None, p)
    lo, hi, below, plan = 0, KEY_MAX, 0, None
    while True:
        shift = max(0, (hi - lo).bit_length() - BITS)
        hist, kmin, kmax = _histogram(source, lo, hi, shift)
        if plan is None:
            n = int(hist.sum())
            if n == 0:
                return 0, float("nan")
            plan = tuple(x[0] for x in percentile_plan(np.array([n]), p))
        rank_a, rank_b, gamma = plan
        if kmin == kmax:            # every value left is the same: both ranks have it
            return n, _lerp_keys(kmin, kmin, gamma)
        ends = np.cumsum(hist)
        ja, jb = np.searchsorted(ends, [rank_a - below, rank_b - below], side="right")
        edges = [(lo + (j << shift), min(hi, lo + ((j + 1) << shift) - 1))
                 for j in (int(ja), int(jb))]
        if ja != jb:                # the two ranks end one bin and start the next
            return n, _lerp_keys(*_ends_of_bins(source, edges[0], edges[1]), gamma)
        below += int(ends[ja] - hist[ja])
        lo, hi = edges[0]
        if shift == 0:
            return n, _lerp_keys(lo, lo, gamma)
        inside = int(hist[ja])
        del hist, ends              # the next pass makes its own
        if inside <= GATHER_LIMIT:
            return _from_sorted(_gather(source, lo, hi), below, plan, p, n)


def _from_sorted(keys, below, plan, p, n=None) -> tuple[int, float]:
    n = len(keys) if n is None else n
    if n == 0:
        return 0, float("nan")
    rank_a, rank_b, gamma = plan or tuple(x[0] for x in percentile_plan(np.array([n]), p))
    return n, _lerp_keys(int(keys[rank_a - below]), int(keys[rank_b - below]), gamma)


def _lerp_keys(a: int, b: int, gamma) -> float:
    return float(lerp(np.float64(key_value(a)), np.float64(key_value(b)), gamma))


def _histogram(source, lo, hi, shift):
    """Counts of the keys in [lo, hi] per bin (key − lo) >> shift, and their
    smallest and largest key."""
    bins = 1 << BITS
    hist = np.zeros(bins, np.int64)
    kmin, kmax = KEY_MAX, 0
    batch, size = [], 0
    for keys in source.keys(lo, hi):
        if len(keys) == 0:
            continue
        kmin, kmax = min(kmin, int(keys.min())), max(kmax, int(keys.max()))
        batch.append(((keys - np.uint64(lo)) >> np.uint64(shift)).astype(np.uint16))
        size += len(keys)
        if size >= COUNT_BATCH:    # one bincount per batch: a block is too small for one
            hist += np.bincount(np.concatenate(batch), minlength=bins)
            batch, size = [], 0
    if batch:
        hist += np.bincount(np.concatenate(batch), minlength=bins)
    return hist, kmin, kmax


def _ends_of_bins(source, first, second) -> tuple[int, int]:
    """The largest key of bin ``first`` and the smallest of bin ``second``
    (the bins between them are empty)."""
    top, bottom = 0, KEY_MAX
    for keys in source.keys(first[0], second[1]):
        low, high = keys[keys <= first[1]], keys[keys >= second[0]]
        top = max(top, int(low.max())) if len(low) else top
        bottom = min(bottom, int(high.min())) if len(high) else bottom
    return top, bottom


def _gather(source, lo, hi) -> np.ndarray:
    keys = [k for k in source.keys(lo, hi)]
    return np.sort(np.concatenate(keys)) if keys else np.zeros(0, np.uint64)


# --- percentiles of an integer channel: histograms -----------------------------------

HIST_TYPES = ("int8", "int16", "int32")   # raw values exact in the float rows the decoder writes
HIST_MAX_CELLS = 1 << 17        # value range of one bucket counted cell by cell (int16: 65 536)
HIST_CHUNK_CELLS = 1 << 22      # cells (8 bytes) allocated at a time


@dataclass
class Tasks:
    """What the histogram kernels run (kernels.value_histograms): task k counts
    the blocks entry_block[task_ptr[k]:task_ptr[k + 1]] (layout positions;
    entry_time: decode its timestamps) in [task_lo[k], task_hi[k]) into
    cells[task_off[k]:task_off[k] + task_len[k]], cell 0 holding raw value
    task_base[k]."""
    task_ptr: np.ndarray
    entry_block: np.ndarray
    entry_time: np.ndarray
    task_lo: np.ndarray
    task_hi: np.ndarray
    task_base: np.ndarray
    task_off: np.ndarray
    task_len: np.ndarray


def histogram_percentiles(tier, index, rows, programs, expr, p, start, end, bucket_ns, limit,
                          what):
    """The p-th percentile of an integer channel per bucket (``bucket_ns`` 0:
    one value for the window), from histograms of its raw values — one pass
    over the blocks, exact, and no values held: the counts find the two ranks
    numpy's percentile interpolates between (percentile_plan), and lerp gives
    the same float it gives.  Memory: one bucket's value range, as cells,
    HIST_CHUNK_CELLS at a time.  (bucket ids, values), or None where this does
    not apply (an expression, a float channel, a range of more than
    HIST_MAX_CELLS values, or blocks spanning more buckets than samples)."""
    if not isinstance(expr, P.ChannelRef) or expr.dtype not in HIST_TYPES or not expr.scale:
        return None
    rows = np.asarray(rows, np.int64)
    if len(rows) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    lo_t = np.maximum(index.t_first[rows], start)
    hi_t = np.minimum(index.t_last[rows], end - 1)
    stats = take_entries(index.entries, rows, expr.index)
    vmin, vmax = stats["min"].astype(np.int64), stats["max"].astype(np.int64)
    if bucket_ns:
        first, last = lo_t // bucket_ns, hi_t // bucket_ns
        span = last - first + 1
        if (span > index.n_samples[rows] + 1).any():
            return None
        at = np.repeat(np.arange(len(rows)), span)
        bucket = np.repeat(first, span) + (np.arange(int(span.sum())) -
                                           np.repeat(np.cumsum(span) - span, span))
        order = np.argsort(bucket, kind="stable")
        at, bucket = at[order], bucket[order]
        starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        ids = bucket[starts]
        base = np.minimum.reduceat(vmin[at], starts)
        cells = np.maximum.reduceat(vmax[at], starts) - base + 1
        if (cells > HIST_MAX_CELLS).any():
            return None
        return _bucket_histograms(tier, index, rows, programs, expr, p, start, end, bucket_ns,
                                  at, ids, starts, base, cells, limit, what)
    base = int(vmin.min())
    cells = int(vmax.max()) - base + 1
    if cells > HIST_MAX_CELLS:
        return None
    value = sampled_percentile(tier, index, rows, programs, expr, p, start, end, base, cells)
    if value is not None:
        return np.zeros(1, np.int64), np.array([value])
    counts = _window_counts(tier, index, rows, programs, expr, start, end, base, cells)
    has, values = _cell_percentiles(counts, np.zeros(1, np.int64), np.array([cells]),
                                    np.array([base]), p, expr.scale)
    return np.zeros(int(has.sum()), np.int64), values


def _window_counts(tier, index, rows, programs, expr, start, end, base, cells, groups=0):
    """Counts of the channel's raw values base + c in [start, end) of blocks
    ``rows``, in cell c; with ``groups``, one row of cells per group, group g
    counting every groups-th block from the g-th (sub-samples spread over
    the whole time range)."""
    if groups:
        n_tasks = groups
    else:
        n_tasks = max(1, min(tier.threads() * 2, HIST_CHUNK_CELLS // cells, len(rows)))
    counts = np.zeros(n_tasks * cells, np.int64)
    for layout in build_layouts(index.select(rows), programs.slot_indices):
        blocks = np.arange(len(layout.blocks), dtype=np.int64)
        if groups:
            pieces = [blocks[g::groups] for g in range(groups)]
        else:
            pieces = np.array_split(blocks, min(n_tasks, len(blocks)))
        k = len(pieces)
        entries = np.concatenate(pieces)
        inside = (index.t_first[rows[layout.blocks]] >= start) & \
            (index.t_last[rows[layout.blocks]] < end)
        tasks = Tasks(np.r_[0, np.cumsum([len(x) for x in pieces])].astype(np.int64), entries,
                      ~inside[entries], np.full(k, start, np.int64), np.full(k, end, np.int64),
                      np.full(k, base, np.int64), np.arange(k, dtype=np.int64) * cells,
                      np.full(k, cells, np.int64))
        tier.histograms(layout, programs, _value_slot(programs, expr), tasks, counts)
    counts = counts.reshape(n_tasks, cells)
    return counts if groups else counts.sum(0)


# --- a percentile checked with one count ------------------------------------------------

SAMPLED_MIN_BLOCKS = 256   # below this, one histogram pass is cheap: no sample first
SAMPLE_EVERY = 16          # the sample: every 16th block of the window
SAMPLE_GROUPS = 16         # ... in 16 interleaved groups, whose spread gives its error
SAMPLE_MARGIN = 4          # standard errors of the sample's share kept on either side
SAMPLE_MAX_CELLS = 1 << 14  # its groups' cells: 2 MB at most (and a ladder of 8 raw values
                            # rarely holds the ranks of a channel that ranges wider)


def sampled_percentile(tier, index, rows, programs, expr, p, start, end, base, cells):
    """The p-th percentile of an integer channel's values in [start, end),
    by a sample and one counting pass, or None (then the full histogram
    answers).  Counting every value into its cell costs a scattered
    increment a value; the count kernel's compares over the decoder's
    running sums cost a fraction of that.  So: histogram every
    SAMPLE_EVERY-th block; if the wanted rank, give or take the sample's
    error, falls within LADDER_STEPS neighbouring raw values (sensor data
    quantised by its ADC has many ties), count over every block how many
    values are at least each of them (tiers' ladder) and read the two ranks
    numpy interpolates between off those counts, if both fall on one of
    them.  The counts are exact, so a sample that misled costs a pass, never
    a wrong answer."""
    if len(rows) < SAMPLED_MIN_BLOCKS or cells > SAMPLE_MAX_CELLS or programs.has_pred:
        return None
    groups = _window_counts(tier, index, rows[::SAMPLE_EVERY], programs, expr, start, end,
                            base, cells, SAMPLE_GROUPS)
    cell = _ladder_start(groups, p / 100 if expr.scale > 0 else 1 - p / 100)
    if cell is None:
        return None
    first = base + cell
    inside = (index.t_first[rows] >= start) & (index.t_last[rows] < end)
    at_least = np.zeros(LADDER_STEPS + 1, np.int64)
    for layout in build_layouts(index.select(rows[inside]), programs.slot_indices):
        at_least += tier.ladder(layout, np.arange(len(layout.blocks), dtype=np.int64),
                                expr.dtype, first)
    cut = _window_counts(tier, index, rows[~inside], programs, expr, start, end, base, cells)
    tail = np.r_[np.cumsum(cut[::-1])[::-1], 0]              # tail[c]: cut values at c or more
    at_least += tail[np.minimum(cell + np.arange(LADDER_STEPS + 1), cells)]
    n = int(index.n_samples[rows[inside]].sum() + cut.sum())
    below = n - at_least                                     # below[s]: values under first + s
    a, b, gamma = (x[0] for x in percentile_plan(np.array([n]), p))
    if expr.scale < 0:             # ascending values are descending raw values
        a, b = n - 1 - a, n - 1 - b
    steps = np.searchsorted(below, [a, b], side="right") - 1
    if not ((steps >= 0) & (steps < LADDER_STEPS)).all():
        return None
    value = (first + steps).astype(np.float64) * expr.scale    # as _cell_percentiles computes it
    return float(lerp(value[0], value[1], gamma))


def _ladder_start(groups: np.ndarray, q: float):
    """The first of LADDER_STEPS cells that hold fraction q of the values,
    give or take SAMPLE_MARGIN standard errors of the sample (rows: groups,
    columns: cells), or None.  The error is the spread of the groups'
    shares below the cell holding q: blocks are stretches of a time series,
    not independent values, so a random sample's binomial error would
    understate it; it is the floor."""
    sizes = groups.sum(1)
    groups, sizes = groups[sizes > 0], sizes[sizes > 0]
    m = int(sizes.sum())
    if len(sizes) < 2:
        return None
    cum = np.cumsum(groups.sum(0))
    cell = int(np.searchsorted(cum, q * (m - 1), side="right"))
    shares = groups[:, :cell].sum(1) / sizes
    spread = np.std(shares, ddof=1) / np.sqrt(len(sizes))
    error = max(spread, np.sqrt(q * (1 - q) / m)) * SAMPLE_MARGIN + 1 / m
    lo, hi = np.searchsorted(cum, [max(q - error, 0) * (m - 1), min(q + error, 1) * (m - 1)],
                             side="right")
    if hi - lo >= LADDER_STEPS:
        return None
    return int(max(0, lo - (LADDER_STEPS - 1 - (hi - lo)) // 2))


def _value_slot(programs, expr) -> int:
    return int(np.flatnonzero(programs.slot_indices == expr.index)[0])


def _bucket_histograms(tier, index, rows, programs, expr, p, start, end, bucket_ns, at, ids,
                       starts, base, cells, limit, what):
    """histogram_percentiles by buckets: (block, bucket) entries ``at`` (sorted
    by bucket; group g starts at starts[g]), buckets counted a chunk of about
    HIST_CHUNK_CELLS cells at a time."""
    ends = np.r_[starts[1:], len(at)]
    chunk_of = (np.cumsum(cells) - 1) // HIST_CHUNK_CELLS
    out_ids, out_values, n_rows = [], [], 0
    slot = _value_slot(programs, expr)
    for chunk in np.split(np.arange(len(ids)), np.flatnonzero(np.diff(chunk_of)) + 1):
        off = np.cumsum(cells[chunk]) - cells[chunk]
        counts = np.zeros(int(cells[chunk].sum()), np.int64)
        entries = np.concatenate([np.arange(starts[g], ends[g]) for g in chunk])
        group = np.repeat(np.arange(len(chunk)), ends[chunk] - starts[chunk])
        blocks_used = np.unique(at[entries])
        for layout in build_layouts(index.select(rows[blocks_used]), programs.slot_indices):
            mine = np.isin(at[entries], blocks_used[layout.blocks])
            e_at, e_group = at[entries][mine], group[mine]
            if len(e_at) == 0:
                continue
            local = np.searchsorted(blocks_used[layout.blocks], e_at)   # layout.blocks ascend
            task_starts = np.flatnonzero(np.r_[True, e_group[1:] != e_group[:-1]])
            g = e_group[task_starts]
            b_ids = ids[chunk][g]
            t_lo = np.maximum(b_ids * bucket_ns, start)
            t_hi = np.minimum((b_ids + 1) * bucket_ns, end)
            task_of = np.repeat(np.arange(len(g)), np.diff(np.r_[task_starts, len(e_at)]))
            r = rows[e_at]
            need_time = (index.t_first[r] < t_lo[task_of]) | (index.t_last[r] >= t_hi[task_of])
            tasks = Tasks(np.r_[task_starts, len(e_at)].astype(np.int64), local.astype(np.int64),
                          need_time, t_lo, t_hi, base[chunk][g], off[g], cells[chunk][g])
            tier.histograms(layout, programs, slot, tasks, counts)
        has, values = _cell_percentiles(counts, off, cells[chunk], base[chunk], p, expr.scale)
        n_rows += int(has.sum())
        if n_rows > limit:
            raise limits.exceeded(limit, what)
        out_ids.append(ids[chunk][has])
        out_values.append(values)
    return np.concatenate(out_ids), np.concatenate(out_values)


def _cell_percentiles(counts, off, length, base, p, scale):
    """(groups with values, their p-th percentile): group g counts raw value
    base[g] + c in counts[off[g] + c]; values are raw × scale, as the VM
    computes them."""
    cum = np.cumsum(counts)
    before = np.where(off > 0, cum[np.maximum(off - 1, 0)], 0)
    n = cum[off + length - 1] - before
    has = n > 0
    n, before, off, base = n[has], before[has], off[has], base[has]
    a, b, gamma = percentile_plan(n, p)
    if scale < 0:            # ascending values are descending raw values
        a, b = n - 1 - a, n - 1 - b

    def value(rank):
        raw = base + (np.searchsorted(cum, before + rank, side="right") - off)
        return raw.astype(np.float64) * scale
    return has, lerp(value(a), value(b), gamma)


def bucket_percentiles(source: ValueSource, p: float, bucket_ns: int, limit: int, what: str):
    """(bucket ids, p-th percentile per bucket) for buckets with values."""
    big = _big_buckets(source, bucket_ns)
    rows = RowSink(limit, what)
    pending_id, pending = None, []
    for t, v in source.samples(skip=_inside(source, big, bucket_ns)):
        ids = t // bucket_ns
        if len(big):
            keep = ~np.isin(ids, big)
            ids, v = ids[keep], v[keep]
        lead = np.searchsorted(ids, pending_id, side="right") if pending_id is not None else 0
        pending.append(v[:lead])
        if lead == len(ids):
            continue
        if pending_id is not None:          # a later bucket started: the pending one is done
            rows.add(*grouped_percentiles(np.full(sum(map(len, pending)), pending_id),
                                          np.concatenate(pending), p))
        last = np.searchsorted(ids, ids[-1])
        if last > lead:
            rows.add(*grouped_percentiles(ids[lead:last], v[lead:last], p))
        pending_id, pending = ids[-1], [v[last:]]
        rows.check(open_bucket=True)
    if pending_id is not None:
        rows.add(*grouped_percentiles(np.full(sum(map(len, pending)), pending_id),
                                      np.concatenate(pending), p))
    for bucket in big.tolist():
        n, value = _select(source.restricted(bucket * bucket_ns, (bucket + 1) * bucket_ns), p)
        if n:
            rows.add(np.array([bucket], np.int64), np.array([value]))
    return rows.result()


def _inside(source: ValueSource, big: np.ndarray, bucket_ns: int) -> np.ndarray:
    """Blocks that lie inside one of the ``big`` buckets (the passes read them)."""
    first = source.index.t_first[source.rows] // bucket_ns
    return (first == source.index.t_last[source.rows] // bucket_ns) & np.isin(first, big)


def _big_buckets(source: ValueSource, bucket_ns: int) -> np.ndarray:
    """Buckets that might hold more than GATHER_LIMIT values: those the blocks
    overlapping them have more samples than that.  (Few: such a bucket
    covers whole blocks.)"""
    index, rows = source.index, source.rows
    if len(rows) == 0 or source.upper_count() <= GATHER_LIMIT:
        return np.zeros(0, np.int64)
    first = np.maximum(index.t_first[rows], source.start) // bucket_ns
    last = np.minimum(index.t_last[rows], source.end - 1) // bucket_ns
    points = np.unique(np.concatenate([first, last + 1]))
    delta = np.zeros(len(points), np.int64)
    np.add.at(delta, np.searchsorted(points, first), index.n_samples[rows])
    np.add.at(delta, np.searchsorted(points, last + 1), -index.n_samples[rows])
    over = np.flatnonzero(np.cumsum(delta)[:-1] > GATHER_LIMIT)
    return np.concatenate([np.zeros(0, np.int64)] +
                          [np.arange(points[i], points[i + 1], dtype=np.int64) for i in over])


class RowSink:
    """Result rows (bucket id, value) gathered in numpy pieces, held to the row limit."""

    def __init__(self, limit: int, what: str):
        self.limit, self.what = limit, what
        self.ids, self.values, self.rows = [], [], 0

    def add(self, ids, values) -> None:
        self.rows += len(ids)
        self.check()
        self.ids.append(ids)
        self.values.append(np.asarray(values, np.float64))

    def check(self, open_bucket: bool = False) -> None:
        if self.rows + open_bucket > self.limit:
            raise limits.exceeded(self.limit, self.what)

    def result(self):
        if not self.ids:
            return np.zeros(0, np.int64), np.zeros(0)
        ids, values = np.concatenate(self.ids), np.concatenate(self.values)
        order = np.argsort(ids, kind="stable")      # big buckets were answered last
        return ids[order], values[order]


# --- top N ------------------------------------------------------------------------------

class TopN:
    """The best ``n`` samples so far: largest value, then oldest, then first
    appended (``pos``).  Holds at most about 2n + one block."""

    def __init__(self, n: int):
        self.n = n
        self.parts: list = []
        self.size = 0
        self.threshold = -np.inf      # the n-th best value once n are held (else -inf)

    def add(self, v, t, pos) -> None:
        if len(v) > self.n:           # a block's own best n first
            keep = best(v, t, pos, self.n)
            v, t, pos = v[keep], t[keep], pos[keep]
        self.parts.append((v, t, pos))
        self.size += len(v)
        # a small n is compacted after every block, so the threshold (and the
        # decision to stop) is always current; a big one once it has doubled
        if self.size >= max(2 * self.n, 2) or (self.size >= self.n and self.n <= 4096):
            self._compact()

    def _compact(self) -> None:
        v, t, pos = (np.concatenate(c) for c in zip(*self.parts))
        keep = best(v, t, pos, self.n)
        self.parts, self.size = [(v[keep], t[keep], pos[keep])], len(keep)
        if len(keep) >= self.n:
            self.threshold = float(v[keep].min())

    def result(self):
        """(times, values), best first."""
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0)
        v, t, pos = (np.concatenate(c) for c in zip(*self.parts))
        order = np.lexsort((pos, t, -v))[:self.n]
        return t[order], v[order]


def best(v, t, pos, n) -> np.ndarray:
    """Indices of the best n: ranks by −v, then t, then pos, as a stable
    lexsort would — but a partition, then a sort of the ties at the cut only."""
    if len(v) <= n:
        return np.arange(len(v))
    neg = -v
    cut = np.partition(neg, n - 1)[n - 1]
    better, ties = np.flatnonzero(neg < cut), np.flatnonzero(neg == cut)
    need = n - len(better)
    if len(ties) > need:
        ties = ties[np.lexsort((pos[ties], t[ties]))[:need]]
    return np.concatenate([better, ties])


TOP_HEAP_MAX = 1024      # n up to which top N keeps its best in one sorted array
FIRST_BATCH = 8          # blocks decoded in the first step of top N; each step doubles
KEPT_LAYOUT_STEPS = 4    # steps of top N whose layout plans are kept (8 + 16 + 32 + 64 blocks)


def run_top(cache, q: P.TopQuery, text: str, engine: str | None = None,
            max_rows: int | None = None) -> Result:
    limit = limits.max_rows(max_rows)
    index = cache.blocks(q.stream, q.time.start_ns, q.time.end_ns, lazy=True)
    start, end = q.time.bounds()
    programs = compile_query(q.where, q.expr)
    upper = derived(index, ("upper bounds", q.expr), lambda: upper_bounds(q.expr, index))
    n = min(q.n, limit + 1)
    if q.where is None:     # every block, ranked as the last query over them was (derived.py)
        rows = derived(index, ("every row",), lambda: np.arange(len(index)))
        batches = _by_bound(rows, upper, index, q.expr)
    else:
        rows = np.flatnonzero(classify(q.where, index) != NONE)
        batches = _by_bound(rows, upper)
    if n > TOP_HEAP_MAX:
        return _run_top_big(index, q, text, engine, limit, start, end, programs, rows, upper, n)
    tier = tiers.choose(engine, lambda: tiers.scan_values(index, rows[:FIRST_BATCH],
                                                          programs.channels))
    best = (np.empty(n), np.empty(n, np.int64), np.empty(n, np.int64), np.zeros(1, np.int64))
    decoded = 0
    for step, batch in enumerate(batches):
        if best[3][0] == n and best[0][n - 1] > upper[batch[0]]:
            break                       # no sample left can enter the top n
        # the batch's blocks in one layout (copied into one buffer if they lie
        # in several: cheaper than a layout per segment), best bound first; the
        # same blocks come in the same batches while the blocks are the same,
        # so where their columns lie is kept (the first steps': they are
        # small), and so are the first step's bytes where they had to be
        # copied from several buffers (FIRST_BATCH blocks, ~100 KB: a query
        # asked again would copy them again, ~4 µs a block, a fifth of it)
        plan = derived(index, ("top layout", q.where, q.expr, step),
                       lambda: few_blocks_plan(index, batch, programs.slot_indices),
                       keep=lambda _: step < KEPT_LAYOUT_STEPS)
        layout = derived(index, ("top layout bytes", q.where, q.expr),
                         lambda: materialise(plan, index), size=lambda kept: kept.buf.nbytes) \
            if plan.buffer_no == POOLED and step == 0 else materialise(plan, index)
        decoded += tier.top_blocks(layout, np.arange(len(batch), dtype=np.int64), upper[batch],
                                   batch.astype(np.int64) << BITS, programs, start, end, best)
    held = int(best[3][0])
    times, values = best[1][:held].copy(), best[0][:held].copy()
    if held > limit:
        raise limits.exceeded(limit, f"the result of {text!r}")
    scan = ScanStats(blocks_total=len(index), decoded=decoded, skipped=len(index) - decoded,
                     engine=tier.name)
    return Result("table", text, columns={"time": times, "value": values},
                  units={"time": TIME_UNIT, "value": q.unit}, scan=scan)


def upper_bounds(expr, index) -> np.ndarray:
    """No value of ``expr`` in a block exceeds this: an integer channel's
    largest value straight from the statistics, else value_bounds."""
    if isinstance(expr, P.ChannelRef) and expr.dtype.startswith("int") and expr.scale:
        stats = index.entries[:, expr.index]["max" if expr.scale > 0 else "min"]
        return stats.astype(np.float64) * expr.scale
    hi = value_bounds(expr, index)[1]
    return np.where(np.isnan(hi), np.inf, hi)     # -inf widened by a hair: no bound


def _by_bound(rows, upper, index=None, expr=None):
    """``rows`` in batches of FIRST_BATCH, then twice as many each time, in
    descending order of ``upper`` (ties: the older block first).  Only the
    first few hundred are sorted at first (RANKED_FIRST): top N usually stops
    early, and the rest are sorted only if it goes on.  With ``index`` and
    ``expr`` (``rows`` being every block), both orders are kept for the next
    query over the same blocks (derived.py)."""
    if index is None:
        first = _ranked_first(rows, upper)
        rest = lambda: _ranked_rest(rows, upper, first)          # noqa: E731
    else:
        first = derived(index, ("ranked first", expr), lambda: _ranked_first(rows, upper))
        rest = lambda: derived(index, ("ranked rest", expr),     # noqa: E731
                               lambda: _ranked_rest(rows, upper, first))
    at, size = 0, FIRST_BATCH
    while at < len(first):
        yield first[at:at + size]
        at, size = at + size, size * 2
    if len(first) == len(rows):
        return
    ordered, at = rest(), 0
    while at < len(ordered):
        yield ordered[at:at + size]
        at, size = at + size, size * 2


RANKED_FIRST = 32 * FIRST_BATCH


def _ranked_first(rows, upper) -> np.ndarray:
    """The rows whose bounds reach the RANKED_FIRST-th largest, best first."""
    bounds = upper[rows]
    if RANKED_FIRST < len(rows):
        cut = len(rows) - RANKED_FIRST
        first = np.flatnonzero(bounds >= np.partition(bounds, cut)[cut])
    else:
        first = np.arange(len(rows))
    return rows[first[np.argsort(-bounds[first], kind="stable")]]


def _ranked_rest(rows, upper, first) -> np.ndarray:
    """The rows not in ``first``, best first."""
    rest = np.ones(len(upper), bool)
    rest[first] = False
    rest = rows[rest[rows]]
    return rest[np.argsort(-upper[rest], kind="stable")]


def _run_top_big(index, q, text, engine, limit, start, end, programs, rows, upper, n):
    """top N for a big N: blocks by bound, READ_AHEAD_BLOCKS at a time, into TopN."""
    rows = rows[np.argsort(-upper[rows], kind="stable")]    # most promising first
    tier = tiers.choose(engine, lambda: tiers.scan_values(index, rows[:READ_AHEAD_BLOCKS],
                                                          programs.channels))
    top, decoded = TopN(n), 0
    for lo in range(0, len(rows), READ_AHEAD_BLOCKS):
        chunk = rows[lo:lo + READ_AHEAD_BLOCKS]
        if top.threshold > upper[chunk[0]]:
            break
        reader = BlockReader(tier, index, programs, rows=chunk)
        for b in chunk:
            if top.threshold > upper[b]:    # no sample left can enter the top n
                break
            t, v, _ = reader.gather(b, start, end)
            ok = np.flatnonzero(~np.isnan(v))
            top.add(v[ok], t[ok], (int(b) << BITS) + ok)
            decoded += 1
    times, values = top.result()
    if len(times) > limit:
        raise limits.exceeded(limit, f"the result of {text!r}")
    scan = ScanStats(blocks_total=len(index), decoded=decoded, skipped=len(index) - decoded,
                     engine=tier.name)
    return Result("table", text, columns={"time": times, "value": values},
                  units={"time": TIME_UNIT, "value": q.unit}, scan=scan)
