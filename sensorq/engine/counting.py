"""``count where …`` without buckets: the blocks' statistics count what they
can, the kernels count the rest.

A count is planned in two steps.  count_plan works out, from the block index
alone, which blocks the statistics count whole, which are skipped, and which
are decoded, with what is left of the predicate for each (zonemaps
residual_groups) and where their columns lie (layout.LayoutPlan); run_count
then fetches those blocks' bytes and runs one kernel call per group.

The plan depends only on the predicate, the window and the blocks' positions
and statistics, so the executor keeps it for the next identical query over the
same blocks (derived.py), as it keeps the zone maps' verdicts: a dashboard's
``count where z > 2g last 10m`` asked every second then costs the kernel calls
and little else.  A plan holds about 100 bytes a decoded block; plans bigger
than KEPT_PLAN_BYTES are not kept, and a block range keeps at most
derived.KEPT_BYTES of plans and other derived arrays.  Over a 100 M-sample
cache, ``count where z > 2g`` decodes 3,152 of 24,415 blocks and planning it
took 3.5 of its 10 ms; ``count where x > 0mg`` over 20 M samples decodes all
4,883 and planning took ~0.7 of its 7 ms: worth keeping.  Blocks are read and
decoded afresh every time, but for one kind of count asked again: a
comparison of an integer channel with a number over 32 whole blocks or
more, which settles the mini-blocks of the blocks it maps from the
channel's frame map (framemaps.py) and reads only the straddling ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..query import plan as P
from .layout import every_block, materialise, plan_layouts
from .program import compile_query
from .zonemaps import residual_groups

KEPT_PLAN_BYTES = 4 << 20   # a count plan is kept up to this size (~40,000 decoded blocks)


@dataclass(frozen=True)
class KernelCall:
    """Blocks decoded and counted with one residual predicate."""
    where: object               # the residual predicate (a plan node)
    need_time: bool             # the window cuts these blocks: compare timestamps too
    layouts: tuple              # layout.LayoutPlan, over the whole index's positions


@dataclass(frozen=True)
class CountPlan:
    """How a count is made: samples counted from statistics, and kernel calls for the rest."""
    from_stats: int             # samples counted from statistics alone
    decoded_blocks: int
    calls: tuple                # KernelCall


def count_plan(index, where, use_stats, decode, start, end) -> CountPlan:
    """The plan of a count over ``index``: blocks ``use_stats`` (a mask)
    counted from their statistics, blocks ``decode`` (a mask) decoded."""
    from_stats = int(index.n_samples[use_stats].sum())
    rows = np.flatnonzero(decode)
    calls = []
    for residual, group in residual_groups(where, index, rows) if len(rows) else ():
        cut = (index.t_first[group] < start) | (index.t_last[group] >= end)
        for need_time in (False, True):
            chosen = group[cut == need_time]
            if len(chosen) == 0:
                continue
            if isinstance(residual, P.BoolConst) and not need_time:
                from_stats += int(index.n_samples[chosen].sum()) if residual.value else 0
                continue
            slots = compile_query(residual, None).slot_indices
            layouts = tuple(plan_layouts(index, slots, chosen=chosen))
            calls.append(KernelCall(residual, need_time, layouts))
    return CountPlan(from_stats, len(rows), tuple(calls))


def plan_bytes(plan: CountPlan) -> int:
    """The bytes a plan's arrays hold."""
    return sum(layout.blocks.nbytes + layout.lay_t.nbytes + layout.lay_c.nbytes
               for call in plan.calls for layout in call.layouts)


def run_count(tier, index, plan: CountPlan, start, end) -> int:
    """The count ``plan`` gives over ``index``: its kernel calls on ``tier``."""
    total = plan.from_stats
    for call in plan.calls:
        where = call.where
        programs = compile_query(where, None)
        raw_int = where if isinstance(where, P.RawCompare) and \
            where.channel.dtype.startswith("int") else None
        # one frame map for the call's layouts (a segment's blocks each), asked
        # for once: the first count over these blocks makes none in any of them
        frame_map = None if raw_int is None or call.need_time else \
            tier.frame_map(index, raw_int, sum(len(each.blocks) for each in call.layouts))
        for layout_plan in call.layouts:
            layout = materialise(layout_plan, index)
            local = every_block(len(layout.blocks))
            total += _total(tier.count(layout, local, programs, raw_int, start, end,
                                       call.need_time, frame_map))
    return total


def _total(counts: np.ndarray) -> int:
    """The sum of a kernel call's per-block counts: a few blocks' (a window's)
    as Python ints, ~0.4 µs where numpy's reduction costs ~1.4 µs of a ~30 µs
    repeated count; many blocks' by numpy."""
    return sum(counts.tolist()) if len(counts) <= 64 else int(counts.sum())
