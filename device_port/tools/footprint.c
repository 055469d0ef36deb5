/* The smallest program that uses the whole device API a firmware needs —
 * ring init/append/seal and sq_query_run — linked with --gc-sections, so
 * that tools/size_report.py can count the flash those calls really pull in. */
#include <stddef.h>

#include "sensorq.h"

static uint8_t region[4096];
static sq_ring ring;
extern const uint8_t query_code[];
extern const size_t query_len;
const uint8_t query_code[33] = {'S', 'Q', 'Q', '1', 1};
const size_t query_len = sizeof query_code;

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
    sq_stream_cfg cfg = {1, {SQ_INT16}, 64, 0};
    sq_result result;
    int64_t values[1];
    values[0] = v;
    sq_ring_init(&ring, region, sizeof region, &cfg);
    sq_ring_append(&ring, t, values);
    sq_ring_seal(&ring);
    return sq_query_run(query_code, query_len, &ring, t, &result);
}

void _start(void)
{
    footprint(1, 2);
    for (;;) {
    }
}
