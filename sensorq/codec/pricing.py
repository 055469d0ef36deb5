"""The integer codec's analysis pass (docs/format.md §3): the price of each
mini-block's coding (bit-packed, framed, Rice, patched) and the predictor
order a column's section takes.  Prices are bits, decode time priced in bits
too (RICE_DECODE_COST in intcodec.py, PATCH_COST, FRAME_COST), so that a
slower form is taken only where it saves more than it costs to read.
"""
from __future__ import annotations

import numpy as np

from ..jitcache import cached, digest
from .bits import ONE, U64, ZERO, bit_length, range32
from .codes import FRAME_LENGTH_BITS, FRAMED, FRAMED_MAX_WIDTH, MINI_BLOCK, PATCHED, RICE
from .predictor import residuals

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)

# A Rice quotient above this makes the mini-block cheaper to bit-pack anyway;
# the encoder uses it to stop pricing early.
_RICE_QUOTIENT_CAP = 1 << 12


@cached(_STAMP, nogil=True)
def _rice_bits(u, lo, hi, k):
    """Bits of Rice(k) for u[lo:hi], or -1 when a quotient is absurdly long."""
    total = 0
    for i in range(lo, hi):
        q = u[i] >> U64(k)
        if q > U64(_RICE_QUOTIENT_CAP):
            return -1
        total += np.int64(q) + 1 + k
    return total


@cached(_STAMP, nogil=True)
def _rice_floor(mean, count, k_lo, k_hi):
    """A lower bound of the Rice bits of ``count`` values of this mean, for
    every k in [k_lo, k_hi): u >> k >= (u - 2^k + 1) / 2^k, so the bits are at
    least count * (mean / 2^k + 2^-k + k).  Noise-like residuals, whose Rice
    code saves about a bit a value, fail the price on this bound alone, so
    the encoder skips their pricing passes (ingest: 17 -> ~6 ns a value).
    Shaved by a bit and a part in 10^9 against float rounding."""
    floor = np.inf
    for k in range(k_lo, k_hi):
        scale = np.float64(ONE << U64(k))
        floor = min(floor, count * ((mean + 1.0) / scale + k))
    return floor * (1.0 - 1e-9) - 1.0


# A patched mini-block (docs/format.md §3): bit-packed one bit narrower than
# its largest value, which alone needs that bit, and that value's position.
# Its decoder does one read and one or more than a bit-packed one's (~1 ns):
# priced in bits as Rice is (RICE_DECODE_COST), it must save more than this.
PATCH_COST = 4
PATCH_POSITION = 5           # bits of the patched value's position in its mini-block

# A framed mini-block (docs/format.md §3): its residuals less their smallest,
# the frame, which is written before them.  Its decoder reads the frame (two
# short reads) and adds it to the 32 values (a few vector adds): priced as
# PATCH_COST is.  Noise-like order-0 samples (a 1 kHz accelerometer's) need a
# bit a value fewer framed than as order-1 residuals, whose differences have
# twice the variance, and a count compares a framed mini-block's range with
# its threshold before unpacking it (intcount.py).
FRAME_COST = 2


@cached(_STAMP, nogil=True)
def choose_mini_blocks(u, rice_cost, headers, patches):
    """Pick each mini-block's coding (header byte) and return the payload bits.

    ``rice_cost``: bits per value a Rice mini-block must save over bit-packing
    to be taken (its price in decode time: a Rice value decodes several times
    slower than a bit-packed one); negative: bit-packing only.  ``patches``:
    patched mini-blocks may be taken too (version 1, float sections)."""
    n = u.shape[0]
    total = 0
    for m in range((n + MINI_BLOCK - 1) // MINI_BLOCK):
        lo = m * MINI_BLOCK
        hi = min(n, lo + MINI_BLOCK)
        biggest, smallest = ZERO, u[lo]
        mean = 0.0
        for i in range(lo, hi):
            biggest = max(biggest, u[i])
            smallest = min(smallest, u[i])
            mean += float(u[i])
        width = bit_length(biggest)
        best_bits = (hi - lo) * width
        header = width
        if rice_cost >= 0.0 and width > 1:
            mean /= hi - lo
            estimate = bit_length(U64(mean)) - 1 if mean >= 1.0 else 0
            k_lo, k_hi = max(0, estimate - 1), min(63, estimate + 2)
            packed = best_bits
            # (one price at every k: split Rice decodes alike whatever its k, codes.SPLIT)
            if _rice_floor(mean, hi - lo, k_lo, k_hi) >= packed - rice_cost * (hi - lo):
                k_hi = k_lo     # no k can pay its price: skip the pricing passes
            for k in range(k_lo, k_hi):
                bits = _rice_bits(u, lo, hi, k)
                if bits >= 0 and bits < packed - rice_cost * (hi - lo) \
                        and (header < 0x80 or bits < best_bits):
                    best_bits = bits
                    header = 0x80 | k
        if patches and rice_cost >= 0.0 and width > 0:
            bits = (hi - lo) * (width - 1) + PATCH_POSITION
            if bits + PATCH_COST < _decode_priced(header, best_bits, rice_cost, hi - lo) \
                    and _alone_at_width(u, lo, hi, width):
                best_bits = bits
                header = PATCHED | (width - 1)
        bits, framed_width = _framed_bits(smallest, biggest, hi - lo)
        if bits >= 0 and bits + FRAME_COST < _decode_priced(header, best_bits, rice_cost, hi - lo):
            best_bits = bits
            header = FRAMED + framed_width
        headers[m] = header
        total += best_bits
    return total


@cached(_STAMP, nogil=True, inline="always")
def _decode_priced(header, bits, rice_cost, count):
    """A mini-block's bits plus its decode price (in bits, as choose_mini_blocks
    weighs them): Rice's rice_cost a value, a patched one's PATCH_COST."""
    if header & PATCHED == PATCHED:
        return bits + PATCH_COST
    if header & RICE:
        return bits + rice_cost * count
    return np.float64(bits)


@cached(_STAMP, nogil=True)
def _alone_at_width(u, lo, hi, width):
    """Whether exactly one of u[lo:hi] needs ``width`` bits (the others fewer)."""
    top = U64(1) << U64(width - 1)
    count = 0
    for i in range(lo, hi):
        count += u[i] >= top
    return count == 1


@cached(_STAMP, nogil=True)
def _payload_bytes(s, order, rice_cost, u, headers, patches):
    n = s.shape[0]
    residuals(s, order, u)
    bits = choose_mini_blocks(u, rice_cost, headers, patches)
    return (n + MINI_BLOCK - 1) // MINI_BLOCK + (bits + 7) // 8


# An integer channel's order-0 payload is what a count settles mini-block by
# mini-block by its range, without unpacking it (tally.py; frame maps read
# FRAMES sections, which hold no Rice): a Rice mini-block it must decode
# whole.  There the encoder prices Rice at least this, as it priced every
# Rice mini-block before they were split: a noisy axis keeps its framed,
# settled mini-blocks and its FRAMES sections.
RICE_SETTLE_COST = 2.5


@cached(_STAMP, nogil=True, inline="always")
def order_rice_cost(order, rice_cost, settled):
    """The Rice price of a payload of predictor ``order``: ``rice_cost``, or
    at least RICE_SETTLE_COST for an order-0 one where ``settled`` (an
    integer channel's, which counts settle)."""
    if settled and order == 0 and rice_cost >= 0:
        return max(rice_cost, RICE_SETTLE_COST)
    return rice_cost


@cached(_STAMP, nogil=True)
def _exact_best_order(s, rice_cost, u, headers, patches, settled):
    """The predictor order with the smallest payload (ties: the smaller order)."""
    best_order, best_bytes = 0, -1
    for order in range(3):
        size = _payload_bytes(s, order, order_rice_cost(order, rice_cost, settled), u, headers, patches)
        if best_bytes < 0 or size < best_bytes:
            best_order, best_bytes = order, size
    return best_order, best_bytes


@cached(_STAMP, nogil=True)
def _guess_order(s, u):
    """The order whose residuals take the fewest bits bit-packed or framed
    (_packed_bits) — the compact encoder's shortcut: a pass per order and
    no Rice or patch pricing, instead of choose_mini_blocks for all three.
    Ties go to the smaller order.  ``u``: scratch for the residuals.

    Bits, not sums of magnitudes (the guess before): a mini-block costs the
    width of its largest residual, so a few large values — a shock on a
    noisy axis — weigh what they cost, not what they sum to (sums took order
    1 for such blocks, 5 % bigger than order 0 framed)."""
    best_order, best_bits = 0, _packed_bits(s, s.shape[0])    # order 0's residuals are s
    for order in range(1, 3):
        residuals(s, order, u)
        bits = _packed_bits(u, s.shape[0])
        if bits < best_bits:
            best_order, best_bits = order, bits
    return best_order


@cached(_STAMP, nogil=True)
def _packed_bits(u, n):
    """Bits of u[:n] as mini-blocks each bit-packed or framed, whichever
    choose_mini_blocks would take of the two (a whole mini-block's range in
    vector reductions, bits.range32)."""
    full = n // MINI_BLOCK
    total = 0
    for m in range(full):
        smallest, biggest = range32(u, m * MINI_BLOCK)
        total += _mini_block_bits(smallest, biggest, MINI_BLOCK)
    if full * MINI_BLOCK < n:
        smallest, biggest = u[full * MINI_BLOCK], u[full * MINI_BLOCK]
        for i in range(full * MINI_BLOCK, n):
            smallest = min(smallest, u[i])
            biggest = max(biggest, u[i])
        total += _mini_block_bits(smallest, biggest, n - full * MINI_BLOCK)
    return total


@cached(_STAMP, nogil=True, inline="always")
def _mini_block_bits(smallest, biggest, count):
    """choose_mini_blocks's bits for a mini-block of ``count`` values in
    [smallest, biggest], bit-packed or framed (framed with its decode price)."""
    bits = count * bit_length(biggest)
    framed, _ = _framed_bits(smallest, biggest, count)
    if framed >= 0 and framed + FRAME_COST < bits:
        return framed + FRAME_COST
    return bits


@cached(_STAMP, nogil=True, inline="always")
def _framed_bits(smallest, biggest, count):
    """(bits, width) of a framed mini-block of ``count`` values in
    [smallest, biggest]: its frame's length and the frame, then each value
    less the frame at ``width`` bits; bits -1 where it cannot be framed (a
    smallest of 0 gains nothing, one of 64 bits has no length code, a width
    past FRAMED_MAX_WIDTH has no header)."""
    if smallest == ZERO or bit_length(smallest) >= 64:
        return -1, 0
    width = bit_length(biggest - smallest)
    if width > FRAMED_MAX_WIDTH:
        return -1, 0
    return count * width + FRAME_LENGTH_BITS + bit_length(smallest), width


@cached(_STAMP, nogil=True)
def frames_choice(s, headers):
    """The FRAMES form (codes.FRAMES) of the order-0 sequence s: (payload
    bits, L) at its cheapest frame length L, with headers[m] each
    mini-block's header there (framed where that saves more than FRAME_COST
    bits over bit-packing, as choose_mini_blocks weighs it; a frame longer
    than L cannot be framed); bits -1 when no mini-block would be framed.
    The candidates for L are the frames' own lengths (a few, for a sway)."""
    n = s.shape[0]
    n_mini = (n + MINI_BLOCK - 1) // MINI_BLOCK
    packed = np.empty(n_mini, np.int64)       # bits bit-packed
    framed = np.empty(n_mini, np.int64)       # bits of the values framed, without the frame
    lengths = np.empty(n_mini, np.int64)      # the frame's length (64: cannot be framed)
    widths = np.empty((n_mini, 2), np.int64)  # bit-packed and framed widths
    present = ZERO                            # the frame lengths there are
    for m in range(n_mini):
        lo = m * MINI_BLOCK
        count = min(n, lo + MINI_BLOCK) - lo
        if count == MINI_BLOCK:
            smallest, biggest = range32(s, lo)
        else:
            smallest, biggest = s[lo], s[lo]
            for i in range(lo, lo + count):
                smallest = min(smallest, s[i])
                biggest = max(biggest, s[i])
        widths[m, 0] = bit_length(biggest)
        widths[m, 1] = bit_length(biggest - smallest)
        packed[m] = count * widths[m, 0]
        framed[m] = count * widths[m, 1]
        lengths[m] = 64
        if smallest != ZERO and widths[m, 1] <= FRAMED_MAX_WIDTH:
            lengths[m] = bit_length(smallest)
            present |= ONE << U64(lengths[m] & 63)
    best_bits, best_length = np.int64(-1), 0
    for length in range(64):
        if not (present >> U64(length)) & ONE:
            continue
        bits, any_framed = np.int64(0), False
        for m in range(n_mini):
            if _frame_pays(lengths[m], framed[m], packed[m], length):
                bits += framed[m] + length
                any_framed = True
            else:
                bits += packed[m]
        if any_framed and (best_bits < 0 or bits < best_bits):
            best_bits, best_length = bits, length
    for m in range(n_mini):
        if _frame_pays(lengths[m], framed[m], packed[m], best_length):
            headers[m] = FRAMED + widths[m, 1]
        else:
            headers[m] = widths[m, 0]
    return best_bits, best_length


@cached(_STAMP, nogil=True, inline="always")
def _frame_pays(own_length, framed_bits, packed_bits, length):
    """Whether a mini-block is framed in a FRAMES section of frame length
    ``length``: its frame fits, and saves more than FRAME_COST bits."""
    return own_length <= length and framed_bits + length + FRAME_COST < packed_bits


@cached(_STAMP, nogil=True)
def _best_order(s, exact, rice_cost, u, headers, patches, settled):
    """(order, payload bytes): exact for the fast codec (its bytes are
    specified), estimated for the compact one; Rice priced by
    order_rice_cost."""
    if exact:
        return _exact_best_order(s, rice_cost, u, headers, patches, settled)
    order = _guess_order(s, u)
    return order, _payload_bytes(s, order, order_rice_cost(order, rice_cost, settled), u, headers, patches)
