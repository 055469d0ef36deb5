"""Which tier scans a query's blocks: the compiled kernels or the interpreter.

Both tiers take the same layouts and programs and give the same answers, bit
for bit.  They differ in what they cost:

- **compiled** (kernels.py): numba, both cores; about 0.5–3 ns per value.
  Its first use in a process costs about 0.5–0.8 s (importing numba and
  loading the kernels a query needs from its disk cache) and about 5 s the
  very first time on a machine (compiling them).
- **interpreted** (interpreter.py): plain numpy, one block at a time; about
  15-45 ns a sample of an integer channel, 0.15 µs of a float channel of
  noise-like values (a dictionary of bit patterns) and ~50 ns more a value of
  a Rice mini-block (split, codec/codes.py SPLIT: a binary search a
  mini-block in the section's one bits; whole codewords, as older caches
  and dictionaries of ENTROPY sections hold them, ~0.2 µs a value), with
  nothing to load or compile.

``auto`` (the default) takes the compiled tier once its kernels are loaded in
this process — they then cost nothing more — and for large scans; it takes
the interpreter for a scan that it would finish in less time than loading the
kernels takes, in a process that has not loaded them.  A scan is priced in
*value-equivalents* (one bit-packed value decoded by the interpreter), from
what it will do: every column value it decodes (a float channel of a compact
stream counts RICE_FLOAT_WEIGHT: its dictionary and Rice mini-blocks cost the
numpy decoder more; a value of an ENTROPY section, tANS-coded, counts
ENTROPY_WEIGHT: about 0.22 µs in the numpy decoder), and for a bucketed aggregate every sample folded into a
bucket and every bucket the decoded blocks span (measured on the development
machine: about 10-40 ns per bit-packed value, 0.15 µs per float of a compact
stream (3.3 µs before the numpy decoder's Rice walk used bytes.find instead
of a per-bit table), 0.3 µs per bucketed sample and 12 µs per bucket;
``avg x by 1ms`` over 600 000 samples took 7.6 s interpreted and 0.3 s
compiled).  Like a JIT's tiering, a process
that keeps running small queries is promoted to the kernels once the
interpreter has done INTERPRET_BUDGET_VALUES in all, or has spent
INTERPRET_BUDGET_SECONDS on its scans, about what loading the kernels costs
(a ski rental: however far the prices above are off for some data, a
process never pays the interpreter more than twice what the kernels would
have cost it, load included).
So a one-off ``sensorq "count … last 10m"`` answers without starting numba,
and a long-lived program pays for numba once, when it has work enough.

``SENSORQ_ENGINE=compiled|interpreted|auto`` (or ``Cache.query(engine=…)``)
chooses for a process or a query; the tests run every query shape both ways.
"""
from __future__ import annotations

import functools
import os
import sys
import time

import numpy as np

from ..codec.codes import ENTROPY, LADDER_STEPS, SPLIT, check_status
from ..errors import QueryError
from . import interpreter as I
from .layout import N_SAMPLES
from .program import COMPARE_CODES

ENGINES = ("auto", "compiled", "interpreted")
INTERPRET_MAX_VALUES = 48 << 20         # one scan: ~0.5 s, below what the kernels' first use costs
INTERPRET_BUDGET_VALUES = 96 << 20      # all scans of a process, before it moves to the kernels
INTERPRET_BUDGET_SECONDS = 0.5          # or the time they took (module docstring)
RICE_FLOAT_WEIGHT = 4                   # a float value of a compact stream (dictionary, some Rice)
ENTROPY_WEIGHT = 6                      # a value of an ENTROPY section (tANS: ~0.22 us interpreted)
BUCKETED_SAMPLE_WEIGHT = 25             # a sample folded into its bucket
BUCKET_WEIGHT = 1000                    # a bucket that decoded blocks span
# The integer type that holds every raw value of a channel's dtype: a count
# compares the sums in it (codec/intcount.py's ``value_bits``).
_LANE_BITS = {"int8": 16, "int16": 16, "int32": 32}
_KERNELS_MODULE = __name__.rpartition(".")[0] + ".kernels"
_interpreted_values = 0                 # what auto has given the interpreter so far
_interpreted_seconds = 0.0              # and the time its scans took (InterpretedTier)


def scan_values(index, rows, channels) -> int:
    """Column values a scan of blocks ``rows`` decodes, timestamps included
    (``channels``: the ChannelRefs, or channel indices, it reads), ENTROPY
    sections weighted: what
    :func:`choose` prices a scan by."""
    return int(index.n_samples[rows].sum()) * (len(channels) + 1) + _entropy_extra(index, rows, channels)


def aggregate_cost(index, rows, channels, bucket_ns) -> int:
    """Value-equivalents of an aggregate's scan (see the module docstring):
    decoding, by channel type and section form, and for ``by`` the samples
    and buckets."""
    samples = int(index.n_samples[rows].sum())
    stream = index.stream
    weight = 1 + sum(RICE_FLOAT_WEIGHT if stream.codec == "compact"
                     and stream.channels[ref.index].dtype.startswith("float") else 1
                     for ref in channels)
    cost = samples * weight + _entropy_extra(index, rows, channels)
    if bucket_ns:
        first, last = index.t_first[rows] // bucket_ns, index.t_last[rows] // bucket_ns
        spanned = int(np.minimum(index.n_samples[rows], last - first + 1).sum())
        cost += samples * BUCKETED_SAMPLE_WEIGHT + spanned * BUCKET_WEIGHT
    return cost


def _entropy_extra(index, rows, channels) -> int:
    """What the ENTROPY sections (tANS, codec bit 7: the time column and the
    channels read) of blocks ``rows`` add over bit-packed ones."""
    if index.stream.codec != "compact" or not len(index):
        return 0
    n = index.n_samples[rows]
    extra = int(n[(index.time_codec[rows] & SPLIT) == ENTROPY].sum())      # (SPLIT: bits 6 and 7)
    if len(channels):
        columns = [getattr(ref, "index", ref) for ref in channels]     # a ChannelRef or an index
        codecs = index.entries["codec"][rows][:, columns]
        extra += int((n[:, None] * ((codecs & SPLIT) == ENTROPY)).sum())
    return extra * (ENTROPY_WEIGHT - 1)


_kernels_module = None


def _kernels():
    """kernels.py, imported by the first call (importing it starts numba);
    after that a global's read, where an import statement in each call cost
    ~1 µs (a small query makes several).  The first call imports it with an
    import statement, not a look in sys.modules: while another thread is
    importing it (the shell warms the kernels up in the background) the
    module is already there, half made, and only the import statement waits
    for it to be whole."""
    global _kernels_module
    if _kernels_module is None:
        from . import kernels
        _kernels_module = kernels
    return _kernels_module


def choose(engine: str | None, values):
    """The tier for a scan that decodes about ``values`` column values: a
    number, or a function that prices the scan, called only where ``auto``
    has to weigh it (not once the kernels are loaded: pricing a scan's
    sections is ~40 us, a fifth of a small query)."""
    global _interpreted_values
    engine = engine_in_force(engine)
    if engine == "compiled" or engine == "auto" and _KERNELS_MODULE in sys.modules:
        return COMPILED
    if engine == "interpreted":
        return INTERPRETED
    if _interpreted_seconds >= INTERPRET_BUDGET_SECONDS:
        return COMPILED
    values = values() if callable(values) else values
    if values <= INTERPRET_MAX_VALUES and _interpreted_values + values <= INTERPRET_BUDGET_VALUES:
        _interpreted_values += values
        return INTERPRETED
    return COMPILED


def engine_in_force(engine: str | None) -> str:
    """``engine``, else $SENSORQ_ENGINE, else auto; a QueryError if it is none of ENGINES."""
    engine = engine or os.environ.get("SENSORQ_ENGINE") or "auto"
    if engine not in ENGINES:
        raise QueryError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    return engine


def auto_status(engine: str | None = None) -> str:
    """What ``auto`` takes in this process now, and why (for explain); ""
    when ``engine`` (or $SENSORQ_ENGINE) chose a tier instead."""
    if engine_in_force(engine) != "auto":
        return ""
    if _KERNELS_MODULE in sys.modules:
        return "auto takes the kernels: they are loaded in this process"
    spent = (f"the interpreter has taken {_interpreted_seconds:.3f} s of its "
             f"{INTERPRET_BUDGET_SECONDS:g} s and {_interpreted_values / (1 << 20):.1f} Mi of its "
             f"{INTERPRET_BUDGET_VALUES >> 20} Mi value-equivalents in this process")
    if _interpreted_seconds >= INTERPRET_BUDGET_SECONDS \
            or _interpreted_values >= INTERPRET_BUDGET_VALUES:
        return f"auto takes the kernels from the next scan on: {spent}"
    return (f"auto takes the interpreter for scans of up to {INTERPRET_MAX_VALUES >> 20} Mi "
            f"value-equivalents until the kernels are loaded or its budget is spent: {spent}")


def _value_bits(dtype: str, threshold: int) -> int:
    """The narrowest of 16, 32 and 64 bits that holds both the channel's values and the threshold."""
    bits = _LANE_BITS.get(dtype, 64)
    while bits < 64 and not -(1 << (bits - 1)) <= threshold < (1 << (bits - 1)):
        bits *= 2
    return bits


class CompiledTier:
    """The numba kernels; across both cores when there are enough blocks.
    (kernels.py is imported by the first call: importing it starts numba.)"""
    name = "compiled"

    # Counts over fewer whole blocks never use frame maps: a dashboard's count
    # over the last minutes decodes a few blocks, keeps nothing, and pays no
    # import of framemaps.py either (~1 µs a statement, of a ~30 µs count).
    FRAME_MAP_MIN_BLOCKS = 32

    def frame_map(self, index, raw_compare, n_blocks):
        """The frame map (framemaps.py) a count of ``raw_compare`` over
        n_blocks whole blocks of ``index`` reads, or None: few blocks."""
        if n_blocks < self.FRAME_MAP_MIN_BLOCKS:
            return None
        from .framemaps import frame_map
        return frame_map(index, raw_compare.channel)

    def count(self, layout, blocks, programs, raw_compare, start, end, need_time,
              frame_map=None) -> np.ndarray:
        if frame_map is not None:
            return self._count_mapped(frame_map, layout, blocks, programs, raw_compare, start, end)
        K = _kernels()
        counts, status = np.zeros(len(blocks), np.int64), np.zeros(len(blocks), np.int64)
        parallel = len(blocks) >= K.PARALLEL_MIN_BLOCKS
        if raw_compare is not None:
            kernel = K.count_raw_compare if parallel else K.count_raw_compare_serial
            threshold = int(raw_compare.threshold)
            kernel(layout.buf, blocks, layout.lay_t, layout.lay_c, COMPARE_CODES[raw_compare.op],
                   threshold, _value_bits(raw_compare.channel.dtype, threshold), start, end,
                   need_time, counts, status)
        else:
            pred_code, _, consts, depth = programs.kernel_args()
            kernel = K.count_matches if parallel else K.count_matches_serial
            kernel(layout.buf, blocks, layout.lay_t, layout.lay_c, pred_code, consts,
                   programs.slot_scales, depth, start, end, need_time, counts, status)
        check_status(status)
        return counts

    def _count_mapped(self, frame_map, layout, blocks, programs, raw_compare, start, end):
        """count over whole blocks: those ``frame_map`` holds from it, the rest decoded."""
        mapped = frame_map.mapped(layout, blocks)
        counts = np.zeros(len(blocks), np.int64)
        if mapped.all():
            frame_map.count(layout, blocks, COMPARE_CODES[raw_compare.op],
                            int(raw_compare.threshold), counts)
            return counts
        if mapped.any():
            part = np.zeros(int(mapped.sum()), np.int64)
            frame_map.count(layout, blocks[mapped], COMPARE_CODES[raw_compare.op],
                            int(raw_compare.threshold), part)
            counts[mapped] = part
        counts[~mapped] = self.count(layout, blocks[~mapped], programs, raw_compare, start, end,
                                     False)
        return counts

    def ladder(self, layout, blocks, dtype, threshold) -> np.ndarray:
        """Over whole blocks (no window cut: every sample counts): how many raw
        values of the layout's first channel, an integer one of ``dtype``, are
        at least threshold + s, for s = 0..LADDER_STEPS (kernels.count_ladder)."""
        K = _kernels()
        ladders = np.zeros((len(blocks), LADDER_STEPS + 1), np.int64)
        status = np.zeros(len(blocks), np.int64)
        value_bits = max(_value_bits(dtype, threshold),
                         _value_bits(dtype, threshold + LADDER_STEPS))
        K.count_ladder(layout.buf, blocks, layout.lay_t, layout.lay_c, threshold, value_bits,
                       ladders, status)
        check_status(status)
        return ladders.sum(0)

    def partials(self, layout, blocks, programs, start, end, slots, fp, ip) -> None:
        K = _kernels()
        pred_code, val_code, consts, depth = programs.kernel_args()
        status = np.zeros(len(blocks), np.int64)
        parallel = len(blocks) >= K.PARALLEL_MIN_BLOCKS
        kernel = K.scan_partials if parallel else K.scan_partials_serial
        kernel(layout.buf, blocks, layout.lay_t, layout.lay_c, pred_code, val_code, consts,
               programs.slot_scales, depth, programs.has_pred, programs.has_value, start, end,
               slots.bucket_ns, slots.base, slots.count, slots.bucket, slots.next_t,
               slots.need_time, slots.gap_ns, slots.time_weighted, slots.wants, fp, ip, status)
        check_status(status)

    def top_blocks(self, layout, blocks, bounds, pos_base, programs, start, end, best) -> int:
        """selection.run_top's blocks of one layout merged into ``best`` (kernels.top_blocks)."""
        K = _kernels()
        pred_code, val_code, consts, depth = programs.kernel_args()
        status, decoded = K.top_blocks(layout.buf, blocks, bounds, pos_base, layout.lay_t,
                                       layout.lay_c, pred_code, val_code, consts,
                                       programs.slot_scales, depth, programs.has_pred, start,
                                       end, *best)
        check_status(status)
        return decoded

    def evaluate_into(self, layout, programs, dest, t_out, mask_out, v_out) -> None:
        """Every block of ``layout``: its samples' times, predicate and value
        written at dest[j] of the flat outputs (kernels.evaluate_into)."""
        K = _kernels()
        pred_code, val_code, consts, depth = programs.kernel_args()
        blocks = np.arange(len(layout.blocks), dtype=np.int64)
        status = np.zeros(len(blocks), np.int64)
        kernel = K.evaluate_into if len(blocks) >= K.PARALLEL_MIN_BLOCKS else \
            K.evaluate_into_serial
        kernel(layout.buf, blocks, layout.lay_t, layout.lay_c, pred_code, val_code, consts,
               programs.slot_scales, depth, programs.has_pred, programs.has_value, dest, t_out,
               mask_out, v_out, status)
        check_status(status)

    def episodes(self, samples, start, end, gap_ns, entries, state, peak, out) -> int:
        """search.EpisodeBuilder's work over decoded samples in one kernel call
        (kernels.episode_scan)."""
        K = _kernels()
        return K.episode_scan(*samples, start, end, gap_ns, *entries, state, peak, *out)

    def threads(self) -> int:
        import numba
        return numba.get_num_threads()

    def histograms(self, layout, programs, value_slot, tasks, cells) -> None:
        """selection.Tasks counted into ``cells`` (kernels.value_histograms)."""
        K = _kernels()
        pred_code, _, consts, depth = programs.kernel_args()
        status = np.zeros(len(tasks.task_ptr) - 1, np.int64)
        parallel = len(status) > 1 and len(tasks.entry_block) >= K.PARALLEL_MIN_BLOCKS // 4
        kernel = K.value_histograms if parallel else K.value_histograms_serial
        kernel(layout.buf, layout.lay_t, layout.lay_c, pred_code, consts, programs.slot_scales,
               depth, programs.has_pred, value_slot, tasks.task_ptr, tasks.entry_block,
               tasks.entry_time, tasks.task_lo, tasks.task_hi, tasks.task_base, tasks.task_off,
               tasks.task_len, cells, status)
        check_status(status)

    def gather(self, layout, b, reader, start, end):
        K = _kernels()
        status, t, values, raw = K.gather_block(
            layout.buf, b, layout.lay_t, layout.lay_c, reader.pred_code, reader.val_code,
            reader.consts, reader.scales, reader.depth, reader.programs.has_pred,
            reader.programs.has_value, start, end)
        check_status(status)
        return t, values, raw

    def evaluate(self, layout, b, reader):
        K = _kernels()
        n = int(layout.lay_t[b, N_SAMPLES])
        t, raw, words, scratch, stack, mask, values = K.block_scratch(
            n, len(reader.slot_channels), reader.depth)
        status = K.evaluate_block(layout.buf, b, n, layout.lay_t, layout.lay_c, reader.pred_code,
                                  reader.val_code, reader.consts, reader.scales, reader.depth,
                                  reader.programs.has_pred, reader.programs.has_value, t, raw,
                                  words, scratch, stack, mask, values)
        check_status(status)
        return t, mask, values


def _timed(scan):
    """An InterpretedTier scan whose time counts towards INTERPRET_BUDGET_SECONDS."""
    @functools.wraps(scan)
    def timed(*args, **kwargs):
        global _interpreted_seconds
        began = time.perf_counter()
        try:
            return scan(*args, **kwargs)
        finally:
            _interpreted_seconds += time.perf_counter() - began
    return timed


class InterpretedTier:
    """numpy, block by block (interpreter.py)."""
    name = "interpreted"

    def frame_map(self, index, raw_compare, n_blocks):
        """None: frame maps are the kernels' (framemaps.py)."""
        return None

    @_timed
    def count(self, layout, blocks, programs, raw_compare, start, end, need_time,
              frame_map=None) -> np.ndarray:
        if raw_compare is not None:
            return I.count_raw_compare(layout, blocks, COMPARE_CODES[raw_compare.op],
                                       int(raw_compare.threshold), start, end, need_time)
        pred_code, _, consts, _ = programs.kernel_args()
        return I.count_matches(layout, blocks, pred_code, consts, programs.slot_scales,
                               start, end, need_time)

    @_timed
    def ladder(self, layout, blocks, dtype, threshold) -> np.ndarray:
        return I.count_ladder(layout, blocks, threshold)

    @_timed
    def partials(self, layout, blocks, programs, start, end, slots, fp, ip) -> None:
        pred_code, val_code, consts, _ = programs.kernel_args()
        I.scan_partials(layout, blocks, pred_code, val_code, consts, programs.slot_scales,
                        programs.has_pred, programs.has_value, start, end, slots, fp, ip)

    @_timed
    def top_blocks(self, layout, blocks, bounds, pos_base, programs, start, end, best) -> int:
        pred_code, val_code, consts, _ = programs.kernel_args()
        return I.top_blocks(layout, blocks, bounds, pos_base, pred_code, val_code, consts,
                            programs.slot_scales, programs.has_pred, programs.has_value, start,
                            end, *best)

    def threads(self) -> int:
        return 1

    @_timed
    def histograms(self, layout, programs, value_slot, tasks, cells) -> None:
        pred_code, _, consts, _ = programs.kernel_args()
        I.value_histograms(layout, pred_code, consts, programs.slot_scales, programs.has_pred,
                           value_slot, tasks.task_ptr, tasks.entry_block, tasks.entry_time,
                           tasks.task_lo, tasks.task_hi, tasks.task_base, tasks.task_off,
                           tasks.task_len, cells)

    @_timed
    def gather(self, layout, b, reader, start, end):
        return I.gather_block(layout, b, reader.pred_code, reader.val_code, reader.consts,
                              reader.scales, reader.programs.has_pred,
                              reader.programs.has_value, start, end)

    @_timed
    def evaluate(self, layout, b, reader):
        t, _, mask, values = I.evaluate_block(layout, b, reader.pred_code, reader.val_code,
                                              reader.consts, reader.scales,
                                              reader.programs.has_pred, reader.programs.has_value)
        return t, mask, values


COMPILED, INTERPRETED = CompiledTier(), InterpretedTier()
