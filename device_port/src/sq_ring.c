/* One stream's ring in caller memory (↔ sensorq/store): a staging area for the
 * open block's raw samples, then a circular log of sealed blocks, each stored
 * contiguously (a block that does not fit before the end of the log starts
 * again at offset 0), the oldest evicted first. */
#include <string.h>

#include "sq_internal.h"

#define SQ_NO_WRAP UINT32_MAX

static size_t channel_bytes(const sq_stream_cfg *cfg)
{
    size_t total = 0;
    unsigned c;
    for (c = 0; c < cfg->n_channels; c++) {
        total += sq_dtype_bytes(cfg->dtype[c]);
    }
    return total;
}

/* The largest block block_samples samples can make: the predictor-1 section
 * bounds the chosen one (the fast encoder keeps the smallest). */
static size_t worst_block(const sq_stream_cfg *cfg)
{
    size_t n = cfg->block_samples, n_mini = (n + SQ_MINI - 1u) / SQ_MINI;
    size_t first = n < SQ_MINI ? n : SQ_MINI, size;
    unsigned c;
    size = SQ_HEADER_SIZE + 4u + (8u + n_mini + 8u * n);
    for (c = 0; c < cfg->n_channels; c++) {
        size_t bits = 64u * first + (n - first) * (8u * sq_dtype_bytes(cfg->dtype[c]) + 1u);
        size += SQ_ENTRY_SIZE + 8u + n_mini + (bits + 7u) / 8u;
    }
    return size;
}

static int cfg_valid(const sq_stream_cfg *cfg)
{
    unsigned c;
    if (!cfg || cfg->n_channels < 1u || cfg->n_channels > SQ_MAX_CHANNELS ||
        cfg->block_samples < 1u || cfg->block_samples > SQ_MAX_BLOCK_SAMPLES) {
        return 0;
    }
    for (c = 0; c < cfg->n_channels; c++) {
        if (!sq_dtype_bytes(cfg->dtype[c])) {
            return 0;
        }
    }
    return 1;
}

size_t sq_ring_region_min(const sq_stream_cfg *cfg)
{
    if (!cfg_valid(cfg)) {
        return 0;
    }
    return cfg->block_samples * (8u + channel_bytes(cfg)) + worst_block(cfg);
}

int sq_ring_init(sq_ring *r, uint8_t *region, size_t region_len, const sq_stream_cfg *cfg)
{
    size_t need = sq_ring_region_min(cfg), staging;
    if (!r || !region || !need) {
        return SQ_ERR_ARG;
    }
    if (region_len < need) {
        return SQ_ERR_FULL;
    }
    staging = cfg->block_samples * (8u + channel_bytes(cfg));
    memset(r, 0, sizeof *r);
    r->cfg = *cfg;
    r->staging = region;
    r->log = region + staging;
    region_len -= staging;
    r->log_len = region_len > 0x7FFFFFFFu ? 0x7FFFFFFFu : (uint32_t)region_len;
    r->wrap_end = SQ_NO_WRAP;
    return SQ_OK;
}

/* Staged column c (-1 = time): column-major, block_samples values each. */
static uint8_t *staged_column(const sq_ring *r, int c, unsigned *width)
{
    uint8_t *p = r->staging + 8u * r->cfg.block_samples;
    int i;
    for (i = 0; i < c; i++) {
        p += r->cfg.block_samples * sq_dtype_bytes(r->cfg.dtype[i]);
    }
    *width = c < 0 ? 8u : sq_dtype_bytes(r->cfg.dtype[c]);
    return c < 0 ? r->staging : p;
}

int sq_ring_append(sq_ring *r, int64_t t, const int64_t *values)
{
    uint8_t *col;
    unsigned c, w;
    if (!r || !values) {
        return SQ_ERR_ARG;
    }
    if (r->has_last && t < r->last_t) {
        return SQ_ERR_ORDER;
    }
    if (r->staged && (uint64_t)t - (uint64_t)r->last_t >= ((uint64_t)1 << 63)) {
        sq_ring_seal(r);     /* a block never holds a step of 2^63 ns or more (format.md §3) */
    }
    for (c = 0; c < r->cfg.n_channels; c++) {
        w = sq_dtype_bytes(r->cfg.dtype[c]);
        if (sq_sign_extend((uint64_t)values[c], w) != values[c]) {
            return SQ_ERR_RANGE;
        }
    }
    /* staging is column-major: the timestamps, then each channel's values */
    sq_put_le(r->staging + 8u * r->staged, (uint64_t)t, 8);
    col = r->staging + 8u * r->cfg.block_samples;
    for (c = 0; c < r->cfg.n_channels; c++) {
        w = sq_dtype_bytes(r->cfg.dtype[c]);
        sq_put_le(col + (size_t)w * r->staged, (uint64_t)values[c], w);
        col += (size_t)w * r->cfg.block_samples;
    }
    r->staged++;
    r->last_t = t;
    r->has_last = 1;
    return r->staged == r->cfg.block_samples ? sq_ring_seal(r) : SQ_OK;
}

static void evict_oldest(sq_ring *r)
{
    uint32_t len = r->head <= r->log_len - SQ_HEADER_SIZE ? (uint32_t)sq_get_le(r->log + r->head + 12u, 4) : 0;
    if (len < SQ_HEADER_SIZE + 4u || len > r->log_len - r->head) {
        r->n_blocks = 0;      /* the log's bookkeeping was overwritten: start it afresh */
        return;
    }
    r->head += len;
    r->n_blocks--;
    if (r->head == r->wrap_end) {
        r->head = 0;
        r->wrap_end = SQ_NO_WRAP;
    }
}

/* Make room for len bytes at the write position; returns the offset. */
static uint32_t make_room(sq_ring *r, uint32_t len)
{
    if (r->tail + len > r->log_len) {
        /* wrap: the blocks after the write position are the oldest */
        while (r->n_blocks && r->head >= r->tail) {
            evict_oldest(r);
        }
        r->wrap_end = r->n_blocks ? r->tail : SQ_NO_WRAP;
        r->tail = 0;
    }
    while (r->n_blocks && r->head >= r->tail && r->head < r->tail + len) {
        evict_oldest(r);
    }
    if (!r->n_blocks) {
        r->head = r->tail;
        r->wrap_end = SQ_NO_WRAP;
    }
    return r->tail;
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

/* Timestamps → time words k_i = (t_i - t_first) / tick, in place; returns
 * tick.  The gcd of the offsets is the gcd of the steps between samples,
 * and a regular clock makes every step equal to the tick: then no division
 * runs at all (a 64-bit division is a slow library call on a Cortex-M0+). */
static uint64_t time_to_words(uint8_t *t, uint32_t n)
{
    uint64_t tick = 0, prev = sq_get_le(t, 8), cur, step, k = 0;
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
    sq_put_le(t, 0, 8);
    for (i = 1; i < n; i++) {
        cur = sq_get_le(t + 8u * i, 8);
        step = cur - prev;
        prev = cur;
        k += step == tick ? 1u : step / tick;
        sq_put_le(t + 8u * i, k, 8);
    }
    return tick;
}

static void write_header(const sq_ring *r, uint8_t *b, uint32_t n, uint32_t len, uint8_t time_codec,
                         uint32_t time_len, uint64_t first, uint64_t last, uint64_t tick)
{
    b[0] = 'S';
    b[1] = 'Q';
    b[2] = 'B';
    b[3] = '1';
    b[4] = SQ_FORMAT_VERSION;
    b[5] = time_codec;
    sq_put_le(b + 6, r->cfg.n_channels, 2);
    sq_put_le(b + 8, n, 4);
    sq_put_le(b + 12, len, 4);
    sq_put_le(b + 16, first, 8);
    sq_put_le(b + 24, last, 8);
    sq_put_le(b + 32, tick, 8);
    sq_put_le(b + 40, r->cfg.stream_id, 4);
    sq_put_le(b + 44, time_len, 4);
    sq_put_le(b + 48, r->seq, 8);
}

int sq_ring_seal(sq_ring *r)
{
    sq_src src[SQ_MAX_CHANNELS + 1u];
    uint8_t codec[SQ_MAX_CHANNELS + 1u];
    uint32_t size[SQ_MAX_CHANNELS + 1u], n, len, off, c, n_cols;
    uint64_t base[SQ_MAX_CHANNELS + 1u];
    uint64_t first, last, tick;
    unsigned w;
    uint8_t *b;
    if (!r) {
        return SQ_ERR_ARG;
    }
    n = r->staged;
    if (!n) {
        return SQ_OK;
    }
    n_cols = r->cfg.n_channels + 1u;
    src[0].data = staged_column(r, -1, &w);
    first = sq_get_le(src[0].data, 8);
    last = sq_get_le(src[0].data + 8u * (n - 1u), 8);
    tick = time_to_words(r->staging, n);
    len = SQ_HEADER_SIZE + SQ_ENTRY_SIZE * r->cfg.n_channels + 4u;
    for (c = 0; c < n_cols; c++) {
        src[c].data = staged_column(r, (int)c - 1, &w);
        src[c].width = (uint8_t)w;
        src[c].dtype = c ? r->cfg.dtype[c - 1u] : 0;
        size[c] = sq_enc_plan(&src[c], n, &codec[c], &base[c]);
        len += size[c];
    }
    b = r->log + make_room(r, len);   /* len ≤ worst_block ≤ log_len (sq_ring_init) */
    memset(b, 0, len);
    write_header(r, b, n, len, codec[0], size[0], first, last, tick);
    off = SQ_HEADER_SIZE + SQ_ENTRY_SIZE * r->cfg.n_channels;
    for (c = 0; c < n_cols; c++) {
        sq_enc_write(&src[c], n, codec[c], base[c], b + off);
        if (c) {
            sq_enc_entry(&src[c], n, codec[c], size[c], b + SQ_HEADER_SIZE + SQ_ENTRY_SIZE * (c - 1u));
        }
        off += size[c];
    }
    sq_put_le(b + off, sq_crc32(0, b, off), 4);
    r->tail += len;
    r->n_blocks++;
    r->staged = 0;
    r->seq++;
    return SQ_OK;
}

uint32_t sq_ring_block_count(const sq_ring *r)
{
    return r ? r->n_blocks : 0;
}

uint32_t sq_ring_staged(const sq_ring *r)
{
    return r ? r->staged : 0;
}

void sq_ring_iter_begin(const sq_ring *r, sq_ring_iter *it)
{
    it->off = r->head;
    it->left = r->n_blocks;
}

int sq_ring_next(const sq_ring *r, sq_ring_iter *it, const uint8_t **block, size_t *len)
{
    uint32_t block_len;
    *block = NULL;
    *len = 0;
    if (!it->left) {
        return SQ_OK;
    }
    if (it->off > r->log_len || r->log_len - it->off < SQ_HEADER_SIZE + 4u) {
        return SQ_ERR_CORRUPT;
    }
    block_len = (uint32_t)sq_get_le(r->log + it->off + 12u, 4);
    if (block_len < SQ_HEADER_SIZE + 4u || block_len > r->log_len - it->off) {
        return SQ_ERR_CORRUPT;
    }
    *block = r->log + it->off;
    *len = block_len;
    it->off += block_len;
    it->left--;
    if (it->off == r->wrap_end) {
        it->off = 0;
    }
    return SQ_OK;
}
