"""Bit streams, LSB-first (docs/format.md §3), as numba functions.

The writer keeps a 64-bit accumulator and flushes whole words; the reader loads
eight bytes at a time, near the end of a section the eight that end there
(shifted), so it never reads past the bytes it was given.  All arithmetic is in
uint64 on purpose: numba turns a mix of uint64 and int64 into float64.

The decoder's two hot loops, unpacking a mini-block and the predictor's prefix
sum, are written as LLVM vector IR (:func:`unpack32`, :func:`prefix_sums`):
numba has no shuffles, and LLVM does not vectorise either loop by itself.  The
IR is target-neutral (shufflevector, funnel shifts); LLVM lowers it to
AVX-512 here, to AVX2/NEON or to scalar code elsewhere.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..jitcache import cached, digest
from .codes import ERR_BAD_CODE, ERR_TRUNCATED
from ._vector_ir import ABOVE_EQUAL, COUNT_WIDTHS, LADDER, emit_add32, emit_count32, \
    emit_lookup8, emit_prefix_count, emit_prefix_sums, emit_quotients32, emit_range32, emit_unpack32, emit_walk8, \
    _popcount

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)

U64 = np.uint64
ZERO = np.uint64(0)
ONE = np.uint64(1)
ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)

def _count_zeros_codegen(name, zero_is_poison):
    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [ir.IntType(64), ir.IntType(1)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), zero_is_poison)])
    return codegen


def _cttz_codegen(zero_is_poison):
    return _count_zeros_codegen("llvm.cttz.i64", zero_is_poison)


@intrinsic
def _cttz64(typingctx, value):
    """LLVM's count-trailing-zeros (one instruction on x86-64 and ARMv8), which
    numba does not expose; defined for a non-zero word only."""
    return types.uint64(types.uint64), _cttz_codegen(1)


@intrinsic
def cttz64_or_64(typingctx, value):
    """Count-trailing-zeros that is 64 for 0 (tzcnt with BMI1): for code that
    computes a result it may then discard, where a poison value must not leak."""
    return types.uint64(types.uint64), _cttz_codegen(0)


@intrinsic
def _ctlz64_or_64(typingctx, value):
    """LLVM's count-leading-zeros, 64 for 0 (lzcnt where the core has it)."""
    return types.uint64(types.uint64), _count_zeros_codegen("llvm.ctlz.i64", 0)


@intrinsic
def popcount64(typingctx, value):
    """LLVM's population count (popcnt where the core has it): the one bits
    of a word, which numba does not expose."""
    return types.uint64(types.uint64), lambda context, builder, signature, args: _popcount(builder, args[0])


@intrinsic
def fma(typingctx, a, b, c):
    """a × b + c rounded once (IEEE fused multiply-add: one instruction where
    the core has it, a correctly rounded library call where not), which
    numba does not expose.  float64 arguments."""
    if not all(x == types.float64 for x in (a, b, c)):
        return None

    def codegen(context, builder, signature, args):
        double = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(double, [double] * 3),
                                            "llvm.fma.f64")
        return builder.call(fn, args)
    return types.float64(types.float64, types.float64, types.float64), codegen


@cached(_STAMP, nogil=True)
def low_mask(width):
    """The low ``width`` bits set (width 0..64)."""
    if width >= 64:
        return ALL_ONES
    return (ONE << U64(width)) - ONE


@cached(_STAMP, nogil=True)
def bit_length(v):
    """Bits needed to write the unsigned value v (0 for 0)."""
    return 64 - np.int64(_ctlz64_or_64(U64(v)))


@cached(_STAMP, nogil=True)
def trailing_zeros(v):
    """Index of the lowest set bit of a non-zero word."""
    return np.int64(_cttz64(v))


# --- writing -------------------------------------------------------------------

@cached(_STAMP, nogil=True)
def put_bits(out, byte_pos, acc, n_acc, value, width):
    """Append the low ``width`` (0..64) bits of ``value``.  Returns the new
    (byte_pos, acc, n_acc); bytes are written to ``out`` a word at a time."""
    if width == 0:
        return byte_pos, acc, n_acc
    value &= low_mask(width)
    acc |= value << U64(n_acc)
    total = n_acc + width
    if total < 64:
        return byte_pos, acc, total
    for i in range(8):
        out[byte_pos + i] = np.uint8((acc >> U64(8 * i)) & U64(0xFF))
    byte_pos += 8
    if n_acc == 0:
        acc = ZERO
    else:
        acc = value >> U64(64 - n_acc)
    return byte_pos, acc, total - 64


@cached(_STAMP, nogil=True)
def put_zeros(out, byte_pos, acc, n_acc, count):
    while count > 0:
        step = min(count, 32)
        byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, ZERO, step)
        count -= step
    return byte_pos, acc, n_acc


@cached(_STAMP, nogil=True)
def finish_bits(out, byte_pos, acc, n_acc):
    """Write the accumulator's remaining bits, padded to a byte.  Returns the end."""
    n_bytes = (n_acc + 7) // 8
    for i in range(n_bytes):
        out[byte_pos + i] = np.uint8((acc >> U64(8 * i)) & U64(0xFF))
    return byte_pos + n_bytes


# --- reading -------------------------------------------------------------------

@cached(_STAMP, nogil=True, inline="always")
def load_word(buf, byte, end):
    """Eight bytes from ``byte`` as a little-endian word; bytes at or past ``end``
    read as zero."""
    if byte + 8 <= end:
        return load_word_unchecked(buf, U64(byte))
    if byte >= end:
        return ZERO
    if end >= 8:
        # near the end: the word that ends at ``end``, shifted down by the
        # bytes it has before ``byte`` (its top then fills with zeros): one
        # load instead of eight checked ones.  The bytes before ``byte``
        # lie in buf; they are shifted out unused.
        return load_word_unchecked(buf, U64(end - 8)) >> U64(8 * (byte + 8 - end))
    w = ZERO
    for i in range(8):
        if byte + i < end:
            w |= U64(buf[byte + i]) << U64(8 * i)
    return w


@cached(_STAMP, nogil=True)
def load_word_unchecked(buf, at):
    """Eight bytes at ``at`` (uint64) as a little-endian word; the caller has
    checked that they lie inside the section.  Unsigned indexing matters: it
    spares numba's negative-index fix-up, and LLVM turns the loop into one
    unaligned load (measured: 10x faster than signed indices)."""
    w = ZERO
    for i in range(8):
        w |= U64(buf[at + U64(i)]) << U64(8 * i)
    return w


@cached(_STAMP, nogil=True, inline="always")
def get_bits(buf, start, end, bit_pos, width):
    """The ``width`` (0..64) bits at bit offset ``bit_pos`` of the stream that
    starts at byte ``start``; bytes at or past ``end`` read as zero (the caller
    checks that the stream did not run past its end)."""
    if width == 0:
        return ZERO
    byte = start + (bit_pos >> 3)
    off = bit_pos & 7
    w = load_word(buf, byte, end) >> U64(off)
    if off + width > 64:
        w |= U64(buf[byte + 8] if byte + 8 < end else 0) << U64(64 - off)
    return w & low_mask(width)


# --- varints (LEB128: a short section's base, dictionary size; ENTROPY's symbols) ---

@cached(_STAMP, nogil=True)
def varint_size(v):
    """Bytes of v (uint64) as a varint."""
    n = 1
    while v >= U64(128):
        v >>= U64(7)
        n += 1
    return n


@cached(_STAMP, nogil=True, inline="always")
def read_varint(buf, pos, end):
    """A LEB128 varint at pos:
    (value, position after it), or (status, -1): ERR_TRUNCATED if it runs
    past end, ERR_BAD_CODE if it holds more than 64 bits."""
    value = ZERO
    for i in range(10):
        if pos + i >= end:
            return U64(0), -1
        b = U64(buf[pos + i])
        if i == 9 and b > ONE:
            return U64(1), -1
        value |= (b & U64(0x7F)) << U64(7 * i)
        if b < U64(0x80):
            return value, pos + i + 1
    return U64(1), -1


@cached(_STAMP, nogil=True, inline="always")
def varint_status(value):
    """The status of a failed :func:`read_varint` from the value it gave."""
    return ERR_TRUNCATED if value == ZERO else ERR_BAD_CODE


@cached(_STAMP, nogil=True)
def put_varint(out, pos, v):
    """v (uint64) as a LEB128 varint at out[pos:]: the offset after it."""
    while v >= U64(0x80):
        out[pos] = np.uint8((v & U64(0x7F)) | U64(0x80))
        v >>= U64(7)
        pos += 1
    out[pos] = np.uint8(v)
    return pos + 1


# --- vector kernels ----------------------------------------------------------------

def _c_arrays(*arrays):
    """The IR below indexes the data pointer directly: C-contiguous arrays only."""
    return all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays)


@intrinsic
def unpack32(typingctx, buf, at, shift, width, out, lo):
    """out[lo:lo+32] := the 32 values of ``width`` (0..64) bits that start
    ``shift`` (0..7) bits into byte ``at`` of buf.  Reads at most
    buf[at : at + unpack32_bytes(width)]: the caller checks that they lie in
    the section.  A switch with one straight-line body per width, every shift
    and shuffle a constant (~0.13 ns a value at width 7, against 0.65 scalar),
    but widths 1..16 share one branch-free body (a jump per width
    mispredicted on real data's mixed widths) and widths 33..56 one that
    gathers (see _vector_ir).  Where the target has AVX-512 VBMI, widths
    17..56 share one body of byte shuffles instead (_unpack_by_tables: the
    bench_floats decode of float rows 0.81-0.98 -> 1.02-1.17 G values/s)."""
    if not (_c_arrays(buf, out) and isinstance(width, types.Integer)):
        return None
    sig = types.void(buf, at, shift, width, out, lo)

    def codegen(context, builder, signature, args):
        src = context.make_array(signature.args[0])(context, builder, args[0]).data
        dst = context.make_array(signature.args[4])(context, builder, args[4]).data
        emit_unpack32(builder, builder.gep(src, [args[1]]), args[2], args[3],
                      builder.gep(dst, [args[5]]), byte_shuffles=_has_byte_shuffles(context))
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def count32(typingctx, buf, at, shift, width, threshold):
    """How many of the 32 values of ``width`` bits (COUNT_WIDTHS: 1..15) that
    start ``shift`` (0..7) bits into byte ``at`` of buf are above
    ``threshold`` (0 ≤ threshold < 2^width), and how many equal it: above |
    equal << 32.  unpack32 and a count after it, without storing the values
    (_vector_ir.emit_count32).  Reads at most buf[at : at +
    count32_bytes(width)]: the caller checks that they lie in the section."""
    if not (_c_arrays(buf) and isinstance(width, types.Integer)):
        return None
    sig = types.int64(buf, at, shift, width, threshold)

    def codegen(context, builder, signature, args):
        src = context.make_array(signature.args[0])(context, builder, args[0]).data
        return emit_count32(builder, builder.gep(src, [args[1]]), args[2], args[3], args[4],
                            byte_shuffles=_has_byte_shuffles(context))
    return sig, codegen


def has_byte_shuffles():
    """Whether kernels compiled in this process use AVX-512 VBMI's byte
    shuffles (count32's one body for every width, unpack32's for 17..56)."""
    from numba.core.registry import cpu_target
    return _has_byte_shuffles(cpu_target.target_context)


def _has_byte_shuffles(context):
    """Whether the code is compiled for x86-64 with AVX-512 VBMI (vpermb,
    vpmultishiftqb) and VL (their 256-bit forms): numba's target features,
    which NUMBA_CPU_NAME / NUMBA_CPU_FEATURES may set below the host's (and
    which key numba's cache, so a cached kernel is never run on a core
    without them).  Read from numba's codegen (private attributes: should a
    numba release rename them, the answer is no, and count32 and unpack32
    are the target-neutral switches)."""
    codegen = context.codegen()
    triple = str(getattr(getattr(codegen, "_llvm_module", None), "triple", ""))
    return triple.startswith("x86_64") and \
        {"+avx512vbmi", "+avx512vl", "+avx512bw"} <= _target_features(context)


def _target_features(context):
    """The CPU features numba compiles for (its codegen's, private: empty
    should a numba release rename it), as a set of "+name" strings."""
    return set(str(getattr(context.codegen(), "_tm_features", "")).split(","))


def has_byte_compress():
    """Whether kernels compiled in this process read split Rice quotients
    with AVX-512 VBMI2's byte compress (quotients32)."""
    from numba.core.registry import cpu_target
    return _has_byte_compress(cpu_target.target_context)


def _has_byte_compress(context):
    """Whether the code is compiled for x86-64 with AVX-512 VBMI2 (vpcompressb)
    and VBMI (vpermi2b), as _has_byte_shuffles asks numba's target features."""
    return _has_byte_shuffles(context) and "+avx512vbmi2" in _target_features(context)


@intrinsic
def quotients32(typingctx, buf, at, shift, k, out, lo):
    """out[lo:lo+32] |= each of 32 unary quotients (a split Rice mini-block's,
    codes.SPLIT) shifted left by k (≤ QUOTIENTS32_MAX_K), where they start
    ``shift`` bits into byte ``at`` and end within buf[at:at + 16] (the
    caller checks those bytes lie in the section): returns the bits they
    take, or 0 where they do not end there, and always 0 on a target
    without AVX-512 VBMI2, whose caller reads them a code at a time
    (payload._or_quotients).  Compiled there as a constant, so the branch
    on it folds away."""
    if not (_c_arrays(buf, out) and isinstance(k, types.Integer)):
        return None
    sig = types.uint64(buf, at, shift, k, out, lo)

    def codegen(context, builder, signature, args):
        if not _has_byte_compress(context):
            return ir.Constant(ir.IntType(64), 0)
        src = context.make_array(signature.args[0])(context, builder, args[0]).data
        dst = context.make_array(signature.args[4])(context, builder, args[4]).data
        return emit_quotients32(builder, builder.gep(src, [args[1]]), args[2], args[3],
                                builder.gep(dst, [args[5]]))
    return sig, codegen


WALK8_BAD_HEADER = 1 << 24        # walk8's flag: a header byte of Rice or patched


@intrinsic
def walk8(typingctx, buf, headers, start, end, bit_pos, frame_length, base, threshold, top, out, at):
    """Eight mini-blocks of a FRAMES payload settled at once, as
    tally.framed_count settles each with no ceiling (``threshold`` and
    ``top`` as there: a count, or a ladder's): header bytes buf[headers:
    headers + 8], each below 0x80; the bit stream at byte ``start``, the
    first frame at ``bit_pos``; frames ``frame_length`` (≤ 56) bits; end -
    start ≥ 8 (loads are clamped to the section's last word, as
    _settle_frames' are).  Writes each mini-block's note into out[at:at +
    24]: where its values start (bits), its width, its frame, eight of each.
    Returns (the bit after the eighth, flags): flags = (a header byte ≥
    0x80) << 24 | the number that all count << 16 | the mask of those left
    unsettled (_vector_ir.emit_walk8).  The next bit apart, so that the next
    step's loads need not wait for this step's loads and compares."""
    if not (_c_arrays(buf, out) and out.dtype == types.uint64):
        return None
    params = (buf, headers, start, end, bit_pos, frame_length, base, threshold, top, out, at)
    sig = types.UniTuple(types.int64, 2)(*params)

    def codegen(context, builder, signature, args):
        src = context.make_array(signature.args[0])(context, builder, args[0]).data
        dst = context.make_array(signature.args[9])(context, builder, args[9]).data
        i64 = [context.cast(builder, v, t, types.int64) for v, t in zip(args[1:9], signature.args[1:9])]
        ends_at, flags = emit_walk8(builder, src, *i64, builder.gep(dst, [args[10]]))
        return context.make_tuple(builder, signature.return_type, (ends_at, flags))
    return sig, codegen


COUNT32_MAX_WIDTH = COUNT_WIDTHS[-1]


@cached(_STAMP, nogil=True, inline="always")
def count32_bytes(width):
    """Bytes that :func:`count32` reads: 4 words and one more for the bit
    shift up to width 8, else 8 and one."""
    return 40 if width <= 8 else 72


@intrinsic
def range32(typingctx, words, lo):
    """(smallest, largest) of the uint64 words[lo:lo+32] (the caller checks
    that they lie in the array): a mini-block's range, for the encoder's
    order guess."""
    if not (_c_arrays(words) and words.dtype == types.uint64):
        return None
    sig = types.UniTuple(types.uint64, 2)(words, lo)

    def codegen(context, builder, signature, args):
        src = context.make_array(signature.args[0])(context, builder, args[0]).data
        smallest, largest = emit_range32(builder, builder.gep(src, [args[1]]))
        return context.make_tuple(builder, signature.return_type, [smallest, largest])
    return sig, codegen


@intrinsic
def lookup8(typingctx, ranks, groups, table, dest):
    """dest[i] := table[ranks[i]] for i < 8 * groups: a dictionary's
    values (table and dest both of 64-bit integers, copied as words, or both
    float64; dest may be ranks itself).  The caller checks that every rank
    is below the table's length, and that 8 * groups values lie in both
    arrays."""
    words = (types.uint64, types.int64)
    if not (_c_arrays(ranks, table, dest) and ranks.dtype == types.uint64
            and (table.dtype in words and dest.dtype in words
                 or table.dtype == dest.dtype == types.float64)):
        return None
    sig = types.void(ranks, groups, table, dest)

    def codegen(context, builder, signature, args):
        data = [context.make_array(signature.args[i])(context, builder, args[i]).data for i in (0, 2, 3)]
        emit_lookup8(builder, data[0], args[1], data[1], data[2])
        return context.get_dummy_value()
    return sig, codegen


def _prefetch_codegen(locality):
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", fnty=ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
        # a read (0), with ``locality``, of data (1)
        builder.call(fn, [builder.bitcast(builder.gep(data, [args[1]]), i8p),
                          ir.Constant(i32, 0), ir.Constant(i32, locality), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return codegen


@intrinsic
def prefetch(typingctx, buf, at):
    """Ask for the cache line of buf[at] to be loaded, and go on (LLVM's
    prefetch: a hint that never faults, a no-op where the target has none).
    A kernel asks for the sections of the block after next while it decodes
    this one: each block's sections lie apart in a segment (time column and
    channels side by side), and at every block the hardware's prefetcher had
    to find the stream again (a count over 20 M samples, in place ~55 %
    slower than over the same sections laid end to end; prefetched, ~20 %).
    Into the outer caches (locality 1: prefetcht2 on x86).  Into every
    level (3) the count over the 20 M cache's x sections in place took
    4.7-5.6 ms when every mini-block settles and 6.0-7.1 at the median,
    against 3.6-4.0 and 4.9-5.5 (in turns; likely the block after next's
    lines pushed out of L1 what it was still reading)."""
    if not (_c_arrays(buf) and isinstance(at, types.Integer)):
        return None
    return types.void(buf, at), _prefetch_codegen(1)


@intrinsic
def prefetch_near(typingctx, buf, at):
    """prefetch into every cache level (locality 3: prefetcht0 on x86): for
    a few scattered lines read soon (framemap.prefetch_unsettled)."""
    if not (_c_arrays(buf) and isinstance(at, types.Integer)):
        return None
    return types.void(buf, at), _prefetch_codegen(3)


CACHE_LINE = 64
# The block kernels (engine/kernels.py, models/kernels.py) ask for the
# sections of the block this many places ahead in their list while they
# decode one (prefetch_block): one ahead left part of the wait, four came too
# early for this machine's caches (count where x > 0 over the 20 M cache's x
# sections in place, one thread, in turns in one process: 7.6-7.8 ms
# without, 6.6-6.8 / 5.95-6.04 / 7.1-7.4 ms at 1 / 2 / 4 ahead; the same
# sections laid end to end: 5.0-5.1 ms).
PREFETCH_AHEAD = 2


@cached(_STAMP, nogil=True, inline="always")
def prefetch_bytes(buf, start, length):
    """prefetch every cache line of buf[start:start + length] (a section)."""
    for at in range(start, start + length, CACHE_LINE):
        prefetch(buf, U64(at))


@cached(_STAMP, nogil=True, inline="always")
def prefetch_block(buf, b, lay_t, lay_c, with_time):
    """Ask for the bytes of a layout's block b (engine/layout.py) that a
    kernel will read: its channel slots' sections (lay_c[b, s, 0:2], start
    and length), and its time column (lay_t[b, 3:5]) ``with_time``."""
    if with_time:
        prefetch_bytes(buf, lay_t[b, 3], lay_t[b, 4])
    for s in range(lay_c.shape[1]):
        prefetch_bytes(buf, lay_c[b, s, 0], lay_c[b, s, 1])


@intrinsic
def add32(typingctx, out, lo, value):
    """out[lo:lo+32] += value (uint64 words; the caller checks the 32 slots
    lie in out): a framed mini-block's words, its frame added to them."""
    if not (_c_arrays(out) and out.dtype == types.uint64):
        return None
    sig = types.void(out, lo, value)

    def codegen(context, builder, signature, args):
        dst = context.make_array(signature.args[0])(context, builder, args[0]).data
        emit_add32(builder, builder.gep(dst, [args[1]]), args[2])
        return context.get_dummy_value()
    return sig, codegen


@cached(_STAMP, nogil=True)
def unpack32_bytes(width):
    """Bytes that :func:`unpack32` reads: for widths 1..16 three words from
    the start of each 8 values; else the 32 * width bits as words, one more
    word for the bit shift; none for width 0."""
    if width == 0:
        return 0
    if width <= 16:    # _vector_ir.NARROW_WIDTHS: 3 * width + 24 bytes
        return 3 * width + 24
    return 8 * ((width + 1) // 2 + 1)


@intrinsic
def prefix_sums(typingctx, arr, nvec, carry, base, zig, dest):
    """Over arr[:8 * nvec]: d_i = unzigzag(arr[i]) if ``zig`` else arr[i];
    dest[i] := carry + d_0 + ... + d_i + base (mod 2^64), as a word (dest
    uint64, may be arr itself) or as that word read as int64, in float64 (dest
    float64: the engine's channel rows, written once).  Returns the last sum
    without base.  The running sum stays in a vector register, so the loop's
    critical path is one vector add per 8 words."""
    if not _c_arrays(arr, dest) or dest.dtype not in (types.uint64, types.float64):
        return None
    sig = types.uint64(arr, nvec, carry, base, zig, dest)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        out = context.make_array(signature.args[5])(context, builder, args[5]).data
        return emit_prefix_sums(builder, data, *args[1:5], out, dest.dtype == types.float64)
    return sig, codegen


@intrinsic
def scaled_prefix_sums(typingctx, arr, nvec, carry, base, zig, scale, dest):
    """:func:`prefix_sums` with dest[i] := (carry + d_0 + ... + d_i) * scale
    + base (mod 2^64) into a uint64 or int64 ``dest``: a time column's last
    pass writes the timestamps (t_first + tick * k) itself, instead of the
    words and then a pass over them."""
    if not _c_arrays(arr, dest) or dest.dtype not in (types.uint64, types.int64):
        return None
    sig = types.uint64(arr, nvec, carry, base, zig, scale, dest)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        out = context.make_array(signature.args[6])(context, builder, args[6]).data
        return emit_prefix_sums(builder, data, *args[1:5], out, False, scale=args[5])
    return sig, codegen


def _prefix_count(lanes, summed=True):
    @intrinsic
    def prefix_count(typingctx, arr, nvec, carry, base, zig, threshold, tally, ladder):
        if not _c_arrays(arr, tally) or tally.dtype != types.int64:
            return None
        # ``ladder`` None (or omitted by the caller's caller): the count's
        # (above, equal); anything else: the ladder.  Its type, not its value,
        # picks the tests, so each is compiled only where it is asked for.
        tests = ABOVE_EQUAL if isinstance(ladder, (types.NoneType, types.Omitted)) else LADDER
        sig = types.uint64(arr, nvec, carry, base, zig, threshold, tally, ladder)

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            counts = context.make_array(signature.args[6])(context, builder, args[6]).data
            return emit_prefix_count(builder, data, *args[1:6], counts, lanes, tests, summed)
        return sig, codegen
    return prefix_count


# Over arr[:8 * nvec] (uint64 residuals; d_i = unzigzag(arr[i]) if ``zig``):
# the sums of prefix_sums, s_i = carry + d_0 + ... + d_i + base, compared with
# ``threshold`` instead of stored: with ``ladder`` None, tally[0] += how many
# are above it and tally[1] += how many equal it; otherwise tally[j] += how
# many are at least threshold + j (j = 0..LADDER_STEPS), so that tally[j] -
# tally[j + 1] counts the sums equal to threshold + j (a percentile's
# candidate values, selection.sampled_percentile).  Returns the last sum
# without base.  prefix_count64 compares them as int64; prefix_count32 takes
# 16 words a step (nvec is then the number of 16s) and compares as int32,
# twice the lanes, and prefix_count16 32 words a step as int16 (residuals
# below 2^32): exact when every s_i and every threshold + j fits in the
# narrow type (arithmetic mod 2^32 or 2^16 is exact there), and they return
# the last sum mod 2^32 or 2^16.
prefix_count64 = _prefix_count(8)
prefix_count32 = _prefix_count(16)
prefix_count16 = _prefix_count(32)
# The same tests of the words themselves plus base, not of running sums (an
# order-0 column's values, int16 lanes; ``carry`` and ``zig`` are ignored,
# and carry returned).
count16 = _prefix_count(32, summed=False)
