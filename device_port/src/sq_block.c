/* Blocks (docs/format.md §1–§3): verify, decode one word at a time, and
 * encode with the "fast" codec.  Mirrors sensorq/codec/block.py and
 * intcodec.py; the fast encoder writes the host's bytes exactly. */
#include <string.h>

#include "sq_internal.h"

static const uint8_t sq_magic[4] = {'S', 'Q', 'B', '1'};

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

uint64_t sq_get_le(const uint8_t *p, unsigned nbytes)
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
    static const uint32_t sign[4] = {0x80u, 0x8000u, 0, 0x80000000u};
    uint32_t x = (uint32_t)v, s;
    if (nbytes >= 8u) {
        return (int64_t)v;
    }
    s = sign[nbytes - 1u];
    x &= s | (s - 1u);
    /* x - 2s when the sign bit is set: the two's complement value */
    return (x & s) ? (int64_t)x - 2 * (int64_t)s : (int64_t)x;
}

/* ---- bit streams (LSB-first) --------------------------------------------- */

/* The w (0..64) bits at bit offset `bit`; reads only the bytes holding them. */
static uint64_t get_bits(const uint8_t *p, uint32_t bit, unsigned w)
{
    unsigned off = bit & 7u, nbytes = (off + w + 7u) / 8u;
    uint64_t v;
    p += bit >> 3;
    if (off + w <= 32u) {          /* the common case, in 32-bit arithmetic */
        uint32_t x = le32(p, nbytes) >> off;
        return w < 32u ? x & ((1u << w) - 1u) : x;
    }
    v = sq_get_le(p, nbytes < 8u ? nbytes : 8u) >> off;
    if (nbytes == 9u) {
        v |= (uint64_t)p[8] << (64u - off);
    }
    return w < 64u ? v & (((uint64_t)1 << w) - 1u) : v;
}

/* OR the w low bits of v (already < 2^w) in at bit offset `bit`; the bytes
 * after the first are still zero. */
static void put_bits(uint8_t *p, uint32_t bit, uint64_t v, unsigned w)
{
    unsigned off = bit & 7u;
    p += bit >> 3;
    if (!w) {
        return;
    }
    *p++ |= (uint8_t)((uint32_t)v << off);
    if (w <= 8u - off) {
        return;
    }
    w -= 8u - off;
    v >>= 8u - off;
    while (w) {
        *p++ = (uint8_t)v;
        v >>= 8;
        w = w > 8u ? w - 8u : 0u;
    }
}

static unsigned bit_length(uint64_t v)
{
    unsigned n = 0;
    while (v) {
        v >>= 1;
        n++;
    }
    return n;
}

static uint64_t zigzag(uint64_t d)
{
    return (d << 1) ^ (0u - (d >> 63));
}

static uint64_t unzigzag(uint64_t u)
{
    return (u >> 1) ^ (0u - (u & 1u));
}

/* ---- payloads: header bytes + bit stream ---------------------------------- */

/* Walk a payload of n residuals starting at p without decoding it; *out_end
 * is where it ends.  Non-zero if it is malformed or runs past end. */
static int payload_end(const uint8_t *p, const uint8_t *end, uint32_t n, const uint8_t **out_end)
{
    uint32_t n_mini = (n + SQ_MINI - 1u) / SQ_MINI, m, j;
    const uint8_t *bits = p + n_mini;
    uint32_t limit, bit = 0;
    if ((size_t)(end - p) < n_mini || (size_t)(end - bits) > 0x1FFFFFFFu) {
        return -1;
    }
    limit = (uint32_t)(end - bits) * 8u;
    for (m = 0; m < n_mini; m++) {
        uint32_t count = (n - m * SQ_MINI) < SQ_MINI ? n - m * SQ_MINI : SQ_MINI;
        uint8_t h = p[m];
        if (h <= 64u) {
            if ((uint64_t)count * h > (uint64_t)(limit - bit)) {
                return -1;
            }
            bit += count * h;
            continue;
        }
        if (!(h & SQ_RICE) || (h & 0x7Fu) > 63u) {
            return -1;
        }
        for (j = 0; j < count; j++) {
            uint32_t q = 0, k = h & 0x3Fu;
            while (bit < limit && !((bits[bit >> 3] >> (bit & 7u)) & 1u)) {
                bit++;
                q++;
            }
            /* the quotient needs a stop bit, k more bits, and must fit in 64 bits */
            if (bit >= limit || limit - bit - 1u < k || (k > 32u && (q >> (64u - k)))) {
                return -1;
            }
            bit += 1u + k;
        }
    }
    *out_end = bits + (bit + 7u) / 8u;
    return 0;
}

/* The next residual of a payload that payload_end accepted. */
static uint64_t payload_next(sq_payload *p)
{
    uint8_t h = p->hdr[p->i >> 5];
    uint64_t v;
    p->i++;
    if (h & SQ_RICE) {
        unsigned k = h & 0x3Fu;
        uint64_t q = 0;
        while (!((p->bits[p->bit >> 3] >> (p->bit & 7u)) & 1u)) {
            p->bit++;
            q++;
        }
        p->bit++;
        v = (q << k) | get_bits(p->bits, p->bit, k);
        p->bit += k;
    } else {
        v = get_bits(p->bits, p->bit, h);
        p->bit += h;
    }
    return v;
}

static void payload_start(sq_payload *p, const uint8_t *at, uint32_t n)
{
    p->hdr = at;
    p->bits = at + (n + SQ_MINI - 1u) / SQ_MINI;
    p->bit = 0;
    p->i = 0;
}

/* ---- column reader --------------------------------------------------------- */

int sq_col_open(sq_col *c, const uint8_t *sec, const uint8_t *end, uint32_t n, uint8_t codec,
                unsigned width, sq_dict_cursor *cursor)
{
    const uint8_t *p = sec + 8, *q = 0;
    if ((codec & ~0x27u) || (codec & SQ_CODEC_ORDER) == 3u || end - sec < 8) {
        return SQ_ERR_CORRUPT;
    }
    c->base = sq_get_le(sec, 8);
    c->prev = c->delta = 0;
    c->dict_n = 0;
    c->cursor = cursor;
    cursor->owner = 0;
    c->codec = codec;
    c->width = (uint8_t)width;
    c->raw = 0;
    if (codec & SQ_CODEC_DICT) {
        if (end - p < 4) {
            return SQ_ERR_CORRUPT;
        }
        c->dict_n = (uint32_t)sq_get_le(p, 4);
        p += 4;
        if (c->dict_n < 1u || c->dict_n > n || payload_end(p, end, c->dict_n, &q)) {
            return SQ_ERR_CORRUPT;
        }
        c->dict_hdr = p;
        p = q;
    }
    if (codec & SQ_CODEC_ZERO) {
        return p == end ? SQ_OK : SQ_ERR_CORRUPT;
    }
    if (payload_end(p, end, n, &q) || q != end) {
        return SQ_ERR_CORRUPT;
    }
    payload_start(&c->pl, p, n);
    return SQ_OK;
}

void sq_col_open_raw(sq_col *c, const uint8_t *data, unsigned width)
{
    c->pl.hdr = data;
    c->pl.i = 0;
    c->width = (uint8_t)width;
    c->raw = 1;
}

/* Dictionary entry number r; walks forward from the last one read (ranks
 * mostly repeat or rise), from the start only when r goes back or the cursor
 * was last used by another column. */
static uint64_t dict_entry(sq_col *c, uint32_t r)
{
    sq_dict_cursor *k = c->cursor;
    if (k->owner != c || (k->rank != UINT32_MAX && r < k->rank)) {
        k->owner = c;
        payload_start(&k->pl, c->dict_hdr, c->dict_n);
        k->rank = UINT32_MAX;
    }
    while (k->rank != r) {
        uint64_t gap = payload_next(&k->pl);
        k->val = k->rank == UINT32_MAX ? gap : k->val + gap + 1u;
        k->rank++;
    }
    return k->val;
}

int sq_col_next(sq_col *c, uint64_t *word)
{
    uint64_t s = 0;
    if (c->raw) {
        unsigned w = c->width;
        *word = (uint64_t)sq_sign_extend(sq_get_le(c->pl.hdr + (size_t)c->pl.i * w, w), w);
        c->pl.i++;
        return SQ_OK;
    }
    if (!(c->codec & SQ_CODEC_ZERO)) {
        uint32_t i = c->pl.i;
        unsigned order = c->codec & SQ_CODEC_ORDER;
        s = payload_next(&c->pl);
        if (order && i > 0) {
            uint64_t d = unzigzag(s);
            c->delta = (order == 2u && i > 1u) ? c->delta + d : d;
            s = c->prev + c->delta;
        }
        c->prev = s;
    }
    if (c->codec & SQ_CODEC_DICT) {
        if (s >= c->dict_n) {
            return SQ_ERR_CORRUPT;
        }
        s = dict_entry(c, (uint32_t)s);
    }
    *word = c->base + s;
    return sq_sign_extend(*word, c->width) == (int64_t)*word ? SQ_OK : SQ_ERR_CORRUPT;
}

/* ---- verification ------------------------------------------------------------ */

static int check_codec(uint8_t codec, uint8_t dtype)
{
    uint8_t mode = codec & (SQ_CODEC_DECIMAL | SQ_CODEC_FLOATBITS);
    int is_float = dtype >= SQ_FLOAT32;
    if ((codec & 0xC0u) || (codec & SQ_CODEC_ORDER) == 3u) {
        return -1;
    }
    if (is_float) {
        return (mode == SQ_CODEC_DECIMAL || mode == SQ_CODEC_FLOATBITS) ? 0 : -1;
    }
    return mode ? -1 : 0;
}

static int check_entries(const uint8_t *b, uint32_t n_channels, uint32_t n, uint64_t *data_total)
{
    uint32_t i;
    *data_total = 0;
    for (i = 0; i < n_channels; i++) {
        const uint8_t *e = b + SQ_HEADER_SIZE + SQ_ENTRY_SIZE * i;
        if (e[0] < SQ_INT8 || e[0] > SQ_FLOAT64 || check_codec(e[1], e[0]) || e[2] > 18u ||
            sq_get_le(e + 8, 4) > n || sq_get_le(e + 16, 4) >= n || sq_get_le(e + 20, 4) >= n) {
            return SQ_ERR_CORRUPT;
        }
        *data_total += sq_get_le(e + 4, 4);
    }
    return SQ_OK;
}

int sq_block_verify(const uint8_t *b, size_t len, sq_block_info *info)
{
    uint64_t data_total;
    uint32_t dir_end, i;
    if (!b || !info) {
        return SQ_ERR_ARG;
    }
    if (len < SQ_HEADER_SIZE + 4u) {
        return SQ_ERR_CORRUPT;
    }
    for (i = 0; i < 4; i++) {
        if (b[i] != sq_magic[i]) {
            return SQ_ERR_CORRUPT;
        }
    }
    if (b[4] != SQ_FORMAT_VERSION) {
        return SQ_ERR_VERSION;
    }
    info->block_len = (uint32_t)sq_get_le(b + 12, 4);
    if (info->block_len != len) {
        return SQ_ERR_CORRUPT;
    }
    if (sq_crc32(0, b, len - 4u) != (uint32_t)sq_get_le(b + len - 4u, 4)) {
        return SQ_ERR_CRC;
    }
    info->time_codec = b[5];
    info->n_channels = (uint32_t)sq_get_le(b + 6, 2);
    info->n_samples = (uint32_t)sq_get_le(b + 8, 4);
    info->t_first = (int64_t)sq_get_le(b + 16, 8);
    info->t_last = (int64_t)sq_get_le(b + 24, 8);
    info->tick = (int64_t)sq_get_le(b + 32, 8);
    info->stream_id = (uint32_t)sq_get_le(b + 40, 4);
    info->time_len = (uint32_t)sq_get_le(b + 44, 4);
    info->seq = sq_get_le(b + 48, 8);
    if (info->n_samples < 1u || info->n_samples > SQ_MAX_BLOCK_SAMPLES || info->n_channels < 1u ||
        info->n_channels > 255u || info->tick < 1 || info->t_last < info->t_first ||
        check_codec(info->time_codec, SQ_INT64)) {
        return SQ_ERR_CORRUPT;
    }
    dir_end = SQ_HEADER_SIZE + SQ_ENTRY_SIZE * info->n_channels;
    if (dir_end > len - 4u || check_entries(b, info->n_channels, info->n_samples, &data_total) ||
        dir_end + (uint64_t)info->time_len + data_total != len - 4u) {
        return SQ_ERR_CORRUPT;
    }
    return SQ_OK;
}

int sq_block_channel(const uint8_t *b, const sq_block_info *info, uint32_t ch, sq_chan_stats *st)
{
    const uint8_t *e;
    if (!b || !info || !st || ch >= info->n_channels) {
        return SQ_ERR_ARG;
    }
    e = b + SQ_HEADER_SIZE + SQ_ENTRY_SIZE * ch;
    st->dtype = e[0];
    st->codec = e[1];
    st->data_len = (uint32_t)sq_get_le(e + 4, 4);
    st->count = (uint32_t)sq_get_le(e + 8, 4);
    st->flags = (uint32_t)sq_get_le(e + 12, 4);
    st->idx_min = (uint32_t)sq_get_le(e + 16, 4);
    st->idx_max = (uint32_t)sq_get_le(e + 20, 4);
    st->min = (int64_t)sq_get_le(e + 24, 8);
    st->max = (int64_t)sq_get_le(e + 32, 8);
    st->first = (int64_t)sq_get_le(e + 40, 8);
    st->last = (int64_t)sq_get_le(e + 48, 8);
    st->sum = (int64_t)sq_get_le(e + 56, 8);
    st->sumsq = sq_get_le(e + 64, 8);
    return SQ_OK;
}

uint32_t sq_block_section(const uint8_t *b, const sq_block_info *info, int column, uint32_t *len,
                          uint8_t *codec)
{
    uint32_t off = SQ_HEADER_SIZE + SQ_ENTRY_SIZE * info->n_channels, i;
    *len = info->time_len;
    *codec = info->time_codec;
    for (i = 0; (int)i <= column; i++) {
        const uint8_t *e = b + SQ_HEADER_SIZE + SQ_ENTRY_SIZE * i;
        off += *len;
        *len = (uint32_t)sq_get_le(e + 4, 4);
        *codec = e[1];
    }
    return off;
}

int sq_block_decode(const uint8_t *b, const sq_block_info *info, int column, int64_t *out, size_t cap)
{
    sq_col c;
    sq_dict_cursor cursor;
    uint32_t off, len, i;
    uint8_t codec;
    int err;
    if (!b || !info || !out || cap < info->n_samples || column < -1 ||
        column >= (int)info->n_channels) {
        return SQ_ERR_ARG;
    }
    if (column >= 0 && b[SQ_HEADER_SIZE + SQ_ENTRY_SIZE * (uint32_t)column] >= SQ_FLOAT32) {
        return SQ_ERR_UNSUPPORTED;
    }
    off = sq_block_section(b, info, column, &len, &codec);
    err = sq_col_open(&c, b + off, b + off + len, info->n_samples, codec,
                      column < 0 ? 8u : sq_dtype_bytes(b[SQ_HEADER_SIZE + SQ_ENTRY_SIZE * (uint32_t)column]),
                      &cursor);
    for (i = 0; err == SQ_OK && i < info->n_samples; i++) {
        uint64_t w;
        err = sq_col_next(&c, &w);
        out[i] = column < 0 ? (int64_t)((uint64_t)info->t_first + w * (uint64_t)info->tick) : (int64_t)w;
    }
    return err;
}

/* ---- the fast encoder ---------------------------------------------------------- */

/* Value i of a staged column as a word: the little-endian bytes, sign-extended
 * from their width ((x ^ m) - m with m the sign bit is portable C99). */
static uint64_t src_word(const sq_src *s, uint32_t i)
{
    uint64_t x = sq_get_le(s->data + (size_t)i * s->width, s->width), m;
    if (s->width < 8u) {
        m = (uint64_t)1 << (8u * s->width - 1u);
        x = (x ^ m) - m;
    }
    return x;
}

/* Residual of predictor `order` for word w0 at index i, after w1 and w2
 * (the words before it); order 0 is y = word - base, the differences need no
 * base. */
static uint64_t __attribute__((noinline)) residual(unsigned order, uint32_t i, uint64_t w0, uint64_t w1,
                                                  uint64_t w2, uint64_t base)
{
    if (order == 0 || i == 0) {
        return w0 - base;
    }
    if (order == 1 || i == 1) {
        return zigzag(w0 - w1);
    }
    return zigzag(w0 - 2u * w1 + w2);
}

/* The base: the smallest word, in signed order for a channel (its words are
 * int64 values) and in unsigned order for the time column (docs/format.md §3). */
static uint64_t src_min(const sq_src *s, uint32_t n, int *all_equal)
{
    uint64_t lo = src_word(s, 0), w;
    uint32_t i;
    *all_equal = 1;
    for (i = 1; i < n; i++) {
        w = src_word(s, i);
        *all_equal &= w == lo;
        if (s->dtype != 0 ? (int64_t)w < (int64_t)lo : w < lo) {
            lo = w;
        }
    }
    return lo;
}

/* One pass over a column with predictor `order`: the width of every mini-block
 * (stored in hdr unless it is NULL) and, when bits is not NULL, the residuals
 * bit-packed at those widths (hdr must then hold the widths already).
 * Returns the payload's bits.  Pricing and writing share it, which keeps the
 * encoder small in flash (a seal prices three orders, then writes one). */
static uint32_t enc_pass(const sq_src *s, uint32_t n, unsigned order, uint64_t base, uint8_t *hdr,
                         uint8_t *bits)
{
    uint64_t big = 0, w0, w1 = 0, w2 = 0, u;
    uint32_t i, total = 0;
    for (i = 0; i < n; i++) {
        w0 = src_word(s, i);
        u = residual(order, i, w0, w1, w2, base);
        w2 = w1;
        w1 = w0;
        if (bits != NULL) {
            unsigned w = hdr[i / SQ_MINI];
            put_bits(bits, total, u, w);
            total += w;
            continue;
        }
        big = u > big ? u : big;
        if ((i & (SQ_MINI - 1u)) == SQ_MINI - 1u || i == n - 1u) {
            unsigned w = bit_length(big);
            total += ((i & (SQ_MINI - 1u)) + 1u) * w;
            if (hdr != NULL) {
                hdr[i / SQ_MINI] = (uint8_t)w;
            }
            big = 0;
        }
    }
    return total;
}

/* Prices the three predictors; the smallest section wins, ties to the
 * smaller order (docs/format.md §3, the "fast" encoder). */
uint32_t sq_enc_plan(const sq_src *s, uint32_t n, uint8_t *codec, uint64_t *base_out)
{
    int all_equal;
    uint64_t base = src_min(s, n, &all_equal);
    uint32_t n_mini = (n + SQ_MINI - 1u) / SQ_MINI, best = 0, size;
    unsigned order;
    *codec = SQ_CODEC_ZERO;
    *base_out = base;
    if (all_equal) {
        return 8;
    }
    for (order = 0; order < 3u; order++) {
        size = 8u + n_mini + (enc_pass(s, n, order, base, NULL, NULL) + 7u) / 8u;
        if (order == 0 || size < best) {
            best = size;
            *codec = (uint8_t)order;
        }
    }
    return best;
}

/* The widths (as the header bytes), then the residuals packed at them. */
uint32_t sq_enc_write(const sq_src *s, uint32_t n, uint8_t codec, uint64_t base, uint8_t *out)
{
    uint32_t n_mini = (n + SQ_MINI - 1u) / SQ_MINI;
    unsigned order = codec & SQ_CODEC_ORDER;
    sq_put_le(out, base, 8);
    if (codec & SQ_CODEC_ZERO) {
        return 8;
    }
    enc_pass(s, n, order, base, out + 8, NULL);
    return 8u + n_mini + (enc_pass(s, n, order, base, out + 8, out + 8 + n_mini) + 7u) / 8u;
}

void sq_enc_entry(const sq_src *s, uint32_t n, uint8_t codec, uint32_t data_len, uint8_t *e)
{
    int64_t lo = (int64_t)src_word(s, 0), hi = lo, x;
    uint32_t i, i_lo = 0, i_hi = 0, flags = 0;
    uint64_t low = 0, squares = 0;
    int32_t high = 0;   /* carry word of the 128-bit sum: |high| ≤ 65536 */
    for (i = 0; i < n; i++) {
        uint64_t magnitude, sq;
        x = (int64_t)src_word(s, i);
        if (x < lo) { lo = x; i_lo = i; }
        if (x > hi) { hi = x; i_hi = i; }
        high += (low + (uint64_t)x < low) - (x < 0);
        low += (uint64_t)x;
        magnitude = x >= 0 ? (uint64_t)x : 0u - (uint64_t)x;
        sq = magnitude * magnitude;
        if (magnitude >> 32 || squares + sq < squares) {
            flags |= SQ_SUMSQ_INEXACT;
        }
        squares += sq;
    }
    if (high != ((low >> 63) ? -1 : 0)) {
        flags |= SQ_SUM_INEXACT;
    }
    e[0] = s->dtype;
    e[1] = codec;
    sq_put_le(e + 4, data_len, 4);
    sq_put_le(e + 8, n, 4);
    sq_put_le(e + 12, flags, 4);
    sq_put_le(e + 16, i_lo, 4);
    sq_put_le(e + 20, i_hi, 4);
    sq_put_le(e + 24, (uint64_t)lo, 8);
    sq_put_le(e + 32, (uint64_t)hi, 8);
    sq_put_le(e + 40, src_word(s, 0), 8);
    sq_put_le(e + 48, src_word(s, n - 1u), 8);
    sq_put_le(e + 56, low, 8);
    sq_put_le(e + 64, squares, 8);
}

/* ---- whole blocks, as the ring writes them ---------------------------------------- */

uint32_t sq_block_len(const uint8_t *p, uint32_t avail)
{
    uint32_t i;
    if (avail < SQ_BLOCK_PEEK) {
        return 0;
    }
    for (i = 0; i < 4; i++) {
        if (p[i] != sq_magic[i]) {
            return 0;
        }
    }
    return p[4] == SQ_FORMAT_VERSION ? (uint32_t)sq_get_le(p + 12, 4) : 0;
}

/* The predictor-1 section bounds the chosen one (the fast encoder keeps the
 * smallest): 64 bits for the first residual of a mini-block, 8w + 1 for the
 * others (a zigzagged difference of w-byte values). */
uint32_t sq_worst_block(const sq_stream_cfg *cfg)
{
    uint32_t n = cfg->block_samples, n_mini = (n + SQ_MINI - 1u) / SQ_MINI;
    uint32_t first = n < SQ_MINI ? n : SQ_MINI, size, c;
    size = SQ_HEADER_SIZE + 4u + (8u + n_mini + 8u * n);
    for (c = 0; c < cfg->n_channels; c++) {
        uint32_t bits = 64u * first + (n - first) * (8u * sq_dtype_bytes(cfg->dtype[c]) + 1u);
        size += SQ_ENTRY_SIZE + 8u + n_mini + (bits + 7u) / 8u;
    }
    return size;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t rest = a % b;
        a = b;
        b = rest;
    }
    return a;
}

/* Timestamps t[0..n) → time words k_i = (t_i - t_0) / tick into k; returns
 * tick.  The gcd of the offsets is the gcd of the steps between samples,
 * and a regular clock makes every step equal to the tick: then no division
 * runs at all (a 64-bit division is a slow library call on a Cortex-M0+). */
static uint64_t time_to_words(const uint8_t *t, uint8_t *k, uint32_t n)
{
    uint64_t tick = 0, prev = sq_get_le(t, 8), cur, step, word = 0;
    uint32_t i;
    for (i = 1; i < n; i++) {
        cur = sq_get_le(t + 8u * i, 8);
        step = cur - prev;
        prev = cur;
        if (step && step != tick) {
            tick = gcd(step, tick);
        }
    }
    tick = tick ? tick : 1u;
    prev = sq_get_le(t, 8);
    sq_put_le(k, 0, 8);
    for (i = 1; i < n; i++) {
        cur = sq_get_le(t + 8u * i, 8);
        step = cur - prev;
        prev = cur;
        word += step == tick ? 1u : step / tick;
        sq_put_le(k + 8u * i, word, 8);
    }
    return tick;
}

static void write_header(const sq_stream_cfg *cfg, uint8_t *b, const sq_block_info *info)
{
    uint32_t i;
    for (i = 0; i < 4; i++) {
        b[i] = sq_magic[i];
    }
    b[4] = SQ_FORMAT_VERSION;
    b[5] = info->time_codec;
    sq_put_le(b + 6, cfg->n_channels, 2);
    sq_put_le(b + 8, info->n_samples, 4);
    sq_put_le(b + 12, info->block_len, 4);
    sq_put_le(b + 16, (uint64_t)info->t_first, 8);
    sq_put_le(b + 24, (uint64_t)info->t_last, 8);
    sq_put_le(b + 32, (uint64_t)info->tick, 8);
    sq_put_le(b + 40, cfg->stream_id, 4);
    sq_put_le(b + 44, info->time_len, 4);
    sq_put_le(b + 48, info->seq, 8);
}

/* One column's section at out (zeroed first); returns its length. */
static uint32_t enc_column(const sq_src *s, uint32_t n, uint8_t *out, uint8_t *codec)
{
    uint64_t base;
    uint32_t size = sq_enc_plan(s, n, codec, &base);
    memset(out, 0, size);
    sq_enc_write(s, n, *codec, base, out);
    return size;
}

uint32_t sq_enc_block(const sq_stream_cfg *cfg, const uint8_t *data, uint32_t n, uint64_t seq,
                      uint8_t *b, uint8_t *scratch, sq_block_info *info)
{
    const uint8_t *col = data + 8u * cfg->block_samples;
    uint32_t off = SQ_HEADER_SIZE + SQ_ENTRY_SIZE * cfg->n_channels, c;
    sq_src src;
    uint8_t codec;
    info->n_samples = n;
    info->n_channels = cfg->n_channels;
    info->stream_id = cfg->stream_id;
    info->seq = seq;
    info->t_first = (int64_t)sq_get_le(data, 8);
    info->t_last = (int64_t)sq_get_le(data + 8u * (n - 1u), 8);
    info->tick = (int64_t)time_to_words(data, scratch, n);
    src.data = scratch;
    src.width = 8;
    src.dtype = 0;
    memset(b, 0, off);
    info->time_len = enc_column(&src, n, b + off, &info->time_codec);
    off += info->time_len;
    for (c = 0; c < cfg->n_channels; c++) {
        uint32_t size;
        src.data = col;
        src.width = (uint8_t)sq_dtype_bytes(cfg->dtype[c]);
        src.dtype = cfg->dtype[c];
        size = enc_column(&src, n, b + off, &codec);
        sq_enc_entry(&src, n, codec, size, b + SQ_HEADER_SIZE + SQ_ENTRY_SIZE * c);
        off += size;
        col += (size_t)src.width * cfg->block_samples;
    }
    info->block_len = off + 4u;
    write_header(cfg, b, info);
    sq_put_le(b + off, sq_crc32(0, b, off), 4);
    return info->block_len;
}
