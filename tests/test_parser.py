"""The grammar and the parser: text → syntax tree, and syntax errors with carets.

Expectations are written by hand from the query text; error columns are found
with str.index on the offending token, independently of the parser.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorq.errors import QueryError, QuerySyntaxError
from sensorq.query import expressions as ast
from sensorq.query.parser import GRAMMAR_PATH, parse, parse_tree

DOC = Path(__file__).resolve().parent.parent / "docs" / "query.md"


def doc_examples(kind: str = "sensorq") -> list[str]:
    """Every line of every ```sensorq block (or ```sensorq-models) of docs/query.md."""
    blocks = re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def where_of(tree) -> object:
    clauses = {c.kind: c for c in tree.clauses}
    return clauses["where"].args[0]


# --- the grammar file --------------------------------------------------------------

def test_grammar_ships_inside_the_package():
    assert GRAMMAR_PATH.exists()
    assert (Path(__import__("sensorq").__file__).parent / "grammar" / "sensorq.lark").exists()


def test_doc_has_many_examples_and_each_parses():
    examples = doc_examples() + doc_examples("sensorq-models")
    assert len(examples) >= 60
    for text in examples:
        parse(text)  # raises on the first that does not parse


def test_doc_examples_use_every_rule_and_terminal_of_the_grammar():
    """The doc shows every construct: each grammar alternative that can appear in a
    tree, and each terminal, occurs in at least one example."""
    from sensorq.query.parser import _lark
    rules, terminals = set(), set()
    for text in doc_examples() + doc_examples("sensorq-models"):
        tree = parse_tree(text)
        rules |= {sub.data for sub in tree.iter_subtrees()}
        terminals |= {child.type for sub in tree.iter_subtrees() for child in sub.children
                      if isinstance(child, str)}      # the tokens (Token is a str)
    grammar = _lark()
    visible = {str(r.alias or r.origin.name) for r in grammar.rules
               if not r.origin.name.startswith("_")      # lark's helpers for x* and x+
               and (r.alias or not (r.options.expand1 and len(r.expansion) == 1))}
    assert visible - rules == set()
    assert {t.name for t in grammar.terminals} - terminals - {"WS"} == set()


# --- query heads ---------------------------------------------------------------------

def test_aggregate_with_where_and_window():
    tree = parse("count where accel > 2g last 10m")
    assert isinstance(tree, ast.AggregateAst)
    assert tree.name == "count" and tree.expr is None
    kinds = [c.kind for c in tree.clauses]
    assert kinds == ["where", "last"]
    cmp = where_of(tree)
    assert isinstance(cmp, ast.Comparison) and cmp.op == ">"
    assert cmp.left.name == "accel" and cmp.right.text == "2" and cmp.right.unit == "g"
    last = tree.clauses[1].args[0]
    assert (last.text, last.unit) == ("10", "m")


def test_aggregate_expression_and_buckets():
    tree = parse("avg temp by 1h fill(prev) last 24h")
    assert tree.name == "avg" and tree.expr.name == "temp"
    by = tree.clauses[0]
    assert by.kind == "by" and by.args[0].source == "1h" and by.args[1].mode == "prev"


def test_percentile_forms():
    a, b = parse("percentile(95) z"), parse("percentile(99.5, z)")
    assert a.percentile.value == 95 and a.expr.name == "z"
    assert b.percentile.value == 99.5 and b.expr.name == "z"
    with pytest.raises(QuerySyntaxError):
        parse("percentile(95, z) y")


def test_find_episodes_top_newest_score():
    find = parse("find last 3 where z > 2g")
    assert isinstance(find, ast.FindAst) and find.direction == "last" and find.n.value == 3
    episodes = parse("find episodes where z > 2g for > 50ms gap <= 1s")
    assert isinstance(episodes, ast.EpisodesAst)
    clauses = {c.kind: c.args for c in episodes.clauses}
    assert clauses["for"][0] == ">" and clauses["for"][1].source == "50ms"
    assert clauses["gap"][0] == "<=" and clauses["gap"][1].source == "1s"
    assert parse("find episodes where z > 2g for 50ms").clauses[1].args[0] == ">="
    top = parse("top 5 -z last 1h")
    assert isinstance(top, ast.TopAst) and top.n.value == 5 and top.expr.op == "neg"
    newest = parse("newest where z > 2g")
    assert isinstance(newest, ast.NewestAst) and newest.n is None
    score = parse("score anomaly over 2s hop 500ms")
    assert isinstance(score, ast.ScoreAst) and score.model == "anomaly"
    assert score.over.source == "2s" and score.hop.source == "500ms"


def test_keywords_are_case_insensitive_names_are_not():
    tree = parse("COUNT WHERE Z > 2g LAST 10m FROM Imu")
    assert [c.kind for c in tree.clauses] == ["where", "last", "from"]
    assert where_of(tree).left.name == "Z"
    assert tree.clauses[2].args[0] == "Imu"


def test_clauses_in_any_order():
    a = parse("count last 10m where z > 2g from imu")
    assert [c.kind for c in a.clauses] == ["last", "where", "from"]


def test_keyword_like_names_are_names_where_no_keyword_fits():
    # 'first' and 'last' at the head are aggregate names; 'now' in a value is a channel
    assert parse("last temp").name == "last"
    assert parse("first temp").name == "first"
    assert where_of(parse("count where now > 1")).left.name == "now"


# --- expressions ----------------------------------------------------------------------

def test_precedence_and_associativity():
    expr = parse("max a - b - c * d / e").expr
    # ((a - b) - ((c * d) / e))
    assert expr.op == "-" and expr.left.op == "-" and expr.left.left.name == "a"
    assert expr.right.op == "/" and expr.right.left.op == "*"
    neg = parse("max -a * b").expr
    assert neg.op == "*" and neg.left.op == "neg"


def test_functions_and_qualified_names():
    expr = parse("max mag(imu.x, y, abs(z)) last 10m").expr
    assert isinstance(expr, ast.Call) and expr.func == "mag" and len(expr.args) == 3
    assert (expr.args[0].stream, expr.args[0].name) == ("imu", "x")
    assert expr.args[2].func == "abs"


@pytest.mark.parametrize("literal, number, unit", [
    ("2g", "2", "g"), ("500mg", "500", "mg"), ("9.81m/s^2", "9.81", "m/s^2"), ("30degC", "30", "degC"),
    ("1013hPa", "1013", "hPa"), ("3.3V", "3.3", "V"), ("1e3", "1e3", ""), ("2.5E-3g", "2.5E-3", "g"),
    (".5g", ".5", "g"), ("50%", "50", "%"), ("12", "12", ""),
])
def test_number_literals_keep_their_unit(literal, number, unit):
    right = where_of(parse(f"count where x > {literal}")).right
    assert (right.text, right.unit) == (number, unit)


def test_negative_literal_is_unary_minus():
    right = where_of(parse("count where x > -5")).right
    assert isinstance(right, ast.Unary) and right.op == "neg" and right.operand.text == "5"


def test_m_is_metres_in_a_comparison_and_minutes_in_a_window():
    tree = parse("count where depth > 10m last 10m")
    assert where_of(tree).right.unit == "m"
    assert tree.clauses[1].kind == "last" and tree.clauses[1].args[0].unit == "m"


def test_value_between_and_time_between_are_told_apart_by_position():
    tree = parse("count where x between 1 and 2 and y > 3 between 2026-11-24 and 2026-11-25 11:00")
    pred = where_of(tree)
    assert isinstance(pred, ast.BoolOp) and pred.op == "and"
    between, compare = pred.args
    assert isinstance(between, ast.Between) and between.low.text == "1" and between.high.text == "2"
    assert compare.left.name == "y"
    window = tree.clauses[1]
    assert window.kind == "between"
    assert [p.base.text for p in window.args] == ["2026-11-24", "2026-11-25 11:00"]


def test_not_between_and_boolean_structure():
    pred = where_of(parse("count where not x > 1 or y not between 1 and 2 and (z < 0 or z > 1)"))
    assert pred.op == "or"
    assert isinstance(pred.args[0], ast.NotPred)
    conj = pred.args[1]
    assert conj.op == "and" and conj.args[0].negated and conj.args[1].op == "or"


def test_and_chains_are_flat():
    pred = where_of(parse("count where x > 1 and y > 2 and z > 3"))
    assert pred.op == "and" and len(pred.args) == 3


@pytest.mark.parametrize("text, kind", [
    ("since 2026-11-24T11:50:00Z", "iso"), ("since 2026-11-24 11:50", "iso"), ("since 2026-11-24", "iso"),
    ("since 2026-11-24T11:50:00.123456789+01:00", "iso"), ("since 1700000000s", "epoch"),
    ("since now", "now"), ("since 5m ago", "ago"),
])
def test_time_points(text, kind):
    point = parse(f"count {text}").clauses[0].args[0]
    assert point.base.kind == kind


def test_time_offsets():
    point = parse("count since now - 5m + 30s").clauses[0].args[0]
    assert point.base.kind == "now"
    assert [(sign, n.source) for sign, n in point.offsets] == [("-", "5m"), ("+", "30s")]


def test_positions_point_into_the_text():
    text = "count where imu.accel > 2g last 10m"
    cmp = where_of(parse(text))
    assert text[cmp.left.pos:cmp.left.end] == "imu.accel"
    assert text[cmp.left.name_pos:cmp.left.end] == "accel"
    assert text[cmp.right.pos:cmp.right.end] == "2g"
    assert text[cmp.op_pos] == ">"


def test_line_breaks_and_tabs_are_whitespace():
    tree = parse("count\n\twhere z > 2g\r\nlast 10m")
    assert [c.kind for c in tree.clauses] == ["where", "last"]


def test_parse_tree_is_lark_tree():
    assert parse_tree("count where z > 2g").data == "start"


def test_pretty_rendering_mentions_the_parts():
    from sensorq.query.expressions import pretty
    text = pretty(parse("max mag(x, y) where z > 2g last 10m"))
    for part in ("AggregateAst", "Call func='mag'", "Channel x", "Number 2g", "Number 10m"):
        assert part in text


# --- syntax errors ---------------------------------------------------------------------

SYNTAX_ERRORS = [
    # (query, the offending token (its first occurrence from `after`), a word expected)
    ("count where z >> 2", ">> 2", "a number"),
    ("count where z > 2g last 10m garbage", "garbage", "a clause"),
    ("find where z > 2g", "where", "episodes"),
    ("count where z $ 2", "$", None),
    ("avg z gap >= 1s", ">=", "<="),
    ("count where z > 2g last", None, "a duration such as 10m"),
    ("count where", None, "a channel name"),
    ("avg z since", None, "a time"),
    ("count from", None, "a stream name"),
    ("avg z by 1m fill(", None, "none, null, prev, linear or a number"),
    ("count where (z > 2g", None, ")"),
    ("max mag(x, y", None, ")"),
    ("count where z > 2 g", "g", None),
    ("top z", "z", "a number"),
    ("count where z > 2g and", None, "a channel name"),
    ("count where z > 2g last 10m -", "-", "a clause"),
    ("avg z where", None, "a number"),
    ("count where z between 1 2", "2", "and"),
]


@pytest.mark.parametrize("text, token, expected", SYNTAX_ERRORS)
def test_syntax_error_caret_points_at_the_offending_token(text, token, expected):
    with pytest.raises(QuerySyntaxError) as info:
        parse(text)
    err = info.value
    if token is None:     # the query ends too early: the caret is just after its end
        assert err.column == len(text.rstrip()) + 1
        assert "ends too early" in err.reason
    else:
        start = text.rindex(token) if token in ("g", "-", "2") else text.index(token)
        if token == ">> 2":
            start += 1       # the second '>' is the unexpected one
        assert err.column == start + 1, str(err)
    if expected:
        assert any(expected in e for e in err.expected), err.expected
    # no raw lark terminal names leak into the message
    for raw in ("QUANTITY", "NAME", "LPAR", "RPAR", "$END", "CMP", "__ANON"):
        assert raw not in str(err)
    assert "^" in str(err) and text in str(err)


def test_unit_apart_from_number_gets_a_hint():
    with pytest.raises(QuerySyntaxError, match="with no space: 2g"):
        parse("count where z > 2 g")


def test_empty_and_too_long_and_non_text():
    with pytest.raises(QuerySyntaxError, match="empty"):
        parse("   ")
    with pytest.raises(QuerySyntaxError, match="characters long"):
        parse("count where " + " and ".join(["z > 1"] * 3000))
    with pytest.raises(QuerySyntaxError, match="text"):
        parse(None)


def test_deep_nesting_is_an_error_not_a_crash():
    tree = parse("count where " + "(" * 60 + "z > 1" + ")" * 60)
    assert isinstance(tree, ast.AggregateAst)
    text = "count where " + "(" * 400 + "z > 1" + ")" * 400
    with pytest.raises(QuerySyntaxError, match="nest more than 64") as info:
        parse(text)
    assert info.value.column == len("count where ") + 65
    with pytest.raises(QuerySyntaxError, match="too deeply"):
        parse("max " + "-" * 4000 + "z")
    with pytest.raises(QuerySyntaxError, match="too deeply"):
        parse("max " + "+".join(["z"] * 3000))


# --- property: arbitrary well-formed expressions parse into the tree they were built from --

_names = st.sampled_from(["x", "y", "z", "accel", "imu.x"])
_numbers = st.sampled_from(["1", "2.5", "1e3", "2g", "500mg", ".5"])


def _expr_strategy():
    leaves = st.one_of(_names.map(lambda n: ("name", n)), _numbers.map(lambda n: ("num", n)))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.tuples(st.sampled_from(["+", "-", "*", "/"]), inner, inner),
        st.tuples(st.just("neg"), inner),
        st.tuples(st.sampled_from(["abs", "sqrt"]), inner),
    ), max_leaves=8)


def _render(node) -> str:
    """Fully parenthesised text of a generated expression."""
    kind = node[0]
    if kind in ("name", "num"):
        return node[1]
    if kind == "neg":
        return f"-({_render(node[1])})"
    if kind in ("abs", "sqrt"):
        return f"{kind}({_render(node[1])})"
    return f"({_render(node[1])} {kind} {_render(node[2])})"


def _shape(node) -> tuple:
    """The same tree read back from the parser's AST."""
    if isinstance(node, ast.ChannelName):
        return ("name", node.source)
    if isinstance(node, ast.Number):
        return ("num", node.source)
    if isinstance(node, ast.Unary):
        return ("neg", _shape(node.operand))
    if isinstance(node, ast.Call):
        return (node.func, _shape(node.args[0]))
    return (node.op, _shape(node.left), _shape(node.right))


@settings(max_examples=150, deadline=None)
@given(_expr_strategy())
def test_generated_expressions_parse_to_their_own_tree(tree):
    parsed = parse(f"max {_render(tree)} last 10m")
    assert _shape(parsed.expr) == tree


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="count wherxyz><=!0123456789.gm()-+*/ ands", max_size=40))
def test_random_text_raises_only_query_errors(text):
    try:
        parse(text)
    except QueryError as err:
        assert err.column is None or 1 <= err.column <= len(text) + 1


@pytest.mark.parametrize("text, op, right", [
    ("count where accel>2g last 10m", ">", "2g"), ("count where x<-5", "<", "-5"),
    ("count where x>=-500mg", ">=", "-500mg"), ("count where x<>5", "!=", "5"),
    ("count where x=-1", "==", "-1"), ("count where x!=2", "!=", "2"), ("count where x<=.5g", "<=", ".5g"),
])
def test_operators_need_no_spaces(text, op, right):
    cmp = where_of(parse(text))
    assert cmp.op == op
    rendered = cmp.right.source if isinstance(cmp.right, ast.Number) else "-" + cmp.right.operand.source
    assert rendered == right


def test_typographic_operators_get_a_hint():
    text = "count where z ≥ 2g"
    with pytest.raises(QuerySyntaxError, match="write >=") as info:
        parse(text)
    assert info.value.column == text.index("≥") + 1


def test_micro_sign_in_durations():
    tree = parse("avg z by 5µs")
    assert tree.clauses[0].args[0].unit == "µs"


def test_a_bare_value_as_condition_is_told_to_compare():
    text = "count where flag last 1m"
    with pytest.raises(QuerySyntaxError, match=r"a condition is a comparison, e.g. flag != 0") as info:
        parse(text)
    assert info.value.column == text.index("last") + 1
    with pytest.raises(QuerySyntaxError, match=r"e.g. Flag != 0"):
        parse("count where Flag")
