"""Counting an integer column while decoding it (the engine's ``count where
CHANNEL OP INTEGER``): :func:`count_column` is intcodec.decode_column with a
last pass that compares the running sums with the threshold instead of
storing them, so that a counted block's words are never written and read
again.
"""
from __future__ import annotations

import numpy as np

from ..jitcache import cached, digest
from .bits import ONE, U64, ZERO, count16, prefix_count16, prefix_count32, prefix_count64
from .codes import (ENTROPY, SPLIT, ERR_BAD_DICT, ERR_LENGTH, LADDER_STEPS, OK,
                    ZERO_RESIDUALS)
from .intcodec import _read_residuals, _residuals_to_words, _running_sums, payload_form, read_head
from .payload import read_payload
from .tally import NO_CEILING, ladder_top, tally_words
from .predictor import predictor_order, zigzag

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)


# count_column's value_bits that asks for the words themselves, as
# decode_column writes them, and counts nothing: a kernel that needs both
# (blocks that a window cuts) then reaches one decoder, not two (each is
# ~2 s of cold compile in every kernel that reaches it).
WORDS = 0


@cached(_STAMP, nogil=True, refcounted=False)
def count_column(buf, pos, end, n, codec, threshold, value_bits, out, scratch, tally,
                 ladder=None):
    """intcodec.decode_column for a count: of the section's n words, read as
    int64, tally[0] += how many are above ``threshold`` and tally[1] += how
    many equal it; with ``ladder`` (True), tally[j] += how many are at least
    threshold + j, for j = 0..LADDER_STEPS (every threshold + j must fit
    ``value_bits``).  The last pass compares the running sums instead of
    storing them, so the words are not written and read again (~25 % of a
    whole-block count).  ``value_bits`` (64, 32 or 16): the caller knows
    that every word and the threshold lie in int32 (an int32 channel's) or
    int16 (an int8 or int16 channel's), so that the sums are compared 16 or
    32 at a time as such, with twice or four times the lanes of int64: the
    sums mod 2^32 (2^16) are exact there; WORDS: out[:n] := the words, as
    decode_column, and no count.  ``out`` and ``scratch`` as in
    decode_column; returns a status.  (``ladder`` is None or not when numba
    compiles the function, which prunes the other branches: a count does not
    compile the ladder's kernels.)"""
    order = predictor_order(codec)
    if value_bits != WORDS and order == 0 and codec & SPLIT != ENTROPY and not codec & (ZERO_RESIDUALS | ~0xFF):
        status, base, n_entries, after = read_head(buf, pos, end, n, codec, scratch)
        if status != OK:
            return status
        if not n_entries:
            return _count_payload(buf, after, end, n, payload_form(codec), base, threshold, value_bits, out,
                                  tally, ladder, NO_CEILING)[0]
        if ladder is None:      # (pruned from a ladder's count, which reads the values below)
            return _count_ranks(buf, after, end, n, payload_form(codec), base, threshold, out, scratch,
                                n_entries, tally, ladder)
    status, base, n_entries = _read_residuals(buf, pos, end, n, codec, out, scratch)
    if status != OK:
        return status
    if value_bits == WORDS or n_entries or order == 0 or n == 0:   # the words themselves
        status = _residuals_to_words(out, n, codec, scratch, base, n_entries)
        if status == OK and value_bits != WORDS:
            tally_words(out, n, ZERO, threshold, tally, ladder)
        return status
    if order == 1:
        out[0] = zigzag(out[0])
        _count_sums(out, n, ZERO, base, ONE, threshold, value_bits, tally, ladder)
    else:
        first = out[0]
        out[0] = ZERO
        _running_sums(out, n, ZERO, ZERO, ONE, out)      # first differences
        _count_sums(out, n, first, base, ZERO, threshold, value_bits, tally, ladder)
    return OK


@cached(_STAMP, nogil=True, refcounted=False)
def _count_payload(buf, pos, end, n, form, base, threshold, value_bits, out, tally, ladder,
                   ceiling):
    """count_column for an order-0 payload at pos (the words, or a
    dictionary's ranks with base 0): a framed mini-block whose range settles
    the count (its frame is its smallest value) is counted whole, neither
    unpacked nor written (read_payload); the kept words, out[:kept], are
    then counted in one flat pass.  Returns (status, kept)."""
    status, payload_end, kept, above, equal = read_payload(buf, pos, end, n, out, form, np.int64(1),
                                                           base, threshold,
                                                           ladder_top(threshold, ladder), ceiling)
    if status == OK and payload_end != end:
        return ERR_LENGTH, 0
    if status == OK:
        # a settled mini-block that counts is above the ladder's last step
        # too, and equal to nothing
        for j in range(1 if ladder is None else LADDER_STEPS + 1):
            tally[j] += above
        if ladder is None:      # mini-blocks counted in registers (a ladder's never are)
            tally[1] += equal
        if kept:                # (none, mostly, where every unsettled one is narrow)
            _count_values(out, kept, base, threshold, value_bits, tally, ladder)
    return status, kept


@cached(_STAMP, nogil=True, refcounted=False)
def _count_ranks(buf, pos, end, n, form, base, threshold, out, entries, n_entries, tally, ladder):
    """count_column for an order-0 dictionary section: values above the
    threshold are the ranks from the first entry above it on, so the ranks
    are counted, against that entry's rank less one (the dictionary is
    sorted), and no value is looked up.  (``ladder`` is None: passed on as
    count_column got it, so that _count_payload compiles once.)  ``entries``:
    the dictionary, read (intcodec.read_head)."""
    first_above = 0          # entries <= threshold, i.e. the first rank above it
    if threshold >= np.int64(base):
        first_above = _at_most(entries, n_entries, U64(threshold) - base)
    above, equal = tally[0], tally[1]
    # only mini-blocks whose ranks all lie in the dictionary are settled: a
    # rank out of range is among the kept ones, where the check below finds
    # it as decode_column would
    status, kept = _count_payload(buf, pos, end, n, form, ZERO, np.int64(first_above) - 1,
                                  16 if n_entries < 1 << 15 else 64, out, tally, ladder,
                                  np.int64(n_entries - 1))
    if status == OK and kept and _largest(out, kept) >= U64(n_entries):
        tally[0], tally[1] = above, equal
        return ERR_BAD_DICT
    if first_above == 0 or entries[first_above - 1] != U64(threshold) - base:
        tally[1] = equal     # the rank below is not the threshold's
    return status


@cached(_STAMP, nogil=True, refcounted=False)
def _largest(words, n):
    """max(words[:n]), n ≥ 1 (a loop: numba's array max needs its reference counting)."""
    most = words[0]
    for i in range(1, n):
        most = max(most, words[i])
    return most


@cached(_STAMP, nogil=True, refcounted=False)
def _at_most(entries, n_entries, y):
    """How many of the sorted entries[:n_entries] are at most y (a binary
    search: numba's np.searchsorted costs ~1 s of cold compile a signature)."""
    lo, hi = 0, n_entries
    while lo < hi:
        mid = (lo + hi) >> 1
        if entries[mid] <= y:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cached(_STAMP, nogil=True, refcounted=False)
def _count_values(u, n, base, threshold, value_bits, tally, ladder=None):
    """_count_sums for an order-0 column: the words themselves plus base, for
    int8 and int16 channels in the IR kernel's int16 lanes (32 a step), else
    in a flat loop that LLVM vectorises (the int32 and int64 lanes' kernels
    would be two more to compile in every count, for rarer channels)."""
    done = U64(0)
    if value_bits == 16:
        done = (U64(n) >> U64(5)) << U64(5)
        count16(u, U64(n) >> U64(5), ZERO, base, ZERO, threshold, tally, ladder)
    tally_words(u[done:], U64(n) - done, base, threshold, tally, ladder)


@cached(_STAMP, nogil=True, refcounted=False)
def _count_sums(u, n, carry, base, zig, threshold, value_bits, tally, ladder=None):
    """count_column's last pass: whole vectors in the IR kernel, the rest here,
    as int``value_bits`` too (the kernel's carry is then mod 2^value_bits)."""
    end = U64(n)
    if value_bits == 16:
        done = (end >> U64(5)) << U64(5)
        carry = prefix_count16(u, end >> U64(5), carry, base, zig, threshold, tally, ladder)
    elif value_bits == 32:
        done = (end >> U64(4)) << U64(4)
        carry = prefix_count32(u, end >> U64(4), carry, base, zig, threshold, tally, ladder)
    else:
        done = (end >> U64(3)) << U64(3)
        carry = prefix_count64(u, end >> U64(3), carry, base, zig, threshold, tally, ladder)
    spare = U64(64 - value_bits)      # the low value_bits bits, sign-extended
    above, equal = 0, 0
    for i in range(done, end):
        carry += (u[i] >> zig) ^ (ZERO - (u[i] & zig))
        value = np.int64((carry + base) << spare) >> np.int64(spare)
        if ladder is None:
            above += value > threshold
            equal += value == threshold
        else:
            for j in range(LADDER_STEPS + 1):
                tally[j] += value >= threshold + j
    if ladder is None:
        tally[0] += above
        tally[1] += equal
