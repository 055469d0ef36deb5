"""The block VM: runs a program (``program.py``) over one decoded block.

Vectorised: every opcode processes a whole tile of samples — a block of the
default 4096 samples is one tile; a bigger block is cut into tiles of TILE,
so that the stack's rows stay in the L2 cache while every opcode passes over
them — before the next opcode runs, so the interpretation cost is paid per
tile, not per sample.  Fused opcodes do in one loop what several would:
MAGLOAD computes mag() of channels straight from their decoded rows (one
pass per channel instead of a LOAD pass each, a MAG pass and the stack rows
in between: three times faster for mag(x, y, z)), CMPK compares with a
constant without a row of it.  (Smaller tiles, 512 samples held in L1,
measured slower on 4096-sample blocks: the dispatch per tile cost more than
the L2 traffic it saved.)  The VM is one numba function compiled once (and
cached on disk); the query's shape lives in the ``code`` array, never in
generated code.
"""
from __future__ import annotations

import numpy as np

from ..jitcache import cached, digest
from .program import (ABS, ADD, AND, ARG, CMP, CMPK, CONST, DIV, FALSE, LOAD, MAG, MAGLOAD, MUL,
                      NEG, NOT, OR, RAWCMP, SQRT, SUB, TRUE)

TILE = 4096    # samples per pass (32 kB stack rows)
_STAMP = digest("engine/program.py")     # the opcodes (jit.py)


@cached(_STAMP)
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


@cached(_STAMP, refcounted=False)
def run(code, consts, raw, scales, n, stack):
    """Run ``code`` over the block's raw channel rows ``raw[slot, :n]``.
    The result is left in ``stack[0, :n]``.  Every loop works on 1-D
    contiguous rows (``stack[top][lo:hi]``) from 0 to a length, which LLVM
    vectorises (indexing the 2-D arrays inside the loops measured twice as
    slow, a loop from lo to hi or over a 2-D slice's rows three times)."""
    for lo in range(0, n, TILE):
        _run_tile(code, consts, raw, scales, lo, min(n, lo + TILE), stack)


@cached(_STAMP, refcounted=False)
def _run_tile(code, consts, raw, scales, lo, hi, stack):
    """``run`` over samples lo..hi."""
    n = hi - lo
    top = -1
    pc = 0
    while pc < code.shape[0]:
        op, a, b = code[pc, 0], code[pc, 1], code[pc, 2]
        pc += 1
        if op == ARG:
            continue
        if op == LOAD or op == CONST or op == RAWCMP or op == TRUE or op == FALSE or \
                op == MAGLOAD:
            top += 1
        x = stack[top][lo:hi]
        if op == LOAD:
            _scaled(raw[a][lo:hi], scales[a], x, n)
        elif op == CONST:
            x[:] = consts[a]
        elif op == RAWCMP:
            _compare_const(raw[a][lo:hi], b, consts[code[pc, 1]], x, n)
            pc += 1
        elif op == TRUE or op == FALSE:
            x[:] = 1.0 if op == TRUE else 0.0
        elif op == MAGLOAD:
            _magnitude_of_rows(code, pc, a, raw, scales, x, lo, n)
            pc += a
        elif op == CMPK:
            _compare_const(x, b, consts[a], x, n)
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
            base = top - a + 1
            out = stack[base][lo:hi]
            for i in range(n):          # 0 + s0², in place
                out[i] = out[i] * out[i]
            for k in range(base + 1, top + 1):
                _add_square(stack[k][lo:hi], out, n)
            for i in range(n):
                out[i] = np.sqrt(out[i])
            top = base
        elif op == CMP:
            y = stack[top - 1][lo:hi]
            _compare_pair(y, b, x, y, n)
            top -= 1
        else:
            _binary(op, stack[top - 1][lo:hi], x, n)
            top -= 1


@cached(_STAMP, refcounted=False)
def _add_square(src, dst, n):
    for i in range(n):
        dst[i] += src[i] * src[i]


@cached(_STAMP, refcounted=False)
def _scaled(src, scale, dst, n):
    for i in range(n):
        dst[i] = src[i] * scale


@cached(_STAMP, refcounted=False)
def _compare_const(left, op, constant, dst, n):
    """dst := left OP constant, as 1.0 / 0.0 (dst may be left)."""
    for i in range(n):
        dst[i] = 1.0 if compare(left[i], op, constant) else 0.0


@cached(_STAMP, refcounted=False)
def _compare_pair(left, op, right, dst, n):
    """dst := left OP right, row by row, as 1.0 / 0.0."""
    for i in range(n):
        dst[i] = 1.0 if compare(left[i], op, right[i]) else 0.0


@cached(_STAMP, refcounted=False)
def _magnitude_of_rows(code, pc, count, raw, scales, out, lo, n):
    """MAGLOAD: out := sqrt(0 + v0² + v1² + …), v_k = raw row × scale of the
    slot in code[pc + k] — MAG's sum, in its order (0 + v0² is v0²)."""
    first = code[pc, 1]
    _square_scaled(raw[first][lo:lo + n], scales[first], out, n)
    for k in range(1, count):
        slot = code[pc + k, 1]
        _add_square_scaled(raw[slot][lo:lo + n], scales[slot], out, n)
    for i in range(n):
        out[i] = np.sqrt(out[i])


@cached(_STAMP, refcounted=False)
def _square_scaled(row, scale, out, n):
    for i in range(n):
        v = row[i] * scale
        out[i] = v * v


@cached(_STAMP, refcounted=False)
def _add_square_scaled(row, scale, out, n):
    for i in range(n):
        v = row[i] * scale
        out[i] += v * v


@cached(_STAMP, refcounted=False)
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
