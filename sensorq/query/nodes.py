"""The base of the query's node classes (syntax tree and plan).

They are frozen dataclasses.  ``@dataclass`` writes every method it adds as
source text and compiles it, once per class, when the module is imported,
which is on every query's start-up: for the 42 node classes, the ``__eq__``,
``__hash__`` and ``__repr__`` it would generate cost about as much again as
their ``__init__`` and frozen ``__setattr__``/``__delattr__``.  So ``@node``
asks dataclass for the latter only and the three are written once, here, with
the same behaviour: equal when of the same class with equal fields, in order
(else NotImplemented), hashed as the tuple of the fields (once), shown as
``Name(field=value!r, ...)``.
"""
from __future__ import annotations

import dataclasses


class Node:
    __slots__ = ()

    def _field_values(self) -> tuple:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return self._field_values() == other._field_values()
        return NotImplemented

    def __hash__(self):
        # kept on the node (frozen: its fields never change): plans are keys of
        # the engine's per-block-range memo (engine/derived.py), hashed per query
        try:
            return self.__dict__["_hash"]
        except KeyError:
            value = hash(self._field_values())
            object.__setattr__(self, "_hash", value)
            return value

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{self.__class__.__qualname__}({shown})"


def node(cls):
    """``@dataclass(frozen=True)`` for a subclass of :class:`Node`."""
    if not issubclass(cls, Node):
        raise TypeError(f"{cls.__name__} must subclass Node")
    return dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
