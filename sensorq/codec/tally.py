"""Counting decoded values against a threshold (the engine's ``count where
CHANNEL OP INTEGER``, and a percentile's ladder of counts): the tallies that
intcount.count_column keeps, and the test that lets it count a framed
mini-block (docs/format.md §3) from its frame alone.

A tally is an int64 array: without a ladder, tally[0] counts the values above
the threshold and tally[1] those equal to it; with one, tally[j] counts those
at least threshold + j, for j = 0..LADDER_STEPS.
"""
from __future__ import annotations

import numpy as np

from ..jitcache import cached, digest
from .bits import U64, low_mask
from .codes import LADDER_STEPS

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)


# framed_count's verdicts on a mini-block
NONE_COUNT, ALL_COUNT, UNSETTLED = 0, 1, -1
NO_CEILING = np.int64(2**63 - 1)


@cached(_STAMP, nogil=True, inline="always")
def framed_count(lowest, width, threshold, top, ceiling):
    """Whether a framed mini-block's values, which lie in [lowest, lowest +
    2^width - 1] (``lowest`` a word, read as int64), all count (ALL_COUNT:
    all above ``top``, the threshold or a ladder's last step less one), none
    does (NONE_COUNT: all below the threshold), or they must be read: also
    when the range passes ``ceiling`` or wraps past 2^63 - 1 (the words of
    a section damaged behind its CRC may: a count of them must still be
    theirs)."""
    low = np.int64(lowest)
    high = np.int64(lowest + low_mask(width))
    if high < low or high > ceiling:
        return UNSETTLED
    if low > top:
        return ALL_COUNT
    if high < threshold:
        return NONE_COUNT
    return UNSETTLED


@cached(_STAMP, nogil=True, inline="always")
def ladder_top(threshold, ladder):
    """framed_count's ``top`` for a count (ladder None) or a ladder."""
    return threshold + (LADDER_STEPS - 1 if ladder is not None else 0)


@cached(_STAMP, nogil=True, refcounted=False)
def tally_words(words, n, base, threshold, tally, ladder=None):
    """Count words[:n] + base, read as int64, as a tally or a ladder (in
    flat loops over the whole column, which LLVM vectorises: a loop per
    mini-block of 32 it does not, ~5x slower)."""
    if ladder is None:
        above, equal = 0, 0
        for i in range(U64(n)):
            value = np.int64(words[i] + base)
            above += value > threshold
            equal += value == threshold
        tally[0] += above
        tally[1] += equal
    else:
        for j in range(LADDER_STEPS + 1):
            at_least = 0
            for i in range(U64(n)):
                at_least += np.int64(words[i] + base) >= threshold + j
            tally[j] += at_least
