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
    The result is left in ``stack[0, :n]``."""
    top = -1
    pc = 0
    while pc < code.shape[0]:
        op, a, b = code[pc, 0], code[pc, 1], code[pc, 2]
        pc += 1
        if op == LOAD:
            top += 1
            s = scales[a]
            for i in range(n):
                stack[top, i] = raw[a, i] * s
        elif op == CONST:
            top += 1
            stack[top, :n] = consts[a]
        elif op == RAWCMP:
            top += 1
            threshold = consts[code[pc, 1]]
            pc += 1
            for i in range(n):
                stack[top, i] = 1.0 if compare(raw[a, i], b, threshold) else 0.0
        elif op == ARG:
            pass
        elif op == NEG:
            for i in range(n):
                stack[top, i] = -stack[top, i]
        elif op == ABS:
            for i in range(n):
                stack[top, i] = abs(stack[top, i])
        elif op == SQRT:
            for i in range(n):
                stack[top, i] = np.sqrt(stack[top, i]) if stack[top, i] >= 0 else np.nan
        elif op == MAG:
            base = top - a + 1
            for i in range(n):
                total = 0.0
                for k in range(base, top + 1):
                    total += stack[k, i] * stack[k, i]
                stack[base, i] = np.sqrt(total)
            top = base
        elif op == CMP:
            for i in range(n):
                stack[top - 1, i] = 1.0 if compare(stack[top - 1, i], b, stack[top, i]) else 0.0
            top -= 1
        elif op == TRUE or op == FALSE:
            top += 1
            stack[top, :n] = 1.0 if op == TRUE else 0.0
        elif op == NOT:
            for i in range(n):
                stack[top, i] = 1.0 - stack[top, i]
        else:
            _binary(op, stack, top, n)
            top -= 1


@njit(cache=True)
def _binary(op, stack, top, n):
    x, y = stack[top - 1], stack[top]
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
