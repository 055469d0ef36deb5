"""The integer codec's code bytes and status codes (docs/format.md §3).

Plain constants, in a module of their own so that reading a cache — header
checks, the interpreted decoder — never has to import numba.
"""
import numpy as np

from ..errors import CorruptDataError

MINI_BLOCK = 32

# A count's ladder (intcount.count_column): how many values are at least
# threshold + s, for s = 0..LADDER_STEPS, in one pass.
LADDER_STEPS = 8

# Codec byte bits.
PREDICTOR_MASK = 0x03
# Predictor field 3 (version 1, channel sections): order 0, its mini-blocks
# bit-packed or framed, every frame FRAMES' length L, a byte after the
# header bytes, rather than each frame's own 6-bit length before it.  A
# mini-block's position then follows from the header bytes alone (and L).
FRAMES = 0x03
DICT = 0x04
DECIMAL = 0x08
FLOATBITS = 0x10
ZERO_RESIDUALS = 0x20
SHORT = 0x40            # format version 2: base and dictionary size as varints
ENTROPY = 0x80         # codec bit 7 (version 1): the residuals are tANS-coded (tans.py)
# Codec bits 6 and 7 both set (version 1 only): SPLIT, not SHORT or ENTROPY.  The
# section's residuals are a mini-block payload, not ENTROPY, and each Rice
# mini-block of it (the dictionary's payload's too) holds every value's k
# low bits first, packed as a bit-packed mini-block's (unpack32), then
# every value's quotient in unary (bits.quotients32: all 32 at once from the
# positions of the one bits), where interleaved codewords wait on each
# other's lengths.  Readers before it reject the combination.
SPLIT = SHORT | ENTROPY
# A time column's codec bit 4 (version 1; a channel's is FLOATBITS): the
# section starts with a clock line p, q, r (clock.py) and its words are the
# residuals from it, word_k = residual_k + floor((p k + r) / q).
CLOCK = 0x10
CLOCK_MAX_DENOMINATOR = 1 << 16
RICE = 0x80
PATCHED = 0xC0          # mini-block header 0xC0 | w: bit-packed at w bits, some values patched (version 1)
# Mini-block header FRAMED + w, w ≤ FRAMED_MAX_WIDTH (version 1): the
# mini-block's smallest residual f (its frame: a FRAME_LENGTH_BITS length L,
# then L bits), then every residual minus f at w bits.
FRAMED = 0x41
FRAMED_MAX_WIDTH = 0x7F - FRAMED
FRAME_LENGTH_BITS = 6
# What a payload reader is told of its section (payload.read_payload): a
# version 1 payload, a short one (version 2: the codec's SHORT bit itself),
# a FRAMES one, or a split one.
PAYLOAD_V1 = 0
PAYLOAD_FRAMES = 1
PAYLOAD_SPLIT = 2       # a version 1 payload whose Rice mini-blocks are split (SPLIT)


def dictionary_form(codec):
    """What a payload reader is told of a section's dictionary payload (and,
    but in a FRAMES section, of its residuals') by its codec byte: SHORT
    (version 2), PAYLOAD_SPLIT (SPLIT) or PAYLOAD_V1.  The numpy decoder
    calls it as it is; the kernels call it compiled (intcodec.py)."""
    bits = codec & SPLIT
    return PAYLOAD_SPLIT if bits == SPLIT else (SHORT if bits == SHORT else PAYLOAD_V1)

# An ENTROPY payload's bounds (tans.py codes it, npdecode.py reads it too).
ENTROPY_MAX_SYMBOLS = 64
ENTROPY_TABLE_LOG_MIN = 5    # the spread's step is odd (so visits every slot) from 2^3 slots on
ENTROPY_TABLE_LOG_MAX = 7    # eight states' bits (≤ 56) fit one 64-bit window
ENTROPY_STATES = 8
# A decoding table slot is one 64-bit word, value − v_0 << 10 | base << 3 | nb
# (base < 2^L ≤ 128, nb ≤ L ≤ 7): one load a symbol instead of two (~20 %
# faster).  So the symbols' values lie within 2^ENTROPY_VALUE_SPAN_BITS of the smallest.
ENTROPY_VALUE_SPAN_BITS = 54
# An ENTROPY payload's first byte is L | b << 3: the low b bits of every
# residual (after the first p) are stored as they are, b bits each, and tANS
# codes the residuals' high parts u >> b (binning, as pcodec's bins: a wide
# but smooth residual distribution — a jittered clock, a temperature in
# thousandths — as a few dozen symbols plus its noise bits).
ENTROPY_LOW_BITS_MAX = 31
# What an encoder may take (intcodec.encode_column_priced's ``entropy``):
# no ENTROPY form, ENTROPY with b = 0, or ENTROPY with any b.
ENTROPY_OFF = 0
ENTROPY_SYMBOLS = 1
ENTROPY_BINNED = 2

# Decoder status codes (0 = ok).
OK = 0
ERR_TRUNCATED = -1      # the section ends before its contents do
ERR_BAD_CODE = -2       # a codec byte or header byte that the format does not define
ERR_BAD_DICT = -3       # dictionary size or rank out of range
ERR_LENGTH = -4         # the section is longer than its contents


def check_status(status) -> None:
    """Raise if a decoder reported a block it could not decode (one status or
    an array of them: the kernels return statuses, since an exception cannot
    cross a parallel loop cleanly)."""
    if np.count_nonzero(status):        # OK is 0 (a fast path: ~0.1 µs, where .any() took ~1)
        status = np.asarray(status)
        raise CorruptDataError(f"a block failed to decode (status {int(status[status != OK].flat[0])}) "
                               f"although its checksum matched; the cache needs repair")
