/* The query VM (↔ sensorq/engine): validates bytecode compiled on the host
 * (sensorq/device/bytecode.py; format in docs/device.md), then answers it
 * block by block: from the block statistics where they decide (skip, or
 * answer the whole block), else by decoding one sample at a time through
 * the row reader it shares with the model features (sq_rows_open /
 * sq_rows_next, at the end). */
#include <string.h>

#include "sq_internal.h"

#define HDR 32u            /* bytecode header bytes, version 2 */
#define HDR3 48u           /* version 3: + gap, + minimum episode duration */
#define OP_TRUE 0x01u
#define OP_FALSE 0x02u
#define OP_NOT 0x03u
#define OP_AND 0x04u
#define OP_OR 0x05u
#define OP_CMP 0x10u       /* 0x10 + comparison (0..5), u8 channel, i64 threshold */
#define CMP_SIZE 10u
#define NO_CHANNEL 0xFFu
#define FLAG_START 1u
#define FLAG_END 2u

/* Whether aggregate agg is DURATION or EPISODES: never in a build without
 * them (load refuses bytecode version 3), which lets the compiler drop
 * their branches. */
#ifdef SQ_NO_TIMED
#define IS_TIMED(agg) ((void)(agg), 0)
#else
#define IS_TIMED(agg) ((agg) >= SQ_AGG_DURATION)
#endif

/* The VM's whole state: sq_query_state, declared in sensorq.h so that a
 * caller keeps it out of the stack (sq_query_run). */
typedef sq_query_state sq_vm;

static void close_run(sq_vm *v, int64_t end);

/* ---- validation --------------------------------------------------------------- */

static int __attribute__((noinline)) slot_of(sq_vm *v, uint8_t channel)
{
    unsigned s;
    for (s = 0; s < v->n_slots; s++) {
        if (v->slot_channel[s] == channel) {
            return (int)s;
        }
    }
    if (v->n_slots == SQ_VM_MAX_COLUMNS) {
        return -1;
    }
    v->slot_channel[v->n_slots] = channel;
    return v->n_slots++;
}

/* Opcodes TRUE … OR: the stack depth an opcode needs (high nibble) and its
 * change plus one (low nibble); a comparison is as TRUE. */
static const uint8_t op_rule[OP_OR + 1u] = {0, 0x02, 0x02, 0x11, 0x20, 0x20};

/* Walk the predicate program: opcodes, operands, stack depth, channels. */
static int check_program(sq_vm *v)
{
    uint32_t pc = 0, depth = 0;
    const uint8_t *prog = v->prog;
    while (pc < v->prog_len) {
        uint8_t op = prog[pc], rule;
        if (op >= OP_CMP) {
            if (op > OP_CMP + 5u || v->prog_len - pc < CMP_SIZE || prog[pc + 1] >= v->n_channels) {
                return SQ_ERR_BYTECODE;
            }
            if (slot_of(v, prog[pc + 1]) < 0) {
                return SQ_ERR_UNSUPPORTED;
            }
            pc += CMP_SIZE - 1u;
            op = OP_TRUE;
        }
        rule = op <= OP_OR ? op_rule[op] : 0;
        if (!rule || depth < rule >> 4u) {
            return SQ_ERR_BYTECODE;
        }
        depth += (rule & 15u) - 1u;
        pc++;
        if (depth > SQ_VM_STACK) {
            return SQ_ERR_BYTECODE;
        }
    }
    return depth == 1u ? SQ_OK : SQ_ERR_BYTECODE;
}

/* now + the offset stored (8 bytes) at p, clamped to the int64 range (an
 * overflow is a sum whose sign differs from both operands'). */
static int64_t __attribute__((noinline)) add_clamped(int64_t now, const uint8_t *p)
{
    int64_t offset = (int64_t)sq_get_le(p, 8);
    uint64_t sum = (uint64_t)now + (uint64_t)offset;
    if ((((uint64_t)now ^ sum) & ((uint64_t)offset ^ sum)) >> 63) {
        return offset < 0 ? INT64_MIN : INT64_MAX;
    }
    return (int64_t)sum;
}

static int load(sq_vm *v, const uint8_t *code, size_t len, int64_t now)
{
    uint32_t hdr, ver;
    uint8_t ch;
    int none;
    int64_t gap = 0, min_dur = 0;      /* version 3 */
    if (!code || len < HDR + 5u || sq_le32(code, 4) != 0x31515153u) {    /* "SQQ1" */
        return SQ_ERR_BYTECODE;
    }
    ver = code[4];
    if (ver - 2u > 1u) {
        return SQ_ERR_VERSION;
    }
#ifdef SQ_NO_TIMED
    if (ver == 3u) {
        return SQ_ERR_UNSUPPORTED;          /* duration and episodes left out of this build */
    }
#endif
    hdr = ver == 3u ? HDR3 : HDR;
    if (len < hdr + 5u || sq_le32(code + 10, 2) != len) {
        return SQ_ERR_BYTECODE;
    }
    if (sq_crc32(0, code, len - 4u) != sq_le32(code + len - 4u, 4)) {
        return SQ_ERR_CRC;
    }
    v->agg = code[5];
    ch = code[6];
    v->flags = code[7];
    v->n_channels = sq_le32(code + 8, 2);
    v->schema = sq_le32(code + 28, 4);
    v->prog = code + hdr;
    v->prog_len = (uint32_t)len - hdr - 4u;
    if (ver == 3u) {
        gap = (int64_t)sq_get_le(code + 32, 8);
        min_dur = (int64_t)sq_get_le(code + 40, 8);
    }
    v->gap = gap;
    v->min_dur = min_dur;
    v->held = v->open = 0;
    v->n_slots = 0;
    v->agg_slot = NO_CHANNEL;
    v->start = add_clamped(now, code + 12);
    v->end = add_clamped(now, code + 20);
    /* COUNT, DURATION and EPISODES aggregate no channel, the others one */
    none = v->agg == SQ_AGG_COUNT || IS_TIMED(v->agg);
    if (v->agg > ver * 2u + 2u || (v->flags & ~(FLAG_START | FLAG_END)) || v->n_channels - 1u > 254u ||
        (gap | min_dur) < 0 || (none ? ch != NO_CHANNEL : ch >= v->n_channels)) {
        return SQ_ERR_BYTECODE;
    }
    if (!none) {
        v->agg_slot = (uint8_t)slot_of(v, ch);
    }
    return check_program(v);
}

int sq_query_check(sq_query_state *state, const uint8_t *code, size_t code_len)
{
    return state ? load(state, code, code_len, 0) : SQ_ERR_ARG;
}

/* ---- predicate evaluation --------------------------------------------------------- */

/* NOT of a predicate's two bits (below): it can pass where the operand can
 * fail, and always passes where the operand never does. */
static uint32_t negate(uint32_t t)
{
    return (((t >> 1) | (t << 1)) & 3u) ^ 3u;
}

/* -1, 0 or 1 as a <, = or > c: the 64-bit comparison of eval and
 * accumulate, out of line (each inline one is a dozen Cortex-M0+
 * instructions). */
static __attribute__((noinline)) int order_of(int64_t a, int64_t c)
{
    return (a > c) - (a < c);
}

/* Evaluate the predicate where channel slot s lies in [lo[s], hi[s]].  Each
 * operand is two bits on one stack word: bit 0 "some x may pass", bit 1
 * "every x passes" — AND and OR are then the bitwise AND and OR of two
 * operands, NOT is negate().  The result's bit 0: some sample may pass; bit
 * 1: some sample may fail.  With lo == hi (one sample) bit 0 is exact. */
static unsigned eval(const sq_vm *v, const int64_t *lo, const int64_t *hi)
{
    uint32_t st = 0, pc = 0, top;
    while (pc < v->prog_len) {
        uint8_t op = v->prog[pc++];
        if (op >= OP_CMP) {
            /* <, <= and == are tested; >, >= and != are their negations:
             * x < c is order ≤ -1, x <= c order ≤ 0 */
            unsigned s = 0, k = op - OP_CMP;
            int64_t c = (int64_t)sq_get_le(v->prog + pc + 1, 8);
            int a, b, at_most = (int)((0x06u >> k) & 1u) - 1;     /* 0 for <= and > */
            while (v->slot_channel[s] != v->prog[pc]) {
                s++;
            }
            a = order_of(lo[s], c);
            b = order_of(hi[s], c);
            if (k >= 4u) {
                top = (a <= 0 && b >= 0) | (uint32_t)(a == 0 && b == 0) << 1;
            } else {
                top = (a <= at_most) | (uint32_t)(b <= at_most) << 1;
            }
            st = (st << 2) | ((0x2Cu >> k) & 1u ? negate(top) : top);    /* >, >=, != */
            pc += CMP_SIZE - 1u;
        } else if (op == OP_TRUE || op == OP_FALSE) {
            st = (st << 2) | (op == OP_TRUE ? 3u : 0u);
        } else if (op == OP_NOT) {
            st = (st & ~3u) | negate(st & 3u);
        } else {
            top = st & 3u;
            st >>= 2;
            st = op == OP_AND ? st & (top | ~3u) : st | top;
        }
    }
    return (st & 1u) | (~st & 2u);
}

/* ---- accumulation ------------------------------------------------------------------- */

/* Add n samples whose aggregated values sum to `sum` and whose min, max,
 * first or last (the one the aggregate keeps: pick_of) is x.  acc is read
 * only for MIN, MAX, FIRST and LAST, so the other aggregates may set it. */
static void __attribute__((noinline)) accumulate(sq_vm *v, uint32_t n, int64_t sum, int64_t x)
{
    uint64_t low = v->sum_low + (uint64_t)sum;
    int o;
    v->sum_high += (low < v->sum_low) - (sum < 0);
    v->sum_low = low;
    o = order_of(x, v->acc);
    if (!v->out->count || v->agg == SQ_AGG_LAST || (v->agg == SQ_AGG_MIN && o < 0) ||
        (v->agg == SQ_AGG_MAX && o > 0)) {
        v->acc = x;
    }
    v->out->count += n;
}

/* Sum / count rounded half away from zero, with an unsigned division
 * (0 < count < 2^63; the model features' division too). */
int64_t sq_round_div(int64_t sum, uint64_t count)
{
    uint64_t magnitude = sum < 0 ? 0u - (uint64_t)sum : (uint64_t)sum;
    uint64_t rest, q = sq_udiv64(magnitude, count, &rest);
    q += 2u * rest >= count;
    return (int64_t)(sum < 0 ? 0u - q : q);
}

static int finish(sq_vm *v)
{
    sq_result *out = v->out;
    uint64_t n = out->count;
    int64_t value = v->acc;                   /* MIN, MAX, FIRST, LAST */
    uint8_t agg = v->agg;
    if (IS_TIMED(agg) && v->open) {
        close_run(v, v->last_t);              /* the data ends the episode */
    }
    if (agg == SQ_AGG_COUNT) {
        value = (int64_t)n;
    } else if (agg == SQ_AGG_SUM || agg == SQ_AGG_MEAN || IS_TIMED(agg)) {
        if (v->sum_high != ((v->sum_low >> 63) ? -1 : 0)) {
            return SQ_ERR_OVERFLOW;           /* the 128-bit sum does not fit in int64 */
        }
        value = agg == SQ_AGG_MEAN && n ? sq_round_div((int64_t)v->sum_low, n) : (int64_t)v->sum_low;
    }
    /* the sum of nothing is no value, as the host engine's */
    out->has_value = n > 0 || agg == SQ_AGG_COUNT || IS_TIMED(agg);
    out->value = out->has_value ? value : 0;
    return SQ_OK;
}

/* ---- duration and episodes ------------------------------------------------------------ */
#ifndef SQ_NO_TIMED

/* The sample at t follows the held one: it held until t, at most gap, never
 * past the window's end. */
static void release(sq_vm *v, int64_t t)
{
    uint64_t hold = (uint64_t)t - (uint64_t)v->held_t, cap;
    if (v->held) {
        cap = (uint64_t)v->end - (uint64_t)v->held_t;
        hold = (v->flags & FLAG_END) && cap < hold ? cap : hold;
        hold = v->gap > 0 && (uint64_t)v->gap < hold ? (uint64_t)v->gap : hold;
        v->held = 0;
        accumulate(v, 0, (int64_t)hold, 0);
    }
}

/* The open episode ends at `end`: counted if it lasted at least min_dur. */
static void close_run(sq_vm *v, int64_t end)
{
    uint64_t d = (uint64_t)end - (uint64_t)v->run_t;
    if (v->open && d >= (uint64_t)v->min_dur) {
        accumulate(v, 1, (int64_t)d, 0);
    }
    v->open = 0;
}

/* One sample at t (in the window or not; matching or not) for DURATION / EPISODES. */
static void timed(sq_vm *v, int64_t t, int in_window, int match)
{
    if (v->agg == SQ_AGG_DURATION) {
        release(v, t);
        if (in_window && match) {
            v->held = 1;
            v->held_t = t;
            v->out->count++;
        }
        return;
    }
    if (!in_window) {
        return;
    }
    if (v->open && v->gap > 0 && (uint64_t)t - (uint64_t)v->last_t > (uint64_t)v->gap) {
        close_run(v, v->last_t);          /* a hole in the data ends the episode */
    }
    if (!match) {
        close_run(v, t);
    } else if (!v->open) {
        v->open = 1;
        v->run_t = t;
    }
    v->last_t = t;
}
#else
static void release(sq_vm *v, int64_t t)
{
    (void)v;
    (void)t;
}

static void close_run(sq_vm *v, int64_t end)
{
    (void)v;
    (void)end;
}

static void timed(sq_vm *v, int64_t t, int in_window, int match)
{
    (void)v;
    (void)t;
    (void)in_window;
    (void)match;
}
#endif

/* ---- scanning ------------------------------------------------------------------------ */

/* Where t lies against the window: FLAG_START set if it is before the
 * window's start, FLAG_END if at or after its end (each only when the
 * window has that bound); 0 inside. */
static __attribute__((noinline)) unsigned outside(const sq_vm *v, int64_t t)
{
    return ((v->flags & FLAG_START) && t < v->start) | (((v->flags & FLAG_END) && t >= v->end) << 1);
}

/* Test and accumulate the rows of v->rows one by one: a row without its
 * time (every row known to lie in the window) is at the block's t_first,
 * inside the window too. */
static int scan(sq_vm *v)
{
    int64_t *x = v->x + 1, t;         /* x[-1]: the time word */
    int err;
    while ((err = sq_rows_next(&v->rows, &t, v->x)) > 0) {
        int in_window = !outside(v, t);
        v->out->samples_scanned++;
        if (IS_TIMED(v->agg)) {
            timed(v, t, in_window, (int)(eval(v, x, x) & 1u));
        } else if (in_window && (eval(v, x, x) & 1u)) {
            int64_t a = v->agg_slot == NO_CHANNEL ? 0 : x[v->agg_slot];
            accumulate(v, 1, a, a);
        }
    }
    return err;
}

/* Open the rows of block b (verified, its header in v->info) or, b NULL,
 * of a staged half, and scan them. */
static int decode(sq_vm *v, const sq_stream_cfg *cfg, const uint8_t *b, const sq_stage_view *half)
{
    int err = sq_rows_open(&v->rows, cfg, b, &v->info, half, &v->st);
    return err != SQ_OK ? err : scan(v);
}

/* Where in a directory entry the statistic the aggregate keeps is (MIN,
 * MAX, FIRST, LAST; the others keep none, acc being unused). */
static const uint8_t pick_of[SQ_AGG_EPISODES + 1u] = {
    offsetof(sq_chan_stats, min), offsetof(sq_chan_stats, min), offsetof(sq_chan_stats, min),
    offsetof(sq_chan_stats, max), offsetof(sq_chan_stats, min), offsetof(sq_chan_stats, first),
    offsetof(sq_chan_stats, last), offsetof(sq_chan_stats, min), offsetof(sq_chan_stats, min)};

/* The statistics of every channel the query reads, into the VM's state
 * (its entry may be a version-2 one: read, not indexed; a decoded block's
 * readers find their sections again, sq_rows_open). */
static int __attribute__((noinline)) load_block(sq_vm *v, const uint8_t *b, const sq_block_info *info)
{
    unsigned s;
    for (s = 0; s < v->n_slots; s++) {
        sq_chan_stats *st = &v->st;
        uint32_t off;
        int err = sq_block_column(b, info, v->slot_channel[s], st, &off);
        if (err) {
            return err;
        }
        if (st->dtype >= SQ_FLOAT32) {
            return SQ_ERR_UNSUPPORTED;
        }
        v->lo[s] = st->min;
        v->hi[s] = st->max;
        if (s == v->agg_slot) {
            v->agg_sum = st->sum;
            v->agg_pick = *(const int64_t *)(const void *)((const uint8_t *)st + pick_of[v->agg]);
            v->agg_flags = (uint8_t)st->flags;
        }
    }
    return SQ_OK;
}

/* Decide a block from its statistics: 0 skipped, 1 answered, 2 must be decoded. */
static int decide(sq_vm *v, const sq_block_info *info, int in_window)
{
    unsigned verdict = eval(v, v->lo, v->hi);
    if (IS_TIMED(v->agg)) {
        if ((verdict & 1u) || !in_window) {
            return 2;                 /* times matter: decoded */
        }
        timed(v, info->t_first, 1, 0);   /* no sample matches: its first ends a hold or a run */
        v->last_t = info->t_last;
        return 0;
    }
    if (!(verdict & 1u)) {
        return 0;
    }
    if ((verdict & 2u) || !in_window) {
        return 2;
    }
    if (v->agg_slot == NO_CHANNEL) {
        accumulate(v, info->n_samples, 0, 0);
        return 1;
    }
    if ((v->agg_flags & SQ_SUM_INEXACT) && (v->agg == SQ_AGG_SUM || v->agg == SQ_AGG_MEAN)) {
        return 2;
    }
    accumulate(v, info->n_samples, v->agg_sum, v->agg_pick);
    return 1;
}

typedef char sq_block_counters_adjacent[offsetof(sq_result, blocks_decoded) -
                                        offsetof(sq_result, blocks_skipped) == 16u ? 1 : -1];

/* A block already verified, its header in v->info. */
static int run_verified(sq_vm *v, const uint8_t *b)
{
    const sq_block_info *info = &v->info;
    unsigned at_first, at_last;
    int err = info->n_channels != v->n_channels ? SQ_ERR_MISMATCH : load_block(v, b, info), whole, verdict;
    if (err != SQ_OK) {
        return err;
    }
    at_first = outside(v, info->t_first);
    at_last = outside(v, info->t_last);
    whole = !(at_first | at_last);        /* t_first ≤ t_last */
    if ((at_last & FLAG_START) || (at_first & FLAG_END)) {
        verdict = 0;                      /* the whole block is outside the window */
        if (IS_TIMED(v->agg) && v->agg == SQ_AGG_DURATION) {
            release(v, info->t_first);    /* the next sample after the window's last */
        }
    } else {
        verdict = decide(v, info, whole);
    }
    /* blocks_skipped, _answered, _decoded: adjacent, in the verdict's order */
    ++*(uint64_t *)(void *)((uint8_t *)v->out + offsetof(sq_result, blocks_skipped) + 8u * (unsigned)verdict);
    if (verdict < 2) {
        return SQ_OK;
    }
    v->rows.times = !whole || IS_TIMED(v->agg);     /* times only where they matter */
    return decode(v, NULL, b, NULL);
}

static int run_block(sq_vm *v, const uint8_t *b, size_t len)
{
    int err = sq_block_check(b, len, &v->info, &v->st);
    return err != SQ_OK ? err : run_verified(v, b);
}

static int start(sq_vm *v, const uint8_t *code, size_t len, int64_t now, sq_result *out)
{
    int err;
    if (!out) {
        return SQ_ERR_ARG;
    }
    memset(out, 0, sizeof *out);
    err = load(v, code, len, now);
    out->aggregate = v->agg;
    v->out = out;
    v->rows.col = v->cols;
    v->rows.cursor = &v->cursor;
    v->rows.channels = v->slot_channel;
    v->rows.n = v->n_slots;
    v->rows.stride = 1;
    v->rows.cursor_step = 0;
    v->sum_low = 0;
    v->sum_high = 0;
    v->acc = 0;
    return err;
}

int sq_query_run_blocks(sq_query_state *state, const uint8_t *code, size_t code_len,
                        uint32_t schema, const uint8_t *const *blocks, const size_t *lens,
                        size_t n_blocks, int64_t now_ns, sq_result *out)
{
    size_t i;
    int err = state ? start(state, code, code_len, now_ns, out) : SQ_ERR_ARG;
    if (err == SQ_OK && n_blocks && (!blocks || !lens)) {
        err = SQ_ERR_ARG;
    }
    if (err == SQ_OK && state->schema != schema) {
        err = SQ_ERR_MISMATCH;
    }
    for (i = 0; i < n_blocks && err == SQ_OK; i++) {
        err = run_block(state, blocks[i], lens[i]);
    }
    return err != SQ_OK ? err : finish(state);
}

/* One source of a query's samples (an sq_ring_walk visitor). */
static int visit_vm(void *state, const sq_ring *r, const uint8_t *b, const sq_stage_view *half)
{
    sq_vm *v = state;
    if (!b) {
        v->rows.times = 1;
        return decode(v, &r->cfg, NULL, half);
    }
    v->info = *(const sq_block_info *)r->info;    /* the iterator verified it */
    return run_verified(v, b);
}

/* ---- rows: the VM's and the model features' one sample reader ---------------------- */

int sq_rows_open(sq_rows *rows, const sq_stream_cfg *cfg, const uint8_t *b, const sq_block_info *info,
                 const sq_stage_view *half, sq_chan_stats *st)
{
    unsigned c;
    int err = SQ_OK;
    rows->left = b ? info->n_samples : half->count;
    rows->t0 = b ? info->t_first : 0;
    rows->tick = b ? info->tick : 1;       /* staged: the words are the times */
    for (c = !rows->times; c <= rows->n && err == SQ_OK; c++) {
        int column = c ? rows->channels[(c - 1u) * rows->stride] : -1;
        sq_col *col = &rows->col[c];
        uint32_t off;
        if (!b) {
            sq_col_open_raw(col, sq_half_column(cfg, half->data, column),
                            column < 0 ? 8u : sq_dtype_bytes(cfg->dtype[column]));   /* the ring's: integers */
            continue;
        }
        err = sq_block_column(b, info, column, st, &off);
        if (err == SQ_OK) {
            err = st->dtype >= SQ_FLOAT32 ? SQ_ERR_UNSUPPORTED
                                          : sq_col_open(col, b + off, b + off + st->data_len, info->n_samples, st->codec,
                                                        sq_dtype_bytes(st->dtype), rows->cursor + c * rows->cursor_step);
        }
    }
    return err;
}

int sq_rows_next(sq_rows *rows, int64_t *t, int64_t *x)
{
    unsigned c;
    if (!rows->left) {
        return 0;
    }
    rows->left--;
    x[0] = 0;
    for (c = !rows->times; c <= rows->n; c++) {
        int err = sq_col_next(&rows->col[c], (uint64_t *)&x[c]);
        if (err) {
            return err;
        }
    }
    *t = (int64_t)((uint64_t)rows->t0 + (uint64_t)x[0] * (uint64_t)rows->tick);
    return 1;
}

/* The staged samples, as of now: an append that lands later is not seen.
 * Out of line: the snapshot is not on the stack while blocks are read. */
static int __attribute__((noinline)) walk_staged(const sq_ring *r, sq_ring_visit visit, void *ctx)
{
    sq_stage_view view[2];
    int n = sq_ring_stage_view(r, view), i, err = SQ_OK;
    for (i = 0; i < n && err == SQ_OK; i++) {
        err = visit(ctx, r, NULL, &view[i]);
    }
    return err;
}

int sq_ring_walk(const sq_ring *r, sq_ring_visit visit, void *ctx)
{
    sq_ring_iter it;
    const uint8_t *b;
    size_t len;
    int err;
    sq_ring_iter_begin(r, &it);
    while ((err = sq_ring_next(r, &it, &b, &len)) == SQ_OK && b && (err = visit(ctx, r, b, NULL)) == SQ_OK) {
    }
    return err == SQ_OK ? walk_staged(r, visit, ctx) : err;
}

int sq_query_run(sq_query_state *state, const uint8_t *code, size_t code_len, const sq_ring *r,
                 int64_t now_ns, sq_result *out)
{
    sq_vm *v = state;
    int err = state ? start(v, code, code_len, now_ns, out) : SQ_ERR_ARG;
    if (err == SQ_OK && (!r || !r->stage)) {
        err = SQ_ERR_ARG;
    }
    if (err == SQ_OK && (v->n_channels != r->cfg.n_channels || v->schema != r->cfg.schema)) {
        err = SQ_ERR_MISMATCH;
    }
    if (err == SQ_OK) {
        err = sq_ring_walk(r, visit_vm, v);
    }
    return err != SQ_OK ? err : finish(v);
}
