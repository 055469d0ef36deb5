"""LLVM IR for the vector kernels of bits.py (``unpack32``, ``prefix_sums``,
``prefix_count64/32/16``, which compare the sums instead of storing them,
``count32``, which counts a mini-block's values without storing them,
``walk8``, which settles eight FRAMES mini-blocks by their frames, a
mini-block's ``add32`` and ``range32``, and a dictionary's ``lookup8``).

Written with llvmlite's IR builder in target-neutral vector IR: constant
shufflevectors, ``llvm.fshr`` funnel shifts, ``llvm.ctpop`` of compare
masks, ``llvm.masked.gather``, ``llvm.vector.reduce.umin/umax``, plain
vector loads and stores.  LLVM picks
the instructions for the host (vpermt2q/vpermi2b/vpshrdvq/valignq/vpgatherqq on
AVX-512, scalar code where there is no such instruction).  One exception:
count32's and unpack32's one body for (nearly) every width
(_count_by_tables, _unpack_by_tables) name AVX-512 VBMI's byte shuffles,
and are emitted only when the target has them (bits.py asks); elsewhere
both are the target-neutral switches.
"""
from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils

from .codes import FRAMED, LADDER_STEPS, RICE

I32 = ir.IntType(32)
I64 = ir.IntType(64)
MAX_WIDTH = 64
# Widths with a gathering body instead of a specialised one: each specialised
# body of these widths cost ~10 ms of LLVM time in every compiled function
# that reaches the decoder (numba links callees' IR into each caller); they
# are mostly float bit patterns.  57..64 need two words a value: specialised.
GATHER_WIDTHS = range(33, 57)
# Widths with one shared body that needs no gather (_unpack_narrow); it reads
# 3 * width + 24 bytes (bits.unpack32_bytes).
NARROW_WIDTHS = range(1, 17)


def _vec(n):
    return ir.VectorType(I64, n)


def _const(values):
    return ir.Constant(_vec(len(values)), [ir.Constant(I64, int(v)) for v in values])


def _shuffle(builder, a, b, lanes):
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(I32, len(lanes)), list(lanes)))


def _splat(builder, x, n):
    """x in each of n lanes (of x's integer type)."""
    vec = ir.VectorType(x.type, n)
    one = builder.insert_element(ir.Constant(vec, ir.Undefined), x, ir.Constant(I32, 0))
    return _shuffle(builder, one, ir.Constant(vec, ir.Undefined), [0] * n)


def _as_i64(builder, x):
    return builder.zext(x, I64) if x.type.width < 64 else builder.trunc(x, I64) if x.type.width > 64 else x


def _fshr(builder, hi, lo, amount):
    """Per lane, the low 64 bits of (hi:lo) >> amount (amount mod 64)."""
    n = lo.type.count
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_vec(n), [_vec(n)] * 3),
                                        f"llvm.fshr.v{n}i64")
    return builder.call(fn, [hi, lo, amount])


def _popcount(builder, x):
    """llvm.ctpop of integer x (a compare mask bitcast to an integer), of x's width."""
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(x.type, [x.type]),
                                        f"llvm.ctpop.i{x.type.width}")
    return builder.call(fn, [x])


def _load(builder, ptr, n):
    return builder.load(builder.bitcast(ptr, _vec(n).as_pointer()), align=1)


def _store8(builder, dst, k, values):
    at = builder.gep(dst, [ir.Constant(I64, 8 * k)])
    builder.store(values, builder.bitcast(at, _vec(8).as_pointer()), align=8)


def _unpack_width(builder, src, shift, h, dst):
    """32 values of h bits.  The stream is first realigned to bit 0 of a run of
    words (two overlapping loads, one funnel shift); value i is then the funnel
    shift of words (i*h)//64 and the one after, by (i*h)%64: constants."""
    if h == 0:
        for k in range(4):
            _store8(builder, dst, k, _const([0] * 8))
        return
    words = (h + 1) // 2
    view = _fshr(builder, _load(builder, builder.gep(src, [ir.Constant(I64, 8)]), words),
                 _load(builder, src, words), _splat(builder, shift, words))
    undef = ir.Constant(view.type, ir.Undefined)
    for k in range(4):
        bits = [(8 * k + t) * h for t in range(8)]
        lo = _shuffle(builder, view, undef, [b >> 6 for b in bits])
        hi = _shuffle(builder, view, undef, [(b >> 6) + 1 if (b & 63) + h > 64 else b >> 6 for b in bits])
        values = _fshr(builder, hi, lo, _const([b & 63 for b in bits]))
        if h < 64:
            values = builder.and_(values, _const([(1 << h) - 1] * 8))
        _store8(builder, dst, k, values)


def _unpack_gather(builder, src, shift, width, dst):
    """32 values of a run-time width ≤ 56: value i is the word at byte
    (shift + i*width) // 8, shifted and masked, loaded by a gather (~0.4 ns a
    value here, against ~0.25 specialised and ~1 scalar)."""
    i64p = I64.as_pointer()
    gather = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_vec(8), [ir.VectorType(i64p, 8), I32,
                                                  ir.VectorType(ir.IntType(1), 8), _vec(8)]),
        "llvm.masked.gather.v8i64.v8p0i64")
    base = _splat(builder, builder.ptrtoint(src, I64), 8)
    widths = _splat(builder, width, 8)
    mask = _splat(builder, builder.lshr(ir.Constant(I64, -1), builder.sub(ir.Constant(I64, 64), width)), 8)
    every_lane = ir.Constant(ir.VectorType(ir.IntType(1), 8), [1] * 8)
    for k in range(4):
        bits = builder.add(_splat(builder, shift, 8), builder.mul(widths, _const(range(8 * k, 8 * k + 8))))
        ptrs = builder.inttoptr(builder.add(base, builder.lshr(bits, _const([3] * 8))),
                                ir.VectorType(i64p, 8))
        words = builder.call(gather, [ptrs, ir.Constant(I32, 1), every_lane, ir.Constant(_vec(8), ir.Undefined)])
        _store8(builder, dst, k, builder.and_(builder.lshr(words, builder.and_(bits, _const([7] * 8))), mask))


def _unpack_narrow(builder, src, shift, width, dst):
    """32 values of a run-time width ≤ 16 (NARROW_WIDTHS) without a gather:
    for each 8, three words from the byte where they start, broadcast;
    value i is the funnel shift of words j and j + 1 by o = r + i*width
    (r: the 8's first bit in its byte, j = o >> 6 is 0 or 1: o ≤ 7 + 7*16),
    the words picked per lane by a select.  One body for all these widths:
    the width switch mispredicted on most mini-blocks of real data, whose
    widths vary (~5 ns each; measured: 0.27 ns a value with widths drawn
    from 3..10, against 0.10-0.14 for one width; 0.19 with this body).
    Reads bytes [0, 3*width + 24)."""
    i8p = ir.IntType(8).as_pointer()
    lanes_w = builder.mul(_splat(builder, width, 8), _const(range(8)))
    mask = _splat(builder, builder.lshr(ir.Constant(I64, -1), builder.sub(ir.Constant(I64, 64), width)), 8)
    sixty_four = _const([64] * 8)
    for k in range(4):
        first = builder.add(shift, builder.mul(width, ir.Constant(I64, 8 * k)))   # bit of value 8k
        at = builder.gep(builder.bitcast(src, i8p), [builder.lshr(first, ir.Constant(I64, 3))])
        words = [_splat(builder, builder.load(builder.bitcast(builder.gep(at, [ir.Constant(I64, 8 * j)]),
                                                              I64.as_pointer()), align=1), 8)
                 for j in range(3)]
        offsets = builder.add(_splat(builder, builder.and_(first, ir.Constant(I64, 7)), 8), lanes_w)
        second = builder.icmp_unsigned(">=", offsets, sixty_four)
        lo = builder.select(second, words[1], words[0])
        hi = builder.select(second, words[2], words[1])
        values = builder.and_(_fshr(builder, hi, lo, offsets), mask)
        _store8(builder, dst, k, values)


# _unpack_by_tables' widths: a value and its bit offset in its first byte
# (≤ 7) fit one 64-bit lane up to 56 bits.  Below 17 the narrow body
# (_unpack_narrow) stays: Daphnet's rank mini-blocks decoded ~3 % slower
# through the tables.
TABLE_UNPACK_WIDTHS = range(17, 57)


def _unpack_lane_tables():
    """Per width, vpermb's control (lane j: the 8 bytes from value j's first
    byte, (j w) >> 3, on) and each value's bit in its first byte, (j w) & 7,
    both for a group of 8 values that starts at a byte."""
    index, low_bits = [[0] * 64 for _ in range(57)], [[0] * 64 for _ in range(57)]
    for w in TABLE_UNPACK_WIDTHS:
        for j in range(8):
            for b in range(8):
                index[w][8 * j + b] = ((j * w) >> 3) + b
            low_bits[w][8 * j] = (j * w) & 7        # a little-endian 64-bit lane
    return index, low_bits


def _unpack_by_tables(builder, src, shift, width, dst):
    """32 values of a run-time width in TABLE_UNPACK_WIDTHS, one body, with
    AVX-512 VBMI's byte shuffle: each group of 8 starts at byte k w (bit
    ``shift`` of it); a masked load of just the group's bytes, vpermb puts
    each value's bytes in its own lane (the control a per-width table row
    plus one where the start bit carries into the next byte), a variable
    shift and the mask take its bits.  Reads (shift + 32 w + 7) // 8 bytes,
    no more."""
    vec8, bytes64 = _vec(8), ir.VectorType(ir.IntType(8), 64)
    index_rows, low_rows = _unpack_lane_tables()
    index = builder.bitcast(_table_row(builder, "sensorq_unpack32_index", index_rows, width), vec8)
    low = builder.bitcast(_table_row(builder, "sensorq_unpack32_low_bits", low_rows, width), vec8)
    lane_bits = builder.add(low, _splat(builder, shift, 8))
    carry = builder.lshr(lane_bits, _const([3] * 8))
    index = builder.bitcast(builder.add(index, builder.mul(carry, _const([0x0101010101010101] * 8))), bytes64)
    amounts = builder.and_(lane_bits, _const([7] * 8))
    mask = _splat(builder, builder.lshr(ir.Constant(I64, -1), builder.sub(ir.Constant(I64, 64), width)), 8)
    load = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(bytes64, [bytes64.as_pointer(), I32, ir.VectorType(ir.IntType(1), 64),
                                                  bytes64]), "llvm.masked.load.v64i8.p0v64i8")
    i8p = ir.IntType(8).as_pointer()
    group_bytes = builder.lshr(builder.add(builder.add(shift, builder.shl(width, ir.Constant(I64, 3))),
                                           ir.Constant(I64, 7)), ir.Constant(I64, 3))       # ≤ 57
    present = builder.bitcast(builder.lshr(ir.Constant(I64, -1), builder.sub(ir.Constant(I64, 64), group_bytes)),
                              ir.VectorType(ir.IntType(1), 64))
    for k in range(4):
        at = builder.gep(builder.bitcast(src, i8p), [builder.mul(width, ir.Constant(I64, k))])
        stream = builder.call(load, [builder.bitcast(at, bytes64.as_pointer()), ir.Constant(I32, 1), present,
                                     ir.Constant(bytes64, None)])
        lanes = builder.bitcast(_permute_bytes(builder, stream, index), vec8)
        _store8(builder, dst, k, builder.and_(builder.lshr(lanes, amounts), mask))


def emit_unpack32(builder, src, shift, width, dst, byte_shuffles=False):
    """A switch over the widths 0..64; other widths do nothing.  With
    ``byte_shuffles`` (the target has AVX-512 VBMI: bits.py asks), widths
    17..56 take one body instead (_unpack_by_tables): no indirect jump to
    mispredict where widths vary from one mini-block to the next, and no
    gather for the wide ones."""
    shift = _as_i64(builder, shift)
    width = _as_i64(builder, width)
    done = builder.append_basic_block("unpack32.done")
    if byte_shuffles:
        tables, others = (builder.append_basic_block(f"unpack32.{name}") for name in ("tables", "others"))
        in_range = builder.and_(builder.icmp_unsigned(">=", width, ir.Constant(I64, TABLE_UNPACK_WIDTHS[0])),
                                builder.icmp_unsigned("<=", width, ir.Constant(I64, TABLE_UNPACK_WIDTHS[-1])))
        builder.cbranch(in_range, tables, others)
        builder.position_at_end(tables)
        _unpack_by_tables(builder, src, shift, width, dst)
        builder.branch(done)
        builder.position_at_end(others)
    switch = builder.switch(width, done)
    for name, widths, emit in (("gather", GATHER_WIDTHS, _unpack_gather),
                               ("narrow", NARROW_WIDTHS, _unpack_narrow)):
        if byte_shuffles and widths[0] in TABLE_UNPACK_WIDTHS:
            continue                    # (the gather's widths: the tables' body)
        shared = builder.append_basic_block(f"unpack32.{name}")    # one body for these widths
        for h in widths:
            switch.add_case(ir.Constant(I64, h), shared)
        builder.position_at_end(shared)
        emit(builder, src, shift, width, dst)
        builder.branch(done)
    taken = {*TABLE_UNPACK_WIDTHS, *NARROW_WIDTHS} if byte_shuffles else {*GATHER_WIDTHS, *NARROW_WIDTHS}
    for h in (h for h in range(MAX_WIDTH + 1) if h not in taken):
        block = builder.append_basic_block(f"unpack32.w{h}")
        switch.add_case(ir.Constant(I64, h), block)
        builder.position_at_end(block)
        _unpack_width(builder, src, shift, h, dst)
        builder.branch(done)
    builder.position_at_end(done)


# Widths that emit_count32 counts in registers: a value and its bit offset in
# its first byte (≤ 7) span at most three bytes.
COUNT_WIDTHS = range(1, 16)


def emit_count32(builder, src, shift, width, threshold, byte_shuffles=False):
    """How many of the 32 values of ``width`` (COUNT_WIDTHS) bits that start
    ``shift`` (0..7) bits into src are above ``threshold`` (0 ≤ threshold <
    2^width), and how many equal it: above | equal << 32, an i64.  A switch
    with a body per width, every shuffle and shift a constant: the stream
    realigned to bit 0 (two overlapping loads of 4 or 8 words, a funnel
    shift), each value's bytes shuffled into a 16-bit lane (widths ≤ 9) or a
    32-bit one, shifted, masked and compared: no value is stored.  Reads
    count32_bytes(width) bytes (bits.py).  Other widths give 0.

    With ``byte_shuffles`` (the target has AVX-512 VBMI: bits.py asks), one
    body for every width instead (_count_by_tables): on real data the
    widths of the mini-blocks a count meets vary at random, and the switch's
    indirect jump, mispredicted, cost more than the count."""
    shift, width, threshold = (_as_i64(builder, v) for v in (shift, width, threshold))
    if byte_shuffles:
        return _count_by_tables(builder, src, shift, width, threshold)
    done = builder.append_basic_block("count32.done")
    switch = builder.switch(width, done)
    results = []
    for h in COUNT_WIDTHS:
        block = builder.append_basic_block(f"count32.w{h}")
        switch.add_case(ir.Constant(I64, h), block)
        builder.position_at_end(block)
        results.append((_count_width(builder, src, shift, h, threshold), builder.block))
        builder.branch(done)
    return _join_counts(builder, done, switch.parent, results)


def _join_counts(builder, done, entry, results):
    """At block ``done``: 0 if come from ``entry`` (no body for the width),
    else the (value, block) of the body it came from."""
    builder.position_at_end(done)
    counted = builder.phi(I64)
    counted.add_incoming(ir.Constant(I64, 0), entry)
    for value, block in results:
        counted.add_incoming(value, block)
    return counted


# _count_by_tables: for each width, where each 64-bit lane's bytes come from
# (vpermb) and at which bit each value starts in its lane (vpmultishiftqb).
# Widths ≤ 8 take a byte a value, eight values a lane (32 bytes of stream);
# widths 9..15 two bytes a value, four a lane (64 bytes).
def _byte_lane_tables():
    index, start = [[0] * 32 for _ in range(9)], [[0] * 32 for _ in range(9)]
    for w in range(1, 9):
        for q in range(4):                  # lane q: values 8q..8q+7, from byte q*w on
            for b in range(8):
                index[w][8 * q + b] = q * w + b
                start[w][8 * q + b] = b * w
    return index, start


def _word_lane_tables():
    index, start = [[0] * 64 for _ in range(16)], [[0] * 64 for _ in range(16)]
    for w in range(9, 16):
        for q in range(8):                  # lane q: values 4q..4q+3, from their first byte on
            first = (4 * q * w) >> 3
            for b in range(8):
                index[w][8 * q + b] = first + b
            for r in range(4):
                bit = 4 * q * w - 8 * first + r * w
                start[w][8 * q + 2 * r], start[w][8 * q + 2 * r + 1] = bit, bit + 8
    return index, start


def _table_row(builder, name, rows, width):
    """Row ``width`` of a constant byte table (a module global) as a vector."""
    lanes = len(rows[0])
    row_type = ir.ArrayType(ir.IntType(8), lanes)
    value = ir.Constant(ir.ArrayType(row_type, len(rows)), [ir.Constant(row_type, r) for r in rows])
    table = builder.module.globals.get(name)
    if table is None:
        table = ir.GlobalVariable(builder.module, value.type, name)
        table.global_constant, table.linkage, table.initializer = True, "internal", value
    row = builder.gep(table, [ir.Constant(I64, 0), width, ir.Constant(I64, 0)])
    return builder.load(builder.bitcast(row, ir.VectorType(ir.IntType(8), lanes).as_pointer()), align=1)


def _permute_bytes(builder, stream, index):
    """vpermb: byte i of the result is byte index[i] of the stream (32 or 64 bytes)."""
    vec = stream.type
    permute = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec]),
                                             f"llvm.x86.avx512.permvar.qi.{8 * vec.count}")
    return builder.call(permute, [stream, index])


def _byte_shuffles(builder, stream, index, start):
    """vpermb then vpmultishiftqb: each lane's bytes gathered from the stream,
    then each byte of the lane taken from bit start[byte] of its lane."""
    vec = stream.type
    multishift = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec]),
                                                f"llvm.x86.avx512.pmultishift.qb.{8 * vec.count}")
    return builder.call(multishift, [start, _permute_bytes(builder, stream, index)])


def _count_by_tables(builder, src, shift, width, threshold):
    """emit_count32 in one body for every width: a branch on width ≤ 8."""
    entry = builder.block
    narrow, wide, done = (builder.append_basic_block(f"count32.{name}")
                          for name in ("bytes", "words", "done"))
    in_range = builder.and_(builder.icmp_unsigned(">=", width, ir.Constant(I64, 1)),
                            builder.icmp_unsigned("<=", width, ir.Constant(I64, COUNT_WIDTHS[-1])))
    builder.cbranch(in_range, narrow, done)
    counted = []
    for block, words, lane_bits, name, tables in (
            (narrow, 4, 8, "sensorq_count32_bytes", _byte_lane_tables()),
            (wide, 8, 16, "sensorq_count32_words", _word_lane_tables())):
        builder.position_at_end(block)
        if lane_bits == 8:
            go = builder.append_basic_block("count32.bytes.go")
            builder.cbranch(builder.icmp_unsigned("<=", width, ir.Constant(I64, 8)), go, wide)
            builder.position_at_end(go)
        view = _fshr(builder, _load(builder, builder.gep(src, [ir.Constant(I64, 8)]), words),
                     _load(builder, src, words), _splat(builder, shift, words))
        stream = builder.bitcast(view, ir.VectorType(ir.IntType(8), 8 * words))
        index, start = (_table_row(builder, f"{name}_{part}", rows, width)
                        for part, rows in zip(("index", "start"), tables))
        lane = ir.IntType(lane_bits)
        values = builder.bitcast(_byte_shuffles(builder, stream, index, start), ir.VectorType(lane, 32))
        mask = builder.trunc(builder.sub(builder.shl(ir.Constant(I64, 1), width), ir.Constant(I64, 1)), lane)
        values = builder.and_(values, _splat(builder, mask, 32))
        t = _splat(builder, builder.trunc(threshold, lane), 32)
        above, equal = (builder.zext(_popcount(builder, builder.bitcast(builder.icmp_unsigned(op, values, t),
                                                                        ir.IntType(32))), I64)
                        for op in (">", "=="))
        counted.append((builder.or_(above, builder.shl(equal, ir.Constant(I64, 32))), builder.block))
        builder.branch(done)
    return _join_counts(builder, done, entry, counted)


def _count_width(builder, src, shift, h, threshold):
    words = 4 if h <= 8 else 8       # 32 * h bits, realigned
    view = _fshr(builder, _load(builder, builder.gep(src, [ir.Constant(I64, 8)]), words),
                 _load(builder, src, words), _splat(builder, shift, words))
    stream = builder.bitcast(view, ir.VectorType(ir.IntType(8), 8 * words))
    lane_bits = 16 if h <= 9 else 32
    lanes = 512 // lane_bits
    above = equal = ir.Constant(I64, 0)
    for first in range(0, 32, lanes):
        a, e = _count_lanes(builder, stream, h, range(first, first + lanes), lane_bits, threshold)
        above, equal = builder.add(above, a), builder.add(equal, e)
    return builder.or_(above, builder.shl(equal, ir.Constant(I64, 32)))


def _count_lanes(builder, stream, h, values, lane_bits, threshold):
    """(above, equal) among ``values`` (their indices in the mini-block), one
    a lane: its bytes shuffled in (the rest of the lane zero), shifted down
    by its bit offset, masked."""
    n_bytes = stream.type.count
    picks = []
    for i in values:
        first, offset = (i * h) >> 3, (i * h) & 7
        held = (offset + h + 7) // 8          # the bytes that hold value i
        picks += [first + j if j < held else n_bytes for j in range(lane_bits // 8)]
    zero = ir.Constant(stream.type, None)
    gathered = builder.shuffle_vector(stream, zero, ir.Constant(ir.VectorType(I32, len(picks)), picks))
    lane = ir.IntType(lane_bits)
    vec = ir.VectorType(lane, len(values))
    lanes = builder.bitcast(gathered, vec)
    lanes = builder.lshr(lanes, ir.Constant(vec, [(i * h) & 7 for i in values]))
    lanes = builder.and_(lanes, ir.Constant(vec, [(1 << h) - 1] * len(values)))
    t = _splat(builder, builder.trunc(threshold, lane), len(values))
    counts = []
    for op in (">", "=="):
        hits = builder.bitcast(builder.icmp_unsigned(op, lanes, t), ir.IntType(len(values)))
        counts.append(builder.zext(_popcount(builder, hits), I64))
    return counts


def _unzigzag(builder, u):
    """(u >> 1) ^ -(u & 1), lane by lane, on an integer vector."""
    one, nil = (ir.Constant(u.type, [ir.Constant(u.type.element, v)] * u.type.count) for v in (1, 0))
    return builder.xor(builder.lshr(u, one), builder.sub(nil, builder.and_(u, one)))


def _by_zig(builder, zig, loop):
    """loop(True) where the run-time ``zig`` is nonzero, else loop(False): two
    loop bodies, so that the plain one does not pay for the unzigzag."""
    is_zig = builder.icmp_unsigned("!=", _as_i64(builder, zig), ir.Constant(I64, 0))
    with builder.if_else(is_zig) as (then, otherwise):
        with then:
            loop(True)
        with otherwise:
            loop(False)


def _scan_loop(builder, data, nvec, carry, base, zig, dest, to_float, scale=None):
    """The loop of emit_prefix_sums; ``zig`` is a Python bool (two loop bodies,
    so the plain one does not pay for the unzigzag); ``scale``: None, or an
    i64 that multiplies the sums before base is added."""
    undef = ir.Constant(_vec(8), ir.Undefined)
    base = _splat(builder, base, 8)
    with cgutils.for_range(builder, nvec) as loop:
        at = builder.gep(data, [builder.mul(loop.index, ir.Constant(I64, 8))])
        ptr = builder.bitcast(at, _vec(8).as_pointer())
        d = builder.load(ptr, align=8)
        if zig:
            d = _unzigzag(builder, d)
        d = _scan(builder, d)   # in-register prefix sum
        running = builder.load(carry)
        sums = builder.add(d, running)
        if scale is not None:
            sums = builder.mul(sums, scale)
        sums = builder.add(sums, base)
        out = builder.gep(dest, [builder.mul(loop.index, ir.Constant(I64, 8))])
        if to_float:   # the words read as int64, to float64
            sums = builder.sitofp(sums, ir.VectorType(ir.DoubleType(), 8))
        builder.store(sums, builder.bitcast(out, sums.type.as_pointer()), align=8)
        builder.store(builder.add(running, _shuffle(builder, d, undef, [7] * 8)), carry)


def emit_prefix_sums(builder, data, nvec, carry, base, zig, dest, to_float, scale=None):
    """``dest`` (same length as data): uint64 (or int64) words, or float64 if
    ``to_float``; with ``scale`` (an integer value) the sums times it, plus base."""
    nvec = _as_i64(builder, nvec)
    running = cgutils.alloca_once_value(builder, _splat(builder, _as_i64(builder, carry), 8))
    base = _as_i64(builder, base)
    if scale is not None:
        scale = _splat(builder, _as_i64(builder, scale), 8)
    _by_zig(builder, zig, lambda zigzagged: _scan_loop(builder, data, nvec, running, base,
                                                       zigzagged, dest, to_float, scale))
    return builder.extract_element(builder.load(running), ir.Constant(I32, 0))


LANE_BITS = {8: 64, 16: 32, 32: 16}     # emit_prefix_count's lanes -> their width


# emit_prefix_count's tests: tally[k] counts the sums s with ``s PREDICATE
# threshold + OFFSET`` for the k-th (PREDICATE, OFFSET).
ABOVE_EQUAL = ((">", 0), ("==", 0))
# a ladder: tally[j] = how many s >= threshold + j, j = 0..LADDER_STEPS
LADDER = tuple((">=", j) for j in range(LADDER_STEPS + 1))


def _count_loop(builder, data, nvec, running, base, zig, threshold, tally, lanes, tests, summed):
    """The loop of emit_prefix_count: ``lanes`` sums a step (8: int64; 16:
    int32, two vectors of words unzigzagged as words, then truncated; 32:
    int16, four vectors of words truncated to int32, unzigzagged there,
    then truncated again); not ``summed``: the words themselves plus base."""
    ty = ir.IntType(LANE_BITS[lanes])
    vec = ir.VectorType(ty, lanes)

    def const(v):
        return ir.Constant(vec, [ir.Constant(ty, v)] * lanes)

    def words(k):
        at = builder.gep(data, [builder.add(builder.mul(loop.index, ir.Constant(I64, lanes)),
                                            ir.Constant(I64, 8 * k))])
        return builder.load(builder.bitcast(at, _vec(8).as_pointer()), align=8)

    def step_words():
        if lanes == 8:
            return _unzigzag(builder, words(0)) if zig else words(0)
        if lanes == 16:   # unzigzagged as words: exact whatever the residual's width
            w = [builder.trunc(_unzigzag(builder, words(k)) if zig else words(k),
                               ir.VectorType(I32, 8)) for k in range(2)]
            return _shuffle(builder, w[0], w[1], range(16))
        # int16 sums: residuals below 2^32 (an int8 or int16 channel's are below 2^17)
        w = [builder.trunc(words(k), ir.VectorType(I32, 8)) for k in range(4)]
        halves = [_shuffle(builder, w[0], w[1], range(16)), _shuffle(builder, w[2], w[3], range(16))]
        if zig:
            halves = [_unzigzag(builder, h) for h in halves]
        halves = [builder.trunc(h, ir.VectorType(ty, 16)) for h in halves]
        return _shuffle(builder, halves[0], halves[1], range(32))

    undef = ir.Constant(vec, ir.Undefined)
    base, threshold = (_splat(builder, builder.trunc(x, ty) if lanes > 8 else x, lanes)
                       for x in (base, threshold))
    limits = [builder.add(threshold, const(offset)) for _, offset in tests]
    totals = [cgutils.alloca_once_value(builder, ir.Constant(I64, 0)) for _ in tests]
    with cgutils.for_range(builder, nvec) as loop:
        d = step_words()
        if summed:
            d = _scan(builder, d)   # in-register prefix sum
            carry = builder.load(running)
            sums = builder.add(builder.add(d, carry), base)
        else:
            sums = builder.add(d, base)
        for counts, (test, _), limit in zip(totals, tests, limits):   # popcount of the mask
            mask = builder.bitcast(builder.icmp_signed(test, sums, limit), ir.IntType(lanes))
            builder.store(builder.add(builder.load(counts), builder.zext(_popcount(builder, mask), I64)),
                          counts)
        if summed:
            builder.store(builder.add(carry, _shuffle(builder, d, undef, [lanes - 1] * lanes)),
                          running)
    for slot, counts in enumerate(totals):
        at = builder.gep(tally, [ir.Constant(I64, slot)])
        builder.store(builder.add(builder.load(at), builder.load(counts)), at)


def emit_prefix_count(builder, data, nvec, carry, base, zig, threshold, tally, lanes,
                      tests=ABOVE_EQUAL, summed=True):
    """The sums of emit_prefix_sums (carry + d_0 + ... + d_i + base over
    data[:lanes * nvec]) compared, not stored: by default tally[0] += how many
    are above ``threshold`` and tally[1] += how many equal it; with LADDER,
    tally[j] += how many are at least threshold + j.  As int64 (lanes 8),
    int32 (lanes 16) or int16 (lanes 32; its residuals must lie below 2^32).
    The narrow lanes are exact when every sum and every threshold + offset
    fits their type, for arithmetic mod 2^32 (2^16) is exact there.  Returns
    the last sum without base (mod 2^32 or 2^16 with narrow lanes).  Not
    ``summed``: the words themselves plus base are compared (an order-0
    column's), and carry is returned as it was."""
    ty = ir.IntType(LANE_BITS[lanes])
    nvec = _as_i64(builder, nvec)
    carry = _as_i64(builder, carry)
    if lanes > 8:
        carry = builder.trunc(carry, ty)
    running = cgutils.alloca_once_value(builder, _splat(builder, carry, lanes))
    base, threshold = _as_i64(builder, base), _as_i64(builder, threshold)
    if not summed:      # words, not residuals: one loop body (zig is ignored)
        _count_loop(builder, data, nvec, running, base, False, threshold, tally, lanes, tests, False)
    else:
        _by_zig(builder, zig, lambda zigzagged: _count_loop(builder, data, nvec, running, base,
                                                            zigzagged, threshold, tally, lanes,
                                                            tests, True))
    last = builder.extract_element(builder.load(running), ir.Constant(I32, 0))
    return builder.zext(last, I64) if lanes > 8 else last


def _scan(builder, v):
    """Inclusive prefix sums of the lanes of integer vector v: log2(lanes)
    shifted adds."""
    lanes = v.type.count
    zero = ir.Constant(v.type, None)
    step = 1
    while step < lanes:
        shifted = _shuffle(builder, v, zero, [t - step if t >= step else lanes for t in range(lanes)])
        v = builder.add(v, shifted)
        step *= 2
    return v


def _low_masks(builder, widths, most):
    """Per lane, 2^width - 1 for widths 0..``most`` (64: all ones); a shift by
    64 would be poison, so those lanes are selected around it."""
    n = widths.type.count
    ones = _const([-1] * n)
    if most < 64:
        return builder.select(builder.icmp_unsigned("==", widths, _const([0] * n)), _const([0] * n),
                              builder.lshr(ones, builder.sub(_const([64] * n), widths)))
    return builder.select(builder.icmp_unsigned(">=", widths, _const([64] * n)), ones,
                          builder.sub(builder.shl(_const([1] * n), widths), _const([1] * n)))


def _lane_mask(builder, bits):
    """An <8 x i1> as the low 8 bits of an i64."""
    return builder.zext(builder.bitcast(bits, ir.IntType(8)), I64)


def emit_walk8(builder, buf, headers, start, end, bit_pos, frame_length, base, threshold, top,
               notes):
    """payload._settle_frames' walk over 8 FRAMES mini-blocks at once (see
    bits.walk8).  Header bytes h (< 0x80: framed 0x41 + w, or bit-packed w)
    give each mini-block's bits, L + 32 w or 32 w; their prefix sums from
    ``bit_pos`` say where each frame starts; the frames come from the words
    at their bytes (clamped to the section's last word, as the scalar walk
    does), and compares of frame + base and frame + base + 2^w - 1 with the
    threshold and ``top`` settle each mini-block as tally.framed_count does
    with no ceiling."""
    lanes = ir.VectorType(ir.IntType(8), 8)
    h = builder.zext(builder.load(builder.bitcast(builder.gep(buf, [headers]), lanes.as_pointer()),
                                  align=1), _vec(8))
    bad = builder.icmp_unsigned("!=", _lane_mask(builder, builder.icmp_unsigned(">=", h, _const([RICE] * 8))),
                                ir.Constant(I64, 0))
    framed = builder.icmp_unsigned(">=", h, _const([FRAMED] * 8))
    width = builder.select(framed, builder.sub(h, _const([FRAMED] * 8)), h)
    length = builder.select(framed, _splat(builder, frame_length, 8), _const([0] * 8))
    size = builder.add(length, builder.shl(width, _const([5] * 8)))      # L + 32 w bits
    through = _scan(builder, size)
    at = builder.add(builder.sub(through, size), _splat(builder, bit_pos, 8))     # each frame's bit
    last_word = _splat(builder, builder.sub(end, ir.Constant(I64, 8)), 8)
    byte = builder.add(_splat(builder, start, 8), builder.ashr(at, _const([3] * 8)))
    byte = builder.select(builder.icmp_signed("<", byte, last_word), byte, last_word)
    skip = builder.sub(at, builder.shl(builder.sub(byte, _splat(builder, start, 8)), _const([3] * 8)))
    skip = builder.select(builder.icmp_signed("<", skip, _const([63] * 8)), skip, _const([63] * 8))
    # eight scalar loads, not a gather: on this machine's cores a gather of
    # words from L2 took ~60 cycles for eight (the scalar loads overlap)
    words = ir.Constant(_vec(8), ir.Undefined)
    for k in range(8):
        lane_byte = builder.extract_element(byte, ir.Constant(I32, k))
        word = builder.load(builder.bitcast(builder.gep(buf, [lane_byte]), I64.as_pointer()), align=1)
        words = builder.insert_element(words, word, ir.Constant(I32, k))
    frame = builder.and_(builder.lshr(words, skip), _low_masks(builder, length, 56))
    low = builder.add(_splat(builder, base, 8), frame)
    high = builder.add(low, _low_masks(builder, width, 64))
    bounded = builder.icmp_signed(">=", high, low)        # a range that wraps is read
    all_above = builder.and_(bounded, builder.icmp_signed(">", low, _splat(builder, top, 8)))
    settled = builder.or_(all_above, builder.and_(
        bounded, builder.icmp_signed("<", high, _splat(builder, threshold, 8))))
    for k, vector in enumerate((builder.add(at, length), width, frame)):      # the notes
        _store8(builder, notes, k, vector)
    ends_at = builder.add(bit_pos, builder.extract_element(through, ir.Constant(I32, 7)))
    unsettled = builder.xor(_lane_mask(builder, settled), ir.Constant(I64, 0xFF))
    flags = builder.or_(builder.shl(builder.zext(bad, I64), ir.Constant(I64, 24)),
                        builder.or_(builder.shl(_popcount(builder, _lane_mask(builder, all_above)),
                                                ir.Constant(I64, 16)), unsettled))
    return ends_at, flags


def emit_range32(builder, src):
    """(min, max) of the 32 unsigned words at src: one vector load and two
    reductions (a numba loop of 32 keeps two scalar compare chains, ~1 ns a
    value; this is a few vector min/max a mini-block)."""
    words = builder.load(builder.bitcast(src, _vec(32).as_pointer()), align=8)
    found = []
    for op in ("umin", "umax"):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(I64, [_vec(32)]),
                                            f"llvm.vector.reduce.{op}.v32i64")
        found.append(builder.call(fn, [words]))
    return found


def emit_add32(builder, dest, value):
    """dest[0:32] += value: a framed mini-block's words, one vector load, add
    and store (a numba loop of 32 stays scalar: ~10 ns a mini-block)."""
    ptr = builder.bitcast(dest, _vec(32).as_pointer())
    words = builder.add(builder.load(ptr, align=8), _splat(builder, _as_i64(builder, value), 32))
    builder.store(words, ptr, align=8)


def emit_lookup8(builder, ranks, groups, table, dest):
    """dest[i] := table[ranks[i]] for i < 8 * groups, 64-bit entries (the
    caller has checked every rank): a vector load of 8 ranks, 8 scalar
    loads put into one vector, and one vector store.  A scalar loop pays a
    load and a store a value, three memory operations with the rank's load,
    which bound it at ~1 a cycle; the vector store takes one of them out
    (0.43 → 0.33 ns a value on the development machine).  A gather
    instruction instead is slower there (~1.4 cycles a value on Zen 4)."""
    vec = _vec(8)
    i64p = I64.as_pointer()
    table, dest = builder.bitcast(table, i64p), builder.bitcast(dest, i64p)
    with cgutils.for_range(builder, _as_i64(builder, groups)) as loop:
        at = builder.mul(loop.index, ir.Constant(I64, 8))
        picks = builder.load(builder.bitcast(builder.gep(ranks, [at]), vec.as_pointer()), align=8)
        values = ir.Constant(vec, ir.Undefined)
        for lane in range(8):
            rank = builder.extract_element(picks, ir.Constant(I32, lane))
            values = builder.insert_element(values, builder.load(builder.gep(table, [rank])),
                                            ir.Constant(I32, lane))
        builder.store(values, builder.bitcast(builder.gep(dest, [at]), vec.as_pointer()), align=8)


# A split Rice mini-block's quotients (codes.SPLIT) read by compressing a
# vector of bit positions by the stream's one bits (AVX-512 VBMI2's
# vpcompressb, LLVM's generic vector.compress): every quotient is the gap
# between two one bits.  Up to this k, every quotient the window holds (<
# 128) shifted left by k fits in 64 bits, so no value needs a check.
QUOTIENTS32_MAX_K = 57


def emit_quotients32(builder, src, shift, k, dst):
    """dst[0:32] |= q_j << k for the 32 unary quotients (q zero bits, then a
    one) that start ``shift`` (0..7) bits into src, where they lie within
    the 16 bytes src[0:16]: returns the bits they take (the bit after the
    32nd one, from bit ``shift``), or 0 where they do not all lie there
    (then nothing is written).  The positions 0..127 of the window's one
    bits, compressed into consecutive bytes (two 64-lane compresses, joined
    by a two-source byte permute: through the stack, the load that spanned
    both stores waited for them), less the positions before them, are the
    quotients: no chain from one to the next.  k ≤ QUOTIENTS32_MAX_K.
    Emitted only for AVX-512 VBMI2 and VBMI (bits.py asks)."""
    i8 = ir.IntType(8)
    bytes64, mask64 = ir.VectorType(i8, 64), ir.VectorType(ir.IntType(1), 64)
    bytes32 = ir.VectorType(i8, 32)
    shift, k = _as_i64(builder, shift), _as_i64(builder, k)
    i8p, i64p = i8.as_pointer(), I64.as_pointer()
    src = builder.bitcast(src, i8p)
    low = builder.lshr(builder.load(builder.bitcast(src, i64p), align=1), shift)
    high = builder.load(builder.bitcast(builder.gep(src, [ir.Constant(I64, 8)]), i64p), align=1)
    in_low = _popcount(builder, low)
    enough = builder.icmp_unsigned(">=", builder.add(in_low, _popcount(builder, high)), ir.Constant(I64, 32))
    result = cgutils.alloca_once_value(builder, ir.Constant(I64, 0))
    with builder.if_then(enough, likely=True):
        compress = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(bytes64, [bytes64, mask64, bytes64]),
            "llvm.experimental.vector.compress.v64i8")
        lanes = ir.Constant(bytes64, list(range(64)))
        zero = ir.Constant(bytes64, None)
        # the high word's bit j is the window's bit 64 - shift + j
        offset = builder.trunc(builder.sub(ir.Constant(I64, 64), shift), i8)
        at_low = builder.call(compress, [lanes, builder.bitcast(low, mask64), zero])
        at_high = builder.call(compress, [builder.add(lanes, _splat(builder, offset, 64)),
                                          builder.bitcast(high, mask64), zero])
        # lane j: the low word's j-th one below in_low, else the high word's
        # (j - in_low)-th: a two-source byte permute (vpermi2b), in registers
        low_count = builder.trunc(in_low, i8)
        from_high = builder.icmp_unsigned(">=", lanes, _splat(builder, low_count, 64))
        index = builder.select(from_high, builder.add(builder.sub(lanes, _splat(builder, low_count, 64)),
                                                      ir.Constant(bytes64, [64] * 64)), lanes)
        permute2 = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(bytes64, [bytes64, bytes64, bytes64]),
            "llvm.x86.avx512.vpermi2var.qi.512")
        merged = builder.call(permute2, [at_low, index, at_high])
        ones = builder.shuffle_vector(merged, ir.Constant(bytes64, None),
                                      ir.Constant(ir.VectorType(I32, 32), list(range(32))))
        # each one's predecessor: the lane before, and "-1" (0xFF) before the first
        before = builder.shuffle_vector(merged, ir.Constant(bytes64, [0xFF] * 64),
                                        ir.Constant(ir.VectorType(I32, 32), [64] + list(range(31))))
        gaps = builder.sub(builder.sub(ones, before), ir.Constant(bytes32, [1] * 32))
        shifts = _splat(builder, k, 8)
        for g in range(4):
            q = builder.zext(builder.shuffle_vector(gaps, ir.Constant(bytes32, ir.Undefined),
                                                    ir.Constant(ir.VectorType(I32, 8), list(range(8 * g, 8 * g + 8)))),
                             _vec(8))
            at = builder.bitcast(builder.gep(dst, [ir.Constant(I64, 8 * g)]), _vec(8).as_pointer())
            builder.store(builder.or_(builder.load(at, align=8), builder.shl(q, shifts)), at, align=8)
        last = builder.extract_element(ones, ir.Constant(I32, 31))
        builder.store(builder.add(builder.zext(last, I64), ir.Constant(I64, 1)), result)
    return builder.load(result)
