"""The integer column codec (docs/format.md §3): base, optional dictionary,
predictor of order 0–2 with zigzag, and per-mini-block bit-packing, Rice, or
(float sections, version 1) patched bit-packing.

The encoder is an analysis pass: it prices every candidate (predictor order ×
dictionary) mini-block by mini-block and writes only the cheapest.  The
decoder is the one the query kernels call: it reads only the bytes of its
section and returns an error code instead of raising, so that a kernel running
in parallel threads never throws.
"""
from __future__ import annotations

import numpy as np

from ..jitcache import cached, digest
from .bits import (ONE, U64, ZERO, bit_length, finish_bits, lookup8, low_mask, prefix_sums,
                   put_bits, put_zeros, read_varint, varint_status, scaled_prefix_sums)
from .predictor import predictor_order, residuals, unzigzag, zigzag  # noqa: F401  (re-exported)
from .pricing import (FRAME_COST, PATCH_COST, PATCH_POSITION, _best_order, order_rice_cost,  # noqa: F401  (re-exported)
                      _guess_order, _rice_floor, choose_mini_blocks, frames_choice)
from .payload import _read_payload, _read_u64
from .scaling import scale_row
from . import codes, tans, tans_call

# The code bytes and status codes live in codes.py (numba-free); re-exported here.
from .codes import (DECIMAL, DICT, ENTROPY, ENTROPY_BINNED, ENTROPY_OFF, ENTROPY_SYMBOLS,  # noqa: F401
                    ERR_BAD_CODE, ERR_BAD_DICT, ERR_LENGTH, ERR_TRUNCATED, FLOATBITS, FRAME_LENGTH_BITS,
                    FRAMED, MINI_BLOCK, FRAMES, OK, PATCHED, PAYLOAD_FRAMES,
                    PREDICTOR_MASK, RICE, SHORT, SPLIT, ZERO_RESIDUALS)

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)


# --- predictors (encoding side: predictor.py) ---------------------------------

@cached(_STAMP, nogil=True, refcounted=False)
def _running_sums(u, n, carry, base, zig, dest):
    """dest[i] := carry + d_0 + ... + d_i + base, d = unzigzag(u) if ``zig``
    (1) else u (0); returns the last sum without base.  ``dest`` is u itself,
    or a float64 row that gets the sums read as int64.  Whole vectors of 8 in
    the IR kernel, the rest here."""
    end = U64(n)
    vectors = end >> U64(3)
    carry = prefix_sums(u, vectors, carry, base, zig, dest)
    for i in range(vectors << U64(3), end):
        carry += (u[i] >> zig) ^ (ZERO - (u[i] & zig))
        dest[i] = np.int64(carry + base)   # a no-op cast for words, int64 -> float64 for a row
    return carry


@cached(_STAMP, nogil=True, refcounted=False)
def undo_residuals(u, n, order, base):
    """In place: residuals back to the sequence (inverse of :func:`residuals`),
    plus ``base``, in the same pass (the running value is kept without it)."""
    if order == 0:   # here, not in undo_residuals_into: in place it vectorises
        for i in range(U64(n)):
            u[i] += base
    else:
        undo_residuals_into(u, n, order, base, u)


@cached(_STAMP, nogil=True, refcounted=False)
def undo_residuals_into(u, n, order, base, dest):
    """:func:`undo_residuals` with the result in ``dest``: u itself, or a
    float64 row (the words read as int64), so that the engine writes a channel
    row once instead of words and then floats.  u is overwritten.

    u_0 is the first value itself, not a zigzagged difference, so it is swapped
    for a residual that sums to the same thing: zigzag(u_0) for order 1 (it
    unzigzags back to u_0), and for order 2 a first difference of 0 with u_0
    as the second pass's starting value."""
    if n == 0:
        return
    if order == 0:
        for i in range(U64(n)):
            dest[i] = np.int64(u[i] + base)
    elif order == 1:
        u[0] = zigzag(u[0])
        _running_sums(u, n, ZERO, base, ONE, dest)
    else:
        first = u[0]
        u[0] = ZERO
        _running_sums(u, n, ZERO, ZERO, ONE, u)      # first differences
        _running_sums(u, n, first, base, ZERO, dest)


# --- encoding ------------------------------------------------------------------

@cached(_STAMP, nogil=True)
def _write_payload(s, order, rice_cost, u, headers, out, pos, priced, patches, split):
    """Header bytes then the bit stream for sequence s; returns the end offset.
    ``priced``: u and headers already hold s's residuals and choice (the
    pricing pass of this very candidate), which are then not computed again.
    ``split``: Rice mini-blocks as a SPLIT section holds them (every
    value's low bits, then every quotient), else each codeword whole."""
    n = s.shape[0]
    n_mini = (n + MINI_BLOCK - 1) // MINI_BLOCK
    if not priced:
        residuals(s, order, u)
        choose_mini_blocks(u, rice_cost, headers, patches)
    for m in range(n_mini):
        out[pos + m] = np.uint8(headers[m])
    byte_pos, acc, n_acc = pos + n_mini, ZERO, 0
    for m in range(n_mini):
        lo = m * MINI_BLOCK
        hi = min(n, lo + MINI_BLOCK)
        h = headers[m]
        if h & PATCHED == PATCHED:
            byte_pos, acc, n_acc = _write_patched(u, lo, hi, h & 0x3F, out, byte_pos, acc, n_acc)
        elif h & RICE and split:
            k = h & 0x3F
            for i in range(lo, hi):
                byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, u[i], k)
            for i in range(lo, hi):
                byte_pos, acc, n_acc = put_zeros(out, byte_pos, acc, n_acc, np.int64(u[i] >> U64(k)))
                byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, ONE, 1)
        elif h & RICE:
            k = h & 0x3F
            for i in range(lo, hi):
                byte_pos, acc, n_acc = put_zeros(out, byte_pos, acc, n_acc, np.int64(u[i] >> U64(k)))
                byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, ONE, 1)
                byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, u[i], k)
        elif h >= FRAMED:
            byte_pos, acc, n_acc = _write_framed(u, lo, hi, h - FRAMED, out, byte_pos, acc, n_acc)
        else:
            for i in range(lo, hi):
                byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, u[i], h)
    return finish_bits(out, byte_pos, acc, n_acc)


@cached(_STAMP, nogil=True)
def _write_frames_payload(s, headers, frame_length, out, pos):
    """A FRAMES payload of the order-0 sequence s: header bytes, the frame
    length byte, then the bit stream (a framed mini-block's frame in
    ``frame_length`` bits, with no length before it); returns the end offset."""
    n = s.shape[0]
    n_mini = headers.shape[0]
    for m in range(n_mini):
        out[pos + m] = np.uint8(headers[m])
    out[pos + n_mini] = np.uint8(frame_length)
    byte_pos, acc, n_acc = pos + n_mini + 1, ZERO, 0
    for m in range(n_mini):
        lo = m * MINI_BLOCK
        hi = min(n, lo + MINI_BLOCK)
        h = headers[m]
        frame, w = ZERO, h
        if h >= FRAMED:
            w = h - FRAMED
            frame = s[lo]
            for i in range(lo, hi):
                frame = min(frame, s[i])
            byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, frame, frame_length)
        for i in range(lo, hi):
            byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, s[i] - frame, w)
    return finish_bits(out, byte_pos, acc, n_acc)


@cached(_STAMP, nogil=True)
def _write_framed(u, lo, hi, w, out, byte_pos, acc, n_acc):
    """A framed mini-block's bits: the length of its frame f (the smallest of
    u[lo:hi]), f, then every u - f at w bits."""
    frame = u[lo]
    for i in range(lo, hi):
        frame = min(frame, u[i])
    length = bit_length(frame)
    byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, U64(length), FRAME_LENGTH_BITS)
    byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, frame, length)
    for i in range(lo, hi):
        byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, u[i] - frame, w)
    return byte_pos, acc, n_acc


@cached(_STAMP, nogil=True)
def _write_patched(u, lo, hi, w, out, byte_pos, acc, n_acc):
    """A patched mini-block's bits: every value's low w bits, then the
    position (5 bits) of the one value with bit w set."""
    at = lo
    for i in range(lo, hi):
        if u[i] >> U64(w) != ZERO:
            at = i
        byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, u[i], w)
    return put_bits(out, byte_pos, acc, n_acc, U64(at - lo), PATCH_POSITION)


@cached(_STAMP, nogil=True)
def _write_u64(out, pos, v):
    for i in range(8):
        out[pos + i] = np.uint8((v >> U64(8 * i)) & U64(0xFF))


# Values spanning fewer than this many codes get a dictionary by counting
# (a presence table) instead of by sorting.
_COUNTING_RANGE = 1 << 17


@cached(_STAMP, nogil=True)
def _dictionary(y):
    """Sorted distinct values of y (offsets from the base) and each y's rank,
    or no entries when a dictionary cannot pay.

    It pays when the values sit sparsely in their range (a lattice, like
    Daphnet's steps of ~9.8 mg); for values that fill their range densely,
    ranks cost what the values cost, so the ranking is skipped.  Wide ranges
    (float bit patterns) are always ranked, by sorting."""
    n = y.shape[0]
    top = y.max()
    if top >= U64(_COUNTING_RANGE):
        entries = np.unique(y)
        return entries, np.searchsorted(entries, y).astype(np.uint64)
    rank_of = np.zeros(np.int64(top) + 1, np.int64)
    for i in range(n):
        rank_of[np.int64(y[i])] = 1
    n_entries = 0
    for v in range(rank_of.shape[0]):
        if rank_of[v]:
            rank_of[v] = n_entries
            n_entries += 1
    if (np.int64(top) + 1) * 2 < n_entries * 3:
        return np.empty(0, np.uint64), np.empty(0, np.uint64)
    entries = np.empty(n_entries, np.uint64)
    ranks = np.empty(n, np.uint64)
    for i in range(n):
        r = rank_of[np.int64(y[i])]
        ranks[i] = U64(r)
        entries[r] = y[i]
    return entries, ranks


# The price of a Rice mini-block's decode time, in bits per value: the encoder
# takes Rice only where it saves more than this over bit-packing.  The
# version 1 encoder writes Rice mini-blocks split (codes.SPLIT): their low
# bits unpack as a bit-packed mini-block's, their quotients by a vector
# compress of the one bits' positions (bits.quotients32), ~0.3 ns a value
# more than bit-packing here, where whole codewords took ~1-1.4 ns and a
# price of 2.5.  At 0.5 the Daphnet recording takes 0.828 B/sample in the
# cache and the engine decodes it at 1.25-1.4 G samples/s (2.5: 0.913 at
# 1.8; 0: 0.824 at 1.35).  An integer channel's order-0 payload prices Rice
# higher (pricing.RICE_SETTLE_COST: counts settle it).  See docs/format.md
# §3 and benchmarks/bench_storage.py.
RICE_DECODE_COST = 0.5

# The same price for the mantissas and words of float channels, whose
# target is ≤ pcodec's bytes at ≥ 1 G values a second.  Noise-like bit
# patterns (true doubles, k ~ 46) save ~0.3-0.5 bit a value by Rice, which
# only a price this low takes: 5.915 B/value at 1.5 G/s, under pcodec's
# 5.939 (0.25: 5.964; 3.0: 5.990 at 2.1); the Daphnet floats 0.815 ->
# 0.779 B/value (benchmarks/bench_floats.py).  Temperatures in 2 and 3
# decimals then take a Rice payload over a binned ENTROPY section, ~5-14 %
# more bytes for ~30 % faster decode (still under pcodec's bytes).
FLOAT_RICE_DECODE_COST = 0.1

# Whether the compact encoders of version 1 (block.py, bulk.py) may write
# ENTROPY sections (tans.py).  Read at each call, as the prices above: a
# device library built with READ_V1 reads version 1 blocks but not this
# form, so its tests write blocks without it (docs/device.md).
ENTROPY_SECTIONS = True


def entropy_form(compact: bool, binned: bool) -> int:
    """What a version 1 encoder's ``entropy`` argument is: ENTROPY_OFF for
    the fast codec (or with ENTROPY_SECTIONS off), else ENTROPY_BINNED for
    float channels and time columns, ENTROPY_SYMBOLS for integer channels.
    Integer channels are what counts settle mini-block by mini-block
    (intcount.py), which no ENTROPY section allows: binning would win them
    a few per cent of bytes (where bit packing wastes a fraction of a bit
    on noise) at the cost of every count over them."""
    if not (compact and ENTROPY_SECTIONS):
        return ENTROPY_OFF
    return ENTROPY_BINNED if binned else ENTROPY_SYMBOLS

# Whether the compact encoders of version 1 may write FRAMES sections
# (integer channels; codes.FRAMES), where they are no bigger than the
# section's other forms.  Read at each call, as ENTROPY_SECTIONS: tests turn
# it off to write the form before it (each frame with its own length).
FRAMES_SECTIONS = True


@cached(_STAMP, before_compile=tans_call.link_encoder, nogil=True)
def encode_column(words, signed, allow_dict, allow_rice, out, pos):
    """:func:`encode_column_costed` with Rice at RICE_DECODE_COST, or none."""
    return encode_column_costed(words, signed, allow_dict,
                                RICE_DECODE_COST if allow_rice else -1.0, out, pos,
                                ENTROPY_SYMBOLS if allow_dict and allow_rice else ENTROPY_OFF, False)


@cached(_STAMP, before_compile=tans_call.link_encoder, nogil=True)
def encode_column_costed(words, signed, allow_dict, rice_cost, out, pos, entropy, frames):
    """:func:`encode_column_priced` without patched mini-blocks."""
    return encode_column_priced(words, signed, allow_dict, rice_cost, out, pos, False, entropy,
                                frames)


@cached(_STAMP, before_compile=tans_call.link_encoder, nogil=True)
def encode_column_priced(words, signed, allow_dict, rice_cost, out, pos, patches, entropy, frames):
    """Write the column section for ``words`` (uint64) at out[pos:].

    ``rice_cost``, ``patches``: see :func:`choose_mini_blocks` (negative: no
    Rice, and no patches).  ``entropy`` (codes.ENTROPY_OFF, _SYMBOLS or
    _BINNED): whether the ENTROPY form (tans.py) may be taken too (version
    1, compact: with ``allow_dict``), and with low bits stored as they
    are.  ``frames``: an order-0 payload may take the FRAMES form (version
    1 channel sections, compact), where it is no bigger; an order-0 payload
    then prices Rice at least pricing.RICE_SETTLE_COST (counts settle it).

    ``signed``: the words are int64 values (integer channels, decimal
    mantissas), whose smallest is the base in signed order; otherwise (time
    offsets, float bit patterns) in unsigned order.
    Rice mini-blocks are written split (codes.SPLIT), and the section says
    so where it has any.
    Returns (end offset, codec bits: predictor | DICT | ZERO_RESIDUALS |
    ENTROPY | SPLIT)."""
    n = words.shape[0]
    base = U64(words.view(np.int64).min()) if signed else words.min()
    y = words - base
    _write_u64(out, pos, base)
    pos += 8
    if y.max() == ZERO:
        return pos, ZERO_RESIDUALS
    u = np.empty(n, np.uint64)
    headers = np.empty((n + MINI_BLOCK - 1) // MINI_BLOCK, np.int64)
    exact = not allow_dict
    order, size = _best_order(y, exact, rice_cost, u, headers, patches, frames)
    # the compact (estimated) pricing leaves its one candidate's residuals
    # and choice in u and headers: written from there if it wins
    priced = not exact
    entries, ranks = _dictionary(y) if allow_dict else (y[:0], y[:0])
    seq, dict_bits, dict_bytes = y, 0, 0
    if entries.shape[0]:
        dict_bytes = _dictionary_bytes(entries, rice_cost, patches)
        if dict_bytes < size:
            dict_order, dict_size = _best_order(ranks, exact, rice_cost, u, headers, patches, frames)
            if dict_bytes + dict_size < size:
                seq, order, size, dict_bits = ranks, dict_order, dict_size, DICT
            else:
                priced = False
    frame_length = -1
    if frames and order == 0:       # the FRAMES form of the same residuals (the sequence itself)
        frame_headers = np.empty((n + MINI_BLOCK - 1) // MINI_BLOCK, np.int64)
        bits, length = frames_choice(seq, frame_headers)
        if bits >= 0 and frame_headers.shape[0] + 1 + (bits + 7) // 8 <= size:
            size, frame_length = frame_headers.shape[0] + 1 + (bits + 7) // 8, length
    if entropy != ENTROPY_OFF and allow_dict:      # the ENTROPY form priced beside the payload
        # its own residuals: u and headers keep the priced candidate's, which
        # is then written without pricing it again
        binned = np.int64(entropy == ENTROPY_BINNED)
        ue = np.empty(n, np.uint64)
        values = np.empty(tans.MAX_SYMBOLS, np.uint64)
        freqs = np.empty(tans.MAX_SYMBOLS, np.int64)
        plan = np.empty(4, np.int64)            # bytes, L, symbols, low bits
        order_e = tans_call.best_order(seq, size, binned, ue, values, freqs, plan)
        if dict_bits:        # the words' own residuals may be the few-symbol ones (a clock's steps)
            words_values = np.empty(tans.MAX_SYMBOLS, np.uint64)
            words_freqs = np.empty(tans.MAX_SYMBOLS, np.int64)
            words_plan = np.empty(4, np.int64)
            words_order = tans_call.best_order(y, dict_bytes + (plan[0] if order_e >= 0 else size), binned,
                                               ue, words_values, words_freqs, words_plan)
            if words_order >= 0:
                end = tans_call.write_column(y, words_order, words_plan[3], ue, words_values, words_freqs,
                                             words_plan[1], words_plan[2], out, pos)
                return end, words_order | ENTROPY
        if order_e >= 0:
            if dict_bits:           # (an ENTROPY section's dictionary: Rice whole)
                pos, _ = _write_dictionary(entries, rice_cost, out, pos, patches, False)
            end = tans_call.write_column(seq, order_e, plan[3], ue, values, freqs, plan[1], plan[2], out, pos)
            return end, order_e | dict_bits | ENTROPY
    dict_rice = False
    if dict_bits:             # (a FRAMES section's dictionary: Rice whole, FRAMES takes no SPLIT)
        pos, dict_rice = _write_dictionary(entries, rice_cost, out, pos, patches, frame_length < 0)
    if frame_length >= 0:
        return _write_frames_payload(seq, frame_headers, frame_length, out, pos), FRAMES | dict_bits
    end = _write_payload(seq, order, order_rice_cost(order, rice_cost, frames), u, headers, out, pos,
                         priced, patches, True)
    split = SPLIT if dict_rice or _any_rice(headers) else 0
    return end, order | dict_bits | split


@cached(_STAMP, nogil=True, inline="always")
def _any_rice(headers):
    """Whether any mini-block header is a Rice one."""
    for h in headers:
        if h & PATCHED == RICE:
            return True
    return False


@cached(_STAMP, nogil=True)
def dictionary_gaps(entries):
    """The sorted, distinct entries as gaps: g_0 = e_0, g_i = e_i - e_{i-1} - 1."""
    gaps = np.empty(entries.shape[0], np.uint64)
    gaps[0] = entries[0]
    for i in range(1, entries.shape[0]):
        gaps[i] = entries[i] - entries[i - 1] - ONE
    return gaps


@cached(_STAMP, nogil=True)
def _write_dictionary(entries, rice_cost, out, pos, patches, split):
    """u32 count, then the entries' gaps as a predictor-0 payload (``split``
    as _write_payload's); returns (end, whether it has a Rice mini-block)."""
    n_entries = entries.shape[0]
    for i in range(4):
        out[pos + i] = np.uint8((n_entries >> (8 * i)) & 0xFF)
    gaps = dictionary_gaps(entries)
    u = np.empty(n_entries, np.uint64)
    headers = np.empty((n_entries + MINI_BLOCK - 1) // MINI_BLOCK, np.int64)
    end = _write_payload(gaps, 0, rice_cost, u, headers, out, pos + 4, False, patches, split)
    return end, _any_rice(headers)


@cached(_STAMP, nogil=True)
def _dictionary_bytes(entries, rice_cost, patches):
    gaps = dictionary_gaps(entries)
    n_entries = gaps.shape[0]
    headers = np.empty((n_entries + MINI_BLOCK - 1) // MINI_BLOCK, np.int64)
    bits = choose_mini_blocks(gaps, rice_cost, headers, patches)
    return 4 + headers.shape[0] + (bits + 7) // 8


@cached(_STAMP, nogil=True)
def max_section_bytes(n):
    """An upper bound of a column section's size, for sizing output buffers
    (compiled: the bulk encoder's kernels size theirs with it too)."""
    return 8 + 5 + 8 * n + (n + MINI_BLOCK - 1) // MINI_BLOCK + 8 * n + 16


# --- decoding (the payload itself: payload.py) ---------------------------------

@cached(_STAMP, nogil=True, inline="always")
def _read_dictionary(buf, pos, end, n, entries, form):
    """Dictionary entries into ``entries``; returns (count, new pos) or (status, -1).
    Its size is a u32, or a varint in a short section (``form``: dictionary_form)."""
    if form == SHORT:
        count, after = read_varint(buf, pos, end)
        if after < 0:
            return varint_status(count), -1
        if count < ONE or count > U64(n):
            return ERR_BAD_DICT, -1
        n_entries = np.int64(count)
        pos = after
    else:
        if pos + 4 > end:
            return ERR_TRUNCATED, -1
        n_entries = np.int64(0)
        for i in range(4):
            n_entries |= np.int64(buf[pos + i]) << (8 * i)
        if n_entries < 1 or n_entries > n:
            return ERR_BAD_DICT, -1
        pos += 4
    status, payload_end = _read_payload(buf, pos, end, n_entries, entries, form)
    if status != OK:
        return status, -1
    # e_i = g_0 + (g_1 + 1) + ... + (g_i + 1): a running sum, plus i
    _running_sums(entries, n_entries, ZERO, ZERO, ZERO, entries)
    for i in range(U64(n_entries)):
        entries[i] += i
    return n_entries, payload_end


@cached(_STAMP, nogil=True, refcounted=False)
def _ranks_to_values(out, n, table, n_entries, dest):
    """dest[i] := table[out[i]] (dest: out, or a float64 row); ERR_BAD_DICT
    if a rank is out of range.  ``table`` holds the column's values
    themselves, words or the row's floats, so that a lookup is a load and a
    store and nothing else, eight at a time (bits.lookup8: one vector store).
    The ranks are checked first, in a pass LLVM vectorises, so that the
    lookup loop has no branch."""
    top = ZERO
    for i in range(U64(n)):
        top = max(top, out[i])
    if n and top >= U64(n_entries):
        return ERR_BAD_DICT
    whole = U64(n) >> U64(3)
    lookup8(out, whole, table, dest)
    for i in range(whole << U64(3), U64(n)):
        dest[i] = table[out[i]]
    return OK


@cached(_STAMP, nogil=True, refcounted=False)
def decode_column(buf, pos, end, n, codec, out, scratch):
    """Decode the section buf[pos:end] of n words into out[:n] (uint64).

    ``scratch`` (uint64, ≥ n) holds the dictionary.  Returns OK or a negative
    status; never reads outside buf[pos:end]."""
    status, base, n_entries = _read_residuals(buf, pos, end, n, codec, out, scratch)
    if status != OK:
        return status
    return _residuals_to_words(out, n, codec, scratch, base, n_entries)


@cached(_STAMP, nogil=True, refcounted=False)
def _residuals_to_words(out, n, codec, scratch, base, n_entries):
    """decode_column's last passes: out[:n] from residuals to words."""
    if n_entries == 0:
        undo_residuals(out, n, predictor_order(codec), base)
        return OK
    undo_residuals(out, n, predictor_order(codec), ZERO)
    for i in range(U64(n_entries)):   # the dictionary becomes the words' table
        scratch[i] += base
    return _ranks_to_values(out, n, scratch, n_entries, out)


@cached(_STAMP, nogil=True, inline="always")
def decode_column_floats(buf, pos, end, n, codec, out, scratch, row, kind, c, is32):
    """:func:`decode_column` for words that are int64 values (integer channels,
    decimal and ALP mantissas): row[:n] := the words read as int64, in
    float64, then scaled as scaling.scale_row(kind, c, is32) says (NO_SCALE:
    not), written by the decoder's last pass.  ``out`` is working space.
    With a dictionary, its entries are scaled, not the row."""
    status, base, n_entries = _read_residuals(buf, pos, end, n, codec, out, scratch)
    if status != OK:
        return status
    if n_entries == 0:
        undo_residuals_into(out, n, predictor_order(codec), base, row)
        scale_row(row, n, kind, c, is32)
        return OK
    undo_residuals(out, n, predictor_order(codec), ZERO)
    table = scratch.view(np.float64)   # the dictionary becomes the row's table, in place
    for i in range(U64(n_entries)):
        table[i] = np.float64(np.int64(scratch[i] + base))
    scale_row(table, n_entries, kind, c, is32)
    return _ranks_to_values(out, n, table, n_entries, row)


@cached(_STAMP, nogil=True, refcounted=False)
def _scaled_sums(u, n, carry, offset, zig, scale, dest):
    """:func:`_running_sums` into an int64 ``dest``, each sum times ``scale``
    plus ``offset`` (mod 2^64)."""
    end = U64(n)
    vectors = end >> U64(3)
    carry = scaled_prefix_sums(u, vectors, carry, offset, zig, scale, dest)
    for i in range(vectors << U64(3), end):
        carry += (u[i] >> zig) ^ (ZERO - (u[i] & zig))
        dest[i] = np.int64(carry * scale + offset)
    return carry


@cached(_STAMP, nogil=True, refcounted=False)
def decode_column_scaled(buf, pos, end, n, codec, out, scratch, offset, scale, dest):
    """:func:`decode_column` with dest[:n] (int64) := offset + scale * word_i
    (mod 2^64): a time column's timestamps, t_first + tick * k, written by
    the decoder's last pass instead of words and then a pass over them.
    ``out`` is working space.  (A CLOCK section: timecol.decode_times.)"""
    status, base, n_entries = _read_residuals(buf, pos, end, n, codec, out, scratch)
    if status != OK:
        return status
    order = predictor_order(codec)
    if n_entries:     # (not written for time columns; read all the same)
        for i in range(U64(n_entries)):
            scratch[i] = offset + scale * (scratch[i] + base)
        undo_residuals(out, n, order, ZERO)
        return _ranks_to_values(out, n, scratch, n_entries, dest)
    if n == 0:
        return OK
    offset += scale * base
    if order == 0:
        for i in range(U64(n)):
            dest[i] = np.int64(offset + scale * out[i])
    elif order == 1:
        out[0] = zigzag(out[0])   # as in undo_residuals_into
        _scaled_sums(out, n, ZERO, offset, ONE, scale, dest)
    elif _steps_alike(out, n):
        _steady_fill(out[0], unzigzag(out[1]) if n > 1 else ZERO, n, offset, scale, dest)
    else:
        first = out[0]
        out[0] = ZERO
        _running_sums(out, n, ZERO, ZERO, ONE, out)      # first differences
        _scaled_sums(out, n, first, offset, ZERO, scale, dest)
    return OK


@cached(_STAMP, nogil=True, inline="always")
def _steps_alike(u, n):
    """Whether order-2 residuals u[:n] have no second difference after the
    first two: a steady clock's (every step the same), most time columns."""
    rest = ZERO
    for i in range(U64(2), U64(n)):         # an OR over the words: vectorised
        rest |= u[i]
    return rest == ZERO


@cached(_STAMP, nogil=True, inline="always")
def _steady_fill(first, step, n, offset, scale, dest):
    """dest[:n] := offset + scale * (first + i * step) (mod 2^64): what the
    order-2 sums give when every step is the same, in one pass where they
    took two (with width-0 mini-blocks' zeros written directly, a block's
    timestamps ~4 -> ~1.5 µs here).  A section that is not steady pays
    _steps_alike's one OR pass over its residuals before its sums."""
    start, stride = offset + scale * first, scale * step
    for i in range(U64(n)):
        dest[i] = np.int64(start + stride * i)


@cached(_STAMP, nogil=True, inline="always")
def read_base(buf, pos, end, codec):
    """A section's base: (status, base, the position after it); a u64, or a
    zigzag varint in a SHORT section."""
    if codec & SPLIT == SHORT:
        zz, after = read_varint(buf, pos, end)
        if after < 0:
            return varint_status(zz), ZERO, -1
        return OK, unzigzag(zz), after
    if pos + 8 > end:
        return ERR_TRUNCATED, ZERO, -1
    return OK, _read_u64(buf, pos), pos + 8


# Inlined by numba, as _read_dictionary and decode_column_floats: numba links
# a callee's IR into every function that calls it and compiles it again
# there, so each extra compiled function between the engine and _read_payload
# (whose vector kernels are big) cost ~0.3 s of cold compile.
@cached(_STAMP, nogil=True, inline="always")
def _read_residuals(buf, pos, end, n, codec, out, scratch):
    """Base, dictionary (into scratch) and residuals (into out) of a section:
    (status, base, dictionary size).  A ZERO_RESIDUALS section has residuals 0."""
    status, base, n_entries, pos = read_head(buf, pos, end, n, codec, scratch)
    if status != OK:
        return status, base, 0
    if codec & ZERO_RESIDUALS:
        if pos != end:
            return ERR_LENGTH, base, 0
        for i in range(U64(n)):
            out[i] = ZERO
        return OK, base, n_entries
    if codec & SPLIT == ENTROPY:
        return tans_call.read(buf, pos, end, n, codec & PREDICTOR_MASK, out), base, n_entries
    status, payload_end = _read_payload(buf, pos, end, n, out, payload_form(codec))
    if status == OK and payload_end != end:
        status = ERR_LENGTH
    return status, base, n_entries


@cached(_STAMP, nogil=True, inline="always")
def payload_form(codec):
    """What read_payload is told of a section's payload: PAYLOAD_FRAMES, or
    its dictionary's form (below)."""
    return PAYLOAD_FRAMES if codec & PREDICTOR_MASK == FRAMES else dictionary_form(codec)


dictionary_form = cached(_STAMP, nogil=True, inline="always")(codes.dictionary_form)


@cached(_STAMP, nogil=True, refcounted=False)
def read_head(buf, pos, end, n, codec, scratch):
    """What comes before a section's residuals: (status, base, dictionary
    size, where the residuals start), the dictionary into scratch.  Not
    inlined: a count (intcount.py) reads it too, and compiles it once."""
    # ENTROPY and SPLIT have residuals (bit 7 with ZERO is corrupt); FRAMES has neither, nor SHORT
    if codec & ~0xFF or codec & ENTROPY and codec & ZERO_RESIDUALS \
            or (codec & PREDICTOR_MASK) == FRAMES and codec & (SHORT | ZERO_RESIDUALS | ENTROPY):
        return ERR_BAD_CODE, ZERO, 0, -1
    status, base, pos = read_base(buf, pos, end, codec)
    if status != OK:
        return status, ZERO, 0, -1
    n_entries = np.int64(0)
    if codec & DICT:
        n_entries, pos = _read_dictionary(buf, pos, end, n, scratch, dictionary_form(codec))
        if pos < 0:
            return n_entries, base, 0, -1
    return OK, base, n_entries, pos


__all__ = ["encode_column", "decode_column", "decode_column_floats", "max_section_bytes", "low_mask"]
