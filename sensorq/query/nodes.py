"""The base of the query's node classes (syntax tree and plan).

They are dataclasses that behave as frozen ones.  ``@dataclass`` writes every
method it adds as source text and compiles it, once per class, when the module
is imported, which is on every query's start-up: about 0.25 ms a class, 10 ms
for the 42 node classes of a one-off ``sensorq "count …"`` (1.8 ms without
generated code, measured on the development machine).  So
``@node`` asks dataclass for no method at all (it still records the fields:
``dataclasses.fields``, ``replace`` and ``is_dataclass`` work as ever), and
the methods are written once, here, with the behaviour of
``@dataclass(frozen=True)``'s: ``__init__`` takes the fields in order,
positionally or by name, with their defaults and default factories; setting
or deleting an attribute raises ``FrozenInstanceError``; equal when of the
same class with equal fields, in order (else NotImplemented); hashed as the
tuple of the fields (once); shown as ``Name(field=value!r, ...)``.
Building a node through the shared ``__init__`` costs about a microsecond
more than through a generated one: planning a query builds a few dozen, and
the plan cache (engine/plancache.py) keeps the result.
"""
from __future__ import annotations

import dataclasses


_NO_DEFAULT = dataclasses.MISSING


class Node:
    __slots__ = ()
    _init_fields: tuple = ()        # (name, default, default factory) per field; set by @node
    _field_names: tuple = ()        # every field's name, in order; set by @node

    def __init__(self, *args, **kwargs):
        fields = self._init_fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}() takes {len(fields)} arguments, "
                            f"{len(args)} given")
        for i, (name, default, factory) in enumerate(fields):
            if i < len(args):
                if name in kwargs:
                    raise TypeError(f"{type(self).__name__}() got two values for {name!r}")
                value = args[i]
            elif name in kwargs:
                value = kwargs.pop(name)
            elif default is not _NO_DEFAULT:
                value = default
            elif factory is not _NO_DEFAULT:
                value = factory()
            else:
                raise TypeError(f"{type(self).__name__}() is missing {name!r}")
            object.__setattr__(self, name, value)
        if kwargs:          # what is left named no field
            raise TypeError(f"{type(self).__name__}() got unexpected {sorted(kwargs)}")

    def __setattr__(self, name, value):
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def _field_values(self) -> tuple:
        values = self.__dict__
        return tuple(values[name] for name in self._field_names)

    def __eq__(self, other):
        # the plan and program memos look plans up by value: an equal plan
        # made by another query text is compared field by field, so the
        # cheap answers come first (identity; hashes that both nodes have
        # kept and that differ)
        if other.__class__ is not self.__class__:
            return NotImplemented
        if other is self:
            return True
        mine, theirs = self.__dict__.get("_hash"), other.__dict__.get("_hash")
        if mine is not None and theirs is not None and mine != theirs:
            return False
        return self._field_values() == other._field_values()

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
    """``@dataclass(frozen=True)`` for a subclass of :class:`Node`, without
    generated code (see the module docstring)."""
    if not issubclass(cls, Node):
        raise TypeError(f"{cls.__name__} must subclass Node")
    cls = dataclasses.dataclass(init=False, eq=False, repr=False)(cls)
    cls._init_fields = tuple((f.name, f.default, f.default_factory)
                             for f in dataclasses.fields(cls) if f.init)
    cls._field_names = tuple(f.name for f in dataclasses.fields(cls))
    return cls
