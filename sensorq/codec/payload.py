"""Reading a section's mini-block payload (docs/format.md §3): the header
bytes, then the bit stream of bit-packed, framed, patched and Rice-coded
mini-blocks, or a FRAMES section's.  :func:`read_payload` is the decoder's
hot loop and, with ``settle``, a count's (intcount.py): it reads only the
bytes of its section and returns a status instead of raising, so that a
kernel running in parallel threads never throws.  The column around the
payload (base, dictionary, predictor) is intcodec.py's.
"""
from __future__ import annotations

import numpy as np

from ..jitcache import cached, digest
from .bits import (COUNT32_MAX_WIDTH, ONE, U64, ZERO, add32, count32, count32_bytes, get_bits,
                   load_word, load_word_unchecked, low_mask, trailing_zeros, unpack32, unpack32_bytes,
                   cttz64_or_64, popcount64, quotients32, walk8, WALK8_BAD_HEADER)
from ._vector_ir import QUOTIENTS32_MAX_K
from .codes import (ERR_BAD_CODE, ERR_TRUNCATED, FRAME_LENGTH_BITS, FRAMED, MINI_BLOCK,
                    OK, PATCHED, PAYLOAD_FRAMES, PAYLOAD_SPLIT, RICE, SHORT)
from .pricing import PATCH_POSITION
from .tally import ALL_COUNT, NO_CEILING, UNSETTLED, framed_count

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)

@cached(_STAMP, nogil=True)
def _read_u64(buf, pos):
    return load_word(buf, pos, pos + 8)


@cached(_STAMP, nogil=True, inline="always")
def _read_rice(buf, start, end, bit_pos, k, limit):
    """One Rice(k) value at bit_pos; returns (value, new bit_pos) or bit_pos -1."""
    q = np.int64(0)
    while True:
        if bit_pos >= limit:
            return ZERO, -1
        off = bit_pos & 7
        word = load_word(buf, start + (bit_pos >> 3), end) >> U64(off)
        avail = 64 - off
        if word == ZERO:
            q += avail
            bit_pos += avail
            continue
        zeros = trailing_zeros(word)
        if zeros >= avail:
            q += avail
            bit_pos += avail
            continue
        q += zeros
        bit_pos += zeros + 1
        break
    if k > 0 and (U64(q) >> U64(64 - k)) != ZERO:
        return ZERO, -1
    value = (U64(q) << U64(k)) | get_bits(buf, start, end, bit_pos, k)
    return value, bit_pos + k


@cached(_STAMP, nogil=True, refcounted=False)
def _unpack(buf, start, end, bit_pos, width, out, lo, hi):
    """Bit-unpack out[lo:hi] at ``width`` bits each, a value at a time: for a
    short last mini-block, or one near the section's end (whole ones elsewhere
    go to ``unpack32``).  Near the end, bytes are checked."""
    if width == 0:   # all residuals 0: e.g. every mini-block but the first of a regular clock
        for i in range(lo, hi):
            out[i] = ZERO
        return
    last_byte = start + ((bit_pos + (hi - lo) * width) >> 3)
    mask = low_mask(width)
    if last_byte + 9 > end and width <= 56:
        # near the section's end: a byte at a time into an accumulator, no
        # byte past ``end`` read (per value through get_bits this took
        # ~12 ns a value, ~0.4 us for a section's last mini-block)
        byte = start + (bit_pos >> 3)
        acc = U64(buf[byte]) >> U64(bit_pos & 7)
        n_acc = 8 - (bit_pos & 7)
        byte += 1
        for i in range(lo, hi):
            while n_acc < width and byte < end:
                acc |= U64(buf[byte]) << U64(n_acc)
                n_acc += 8
                byte += 1
            out[i] = acc & mask
            acc >>= U64(width)
            n_acc -= width
        return
    if last_byte + 9 > end:
        for i in range(lo, hi):
            out[i] = get_bits(buf, start, end, bit_pos, width)
            bit_pos += width
        return
    if width <= 28:   # one word load holds two values (≥ 57 valid bits after the shift)
        i = lo
        shift = U64(width)
        while i + 1 < hi:
            w = load_word_unchecked(buf, U64(start + (bit_pos >> 3))) >> U64(bit_pos & 7)
            at = U64(i)   # unsigned: no negative-index fix-up on the stores either
            out[at] = w & mask
            out[at + ONE] = (w >> shift) & mask
            bit_pos += 2 * width
            i += 2
        if i < hi:
            out[i] = (load_word_unchecked(buf, U64(start + (bit_pos >> 3))) >> U64(bit_pos & 7)) & mask
        return
    if width <= 56:   # one word always holds the value: no second load to test for
        for i in range(lo, hi):
            at = U64(start + (bit_pos >> 3))
            out[i] = (load_word_unchecked(buf, at) >> U64(bit_pos & 7)) & mask
            bit_pos += width
        return
    for i in range(lo, hi):
        at = U64(start + (bit_pos >> 3))
        off = U64(bit_pos & 7)
        v = load_word_unchecked(buf, at) >> off
        if off + U64(width) > U64(64):
            v |= U64(buf[at + U64(8)]) << (U64(64) - off)
        out[i] = v & mask
        bit_pos += width


# Rice values decoded from one word load (with k = 4-5 and noise-sized values
# a window of 57 bits holds about 7 codewords).
RICE_WINDOW = 8


@cached(_STAMP, nogil=True, inline="always")   # LLVM would not inline it: a call per window
def _rice_window(buf, byte, shift, k, mask, out, at, room):
    """Decode up to ``room`` (≤ RICE_WINDOW) Rice(k) values from the word at
    ``byte`` (≥ 57 valid bits after ``shift``) into out[at:].  Returns (values,
    bits): the codewords that end inside the word.

    Branch-light: all RICE_WINDOW codewords are decoded whether or not they
    fit, and the ones that do are counted, so the loop has a fixed trip count
    and no data-dependent exit (the old per-word exit mispredicted once a
    word).  Codeword ends only grow, so the ones that fit are a prefix."""
    rest = load_word_unchecked(buf, byte) >> shift   # the stream from the next codeword on
    avail = U64(64) - shift
    width = U64(k) + ONE
    end = ZERO           # where the codewords decoded so far end, in the word
    count, bits = ZERO, ZERO
    for j in range(U64(RICE_WINDOW)):
        # the critical path is rest -> q -> rest: a count, an add, a shift
        q = cttz64_or_64(rest)
        end += q + width
        if j < room:
            out[at + j] = (q << U64(k)) | ((rest >> ((q + ONE) & U64(63))) & mask)
        fits = (end <= avail) & (j < room)
        count += U64(fits)
        bits = end if fits else bits
        rest >>= (q + width) & U64(63)   # garbage once past the word: then not counted
    return count, bits


# Past RICE_WINDOW_MAX_K a window's 57 bits hold fewer than two codewords of
# k + 2 bits, and _rice_window would decode eight to keep one (~30 ns a
# value): _rice_single reads just one.
RICE_WINDOW_MAX_K = 26


@cached(_STAMP, nogil=True, inline="always")
def _rice_single(buf, byte, shift, k, mask, out, at):
    """One Rice(k) value from the word at ``byte`` (≥ 57 valid bits after
    ``shift``) into out[at]: returns (1, its bits), or (0, 0) when the
    codeword ends past the word's valid bits (a long quotient)."""
    rest = load_word_unchecked(buf, byte) >> shift
    q = cttz64_or_64(rest)
    bits = q + U64(k) + ONE
    out[at] = (q << U64(k)) | ((rest >> ((q + ONE) & U64(63))) & mask)
    fits = bits <= U64(64) - shift
    return U64(fits), bits if fits else ZERO


# A burst (_rice_burst) keeps the first ``burst`` of its codewords, chosen so
# that they nearly always fit the ≥ 57 valid bits of a window: a Rice
# mini-block's codewords average about k + 2 bits (Daphnet: k + 2.1), and
# those of a burst must fit in about 48.  Below 2 a burst does not pay.
RICE_BURST_BITS = 48


@cached(_STAMP, nogil=True, inline="always")
def _rice_burst_size(k):
    """Codewords a _rice_burst of Rice(k) keeps (0: none, k > 22)."""
    burst = min(RICE_WINDOW, RICE_BURST_BITS // (k + 2))
    return burst if burst >= 2 else 0


@cached(_STAMP, nogil=True, inline="always")
def _rice_burst(buf, byte, shift, k, mask, out, at, burst):
    """Decode RICE_WINDOW Rice(k) values from the word at ``byte`` into
    out[at:at + RICE_WINDOW] (the caller checked the room) and keep the first
    ``burst`` (_rice_burst_size(k)): returns the bits they take, or 0 if the
    last of them ends past the word's valid bits (then the caller decodes
    them again with _rice_window; values past them are garbage, overwritten
    later).  Unlike _rice_window it keeps no count of the codewords that
    fit, so a codeword costs ~12 instructions, not ~17, and the loop has
    no branch."""
    rest = load_word_unchecked(buf, byte) >> shift
    width = U64(k) + ONE
    end, kept = ZERO, ZERO
    for j in range(U64(RICE_WINDOW)):
        q = cttz64_or_64(rest)
        out[at + j] = (q << U64(k)) | ((rest >> ((q + ONE) & U64(63))) & mask)
        end += q + width
        kept = end if j + ONE == burst else kept
        # two shifts, not one by q + width: ``rest >> width`` runs beside
        # the count, so the chain from one codeword to the next is a count
        # and a shift (2 cycles), not a count, an add and a shift (3)
        rest = (rest >> width) >> (q & U64(63))
    return kept if kept <= U64(64) - shift else ZERO


# --- split Rice mini-blocks (codes.SPLIT): low bits, then quotients --------

@cached(_STAMP, nogil=True, refcounted=False)
def _or_quotients(buf, start, end, pos, k, out, at, stop, limit):
    """out[at:stop] |= each unary quotient (zeros ended by a one) from bit
    ``pos`` on, shifted left by k; returns the bit after the last, or -1 if
    the section ends first or a quotient << k does not fit in 64 bits.

    Where bits.quotients32 declines (a core without AVX-512 VBMI2, quotients
    past 16 bytes, a short or last mini-block): a word's one bits are the
    codes' ends, each found by a count of trailing zeros and cleared, a
    chain of one instruction from code to code (an interleaved codeword
    waits on its predecessor's length: a count, an add, a shift and often a
    load)."""
    largest = ZERO
    i = U64(at)
    code_start = pos                            # where the next code's zeros begin
    while i < U64(stop):
        if pos >= limit:
            return np.int64(-1)
        shift = U64(pos & 7)
        word = load_word(buf, start + (pos >> 3), end) >> shift     # zeros past the end
        take = min(popcount64(word), U64(stop) - i)
        prev = U64(code_start - pos) - ONE      # (mod 2^64: a code begun in an earlier word)
        for j in range(take):
            p = cttz64_or_64(word)
            word &= word - ONE
            q = p - prev - ONE
            out[i + j] |= q << U64(k)
            largest |= q
            prev = p
        if take:
            code_start = pos + np.int64(prev) + 1
        i += take
        pos += np.int64(U64(64) - shift)
    return _quotients_end(code_start, largest, k)


@cached(_STAMP, nogil=True, inline="always")
def _quotients_end(after, largest, k):
    """``after``, or -1 where the largest quotient << k overflows 64 bits."""
    if k > 0 and (largest >> U64(64 - k)) != ZERO:
        return np.int64(-1)
    return after


@cached(_STAMP, nogil=True, inline="always")
def _read_fixed_frame(buf, start, end, bit_pos, length):
    """A FRAMES payload's frame of ``length`` bits at ``bit_pos``: (the bit
    after it, the frame); the caller checks that bit against the section's end."""
    byte = start + (bit_pos >> 3)
    if byte + 8 <= end and length <= 56:
        word = load_word_unchecked(buf, U64(byte)) >> U64(bit_pos & 7)
        return bit_pos + length, word & low_mask(length)
    return bit_pos + length, get_bits(buf, start, end, bit_pos, length)


@cached(_STAMP, nogil=True, inline="always")
def _read_frame(buf, start, end, bit_pos):
    """A framed mini-block's frame at ``bit_pos``: (the bit after it, the
    frame); the caller checks that bit against the section's end."""
    byte = start + (bit_pos >> 3)
    if byte + 8 <= end:         # one word holds a frame of up to 51 bits and its length
        word = load_word_unchecked(buf, U64(byte)) >> U64(bit_pos & 7)
        length = word & low_mask(FRAME_LENGTH_BITS)
        if length <= U64(57 - FRAME_LENGTH_BITS):
            return bit_pos + FRAME_LENGTH_BITS + np.int64(length), \
                (word >> U64(FRAME_LENGTH_BITS)) & low_mask(length)
    length = get_bits(buf, start, end, bit_pos, FRAME_LENGTH_BITS)
    frame = get_bits(buf, start, end, bit_pos + FRAME_LENGTH_BITS, length)
    return bit_pos + FRAME_LENGTH_BITS + np.int64(length), frame


@cached(_STAMP, nogil=True, inline="always")
def _read_payload(buf, pos, end, n, out, short):
    """Residuals of all mini-blocks of the payload at pos into out[:n], reading
    nothing past ``end``; returns (status, where the payload ends)."""
    status, payload_end, _, _, _ = read_payload(buf, pos, end, n, out, short, np.int64(0), ZERO,
                                                np.int64(0), np.int64(0), NO_CEILING)
    return status, payload_end


@cached(_STAMP, nogil=True, refcounted=False)
def read_payload(buf, pos, end, n, out, form, settle, base, threshold, top, ceiling):
    """_read_payload, and a count's (``settle``, below): one signature for
    both, whatever the caller (each signature of this function, whose vector
    kernels are big, is seconds of cold compile; so ``settle`` is an int64,
    0 or 1, as a literal bool would make two).  ``form`` (payload_form): a
    version 1 payload, a split one (codes.SPLIT: its Rice mini-blocks'
    low bits, then their quotients), a short one (version 2: patched and
    framed mini-blocks are corrupt), or a FRAMES one (a byte L after the header
    bytes, every frame L bits without a length before it, and only
    bit-packed and framed mini-blocks: a mini-block's start is then a
    running sum of widths and L, a chain of adds that does not wait for the
    bytes it reads).

    Both hot loops are written out here, not in callees: a numba callee that
    takes arrays and loops (or is inlined around a call) increfs and decrefs
    them, atomic operations, per call: ~1 ns a value at 32 values a call.
    ``unpack32`` is an intrinsic and ``_rice_window`` has no loop or call, so
    neither pays it.
    Returns (status, where the payload ends, kept, above, equal).
    With ``settle`` 0 (decoding) every residual is read: kept = n, above =
    equal = 0.  With ``settle`` 1 (a count of an order-0 column,
    intcount.py): a bit-packed or framed mini-block whose range settles the
    count (tally.framed_count; base, threshold, top as there) is neither
    unpacked nor written, and in a FRAMES payload a plain count (``top`` the
    threshold, no ``ceiling``) counts the narrow ones it cannot settle in
    registers (_settle_frames); the residuals of the others are packed into
    out[:kept] in order.  ``above`` says how many of the values not kept
    count (are above ``top``), ``equal`` how many of them equal the
    threshold (only those counted in registers: a settled mini-block holds
    none)."""
    n_mini = (n + MINI_BLOCK - 1) // MINI_BLOCK
    short = form == SHORT
    frames = form == PAYLOAD_FRAMES
    split = form == PAYLOAD_SPLIT
    start = pos + n_mini
    frame_length = np.int64(0)
    if frames:
        if start >= end:
            return ERR_TRUNCATED, -1, 0, 0, 0
        frame_length = np.int64(buf[start])
        if frame_length > 63:
            return ERR_BAD_CODE, -1, 0, 0, 0
        start += 1
    if start > end:
        return ERR_TRUNCATED, -1, 0, 0, 0
    if frames and settle and frame_length <= 56 and end - start >= 8:
        return _settle_frames(buf, pos, start, end, n, out, frame_length, base, threshold, top,
                              ceiling)
    limit = (end - start) * 8
    bit_pos = np.int64(0)   # not a literal: one compiled signature for the callees
    settled, above = np.int64(0), np.int64(0)      # values settled, and of those counted
    full = n // MINI_BLOCK
    for m in range(n_mini):
        h = np.int64(buf[U64(pos + m)])
        lo = m * MINI_BLOCK
        patched = h >= PATCHED
        w = h & 0x3F if patched else h
        framed = h >= FRAMED and h < RICE
        frame = ZERO
        if frames and h >= RICE:        # Rice and patched: not in a FRAMES payload
            return ERR_BAD_CODE, -1, 0, 0, 0
        if framed:
            if short:
                return ERR_BAD_CODE, -1, 0, 0, 0
            if frames:
                bit_pos, frame = _read_fixed_frame(buf, start, end, bit_pos, frame_length)
            else:
                bit_pos, frame = _read_frame(buf, start, end, bit_pos)
            if bit_pos > limit:
                return ERR_TRUNCATED, -1, 0, 0, 0
            w = h - FRAMED
        hi = min(n, lo + MINI_BLOCK)
        # a count, and a mini-block whose values lie in [base + frame, + 2^w)
        if settle and (framed or h <= 64):
            verdict = framed_count(base + frame, w, threshold, top, ceiling)
            if verdict != UNSETTLED:
                bit_pos += (hi - lo) * w
                if bit_pos > limit:
                    return ERR_TRUNCATED, -1, 0, 0, 0
                settled += hi - lo
                if verdict == ALL_COUNT:
                    above += hi - lo
                continue
        at = lo - settled       # where this mini-block's residuals go: after the last kept one
        stop = at + (hi - lo)
        if h == 0:              # width 0, no bits: zeros (a steady clock's residuals after the first)
            for i in range(U64(at), U64(stop)):
                out[i] = ZERO
            continue
        if (h <= 64 or framed or patched and not short) and m < full \
                and start + (bit_pos >> 3) + unpack32_bytes(w) <= end:
            # a whole mini-block whose bytes lie in the section: the vector
            # kernel, inline here (a call per mini-block cost more than the
            # unpacking itself), and no truncation test (the bytes are there).
            # Bit-packed and patched ones take one path without a branch
            # between them (mixed at random on real data, a branch
            # mispredicted: ~20 % of the decode): a patched one's value at
            # the 5-bit position after the low bits gets bit w, a bit-packed
            # (or framed) one's or's in 0 and reads no bits.
            unpack32(buf, start + (bit_pos >> 3), bit_pos & 7, w, out, at)
            bit_pos += MINI_BLOCK * w
            p = get_bits(buf, start, end, bit_pos, PATCH_POSITION)
            out[U64(at) + p] |= U64(patched) << U64(w)
            bit_pos += PATCH_POSITION * np.int64(patched)
            if bit_pos > limit:
                return ERR_TRUNCATED, -1, 0, 0, 0
            if framed:
                add32(out, at, frame)
            continue
        if h <= 64 or framed:   # the last mini-block, or one near the section's end
            if bit_pos + (hi - lo) * w > limit:
                return ERR_TRUNCATED, -1, 0, 0, 0
            _unpack(buf, start, end, bit_pos, w, out, at, stop)
            bit_pos += (hi - lo) * w
            for i in range(U64(at), U64(stop)):
                out[i] += frame
        elif patched and not short:
            if bit_pos + (hi - lo) * w > limit:
                return ERR_TRUNCATED, -1, 0, 0, 0
            _unpack(buf, start, end, bit_pos, w, out, at, stop)
            bit_pos += (hi - lo) * w
            if bit_pos + PATCH_POSITION > limit:
                return ERR_TRUNCATED, -1, 0, 0, 0
            p = np.int64(get_bits(buf, start, end, bit_pos, PATCH_POSITION))
            if p >= hi - lo:
                return ERR_BAD_CODE, -1, 0, 0, 0
            out[U64(at + p)] |= U64(1) << U64(w)
            bit_pos += PATCH_POSITION
        elif h & RICE and (h & 0x7F) <= 63 and split:
            # every value's k low bits, bit-packed, then their quotients
            k = h & 0x3F
            quotients_at = bit_pos + (hi - lo) * k
            if quotients_at > limit:
                return ERR_TRUNCATED, -1, 0, 0, 0
            if m < full and start + (bit_pos >> 3) + unpack32_bytes(k) <= end:
                unpack32(buf, start + (bit_pos >> 3), bit_pos & 7, k, out, at)
            else:
                _unpack(buf, start, end, bit_pos, k, out, at, stop)
            taken = ZERO
            if m < full and k <= QUOTIENTS32_MAX_K and start + (quotients_at >> 3) + 16 <= end:
                taken = quotients32(buf, start + (quotients_at >> 3), quotients_at & 7, k, out, at)
            if taken != ZERO:
                bit_pos = quotients_at + np.int64(taken)
            else:
                bit_pos = _or_quotients(buf, start, end, quotients_at, k, out, at, stop, limit)
            if bit_pos < 0:
                return ERR_TRUNCATED, -1, 0, 0, 0
        elif h & RICE and (h & 0x7F) <= 63:
            k = h & 0x3F
            mask = low_mask(k)
            burst = _rice_burst_size(k)
            i = at
            while i < stop:
                byte = start + (bit_pos >> 3)
                count, bits = ZERO, ZERO
                if burst and byte + 8 <= end and i + RICE_WINDOW <= stop:
                    bits = _rice_burst(buf, U64(byte), U64(bit_pos & 7), k, mask, out, U64(i), U64(burst))
                    if bits != ZERO:
                        i += burst
                        bit_pos += np.int64(bits)
                        continue
                if byte + 8 <= end:
                    if k > RICE_WINDOW_MAX_K:
                        count, bits = _rice_single(buf, U64(byte), U64(bit_pos & 7), k, mask, out,
                                                   U64(i))
                    else:
                        count, bits = _rice_window(buf, U64(byte), U64(bit_pos & 7), k, mask, out,
                                                   U64(i), U64(min(stop - i, RICE_WINDOW)))
                if count != ZERO:
                    i += np.int64(count)
                    bit_pos += np.int64(bits)
                    continue
                # near the section's end, or a quotient longer than a word
                out[i], bit_pos = _read_rice(buf, start, end, bit_pos, k, limit)
                if bit_pos < 0 or bit_pos > limit:
                    return ERR_TRUNCATED, -1, 0, 0, 0
                i += 1
        else:
            return ERR_BAD_CODE, -1, 0, 0, 0
    return OK, start + (bit_pos + 7) // 8, n - settled, above, 0


@cached(_STAMP, nogil=True, inline="always")
def _frames_header(h, frame_length):
    """(width, frame length) of a FRAMES mini-block by its header h (below
    RICE): framed (0x41 + w, a frame of the section's length) or bit-packed
    (w, no frame)."""
    framed = h >= FRAMED
    return (h - FRAMED if framed else h), (frame_length if framed else np.int64(0))


@cached(_STAMP, nogil=True, inline="always")
def _group_notes(first, whole):
    """Where the notes of the group of (up to eight) whole mini-blocks from
    ``first`` go: in the values' place of the group's last mini-block,
    out[32 (last) : + 25] (where each unsettled one's values start, its
    width, its frame, eight of each, then the mask of the unsettled).  The
    second loop of _settle_frames keeps values only up to the place of the
    mini-block it reads, so a group's notes are read before anything is
    kept over them."""
    return U64(MINI_BLOCK * (min(first + 8, whole) - 1))


@cached(_STAMP, nogil=True, refcounted=False)
def _settle_frames(buf, pos, start, end, n, out, frame_length, base, threshold, top, ceiling):
    """read_payload's count of a FRAMES payload (header bytes at pos, bit
    stream at start): what read_payload does with ``settle``, in loops of
    its own.  The first walks the whole mini-blocks and settles what their
    frames settle, eight at a time (bits.walk8: their starts by a vector
    prefix sum of the widths, their frames by eight loads, vector
    compares).  Each mini-block's start is the last one's plus its frame
    length and 32 widths, none of it read from the stream, so the frames'
    loads and their verdicts overlap from one step to the next.  For each
    group of eight it leaves notes (_group_notes: where each mini-block's
    values start, its width, its frame) and the mask of those it left
    unsettled.  The rest (fewer than eight whole mini-blocks, a dictionary's
    ranks, whose ceiling a damaged rank may pass, or a header the form does
    not allow) is walked one at a time into the same notes.  The second
    loop visits the unsettled mini-blocks by their groups' masks: a plain
    count (``top`` is the threshold, no ``ceiling``) counts a whole
    mini-block of a narrow width in registers (bits.count32), others are
    unpacked into out[:kept] as before; then the short last mini-block.
    (The masks replaced a copy of each unsettled lane's note to a packed
    list: the benchmark's Q1', one thread, 3.9-4.4 -> 3.8-3.9 ms.)  The
    walk is faster without the unpacking's code in its loop (2.13 -> 1.84
    ms when every mini-block settles), and a mini-block counted in
    registers costs about a third of one unpacked (~7 against ~20 ns).
    Frames are at most 56 bits, and the bit stream at least 8 bytes.  Loads
    are bounded by ``end``, not by the walk: the end bit is checked against
    the section once, at the end, or at a header the form does not allow
    (TRUNCATED if the walk had passed the section's end by then, as
    read_payload's per-mini-block checks would say)."""
    limit = (end - start) * 8
    bit_pos = np.int64(0)
    above = np.int64(0)
    whole = n // MINI_BLOCK
    m = 0
    while ceiling == NO_CEILING and m + 8 <= whole:
        notes = _group_notes(m, whole)
        after, walked = walk8(buf, pos + m, start, end, bit_pos, frame_length, base, threshold, top,
                              out, notes)
        if walked & WALK8_BAD_HEADER:
            break                               # the loop below says what is wrong
        bit_pos = after
        above += MINI_BLOCK * ((walked >> 16) & 0xFF)
        out[notes + U64(24)] = U64(walked & 0xFF)
        m += 8
    for m in range(m, whole):       # the rest, one at a time (m starts at a group's first)
        h = np.int64(buf[U64(pos + m)])
        if h >= RICE:
            return (ERR_TRUNCATED if bit_pos > limit else ERR_BAD_CODE), -1, 0, 0, 0
        w, length = _frames_header(h, frame_length)
        # the frame from the word at its byte, or, near the end, the
        # section's last word (read_payload sends no shorter section here):
        # one load and no branch, which took a fifth off the walk
        byte = min(start + (bit_pos >> 3), end - 8)
        skip = min(bit_pos - (byte - start) * 8, np.int64(63))
        frame = (load_word_unchecked(buf, U64(byte)) >> U64(skip)) & low_mask(length)
        values_at = bit_pos + length
        bit_pos = values_at + MINI_BLOCK * w
        notes, lane = _group_notes(m & ~7, whole), U64(m & 7)
        if lane == ZERO:
            out[notes + U64(24)] = ZERO
        verdict = framed_count(base + frame, w, threshold, top, ceiling)
        if verdict != UNSETTLED:
            above += MINI_BLOCK if verdict == ALL_COUNT else 0
            continue
        out[notes + lane] = U64(values_at)
        out[notes + U64(8) + lane] = U64(w)
        out[notes + U64(16) + lane] = frame
        out[notes + U64(24)] |= ONE << lane
    tail = n % MINI_BLOCK       # a short last mini-block, walked apart: the loop above has no
    tail_at, tail_width, tail_frame = np.int64(-1), np.int64(0), ZERO     # test for it
    if tail:
        h = np.int64(buf[U64(pos + whole)])
        if h >= RICE:
            return (ERR_TRUNCATED if bit_pos > limit else ERR_BAD_CODE), -1, 0, 0, 0
        tail_width, length = _frames_header(h, frame_length)
        tail_at, tail_frame = _read_fixed_frame(buf, start, end, bit_pos, length)
        bit_pos = tail_at + tail * tail_width
        verdict = framed_count(base + tail_frame, tail_width, threshold, top, ceiling)
        if verdict != UNSETTLED:
            above += tail if verdict == ALL_COUNT else 0
            tail_at = -1
    if bit_pos > limit:
        return ERR_TRUNCATED, -1, 0, 0, 0
    in_registers = top == threshold and ceiling == NO_CEILING
    kept, equal = np.int64(0), np.int64(0)
    for first in range(0, whole, 8):
        notes = _group_notes(first, whole)
        left = out[notes + U64(24)]
        while left != ZERO:
            k = U64(trailing_zeros(left))
            left &= left - ONE
            values_at, w = np.int64(out[notes + k]), np.int64(out[notes + U64(8) + k])
            frame = out[notes + U64(16) + k]
            at = start + (values_at >> 3)
            lowest, span = np.int64(base + frame), np.int64(low_mask(w))
            below = threshold - lowest                  # the threshold less the frame's value
            if in_registers and 1 <= w <= COUNT32_MAX_WIDTH and 0 <= below <= span \
                    and lowest + span >= lowest and at + count32_bytes(w) <= end:
                counted = count32(buf, at, values_at & 7, w, below)
                above += counted & 0xFFFFFFFF
                equal += counted >> 32
                continue
            if at + unpack32_bytes(w) <= end:
                unpack32(buf, at, values_at & 7, w, out, kept)
            else:
                _unpack(buf, start, end, values_at, w, out, kept, kept + MINI_BLOCK)
            add32(out, kept, frame)
            kept += MINI_BLOCK
    if tail_at >= 0:
        _unpack(buf, start, end, tail_at, tail_width, out, kept, kept + tail)
        for i in range(U64(kept), U64(kept + tail)):
            out[i] += tail_frame
        kept += tail
    return OK, start + (bit_pos + 7) // 8, kept, above, equal
