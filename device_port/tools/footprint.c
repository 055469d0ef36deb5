/* The smallest program that uses what a firmware with flash storage needs —
 * sq_ring_mount (and format when there is no ring), append, poll, and
 * sq_query_run — linked with --gc-sections, so that tools/size_report.py can
 * count the flash those calls really pull in.  The flash callbacks are the
 * firmware's own (stubs here), not the library's. */
#include <stddef.h>

#include "sensorq.h"

static uint8_t work[4096];
static sq_ring ring;
/* volatile: the compiler must not fold a known query or config into the code */
static uint8_t query_code[64];
static const uint8_t *volatile code_ptr = query_code;
static volatile size_t query_len = 37;
static volatile uint8_t dtype = SQ_INT16;
#ifdef SQ_NO_COMPACT
static volatile uint8_t codec = SQ_CODEC_FAST;
#else
static volatile uint8_t codec = SQ_CODEC_COMPACT;
#endif
static volatile uint32_t block_samples = 64;
static volatile int flash_status;
static sq_query_state query_state;
#ifdef SQ_FOOTPRINT_MODEL
/* A model scoring the ring's newest window (SQ_MODEL_KINDS picks the kinds linked). */
static sq_model model;
static uint8_t model_bytes[2048];
static volatile size_t model_len = 411;
static uint8_t model_work[2048];
static volatile int32_t model_class;
#endif

void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    while (n--) {
        *d++ = (unsigned char)c;
    }
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) {
        *d++ = *s++;
    }
    return dst;
}

static int flash_read(void *ctx, uint32_t off, uint8_t *buf, uint32_t len)
{
    (void)ctx;
    (void)off;
    (void)buf;
    (void)len;
    return flash_status;
}

static int flash_prog(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len)
{
    (void)ctx;
    (void)off;
    (void)buf;
    (void)len;
    return flash_status;
}

static int flash_erase(void *ctx, uint32_t off)
{
    (void)ctx;
    (void)off;
    return flash_status;
}

int footprint(int64_t t, int64_t v)
{
    sq_stream_cfg cfg;
    sq_flash fl;
    sq_result result;
    int64_t values[1];
    values[0] = v;
    memset(&cfg, 0, sizeof cfg);
    memset(&fl, 0, sizeof fl);
    cfg.n_channels = 1;
    cfg.dtype[0] = dtype;
    cfg.codec = codec;
    cfg.block_samples = block_samples;
    fl.read = flash_read;
    fl.prog = flash_prog;
    fl.erase = flash_erase;
    fl.size = 64u * 1024u;
    fl.sector_size = 4096;
    fl.prog_size = 1;
    if (sq_ring_mount(&ring, &cfg, &fl, work, sizeof work) == SQ_ERR_CORRUPT) {
        sq_ring_format(&ring, &cfg, &fl, work, sizeof work);
    }
    sq_ring_append(&ring, t, values);
    sq_ring_poll(&ring);
#ifdef SQ_FOOTPRINT_MODEL
    if (sq_model_load(&model, model_bytes, model_len, &cfg) == SQ_OK) {
        sq_model_out out;
        if (sq_model_score(&model, &ring, model_work, sizeof model_work, &out) == SQ_OK) {
            model_class = out.cls;
        }
    }
#endif
    return sq_query_run(&query_state, code_ptr, query_len, &ring, t, &result);
}

static volatile int64_t sample = 2;

void _start(void)
{
    footprint(sample, sample);
    for (;;) {
    }
}
