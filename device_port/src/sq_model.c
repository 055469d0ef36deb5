/* Models (↔ sensorq/device/image.py, sensorq/models/qscore.py): a model's
 * device image (docs/models.md §11) checked for what memory safety and
 * correct arithmetic need, then the integer scorers of docs/models.md §4,
 * line for line the host's quantized path.  The window features are
 * sq_feat.c's.
 *
 * The host validated the whole .sqm once (names, texts, floats, every
 * consistency rule) and bound the inputs to the ring's channels; the image
 * is fixed-width and carries the ring's schema hash.  The loader checks the
 * magic, version, length and CRC, the ring's schema, and then that every
 * count fits the bytes, every index is in range, every child reference
 * points strictly forward (a walk ends), every feature code is known:
 * hostile bytes give an error code, never a read outside them.  Arithmetic
 * a hostile constant could overflow is done unsigned (it wraps, no UB);
 * valid images never reach it. */
#include <string.h>

#include "sq_model_internal.h"

#define VOTE 0u
#define SUMSQ 3u
#define NO_REQUANT 255u

/* ---- a cursor over the image ------------------------------------------------------ */

typedef struct {
    const uint8_t *p, *end;
    uint32_t bad;
} cur;

/* n bytes at the cursor (a pointer to them), or the end and the bad flag. */
static const uint8_t *__attribute__((noinline)) take(cur *c, uint32_t n)
{
    const uint8_t *at = c->p;
    if ((uint32_t)(c->end - at) < n) {
        c->bad = 1;
        return c->end;
    }
    c->p = at + n;
    return at;
}

static void need(cur *c, int ok)
{
    c->bad |= !ok;
}

#if SQ_MODEL_KINDS & SQ_MODEL_TREES
/* A child reference: a leaf (top bit) of the table, or a node after `from`. */
static int ref_ok(const sq_model *m, uint32_t ref, uint32_t from)
{
    return ref & SQ_LEAF_BIT ? (ref & ~SQ_LEAF_BIT) < m->n_leaves : ref - from - 1u < m->n_nodes - from - 1u;
}

static void trees(sq_model *m, cur *c)
{
    const uint8_t *h = take(c, 8), *nd;
    uint32_t i, nsz;
    m->n_out = h[0];
    m->tw = (uint8_t)(1u << (h[1] & 3u));
    m->lw = (uint8_t)(1u << ((h[1] >> 2) & 3u));
    m->n_trees = (uint16_t)sq_le32(h + 2, 2);
    m->n_nodes = (uint16_t)sq_le32(h + 4, 2);
    m->n_leaves = (uint16_t)sq_le32(h + 6, 2);
    need(c, m->n_out && m->tw <= 4u && m->lw <= 4u && (m->mode == VOTE) == (m->lw == 1u));
    m->init_off = (uint32_t)(take(c, 4u * m->n_out) - m->bytes);
    m->body_off = (uint32_t)(take(c, 4u * m->n_trees) - m->bytes);
    for (i = 0; i < m->n_trees && !c->bad; i++) {
        const uint8_t *t = m->bytes + m->body_off + 4u * i;
        need(c, t[0] < m->n_out && ref_ok(m, sq_le32(t + 2, 2), (uint32_t)-1));
    }
    nsz = 5u + m->tw;
    nd = take(c, m->n_nodes * nsz);
    m->node_off = (uint32_t)(nd - m->bytes);
    for (i = 0; i < m->n_nodes && !c->bad; i++, nd += nsz) {
        need(c, nd[0] < m->n_features && ref_ok(m, sq_le32(nd + 1u + m->tw, 2), i) &&
                    ref_ok(m, sq_le32(nd + 3u + m->tw, 2), i));
    }
    m->leaf_off = (uint32_t)(take(c, (uint32_t)m->n_leaves * m->lw * (m->mode == VOTE ? m->n_out : 1u)) - m->bytes);
    m->n_raw = m->n_out;
}
#endif

#if SQ_MODEL_KINDS & (SQ_MODEL_LINEAR | SQ_MODEL_MLP | SQ_MODEL_ANOMALY)
static void dense(sq_model *m, cur *c)
{
    uint32_t k, n_in = m->n_features, n_out = n_in, shift = NO_REQUANT;
    m->n_layers = *take(c, 2);
    m->body_off = (uint32_t)(take(c, 9u * n_in) - m->bytes);
    m->max_width = (uint16_t)n_in;
    need(c, m->n_layers && m->mode <= SUMSQ);
    for (k = 0; k < m->n_layers && !c->bad; k++) {
        const uint8_t *h = take(c, 4);
        n_out = sq_le32(h, 2);
        shift = h[3];
        need(c, n_out - 1u < 1024u && (shift <= 62u || shift == NO_REQUANT));
        take(c, n_out * n_in + 4u * n_out + (shift != NO_REQUANT ? 4u * n_out : 0u));
        m->max_width = (uint16_t)(n_out > m->max_width ? n_out : m->max_width);
        n_in = n_out;
    }
    m->n_layers = (uint8_t)k;
    if (m->mode == SUMSQ) {
        m->leaf_off = (uint32_t)(take(c, 8) - m->bytes);     /* the threshold on d² */
        n_out = 1;
    }
    m->n_raw = (uint8_t)n_out;
    need(c, n_out < 256u);
    (void)shift;
}
#endif

int sq_model_load(sq_model *m, const uint8_t *bytes, size_t len, const sq_stream_cfg *cfg)
{
    const uint8_t *p;
    uint32_t i, ops = 0, mismatch = 0, kinds;
    cur c;
    if (!m || !bytes || !cfg) {
        return SQ_ERR_ARG;
    }
    memset(m, 0, sizeof *m);
    if (len < SQ_IMAGE_HEADER + 4u || sq_le32(bytes, 4) != 0x31445153u) {     /* "SQD1" */
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
    m->mode = bytes[7];
    m->out_schema = sq_le32(bytes + 16, 4);
    m->window_ns = (int64_t)sq_get_le(bytes + 20, 8);
    m->hop_ns = (int64_t)sq_get_le(bytes + 28, 8);
    m->min_samples = sq_le32(bytes + 36, 4);
    m->n_inputs = bytes[40];
    m->n_signals = bytes[41];
    m->n_features = bytes[42];
    m->n_classes = bytes[43];
    c.p = bytes + SQ_IMAGE_HEADER;
    c.end = bytes + len - 4u;
    c.bad = m->kind > SQ_MODEL_ANOMALY_SCORE || m->n_inputs - 1u >= SQ_MODEL_MAX_INPUTS || !m->n_signals ||
            !m->n_features || (uint64_t)m->window_ns - 1u >= (1ull << 62) - 1u ||
            (uint64_t)m->hop_ns - 1u >= (1ull << 62) - 1u || m->min_samples - 2u > SQ_MODEL_MAX_WINDOW - 2u;
    /* inputs: the ring channel (bound on the host) and the shift */
    p = take(&c, 2u * m->n_inputs);
    for (i = 0; i < m->n_inputs && !c.bad; i++) {
        mismatch |= p[2u * i] >= cfg->n_channels;
        need(&c, p[2u * i + 1u] < 64u);
    }
    /* signals: a mask of the inputs (one: the channel; more: their magnitude) */
    m->sig_off = (uint32_t)(take(&c, 2u * m->n_signals) - bytes);
    for (i = 0; i < m->n_signals && !c.bad; i++) {
        uint32_t mask = sq_le32(bytes + m->sig_off + 2u * i, 2);
        need(&c, mask && !(mask >> m->n_inputs));
    }
    /* features: op, signal, frequencies of the two bands */
    m->feat_off = (uint32_t)(take(&c, 4u * m->n_features) - bytes);
    for (i = 0; i < m->n_features && !c.bad; i++) {
        p = bytes + m->feat_off + 4u * i;
        need(&c, p[0] - 1u < SQ_OP_RATIO && p[1] < m->n_signals);
        ops |= 1u << (p[0] & 15u);
        m->n_steps += p[2] + p[3];
    }
    m->steps_off = (uint32_t)(take(&c, 4u * m->n_steps) - bytes);
    m->passes = (uint8_t)(ops & (1u << SQ_OP_CROSS) ? 2u : 1u);
    kinds = (ops & (1u << SQ_OP_CROSS) ? SQ_MODEL_CROSSINGS : 0u) | (m->n_steps ? SQ_MODEL_SPECTRAL : 0u);
    if (m->body == SQ_BODY_TREES) {
#if SQ_MODEL_KINDS & SQ_MODEL_TREES
        trees(m, &c);
#else
        c.p = c.end;                     /* not built in: SQ_ERR_UNSUPPORTED below */
#endif
        kinds |= SQ_MODEL_TREES;
    } else {
#if SQ_MODEL_KINDS & (SQ_MODEL_LINEAR | SQ_MODEL_MLP | SQ_MODEL_ANOMALY)
        dense(m, &c);
#else
        c.p = c.end;
#endif
        need(&c, m->body == SQ_BODY_DENSE);
        kinds |= m->mode == SUMSQ ? SQ_MODEL_ANOMALY : m->n_layers > 1u ? SQ_MODEL_MLP : SQ_MODEL_LINEAR;
    }
    need(&c, c.p == c.end);
    if (c.bad) {
        return SQ_ERR_CORRUPT;
    }
    if (mismatch || sq_le32(bytes + 12, 4) != cfg->schema) {
        return SQ_ERR_MISMATCH;          /* bound to another ring */
    }
    if (kinds & ~SQ_MODEL_KINDS) {
        return SQ_ERR_UNSUPPORTED;
    }
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
 * tree's output.  Children point forward (checked): a walk ends. */
static void score_trees(const sq_model *m, const int32_t *codes, int64_t *acc)
{
    const uint8_t *t = m->bytes + m->body_off, *nodes = m->bytes + m->node_off;
    uint32_t tw = m->tw, lw = m->lw, nsz = 5u + tw, nv = m->mode == VOTE ? m->n_out : 1u, i, o;
    for (o = 0; o < m->n_out; o++) {
        acc[o] = sq_sx32(m->bytes + m->init_off + 4u * o, 4);
    }
    for (i = 0; i < m->n_trees; i++, t += 4) {
        const uint8_t *leaf;
        uint32_t ref = sq_le32(t + 2, 2);
        while (!(ref & SQ_LEAF_BIT)) {
            const uint8_t *nd = nodes + ref * nsz;
            ref = sq_le32(nd + 1u + tw + (codes[nd[0]] <= sq_sx32(nd + 1, tw) ? 0u : 2u), 2);
        }
        leaf = m->bytes + m->leaf_off + (ref & ~SQ_LEAF_BIT) * nv * lw;
        for (o = 0; o < nv; o++, leaf += lw) {
            acc[nv == 1u ? t[0] : o] += lw == 1u ? (int32_t)*leaf : sq_sx32(leaf, lw);
        }
    }
}
#endif

#if SQ_MODEL_KINDS & (SQ_MODEL_LINEAR | SQ_MODEL_MLP | SQ_MODEL_ANOMALY)
/* v · 2^-s rounded half up; the sum wraps (no UB) on hostile constants only. */
static int64_t round_shift(int64_t v, unsigned s)
{
    if (!s) {
        return v;
    }
    v = (int64_t)((uint64_t)v + ((uint64_t)1 << (s - 1u)));
    return v >= 0 ? v >> s : ~(~v >> s);
}

static int64_t sat(int64_t v, int64_t limit)
{
    return v < -limit ? -limit : v > limit ? limit : v;
}

/* The dense layers: int8 inputs from the codes, then per layer
 * acc = bias + W a (int32), requantized between layers (and, SUMSQ, after
 * the last: saturated to ±2^20 and squared into d²). */
static void score_dense(const sq_model *m, const int32_t *codes, int8_t *a, int32_t *acc, int64_t *raw)
{
    const uint8_t *p = m->bytes + m->body_off;
    uint32_t k, i, j, n_in = m->n_features;
    for (i = 0; i < n_in; i++, p += 9) {
        int64_t d = (int64_t)codes[i] - sq_sx32(p, 4);
        a[i] = (int8_t)sat(round_shift((int64_t)((uint64_t)d * (uint64_t)(int64_t)sq_sx32(p + 4, 4)), p[8] & 63u), 127);
    }
    for (k = 0; k < m->n_layers; k++) {
        uint32_t n_out = sq_le32(p, 2), relu = p[2], shift = p[3];
        p += 4;
        for (j = 0; j < n_out; j++) {
            int32_t s = 0;
            for (i = 0; i < n_in; i++) {
                s += (int8_t)*p++ * a[i];
            }
            acc[j] = s;
        }
        for (j = 0; j < n_out; j++, p += 4) {
            acc[j] = (int32_t)((uint32_t)acc[j] + sq_le32(p, 4));
            raw[j < m->n_raw ? j : 0] = acc[j];      /* the last layer's outputs, raw */
        }
#if SQ_MODEL_KINDS & (SQ_MODEL_MLP | SQ_MODEL_ANOMALY)
        if (shift == NO_REQUANT) {
            return;
        }
        raw[0] = 0;
        for (j = 0; j < n_out; j++, p += 4) {
            int64_t v = round_shift((int64_t)acc[j] * sq_sx32(p, 4), shift);
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
    if (m->mode == SUMSQ && m->body == SQ_BODY_DENSE) {
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
