/* Internal helpers shared by the sensorq device port's source files. */
#ifndef SQ_INTERNAL_H
#define SQ_INTERNAL_H

#include "sensorq.h"

#define SQ_MINI 32u                    /* residuals per mini-block */
#define SQ_CODEC_ORDER 0x03u
#define SQ_CODEC_DICT 0x04u
#define SQ_CODEC_DECIMAL 0x08u
#define SQ_CODEC_FLOATBITS 0x10u
#define SQ_CODEC_CLOCK 0x10u          /* the time column's bit 4 (version 1): a clock line first */
#define SQ_CLOCK_MAX_DENOMINATOR 65536u
#define SQ_CODEC_ZERO 0x20u
#define SQ_CODEC_SHORT 0x40u           /* version 2: base and dictionary size as varints */
#define SQ_CODEC_SPLIT 0xC0u           /* version 1, bits 6 and 7 both: Rice mini-blocks split (low bits, then quotients) */
#define SQ_RICE 0x80u
#define SQ_FRAMED 0x41u                /* version 1: header 0x41 + w, a frame then w-bit values */
#define SQ_FRAME_LENGTH_BITS 6u
#define SQ_CODEC_FRAMES 0x03u          /* version 1: predictor field 3, order 0 with one frame length */
#define SQ_OWN_FRAME_LENGTHS 0xFFu     /* sq_payload.frame_len of a payload that is not FRAMES */

/* Little-endian load / store of nbytes (1..8) packed bytes; no alignment
 * assumed.  Out of line on purpose: they are called from many places, and
 * flash is the scarcer resource. */
uint64_t sq_get_le(const uint8_t *p, unsigned nbytes);
void sq_put_le(uint8_t *p, uint64_t v, unsigned nbytes);

/* nbytes (1..4) little-endian bytes as an unsigned / a sign-extended 32-bit value. */
uint32_t sq_le32(const uint8_t *p, unsigned nbytes);
int32_t sq_sx32(const uint8_t *p, unsigned nbytes);

/* Sign-extend the low 8*nbytes bits of v. */
int64_t sq_sign_extend(uint64_t v, unsigned nbytes);

/* Value i of a packed column of width-byte little-endian integers,
 * sign-extended (as a word: two's complement in 64 bits). */
uint64_t sq_get_int(const uint8_t *column, uint32_t i, unsigned width);

/* Bytes of an integer storage type, 0 for any other code.  Out of line:
 * called from every part, and smaller as one call than inlined. */
unsigned sq_dtype_bytes(uint8_t dtype);

/* ---- reading blocks (sq_block.c) ----------------------------------------------
 * sq_payload, sq_dict_cursor and sq_col are declared in sensorq.h (private part). */

/* Validate a column section sec[0..end) of n words with codec byte codec and
 * open a reader on it (values of width bytes).  SQ_ERR_CORRUPT if any byte of
 * it is out of place. */
int sq_col_open(sq_col *c, const uint8_t *sec, const uint8_t *end, uint32_t n, uint8_t codec,
                unsigned width, sq_dict_cursor *cursor);

/* Reader over raw staged integers of width bytes (sign-extended). */
void sq_col_open_raw(sq_col *c, const uint8_t *data, unsigned width);

/* The next word (SQ_OK) or SQ_ERR_CORRUPT (a dictionary rank out of range, a
 * value outside the column's width). */
int sq_col_next(sq_col *c, uint64_t *word);

/* sq_block_verify with caller memory for the directory entries it walks
 * (no sq_chan_stats on the stack). */
int sq_block_check(const uint8_t *b, size_t len, sq_block_info *info, sq_chan_stats *st);

/* Column `column` (-1: time) of a verified block: its directory entry (for
 * the time column only codec, data_len and dtype SQ_INT64) and its section's offset.  A
 * version-2 entry is made absolute but for sumsq, left S2 (no query reads
 * it; sq_block_channel completes it). */
int sq_block_column(const uint8_t *b, const sq_block_info *info, int column, sq_chan_stats *st,
                    uint32_t *off);

/* Bytes of header a reader needs to learn a block's length (sq_block_len). */
#define SQ_BLOCK_PEEK 16u

/* The length a block's header claims (0 if the bytes are not a block
 * header); avail ≥ SQ_BLOCK_PEEK bytes at p, or all there are. */
uint32_t sq_block_len(const uint8_t *p, uint32_t avail);

/* ---- writing blocks (sq_enc.c) ------------------------------------------------- */

/* One column's plan: the base, the codec byte and the section's size. */
typedef struct {
    uint64_t base;
    uint32_t size;
    uint8_t codec;
} sq_enc_plan;

/* The encoder's working memory (in the ring's work memory, not the stack):
 * a mini-block's residuals, the columns' plans, and scratch of 8 bytes a
 * sample (the time words, then one channel's dictionary at a time). */
typedef struct {
    uint64_t u[32];
    sq_enc_plan plan[SQ_MAX_CHANNELS + 1u];
    uint64_t *scratch;
} sq_enc_work;

/* The largest block a stream's block_samples samples can make. */
uint32_t sq_worst_block(const sq_stream_cfg *cfg);

/* Encode the n staged samples of a half (column-major, columns
 * cfg->block_samples long) as block `seq`, format version 2 with the
 * stream's codec, into out (sq_worst_block bytes).  Returns the block's
 * length and fills *info (seq, times, length, counts). */
uint32_t sq_enc_block(const sq_stream_cfg *cfg, const uint8_t *data, uint32_t n, uint64_t seq,
                      uint8_t *out, sq_enc_work *e, sq_block_info *info);

/* ---- the ring's parts (sq_ring.c, sq_log.c) --------------------------------------- */

/* Staged samples a query may read: a closed half waiting for its seal, then
 * the half being filled, each (data, count) as of the call. */
typedef struct {
    const uint8_t *data;
    uint32_t count;
} sq_stage_view;

/* Column c (-1: the times) of a staged half: column-major, the times (8
 * bytes each) then each channel's column, every column block_samples long. */
const uint8_t *sq_half_column(const sq_stream_cfg *cfg, const uint8_t *data, int c);

/* Fills view[0..n) oldest first and returns n (0, 1 or 2). */
int sq_ring_stage_view(const sq_ring *r, sq_stage_view view[2]);

/* A ring's samples, oldest first (sq_vm.c; the query VM's and the model
 * features' one walk): visit(ctx, r, block, NULL) for every sealed block,
 * verified by the iterator (its header in r->info), then visit(ctx, r,
 * NULL, half) for each staged half as of the call.  Stops at the first
 * nonzero return (an error, or a visitor's own "done"), which it returns. */
typedef int (*sq_ring_visit)(void *ctx, const sq_ring *r, const uint8_t *block, const sq_stage_view *half);
int sq_ring_walk(const sq_ring *r, sq_ring_visit visit, void *ctx);

/* Open rows->col on sealed block b (verified, its header in info) or, b
 * NULL, on a staged half of a ring of configuration cfg: the times (if
 * rows->times) and the rows->n channels rows->channels names (set by the
 * caller, with the readers and cursors).  st: memory for a directory entry.
 * SQ_ERR_UNSUPPORTED: a float channel; SQ_ERR_CORRUPT: a section that does
 * not decode. */
int sq_rows_open(sq_rows *rows, const sq_stream_cfg *cfg, const uint8_t *b, const sq_block_info *info,
                 const sq_stage_view *half, sq_chan_stats *st);

/* The next row: 1 with its time in *t (t0 without times), its time word in
 * x[0] (0 without times) and its n channel words in x[1 … n], 0 when none is
 * left, or an error (SQ_ERR_CORRUPT). */
int sq_rows_next(sq_rows *rows, int64_t *t, int64_t *x);

uint64_t sq_udiv64(uint64_t a, uint64_t b, uint64_t *rem);
int64_t sq_round_div(int64_t a, uint64_t b);     /* a / b rounded half away from zero, 0 < b < 2^63 */
uint32_t sq_div(uint32_t a, uint32_t b);
uint32_t sq_round_up(uint32_t n, uint32_t unit);

/* The log's parts; format and mount take a ring fresh from the set-up
 * (zeroed, its work memory carved, sq_log_geometry done). */
int sq_log_geometry(sq_ring *r);
int sq_log_format(sq_ring *r);
int sq_log_mount(sq_ring *r);
int sq_log_erase_ahead(sq_ring *r);
int sq_log_write(sq_ring *r, uint32_t len, const sq_block_info *info);
int sq_log_wear(const sq_ring *r, uint32_t *lo, uint32_t *hi);

#endif
