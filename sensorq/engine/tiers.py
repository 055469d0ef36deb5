"""Which tier scans a query's blocks: the compiled kernels or the interpreter.

Both tiers take the same layouts and programs and give the same answers, bit
for bit.  They differ in what they cost:

- **compiled** (kernels.py): numba, both cores; about 0.5–3 ns per value.
  Its first use in a process costs about 0.4 s (importing numba and loading the
  kernels from its disk cache) and about 5 s the very first time on a machine
  (compiling them).
- **interpreted** (interpreter.py): plain numpy, one block at a time; about
  20 ns per bit-packed value and 0.25 µs per Rice-coded value, with nothing to
  load or compile.

``auto`` (the default) takes the compiled tier once its kernels are loaded in
this process — they then cost nothing more — and for large scans; it takes
the interpreter for a scan of at most INTERPRET_MAX_VALUES column values in a
process that has not loaded the kernels.  Like a JIT's tiering, a process that
keeps running small queries
is promoted to the kernels once the interpreter has decoded
INTERPRET_BUDGET_VALUES in all (about as long as loading the kernels takes).
So a one-off ``sensorq "count … last 10m"`` answers without starting numba,
and a long-lived program pays for numba once, when it has work enough.

``SENSORQ_ENGINE=compiled|interpreted|auto`` (or ``Cache.query(engine=…)``)
chooses for a process or a query; the tests run every query shape both ways.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from ..codec.codes import check_status
from ..errors import QueryError
from . import interpreter as I
from .layout import N_SAMPLES
from .program import COMPARE_CODES

ENGINES = ("auto", "compiled", "interpreted")
INTERPRET_MAX_VALUES = 1 << 20          # one scan
INTERPRET_BUDGET_VALUES = 16 << 20      # all scans of a process, before it moves to the kernels
_KERNELS_MODULE = __name__.rpartition(".")[0] + ".kernels"
_interpreted_values = 0                 # what auto has given the interpreter so far


def scan_values(index, rows, n_channels: int) -> int:
    """Column values a scan of blocks ``rows`` decodes, timestamps included:
    what :func:`choose` prices a scan by."""
    return int(index.n_samples[rows].sum()) * (n_channels + 1)


def choose(engine: str | None, values: int):
    """The tier for a scan that decodes about ``values`` column values."""
    global _interpreted_values
    engine = engine or os.environ.get("SENSORQ_ENGINE") or "auto"
    if engine not in ENGINES:
        raise QueryError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "compiled":
        return COMPILED
    if engine == "interpreted":
        return INTERPRETED
    if values <= INTERPRET_MAX_VALUES and _interpreted_values + values <= INTERPRET_BUDGET_VALUES \
            and _KERNELS_MODULE not in sys.modules:
        _interpreted_values += values
        return INTERPRETED
    return COMPILED


class CompiledTier:
    """The numba kernels; across both cores when there are enough blocks.
    (kernels.py is imported by the first call: importing it starts numba.)"""
    name = "compiled"

    def count(self, layout, blocks, programs, raw_compare, start, end, need_time) -> np.ndarray:
        from . import kernels as K
        counts, status = np.zeros(len(blocks), np.int64), np.zeros(len(blocks), np.int64)
        parallel = len(blocks) >= K.PARALLEL_MIN_BLOCKS
        if raw_compare is not None:
            kernel = K.count_raw_compare if parallel else K.count_raw_compare_serial
            kernel(layout.buf, blocks, layout.lay_t, layout.lay_c, COMPARE_CODES[raw_compare.op],
                   int(raw_compare.threshold), start, end, need_time, counts, status)
        else:
            pred_code, _, consts, depth = programs.kernel_args()
            kernel = K.count_matches if parallel else K.count_matches_serial
            kernel(layout.buf, blocks, layout.lay_t, layout.lay_c, pred_code, consts,
                   programs.slot_scales, depth, start, end, need_time, counts, status)
        check_status(status)
        return counts

    def partials(self, layout, blocks, programs, start, end, slots, fp, ip) -> None:
        from . import kernels as K
        pred_code, val_code, consts, depth = programs.kernel_args()
        status = np.zeros(len(blocks), np.int64)
        parallel = len(blocks) >= K.PARALLEL_MIN_BLOCKS
        kernel = K.scan_partials if parallel else K.scan_partials_serial
        kernel(layout.buf, blocks, layout.lay_t, layout.lay_c, pred_code, val_code, consts,
               programs.slot_scales, depth, programs.has_pred, programs.has_value, start, end,
               slots.bucket_ns, slots.base, slots.count, slots.bucket, slots.next_t,
               slots.gap_ns, slots.time_weighted, slots.wants, fp, ip, status)
        check_status(status)

    def gather(self, layout, b, reader, start, end):
        from . import kernels as K
        status, t, values, raw = K.gather_block(
            layout.buf, b, layout.lay_t, layout.lay_c, reader.pred_code, reader.val_code,
            reader.consts, reader.scales, reader.depth, reader.programs.has_pred,
            reader.programs.has_value, start, end)
        check_status(status)
        return t, values, raw

    def evaluate(self, layout, b, reader):
        from . import kernels as K
        n = int(layout.lay_t[b, N_SAMPLES])
        t, raw, words, scratch, stack, mask, values = K.block_scratch(
            n, len(reader.slot_channels), reader.depth)
        status = K.evaluate_block(layout.buf, b, n, layout.lay_t, layout.lay_c, reader.pred_code,
                                  reader.val_code, reader.consts, reader.scales, reader.depth,
                                  reader.programs.has_pred, reader.programs.has_value, t, raw,
                                  words, scratch, stack, mask, values)
        check_status(status)
        return t, mask, values


class InterpretedTier:
    """numpy, block by block (interpreter.py)."""
    name = "interpreted"

    def count(self, layout, blocks, programs, raw_compare, start, end, need_time) -> np.ndarray:
        if raw_compare is not None:
            return I.count_raw_compare(layout, blocks, COMPARE_CODES[raw_compare.op],
                                       int(raw_compare.threshold), start, end, need_time)
        pred_code, _, consts, _ = programs.kernel_args()
        return I.count_matches(layout, blocks, pred_code, consts, programs.slot_scales,
                               start, end, need_time)

    def partials(self, layout, blocks, programs, start, end, slots, fp, ip) -> None:
        pred_code, val_code, consts, _ = programs.kernel_args()
        I.scan_partials(layout, blocks, pred_code, val_code, consts, programs.slot_scales,
                        programs.has_pred, programs.has_value, start, end, slots, fp, ip)

    def gather(self, layout, b, reader, start, end):
        return I.gather_block(layout, b, reader.pred_code, reader.val_code, reader.consts,
                              reader.scales, reader.programs.has_pred,
                              reader.programs.has_value, start, end)

    def evaluate(self, layout, b, reader):
        t, _, mask, values = I.evaluate_block(layout, b, reader.pred_code, reader.val_code,
                                              reader.consts, reader.scales,
                                              reader.programs.has_pred, reader.programs.has_value)
        return t, mask, values


COMPILED, INTERPRETED = CompiledTier(), InterpretedTier()
