"""A per-sample mask from a small predicate text, for selecting training
windows without the query engine: ``split == train``, ``case <= 40 and
activity != Standing``, ``not (a > 5 or b < -2)``.

Comparisons are ``NAME OP VALUE`` with OP one of == = != <> < <= > >=; VALUE
is a number (stored units: raw integers, before any scale) or, for a
categorical channel, a category name (bare or quoted; only == and !=).
``and`` binds tighter than ``or``; ``not`` tighter than both.  A NaN reading
fails every comparison.  The full query language's ``where`` is the query
engine's; this covers what a training selection needs.
"""
from __future__ import annotations

import re

import numpy as np

from .model import ModelError

_TOKEN = re.compile(r"\s*(?:(?P<num>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)|(?P<str>'[^']*'|\"[^\"]*\")|"
                    r"(?P<op>==|!=|<>|<=|>=|=|<|>)|(?P<par>[()])|(?P<name>[A-Za-z_][A-Za-z0-9_]*))")
_OPS = {"==": np.equal, "=": np.equal, "!=": np.not_equal, "<>": np.not_equal, "<": np.less,
        "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


def mask_from_where(stream, text: str):
    """A function (t, columns) -> bool array for compute_windows / train."""
    tokens = _tokens(text)
    parser = _Parser(stream, tokens, text)
    tree = parser.expr()
    if parser.pos != len(tokens):
        raise ModelError(f"where {text!r}: unexpected {tokens[parser.pos][1]!r}")
    return lambda t, columns: tree(columns)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ModelError(f"where {text!r}: cannot read {text[pos:].strip()[:20]!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, stream, tokens, text):
        self.stream, self.tokens, self.text, self.pos = stream, tokens, text, 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def take(self):
        tok = self.peek()
        if tok[0] is None:
            raise ModelError(f"where {self.text!r} ends too early")
        self.pos += 1
        return tok

    def expr(self):
        left = self.conj()
        while self.peek() == ("name", "or") or self.peek() == ("name", "OR"):
            self.take()
            right = self.conj()
            left = (lambda a, b: lambda c: a(c) | b(c))(left, right)
        return left

    def conj(self):
        left = self.unary()
        while self.peek()[1] in ("and", "AND"):
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda c: a(c) & b(c))(left, right)
        return left

    def unary(self):
        if self.peek()[1] in ("not", "NOT"):
            self.take()
            inner = self.unary()
            return lambda c: ~inner(c)
        if self.peek() == ("par", "("):
            self.take()
            inner = self.expr()
            if self.take() != ("par", ")"):
                raise ModelError(f"where {self.text!r}: a ( is not closed")
            return inner
        return self.comparison()

    def comparison(self):
        kind, name = self.take()
        if kind != "name":
            raise ModelError(f"where {self.text!r}: expected a channel name, got {name!r}")
        try:
            channel = self.stream.channel(name)
        except Exception as exc:
            raise ModelError(str(exc)) from None
        kind, op = self.take()
        if kind != "op":
            raise ModelError(f"where {self.text!r}: expected a comparison after {name}")
        kind, value = self.take()
        target = self.value(channel, op, kind, value)
        fn = _OPS[op]
        return lambda c: np.asarray(fn(c[name], target), bool)

    def value(self, channel, op, kind, value):
        categories = getattr(channel, "categories", None)
        if categories is not None and kind in ("name", "str"):
            label = value.strip("'\"")
            if op not in ("==", "=", "!=", "<>"):
                raise ModelError(f"where {self.text!r}: categories compare with == and != only")
            if label not in categories:
                raise ModelError(f"where {self.text!r}: {channel.name} has no category {label!r}; "
                                 f"known: {', '.join(categories)}")
            return categories.index(label)
        if kind != "num":
            raise ModelError(f"where {self.text!r}: {value!r} is not a number")
        return float(value)
