"""Predicates of a typed plan, built simplified: the planner's pass that puts
``channel OP constant`` into stored units on the integer grid and folds
AND / OR / NOT of constants and exact negations (integer channels have no NaN).

:func:`raw_compare` normalises one comparison; :func:`and_`, :func:`or_` and
:func:`negate` build the boolean nodes flattened, with constants folded.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .plan import And, BoolConst, ChannelRef, Not, Or, Predicate, RawCompare

SNAP_TOLERANCE = 1e-12      # relative: 0.29degC / 0.01 is 28.999999999999996; it means 29
_INVERSE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


# --- integer normalisation of raw comparisons ------------------------------------------------

def raw_compare(ref: ChannelRef, op: str, value: float, exact: bool = False) -> Predicate:
    """``channel OP value`` (value in the channel's unit) with the threshold in
    stored units; on integer channels, moved onto the integer grid.  ``exact``
    says the value is a literal as written: then it is not snapped to a nearby
    integer (dividing by a scale makes it inexact again)."""
    threshold = value / ref.scale if ref.scale != 1.0 else value
    if ref.scale < 0:          # physical = raw * scale: a negative scale turns the order round
        op = {">": "<", "<": ">", ">=": "<=", "<=": ">="}.get(op, op)
    if not ref.dtype.startswith("int"):
        if math.isnan(threshold):
            return BoolConst(op == "!=")
        return RawCompare(ref, op, float(threshold))
    return _integer_compare(ref, op, threshold, snap=not (exact and ref.scale == 1.0))


def _integer_compare(ref: ChannelRef, op: str, t: float, snap: bool = True) -> Predicate:
    info = np.iinfo(ref.dtype)
    lo, hi = int(info.min), int(info.max)
    if math.isnan(t):
        return BoolConst(op == "!=")
    if math.isinf(t):
        return BoolConst(compare(op, 0.0, t))
    nearest = round(t)
    if t == nearest or (snap and abs(t - nearest) <= SNAP_TOLERANCE * max(1.0, abs(t))):
        k = int(nearest)
    elif op in ("==", "!="):
        return BoolConst(op == "!=")       # no integer equals 1999.5
    elif op in (">", ">="):
        op, k = ">=", math.ceil(t)
    else:
        op, k = "<=", math.floor(t)
    return _in_range(ref, op, k, lo, hi)


def _in_range(ref: ChannelRef, op: str, k: int, lo: int, hi: int) -> Predicate:
    """A test every stored value passes, or none does, becomes a BoolConst."""
    passes_lo, passes_hi = compare(op, lo, k), compare(op, hi, k)
    if op in ("==", "!="):
        if lo <= k <= hi:
            return RawCompare(ref, op, float(k))
        return BoolConst(op == "!=")
    if passes_lo and passes_hi:    # monotone tests: both ends decide
        return BoolConst(True)
    if not passes_lo and not passes_hi:
        return BoolConst(False)
    return RawCompare(ref, op, float(k))


def compare(op: str, a: float, b: float) -> bool:
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op]


# --- boolean simplification -------------------------------------------------------------------

def and_(args) -> Predicate:
    """The conjunction of ``args``: nested ANDs flattened, true dropped, false absorbing."""
    return _junction(And, args, absorbing=False)


def or_(args) -> Predicate:
    """The disjunction of ``args``: nested ORs flattened, false dropped, true absorbing."""
    return _junction(Or, args, absorbing=True)


def _junction(kind, args, absorbing: bool) -> Predicate:
    flat: list[Predicate] = []
    for arg in args:
        for part in (arg.args if isinstance(arg, kind) else (arg,)):
            if part == BoolConst(absorbing):
                return BoolConst(absorbing)
            if part != BoolConst(not absorbing):
                flat.append(part)
    if not flat:
        return BoolConst(not absorbing)
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


def _exact_negation(pred: Predicate) -> Optional[Predicate]:
    """The negation of ``pred`` without a Not node, when that is exact: integer
    channels have no NaN, so ``not x > 5`` is ``x <= 5`` there (not on floats)."""
    if isinstance(pred, BoolConst):
        return BoolConst(not pred.value)
    if isinstance(pred, Not):
        return pred.arg
    if isinstance(pred, RawCompare) and pred.channel.dtype.startswith("int"):
        return RawCompare(pred.channel, _INVERSE[pred.op], pred.threshold)
    if isinstance(pred, (And, Or)):
        parts = [_exact_negation(a) for a in pred.args]
        if all(p is not None for p in parts):
            return or_(parts) if isinstance(pred, And) else and_(parts)
    return None


def negate(pred: Predicate) -> Predicate:
    exact = _exact_negation(pred)
    return exact if exact is not None else Not(pred)
