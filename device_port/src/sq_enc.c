/* The block encoder (↔ sensorq/codec/exact.py and header2.py): blocks of
 * format version 2, byte for byte what the host's encode_block(...,
 * version=2, codec=...) writes for the same samples (docs/format.md §1–§3).
 *
 * A seal encodes in three steps, each column's choice made once: plan every
 * column (price the candidates, keep the smallest), size the directory,
 * then write the header, the directory and the sections.  Nothing big is on
 * the stack: a mini-block's residuals, the plans and the scratch (time words,
 * then one channel's dictionary at a time) are in the ring's work memory. */
#include <string.h>

#include "sq_internal.h"

#define SIGN64 ((uint64_t)1 << 63)

/* ---- little pieces ------------------------------------------------------------ */

static unsigned bit_length(uint64_t v)
{
    unsigned n = 0;
    uint32_t x = (uint32_t)(v >> 32);
    if (x) {
        n = 32;
    } else {
        x = (uint32_t)v;
    }
    while (x) {
        x >>= 1;
        n++;
    }
    return n;
}

static __attribute__((noinline)) uint64_t zigzag(uint64_t d)
{
    return (d << 1) ^ (0u - (d >> 63));
}

static __attribute__((noinline)) uint32_t varint_size(uint64_t v)
{
    uint32_t n = 1;
    while (v >= 0x80u) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80u) {
        *p++ = (uint8_t)(v | 0x80u);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* OR the w (0..32) low bits of v (already < 2^w) in at bit offset `bit`;
 * the bytes after the first are still zero. */
static void put_bits32(uint8_t *p, uint32_t bit, uint32_t v, unsigned w)
{
    unsigned off = bit & 7u;
    p += bit >> 3;
    if (!w) {
        return;
    }
    *p++ |= (uint8_t)(v << off);
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

/* The same for w up to 64, in 32-bit halves: a Cortex-M0+ has no 64-bit
 * shifter (a variable 64-bit shift is a library call). */
static void put_bits(uint8_t *p, uint32_t bit, uint64_t v, unsigned w)
{
    if (w > 32u) {
        put_bits32(p, bit, (uint32_t)v, 32);
        put_bits32(p, bit + 32u, (uint32_t)(v >> 32), w - 32u);
    } else {
        put_bits32(p, bit, (uint32_t)v, w);
    }
}

/* ---- what a column pass reads --------------------------------------------------
 * The sequence s_i a payload codes: a column's words minus the base, or
 * their ranks in the dictionary, or the dictionary's gaps. */

typedef struct {
    const uint8_t *data;     /* values, width bytes each; or the time words (8) */
    const uint64_t *dict;    /* ranks mode: the sorted distinct y values */
    uint64_t base;
    uint32_t dict_n;
    uint8_t width;
    uint8_t is_signed;       /* a channel: words are sign-extended, base in signed order */
    uint8_t gaps;            /* the sequence is the dictionary's gaps */
} src;

static uint64_t word_at(const src *s, uint32_t i)
{
    return sq_get_int(s->data, i, s->width);
}

#ifndef SQ_NO_COMPACT
/* The position of y among the dictionary's entries (it is one of them). */
static uint64_t rank_of(const src *s, uint64_t y)
{
    uint32_t lo = 0, hi = s->dict_n - 1u;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2u;
        if (s->dict[mid] < y) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}

#endif

static __attribute__((noinline)) uint64_t seq_at(const src *s, uint32_t i)
{
#ifdef SQ_NO_COMPACT
    return word_at(s, i) - s->base;
#else
    uint64_t y;
    if (s->gaps) {
        return i ? s->dict[i] - s->dict[i - 1u] - 1u : s->dict[0];
    }
    y = word_at(s, i) - s->base;
    return s->dict ? rank_of(s, y) : y;
#endif
}

/* ---- payloads ---------------------------------------------------------------------- */

#ifndef SQ_NO_COMPACT
/* Σ(u >> k) + c(k + 1): the bits of Rice(k). */
static __attribute__((noinline)) uint32_t rice_cost(const uint64_t *u, uint32_t c, unsigned k)
{
    uint32_t total = c * (k + 1u), i;
    for (i = 0; i < c; i++) {
        total += (uint32_t)(u[i] >> k);
    }
    return total;
}
#endif

/* A mini-block's header byte; *bits its payload bits.  Bit-packed at the
 * bit length w of the largest residual, unless Rice is strictly cheaper:
 * the Rice cost is convex in k, so walking k down from w - 1 while it does
 * not grow finds the least cost's smallest k (format.md §3).  The walk never
 * sums more than a few thousand, so 32 bits hold it. */
static uint8_t mini_block(const uint64_t *u, uint32_t c, int rice, uint32_t *bits)
{
    uint64_t big = 0;
    uint32_t i, cost, lower;
    unsigned w, k;
    for (i = 0; i < c; i++) {
        big |= u[i];            /* the OR has the bit length of the largest */
    }
    w = bit_length(big);
    *bits = c * w;
#ifdef SQ_NO_COMPACT
    (void)rice;
    (void)k;
    (void)cost;
    (void)lower;
    return (uint8_t)w;
#else
    if (!rice || w < 2u) {
        return (uint8_t)w;
    }
    k = w - 1u;
    cost = rice_cost(u, c, k);
    while (k > 0 && (lower = rice_cost(u, c, k - 1u)) <= cost) {
        k--;
        cost = lower;
    }
    if (cost >= *bits) {
        return (uint8_t)w;
    }
    *bits = cost;
    return (uint8_t)(SQ_RICE | k);
#endif
}

static void write_mini_block(const uint64_t *u, uint32_t c, uint8_t h, uint8_t *bits, uint32_t *at)
{
    uint32_t i;
    for (i = 0; i < c; i++) {
#ifndef SQ_NO_COMPACT
        if (h & SQ_RICE) {
            unsigned k = h & 0x3Fu;
            *at += (uint32_t)(u[i] >> k);                /* the quotient's zeros: already zero */
            put_bits(bits, *at, 1u | (u[i] & (((uint64_t)1 << k) - 1u)) << 1, k + 1u);
            *at += k + 1u;
            continue;
        }
#endif
        put_bits(bits, *at, u[i], h);
        *at += h;
    }
}

/* One pass over n values of s with predictor `order`: each mini-block's
 * residuals into the work memory, its header chosen, and, when out is not
 * NULL, the payload written there (zeroed before).  Returns the payload's
 * bytes: headers, then the bit stream. */
static uint32_t pass(sq_enc_work *e, const src *s, uint32_t n, unsigned order, int rice, uint8_t *out)
{
    uint32_t n_mini = (n + SQ_MINI - 1u) / SQ_MINI, i, m, bits = 0, b;
    uint64_t s1 = 0, s2 = 0;
    for (m = 0; m < n_mini; m++) {
        uint32_t c = n - m * SQ_MINI < SQ_MINI ? n - m * SQ_MINI : SQ_MINI;
        uint8_t h;
        for (i = 0; i < c; i++) {
            uint32_t at = m * SQ_MINI + i;
            uint64_t s0 = seq_at(s, at);
            unsigned k = at < order ? at : order;     /* the first values use lower orders */
            e->u[i] = k ? zigzag(s0 - (k == 1u ? s1 : 2u * s1 - s2)) : s0;
            s2 = s1;
            s1 = s0;
        }
        h = mini_block(e->u, c, rice, &b);
        if (out) {
            out[m] = h;
            write_mini_block(e->u, c, h, out + n_mini, &bits);
        } else {
            bits += b;
        }
    }
    return n_mini + (bits + 7u) / 8u;
}

/* ---- dictionaries ---------------------------------------------------------------------- */
#ifndef SQ_NO_COMPACT

static void sift_down(uint64_t *a, uint32_t root, uint32_t n)
{
    for (;;) {
        uint32_t child = 2u * root + 1u;
        uint64_t t;
        if (child >= n) {
            return;
        }
        if (child + 1u < n && a[child + 1u] > a[child]) {
            child++;
        }
        if (a[root] >= a[child]) {
            return;
        }
        t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

/* The sorted distinct y values of the column into scratch (heapsort: no
 * recursion, no extra memory); returns how many. */
static uint32_t build_dict(const src *s, uint32_t n, uint64_t *d)
{
    uint32_t i, k = 0;
    for (i = 0; i < n; i++) {
        d[i] = word_at(s, i) - s->base;
    }
    for (i = n / 2u; i-- > 0;) {
        sift_down(d, i, n);
    }
    for (i = n; i-- > 1u;) {
        uint64_t t = d[0];
        d[0] = d[i];
        d[i] = t;
        sift_down(d, 0, i);
    }
    for (i = 0; i < n; i++) {
        if (!i || d[i] != d[k - 1u]) {
            d[k++] = d[i];
        }
    }
    return k;
}
#endif

/* ---- statistics and the directory ---------------------------------------------------------------
 * A version-2 entry of an integer channel: kind (dtype | inexact flags),
 * codec, data_len, max − min, first − min, last − min, idx_min, idx_max,
 * zigzag(S1), S2 with m = min + (max − min) >> 1, S1 = Σ(x − m) and
 * S2 = Σ(x − m)², both mod 2^64; the minimum is the section's base. */

/* An entry's varints in their order: data_len, max − min, first − min,
 * last − min, idx_min, idx_max, zigzag(S1), S2. */
typedef struct {
    uint64_t f[8];
    uint64_t lo;             /* the minimum: the section's base */
    uint8_t kind;
} stats;

/* A column's statistics, in its order: a channel's signed (the words' sign
 * bit flipped, signed order is unsigned order), the time words' unsigned.
 * Also the planner's base, the minimum (one walk for both). */
/* *acc += x; 1 if that carried out of 64 bits.  Out of line: each inline
 * 64-bit add-and-compare is a dozen Cortex-M0+ instructions. */
static __attribute__((noinline)) int add_carry(uint64_t *acc, uint64_t x)
{
    *acc += x;
    return *acc < x;
}

/* Whether a comes before b in the column's order. */
static __attribute__((noinline)) int before(const src *s, uint64_t a, uint64_t b)
{
    uint64_t flip = (uint64_t)s->is_signed << 63;
    return (a ^ flip) < (b ^ flip);
}

static __attribute__((noinline)) void column_stats(const src *s, uint32_t n, uint8_t dtype, stats *st)
{
    uint64_t low = 0, m, nm, x, d, sq = 0, lo;
    int32_t high = 0;      /* carry word of the exact 128-bit sum: |high| ≤ 65536 */
    uint32_t i, i_lo = 0, i_hi = 0, at[3] = {0, 0, 0};
    int inexact_sq = 0;
    for (i = 0; i < n; i++) {
        /* the extremes by index (fewer live 64-bit values than by value) */
        x = word_at(s, i);
        i_lo = before(s, x, word_at(s, i_lo)) ? i : i_lo;
        i_hi = before(s, word_at(s, i_hi), x) ? i : i_hi;
        high += add_carry(&low, x) - (int32_t)(x >> 63);
        d = x >> 63 ? 0u - x : x;
        inexact_sq |= (d >> 32) != 0;
        inexact_sq |= add_carry(&sq, d * d);
    }
    lo = word_at(s, i_lo);
    st->kind = (uint8_t)(dtype | (high != ((low >> 63) ? -1 : 0) ? 0x08u : 0u) | (inexact_sq ? 0x10u : 0u));
    st->lo = lo;
    /* max − min, first − min, last − min */
    at[0] = i_hi;
    at[2] = n - 1u;
    for (i = 0; i < 3u; i++) {
        st->f[1u + i] = word_at(s, at[i]) - lo;
    }
    st->f[4] = i_lo;
    st->f[5] = i_hi;
    /* S1 = low − n·m, S2 = sq − 2m·low + n·m² = sq + m·(n·m − 2·low) */
    m = lo + (st->f[1] >> 1);
    nm = (uint64_t)n * m;
    st->f[6] = zigzag(low - nm);
    st->f[7] = sq + m * (nm - 2u * low);
}

/* ---- sections ------------------------------------------------------------------------------ */

/* Price a column (format.md §3): orders 0–2, then (compact channels) the
 * same over dictionary ranks; the first smallest wins.  Fills *p. */
static void plan_column(sq_enc_work *e, src *s, uint32_t n, int compact, sq_enc_plan *p)
{
    uint32_t size, head, order;
    stats st;
    column_stats(s, n, 0, &st);
    s->base = st.lo;
    s->dict = NULL;
    s->gaps = 0;
    head = varint_size(zigzag(s->base));
    p->base = s->base;
    p->codec = SQ_CODEC_ZERO | SQ_CODEC_SHORT;
    p->size = head;
    if (!st.f[1]) {                          /* max == min: every word is the base */
        return;
    }
    p->size = UINT32_MAX;
    for (order = 0; order < 3u; order++) {
        size = head + pass(e, s, n, order, compact, NULL);
        if (size < p->size) {
            p->size = size;
            p->codec = (uint8_t)(order | SQ_CODEC_SHORT);
        }
    }
#ifndef SQ_NO_COMPACT
    if (!compact || !s->is_signed) {
        return;
    }
    s->dict = e->scratch;
    s->dict_n = build_dict(s, n, e->scratch);
    s->gaps = 1;
    uint32_t dict_bytes = head + varint_size(s->dict_n) + pass(e, s, s->dict_n, 0, 1, NULL);
    s->gaps = 0;
    for (order = 0; order < 3u; order++) {
        size = dict_bytes + pass(e, s, n, order, 1, NULL);
        if (size < p->size) {
            p->size = size;
            p->codec = (uint8_t)(order | SQ_CODEC_DICT | SQ_CODEC_SHORT);
        }
    }
#endif
}

/* Write the section *p planned at out (p->size bytes, zeroed here). */
static void write_column(sq_enc_work *e, src *s, uint32_t n, int compact, const sq_enc_plan *p,
                         uint8_t *out)
{
    memset(out, 0, p->size);
    s->base = p->base;
    s->dict = NULL;
    s->gaps = 0;
    out = put_varint(out, zigzag(p->base));
    if (p->codec & SQ_CODEC_ZERO) {
        return;
    }
#ifndef SQ_NO_COMPACT
    if (p->codec & SQ_CODEC_DICT) {
        s->dict = e->scratch;
        s->dict_n = build_dict(s, n, e->scratch);
        s->gaps = 1;
        out = put_varint(out, s->dict_n);
        out += pass(e, s, s->dict_n, 0, 1, out);
        s->gaps = 0;
    }
#endif
    pass(e, s, n, p->codec & SQ_CODEC_ORDER, compact, out);
}

/* The entry's bytes at out; returns their count. */
static uint32_t write_entry(const src *s, uint32_t n, uint8_t dtype, const sq_enc_plan *p, uint8_t *out)
{
    uint8_t *q = out;
    stats st;
    unsigned i;
    column_stats(s, n, dtype, &st);
    st.f[0] = p->size;
    *q++ = st.kind;
    *q++ = p->codec;
    for (i = 0; i < 8u; i++) {
        q = put_varint(q, st.f[i]);
    }
    return (uint32_t)(q - out);
}

/* ---- time ------------------------------------------------------------------------------------------ */

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t rest;
        sq_udiv64(a, b, &rest);
        a = b;
        b = rest;
    }
    return a;
}

/* Timestamps t[0..n) → time words k_i = (t_i - t_0) / tick into k; returns
 * tick.  The gcd of the offsets is the gcd of the steps between samples,
 * and a regular clock makes every step equal to the tick: then no division
 * runs at all (a 64-bit division is a slow library call on a Cortex-M0+). */
static uint64_t time_to_words(const uint8_t *t, uint64_t *k, uint32_t n)
{
    uint64_t tick = 0, prev = sq_get_le(t, 8), cur, step;
    uint32_t i;
    for (i = 1; i < n; i++) {          /* the steps first, in k */
        cur = sq_get_le(t + 8u * i, 8);
        step = cur - prev;
        prev = cur;
        k[i] = step;
        if (step != tick) {            /* gcd(0, tick) = tick */
            tick = gcd(step, tick);
        }
    }
    tick = tick ? tick : 1u;
    k[0] = 0;
    for (i = 1; i < n; i++) {
        k[i] = k[i - 1u] + (k[i] == tick ? 1u : sq_udiv64(k[i], tick, NULL));
    }
    return tick;
}

/* ---- whole blocks ----------------------------------------------------------------------------------- */

/* Column c (-1: time) of a staged half as a source. */
static void column_src(const sq_stream_cfg *cfg, const uint8_t *data, const sq_enc_work *e, int c, src *s)
{
    s->is_signed = c >= 0;      /* base, dict and gaps: set by plan_column and write_column */
    s->data = c < 0 ? (const uint8_t *)e->scratch : sq_half_column(cfg, data, c);
    s->width = (uint8_t)(c < 0 ? 8u : sq_dtype_bytes(cfg->dtype[c]));
}

static uint8_t *write_header(const sq_stream_cfg *cfg, uint8_t *b, const sq_block_info *info)
{
    sq_put_le(b, 0x31425153u | (uint64_t)SQ_FORMAT_VERSION << 32, 5);     /* "SQB1", version */
    b = put_varint(b + 5, info->block_len);
    *b++ = cfg->n_channels;
    *b++ = info->time_codec;
    b = put_varint(b, info->n_samples);
    sq_put_le(b, (uint64_t)info->t_first, 8);
    b = put_varint(b + 8, (uint64_t)info->t_last - (uint64_t)info->t_first);
    b = put_varint(b, (uint64_t)info->tick);
    b = put_varint(b, cfg->stream_id);
    b = put_varint(b, info->seq);
    return put_varint(b, info->time_len);
}

uint32_t sq_enc_block(const sq_stream_cfg *cfg, const uint8_t *data, uint32_t n, uint64_t seq,
                      uint8_t *b, sq_enc_work *e, sq_block_info *info)
{
    int compact = cfg->codec == SQ_CODEC_COMPACT, c;
    uint32_t rest = 4, len, dir = 0;
    uint8_t *out = b, *sec;
    src s;
    info->n_samples = n;
    info->n_channels = cfg->n_channels;
    info->stream_id = cfg->stream_id;
    info->seq = seq;
    info->t_first = (int64_t)sq_get_le(data, 8);
    info->t_last = (int64_t)sq_get_le(data + 8u * (n - 1u), 8);
    for (c = -1; c < (int)cfg->n_channels; c++) {       /* plan: the time column first */
        if (c < 0) {
            info->tick = (int64_t)time_to_words(data, e->scratch, n);
        }
        column_src(cfg, data, e, c, &s);
        plan_column(e, &s, n, compact, &e->plan[c + 1]);
        rest += e->plan[c + 1].size;
        /* sized by writing it where the header goes later (no buffer on the stack) */
        dir += c < 0 ? 0 : write_entry(&s, n, cfg->dtype[c], &e->plan[c + 1], b);
    }
    rest += dir;
    info->time_codec = e->plan[0].codec;
    info->time_len = e->plan[0].size;
    /* the header holds its own length: written until it settles (the
     * varint of block_len grows at most a few times) */
    for (len = rest, info->block_len = 0; info->block_len != len;) {
        info->block_len = len;
        out = write_header(cfg, b, info);
        len = (uint32_t)(out - b) + rest;
    }
    /* then each column's entry (the directory) and section (after it); the
     * time words again first if a dictionary took the scratch */
#ifndef SQ_NO_COMPACT
    if (compact) {
        time_to_words(data, e->scratch, n);
    }
#endif
    for (c = -1, sec = out + dir; c < (int)cfg->n_channels; c++) {
        column_src(cfg, data, e, c, &s);
        if (c >= 0) {
            out += write_entry(&s, n, cfg->dtype[c], &e->plan[c + 1], out);
        }
        write_column(e, &s, n, compact, &e->plan[c + 1], sec);
        sec += e->plan[c + 1].size;
    }
    sq_put_le(sec, sq_crc32(0, b, (size_t)(sec - b)), 4);
    return info->block_len;
}

/* The largest block: a short section is at most its base (10 bytes), its
 * headers, and the predictor-1 bound of the fast encoder (64 bits for a
 * mini-block's first residual, 8w + 1 for the others), which every choice
 * of either codec beats or ties; a directory entry at most 64 bytes. */
uint32_t sq_worst_block(const sq_stream_cfg *cfg)
{
    uint32_t n = cfg->block_samples, n_mini = (n + SQ_MINI - 1u) / SQ_MINI;
    uint32_t first = n < SQ_MINI ? n : SQ_MINI, size, c;
    size = 64u + 4u + (10u + n_mini + 8u * n);
    for (c = 0; c < cfg->n_channels; c++) {
        uint32_t bits = 64u * first + (n - first) * (8u * sq_dtype_bytes(cfg->dtype[c]) + 1u);
        size += 64u + 10u + n_mini + (bits + 7u) / 8u;
    }
    return size;
}
