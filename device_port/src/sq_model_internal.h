/* Internal parts of the model runtime shared by sq_model.c and sq_feat.c. */
#ifndef SQ_MODEL_INTERNAL_H
#define SQ_MODEL_INTERNAL_H

#include "sq_internal.h"

#define SQ_BODY_TREES 1u
#define SQ_BODY_DENSE 2u
#define SQ_IMAGE_HEADER 60u       /* docs/models.md §11: the device image's fixed header */

/* Feature codes (docs/models.md §3). */
#define SQ_OP_MEAN 1u
#define SQ_OP_STD 2u
#define SQ_OP_MIN 3u
#define SQ_OP_MAX 4u
#define SQ_OP_RMS 5u
#define SQ_OP_PTP 6u
#define SQ_OP_MAD 7u
#define SQ_OP_CROSS 8u
#define SQ_OP_BAND 9u
#define SQ_OP_RATIO 10u

#define SUM_U 0
#define SUM_SQ 1
#define SUM_DIFF 2

/* One signal's first-pass sums over a window (and its crossing count). */
typedef struct {
    int64_t sum[3];             /* SUM_U, SUM_SQ, SUM_DIFF: 16·Σu, Σu², 16·Σ|successive differences| (16: the
                                   codes' units, so that the codes scale no 64-bit sum but Σu²) */
    int32_t mn, mx, prev, u;    /* min, max, the previous and the current sample */
    int32_t M;                  /* the mean in 1/16 units (second pass) */
    uint32_t cross;             /* crossings of the mean (second pass) */
    uint32_t above;             /* the last sample's side */
} sq_sig_state;

/* One phase step of a spectral feature: Σ u_i·cos and Σ u_i·sin of its phases. */
typedef struct {
    int64_t re, im;
    uint32_t phase, step, sig;
} sq_step_state;

#define SQ_DENSE_KINDS (SQ_MODEL_LINEAR | SQ_MODEL_MLP | SQ_MODEL_ANOMALY)

/* The work memory, carved (sq_model_layout): the arrays in this order,
 * each 8-byte aligned (the layout walks them as an array of pointers; the
 * arrays of kinds left out of the build are left out of it), the last two
 * the row reader's own: rows.col and rows.cursor. */
typedef struct {
    int32_t *codes;             /* n_features */
    int64_t *raw;               /* n_raw */
#if SQ_MODEL_KINDS & SQ_DENSE_KINDS
    int8_t *act;                /* dense: activations, max_width */
    int32_t *acc;               /* dense: accumulators, max_width */
#endif
    sq_sig_state *sig;          /* n_signals */
#if SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL
    sq_step_state *step;        /* n_steps */
#endif
    int64_t *x;                 /* n_inputs + 1: the current row's time word and its inputs' words */
#if SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL
    void *pad;                  /* (no memory) rows 8-byte aligned right after the pointers */
#endif
    sq_rows rows;               /* the window's reader of the ring's rows (the query VM's): its col,
                                   n_inputs + 1 readers (the first: time), and cursor, one each */
    const sq_model *m;
    int64_t start;              /* the window's (its end: start + window, visit) */
    uint32_t n, n2;             /* samples seen by the first and second pass */
    int pass;
} sq_model_work;

/* Bytes of work memory m needs, and work carved (*w): the sq_model_work
 * itself first (off the stack), then its first n_arrays arrays
 * (SQ_SCORING_ARRAYS: only what scoring codes needs — sq_model_predict).
 * Sizing alone passes an aligned sq_model_work as work: the pointers land
 * there, nothing past it. */
uint32_t sq_model_layout(const sq_model *m, void *work, sq_model_work **w, uint32_t n_arrays);

/* The arrays a window carves (all), and those scoring codes needs
 * (sq_model_predict: the codes, the outputs and the dense layers' buffers). */
#define SQ_WORK_ARRAYS \
    (6u + (SQ_MODEL_KINDS & SQ_DENSE_KINDS ? 2u : 0u) + (SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL ? 2u : 0u))
#define SQ_SCORING_ARRAYS (SQ_MODEL_KINDS & SQ_DENSE_KINDS ? 4u : 2u)

/* *a += v: out of line, as an inline 64-bit addition to memory takes more
 * code on a Cortex-M0+ than the call (the features' sums, the trees' outputs). */
void sq_add64(int64_t *a, int64_t v);

/* Score w->codes into w->raw and *out. */
int sq_model_eval(const sq_model *m, sq_model_work *w, sq_model_out *out);

#endif
