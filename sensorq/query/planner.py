"""Syntax tree → typed plan: names, units and times resolved.

:func:`plan_query` is the one entry point.  It

* binds channel names to one stream (``from``, a qualified ``stream.name``, or
  the only stream that has the name) and to their index, storage type and scale;
* gives every value expression a unit, converts literals to the unit they are
  compared or added in, and rejects what cannot agree (``accel > 30degC``);
* normalises ``channel OP constant`` (predicates.py) into :class:`~sensorq.query.plan.RawCompare`
  with the threshold in the channel's *stored* units, rounded onto the integer
  grid of integer channels (``> 1999.7`` becomes ``>= 2000``), so block
  statistics and the device port can answer it in integer arithmetic;
* compiles a category name compared with a categorical channel
  (``activity == Running``) into an integer comparison with its code, and
  refuses what names cannot do (order, arithmetic, averages);
* folds constant arithmetic and trivially true/false tests;
* turns the time clauses into an absolute half-open window of nanoseconds and
  records how "now" was chosen.

Every error is a :class:`~sensorq.errors.QueryError` with the query text and the
1-based column of the offending token.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time as _time
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Optional

from ..errors import QueryError, QueryNameError, QuerySyntaxError, QueryTypeError, QueryUnitError
from ..schema import Channel, Stream, known_names
from ..units import DIMENSIONLESS, Unit, convert, convert_interval, is_unit, known_units, parse_unit
from . import expressions as ast
from .parser import normalise_text, parse, too_deep
from .predicates import and_, compare, negate, or_, raw_compare
from .plan import (AggregateQuery, BinaryOp, BoolConst, ChannelRef, Compare, Const, EpisodesQuery, Fill,
                   FindQuery, Magnitude, ModelQuery, NewestQuery, Now, Predicate, Query, TimeRange,
                   TopQuery, UnaryOp, ValueExpr)
from .timeparse import (INT64_MAX, INT64_MIN, QueryRangeError, duration_ns, epoch_ns,
                        format_duration, iso_ns)

__all__ = ["plan_query", "AGGREGATE_ALIASES", "FUNCTIONS", "result_unit"]

# Names a user may write at the head of an aggregate query → the plan's name.
AGGREGATE_ALIASES: dict[str, str] = {
    "count": "count", "sum": "sum", "avg": "avg", "mean": "avg", "min": "min", "max": "max",
    "std": "std", "stddev": "std", "var": "var", "variance": "var", "median": "median",
    "percentile": "percentile", "first": "first", "last": "last", "spread": "spread",
    "rate": "rate", "derivative": "rate", "integral": "integral", "twa": "twa",
    "duration": "duration", "argmax": "argmax", "argmin": "argmin",
}
KNOWN_AGGREGATES = ("count, sum, avg (mean), min, max, std, var, median, percentile(p), first, last, "
                    "spread, rate (derivative), integral, twa, duration, argmax, argmin")
FUNCTIONS = ("abs", "sqrt", "mag")
NO_EXPR_AGGREGATES = ("count", "duration")
GAP_AGGREGATES = ("duration", "twa", "integral")
CATEGORICAL_AGGREGATES = ("first", "last")   # of a categorical channel itself (count/duration take where)
FILL_MODES = ("none", "null", "prev", "linear")
TIME_CLAUSES = ("last", "since", "between")
COMMON_UNITS = ("g", "mg", "m/s^2", "degC", "degF", "K", "Pa", "hPa", "bar", "V", "mV", "A", "W", "Hz",
                "m", "mm", "km/h", "deg/s", "rpm", "%")
MAX_RESULTS = 10_000_000    # top N, newest N, find first N: bounds the memory a result takes
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def plan_query(text: str, streams: Mapping[str, Stream], newest_ns: Callable[[str], Optional[int]],
               now_policy: str = "data", clock_ns: Optional[int] = None,
               reported_newest_ns: Optional[Callable[[str], Optional[int]]] = None) -> Query:
    """The typed plan of one query over ``streams``.

    ``newest_ns(stream)`` gives the newest timestamp of a stream (None when it is
    empty).  ``now_policy`` "data": now is newest + 1 ns, so ``last 10m`` ends just
    after the newest sample; "clock": now is ``clock_ns`` or the wall clock.  An
    ``at`` clause in the query overrides both.  A query without a window or an
    ``at`` reads the whole stream whatever now is, and its now is only
    reported (explain): taken from ``reported_newest_ns`` where given, so that
    a caller that records what ``newest_ns`` was asked (plancache.py) sees that
    the plan does not depend on it."""
    if now_policy not in ("data", "clock"):
        raise QueryError(f"now_policy must be 'data' or 'clock', not {now_policy!r}")
    text = normalise_text(text)
    try:
        tree = parse(text)
    except QuerySyntaxError:
        _check_head(text)   # "where z > 2g" is better told "unknown aggregate" than "unexpected >"
        raise
    try:
        return _Planner(text, streams, newest_ns, now_policy, clock_ns,
                        reported_newest_ns).plan(tree)
    except RecursionError:
        raise too_deep(text) from None


def _check_head(text: str) -> None:
    """A QueryNameError when the first word cannot start a query."""
    match = re.match(r"\s*([A-Za-z_]\w*)", text)
    if not match:
        return
    word = match.group(1).lower()
    heads = {*AGGREGATE_ALIASES, "find", "top", "newest", "score"}
    if word in heads or re.fullmatch(r"p\d+", word):
        return
    raise _unknown_aggregate(match.group(1), text, match.start(1))


def _unknown_aggregate(name: str, text: str, pos: int) -> QueryNameError:
    hint = _did_you_mean(name.lower(), [*AGGREGATE_ALIASES, "find", "top", "newest"])
    return QueryNameError(f"unknown aggregate {name!r}{hint}; a query starts with one of "
                          f"{KNOWN_AGGREGATES}, or with find, top or newest", text, pos + 1)


def result_unit(aggregate: str, unit: str) -> str:
    """The unit of an aggregate of values in ``unit``."""
    wrapped = f"({unit})" if any(c in unit for c in "/^*") else unit
    if aggregate == "count":
        return ""
    if aggregate == "duration":
        return "s"
    if aggregate in ("argmax", "argmin"):
        return "ns"
    if aggregate == "var":
        return f"{wrapped}^2" if unit else ""
    if aggregate == "rate":
        return f"{wrapped}/s" if unit else "1/s"
    if aggregate == "integral":
        return f"{wrapped}*s" if unit else "s"
    return unit


@dataclass(frozen=True)
class _Typed:
    """A planned value expression with its unit and where it came from."""
    expr: ValueExpr
    unit: Unit            # for dimension checks and conversions
    unit_text: str        # what the plan and the user see (a channel's unit as declared)
    flexible: bool        # a bare number: takes the unit of what it meets
    pos: int
    end: int
    exact: bool = True    # a constant exactly as written (not converted or computed)

    @property
    def is_const(self) -> bool:
        return isinstance(self.expr, Const)


class _Planner:
    def __init__(self, text, streams, newest_ns, now_policy, clock_ns, reported_newest_ns=None):
        self.text = text
        self.streams = dict(streams)
        self.newest_ns = newest_ns
        self.reported_newest_ns = reported_newest_ns or newest_ns
        self.now_policy = now_policy
        self.clock_ns = clock_ns
        self.stream: Optional[Stream] = None
        self._newest: Optional[tuple[Optional[int]]] = None   # (newest_ns,) once asked
        self.labels: set[int] = set()   # positions of bare names that are category names

    # --- errors ----------------------------------------------------------------------
    def fail(self, cls, message: str, pos: Optional[int], expected=None):
        raise cls(message, self.text, None if pos is None else pos + 1, expected)

    def next_token(self, pos: int) -> int:
        """Where the next token after ``pos`` starts (or the end of the text)."""
        while pos < len(self.text) and self.text[pos] == " ":
            pos += 1
        return pos

    def source(self, node) -> str:
        return self.text[node.pos:node.end]

    # --- queries -----------------------------------------------------------------------
    def plan(self, tree) -> Query:
        handlers = {ast.AggregateAst: self.plan_aggregate, ast.FindAst: self.plan_find,
                    ast.EpisodesAst: self.plan_episodes, ast.TopAst: self.plan_top,
                    ast.NewestAst: self.plan_newest, ast.ScoreAst: self.plan_score}
        limits = [c for c in tree.clauses if c.kind == "limit"]
        if not limits:
            return handlers[type(tree)](tree)
        if len(limits) > 1:
            self.fail(QuerySyntaxError, "a second limit clause", limits[1].pos)
        rest = tuple(c for c in tree.clauses if c.kind != "limit")
        query = handlers[type(tree)](dataclasses.replace(tree, clauses=rest))
        if isinstance(query, AggregateQuery) and not query.bucket_ns:
            self.fail(QueryTypeError, "limit applies to rows, and this answer is one value: use it "
                      "with by, find, top, newest or score", limits[0].pos)
        return dataclasses.replace(query, limit=self.count_n(limits[0].args[0], default=0))

    def plan_score(self, tree: ast.ScoreAst) -> ModelQuery:
        """``score MODEL [over DUR [hop DUR]] [from STREAM] [time]``: the model's
        windows (its derived stream, sensorq/models/derived.py), one row each."""
        model_pos = self.next_token(tree.pos + len("score"))
        stream = self.streams.get(tree.model)
        if stream is None or "model_of" not in stream.extra:
            known = ", ".join(sorted(s.name for s in self.streams.values() if "model_of" in s.extra))
            self.fail(QueryNameError, f"no model {tree.model!r} in this cache; models: {known or 'none'}",
                      model_pos)
        clauses = self.clauses(tree.clauses, {"from", "at", *TIME_CLAUSES}, "score")
        source = clauses.get("from")
        if source is not None and source.args[0] != stream.extra["model_of"]:
            self.fail(QueryNameError, f"model {tree.model!r} reads stream {stream.extra['model_of']!r}, "
                      f"not {source.args[0]!r}", source.args[1])
        window, hop = stream.extra["window_ns"], stream.extra["hop_ns"]
        for given, own, what in ((tree.over, window, "windows"), (tree.hop, hop, "hop")):
            if given is not None and duration_ns(given, self.text) != own:
                self.fail(QueryTypeError, f"model {tree.model!r} scores {format_duration(window)} windows "
                          f"every {format_duration(hop)}: leave out over/hop or give those", given.pos)
        self.stream = stream
        now, time_range = self.time(clauses)
        return ModelQuery(stream.name, tree.model, window, hop, time_range, now)

    def plan_aggregate(self, tree: ast.AggregateAst) -> AggregateQuery:
        aggregate, percentile = self.aggregate_name(tree)
        allowed = {"where", "from", "at", "by", "gap", *TIME_CLAUSES}
        clauses = self.clauses(tree.clauses, allowed, "an aggregate")
        self.check_expr_presence(tree, aggregate)
        where_clause = clauses.get("where")
        if aggregate == "duration" and where_clause is None:
            self.fail(QueryTypeError, "duration needs a where clause: duration where accel > 2g",
                      self.next_token(tree.name_end))
        self.bind_stream(clauses, [tree.expr, where_clause.args[0] if where_clause else None])
        expr = self.value(tree.expr) if tree.expr is not None else None
        if expr is not None and _categories(expr) is not None:
            self.check_categorical_aggregate(aggregate, expr, clauses.get("by"))
        where = self.predicate(where_clause.args[0]) if where_clause else None
        unit = expr.unit_text if expr else ""
        out_unit = result_unit(aggregate, unit)
        now, window = self.time(clauses)
        bucket_ns, fill = self.buckets(clauses.get("by"), out_unit)
        gap = clauses.get("gap")
        if gap is not None and aggregate not in GAP_AGGREGATES:
            self.fail(QueryTypeError, f"gap applies to {', '.join(GAP_AGGREGATES)} and find episodes, "
                      f"not to {aggregate}", gap.pos)
        max_gap = self.max_gap(gap) if aggregate in GAP_AGGREGATES else None
        return AggregateQuery(self.stream.name, aggregate, expr.expr if expr else None, where, window,
                              now, out_unit, percentile, bucket_ns, fill, max_gap)

    def plan_find(self, tree: ast.FindAst) -> FindQuery:
        clauses = self.clauses(tree.clauses, {"where", "from", "at", *TIME_CLAUSES}, "find")
        where_clause = self.require_where(clauses, tree.pos, f"find {tree.direction} where z > 2g")
        n = self.count_n(tree.n, default=1)
        self.bind_stream(clauses, [where_clause.args[0]])
        where = self.predicate(where_clause.args[0])
        now, window = self.time(clauses)
        return FindQuery(self.stream.name, tree.direction, n, where, window, now)

    def plan_episodes(self, tree: ast.EpisodesAst) -> EpisodesQuery:
        clauses = self.clauses(tree.clauses, {"where", "from", "at", "for", "gap", *TIME_CLAUSES},
                               "find episodes")
        where_clause = self.require_where(clauses, tree.pos, "find episodes where z > 2g for >= 50ms")
        self.bind_stream(clauses, [where_clause.args[0]])
        where = self.predicate(where_clause.args[0])
        peak = self.peak(where_clause.args[0])
        now, window = self.time(clauses)
        min_ns = self.min_duration(clauses.get("for"))
        return EpisodesQuery(self.stream.name, where, min_ns, peak.expr if peak else None,
                             peak.unit_text if peak else "", window, now, self.max_gap(clauses.get("gap")))

    def plan_top(self, tree: ast.TopAst) -> TopQuery:
        clauses = self.clauses(tree.clauses, {"where", "from", "at", *TIME_CLAUSES}, "top")
        n = self.count_n(tree.n, default=1)
        where_clause = clauses.get("where")
        self.bind_stream(clauses, [tree.expr, where_clause.args[0] if where_clause else None])
        expr = self.value(tree.expr)
        self.numeric(expr, "order (top)")
        where = self.predicate(where_clause.args[0]) if where_clause else None
        now, window = self.time(clauses)
        return TopQuery(self.stream.name, n, expr.expr, expr.unit_text, where, window, now)

    def plan_newest(self, tree: ast.NewestAst) -> NewestQuery:
        clauses = self.clauses(tree.clauses, {"where", "from", "at", *TIME_CLAUSES}, "newest")
        n = self.count_n(tree.n, default=1)
        where_clause = clauses.get("where")
        self.bind_stream(clauses, [where_clause.args[0] if where_clause else None])
        where = self.predicate(where_clause.args[0]) if where_clause else None
        now, window = self.time(clauses)
        return NewestQuery(self.stream.name, n, where, window, now)

    # --- query heads and clauses --------------------------------------------------------
    def aggregate_name(self, tree: ast.AggregateAst) -> tuple[str, float]:
        name = tree.name.lower()
        if tree.percentile is not None:
            return "percentile", self.percentile_value(tree.percentile)
        if name == "percentile":
            self.fail(QuerySyntaxError, "percentile needs its level: percentile(95) z", tree.name_end)
        if len(name) > 1 and name[0] == "p" and name[1:].isdigit():   # p95, p99
            p = float(name[1:])
            if p > 100:
                self.fail(QueryTypeError, f"{tree.name}: a percentile is between 0 and 100", tree.name_pos)
            return "percentile", p
        if name not in AGGREGATE_ALIASES:
            raise _unknown_aggregate(tree.name, self.text, tree.name_pos)
        aggregate = AGGREGATE_ALIASES[name]
        return aggregate, 50.0 if aggregate == "median" else 0.0

    def percentile_value(self, number: ast.Number) -> float:
        if number.unit not in ("", "%"):
            self.fail(QueryUnitError, f"a percentile level is a plain number (0 to 100), not "
                      f"{number.source}", number.pos)
        p = number.value
        if not 0 <= p <= 100:
            self.fail(QueryTypeError, f"percentile {number.source} is outside 0..100", number.pos)
        return p

    def check_categorical_aggregate(self, aggregate: str, expr: "_Typed", by_clause) -> None:
        """Names have no sum, mean or order: of a categorical channel only the
        first and last name are aggregates (and fills that invent no name)."""
        name = expr.expr.channel
        if aggregate not in CATEGORICAL_AGGREGATES:
            self.fail(QueryTypeError, f"{aggregate} of {name}: {name} is categorical (names, not "
                      f"numbers); of a categorical channel ask first, last, count where {name} == "
                      f"NAME, duration where {name} == NAME, find or newest", expr.pos)
        spec = by_clause.args[1] if by_clause is not None else None
        if spec is not None and spec.mode.lower() in ("linear", "value"):
            self.fail(QueryTypeError, f"{name} is categorical: fill(none), fill(null) or fill(prev) "
                      f"keep names; {self.source(spec)} would make up codes", spec.pos)

    def check_expr_presence(self, tree: ast.AggregateAst, aggregate: str) -> None:
        if aggregate in NO_EXPR_AGGREGATES and tree.expr is not None:
            usage = "count where z > 2g" if aggregate == "count" else "duration where z > 2g"
            self.fail(QueryTypeError, f"{aggregate} takes no expression, only a where clause: {usage}",
                      tree.expr.pos)
        if aggregate not in NO_EXPR_AGGREGATES and tree.expr is None:
            self.fail(QueryTypeError, f"{tree.name} needs an expression to aggregate, e.g. "
                      f"{tree.name} z", self.next_token(tree.name_end))

    def clauses(self, clauses, allowed: set[str], what: str) -> dict[str, ast.Clause]:
        found: dict[str, ast.Clause] = {}
        for clause in clauses:
            if clause.kind not in allowed:
                self.fail(QuerySyntaxError, f"{what} query has no {clause.kind} clause"
                          + _clause_hint(clause.kind), clause.pos)
            if clause.kind in found:
                hint = "; combine conditions with and" if clause.kind == "where" else ""
                self.fail(QuerySyntaxError, f"a second {clause.kind} clause{hint}", clause.pos)
            window = [k for k in TIME_CLAUSES if k in found]
            if clause.kind in TIME_CLAUSES and window:
                self.fail(QuerySyntaxError, f"a query has one time window; {clause.kind} comes after "
                          f"{window[0]}", clause.pos)
            found[clause.kind] = clause
        return found

    def require_where(self, clauses, pos: int, example: str) -> ast.Clause:
        if "where" not in clauses:
            self.fail(QuerySyntaxError, f"this query needs a where clause: {example}", pos)
        return clauses["where"]

    def count_n(self, number: Optional[ast.Number], default: int) -> int:
        if number is None:
            return default
        value = number.decimal
        if number.unit or value.exponent < 0:      # digits carry no trailing zeros
            self.fail(QueryTypeError, f"a count of results is a whole number, not {number.source}",
                      number.pos)
        # The size is checked on the digits first: 1e999999999 must not be expanded.
        if not value.digits or value.top > len(str(MAX_RESULTS)) or value.fraction() > MAX_RESULTS:
            self.fail(QueryTypeError, f"a count of results must be 1 to {MAX_RESULTS:,}, not "
                      f"{number.source}", number.pos)
        return int(value.fraction())

    # --- streams and channels --------------------------------------------------------------
    def bind_stream(self, clauses, roots) -> None:
        """Choose the query's one stream, and check every channel belongs to it."""
        if not self.streams:
            self.fail(QueryNameError, "the cache has no streams yet", 0)
        roots = [root for root in roots if root is not None]
        names = sorted((n for root in roots for n in _channel_names(root)), key=lambda n: n.pos)
        from_clause = clauses.get("from")
        if from_clause is not None:
            self.stream = self.lookup_stream(*from_clause.args)
        else:
            maybe = {n.pos for root in roots for n in _label_candidates(root)}
            self.stream = self.stream_from_channels(names, maybe)
        self.labels = self.find_labels(roots)
        for name in names:
            if name.pos not in self.labels:
                self.check_channel(name, from_clause)

    def find_labels(self, roots) -> set[int]:
        """The bare names that are category names: opposite a categorical channel
        in a comparison or an ``in`` list, a bare name is looked up in the
        channel's dictionary, never as a channel (docs/query.md, "Categorical
        channels").  When both sides are categorical channels, the left one is
        the channel."""
        labels: set[int] = set()
        for root in roots:
            for node in _comparisons(root):
                if isinstance(node, ast.Comparison):
                    if self.categorical(node.left):
                        labels |= {node.right.pos} if _bare(node.right) else set()
                    elif self.categorical(node.right) and _bare(node.left):
                        labels.add(node.left.pos)
                elif self.categorical(node.expr):      # in (...), between (refused, but named right)
                    items = node.items if isinstance(node, ast.InList) else (node.low, node.high)
                    labels |= {item.pos for item in items if _bare(item)}
        return labels

    def categorical(self, node) -> Optional[Channel]:
        """The categorical channel ``node`` names in the query's stream, if it is one."""
        if not isinstance(node, ast.ChannelName) or node.pos in self.labels:
            return None
        if node.stream not in (None, self.stream.name):
            return None
        channel = next((c for c in self.stream.channels if c.name == node.name), None)
        return channel if channel is not None and channel.is_categorical else None

    def lookup_stream(self, name: str, pos: int) -> Stream:
        if name in self.streams:
            return self.streams[name]
        self.fail(QueryNameError, f"unknown stream {name!r}{_did_you_mean(name, self.streams)}; "
                  f"streams: {', '.join(sorted(self.streams))}", pos)

    def stream_from_channels(self, names, maybe=frozenset()) -> Stream:
        """The stream the channel names decide.  A name in ``maybe`` (positions)
        may be a category name (``Running`` in ``activity == Running``): it
        decides nothing, and is not an unknown channel yet."""
        for name in names:
            if name.stream is not None:
                return self.lookup_stream(name.stream, name.pos)
            homes = self.streams_with(name.name)
            if len(homes) == 1:
                return homes[0]
            if not homes and name.pos not in maybe:
                self.unknown_channel(name)
        if any(self.streams_with(n.name) for n in names):
            first = next(n for n in names if self.streams_with(n.name))
            candidates = ", ".join(f"{s.name}.{first.name}" for s in self.streams_with(first.name))
            self.fail(QueryNameError, f"channel {first.name!r} is in several streams: {candidates}; "
                      f"write one of these, or add from STREAM", first.pos)
        if names:
            self.unknown_channel(names[0])
        if len(self.streams) == 1:
            return next(iter(self.streams.values()))
        names = sorted(self.streams)
        self.fail(QueryNameError, f"which stream? add from STREAM, e.g. {self.text.strip()} from "
                  f"{names[0]} (streams: {', '.join(names)})", len(self.text.rstrip()))

    def streams_with(self, channel: str) -> list[Stream]:
        return [s for s in self.streams.values() if any(c.name == channel for c in s.channels)]

    def unknown_channel(self, name: ast.ChannelName, stream: Optional[Stream] = None):
        streams = [stream] if stream else sorted(self.streams.values(), key=lambda s: s.name)
        pool = [c.name for s in streams for c in s.channels]
        where = f" in stream {stream.name!r}" if stream else ""
        listing = "; ".join(f"{s.name}: {_short_list([c.name for c in s.channels])}" for s in streams)
        self.fail(QueryNameError, f"unknown channel {name.name!r}{where}{_did_you_mean(name.name, pool)}; "
                  f"channels are {listing}", name.name_pos)

    def check_channel(self, name: ast.ChannelName, from_clause) -> None:
        if name.stream is not None and name.stream != self.stream.name:
            other = self.lookup_stream(name.stream, name.pos)
            self.fail(QueryNameError, self.mixed_streams_message(name, other, from_clause), name.pos)
        if any(c.name == name.name for c in self.stream.channels):
            return
        if name.stream is not None:
            self.unknown_channel(name, self.stream)
        homes = self.streams_with(name.name)
        if not homes:
            self.unknown_channel(name)
        self.fail(QueryNameError, self.mixed_streams_message(name, homes[0], from_clause), name.pos)

    def mixed_streams_message(self, name: ast.ChannelName, other: Stream, from_clause) -> str:
        chosen = f"from {self.stream.name}" if from_clause else f"stream {self.stream.name}"
        return (f"a query reads one stream: {name.source} is in stream {other.name}, but this query "
                f"reads {chosen}")

    def channel_ref(self, name: ast.ChannelName) -> tuple[ChannelRef, Channel]:
        channel = self.stream.channel(name.name)
        index = self.stream.channel_index(name.name)
        scale = float(channel.scale) if channel.scale is not None else 1.0
        return ChannelRef(channel.name, index, channel.dtype, scale, channel.unit,
                          channel.categories), channel

    # --- value expressions -----------------------------------------------------------------
    def value(self, node) -> _Typed:
        if isinstance(node, ast.Number):
            return self.number(node)
        if isinstance(node, ast.ChannelName):
            ref, channel = self.channel_ref(node)
            return _Typed(ref, channel.unit_info, channel.unit, False, node.pos, node.end)
        if isinstance(node, ast.Label):
            self.fail(QueryTypeError, f"{node.source} is a category name (it is quoted): it stands "
                      f"opposite a categorical channel, as in state == {node.source}", node.pos)
        if isinstance(node, ast.Unary):
            return self.unary(node)
        if isinstance(node, ast.Binary):
            return self.binary(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise AssertionError(f"not a value expression: {node!r}")  # the grammar prevents this

    def number(self, node: ast.Number) -> _Typed:
        if node.unit and not is_unit(node.unit):
            self.fail(QueryUnitError, f"unknown unit {node.unit!r} in {node.source}"
                      f"{_did_you_mean(node.unit, known_units())}; known units include "
                      f"{', '.join(COMMON_UNITS)} (units are case-sensitive)", node.pos)
        unit = parse_unit(node.unit)
        return _Typed(Const(node.value, unit.symbol), unit, unit.symbol, not node.unit, node.pos, node.end)

    def numeric(self, typed: _Typed, what: str) -> _Typed:
        """``typed`` itself, unless it is a categorical channel (names have no arithmetic or order)."""
        if _categories(typed) is not None:
            name = typed.expr.channel
            self.fail(QueryTypeError, f"{name} is categorical (names, not numbers): no {what}; "
                      f"compare it with a name: {name} == NAME, {name} != NAME, {name} in (A, B)",
                      typed.pos)
        return typed

    def unary(self, node: ast.Unary) -> _Typed:
        operand = self.numeric(self.value(node.operand), "arithmetic")
        if node.op == "pos":
            return _Typed(operand.expr, operand.unit, operand.unit_text, operand.flexible, node.pos, node.end)
        if operand.is_const:
            return self.const_like(operand, -operand.expr.value, node)
        return self.like(operand, UnaryOp("neg", operand.expr, operand.unit_text), node)

    def binary(self, node: ast.Binary) -> _Typed:
        left = self.numeric(self.value(node.left), f"arithmetic ({node.op})")
        right = self.numeric(self.value(node.right), f"arithmetic ({node.op})")
        if node.op in "+-":
            left, right = self.align(left, right, interval=True, what=node.op)
            if left.is_const and right.is_const:
                a, b = left.expr.value, right.expr.value
                value = a + b if node.op == "+" else a - b
                return self.const_like(left, value, node, flexible=left.flexible and right.flexible,
                                       exact=False)
            return self.like(left, BinaryOp(node.op, left.expr, right.expr, left.unit_text), node,
                             flexible=False)
        return self.multiply(node, left, right)

    def multiply(self, node: ast.Binary, left: _Typed, right: _Typed) -> _Typed:
        left, right = self.plain_number(left), self.plain_number(right)
        if node.op == "/" and right.is_const and right.expr.value == 0:
            self.fail(QueryTypeError, "division by zero", right.pos)
        if _is_scalar(right):
            keep = left
        elif _is_scalar(left) and node.op == "*":
            keep = right
        else:
            keep = None
        unit, unit_text = (keep.unit, keep.unit_text) if keep else (parse_unit(""), "")
        flexible = left.flexible and right.flexible
        if left.is_const and right.is_const:
            a, b = left.expr.value, right.expr.value
            value = a * b if node.op == "*" else a / b
            return _Typed(Const(value, unit_text), unit, unit_text, flexible, node.pos, node.end, False)
        return _Typed(BinaryOp(node.op, left.expr, right.expr, unit_text), unit, unit_text, False,
                      node.pos, node.end)

    def plain_number(self, typed: _Typed) -> _Typed:
        """50% → 0.5 and 3ppm → 3e-6 before they multiply anything."""
        if typed.is_const and typed.unit.dimension == DIMENSIONLESS and typed.unit.symbol:
            value = typed.unit.to_si(typed.expr.value)
            return _Typed(Const(value, ""), parse_unit(""), "", True, typed.pos, typed.end, False)
        return typed

    def call(self, node: ast.Call) -> _Typed:
        func = node.func.lower()
        if func not in FUNCTIONS:
            hint = (" (aggregates such as avg go at the start of the query)"
                    if func in AGGREGATE_ALIASES else _did_you_mean(func, FUNCTIONS))
            self.fail(QueryNameError, f"unknown function {node.func!r}{hint}; functions: "
                      f"{', '.join(FUNCTIONS)}", node.pos)
        args = [self.numeric(self.value(a), f"{func}()") for a in node.args]
        if func == "mag":
            return self.magnitude(node, args)
        if len(args) != 1:
            self.fail(QueryTypeError, f"{func} takes one argument, not {len(args)}", node.pos)
        arg = args[0]
        if func == "abs":
            if arg.is_const:
                return self.const_like(arg, abs(arg.expr.value), node)
            return self.like(arg, UnaryOp("abs", arg.expr, arg.unit_text), node)
        if arg.is_const:
            if arg.expr.value < 0:
                self.fail(QueryTypeError, f"sqrt of a negative number ({self.source(arg)})", arg.pos)
            return _Typed(Const(math.sqrt(arg.expr.value), ""), parse_unit(""), "", True, node.pos,
                          node.end, False)
        return _Typed(UnaryOp("sqrt", arg.expr, ""), parse_unit(""), "", False, node.pos, node.end)

    def magnitude(self, node: ast.Call, args: list[_Typed]) -> _Typed:
        first = next((a for a in args if not a.flexible), args[0])
        aligned = [self.to_unit_of(a, first, "mag") for a in args]
        if all(a.is_const for a in aligned):
            value = math.sqrt(sum(a.expr.value ** 2 for a in aligned))
            return _Typed(Const(value, first.unit_text), first.unit, first.unit_text,
                          first.flexible, node.pos, node.end, False)
        return _Typed(Magnitude(tuple(a.expr for a in aligned), first.unit_text), first.unit,
                      first.unit_text, False, node.pos, node.end)

    def const_like(self, base: _Typed, value: float, node, flexible: Optional[bool] = None,
                   exact: Optional[bool] = None) -> _Typed:
        flexible = base.flexible if flexible is None else flexible
        exact = base.exact if exact is None else exact
        return _Typed(Const(value, base.unit_text), base.unit, base.unit_text, flexible, node.pos,
                      node.end, exact)

    def like(self, base: _Typed, expr: ValueExpr, node, flexible: bool = False) -> _Typed:
        return _Typed(expr, base.unit, base.unit_text, flexible, node.pos, node.end)

    # --- units ------------------------------------------------------------------------------
    def align(self, left: _Typed, right: _Typed, *, interval: bool, what: str) -> tuple[_Typed, _Typed]:
        """Both sides in one unit: a bare number takes the other side's unit, a
        constant is converted to the other side's unit, and a second channel
        expression in another unit of the same dimension is scaled."""
        if right.flexible and not left.flexible:
            return left, self.relabel(right, left)
        if left.flexible and not right.flexible:
            return self.relabel(left, right), right
        if left.unit == right.unit:
            return left, right
        if left.unit.dimension != right.unit.dimension:
            offender = left if (left.is_const and not right.is_const) else right
            other = right if offender is left else left
            self.fail(QueryUnitError, f"units do not agree ({what}): {self.describe(other)}, "
                      f"{self.describe(offender)}", offender.pos)
        if right.is_const or not left.is_const:
            return left, self.convert_to(right, left, interval)
        return self.convert_to(left, right, interval), right

    def to_unit_of(self, typed: _Typed, target: _Typed, what: str) -> _Typed:
        """``typed`` in ``target``'s unit, as an interval (no temperature offset)."""
        if typed.flexible:
            return self.relabel(typed, target)
        if typed.unit == target.unit:
            return typed
        if typed.unit.dimension != target.unit.dimension:
            self.fail(QueryUnitError, f"units do not agree ({what}): {self.describe(target)}, "
                      f"{self.describe(typed)}", typed.pos)
        return self.convert_to(typed, target, interval=True)

    def describe(self, typed: _Typed) -> str:
        unit = typed.unit_text or "no unit"
        return f"{self.source(typed)} is {typed.unit.dimension_name} ({unit})"

    def relabel(self, typed: _Typed, target: _Typed) -> _Typed:
        return _Typed(Const(typed.expr.value, target.unit_text), target.unit, target.unit_text, False,
                      typed.pos, typed.end, typed.exact)

    def convert_to(self, typed: _Typed, target: _Typed, interval: bool) -> _Typed:
        """``typed`` expressed in ``target``'s unit (same dimension)."""
        conv = convert_interval if interval else convert
        if typed.is_const:
            value = _tidy(conv(typed.expr.value, typed.unit, target.unit))
            return _Typed(Const(value, target.unit_text), target.unit, target.unit_text, False,
                          typed.pos, typed.end, False)
        factor = _tidy(convert_interval(1.0, typed.unit, target.unit))
        expr: ValueExpr = BinaryOp("*", typed.expr, Const(factor, ""), target.unit_text)
        offset = 0.0 if interval else _tidy(convert(0.0, typed.unit, target.unit))
        if offset:
            expr = BinaryOp("+", expr, Const(offset, target.unit_text), target.unit_text)
        return _Typed(expr, target.unit, target.unit_text, False, typed.pos, typed.end)

    # --- predicates ---------------------------------------------------------------------------
    def predicate(self, node) -> Predicate:
        if isinstance(node, ast.Comparison):
            if any(isinstance(side, ast.Label) or self.categorical(side) for side in (node.left, node.right)):
                return self.category_comparison(node)
            return self.comparison(node.op, self.value(node.left), self.value(node.right))
        if isinstance(node, ast.Between):
            return self.between(node)
        if isinstance(node, ast.InList):
            return self.in_list(node)
        if isinstance(node, ast.BoolOp):
            args = [self.predicate(a) for a in node.args]
            return and_(args) if node.op == "and" else or_(args)
        if isinstance(node, ast.NotPred):
            return negate(self.predicate(node.arg))
        raise AssertionError(f"not a predicate: {node!r}")  # the grammar prevents this

    def between(self, node: ast.Between) -> Predicate:
        channel = self.categorical(node.expr)
        if channel is not None:
            self.fail(QueryTypeError, f"{channel.name} is categorical: its names have no order, so "
                      f"between cannot compare them; use in (...)", self.next_token(node.expr.end))
        expr = self.value(node.expr)
        low, high = self.value(node.low), self.value(node.high)
        if low.is_const and high.is_const:
            _, low_c = self.align(expr, low, interval=False, what="between")
            _, high_c = self.align(expr, high, interval=False, what="between")
            if low_c.expr.value > high_c.expr.value:
                self.fail(QueryTypeError, f"between {self.source(low)} and {self.source(high)}: the "
                          f"low end is above the high end", low.pos)
        inside = and_([self.comparison(">=", expr, low), self.comparison("<=", expr, high)])
        return negate(inside) if node.negated else inside

    def in_list(self, node: ast.InList) -> Predicate:
        """``x in (a, b)`` is ``x == a or x == b``; ``not in``, its complement."""
        channel = self.categorical(node.expr)
        if channel is not None:
            ref, _ = self.channel_ref(node.expr)
            tests = [raw_compare(ref, "==", float(self.code_of(channel, item)), exact=True)
                     for item in node.items]
        else:
            expr = self.value(node.expr)
            tests = [self.comparison("==", expr, self.value(item)) for item in node.items]
        found = or_(tests)
        return negate(found) if node.negated else found

    def category_comparison(self, node: ast.Comparison) -> Predicate:
        """``state == idle`` (either way round): an integer comparison with idle's code."""
        channel = self.categorical(node.left) or self.categorical(node.right)
        if channel is None:     # a quoted name, but no categorical channel opposite it
            label = node.left if isinstance(node.left, ast.Label) else node.right
            self.value(label)
        if node.op not in ("==", "!="):
            self.fail(QueryTypeError, f"{channel.name} is categorical: its names have no order, so "
                      f"{node.op} cannot compare them; use ==, != or in (...)", node.op_pos)
        side, other = (node.left, node.right) if self.categorical(node.left) else (node.right, node.left)
        ref, _ = self.channel_ref(side)
        return raw_compare(ref, node.op, float(self.code_of(channel, other)), exact=True)

    def code_of(self, channel: Channel, node) -> int:
        """The code of the category name ``node`` (bare or quoted) of ``channel``."""
        if not isinstance(node, ast.Label) and node.pos not in self.labels:
            self.fail(QueryTypeError, f"{channel.name} is categorical: compare it with one of its "
                      f"names ({known_names(channel.categories)}), bare or in quotes, not with "
                      f"{self.source(node)}", node.pos)
        if node.name in channel.categories:
            return channel.code_of(node.name)
        also = ""
        if isinstance(node, ast.ChannelName) and self.streams_with(node.name):
            also = f" ({node.name} is also a channel; opposite {channel.name} a name means a category)"
        self.fail(QueryNameError, f"{self.source(node)} is not a category of {channel.name}"
                  f"{_did_you_mean(node.name, channel.categories)}{also}; its names are "
                  f"{known_names(channel.categories)}", node.pos)

    def comparison(self, op: str, left: _Typed, right: _Typed) -> Predicate:
        for side in (left, right):
            self.numeric(side, f"order ({op})" if op not in ("==", "!=") else
                         "comparison with a number or an expression")
        left, right = self.align(left, right, interval=False, what=op)
        if left.is_const and right.is_const:
            return BoolConst(compare(op, left.expr.value, right.expr.value))
        if isinstance(right.expr, ChannelRef) and left.is_const:
            left, right, op = right, left, _FLIP[op]
        if isinstance(left.expr, ChannelRef) and right.is_const:
            return raw_compare(left.expr, op, right.expr.value, exact=right.exact)
        return Compare(op, left.expr, right.expr)

    def peak(self, node) -> Optional[_Typed]:
        """The first channel-bearing side of the predicate's comparisons that is
        not a categorical channel, else the first one that is."""
        sides = [side for comparison in _comparisons(node)
                 for side in ((comparison.left, comparison.right) if isinstance(comparison, ast.Comparison)
                              else (comparison.expr,))
                 if any(n.pos not in self.labels for n in _channel_names(side))]
        # A categorical channel's largest code is no peak; it is the peak only
        # when nothing else is (then its name is shown: the state itself for ==).
        numeric = [s for s in sides if not self.categorical(s)]
        chosen = (numeric or sides or [None])[0]
        return self.value(chosen) if chosen is not None else None

    # --- time ---------------------------------------------------------------------------------
    def time(self, clauses) -> tuple[Now, TimeRange]:
        """How now was chosen, and the half-open window the query reads."""
        if self.now_policy == "data" and not any(c in clauses for c in TIME_CLAUSES + ("at",)):
            # the whole stream, whatever now is: now is only reported
            newest = self.reported_newest_ns(self.stream.name)
            return Now("data", 0 if newest is None else int(newest) + 1), TimeRange(None, None)
        now = self.now(clauses.get("at"))
        bounds = self.window_bounds(clauses, now)
        if bounds is None:
            return now, TimeRange(None, now.ns if now.source == "at" else None)
        if now.source == "data" and self.newest() is None:
            return now, TimeRange(0, 0)      # an empty stream: every window is empty
        start, end = bounds
        return now, TimeRange(self.clamp(start), self.clamp(max(start, end)))

    def window_bounds(self, clauses, now: Now) -> Optional[tuple[int, int]]:
        if "last" in clauses:
            length = self.positive_duration(clauses["last"].args[0], "the window after last")
            return now.ns - length, now.ns
        if "since" in clauses:
            point = clauses["since"].args[0]
            start = self.point(point, now.ns)
            if now.source == "at" and start > now.ns:
                self.fail(QueryTypeError, "since is after the at anchor: the window would be empty",
                          point.pos)
            return start, now.ns
        if "between" in clauses:
            first, second = clauses["between"].args
            start, end = self.point(first, now.ns), self.point(second, now.ns)
            if start >= end:
                self.fail(QueryTypeError, "between A and B needs A before B", second.pos)
            return start, end
        return None

    def newest(self) -> Optional[int]:
        """The stream's newest timestamp, asked once."""
        if self._newest is None:
            value = self.newest_ns(self.stream.name)
            self._newest = (None if value is None else int(value),)
        return self._newest[0]

    def now(self, at_clause) -> Now:
        if self.now_policy == "clock":
            base = Now("clock", int(self.clock_ns if self.clock_ns is not None else _time.time_ns()))
        else:
            newest = self.newest()
            base = Now("data", 0 if newest is None else newest + 1)
        if at_clause is None:
            return base
        return Now("at", self.point(at_clause.args[0], base.ns))

    def point(self, point: ast.TimePoint, now_ns: int) -> int:
        base = point.base
        if base.kind == "iso":
            ns = iso_ns(base.text, base.pos, self.text)
        elif base.kind == "epoch":
            ns = epoch_ns(base.number, self.text)
        elif base.kind == "ago":
            ns = now_ns - duration_ns(base.number, self.text, "a time before now")
        else:
            ns = now_ns
        for sign, number in point.offsets:
            step = duration_ns(number, self.text, "a time offset")
            ns = ns + step if sign == "+" else ns - step
        if not INT64_MIN <= ns <= INT64_MAX:
            self.fail(QueryRangeError, "this time is outside 64-bit nanoseconds (1677 to 2262)", point.pos)
        return ns

    @staticmethod
    def clamp(ns: int) -> int:
        return min(max(ns, INT64_MIN), INT64_MAX)

    def positive_duration(self, number: ast.Number, what: str) -> int:
        ns = duration_ns(number, self.text, what)
        if ns <= 0:
            self.fail(QueryTypeError, f"{what} must be longer than 0, not {number.source}", number.pos)
        return ns

    def buckets(self, clause, out_unit: str) -> tuple[Optional[int], Fill]:
        if clause is None:
            return None, Fill()
        bucket_ns = self.positive_duration(clause.args[0], "a bucket (by)")
        spec: Optional[ast.FillSpec] = clause.args[1]
        if spec is None:
            return bucket_ns, Fill()
        if spec.mode != "value":
            mode = spec.mode.lower()
            if mode not in FILL_MODES:
                self.fail(QueryNameError, f"unknown fill mode {spec.mode!r}; use none, null, prev, "
                          f"linear or a number", spec.pos)
            return bucket_ns, Fill(mode)
        return bucket_ns, Fill("value", self.fill_value(spec.value, out_unit))

    def fill_value(self, number: ast.Number, out_unit: str) -> float:
        if not number.unit:
            return number.value
        if not is_unit(number.unit):
            self.fail(QueryUnitError, f"unknown unit {number.unit!r} in fill", number.pos)
        if not is_unit(out_unit):
            self.fail(QueryUnitError, f"write the fill value without a unit (results are in "
                      f"{out_unit})", number.pos)
        try:
            return convert(number.value, parse_unit(number.unit), parse_unit(out_unit))
        except ValueError as exc:
            self.fail(QueryUnitError, f"fill value {number.source}: {exc}", number.pos)

    def max_gap(self, clause) -> Optional[int]:
        if clause is None:
            return self.stream.max_gap_ns
        op, number = clause.args
        ns = self.positive_duration(number, "a gap")
        if op == "<":
            if ns <= 1:
                self.fail(QueryTypeError, "gap < 1ns leaves no gap at all", number.pos)
            ns -= 1
        return ns

    def min_duration(self, clause) -> int:
        if clause is None:
            return 0
        op, number = clause.args
        ns = duration_ns(number, self.text, "an episode's length")
        if op == ">" and ns >= INT64_MAX:   # ns + 1 would not fit the engine's int64
            self.fail(QueryRangeError, f"for > {number.source}: no episode can be that long", number.pos)
        return ns + 1 if op == ">" else ns


# --- tree walks -----------------------------------------------------------------------------

def _channel_names(node) -> Iterator[ast.ChannelName]:
    if isinstance(node, ast.ChannelName):
        yield node
    elif isinstance(node, ast.Number) or node is None:
        return
    elif isinstance(node, ast.Unary):
        yield from _channel_names(node.operand)
    elif isinstance(node, (ast.Binary, ast.Comparison)):
        yield from _channel_names(node.left)
        yield from _channel_names(node.right)
    elif isinstance(node, ast.Call):
        for arg in node.args:
            yield from _channel_names(arg)
    elif isinstance(node, ast.Between):
        for part in (node.expr, node.low, node.high):
            yield from _channel_names(part)
    elif isinstance(node, ast.InList):
        for part in (node.expr, *node.items):
            yield from _channel_names(part)
    elif isinstance(node, ast.BoolOp):
        for arg in node.args:
            yield from _channel_names(arg)
    elif isinstance(node, ast.NotPred):
        yield from _channel_names(node.arg)


def _comparisons(node) -> Iterator:
    if isinstance(node, (ast.Comparison, ast.Between, ast.InList)):
        yield node
    elif isinstance(node, ast.BoolOp):
        for arg in node.args:
            yield from _comparisons(arg)
    elif isinstance(node, ast.NotPred):
        yield from _comparisons(node.arg)


def _bare(node) -> bool:
    """A name written without a stream: it may be a category name."""
    return isinstance(node, ast.ChannelName) and node.stream is None


def _label_candidates(node) -> Iterator[ast.ChannelName]:
    """Bare names that may be category names (before the stream is known): the
    side of a comparison opposite a channel name, the items of ``name in (...)``."""
    for comparison in _comparisons(node):
        if isinstance(comparison, ast.Comparison):
            left, right = comparison.left, comparison.right
            if isinstance(left, ast.ChannelName) and _bare(right):
                yield right
            if isinstance(right, ast.ChannelName) and _bare(left):
                yield left
        elif isinstance(comparison.expr, ast.ChannelName):
            items = comparison.items if isinstance(comparison, ast.InList) else \
                (comparison.low, comparison.high)
            yield from (item for item in items if _bare(item))


def _categories(typed: "_Typed") -> Optional[tuple[str, ...]]:
    """The dictionary of a categorical channel expression (None for anything else)."""
    return typed.expr.categories if isinstance(typed.expr, ChannelRef) else None


def _tidy(value: float) -> float:
    """Drops the last-bit noise of a unit conversion (1g is 999.9999999999999 mg in
    floats; 15 significant digits is what the conversion factors are good for)."""
    return float(f"{value:.15g}") if math.isfinite(value) else value


def _is_scalar(typed: _Typed) -> bool:
    """A dimensionless constant: multiplying by it keeps the other side's unit."""
    return typed.is_const and typed.unit.dimension == DIMENSIONLESS


def _short_list(names: list[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _did_you_mean(word: str, pool) -> str:
    import difflib      # only for an error message: not on a query's start-up path
    pool = list(pool)
    close = [p for p in pool if p.lower() == word.lower()] or \
        difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _clause_hint(kind: str) -> str:
    return {"for": " (for >= DUR belongs to find episodes)",
            "gap": " (gap <= DUR belongs to duration, twa, integral and find episodes)",
            "by": " (by DUR buckets belong to aggregates such as avg)"}.get(kind, "")
