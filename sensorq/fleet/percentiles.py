"""Exact percentiles over a fleet: the engine's radix selection
(engine/selection.py), its passes spread over the devices.

The values are mapped to order-preserving 64-bit keys (selection.float_keys).
A round asks every device, for each group (a time bucket, of one label value
with ``by LABEL``) still open, to count its keys in a key range into 2^bits
bins; the counts are summed over the devices, and the bin that holds the
wanted rank becomes the next round's range, as one cache's passes do.  A
group is settled when its range holds one key, when all its keys are equal,
when the two ranks to interpolate fall into neighbouring bins (then the
devices send the largest key of one and the smallest of the other), or when
the range holds few enough keys to be sent and sorted (GATHER_LIMIT over
every group of a round: 2 M keys, 16 MB).  The answer is then numpy's linear percentile of
all the fleet's values, computed as selection.py computes it: the same
number, bit for bit, that one cache holding all the data gives.

Each round reads the devices' values again; a worker keeps the keys it
decoded in the first round for the later ones, within MEMO_BYTES (beyond
that it decodes again), and after each round only those in the ranges still
counted.  Transfers are counts of non-empty bins and, at the
end, at most GATHER_LIMIT keys.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..engine import selection as S
from ..engine.limits import HOW_TO_RAISE
from ..errors import RowLimitError

KEY_MAX = S.KEY_MAX
BITS_ONE = 16                   # bins per round for one group: 65 536, as the engine
DENSE_COUNTERS = 1 << 22        # counters a device allocates at once (32 MB)
GATHER_LIMIT = 1 << 21          # keys sent and sorted in one round, over all groups (16 MB)
MEMO_BYTES = int(os.environ.get("SENSORQ_FLEET_MEMO_MB", "1024")) << 20
START = {"start": True, "bits": BITS_ONE}    # the first round: every bucket, every key


# --- the device's side ---------------------------------------------------------------------

_memo: OrderedDict = OrderedDict()
_memo_lock = threading.Lock()


def _values(view, plan, request, path):
    """(bucket ids or None without buckets, keys, data span) of the query's
    matching values, in time order; from the worker's memo when an earlier
    round of the same query kept them."""
    key = (path, request.token, plan.time.start_ns, plan.time.end_ns)
    with _memo_lock:
        kept = _memo.get(key)
    if kept is not None:
        return kept
    from ..engine import tiers
    from ..engine.program import compile_query
    from ..engine.zonemaps import NONE, classify
    index = view.blocks(plan.stream, plan.time.start_ns, plan.time.end_ns)
    start, end = plan.time.bounds()
    programs = compile_query(plan.where, plan.expr)
    rows = np.flatnonzero(classify(plan.where, index) != NONE)
    tier = tiers.choose(request.engine,
                        lambda: tiers.scan_values(index, rows, programs.channels))
    source = S.ValueSource(tier, index, rows, programs, plan.expr, start, end)
    times, keys = [], []
    for t, v in source.samples():
        keys.append(S.float_keys(v))
        if plan.bucket_ns:
            times.append(t // plan.bucket_ns)
    k = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    b = (np.concatenate(times) if times else np.zeros(0, np.int64)) if plan.bucket_ns else None
    span = (int(index.t_first[0]), int(index.t_last[-1])) if len(index) else (None, None)
    kept = (b, k, span)
    if k.nbytes * (2 if b is not None else 1) <= MEMO_BYTES:
        with _memo_lock:
            _memo[key] = kept
            while sum(_size(v) for v in _memo.values()) > MEMO_BYTES:
                _memo.popitem(last=False)
    return kept


def _size(kept) -> int:
    return kept[1].nbytes + (kept[0].nbytes if kept[0] is not None else 0)


def forget_values(token: str) -> None:
    """Drop what a finished query kept (it is also evicted by newer ones)."""
    with _memo_lock:
        for key in [k for k in _memo if k[1] == token]:
            del _memo[key]


def device_round(view, plan, request, path) -> dict:
    """One round of the selection on this device: counts (``hist``), bin ends
    (``ends``) and keys (``gather``) for the groups asked about.  Without
    buckets ``b`` is None: every value belongs to the one group, 0."""
    b, k, span = _values(view, plan, request, path)
    ask = request.select
    out = {"span": span}
    if ask.get("start"):
        out["hist"] = _hist(b, k, None, ask["bits"])
    if ask.get("hist") is not None:
        out["hist"] = _hist(b, k, ask["hist"], ask["bits"])
    if ask.get("ends") is not None:
        out["ends"] = _ends(b, k, ask["ends"])
    if ask.get("gather") is not None:
        out["gather"] = _gather(b, k, ask["gather"])
    if not ask.get("start"):
        _keep_only(path, request, plan, ask.get("hist"), b, k, span)
    return out


def _keep_only(path, request, plan, hist, b, k, span) -> None:
    """After a round, a group's later ranges lie inside this round's: the memo
    keeps only the keys of the groups still counted, in their ranges."""
    key = (path, request.token, plan.time.start_ns, plan.time.end_ns)
    with _memo_lock:
        if key not in _memo:
            return
        if hist is None:
            del _memo[key]
            return
        ok, _ = _where(b, k, hist)
        _memo[key] = (None if b is None else b[ok], k[ok], span)


def _where(b, k, groups):
    """(which values lie in their request's key range, the request of each of
    those): requests are positions in ``groups``' sorted buckets."""
    buckets, lo, hi = groups[0], groups[1], groups[2]
    if b is None:                           # one group (no buckets): no lookup needed
        ok = (k >= lo[0]) & (k <= hi[0]) if len(buckets) else np.zeros(len(k), bool)
        return ok, np.zeros(int(ok.sum()), np.int64)
    pos = np.searchsorted(buckets, b)
    ok = pos < len(buckets)
    ok[ok] = buckets[pos[ok]] == b[ok]
    ok[ok] = (k[ok] >= lo[pos[ok]]) & (k[ok] <= hi[pos[ok]])
    return ok, pos[ok]


def _hist(b, k, groups, bits: int) -> dict:
    """Non-empty bins per request: (request, bin, count) and each request's
    smallest and largest key.  ``groups`` None: the first round, every bucket
    the device has over the whole key range (requests are then bucket ids;
    they come in time order, so never decreasing)."""
    if groups is None and b is None:
        names, req = np.zeros(1 if len(k) else 0, np.int64), None
        bins = (k >> np.uint64(64 - bits)).astype(np.int64)
    elif groups is None:
        first = np.r_[True, b[1:] != b[:-1]] if len(b) else np.zeros(0, bool)
        names, req = b[first], np.cumsum(first) - 1
        bins = (k >> np.uint64(64 - bits)).astype(np.int64)
    else:
        ok, req = _where(b, k, groups)
        names, k = np.arange(len(groups[0])), k[ok]
        bins = ((k - groups[1][req]) >> groups[3][req]).astype(np.int64)
    if not len(k):
        z = np.zeros(0, np.int64)
        return {"req": z, "bin": z, "count": z, "kreq": z, "kmin": z.astype(np.uint64),
                "kmax": z.astype(np.uint64)}
    nbins = 1 << bits
    if len(names) * nbins <= DENSE_COUNTERS:
        return _dense_hist(names, req, bins, k, nbins)
    return _sparse_hist(names, req, bins, k)


def _dense_hist(names, req, bins, k, nbins: int) -> dict:
    """Counting into one array of counters: O(values), no sort.  ``req`` None:
    every value is request 0."""
    if req is None or len(names) == 1:
        counts = np.bincount(bins, minlength=nbins)
        kmin, kmax = np.array([k.min()], np.uint64), np.array([k.max()], np.uint64)
        present = np.zeros(1, np.int64)
        names = names[:1] if len(names) else np.zeros(1, np.int64)
    else:
        counts = np.bincount(req * nbins + bins, minlength=len(names) * nbins)
        kmin = np.full(len(names), S.KEY_MAX, np.uint64)
        kmax = np.zeros(len(names), np.uint64)
        np.minimum.at(kmin, req, k)
        np.maximum.at(kmax, req, k)
        present = np.flatnonzero(np.bincount(req, minlength=len(names)))
    nonzero = np.flatnonzero(counts)
    return {"req": names[nonzero // nbins], "bin": nonzero % nbins, "count": counts[nonzero],
            "kreq": names[present], "kmin": kmin[present], "kmax": kmax[present]}


def _sparse_hist(names, req, bins, k) -> dict:
    """Counting by sorting, when a counter per bin and request is too many."""
    order = np.lexsort((k, req))
    req, k, bins = req[order], k[order], bins[order]
    first = np.r_[True, req[1:] != req[:-1]]
    starts = np.flatnonzero(first | np.r_[False, bins[1:] != bins[:-1]])
    group_starts = np.flatnonzero(first)
    group_ends = np.r_[group_starts[1:], len(req)] - 1
    return {"req": names[req[starts]], "bin": bins[starts],
            "count": np.diff(np.r_[starts, len(req)]), "kreq": names[req[group_starts]],
            "kmin": k[group_starts], "kmax": k[group_ends]}


def _ends(b, k, groups) -> dict:
    """Per request: the largest key in its first range, the smallest in its second."""
    buckets, lo1, hi1, lo2, hi2 = groups
    n = len(buckets)
    top = np.zeros(n, np.uint64)
    bottom = np.full(n, KEY_MAX, np.uint64)
    for lo, hi, target, pick in ((lo1, hi1, top, np.maximum), (lo2, hi2, bottom, np.minimum)):
        ok, req = _where(b, k, (buckets, lo, hi))
        pick.at(target, req, k[ok])
    return {"top": top, "bottom": bottom}


def _gather(b, k, groups) -> dict:
    ok, req = _where(b, k, groups)
    return {"req": req, "keys": k[ok]}


# --- the client's side ------------------------------------------------------------------------

@dataclass
class _Group:
    """One bucket's selection, as it narrows."""
    n: int = 0
    lo: int = 0
    hi: int = KEY_MAX
    below: int = 0
    plan: tuple | None = None
    step: str = "hist"                 # what the next round asks: hist, ends, gather (or done)
    ends: tuple | None = None          # the two bins' ranges, for "ends"
    value: float | None = None
    inside: int = -1                   # keys in [lo, hi] (-1: not known yet)
    bits: int = BITS_ONE
    first: tuple | None = None         # the first round's (bins, counts, extremes)

    @property
    def shift(self) -> int:
        return max(0, (self.hi - self.lo).bit_length() - self.bits)


def select(run_round, p: float, limit: int, what: str, first=None):
    """Percentiles of a set of devices (one group of a fleet query): ``run_round(ask)``
    runs one round on every device and returns their replies' payloads;
    ``first``: the payloads of the START round, when it was run already.
    Returns (bucket ids, values, data span) over the devices' values."""
    replies = first if first is not None else run_round(START)
    span = _span(replies)
    groups = _start(replies, p)
    if len(groups) > limit:
        raise RowLimitError(f"{what} has more than {limit:,} rows, the row limit; {HOW_TO_RAISE}",
                            None, limit)
    bits = _bits(len(groups))
    for g in groups.values():
        g.bits = bits
        _narrow_after_start(g)
    while any(g.step != "done" for g in groups.values()):
        _round(run_round, groups, bits)
    ids = np.array(sorted(groups), np.int64)
    return ids, np.array([groups[i].value for i in ids], np.float64), span


def _bits(n_groups: int) -> int:
    """Bins per round: 65 536 for one group, fewer for many (the counters a
    device allocates stay bounded)."""
    return int(max(4, min(BITS_ONE, np.log2(DENSE_COUNTERS / max(n_groups, 1)))))


def _span(replies):
    firsts = [r["span"][0] for r in replies if r["span"][0] is not None]
    lasts = [r["span"][1] for r in replies if r["span"][1] is not None]
    return (min(firsts), max(lasts)) if firsts else (None, None)


def _summed_hist(replies, key="hist"):
    """{request: (bins ascending, counts)}, {request: (kmin, kmax)} summed over devices."""
    parts = [r[key] for r in replies if key in r]
    req = np.concatenate([h["req"] for h in parts]) if parts else np.zeros(0, np.int64)
    bins = np.concatenate([h["bin"] for h in parts]) if parts else np.zeros(0, np.int64)
    counts = np.concatenate([h["count"] for h in parts]) if parts else np.zeros(0, np.int64)
    order = np.lexsort((bins, req))
    req, bins, counts = req[order], bins[order], counts[order]
    change = np.flatnonzero(np.r_[True, (req[1:] != req[:-1]) | (bins[1:] != bins[:-1])])
    req, bins, counts = req[change], bins[change], np.add.reduceat(counts, change) if len(change) \
        else counts
    by_req = {}
    starts = np.flatnonzero(np.r_[True, req[1:] != req[:-1]]) if len(req) else []
    for s, e in zip(starts, list(starts[1:]) + [len(req)]):
        by_req[int(req[s])] = (bins[s:e], counts[s:e])
    extremes: dict = {}
    for h in parts:
        for r, lo, hi in zip(h["kreq"].tolist(), h["kmin"].tolist(), h["kmax"].tolist()):
            old = extremes.get(r)
            extremes[r] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    return by_req, extremes


def _start(replies, p: float) -> dict:
    by_bucket, extremes = _summed_hist(replies)
    groups = {}
    for bucket, (bins, counts) in by_bucket.items():
        g = _Group(n=int(counts.sum()))
        g.plan = tuple(x[0] for x in S.percentile_plan(np.array([g.n]), p))
        g.first = (bins, counts, extremes[bucket])
        groups[bucket] = g
    return groups


def _narrow_after_start(g: _Group) -> None:
    bins, counts, extremes = g.first
    g.first = None
    _narrow(g, bins, counts, extremes, 64 - BITS_ONE)


def _narrow(g: _Group, bins, counts, extremes, shift: int) -> None:
    """Settle the group or pick its next range from a round's summed counts."""
    rank_a, rank_b, gamma = g.plan
    kmin, kmax = extremes
    if kmin == kmax:                        # every value left is the same: both ranks have it
        g.value, g.step = S._lerp_keys(kmin, kmin, gamma), "done"
        return
    ends = np.cumsum(counts)
    ja, jb = (int(j) for j in np.searchsorted(ends, [rank_a - g.below, rank_b - g.below],
                                              side="right"))
    edges = [(g.lo + (int(bins[j]) << shift), min(g.hi, g.lo + ((int(bins[j]) + 1) << shift) - 1))
             for j in (ja, jb)]
    if ja != jb:                            # the ranks end one bin and start the next
        g.ends, g.step = (edges[0], edges[1]), "ends"
        return
    g.below += int(ends[ja] - counts[ja])
    g.lo, g.hi = edges[0]
    if shift == 0:
        g.value, g.step = S._lerp_keys(g.lo, g.lo, gamma), "done"
        return
    g.inside = int(counts[ja])
    g.step = "hist"


def _round(run_round, groups: dict, bits: int) -> None:
    """One round for every group not settled: gathers while the round's
    budget of keys lasts, then ends, then histograms."""
    budget = GATHER_LIMIT
    gather, ends, hist = [], [], []
    for bucket, g in sorted(groups.items()):
        if g.step == "hist" and 0 <= g.inside <= budget:
            budget -= g.inside
            gather.append(bucket)
        elif g.step == "ends":
            ends.append(bucket)
        elif g.step == "hist":
            hist.append(bucket)
    ask = {"bits": bits}
    u64 = lambda xs: np.array(xs, np.uint64)
    if hist:
        ask["hist"] = (np.array(hist, np.int64), u64([groups[b].lo for b in hist]),
                       u64([groups[b].hi for b in hist]), u64([groups[b].shift for b in hist]))
    if ends:
        pairs = [groups[b].ends for b in ends]
        ask["ends"] = (np.array(ends, np.int64), u64([e[0][0] for e in pairs]),
                       u64([e[0][1] for e in pairs]), u64([e[1][0] for e in pairs]),
                       u64([e[1][1] for e in pairs]))
    if gather:
        ask["gather"] = (np.array(gather, np.int64), u64([groups[b].lo for b in gather]),
                         u64([groups[b].hi for b in gather]))
    replies = run_round(ask)
    if hist:
        shifts = {b: groups[b].shift for b in hist}
        by_req, extremes = _summed_hist(replies)
        for i, bucket in enumerate(hist):
            bins, counts = by_req[i]
            _narrow(groups[bucket], bins, counts, extremes[i], shifts[bucket])
    if ends:
        tops = np.max([r["ends"]["top"] for r in replies], axis=0)
        bottoms = np.min([r["ends"]["bottom"] for r in replies], axis=0)
        for i, bucket in enumerate(ends):
            g = groups[bucket]
            g.value, g.step = S._lerp_keys(int(tops[i]), int(bottoms[i]), g.plan[2]), "done"
    if gather:
        req = np.concatenate([r["gather"]["req"] for r in replies])
        keys = np.concatenate([r["gather"]["keys"] for r in replies])
        order = np.lexsort((keys, req))
        req, keys = req[order], keys[order]
        for i, bucket in enumerate(gather):
            g = groups[bucket]
            mine = keys[np.searchsorted(req, i, "left"):np.searchsorted(req, i, "right")]
            rank_a, rank_b, gamma = g.plan
            g.value = S._lerp_keys(int(mine[rank_a - g.below]), int(mine[rank_b - g.below]), gamma)
            g.step = "done"


__all__ = ["device_round", "select", "forget_values"]
