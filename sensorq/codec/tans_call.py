"""The ENTROPY coder compiled once, called by symbol from every kernel.

numba links a callee's IR into every function that calls it and optimises it
again there.  The engine has dozens of kernels that decode sections and the
store several encoders, so calling tans.py directly compiled the tANS coder
into each of them: a first query's cold compile doubled (18 s -> 35 s), and
so did a first write's.  Instead, each entry point below is compiled once as a
C-callable function (``numba.cfunc``, kept in numba's disk cache like the
kernels), its address is given to LLVM's symbol table, and the kernels reach
it through an intrinsic that emits a call to that symbol and nothing else.
A kernel loaded from numba's cache links the symbol again when it is loaded,
so this module must be imported before any kernel that calls it runs:
intcodec.py imports it, and every kernel that codes sections reaches
intcodec.py.

An array crosses the call as its data pointer and its length (the callee
sees an array of that length again); an integer as an int64.  A call costs a
few nanoseconds a section (a section holds up to 4,096 values), and the coder
keeps its own bounds checks: the decoder reads nothing outside buf[pos:end]
and writes nothing outside out[:n].
"""
from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba import carray, cfunc, types
from numba.core import cgutils
from numba.core.compiler_lock import global_compiler_lock
from numba.core.errors import TypingError
from numba.extending import intrinsic

from ..jitcache import rename
from . import tans

_I8P = ir.IntType(8).as_pointer()
_I64 = ir.IntType(64)
_DTYPES = {"B": types.uint8, "U": types.uint64, "I": types.int64}     # the array letters


def _c_signature(params: str):
    """The cfunc signature of ``params``: per letter, an array (B uint8,
    U uint64, I int64) as pointer and length, or ``i`` an int64."""
    args = []
    for kind in params:
        if kind == "i":
            args.append(types.int64)
        else:
            args += [types.CPointer(_DTYPES[kind]), types.int64]
    return types.int64(*args)


def _export(name: str, params: str, body):
    """Compile ``body`` (a function of pointers, lengths and ints) once as a
    cfunc and register it as symbol ``sensorq_<name>_<stamp>``."""
    symbol = f"sensorq_{name}_{tans._STAMP}"            # new code, a new symbol
    rename(body, tans._STAMP)
    compiled = cfunc(_c_signature(params), cache=True, nogil=True)(body)
    llvm.add_symbol(symbol, compiled.address)
    return symbol


def _check(name: str, params: str, arg_types) -> None:
    for kind, ty in zip(params, arg_types):
        if kind == "i":
            if not isinstance(ty, types.Integer):
                raise TypingError(f"tans_call.{name}: {ty} where an integer goes")
        elif not (isinstance(ty, types.Array) and ty.ndim == 1 and ty.layout == "C"
                  and ty.dtype == _DTYPES[kind]):
            raise TypingError(f"tans_call.{name}: {ty} where a contiguous 1-D "
                              f"{_DTYPES[kind]} array goes")


def _emit_call(symbol, context, builder, sig, args):
    """A call of ``symbol``: arrays as (data pointer, length), integers as int64."""
    values, c_types = [], []
    for ty, value in zip(sig.args, args):
        if isinstance(ty, types.Array):
            array = cgutils.create_struct_proxy(ty)(context, builder, value=value)
            values += [builder.bitcast(array.data, _I8P), array.nitems]
            c_types += [_I8P, _I64]
        else:
            values.append(context.cast(builder, value, ty, types.int64))
            c_types.append(_I64)
    function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I64, c_types), symbol)
    return builder.call(function, values)


# --- the decoder ------------------------------------------------------------------

def _read_body(buf_p, buf_len, pos, end, n, order, out_p, out_len):
    return tans.read(carray(buf_p, (buf_len,)), pos, end, n, order, carray(out_p, (out_len,)))


_READ = _export("tans_read", "BiiiiU", _read_body)


@intrinsic
def read(typingctx, buf, pos, end, n, order, out):
    """tans.read(buf, pos, end, n, order, out), compiled once: the residuals
    of the ENTROPY payload buf[pos:end] into out[:n]; a status."""
    _check("read", "BiiiiU", (buf, pos, end, n, order, out))
    return types.int64(buf, pos, end, n, order, out), \
        lambda context, builder, sig, args: _emit_call(_READ, context, builder, sig, args)


# --- the encoder's two steps ---------------------------------------------------------
#
# Compiled on first need, not at import: a process that only queries never
# pays their compile (~5 s once).  Whatever calls them must call
# link_encoder() before it is compiled or loaded from numba's cache (a load
# links the symbols at once, and a symbol LLVM cannot find aborts the
# process): the encoders that call them directly or through intcodec's
# encode_column* are filed with ``cached(..., before_compile=link_encoder)``,
# and a test checks that every compiled caller is.

_encoder_symbols: list = []


def link_encoder() -> list:
    """Compile (or load) the encoder's entry points once and register their
    symbols: [best_order's, write_column's]."""
    with global_compiler_lock:      # numba's own (re-entrant): a compile may be what calls this
        if not _encoder_symbols:
            _encoder_symbols.extend([_export("tans_best_order", "UiiUUII", _best_order_body),
                                     _export("tans_write_column", "UiiUUIiiBi", _write_body)])
    return _encoder_symbols


def _best_order_body(s_p, s_len, payload_bytes, binned, u_p, u_len, values_p, values_len,
                     freqs_p, freqs_len, plan_p, plan_len):
    plan = carray(plan_p, (plan_len,))
    order, plan[0], plan[1], plan[2], plan[3] = tans.best_order(
        carray(s_p, (s_len,)), payload_bytes, binned, carray(u_p, (u_len,)),
        carray(values_p, (values_len,)), carray(freqs_p, (freqs_len,)))
    return order




@intrinsic
def best_order(typingctx, s, payload_bytes, binned, u, values, freqs, plan):
    """tans.best_order, compiled once: the predictor order of s's cheapest
    ENTROPY form under ``payload_bytes`` (or -1; with low bits if
    ``binned``), with its (bytes, L, S, low bits) in plan[:4] and its
    symbols and frequencies in values and freqs."""
    params = (s, payload_bytes, binned, u, values, freqs, plan)
    _check("best_order", "UiiUUII", params)
    symbols = link_encoder()
    return types.int64(*params), \
        lambda context, builder, sig, args: _emit_call(symbols[0], context, builder, sig, args)


def _write_body(s_p, s_len, order, low_bits, u_p, u_len, values_p, values_len, freqs_p, freqs_len,
                table_log, n_symbols, out_p, out_len, pos):
    return tans.write_column(carray(s_p, (s_len,)), order, low_bits, carray(u_p, (u_len,)),
                             carray(values_p, (values_len,)), carray(freqs_p, (freqs_len,)),
                             table_log, n_symbols, carray(out_p, (out_len,)), pos)





@intrinsic
def write_column(typingctx, s, order, low_bits, u, values, freqs, table_log, n_symbols, out, pos):
    """tans.write_column, compiled once: the ENTROPY payload at out[pos:] as
    :func:`best_order` planned it; the end offset."""
    params = (s, order, low_bits, u, values, freqs, table_log, n_symbols, out, pos)
    _check("write_column", "UiiUUIiiBi", params)
    symbols = link_encoder()
    return types.int64(*params), \
        lambda context, builder, sig, args: _emit_call(symbols[1], context, builder, sig, args)
