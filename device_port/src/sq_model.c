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
#include <stddef.h>
#include <string.h>

#include "sq_model_internal.h"

/* sq_model begins with the image's header as it is (sq_model_load copies it). */
typedef char sq_model_header_check[offsetof(sq_model, window_ns) == 40u &&
                                   offsetof(sq_model, n_raw) == SQ_IMAGE_HEADER - 4u ? 1 : -1];

/* An i32 of the image (little-endian, two's complement). */
#define i32(p, n) ((int32_t)sq_le32(p, n))

#define le16(p) ((uint32_t)(p)[0] | (uint32_t)(p)[1] << 8)     /* inline: no call in the loops */
#define VOTE 0u
#define SUMSQ 3u
#define NO_REQUANT 255u

/* ---- the loader ---------------------------------------------------------------------
 * Every section's place follows from the header's counts (and the feature
 * and layer records): the places are computed first and must end exactly
 * at the CRC, so that the index checks below read only inside the image. */

#if SQ_MODEL_KINDS & SQ_MODEL_TREES
/* Version 3's records (docs/models.md §11): a node is (u8 feature, i32
 * threshold, u16 left, u16 right); a reference (u16) below n_nodes is a
 * node, above it leaf ref − n_nodes (one index space: one range rule); a
 * leaf holds n_out u8 votes (VOTE) or one i32. */
#define NODE_SIZE 9u
#define LEAF_WIDTH(m) ((m)->mode == VOTE ? 1u : 4u)

/* The trees (output, root), the nodes (feature, threshold, left, right),
 * the leaf table; returns where they end (0: a rule broken).  The
 * reference rule, inline (no helper since version 3 made it one compare):
 * a root below refs, a child of node i in (i, refs) — a node strictly
 * forward (a walk ends) or any leaf. */
static uint32_t trees(sq_model *m, uint32_t off, uint32_t end)
{
    const uint8_t *p, *nodes;
    uint32_t i, refs = (uint32_t)m->n_nodes + m->n_leaves;    /* a reference is below: a node or a leaf */
    m->body_off = off;
    m->node_off = m->body_off + 4u * m->n_trees;
    m->leaf_off = m->node_off + NODE_SIZE * m->n_nodes;
    m->n_raw = m->n_out;
    m->leaf_size = (uint16_t)(m->mode == VOTE ? m->n_out : 4u);      /* kept for the walk: no multiply there */
    if (!m->n_out || m->leaf_off + (uint32_t)m->n_leaves * m->leaf_size != end) {
        return 0;
    }
    nodes = m->bytes + m->node_off;
    for (p = m->bytes + m->body_off; p < nodes; p += 4) {        /* trees: an output and a root */
        if (p[0] >= m->n_out || le16(p + 2) >= refs) {
            return 0;
        }
    }
    for (i = 0; i < m->n_nodes; i++, p += NODE_SIZE) {        /* nodes: a feature and two children */
        if (p[0] >= m->n_features || le16(p + 5) - i - 1u >= refs - i - 1u ||
            le16(p + 7) - i - 1u >= refs - i - 1u) {
            return 0;
        }
    }
    return end;
}
#endif

#if SQ_MODEL_KINDS & SQ_DENSE_KINDS
/* The input scaling, then per layer (n_out, relu, shift), weights, biases
 * and multipliers; SUMSQ: the threshold.  m->n_out counts the layers. */
static uint32_t dense(sq_model *m, uint32_t off, uint32_t end)
{
    uint32_t k, n_in = m->n_features, n_out = n_in;
    m->body_off = off;
    m->max_width = (uint16_t)n_in;
    off += 9u * n_in;
    if (!m->n_out || m->mode > SUMSQ) {
        return 0;
    }
    for (k = 0; k < m->n_out; k++) {
        const uint8_t *h = m->bytes + off;
        uint32_t shift;
        if (off + 4u > end) {
            return 0;
        }
        n_out = sq_le32(h, 2);
        shift = h[3];
        if (n_out - 1u >= 1024u || (shift > 62u && shift != NO_REQUANT)) {
            return 0;
        }
        off += 4u + n_out * n_in + 4u * n_out + (shift != NO_REQUANT ? 4u * n_out : 0u);
        m->max_width = (uint16_t)(n_out > m->max_width ? n_out : m->max_width);
        n_in = n_out;
    }
    m->leaf_off = off;                       /* SUMSQ: the threshold on d² */
    if (m->mode == SUMSQ) {
        off += 8u;
        n_out = 1;
    }
    m->n_raw = (uint16_t)n_out;
    return off == end ? end : 0;
}
#endif

/* The feature ops this build computes (bit op): crossings and the bands only with their kinds. */
#define OPS_BUILT ((0x7Fu << SQ_OP_MEAN) | (SQ_MODEL_KINDS & SQ_MODEL_CROSSINGS ? 1u << SQ_OP_CROSS : 0u) | \
                   (SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL ? 3u << SQ_OP_BAND : 0u))

static int load(sq_model *m, const uint8_t *bytes, size_t len, const sq_stream_cfg *cfg)
{
    const uint8_t *p;
    uint32_t i, ops = 0, end, off;
    if (!m || !bytes || !cfg) {
        return SQ_ERR_ARG;
    }
    if (len < SQ_IMAGE_HEADER + 4u || sq_le32(bytes, 4) != 0x31445153u) {     /* "SQD1" */
        return SQ_ERR_CORRUPT;
    }
    /* the header, field for field (little-endian); the loader's fields after
     * it are each set below where the build reads them (no memset) */
    memcpy(m, bytes + 4, SQ_IMAGE_HEADER - 4u);
    if (m->version != SQ_MODEL_VERSION) {
        return SQ_ERR_VERSION;
    }
    end = (uint32_t)len - 4u;
    if (m->length != len) {
        return SQ_ERR_CORRUPT;
    }
    if (sq_crc32(0, bytes, len) != 0x2144DF1Cu) {
        return SQ_ERR_CRC;       /* the CRC-32 of bytes and their CRC (little-endian) is this residue */
    }
    m->bytes = bytes;
    m->sig_off = SQ_IMAGE_HEADER + 2u * m->n_inputs;
    m->feat_off = m->sig_off + 2u * m->n_signals;
    off = m->feat_off + 4u * m->n_features;
    /* No signals: refused below, as a feature's signal must be one of them.
     * The window and the hop (1 … 2^62) are the host's rule, not checked
     * here: the device's arithmetic on them is unsigned and range-free (the
     * window test t − start < window mod 2^64, the newest start's division,
     * by 0 too, sq_udiv64), so any value only picks other samples, never UB. */
    if (m->kind > SQ_MODEL_ANOMALY_SCORE || m->n_inputs - 1u >= SQ_MODEL_MAX_INPUTS || !m->n_features ||
        m->min_samples - 2u > SQ_MODEL_MAX_WINDOW - 2u || off > end) {
        return SQ_ERR_CORRUPT;
    }
    /* inputs (channel, shift): a channel past the ring's is another ring's,
     * refused at once (no flag carried to the end: 20 B less) */
    for (i = 0, p = bytes + SQ_IMAGE_HEADER; i < m->n_inputs; i++, p += 2) {
        if (p[1] >= 64u) {
            return SQ_ERR_CORRUPT;
        }
        if (p[0] >= cfg->n_channels) {
            return SQ_ERR_MISMATCH;
        }
    }
    /* signals: a mask of the inputs (one: the channel; more: their magnitude) */
    for (i = 0; i < m->n_signals; i++, p += 2) {
        uint32_t mask = sq_le32(p, 2);
        if (!mask || mask >> m->n_inputs) {
            return SQ_ERR_CORRUPT;
        }
    }
    /* features: op, signal, frequencies of the two bands */
#if SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL
    m->n_steps = 0;
#endif
    for (i = 0; i < m->n_features; i++, p += 4) {
        if (p[0] - 1u >= SQ_OP_RATIO || p[1] >= m->n_signals) {
            return SQ_ERR_CORRUPT;
        }
#if (SQ_MODEL_KINDS & (SQ_MODEL_CROSSINGS | SQ_MODEL_SPECTRAL)) != (SQ_MODEL_CROSSINGS | SQ_MODEL_SPECTRAL)
        if (!(OPS_BUILT >> p[0] & 1u)) {
            return SQ_ERR_UNSUPPORTED;   /* crossings or bands left out of this build */
        }
#endif
        ops |= 1u << p[0];
#if SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL
        m->n_steps += p[2] + p[3];
#endif
    }
#if SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL
    m->steps_off = off;                  /* read only with spectral features */
    off += 4u * m->n_steps;
#endif
    /* (a build without bands reads no phase step: an image with steps has
     * bands, refused below, or steps where it has none, refused as the
     * sections then do not end at the CRC) */
#if SQ_MODEL_KINDS & SQ_MODEL_CROSSINGS
    m->passes = (uint16_t)(ops & (1u << SQ_OP_CROSS) ? 2u : 1u);   /* read only with crossings */
#endif
    if (m->body == SQ_BODY_TREES) {
#if SQ_MODEL_KINDS & SQ_MODEL_TREES
        off = off > end ? 0 : trees(m, off, end);
#else
        return SQ_ERR_UNSUPPORTED;
#endif
    } else {
        if ((m->mode == SUMSQ ? SQ_MODEL_ANOMALY : m->n_out > 1u ? SQ_MODEL_MLP : SQ_MODEL_LINEAR) & ~SQ_MODEL_KINDS) {
            return SQ_ERR_UNSUPPORTED;   /* a dense kind left out of this build */
        }
#if SQ_MODEL_KINDS & SQ_DENSE_KINDS
        off = off > end || m->body != SQ_BODY_DENSE ? 0 : dense(m, off, end);
#endif
    }
    if (off != end) {
        return SQ_ERR_CORRUPT;
    }
    if (m->schema != cfg->schema) {
        return SQ_ERR_MISMATCH;          /* bound to another ring */
    }
    return SQ_OK;
}

int sq_model_load(sq_model *m, const uint8_t *bytes, size_t len, const sq_stream_cfg *cfg)
{
    int err = load(m, bytes, len, cfg);
    if (err != SQ_OK && m) {
        m->bytes = NULL;        /* refused: scoring it anyway is SQ_ERR_ARG, never a read of the bytes */
    }
    return err;
}

size_t sq_model_work_size(const sq_model *m)
{
    sq_model_work scratch, *w;       /* aligned: the layout writes its pointers there, nothing past */
    return m && m->bytes ? sq_model_layout(m, &scratch, &w, SQ_WORK_ARRAYS) : 0u;
}

/* ---- scoring ------------------------------------------------------------------------------ */

#if SQ_MODEL_KINDS & SQ_MODEL_TREES
/* The outputs start at 0 (version 3: the host writes init values as trees
 * of one leaf).  Each tree walks from its root (go left iff code <=
 * threshold) to a leaf; VOTE adds the leaf's per-class values, SUM / MEAN
 * its one value to the tree's output.  Children point forward (checked): a
 * walk ends. */
static void score_trees(const sq_model *m, const int32_t *codes, int64_t *acc)
{
    const uint8_t *t = m->bytes + m->body_off, *end = m->bytes + m->node_off;     /* the trees end where the nodes begin */
    uint32_t nv = m->mode == VOTE ? m->n_out : 1u, lw = LEAF_WIDTH(m), o;
    memset(acc, 0, 8u * m->n_out);
    for (; t < end; t += 4) {
        const uint8_t *leaf;
        uint32_t ref = sq_le32(t + 2, 2);
        while (ref < m->n_nodes) {                  /* a node; past them, a leaf */
            const uint8_t *nd = m->bytes + m->node_off + ref * NODE_SIZE;
            ref = sq_le32(nd + (codes[nd[0]] <= i32(nd + 1, 4) ? 5u : 7u), 2);
        }
        leaf = m->bytes + m->leaf_off + (ref - m->n_nodes) * m->leaf_size;
        for (o = 0; o < nv; o++, leaf += lw) {
            sq_add64(&acc[nv == 1u ? t[0] : o], (int32_t)sq_le32(leaf, lw));    /* u8 votes; an i32 as it is */
        }
    }
}
#endif

#if SQ_MODEL_KINDS & SQ_DENSE_KINDS
/* v · 2^-s rounded half up; the sum wraps (no UB) on hostile constants only. */
static int64_t round_shift(int64_t v, unsigned s)
{
    if (!s) {
        return v;
    }
    v = (int64_t)((uint64_t)v + ((uint64_t)1 << (s - 1u)));
    return (int64_t)(v >= 0 ? (uint64_t)v >> s : ~(~(uint64_t)v >> s));
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
        int64_t d = (int64_t)codes[i] - i32(p, 4);
        a[i] = (int8_t)sat(round_shift((int64_t)((uint64_t)d * (uint64_t)(int64_t)i32(p + 4, 4)), p[8] & 63u), 127);
    }
    for (k = 0; k < m->n_out; k++) {             /* n_out: the layers */
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
            int64_t v = round_shift((int64_t)acc[j] * i32(p, 4), shift);
            if (k + 1u < m->n_out) {
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
    if (!(SQ_MODEL_KINDS & SQ_DENSE_KINDS) || m->body == SQ_BODY_TREES) {     /* a build of trees only loads no other */
        score_trees(m, w->codes, w->raw);
    }
#endif
#if SQ_MODEL_KINDS & SQ_DENSE_KINDS
    if (m->body == SQ_BODY_DENSE) {
        score_dense(m, w->codes, w->act, w->acc, w->raw);
    }
#endif
    /* |raw| < 2^62, any image (sums of at most 2^16 i32 leaves, int32
     * accumulators, d² of at most 1024 terms of at most 2^40): a > b is the
     * sign of b - a, with no 64-bit compare */
    for (o = 1; o < m->n_raw; o++) {
        best = ((uint64_t)raw[best] - (uint64_t)raw[o]) >> 63 ? o : best;     /* raw[o] > raw[best] */
    }
    out->value = raw[best];
    /* one output: raw[0] > 0 */
    out->cls = m->kind == SQ_MODEL_VALUE ? -1 : (int32_t)(m->n_raw == 1u ? (0u - (uint64_t)raw[0]) >> 63 : best);
#if SQ_MODEL_KINDS & SQ_MODEL_ANOMALY
    if (m->mode == SUMSQ && m->body == SQ_BODY_DENSE) {
        out->cls = raw[0] > (int64_t)sq_get_le(m->bytes + m->leaf_off, 8);   /* d² past the threshold */
    }
#endif
    out->scored = 1;
    return SQ_OK;
}

int sq_model_predict(const sq_model *m, const int32_t *codes, void *work, size_t work_len, sq_model_out *out)
{
    sq_model_work *w;
    if (!m || !m->bytes || !codes || !out || !work || sq_model_layout(m, work, &w, SQ_SCORING_ARRAYS) > work_len) {
        return SQ_ERR_ARG;
    }
    memcpy(w->codes, codes, 4u * m->n_features);
    out->codes = w->codes;
    out->raw = w->raw;
    out->start = 0;
    out->n_samples = 0;
    return sq_model_eval(m, w, out);
}
