"""Query text → syntax tree (:mod:`sensorq.query.expressions`).

The grammar lives in ``grammar/sensorq.lark`` (LALR(1), so a query parses in
linear time and a syntax error names exactly what could have come next).  Lark's
errors are translated into :class:`~sensorq.errors.QuerySyntaxError` with the
query, the 1-based column of the fault and a short human list of what was
expected ("a number", "a duration such as 10m", "where") instead of lark's
terminal names.  Nothing of the query text is ever evaluated.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from ..errors import QueryError, QuerySyntaxError
from ..units import is_unit
from ._generated_parser import (Lark_StandAlone, Token, Transformer, Tree, UnexpectedCharacters,
                                UnexpectedInput, UnexpectedToken, VisitError)
from .expressions import (AggregateAst, Between, Binary, BoolOp, Call, ChannelName, Clause, Comparison,
                          EpisodesAst, FillSpec, FindAst, InList, Label, NewestAst, NotPred, Number,
                          QueryAst, ScoreAst, TimeBase, TimePoint, TopAst, Unary, pretty)

GRAMMAR_PATH = Path(__file__).parent.parent / "grammar" / "sensorq.lark"
MAX_QUERY_CHARS = 10_000   # a query is a line, not a document; bounds parse time and recursion
MAX_NESTING = 64

__all__ = ["parse", "parse_tree", "normalise_text", "pretty", "too_deep", "GRAMMAR_PATH"]


# The parser is lark's stand-alone LALR(1) parser for the grammar, generated
# into _generated_parser.py: lark's parser, lexer and tree classes with the
# grammar's tables as Python literals, importing nothing of lark.  A one-off
# command-line query thus neither imports lark (and what lark imports for its
# grammar compiler) nor loads tables from JSON: about 9 ms less at start-up
# (benchmarks/RESULTS.md, start-up).  lark itself is needed only to
# regenerate the module after the grammar changes: ``python -m
# sensorq.query.parser`` (a test checks that the module is up to date, by the
# grammar's digest and by parsing alike).  LARK_OPTIONS are the options the
# generator is given in write_generated_parser (the tests compare the two
# parsers, so a difference shows).
GENERATED_PATH = Path(__file__).with_name("_generated_parser.py")
LARK_OPTIONS = {"propagate_positions": True, "maybe_placeholders": False}


def _build_lark():
    """The parser built by lark from the grammar (regeneration and tests)."""
    from lark import Lark
    return Lark(GRAMMAR_PATH.read_text(encoding="utf-8"), parser="lalr", **LARK_OPTIONS)


def grammar_digest() -> str:
    import hashlib
    return hashlib.sha256(GRAMMAR_PATH.read_bytes()).hexdigest()


GENERATED_HEADER = """\
# GENERATED FILE: do not edit.  sensorq's query parser: lark's stand-alone LALR(1)
# parser for grammar/sensorq.lark, written by ``python -m sensorq.query.parser``
# (lark's ``python -m lark.tools.standalone --propagate_positions``).  Lark's
# stand-alone code is under the Mozilla Public License 2.0, as its own header
# below says.
GRAMMAR_SHA256 = {digest!r}

"""


def write_generated_parser(path: Path = GENERATED_PATH) -> None:
    """Regenerate _generated_parser.py from the grammar with the installed lark."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "lark.tools.standalone", "--propagate_positions",
                           str(GRAMMAR_PATH)], capture_output=True, text=True, check=True)
    path.write_text(GENERATED_HEADER.format(digest=grammar_digest()) + done.stdout, "utf-8")


@lru_cache(maxsize=1)
def _lark():
    return Lark_StandAlone()


def normalise_text(text: str) -> str:
    """Tabs and line breaks become spaces, so a column is simply offset + 1 and the
    caret line of an error lines up under a one-line rendering of the query."""
    if not isinstance(text, str):
        raise QuerySyntaxError(f"a query is text, not {type(text).__name__}")
    return re.sub(r"[\t\r\n\f\v]", " ", text)


def parse_tree(text: str) -> Tree:
    """Lark's raw parse tree (for debugging and tests of the grammar itself):
    the stand-alone module's Tree, with lark's data, children and meta but
    fewer helpers than ``lark.Tree`` (no ``scan_values``, ``find_token``)."""
    text = normalise_text(text)
    _check_size(text)
    try:
        return _lark().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None


def parse(text: str) -> QueryAst:
    """The syntax tree of one query; :class:`QuerySyntaxError` if it is not valid.

    Trees are immutable, so the trees of recent queries are kept: a dashboard
    that repeats a query skips the parse (a third of a short query's time)."""
    return _parse_cached(normalise_text(text))


@lru_cache(maxsize=256)
def _parse_cached(text: str) -> QueryAst:
    tree = parse_tree(text)
    try:
        return _ToAst(text).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, QueryError):
            raise exc.orig_exc from None
        if isinstance(exc.orig_exc, RecursionError):
            raise too_deep(text) from None
        raise
    except RecursionError:
        raise too_deep(text) from None


def too_deep(text: str) -> QuerySyntaxError:
    return QuerySyntaxError("the query is nested too deeply (or is one very long chain of operators); "
                            "simplify it", text[:80] + (" ..." if len(text) > 80 else ""), None)


def _check_size(text: str) -> None:
    if len(text) > MAX_QUERY_CHARS:
        raise QuerySyntaxError(f"the query is {len(text)} characters long; at most {MAX_QUERY_CHARS} "
                               f"are accepted", text[:80] + " ...", None)
    depth = 0
    for i, char in enumerate(text):
        depth += (char == "(") - (char == ")")
        if depth > MAX_NESTING:
            raise QuerySyntaxError(f"parentheses nest more than {MAX_NESTING} deep", text, i + 1)
    if not text.strip():
        raise QuerySyntaxError("the query is empty", text, 1,
                               ["an aggregate such as count, avg or max", "find", "top", "newest"])


# --- lark tree → AST -----------------------------------------------------------------

def _start(item) -> int:
    return item.start_pos if isinstance(item, Token) else item.pos


def _end(item) -> int:
    return item.end_pos if isinstance(item, Token) else item.end


_CMP_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "=": "==", "!=": "!=", "<>": "!="}


class _ToAst(Transformer):
    """Builds :mod:`expressions` nodes; every rule method gets its children
    already transformed (tokens stay tokens, for their positions)."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    # --- queries --------------------------------------------------------------------
    def start(self, children):
        return children[0]

    def agg_query(self, children):
        head, rest = children[0], children[1:]
        expr = rest[0] if rest and not isinstance(rest[0], Clause) else None
        clauses = tuple(c for c in rest if isinstance(c, Clause))
        name, pos, end, pct, pct_expr = head
        if pct_expr is not None:
            if expr is not None:
                raise QuerySyntaxError("percentile(p, expr) already names its expression; write "
                                       "percentile(p) expr or percentile(p, expr)", self.text,
                                       _start(expr) + 1)
            expr = pct_expr
        return AggregateAst(name, pos, end, pct, expr, clauses)

    def plain(self, tok: Token, what: str) -> str:
        """A NAME token that must not be quoted (only a category name may be)."""
        if str(tok).startswith('"'):
            raise QuerySyntaxError(f"a quoted name stands only for a category of a categorical "
                                   f"channel (state == \"door open\"); write {what} without quotes",
                                   self.text, tok.start_pos + 1)
        return str(tok)

    def agg_name(self, children):
        tok = children[0]
        return (self.plain(tok, "an aggregate"), tok.start_pos, tok.end_pos, None, None)

    def agg_percentile(self, children):
        tok, _, p, _ = children
        return (str(tok), tok.start_pos, tok.end_pos, p, None)

    def agg_percentile_call(self, children):
        tok, _, p, _, expr, _ = children
        return (str(tok), tok.start_pos, tok.end_pos, p, expr)

    def find_query(self, children):
        find, direction, *rest = children
        n = _number(rest[0]) if rest and isinstance(rest[0], Token) else None
        clauses = tuple(c for c in rest if isinstance(c, Clause))
        return FindAst(str(direction).lower(), n, clauses, find.start_pos)

    def episodes_query(self, children):
        find, _, *clauses = children
        return EpisodesAst(tuple(clauses), find.start_pos)

    def top_query(self, children):
        top, n, expr, *clauses = children
        return TopAst(_number(n), expr, tuple(clauses), top.start_pos)

    def newest_query(self, children):
        newest, *rest = children
        n = _number(rest[0]) if rest and isinstance(rest[0], Token) else None
        clauses = tuple(c for c in rest if isinstance(c, Clause))
        return NewestAst(n, clauses, newest.start_pos)

    def score_query(self, children):
        score, model, *rest = children
        over = hop = None
        if rest and isinstance(rest[0], Token) and rest[0].type == "OVER":
            over, rest = _number(rest[1]), rest[2:]
            if rest and isinstance(rest[0], Token) and rest[0].type == "HOP":
                hop, rest = _number(rest[1]), rest[2:]
        return ScoreAst(self.plain(model, "a model name"), over, hop, tuple(rest), score.start_pos)

    # --- clauses ----------------------------------------------------------------------
    def where_clause(self, children):
        kw, pred = children
        return Clause("where", (pred,), kw.start_pos, _end(pred))

    def from_clause(self, children):
        kw, name = children
        return Clause("from", (self.plain(name, "a stream name"), name.start_pos), kw.start_pos,
                      name.end_pos)

    def last_clause(self, children):
        kw, dur = children
        return Clause("last", (_number(dur),), kw.start_pos, dur.end_pos)

    def since_clause(self, children):
        kw, point = children
        return Clause("since", (point,), kw.start_pos, point.end)

    def between_clause(self, children):
        kw, start, _, stop = children
        return Clause("between", (start, stop), kw.start_pos, stop.end)

    def at_clause(self, children):
        kw, point = children
        return Clause("at", (point,), kw.start_pos, point.end)

    def by_clause(self, children):
        kw, dur, *fill = children
        end = fill[0].end if fill else dur.end_pos
        return Clause("by", (_number(dur), fill[0] if fill else None), kw.start_pos, end)

    def gap_clause(self, children):
        kw, op, dur = children
        return Clause("gap", (str(op), _number(dur)), kw.start_pos, dur.end_pos)

    def limit_clause(self, children):
        kw, n = children
        return Clause("limit", (_number(n),), kw.start_pos, n.end_pos)

    def for_clause(self, children):
        kw, *rest = children
        op, dur = (str(rest[0]), rest[1]) if len(rest) == 2 else (">=", rest[0])
        return Clause("for", (op, _number(dur)), kw.start_pos, dur.end_pos)

    def fill_mode(self, children):
        kw, _, name, close = children
        return FillSpec(self.plain(name, "a fill mode"), None, kw.start_pos, close.end_pos)

    def fill_value(self, children):
        kw, _, number, close = children
        return FillSpec("value", number, kw.start_pos, close.end_pos)

    def signed_number(self, children):
        if len(children) == 2:
            minus, tok = children
            return Number.from_token(str(tok), tok.start_pos, negative=True)
        return _number(children[0])

    # --- time ---------------------------------------------------------------------------
    def time_point(self, children):
        base, *offsets = children
        end = offsets[-1][1].end if offsets else base.end
        return TimePoint(base, tuple(offsets), base.pos, end)

    def time_offset(self, children):
        sign, dur = children
        return (str(sign), _number(dur))

    def time_iso(self, children):
        tok = children[0]
        return TimeBase("iso", tok.start_pos, tok.end_pos, text=str(tok))

    def time_epoch(self, children):
        tok = children[0]
        return TimeBase("epoch", tok.start_pos, tok.end_pos, number=_number(tok))

    def time_ago(self, children):
        tok, ago = children
        return TimeBase("ago", tok.start_pos, ago.end_pos, number=_number(tok))

    def time_now(self, children):
        tok = children[0]
        return TimeBase("now", tok.start_pos, tok.end_pos)

    # --- predicates ---------------------------------------------------------------------
    def or_(self, children):
        return _bool_op("or", children[0], children[2])

    def and_(self, children):
        return _bool_op("and", children[0], children[2])

    def not_(self, children):
        kw, arg = children
        return NotPred(arg, kw.start_pos, _end(arg))

    def primary_pred(self, children):
        return children[1]  # ( pred )

    def compare(self, children):
        left, op, right = children
        return Comparison(_CMP_OPS[str(op)], left, right, _start(left), _end(right), op.start_pos)

    def value_between(self, children):
        expr, _, low, _, high = children
        return Between(expr, low, high, False, _start(expr), _end(high))

    def value_not_between(self, children):
        expr, _, _, low, _, high = children
        return Between(expr, low, high, True, _start(expr), _end(high))

    def value_in(self, children):
        expr, _, _, items, close = children
        return InList(expr, tuple(items), False, _start(expr), close.end_pos)

    def value_not_in(self, children):
        expr, _, _, _, items, close = children
        return InList(expr, tuple(items), True, _start(expr), close.end_pos)

    # --- value expressions --------------------------------------------------------------
    def _binary(self, children):
        left, op, right = children
        return Binary(str(op), left, right, _start(left), _end(right), op.start_pos)

    add = sub = mul = div = _binary

    def neg(self, children):
        minus, operand = children
        return Unary("neg", operand, minus.start_pos, _end(operand))

    def pos(self, children):
        plus, operand = children
        return Unary("pos", operand, plus.start_pos, _end(operand))

    def number(self, children):
        return _number(children[0])

    def channel(self, children):
        tok = children[0]
        if str(tok).startswith('"'):
            return Label(str(tok)[1:-1].replace('""', '"'), tok.start_pos, tok.end_pos)
        return ChannelName(str(tok), None, tok.start_pos, tok.end_pos, tok.start_pos)

    def qualified_channel(self, children):
        stream, _, name = children
        return ChannelName(self.plain(name, "a channel"), self.plain(stream, "a stream name"),
                           stream.start_pos, name.end_pos, name.start_pos)

    def call(self, children):
        func, _, args, close = children
        return Call(self.plain(func, "a function"), tuple(args), func.start_pos, close.end_pos)

    def args(self, children):
        return [c for c in children if not (isinstance(c, Token) and c.type == "COMMA")]

    def atom(self, children):
        return children[1]  # ( sum )


def _number(tok: Token) -> Number:
    return Number.from_token(str(tok), tok.start_pos)


def _bool_op(op: str, left, right) -> BoolOp:
    """Flattens ``a and b and c`` into one node."""
    args = []
    for side in (left, right):
        args.extend(side.args if isinstance(side, BoolOp) and side.op == op else (side,))
    return BoolOp(op, tuple(args), _start(left), _end(right))


# --- syntax errors ------------------------------------------------------------------

_KEYWORDS = ("WHERE", "FROM", "LAST", "FIRST", "SINCE", "BETWEEN", "AT", "BY", "GAP", "FOR", "FILL", "AND",
             "OR", "NOT", "FIND", "EPISODES", "TOP", "NEWEST", "SCORE", "OVER", "HOP", "NOW", "AGO",
             "PERCENTILE", "IN", "LIMIT")
_CLAUSES = ("WHERE", "FROM", "LAST", "SINCE", "BETWEEN", "AT", "BY", "GAP", "FOR", "LIMIT")
_ARITHMETIC = ("PLUS", "MINUS", "STAR", "SLASH")
_SYMBOLS = {"LE": "<=", "LT": "<", "GE": ">=", "GT": ">", "PLUS": "+", "MINUS": "-", "STAR": "*",
            "SLASH": "/", "LPAR": "(", "RPAR": ")", "COMMA": ",", "DOT": ".",
            "CMP": "a comparison (<, <=, >, >=, ==, !=)", "DATETIME": "a date such as 2026-11-24T11:50Z",
            "$END": "the end of the query"}
_ASCII_FOR = {"≥": ">=", "≤": "<=", "≠": "!=", "−": "-", "×": "*", "÷": "/", "“": '"', "”": '"'}
_DURATION_AFTER = {"last", "by", "for", "gap", "over", "hop", "<=", "<", ">=", ">", "+", "-"}


def _syntax_error(text: str, exc: UnexpectedInput) -> QuerySyntaxError:
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream
        reason = f"unexpected character {text[pos]!r}"
        if text[pos] in _ASCII_FOR:
            reason += f" (write {_ASCII_FOR[text[pos]]})"
        expected = exc.allowed
    elif isinstance(exc, UnexpectedToken):
        if exc.token.type == "$END":
            pos = len(text.rstrip())
            reason = "the query ends too early"
        else:
            pos = exc.token.start_pos
            reason = f"unexpected {str(exc.token)!r}" + _unit_hint(text, exc.token)
        expected = exc.expected
    else:  # pragma: no cover - LALR raises only the two above
        pos, reason, expected = 0, "not a valid query", set()
    expected = _accepted(exc) or expected
    word = _previous_word(text, pos)
    before = word.lower()
    if "CMP" in expected and re.fullmatch(r"[A-Za-z_]\w*|\)", word):
        reason += f" (a condition is a comparison, e.g. {word if word != ')' else '(...)'} != 0)"
    described = describe_expected(expected, before, pos)
    if len(described) > MAX_EXPECTED:
        described = described[:MAX_EXPECTED] + ["..."]
    return QuerySyntaxError(reason, text, pos + 1, described)


MAX_EXPECTED = 6


def _accepted(exc: UnexpectedInput) -> set[str]:
    """The terminals the parser would have taken at the error, asked of the parser
    itself (more exact than the lexer's list for an unexpected character)."""
    parser = getattr(exc, "interactive_parser", None)
    try:
        return set(parser.accepts()) if parser is not None else set()
    except Exception:   # noqa: BLE001 - a better list is a nicety; lark's own list remains
        return set()


def _unit_hint(text: str, token: Token) -> str:
    """``2 g``: a unit written apart from its number is read as a name."""
    if token.type == "NAME" and is_unit(str(token)) and re.search(r"\d\s+$", text[:token.start_pos]):
        return f" (write a unit right after its number, with no space: 2{token}, not 2 {token})"
    return ""


def _previous_word(text: str, pos: int) -> str:
    """The last word before ``pos``; "fill(" counts as one word."""
    words = re.findall(r"[A-Za-z_]\w*\s*\(|[A-Za-z_]\w*|\d[\w.^/%]*|<=|>=|\S", text[:pos])
    return re.sub(r"\s+", "", words[-1]) if words else ""


def describe_expected(names, before: str = "", pos: int = 0) -> list[str]:
    """Lark terminal names → a short human list, most useful first."""
    names = set(names)
    described: list[str] = []
    if "NAME" in names:
        described.append(_describe_name(before, pos))
    if "QUANTITY" in names:
        if "DATETIME" in names:
            described.append("a time such as 2026-11-24T11:50Z, 1700000000s or now - 5m")
            names.discard("DATETIME")
            names.discard("NOW")
        elif "NAME" not in names and before in _DURATION_AFTER:
            described.append("a duration such as 10m")
        else:
            described.append("a number")
    if sum(n in names for n in _ARITHMETIC) >= 3:
        described.append("an operator (+, -, *, /)")
        names -= set(_ARITHMETIC)
    clauses = [n for n in _CLAUSES if n in names]
    if len(clauses) >= 4:
        described.append("a clause (" + ", ".join(c.lower() for c in clauses) + ")")
        names -= set(clauses)
    for name in sorted(names - {"NAME", "QUANTITY"}, key=_expected_order):
        described.append(name.lower() if name in _KEYWORDS else _SYMBOLS.get(name, name.lower()))
    return described


def _expected_order(name: str) -> tuple[int, str]:
    return (0 if name in _KEYWORDS else 1, name)


def _describe_name(before: str, pos: int) -> str:
    if pos == 0 or not before:
        return "an aggregate such as count, avg or max"
    if before == "from":
        return "a stream name"
    if before == "score":
        return "a model name"
    if before == "fill(":
        return "none, null, prev, linear or a number"
    return "a channel name"


if __name__ == "__main__":
    write_generated_parser()
    print(f"wrote {GENERATED_PATH}")
