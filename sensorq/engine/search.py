"""Searches: ``find first|last``, ``find episodes``, ``top`` and ``newest``.

They walk blocks in time order (or backwards) and stop as soon as they have
their answer; blocks the zone maps rule out are never decoded.

Episodes: a maximal run of consecutive samples (inside the window) where the
predicate holds.  It starts at its first sample; it ends at the time of the
first sample after it, or at its own last sample when the window or the data
ends, or when the next sample comes after a gap longer than the gap limit.
Its duration is end − start; ``for >= D`` keeps episodes lasting at least D.
"""
from __future__ import annotations

import numpy as np

from ..query import plan as P
from ..result import TIME_UNIT, Result, ScanStats
from . import limits, tiers
from .layout import (POOLED, LayoutPlan, build_layouts, few_blocks_plan, materialise,
                     plan_layouts)
from .program import compile_query
from .zonemaps import ALL, NONE, channel_stats, classify


class BlockReader:
    """Decodes single blocks of an index for one pair of programs."""

    def __init__(self, tier, index, programs, extra_channels=(), rows=None):
        """``rows``: the blocks that may be read (all when None); only their
        layouts are built, so blocks a search skips cost nothing.  ``tier``
        decodes them (tiers.py)."""
        self.tier = tier
        self.programs = programs
        slots = list(programs.slot_indices) + [c for c in extra_channels
                                               if c not in set(programs.slot_indices)]
        self.slot_channels = np.array(slots, np.int64)
        self.pred_code, self.val_code, self.consts, self.depth = programs.kernel_args()
        scales = {c.index: c.scale for c in programs.channels}
        self.scales = np.array([scales.get(int(c), 1.0) for c in slots], np.float64)
        rows = np.arange(len(index)) if rows is None else np.asarray(rows, np.int64)
        self.where = {}
        for layout in build_layouts(index.select(rows), self.slot_channels):
            for local, k in enumerate(layout.blocks):
                self.where[int(rows[k])] = (layout, local)

    def gather(self, b, start, end):
        """Matching samples of block b in [start, end): (times, values, raw rows)."""
        layout, local = self.where[int(b)]
        return self.tier.gather(layout, local, self, start, end)

    def evaluate(self, b):
        """All samples of block b: (times, mask, values)."""
        layout, local = self.where[int(b)]
        return self.tier.evaluate(layout, local, self)


def _rows_table(stream_channels, t, raw, slot_channels):
    columns, units = {"time": t}, {"time": TIME_UNIT}
    slot_of = {int(c): k for k, c in enumerate(slot_channels)}
    for c, ch in enumerate(stream_channels):   # in the stream's channel order
        columns[ch.name] = raw[slot_of[c]] * (ch.scale or 1.0)
        units[ch.name] = ch.unit
    return columns, units


READ_AHEAD_BLOCKS = 32   # blocks a search lays out at a time (it usually stops early)


def _scan_matches(cache, q, n, backwards, engine, limit, what="the result"):
    """The first (or last) n matching samples, all channels; more than
    ``limit`` of them is a RowLimitError (at most limit + 1 are held)."""
    n = min(n, limit + 1)
    index = cache.blocks(q.stream, q.time.start_ns, q.time.end_ns, lazy=True)
    start, end = q.time.bounds()
    stream = cache.streams[q.stream]
    programs = compile_query(q.where, None)
    all_channels = list(range(len(stream.channels)))
    classes = classify(q.where, index)
    scan = ScanStats(blocks_total=len(index))
    candidates = np.flatnonzero(classes != NONE)
    scan.skipped = len(index) - len(candidates)
    if backwards:
        candidates = candidates[::-1]
    found_t, found_raw, total = [], [], 0
    # the first blocks usually hold the answer: price the scan by them
    tier = tiers.choose(engine, lambda: tiers.scan_values(index, candidates[:READ_AHEAD_BLOCKS],
                                                          all_channels))
    scan.engine = tier.name
    slot_channels = BlockReader(tier, index, programs, all_channels, rows=[]).slot_channels
    for lo in range(0, len(candidates), READ_AHEAD_BLOCKS):
        chunk = candidates[lo:lo + READ_AHEAD_BLOCKS]
        reader = BlockReader(tier, index, programs, all_channels, rows=chunk)
        for b in chunk:
            t, _, raw = reader.gather(b, start, end)
            scan.decoded += 1
            if backwards:
                t, raw = t[::-1], raw[:, ::-1]
            found_t.append(t[:n - total])
            found_raw.append(raw[:, :n - total])
            total += len(found_t[-1])
            if total >= n:
                break
        if total >= n:
            break
    t = np.concatenate(found_t) if found_t else np.zeros(0, np.int64)
    raw = np.concatenate(found_raw, 1) if found_raw else np.zeros((len(slot_channels), 0))
    if backwards:
        t, raw = t[::-1], raw[:, ::-1]
    if len(t) > limit:
        raise limits.exceeded(limit, what)
    columns, units = _rows_table(stream.channels, t, raw, slot_channels)
    return Result("table", "", columns=columns, units=units, scan=scan)


def run_find(cache, q: P.FindQuery, text: str, engine: str | None = None,
             max_rows: int | None = None) -> Result:
    result = _scan_matches(cache, q, q.n, q.direction == "last", engine,
                           limits.max_rows(max_rows), f"the result of {text!r}")
    result.query = text
    return result


def run_newest(cache, q: P.NewestQuery, text: str, engine: str | None = None,
               max_rows: int | None = None) -> Result:
    where = q.where if q.where is not None else P.BoolConst(True)
    find = P.FindQuery(q.stream, "last", q.n, where, q.time, q.now)
    result = _scan_matches(cache, find, q.n, True, engine, limits.max_rows(max_rows),
                           f"the result of {text!r}")
    result.query = text
    return result


# --- episodes ------------------------------------------------------------------------

class EpisodeRows:
    """Episodes (start, end, peak) as they close, in numpy chunks (no Python
    object per row), held to the row limit."""
    CHUNK = 1 << 16

    def __init__(self, min_ns: int, limit: int, what: str):
        self.min_ns, self.limit, self.what = min_ns, limit, what
        self.done: list = []
        self.buf = (np.empty(self.CHUNK, np.int64), np.empty(self.CHUNK, np.int64),
                    np.empty(self.CHUNK))
        self.used = self.rows = 0

    def add(self, starts, ends, peaks) -> None:
        """Episodes in time order; those shorter than ``for`` are dropped here."""
        long = (ends - starts) >= self.min_ns
        starts, ends, peaks = starts[long], ends[long], peaks[long]
        n = len(starts)
        self.rows += n
        if self.rows > self.limit:
            raise limits.exceeded(self.limit, self.what)
        if self.used + n > self.CHUNK:
            self._flush()
        if n > self.CHUNK:
            self.done.append((starts, ends, peaks))
            return
        for column, values in zip(self.buf, (starts, ends, peaks)):
            column[self.used:self.used + n] = values
        self.used += n

    def _flush(self) -> None:
        if self.used:
            self.done.append(tuple(column[:self.used].copy() for column in self.buf))
            self.used = 0

    def columns(self):
        """(starts, ends, peaks) of every episode kept."""
        self._flush()
        if not self.done:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return tuple(np.concatenate(c) for c in zip(*self.done))


class EpisodeBuilder:
    """Stitches runs across blocks: an open run is carried from one block to the next."""

    def __init__(self, gap_ns: int, rows: EpisodeRows):
        self.gap = gap_ns
        self.open = False
        self.start = self.last_t = 0
        self.peak = -np.inf
        self.rows = rows

    def close(self, end):
        if self.open:
            self.rows.add(np.array([self.start], np.int64), np.array([end], np.int64),
                          np.array([self.peak], np.float64))
            self.open = False

    def gap_break(self, t_next) -> bool:
        return self.gap > 0 and t_next - self.last_t > self.gap

    def unmatched_sample(self, t):
        """A sample where the predicate is false (or a skipped block's first sample)."""
        if self.open:
            self.close(self.last_t if self.gap_break(t) else t)

    def whole_block(self, t_first, t_last, peak):
        """A block where every sample matches (no gap limit)."""
        if not self.open:
            self.open, self.start, self.peak = True, t_first, -np.inf
        self.peak = max(self.peak, peak)
        self.last_t = t_last

    def samples(self, t, mask, values):
        """One decoded block: runs are maximal stretches of matching samples
        not split by a gap longer than the limit; all but a run reaching the
        block's end close here, in one vectorised step."""
        n = len(t)
        if n == 0:
            return
        broken = np.zeros(n, bool)
        if self.gap > 0:
            broken[1:] = np.diff(t) > self.gap
        carried = self.open and bool(mask[0]) and not self.gap_break(t[0])
        if self.open and not carried:
            self.unmatched_sample(t[0])
        continues = np.zeros(n, bool)
        continues[1:] = mask[1:] & mask[:-1] & ~broken[1:]
        run_starts = np.flatnonzero(mask & ~continues)
        run_ends = np.flatnonzero(mask & ~np.r_[continues[1:], False])
        self.last_t = int(t[-1])
        if len(run_starts) == 0:
            return
        starts, peaks = t[run_starts], _run_peaks(values, run_starts, run_ends)
        if carried:      # the first run continues the open episode
            starts[0], peaks[0] = self.start, np.fmax(self.peak, peaks[0])
        after = np.minimum(run_ends + 1, n - 1)
        ends = np.where(broken[after], t[run_ends], t[after])
        closed = run_ends < n - 1
        self.rows.add(starts[closed], ends[closed], peaks[closed])
        self.open = not closed[-1]
        if self.open:
            self.start, self.peak = int(starts[-1]), peaks[-1]


def _run_peaks(values, run_starts, run_ends) -> np.ndarray:
    """np.fmax over values[s:e + 1] of each run (NaN skipped): one reduceat
    over the runs and the stretches between them, every other one kept."""
    edges = np.ravel(np.column_stack([run_starts, run_ends + 1]))
    return np.fmax.reduceat(np.append(values, np.nan), edges)[::2]


EPISODE_CHUNK_SAMPLES = 1 << 16    # decoded samples held at a time (1 MB)


def _episodes_in_kernels(tier, index, programs, q, start, end, entries, from_stats, peaks,
                         builder):
    """The builder's work over ``entries`` (time order) in the kernels: a chunk
    of blocks of at most about EPISODE_CHUNK_SAMPLES samples is decoded into
    flat arrays (kernels.evaluate_into, blocks in parallel), then its runs are
    stitched in one call (kernels.episode_scan); the open episode is carried
    from chunk to chunk in the builder.  The decoded blocks' layouts are
    planned once and each chunk takes its rows of them (a plan a chunk was
    ~0.3 ms of Python, half of `find episodes` over the benchmark's shocks)."""
    if len(entries) == 0:
        return
    previous = np.r_[-1, entries[:-1]]
    gapped = entries > previous + 1
    break_t = np.where(gapped, index.t_first[np.minimum(previous + 1, len(index) - 1)], 0)
    break_last = np.where(gapped, index.t_last[np.maximum(entries - 1, 0)], 0)
    kind = from_stats[entries].astype(np.int64)
    length = np.where(kind == 0, index.n_samples[entries], 0)
    begins = np.cumsum(length) - length          # each entry's first sample, over all chunks
    chunk = begins // EPISODE_CHUNK_SAMPLES
    state = np.array([builder.open, builder.start, builder.last_t], np.int64)
    peak = np.array([builder.peak], np.float64)
    parts = np.split(np.arange(len(entries)), np.flatnonzero(np.diff(chunk)) + 1)
    room = max(int(length[part].sum()) for part in parts)
    held = np.empty(room, np.int64), np.empty(room, np.bool_), np.empty(room)   # reused
    decoded = index.select(entries[kind == 0])
    plans = plan_layouts(decoded, programs.slot_indices)
    decoded_before = np.cumsum(kind == 0) - (kind == 0)    # decoded entries before each entry
    decoded_begins = begins[kind == 0]
    for part in parts:
        offset = begins[part] - begins[part[0]]
        total = int(length[part].sum())
        samples = tuple(column[:total] for column in held)
        first, last = decoded_before[part[0]], decoded_before[part[-1]] + (kind[part[-1]] == 0)
        for layout in _chunk_layouts(plans, decoded, first, last, programs.slot_indices):
            dest = decoded_begins[layout.blocks] - begins[part[0]]
            tier.evaluate_into(layout, programs, dest, *samples)
        room = total + len(part) + 2         # an episode closes at most once per sample or block
        out = np.empty(room, np.int64), np.empty(room, np.int64), np.empty(room)
        e = entries[part]
        n = tier.episodes(samples, start, end, q.max_gap_ns or 0,
                          (kind[part], offset, length[part], gapped[part], break_t[part],
                           break_last[part], index.t_first[e], index.t_last[e], peaks[e]),
                          state, peak, out)
        builder.rows.add(out[0][:n], out[1][:n], out[2][:n])
    builder.open, builder.start, builder.last_t = bool(state[0]), int(state[1]), int(state[2])
    builder.peak = float(peak[0])


def _chunk_layouts(plans, index, first, last, slot_channels):
    """The layouts of blocks first..last - 1 of ``index`` from its ``plans``:
    rows of an in-place plan (its blocks are in index order), pooled blocks
    copied for this chunk alone (so a chunk holds its own bytes only)."""
    for plan in plans:
        lo, hi = np.searchsorted(plan.blocks, [first, last])
        if hi == lo:
            continue
        if plan.buffer_no == POOLED:
            yield materialise(few_blocks_plan(index, plan.blocks[lo:hi], slot_channels), index)
        else:
            yield materialise(LayoutPlan(plan.buffer_no, plan.blocks[lo:hi], plan.lay_t[lo:hi],
                                         plan.lay_c[lo:hi]), index)


def run_episodes(cache, q: P.EpisodesQuery, text: str, engine: str | None = None,
                 max_rows: int | None = None) -> Result:
    index = cache.blocks(q.stream, q.time.start_ns, q.time.end_ns, lazy=True)
    start, end = q.time.bounds()
    programs = compile_query(q.where, q.peak)
    classes = classify(q.where, index)
    inside = (index.t_first >= start) & (index.t_last < end)
    peak_from_stats = isinstance(q.peak, P.ChannelRef) and not q.max_gap_ns
    from_stats = (classes == ALL) & inside & peak_from_stats
    rows = np.flatnonzero((classes != NONE) & ~from_stats | ~inside)
    tier = tiers.choose(engine, lambda: tiers.scan_values(index, rows, programs.channels))
    episodes = EpisodeRows(q.min_duration_ns, limits.max_rows(max_rows), f"the result of {text!r}")
    builder = EpisodeBuilder(q.max_gap_ns or 0, episodes)
    scan = ScanStats(blocks_total=len(index), engine=tier.name)
    skippable = (classes == NONE) & inside
    scan.skipped = int(skippable.sum())
    entries = np.flatnonzero(~skippable)   # skipped blocks are handled in bulk, between these
    peaks = np.zeros(len(index))
    if peak_from_stats and from_stats.any():   # the largest value: max × scale, or min × scale
        field = "max" if q.peak.scale > 0 else "min"
        peaks[from_stats] = channel_stats(index.select(from_stats), q.peak, field) * q.peak.scale
    scan.from_stats = int(from_stats.sum())
    scan.decoded = len(entries) - scan.from_stats
    if tier.name == "compiled":
        _episodes_in_kernels(tier, index, programs, q, start, end, entries, from_stats, peaks,
                             builder)
    else:
        reader = BlockReader(tier, index, programs, rows=rows)
        previous = -1
        for b in entries:
            if b > previous + 1:   # skipped blocks in between: their first sample ends any run
                builder.unmatched_sample(int(index.t_first[previous + 1]))
                builder.last_t = int(index.t_last[b - 1])
            previous = b
            if from_stats[b]:
                builder.whole_block(int(index.t_first[b]), int(index.t_last[b]), peaks[b])
            else:
                t, mask, values = reader.evaluate(b)
                keep = (t >= start) & (t < end)
                builder.samples(t[keep], mask[keep], values[keep])
    previous = int(entries[-1]) if len(entries) else -1
    if previous < len(index) - 1:
        builder.unmatched_sample(int(index.t_first[previous + 1]))
        builder.last_t = int(index.t_last[-1])
    if builder.open:
        builder.close(builder.last_t)
    starts, ends, peaks = episodes.columns()
    return Result("table", text,
                  columns={"start": starts, "end": ends, "duration": (ends - starts) / 1e9, "peak": peaks},
                  units={"start": TIME_UNIT, "end": TIME_UNIT, "duration": "s", "peak": q.peak_unit},
                  scan=scan)
