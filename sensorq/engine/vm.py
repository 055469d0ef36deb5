"""The block VM: runs a program (``program.py``) over one decoded block.

Vectorised: every opcode processes all ``n`` samples of the block before the
next opcode runs, so the interpretation cost is paid per block, not per
sample.  The VM is one numba function compiled once (and cached on disk); the
query's shape lives in the ``code`` array, never in generated code.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .program import (ABS, ADD, AND, ARG, CMP, CONST, DIV, FALSE, LOAD, MAG, MUL, NEG, NOT, OR,
                      RAWCMP, SQRT, SUB, TRUE)


@njit(cache=True)
def compare(x, op, y):
    """x OP y; false whenever either side is NaN (also for !=)."""
    if x != x or y != y:
        return False
    if op == 0:
        return x < y
    if op == 1:
        return x <= y
    if op == 2:
        return x > y
    if op == 3:
        return x >= y
    if op == 4:
        return x == y
    return x != y


@njit(cache=True)
def run(code, consts, raw, scales, n, stack):
    """Run ``code`` over the block's raw channel rows ``raw[slot, :n]``.
    The result is left in ``stack[0, :n]``.  Every loop works on 1-D rows
    (``stack[top]``), which LLVM vectorises; indexing the 2-D arrays inside the
    loops measured twice as slow."""
    top = -1
    pc = 0
    while pc < code.shape[0]:
        op, a, b = code[pc, 0], code[pc, 1], code[pc, 2]
        pc += 1
        if op == ARG:
            continue
        if op in (LOAD, CONST, RAWCMP, TRUE, FALSE):
            top += 1
        x = stack[top]
        if op == LOAD:
            _scaled(raw[a], scales[a], x, n)
        elif op == CONST:
            x[:n] = consts[a]
        elif op == RAWCMP:
            _compare_const(raw[a], b, consts[code[pc, 1]], x, n)
            pc += 1
        elif op == TRUE or op == FALSE:
            x[:n] = 1.0 if op == TRUE else 0.0
        elif op == NEG:
            for i in range(n):
                x[i] = -x[i]
        elif op == ABS:
            for i in range(n):
                x[i] = abs(x[i])
        elif op == SQRT:
            for i in range(n):
                x[i] = np.sqrt(x[i]) if x[i] >= 0 else np.nan
        elif op == NOT:
            for i in range(n):
                x[i] = 1.0 - x[i]
        elif op == MAG:
            top = _magnitude(stack, top, a, n)
        elif op == CMP:
            _compare_pair(stack[top - 1], b, x, stack[top - 1], n)
            top -= 1
        else:
            _binary(op, stack[top - 1], x, n)
            top -= 1


@njit(cache=True)
def _scaled(src, scale, dst, n):
    for i in range(n):
        dst[i] = src[i] * scale


@njit(cache=True)
def _compare_const(left, op, constant, dst, n):
    """dst := left OP constant, as 1.0 / 0.0."""
    for i in range(n):
        dst[i] = 1.0 if compare(left[i], op, constant) else 0.0


@njit(cache=True)
def _compare_pair(left, op, right, dst, n):
    """dst := left OP right, row by row, as 1.0 / 0.0."""
    for i in range(n):
        dst[i] = 1.0 if compare(left[i], op, right[i]) else 0.0


@njit(cache=True)
def _magnitude(stack, top, count, n):
    base = top - count + 1
    out = stack[base]
    for i in range(n):
        total = 0.0
        for k in range(base, top + 1):
            total += stack[k, i] * stack[k, i]
        out[i] = np.sqrt(total)
    return base


@njit(cache=True)
def _binary(op, x, y, n):
    """x := x OP y, for the arithmetic and logical opcodes."""
    if op == ADD:
        for i in range(n):
            x[i] = x[i] + y[i]
    elif op == SUB:
        for i in range(n):
            x[i] = x[i] - y[i]
    elif op == MUL:
        for i in range(n):
            x[i] = x[i] * y[i]
    elif op == DIV:
        for i in range(n):
            x[i] = x[i] / y[i] if y[i] != 0 else np.nan
    elif op == AND:
        for i in range(n):
            x[i] = 1.0 if (x[i] != 0 and y[i] != 0) else 0.0
    elif op == OR:
        for i in range(n):
            x[i] = 1.0 if (x[i] != 0 or y[i] != 0) else 0.0
