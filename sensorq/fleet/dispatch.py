"""One fleet query, from its text to a Result: which devices, which "now",
what each device computes, and how the answers are put together.

1. The fleet clause (``by device``, ``by LABEL``) is taken out (plan.py) and
   the rest checked for syntax here, before any worker is asked.
2. Every device plans the query against its own streams and answers it:
   its partial aggregates (merged answers), its rows, or its whole answer
   (``by device``).  A device whose cache lacks the stream or a channel says
   so; it is listed in the result's warnings and ``missing``, never left out
   silently (and when no device can answer, the error is the query's).
3. "Now" is the fleet's: with ``--now data`` the newest sample over all the
   devices, so that ``last 10m`` is the same ten minutes everywhere.  Each
   device first answers with its own newest; the few whose window would
   move are asked again with the fleet's (one round in the common case).
4. Percentiles: the first round of percentiles.py comes with the plan, the
   next ones follow with the fleet's now.
"""
from __future__ import annotations

import dataclasses
import re
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from ..engine import limits
from ..errors import QueryError, QueryNameError
from ..result import Result
from . import merge
from .cluster import FleetError
from .percentiles import START
from .plan import display_names, split_group
from .tasks import Request

_PERCENTILE_HEAD = re.compile(r"(?i)\s*(median|percentile|p\d+)\b")
_ROWS_HEAD = re.compile(r"(?i)\s*(find|top|newest|score)\b")


@dataclass
class FleetResult(Result):
    """A Result over many caches, with what each device did: ``devices`` (name,
    path, worker, seconds, missing) and ``missing`` (name: why it is not in
    the answer)."""
    devices: list = field(default_factory=list)
    missing: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = super().to_dict()
        if self.missing:
            out["missing_devices"] = dict(self.missing)
        return out


def run(runner, devices: list, text: str, now_policy: str = "data", engine=None,
        max_rows=None) -> FleetResult:
    grouped = split_group(text)
    _check_syntax(grouped.text, text)
    if not devices:
        raise FleetError("no sensorq cache matches the fleet's paths")
    broken = [d for d in devices if d.error]
    if broken:
        raise FleetError(f"device cache {broken[0].path}: {broken[0].error}")
    names = display_names(devices)
    limit = limits.max_rows(max_rows)
    kind = "percentile" if _PERCENTILE_HEAD.match(grouped.text) else \
        "rows" if _ROWS_HEAD.match(grouped.text) else "aggregate"
    mode = "answer" if grouped.group == "device" or kind == "rows" else \
        "select" if kind == "percentile" else "partials"
    request = Request(grouped.text, mode, now_policy,
                      clock_ns=time.time_ns() if now_policy == "clock" else None, engine=engine,
                      max_rows=max_rows, token=uuid.uuid4().hex,
                      whole_rows=kind == "rows" and grouped.group != "device",
                      select=START if mode == "select" else None)
    replies, now_ns = _with_fleet_now(runner, devices, request, names)
    answering = [d for d in devices if not replies[d.key].missing]
    if not answering:
        first = replies[devices[0].key]
        raise QueryNameError(f"no device of the fleet can answer: {first.missing}", text,
                             first.missing_column)
    plan = _reference_plan([replies[d.key] for d in answering])
    context = _Context(runner, replies, names, text, plan, limit, dataclasses.replace(
        request, now_ns=now_ns if now_policy == "data" else None))
    if grouped.group == "device":
        result = merge.per_device([(names[d.key], replies[d.key].payload) for d in answering],
                                  plan, text)
    else:
        result = _grouped(context, answering, grouped.group, kind)
    return _finished(result, devices, replies, names, text, plan)


def _check_syntax(stripped: str, text: str) -> None:
    """A syntax error before any device is asked, its caret in the user's text."""
    from ..query.parser import parse
    try:
        parse(stripped)
    except QueryError as exc:
        raise type(exc)(exc.reason, text, exc.column, exc.expected) from None


def _with_fleet_now(runner, devices, request: Request, names):
    """Every device's reply, planned with the fleet's now (module docstring, 3)."""
    replies = runner.map(devices, {d.key: request for d in devices}, names)
    if request.now_policy != "data":
        return replies, None
    newest = [r.newest for r in replies.values() if not r.missing and r.newest is not None]
    if not newest:
        return replies, None
    now_ns = max(newest) + 1
    again = [d for d in devices if _moves(replies[d.key], now_ns)]
    if again:
        fixed = dataclasses.replace(request, now_ns=now_ns)
        replies.update(runner.map(again, {d.key: fixed for d in again}, names))
    return replies, now_ns


def _moves(reply, now_ns: int) -> bool:
    return (not reply.missing and reply.now_dependent and reply.newest is not None
            and reply.newest + 1 != now_ns)


def _reference_plan(replies):
    """A plan with the fleet's window: every device with data in the stream
    planned with the fleet's now (a device without any planned with its own)."""
    return next((r.plan for r in replies if r.newest is not None), replies[0].plan)


@dataclass
class _Context:
    runner: object
    replies: dict
    names: dict
    text: str
    plan: object
    limit: int
    request: Request


def _grouped(c: _Context, answering: list, group, kind: str) -> Result:
    """The merged answer, or one per value of a label (``by site``)."""
    if group is None:
        return _merged(c, answering, kind)
    values = sorted({d.label(group) for d in answering}, key=lambda v: (v is None, str(v)))
    parts = []
    for value in values:
        members = [d for d in answering if d.label(group) == value]
        parts.append((value, _merged(c, members, kind)))
    return merge.per_device(parts, c.plan, c.text, label=group)


def _merged(c: _Context, members: list, kind: str) -> Result:
    if kind == "rows":
        return merge.merge_rows(c.plan, [(c.names[d.key], c.replies[d.key].payload)
                                         for d in members], c.text, c.limit)
    if kind == "aggregate":
        parts = [c.replies[d.key].payload for d in members]
        return merge.finish_aggregate(c.plan, parts, c.text, _categories(c, members), c.limit)
    return _percentile(c, members)


def _categories(c: _Context, members: list):
    """(each device's names, their union) for a categorical first/last, else None."""
    per_device = [c.replies[d.key].categories for d in members]
    if all(names is None for names in per_device):
        return None
    union: list = []
    for names in per_device:
        union += [n for n in names or () if n not in union]
    return [list(names or ()) for names in per_device], tuple(union)


def _percentile(c: _Context, members: list) -> Result:
    from . import percentiles
    request = dataclasses.replace(c.request, mode="select")

    def run_round(ask):
        asked = dataclasses.replace(request, select=ask)
        replies = c.runner.map(members, {d.key: asked for d in members}, c.names)
        missing = [d for d in members if replies[d.key].missing]
        if missing:         # its stream went away between the rounds: never a partial answer
            raise FleetError(f"device {c.names[missing[0].key]}: {replies[missing[0].key].missing}")
        return [replies[d.key].payload for d in members]

    q = c.plan
    p = 50.0 if q.aggregate == "median" else q.percentile
    first = [c.replies[d.key].payload for d in members]       # the first round came with the plan
    try:
        ids, values, span = percentiles.select(run_round, p, c.limit, f"the result of {c.text!r}",
                                               first)
    finally:
        c.runner.forget(c.request.token)
    first, last = span
    span = merge._Span(np.array([] if first is None else [first], np.int64),
                       np.array([] if last is None else [last], np.int64))
    return merge.aggregate_result(q, c.text, ids, values, span, limit=c.limit)


def _finished(result: Result, devices, replies, names, text: str, plan) -> FleetResult:
    warnings, missing, table = [], {}, []
    for d in devices:
        r = replies[d.key]
        name = names[d.key]
        table.append({"device": name, "path": d.path, "worker": r.worker,
                      "seconds": round(r.seconds, 6), "missing": r.missing})
        if r.missing:
            missing[name] = r.missing
            warnings.append(f"device {name} ({d.path}) is not in this answer: {r.missing}")
        warnings += [f"device {name}: {w}" for w in r.warnings]
    scans = [r.payload.scan for r in replies.values() if getattr(r.payload, "scan", None)]
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(Result)}
    fields.update(query=text, warnings=warnings, scan=merge.sum_scans(scans), plan=plan)
    return FleetResult(**fields, devices=table, missing=missing)


__all__ = ["run", "FleetResult"]
