/* The smallest program that uses the whole device API a firmware needs —
 * ring init/append/seal and sq_query_run — linked with --gc-sections, so
 * that tools/size_report.py can count the flash those calls really pull in. */
#include <stddef.h>

#include "sensorq.h"

static uint8_t region[4096];
static sq_ring ring;
/* volatile: the compiler must not fold a known query or config into the code */
static uint8_t query_code[64];
static const uint8_t *volatile code_ptr = query_code;
static volatile size_t query_len = 33;
static volatile uint8_t dtype = SQ_INT16;
static volatile uint32_t block_samples = 64;
static sq_query_state query_state;

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

int footprint(int64_t t, int64_t v)
{
    sq_stream_cfg cfg = {1, {0}, 0, 0, 0};
    sq_result result;
    int64_t values[1];
    values[0] = v;
    cfg.dtype[0] = dtype;
    cfg.block_samples = block_samples;
    sq_ring_init(&ring, region, sizeof region, &cfg);
    sq_ring_append(&ring, t, values);
    sq_ring_poll(&ring);
    return sq_query_run(&query_state, code_ptr, query_len, &ring, t, &result);
}

static volatile int64_t sample = 2;

void _start(void)
{
    footprint(sample, sample);
    for (;;) {
    }
}
