"""Kernels over blocks: decode only the columns a query reads, run its
programs (``vm.py``) and fold the samples into per-slot partial aggregates, in
one pass per block, blocks in parallel.

A *slot* is one (block, time bucket) pair: a block that straddles bucket edges
writes one slot per bucket it touches, so that blocks never write the same
memory and the threads need no locks.  ``aggregates.py`` merges the slots.

Kernels return status codes instead of raising (an exception cannot cross a
parallel loop cleanly); the caller turns a non-zero status into
CorruptDataError.  Blocks reach a kernel only after their CRC was checked.
"""
from __future__ import annotations

import os
import types

# Between two parallel kernels OpenMP's worker threads sleep instead of spinning
# (unless the user chose): spinning threads took the cores from the query's own
# Python thread and from the other processes of a small machine (measured on 2
# cores under load: count where x > 0 took 2.3x the CPU time and was slower than
# on one thread).  Read by libgomp when numba first loads it, after this.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

from ..codec.bits import PREFETCH_AHEAD, U64, load_word_unchecked, prefetch_block  # noqa: E402
from ..codec.intcodec import DECIMAL, ERR_BAD_CODE, FLOATBITS, OK, decode_column, decode_column_floats
from ..codec.timecol import decode_times
from ..codec.intcount import WORDS, count_column
from ..codec.transforms import float_values
from ..codec.alp import (finish_shift as alp_finish_shift, is_shift as alp_is_shift,
                         mantissa_start as alp_mantissa_start, patch_exceptions as alp_patch_exceptions,
                         scale as alp_scale)
from ..codec.scaling import DIVIDE, NO_SCALE
from .aggregates import (F_FIRST, F_LAST, F_M2, F_MAX, F_MEAN, F_MIN, F_SUM, F_TW_SUM, I_COUNT,
                         I_TFIRST, I_TLAST, I_TMAX, I_TMIN, I_TW_NS, WANT_EXTREMES, WANT_M2)
from ..jitcache import cached, digest, rename
from .vm import run

# what the kernels compile into themselves (jit.py): a change there files them anew
_STAMP = digest("engine/vm.py", "engine/program.py", "engine/aggregates.py", "codec/*.py")

FLOAT32 = 5   # storage type codes from this one on are floats
_ALP = DECIMAL | FLOATBITS    # both float mode bits: an ALP section (codec/alp.py)


@cached(_STAMP, inline="always")
def prefetch_ahead(buf, blocks, j, stop, lay_t, lay_c, with_time):
    """bits.prefetch_block for blocks[j + PREFETCH_AHEAD], if that is before
    ``stop``: the end of the kernel's list, not of its chunk, since prange
    hands each thread a run of consecutive chunks, so the blocks past a
    chunk's end are mostly the same thread's next (stopping at the chunk's
    end left the first two blocks of every 32 unasked for: the count over
    the 100 M-sample cache's x sections, one thread, 15.8-16.7 -> 15.3-15.4
    ms in turns)."""
    if j + PREFETCH_AHEAD < stop:
        prefetch_block(buf, blocks[j + PREFETCH_AHEAD], lay_t, lay_c, with_time)


@cached(_STAMP, refcounted=False)
def decode_time(buf, b, n, lay_t, t, words, scratch):
    """Block b's timestamps into t[:n] (int64 ns).  Returns a status.
    lay_t[b] = (t_first, tick, time_codec, time_start, time_len, n)."""
    start, length = lay_t[b, 3], lay_t[b, 4]
    # t = t_first + tick * word (transforms.time_values), by the decoder's last pass
    return decode_times(buf, start, start + length, n, lay_t[b, 2], words, scratch,
                        U64(lay_t[b, 0]), U64(lay_t[b, 1]), t)


@cached(_STAMP, refcounted=False)
def decode_channels(buf, b, n, lay_c, raw, words, scratch):
    """Block b's channel slots into raw[slot, :n] (float64, stored units).
    lay_c[b, slot] = (start, len, codec, dexp, dtype).  Returns a status."""
    for s in range(lay_c.shape[1]):
        start, length, codec = lay_c[b, s, 0], lay_c[b, s, 1], lay_c[b, s, 2]
        dtype, exponent, row = lay_c[b, s, 4], lay_c[b, s, 3], raw[s]
        alp = dtype >= FLOAT32 and (codec & _ALP) == _ALP
        begin = alp_mantissa_start(buf, start, start + length, n, dtype == FLOAT32) if alp else start
        if begin < 0:
            return begin
        if dtype < FLOAT32 or codec & DECIMAL and not (alp and alp_is_shift(buf, start)):
            # int64 words (values, decimal and ALP mantissas): the decoder's last
            # pass writes the float row, scaled (or its dictionary, scaled),
            # instead of words and then a second pass or two
            kind, c, is32 = NO_SCALE, 1.0, False
            if alp:
                kind, c, is32 = alp_scale(buf, start, dtype == FLOAT32)
            elif dtype >= FLOAT32:
                kind, c, is32 = DIVIDE, 10.0 ** exponent, dtype == FLOAT32
            status = decode_column_floats(buf, begin, start + length, n, codec, words, scratch, row,
                                          kind, c, is32)
            if status == OK and alp:
                alp_patch_exceptions(buf, start, dtype == FLOAT32, row)
        else:
            status = decode_column(buf, begin, start + length, n, codec, words, scratch)
            if status == OK and alp:
                alp_finish_shift(buf, start, n, dtype == FLOAT32, words, row)
            elif status == OK:
                _words_to_row(words, n, dtype, codec, exponent, row)
        if status != OK:
            return status
    return OK


@cached(_STAMP, refcounted=False)
def decode_rows(buf, b, n, lay_t, lay_c, need_time, t, raw, words, scratch):
    """Timestamps (if ``need_time``) and channel slots of block b; a status."""
    if need_time:
        status = decode_time(buf, b, n, lay_t, t, words, scratch)
        if status != OK:
            return status
    return decode_channels(buf, b, n, lay_c, raw, words, scratch)


@cached(_STAMP, refcounted=False)
def _words_to_row(words, n, dtype, codec, exponent, row):
    """Decoded words to float64 values in stored units (a 1-D row, so the
    integer conversion is a plain vectorisable loop; floats go through the
    codec's own transform)."""
    if dtype < FLOAT32:
        for i in range(n):
            row[i] = np.float64(np.int64(words[i]))
    else:
        float_values(words, n, codec & (DECIMAL | FLOATBITS), exponent, dtype == FLOAT32, row)


@cached(_STAMP)
def decode_scratch(n, n_slots, depth):
    """Working arrays to decode and evaluate blocks of up to n samples: times,
    raw channel rows, decoder words and dictionary, the VM stack."""
    return (np.empty(n, np.int64), np.empty((max(1, n_slots), n), np.float64),
            np.empty(n, np.uint64), np.empty(n, np.uint64),
            np.empty((max(1, depth), n), np.float64))


@cached(_STAMP)
def block_scratch(n, n_slots, depth):
    """decode_scratch's arrays for one block of n samples, then the match
    mask and the values."""
    t, raw, words, scratch, stack = decode_scratch(n, n_slots, depth)
    return t, raw, words, scratch, stack, np.empty(n, np.bool_), np.zeros(n, np.float64)


@cached(_STAMP, refcounted=False)
def evaluate_block(buf, b, n, lay_t, lay_c, pred_code, val_code, consts, scales,
                   depth, has_pred, has_value, t, raw, words, scratch, stack, mask, values):
    """Decode block b (timestamps and channels) and evaluate the predicate into
    mask[:n] (bool) and the value expression into values[:n].  Returns a status."""
    return evaluate_rows(buf, b, n, lay_t, lay_c, True, pred_code, val_code, consts, scales,
                         depth, has_pred, has_value, t, raw, words, scratch, stack, mask, values)


@cached(_STAMP, refcounted=False)
def evaluate_rows(buf, b, n, lay_t, lay_c, need_time, pred_code, val_code, consts, scales,
                  depth, has_pred, has_value, t, raw, words, scratch, stack, mask, values):
    """evaluate_block; without ``need_time`` the timestamps are not decoded
    and t[:n] all read the block's first time (for a block that lies inside
    the window and one bucket, when the aggregate needs no sample times)."""
    status = OK
    if need_time:
        status = decode_time(buf, b, n, lay_t, t, words, scratch)
    else:
        t[:n] = lay_t[b, 0]
    if status == OK:
        status = decode_channels(buf, b, n, lay_c, raw, words, scratch)
    if status != OK:
        return status
    if has_pred:
        run(pred_code, consts, raw, scales, n, stack)
        for i in range(n):
            mask[i] = stack[0, i] != 0.0
    else:
        mask[:n] = True
    if has_value:
        run(val_code, consts, raw, scales, n, stack)
        for i in range(n):      # (a slice copy would need numba's reference counting)
            values[i] = stack[0, i]
    return OK


@cached(_STAMP, refcounted=False)
def _init_slot(fp, ip, k):
    fp[k, F_SUM] = 0.0
    fp[k, F_MIN] = np.inf
    fp[k, F_MAX] = -np.inf
    fp[k, F_MEAN] = 0.0
    fp[k, F_M2] = 0.0
    fp[k, F_TW_SUM] = 0.0
    fp[k, F_FIRST] = np.nan
    fp[k, F_LAST] = np.nan
    ip[k, I_COUNT] = 0
    ip[k, I_TW_NS] = 0
    ip[k, I_TMIN] = 0
    ip[k, I_TMAX] = 0


@cached(_STAMP, refcounted=False)
def find_slot(slot_bucket, base, count, bucket):
    """The slot of time bucket ``bucket`` among a block's slots
    slot_bucket[base:base+count] (ascending bucket ids), or -1.  Most blocks'
    buckets are consecutive (one subtraction finds the slot); a block with
    empty buckets left out (tiny buckets, a clock jump) is searched."""
    if count == 0:
        return -1
    guess = bucket - slot_bucket[base]
    if guess < 0:
        return -1
    if guess < count and slot_bucket[base + guess] == bucket:
        return base + guess
    at = np.searchsorted(slot_bucket[base:base + count], bucket)
    if at < count and slot_bucket[base + at] == bucket:
        return base + at
    return -1


@cached(_STAMP, refcounted=False)
def _fold_stretch(fp, ip, k, t, values, mask, lo, hi, has_value, wants):
    """Fold samples lo..hi (all in the fresh slot k) into the slot.  The first
    pass counts and sums; the extremes and the second moment (about the
    slot's mean: the two-pass formula, more accurate than a running update)
    take passes of their own, only when the aggregate ``wants`` them
    (WANT_EXTREMES | WANT_M2), so that an avg pays for neither."""
    count, total = 0, 0.0
    first_i, last_i = -1, -1
    for i in range(lo, hi):
        v = values[i]
        if not mask[i] or (has_value and v != v):
            continue
        if first_i < 0:
            first_i = i
        last_i = i
        total += v
        count += 1
    if first_i < 0:
        return
    ip[k, I_COUNT], fp[k, F_SUM] = count, total
    fp[k, F_FIRST], ip[k, I_TFIRST] = values[first_i], t[first_i]
    fp[k, F_LAST], ip[k, I_TLAST] = values[last_i], t[last_i]
    if wants & WANT_EXTREMES:
        low, high = first_i, first_i     # the first of equal extremes
        for i in range(first_i + 1, last_i + 1):
            v = values[i]
            if not mask[i] or (has_value and v != v):
                continue
            if v < values[low]:
                low = i
            if v > values[high]:
                high = i
        fp[k, F_MIN], ip[k, I_TMIN] = values[low], t[low]
        fp[k, F_MAX], ip[k, I_TMAX] = values[high], t[high]
    if wants & WANT_M2:
        mean, m2 = total / count, 0.0
        for i in range(first_i, last_i + 1):
            v = values[i]
            if mask[i] and not (has_value and v != v):
                m2 += (v - mean) * (v - mean)
        fp[k, F_MEAN], fp[k, F_M2] = mean, m2


@cached(_STAMP, refcounted=False)
def _add_hold(fp, ip, t0, t1, v, slot_base, n_slots_b, slot_bucket, bucket_ns, has_value):
    """Credit the interval [t0, t1) during which value v holds, split at
    bucket edges (up to the block's last slot)."""
    while t0 < t1:
        k, edge = slot_base, t1
        if bucket_ns > 0:
            bucket = t0 // bucket_ns
            k = find_slot(slot_bucket, slot_base, n_slots_b, bucket)
            if k < 0:
                return
            edge = min(t1, (bucket + 1) * bucket_ns)
        ip[k, I_TW_NS] += edge - t0
        if has_value:
            fp[k, F_TW_SUM] += v * ((edge - t0) * 1e-9)
        t0 = edge


def _scan_partials(buf, blocks, lay_t, lay_c, pred_code, val_code, consts, scales, depth,
                  has_pred, has_value, start_ns, end_ns, bucket_ns, slot_base, slot_count,
                  slot_bucket, next_t, need_time, gap_ns, time_weighted, wants, fp, ip, status):
    """Fold each listed block into its slots.  ``blocks`` holds block numbers in
    the layout; slot_base/slot_count/next_t/need_time are per listed block,
    slot_bucket (the time bucket of each slot) per slot.  A block without
    ``need_time`` lies inside the window and one bucket, and the aggregate
    needs no sample times: its timestamps are not decoded."""
    for j in prange(blocks.shape[0]):
        b = blocks[j]
        n = lay_t[b, 5]
        if j + PREFETCH_AHEAD < blocks.shape[0]:
            prefetch_block(buf, blocks[j + PREFETCH_AHEAD], lay_t, lay_c, need_time[j + PREFETCH_AHEAD])
        t, raw, words, scratch, stack, mask, values = block_scratch(n, lay_c.shape[1], depth)
        for k in range(slot_base[j], slot_base[j] + slot_count[j]):
            _init_slot(fp, ip, k)
        status[j] = evaluate_rows(buf, b, n, lay_t, lay_c, need_time[j], pred_code, val_code,
                                  consts, scales, depth, has_pred, has_value, t, raw, words,
                                  scratch, stack, mask, values)
        if status[j] != OK:
            continue
        for s in range(slot_count[j]):
            # the samples of this slot are one stretch of the (sorted) block
            lo_t, hi_t = start_ns, end_ns
            if bucket_ns > 0:
                lo_t = max(lo_t, slot_bucket[slot_base[j] + s] * bucket_ns)
                hi_t = min(hi_t, (slot_bucket[slot_base[j] + s] + 1) * bucket_ns)
            lo = np.searchsorted(t[:n], lo_t)
            hi = np.searchsorted(t[:n], hi_t)
            _fold_stretch(fp, ip, slot_base[j] + s, t, values, mask, lo, hi, has_value, wants)
        if time_weighted:
            for i in range(n):
                ti = t[i]
                if ti < start_ns or ti >= end_ns or not mask[i] or (has_value and values[i] != values[i]):
                    continue
                hold_end = t[i + 1] if i + 1 < n else next_t[j]
                if gap_ns > 0:
                    hold_end = min(hold_end, ti + gap_ns)
                hold_end = min(hold_end, end_ns)
                _add_hold(fp, ip, ti, hold_end, values[i], slot_base[j], slot_count[j],
                          slot_bucket, bucket_ns, has_value)


def _count_matches(buf, blocks, lay_t, lay_c, pred_code, consts, scales, depth, start_ns, end_ns,
                  need_time, counts, status):
    """Matching samples per listed block: the hot path of ``count where …``.
    Working arrays are allocated once per chunk of blocks (count_chunks), not
    per block: at ~4,000 samples a block the allocations cost ~8 % of a scan."""
    n_blocks = blocks.shape[0]
    n_chunks = count_chunks(n_blocks)
    for k in prange(n_chunks):
        first, last = chunk_range(n_blocks, n_chunks, k)
        most = most_samples(blocks, lay_t, first, last)
        t, raw, words, scratch, stack = decode_scratch(most, lay_c.shape[1], depth)
        for j in range(first, last):
            b = blocks[j]
            n = lay_t[b, 5]
            prefetch_ahead(buf, blocks, j, n_blocks, lay_t, lay_c, need_time)
            status[j] = decode_rows(buf, b, n, lay_t, lay_c, need_time, t, raw, words, scratch)
            if status[j] != OK:
                continue
            run(pred_code, consts, raw, scales, n, stack)
            c = 0
            if need_time:
                for i in range(n):
                    if stack[0, i] != 0.0 and t[i] >= start_ns and t[i] < end_ns:
                        c += 1
            else:
                for i in range(n):
                    if stack[0, i] != 0.0:
                        c += 1
            counts[j] = c


@cached(_STAMP)
def count_chunks(n_blocks):
    """Chunks a count kernel splits its blocks into: at most 32 blocks each,
    so that each allocates its working arrays once for many blocks, and at
    least 64 (or one a block), so that every core stays busy to the end."""
    return max(min(n_blocks, 64), (n_blocks + 31) // 32)


@cached(_STAMP)
def chunk_range(n_blocks, n_chunks, k):
    """Blocks [first, last) of chunk k of n_chunks: contiguous, sizes within one."""
    return k * n_blocks // n_chunks, (k + 1) * n_blocks // n_chunks


@cached(_STAMP, refcounted=False)
def most_samples(blocks, lay_t, first, last):
    """The largest block among blocks[first:last]: the size of a chunk's working arrays."""
    most = 0
    for j in range(first, last):
        most = max(most, lay_t[blocks[j], 5])
    return most


@cached(_STAMP, refcounted=False)
def _count_compare(words, lo, hi, op, threshold):
    """How many of words[lo:hi], read as int64, pass ``OP threshold``.  One
    loop per operator with unsigned indices, so that each is a branch-free
    count LLVM vectorises."""
    values = words.view(np.int64)
    first, last = U64(lo), U64(hi)
    c = 0
    if op == 0:
        for i in range(first, last):
            c += values[i] < threshold
    elif op == 1:
        for i in range(first, last):
            c += values[i] <= threshold
    elif op == 2:
        for i in range(first, last):
            c += values[i] > threshold
    elif op == 3:
        for i in range(first, last):
            c += values[i] >= threshold
    elif op == 4:
        for i in range(first, last):
            c += values[i] == threshold
    else:
        for i in range(first, last):
            c += values[i] != threshold
    return c


def _count_raw_compare(buf, blocks, lay_t, lay_c, op, threshold, value_bits, start_ns, end_ns,
                       need_time, counts, status):
    """``count where CHANNEL OP INTEGER`` on an integer channel: the decoded
    words are compared as int64, with no float conversion and no VM; a block
    counted whole, by its decoder's last pass (count_column; ``value_bits``
    as there).  Its words, where a window cuts the block, come from
    count_column too, so that the kernel compiles one decoder, not two.
    Working arrays once per chunk of blocks, as in _count_matches."""
    n_blocks = blocks.shape[0]
    n_chunks = count_chunks(n_blocks)
    for k in prange(n_chunks):
        first, last = chunk_range(n_blocks, n_chunks, k)
        most = most_samples(blocks, lay_t, first, last)
        t, words, scratch = np.empty(most, np.int64), np.empty(most, np.uint64), \
            np.empty(most, np.uint64)
        tally = np.zeros(2, np.int64)
        for j in range(first, last):
            b = blocks[j]
            n = lay_t[b, 5]
            start = lay_c[b, 0, 0]
            prefetch_ahead(buf, blocks, j, n_blocks, lay_t, lay_c, need_time)
            if not need_time:
                tally[0] = tally[1] = 0
                status[j] = count_column(buf, start, start + lay_c[b, 0, 1], n, lay_c[b, 0, 2],
                                         threshold, value_bits, words, scratch, tally)
                counts[j] = _from_tally(op, n, tally[0], tally[1])
                continue
            status[j] = decode_time(buf, b, n, lay_t, t, words, scratch)
            if status[j] != OK:
                continue
            # the words, as decode_column writes them (np.int64: not a literal,
            # which numba would compile count_column for a second time)
            status[j] = count_column(buf, start, start + lay_c[b, 0, 1], n, lay_c[b, 0, 2],
                                     threshold, np.int64(WORDS), words, scratch, tally)
            if status[j] != OK:
                continue
            # timestamps are sorted: the window is one stretch of the block
            lo = np.searchsorted(t[:n], start_ns)
            hi = np.searchsorted(t[:n], end_ns)
            counts[j] = _count_compare(words, lo, hi, op, threshold)


def _count_ladder(buf, blocks, lay_t, lay_c, threshold, value_bits, ladders, status):
    """Per whole block (every sample counts): ladders[j, s] = how many raw
    values of the layout's first channel are at least threshold + s, for
    s = 0..LADDER_STEPS (count_column's ladder; ``value_bits`` as there)."""
    n_blocks = blocks.shape[0]
    n_chunks = count_chunks(n_blocks)
    for k in prange(n_chunks):
        first, last = chunk_range(n_blocks, n_chunks, k)
        most = most_samples(blocks, lay_t, first, last)
        words, scratch = np.empty(most, np.uint64), np.empty(most, np.uint64)
        for j in range(first, last):
            b = blocks[j]
            start = lay_c[b, 0, 0]
            prefetch_ahead(buf, blocks, j, n_blocks, lay_t, lay_c, False)
            status[j] = count_column(buf, start, start + lay_c[b, 0, 1], lay_t[b, 5],
                                     lay_c[b, 0, 2], threshold, value_bits, words, scratch,
                                     ladders[j], True)


@cached(_STAMP)
def _from_tally(op, n, above, equal):
    """The count of ``value OP threshold`` among n values, from how many are
    above the threshold and how many equal it (op: program.COMPARE_CODES)."""
    if op == 0:
        return n - above - equal
    if op == 1:
        return n - above
    if op == 2:
        return above
    if op == 3:
        return above + equal
    if op == 4:
        return equal
    return n - equal


def _twins(func, stamp=_STAMP):
    """The kernel compiled twice: across both cores for many blocks, and
    serially for a handful (a short window), where waking the thread pool costs
    more than it saves.  The serial twin is a copy of the function under its
    own name, because numba's disk cache is keyed by the function's name and
    the two builds must not overwrite each other's cache entries (measured: a
    mixed-up entry made the serial kernel 15x slower).  ``stamp``: what the
    kernel compiles in (jitcache.py), kernels.py's by default."""
    twin = types.FunctionType(func.__code__, func.__globals__, func.__name__ + "_serial",
                              func.__defaults__, func.__closure__)
    twin.__qualname__ = func.__qualname__ + "_serial"
    rename(func, stamp)
    rename(twin, stamp)
    return njit(parallel=True, cache=True)(func), njit(cache=True)(twin)


def _value_histograms(buf, lay_t, lay_c, pred_code, consts, scales, depth, has_pred, value_slot,
                      task_ptr, entry_block, entry_time, task_lo, task_hi, task_base, task_off,
                      task_len, cells, status):
    """Histograms of an integer channel's raw values, one per *task*: task k
    counts the matching samples in [task_lo[k], task_hi[k]) of its blocks
    entry_block[task_ptr[k]:task_ptr[k + 1]] into cells[task_off[k] + raw −
    task_base[k]] (task_len[k] cells; the blocks' statistics bound the raw
    values, so a value outside is damage: ERR_BAD_CODE).  Timestamps are
    decoded only for the entries flagged in ``entry_time`` (a block that the
    task's time range cuts).  Tasks write disjoint cells: no locks."""
    for k in prange(task_ptr.shape[0] - 1):
        base, off, length = task_base[k], task_off[k], U64(task_len[k])
        counts = cells[off:off + task_len[k]]
        # the task's largest block: its scratch is allocated once
        most = most_samples(entry_block, lay_t, task_ptr[k], task_ptr[k + 1])
        t_all, words_all, scratch_all = np.empty(most, np.int64), np.empty(most, np.uint64), \
            np.empty(most, np.uint64)
        for e in range(task_ptr[k], task_ptr[k + 1]):
            b = entry_block[e]
            n = lay_t[b, 5]
            need_time = entry_time[e]
            prefetch_ahead(buf, entry_block, e, task_ptr[k + 1], lay_t, lay_c, need_time)
            t, words, scratch = t_all[:n], words_all[:n], scratch_all[:n]
            rows = n if has_pred else 0          # float rows only for the predicate
            raw = np.empty((lay_c.shape[1], rows), np.float64)
            stack = np.empty((max(1, depth), rows), np.float64)
            if has_pred:
                st = decode_rows(buf, b, n, lay_t, lay_c, need_time, t, raw, words, scratch)
            else:        # the channel's words as they are: no float row
                st = OK
                if need_time:
                    st = decode_time(buf, b, n, lay_t, t, words, scratch)
                if st == OK:
                    start = lay_c[b, value_slot, 0]
                    st = decode_column(buf, start, start + lay_c[b, value_slot, 1], n,
                                       lay_c[b, value_slot, 2], words, scratch)
            if st != OK:
                status[k] = st
                break
            lo, hi = 0, n
            if need_time:
                lo = np.searchsorted(t[:n], task_lo[k])
                hi = np.searchsorted(t[:n], task_hi[k])
            if has_pred:
                run(pred_code, consts, raw, scales, n, stack)
                row, keep = raw[value_slot][lo:hi], stack[0][lo:hi]
                for i in range(hi - lo):          # branch-free: every value is in range
                    c = U64(np.int64(row[i]) - base)
                    if c >= length:
                        status[k] = ERR_BAD_CODE
                        break
                    counts[c] += keep[i] != 0.0
            else:
                values = words.view(np.int64)[lo:hi]
                for i in range(hi - lo):
                    c = U64(values[i] - base)
                    if c >= length:
                        status[k] = ERR_BAD_CODE
                        break
                    counts[c] += 1
            if status[k] != OK:
                break


scan_partials, scan_partials_serial = _twins(_scan_partials)
count_matches, count_matches_serial = _twins(_count_matches)
count_raw_compare, count_raw_compare_serial = _twins(_count_raw_compare)
value_histograms, value_histograms_serial = _twins(_value_histograms)
# A ladder runs over hundreds of blocks (selection.SAMPLED_MIN_BLOCKS) or none:
# no serial twin to compile.
rename(_count_ladder, _STAMP)
count_ladder = njit(parallel=True, cache=True)(_count_ladder)
PARALLEL_MIN_BLOCKS = 64   # below ~250 k samples, waking the thread pool does not pay


@cached(_STAMP)
def gather_block(buf, b, lay_t, lay_c, pred_code, val_code, consts, scales, depth, has_pred,
                 has_value, start_ns, end_ns):
    """Block b's samples in [start, end) that match: (status, times, values, raw rows)."""
    n = lay_t[b, 5]
    t, raw, words, scratch, stack, mask, values = block_scratch(n, lay_c.shape[1], depth)
    status = evaluate_block(buf, b, n, lay_t, lay_c, pred_code, val_code, consts, scales,
                            depth, has_pred, has_value, t, raw, words, scratch, stack, mask, values)
    for i in range(n):
        mask[i] = mask[i] and t[i] >= start_ns and t[i] < end_ns
    return status, t[mask], values[mask], raw[:, mask]


@cached(_STAMP, inline="always")
def _ranks_before(v, t, p, v2, t2, p2):
    """Sample (v, t, p) ranks before (v2, t2, p2) in a top N: larger value,
    then older, then appended first."""
    return v > v2 or (v == v2 and (t < t2 or (t == t2 and p < p2)))


@cached(_STAMP)
def top_blocks(buf, blocks, bounds, pos_base, lay_t, lay_c, pred_code, val_code, consts, scales,
               depth, has_pred, start_ns, end_ns, best_v, best_t, best_p, held):
    """The best len(best_v) samples of ``blocks`` (visited in this order) and
    those already held (best_*[:held[0]], best first), kept best first in a
    sorted array: value, then time, then pos_base[j] + the sample's place in
    its block.  A block whose bound (no value of it exceeds bounds[j]) is
    below the N-th best so far is not decoded.  Returns (status, blocks
    decoded)."""
    n = best_v.shape[0]
    decoded = 0
    for j in range(blocks.shape[0]):
        if held[0] == n and bounds[j] < best_v[n - 1]:
            continue
        b = blocks[j]
        m = lay_t[b, 5]
        t, raw = np.empty(m, np.int64), np.empty((max(1, lay_c.shape[1]), m), np.float64)
        words, scratch = np.empty(m, np.uint64), np.empty(m, np.uint64)
        stack, mask = np.empty((max(1, depth), m), np.float64), np.ones(m, np.bool_)
        status = decode_rows(buf, b, m, lay_t, lay_c, True, t, raw, words, scratch)
        if status != OK:
            return status, decoded
        decoded += 1
        if has_pred:
            run(pred_code, consts, raw, scales, m, stack)
            for i in range(m):
                mask[i] = stack[0, i] != 0.0
        run(val_code, consts, raw, scales, m, stack)
        values = stack[0]
        lo = np.searchsorted(t[:m], start_ns)
        hi = np.searchsorted(t[:m], end_ns)
        floor = best_v[n - 1] if held[0] == n else -np.inf
        for i in range(lo, hi):
            v = values[i]
            if v < floor or v != v or not mask[i]:    # the usual case: one comparison
                continue
            ti, pi = t[i], pos_base[j] + i
            k = held[0]
            if k == n:
                if not _ranks_before(v, ti, pi, best_v[n - 1], best_t[n - 1], best_p[n - 1]):
                    continue
                k = n - 1
            else:
                held[0] = k + 1
            while k > 0 and _ranks_before(v, ti, pi, best_v[k - 1], best_t[k - 1], best_p[k - 1]):
                best_v[k], best_t[k], best_p[k] = best_v[k - 1], best_t[k - 1], best_p[k - 1]
                k -= 1
            best_v[k], best_t[k], best_p[k] = v, ti, pi
            if held[0] == n:
                floor = best_v[n - 1]
    return OK, decoded


@cached(_STAMP, inline="always")
def _fmax(a, b):
    """np.fmax: the larger, NaN losing (the first of equal ones)."""
    return a if (a >= b or b != b) else b


@cached(_STAMP, refcounted=False)
def _emit(out_s, out_e, out_p, count, s, e, p):
    out_s[count], out_e[count], out_p[count] = s, e, p
    return count + 1


def _evaluate_into(buf, blocks, lay_t, lay_c, pred_code, val_code, consts, scales, depth,
                   has_pred, has_value, dest, t_out, mask_out, v_out, status):
    """evaluate_block for each listed block, its n samples written at
    dest[j]: t_out, mask_out and v_out[dest[j]:dest[j] + n]."""
    for j in prange(blocks.shape[0]):
        b = blocks[j]
        n = lay_t[b, 5]
        prefetch_ahead(buf, blocks, j, blocks.shape[0], lay_t, lay_c, True)
        lo = dest[j]
        raw = np.empty((max(1, lay_c.shape[1]), n), np.float64)
        words, scratch = np.empty(n, np.uint64), np.empty(n, np.uint64)
        stack = np.empty((max(1, depth), n), np.float64)
        status[j] = evaluate_block(buf, b, n, lay_t, lay_c, pred_code, val_code, consts, scales,
                                   depth, has_pred, has_value, t_out[lo:lo + n], raw, words,
                                   scratch, stack, mask_out[lo:lo + n], v_out[lo:lo + n])


evaluate_into, evaluate_into_serial = _twins(_evaluate_into)


@cached(_STAMP)
def episode_scan(t_all, mask_all, v_all, start_ns, end_ns, gap_ns, kind, sample_off, sample_len,
                 gapped, break_t, break_last, t_first, t_last, stat_peak, state, peak_state,
                 out_s, out_e, out_p):
    """search.EpisodeBuilder over a run of a query's blocks in time order, in
    one call: entry j is a decoded block (kind 0: its samples at
    sample_off[j]..+sample_len[j] of t_all, mask_all and v_all — the
    predicate and the peak expression — of which those in [start_ns, end_ns)
    count) or a block every sample of which matches (kind 1: t_first[j] to
    t_last[j], peak stat_peak[j]); ``gapped[j]``: skipped blocks come before
    it, the first at break_t[j], the last ending at break_last[j].  state =
    (open, start, last_t) and peak_state = (peak,) carry the open episode
    from call to call.  Closed episodes go to out_* (all of them: the caller
    drops the short ones); returns how many."""
    is_open, ep_start, last_t = state[0] != 0, state[1], state[2]
    peak = peak_state[0]
    flags = mask_all.view(np.uint8)
    count = 0
    for j in range(kind.shape[0]):
        if gapped[j]:        # a skipped block's first sample ends any open episode
            if is_open:
                end = last_t if gap_ns > 0 and break_t[j] - last_t > gap_ns else break_t[j]
                count = _emit(out_s, out_e, out_p, count, ep_start, end, peak)
                is_open = False
            last_t = break_last[j]
        if kind[j] == 1:
            if not is_open:
                is_open, ep_start, peak = True, t_first[j], -np.inf
            if stat_peak[j] > peak:
                peak = stat_peak[j]
            last_t = t_last[j]
            continue
        first = sample_off[j]
        t = t_all[first:first + sample_len[j]]
        mask = mask_all[first:first + sample_len[j]]
        values = v_all[first:first + sample_len[j]]
        lo = np.searchsorted(t, start_ns)
        hi = np.searchsorted(t, end_ns)
        if hi <= lo:
            continue
        if is_open:          # the open episode goes on only if the first sample matches
            broken = gap_ns > 0 and t[lo] - last_t > gap_ns
            if not mask[lo] or broken:
                count = _emit(out_s, out_e, out_p, count, ep_start, last_t if broken else t[lo],
                              peak)
                is_open = False
        carried = is_open
        in_run = False
        run_start, run_peak = np.int64(0), 0.0
        i = lo - 1
        while i + 1 < hi:
            i += 1
            if not (in_run or carried or mask[i]):
                # outside a run a sample that does not match changes nothing:
                # skip the stretch, 8 flags a load where they all are 0 (rare
                # events leave most of a block idle: 1.6 -> 0.2 ns a sample)
                while i + 9 <= hi and load_word_unchecked(flags, U64(first + i + 1)) == 0:
                    i += 8
                while i + 1 < hi and not mask[i + 1]:
                    i += 1
                continue
            broken = i > lo and gap_ns > 0 and t[i] - t[i - 1] > gap_ns
            if in_run and (not mask[i] or broken):       # the run ended at i - 1
                count = _emit(out_s, out_e, out_p, count, run_start,
                              t[i - 1] if broken else t[i], run_peak)
                in_run = False
            if mask[i]:
                v = values[i]
                if in_run:
                    run_peak = _fmax(run_peak, v)
                elif carried:                            # the open episode goes on
                    in_run, carried = True, False
                    run_start, run_peak = ep_start, _fmax(peak, v)
                else:
                    in_run = True
                    run_start, run_peak = t[i], v
        is_open = in_run
        if in_run:
            ep_start, peak = run_start, run_peak
        last_t = t[hi - 1]
    state[0], state[1], state[2] = is_open, ep_start, last_t
    peak_state[0] = peak
    return count
