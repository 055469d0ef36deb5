"""What the device must answer, computed on the host with plain numpy.

An independent statement of the device's semantics (docs/device.md), used to
check the C VM: the predicate is evaluated over the raw integer columns, the
window is the plan's, shifted to the "now" the device is run with, and the
answer is in raw stored units — the mean rounded half away from zero, a sum
outside int64 an overflow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..query import plan as P

INT64_MIN, INT64_MAX = -2**63, 2**63 - 1


@dataclass(frozen=True)
class Expected:
    """value is None when there is none (no matching sample, or an overflow)."""
    value: Optional[int]
    count: int
    overflow: bool = False


def round_half_away(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to the nearest integer, halves away from zero."""
    q, r = divmod(abs(numerator), denominator)
    if 2 * r >= denominator:
        q += 1
    return q if numerator >= 0 else -q


def round_half_away_float(x: float) -> int:
    """The same rounding of a float (for comparing with the engine's avg)."""
    return int(np.sign(x) * np.floor(abs(x) + 0.5))


def predicate_mask(pred, columns: Sequence[np.ndarray], n: int) -> np.ndarray:
    if pred is None:
        return np.ones(n, bool)
    if isinstance(pred, P.BoolConst):
        return np.full(n, bool(pred.value))
    if isinstance(pred, P.RawCompare):
        x = np.asarray(columns[pred.channel.index]).astype(object)   # exact big-int comparison
        c = int(pred.threshold)
        ops = {"<": x < c, "<=": x <= c, ">": x > c, ">=": x >= c, "==": x == c, "!=": x != c}
        return np.asarray(ops[pred.op], bool)
    if isinstance(pred, P.Not):
        return ~predicate_mask(pred.arg, columns, n)
    if isinstance(pred, P.And):
        out = np.ones(n, bool)
        for a in pred.args:
            out &= predicate_mask(a, columns, n)
        return out
    if isinstance(pred, P.Or):
        out = np.zeros(n, bool)
        for a in pred.args:
            out |= predicate_mask(a, columns, n)
        return out
    raise TypeError(f"not a device predicate: {pred!r}")


def window_mask(plan, t: np.ndarray, now_ns: Optional[int] = None) -> np.ndarray:
    """Samples inside the plan's [start, end), both shifted by now_ns - plan.now.ns."""
    shift = 0 if now_ns is None else int(now_ns) - int(plan.now.ns)
    t = np.asarray(t, np.int64).astype(object)
    mask = np.ones(len(t), bool)
    if plan.time.start_ns is not None:
        mask &= np.asarray(t >= _clamp(plan.time.start_ns + shift), bool)
    if plan.time.end_ns is not None:
        mask &= np.asarray(t < _clamp(plan.time.end_ns + shift), bool)
    return mask


def _clamp(x: int) -> int:
    return max(INT64_MIN, min(INT64_MAX, int(x)))


def expected_answer(plan: P.AggregateQuery, t: np.ndarray, columns: Sequence[np.ndarray],
                    now_ns: Optional[int] = None) -> Expected:
    """The device's answer to ``plan`` over the samples (t, columns), in append order."""
    n = len(t)
    mask = predicate_mask(plan.where, columns, n) & window_mask(plan, t, now_ns)
    count = int(mask.sum())
    if plan.aggregate == "count":
        return Expected(count, count)
    values = [int(v) for v in np.asarray(columns[plan.expr.index])[mask]]
    if plan.aggregate in ("sum", "avg"):
        total = sum(values)
        if not INT64_MIN <= total <= INT64_MAX:
            return Expected(None, count, overflow=True)
        if plan.aggregate == "sum":
            return Expected(total if count else None, count)
        return Expected(round_half_away(total, count) if count else None, count)
    if not values:
        return Expected(None, count)
    pick = {"min": min, "max": max, "first": lambda v: v[0], "last": lambda v: v[-1]}
    return Expected(pick[plan.aggregate](values), count)
