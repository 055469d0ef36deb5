"""query/nodes.py: ``@node`` classes behave as ``@dataclass(frozen=True)``
ones (the reference: a real frozen dataclass with the same fields), without
generated code."""
from __future__ import annotations

import dataclasses

import pytest

from sensorq.query.nodes import Node, node


@node
class Probe(Node):
    a: int
    b: str = "x"
    c: tuple = dataclasses.field(default_factory=tuple)


@dataclasses.dataclass(frozen=True)
class Reference:
    a: int
    b: str = "x"
    c: tuple = dataclasses.field(default_factory=tuple)


CALLS = [((1,), {}), ((1, "y"), {}), ((), {"a": 2, "c": (3,)}), ((1,), {"b": "z"}),
         ((1, "y", (4,)), {})]
BAD_CALLS = [((), {}), ((1, "y", (), 5), {}), ((1,), {"a": 2}), ((1,), {"d": 0})]


@pytest.mark.parametrize("args, kwargs", CALLS)
def test_fields_defaults_and_factories_as_a_dataclass(args, kwargs):
    probe, reference = Probe(*args, **kwargs), Reference(*args, **kwargs)
    assert dataclasses.astuple(probe) == dataclasses.astuple(reference)
    assert probe == Probe(*args, **kwargs) and hash(probe) == hash(Probe(*args, **kwargs))
    assert dataclasses.replace(probe, b="w").b == "w" and probe.b == reference.b


@pytest.mark.parametrize("args, kwargs", BAD_CALLS)
def test_wrong_arguments_are_a_type_error_as_for_a_dataclass(args, kwargs):
    with pytest.raises(TypeError):
        Reference(*args, **kwargs)
    with pytest.raises(TypeError):
        Probe(*args, **kwargs)


def test_frozen():
    probe = Probe(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        probe.a = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        del probe.b
    assert probe.a == 1 and probe.b == "x" and probe.c == ()
