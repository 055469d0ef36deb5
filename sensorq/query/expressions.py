"""The untyped syntax tree of a query: what the user wrote, with positions.

The parser (:mod:`sensorq.query.parser`) builds these nodes from lark's tree;
the planner (:mod:`sensorq.query.planner`) resolves names, units and times and
turns them into the typed plan of :mod:`sensorq.query.plan`.  Nothing here is
interpreted yet: a number keeps its text and its unit suffix, because "10m" is
ten minutes after ``last`` and ten metres in a comparison.

Every node carries ``pos`` and ``end``: 0-based character offsets into the query
text (lark's ``start_pos``/``end_pos``), so that every error can put its caret
under the offending token (column = pos + 1).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Union

_QUANTITY_RE = re.compile(r"^((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(.*)$")


@dataclass(frozen=True)
class Number:
    """A numeric literal with an optional unit suffix glued to it (``2g``, ``10m``)."""
    text: str             # the number part, e.g. "9.81"
    unit: str             # the suffix, e.g. "m/s^2" ("" for a bare number)
    pos: int
    end: int
    negative: bool = False  # a leading minus sign (only in fill(...) and percentile(...))

    @classmethod
    def from_token(cls, text: str, pos: int, negative: bool = False) -> "Number":
        match = _QUANTITY_RE.match(text)
        assert match, text  # the grammar's QUANTITY terminal guarantees the shape
        return cls(match.group(1), match.group(2), pos, pos + len(text), negative)

    @property
    def exact(self) -> Fraction:
        """The value as an exact fraction (for nanosecond arithmetic)."""
        value = Fraction(self.text if not self.text.endswith(".") else self.text[:-1])
        return -value if self.negative else value

    @property
    def value(self) -> float:
        value = float(self.text)
        return -value if self.negative else value

    @property
    def source(self) -> str:
        return ("-" if self.negative else "") + self.text + self.unit


# --- value expressions -------------------------------------------------------------

@dataclass(frozen=True)
class ChannelName:
    """``name`` or ``stream.name``."""
    name: str
    stream: Optional[str]
    pos: int
    end: int
    name_pos: int           # where the channel part starts (after "stream.")

    @property
    def source(self) -> str:
        return f"{self.stream}.{self.name}" if self.stream else self.name


@dataclass(frozen=True)
class Call:
    """``func(arg, ...)``: abs, sqrt, mag."""
    func: str
    args: tuple["Expr", ...]
    pos: int
    end: int


@dataclass(frozen=True)
class Unary:
    op: str                 # "neg" or "pos"
    operand: "Expr"
    pos: int
    end: int


@dataclass(frozen=True)
class Binary:
    op: str                 # "+", "-", "*", "/"
    left: "Expr"
    right: "Expr"
    pos: int
    end: int
    op_pos: int


Expr = Union[Number, ChannelName, Call, Unary, Binary]

# --- predicates --------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    op: str                 # one of plan.COMPARE_OPS ("=" and "<>" already mapped)
    left: Expr
    right: Expr
    pos: int
    end: int
    op_pos: int


@dataclass(frozen=True)
class Between:
    """``expr [not] between low and high`` (both ends inclusive)."""
    expr: Expr
    low: Expr
    high: Expr
    negated: bool
    pos: int
    end: int


@dataclass(frozen=True)
class BoolOp:
    op: str                 # "and" or "or"
    args: tuple["Pred", ...]
    pos: int
    end: int


@dataclass(frozen=True)
class NotPred:
    arg: "Pred"
    pos: int
    end: int


Pred = Union[Comparison, Between, BoolOp, NotPred]

# --- time --------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeBase:
    """The start of a time point: ``iso`` (text), ``epoch`` (a Number with a unit),
    ``ago`` (a duration before now) or ``now``."""
    kind: str
    pos: int
    end: int
    text: str = ""
    number: Optional[Number] = None


@dataclass(frozen=True)
class TimePoint:
    """``base [+|- duration]...``"""
    base: TimeBase
    offsets: tuple[tuple[str, Number], ...]
    pos: int
    end: int


# --- clauses and queries --------------------------------------------------------------


@dataclass(frozen=True)
class FillSpec:
    mode: str                       # a name as written (none, null, prev, linear) or "value"
    value: Optional[Number]
    pos: int
    end: int


@dataclass(frozen=True)
class Clause:
    """One clause after the query head.  ``kind`` is the keyword (lower case):
    where, from, last, since, between, at, by, gap, for.  ``args`` hold its
    parts: a Pred, a stream name, Numbers, TimePoints, an op string, a FillSpec."""
    kind: str
    args: tuple
    pos: int
    end: int


@dataclass(frozen=True)
class AggregateAst:
    name: str                       # as written, e.g. "avg", "MEAN", "p95"
    name_pos: int
    name_end: int
    percentile: Optional[Number]    # for percentile(p)
    expr: Optional[Expr]
    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class FindAst:
    direction: str                  # "first" or "last"
    n: Optional[Number]
    clauses: tuple[Clause, ...]
    pos: int


@dataclass(frozen=True)
class EpisodesAst:
    clauses: tuple[Clause, ...]
    pos: int


@dataclass(frozen=True)
class TopAst:
    n: Number
    expr: Expr
    clauses: tuple[Clause, ...]
    pos: int


@dataclass(frozen=True)
class NewestAst:
    n: Optional[Number]
    clauses: tuple[Clause, ...]
    pos: int


@dataclass(frozen=True)
class ScoreAst:
    model: str
    over: Number
    hop: Optional[Number]
    clauses: tuple[Clause, ...]
    pos: int


QueryAst = Union[AggregateAst, FindAst, EpisodesAst, TopAst, NewestAst, ScoreAst]


def pretty(node, indent: int = 0) -> str:
    """An indented, position-free rendering of a syntax tree (for ``explain``)."""
    pad = "  " * indent
    if isinstance(node, Number):
        return f"{pad}Number {node.source}"
    if isinstance(node, ChannelName):
        return f"{pad}Channel {node.source}"
    if isinstance(node, (tuple, list)):
        return "\n".join(pretty(item, indent) for item in node)
    if not dataclasses.is_dataclass(node):
        return f"{pad}{node!r}"
    lines = [f"{pad}{type(node).__name__}"]
    for field in dataclasses.fields(node):
        if field.name in ("pos", "end", "op_pos", "name_pos", "name_end"):
            continue
        value = getattr(node, field.name)
        if value is None or value == ():
            continue
        if isinstance(value, (str, bool, int, float)):
            lines[0] += f" {field.name}={value!r}"
        else:
            lines.append(f"{pad}  {field.name}:")
            lines.append(pretty(value, indent + 2))
    return "\n".join(lines)
