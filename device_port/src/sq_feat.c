/* Window features from the ring (↔ sensorq/models/features.py, kernels.py):
 * the samples of [start, start + window) read through the ring's verified
 * path — the query VM's walk (sq_ring_walk: sealed blocks from
 * sq_ring_next, then a snapshot of the staged samples) and its row reader
 * (sq_rows_open / sq_rows_next), one row at a time — folded into
 * per-signal sums as they pass
 * (one pass; a second only for crossings, which need the mean first), then
 * the integer codes of docs/models.md §3.  Spectral features keep
 * Σ u·cos and Σ u·sin per frequency: re = 16·Σu·cos − M·Σcos is exactly the
 * host's Σ(16u − M)·cos, with one 32-bit product per sample. */
#include <stddef.h>
#include <string.h>

#include "sq_model_internal.h"

#define DONE 1
#define CODE_MAX 2147483647

typedef void *sq_any_ptr __attribute__((may_alias));   /* a member of sq_model_work's pointers */

/* The layout walks sq_model_work's pointers as one array that ends with the
 * row reader's col and cursor: rows must follow the other pointers with no
 * gap (the pad slot of spectral builds keeps rows 8-byte aligned on 32-bit
 * targets, where their pointer count is otherwise odd). */
typedef char sq_rows_carved[offsetof(sq_model_work, rows) + offsetof(sq_rows, cursor) ==
                            (5u + (SQ_MODEL_KINDS & SQ_DENSE_KINDS ? 2u : 0u) +
                             (SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL ? 2u : 0u)) * sizeof(void *) ? 1 : -1];

uint32_t sq_model_layout(const sq_model *m, void *work, sq_model_work **wp, uint32_t n)
{
    uint32_t cols = m->n_inputs + 1u, k;
#if SQ_MODEL_KINDS & SQ_DENSE_KINDS
    uint32_t dense = m->body == SQ_BODY_DENSE ? m->max_width : 0u;
#endif
    const uint32_t bytes[] = {
        4u * m->n_features, 8u * m->n_raw,
#if SQ_MODEL_KINDS & SQ_DENSE_KINDS
        dense, 4u * dense,
#endif
        m->n_signals * (uint32_t)sizeof(sq_sig_state),
#if SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL
        m->n_steps * (uint32_t)sizeof(sq_step_state),
#endif
        8u * cols,
#if SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL
        0,
#endif
        cols * (uint32_t)sizeof(sq_col), cols * (uint32_t)sizeof(sq_dict_cursor)};
    uintptr_t base = ((uintptr_t)work + 7u) & ~(uintptr_t)7u, p = base;
    sq_model_work *w = (sq_model_work *)base;
    p += (sizeof(sq_model_work) + 7u) & ~7u;
    (void)sizeof(char[sizeof bytes / sizeof bytes[0] == SQ_WORK_ARRAYS ? 1 : -1]);     /* n <= the table */
    for (k = 0; k < n; k++) {
        ((sq_any_ptr *)w)[k] = (void *)p;
        p += (bytes[k] + 7u) & ~7u;
    }
    *wp = w;
    return (uint32_t)(p - base) + 7u;
}

/* ---- integer helpers ------------------------------------------------------------------ */

/* a / b rounded half away from zero (0 < b < 2^63): the query VM's MEAN division. */
#define rdiv sq_round_div

/* floor(sqrt(v)), one result bit at a time (the VM's 64-bit multiply;
 * a root fits 32 bits). */
#if SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL
__attribute__((noinline))       /* called from three places; else once: inlined */
#endif
static uint64_t isqrt64(uint64_t v)
{
    uint32_t r = 0, bit = 1u << 31;
    do {
        uint32_t t = r | bit;
        r = (uint64_t)t * t <= v ? t : r;
    } while (bit >>= 1);
    return r;
}

/* The same in 32 bits: a magnitude's root, once a sample (4x faster on a Cortex-M0+). */
static uint32_t isqrt32(uint32_t v)
{
    uint32_t r = 0, bit = 1u << 30;
    while (bit > v) {
        bit >>= 2;
    }
    while (bit) {
        if (v >= r + bit) {
            v -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return r;
}

/* u² of a signal value (|u| ≤ 65536) without a 64-bit multiply: the high
 * word is a >> 16 (1 only for 65536, whose a·a wraps to 0). */
static uint64_t square(int32_t u)
{
    uint32_t a = (uint32_t)(u < 0 ? -u : u);
    return (uint64_t)(a >> 16) << 32 | (uint32_t)(a * a);
}

#if SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL
/* COS[k] = round(32767 cos(2πk/256)) for k = 0 … 64: the quarter wave
 * (COS[256 − k] = COS[k], COS[128 − k] = −COS[k]). */
static const int16_t quarter[65] = {
    32767, 32757, 32728, 32678, 32609, 32521, 32412, 32285, 32137, 31971, 31785, 31580, 31356,
    31113, 30852, 30571, 30273, 29956, 29621, 29268, 28898, 28510, 28105, 27683, 27245, 26790,
    26319, 25832, 25329, 24811, 24279, 23731, 23170, 22594, 22005, 21403, 20787, 20159, 19519,
    18868, 18204, 17530, 16846, 16151, 15446, 14732, 14010, 13279, 12539, 11793, 11039, 10278,
    9512, 8739, 7962, 7179, 6393, 5602, 4808, 4011, 3212, 2410, 1608, 804, 0};

static int32_t cos_at(uint32_t k)
{
    k &= 255u;
    k = k > 128u ? 256u - k : k;
    return k > 64u ? -quarter[128u - k] : quarter[k];
}

/* E = Σ over steps [from, from + count) of rdiv(re, n·2^15)² + rdiv(im, n·2^15)². */
static int64_t energy(const sq_model_work *w, uint32_t from, uint32_t count, int64_t M)
{
    int64_t total = 0;
    uint32_t i, j;
    for (i = from; i < from + count; i++) {
        const sq_step_state *s = &w->step[i];
        int64_t c = 0, d = 0, re, im;
        uint32_t phase = 0;
        for (j = 0; j < w->n; j++, phase += s->step) {
            c += cos_at(phase >> 24);
            d += cos_at((phase >> 24) + 192u);
        }
        re = rdiv(16 * s->re - M * c, (uint64_t)w->n << 15);
        im = rdiv(16 * s->im - M * d, (uint64_t)w->n << 15);
        total += re * re + im * im;
    }
    return total;
}
#endif

/* ---- one sample ------------------------------------------------------------------------- */

/* A stored value as the signal's integer: floor(v / 2^shift), saturated to int16. */
static int32_t to_signal(int64_t v, unsigned shift)
{
    /* floor(v / 2^s) = ~(~v >> s) for v < 0: the magnitude's side shifted and
     * saturated to 32767 (logical shifts only), then the sign put back */
    uint64_t neg = 0u - ((uint64_t)v >> 63), a = ((uint64_t)v ^ neg) >> shift;     /* neg: all ones for v < 0 */
    uint32_t big = (uint32_t)(a >> 32) | (uint32_t)a >> 15;                         /* a > 32767: a bit from 15 on */
    return (int32_t)((big ? 32767u : (uint32_t)a) ^ (uint32_t)neg);
}

/* The sample's value of the signal whose record (a u16 mask of inputs) is
 * at rec, its inputs' words at x and their (channel, shift) records at in:
 * one input, or the magnitude of several. */
static int32_t __attribute__((noinline)) signal_of(const uint8_t *in, const int64_t *x, const uint8_t *rec)
{
    uint32_t mask = rec[0] | (uint32_t)rec[1] << 8, single = !(mask & (mask - 1u)), q = 0, big = 0;
    int32_t u = 0;
    for (; mask; mask >>= 1, x++, in += 2) {
        if (mask & 1u) {
            uint32_t sq;
            u = to_signal(*x, in[1]);
            sq = (uint32_t)(u * u);                 /* |u| <= 2^15: no overflow */
            big |= q + sq < q;                      /* the sum of squares is past 2^32: its root too */
            q += sq;
        }
    }
    return single ? u : big ? 65536 : (int32_t)isqrt32(q);
}

/* (sq_model_internal.h) */
void __attribute__((noinline)) sq_add64(int64_t *a, int64_t v)
{
    *a += v;
}

/* One sample folded into every signal's sums (its inputs' words in w->x[1 …]): its
 * value (signal_of) then,
 * first pass, its sum, square, |difference|, min and max (and the spectral
 * steps), or, second pass, its crossing of the mean. */
static int __attribute__((noinline)) fold(sq_model_work *w)
{
    const sq_model *m = w->m;
    const uint8_t *p = m->bytes + m->sig_off;
    uint32_t n = w->n;
    sq_sig_state *g = w->sig, *end = g + m->n_signals;
    if (n >= SQ_MODEL_MAX_WINDOW) {
        return SQ_ERR_RANGE;
    }
#if SQ_MODEL_KINDS & SQ_MODEL_CROSSINGS
    if (w->pass == 2 && w->n2 == n) {
        return DONE;                   /* an append landed after the first pass */
    }
#endif
    for (; g < end; p += 2, g++) {
        int32_t u = signal_of(w->rows.channels, w->x + 1, p);      /* the inputs' records: the rows' channels */
#if SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL
        g->u = u;                      /* for the phase steps below */
#endif
#if SQ_MODEL_KINDS & SQ_MODEL_CROSSINGS
        if (w->pass == 2) {
            uint32_t above = 16 * u - g->M >= 0;
            g->cross += w->n2 && above != g->above;
            g->above = above;
            continue;
        }
#endif
        if (!n) {
            g->mn = g->mx = g->prev = u;
        }
        sq_add64(&g->sum[SUM_U], 16 * u);             /* 16·u and 16·|difference|: the codes' units */
        sq_add64(&g->sum[SUM_SQ], (int64_t)square(u));
        sq_add64(&g->sum[SUM_DIFF], 16 * (u > g->prev ? u - g->prev : g->prev - u));
        g->mn = u < g->mn ? u : g->mn;
        g->mx = u > g->mx ? u : g->mx;
        g->prev = u;
    }
#if SQ_MODEL_KINDS & SQ_MODEL_CROSSINGS
    if (w->pass == 2) {
        w->n2++;
        return SQ_OK;
    }
#endif
#if SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL
    for (uint32_t s = 0; s < m->n_steps; s++) {
        sq_step_state *t = &w->step[s];
        int32_t u = w->sig[t->sig].u;
        t->re += u * cos_at(t->phase >> 24);
        t->im += u * cos_at((t->phase >> 24) + 192u);
        t->phase += t->step;
    }
#endif
    w->n = n + 1u;
    return SQ_OK;
}

/* ---- the window's samples ------------------------------------------------------------------ */

/* One source of the window's samples: a sealed block b or, b NULL, a
 * staged half, read by the query VM's rows.  Blocks that end before the
 * window are skipped; a sample at or past its end ends the walk (DONE). */
static int visit(void *ctx, const sq_ring *r, const uint8_t *b, const sq_stage_view *half)
{
    sq_model_work *w = ctx;
    const sq_block_info *info = (const sq_block_info *)r->info;
    int64_t t;
    int err;
    if (b && info->t_last < w->start) {
        return SQ_OK;
    }
    /* a column past the block's directory is not in it; r->st, the
     * iterator's directory entry memory, is free once it verified b */
    err = b && info->n_channels != r->cfg.n_channels ? SQ_ERR_MISMATCH
                                                     : sq_rows_open(&w->rows, &r->cfg, b, info, half, r->st);
    while (!err && (err = sq_rows_next(&w->rows, &t, w->x)) > 0) {
        /* t in the window iff d = t − start (mod 2^64) < window; d "negative":
         * before it, else past it (DONE).  Exact for samples within 2^63 ns
         * (292 years) of the start, i.e. any ring of real times: a sample
         * further before it (in a block reaching into the window, blocks
         * before it being skipped above) would read as past it. */
        uint64_t d = (uint64_t)t - (uint64_t)w->start;
        err = d < (uint64_t)w->m->window_ns ? fold(w) : (int64_t)d < 0 ? SQ_OK : DONE;
    }
    return err;
}

/* ---- the codes -------------------------------------------------------------------------------- */

/* How a first-pass feature's code follows from its signal's sums (MIN, MAX
 * and PTP: 0, from the extremes): sum (bits 0-1) times 16^k (k in bits 2-3:
 * how & 12 is 4k, the shift of 16^k as it stands), over n - bit 4, rooted if
 * bit 5 (bit 6: from the sums) — MEAN 16S / n, STD and RMS 256Q / n rooted
 * (STD adding M(nM - 32S)), MAD 16D / (n - 1); S and D are kept times 16. */
#define HOW(sum, scale, minus, root) ((sum) | (scale) << 2 | (minus) << 4 | (root) << 5 | 64)
/* CROSS, BAND, RATIO: 0, below; a build with neither kind loads no such op
 * (sq_model_load: SQ_ERR_UNSUPPORTED), so its table stops at MAD */
#define HOW_OPS (SQ_MODEL_KINDS & (SQ_MODEL_CROSSINGS | SQ_MODEL_SPECTRAL) ? SQ_OP_RATIO + 1u : SQ_OP_MAD + 1u)
static const uint8_t how_of[HOW_OPS] = {
    0, HOW(SUM_U, 0, 0, 0), HOW(SUM_SQ, 2, 0, 1), 0, 0, HOW(SUM_SQ, 2, 0, 1), 0, HOW(SUM_DIFF, 0, 1, 0)};

static void __attribute__((noinline)) feature_codes(const sq_model *m, sq_model_work *w)
{
    const uint8_t *p = m->bytes + m->feat_off;
    uint32_t steps = 0, n = w->n;
    int32_t *code = w->codes, *end = code + m->n_features;
    for (; code < end; code++, p += 4) {
        uint32_t op = p[0], na = p[2], nb = p[3], how = how_of[op];          /* op <= RATIO: checked by the loader */
        const sq_sig_state *g = &w->sig[p[1]];
        int64_t M = rdiv(g->sum[SUM_U], n), v = g->mx - (op == SQ_OP_PTP ? g->mn : 0);
        v = op == SQ_OP_MIN ? g->mn : v;
        if (how) {
            /* STD: Σ(16u − M)² = 256Q − 32MS + nM²; RMS: Σ(16u)² = 256Q; MEAN 16S; MAD 16D over n − 1 */
            v = (int64_t)((uint64_t)g->sum[how & 3u] * (1u << (how & 12u)));   /* the VM's multiply: no 64-bit shift */
            v += op == SQ_OP_STD ? M * ((int64_t)n * M - 2 * g->sum[SUM_U]) : 0;
            v = rdiv(v, n - ((how >> 4) & 1u));
            v = how & 32u ? (int64_t)isqrt64((uint64_t)v) : v;
        }
#if SQ_MODEL_KINDS & SQ_MODEL_CROSSINGS
        if (op == SQ_OP_CROSS) {
            v = rdiv(4096 * (int64_t)g->cross, n - 1u);
        }
#endif
        /* |u| <= 2^16 and n <= 2^19: every code above is within 2^22, never clamped */
#if SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL
        if (op >= SQ_OP_BAND) {
            int64_t ea = energy(w, steps, na, M), eb = op == SQ_OP_BAND ? 1 : energy(w, steps + na, nb, M);
            v = op == SQ_OP_BAND ? (int64_t)isqrt64((uint64_t)ea) : eb ? rdiv(256 * ea, (uint64_t)eb) : CODE_MAX;
            v = v > CODE_MAX ? CODE_MAX : v;     /* both are >= 0 */
        }
#endif
        *code = (int32_t)v;
        steps += na + nb;
    }
}

/* Every sample of the ring in [w->start, w->start + window), through the query VM's walk. */
static int walk_window(const sq_ring *r, sq_model_work *w)
{
    int err = sq_ring_walk(r, visit, w);
    return err == DONE ? SQ_OK : err;
}

/* Reset the sums; spectral steps take their phase steps and signals. */
static void reset_window(const sq_model *m, sq_model_work *w)
{
#if SQ_MODEL_KINDS & SQ_MODEL_SPECTRAL
    const uint8_t *p = m->bytes + m->feat_off;
    uint32_t f, j, k = 0;
    for (f = 0; f < m->n_features; f++, p += 4) {
        for (j = 0; j < (uint32_t)p[2] + p[3]; j++, k++) {
            w->step[k].re = w->step[k].im = 0;
            w->step[k].phase = 0;
            w->step[k].step = sq_le32(m->bytes + m->steps_off + 4u * k, 4);
            w->step[k].sig = p[1];
        }
    }
#endif
    memset(w->sig, 0, m->n_signals * sizeof(sq_sig_state));
    w->n = 0;
#if SQ_MODEL_KINDS & SQ_MODEL_CROSSINGS
    w->n2 = 0;                         /* the second pass's, read only with crossings */
    w->pass = 1;
#endif
}

#if SQ_MODEL_KINDS & SQ_MODEL_CROSSINGS
/* Between the passes: each signal's mean, for its crossings. */
static void __attribute__((noinline)) means(const sq_model *m, sq_model_work *w)
{
    uint32_t s;
    for (s = 0; s < m->n_signals; s++) {
        w->sig[s].M = (int32_t)rdiv(w->sig[s].sum[SUM_U], w->n);
    }
    w->pass = 2;
}
#endif

/* The window [w->start, w->start + window) scored in the carved work w. */
static int __attribute__((noinline)) window(const sq_model *m, const sq_ring *r, sq_model_work *w, sq_model_out *out)
{
    int64_t start_ns = w->start;
    int err;
    out->start = start_ns;            /* the rest of *out zeroed by check_args */
    out->codes = w->codes;
    out->raw = w->raw;
    if (m->schema != r->cfg.schema) {
        return SQ_ERR_MISMATCH;               /* the image was bound to another ring */
    }
    w->m = m;
    w->rows.channels = m->bytes + SQ_IMAGE_HEADER;
    w->rows.n = m->n_inputs;
    w->rows.stride = 2;
    w->rows.cursor_step = 1;
    w->rows.times = 1;
    reset_window(m, w);
    err = walk_window(r, w);
    out->n_samples = w->n;
    if (err || w->n < m->min_samples) {
        return err;
    }
#if SQ_MODEL_KINDS & SQ_MODEL_CROSSINGS
    if (m->passes == 2) {
        means(m, w);
        err = walk_window(r, w);
        if (err) {
            return err;
        }
    }
#endif
    feature_codes(m, w);
    return sq_model_eval(m, w, out);
}

/* *out zeroed, the arguments a window needs checked and the work carved
 * (SQ_ERR_ARG: NULL, or too little work). */
static inline __attribute__((always_inline)) int check_args(const sq_model *m, const sq_ring *r, void *work, size_t work_len,
                                                            sq_model_out *out, sq_model_work **w)
{
    if (!out) {
        return SQ_ERR_ARG;
    }
    memset(out, 0, sizeof *out);
    return !m || !m->bytes || !r || !r->stage || !work || sq_model_layout(m, work, w, SQ_WORK_ARRAYS) > work_len
               ? SQ_ERR_ARG
               : SQ_OK;
}

int sq_model_window(const sq_model *m, const sq_ring *r, int64_t start_ns, void *work, size_t work_len,
                    sq_model_out *out)
{
    sq_model_work *w;
    int err = check_args(m, r, work, work_len, out, &w);
    if (err) {
        return err;
    }
    w->start = start_ns;
    return window(m, r, w, out);
}

/* The start of the ring's newest whole window:
 * floor((newest + 1 − window) / hop) · hop, wrapping (no UB) for times
 * within 2^62 of INT64_MIN only; floor(x / h) = ~(~x / h) for x < 0.  The
 * newest sample is the staging's last appended time (kept by every append,
 * carried over sealing and resume) or, with none since the mount, the
 * newest block's.  has_last first (once set it stays until the next mount),
 * then the time read twice, as an append may land between its halves.  An
 * empty ring gives some start (sq_model_score: a window of no sample;
 * sq_model_newest tells it apart). */
static int64_t newest_start(const sq_model *m, const sq_ring *r)
{
    const volatile sq_stage *s = r->stage;
    uint32_t staged = s->has_last;
    uint64_t x, q, neg;
    do {
        x = (uint64_t)s->last_t;
    } while (x != (uint64_t)s->last_t);
    x = staged ? x : (uint64_t)r->newest_t;
    x = x - (uint64_t)m->window_ns + 1u;
    neg = (uint64_t)0 - (x >> 63);
    q = sq_udiv64(x ^ neg, (uint64_t)m->hop_ns, NULL) ^ neg;   /* the VM's division */
    return (int64_t)(q * (uint64_t)m->hop_ns);
}

int sq_model_newest(const sq_model *m, const sq_ring *r, int64_t *start)
{
    if (!m || !m->bytes || !r || !r->stage || !start) {
        return SQ_ERR_ARG;
    }
    *start = r->stage->has_last || r->has_blocks ? newest_start(m, r) : INT64_MIN;     /* INT64_MIN: no sample */
    return SQ_OK;
}

int sq_model_score(const sq_model *m, const sq_ring *r, void *work, size_t work_len, sq_model_out *out)
{
    sq_model_work *w;
    int err = check_args(m, r, work, work_len, out, &w);
    if (err) {
        return err;
    }
    w->start = newest_start(m, r);      /* an empty ring: a window of no sample, unscored */
    return window(m, r, w, out);
}
