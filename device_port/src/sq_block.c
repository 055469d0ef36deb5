/* Blocks (docs/format.md §1–§3), read: verify (format versions 1 and 2),
 * the directory's statistics, and a column decoded one word at a time.
 * Mirrors sensorq/codec/header.py, header2.py and intcodec.py; the encoder
 * is sq_enc.c. */
#include <string.h>

#include "sq_internal.h"

#define BLOCK_MAGIC 0x31425153u     /* "SQB1" read as a little-endian word */

/* A verified block's format version: always 2 in a build that does not read
 * version 1 (sq_block_len refuses it), a constant the compiler folds. */
#ifdef SQ_READ_V1
#define VERSION(info) ((info)->version)
#else
#define VERSION(info) 2u
#endif

/* The time codec as check_codec sees it: a version 1 time column's CLOCK
 * bit (a clock line, §3) is no float mode. */
#ifdef SQ_READ_V1
#define TIME_CODEC_MODES(info) \
    ((uint8_t)(VERSION(info) == 1u ? (info)->time_codec & ~SQ_CODEC_CLOCK : (info)->time_codec))
#else
#define TIME_CODEC_MODES(info) ((info)->time_codec)
#endif

/* ---- packed little-endian integers -----------------------------------------
 * Written with 32-bit halves: a Cortex-M0+ has no 64-bit shifter, and a
 * variable 64-bit shift is a library call. */

static uint32_t le32(const uint8_t *p, unsigned nbytes)
{
    uint32_t v = 0;
    while (nbytes--) {
        v = (v << 8) | p[nbytes];
    }
    return v;
}

uint32_t sq_le32(const uint8_t *p, unsigned nbytes)
{
    return le32(p, nbytes);
}

int32_t sq_sx32(const uint8_t *p, unsigned nbytes)
{
    uint32_t sign = 1u << (8u * nbytes - 1u);
    return (int32_t)((le32(p, nbytes) ^ sign) - sign);
}

__attribute__((noinline)) uint64_t sq_get_le(const uint8_t *p, unsigned nbytes)
{
    if (nbytes <= 4u) {
        return le32(p, nbytes);
    }
    return (uint64_t)le32(p + 4, nbytes - 4u) << 32 | le32(p, 4);
}

void sq_put_le(uint8_t *p, uint64_t v, unsigned nbytes)
{
    uint32_t half = (uint32_t)v;
    unsigned i;
    for (i = 0; i < nbytes; i++) {
        if (i == 4u) {
            half = (uint32_t)(v >> 32);
        }
        p[i] = (uint8_t)half;
        half >>= 8;
    }
}

int64_t sq_sign_extend(uint64_t v, unsigned nbytes)
{
    /* nbytes is a storage width (1, 2, 4 or 8): below 8 the value fits in
     * the low word, and a 32-bit shift pair extends it (no 64-bit shift) */
    unsigned unused = 32u - 8u * nbytes;
    if (nbytes >= 8u) {
        return (int64_t)v;
    }
    return (int32_t)((uint32_t)v << unused) >> unused;
}

unsigned sq_dtype_bytes(uint8_t dtype)
{
    return (dtype >= SQ_INT8 && dtype <= SQ_INT64) ? (1u << (dtype - 1u)) : 0u;
}

uint64_t sq_get_int(const uint8_t *column, uint32_t i, unsigned width)
{
    return (uint64_t)sq_sign_extend(sq_get_le(column + (size_t)i * width, width), width);
}

/* ---- bit streams (LSB-first) --------------------------------------------- */

/* The w (0..32) bits at bit offset `bit`; reads only the bytes holding
 * them (at most five). */
static uint32_t get_bits32(const uint8_t *p, uint32_t bit, unsigned w)
{
    unsigned off = bit & 7u, nbytes = (off + w + 7u) / 8u;
    uint32_t x;
    p += bit >> 3;
    x = le32(p, nbytes < 4u ? nbytes : 4u) >> off;
    if (nbytes == 5u) {                /* off ≥ 1 here */
        x |= (uint32_t)p[4] << (32u - off);
    }
    return w < 32u ? x & ((1u << w) - 1u) : x;
}

/* The w (0..64) bits at bit offset `bit`, as two 32-bit halves: a Cortex-M0+
 * has no 64-bit shifter (a variable 64-bit shift is a library call). */
static uint64_t get_bits(const uint8_t *p, uint32_t bit, unsigned w)
{
    if (w <= 32u) {
        return get_bits32(p, bit, w);
    }
    return get_bits32(p, bit, 32) | (uint64_t)get_bits32(p, bit + 32u, w - 32u) << 32;
}

/* ---- payloads: header bytes + bit stream ---------------------------------- */

/* What payload_end is told of a payload: version 2 (short), version 1,
 * version 1 FRAMES (format.md §3: a frame length byte after the header
 * bytes, and every frame that long), or version 1 SPLIT (each Rice
 * mini-block's low bits, then its quotients). */
enum { FORM_V2, FORM_V1, FORM_FRAMES, FORM_SPLIT };

/* A version 1 codec byte without SPLIT (bits 6 and 7 both set: its payload's
 * Rice mini-blocks are split), or -1 where SPLIT comes with ZERO residuals
 * or FRAMES, which never hold a split payload. */
static int without_split(uint8_t codec)
{
    if ((codec & SQ_CODEC_SPLIT) != SQ_CODEC_SPLIT) {
        return codec;
    }
    codec = (uint8_t)(codec & ~SQ_CODEC_SPLIT);
    return (codec & SQ_CODEC_ZERO) || (codec & SQ_CODEC_ORDER) == SQ_CODEC_FRAMES ? -1 : codec;
}

/* A section's dictionary payload's form by its codec byte. */
static unsigned dict_form(uint8_t codec)
{
    if ((codec & SQ_CODEC_SPLIT) == SQ_CODEC_SPLIT) {
        return FORM_SPLIT;
    }
    return (codec & SQ_CODEC_SHORT) ? FORM_V2 : FORM_V1;
}

static unsigned payload_form(uint8_t codec)
{
    return (codec & SQ_CODEC_ORDER) == SQ_CODEC_FRAMES ? FORM_FRAMES : dict_form(codec);
}

/* Walk a payload of n residuals starting at p without decoding it; *out_end
 * is where it ends.  SQ_ERR_CORRUPT if it is malformed or runs past end;
 * SQ_ERR_UNSUPPORTED for a Rice mini-block in a build without the compact
 * codec (-DSQ_NO_COMPACT).  Framed mini-blocks, and FRAMES payloads, are
 * read in a version 1 payload (form) by a build with -DSQ_READ_V1. */
static int payload_end(const uint8_t *p, const uint8_t *end, uint32_t n, unsigned form,
                       const uint8_t **out_end)
{
    uint32_t n_mini = (n + SQ_MINI - 1u) / SQ_MINI, m, j, k, low;
    const uint8_t *bits = p + n_mini;
    uint32_t limit, bit = 0;
    unsigned frame_len = SQ_OWN_FRAME_LENGTHS;
    if ((size_t)(end - p) < n_mini) {
        return SQ_ERR_CORRUPT;
    }
    if (form == FORM_FRAMES) {
#ifdef SQ_READ_V1
        if (end == bits || *bits > 63u) {
            return SQ_ERR_CORRUPT;
        }
        frame_len = *bits++;
#else
        return SQ_ERR_CORRUPT;
#endif
    }
    if ((size_t)(end - bits) > 0x1FFFFFFFu) {
        return SQ_ERR_CORRUPT;
    }
    limit = (uint32_t)(end - bits) * 8u;
    for (m = 0; m < n_mini; m++) {
        uint32_t count = (n - m * SQ_MINI) < SQ_MINI ? n - m * SQ_MINI : SQ_MINI;
        uint8_t h = p[m];
        if (h <= 64u) {
            if (count * h > limit - bit) {       /* ≤ 32 · 64: 32 bits hold it; bit ≤ limit */
                return SQ_ERR_CORRUPT;
            }
            bit += count * h;
            continue;
        }
#ifdef SQ_READ_V1
        if (form != FORM_V2 && h >= SQ_FRAMED && h < SQ_RICE) {   /* (frame length,) frame, values */
            uint32_t len = frame_len, w = h - SQ_FRAMED;
            if (frame_len == SQ_OWN_FRAME_LENGTHS) {
                if (limit - bit < SQ_FRAME_LENGTH_BITS) {
                    return SQ_ERR_CORRUPT;
                }
                len = get_bits32(bits, bit, SQ_FRAME_LENGTH_BITS);
                bit += SQ_FRAME_LENGTH_BITS;
            }
            if (limit - bit < len || count * w > limit - bit - len) {
                return SQ_ERR_CORRUPT;
            }
            bit += len + count * w;
            continue;
        }
        if (frame_len != SQ_OWN_FRAME_LENGTHS) {  /* a FRAMES payload: bit-packed and framed only */
            return SQ_ERR_CORRUPT;
        }
#else
        (void)frame_len;
#endif
#ifdef SQ_NO_COMPACT
        (void)j;
        (void)k;
        (void)low;
        return (h & SQ_RICE) ? SQ_ERR_UNSUPPORTED : SQ_ERR_CORRUPT;
#else
        if (!(h & SQ_RICE) || (h & 0x7Fu) > 63u) {
            return SQ_ERR_CORRUPT;
        }
        k = h & 0x3Fu;
        low = k;                                 /* each codeword's low bits follow its quotient */
        if (form == FORM_SPLIT) {                /* SPLIT: all the low bits, then the quotients */
            if (count * k > limit - bit) {
                return SQ_ERR_CORRUPT;
            }
            bit += count * k;
            low = 0;
        }
        for (j = 0; j < count; j++) {
            uint32_t q = 0;
            while (bit < limit && !((bits[bit >> 3] >> (bit & 7u)) & 1u)) {
                bit++;
                q++;
            }
            /* the quotient needs a stop bit, its low bits, and must fit in 64 bits */
            if (bit >= limit || limit - bit - 1u < low || (k > 32u && (q >> (64u - k)))) {
                return SQ_ERR_CORRUPT;
            }
            bit += 1u + low;
        }
#endif
    }
    *out_end = bits + (bit + 7u) / 8u;
    return SQ_OK;
}

#ifndef SQ_NO_COMPACT
/* A Rice quotient at *bit (zeros, then a one that payload_end found): its
 * value, *bit moved past the one. */
static uint64_t unary_next(const uint8_t *bits, uint32_t *bit)
{
    uint64_t q = 0;
    while (!((bits[*bit >> 3] >> (*bit & 7u)) & 1u)) {
        ++*bit;
        q++;
    }
    ++*bit;
    return q;
}
#endif

/* The next residual of a payload that payload_end accepted. */
static uint64_t payload_next(sq_payload *p)
{
    uint8_t h = p->hdr[p->i >> 5];
    uint64_t v;
#ifdef SQ_READ_V1
    if (h >= SQ_FRAMED && h < SQ_RICE) {           /* only in payloads payload_end let through */
        if (!(p->i & (SQ_MINI - 1u))) {           /* a mini-block's first value: its frame first */
            unsigned len = p->frame_len;
            if (len == SQ_OWN_FRAME_LENGTHS) {
                len = get_bits32(p->bits, p->bit, SQ_FRAME_LENGTH_BITS);
                p->bit += SQ_FRAME_LENGTH_BITS;
            }
            p->frame = get_bits(p->bits, p->bit, len);
            p->bit += len;
        }
        p->i++;
        v = get_bits(p->bits, p->bit, h - SQ_FRAMED) + p->frame;
        p->bit += h - SQ_FRAMED;
        return v;
    }
#endif
    p->i++;
#ifndef SQ_NO_COMPACT
#ifdef SQ_READ_V1
    if ((h & SQ_RICE) && p->split) {                /* low bits here, the quotient at qbit */
        unsigned k = h & 0x3Fu;
        uint64_t q;
        if (!((p->i - 1u) & (SQ_MINI - 1u))) {      /* a mini-block's first: its quotients follow its low bits */
            uint32_t count = p->n - (p->i - 1u) < SQ_MINI ? p->n - (p->i - 1u) : SQ_MINI;
            p->qbit = p->bit + count * k;
        }
        q = unary_next(p->bits, &p->qbit);
        v = (q << k) | get_bits(p->bits, p->bit, k);
        p->bit += k;
        if (!(p->i & (SQ_MINI - 1u)) || p->i == p->n) {   /* its last: the next starts after its quotients */
            p->bit = p->qbit;
        }
        return v;
    }
#endif
    if (h & SQ_RICE) {
        unsigned k = h & 0x3Fu;
        uint64_t q = unary_next(p->bits, &p->bit);
        v = (q << k) | get_bits(p->bits, p->bit, k);
        p->bit += k;
        return v;
    }
#endif
    v = get_bits(p->bits, p->bit, h);
    p->bit += h;
    return v;
}

/* A payload that payload_end accepted, read from its first residual on. */
static __attribute__((noinline)) void payload_start(sq_payload *p, const uint8_t *at, uint32_t n,
                                                    unsigned form)
{
    p->hdr = at;
    p->bits = at + (n + SQ_MINI - 1u) / SQ_MINI;
    p->bit = 0;
    p->i = 0;
#ifdef SQ_READ_V1
    p->frame_len = form == FORM_FRAMES ? *p->bits++ : SQ_OWN_FRAME_LENGTHS;
    p->split = form == FORM_SPLIT;
    p->n = n;
#else
    (void)form;
#endif
}

/* ---- varints (format version 2) --------------------------------------------- */

/* A LEB128 varint at p, read no further than end: the position after it, or
 * NULL if it runs past end or holds more than 64 bits. */
static const uint8_t *get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    unsigned n = 0, i;
    /* its length first, then its groups from the last (a constant 64-bit
     * shift is inline code; a variable one a library call) */
    while (p + n < end && n < 10u && p[n] >= 0x80u) {
        n++;
    }
    if (p + n >= end || n == 10u || (n == 9u && p[9] > 1u)) {
        return NULL;
    }
    *v = p[n];
    for (i = n; i--;) {
        *v = *v << 7 | (p[i] & 0x7Fu);
    }
    return p + n + 1u;
}

static __attribute__((noinline)) uint64_t unzigzag(uint64_t u)
{
    return (u >> 1) ^ (0u - (u & 1u));
}

/* ---- column reader --------------------------------------------------------- */

#ifdef SQ_READ_V1
/* A CLOCK section's line p, q, r (three varints, 1 <= q <= 65536, r < q):
 * word k gets a·k + floor((b·k + r) / q), a = p div q, b = p mod q, kept as
 * a running sum (line) and remainder (rem), so that no word needs a
 * division.  Returns where the residuals' section starts, or NULL. */
static const uint8_t *open_line(sq_col *c, const uint8_t *p, const uint8_t *end)
{
    uint64_t line_p, line_q, line_r;
    p = get_varint(p, end, &line_p);
    p = p ? get_varint(p, end, &line_q) : NULL;
    p = p ? get_varint(p, end, &line_r) : NULL;
    if (!p || line_q == 0u || line_q > SQ_CLOCK_MAX_DENOMINATOR || line_r >= line_q) {
        return NULL;
    }
    c->q = line_q;
    c->step = line_p / line_q;
    c->b = line_p % line_q;
    c->rem = line_r;
    c->line = 0;
    return p;
}
#endif

int sq_col_open(sq_col *c, const uint8_t *sec, const uint8_t *end, uint32_t n, uint8_t codec,
                unsigned width, sq_dict_cursor *cursor)
{
    const uint8_t *p = sec, *q = 0;
    uint64_t v;
    uint8_t bare = codec;                    /* codec without SPLIT, whose bit 6 is not SHORT */
    int err;
#ifdef SQ_READ_V1
    {
        int stripped = without_split(codec); /* version 1 SPLIT: a payload follows */
        if (stripped < 0) {
            return SQ_ERR_CORRUPT;
        }
        bare = (uint8_t)stripped;
    }
    c->q = 0;
    if ((bare & (SQ_CODEC_CLOCK | SQ_CODEC_SHORT)) == SQ_CODEC_CLOCK && width == 8u) {
        p = open_line(c, p, end);            /* a version-1 time column's clock line */
        if (!p) {
            return SQ_ERR_CORRUPT;
        }
        sec = p;
        codec &= (uint8_t)~SQ_CODEC_CLOCK;
        bare &= (uint8_t)~SQ_CODEC_CLOCK;
    }
#endif
    if ((bare & ~0x67u) || end - sec < 1 || ((bare & SQ_CODEC_ORDER) == SQ_CODEC_FRAMES &&
                                             (bare & (SQ_CODEC_SHORT | SQ_CODEC_ZERO)))) {
        return SQ_ERR_CORRUPT;
    }
#ifdef SQ_READ_V1
    if (!(bare & SQ_CODEC_SHORT)) {          /* format version 1: 8 bytes */
        p = end - sec < 8 ? NULL : p + 8;
        c->base = p ? sq_get_le(sec, 8) : 0;
    } else
#else
    if (!(bare & SQ_CODEC_SHORT)) {          /* a version-1 column: not read by this build */
        return SQ_ERR_CORRUPT;
    }
#endif
    {                                        /* format version 2: a zigzag varint */
        p = get_varint(p, end, &v);
        c->base = unzigzag(v);
    }
    c->prev = c->delta = 0;
    c->dict_n = 0;
    c->cursor = cursor;
    cursor->owner = 0;
    c->codec = codec;
    c->width = (uint8_t)width;
    c->raw = 0;
#ifdef SQ_NO_COMPACT
    if (codec & SQ_CODEC_DICT) {
        return SQ_ERR_UNSUPPORTED;
    }
#else
    if (p && (codec & SQ_CODEC_DICT)) {
#ifdef SQ_READ_V1
        if (!(bare & SQ_CODEC_SHORT)) {
            v = end - p < 4 ? 0 : sq_get_le(p, 4);
            p += 4;
        } else
#endif
        {
            p = get_varint(p, end, &v);
        }
        c->dict_n = v > n ? 0 : (uint32_t)v;
        if (!p || !c->dict_n ||
            payload_end(p, end, c->dict_n, dict_form(codec), &q)) {
            return SQ_ERR_CORRUPT;
        }
        c->dict_hdr = p;
        p = q;
    }
#endif
    if (!p || (codec & SQ_CODEC_ZERO)) {
        return p == end ? SQ_OK : SQ_ERR_CORRUPT;
    }
    err = payload_end(p, end, n, payload_form(codec), &q);
    if (err || q != end) {
        return err ? err : SQ_ERR_CORRUPT;
    }
    payload_start(&c->pl, p, n, payload_form(codec));
    return SQ_OK;
}

void sq_col_open_raw(sq_col *c, const uint8_t *data, unsigned width)
{
    c->pl.hdr = data;
    c->pl.i = 0;
    c->width = (uint8_t)width;
    c->raw = 1;
}

#ifndef SQ_NO_COMPACT
/* Dictionary entry number r; walks forward from the last one read (ranks
 * mostly repeat or rise), from the start only when r goes back or the cursor
 * was last used by another column. */
static uint64_t dict_entry(sq_col *c, uint32_t r)
{
    sq_dict_cursor *k = c->cursor;
    if (k->owner != c || (k->rank != UINT32_MAX && r < k->rank)) {
        k->owner = c;
        payload_start(&k->pl, c->dict_hdr, c->dict_n, dict_form(c->codec));
        k->rank = UINT32_MAX;
    }
    while (k->rank != r) {
        uint64_t gap = payload_next(&k->pl);
        k->val = k->rank == UINT32_MAX ? gap : k->val + gap + 1u;
        k->rank++;
    }
    return k->val;
}
#endif

int sq_col_next(sq_col *c, uint64_t *word)
{
    uint64_t s = 0;
    if (c->raw) {
        unsigned w = c->width;
        *word = sq_get_int(c->pl.hdr, c->pl.i, w);
        c->pl.i++;
        return SQ_OK;
    }
    if (!(c->codec & SQ_CODEC_ZERO)) {
        uint32_t i = c->pl.i;
        unsigned order = c->codec & SQ_CODEC_ORDER;
        s = payload_next(&c->pl);
        order = order == SQ_CODEC_FRAMES ? 0u : order;
        if (order && i > 0) {
            uint64_t d = unzigzag(s);
            c->delta = (order == 2u && i > 1u) ? c->delta + d : d;
            s = c->prev + c->delta;
        }
        c->prev = s;
    }
#ifndef SQ_NO_COMPACT
    if (c->codec & SQ_CODEC_DICT) {
        if (s >= c->dict_n) {
            return SQ_ERR_CORRUPT;
        }
        s = dict_entry(c, (uint32_t)s);
    }
#endif
    *word = c->base + s;
#ifdef SQ_READ_V1
    if (c->q) {                              /* a clock line: this word's, then the next one's */
        *word += c->line;
        c->rem += c->b;
        c->line += c->step + (c->rem >= c->q);
        c->rem -= c->rem >= c->q ? c->q : 0u;
    }
#endif
    return sq_sign_extend(*word, c->width) == (int64_t)*word ? SQ_OK : SQ_ERR_CORRUPT;
}

/* ---- verification ------------------------------------------------------------ */

/* A codec byte that fits the storage type; version 2 sections are short. */
static __attribute__((noinline)) int check_codec(uint8_t codec, uint8_t dtype, unsigned version)
{
    uint8_t mode = codec & (SQ_CODEC_DECIMAL | SQ_CODEC_FLOATBITS);
    int is_float = dtype >= SQ_FLOAT32;
    if (version == 1u) {                     /* SPLIT: bits 6 and 7 */
        int bare = without_split(codec);
        if (bare < 0) {
            return -1;
        }
        codec = (uint8_t)bare;
    }
    if ((codec & 0x80u) || dtype < SQ_INT8 || dtype > SQ_FLOAT64 ||
        !(codec & SQ_CODEC_SHORT) != (version == 1u)) {
        return -1;
    }
    if ((codec & SQ_CODEC_ORDER) == SQ_CODEC_FRAMES &&       /* version 1 integer channels' */
        (version != 1u || is_float || (codec & SQ_CODEC_ZERO))) {
        return -1;
    }
    if (is_float) {
        return (mode == SQ_CODEC_DECIMAL || mode == SQ_CODEC_FLOATBITS) ? 0 : -1;
    }
    return mode ? -1 : 0;
}

#ifdef SQ_READ_V1
/* Version 1: one 80-byte entry. */
static const uint8_t *entry_v1(const uint8_t *e, sq_chan_stats *st)
{
    st->dtype = e[0];
    st->codec = e[1];
    st->dexp = e[2];
    st->data_len = sq_le32(e + 4, 4);
    st->count = sq_le32(e + 8, 4);
    st->flags = sq_le32(e + 12, 4);
    st->idx_min = sq_le32(e + 16, 4);
    st->idx_max = sq_le32(e + 20, 4);
    st->min = (int64_t)sq_get_le(e + 24, 8);
    st->max = (int64_t)sq_get_le(e + 32, 8);
    st->first = (int64_t)sq_get_le(e + 40, 8);
    st->last = (int64_t)sq_get_le(e + 48, 8);
    st->sum = (int64_t)sq_get_le(e + 56, 8);
    st->sumsq = sq_get_le(e + 64, 8);
    return e + SQ_ENTRY_SIZE;
}
#endif

/* The next varint at *p (*p = NULL once one runs past end: later reads
 * give 0 and keep it NULL). */
static uint64_t take(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    if (*p) {
        *p = get_varint(*p, end, &v);
    }
    return v;
}

/* Version 2 (format.md §2): kind, codec, [dexp], data_len, [count], then
 * for an integer channel max − min, first − min, last − min, idx_min,
 * idx_max, zigzag(S1), S2 (kept relative: stats_v2 adds the minimum, its
 * section's base); for a float one idx_min, idx_max and six f64. */
static const uint8_t *__attribute__((noinline)) entry_v2(const uint8_t *p, const uint8_t *end, uint32_t n, sq_chan_stats *st)
{
    uint64_t len, count, lo_at, hi_at;
    uint8_t kind;
    if (end - p < 2) {
        return NULL;
    }
    kind = *p++;
    st->dtype = kind & 7u;
    st->codec = *p++;
    st->flags = (kind >> 3) & 3u;
    st->dexp = (st->codec & SQ_CODEC_DECIMAL) && p < end ? *p++ : 0;
    len = take(&p, end);
    count = (kind & 0x20u) ? take(&p, end) : n;
    if ((kind & 0xC0u) || len >> 32 || count > n || ((kind & 0x20u) && st->dtype < SQ_FLOAT32)) {
        return NULL;
    }
    st->data_len = (uint32_t)len;
    st->count = (uint32_t)count;
    if (st->dtype < SQ_FLOAT32) {
        st->min = 0;
        st->max = (int64_t)take(&p, end);           /* max − min, first − min, last − min */
        st->first = (int64_t)take(&p, end);
        st->last = (int64_t)take(&p, end);
    }
    lo_at = take(&p, end);
    hi_at = take(&p, end);
    if (st->dtype < SQ_FLOAT32) {
        st->sum = (int64_t)unzigzag(take(&p, end));  /* S1, S2 */
        st->sumsq = take(&p, end);
    } else if (p && end - p >= 48) {
        st->min = st->max = 0;                      /* f64 statistics: unused on the device */
        p += 48;
    } else {
        p = NULL;
    }
    st->idx_min = (uint32_t)lo_at;      /* checked against n by walk_dir */
    st->idx_max = (uint32_t)hi_at;
    return (lo_at | hi_at) >> 32 ? NULL : p;
}

/* A version-2 integer entry made absolute: the minimum is the section's
 * base, the rest offsets from it; sum = S1 + n·m with m = min + (max −
 * min) >> 1 (mod 2^64, as version 1 keeps it).  sumsq stays S2 here (no
 * query reads it): sq_block_channel makes it absolute. */
static int __attribute__((noinline)) stats_v2(const uint8_t *sec, const uint8_t *end, uint32_t n, sq_chan_stats *st)
{
    uint64_t lo, m, s1 = (uint64_t)st->sum;
    if (!get_varint(sec, end, &lo)) {
        return SQ_ERR_CORRUPT;
    }
    lo = unzigzag(lo);
    m = lo + ((uint64_t)st->max >> 1);
    st->min = (int64_t)lo;
    st->max = (int64_t)(lo + (uint64_t)st->max);
    st->first = (int64_t)(lo + (uint64_t)st->first);
    st->last = (int64_t)(lo + (uint64_t)st->last);
    st->sum = (int64_t)(s1 + (uint64_t)n * m);
    return SQ_OK;
}

/* The directory entry at *p into st; *p moves past it (NULL: malformed). */
static void next_entry(const sq_block_info *info, const uint8_t **p, const uint8_t *end, sq_chan_stats *st)
{
#ifdef SQ_READ_V1
    if (info->version == 1u) {
        *p = end - *p < (long)SQ_ENTRY_SIZE ? NULL : entry_v1(*p, st);
        return;
    }
#endif
    *p = entry_v2(*p, end, info->n_samples, st);
}

/* Where a directory walk got to. */
typedef struct {
    uint64_t total;          /* bytes of the sections of the entries walked */
    uint32_t off;            /* the section of the last entry walked */
    uint32_t dir_end;        /* the directory's end, when every entry was walked */
} dir_pos;

/* Walk the directory from its start, every entry's codes, counts and
 * indices checked, up to entry upto (UINT32_MAX: all); entry upto's
 * statistics are left in *st made absolute, and with `bases` every version-2
 * integer section is checked to start with its base.  SQ_ERR_CORRUPT if
 * anything is out of place. */
static int walk_dir(const uint8_t *b, const sq_block_info *info, uint32_t upto, int bases,
                    sq_chan_stats *st, dir_pos *w)
{
    const uint8_t *p = b + info->dir_off, *end = b + info->block_len - 4u;
    uint32_t i;
    w->total = 0;
    for (i = 0; i < info->n_channels && i <= upto; i++) {
        next_entry(info, &p, end, st);
        if (!p || check_codec(st->codec, st->dtype, VERSION(info)) || st->dexp > 18u ||
            st->count > info->n_samples || st->idx_min >= info->n_samples ||
            st->idx_max >= info->n_samples) {
            return SQ_ERR_CORRUPT;
        }
        w->off = info->sec_off + info->time_len + (uint32_t)w->total;
        w->total += st->data_len;
        if ((bases || i == upto) && VERSION(info) == 2u && st->dtype < SQ_FLOAT32 &&
            ((uint64_t)w->off + st->data_len > info->block_len - 4u ||
             stats_v2(b + w->off, b + w->off + st->data_len, info->n_samples, st))) {
            return SQ_ERR_CORRUPT;
        }
    }
    w->dir_end = (uint32_t)(p - b);
    return SQ_OK;
}

#ifdef SQ_READ_V1
/* Version 1's fixed header (format.md §1). */
static int header_v1(const uint8_t *b, size_t len, sq_block_info *info)
{
    if (len < SQ_HEADER_SIZE + 4u || sq_le32(b + 12, 4) != len) {
        return SQ_ERR_CORRUPT;
    }
    info->block_len = (uint32_t)len;
    info->time_codec = b[5];
    info->n_channels = sq_le32(b + 6, 2);
    info->n_samples = sq_le32(b + 8, 4);
    info->t_first = (int64_t)sq_get_le(b + 16, 8);
    info->t_last = (int64_t)sq_get_le(b + 24, 8);
    info->tick = (int64_t)sq_get_le(b + 32, 8);
    info->stream_id = sq_le32(b + 40, 4);
    info->time_len = sq_le32(b + 44, 4);
    info->seq = sq_get_le(b + 48, 8);
    info->dir_off = SQ_HEADER_SIZE;
    info->sec_off = SQ_HEADER_SIZE + SQ_ENTRY_SIZE * (info->n_channels & 0xFFFFu);
    return info->sec_off > len - 4u || info->n_samples > SQ_MAX_BLOCK_SAMPLES || info->n_channels > 255u
           ? SQ_ERR_CORRUPT : SQ_OK;
}
#define SQ_READS_V1 1
#else
#define SQ_READS_V1 0
#endif

/* Version 2's header (format.md §1): magic, version, then block_len,
 * n_channels, time codec, n_samples, t_first (8 bytes), t_last − t_first,
 * tick, stream_id, seq, time_len, varints but for the bytes. */
static int __attribute__((noinline)) header_v2(const uint8_t *b, size_t len, sq_block_info *info)
{
    const uint8_t *end = b + len - 4u, *p = b + 5;
    uint64_t n, stream_id, time_len;
    take(&p, end);                                   /* block_len: already checked */
    if (!p || end - p < 3) {
        return SQ_ERR_CORRUPT;
    }
    info->block_len = (uint32_t)len;
    info->n_channels = p[0];
    info->time_codec = p[1];
    p += 2;
    n = take(&p, end);
    if (!p || end - p < 8) {
        return SQ_ERR_CORRUPT;
    }
    info->n_samples = n > SQ_MAX_BLOCK_SAMPLES ? 0 : (uint32_t)n;
    info->t_first = (int64_t)sq_get_le(p, 8);
    p += 8;
    info->t_last = (int64_t)((uint64_t)info->t_first + take(&p, end));
    info->tick = (int64_t)take(&p, end);
    stream_id = take(&p, end);
    info->seq = take(&p, end);
    time_len = take(&p, end);
    info->stream_id = (uint32_t)stream_id;
    info->time_len = (uint32_t)time_len;
    if (!p || stream_id >> 32 || time_len >> 32) {
        return SQ_ERR_CORRUPT;
    }
    info->dir_off = (uint32_t)(p - b);
    return SQ_OK;
}

int sq_block_check(const uint8_t *b, size_t len, sq_block_info *info, sq_chan_stats *st)
{
    dir_pos w;
    int err;
    if (!b || !info) {
        return SQ_ERR_ARG;
    }
    if (len >= 5u && sq_le32(b, 4) == BLOCK_MAGIC && b[4] != 2u && (b[4] != 1u || !SQ_READS_V1)) {
        return SQ_ERR_VERSION;
    }
    if (len < 16u || len > 0xFFFFFFF0u || sq_block_len(b, (uint32_t)len) != len) {
        return SQ_ERR_CORRUPT;
    }
    if (sq_crc32(0, b, len - 4u) != sq_le32(b + len - 4u, 4)) {
        return SQ_ERR_CRC;
    }
    info->version = b[4];
#ifdef SQ_READ_V1
    err = info->version == 1u ? header_v1(b, len, info) : header_v2(b, len, info);
#else
    err = header_v2(b, len, info);
#endif
    /* n_samples ≤ SQ_MAX_BLOCK_SAMPLES and n_channels ≤ 255 by the header's parsers */
    if (err || info->n_samples < 1u || info->n_channels < 1u || info->tick < 1 || info->t_last < info->t_first ||
        check_codec(TIME_CODEC_MODES(info), SQ_INT64, VERSION(info))) {
        return SQ_ERR_CORRUPT;
    }
    err = walk_dir(b, info, UINT32_MAX, 0, st, &w);
    if (VERSION(info) == 2u) {
        info->sec_off = w.dir_end;      /* the sections start where the directory ends */
    }
    if (err || w.dir_end != info->sec_off || (uint64_t)info->sec_off + info->time_len + w.total != len - 4u) {
        return SQ_ERR_CORRUPT;
    }
    return VERSION(info) == 2u ? walk_dir(b, info, UINT32_MAX, 1, st, &w) : SQ_OK;
}

int sq_block_verify(const uint8_t *b, size_t len, sq_block_info *info)
{
    sq_chan_stats st;
    return sq_block_check(b, len, info, &st);
}

int sq_block_column(const uint8_t *b, const sq_block_info *info, int column, sq_chan_stats *st,
                    uint32_t *off)
{
    dir_pos w;
    int err;
    if (column < 0) {
        st->dtype = SQ_INT64;         /* the times: 8-byte words */
        st->codec = info->time_codec;
        st->data_len = info->time_len;
        *off = info->sec_off;
        return SQ_OK;
    }
    err = walk_dir(b, info, (uint32_t)column, 0, st, &w);
    *off = w.off;
    return err;
}

int sq_block_channel(const uint8_t *b, const sq_block_info *info, uint32_t ch, sq_chan_stats *st)
{
    uint32_t off;
    uint64_t m, s1, n;
    int err;
    if (!b || !info || !st || ch >= info->n_channels) {
        return SQ_ERR_ARG;
    }
    err = sq_block_column(b, info, (int)ch, st, &off);
    if (!err && VERSION(info) == 2u && st->dtype < SQ_FLOAT32) {
        /* sumsq = S2 + 2m·S1 + n·m², S1 = sum − n·m (mod 2^64) */
        n = info->n_samples;
        m = (uint64_t)st->min + (((uint64_t)st->max - (uint64_t)st->min) >> 1);
        s1 = (uint64_t)st->sum - n * m;
        st->sumsq += 2u * m * s1 + n * m * m;
    }
    return err;
}

int sq_block_decode(const uint8_t *b, const sq_block_info *info, int column, int64_t *out, size_t cap)
{
    sq_col c;
    sq_dict_cursor cursor;
    sq_chan_stats st;
    uint32_t off, i;
    int err;
    if (!b || !info || !out || cap < info->n_samples || column < -1 || column >= (int)info->n_channels) {
        return SQ_ERR_ARG;
    }
    err = sq_block_column(b, info, column, &st, &off);
    if (!err && st.dtype >= SQ_FLOAT32) {
        return SQ_ERR_UNSUPPORTED;
    }
    if (!err) {
        err = sq_col_open(&c, b + off, b + off + st.data_len, info->n_samples, st.codec,
                          column < 0 ? 8u : sq_dtype_bytes(st.dtype), &cursor);
    }
    for (i = 0; err == SQ_OK && i < info->n_samples; i++) {
        uint64_t w;
        err = sq_col_next(&c, &w);
        out[i] = column < 0 ? (int64_t)((uint64_t)info->t_first + w * (uint64_t)info->tick) : (int64_t)w;
    }
    return err;
}

/* The length a block's header claims, of either version (0 if p is not a
 * block header). */
uint32_t sq_block_len(const uint8_t *p, uint32_t avail)
{
    uint64_t v;
    if (avail < 16u || sq_le32(p, 4) != BLOCK_MAGIC) {
        return 0;
    }
    if (p[4] == 1u) {
        return SQ_READS_V1 ? sq_le32(p + 12, 4) : 0;
    }
    return p[4] == 2u && get_varint(p + 5, p + 15, &v) && v <= 0xFFFFFFF0u ? (uint32_t)v : 0;
}
