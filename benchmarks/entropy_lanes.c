/* A design study for issue 11 (bench_entropy_lanes.py builds and times it):
 * interleaved rANS decoders whose lanes share no bit position, written with
 * AVX-512 intrinsics, to learn what a vector decode of ENTROPY residuals
 * could reach before a payload form is designed around it.  Not part of
 * sensorq: its sections are still tANS-coded (sensorq/codec/tans.py).
 *
 * The coded form measured: K lanes (16 or 32), lane j codes residuals
 * i = j, j + K, ...; each lane a 32-bit rANS state in [2^16, 2^32); one
 * stream of 16-bit words, taken in residual order by the lanes that fall
 * below 2^16 (so a step of 16 lanes takes its words with one expand).
 * table[slot] (slot = x mod 2^scale) = bias | freq << 12 | top << 25, where
 * x' = freq * (x >> scale) + bias, and top is the symbol's index (7 bits) or,
 * for the fused decoder, its signed order-1 delta.
 *
 * A variant (io_bits 8) keeps 16-bit states in [2^8, 2^16) and a stream of
 * bytes, so that the lanes' states cost a section half the bytes.
 *
 * The scalar reference decodes all m residuals and returns the words it read,
 * or -1 when a lane did not end in its start state (the stream is not
 * whole).  The vector decoders decode whole steps only (m rounded down to a
 * multiple of their lanes), read up to 32 bytes past the last word they use
 * (the caller pads) and do not check the end states: a payload form built on
 * them would finish the last residuals and check the states as the reference
 * does (a few ns a section).
 */
#include <immintrin.h>
#include <stdint.h>

#define LIMIT (1u << 16)

static int states_end_whole(const uint32_t *x, int lanes) {
    for (int j = 0; j < lanes; j++)
        if (x[j] != LIMIT) return 0;
    return 1;
}

/* The reference: one residual at a time, symbol indices out. */
int lanes_scalar(const uint32_t *states, const uint16_t *words, int64_t m, const uint32_t *table,
                 int scale, int lanes, uint8_t *out) {
    uint32_t x[32];
    for (int j = 0; j < lanes; j++) x[j] = states[j];
    const uint32_t mask = (1u << scale) - 1;
    const uint16_t *p = words;
    for (int64_t i = 0; i < m; i++) {
        int j = (int)(i % lanes);
        uint32_t e = table[x[j] & mask];
        out[i] = (uint8_t)(e >> 25);
        uint32_t y = ((e >> 12) & 0x1FFF) * (x[j] >> scale) + (e & 0xFFF);
        if (y < LIMIT) y = (y << 16) | *p++;
        x[j] = y;
    }
    return states_end_whole(x, lanes) ? (int)(p - words) : -1;
}

/* One step of 16 lanes once the table entries e are known: the next states,
 * refilled from the shared stream at *p (an expand puts the next words in the
 * lanes that need one, in lane order).  io_bits: 16 (32-bit states in
 * [2^16, 2^32), 16-bit words) or 8 (16-bit states in [2^8, 2^16), bytes:
 * a lane's state costs the section 2 bytes instead of 4). */
static inline __m512i next_states(__m512i x, __m512i e, __m128i shift, const uint8_t **p, int io_bits) {
    const __m512i low12 = _mm512_set1_epi32(0xFFF), f13 = _mm512_set1_epi32(0x1FFF);
    __m512i y = _mm512_add_epi32(
        _mm512_mullo_epi32(_mm512_and_si512(_mm512_srli_epi32(e, 12), f13), _mm512_srl_epi32(x, shift)),
        _mm512_and_si512(e, low12));
    __mmask16 need = _mm512_cmplt_epu32_mask(y, _mm512_set1_epi32(1 << io_bits));
    __m512i w = io_bits == 16 ? _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)*p))
                              : _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)*p));
    *p += __builtin_popcount(need) * (io_bits / 8);
    return _mm512_mask_or_epi32(y, need, _mm512_sll_epi32(y, _mm_cvtsi32_si128(io_bits)),
                                _mm512_maskz_expand_epi32(need, w));
}

/* 16 lanes, the table (up to 2^12 slots) read by a gather. */
int lanes16_gather(const uint32_t *states, const uint16_t *words, int64_t m, const uint32_t *table,
                   int scale, uint8_t *out) {
    __m512i x = _mm512_loadu_si512(states);
    const __m512i mask = _mm512_set1_epi32((1 << scale) - 1);
    const __m128i shift = _mm_cvtsi32_si128(scale);
    const uint8_t *p = (const uint8_t *)words;
    for (int64_t s = 0; s < m / 16; s++) {
        __m512i e = _mm512_i32gather_epi32(_mm512_and_si512(x, mask), table, 4);
        _mm_storeu_si128((__m128i *)(out + 16 * s), _mm512_cvtepi32_epi8(_mm512_srli_epi32(e, 25)));
        x = next_states(x, e, shift, &p, 16);
    }
    return (int)((const uint16_t *)p - words);
}

/* The table (up to 64 slots) held in four registers: two two-table permutes
 * and a blend by the slot's bit 5 instead of a gather. */
typedef struct { __m512i t0, t1, t2, t3, mask; } RegisterTable;

static RegisterTable register_table(const uint32_t *table, int scale) {
    uint32_t t64[64] = {0};
    for (int i = 0; i < (1 << scale); i++) t64[i] = table[i];
    RegisterTable r = {_mm512_loadu_si512(t64), _mm512_loadu_si512(t64 + 16), _mm512_loadu_si512(t64 + 32),
                       _mm512_loadu_si512(t64 + 48), _mm512_set1_epi32((1 << scale) - 1)};
    return r;
}

static inline __m512i entries(const RegisterTable *r, __m512i x) {
    __m512i slot = _mm512_and_si512(x, r->mask);
    __m512i lo = _mm512_permutex2var_epi32(r->t0, slot, r->t1);
    __m512i hi = _mm512_permutex2var_epi32(r->t2, slot, r->t3);
    return _mm512_mask_blend_epi32(_mm512_test_epi32_mask(slot, _mm512_set1_epi32(32)), lo, hi);
}

/* 16 or 32 lanes (one or two independent registers of states in flight). */
int lanes_registers(const uint32_t *states, const uint16_t *words, int64_t m, const uint32_t *table,
                    int scale, int lanes, uint8_t *out) {
    const RegisterTable r = register_table(table, scale);
    const __m128i shift = _mm_cvtsi32_si128(scale);
    const uint8_t *p = (const uint8_t *)words;
    __m512i xa = _mm512_loadu_si512(states);
    if (lanes == 16) {
        for (int64_t s = 0; s < m / 16; s++) {
            __m512i e = entries(&r, xa);
            _mm_storeu_si128((__m128i *)(out + 16 * s), _mm512_cvtepi32_epi8(_mm512_srli_epi32(e, 25)));
            xa = next_states(xa, e, shift, &p, 16);
        }
        return (int)((const uint16_t *)p - words);
    }
    __m512i xb = _mm512_loadu_si512(states + 16);
    for (int64_t s = 0; s < m / 32; s++) {
        __m512i ea = entries(&r, xa), eb = entries(&r, xb);
        _mm_storeu_si128((__m128i *)(out + 32 * s), _mm512_cvtepi32_epi8(_mm512_srli_epi32(ea, 25)));
        _mm_storeu_si128((__m128i *)(out + 32 * s + 16), _mm512_cvtepi32_epi8(_mm512_srli_epi32(eb, 25)));
        xa = next_states(xa, ea, shift, &p, 16);
        xb = next_states(xb, eb, shift, &p, 16);
    }
    return (int)((const uint16_t *)p - words);
}

/* Inclusive prefix sums of the 16 int32 lanes. */
static inline __m512i scan16(__m512i v) {
    const __m512i zero = _mm512_setzero_si512();
    v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 15));
    v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 14));
    v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 12));
    return _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 8));
}

/* 16 consecutive values from their deltas (the entries' signed top 7 bits):
 * running sums from ``*carry``, over ``divisor`` (DECIMAL's m / 10^e, as the
 * codec scales), stored as doubles. */
static inline void store_values(__m512i e, __m512i *carry, __m512d divisor, double *out) {
    __m512i sums = _mm512_add_epi32(scan16(_mm512_srai_epi32(e, 25)), *carry);
    *carry = _mm512_permutexvar_epi32(_mm512_set1_epi32(15), sums);
    _mm512_storeu_pd(out, _mm512_div_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(sums)), divisor));
    _mm512_storeu_pd(out + 8, _mm512_div_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(sums, 1)), divisor));
}

/* 32 lanes, the order-1 sums fused into the decode: values out as
 * (first + running sum of the deltas) / divisor, doubles, with no residual
 * array written and read again; io_bits as next_states.  Returns the bytes
 * of the stream it read. */
static inline int lanes32_fused(const uint32_t *states, const uint8_t *stream, int64_t m,
                                const uint32_t *table, int scale, int32_t first, double divisor,
                                double *out, int io_bits) {
    const RegisterTable r = register_table(table, scale);
    const __m128i shift = _mm_cvtsi32_si128(scale);
    const __m512d divisors = _mm512_set1_pd(divisor);
    __m512i carry = _mm512_set1_epi32(first);
    const uint8_t *p = stream;
    __m512i xa = _mm512_loadu_si512(states), xb = _mm512_loadu_si512(states + 16);
    for (int64_t s = 0; s < m / 32; s++) {
        __m512i ea = entries(&r, xa), eb = entries(&r, xb);
        store_values(ea, &carry, divisors, out + 32 * s);
        store_values(eb, &carry, divisors, out + 32 * s + 16);
        xa = next_states(xa, ea, shift, &p, io_bits);
        xb = next_states(xb, eb, shift, &p, io_bits);
    }
    return (int)(p - stream);
}

int lanes32_values(const uint32_t *states, const uint16_t *words, int64_t m, const uint32_t *table,
                   int scale, int32_t first, double divisor, double *out) {
    return lanes32_fused(states, (const uint8_t *)words, m, table, scale, first, divisor, out, 16) / 2;
}

int lanes32_values_bytes(const uint32_t *states, const uint8_t *bytes, int64_t m, const uint32_t *table,
                         int scale, int32_t first, double divisor, double *out) {
    return lanes32_fused(states, bytes, m, table, scale, first, divisor, out, 8);
}

/* Every block of a row in one call (so that the timing holds no per-block
 * call from Python): block b's states at states + b * lanes, its words at
 * words + word_at[b], its table at tables + table_at[b], its residuals out at
 * b * stride (symbols to out8, values to out64).  ``decoder``: 0 the scalar
 * reference, 1 gathered, 2 registers, 3 registers with the sums fused, 4 that
 * with 16-bit states and a byte stream (``words`` then holds bytes). 
 * Returns the first block whose decode failed, or -1. */
int64_t lanes_run(int decoder, int64_t blocks, int lanes, const uint32_t *states, const uint16_t *words,
                  const int64_t *word_at, const uint32_t *tables, const int64_t *table_at, const int64_t *m,
                  const int32_t *scale, const int32_t *first, double divisor, int64_t stride, uint8_t *out8,
                  double *out64) {
    for (int64_t b = 0; b < blocks; b++) {
        const uint32_t *s = states + b * lanes, *t = tables + table_at[b];
        const uint16_t *w = words + word_at[b];
        int read;
        switch (decoder) {
        case 0: read = lanes_scalar(s, w, m[b], t, scale[b], lanes, out8 + b * stride); break;
        case 1: read = lanes16_gather(s, w, m[b], t, scale[b], out8 + b * stride); break;
        case 2: read = lanes_registers(s, w, m[b], t, scale[b], lanes, out8 + b * stride); break;
        case 3: read = lanes32_values(s, w, m[b], t, scale[b], first[b], divisor, out64 + b * stride); break;
        default: read = lanes32_values_bytes(s, (const uint8_t *)words + word_at[b], m[b], t, scale[b], first[b],
                                             divisor, out64 + b * stride);
        }
        if (read < 0) return b;
    }
    return -1;
}
