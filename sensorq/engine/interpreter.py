"""The interpreted tier: the kernels' work (kernels.py, vm.py) in plain numpy.

Why a second tier: a fresh process that answers one small query — the command
line, most often — would spend about 0.4 s importing numba and loading its
compiled kernels from the disk cache (about 5 s compiling them, the very first
time) to decode a handful of blocks.  This tier decodes those blocks with the
numpy decoder (codec/npdecode.py) and runs the same programs over them with the
same arithmetic in the same order, so its answers equal the compiled tier's
bit for bit; the tests run queries through both and compare.  ``tiers.py``
decides which tier runs a query.

Every function here mirrors the kernel of the same name and takes the same
layouts; a block that does not decode raises CorruptDataError.
"""
from __future__ import annotations

import numpy as np

from ..codec import npdecode
from ..codec.codes import DECIMAL, ERR_BAD_CODE, FLOATBITS, LADDER_STEPS, check_status
from .aggregates import (F_FIRST, F_LAST, F_M2, F_MAX, F_MEAN, F_MIN, F_SUM, F_TW_SUM, I_COUNT,
                         I_TFIRST, I_TLAST, I_TMAX, I_TMIN, I_TW_NS, WANT_EXTREMES, WANT_M2)
from .layout import N_SAMPLES, T_FIRST, TICK, TIME_CODEC, TIME_LEN, TIME_START
from .program import (ABS, ADD, AND, ARG, CMP, CMPK, COMPARE_CODES, CONST, DIV, FALSE, LOAD, MAG,
                      MAGLOAD, MUL, NEG, NOT, OR, RAWCMP, SQRT, SUB, TRUE)

FLOAT32 = 5   # storage type codes from this one on are floats (as in kernels.py)
ALP = DECIMAL | FLOATBITS     # both float mode bits: an ALP section (codec/alp.py)


# --- decoding --------------------------------------------------------------------------

def _words(buf, start, length, n, codec) -> np.ndarray:
    status, words = npdecode.decode_column(buf, start, start + length, n, codec)
    check_status(status)
    return words


def decode_time(layout, b) -> np.ndarray:
    lay = layout.lay_t[b]
    start = lay[TIME_START]
    status, words = npdecode.decode_time_words(layout.buf, start, start + lay[TIME_LEN], lay[N_SAMPLES],
                                               lay[TIME_CODEC])
    check_status(status)
    return npdecode.time_values(words, int(lay[T_FIRST]), int(lay[TICK]))


def decode_channels(layout, b) -> np.ndarray:
    """Block b's channel slots as rows of float64 in stored units."""
    n = int(layout.lay_t[b, N_SAMPLES])
    raw = np.empty((max(1, layout.lay_c.shape[1]), n))
    for s, (start, length, codec, exponent, dtype) in enumerate(layout.lay_c[b].tolist()):
        if dtype >= FLOAT32 and codec & ALP == ALP:
            status, values = npdecode.alp_values(layout.buf, start, start + length, n, codec,
                                                 np.float32 if dtype == FLOAT32 else np.float64)
            check_status(status)
            raw[s] = values
            continue
        words = _words(layout.buf, start, length, n, codec)
        if dtype < FLOAT32:
            raw[s] = words.view(np.int64).astype(np.float64)
        else:
            raw[s] = npdecode.float_values(words, bool(codec & DECIMAL), exponent, dtype == FLOAT32)
    return raw


# --- the VM ---------------------------------------------------------------------------

def run(code, consts, raw, scales, n) -> np.ndarray:
    """vm.run over whole rows: the value of ``code`` for each of the n samples."""
    stack = []
    pc = 0
    with np.errstate(all="ignore"):
        while pc < len(code):
            op, a, b = (int(v) for v in code[pc])
            pc += 1
            if op == ARG:
                continue
            if op == LOAD:
                stack.append(raw[a, :n] * scales[a])
            elif op == CONST:
                stack.append(np.full(n, consts[a]))
            elif op == RAWCMP:
                stack.append(_compare(raw[a, :n], b, consts[code[pc, 1]]))
                pc += 1
            elif op in (TRUE, FALSE):
                stack.append(np.full(n, 1.0 if op == TRUE else 0.0))
            elif op in _UNARY:
                stack.append(_UNARY[op](stack.pop()))
            elif op == MAGLOAD:      # vm._magnitude_of_rows: v0², then + v1², …
                slots = [int(code[pc + k, 1]) for k in range(a)]
                pc += a
                total = raw[slots[0], :n] * scales[slots[0]]
                total = total * total
                for slot in slots[1:]:
                    v = raw[slot, :n] * scales[slot]
                    total += v * v
                stack.append(np.sqrt(total))
            elif op == CMPK:
                stack.append(_compare(stack.pop(), b, consts[a]))
            elif op == MAG:
                total = np.zeros(n)
                for x in stack[len(stack) - a:]:   # summed in order, as the kernel does
                    total += x * x
                del stack[len(stack) - a:]
                stack.append(np.sqrt(total))
            elif op == CMP:
                y = stack.pop()
                stack.append(_compare(stack.pop(), b, y))
            else:
                y = stack.pop()
                stack.append(_binary(op, stack.pop(), y))
    return stack[0]


# program.COMPARE_CODES, in code order
_COMPARISONS = (np.less, np.less_equal, np.greater, np.greater_equal, np.equal, np.not_equal)
_NOT_EQUAL = COMPARE_CODES["!="]


def _compare(x, op, y) -> np.ndarray:
    """x OP y as 1.0 / 0.0; false whenever either side is NaN (also for !=)."""
    result = _COMPARISONS[op](x, y)
    if op == _NOT_EQUAL:
        result &= ~(np.isnan(x) | np.isnan(y))
    return result.astype(np.float64)


def _sqrt(x):
    return np.where(x >= 0, np.sqrt(x), np.nan)


_UNARY = {NEG: np.negative, ABS: np.abs, SQRT: _sqrt, NOT: lambda x: 1.0 - x}


def _binary(op, x, y) -> np.ndarray:
    if op == ADD:
        return x + y
    if op == SUB:
        return x - y
    if op == MUL:
        return x * y
    if op == DIV:
        return np.where(y != 0, x / y, np.nan)
    if op == AND:
        return ((x != 0) & (y != 0)).astype(np.float64)
    assert op == OR, f"opcode {op} is not binary"
    return ((x != 0) | (y != 0)).astype(np.float64)


# --- kernels ------------------------------------------------------------------------------

def evaluate_block(layout, b, pred_code, val_code, consts, scales, has_pred, has_value):
    """Timestamps, raw channel rows, predicate mask and values of block b."""
    n = int(layout.lay_t[b, N_SAMPLES])
    t = decode_time(layout, b)
    raw = decode_channels(layout, b)
    mask = run(pred_code, consts, raw, scales, n) != 0.0 if has_pred else np.ones(n, bool)
    values = run(val_code, consts, raw, scales, n) if has_value else np.zeros(n)
    return t, raw, mask, values


def gather_block(layout, b, pred_code, val_code, consts, scales, has_pred, has_value,
                 start_ns, end_ns):
    """Block b's samples in [start, end) that match: (times, values, raw rows)."""
    t, raw, mask, values = evaluate_block(layout, b, pred_code, val_code, consts, scales,
                                          has_pred, has_value)
    mask &= (t >= start_ns) & (t < end_ns)
    return t[mask], values[mask], raw[:, mask]


def top_blocks(layout, blocks, bounds, pos_base, pred_code, val_code, consts, scales, has_pred,
               has_value, start_ns, end_ns, best_v, best_t, best_p, held) -> int:
    """kernels.top_blocks: the best samples of ``blocks`` merged into best_*;
    returns the blocks decoded."""
    n, decoded, j = len(best_v), 0, 0
    while j < len(blocks):
        if held[0] == n:         # to the next block whose bound reaches the N-th best (a
            reach = np.flatnonzero(bounds[j:] >= best_v[n - 1])    # test a block: ~0.2 µs)
            if not len(reach):
                break
            j += int(reach[0])
        b = blocks[j]
        j += 1
        decoded += 1
        t, _, mask, values = evaluate_block(layout, b, pred_code, val_code, consts, scales,
                                            has_pred, has_value)
        picked = np.flatnonzero(mask & (t >= start_ns) & (t < end_ns) & ~np.isnan(values))
        h = int(held[0])
        # only values at least the N-th best (held, or of this block) can
        # enter: the sort below is then of a few, not of the block's samples
        if h == n:
            picked = picked[values[picked] >= best_v[n - 1]]
        elif len(picked) > n:
            cut = len(picked) - n
            picked = picked[values[picked] >= np.partition(values[picked], cut)[cut]]
        v = np.concatenate([best_v[:h], values[picked]])
        tt = np.concatenate([best_t[:h], t[picked]])
        p = np.concatenate([best_p[:h], pos_base[j - 1] + picked])
        order = np.lexsort((p, tt, -v))[:n]
        held[0] = len(order)
        best_v[:len(order)], best_t[:len(order)], best_p[:len(order)] = v[order], tt[order], \
            p[order]
    return decoded


def count_matches(layout, blocks, pred_code, consts, scales, start_ns, end_ns, need_time):
    counts = np.zeros(len(blocks), np.int64)
    for j, b in enumerate(blocks):
        n = int(layout.lay_t[b, N_SAMPLES])
        hit = run(pred_code, consts, decode_channels(layout, b), scales, n) != 0.0
        counts[j] = np.count_nonzero(hit & _in_window(layout, b, need_time, start_ns, end_ns))
    return counts


def count_raw_compare(layout, blocks, op, threshold, start_ns, end_ns, need_time):
    """``count where CHANNEL OP INTEGER``: the words compared as int64."""
    counts = np.zeros(len(blocks), np.int64)
    for j, b in enumerate(blocks):
        start, length, codec = layout.lay_c[b, 0, :3]
        values = _words(layout.buf, start, length, int(layout.lay_t[b, N_SAMPLES]), codec)
        hit = _COMPARISONS[op](values.view(np.int64), threshold)
        counts[j] = np.count_nonzero(hit & _in_window(layout, b, need_time, start_ns, end_ns))
    return counts


def count_ladder(layout, blocks, threshold):
    """tiers.CompiledTier.ladder: over whole blocks, how many words (as int64)
    are at least threshold + s, for s = 0..LADDER_STEPS."""
    steps = threshold + np.arange(LADDER_STEPS + 1)
    ladder = np.zeros(LADDER_STEPS + 1, np.int64)
    for b in blocks:
        start, length, codec = layout.lay_c[b, 0, :3]
        values = _words(layout.buf, start, length, int(layout.lay_t[b, N_SAMPLES]), codec)
        ladder += len(values) - np.searchsorted(np.sort(values.view(np.int64)), steps)
    return ladder


def _in_window(layout, b, need_time, start_ns, end_ns):
    if not need_time:
        return True
    t = decode_time(layout, b)
    return (t >= start_ns) & (t < end_ns)


def value_histograms(layout, pred_code, consts, scales, has_pred, value_slot, task_ptr,
                     entry_block, entry_time, task_lo, task_hi, task_base, task_off, task_len,
                     cells):
    """kernels.value_histograms: per task, the matching samples' raw values of
    one integer channel counted into its cells."""
    for k in range(len(task_ptr) - 1):
        base, off, length = int(task_base[k]), int(task_off[k]), int(task_len[k])
        for e in range(task_ptr[k], task_ptr[k + 1]):
            b = int(entry_block[e])
            n = int(layout.lay_t[b, N_SAMPLES])
            raw = decode_channels(layout, b)
            lo, hi = 0, n
            if entry_time[e]:
                t = decode_time(layout, b)
                lo, hi = np.searchsorted(t, task_lo[k]), np.searchsorted(t, task_hi[k])
            codes = raw[value_slot, lo:hi].astype(np.int64) - base
            if len(codes) and (codes.min() < 0 or codes.max() >= length):
                check_status(ERR_BAD_CODE)      # outside the block's statistics: damage
            if has_pred:
                codes = codes[(run(pred_code, consts, raw, scales, n) != 0.0)[lo:hi]]
            cells[off:off + length] += np.bincount(codes, minlength=length)


def scan_partials(layout, blocks, pred_code, val_code, consts, scales, has_pred, has_value,
                  start_ns, end_ns, slots, fp, ip):
    """kernels.scan_partials: each block's slots (executor.Slots) filled from its samples."""
    for j, b in enumerate(blocks):
        t, _, mask, values = evaluate_block(layout, b, pred_code, val_code, consts, scales,
                                            has_pred, has_value)
        keep = mask & ~np.isnan(values) if has_value else mask
        base, bucket_ns = slots.base[j], slots.bucket_ns
        for s in range(slots.count[j]):
            _init_slot(fp, ip, base + s)
            lo_t, hi_t = start_ns, end_ns
            if bucket_ns > 0:
                lo_t = max(lo_t, int(slots.bucket[base + s]) * bucket_ns)
                hi_t = min(hi_t, (int(slots.bucket[base + s]) + 1) * bucket_ns)
            lo, hi = np.searchsorted(t, lo_t), np.searchsorted(t, hi_t)
            _fold_stretch(fp, ip, base + s, t, values, lo + np.flatnonzero(keep[lo:hi]),
                          slots.wants)
        if slots.time_weighted:
            _add_holds(fp, ip, t, values, keep & (t >= start_ns) & (t < end_ns), j, slots,
                       end_ns, has_value)


def _add_holds(fp, ip, t, values, held, j, slots, end_ns, has_value):
    """The kernel's time weights: each held sample's value holds until the next
    sample (at most the gap limit, never past the window), split at bucket
    edges; each slot adds its pieces in time order, as the kernel does."""
    nxt = np.append(t[1:], slots.next_t[j])
    if slots.gap_ns > 0:
        nxt = np.minimum(nxt, t + slots.gap_ns)
    t0, t1, v = t[held], np.minimum(nxt, end_ns)[held], values[held]
    t0, t1, v = t0[t0 < t1], t1[t0 < t1], v[t0 < t1]
    bucket_ns = slots.bucket_ns
    if bucket_ns > 0:   # one piece per bucket an interval touches
        pieces = (t1 - 1) // bucket_ns - t0 // bucket_ns + 1
        first = np.repeat(t0 // bucket_ns, pieces) + \
            (np.arange(pieces.sum()) - np.repeat(np.cumsum(pieces) - pieces, pieces))
        start = np.maximum(np.repeat(t0, pieces), first * bucket_ns)
        end = np.minimum(np.repeat(t1, pieces), (first + 1) * bucket_ns)
        v = np.repeat(v, pieces)
        slot = _find_slots(slots.bucket, slots.base[j], slots.count[j], first)
    else:
        start, end, slot = t0, t1, np.full(len(t0), slots.base[j])
    inside = slot >= 0    # the kernel stops at its last slot
    start, end, v, slot = start[inside], end[inside], v[inside], slot[inside]
    if len(slot) == 0:
        return
    # a slot's pieces are consecutive, in time order: one run per slot
    runs = np.flatnonzero(np.r_[True, slot[1:] != slot[:-1]])
    ns = end - start
    ip[slot[runs], I_TW_NS] += np.add.reduceat(ns, runs)
    if has_value:
        fp[slot[runs], F_TW_SUM] = _run_sums(v * (ns * 1e-9), runs)


def _find_slots(slot_bucket, base, count, buckets):
    """kernels.find_slot for many buckets: their slots among the block's, or -1."""
    own = slot_bucket[base:base + count]
    if count == 0:
        return np.full(len(buckets), -1)
    at = np.minimum(np.searchsorted(own, buckets), count - 1)
    return np.where(own[at] == buckets, base + at, -1)


def _init_slot(fp, ip, k):
    fp[k] = 0.0
    fp[k, F_MIN], fp[k, F_MAX] = np.inf, -np.inf
    fp[k, F_FIRST] = fp[k, F_LAST] = np.nan
    ip[k, [I_COUNT, I_TW_NS, I_TMIN, I_TMAX]] = 0


def _fold_stretch(fp, ip, k, t, values, picked, wants):
    """The kernel's fold of one slot's samples: sequential sums (cumsum adds
    in the same order, from the same 0.0), and as the aggregate wants them the
    first minimum and maximum and the second moment about the mean."""
    if len(picked) == 0:
        return
    v = values[picked]
    ip[k, I_COUNT] = len(picked)
    fp[k, F_SUM] = _sequential_sum(v)
    fp[k, F_FIRST], ip[k, I_TFIRST] = v[0], t[picked[0]]
    fp[k, F_LAST], ip[k, I_TLAST] = v[-1], t[picked[-1]]
    if wants & WANT_EXTREMES:
        low, high = picked[np.argmin(v)], picked[np.argmax(v)]
        fp[k, F_MIN], ip[k, I_TMIN] = values[low], t[low]
        fp[k, F_MAX], ip[k, I_TMAX] = values[high], t[high]
    if wants & WANT_M2:
        fp[k, F_MEAN] = mean = fp[k, F_SUM] / len(picked)
        fp[k, F_M2] = _sequential_sum((v - mean) * (v - mean))


def _run_sums(x, runs, long_run: int = 64) -> np.ndarray:
    """The kernel's sum of each run x[runs[i]:runs[i + 1]] — 0.0 + x0 + x1 + …
    in that order — vectorised across runs one position at a time; the
    few long runs (big buckets) are summed one by one."""
    lengths = np.diff(np.r_[runs, len(x)])
    sums = np.zeros(len(runs))
    short = np.flatnonzero(lengths <= long_run)
    for at in range(int(lengths[short].max(initial=0))):
        short = short[lengths[short] > at]
        sums[short] += x[runs[short] + at]
    for k in np.flatnonzero(lengths > long_run).tolist():
        sums[k] = _sequential_sum(x[runs[k]:runs[k] + lengths[k]])
    return sums


def _sequential_sum(v) -> float:
    """0.0 + v[0] + v[1] + … in that order, as the kernels add (np.sum would
    add pairwise and round differently)."""
    return float(np.cumsum(np.concatenate([[0.0], v]))[-1])

