"""The ENTROPY decoder compiled once, called by symbol from every kernel.

numba links a callee's IR into every function that calls it and optimises it
again there.  The engine has dozens of kernels that decode sections, so
calling :func:`tans.read` directly compiled the tANS decoder into each of
them: a first query's cold compile doubled (18 s -> 35 s).  Instead,
:func:`tans.read` is compiled once as a C-callable function (``numba.cfunc``,
kept in numba's disk cache like the kernels), its address is given to LLVM's
symbol table under :data:`SYMBOL`, and the kernels reach it through
:func:`read`, an intrinsic that emits a call to that symbol and nothing else.
A kernel loaded from numba's cache links the symbol again when it is loaded,
so this module must be imported before any kernel that calls :func:`read`
runs: intcodec.py imports it, and every kernel decoding sections reaches
intcodec.py.

The call costs a few nanoseconds a section (a section holds up to 4,096
values), and the decoder keeps its own bounds checks: it reads nothing
outside buf[pos:end] and writes nothing outside out[:n].
"""
from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba import carray, cfunc, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

from ..jitcache import rename
from . import tans

SYMBOL = f"sensorq_tans_read_{tans._STAMP}"      # a new decoder, a new symbol
_C_SIGNATURE = types.int64(types.CPointer(types.uint8), types.int64, types.int64, types.int64,
                           types.int64, types.CPointer(types.uint64))


def _read_c(buf_p, pos, end, n, order, out_p):
    return tans.read(carray(buf_p, (end,)), pos, end, n, order, carray(out_p, (n,)))


rename(_read_c, tans._STAMP)
_compiled = cfunc(_C_SIGNATURE, cache=True, nogil=True)(_read_c)
llvm.add_symbol(SYMBOL, _compiled.address)

_I8P = ir.IntType(8).as_pointer()
_I64 = ir.IntType(64)


def _contiguous_1d(array, dtype, what):
    if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout == "C"
            and array.dtype == dtype):
        raise TypingError(f"tans_call.read: {what} must be a contiguous 1-D {dtype} array, "
                          f"not {array}")


@intrinsic
def read(typingctx, buf, pos, end, n, order, out):
    """tans.read(buf, pos, end, n, order, out) through the compiled symbol:
    the residuals of the ENTROPY payload buf[pos:end] into out[:n]; a status."""
    _contiguous_1d(buf, types.uint8, "buf")
    _contiguous_1d(out, types.uint64, "out")
    signature = types.int64(buf, pos, end, n, order, out)

    def codegen(context, builder, sig, args):
        a_buf, a_pos, a_end, a_n, a_order, a_out = args
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_I64, [_I8P, _I64, _I64, _I64, _I64, _I64.as_pointer()]),
            SYMBOL)
        data = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=a_buf).data
        dest = cgutils.create_struct_proxy(sig.args[5])(context, builder, value=a_out).data
        integers = [context.cast(builder, value, ty, types.int64)
                    for value, ty in zip((a_pos, a_end, a_n, a_order), sig.args[1:5])]
        return builder.call(function, [builder.bitcast(data, _I8P), *integers,
                                       builder.bitcast(dest, _I64.as_pointer())])
    return signature, codegen
