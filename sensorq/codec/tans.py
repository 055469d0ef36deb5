"""ENTROPY sections (docs/format.md §3): a section's residuals coded by tANS.

Low-entropy residual streams — a few distinct values, mostly one of them (a
1 Hz temperature in tenths: mostly 0 and ±1; a clock's steps of 15 and 16
ms) — cost a mini-block payload at least a bit a value plus its header byte,
where their entropy is well under a bit.  This form codes the residual
sequence (after the predictor and the optional dictionary, exactly as a
mini-block payload would hold it) as a small alphabet of symbols, one
distinct residual each, by table-based asymmetric numeral systems (tANS,
Duda 2013; the table spread and state layout of Collet's Finite State
Entropy): a table of 2^L states, eight interleaved states so that the
decode is eight independent chains, and a forward bit stream.

A residual stream too wide for MAX_SYMBOLS symbols but smooth (a clock's
jitter of ±20 µs in ns, a temperature's steps in thousandths) is binned, as
pcodec bins: its low b bits are stored as they are, and tANS codes the
high parts u >> b, a few dozen symbols or fewer.

Layout (after the base and the dictionary; codec bit 7, version 1 only):

    u8        L | b << 3: L (TABLE_LOG_MIN..TABLE_LOG_MAX), b low bits (0..LOW_BITS_MAX)
    u8        S - 1 (1..MAX_SYMBOLS symbols)
    S varints the symbols' values v_0 < v_1 < ... (values of u >> b), as v_0 and gaps
              v_s - v_{s-1} - 1 (v_{S-1} - v_0 < VALUE_SPAN = 2^54)
    p varints the first p = min(order, n) residuals as they are (u_0 = s_0, u_1 for order 2)
    ceil(b (n - p) / 8) bytes   the low b bits of each later residual, LSB-first
    bit stream (LSB-first, padded with zero bits to a byte; the section ends there):
        S - 1 fields of L bits: f_s - 1; f_{S-1} = 2^L - the others' sum (≥ 1)
        8 fields of L bits: the initial states x_0..x_7
        then for residual i = 0 .. n-p-1: the bits that state x_{i mod 8} reads after
        emitting it (see below); residual p + i = that symbol's value << b | its low bits

Decoding table (built by the decoder from f alone): symbol s is spread over
f_s of the 2^L slots by slot := (slot + 2^(L-1) + 2^(L-3) + 3) mod 2^L from
slot 0, symbols in order; the j-th slot of s (in slot order, j from 0) gets
k = f_s + j, nb = L - floor(log2 k) and base = k·2^nb − 2^L.  A state x
emits the value of symbol[x], then x := base[x] + the next nb bits.  Every
state stays in [0, 2^L) whatever the bits, and a stream is whole only if all
eight states end at 0 (the encoder starts them there).
"""
from __future__ import annotations

import numpy as np

from ..jitcache import cached, digest
from .bits import (ONE, U64, ZERO, bit_length, finish_bits, get_bits, load_word_unchecked, put_bits,
                   put_varint, read_varint, unpack32, varint_size, varint_status)
from .codes import ENTROPY_LOW_BITS_MAX as LOW_BITS_MAX
from .codes import ENTROPY_MAX_SYMBOLS as MAX_SYMBOLS
from .codes import ENTROPY_STATES as STATES
from .codes import ENTROPY_TABLE_LOG_MAX as TABLE_LOG_MAX
from .codes import ENTROPY_TABLE_LOG_MIN as TABLE_LOG_MIN
from .codes import ENTROPY_VALUE_SPAN_BITS, ERR_BAD_CODE, ERR_LENGTH, ERR_TRUNCATED, MINI_BLOCK, OK
from .predictor import residuals, zigzag

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)

VALUE_SPAN = ONE << U64(ENTROPY_VALUE_SPAN_BITS)     # as a uint64: compared with uint64 gaps
_HASH_SLOTS = 256          # ≥ 4 × MAX_SYMBOLS: linear probing stays short
_MAX_SLOTS = 1 << TABLE_LOG_MAX
# Zero bytes after a copy of a payload's low bits: the vector unpacker reads
# a whole 32 fields (and a word more) where the last 32 are fewer.
_LOW_BITS_PADDING = MINI_BLOCK * LOW_BITS_MAX // 8 + 16

# The prices, in bits, that the encoder adds to an ENTROPY section's size
# before comparing it with the mini-block payload (the decode time it costs,
# as RICE_DECODE_COST prices Rice's).  Measured on the development machine:
# see docs/format.md §3.
ENTROPY_DECODE_COST = 0.5  # per residual: a tANS step against a vector-unpacked value
ENTROPY_SLOT_COST = 1.0    # per table slot: building the decoding table
ENTROPY_LOW_BITS_DECODE_COST = 0.15   # per residual of a binned payload: its low bits put back (~0.15 ns)


@cached(_STAMP, nogil=True, inline="always")
def low_bits_bytes(low_bits, count):
    """Bytes that ``count`` fields of ``low_bits`` bits take, LSB-first and
    padded to a byte: a binned payload's low bits (the encoder's price, both
    readers' skip and copy)."""
    return (low_bits * count + 7) // 8


# --- the table -----------------------------------------------------------------

@cached(_STAMP, nogil=True)
def spread(freqs, n_symbols, table_log, slot_symbol):
    """slot_symbol[:2^L] := the symbol of each slot."""
    size = 1 << table_log
    step = (size >> 1) + (size >> 3) + 3
    slot = 0
    for s in range(n_symbols):
        for _ in range(freqs[s]):
            slot_symbol[slot] = s
            slot = (slot + step) & (size - 1)


@cached(_STAMP, nogil=True)
def _decoding_table(freqs, n_symbols, table_log, values, offset, table, next_k):
    """table[x] := (symbol[x]'s value − offset) << 10 | base << 3 | nb.
    ``next_k``: working space (n_symbols)."""
    size = 1 << table_log
    spread(freqs, n_symbols, table_log, table)
    for s in range(n_symbols):
        next_k[s] = freqs[s]
    for x in range(size):
        s = table[x]
        k = next_k[s]
        next_k[s] = k + 1
        nb = table_log + 1 - bit_length(U64(k))
        table[x] = np.int64(((values[s] - offset) << U64(10))) | (((k << nb) - size) << 3) | nb


# --- encoding ------------------------------------------------------------------

@cached(_STAMP, nogil=True, inline="always")
def _hash_slot(v):
    return np.int64((v * U64(0x9E3779B97F4A7C15)) >> U64(56))


@cached(_STAMP, nogil=True)
def _hashed_symbols(u, lead, values, counts):
    """The distinct values of u[lead:] (ascending) and their counts through
    an open hash table: how many, or -1 as soon as there are more than
    MAX_SYMBOLS (noise-like residuals give up within a few dozen values)."""
    keys = np.empty(_HASH_SLOTS, np.uint64)
    tally = np.zeros(_HASH_SLOTS, np.int64)
    distinct = 0
    for i in range(lead, u.shape[0]):
        v = u[i]
        h = _hash_slot(v)
        while tally[h] != 0 and keys[h] != v:
            h = (h + 1) & (_HASH_SLOTS - 1)
        if tally[h] == 0:
            distinct += 1
            if distinct > MAX_SYMBOLS:
                return -1
            keys[h] = v
        tally[h] += 1
    at = 0
    for h in range(_HASH_SLOTS):
        if tally[h]:
            values[at] = keys[h]
            counts[at] = tally[h]
            at += 1
    for i in range(1, distinct):     # ≤ 64 of them: an insertion sort (argsort compiles for seconds)
        v, c = values[i], counts[i]
        j = i
        while j > 0 and values[j - 1] > v:
            values[j], counts[j] = values[j - 1], counts[j - 1]
            j -= 1
        values[j], counts[j] = v, c
    return distinct


# Residuals below this are counted in a table indexed by value (a pass that
# does not branch on the data), not hashed.
_DIRECT_RANGE = 1 << 12


@cached(_STAMP, nogil=True)
def symbols(u, lead, values, counts):
    """:func:`_hashed_symbols`, by a table indexed by value when every
    residual is below _DIRECT_RANGE (a few times faster: ingest)."""
    n = u.shape[0]
    if lead >= n:
        return -1
    top = u[lead:].max()
    if top >= U64(_DIRECT_RANGE):
        return _hashed_symbols(u, lead, values, counts)
    # four tallies, a value to each in turn: a run of one value (the common
    # case) then does not wait on its own last increment.  New values are
    # counted as they come, so that a column of more than MAX_SYMBOLS stops
    # early (Daphnet's: at a few hundred of 4096; counting them all made
    # ingest ~20 % slower)
    width = np.int64(top) + 1
    tally = np.zeros(4 * width, np.int64)
    seen = np.zeros(width, np.uint8)
    new = 0
    i = lead
    while i + 4 <= n:
        a, b, c, d = u[i], u[i + 1], u[i + 2], u[i + 3]
        tally[a] += 1
        tally[U64(width) + b] += 1
        tally[U64(2 * width) + c] += 1
        tally[U64(3 * width) + d] += 1
        if seen[a] == 0 or seen[b] == 0 or seen[c] == 0 or seen[d] == 0:     # rare: a new value
            for v in (a, b, c, d):
                new += seen[v] == 0
                seen[v] = 1
            if new > MAX_SYMBOLS:
                return -1
        i += 4
    for j in range(i, n):
        tally[u[j]] += 1
    distinct = 0
    for v in range(width):
        count = tally[v] + tally[width + v] + tally[2 * width + v] + tally[3 * width + v]
        if count:
            if distinct == MAX_SYMBOLS:
                return -1
            values[distinct] = U64(v)
            counts[distinct] = count
            distinct += 1
    return distinct


# The encoder looks at this many residuals of each order, spread evenly over
# the column, before making them all: more than MAX_SYMBOLS distinct ones
# there, and the order is skipped.  (The first ones alone would not do:
# Daphnet's blocks start quiet, 11-56 distinct residuals in the first 256,
# 113-890 in all 4096.)
SAMPLE = 256


@cached(_STAMP, nogil=True)
def sampled_residuals(s, order, sample):
    """Order-``order`` residuals (predictor.residuals) of s at up to SAMPLE
    evenly spread positions past the first ``order``: a view of ``sample``."""
    n = s.shape[0]
    count = min(sample.shape[0], max(n - order, 0))
    step = max(1, (n - order) // max(count, 1))
    for k in range(count):
        i = order + k * step
        if order == 0:
            d = s[i]
        elif order == 1:
            d = s[i] - s[i - 1]
        else:
            d = s[i] - U64(2) * s[i - 1] + s[i - 2]
        sample[k] = d if order == 0 else zigzag(d)
    return sample[:count]


@cached(_STAMP, nogil=True)
def normalize(counts, n_symbols, total, table_log, freqs):
    """freqs[:S] := counts scaled to sum to 2^L, each ≥ 1 (S ≤ 2^L)."""
    size = 1 << table_log
    placed = 0
    for s in range(n_symbols):
        f = max(1, np.int64(counts[s] * size / total + 0.5))
        freqs[s] = f
        placed += f
    while placed != size:
        biggest = 0
        for s in range(n_symbols):
            if freqs[s] > freqs[biggest]:
                biggest = s
        if placed < size:
            freqs[biggest] += size - placed
            placed = size
        else:
            take = min(placed - size, freqs[biggest] - 1)
            freqs[biggest] -= take
            placed -= take


@cached(_STAMP, nogil=True)
def plan(u, order, low_bits, values, counts, freqs):
    """Price the ENTROPY form of residuals u with ``low_bits`` low bits
    stored as they are: (bytes, L, S), or (-1, 0, 0) when it cannot be used
    (more than MAX_SYMBOLS distinct symbols u >> low_bits).  values, counts
    (MAX_SYMBOLS each): the symbols in ascending order and their counts;
    freqs: their normalized counts at the L returned.  The bytes include the
    ENTROPY_*_COST prices, rounded up."""
    n = u.shape[0]
    lead = min(order, n)
    n_symbols = symbols(u >> U64(low_bits) if low_bits else u, lead, values, counts)
    if n_symbols <= 0 or values[n_symbols - 1] - values[0] >= VALUE_SPAN:
        return -1, 0, 0
    m = n - lead
    fixed = 2 * 8 + 8 * low_bits_bytes(low_bits, m)
    if low_bits:
        fixed += ENTROPY_LOW_BITS_DECODE_COST * m
    for s in range(n_symbols):
        gap = values[s] if s == 0 else values[s] - values[s - 1] - ONE
        fixed += 8 * varint_size(gap)
    for i in range(lead):
        fixed += 8 * varint_size(u[i])
    best_bits, best_log = np.inf, 0
    trial = np.empty(MAX_SYMBOLS, np.int64)
    for table_log in range(TABLE_LOG_MIN, TABLE_LOG_MAX + 1):
        if (1 << table_log) < n_symbols:
            continue
        normalize(counts, n_symbols, max(m, 1), table_log, trial)
        bits = (n_symbols - 1 + STATES) * table_log + ENTROPY_SLOT_COST * (1 << table_log)
        for s in range(n_symbols):
            bits += counts[s] * (table_log - np.log2(trial[s]))
        if bits < best_bits:
            best_bits, best_log = bits, table_log
            for s in range(n_symbols):
                freqs[s] = trial[s]
    # (one symbol, every residual the same, decodes as a fill, yet is priced
    # the same: a steady clock's time column, 128 bytes of width-0 mini-block
    # headers a block otherwise, decoded ~6 % slower in the synthetic set of
    # bench_storage.py when it took this form at no price)
    total = fixed + best_bits + ENTROPY_DECODE_COST * m
    return np.int64(np.ceil(total / 8.0)) + 1, best_log, n_symbols


@cached(_STAMP, nogil=True)
def _symbol_indices(u, lead, values, n_symbols):
    """The symbol of each of u[lead:]: by a table indexed by value when the
    values are small, else through a hash table of them."""
    m = u.shape[0] - lead
    symbol_of = np.empty(m, np.int64)
    if values[n_symbols - 1] < U64(_DIRECT_RANGE):
        direct = np.zeros(np.int64(values[n_symbols - 1]) + 1, np.int64)
        for s in range(n_symbols):
            direct[values[s]] = s
        for i in range(m):
            symbol_of[i] = direct[u[lead + i]]
        return symbol_of
    keys = np.empty(_HASH_SLOTS, np.uint64)
    index = np.full(_HASH_SLOTS, -1, np.int64)
    for s in range(n_symbols):
        h = _hash_slot(values[s])
        while index[h] >= 0:
            h = (h + 1) & (_HASH_SLOTS - 1)
        keys[h] = values[s]
        index[h] = s
    for i in range(m):
        h = _hash_slot(u[lead + i])
        while keys[h] != u[lead + i]:
            h = (h + 1) & (_HASH_SLOTS - 1)
        symbol_of[i] = index[h]
    return symbol_of


@cached(_STAMP, nogil=True)
def write(u, order, low_bits, values, freqs, table_log, n_symbols, out, pos):
    """The ENTROPY payload of residuals u with ``low_bits`` low bits stored
    as they are at out[pos:] (values, freqs as :func:`plan` left them);
    returns the end offset."""
    n = u.shape[0]
    lead = min(order, n)
    m = n - lead
    size = 1 << table_log
    out[pos] = np.uint8(table_log | (low_bits << 3))
    out[pos + 1] = np.uint8(n_symbols - 1)
    pos += 2
    for s in range(n_symbols):
        pos = put_varint(out, pos, values[s] if s == 0 else values[s] - values[s - 1] - ONE)
    for i in range(lead):
        pos = put_varint(out, pos, u[i])
    if low_bits:
        byte_pos, bits, n_bits = pos, ZERO, 0
        for i in range(lead, n):
            byte_pos, bits, n_bits = put_bits(out, byte_pos, bits, n_bits, u[i], low_bits)
        pos = finish_bits(out, byte_pos, bits, n_bits)
        u = u >> U64(low_bits)
    symbol_of = _symbol_indices(u, lead, values, n_symbols)
    # encoding table: the slots of symbol s in slot order, from first[s]
    slot_symbol = np.empty(size, np.int64)
    spread(freqs, n_symbols, table_log, slot_symbol)
    first = np.empty(n_symbols, np.int64)
    acc = 0
    for s in range(n_symbols):
        first[s] = acc
        acc += freqs[s]
    seen = first.copy()
    slots = np.empty(size, np.int64)
    for x in range(size):
        s = slot_symbol[x]
        slots[seen[s]] = x
        seen[s] += 1
    # encode backwards (ANS is last in, first out); the bits are written forwards
    states = np.full(STATES, size, np.int64)
    chunk = np.empty(m, np.uint64)
    widths = np.empty(m, np.int64)
    for i in range(m - 1, -1, -1):
        s = symbol_of[i]
        f = freqs[s]
        j = i & (STATES - 1)
        x = states[j]
        nb = max(0, table_log - bit_length(U64(f)))
        if (x >> nb) >= 2 * f:
            nb += 1
        chunk[i] = U64(x & ((1 << nb) - 1))
        widths[i] = nb
        states[j] = size + slots[first[s] + (x >> nb) - f]
    byte_pos, bits, n_bits = pos, ZERO, 0
    for s in range(n_symbols - 1):
        byte_pos, bits, n_bits = put_bits(out, byte_pos, bits, n_bits, U64(freqs[s] - 1), table_log)
    for j in range(STATES):
        byte_pos, bits, n_bits = put_bits(out, byte_pos, bits, n_bits, U64(states[j] - size), table_log)
    # the symbols' bits (≤ 7 each), written here: a put_bits call a value cost ~7 ns
    for i in range(m):
        if n_bits >= 32:     # (put_bits leaves up to 63: flushed before a symbol's bits go in)
            for b in range(4):
                out[byte_pos + b] = np.uint8((bits >> U64(8 * b)) & U64(0xFF))
            byte_pos += 4
            bits >>= U64(32)
            n_bits -= 32
        bits |= chunk[i] << U64(n_bits)
        n_bits += widths[i]
    return finish_bits(out, byte_pos, bits, n_bits)


# A binned order is priced at the fewest low bits that leave MAX_SYMBOLS
# symbols in its sample and at up to BINS_TRIED - 1 more (fewer symbols fit
# tANS's 2^7 slots better: a temperature in thousandths is cheapest at 3-4
# low bits where 1 already fits; a uniform jitter with about 5 symbols left),
# until the cost has risen twice in a row.
BINS_TRIED = 8


@cached(_STAMP, nogil=True)
def _fewest_low_bits(sample, binned, values, counts):
    """(b, S): the fewest low bits b (0, or up to LOW_BITS_MAX if
    ``binned``) for which the sample's u >> b take at most MAX_SYMBOLS
    values, S of them, left in values and counts (_hashed_symbols);
    (-1, 0) if none."""
    n_symbols = _hashed_symbols(sample, 0, values, counts)
    if n_symbols >= 0:
        return 0, n_symbols
    if not binned:
        return -1, 0
    b = max(1, bit_length(sample.max() - sample.min()) - 8)      # (fewer would leave > 2^8 values)
    while b <= LOW_BITS_MAX:
        n_symbols = _hashed_symbols(sample >> U64(b), 0, values, counts)
        if n_symbols >= 0:
            return b, n_symbols
        b += 1
    return -1, 0


@cached(_STAMP, nogil=True)
def _sample_bits(counts, n_symbols, n, low_bits):
    """Bits a value of a sample of n residuals whose u >> low_bits take
    n_symbols values with these counts: their empirical entropy plus the
    low bits, a lower bound on the binned form's cost (a small sample's
    entropy is low), to skip the whole column's pricing where it cannot
    win (noise)."""
    bits = 0.0
    for k in range(n_symbols):
        bits -= counts[k] * np.log2(counts[k] / n)
    return bits / max(n, 1) + low_bits


@cached(_STAMP, nogil=True)
def best_order(s, payload_bytes, binned, u, values, freqs):
    """(order, bytes, L, symbols, low bits) of the predictor order whose
    ENTROPY form (:func:`plan`, decode cost included) is smallest and
    smaller than ``payload_bytes``, or order -1.  Its symbols and
    frequencies are left in values and freqs.  Every order is tried: a
    low-entropy stream's best order for tANS is often not the one of the
    smallest residuals (a clock of steps 10 and 250: two symbols under order
    1, many under order 2).  An order whose SAMPLE sampled residuals take
    more than MAX_SYMBOLS values (noise) is skipped before the rest are
    made, unless ``binned`` allows low bits: then the order is priced at
    the low bits that bring its sample within MAX_SYMBOLS values, and more
    (BINS_TRIED), where the sample's entropy says it could win."""
    trial_values = np.empty(MAX_SYMBOLS, np.uint64)
    counts = np.empty(MAX_SYMBOLS, np.int64)
    trial_freqs = np.empty(MAX_SYMBOLS, np.int64)
    best_order, best_bytes, best_log, best_symbols, best_low = -1, payload_bytes, 0, 0, 0
    sample = np.empty(SAMPLE, np.uint64)
    n = s.shape[0]
    for order in range(3):
        sampled = sampled_residuals(s, order, sample)
        fewest, sampled_symbols = _fewest_low_bits(sampled, binned, trial_values, counts)
        if fewest < 0 or fewest and \
                _sample_bits(counts, sampled_symbols, sampled.shape[0], fewest) * n >= 8 * best_bytes:
            continue
        residuals(s, order, u)
        rising, last = 0, -1
        for low_bits in range(fewest, min(fewest + BINS_TRIED, LOW_BITS_MAX + 1) if binned else 1):
            size, table_log, n_symbols = plan(u, order, low_bits, trial_values, counts, trial_freqs)
            if 0 <= size < best_bytes:
                best_order, best_bytes, best_log, best_symbols, best_low = \
                    order, size, table_log, n_symbols, low_bits
                for k in range(n_symbols):      # (a slice copy compiles numba's shape error)
                    values[k] = trial_values[k]
                    freqs[k] = trial_freqs[k]
            if size >= 0:            # (-1: too many symbols in the whole column yet)
                rising = rising + 1 if last >= 0 and size > last else 0
                if rising == 2:      # past this order's cheapest
                    break
                last = size
    return best_order, best_bytes, best_log, best_symbols, best_low


@cached(_STAMP, nogil=True)
def write_column(s, order, low_bits, u, values, freqs, table_log, n_symbols, out, pos):
    """The ENTROPY payload of s's order-``order`` residuals (made in u) at
    out[pos:], as :func:`best_order` planned it; returns the end offset."""
    residuals(s, order, u)
    return write(u, order, low_bits, values, freqs, table_log, n_symbols, out, pos)


# --- decoding ------------------------------------------------------------------

@cached(_STAMP, nogil=True)
def _next_state(entry, word, offset):
    """A state's successor: its base plus its nb bits at ``offset`` of ``word``."""
    nb = entry & U64(7)
    return np.int64(((entry >> U64(3)) & U64(0x7F)) + ((word >> offset) & ((ONE << nb) - ONE)))


@cached(_STAMP, nogil=True)
def _initial_states(buf, start, end, bit_pos, table_log):
    """The eight L-bit initial states: 8 L ≤ 56 bits, so one read of them all
    (eight reads compiled to eight bounded loads: seconds of cold compile)."""
    w = get_bits(buf, start, end, bit_pos, STATES * table_log)
    L = U64(table_log)
    mask = (ONE << L) - ONE
    return (np.int64(w & mask), np.int64((w >> L) & mask),
            np.int64((w >> (2 * L)) & mask), np.int64((w >> (3 * L)) & mask),
            np.int64((w >> (4 * L)) & mask), np.int64((w >> (5 * L)) & mask),
            np.int64((w >> (6 * L)) & mask), np.int64((w >> (7 * L)) & mask))


@cached(_STAMP, nogil=True)
def read(buf, pos, end, n, order, out):
    """Residuals of the ENTROPY payload buf[pos:end] into out[:n]; returns a
    status.  Reads nothing outside buf[pos:end]; every table index is a
    state, which stays in [0, 2^L) by construction."""
    if pos + 2 > end:
        return ERR_TRUNCATED
    table_log = np.int64(buf[pos]) & 7
    low_bits = np.int64(buf[pos]) >> 3
    n_symbols = np.int64(buf[pos + 1]) + 1
    if table_log < TABLE_LOG_MIN or table_log > TABLE_LOG_MAX or low_bits > LOW_BITS_MAX \
            or n_symbols > MAX_SYMBOLS or n_symbols > (1 << table_log):
        return ERR_BAD_CODE
    pos += 2
    if n_symbols == 1:
        return _read_one_symbol(buf, pos, end, n, order, table_log, low_bits, out)
    # (no array views here: numba compiles a view's error messages, seconds
    # of cold compile; each allocation costs ~50 ns against a few µs a section)
    values = np.empty(MAX_SYMBOLS, np.uint64)
    freqs = np.empty(MAX_SYMBOLS, np.int64)
    for s in range(n_symbols):
        v, pos = read_varint(buf, pos, end)
        if pos < 0:
            return varint_status(v)
        if s:
            v += values[s - 1] + ONE
            if v <= values[s - 1]:           # past 2^64: not ascending
                return ERR_BAD_CODE
        values[s] = v
    if values[n_symbols - 1] - values[0] >= VALUE_SPAN:
        return ERR_BAD_CODE
    lead = min(order, n)
    for i in range(lead):
        out[i], pos = read_varint(buf, pos, end)
        if pos < 0:
            return varint_status(out[i])
    low_start = pos
    pos += low_bits_bytes(low_bits, n - lead)
    if pos > end:
        return ERR_TRUNCATED
    # The stream, copied with 16 zero bytes after it: the decode loop then
    # loads words unchecked and tests only that it has not passed the end.
    stream = _padded_copy(buf, pos, end - pos, 16)
    limit = (end - pos) * 8
    size = 1 << table_log
    bit_pos = np.int64(0)
    placed = 0
    for s in range(n_symbols - 1):
        freqs[s] = np.int64(get_bits(stream, 0, end - pos, bit_pos, table_log)) + 1
        placed += freqs[s]
        bit_pos += table_log
    freqs[n_symbols - 1] = size - placed
    if bit_pos + STATES * table_log > limit:
        return ERR_TRUNCATED
    if placed >= size:
        return ERR_BAD_CODE
    table = np.empty(size, np.int64)
    # The slots hold the symbols' values themselves when they fit the slot's
    # 54 bits (then the decode loop adds nothing: ~8 % of a step), else
    # their offsets from v_0, added after the loop
    offset = values[0] if values[n_symbols - 1] >= VALUE_SPAN else ZERO
    _decoding_table(freqs, n_symbols, table_log, values, offset, table, np.empty(MAX_SYMBOLS, np.int64))
    status, bit_pos = _decode_states(stream, bit_pos, limit, table_log, table, out[lead:n])
    if offset != ZERO:
        for i in range(lead, n):
            out[i] += offset
    if status != OK:
        return status
    if (bit_pos + 7) // 8 != end - pos:
        return ERR_LENGTH
    if low_bits:
        _put_back_low_bits(buf, low_start, low_bits, out, lead, n)
    return OK


@cached(_STAMP, nogil=True)
def _padded_copy(buf, start, size, padding):
    """buf[start:start + size] in a new array with ``padding`` zero bytes
    after it, so that a decoder may load words past its end unchecked.  A
    loop, as a slice copy compiles numba's shape error; with unsigned
    indices (no negative-index fix-up) LLVM makes it a block copy: ~80 ns
    for 1.6 KB, where signed ones copied a byte at a time (~1.3 µs, a fifth
    of a section's decode).  Only the padding is zeroed (np.zeros wrote the
    whole array before the copy wrote it again)."""
    copy = np.empty(size + padding, np.uint8)
    at = U64(start)
    for i in range(U64(size)):
        copy[i] = buf[at + i]
    for i in range(U64(size), U64(size + padding)):
        copy[i] = 0
    return copy


@cached(_STAMP, nogil=True)
def _put_back_low_bits(buf, start, low_bits, out, lead, n):
    """out[i] := out[i] << b | the (i - lead)-th b-bit field from byte
    ``start`` of buf, for i from lead to n (the caller has checked that the
    fields lie in the section).  The fields are unpacked 32 at a time by the
    vector unpacker (each 32 start on a byte: 32 b bits), from a copy
    padded with zero bytes for the last 32's reads, then put in by a vector
    pass: ~0.15 ns a value, where extracting each field in the tANS loop
    cost ~0.45."""
    b = U64(low_bits)
    m = n - lead
    size = low_bits_bytes(low_bits, m)
    fields = _padded_copy(buf, start, size, _LOW_BITS_PADDING)
    low = np.empty(MINI_BLOCK, np.uint64)
    for g in range((m + MINI_BLOCK - 1) // MINI_BLOCK):
        unpack32(fields, U64(g) * U64(MINI_BLOCK // 8) * b, 0, low_bits, low, 0)
        first = U64(lead) + U64(g * MINI_BLOCK)
        for i in range(U64(min(MINI_BLOCK, m - g * MINI_BLOCK))):
            out[first + i] = (out[first + i] << b) | low[i]


@cached(_STAMP, nogil=True)
def _read_one_symbol(buf, pos, end, n, order, table_log, low_bits, out):
    """:func:`read` of a payload of one symbol (every residual the same: a
    steady clock's, or every residual's high part), from its value on, with
    no tables: no bits a symbol, so the states never move and must be 0,
    and the residuals are a fill (then their low bits, if any)."""
    value, pos = read_varint(buf, pos, end)
    if pos < 0:
        return varint_status(value)
    lead = min(order, n)
    for i in range(lead):
        out[i], pos = read_varint(buf, pos, end)
        if pos < 0:
            return varint_status(out[i])
    low_start = pos
    pos += low_bits_bytes(low_bits, n - lead)
    if pos > end:
        return ERR_TRUNCATED
    bits = STATES * table_log
    if bits > (end - pos) * 8:
        return ERR_TRUNCATED
    if get_bits(buf, pos, end, 0, bits) != ZERO:      # the eight states, ≤ 56 bits
        return ERR_BAD_CODE
    if pos + (bits + 7) // 8 != end:
        return ERR_LENGTH
    for i in range(U64(lead), U64(n)):      # unsigned: a vector fill (see read's copy)
        out[i] = value
    if low_bits:
        _put_back_low_bits(buf, low_start, low_bits, out, lead, n)
    return OK


@cached(_STAMP, nogil=True)
def _decode_states(stream, bit_pos, limit, table_log, table, out):
    """The states from ``bit_pos`` of ``stream`` (zero-padded by 16 bytes
    past ``limit`` bits), then every symbol of out (its value in the
    table's slot: the caller adds the table's offset).  Returns (status,
    the bit after the stream).

    Eight symbols a step, their bits (≤ 8 L ≤ 56) taken from one 64-bit
    word loaded at the step's byte (so ≤ 7 + 56 bits are needed of it)."""
    x0, x1, x2, x3, x4, x5, x6, x7 = _initial_states(stream, 0, stream.shape[0], bit_pos, table_log)
    bit_pos += STATES * table_log
    m = out.shape[0]
    steps = m // STATES
    ten = U64(10)
    for step in range(steps):
        if bit_pos > limit:              # a stream cut short: stop before the padding ends
            return ERR_TRUNCATED, bit_pos
        word = load_word_unchecked(stream, U64(bit_pos >> 3)) >> U64(bit_pos & 7)
        e0, e1, e2, e3 = U64(table[U64(x0)]), U64(table[U64(x1)]), U64(table[U64(x2)]), U64(table[U64(x3)])
        e4, e5, e6, e7 = U64(table[U64(x4)]), U64(table[U64(x5)]), U64(table[U64(x6)]), U64(table[U64(x7)])
        at = U64(step * STATES)
        out[at] = e0 >> ten
        out[at + U64(1)] = e1 >> ten
        out[at + U64(2)] = e2 >> ten
        out[at + U64(3)] = e3 >> ten
        out[at + U64(4)] = e4 >> ten
        out[at + U64(5)] = e5 >> ten
        out[at + U64(6)] = e6 >> ten
        out[at + U64(7)] = e7 >> ten
        o1 = e0 & U64(7)
        o2 = o1 + (e1 & U64(7))
        o3 = o2 + (e2 & U64(7))
        o4 = o3 + (e3 & U64(7))
        o5 = o4 + (e4 & U64(7))
        o6 = o5 + (e5 & U64(7))
        o7 = o6 + (e6 & U64(7))
        x0 = _next_state(e0, word, ZERO)
        x1 = _next_state(e1, word, o1)
        x2 = _next_state(e2, word, o2)
        x3 = _next_state(e3, word, o3)
        x4 = _next_state(e4, word, o4)
        x5 = _next_state(e5, word, o5)
        x6 = _next_state(e6, word, o6)
        x7 = _next_state(e7, word, o7)
        bit_pos += np.int64(o7 + (e7 & U64(7)))
    if bit_pos > limit:
        return ERR_TRUNCATED, bit_pos
    states = np.empty(STATES, np.int64)
    states[0], states[1], states[2], states[3] = x0, x1, x2, x3
    states[4], states[5], states[6], states[7] = x4, x5, x6, x7
    for i in range(steps * STATES, m):      # the last few (< 8): the bit reads stay in the padding
        j = i & (STATES - 1)
        e = U64(table[U64(states[j])])
        out[i] = e >> ten
        states[j] = _next_state(e, get_bits(stream, 0, stream.shape[0], bit_pos, table_log), ZERO)
        bit_pos += np.int64(e & U64(7))
    if bit_pos > limit:
        return ERR_TRUNCATED, bit_pos
    for j in range(STATES):
        if states[j]:
            return ERR_BAD_CODE, bit_pos
    return OK, bit_pos
