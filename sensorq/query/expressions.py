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
from fractions import Fraction
from typing import Optional, Union

from .nodes import Node, node

# Every node class has a docstring: without one, @dataclass works out the class's
# signature (inspect) for __doc__ when the module is imported, on every query's start-up
# (and nodes.py says why @node).

_QUANTITY_RE = re.compile(r"^((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(.*)$")


@node
class Number(Node):
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
    def decimal(self) -> "ExactDecimal":
        """The value exactly, as digits and a power of ten (for nanosecond and
        count arithmetic, which must never go through a float)."""
        return ExactDecimal.parse(self.text, self.negative)

    @property
    def value(self) -> float:
        value = float(self.text)
        return -value if self.negative else value

    @property
    def source(self) -> str:
        return ("-" if self.negative else "") + self.text + self.unit


_DECIMAL_RE = re.compile(r"^(\d*)(?:\.(\d*))?(?:[eE]([+-]?)(\d+))?$")
# An exponent beyond this makes any literal (at most 10 000 characters) either
# far larger than an int64 or far smaller than half a nanosecond; saturating it
# keeps ``1e99999999999s`` from building a ten-gigadigit integer.
MAX_EXPONENT = 10**9
MAX_DIGITS = 100_000   # well beyond the parser's limit on the length of a query
_INT_CHUNK = 4000   # Python refuses to convert more than 4300 digits at once


@node
class ExactDecimal(Node):
    """``±digits × 10**exponent`` exactly; ``digits`` has no leading or trailing
    zeros ("" is zero).  Cheap for any literal: nothing is expanded until asked,
    and :meth:`fraction` is only for values whose size has been checked."""
    negative: bool
    digits: str
    exponent: int

    @classmethod
    def parse(cls, text: str, negative: bool = False) -> "ExactDecimal":
        match = _DECIMAL_RE.match(text)
        if not match or not (match.group(1) or match.group(2)):
            raise ValueError(f"not a decimal number: {text!r}")
        whole, frac, sign, power = match.groups()
        frac = frac or ""
        exponent = _saturated_exponent(sign, power) - len(frac)
        digits = (whole + frac).lstrip("0")
        stripped = digits.rstrip("0")
        return cls(negative and bool(stripped), stripped, exponent + len(digits) - len(stripped))

    @property
    def top(self) -> int:
        """The power of ten of the leading digit: 10**top <= |value| < 10**(top + 1)."""
        return len(self.digits) - 1 + self.exponent

    def fraction(self) -> Fraction:
        """The exact value; only for an exponent of sane size (check :attr:`top`)."""
        assert abs(self.exponent) <= 2 * MAX_DIGITS, self.exponent
        n = _int_of_digits(self.digits) if self.digits else 0
        n = -n if self.negative else n
        if self.exponent >= 0:
            return Fraction(n * 10 ** self.exponent)
        return Fraction(n, 10 ** -self.exponent)


def _saturated_exponent(sign: str | None, power: str | None) -> int:
    if not power:
        return 0
    power = power.lstrip("0") or "0"
    value = MAX_EXPONENT if len(power) > 9 else min(int(power), MAX_EXPONENT)
    return -value if sign == "-" else value


def _int_of_digits(digits: str) -> int:
    """int(digits) for any length (Python converts at most 4300 digits at once)."""
    if len(digits) <= _INT_CHUNK:
        return int(digits)
    head, tail = digits[:-_INT_CHUNK], digits[-_INT_CHUNK:]
    return _int_of_digits(head) * 10 ** _INT_CHUNK + int(tail)


# --- value expressions -------------------------------------------------------------

@node
class ChannelName(Node):
    """``name`` or ``stream.name``."""
    name: str
    stream: Optional[str]
    pos: int
    end: int
    name_pos: int           # where the channel part starts (after "stream.")

    @property
    def source(self) -> str:
        return f"{self.stream}.{self.name}" if self.stream else self.name


@node
class Label(Node):
    """A quoted name (``"door open"``): always a category of a categorical
    channel, never a channel (a bare name may be either; the planner decides)."""
    name: str               # without the quotes, "" unescaped to "
    pos: int
    end: int

    @property
    def source(self) -> str:
        return '"' + self.name.replace('"', '""') + '"'


@node
class Call(Node):
    """``func(arg, ...)``: abs, sqrt, mag."""
    func: str
    args: tuple["Expr", ...]
    pos: int
    end: int


@node
class Unary(Node):
    """``-x`` or ``+x``."""
    op: str                 # "neg" or "pos"
    operand: "Expr"
    pos: int
    end: int


@node
class Binary(Node):
    """``left op right``: an arithmetic operator between two expressions."""
    op: str                 # "+", "-", "*", "/"
    left: "Expr"
    right: "Expr"
    pos: int
    end: int
    op_pos: int


Expr = Union[Number, ChannelName, Label, Call, Unary, Binary]

# --- predicates --------------------------------------------------------------------


@node
class Comparison(Node):
    """``left op right``: a comparison of two expressions."""
    op: str                 # one of plan.COMPARE_OPS ("=" and "<>" already mapped)
    left: Expr
    right: Expr
    pos: int
    end: int
    op_pos: int


@node
class Between(Node):
    """``expr [not] between low and high`` (both ends inclusive)."""
    expr: Expr
    low: Expr
    high: Expr
    negated: bool
    pos: int
    end: int


@node
class InList(Node):
    """``expr [not] in (a, b, ...)``: equal to one of the items (or to none)."""
    expr: Expr
    items: tuple[Expr, ...]
    negated: bool
    pos: int
    end: int


@node
class BoolOp(Node):
    """``a and b and ...`` or ``a or b or ...`` (nested runs flattened)."""
    op: str                 # "and" or "or"
    args: tuple["Pred", ...]
    pos: int
    end: int


@node
class NotPred(Node):
    """``not pred``."""
    arg: "Pred"
    pos: int
    end: int


Pred = Union[Comparison, Between, InList, BoolOp, NotPred]

# --- time --------------------------------------------------------------------------


@node
class TimeBase(Node):
    """The start of a time point: ``iso`` (text), ``epoch`` (a Number with a unit),
    ``ago`` (a duration before now) or ``now``."""
    kind: str
    pos: int
    end: int
    text: str = ""
    number: Optional[Number] = None


@node
class TimePoint(Node):
    """``base [+|- duration]...``"""
    base: TimeBase
    offsets: tuple[tuple[str, Number], ...]
    pos: int
    end: int


# --- clauses and queries --------------------------------------------------------------


@node
class FillSpec(Node):
    """``fill(mode)`` or ``fill(number)`` after ``by``."""
    mode: str                       # a name as written (none, null, prev, linear) or "value"
    value: Optional[Number]
    pos: int
    end: int


@node
class Clause(Node):
    """One clause after the query head.  ``kind`` is the keyword (lower case):
    where, from, last, since, between, at, by, gap, for, limit.  ``args`` hold its
    parts: a Pred, a stream name, Numbers, TimePoints, an op string, a FillSpec."""
    kind: str
    args: tuple
    pos: int
    end: int


@node
class AggregateAst(Node):
    """``AGGREGATE [expr] clause...`` (count, avg z, percentile(99) z, ...)."""
    name: str                       # as written, e.g. "avg", "MEAN", "p95"
    name_pos: int
    name_end: int
    percentile: Optional[Number]    # for percentile(p)
    expr: Optional[Expr]
    clauses: tuple[Clause, ...]


@node
class FindAst(Node):
    """``find first|last [n] clause...``."""
    direction: str                  # "first" or "last"
    n: Optional[Number]
    clauses: tuple[Clause, ...]
    pos: int


@node
class EpisodesAst(Node):
    """``find episodes clause...``."""
    clauses: tuple[Clause, ...]
    pos: int


@node
class TopAst(Node):
    """``top n expr clause...``."""
    n: Number
    expr: Expr
    clauses: tuple[Clause, ...]
    pos: int


@node
class NewestAst(Node):
    """``newest [n] clause...``."""
    n: Optional[Number]
    clauses: tuple[Clause, ...]
    pos: int


@node
class ScoreAst(Node):
    """``score MODEL [over DUR [hop DUR]] clause...``."""
    model: str
    over: Optional[Number]          # must be the model's window when given
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
    if isinstance(node, Label):
        return f"{pad}Label {node.source}"
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
