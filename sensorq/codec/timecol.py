"""The time column's section: its encoder, which may write a clock line
(codec/clock.py, docs/format.md §3 CLOCK mode), and its decoders, which add
the line back: to words (the Python API's decode_block, the model kernels'
rows) or to timestamps (the engine's kernels).  The section after a line is
an ordinary integer column section (intcodec.py)."""
from __future__ import annotations

import numpy as np

from ..jitcache import cached, digest
from .bits import ONE, U64, ZERO
from .clock import (add_line, closer_than_steps, exact_line, fitted_line, line_into, line_residuals,
                    read_line, write_line)
from .codes import CLOCK, OK, ZERO_RESIDUALS
from . import tans_call
from .payload import _read_u64
from .intcodec import (_write_u64, decode_column, decode_column_scaled, encode_column_costed,
                       max_section_bytes)

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)

# Whether the version 1 encoders (block.py, bulk.py) may write CLOCK time
# sections, read at each call (a device library built with READ_V1 reads
# them too).  A line is fitted to a clock that is on none only where the
# plain section takes more than FIT_MIN_BITS a value (a jittered clock's
# ~17; a steady one's are far fewer), and none is sought in a block of
# fewer than LINE_MIN_SAMPLES samples.
CLOCK_LINES = True
FIT_MIN_BITS = 4
LINE_MIN_SAMPLES = 32


@cached(_STAMP, nogil=True)
def time_section_bytes(n):
    """Room that :func:`encode_time` needs for n words: the plain section
    and, after it, a clock line's (its three varints, then its section)."""
    return 2 * max_section_bytes(n) + 30


@cached(_STAMP, before_compile=tans_call.link_encoder, nogil=True)
def encode_time(words, compact, rice_cost, out, pos, entropy, lines):
    """The time section of ``words`` (offsets from the first time, in ticks,
    non-decreasing) at out[pos:], which has time_section_bytes(n) of room:
    (end offset, codec bits).  With ``lines`` (version 1), a clock off its
    tick but on a line (clock.exact_line) takes a CLOCK section of no
    residuals; a wide one, a fitted line if its residuals take fewer bytes
    than the plain section.  A steady clock (words 0, 1, …, n − 1) is written
    as always: its plain section is small, and model kernels recognise it
    byte for byte; so is a stopped one (every word 0: the base alone)."""
    n = words.shape[0]
    lines = lines and n >= LINE_MIN_SAMPLES and words[n - 1] != U64(n - 1) and words[n - 1] != ZERO
    if lines:
        p, q, r = exact_line(words, n)
        if q != ZERO:
            pos = write_line(out, pos, p, q, r)
            _write_u64(out, pos, ZERO)          # the residuals' base; all of them are 0
            return pos + 8, CLOCK | ZERO_RESIDUALS
    end, bits = encode_column_costed(words, False, compact, rice_cost, out, pos, entropy, False)
    if not lines or (end - pos) * 8 <= FIT_MIN_BITS * n:
        return end, bits
    p, q, r = fitted_line(words, n)
    if q == ZERO:
        return end, bits
    jitter = np.empty(n, np.uint64)
    line_residuals(words, n, p, q, r, jitter)
    if not closer_than_steps(words, jitter, n):
        return end, bits
    start = write_line(out, end, p, q, r)
    fitted_end, fitted_bits = encode_column_costed(jitter, True, compact, rice_cost, out, start, entropy,
                                                    False)
    if fitted_end - end >= end - pos:
        return end, bits
    size = fitted_end - end         # smaller: moved down over the plain section
    out[pos:pos + size] = out[end:fitted_end].copy()
    return pos + size, fitted_bits | CLOCK


# --- decoding -----------------------------------------------------------------

@cached(_STAMP, nogil=True, refcounted=False)
def decode_times(buf, pos, end, n, codec, out, scratch, offset, scale, dest):
    """A time section's timestamps, dest[:n] (int64) := offset + scale *
    word_k (t_first + tick · k), as intcodec.decode_column_scaled writes
    them; a CLOCK section's line is added in a pass after, or, for an exact
    line (no residuals), written in the only pass.  ``out`` is working space."""
    if not codec & CLOCK:
        return decode_column_scaled(buf, pos, end, n, codec, out, scratch, offset, scale, dest)
    status, p, q, r, pos = read_line(buf, pos, end)
    if status != OK:
        return status
    if codec == CLOCK | ZERO_RESIDUALS and pos + 8 == end:     # an exact line: one pass
        line_into(dest.view(np.uint64), n, p, q, r, offset + scale * _read_u64(buf, pos), scale)
        return OK
    status = decode_column_scaled(buf, pos, end, n, codec ^ CLOCK, out, scratch, offset, scale, dest)
    if status == OK:
        add_line(dest.view(np.uint64), n, p, q, r, scale)
    return status


@cached(_STAMP, nogil=True, refcounted=False)
def decode_time_words(buf, pos, end, n, codec, out, scratch):
    """:func:`decode_column` of a time section: a CLOCK section's words are
    its residuals plus its line."""
    if not codec & CLOCK:
        return decode_column(buf, pos, end, n, codec, out, scratch)
    status, p, q, r, pos = read_line(buf, pos, end)
    if status != OK:
        return status
    status = decode_column(buf, pos, end, n, codec ^ CLOCK, out, scratch)
    if status == OK:
        add_line(out, n, p, q, r, ONE)
    return status
