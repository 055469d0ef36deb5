"""The query parser is lark's stand-alone parser generated from the grammar
(sensorq/query/_generated_parser.py, for start-up time): it must be up to date
with grammar/sensorq.lark and parse, and fail, exactly as the parser lark
builds from the grammar.  After editing the grammar, run
``python -m sensorq.query.parser``.

The reference is lark itself (``Lark(grammar, parser="lalr")``, built here),
compared on every example of docs/query.md and on broken variants of them.
"""
from __future__ import annotations

import random
import re

import lark
import pytest

from sensorq.query import _generated_parser as generated
from sensorq.query import parser as qp
from test_parser import doc_examples

STALE = "out of date with grammar/sensorq.lark or lark: run python -m sensorq.query.parser"


@pytest.fixture(scope="module")
def built():
    return qp._build_lark()


def test_the_generated_parser_comes_from_this_grammar_and_this_lark():
    assert generated.GRAMMAR_SHA256 == qp.grammar_digest(), STALE
    assert generated.__version__ == lark.__version__, STALE


def without_tables(text: str) -> list[str]:
    """The module's lines without the two table literals (lark numbers its
    states differently from one run to the next) and without sensorq's header."""
    lines = text.splitlines()
    kept = [line for k, line in enumerate(lines)
            if k == 0 or lines[k - 1] not in ("DATA = (", "MEMO = (")]
    return kept[kept.index(f"__version__ = \"{lark.__version__}\""):]


def test_the_generated_module_is_lark_s_own_output(tmp_path):
    """Nothing in it was edited by hand: regenerated now, it is the same code."""
    fresh = tmp_path / "regenerated.py"
    qp.write_generated_parser(fresh)
    assert without_tables(qp.GENERATED_PATH.read_text("utf-8")) == \
        without_tables(fresh.read_text("utf-8")), STALE


def shape(tree) -> tuple:
    """A tree as plain tuples: rule names, token types, texts and positions
    (the two parsers' Tree and Token classes are different classes)."""
    if isinstance(tree, str):       # a Token
        return ("token", tree.type, str(tree), tree.start_pos, tree.end_pos)
    meta = tree.meta
    span = (meta.start_pos, meta.end_pos) if not meta.empty else None
    return (tree.data, span, tuple(shape(child) for child in tree.children))


def test_trees_are_lark_s_trees_with_the_same_positions(built):
    examples = doc_examples() + doc_examples("sensorq-models")
    assert len(examples) >= 60
    for text in examples:
        assert shape(qp._lark().parse(text)) == shape(built.parse(text)), text


def broken_queries() -> list[str]:
    """Every doc example cut short at several places, and with a word dropped
    or a stray word or character put in (seeded: the same list every run)."""
    rng = random.Random(11)
    strays = ["≥", "(", ")", ",", "where", "2 g", "!", "@", "last", "by", "and", "10m", '"', "-"]
    broken = []
    for text in doc_examples() + doc_examples("sensorq-models"):
        broken += [text[:cut] for cut in range(1, len(text), 7)]
        words = text.split()
        for _ in range(3):
            changed = list(words)
            at = rng.randrange(len(changed))
            if rng.random() < 0.5:
                del changed[at]
            else:
                changed.insert(at, rng.choice(strays))
            broken.append(" ".join(changed))
    return broken


def outcome(parser, text: str) -> tuple:
    """What a parse gives, in plain values: the tree's shape, or the error's
    class, position, offending token and the terminals it expected."""
    try:
        return ("tree", shape(parser.parse(text)))
    except Exception as exc:        # noqa: BLE001 - lark's and the module's classes differ
        token = getattr(exc, "token", None)
        accepts = exc.interactive_parser.accepts() if getattr(exc, "interactive_parser", None) else None
        return (type(exc).__name__, getattr(exc, "pos_in_stream", None),
                None if token is None else (token.type, str(token)),
                sorted(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ()),
                None if accepts is None else sorted(accepts))


def test_broken_queries_fail_as_lark_s_parser_fails(built):
    """The error translation (column, expected items) reads these attributes,
    so equal attributes give equal messages."""
    broken = broken_queries()
    failures = 0
    for text in broken:
        got, want = outcome(qp._lark(), text), outcome(built, text)
        assert got == want, text
        failures += got[0] != "tree"
    assert failures > len(broken) // 3             # the list does exercise errors
    assert {"UnexpectedCharacters", "UnexpectedToken"} <= {outcome(built, t)[0] for t in broken}


def test_the_command_line_imports_neither_lark_nor_a_table_file():
    """The generated module needs nothing of lark's (the start-up saving)."""
    source = qp.GENERATED_PATH.read_text("utf-8")
    assert not re.search(r"^\s*(import|from)\s+lark\b", source, re.M)
    assert not (qp.GRAMMAR_PATH.parent / "sensorq.tables.json").exists()
