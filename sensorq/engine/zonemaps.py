"""Zone maps: what block statistics say about a predicate, block by block.

Each block gets a class: NONE (no sample can match: skip it), ALL (every
sample matches: aggregates may come straight from the statistics) or SOME
(decode it).  Value expressions are bounded by interval arithmetic over the
channels' min/max; a NaN anywhere makes a claim of ALL impossible, because a
comparison with NaN is false.  All of it is vectorised over the blocks.
"""
from __future__ import annotations

import numpy as np

from ..query import plan as P
from .derived import derived

NONE, SOME, ALL = 0, 1, 2


class Bounds:
    """Per-block [lo, hi] of a value expression and whether it may be NaN."""

    def __init__(self, lo, hi, maybe_nan):
        unknown = np.isnan(lo) | np.isnan(hi)
        self.lo = np.where(unknown, -np.inf, lo)
        self.hi = np.where(unknown, np.inf, hi)
        self.maybe_nan = maybe_nan | unknown


def channel_stats(index, channel: P.ChannelRef, field: str) -> np.ndarray:
    """A statistic of one channel over all blocks, as float64 in stored units."""
    column = index.entries[:, channel.index][field]
    if channel.dtype.startswith("float"):
        return column.view(np.float64)
    return column.astype(np.float64)


def bounds(expr, index) -> Bounds:
    n_blocks = len(index)
    if isinstance(expr, P.ChannelRef):
        lo, hi = channel_stats(index, expr, "min"), channel_stats(index, expr, "max")
        lo, hi = lo * expr.scale, hi * expr.scale
        if expr.scale < 0:
            lo, hi = hi, lo
        count = index.entries[:, expr.index]["count"]
        return Bounds(lo, hi, count < index.n_samples)
    if isinstance(expr, P.Const):
        v = np.full(n_blocks, float(expr.value))
        return Bounds(v, v, np.zeros(n_blocks, bool))
    if isinstance(expr, P.UnaryOp):
        return _unary(expr.op, bounds(expr.operand, index))
    if isinstance(expr, P.BinaryOp):
        return _binary(expr.op, bounds(expr.left, index), bounds(expr.right, index))
    if isinstance(expr, P.Magnitude):
        parts = [bounds(a, index) for a in expr.args]
        low = sum(np.where((p.lo <= 0) & (p.hi >= 0), 0.0, np.minimum(p.lo ** 2, p.hi ** 2))
                  for p in parts)
        high = sum(np.maximum(p.lo ** 2, p.hi ** 2) for p in parts)
        return Bounds(np.sqrt(low), np.sqrt(high), np.logical_or.reduce([p.maybe_nan for p in parts]))
    raise TypeError(f"not a value expression: {expr!r}")


def _unary(op: str, x: Bounds) -> Bounds:
    with np.errstate(invalid="ignore"):
        if op == "neg":
            return Bounds(-x.hi, -x.lo, x.maybe_nan)
        if op == "abs":
            lo = np.where(x.lo >= 0, x.lo, np.where(x.hi <= 0, -x.hi, 0.0))
            return Bounds(lo, np.maximum(np.abs(x.lo), np.abs(x.hi)), x.maybe_nan)
        # sqrt: negative inputs give NaN
        return Bounds(np.sqrt(np.maximum(x.lo, 0)), np.sqrt(np.maximum(x.hi, 0)),
                      x.maybe_nan | (x.lo < 0))


def _binary(op: str, a: Bounds, b: Bounds) -> Bounds:
    nan = a.maybe_nan | b.maybe_nan
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if op == "+":
            return Bounds(a.lo + b.lo, a.hi + b.hi, nan)
        if op == "-":
            return Bounds(a.lo - b.hi, a.hi - b.lo, nan)
        if op == "*":
            products = np.stack([a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi])
            return Bounds(products.min(0), products.max(0), nan | np.isnan(products).any(0))
        # division by an interval that holds 0 may give anything, and NaN at 0
        spans_zero = (b.lo <= 0) & (b.hi >= 0)
        quotients = np.stack([a.lo / b.lo, a.lo / b.hi, a.hi / b.lo, a.hi / b.hi])
        lo = np.where(spans_zero, -np.inf, quotients.min(0))
        hi = np.where(spans_zero, np.inf, quotients.max(0))
        return Bounds(lo, hi, nan | spans_zero)


def _compare(op: str, a: Bounds, b: Bounds) -> np.ndarray:
    """Class of ``a OP b`` per block."""
    if op == ">":
        true, false = a.lo > b.hi, a.hi <= b.lo
    elif op == ">=":
        true, false = a.lo >= b.hi, a.hi < b.lo
    elif op == "<":
        true, false = a.hi < b.lo, a.lo >= b.hi
    elif op == "<=":
        true, false = a.hi <= b.lo, a.lo > b.hi
    elif op == "==":
        true = (a.lo == a.hi) & (b.lo == b.hi) & (a.lo == b.lo)
        false = (a.hi < b.lo) | (a.lo > b.hi)
    else:
        true = (a.hi < b.lo) | (a.lo > b.hi)
        false = (a.lo == a.hi) & (b.lo == b.hi) & (a.lo == b.lo)
    true = true & ~(a.maybe_nan | b.maybe_nan)
    return np.where(false, NONE, np.where(true, ALL, SOME)).astype(np.int8)


def classify(pred, index) -> np.ndarray:
    """NONE / SOME / ALL per block of ``index`` for predicate ``pred`` (None: ALL),
    kept for the next query over the same blocks (derived.py)."""
    if pred is None:
        return np.full(len(index), ALL, np.int8)
    return derived(index, ("classes", pred), lambda: _classify(pred, index))


def _classify(pred, index) -> np.ndarray:
    """NONE / SOME / ALL per block of ``index`` for predicate ``pred``.
    With NONE < SOME < ALL, ``and`` is the smallest class of its arguments,
    ``or`` the largest and ``not`` the mirror image; an ``and`` stops at an
    argument that leaves every block NONE (an ``or`` at one that leaves every
    block ALL): ``(x > 1g or y > 1g) and z < 0`` never looks at x and y where
    z is never below 0."""
    n_blocks = len(index)
    if isinstance(pred, P.BoolConst):
        return np.full(n_blocks, ALL if pred.value else NONE, np.int8)
    if isinstance(pred, P.RawCompare):
        if pred.channel.dtype.startswith("int"):
            return _raw_integer(pred, index)
        raw = P.ChannelRef(pred.channel.channel, pred.channel.index, pred.channel.dtype, 1.0,
                           pred.channel.unit)
        return _compare(pred.op, bounds(raw, index), bounds(P.Const(pred.threshold), index))
    if isinstance(pred, P.Compare):
        return _compare(pred.op, bounds(pred.left, index), bounds(pred.right, index))
    if isinstance(pred, (P.And, P.Or)):
        conjunction = isinstance(pred, P.And)
        settled = NONE if conjunction else ALL
        classes = None
        for arg in _cheap_first(pred.args):
            c = _classify(arg, index)
            classes = c if classes is None else \
                (np.minimum(classes, c) if conjunction else np.maximum(classes, c))
            if (classes == settled).all():
                break
        return classes
    if isinstance(pred, P.Not):
        return (ALL + NONE - _classify(pred.arg, index)).astype(np.int8)
    raise TypeError(f"not a predicate: {pred!r}")


def _cheap_first(args):
    """Raw comparisons (a look at two statistics) before the rest."""
    return sorted(args, key=lambda a: not isinstance(a, P.RawCompare))


def _raw_integer(pred, index) -> np.ndarray:
    """Class of ``channel OP threshold`` on an integer channel, straight from
    its min and max (integers; the threshold is an integer too)."""
    column = index.entries[:, pred.channel.index]
    lo, hi, k = column["min"], column["max"], pred.threshold
    op = pred.op
    if op == ">":
        true, false = lo > k, hi <= k
    elif op == ">=":
        true, false = lo >= k, hi < k
    elif op == "<":
        true, false = hi < k, lo >= k
    elif op == "<=":
        true, false = hi <= k, lo > k
    elif op == "==":
        true, false = (lo == k) & (hi == k), (hi < k) | (lo > k)
    else:
        true, false = (hi < k) | (lo > k), (lo == k) & (hi == k)
    if true.any():                                 # a missing value passes no comparison
        claimed = np.flatnonzero(true)
        true[claimed] = column["count"][claimed] == index.n_samples[claimed]
    return (SOME + true.view(np.int8) - false.view(np.int8)).astype(np.int8)


def residual_groups(pred, index, rows) -> list:
    """Blocks ``rows`` grouped by what is left of ``pred`` once each block's
    statistics have settled what they can: in an ``and``, a conjunct true for
    every sample of the block is dropped (and one false for every sample
    makes the whole predicate false: such blocks are skipped before this);
    in an ``or``, a disjunct false for every sample is dropped.  So
    ``count where x > 100 and z > 0`` on blocks whose z never falls to 0
    evaluates (and decodes) ``x > 100`` only.  Each sample gets the same truth
    value from its block's residual as from ``pred``.  Returns [(residual,
    rows)] in which the rows of all groups together are ``rows``, ascending
    within each group."""
    rows = np.asarray(rows, np.int64)
    if not isinstance(pred, (P.And, P.Or, P.Not)) or len(rows) == 0:
        return [(pred, rows)]
    subset = index.select(rows)
    nodes, classes = [], []

    def walk(node):
        nodes.append(node)
        classes.append(classify(node, subset))
        for child in (node.args if isinstance(node, (P.And, P.Or)) else
                      (node.arg,) if isinstance(node, P.Not) else ()):
            walk(child)
    walk(pred)
    signature = np.stack(classes)                      # node × block
    kinds, which = np.unique(signature, axis=1, return_inverse=True)
    which = np.ravel(which)
    groups = []
    for g in range(kinds.shape[1]):
        settled = {id(node): int(c) for node, c in zip(nodes, kinds[:, g])}
        groups.append((_residual(pred, settled), rows[which == g]))
    return groups


def _residual(node, settled):
    c = settled[id(node)]
    if c != SOME:
        return P.BoolConst(c == ALL)
    if isinstance(node, (P.And, P.Or)):
        drop = ALL if isinstance(node, P.And) else NONE
        kept = tuple(_residual(a, settled) for a in node.args if settled[id(a)] != drop)
        return kept[0] if len(kept) == 1 else type(node)(kept)
    if isinstance(node, P.Not):
        return P.Not(_residual(node.arg, settled))
    return node
