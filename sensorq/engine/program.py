"""Plan expressions → programs of opcodes for the block VM (``vm.py``).

A program is postfix: an int64 array of (opcode, a, b) triples and a float64
array of constants.  Constants travel as numbers, never as text, and one
compiled VM serves every program, so a new query shape costs no compilation.

Opcodes (each pushes one array of ``n`` float64 onto the VM's stack; booleans
are 1.0 / 0.0):

    LOAD    a=slot            physical value of a channel: raw × scale[slot]
    CONST   a=const index     a constant
    RAWCMP  a=slot, b=op      raw value of a channel OP const[next triple's a]
                              (the threshold is in stored units; see plan.RawCompare)
    NEG ABS SQRT              unary, pop 1
    ADD SUB MUL DIV           binary, pop 2
    MAG     a=count           sqrt of the sum of squares of the top ``a`` entries
    CMP     b=op              compare the top two (NaN on either side: false)
    AND OR                    pop 2
    NOT                       pop 1
    TRUE FALSE                a constant truth value

Fused opcodes (one loop instead of several, for the shapes queries use most;
the same arithmetic in the same order, so the same bits):

    MAGLOAD a=count           mag() of ``count`` channels, whose slots follow in
                              ``count`` ARG triples (a=slot): pushes
                              sqrt((raw0·scale0)² + (raw1·scale1)² + …)
    CMPK    a=const, b=op     the top OP a constant (compare with a number)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..query import plan as P

LOAD, CONST, RAWCMP, NEG, ABS, SQRT, ADD, SUB, MUL, DIV, MAG, CMP, AND, OR, NOT, TRUE, FALSE, ARG, \
    MAGLOAD, CMPK = range(20)
COMPARE_CODES = {"<": 0, "<=": 1, ">": 2, ">=": 3, "==": 4, "!=": 5}
_MIRRORED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_BINARY = {"+": ADD, "-": SUB, "*": MUL, "/": DIV}
_UNARY = {"neg": NEG, "abs": ABS, "sqrt": SQRT}


@dataclass
class Program:
    """A postfix program and the channels it reads (plan index → VM slot)."""
    code: list = field(default_factory=list)
    consts: list = field(default_factory=list)
    slots: dict = field(default_factory=dict)   # stream channel index → slot
    max_depth: int = 0
    _depth: int = 0

    def code_array(self) -> np.ndarray:
        return np.array(self.code or [(TRUE, 0, 0)], np.int64).reshape(-1, 3)

    def emit(self, op: int, a: int = 0, b: int = 0, pops: int = 0) -> None:
        self.code.append((op, a, b))
        self._depth += 1 - pops
        self.max_depth = max(self.max_depth, self._depth)

    def const(self, value: float) -> int:
        self.consts.append(float(value))
        return len(self.consts) - 1

    def slot(self, channel: P.ChannelRef) -> int:
        return self.slots.setdefault(channel.index, len(self.slots))


def compile_value(expr, program: Program) -> None:
    """Append the postfix code of a value expression."""
    if isinstance(expr, P.ChannelRef):
        program.emit(LOAD, program.slot(expr))
    elif isinstance(expr, P.Const):
        program.emit(CONST, program.const(expr.value))
    elif isinstance(expr, P.UnaryOp):
        compile_value(expr.operand, program)
        program.emit(_UNARY[expr.op], pops=1)
    elif isinstance(expr, P.BinaryOp):
        compile_value(expr.left, program)
        compile_value(expr.right, program)
        program.emit(_BINARY[expr.op], pops=2)
    elif isinstance(expr, P.Magnitude) and all(isinstance(a, P.ChannelRef) for a in expr.args):
        program.emit(MAGLOAD, len(expr.args))
        for arg in expr.args:
            program.code.append((ARG, program.slot(arg), 0))
    elif isinstance(expr, P.Magnitude):
        for arg in expr.args:
            compile_value(arg, program)
        program.emit(MAG, len(expr.args), pops=len(expr.args))
    else:
        raise TypeError(f"not a value expression: {expr!r}")


def compile_predicate(pred, program: Program) -> None:
    """Append the postfix code of a predicate."""
    if isinstance(pred, P.RawCompare):
        program.emit(RAWCMP, program.slot(pred.channel), COMPARE_CODES[pred.op])
        program.code.append((ARG, program.const(pred.threshold), 0))
    elif isinstance(pred, P.Compare) and isinstance(pred.right, P.Const):
        compile_value(pred.left, program)
        program.emit(CMPK, program.const(pred.right.value), COMPARE_CODES[pred.op])
    elif isinstance(pred, P.Compare) and isinstance(pred.left, P.Const):
        compile_value(pred.right, program)      # c < e is e > c (NaN fails both ways)
        program.emit(CMPK, program.const(pred.left.value), COMPARE_CODES[_MIRRORED[pred.op]])
    elif isinstance(pred, P.Compare):
        compile_value(pred.left, program)
        compile_value(pred.right, program)
        program.emit(CMP, 0, COMPARE_CODES[pred.op], pops=2)
    elif isinstance(pred, (P.And, P.Or)):
        compile_predicate(pred.args[0], program)
        for arg in pred.args[1:]:
            compile_predicate(arg, program)
            program.emit(AND if isinstance(pred, P.And) else OR, pops=2)
    elif isinstance(pred, P.Not):
        compile_predicate(pred.arg, program)
        program.emit(NOT, pops=1)
    elif isinstance(pred, P.BoolConst):
        program.emit(TRUE if pred.value else FALSE)
    else:
        raise TypeError(f"not a predicate: {pred!r}")


@dataclass
class QueryPrograms:
    """What the scan kernels run for one query: the predicate, the value
    expression (either may be absent) and the channel slots both read."""
    pred: Program
    value: Program
    channels: list        # ChannelRef per slot, in slot order
    has_pred: bool
    has_value: bool

    # The arrays below are made once per compiled pair (compile_query hands the
    # same programs out again: a repeated query made them anew each time, ~1 µs
    # an array of a ~70 µs top N).  Kernels only read them, and nothing else
    # may write them; they stay writable arrays, as the kernels were compiled
    # for (a read-only one is another numba type: every kernel compiled twice).

    @cached_property
    def slot_indices(self) -> np.ndarray:
        return np.array([c.index for c in self.channels], np.int64)

    @cached_property
    def slot_scales(self) -> np.ndarray:
        return np.array([c.scale for c in self.channels], np.float64)

    @cached_property
    def _kernel_args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        consts = np.array(self.pred.consts or [0.0], np.float64)   # one table, shared
        depth = max(self.pred.max_depth, self.value.max_depth, 1)
        return self.pred.code_array(), self.value.code_array(), consts, depth

    def kernel_args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(predicate code, value code, constants, stack depth) for the kernels."""
        return self._kernel_args


KEPT_PROGRAMS = 256         # compile_query: (predicate, value) pairs remembered
_compiled: dict = {}        # (where, value) -> programs
_by_identity: dict = {}     # (id(where), id(value)) -> (where, value, programs)


def compile_query(where, value) -> QueryPrograms:
    """Programs for a predicate and a value expression sharing one slot table
    and one constant table (so the kernels take one array of each).  Plan
    nodes are frozen and compare by value, so the programs of a pair compiled
    before are handed out again (an aggregate compiles its predicate up to
    three times; a repeated query, every time); nothing changes a program
    once compiled.  The same node objects (a kept plan's) are found by
    identity first: an equal plan of another query text is compared field
    by field, about 10 µs of a 60 µs count."""
    kept = _by_identity.get((id(where), id(value)))
    if kept is not None and kept[0] is where and kept[1] is value:
        return kept[2]
    key = (where, value)
    programs = _compiled.get(key)
    if programs is None:
        if len(_compiled) >= KEPT_PROGRAMS:
            _compiled.clear()
        programs = _compiled[key] = _compile(where, value)
    if len(_by_identity) >= KEPT_PROGRAMS:
        _by_identity.clear()
    # the entry holds the nodes, so their ids cannot be reused while it is kept
    _by_identity[(id(where), id(value))] = (where, value, programs)
    return programs


def _compile(where, value) -> QueryPrograms:
    shared: dict = {}
    consts: list = []
    pred, val = Program(consts=consts, slots=shared), Program(consts=consts, slots=shared)
    refs: dict = {}
    for node in _channel_refs(where) + _channel_refs(value):
        refs.setdefault(node.index, node)
    if where is not None:
        compile_predicate(where, pred)
    if value is not None:
        compile_value(value, val)
    channels = [refs[i] for i, _ in sorted(shared.items(), key=lambda kv: kv[1])]
    return QueryPrograms(pred, val, channels, where is not None, value is not None)


def _channel_refs(node) -> list:
    if node is None:
        return []
    if isinstance(node, P.ChannelRef):
        return [node]
    found = []
    for name in getattr(node, "__dataclass_fields__", {}):
        child = getattr(node, name)
        for item in child if isinstance(child, tuple) else (child,):
            if hasattr(item, "__dataclass_fields__"):
                found += _channel_refs(item)
    return found
