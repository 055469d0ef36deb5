"""Arrays the engine works out from a block index's statistics alone, kept
for the next query over the same blocks.

Top N ranks every block by its statistics before it decodes the few that can
win; over 24,000 blocks that is most of its time, and a repeated query (a
dashboard's, an uplink loop's) would rank them again although no block
changed.  ``Cache.blocks`` hands out each index with a memo that lives as long
as the same rows do (StreamBlocks.memo_for); what is derived here from the
index's statistics and a frozen plan node is filed there under that node.
Blocks are read and decoded afresh by every query: only statistics-derived
arrays are kept, read-only, so no caller can change what the next one gets
(and one copy of bytes: top N's first few blocks, when they lie in several
buffers, already checked against their CRCs; selection.run_top).  The
memo holds one more kind of thing, outside KEPT_BYTES: a channel's frame
map (framemaps.py: each mini-block's range and place, read from blocks
already checked; the bounds a count settles mini-blocks by, never a
count), bounded by framemaps.FRAME_MAPS_BYTES for the whole process.
"""
from __future__ import annotations

import numpy as np

KEPT_ARRAYS = 64            # per block range: distinct (what, expression) pairs
KEPT_BYTES = 16 << 20       # per block range: what the kept values may hold together
_HELD = ("bytes held",)     # the memo's running total of KEPT_BYTES


def derived(index, key: tuple, compute, keep=None, size=None, most=KEPT_BYTES):
    """``compute()``, or what it gave for ``key`` over these same blocks
    (kept only if ``keep(value)``, when given, and if it holds at most
    ``most`` bytes).  ``size(value)``: the bytes it holds (default: an
    array's nbytes, else 0); when the kept values of the block range would
    pass KEPT_BYTES (or KEPT_ARRAYS of them), the range forgets what it kept
    and starts again."""
    memo = index.memo
    if memo is None:
        return compute()
    value = memo.get(key)
    if value is None:
        value = compute()
        if keep is not None and not keep(value):
            return value
        nbytes = size(value) if size is not None else getattr(value, "nbytes", 0)
        if nbytes > most:
            return value
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
        held = memo.get(_HELD, 0)
        if len(memo) >= KEPT_ARRAYS or held + nbytes > KEPT_BYTES:
            memo.clear()
            held = 0
        memo[key] = value
        memo[_HELD] = held + nbytes
    return value
