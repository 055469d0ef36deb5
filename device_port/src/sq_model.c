/* Models (↔ sensorq/models/format.py, validate.py, qscore.py): .sqm bytes
 * validated in place — every rule of docs/models.md §5–6, so that the
 * scorers below need no further checks — bound to the ring's channels, and
 * the integer scorers of docs/models.md §4, line for line the host's
 * quantized path.  The window features are sq_feat.c's.
 *
 * Validation walks each section with a cursor that never steps past the
 * section (a sticky "bad" flag instead of a branch after every read), and
 * accepts exactly what the host's load_model accepts (tests/
 * test_device_models.py checks both on hostile bytes).  Written for flash
 * size on a Cortex-M0+: 32-bit reads, helpers out of line. */
#include <string.h>

#include "sq_model_internal.h"

#define MODEL_HDR 32u
#define FLAG_FLOAT 1u
#define VOTE 0u
#define SUM 1u
#define MEAN_MODE 2u
#define ARGMAX 0u
#define SIGN 1u
#define LINEAR_VALUE 2u
#define SUMSQ 3u
#define NO_REQUANT 255u
#define OP_CROSS 8u
#define OP_BAND 9u
#define OP_RATIO 10u

/* ---- a cursor over one section ----------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
    uint32_t bad;
} cur;

static const uint8_t *__attribute__((noinline)) advance(cur *c, uint32_t n)
{
    const uint8_t *at = c->p;
    if ((uint32_t)(c->end - at) < n) {
        c->bad = 1;
        c->p = c->end;
        return c->end;
    }
    c->p = at + n;
    return at;
}

/* n ≤ 4 little-endian bytes (0 past the end). */
static uint32_t __attribute__((noinline)) rd(cur *c, unsigned n)
{
    const uint8_t *at = advance(c, n);
    return c->bad ? 0u : sq_le32(at, n);
}

static void need(cur *c, int ok)
{
    c->bad |= !ok;
}

/* Python's strict UTF-8: no overlong forms, surrogates or code points past U+10FFFF. */
static int utf8_ok(const uint8_t *p, uint32_t n)
{
    uint32_t i = 0;
    while (i < n) {
        uint32_t b = p[i++], lo = 0x80u, hi = 0xBFu, more;
        if (b < 0x80u) {
            continue;
        }
        more = b < 0xE0u ? 1u : b < 0xF0u ? 2u : 3u;
        lo = b == 0xE0u ? 0xA0u : b == 0xF0u ? 0x90u : lo;
        hi = b == 0xEDu ? 0x9Fu : b == 0xF4u ? 0x8Fu : hi;
        if (b < 0xC2u || b > 0xF4u || n - i < more || p[i] < lo || p[i] > hi) {
            return 0;
        }
        while (more--) {
            if ((p[i++] & 0xC0u) != 0x80u) {
                return 0;
            }
        }
    }
    return 1;
}

#define TEXT_ANY 0u
#define TEXT_CLASS 1u
#define TEXT_NAME 65u     /* at most 64 bytes: [A-Za-z_][A-Za-z0-9_]* */

/* A u8-length text: UTF-8; a class name is not empty; a name is an identifier.
 * Returns its bytes (length in *n). */
static const uint8_t *__attribute__((noinline)) text(cur *c, uint32_t kind, uint32_t *n)
{
    uint32_t len = rd(c, 1), i, ok;
    const uint8_t *s = advance(c, len);
    ok = !c->bad && utf8_ok(s, len) && len >= (kind != TEXT_ANY);
    for (i = 0; kind == TEXT_NAME && i < len + 1u && ok; i++) {
        uint32_t ch = i < len ? s[i] : 'a';
        ok = len < TEXT_NAME && (((ch | 0x20u) - 'a' < 26u) || ch == '_' || (i && ch - '0' < 10u));
    }
    need(c, (int)ok);
    *n = len;
    return s;
}

/* n little-endian f64, all finite (exponent bits not all ones). */
static void __attribute__((noinline)) finite(cur *c, uint32_t n)
{
    const uint8_t *p = advance(c, 8u * n);
    while (n-- && !c->bad) {
        need(c, (~sq_le32(p + 6, 2) & 0x7FF0u) != 0u);
        p += 8;
    }
}

/* ---- sections ---------------------------------------------------------------------------- */

static int name_is(const uint8_t *s, uint32_t n, const char *name)
{
    uint32_t i;
    for (i = 0; i < n && (uint8_t)name[i] == s[i]; i++) {
    }
    return i == n && name[n] == 0;
}

/* A positive i64 below 2^62 (window, hop). */
static int64_t span(cur *c)
{
    uint32_t lo = rd(c, 4), hi = rd(c, 4);
    need(c, hi < (1u << 30) && (hi | lo));
    return (int64_t)((uint64_t)hi << 32 | lo);
}

/* The pipeline: windows, inputs (bound to channels), signals, features.
 * Returns SQ_ERR_MISMATCH if an input has no channel (the rest is still checked). */
static int pipeline(sq_model *m, cur *c, const sq_stream_cfg *cfg, const char *const *names)
{
    uint32_t hash = rd(c, 4), crc = 0, rate, n, i, j, mismatch = 0;
    m->window_ns = span(c);
    m->hop_ns = span(c);
    rate = rd(c, 4);
    m->min_samples = rd(c, 4);
    need(c, m->min_samples - 2u <= SQ_MODEL_MAX_WINDOW - 2u);
    text(c, TEXT_NAME, &n);                               /* the stream's name: not bound */
    m->n_inputs = (uint8_t)rd(c, 1);
    need(c, m->n_inputs - 1u < SQ_MODEL_MAX_INPUTS);
    for (i = 0; i < m->n_inputs && !c->bad; i++) {
        const uint8_t *s = text(c, TEXT_NAME, &n);
        uint8_t tail[3] = {':', 0, '\n'};
        uint32_t dtype = rd(c, 1), e = rd(c, 1), neg = e >= 128u;
        need(c, dtype - 1u < 6u && (neg ? 256u - e <= 62u : e <= (dtype >= SQ_FLOAT32 ? 62u : 0u)));
        tail[1] = (uint8_t)('0' + dtype);
        crc = sq_crc32(sq_crc32(crc, s, n), tail, 3);
        /* the channel of this name; an integer input keeps its type, a float
         * one is held as fixed-point integers (any integer type) */
        for (j = 0; j < cfg->n_channels && !name_is(s, n, names[j]); j++) {
        }
        if (j == cfg->n_channels || (dtype <= SQ_INT64 ? cfg->dtype[j] != dtype : cfg->dtype[j] > SQ_INT64)) {
            m->mismatch = (uint8_t)(mismatch ? m->mismatch : i);
            mismatch = 1;
        }
        m->channel[i] = (uint8_t)j;
        m->shift[i] = (uint8_t)(dtype == SQ_INT32 || dtype == SQ_INT64 ? (256u - e) & 255u : 0u);
        for (j = 0; j < i && !mismatch; j++) {
            need(c, m->channel[j] != m->channel[i]);     /* an input named twice */
        }
    }
    m->sig_off = (uint32_t)(c->p - m->bytes);
    m->n_signals = (uint8_t)rd(c, 1);
    need(c, m->n_signals - 1u < 32u);
    for (i = 0; i < m->n_signals && !c->bad; i++) {
        uint32_t k = rd(c, 1);
        const uint8_t *idx = advance(c, k);
        need(c, k - 1u < 4u);
        while (k-- && !c->bad) {
            need(c, idx[k] < m->n_inputs);
        }
    }
    m->feat_off = (uint32_t)(c->p - m->bytes);
    m->n_features = (uint8_t)rd(c, 1);
    need(c, m->n_features != 0u);
    m->passes = 1;
    for (i = 0; i < m->n_features && !c->bad; i++) {
        uint32_t op = rd(c, 1), sig = rd(c, 1), na = rd(c, 1), nb = rd(c, 1);
        const uint8_t *steps = advance(c, 4u * (na + nb));
        uint32_t spectral = op - OP_BAND < 2u;
        need(c, op - 1u < OP_RATIO && sig < m->n_signals && (na > 0u) == spectral &&
                    (nb > 0u) == (op == OP_RATIO) && (rate || !spectral));
        for (j = 0; j < na + nb && !c->bad; j++) {
            need(c, sq_le32(steps + 4u * j, 4) - 1u < 0x7FFFFFFFu);
        }
        m->n_steps += na + nb;
        m->passes = (uint8_t)(op == OP_CROSS ? 2u : m->passes);
    }
    need(c, c->p == c->end && crc == hash);
    if ((m->n_steps && !(SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL)) ||
        (m->passes == 2u && !(SQ_MODEL_KINDS & SQ_MODEL_CROSSINGS))) {
        return SQ_ERR_UNSUPPORTED;
    }
    return mismatch ? SQ_ERR_MISMATCH : SQ_OK;
}

static void outputs(sq_model *m, cur *c)
{
    uint32_t n, i;
    m->n_classes = (uint8_t)rd(c, 1);
    text(c, TEXT_NAME, &n);
    for (i = 0; i < m->n_classes; i++) {
        text(c, TEXT_CLASS, &n);
    }
    need(c, c->p == c->end && (m->kind == SQ_MODEL_CLASSES ? m->n_classes >= 2u : !m->n_classes));
}

#if SQ_MODEL_KINDS & SQ_MODEL_TREES
/* A child reference: leaf (top bit) below n_leaves, or an internal node after
 * the one it hangs from and inside the tree. */
static int __attribute__((noinline)) ref_ok(const sq_model *m, const uint8_t *p, uint32_t from, uint32_t n_nodes)
{
    uint32_t ref = sq_le32(p, m->cw), leaf_bit = 1u << (8u * m->cw - 1u);
    return (ref & leaf_bit) ? (ref & ~leaf_bit) < m->n_leaves : ref - from - 1u < n_nodes - from - 1u;
}

static void trees(sq_model *m, cur *c)
{
    uint32_t widths, t, i, n_values, n_nodes = 0, nsz, scale_lo, scale_hi, leaf_bit;
    m->mode = (uint8_t)rd(c, 1);
    m->n_out = (uint8_t)rd(c, 1);
    widths = rd(c, 2);                                  /* (and a zero byte, not checked) */
    m->n_trees = (uint16_t)rd(c, 2);
    m->n_leaves = (uint16_t)rd(c, 2);
    scale_lo = rd(c, 4);
    scale_hi = rd(c, 4);                                /* leaf_scale: finite, > 0 */
    m->tw = (uint8_t)(1u << (widths & 3u));
    m->cw = (uint8_t)(1u + ((widths >> 2) & 1u));
    m->lw = (uint8_t)(1u << ((widths >> 3) & 3u));
    need(c, !(widths & 0xE0u) && (widths & 3u) != 3u && (widths & 0x18u) != 0x18u && m->n_out &&
                m->n_trees - 1u < 1024u && m->n_leaves - 1u < 32767u && !(scale_hi >> 31) &&
                (scale_hi & 0x7FF00000u) != 0x7FF00000u && (scale_hi | scale_lo));
    /* VOTE: one value per class; SUM: a classifier's K outputs (or one for two
     * classes) or a regressor's one; MEAN: a regressor's one */
    need(c, m->kind == SQ_MODEL_CLASSES ? m->mode != MEAN_MODE && (m->n_out == m->n_classes ||
                                                                 (m->mode == SUM && m->n_classes == 2u && m->n_out == 1u))
                                        : m->kind == SQ_MODEL_VALUE && m->mode != VOTE && m->n_out == 1u);
    m->init_off = (uint32_t)(advance(c, 4u * m->n_out) - m->bytes);
    m->body_off = (uint32_t)(c->p - m->bytes);
    nsz = 1u + m->tw + 2u * m->cw;
    leaf_bit = 1u << (8u * m->cw - 1u);
    for (t = 0; t < m->n_trees && !c->bad; t++) {
        uint32_t out = rd(c, 1), n = rd(c, 2), root = rd(c, m->cw);
        const uint8_t *nodes = advance(c, n * nsz);
        need(c, out < m->n_out && (!out || m->mode == SUM) && n <= 32767u &&
                    (n ? !root : (root & leaf_bit) && (root & ~leaf_bit) < m->n_leaves));
        for (i = 0; i < n && !c->bad; i++) {
            const uint8_t *nd = nodes + i * nsz;
            need(c, nd[0] < m->n_features && ref_ok(m, nd + 1 + m->tw, i, n) && ref_ok(m, nd + 1 + m->tw + m->cw, i, n));
        }
        n_nodes += n;
    }
    m->leaf_off = (uint32_t)(c->p - m->bytes);
    n_values = m->mode == VOTE ? m->n_out : 1u;
    for (i = 0; i < (uint32_t)m->n_leaves * n_values && !c->bad; i++) {
        uint32_t v = rd(c, m->lw);
        need(c, m->mode != VOTE || v <= 255u);       /* a voting leaf is a probability 0..255 */
    }
    need(c, c->p == c->end);
    m->n_raw = m->n_out;
    m->n_floats = n_nodes + (uint32_t)m->n_leaves * n_values + m->n_out;
}
#endif

#if SQ_MODEL_KINDS & (SQ_MODEL_LINEAR | SQ_MODEL_MLP | SQ_MODEL_ANOMALY)
/* |v| within limit, v a 32-bit little-endian signed value (bias, multiplier). */
static int small(const uint8_t *p, uint32_t limit)
{
    uint32_t v = sq_le32(p, 4);
    return v + limit <= 2u * limit;
}

static void dense(sq_model *m, cur *c)
{
    uint32_t k, i, j, n_in = m->n_features;
    const uint8_t *p;
    m->mode = (uint8_t)rd(c, 1);
    m->n_layers = (uint8_t)rd(c, 1);
    rd(c, 2);
    need(c, m->mode <= SUMSQ && m->n_layers - 1u < 8u);
    p = advance(c, 9u * n_in);
    m->body_off = (uint32_t)(p - m->bytes);
    for (i = 0; i < n_in && !c->bad; i++, p += 9) {
        need(c, small(p + 4, (1u << 30) - 1u) && p[8] <= 62u);
    }
    m->n_floats = 2u * n_in + 1u;
    m->max_width = (uint16_t)n_in;
    for (k = 0; k < m->n_layers && !c->bad; k++) {
        uint32_t width = rd(c, 2), n_out = rd(c, 2), relu = rd(c, 1), enc = rd(c, 1), shift = rd(c, 1),
                 last = k + 1u == m->n_layers;
        rd(c, 1);
        need(c, width == n_in && n_out - 1u < 1024u && relu <= (uint32_t)!last && enc <= 1u &&
                    (shift <= 62u || shift == NO_REQUANT) && (shift != NO_REQUANT) == (!last || m->mode == SUMSQ));
        for (j = 0; j < n_out && !c->bad; j++) {
            uint32_t nz = n_in, b;
            if (enc) {              /* a bitmap of the non-zero weights, then them */
                const uint8_t *bits = advance(c, (n_in + 7u) / 8u);
                for (b = nz = 0; b < (n_in + 7u) / 8u * 8u && !c->bad; b++) {
                    uint32_t set = (bits[b >> 3] >> (b & 7u)) & 1u;
                    need(c, b < n_in || !set);
                    nz += set;
                }
            }
            advance(c, nz);
        }
        p = advance(c, 4u * n_out);
        for (j = 0; j < n_out && !c->bad; j++) {
            need(c, small(p + 4u * j, 1u << 30));
        }
        advance(c, shift != NO_REQUANT ? 4u * n_out : 0u);
        m->n_floats += n_out * n_in + n_out;
        m->max_width = (uint16_t)(n_out > m->max_width ? n_out : m->max_width);
        n_in = n_out;
    }
    need(c, m->mode == ARGMAX ? m->kind == SQ_MODEL_CLASSES && n_in == m->n_classes
            : m->mode == SIGN ? m->kind == SQ_MODEL_CLASSES && m->n_classes == 2u && n_in == 1u
            : m->mode == LINEAR_VALUE ? m->kind == SQ_MODEL_VALUE && n_in == 1u
            : m->kind == SQ_MODEL_ANOMALY_SCORE);
    m->init_off = (uint32_t)(c->p - m->bytes);       /* (dense: where out_scale is) */
    finite(c, n_in);
    m->leaf_off = (uint32_t)(c->p - m->bytes);       /* (dense: where the SUMSQ threshold is) */
    rd(c, 4);
    need(c, !(rd(c, 4) >> 31));
    finite(c, 1);                                    /* out_offset */
    need(c, c->p == c->end);
    m->n_raw = (uint8_t)(m->mode == SUMSQ ? 1u : n_in);
}
#endif

/* The output stream's schema hash: what a query over the model's outputs
 * was compiled for (sensorq/device/models.py, output_schema). */
static uint32_t out_schema(const sq_model *m, const uint8_t *outs, const uint8_t *quant, const uint8_t *quant_end)
{
    uint32_t crc = sq_crc32(sq_crc32(0, (const uint8_t *)"SQO1", 4), &m->kind, 1);
    crc = sq_crc32(crc, outs, (uint32_t)(quant - outs));
    if (m->kind == SQ_MODEL_CLASSES) {
        return crc;
    }
    if (m->body == SQ_BODY_TREES) {           /* mode, n_trees, leaf_scale */
        return sq_crc32(sq_crc32(sq_crc32(crc, quant, 1), quant + 4, 2), quant + 8, 8);
    }
    /* out_scale (one per output of the last layer), the threshold and out_offset */
    return sq_crc32(crc, m->bytes + m->init_off, (uint32_t)(quant_end - m->bytes) - m->init_off);
}

int sq_model_load(sq_model *m, const uint8_t *bytes, size_t len, const sq_stream_cfg *cfg,
                  const char *const *names)
{
    const uint8_t *sec[6];
    uint32_t i, err = 0;
    cur c;
    if (!m || !bytes || !cfg || !names || cfg->n_channels - 1u >= SQ_MAX_CHANNELS) {
        return SQ_ERR_ARG;
    }
    for (i = 0; i < cfg->n_channels; i++) {
        if (!names[i]) {
            return SQ_ERR_ARG;
        }
    }
    memset(m, 0, sizeof *m);
    if (len < MODEL_HDR + 4u || sq_le32(bytes, 4) != 0x314D5153u) {     /* "SQM1" */
        return SQ_ERR_CORRUPT;
    }
    if (bytes[4] != SQ_MODEL_VERSION) {
        return SQ_ERR_VERSION;
    }
    if (sq_le32(bytes + 8, 4) != len) {
        return SQ_ERR_CORRUPT;
    }
    if (sq_crc32(0, bytes, len - 4u) != sq_le32(bytes + len - 4u, 4)) {
        return SQ_ERR_CRC;
    }
    m->bytes = bytes;
    m->body = bytes[5];
    m->kind = bytes[6];
    /* the sections chain to the CRC (sums in 64 bits: no wrap) */
    c.p = bytes;
    c.end = bytes + len - 4u;
    c.bad = (m->body - 1u > 1u) || m->kind > SQ_MODEL_ANOMALY_SCORE || (bytes[7] & ~FLAG_FLOAT) ||
            !(bytes[7] & FLAG_FLOAT) != !sq_le32(bytes + 24, 4);
    advance(&c, MODEL_HDR);
    for (i = 0; i < 5u; i++) {
        sec[i] = advance(&c, sq_le32(bytes + 12u + 4u * i, 4));
    }
    sec[5] = c.p;
    need(&c, c.p == c.end);
    if (c.bad) {
        return SQ_ERR_CORRUPT;
    }
    c.p = sec[0];
    c.end = sec[1];
    err = (uint32_t)-pipeline(m, &c, cfg, names);
    c.end = sec[2];
    outputs(m, &c);
    c.end = sec[3];
    if (m->body == SQ_BODY_TREES) {
#if SQ_MODEL_KINDS & SQ_MODEL_TREES
        trees(m, &c);
#else
        return SQ_ERR_UNSUPPORTED;
#endif
    } else {
#if SQ_MODEL_KINDS & (SQ_MODEL_LINEAR | SQ_MODEL_MLP | SQ_MODEL_ANOMALY)
        dense(m, &c);
#else
        return SQ_ERR_UNSUPPORTED;
#endif
    }
    c.p = sec[3];
    c.end = sec[4];
    if (sec[4] != sec[3]) {                       /* the float section (host only) */
        uint32_t width = rd(&c, 1), cast = rd(&c, 1);
        need(&c, width == 8u && (m->body != SQ_BODY_TREES || cast <= 1u));
        finite(&c, m->n_floats);
        need(&c, c.p == c.end);
    }
    c.p = sec[4];
    c.end = sec[5];
    advance(&c, 20);                                 /* the info section: accuracy, counts, texts */
    for (i = 0; i < 5u; i++) {
        uint32_t n;
        text(&c, TEXT_ANY, &n);
    }
    need(&c, c.p == c.end);
    if (c.bad) {
        return SQ_ERR_CORRUPT;
    }
    if (!err && (m->body == SQ_BODY_TREES ? 0
                 : m->mode == SUMSQ ? !(SQ_MODEL_KINDS & SQ_MODEL_ANOMALY)
                 : m->n_layers > 1u ? !(SQ_MODEL_KINDS & SQ_MODEL_MLP) : !(SQ_MODEL_KINDS & SQ_MODEL_LINEAR))) {
        err = (uint32_t)-SQ_ERR_UNSUPPORTED;
    }
    if (err) {
        return -(int)err;
    }
    m->out_schema = out_schema(m, sec[1], sec[2], sec[3]);
    m->work_size = sq_model_layout(m, NULL, NULL, 0);
    return SQ_OK;
}

size_t sq_model_work_size(const sq_model *m)
{
    return m && m->bytes ? m->work_size : 0u;
}

/* ---- scoring ------------------------------------------------------------------------------ */

#if SQ_MODEL_KINDS & SQ_MODEL_TREES
/* Each tree walks from its root (go left iff code <= threshold) to a leaf;
 * VOTE adds the leaf's per-class values, SUM / MEAN its one value to the
 * tree's output.  Children point forward (validated): a walk ends. */
static void score_trees(const sq_model *m, const int32_t *codes, int64_t *acc)
{
    const uint8_t *p = m->bytes + m->body_off;
    uint32_t cw = m->cw, lw = m->lw, nsz = 1u + m->tw + 2u * cw, nv = m->mode == VOTE ? m->n_out : 1u, t, o;
    uint32_t leaf_bit = 1u << (8u * cw - 1u);
    for (o = 0; o < m->n_out; o++) {
        acc[o] = sq_sx32(m->bytes + m->init_off + 4u * o, 4);
    }
    for (t = 0; t < m->n_trees; t++) {
        const uint8_t *nodes = p + 3u + cw, *leaf;
        uint32_t ref = sq_le32(p + 3, cw);
        while (!(ref & leaf_bit)) {
            const uint8_t *nd = nodes + ref * nsz;
            ref = sq_le32(nd + 1u + m->tw + (codes[nd[0]] <= sq_sx32(nd + 1, m->tw) ? 0u : cw), cw);
        }
        leaf = m->bytes + m->leaf_off + (ref & ~leaf_bit) * nv * lw;
        for (o = 0; o < nv; o++, leaf += lw) {
            acc[nv == 1u ? p[0] : o] += lw == 1u ? (int32_t)*leaf : sq_sx32(leaf, lw);
        }
        p = nodes + sq_le32(p + 1, 2) * nsz;
    }
}
#endif

#if SQ_MODEL_KINDS & (SQ_MODEL_LINEAR | SQ_MODEL_MLP | SQ_MODEL_ANOMALY)
static int64_t round_shift(int64_t v, unsigned s)
{
    if (!s) {
        return v;
    }
    v += (int64_t)1 << (s - 1u);
    return v >= 0 ? v >> s : ~(~v >> s);
}

static int64_t sat(int64_t v, int64_t limit)
{
    return v < -limit ? -limit : v > limit ? limit : v;
}

/* The dense layers: int8 inputs from the codes, then per layer
 * acc = bias + W a (int32: validated limits), requantized between layers
 * (and, SUMSQ, after the last: saturated to ±2^20 and squared into d²). */
static void score_dense(const sq_model *m, const int32_t *codes, int8_t *a, int32_t *acc, int64_t *raw)
{
    const uint8_t *p = m->bytes + m->body_off;
    uint32_t k, i, j, n_in = m->n_features;
    for (i = 0; i < n_in; i++, p += 9) {
        int64_t d = (int64_t)codes[i] - sq_sx32(p, 4);
        a[i] = (int8_t)sat(round_shift(d * sq_sx32(p + 4, 4), p[8]), 127);
    }
    for (k = 0; k < m->n_layers; k++) {
        uint32_t n_out = sq_le32(p + 2, 2), relu = p[4], bitmap = p[5], shift = p[6];
        const uint8_t *mult;
        p += 8;
        for (j = 0; j < n_out; j++) {
            const uint8_t *w = p + (bitmap ? (n_in + 7u) / 8u : 0u);
            int32_t s = 0;
            for (i = 0; i < n_in; i++) {
                if (!bitmap || ((p[i >> 3] >> (i & 7u)) & 1u)) {
                    s += (int8_t)*w++ * a[i];
                }
            }
            p = w;
            acc[j] = s;
        }
        for (j = 0; j < n_out; j++, p += 4) {
            acc[j] += sq_sx32(p, 4);
            raw[j < m->n_raw ? j : 0] = acc[j];      /* the last layer's outputs, raw */
        }
#if SQ_MODEL_KINDS & (SQ_MODEL_MLP | SQ_MODEL_ANOMALY)
        if (shift == NO_REQUANT) {
            return;
        }
        mult = p;
        p += 4u * n_out;
        raw[0] = 0;
        for (j = 0; j < n_out; j++) {
            int64_t v = round_shift((int64_t)acc[j] * sq_sx32(mult + 4u * j, 4), shift);
            if (k + 1u < m->n_layers) {
                a[j] = (int8_t)sat(relu && v < 0 ? 0 : v, 127);
            } else {                             /* SUMSQ: d² of the terms saturated to ±2^20 */
                v = sat(v, 1 << 20);
                raw[0] += v * v;
            }
        }
        n_in = n_out;
#else
        (void)relu;
        (void)shift;
        (void)mult;
        return;
#endif
    }
}
#endif

int sq_model_eval(const sq_model *m, sq_model_work *w, sq_model_out *out)
{
    const int64_t *raw = w->raw;
    unsigned o, best = 0;
#if SQ_MODEL_KINDS & SQ_MODEL_TREES
    if (m->body == SQ_BODY_TREES) {
        score_trees(m, w->codes, w->raw);
    }
#endif
#if SQ_MODEL_KINDS & (SQ_MODEL_LINEAR | SQ_MODEL_MLP | SQ_MODEL_ANOMALY)
    if (m->body == SQ_BODY_DENSE) {
        score_dense(m, w->codes, w->act, w->acc, w->raw);
    }
#endif
    for (o = 1; o < m->n_raw; o++) {
        best = raw[o] > raw[best] ? o : best;
    }
    out->value = raw[best];
    out->cls = m->kind == SQ_MODEL_VALUE ? -1 : m->n_raw == 1u ? raw[0] > 0 : (int32_t)best;
#if SQ_MODEL_KINDS & SQ_MODEL_ANOMALY
    if (m->kind == SQ_MODEL_ANOMALY_SCORE) {
        out->cls = raw[0] > (int64_t)sq_get_le(m->bytes + m->leaf_off, 8);   /* d² past the threshold */
    }
#endif
    out->codes = w->codes;
    out->raw = w->raw;
    out->scored = 1;
    return SQ_OK;
}

int sq_model_predict(const sq_model *m, const int32_t *codes, void *work, size_t work_len, sq_model_out *out)
{
    sq_model_work *w;
    if (!m || !m->bytes || !codes || !out || !work || sq_model_layout(m, work, &w, 1) > work_len) {
        return SQ_ERR_ARG;
    }
    memcpy(w->codes, codes, 4u * m->n_features);
    out->start = 0;
    out->n_samples = 0;
    return sq_model_eval(m, w, out);
}
