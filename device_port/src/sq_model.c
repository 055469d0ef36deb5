/* Models (↔ sensorq/models/format.py, validate.py, qscore.py): .sqm bytes
 * validated in place — every rule of docs/models.md §5–6, so that the
 * scorers below need no further checks — bound to the ring's channels, and
 * the integer scorers of docs/models.md §4, line for line the host's
 * quantized path.  The window features are sq_feat.c's.
 *
 * Validation walks each section with a cursor that never steps past the
 * section (a sticky "bad" flag instead of a check after every read), and
 * accepts exactly what the host's load_model accepts (tests/
 * test_device_models.py checks both on hostile bytes). */
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
    int bad;
} cur;

static const uint8_t *skip(cur *c, uint64_t n)
{
    const uint8_t *at = c->p;
    if (c->bad || (uint64_t)(c->end - c->p) < n) {
        c->bad = 1;
        return c->end;
    }
    c->p += n;
    return at;
}

static uint64_t take(cur *c, unsigned n)
{
    const uint8_t *at = skip(c, n);
    return c->bad ? 0u : sq_get_le(at, n);
}

/* Python's strict UTF-8 decoder: no overlong forms, surrogates or code
 * points past U+10FFFF. */
static int utf8_ok(const uint8_t *p, uint32_t n)
{
    uint32_t i = 0;
    while (i < n) {
        uint8_t b = p[i++], lo = 0x80u, hi = 0xBFu;
        unsigned more;
        if (b < 0x80u) {
            continue;
        }
        if (b < 0xC2u || b > 0xF4u) {
            return 0;
        }
        more = b < 0xE0u ? 1u : b < 0xF0u ? 2u : 3u;
        lo = b == 0xE0u ? 0xA0u : b == 0xF0u ? 0x90u : lo;
        hi = b == 0xEDu ? 0x9Fu : b == 0xF4u ? 0x8Fu : hi;
        if (n - i < more || p[i] < lo || p[i] > hi) {
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

#define TEXT_ANY 0
#define TEXT_CLASS 1
#define TEXT_NAME 2

/* A u8-length text; a name is [A-Za-z_][A-Za-z0-9_]{0,63}, a class name 1–255
 * bytes of UTF-8, any other text UTF-8.  Returns its bytes (length in *n). */
static const uint8_t *text(cur *c, int kind, uint32_t *n)
{
    uint32_t len = (uint32_t)take(c, 1), i;
    const uint8_t *s = skip(c, len);
    int ok = !c->bad && utf8_ok(s, len) && (kind == TEXT_ANY || len > 0u);
    if (kind == TEXT_NAME) {
        ok = ok && len <= 64u;
        for (i = 0; i < len && ok; i++) {
            uint8_t ch = s[i];
            int alpha = ((ch | 0x20u) >= 'a' && (ch | 0x20u) <= 'z') || ch == '_';
            ok = alpha || (i > 0u && ch >= '0' && ch <= '9');
        }
    }
    c->bad |= !ok;
    *n = len;
    return s;
}

/* n little-endian f64, all finite (exponent bits not all ones). */
static void finite_f64s(cur *c, uint64_t n)
{
    const uint8_t *p = skip(c, n * 8u);
    uint64_t i;
    for (i = 0; i < n && !c->bad; i++) {
        c->bad = ((sq_get_le(p + 8u * i + 6u, 2) >> 4) & 0x7FFu) == 0x7FFu;
    }
}

/* ---- sections ---------------------------------------------------------------------------- */

static int name_is(const uint8_t *s, uint32_t n, const char *name)
{
    return name && strlen(name) == n && memcmp(s, name, n) == 0;
}

/* The pipeline: windows, inputs (bound to channels), signals, features. */
static int pipeline(sq_model *m, cur *c, const sq_stream_cfg *cfg, const char *const *names)
{
    uint32_t hash = (uint32_t)take(c, 4), crc = 0, rate, n, i, j;
    int mismatch = 0;
    m->window_ns = (int64_t)take(c, 8);
    m->hop_ns = (int64_t)take(c, 8);
    rate = (uint32_t)take(c, 4);
    m->min_samples = (uint32_t)take(c, 4);
    c->bad |= m->window_ns <= 0 || m->hop_ns <= 0 || (m->window_ns | m->hop_ns) >> 62 ||
              m->min_samples < 2u || m->min_samples > SQ_MODEL_MAX_WINDOW;
    text(c, TEXT_NAME, &n);                               /* the stream's name: not checked */
    m->n_inputs = (uint8_t)take(c, 1);
    c->bad |= m->n_inputs < 1u || m->n_inputs > SQ_MODEL_MAX_INPUTS;
    for (i = 0; i < m->n_inputs && !c->bad; i++) {
        const uint8_t *s = text(c, TEXT_NAME, &n);
        uint8_t dtype = (uint8_t)take(c, 1), tail[3] = {':', 0, '\n'};
        int e = (int8_t)take(c, 1);
        c->bad |= dtype < SQ_INT8 || dtype > SQ_FLOAT64 || e < -62 || e > 62 ||
                  (dtype <= SQ_INT64 && e > 0);
        tail[1] = (uint8_t)('0' + dtype);
        crc = sq_crc32(sq_crc32(crc, s, n), tail, 3);
        /* bound: the channel of this name; an integer input keeps its type,
         * a float one is held as fixed-point integers (any integer type) */
        for (j = 0; j < cfg->n_channels && !name_is(s, n, names[j]); j++) {
        }
        if (j == cfg->n_channels || (dtype <= SQ_INT64 ? cfg->dtype[j] != dtype : cfg->dtype[j] > SQ_INT64)) {
            m->mismatch = mismatch ? m->mismatch : (uint8_t)i;
            mismatch = 1;
        }
        m->channel[i] = (uint8_t)j;
        m->shift[i] = (uint8_t)(dtype == SQ_INT32 || dtype == SQ_INT64 ? -e : 0);
        for (j = 0; j < i && !mismatch; j++) {
            c->bad |= m->channel[j] == m->channel[i];    /* an input named twice */
        }
    }
    m->sig_off = (uint32_t)(c->p - m->bytes);
    m->n_signals = (uint8_t)take(c, 1);
    c->bad |= m->n_signals < 1u || m->n_signals > 32u;
    for (i = 0; i < m->n_signals && !c->bad; i++) {
        uint32_t k = (uint32_t)take(c, 1);
        const uint8_t *idx = skip(c, k);
        c->bad |= k < 1u || k > 4u;
        for (j = 0; j < k && !c->bad; j++) {
            c->bad = idx[j] >= m->n_inputs;
        }
    }
    m->feat_off = (uint32_t)(c->p - m->bytes);
    m->n_features = (uint8_t)take(c, 1);
    c->bad |= m->n_features < 1u;
    m->passes = 1;
    for (i = 0; i < m->n_features && !c->bad; i++) {
        uint32_t op = (uint32_t)take(c, 1), sig = (uint32_t)take(c, 1), na = (uint32_t)take(c, 1),
                 nb = (uint32_t)take(c, 1);
        const uint8_t *steps = skip(c, 4u * (na + nb));
        int spectral = op == OP_BAND || op == OP_RATIO;
        c->bad |= op < 1u || op > OP_RATIO || sig >= m->n_signals || (na > 0u) != spectral ||
                  (nb > 0u) != (op == OP_RATIO) || (spectral && !rate);
        for (j = 0; j < na + nb && !c->bad; j++) {
            uint32_t step = (uint32_t)sq_get_le(steps + 4u * j, 4);
            c->bad = step < 1u || step >> 31;
        }
        m->n_steps += na + nb;
        if (op == OP_CROSS) {
            m->passes = 2;
        }
    }
    c->bad |= c->p != c->end || crc != hash;
    if (c->bad) {
        return SQ_ERR_CORRUPT;
    }
    if ((m->n_steps && !(SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL)) ||
        (m->passes == 2 && !(SQ_MODEL_KINDS & SQ_MODEL_CROSSINGS))) {
        return SQ_ERR_UNSUPPORTED;
    }
    return mismatch ? SQ_ERR_MISMATCH : SQ_OK;
}

static void outputs(sq_model *m, cur *c)
{
    uint32_t n, i;
    m->n_classes = (uint8_t)take(c, 1);
    text(c, TEXT_NAME, &n);
    for (i = 0; i < m->n_classes; i++) {
        text(c, TEXT_CLASS, &n);
    }
    c->bad |= c->p != c->end || (m->kind == SQ_MODEL_CLASSES ? m->n_classes < 2u : m->n_classes != 0u);
}

/* A child reference: leaf (top bit) below n_leaves, or an internal node after
 * the one it hangs from and inside the tree. */
static int ref_ok(uint32_t ref, uint32_t leaf_bit, uint32_t from, uint32_t n_nodes, uint32_t n_leaves)
{
    return (ref & leaf_bit) ? (ref & ~leaf_bit) < n_leaves : ref > from && ref < n_nodes;
}

static void trees(sq_model *m, cur *c)
{
    uint32_t tw, cw, lw, nsz, leaf_bit, n_values, t, i;
    uint64_t n_nodes_all = 0;
    const uint8_t *leaves;
    m->mode = (uint8_t)take(c, 1);
    m->n_out = (uint8_t)take(c, 1);
    m->widths = (uint8_t)take(c, 1);
    take(c, 1);
    m->n_trees = (uint16_t)take(c, 2);
    m->n_leaves = (uint16_t)take(c, 2);
    /* leaf_scale: finite and > 0 (sign clear, not +0) */
    {
        uint64_t bits = take(c, 8);
        c->bad |= (bits >> 63) || ((bits >> 52) & 0x7FFu) == 0x7FFu || bits == 0u;
    }
    tw = 1u << (m->widths & 3u);
    cw = (m->widths & 4u) ? 2u : 1u;
    lw = 1u << (m->widths >> 3);
    c->bad |= m->mode > MEAN_MODE || (m->widths & ~0x1Fu) || (m->widths & 3u) == 3u ||
              (m->widths >> 3) == 3u || m->n_out < 1u || m->n_trees < 1u || m->n_trees > 1024u ||
              m->n_leaves < 1u || m->n_leaves > 32767u;
    c->bad |= m->mode == VOTE ? m->kind != SQ_MODEL_CLASSES || m->n_out != m->n_classes
              : m->mode == SUM ? !((m->kind == SQ_MODEL_CLASSES && (m->n_out == m->n_classes ||
                                                                   (m->n_classes == 2u && m->n_out == 1u))) ||
                                   (m->kind == SQ_MODEL_VALUE && m->n_out == 1u))
              : m->kind != SQ_MODEL_VALUE || m->n_out != 1u;
    if (c->bad) {
        return;
    }
    m->init_off = (uint32_t)(c->p - m->bytes);
    skip(c, 4u * m->n_out);
    m->body_off = (uint32_t)(c->p - m->bytes);
    nsz = 1u + tw + 2u * cw;
    leaf_bit = 1u << (8u * cw - 1u);
    for (t = 0; t < m->n_trees && !c->bad; t++) {
        uint32_t out = (uint32_t)take(c, 1), n = (uint32_t)take(c, 2), root = (uint32_t)take(c, cw);
        const uint8_t *nodes = skip(c, (uint64_t)n * nsz);
        c->bad |= out >= m->n_out || (out && m->mode != SUM) || n > 32767u ||
                  (n ? root != 0u : !(root & leaf_bit) || (root & ~leaf_bit) >= m->n_leaves);
        for (i = 0; i < n && !c->bad; i++) {
            const uint8_t *nd = nodes + i * nsz;
            c->bad = nd[0] >= m->n_features ||
                     !ref_ok((uint32_t)sq_get_le(nd + 1 + tw, cw), leaf_bit, i, n, m->n_leaves) ||
                     !ref_ok((uint32_t)sq_get_le(nd + 1 + tw + cw, cw), leaf_bit, i, n, m->n_leaves);
        }
        n_nodes_all += n;
    }
    m->leaf_off = (uint32_t)(c->p - m->bytes);
    n_values = m->mode == VOTE ? m->n_out : 1u;
    leaves = skip(c, (uint64_t)m->n_leaves * n_values * lw);
    for (i = 0; m->mode == VOTE && lw > 1u && i < (uint32_t)m->n_leaves * n_values && !c->bad; i++) {
        c->bad = (uint64_t)sq_sign_extend(sq_get_le(leaves + i * lw, lw), lw) > 255u;
    }
    c->bad |= c->p != c->end;
    m->n_raw = m->n_out;
    /* the float section's size, for the caller to check: in n_layers' place */
    m->work_size = (uint32_t)(n_nodes_all + (uint64_t)m->n_leaves * n_values + m->n_out);
    if (n_nodes_all + (uint64_t)m->n_leaves * n_values + m->n_out > 0x1FFFFFFFu) {
        c->bad = 1;
    }
}

static void dense(sq_model *m, cur *c)
{
    uint32_t k, i, n_in, n_floats;
    const uint8_t *p;
    m->mode = (uint8_t)take(c, 1);
    m->n_layers = (uint8_t)take(c, 1);
    take(c, 2);
    c->bad |= m->mode > SUMSQ || m->n_layers < 1u || m->n_layers > 8u;
    p = skip(c, 9u * m->n_features);
    m->body_off = (uint32_t)(p - m->bytes);
    for (i = 0; i < m->n_features && !c->bad; i++) {
        int64_t mul = sq_sign_extend(sq_get_le(p + 9u * i + 4u, 4), 4);
        c->bad = mul <= -(1 << 30) || mul >= (1 << 30) || p[9u * i + 8u] > 62u;
    }
    n_in = m->n_features;
    n_floats = 2u * m->n_features + 1u;
    m->max_width = m->n_features;
    for (k = 0; k < m->n_layers && !c->bad; k++) {
        uint32_t width = (uint32_t)take(c, 2), n_out = (uint32_t)take(c, 2), relu = (uint32_t)take(c, 1),
                 enc = (uint32_t)take(c, 1), shift = (uint32_t)take(c, 1), j, last = k + 1u == m->n_layers;
        take(c, 1);
        c->bad |= width != n_in || n_out < 1u || n_out > 1024u || relu > 1u || enc > 1u ||
                  (shift > 62u && shift != NO_REQUANT) || (shift != NO_REQUANT) != (!last || m->mode == SUMSQ) ||
                  (last && relu);
        for (j = 0; j < n_out && !c->bad; j++) {
            if (enc) {              /* a bitmap of the non-zero weights, then them */
                uint32_t nbytes = (n_in + 7u) / 8u, b, nz = 0;
                const uint8_t *bits = skip(c, nbytes);
                for (b = 0; b < nbytes && !c->bad; b++) {
                    uint32_t v = bits[b];
                    c->bad = (8u * b + 8u > n_in) && (v >> (n_in - 8u * b));
                    for (; v; v &= v - 1u) {
                        nz++;
                    }
                }
                skip(c, nz);
            } else {
                skip(c, n_in);
            }
        }
        p = skip(c, 4u * n_out);
        for (j = 0; j < n_out && !c->bad; j++) {
            int64_t bias = sq_sign_extend(sq_get_le(p + 4u * j, 4), 4);
            c->bad = bias < -(1 << 30) || bias > (1 << 30);
        }
        skip(c, shift != NO_REQUANT ? 4u * n_out : 0u);
        n_floats += n_out * n_in + n_out;
        m->max_width = (uint16_t)(n_out > m->max_width ? n_out : m->max_width);
        n_in = n_out;
    }
    if (c->bad) {
        return;
    }
    c->bad |= m->mode == ARGMAX ? m->kind != SQ_MODEL_CLASSES || n_in != m->n_classes
              : m->mode == SIGN ? m->kind != SQ_MODEL_CLASSES || m->n_classes != 2u || n_in != 1u
              : m->mode == LINEAR_VALUE ? m->kind != SQ_MODEL_VALUE || n_in != 1u
              : m->kind != SQ_MODEL_ANOMALY_SCORE;
    m->out_off = (uint32_t)(c->p - m->bytes);        /* (for out_schema: where out_scale is) */
    finite_f64s(c, n_in);                            /* out_scale */
    m->leaf_off = (uint32_t)(c->p - m->bytes);       /* (dense: where the SUMSQ threshold is) */
    c->bad |= (int64_t)take(c, 8) < 0;
    finite_f64s(c, 1);                               /* out_offset */
    c->bad |= c->p != c->end;
    m->n_raw = (uint8_t)(m->mode == SUMSQ ? 1u : n_in);
    m->work_size = n_floats;
}

static void floats(sq_model *m, cur *c)
{
    uint32_t width = (uint32_t)take(c, 1), cast = (uint32_t)take(c, 1);
    c->bad |= width != 8u || (m->body == SQ_BODY_TREES && cast > 1u);
    finite_f64s(c, m->work_size);
    c->bad |= c->p != c->end;
}

static void info(cur *c)
{
    uint32_t n, i;
    skip(c, 20);
    for (i = 0; i < 5u; i++) {
        text(c, TEXT_ANY, &n);
    }
    c->bad |= c->p != c->end;
}

/* The output stream's schema hash: what a query over the model's outputs
 * was compiled for (sensorq/device/models.py, output_schema). */
static uint32_t out_schema(const sq_model *m, const uint8_t *outs, uint32_t outs_len, const uint8_t *quant,
                           uint32_t quant_len)
{
    static const uint8_t magic[4] = {'S', 'Q', 'O', '1'};
    uint32_t crc = sq_crc32(sq_crc32(0, magic, 4), &m->kind, 1);
    crc = sq_crc32(crc, outs, outs_len);
    if (m->kind == SQ_MODEL_CLASSES) {
        return crc;
    }
    if (m->body == SQ_BODY_TREES) {           /* mode, n_trees, leaf_scale */
        return sq_crc32(sq_crc32(sq_crc32(crc, quant, 1), quant + 4, 2), quant + 8, 8);
    }
    /* out_scale (one per output of the last layer), the threshold and out_offset */
    return sq_crc32(crc, m->bytes + m->out_off, (uint32_t)(quant + quant_len - m->bytes) - m->out_off);
}

int sq_model_load(sq_model *m, const uint8_t *bytes, size_t len, const sq_stream_cfg *cfg,
                  const char *const *names)
{
    uint32_t lens[5], off = MODEL_HDR, i;
    uint64_t total = MODEL_HDR + 4u;
    const uint8_t *sec[5];
    cur c;
    int err;
    if (!m || !bytes || !cfg || !names || cfg->n_channels < 1u || cfg->n_channels > SQ_MAX_CHANNELS) {
        return SQ_ERR_ARG;
    }
    for (i = 0; i < cfg->n_channels; i++) {
        if (!names[i]) {
            return SQ_ERR_ARG;
        }
    }
    memset(m, 0, sizeof *m);
    if (len < MODEL_HDR + 4u || memcmp(bytes, "SQM1", 4) != 0) {
        return SQ_ERR_CORRUPT;
    }
    if (bytes[4] != SQ_MODEL_VERSION) {
        return SQ_ERR_VERSION;
    }
    if (sq_get_le(bytes + 8, 4) != len) {
        return SQ_ERR_CORRUPT;
    }
    if (sq_crc32(0, bytes, len - 4u) != (uint32_t)sq_get_le(bytes + len - 4u, 4)) {
        return SQ_ERR_CRC;
    }
    m->bytes = bytes;
    m->len = (uint32_t)len;
    m->body = bytes[5];
    m->kind = bytes[6];
    for (i = 0; i < 5u; i++) {
        lens[i] = (uint32_t)sq_get_le(bytes + 12u + 4u * i, 4);
        total += lens[i];
        sec[i] = bytes + off;
        off += lens[i];
    }
    if (total != len || m->body < SQ_BODY_TREES || m->body > SQ_BODY_DENSE || m->kind > SQ_MODEL_ANOMALY_SCORE ||
        (bytes[7] & ~FLAG_FLOAT) || !(bytes[7] & FLAG_FLOAT) != !lens[3]) {
        return SQ_ERR_CORRUPT;
    }
    c.bad = 0;
    c.p = sec[0];
    c.end = sec[1];
    err = pipeline(m, &c, cfg, names);
    if (err == SQ_ERR_CORRUPT) {
        return err;
    }
    c.p = sec[1];
    c.end = sec[2];
    outputs(m, &c);
    c.end = sec[3];
    if (m->body == SQ_BODY_TREES) {
        trees(m, &c);
    } else {
        dense(m, &c);
    }
    if (lens[3] && !c.bad) {
        c.end = sec[4];
        floats(m, &c);
    }
    c.p = sec[4];
    c.end = bytes + len - 4u;
    if (!c.bad) {
        info(&c);
    }
    if (c.bad) {
        return SQ_ERR_CORRUPT;
    }
    if (err) {
        return err;
    }
    if (m->body == SQ_BODY_TREES ? !(SQ_MODEL_KINDS & SQ_MODEL_TREES)
        : m->mode == SUMSQ ? !(SQ_MODEL_KINDS & SQ_MODEL_ANOMALY)
        : m->n_layers > 1u ? !(SQ_MODEL_KINDS & SQ_MODEL_MLP) : !(SQ_MODEL_KINDS & SQ_MODEL_LINEAR)) {
        return SQ_ERR_UNSUPPORTED;
    }
    m->out_schema = out_schema(m, sec[1], lens[1], sec[2], lens[2]);
    m->out_off = (uint32_t)(sec[1] - bytes);
    m->work_size = sq_model_layout(m, NULL, NULL);
    return SQ_OK;
}

size_t sq_model_work_size(const sq_model *m)
{
    return m && m->bytes ? m->work_size : 0u;
}

/* ---- scoring ------------------------------------------------------------------------------ */

static int64_t asr(int64_t v, unsigned s)
{
    return v >= 0 ? v >> s : ~(~v >> s);
}

static int64_t round_shift(int64_t v, unsigned s)
{
    return s ? asr(v + ((int64_t)1 << (s - 1u)), s) : v;
}

static int64_t sat(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int64_t leaf_value(const uint8_t *p, unsigned lw)
{
    return lw == 1u ? (int64_t)*p : sq_sign_extend(sq_get_le(p, lw), lw);
}

#if SQ_MODEL_KINDS & SQ_MODEL_TREES
/* Each tree walks from its root (go left iff code <= threshold) to a leaf;
 * VOTE adds the leaf's per-class values, SUM / MEAN its one value to the
 * tree's output.  Children point forward (validated): a walk ends. */
static void score_trees(const sq_model *m, const int32_t *codes, int64_t *acc)
{
    const uint8_t *p = m->bytes + m->body_off;
    unsigned tw = 1u << (m->widths & 3u), cw = (m->widths & 4u) ? 2u : 1u, lw = 1u << (m->widths >> 3);
    unsigned nsz = 1u + tw + 2u * cw, nv = m->mode == VOTE ? m->n_out : 1u, t, o;
    uint32_t leaf_bit = 1u << (8u * cw - 1u);
    for (o = 0; o < m->n_out; o++) {
        acc[o] = sq_sign_extend(sq_get_le(m->bytes + m->init_off + 4u * o, 4), 4);
    }
    for (t = 0; t < m->n_trees; t++) {
        const uint8_t *nodes = p + 3u + cw, *leaf;
        uint32_t ref = (uint32_t)sq_get_le(p + 3, cw);
        while (!(ref & leaf_bit)) {
            const uint8_t *nd = nodes + ref * nsz;
            int64_t thr = sq_sign_extend(sq_get_le(nd + 1, tw), tw);
            ref = (uint32_t)sq_get_le(nd + 1u + tw + (codes[nd[0]] <= thr ? 0u : cw), cw);
        }
        leaf = m->bytes + m->leaf_off + (ref & ~leaf_bit) * nv * lw;
        for (o = 0; o < nv; o++) {
            acc[nv == 1u ? p[0] : o] += leaf_value(leaf + o * lw, lw);
        }
        p = nodes + sq_get_le(p + 1, 2) * nsz;
    }
}
#endif

#if SQ_MODEL_KINDS & (SQ_MODEL_LINEAR | SQ_MODEL_MLP | SQ_MODEL_ANOMALY)
/* The dense layers: int8 inputs from the codes, then per layer
 * acc = bias + W a (int32: validated limits), requantized between layers
 * (and, SUMSQ, after the last: saturated to ±2^20 and squared into d²). */
static void score_dense(const sq_model *m, const int32_t *codes, int8_t *a, int32_t *acc, int64_t *raw)
{
    const uint8_t *p = m->bytes + m->body_off;
    uint32_t k, i, j, n_in = m->n_features;
    for (i = 0; i < n_in; i++, p += 9) {
        int64_t d = (int64_t)codes[i] - sq_sign_extend(sq_get_le(p, 4), 4);
        a[i] = (int8_t)sat(round_shift(d * sq_sign_extend(sq_get_le(p + 4, 4), 4), p[8]), -127, 127);
    }
    for (k = 0; k < m->n_layers; k++) {
        uint32_t n_out = (uint32_t)sq_get_le(p + 2, 2), relu = p[4], bitmap = p[5], shift = p[6];
        const uint8_t *mult;
        p += 8;
        for (j = 0; j < n_out; j++) {
            int32_t s = 0;
            if (bitmap) {
                const uint8_t *w = p + (n_in + 7u) / 8u;
                for (i = 0; i < n_in; i++) {
                    if ((p[i >> 3] >> (i & 7u)) & 1u) {
                        s += (int8_t)*w++ * a[i];
                    }
                }
                p = w;
            } else {
                for (i = 0; i < n_in; i++) {
                    s += (int8_t)p[i] * a[i];
                }
                p += n_in;
            }
            acc[j] = s;
        }
        for (j = 0; j < n_out; j++, p += 4) {
            acc[j] += (int32_t)sq_sign_extend(sq_get_le(p, 4), 4);
        }
        if (shift == NO_REQUANT) {               /* the last layer's outputs, raw */
            for (j = 0; j < n_out; j++) {
                raw[j] = acc[j];
            }
            return;
        }
        mult = p;
        p += 4u * n_out;
        raw[0] = 0;
        for (j = 0; j < n_out; j++) {
            int64_t v = round_shift((int64_t)acc[j] * sq_sign_extend(sq_get_le(mult + 4u * j, 4), 4), shift);
            if (k + 1u < m->n_layers) {
                a[j] = (int8_t)sat(relu && v < 0 ? 0 : v, -127, 127);
            } else {                             /* SUMSQ: d² of the terms saturated to ±2^20 */
                v = sat(v, -(1 << 20), 1 << 20);
                raw[0] += v * v;
            }
        }
        n_in = n_out;
    }
}
#endif

/* Class (and value) from the raw outputs. */
static void decide(const sq_model *m, const int64_t *raw, sq_model_out *out)
{
    unsigned o, best = 0;
    int one = m->n_raw == 1u;
    for (o = 1; o < m->n_raw; o++) {
        best = raw[o] > raw[best] ? o : best;
    }
    out->value = raw[best];
    if (m->kind == SQ_MODEL_VALUE) {
        out->cls = -1;
    } else if (m->kind == SQ_MODEL_ANOMALY_SCORE) {
        out->cls = raw[0] > (int64_t)sq_get_le(m->bytes + m->leaf_off, 8);   /* the threshold */
    } else {
        out->cls = one ? raw[0] > 0 : (int32_t)best;
    }
}

int sq_model_eval(const sq_model *m, sq_model_work *w, sq_model_out *out)
{
    out->codes = w->codes;
    out->raw = w->raw;
    out->scored = 1;
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
    decide(m, w->raw, out);
    return SQ_OK;
}

int sq_model_predict(const sq_model *m, const int32_t *codes, void *work, size_t work_len, sq_model_out *out)
{
    sq_model_work *w;
    if (!m || !m->bytes || !codes || !out || !work || sq_model_layout(m, work, &w) > work_len) {
        return SQ_ERR_ARG;
    }
    memcpy(w->codes, codes, 4u * m->n_features);
    out->start = 0;
    out->n_samples = 0;
    return sq_model_eval(m, w, out);
}
