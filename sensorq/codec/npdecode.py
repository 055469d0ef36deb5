"""The column decoder again, in plain numpy (docs/format.md §3).

Why a second decoder: it needs no compilation.  The engine's interpreted tier
runs on it, so the first small query of a process answers without loading
numba at all (a fresh ``sensorq "count …"`` would otherwise spend most of its
time starting the compiler).  It is also a second, independent reading of the
format: the tests hold it to the compiled decoder (intcodec.py, payload.py) word for word,
status for status, on valid and on damaged sections.

How: bit-packed mini-blocks are unpacked all at once, one 64-bit window per
value gathered from the section (about 20 ns a value).  A framed mini-block's
frame says how long it is, so the frames are read in a Python loop, one
slice of the section's bytes each, and the starts between them are running
sums (about 0.4 µs a frame: a section of 4,096 accelerometer values, most
of its mini-blocks framed, decodes at about 35–40 ns a value); in a FRAMES
section every frame has the section's one length, so every start is a
running sum and the frames are read in one vector pass.  A Rice mini-block
needs a walk, because each quotient ends where the next one-bit is: a Python
loop of one ``bytes.find`` per value over the section's bits (a byte each),
checked afterwards in numpy, with the remainders then unpacked like
bit-packed values (about 0.2 µs a Rice value).  The compact encoder takes Rice
only where it saves much (intcodec.RICE_DECODE_COST), so most mini-blocks
take the vector path.  Hence the engine keeps this decoder for small scans.

``decode_column`` returns a status like the compiled decoder and never reads
outside ``buf[pos:end]``.
"""
from __future__ import annotations

import numpy as np

from .codes import (CLOCK, CLOCK_MAX_DENOMINATOR, DICT, ENTROPY, ENTROPY_VALUE_SPAN_BITS, ERR_BAD_CODE,
                    ERR_BAD_DICT, ERR_LENGTH, ERR_TRUNCATED, FRAME_LENGTH_BITS, FRAMED, FRAMES,
                    MINI_BLOCK, OK, PATCHED, PAYLOAD_FRAMES, PAYLOAD_SPLIT, PREDICTOR_MASK,
                    RICE, SHORT, SPLIT, ZERO_RESIDUALS, dictionary_form)
from .codes import ENTROPY_LOW_BITS_MAX
from .codes import ENTROPY_MAX_SYMBOLS as MAX_SYMBOLS
from .codes import ENTROPY_STATES as STATES
from .codes import ENTROPY_TABLE_LOG_MAX as TABLE_LOG_MAX
from .codes import ENTROPY_TABLE_LOG_MIN as TABLE_LOG_MIN

U64 = np.uint64
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


class _Bad(Exception):
    """A section the format does not allow; carries the decoder status."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def decode_column(buf: np.ndarray, pos: int, end: int, n: int, codec: int):
    """Decode the section buf[pos:end] (uint8) of n words: (status, uint64 words or None)."""
    try:
        return OK, _decode(buf, int(pos), int(end), int(n), int(codec))
    except _Bad as bad:
        return bad.status, None


def decode_time_words(buf: np.ndarray, pos: int, end: int, n: int, codec: int):
    """:func:`decode_column` of a time section: a CLOCK section's words are
    its residuals plus its line, floor((p k + r) / q) (clock.py)."""
    if not codec & CLOCK:
        return decode_column(buf, pos, end, n, codec)
    try:
        pos, end = int(pos), int(end)
        line = []
        for _ in range(3):
            value, pos = read_varint(buf, pos, end)
            line.append(value)
        p, q, r = line
        if not 1 <= q <= CLOCK_MAX_DENOMINATOR or r >= q:
            raise _Bad(ERR_BAD_CODE)
        words = _decode(buf, pos, end, int(n), int(codec) ^ CLOCK)
    except _Bad as bad:
        return bad.status, None
    k = np.arange(n, dtype=U64)
    # (p mod q)·k + r < 2^33: the quotient is the compiled decoder's, exactly
    return OK, words + k * U64(p // q) + (k * U64(p % q) + U64(r)) // U64(q)


def _decode(buf, pos, end, n, codec) -> np.ndarray:
    order = codec & PREDICTOR_MASK
    if codec & ~0xFF or codec & ENTROPY and codec & ZERO_RESIDUALS \
            or order == FRAMES and codec & (SHORT | ZERO_RESIDUALS | ENTROPY):
        raise _Bad(ERR_BAD_CODE)
    bits = codec & SPLIT          # SHORT, ENTROPY, SPLIT or none (codes.py)
    dict_form = dictionary_form(codec)
    form = PAYLOAD_FRAMES if order == FRAMES else dict_form
    order = 0 if order == FRAMES else order
    if bits == SHORT:
        zz, pos = read_varint(buf, pos, end)
        base = U64((zz >> 1) ^ -(zz & 1) & 0xFFFFFFFFFFFFFFFF)
    else:
        if pos + 8 > end:
            raise _Bad(ERR_TRUNCATED)
        base = U64(int.from_bytes(buf[pos:pos + 8].tobytes(), "little"))
        pos += 8
    entries = None
    if codec & DICT:
        entries, pos = _read_dictionary(buf, pos, end, n, dict_form)
    if codec & ZERO_RESIDUALS:
        if pos != end:
            raise _Bad(ERR_LENGTH)
        first = entries[0] if entries is not None else U64(0)
        return np.full(n, base + first, np.uint64)
    if bits == ENTROPY:
        residuals = read_entropy(buf, pos, end, n, order)
    else:
        residuals = _read_mini_blocks(buf, pos, end, n, form)
    if entries is None:
        return undo_residuals(residuals, order, base)
    ranks = undo_residuals(residuals, order, U64(0))
    if (ranks >= U64(len(entries))).any():
        raise _Bad(ERR_BAD_DICT)
    return base + entries[ranks]


def read_varint(buf, pos: int, end: int) -> tuple[int, int]:
    """A LEB128 varint: (value, position after it); ERR_TRUNCATED if it runs
    past end, ERR_BAD_CODE if it holds more than 64 bits (as the compiled
    decoder)."""
    value = 0
    for i in range(10):
        if pos + i >= end:
            raise _Bad(ERR_TRUNCATED)
        b = int(buf[pos + i])
        if i == 9 and b > 1:
            raise _Bad(ERR_BAD_CODE)
        value |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            return value, pos + i + 1
    raise _Bad(ERR_BAD_CODE)


# --- ENTROPY payloads (tans.py has the format and the compiled decoder) -----------------

VALUE_SPAN = 1 << ENTROPY_VALUE_SPAN_BITS


def read_entropy(buf, pos: int, end: int, n: int, order: int) -> np.ndarray:
    """The n residuals of the ENTROPY payload buf[pos:end], a state step at
    a time in Python (tANS is a serial chain a state: about 0.2 µs a value,
    against 15-45 ns a bit-packed one)."""
    if pos + 2 > end:
        raise _Bad(ERR_TRUNCATED)
    table_log, low_bits, n_symbols = int(buf[pos]) & 7, int(buf[pos]) >> 3, int(buf[pos + 1]) + 1
    size = 1 << table_log
    if not TABLE_LOG_MIN <= table_log <= TABLE_LOG_MAX or low_bits > ENTROPY_LOW_BITS_MAX \
            or n_symbols > min(MAX_SYMBOLS, size):
        raise _Bad(ERR_BAD_CODE)
    pos += 2
    values = []
    for s in range(n_symbols):
        v, pos = read_varint(buf, pos, end)
        if s:
            v += values[-1] + 1
            if v >= 1 << 64:
                raise _Bad(ERR_BAD_CODE)
        values.append(v)
    if values[-1] - values[0] >= VALUE_SPAN:
        raise _Bad(ERR_BAD_CODE)
    lead = min(order, n)
    out = np.empty(n, np.uint64)
    for i in range(lead):
        out[i], pos = read_varint(buf, pos, end)
    low_start, pos = pos, pos + (low_bits * (n - lead) + 7) // 8
    if pos > end:
        raise _Bad(ERR_TRUNCATED)
    raw = buf[pos:end].tobytes()
    stream = int.from_bytes(raw[:8 + MAX_SYMBOLS * TABLE_LOG_MAX // 8], "little")   # the tables' fields
    raw += bytes(16)
    limit = 8 * (end - pos)
    freqs = [((stream >> (s * table_log)) & (size - 1)) + 1 for s in range(n_symbols - 1)]
    bit = (n_symbols - 1) * table_log
    if bit + STATES * table_log > limit:
        raise _Bad(ERR_TRUNCATED)
    if sum(freqs) >= size:
        raise _Bad(ERR_BAD_CODE)
    freqs.append(size - sum(freqs))
    slot_value, slot_bits, slot_base = _entropy_table(freqs, table_log, values)
    states = [(stream >> (bit + j * table_log)) & (size - 1) for j in range(STATES)]
    bit += STATES * table_log
    slots, bit = _walk_states(raw, bit, limit, states, list(zip(slot_bits, slot_base)), n - lead)
    if any(states):
        raise _Bad(ERR_BAD_CODE)
    if (bit + 7) // 8 != end - pos:
        raise _Bad(ERR_LENGTH)
    out[lead:] = np.array(slot_value, np.uint64)[np.array(slots, np.int64)]
    if low_bits:
        fields = np.arange(n - lead, dtype=np.int64) * low_bits
        out[lead:] = out[lead:] << U64(low_bits) | _bits_at(buf[low_start:pos], fields,
                                                            np.full(n - lead, low_bits, np.int64))
    return out


def _walk_states(raw: bytes, bit: int, limit: int, states: list, table: list, m: int):
    """(the state each of m symbols was emitted from, the bit after the
    stream); ``states`` is left as the walk ends.  Eight symbols a 64-bit
    window, as the compiled decoder (``raw`` is zero-padded past limit)."""
    slots = []
    append = slots.append
    masks = [(1 << nb) - 1 for nb in range(9)]
    from_bytes = int.from_bytes
    for _ in range(m // STATES):
        if bit > limit:
            raise _Bad(ERR_TRUNCATED)
        window = from_bytes(raw[bit >> 3:(bit >> 3) + 8], "little") >> (bit & 7)
        for j in range(STATES):
            x = states[j]
            append(x)
            nb, base = table[x]
            states[j] = base + (window & masks[nb])
            window >>= nb
            bit += nb
    for i in range(m % STATES):
        if bit > limit:
            raise _Bad(ERR_TRUNCATED)
        x = states[i]
        append(x)
        nb, base = table[x]
        states[i] = base + ((from_bytes(raw[bit >> 3:(bit >> 3) + 2], "little") >> (bit & 7)) & masks[nb])
        bit += nb
    if bit > limit:
        raise _Bad(ERR_TRUNCATED)
    return slots, bit


def _entropy_table(freqs, table_log, values):
    """(value, bits read, base) of every state: the spread and numbering of tans.py."""
    size = 1 << table_log
    step = (size >> 1) + (size >> 3) + 3
    symbol_of = [0] * size
    slot = 0
    for s, f in enumerate(freqs):
        for _ in range(f):
            symbol_of[slot] = s
            slot = (slot + step) & (size - 1)
    next_k = list(freqs)
    slot_value, slot_bits, slot_base = [], [], []
    for s in symbol_of:
        k = next_k[s]
        next_k[s] += 1
        nb = table_log + 1 - k.bit_length()
        slot_value.append(values[s])
        slot_bits.append(nb)
        slot_base.append((k << nb) - size)
    return slot_value, slot_bits, slot_base


def _read_dictionary(buf, pos, end, n, form):
    """(entries, position after the dictionary): a count (u32, or a varint in
    a short section), then the gaps between sorted entries as a predictor-0
    payload (``form``: SHORT, PAYLOAD_SPLIT or PAYLOAD_V1)."""
    if form == SHORT:
        count, pos = read_varint(buf, pos, end)
    else:
        if pos + 4 > end:
            raise _Bad(ERR_TRUNCATED)
        count = int.from_bytes(buf[pos:pos + 4].tobytes(), "little")
        pos += 4
    if not 1 <= count <= n:
        raise _Bad(ERR_BAD_DICT)
    walk = _Walk(buf, pos, end, count, form)      # the payload ends where its bits do
    gaps = walk.residuals()
    return np.cumsum(gaps, dtype=np.uint64) + np.arange(count, dtype=np.uint64), walk.end_byte()


def _read_mini_blocks(buf, pos, end, count, form) -> np.ndarray:
    """The ``count`` residuals of the payload buf[pos:end], which must fill it
    exactly (``form``: as payload.read_payload's)."""
    walk = _Walk(buf, pos, end, count, form)
    if walk.end_byte() != end:
        raise _Bad(ERR_LENGTH)
    return walk.residuals()


class _Walk:
    """Where every residual of a payload lies: bit offset and width of its
    bit-packed part, and its Rice quotient already shifted into place."""

    def __init__(self, buf, pos, end, count, form):
        n_mini = (count + MINI_BLOCK - 1) // MINI_BLOCK
        short, frames = form == SHORT, form == PAYLOAD_FRAMES
        self.split = form == PAYLOAD_SPLIT    # Rice mini-blocks: low bits, then quotients
        start = pos + n_mini
        self.frame_length = None          # a FRAMES payload's
        if frames:
            if start >= end:
                raise _Bad(ERR_TRUNCATED)
            self.frame_length = int(buf[start])
            if self.frame_length > 63:
                raise _Bad(ERR_BAD_CODE)
            start += 1
        if start > end:
            raise _Bad(ERR_TRUNCATED)
        self._start = start
        self.section = buf[start:end]
        limit = (end - start) * 8
        headers = buf[pos:pos + n_mini].astype(np.int64)
        in_block = np.full(n_mini, MINI_BLOCK, np.int64)
        in_block[-1] = count - MINI_BLOCK * (n_mini - 1)
        packed = headers <= 64
        rice = ~packed & ((headers & 0xC0) == RICE)
        patched = (headers & 0xC0) == PATCHED
        framed = (headers >= FRAMED) & (headers < RICE)
        known = packed | framed if frames else packed | rice | ((patched | framed) & (not short))
        if not known.all():
            bad = int(np.argmin(known))     # the first undefined header
            headers, in_block, packed, rice, framed = (headers[:bad], in_block[:bad], packed[:bad],
                                                       rice[:bad], framed[:bad])
        widths = np.where(packed, headers, np.where(framed, headers - FRAMED, headers & 0x3F))
        self.widths = np.repeat(widths, in_block)
        self.quotients = np.zeros(count, np.uint64)
        self.patches = []             # (index, 2^w) of patched values
        self.frames = None            # the frame of each mini-block (0 if none), when some are framed
        self.in_block = in_block
        # the section's bytes with zeros after them: a frame is read from one
        # slice of them, whatever its length (ten bytes hold 7 + 6 + 63 bits)
        self.raw = self.section.tobytes() + bytes(10)
        self.bit_end = self._place(in_block, packed, rice, framed, widths, limit)
        if len(headers) < n_mini:
            raise _Bad(ERR_BAD_CODE)

    def _place(self, in_block, packed, rice, framed, widths, limit) -> int:
        """Fill offsets (and quotients of Rice values, patches); returns the end bit."""
        first = np.cumsum(in_block) - in_block     # index of each mini-block's first value
        index_in_block = np.arange(int(in_block.sum())) - np.repeat(first, in_block)
        sizes = in_block * widths
        if self.frame_length is not None:
            return self._place_frames(in_block, framed, sizes, index_in_block, limit)
        if packed.all():   # the common case: every start is a running sum
            starts = np.cumsum(sizes) - sizes
            self.offsets = np.repeat(starts, in_block) + index_in_block * self.widths
            bit_end = int(sizes.sum())
            if bit_end > limit:   # the first mini-block to run past the end is the error
                raise _Bad(ERR_TRUNCATED)
            return bit_end
        if (packed | framed).all():
            return self._place_framed(in_block, framed, sizes, index_in_block, limit)
        starts, rice_starts, rice_ends, rice_k, frames, low_starts = [], [], [], [], [], []
        bits = _bit_bytes(self.section) if rice.any() else b""
        ones = _OneBits(bits, limit) if self.split and rice.any() else None
        raw = self.raw
        bit = 0
        failed = None                  # a patched mini-block's status, raised after the Rice checks
        walked = 0
        for is_packed, is_rice, is_framed, width, cnt, lo in zip(
                packed.tolist(), rice.tolist(), framed.tolist(), widths.tolist(), in_block.tolist(),
                first.tolist()):
            frame = 0
            if is_framed:
                bit, frame = _frame_at(raw, bit, limit)
                if bit < 0:
                    failed = bit
                    break
            starts.append(bit)
            frames.append(frame)
            walked += 1
            if is_rice:
                rice_k.append(width)
                if self.split:                  # the low bits, then the quotients
                    low_starts.append(bit)
                    rice_starts.append(bit + cnt * width)
                    bit = ones.after(bit + cnt * width, cnt)
                else:
                    rice_starts.append(bit)
                    bit = _walk_rice(bits, limit, bit, width + 1, cnt, rice_ends)
                continue
            bit += cnt * width
            if bit > limit:
                failed = ERR_TRUNCATED
                break
            if not is_packed and not is_framed:
                bit = self._walk_patches(bit, limit, width, cnt, lo)
                if bit < 0:
                    failed = bit
                    break
        in_block, packed, rice = in_block[:walked], packed[:walked], rice[:walked]
        if framed.any():
            self.frames = np.array(frames, np.uint64)
        if ones is not None:
            rice_ends = ones.code_ends()
        stop, quotients = _rice_codes(rice_starts, rice_ends, rice_k, in_block[rice], limit,
                                      self.split)
        if failed is not None:
            raise _Bad(failed)
        self.offsets = np.repeat(np.array(starts, np.int64), in_block) + index_in_block * self.widths
        at = np.flatnonzero(np.repeat(rice, in_block))   # the Rice-coded values
        if self.split:                # each value's low bits: packed after the quotients
            self.offsets[at] = np.repeat(np.array(low_starts, np.int64), in_block[rice]) \
                + index_in_block[at] * self.widths[at]
        else:
            self.offsets[at] = stop + 1
        self.quotients[at] = quotients
        if bit > limit:
            raise _Bad(ERR_TRUNCATED)
        return bit

    def _place_frames(self, in_block, framed, sizes, index_in_block, limit) -> int:
        """_place for a FRAMES payload: every start is a running sum of the
        mini-blocks' sizes and the frames' one length, and the frames are read
        in one vector pass."""
        sizes = sizes + framed * self.frame_length
        ends = np.cumsum(sizes)
        starts = ends - sizes
        bit_end = int(ends[-1]) if len(ends) else 0
        if bit_end > limit:       # (first: no frame is then read past the section)
            raise _Bad(ERR_TRUNCATED)
        frames = np.zeros(len(sizes), np.uint64)
        frames[framed] = _bits_at(self.section, starts[framed],
                                  np.full(int(framed.sum()), self.frame_length, np.int64))
        self.offsets = np.repeat(starts + framed * self.frame_length, in_block) \
            + index_in_block * self.widths
        self.frames = frames
        return bit_end

    def _place_framed(self, in_block, framed, sizes, index_in_block, limit) -> int:
        """_place when every mini-block is bit-packed or framed (what the
        compact encoder writes most): a frame's length, read at its start,
        moves every later start, so the loop visits the framed mini-blocks
        alone, and the bit-packed ones between them are running sums."""
        packed_start = np.cumsum(sizes) - sizes      # each start, were there no frames
        raw, shift = self.raw, 0                     # shift: the frames' bits so far
        ends, values = [], []                        # each frame's: shift after it, value
        from_bytes, length_mask = int.from_bytes, (1 << FRAME_LENGTH_BITS) - 1
        # _frame_at written out (a call a frame is a fifth of the walk), and
        # no check against the limit: a frame past the section's end reads
        # zeros (a slice past raw's end is empty), and the end bit, checked
        # last, lies after every frame and value
        for at in packed_start[framed].tolist():
            bit = at + shift
            word = from_bytes(raw[bit >> 3:(bit >> 3) + 10], "little") >> (bit & 7)
            length = word & length_mask
            shift += FRAME_LENGTH_BITS + length
            ends.append(shift)
            values.append((word >> FRAME_LENGTH_BITS) & ((1 << length) - 1))
        shifts = np.zeros(len(sizes), np.int64)      # the frames' bits up to each start
        shifts[framed] = ends
        frames = np.zeros(len(sizes), np.uint64)
        frames[framed] = values
        starts = packed_start + np.maximum.accumulate(shifts)
        self.offsets = np.repeat(starts, in_block) + index_in_block * self.widths
        self.frames = frames
        bit_end = int(starts[-1] + sizes[-1])
        if bit_end > limit:
            raise _Bad(ERR_TRUNCATED)
        return bit_end

    def _walk_patches(self, bit, limit, w, cnt, lo) -> int:
        """A patched mini-block's position from ``bit`` (after its low bits):
        the bit after it, or a negative status, as payload._read_payload."""
        if bit + 5 > limit:
            return ERR_TRUNCATED
        p = self._int(bit, 5)
        if p >= cnt:
            return ERR_BAD_CODE
        self.patches.append((lo + p, 1 << w))
        return bit + 5

    def _int(self, bit, width) -> int:
        """The ``width`` bits at ``bit`` of the section (inside it), as an int."""
        return (int.from_bytes(self.raw[bit >> 3:(bit + width + 7) >> 3], "little") >> (bit & 7)) \
            & ((1 << width) - 1)

    def residuals(self) -> np.ndarray:
        """The residuals: Rice quotients or'ed with the bit-packed parts, then the patches."""
        values = self.quotients | _bits_at(self.section, self.offsets, self.widths)
        for at, high in self.patches:
            values[at] |= U64(high)
        if self.frames is not None:       # (every mini-block was walked: else _place raised)
            values += np.repeat(self.frames, self.in_block)
        return values

    def end_byte(self) -> int:
        """The byte after the payload's last bit."""
        return self._start + (self.bit_end + 7) // 8


def _frame_at(raw: bytes, bit: int, limit: int) -> tuple[int, int]:
    """A framed mini-block's frame at ``bit`` of the section's bytes ``raw``
    (ten zero bytes after them): (the bit after it, the frame), or (a
    negative status, 0), as payload._read_frame and its caller."""
    if bit + FRAME_LENGTH_BITS > limit:
        return ERR_TRUNCATED, 0
    at = bit >> 3
    word = int.from_bytes(raw[at:at + 10], "little") >> (bit & 7)
    length = word & ((1 << FRAME_LENGTH_BITS) - 1)
    after = bit + FRAME_LENGTH_BITS + length
    if after > limit:
        return ERR_TRUNCATED, 0
    return after, (word >> FRAME_LENGTH_BITS) & ((1 << length) - 1)


def _bit_bytes(section: np.ndarray) -> bytes:
    """The section's bits, one byte (0 or 1) each, LSB-first: ``bytes.find``
    then finds the next one-bit at C speed.  (A table of the next one-bit for
    every bit position, made a Python list for the walk, cost ~10 ns a bit:
    4.6 µs a value for a dictionary of float bit patterns.)"""
    return np.unpackbits(section, bitorder="little").tobytes()


class _OneBits:
    """A SPLIT section's one bits, found in one vector pass: each split Rice
    mini-block's quotients end at the ``count`` one bits from where they
    start, found by a binary search, not a walk a code at a time."""

    def __init__(self, bits: bytes, limit: int):
        self.at = np.flatnonzero(np.frombuffer(bits, np.bool_))     # (bool: 10x uint8's nonzero)
        self.limit = limit
        self.firsts, self.counts = [], []

    def after(self, start: int, count: int) -> int:
        """The bit after the count-th one bit from ``start`` (limit + 1 where
        the section has fewer), noting where each of those codes ends."""
        first = int(self.at.searchsorted(start))
        self.firsts.append(first)
        self.counts.append(count)
        last = first + count - 1
        return int(self.at[last]) + 1 if last < len(self.at) else self.limit + 1

    def code_ends(self) -> np.ndarray:
        """The bit after each noted code's one, in order (limit + 1 past the
        section's ones: _rice_codes refuses them)."""
        counts = np.array(self.counts, np.int64)
        index = np.repeat(np.array(self.firsts, np.int64), counts) + \
            np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        ends = np.full(len(index), self.limit + 1, np.int64)
        inside = index < len(self.at)
        ends[inside] = self.at[index[inside]] + 1
        return ends


def _walk_rice(bits: bytes, limit: int, bit: int, k_plus_1: int, cnt: int, ends: list) -> int:
    """One Rice(k) mini-block from ``bit``: each value is a quotient of zeros
    ended by a one, then k remainder bits.  Appends the bit after each value
    (checked afterwards, all at once, by _rice_codes) and returns the last.
    A missing one-bit reads as one at ``limit`` (the section's end), which
    _rice_codes rejects."""
    append = ends.append
    find = bits.find
    for _ in range(cnt):
        one = find(b"\x01", bit) if bit < limit else -1
        bit = (one if one >= 0 else limit) + k_plus_1
        append(bit)
    return bit


def _rice_codes(block_starts, ends, ks, counts, limit, split):
    """(position of each Rice value's terminating one-bit, its quotient << k),
    after checking every value of the walk: a one-bit found before the end of
    the section, the remainder inside it, and q << k within 64 bits.
    ``split``: the walk read the quotients alone (ends after each one-bit)."""
    ends = np.array(ends, np.int64)
    k = np.repeat(np.array(ks, np.int64), counts)
    starts = np.empty_like(ends)
    starts[1:] = ends[:-1]
    starts[np.cumsum(counts) - counts] = block_starts
    stop = ends - 1 - (0 if split else k)
    q = stop - starts
    cap_bits = 64 - k          # q must be below 2^(64 - k)
    fits = (q >> np.minimum(cap_bits, 63)) == 0
    if not ((stop < limit) & (ends <= limit) & fits).all():
        raise _Bad(ERR_TRUNCATED)
    return stop, q.astype(np.uint64) << k.astype(np.uint64)


def _bits_at(section: np.ndarray, offsets: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The ``widths[i]`` bits (0..64) at bit ``offsets[i]`` of ``section``, LSB-first;
    bits past its end read as zero.  Each value lies within two aligned words."""
    if len(offsets) == 0:
        return np.zeros(0, np.uint64)
    padded = np.zeros((len(section) + 23) // 8 * 8, np.uint8)
    padded[:len(section)] = section
    words = padded.view("<u8").astype(np.uint64, copy=False)
    at = offsets >> 6
    shift = (offsets & 63).astype(np.uint64)
    # the upper word shifted left by 64 - shift, in two steps: a shift by 64
    # (shift == 0) is not defined, two shifts that add up to 64 give zero
    value = (words[at] >> shift) | ((words[at + 1] << U64(1)) << (U64(63) - shift))
    mask = np.where(widths >= 64, _ALL_ONES,
                    (U64(1) << np.minimum(widths, 63).astype(np.uint64)) - U64(1))
    return value & mask


def unzigzag(u: np.ndarray) -> np.ndarray:
    return (u >> U64(1)) ^ (U64(0) - (u & U64(1)))


def undo_residuals(u: np.ndarray, order: int, base) -> np.ndarray:
    """Residuals back to the sequence (mod 2^64), plus ``base``."""
    if order == 0 or len(u) == 0:
        return u + base
    steps = unzigzag(u[1:])
    if order == 2:
        steps = np.cumsum(steps, dtype=np.uint64)
    out = np.empty_like(u)
    out[0] = u[0]
    np.cumsum(steps, dtype=np.uint64, out=out[1:])
    out[1:] += u[0]
    return out + base


# --- words to values (docs/format.md §3) --------------------------------------------

def time_values(words: np.ndarray, t_first: int, tick: int) -> np.ndarray:
    """Timestamps (int64 ns): t_first + word × tick, mod 2^64."""
    first = np.array(t_first, np.int64).view(np.uint64)
    return (first + words * U64(tick)).view(np.int64)


def float_values(words: np.ndarray, decimal: bool, exponent: int, is32: bool) -> np.ndarray:
    """Float words back to float64 values (float32 values are exact in float64)."""
    if decimal:
        values = words.view(np.int64).astype(np.float64) / 10.0 ** exponent
        return values.astype(np.float32).astype(np.float64) if is32 else values
    return floatbits_values(words, np.float32 if is32 else np.float64).astype(np.float64)


def floatbits_values(words: np.ndarray, dtype) -> np.ndarray:
    """Inverse of the order-preserving map, straight to the IEEE bits (so NaN
    payloads survive, which a detour through float64 would not promise)."""
    bits = 8 * np.dtype(dtype).itemsize
    sign = U64(1) << U64(bits - 1)
    ones = U64((1 << bits) - 1)
    raw = np.where(words & sign, words ^ sign, words ^ ones) & ones
    return raw.astype(np.uint32 if bits == 32 else np.uint64).view(dtype)


# --- ALP float sections (docs/format.md §3; alp.py writes them) ------------------------

ALP_HEADER_BYTES = 13     # kind, c (f64), exception count (u32)


def alp_values(buf, start: int, end: int, n: int, codec: int, dtype, mantissas=None):
    """An ALP section buf[start:end] to n values of ``dtype`` (float32 or
    float64), bit for bit: (status, values or None).  ``mantissas(begin)``
    decodes the integer section at ``begin`` (the compiled decoder, from
    block.py); by default this module's decoder does."""
    dtype = np.dtype(dtype)
    try:
        kind, c, positions, bits, begin = _alp_parts(buf, int(start), int(end), int(n), dtype)
        if mantissas is None:
            m = _decode(buf, begin, int(end), int(n), int(codec)).view(np.int64)
        else:
            m = mantissas(begin)
    except _Bad as bad:
        return bad.status, None
    if kind == 2:            # SHIFT: order-preserving words << q, a negative's low bits ones
        q = U64(c)
        words = m.view(np.uint64) << q
        sign = U64(1) << U64(8 * dtype.itemsize - 1)
        words = np.where(words & sign, words, words | ((U64(1) << q) - U64(1)))
        values = floatbits_values(words, dtype).copy()
    else:                    # NARROW (0x80): through float32, in a float64 column
        m = m.astype(np.float64)
        values = m / c if kind & 0x7F == 0 else m * c
        values = values.astype(np.float32 if kind & 0x80 else dtype).astype(dtype)
    values.view(bits.dtype)[positions] = bits
    return OK, values


def _alp_parts(buf, start, end, n, dtype):
    """(kind, c or q, exception positions, their IEEE bits, where the
    mantissas start), checked as alp.mantissa_start checks them."""
    if start + ALP_HEADER_BYTES > end:
        raise _Bad(ERR_TRUNCATED)
    kind, narrow = int(buf[start]) & 0x7F, int(buf[start]) & 0x80
    width = dtype.itemsize
    c = float(buf[start + 1:start + 9].view("<f8")[0])
    if kind == 2:            # SHIFT: the parameter is q (u64), 1 ≤ q < the value's bits
        c = int(buf[start + 1:start + 9].view("<u8")[0])
        if not 1 <= c < 8 * width:
            raise _Bad(ERR_BAD_CODE)
    elif kind > 1 or not 0.0 < c < np.inf:
        raise _Bad(ERR_BAD_CODE)
    if narrow and (width == 4 or kind == 2):      # NARROW: kinds 0, 1 of float64 columns only
        raise _Bad(ERR_BAD_CODE)
    count = int(buf[start + 9:start + 13].view("<u4")[0])
    pos = start + ALP_HEADER_BYTES
    if count > n:
        raise _Bad(ERR_LENGTH)
    if count * (2 + width) > end - pos:
        raise _Bad(ERR_TRUNCATED)
    positions = buf[pos:pos + 2 * count].view("<u2").astype(np.int64)
    if count and (positions[-1] >= n or (np.diff(positions) <= 0).any()):
        raise _Bad(ERR_BAD_CODE)
    at = pos + 2 * count
    bits = buf[at:at + width * count].view("<u4" if width == 4 else "<u8")
    return kind | narrow, c, positions, bits.astype(np.uint32 if width == 4 else np.uint64), at + width * count
