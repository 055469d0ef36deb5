/* One stream's ring (↔ sensorq/store): staging for appends that may come
 * from an interrupt, sealing from the main loop, and the log of sealed
 * blocks on a flash partition (sq_log.c) or in RAM.
 *
 * Staging is two halves of block_samples samples in the caller's work
 * memory.  The producer (sq_ring_append) fills the half `fill`; the append
 * that fills it, or sq_ring_close, closes it (its sequence number, then
 * ready = 1, then fill flips).  The consumer (sq_ring_poll) seals a ready
 * half, programs the block, then clears count and ready.  Every shared field
 * is a 32-bit word with one writer, and each side writes its data before the
 * word that publishes it, so neither waits for the other and an append never
 * writes where the seal or a query reads. */
#include <stddef.h>
#include <string.h>

#include "sq_internal.h"

#define SQ_STAGE_MAGIC 0x31545153u   /* "SQT1" */

/* Keeps the compiler from moving data stores past the store that publishes
 * them (the core itself does not reorder them: one Cortex-M0+). */
#if defined(__GNUC__)
#define SQ_BARRIER() __asm__ volatile("" ::: "memory")
#else
#define SQ_BARRIER() ((void)0)
#endif

static uint32_t sample_bytes(const sq_stream_cfg *cfg)
{
    uint32_t total = 8, c;
    for (c = 0; c < cfg->n_channels; c++) {
        total += sq_dtype_bytes(cfg->dtype[c]);
    }
    return total;
}

static int cfg_valid(const sq_stream_cfg *cfg)
{
    unsigned c;
    if (!cfg || cfg->n_channels < 1u || cfg->n_channels > SQ_MAX_CHANNELS || cfg->codec > SQ_CODEC_COMPACT ||
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

static int flash_valid(const sq_flash *fl)
{
    return fl && fl->prog && fl->erase && (fl->read || fl->mapped) && fl->sector_size &&
           fl->prog_size >= 1u && fl->prog_size <= 256u && fl->size >= fl->sector_size;
}

/* a / b (b > 0), and a % b into *rem unless NULL, by shift and subtract, one
 * quotient bit a step: the library's few divisions by a run-time value
 * (an irregular clock's tick, a mean, the log's geometry) are not worth
 * libgcc's 64-bit division (0.5 KB of flash on a Cortex-M0+). */
uint64_t sq_udiv64(uint64_t a, uint64_t b, uint64_t *rem)
{
    uint64_t r = 0;
    unsigned i;
    for (i = 0; i < 64u; i++) {
        uint64_t top = r >> 63;           /* r << 1 would lose it: then r > b surely */
        r = (r << 1) | (a >> 63);
        a <<= 1;
        if (top || r >= b) {
            r -= b;
            a |= 1u;
        }
    }
    if (rem) {
        *rem = r;
    }
    return a;
}

uint32_t sq_div(uint32_t a, uint32_t b)
{
    return (uint32_t)sq_udiv64(a, b, NULL);
}

uint32_t sq_round_up(uint32_t n, uint32_t unit)
{
    return sq_div(n + unit - 1u, unit) * unit;
}

#define round_up sq_round_up

#define ROUND8(n) (((n) + 7u) & ~(uint32_t)7u)

/* The work memory, sized and carved by one walk: the staging control, two
 * halves, the block buffer, the bank header buffer, then (8-aligned) the
 * block being read, its directory entry, the encoder's working memory and
 * its scratch (8 bytes a sample).  Offsets are from work's first 8-aligned
 * byte.  With r, its pointers are set; returns the bytes taken from work
 * (with r NULL, for the worst alignment of work). */
static size_t layout(const sq_stream_cfg *cfg, uint32_t prog_size, uint8_t *work, sq_ring *r)
{
    uint32_t half = ROUND8(cfg->block_samples * sample_bytes(cfg));
    uint32_t buf_len = round_up(sq_worst_block(cfg), prog_size);
    uint32_t lead = r ? (8u - ((uintptr_t)work & 7u)) & 7u : 7u;
    uint32_t data = ROUND8(sizeof(sq_stage)), buf = data + 2u * half, hbuf = buf + buf_len;
    uint32_t info = ROUND8(hbuf + round_up(32, prog_size));
    uint32_t st = info + ROUND8(sizeof(sq_block_info)), enc = st + ROUND8(sizeof(sq_chan_stats));
    uint32_t scratch = enc + ROUND8(sizeof(sq_enc_work));
    if (r) {
        uint8_t *p = work + lead;
        r->stage = (sq_stage *)(void *)p;
        r->data[0] = p + data;
        r->data[1] = p + data + half;
        r->buf = p + buf;
        r->buf_len = buf_len;
        r->hbuf = p + hbuf;
        r->info = p + info;
        r->st = p + st;
        r->enc = p + enc;
        ((sq_enc_work *)r->enc)->scratch = (uint64_t *)(void *)(p + scratch);
    }
    return lead + scratch + 8u * cfg->block_samples;
}

size_t sq_ring_work_size(const sq_stream_cfg *cfg, const sq_flash *fl)
{
    return cfg_valid(cfg) && flash_valid(fl) ? layout(cfg, fl->prog_size, NULL, NULL) : 0;
}

/* A hash of the stream configuration, kept in the staging to recognise it
 * after a reset (sq_ring_resume): only ever compared on the device that
 * wrote it, so the words' byte order does not matter.  The fields are
 * hashed in two runs that hold no padding: n_channels … codec (bytes), and
 * block_samples … schema (words). */
typedef char sq_cfg_words_adjacent[offsetof(sq_stream_cfg, schema) -
                                   offsetof(sq_stream_cfg, block_samples) == 8u ? 1 : -1];

static uint32_t cfg_hash(const sq_stream_cfg *cfg)
{
    uint32_t crc = sq_crc32(0, &cfg->n_channels, offsetof(sq_stream_cfg, codec) + 1u);
    return sq_crc32(crc, (const uint8_t *)&cfg->block_samples, 3u * sizeof(uint32_t));
}

/* Carve the work memory; the log's geometry follows from the block buffer. */
static int __attribute__((noinline)) setup(sq_ring *r, const sq_stream_cfg *cfg, const sq_flash *fl, uint8_t *work,
                 size_t work_len)
{
    if (!r || !work || !cfg_valid(cfg) || !flash_valid(fl) || work_len < layout(cfg, fl->prog_size, NULL, NULL)) {
        return SQ_ERR_ARG;
    }
#ifdef SQ_NO_COMPACT
    if (cfg->codec == SQ_CODEC_COMPACT) {
        return SQ_ERR_UNSUPPORTED;     /* built without the compact encoder */
    }
#endif
    memset(r, 0, sizeof *r);
    r->cfg = *cfg;
    r->fl = *fl;
    layout(cfg, fl->prog_size, work, r);
    return sq_log_geometry(r);
}

static void stage_reset(sq_ring *r)
{
    sq_stage *s = r->stage;
    memset(s, 0, sizeof *s);
    s->cfg_hash = cfg_hash(&r->cfg);
    s->close_seq = r->next_seq;
    s->magic = SQ_STAGE_MAGIC;
}

/* ---- the producer ------------------------------------------------------------ */

static void close_half(sq_stage *s, unsigned h)
{
    s->half[h].seq = s->close_seq++;
    SQ_BARRIER();
    s->half[h].ready = 1;
    SQ_BARRIER();
    s->fill = h ^ 1u;
}

static int check_values(const sq_stream_cfg *cfg, const int64_t *values)
{
    unsigned c;
    for (c = 0; c < cfg->n_channels; c++) {
        unsigned w = sq_dtype_bytes(cfg->dtype[c]);
        if (sq_sign_extend((uint64_t)values[c], w) != values[c]) {
            return SQ_ERR_RANGE;
        }
    }
    return SQ_OK;
}

const uint8_t *sq_half_column(const sq_stream_cfg *cfg, const uint8_t *data, int c)
{
    int i;
    for (i = -1; i < c; i++) {
        data += cfg->block_samples * (i < 0 ? 8u : sq_dtype_bytes(cfg->dtype[i]));
    }
    return data;
}

/* Sample i of a half: the time, then each channel in its column. */
static void put_sample(const sq_ring *r, uint8_t *data, uint32_t i, int64_t t, const int64_t *values)
{
    uint32_t bs = r->cfg.block_samples;
    uint8_t *col = data + 8u * bs;
    unsigned c;
    sq_put_le(data + 8u * i, (uint64_t)t, 8);
    for (c = 0; c < r->cfg.n_channels; c++) {
        unsigned w = sq_dtype_bytes(r->cfg.dtype[c]);
        sq_put_le(col + (size_t)w * i, (uint64_t)values[c], w);
        col += (size_t)w * bs;
    }
}

int sq_ring_append(sq_ring *r, int64_t t, const int64_t *values)
{
    sq_stage *s;
    unsigned h;
    uint32_t n;
    int err;
    if (!r || !values || !r->stage) {
        return SQ_ERR_ARG;
    }
    s = r->stage;
    if (s->has_last && t < s->last_t) {
        return SQ_ERR_ORDER;
    }
    err = check_values(&r->cfg, values);
    if (err) {
        return err;
    }
    h = s->fill & 1u;
    if (s->half[h].count && (uint64_t)t - (uint64_t)s->last_t >= ((uint64_t)1 << 63)) {
        close_half(s, h);      /* a block never holds a step of 2^63 ns or more */
        h ^= 1u;
    }
    n = s->half[h].count;
    if (s->half[h].ready || n >= r->cfg.block_samples) {
        s->dropped++;          /* the seal is late: both halves wait */
        return SQ_ERR_FULL;
    }
    put_sample(r, r->data[h], n, t, values);
    SQ_BARRIER();
    s->half[h].count = n + 1u;
    s->last_t = t;
    s->has_last = 1;
    if (n + 1u == r->cfg.block_samples) {
        close_half(s, h);
    }
    return SQ_OK;
}

int sq_ring_close(sq_ring *r)
{
    unsigned h;
    if (!r || !r->stage) {
        return SQ_ERR_ARG;
    }
    h = r->stage->fill & 1u;
    if (r->stage->half[h].count && !r->stage->half[h].ready) {
        close_half(r->stage, h);
    }
    return SQ_OK;
}

/* ---- the consumer -------------------------------------------------------------- */

/* The ready half with the smaller sequence number, or -1. */
static int oldest_ready(const sq_stage *s)
{
    int a = s->half[0].ready != 0, b = s->half[1].ready != 0;
    if (a && b) {
        return s->half[0].seq < s->half[1].seq ? 0 : 1;
    }
    return a ? 0 : b ? 1 : -1;
}

static int seal_half(sq_ring *r, unsigned h)
{
    sq_half *half = &r->stage->half[h];
    sq_block_info *info = (sq_block_info *)r->info;
    uint32_t len = sq_enc_block(&r->cfg, r->data[h], half->count, half->seq, r->buf,
                                (sq_enc_work *)r->enc, info);
    int err = sq_log_write(r, len, info);
    if (err) {
        return err;
    }
    half->count = 0;
    SQ_BARRIER();
    half->ready = 0;
    return SQ_OK;
}

int sq_ring_poll(sq_ring *r)
{
    int h, err = SQ_OK;
    if (!r || !r->stage) {
        return SQ_ERR_ARG;
    }
    for (;;) {
        err = sq_log_erase_ahead(r);       /* the spare is erased before a bank can fill */
        h = oldest_ready(r->stage);
        if (err || h < 0) {
            return err;
        }
        err = seal_half(r, (unsigned)h);
        if (err) {
            return err;
        }
    }
}

int sq_ring_flush(sq_ring *r)
{
    int err = sq_ring_close(r);
    return err ? err : sq_ring_poll(r);
}

/* ---- set-up: flash -------------------------------------------------------------- */

int sq_ring_format(sq_ring *r, const sq_stream_cfg *cfg, const sq_flash *fl, uint8_t *work,
                   size_t work_len)
{
    int err = setup(r, cfg, fl, work, work_len);
    if (!err) {
        err = sq_log_format(r);
    }
    if (!err) {
        stage_reset(r);
    }
    return err;
}

/* Times of one half in order after *prev, with no step of 2^63 ns or more
 * inside it. */
static int half_times_valid(const uint8_t *data, uint32_t count, int64_t *prev, int *has_prev)
{
    uint32_t i;
    for (i = 0; i < count; i++) {
        int64_t t = (int64_t)sq_get_le(data + 8u * i, 8);
        if (*has_prev && (t < *prev || (i && (uint64_t)t - (uint64_t)*prev >= ((uint64_t)1 << 63)))) {
            return 0;
        }
        *prev = t;
        *has_prev = 1;
    }
    return 1;
}

/* The staging area left in work by a ring of this configuration, if it
 * holds together: magic and configuration, counts in range, a closed half's
 * sequence number the next one the log expects (an older one was sealed
 * before the reset: dropped), times in order after the newest block.
 * Anything else is dropped, never trusted. */
static int __attribute__((noinline)) stage_valid(sq_ring *r)
{
    sq_stage *s = r->stage;
    int64_t prev = r->newest_t;
    int has_prev = r->has_blocks, k;
    uint64_t expect = r->next_seq;
    unsigned first;
    if (s->magic != SQ_STAGE_MAGIC || s->cfg_hash != cfg_hash(&r->cfg) || s->fill > 1u) {
        return 0;
    }
    if (s->half[s->fill].ready && !s->half[s->fill ^ 1u].ready) {
        s->fill ^= 1u;          /* the reset fell between closing a half and moving on */
    }
    /* the closed half first, unless both wait and the fill half was closed first */
    first = s->fill ^ 1u;
    if (s->half[0].ready && s->half[1].ready && s->half[s->fill].seq < s->half[first].seq) {
        first = s->fill;
    }
    for (k = 0; k < 2; k++) {
        unsigned h = first ^ (unsigned)k;
        sq_half *half = &s->half[h];
        if (half->count > r->cfg.block_samples || half->ready > 1u) {
            return 0;
        }
        if (half->ready && (half->seq < expect || !half->count)) {
            half->count = 0;        /* sealed before the reset */
            half->ready = 0;
        }
        if (half->ready && half->seq != expect++) {
            return 0;
        }
        if (!half_times_valid(r->data[h], half->count, &prev, &has_prev)) {
            return 0;
        }
    }
    s->close_seq = expect;
    s->last_t = prev;
    s->has_last = (uint32_t)has_prev;
    return 1;
}

int sq_ring_mount(sq_ring *r, const sq_stream_cfg *cfg, const sq_flash *fl, uint8_t *work,
                  size_t work_len)
{
    int err = setup(r, cfg, fl, work, work_len);
    if (!err) {
        err = sq_log_mount(r);
    }
    if (!err) {
        stage_reset(r);
    }
    return err;
}

/* Separate from sq_ring_mount so that a firmware that never keeps RAM
 * across a reset does not link the staging's validation. */
int sq_ring_resume(sq_ring *r, const sq_stream_cfg *cfg, const sq_flash *fl, uint8_t *work,
                   size_t work_len)
{
    int err = setup(r, cfg, fl, work, work_len);
    if (!err) {
        err = sq_log_mount(r);
    }
    if (!err && !stage_valid(r)) {
        stage_reset(r);
    }
    return err;
}

/* ---- set-up: RAM ----------------------------------------------------------------- */

static int ram_read(void *ctx, uint32_t off, uint8_t *buf, uint32_t len)
{
    memcpy(buf, (const uint8_t *)ctx + off, len);
    return 0;
}

static int ram_prog(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len)
{
    memcpy((uint8_t *)ctx + off, buf, len);
    return 0;
}

static int ram_erase(void *ctx, uint32_t off)
{
    /* every RAM "sector" is one bank (ram_flash); its size is before it */
    uint8_t *base = (uint8_t *)ctx;
    memset(base + off, 0xFF, sq_le32(base - 4, 4));
    return 0;
}

/* The RAM partition: region after the work memory, one bank per sector, the
 * sector size kept in the 4 bytes before it. */
static size_t ram_flash(const sq_stream_cfg *cfg, uint8_t *region, size_t len, sq_flash *fl)
{
    size_t work = layout(cfg, 1, NULL, NULL) + 4u;
    uint32_t bank = round_up(32u + sq_worst_block(cfg), 4);
    memset(fl, 0, sizeof *fl);
    fl->read = ram_read;
    fl->prog = ram_prog;
    fl->erase = ram_erase;
    fl->prog_size = 1;
    fl->sector_size = bank;
    if (!region || len < work + 2u * bank) {
        return work + 2u * bank;
    }
    fl->ctx = region + work;
    fl->mapped = region + work;
    len -= work;
    fl->size = sq_div(len > 0x7FFFFFFFu ? 0x7FFFFFFFu : (uint32_t)len, bank) * bank;
    sq_put_le(region + work - 4u, bank, 4);
    return work + 2u * bank;
}

size_t sq_ring_region_min(const sq_stream_cfg *cfg)
{
    sq_flash fl;
    return cfg_valid(cfg) ? ram_flash(cfg, NULL, 0, &fl) : 0;
}

static int ram_ring(sq_ring *r, uint8_t *region, size_t len, const sq_stream_cfg *cfg, int reopen)
{
    sq_flash fl;
    if (!r || !region || !cfg_valid(cfg)) {
        return SQ_ERR_ARG;
    }
    if (len < ram_flash(cfg, region, len, &fl)) {
        return SQ_ERR_FULL;
    }
    return reopen ? sq_ring_resume(r, cfg, &fl, region, len) : sq_ring_format(r, cfg, &fl, region, len);
}

int sq_ring_init(sq_ring *r, uint8_t *region, size_t region_len, const sq_stream_cfg *cfg)
{
    return ram_ring(r, region, region_len, cfg, 0);
}

int sq_ring_reopen(sq_ring *r, uint8_t *region, size_t region_len, const sq_stream_cfg *cfg)
{
    return ram_ring(r, region, region_len, cfg, 1);
}

/* ---- what the ring holds ------------------------------------------------------------- */

uint32_t sq_ring_block_count(const sq_ring *r)
{
    return r && r->has_blocks ? (uint32_t)(r->next_seq - r->oldest_seq) : 0;
}

int sq_ring_stage_view(const sq_ring *r, sq_stage_view view[2])
{
    const sq_stage *s = r->stage;
    unsigned fill, closed;
    do {      /* a snapshot no append changes under us: fill read twice */
        fill = s->fill & 1u;
        closed = fill ^ 1u;     /* a half waiting for its seal, or empty */
        view[0].count = s->half[closed].ready ? s->half[closed].count : 0;
        view[1].count = s->half[fill].count;
    } while (fill != (s->fill & 1u));
    view[0].data = r->data[closed];
    view[1].data = r->data[fill];
    if (s->half[fill].ready && view[0].count) {
        sq_stage_view older = view[1];   /* both wait: the fill half was closed first */
        view[1] = view[0];
        view[0] = older;
    }
    if (!view[0].count) {
        view[0] = view[1];
        view[1].count = 0;
    }
    return (view[0].count != 0) + (view[1].count != 0);
}

uint32_t sq_ring_staged(const sq_ring *r)
{
    sq_stage_view v[2];
    int n;
    if (!r || !r->stage) {
        return 0;
    }
    n = sq_ring_stage_view(r, v);
    return (n > 0 ? v[0].count : 0) + (n > 1 ? v[1].count : 0);
}

/* The staged samples' first and last times, from one snapshot of the
 * staging (an append may land meanwhile: its data is published by its
 * count, so the times read are whole). */
static uint32_t staged_times(const sq_ring *r, int64_t *first, int64_t *last)
{
    sq_stage_view v[2];
    int n = sq_ring_stage_view(r, v);
    if (!n) {
        return 0;
    }
    *first = (int64_t)sq_get_le(v[0].data, 8);
    *last = (int64_t)sq_get_le(v[n - 1].data + 8u * (v[n - 1].count - 1u), 8);
    return v[0].count + (n > 1 ? v[1].count : 0);
}

int sq_ring_stats_get(const sq_ring *r, sq_ring_stats *st)
{
    uint32_t chain;
    int64_t first = 0, last = 0;
    if (!r || !st || !r->stage) {
        return SQ_ERR_ARG;
    }
    memset(st, 0, sizeof *st);
    st->blocks = sq_ring_block_count(r);
    st->staged = staged_times(r, &first, &last);
    st->oldest_seq = r->oldest_seq;
    st->next_seq = r->next_seq;
    st->blocks_evicted = r->oldest_seq;
    st->has_data = (uint8_t)(r->has_blocks || st->staged);
    st->oldest_t = r->has_blocks ? r->oldest_t : first;
    st->newest_t = st->staged ? last : r->has_blocks ? r->newest_t : 0;
    chain = r->head >= r->oldest ? r->head - r->oldest : r->head + r->n_banks - r->oldest;
    st->bank_size = r->bank_size;
    st->capacity = (r->n_banks - 1u) * r->bank_size;
    st->bytes_used = chain * r->bank_size + r->head_off;
    st->bytes_free = st->capacity - st->bytes_used;
    st->samples_dropped = r->stage->dropped;
    return sq_log_wear(r, &st->erase_min, &st->erase_max);
}
