"""The typed plan: what the planner produces and the engine executes.

Everything user-facing is resolved here: names are bound to (stream, channel
index), literals are converted to the unit the comparison happens in, time
windows are absolute nanoseconds.  The engine never sees query text, and no text
of the user's ever becomes code: constants travel as numbers in these nodes.

Value expressions evaluate to float64 *physical* values in the node's unit
(``raw * scale`` for a scaled channel).  The one exception is
:class:`RawCompare`, a channel compared with a constant already converted to the
channel's own stored (raw) units: it is what block statistics can answer
without decoding, and what the device port can run in integer arithmetic.
"""
from __future__ import annotations

import re
from dataclasses import field
from typing import Optional, Union

from .nodes import Node, node

# Every node class has a docstring: without one, @dataclass works out the class's
# signature (inspect) for __doc__ when the module is imported, on every query's start-up
# (and nodes.py says why @node).

# ----------------------------------------------------------------------------
# Value expressions (evaluate to float64 arrays)
# ----------------------------------------------------------------------------


@node
class ChannelRef(Node):
    """A channel of the query's stream.  ``physical = raw * scale``.  A
    categorical channel carries its dictionary: stored code k means
    ``categories[k]`` (the planner compiles names into codes; results map
    codes back to names, sensorq/query/categories.py)."""
    channel: str
    index: int            # position in the stream's channel list (and in each block)
    dtype: str            # storage type, e.g. "int16"
    scale: float          # 1.0 when the channel has none
    unit: str             # the channel's unit symbol
    categories: Optional[tuple[str, ...]] = None   # None: the channel holds numbers


@node
class Const(Node):
    """A constant, in physical units."""
    value: float
    unit: str = ""


@node
class UnaryOp(Node):
    """A function or sign of one value expression."""
    op: str               # "neg", "abs", "sqrt"
    operand: "ValueExpr"
    unit: str = ""


@node
class BinaryOp(Node):
    """Arithmetic between two value expressions."""
    op: str               # "+", "-", "*", "/"
    left: "ValueExpr"
    right: "ValueExpr"
    unit: str = ""


@node
class Magnitude(Node):
    """sqrt(a^2 + b^2 + ...), every argument already in one unit."""
    args: tuple["ValueExpr", ...]
    unit: str = ""


ValueExpr = Union[ChannelRef, Const, UnaryOp, BinaryOp, Magnitude]

# ----------------------------------------------------------------------------
# Predicates (evaluate to boolean arrays)
# ----------------------------------------------------------------------------

COMPARE_OPS = ("<", "<=", ">", ">=", "==", "!=")


@node
class RawCompare(Node):
    """``channel OP threshold`` with the threshold in the channel's stored units.

    For integer channels the planner normalises the threshold to an integer and
    the operator accordingly (``x > 1999.7`` becomes ``x >= 2000``, and a test
    that no stored integer can pass becomes :class:`BoolConst`)."""
    channel: ChannelRef
    op: str
    threshold: float      # an exact integer value for integer channels


@node
class Compare(Node):
    """General comparison of two value expressions (in float64, physical units)."""
    op: str
    left: ValueExpr
    right: ValueExpr


@node
class And(Node):
    """Every predicate holds."""
    args: tuple["Predicate", ...]


@node
class Or(Node):
    """At least one predicate holds."""
    args: tuple["Predicate", ...]


@node
class Not(Node):
    """The predicate does not hold."""
    arg: "Predicate"


@node
class BoolConst(Node):
    """A predicate known before any data is read (always or never true)."""
    value: bool


Predicate = Union[RawCompare, Compare, And, Or, Not, BoolConst]

# ----------------------------------------------------------------------------
# Time
# ----------------------------------------------------------------------------


@node
class TimeRange(Node):
    """Half-open ``[start_ns, end_ns)``; None is unbounded on that side."""
    start_ns: Optional[int] = None
    end_ns: Optional[int] = None

    def bounds(self) -> tuple[int, int]:
        """(start, end) as int64 ns, unbounded sides at the int64 extremes."""
        start = -2**63 if self.start_ns is None else int(self.start_ns)
        end = 2**63 - 1 if self.end_ns is None else int(self.end_ns)
        return start, end


@node
class Now(Node):
    """How "now" was chosen (reported by explain): 'clock' (wall clock), 'data'
    (the newest timestamp in the stream) or 'at' (the query's anchor)."""
    source: str
    ns: int


# ----------------------------------------------------------------------------
# Queries
# ----------------------------------------------------------------------------

AGGREGATES = ("count", "sum", "avg", "min", "max", "std", "var", "median", "percentile",
              "first", "last", "spread", "rate", "integral", "twa", "duration",
              "argmax", "argmin")


@node
class Fill(Node):
    """What ``by`` puts in buckets without samples."""
    mode: str = "none"    # "none" (drop empty buckets), "null", "prev", "linear", "value"
    value: float = 0.0


@node
class AggregateQuery(Node):
    """``AGG [expr] [where PRED] [time] [by BUCKET [fill(...)]]``."""
    stream: str
    aggregate: str                    # one of AGGREGATES ("mean" is planned as "avg")
    expr: Optional[ValueExpr]         # None for count (and for duration, which uses where)
    where: Optional[Predicate]
    time: TimeRange
    now: Now
    result_unit: str                  # "" for count, "<u>/s" for rate, "<u>*s" for integral...
    percentile: float = 0.0           # 0..100, for "percentile" (median is 50)
    bucket_ns: Optional[int] = None
    fill: Fill = field(default_factory=Fill)
    max_gap_ns: Optional[int] = None  # for duration / twa / integral: a value holds at most this
    limit: Optional[int] = None     # limit N: at most the first N rows


@node
class FindQuery(Node):
    """``find first|last [N] where PRED [time]``: the first/last N matching samples."""
    stream: str
    direction: str                    # "first" or "last"
    n: int
    where: Predicate
    time: TimeRange
    now: Now
    limit: Optional[int] = None     # limit N: at most the first N rows


@node
class EpisodesQuery(Node):
    """``find episodes where PRED [for >= D] [time]``: maximal runs of consecutive
    samples where PRED holds, lasting at least ``min_duration_ns`` (end - start).
    ``peak`` is the expression whose maximum is reported per episode (the first
    channel the predicate mentions)."""
    stream: str
    where: Predicate
    min_duration_ns: int
    peak: Optional[ValueExpr]
    peak_unit: str
    time: TimeRange
    now: Now
    max_gap_ns: Optional[int] = None  # a gap longer than this between samples ends an episode
    limit: Optional[int] = None     # limit N: at most the first N rows


@node
class TopQuery(Node):
    """``top N EXPR [where PRED] [time]``: the N samples with the largest EXPR."""
    stream: str
    n: int
    expr: ValueExpr
    unit: str
    where: Optional[Predicate]
    time: TimeRange
    now: Now
    limit: Optional[int] = None     # limit N: at most the first N rows


@node
class NewestQuery(Node):
    """``newest N [where PRED] [time]``: the N most recent samples, all channels."""
    stream: str
    n: int
    where: Optional[Predicate]
    time: TimeRange
    now: Now
    limit: Optional[int] = None     # limit N: at most the first N rows


@node
class ModelQuery(Node):
    """``score MODEL [time]``: one row per window of the model's derived stream
    (sensorq/models/derived.py): start, end, outputs."""
    stream: str
    model: str
    window_ns: int
    hop_ns: int
    time: TimeRange
    now: Now
    limit: Optional[int] = None     # limit N: at most the first N rows


Query = Union[AggregateQuery, FindQuery, EpisodesQuery, TopQuery, NewestQuery, ModelQuery]


# ----------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------

def render(node, detail: bool = False) -> str:
    """A plan node as text: query-like (for error messages), or with
    ``detail`` the storage types, scales and raw thresholds (for explain)."""
    def r(n):
        return render(n, detail)

    if isinstance(node, ChannelRef):
        if not detail:
            return node.channel
        scale = f"×{node.scale:g}" if node.scale != 1.0 else ""
        unit = f" {node.unit}" if node.unit else ""
        kind = " categorical" if node.categories is not None else ""
        return f"{node.channel}[{node.dtype}{scale}{unit}{kind}]"
    if isinstance(node, Const):
        return f"{node.value:g}{node.unit}"
    if isinstance(node, UnaryOp):
        return f"-{r(node.operand)}" if node.op == "neg" else f"{node.op}({r(node.operand)})"
    if isinstance(node, BinaryOp):
        return f"({r(node.left)} {node.op} {r(node.right)})" if detail else \
            f"{r(node.left)} {node.op} {r(node.right)}"
    if isinstance(node, Magnitude):
        return f"mag({', '.join(r(a) for a in node.args)})"
    if isinstance(node, RawCompare):
        prefix = "raw " if detail else ""
        name = category_of(node.channel, node.threshold)
        if name is not None:
            code = f"{node.threshold:g} ({quote_name(name)})" if detail else quote_name(name)
            return f"{prefix}{node.channel.channel} {node.op} {code}"
        return f"{prefix}{node.channel.channel} {node.op} {node.threshold:g}"
    if isinstance(node, Compare):
        return f"{r(node.left)} {node.op} {r(node.right)}"
    if isinstance(node, (And, Or)):
        word = " and " if isinstance(node, And) else " or "
        return "(" + word.join(r(a) for a in node.args) + ")"
    if isinstance(node, Not):
        return f"not {r(node.arg)}"
    if isinstance(node, BoolConst):
        return str(node.value).lower()
    return type(node).__name__


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote_name(name: str) -> str:
    """A category name as a query writes it: bare if it is an identifier, else quoted."""
    return name if _IDENTIFIER.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def category_of(ref: ChannelRef, code: float) -> Optional[str]:
    """The name a code of a categorical channel means (None: not categorical, or no such code)."""
    cats = ref.categories
    if cats is None or not float(code).is_integer() or not 0 <= code < len(cats):
        return None
    return cats[int(code)]
