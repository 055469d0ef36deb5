/*
 * sensorq device port — public API (C99, no allocation, integer arithmetic only).
 *
 * Parts, mirroring the Python stages:
 *   sq_block.c  ↔ sensorq/codec/header.py, intcodec.py   verify blocks (format versions 2, and 1
 *                                           with -DSQ_READ_V1), read a column one word at a time
 *   sq_enc.c    ↔ sensorq/codec/exact.py    seal blocks of format version 2, byte for byte the
 *                                           host's encode_block(..., version=2) (docs/format.md)
 *   sq_ring.c   ↔ sensorq/store             one stream: interrupt-safe staging, sealing, set-up
 *   sq_log.c    ↔ sensorq/store/segment     sealed blocks on a flash partition (or in RAM)
 *   sq_vm.c     ↔ sensorq/engine            runs bytecode compiled on the host
 *                                           (sensorq/device/bytecode.py, docs/device.md)
 *   sq_model.c  ↔ sensorq/device/image.py, models/qscore.py   a model's device image checked;
 *                                           the integer scorers (docs/models.md §10–11)
 *   sq_feat.c   ↔ sensorq/models/features.py            a window's features from the ring
 *   sq_crc32.c, sq_error.c                  CRC-32 (zlib polynomial), version and error names
 *
 * Memory: every byte the library touches is owned by the caller (the ring's
 * work memory and partition, the structs below); how much, a call says
 * (sq_ring_work_size, sq_ring_region_min).  The library has no static
 * state, no malloc, no recursion, no variable-length arrays; its worst stack
 * is printed by `make arm` from the whole call graph (≤ 512 B, plus the
 * firmware's own flash callbacks below a ring call).  Packed bytes are read
 * one at a time, so blocks may sit at any address (an unaligned word load
 * faults on a Cortex-M0+).
 *
 * Errors: every function that can fail returns an sq_err (SQ_OK = 0, failures
 * negative); sq_strerror() names it.  A failed call leaves its outputs
 * unspecified but never writes outside them, and never loses samples that an
 * earlier call acknowledged.
 *
 * Contexts (docs/device.md, "Interrupts"): sq_ring_append (and sq_ring_close)
 * is the producer: call it from one context only, typically the sampling
 * interrupt.  Every other ring call is the consumer: call them from one
 * other context, the main loop, never from the interrupt.  The producer may
 * interrupt any consumer call on a ring that is set up (a seal, a flash
 * program, a query, the statistics): it only writes staging the consumer
 * is not reading, and a query sees the samples appended before it took its
 * snapshot of the staging (after it has read the sealed blocks).  Set the
 * ring up (mount, format, init, reopen) before the first append can
 * happen.  A consumer call must not interrupt another.
 *
 * Scope: integer channels only (int8 … int64).  A block with a float channel is
 * read (verified, its integer channels decoded) but a query over a float
 * channel returns SQ_ERR_UNSUPPORTED.
 */
#ifndef SENSORQ_H
#define SENSORQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version (semantic versioning), and the formats it speaks. */
#define SQ_VERSION_MAJOR 0
#define SQ_VERSION_MINOR 3
#define SQ_VERSION_PATCH 0
#define SQ_VERSION_STRING "0.3.0"
#define SQ_VERSION_NUMBER (SQ_VERSION_MAJOR * 10000L + SQ_VERSION_MINOR * 100L + SQ_VERSION_PATCH)

#define SQ_FORMAT_VERSION 2u      /* block format the device writes (docs/format.md); it reads 1 and 2 */
#define SQ_BYTECODE_VERSION 3u    /* query bytecode (docs/device.md): it runs versions 2 and 3 */
#define SQ_MAX_CHANNELS 16u       /* channels of one ring stream */
#define SQ_VM_MAX_COLUMNS 3u      /* distinct channels one query may read (stack budget) */
#define SQ_VM_STACK 8u            /* predicate stack depth */
#define SQ_HEADER_SIZE 56u        /* block header bytes, format version 1 */
#define SQ_ENTRY_SIZE 80u         /* channel directory entry bytes, format version 1 */
#define SQ_MAX_BLOCK_SAMPLES 65536u

/* Error codes.  Keep in step with sensorq/device/native.py (ERRORS). */
typedef enum {
    SQ_OK = 0,
    SQ_ERR_ARG = -1,          /* a NULL pointer, a size or a count out of range */
    SQ_ERR_CORRUPT = -2,      /* a block or a model fails a structural check (magic, lengths, codes) */
    SQ_ERR_VERSION = -3,      /* a block, bytecode or model of an unknown version */
    SQ_ERR_CRC = -4,          /* a block's, bytecode's or model's checksum does not match */
    SQ_ERR_FULL = -5,         /* the region cannot hold even one worst-case block */
    SQ_ERR_ORDER = -6,        /* a timestamp earlier than the previous one */
    SQ_ERR_RANGE = -7,        /* a value outside its channel's storage type; a window too long */
    SQ_ERR_UNSUPPORTED = -8,  /* valid, but not something the device does (float channel …) */
    SQ_ERR_BYTECODE = -9,     /* the bytecode is malformed */
    SQ_ERR_OVERFLOW = -10,    /* an answer (a sum) does not fit in int64 */
    SQ_ERR_MISMATCH = -11,    /* a query compiled for another stream (channels, schema), a model
                                 whose inputs are not the ring's channels */
    SQ_ERR_IO = -12           /* a storage callback failed */
} sq_err;

/* Storage type codes, as in the block format's channel directory. */
enum { SQ_INT8 = 1, SQ_INT16 = 2, SQ_INT32 = 3, SQ_INT64 = 4, SQ_FLOAT32 = 5, SQ_FLOAT64 = 6 };

/* SQ_VERSION_STRING of the library that was linked (the header may be another's). */
const char *sq_version(void);

/* A short English description of an sq_err ("block checksum mismatch"). */
const char *sq_strerror(int err);

/* CRC-32 of p[0..n) continuing from crc (start with 0): zlib.crc32(p, crc). */
uint32_t sq_crc32(uint32_t crc, const uint8_t *p, size_t n);

/* ---- blocks (sq_block.c) ------------------------------------------------ */

/* What a verified block's header says. */
typedef struct {
    uint32_t n_samples;
    uint32_t n_channels;
    uint32_t block_len;
    uint32_t time_len;
    uint32_t stream_id;
    uint8_t time_codec;
    uint8_t version;          /* format version: 1 or 2 */
    uint32_t dir_off;         /* the channel directory's offset */
    uint32_t sec_off;         /* the time section's offset (the channels' follow it) */
    int64_t t_first;
    int64_t t_last;
    int64_t tick;
    uint64_t seq;
} sq_block_info;

/* One channel's directory entry (integer channels: every field exact unless
 * flagged; min/max/first/last/sum are raw stored units). */
typedef struct {
    uint8_t dtype;            /* SQ_INT8 … SQ_FLOAT64 */
    uint8_t codec;            /* column codec byte */
    uint8_t dexp;             /* decimal exponent (float channels) */
    uint32_t data_len;        /* section bytes */
    uint32_t count;
    uint32_t flags;           /* bit 0 SUM_INEXACT, bit 1 SUMSQ_INEXACT */
    uint32_t idx_min, idx_max;
    int64_t min, max, first, last, sum;
    uint64_t sumsq;
} sq_chan_stats;

#define SQ_SUM_INEXACT 1u
#define SQ_SUMSQ_INEXACT 2u

/* Verify the block in block[0..len) completely — magic, version (2; 1 too
 * when built with -DSQ_READ_V1), block_len == len, CRC, section lengths,
 * counts, codec and dtype bytes, every varint — and fill *info.  Errors:
 * SQ_ERR_ARG, SQ_ERR_CORRUPT, SQ_ERR_VERSION, SQ_ERR_CRC.  Only a block that
 * passed may be given to the functions below. */
int sq_block_verify(const uint8_t *block, size_t len, sq_block_info *info);

/* Channel ch's directory entry of a verified block, either version (a
 * version-2 entry is made absolute, as version 1 stores it: float channels'
 * f64 statistics are not read).  Errors: SQ_ERR_ARG. */
int sq_block_channel(const uint8_t *block, const sq_block_info *info, uint32_t ch,
                     sq_chan_stats *st);

/* Decode one column of a verified block into out[0..n_samples): column -1 is
 * the timestamps (ns), 0.. the integer channels (as int64).  cap is out's
 * length.  Errors: SQ_ERR_ARG (cap too small, bad column), SQ_ERR_CORRUPT
 * (section does not decode), SQ_ERR_UNSUPPORTED (float channel; a compact
 * column in a -DSQ_NO_COMPACT build).  Uses a streaming reader: no buffer
 * besides out. */
int sq_block_decode(const uint8_t *block, const sq_block_info *info, int column, int64_t *out,
                    size_t cap);

/* ---- storage: flash in the littlefs manner (sq_log.c) ---------------------
 *
 * The caller describes one partition and how to touch it.  Every callback
 * returns 0 on success and anything else on failure (the library then returns
 * SQ_ERR_IO).  Offsets are relative to the partition's start.
 *   read   copy len bytes at off into buf
 *   prog   program len bytes at off (off and len multiples of prog_size; the
 *          bytes were erased: NOR semantics, programming only clears bits)
 *   erase  erase the sector starting at off (every byte becomes 0xFF)
 *   sync   make earlier programs durable (NULL: they are when prog returns)
 * mapped: the partition's bytes when it is memory-mapped (RAM, XIP flash):
 * reads then use the pointer, read may be NULL, and queries read blocks in
 * place instead of copying them into the block buffer. */
typedef struct {
    int (*read)(void *ctx, uint32_t off, uint8_t *buf, uint32_t len);
    int (*prog)(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len);
    int (*erase)(void *ctx, uint32_t off);
    int (*sync)(void *ctx);
    void *ctx;
    const uint8_t *mapped;
    uint32_t size;          /* partition bytes */
    uint32_t sector_size;   /* erase unit */
    uint32_t prog_size;     /* program unit, 1 … 256 */
} sq_flash;

/* ---- the ring (sq_ring.c) ----------------------------------------------- */

/* The column codecs a seal writes: "fast" bit-packs (a seal ≈ 2.5x cheaper),
 * "compact" adds Rice mini-blocks and dictionaries (blocks ≈ 20 % smaller).
 * Building with -DSQ_NO_COMPACT leaves the compact codec out, its encoder
 * and its reader (1.2 KB less flash): a stream that asks for it is refused
 * with SQ_ERR_UNSUPPORTED, and so is reading a compact column (a Rice
 * mini-block or a dictionary: a block the host wrote "compact"). */
enum { SQ_CODEC_FAST = 0, SQ_CODEC_COMPACT = 1 };

/* One stream: its integer channels and how many samples make a block. */
typedef struct {
    uint8_t n_channels;                 /* 1 … SQ_MAX_CHANNELS */
    uint8_t dtype[SQ_MAX_CHANNELS];     /* SQ_INT8 … SQ_INT64 */
    uint8_t codec;                      /* SQ_CODEC_FAST or SQ_CODEC_COMPACT (format.md §3) */
    uint32_t block_samples;             /* 1 … SQ_MAX_BLOCK_SAMPLES */
    uint32_t stream_id;                 /* written into every block */
    uint32_t schema;                    /* the stream's schema hash (sensorq.device.bytecode.
                                           schema_hash): a query compiled for another
                                           schema is refused with SQ_ERR_MISMATCH */
} sq_stream_cfg;

/* Staging: two halves of block_samples samples each, in the caller's work
 * memory.  Appends (the producer, e.g. a sampling interrupt) fill one half;
 * sq_ring_poll (the consumer, the main loop) seals the other.  Each field
 * has one writer, so neither side ever waits for the other. */
typedef struct {
    volatile uint32_t count;            /* samples in the half (producer) */
    volatile uint32_t ready;            /* 1: closed, waiting for its seal (producer sets,
                                           consumer clears) */
    uint64_t seq;                       /* the block's sequence number (set when closed) */
} sq_half;

typedef struct {
    uint32_t magic;                     /* SQ_STAGE_MAGIC once set up */
    uint32_t cfg_hash;                  /* of the stream configuration it was set up for */
    volatile uint32_t fill;             /* the half appends go to (producer) */
    volatile uint32_t dropped;          /* appends refused: both halves full (producer) */
    int64_t last_t;                     /* newest appended time (producer) */
    uint32_t has_last;
    uint32_t reserved;
    uint64_t close_seq;                 /* sequence number of the next block closed (producer) */
    sq_half half[2];
} sq_stage;

/* The ring's state; lives wherever the caller puts it.  Fields are private
 * (bytes first, then words: a Cortex-M0+ load reaches 31 bytes, 124 for
 * words, past a pointer in one instruction). */
typedef struct {
    uint8_t dirty;           /* the head bank holds a torn write: the next block opens a bank */
    uint8_t erase_pending;   /* the bank after the head still has to be erased */
    uint8_t has_blocks;
    uint8_t reserved;
    sq_stage *stage;         /* in the work memory */
    uint8_t *data[2];        /* the halves' samples, column-major */
    uint8_t *buf;            /* block buffer: a block being sealed or read */
    uint32_t buf_len;        /* its size: the worst block, rounded up to prog_size */
    uint8_t *hbuf;           /* bank header buffer (hdr_len bytes) */
    void *enc;               /* the encoder's working memory */
    void *info;              /* the block being read (sq_block_info), off the stack */
    void *st;                /* a directory entry being read (sq_chan_stats) */
    uint32_t bank_size, n_banks, hdr_len;
    uint32_t head, head_off; /* the bank written, and where in it */
    uint32_t oldest;         /* the oldest bank holding blocks */
    uint32_t head_seq;       /* the head bank's sequence number */
    uint32_t spare_ec;       /* erase count of the spare (erased) bank */
    uint64_t next_seq;       /* sequence number of the next block written */
    uint64_t oldest_seq;     /* of the oldest block kept (= blocks evicted since format) */
    int64_t oldest_t, newest_t;
    sq_stream_cfg cfg;
    sq_flash fl;
} sq_ring;

/* Bytes of work memory a flash ring needs (any alignment): two staging
 * halves and the block buffer.  0 if cfg or fl is invalid. */
size_t sq_ring_work_size(const sq_stream_cfg *cfg, const sq_flash *fl);

/* Start an empty ring on the partition: erases every sector.  Errors:
 * SQ_ERR_ARG (cfg, fl, work too small), SQ_ERR_FULL (the partition holds
 * fewer than two banks: a bank is the sectors that hold one worst-case
 * block), SQ_ERR_IO. */
int sq_ring_format(sq_ring *r, const sq_stream_cfg *cfg, const sq_flash *fl, uint8_t *work,
                   size_t work_len);

/* Find the ring on the partition after a reset: reads every bank header
 * (magic, sequence number, CRC), keeps every block that verifies (CRC) in
 * the chain of banks ending at the newest, drops a torn last block, and
 * leaves a half-erased bank to the next poll to erase (mount never writes).
 * The staging starts empty: samples not sealed before the reset are gone.
 * Errors: SQ_ERR_ARG, SQ_ERR_FULL, SQ_ERR_CORRUPT (no ring on the partition:
 * format it), SQ_ERR_IO. */
int sq_ring_mount(sq_ring *r, const sq_stream_cfg *cfg, const sq_flash *fl, uint8_t *work,
                  size_t work_len);

/* sq_ring_mount, keeping the samples staged in work if work still holds a
 * valid staging area of this cfg (RAM retained across a watchdog reset):
 * magic and configuration hash, counts in range, sequence numbers the log
 * expects, times in order after the newest block; a closed half whose block
 * reached flash is dropped, one that did not is sealed by the next poll.
 * Anything else is dropped, never trusted.  Errors: as sq_ring_mount. */
int sq_ring_resume(sq_ring *r, const sq_stream_cfg *cfg, const sq_flash *fl, uint8_t *work,
                   size_t work_len);

/* RAM-only rings (boards without spare flash): the same ring, its partition
 * in region after the work memory.  Bytes of region a stream needs: */
size_t sq_ring_region_min(const sq_stream_cfg *cfg);

/* An empty RAM ring in region[0..region_len) (any alignment).  Errors:
 * SQ_ERR_ARG (bad cfg), SQ_ERR_FULL (region smaller than sq_ring_region_min). */
int sq_ring_init(sq_ring *r, uint8_t *region, size_t region_len, const sq_stream_cfg *cfg);

/* Re-open a RAM ring whose region survived a reset (retained memory): every
 * block is verified and the staging area validated, never trusted blindly
 * (sq_ring_resume on the region).  SQ_ERR_CORRUPT: nothing to re-open, call
 * sq_ring_init. */
int sq_ring_reopen(sq_ring *r, uint8_t *region, size_t region_len, const sq_stream_cfg *cfg);

/* Append one sample (the producer; safe in an interrupt handler): O(1), never
 * seals and never touches flash.  Checks order (SQ_ERR_ORDER), range
 * (SQ_ERR_RANGE) and that a half is free (SQ_ERR_FULL: the main loop has not
 * sealed in time; the sample is dropped and counted) before storing
 * anything.  The append that fills a half closes it for sq_ring_poll; so
 * does a time step of 2^63 ns or more (a block cannot hold one), the sample
 * going to the next block. */
int sq_ring_append(sq_ring *r, int64_t t, const int64_t *values);

/* Close the open block early, as if it were full (producer side: call it
 * where sq_ring_append cannot interrupt it).  Nothing to close is SQ_OK. */
int sq_ring_close(sq_ring *r);

/* The consumer, from the main loop: seal every closed half into a block
 * ("fast" codec), program it, then erase the bank after the head ahead of
 * need (evicting the oldest blocks).  A failed program leaves the half
 * closed (retried by the next poll, in a new bank).  Errors: SQ_ERR_IO. */
int sq_ring_poll(sq_ring *r);

/* Make every sample appended so far durable: close + poll + sync (the close
 * part as sq_ring_close: not while an append can interrupt it). */
int sq_ring_flush(sq_ring *r);

/* Sealed blocks kept, and samples appended but not sealed. */
uint32_t sq_ring_block_count(const sq_ring *r);
uint32_t sq_ring_staged(const sq_ring *r);

/* What a firmware may want to know about its ring. */
typedef struct {
    uint32_t blocks;             /* sealed blocks kept */
    uint32_t staged;             /* samples appended, not sealed yet */
    uint64_t oldest_seq;         /* sequence number of the oldest block kept */
    uint64_t next_seq;           /* of the next block to be sealed */
    uint64_t blocks_evicted;     /* since the ring was formatted (= oldest_seq) */
    int64_t oldest_t, newest_t;  /* time of the oldest and newest sample kept */
    uint8_t has_data;            /* 0: no sample at all (times are 0) */
    uint32_t bank_size;          /* bytes of a bank: the unit of eviction */
    uint32_t capacity;           /* bytes the log may fill (every bank but the spare) */
    uint32_t bytes_used;         /* of it, up to the write position */
    uint32_t bytes_free;
    uint32_t samples_dropped;    /* appends refused with SQ_ERR_FULL */
    uint32_t erase_min, erase_max;   /* erase counts over the banks (wear spread) */
} sq_ring_stats;

/* Fill *st (reads every bank header for the erase counts).  Errors: SQ_ERR_ARG, SQ_ERR_IO. */
int sq_ring_stats_get(const sq_ring *r, sq_ring_stats *st);

/* Iteration over sealed blocks, oldest → newest: the export. */
typedef struct {
    uint32_t bank, off;
    uint64_t next;           /* the lowest sequence number still to be returned */
    uint64_t missed;         /* blocks after the cursor's seq already evicted (an uplink gap) */
    uint8_t done;
} sq_ring_iter;

void sq_ring_iter_begin(const sq_ring *r, sq_ring_iter *it);

/* The export cursor: iterate the blocks whose sequence number is > seq (the
 * last one uplinked); it->missed says how many of those were evicted before
 * they could be read. */
void sq_ring_iter_after(const sq_ring *r, sq_ring_iter *it, uint64_t seq);

/* The next block (verified: CRC and sequence) as (*block, *len), or *block =
 * NULL at the end.  The pointer is into the mapped partition or the ring's
 * block buffer: valid until the next call on the ring.  Errors: SQ_ERR_IO. */
int sq_ring_next(const sq_ring *r, sq_ring_iter *it, const uint8_t **block, size_t *len);

/* ---- private types ------------------------------------------------------
 * Declared here only so that callers can give their memory to the library
 * (sq_query_state); their fields are not part of the API. */

/* A payload (mini-block header bytes + bit stream) read one residual at a time. */
typedef struct {
    const uint8_t *hdr;      /* header bytes */
    const uint8_t *bits;     /* bit stream start */
    uint32_t bit;            /* next bit */
    uint32_t i;              /* next residual's index */
#ifdef SQ_READ_V1
    uint64_t frame;          /* a framed mini-block's frame (version 1) */
    uint32_t n;              /* residuals in the payload (a split mini-block's length) */
    uint32_t qbit;           /* a split Rice mini-block's next quotient (version 1) */
    uint8_t frame_len;       /* a FRAMES payload's frame length; 0xFF: each frame has its own */
    uint8_t split;           /* a SPLIT payload: Rice mini-blocks hold low bits, then quotients */
#endif
} sq_payload;

/* Where a dictionary was last read: entry number rank is val.  One cursor is
 * shared by all the columns a query reads (owner says whose dictionary it
 * walks), which keeps readers small; two dictionary columns in one query
 * only cost re-walks. */
typedef struct {
    const void *owner;
    sq_payload pl;
    uint64_t val;
    uint32_t rank;           /* UINT32_MAX: no entry read yet */
} sq_dict_cursor;

/* A column section read one word at a time (or, raw != 0, raw staged
 * little-endian integers of width bytes at pl.hdr).  Channel words must fit
 * the channel's width (sign-extended), else the column is corrupt. */
typedef struct {
    sq_payload pl;
    uint64_t base, prev, delta;
    const uint8_t *dict_hdr; /* dictionary gaps payload */
    uint32_t dict_n;
    sq_dict_cursor *cursor;
    uint8_t codec;
    uint8_t width;           /* bytes of a value: 8 for time, the dtype's for channels */
    uint8_t raw;
#ifdef SQ_READ_V1
    /* A CLOCK time section's line (format.md §3): word k gets line, which
     * steps by step, plus 1 whenever rem (b·k + r mod q) passes q. */
    uint64_t line, step, b, rem, q;
#endif
} sq_col;

/* Rows of a sealed block or a staged half, one sample at a time (sq_vm.c:
 * the query VM's and the model features' one reader): col[0] reads the
 * times (t = t0 + word·tick; staged words are the times), col[1 … n] the
 * channels.  The readers are the caller's memory. */
typedef struct {
    sq_col *col;             /* n + 1 readers (first: the model's work memory carves them in place) */
    sq_dict_cursor *cursor;  /* one for every reader (cursor_step 0) or one each (1) */
    const uint8_t *channels; /* channel c's index: channels[c · stride] */
    uint8_t n;               /* channel readers */
    uint8_t stride, cursor_step;
    uint8_t times;           /* 0: the times are not read (t = t0) */
    uint32_t left;           /* rows not read yet */
    int64_t t0, tick;
} sq_rows;

/* The query VM's whole state (648 B on a Cortex-M0+): the loaded
 * bytecode, the accumulators and one reader per column the query reads.
 * sq_query_run and sq_query_check work in one, off the stack. */
typedef struct {
    /* bytes first, then words, then the big members: a Cortex-M0+ load
     * reaches 31 bytes (124 for words) past a pointer in one instruction */
    uint8_t flags;
    uint8_t agg;
    uint8_t agg_slot;              /* slot of the aggregated channel, 0xFF for count */
    uint8_t n_slots;
    uint8_t slot_channel[SQ_VM_MAX_COLUMNS];
    uint8_t held, open;
    uint8_t agg_flags;
    const uint8_t *prog;
    uint32_t prog_len;
    uint32_t n_channels;
    uint32_t schema;               /* the bytecode's schema hash */
    struct sq_result_s *out;
    int64_t start, end;            /* window [start, end) */
    /* accumulators */
    uint64_t sum_low;              /* 128-bit sum: sum_high:sum_low */
    int64_t sum_high;
    int64_t acc;                   /* min, max, first or last */
    int64_t agg_sum, agg_pick;     /* the aggregated channel's sum; its min, max, first or last */
    /* duration and episodes (bytecode version 3): each sample holds until the
     * next one, at most gap ns; runs of matching samples */
    int64_t gap, min_dur;
    int64_t held_t;                /* the matching sample whose hold is not known yet (duration) */
    int64_t run_t, last_t;         /* the open episode's start, the last sample seen in the window */
    sq_rows rows;                  /* the block's or staged half's rows (cols below) */
    int64_t x[SQ_VM_MAX_COLUMNS + 1u];  /* the current row: its time word, then the values by slot */
    /* the current block's statistics and sections, by slot */
    int64_t lo[SQ_VM_MAX_COLUMNS], hi[SQ_VM_MAX_COLUMNS];
    sq_block_info info;            /* the block being read */
    sq_chan_stats st;              /* a directory entry being read */
    /* one set of readers for every block (the stack holds no per-block
     * copies): cols[0] the times, cols[1 + s] slot s, read as rows above */
    sq_col cols[SQ_VM_MAX_COLUMNS + 1u];
    sq_dict_cursor cursor;
} sq_query_state;

/* ---- queries (sq_vm.c) --------------------------------------------------- */

/* Aggregate codes of the bytecode (DURATION and EPISODES: version 3). */
enum { SQ_AGG_COUNT = 0, SQ_AGG_SUM = 1, SQ_AGG_MIN = 2, SQ_AGG_MAX = 3, SQ_AGG_MEAN = 4,
       SQ_AGG_FIRST = 5, SQ_AGG_LAST = 6, SQ_AGG_DURATION = 7, SQ_AGG_EPISODES = 8 };

/* A query's answer, in raw stored units (the host applies the scale).
 * count: samples in the window for which the predicate holds.
 * value: count (COUNT); the exact sum (SUM); min, max, the first or last
 * matching value in append order; MEAN = sum / count rounded half away from
 * zero (e.g. 5/2 → 3, −5/2 → −3); DURATION: the nanoseconds during which the
 * predicate holds, each matching sample holding until the next sample of the
 * stream, at most the bytecode's gap and never past the window's end (the
 * newest sample holds 0), as the engine's `duration`; EPISODES: the total
 * nanoseconds of the episodes, count being how many (maximal runs of
 * matching samples not split by a gap longer than the bytecode's, each from
 * its first sample to the sample after it — or its last, at a gap or at the
 * end — lasting at least the bytecode's minimum: `find episodes … for >= D`).
 * has_value is 0 (and value 0) when no sample matched, for every aggregate
 * but COUNT, DURATION and EPISODES — as the host engine, whose sum of nothing
 * is no value either.
 * The block counters say how each sealed block was handled: skipped from its
 * statistics (time range or predicate provably false), answered from its
 * statistics (predicate provably true), or decoded. */
typedef struct sq_result_s {
    int64_t value;
    uint8_t has_value;
    uint8_t aggregate;
    uint64_t count;               /* 64-bit: an archive may hold more than 2^32 samples */
    uint64_t blocks_skipped;
    uint64_t blocks_answered;
    uint64_t blocks_decoded;
    uint64_t samples_scanned;     /* samples decoded and tested one by one */
} sq_result;

/* Validate bytecode without running it: magic, version, length, CRC, opcodes,
 * stack depth, channel indices, distinct channels ≤ SQ_VM_MAX_COLUMNS; state is
 * caller memory the check works in.  Errors: SQ_ERR_ARG, SQ_ERR_BYTECODE,
 * SQ_ERR_VERSION, SQ_ERR_CRC, SQ_ERR_UNSUPPORTED. */
int sq_query_check(sq_query_state *state, const uint8_t *code, size_t code_len);

/* Run a query over the ring: every sealed block (verified before use), then
 * the open block's samples.  now_ns anchors `last <duration>`.  The VM's state
 * (600 B on a Cortex-M0+: column readers, accumulators, the block being
 * read) lives in caller memory, e.g. a static sq_query_state, so the stack
 * stays under 512 B.  Over a flash ring, each block is read into the ring's
 * block buffer (memory-mapped partitions are read in place).  Errors:
 * SQ_ERR_ARG (a NULL pointer), those of sq_query_check; SQ_ERR_MISMATCH
 * (compiled for another channel count), SQ_ERR_UNSUPPORTED (float channel;
 * a compact column with -DSQ_NO_COMPACT), SQ_ERR_CORRUPT / SQ_ERR_CRC (a
 * damaged block), SQ_ERR_OVERFLOW (sum outside int64).  No buffer per
 * block. */
int sq_query_run(sq_query_state *state, const uint8_t *code, size_t code_len, const sq_ring *r,
                 int64_t now_ns, sq_result *out);

/* The same over n_blocks blocks given by address and length (in time order),
 * of a stream whose schema hash is `schema` (SQ_ERR_MISMATCH if the bytecode
 * was compiled for another). */
int sq_query_run_blocks(sq_query_state *state, const uint8_t *code, size_t code_len,
                        uint32_t schema, const uint8_t *const *blocks, const size_t *lens,
                        size_t n_blocks, int64_t now_ns, sq_result *out);

/* ---- models (sq_model.c, sq_feat.c) ---------------------------------------
 *
 * A model (docs/models.md) scores fixed windows of the ring's stream:
 * [k·hop, k·hop + window) for integers k.  Its features (mean, std, min, max,
 * rms, ptp, mad, crossings, band, bandratio of one channel or of mag() of
 * 2–4) are computed from the ring — sealed blocks through the ring's verified
 * read path, then the staged samples — and fed to a tree ensemble, a linear
 * model, an int8 MLP or a Mahalanobis anomaly scorer, in integer arithmetic
 * only: the host's quantized path (score_windows(..., quantized=True)) bit
 * for bit.
 *
 * The model is data: its *device image* (docs/models.md §11; `sensorq model
 * export --device`, sensorq.device.image.device_image), made by the host
 * after it validated the whole .sqm and bound the model's inputs to this
 * ring's channels.  sq_model_load checks what memory safety and correct
 * arithmetic need (magic, version, length, CRC, the ring's schema hash,
 * counts, every index, child references strictly forward, feature codes)
 * and then reads the caller's bytes (RAM or flash) in place: they must stay
 * valid and unchanged while the sq_model is used.  Replacing a model at run
 * time is loading other bytes into the sq_model (or into a second one and
 * switching).  Nothing is allocated: scoring works in caller memory of
 * sq_model_work_size bytes.
 *
 * Build options (kinds a firmware does not use are left out; a model of a
 * missing kind is refused with SQ_ERR_UNSUPPORTED): -DSQ_MODEL_KINDS=mask of
 * SQ_MODEL_TREES, SQ_MODEL_LINEAR, SQ_MODEL_MLP (dense with hidden layers),
 * SQ_MODEL_ANOMALY, SQ_MODEL_SPECTRAL (band, bandratio), SQ_MODEL_CROSSINGS.
 * Default: all. */
#define SQ_MODEL_TREES 1u
#define SQ_MODEL_LINEAR 2u
#define SQ_MODEL_MLP 4u
#define SQ_MODEL_ANOMALY 8u
#define SQ_MODEL_SPECTRAL 16u
#define SQ_MODEL_CROSSINGS 32u
#ifndef SQ_MODEL_KINDS
#define SQ_MODEL_KINDS 63u
#endif
#define SQ_MODEL_VERSION 3u          /* device image format version read (versions 1 and 2 are refused) */
#define SQ_MODEL_MAX_INPUTS 16u
#define SQ_MODEL_MAX_WINDOW (1u << 19)   /* samples in one window */

/* Output kinds (what sq_model_out.cls and .value mean). */
enum { SQ_MODEL_CLASSES = 0, SQ_MODEL_VALUE = 1, SQ_MODEL_ANOMALY_SCORE = 2 };

/* A loaded model.  Its first 56 bytes are the image's header (bytes 4–59)
 * as they are: the image is little-endian, as the Cortex-M and the hosts
 * the library is tested on (docs/models.md §11).  Fields are private except
 * those marked. */
typedef struct {
    uint8_t version, body;       /* format version; 1 trees, 2 dense */
    uint8_t kind;                /* public: SQ_MODEL_CLASSES, _VALUE or _ANOMALY_SCORE */
    uint8_t mode;                /* tree or dense output mode */
    uint8_t n_inputs, n_signals, n_features;
    uint8_t n_classes;           /* public: classes of a classifier (0 otherwise) */
    uint8_t n_out;               /* trees: outputs; dense: layers */
    uint8_t reserved1[3];        /* 0 (version 1: the trees' field widths; later versions' are fixed) */
    uint16_t n_trees, n_nodes, n_leaves, reserved2;
    uint32_t length;             /* the image's bytes */
    uint32_t schema;             /* the ring's schema hash the image was bound to */
    uint32_t out_schema;         /* public: schema hash of the model's output stream */
    uint32_t min_samples;        /* public: fewer samples in a window: no score */
    uint32_t reserved3;
    int64_t window_ns, hop_ns;   /* public: the model's windows */
    /* from here on: the loader's */
    uint16_t n_raw;              /* public: raw outputs (sq_model_out.raw) */
    uint16_t passes, max_width;
    uint16_t leaf_size;          /* trees: a leaf's bytes (n_out votes, or an i32) */
    uint32_t work_size;          /* unused (not set): the work size is sq_model_work_size(m) */
    uint32_t n_steps;            /* phase steps of all spectral features */
    uint32_t sig_off, feat_off, steps_off, body_off, node_off, leaf_off;
    uint32_t reserved5;          /* unused (not set; version 2: the trees' init values) */
    const uint8_t *bytes;        /* the image (the caller's) */
} sq_model;

/* One window's result. */
typedef struct {
    int64_t start;               /* the window [start, start + window_ns) */
    uint32_t n_samples;          /* samples in it */
    uint8_t scored;              /* 0: fewer than min_samples (nothing below is set) */
    int32_t cls;                 /* the class code (a classifier); 1 anomalous, 0 normal (anomaly
                                    scorer); -1 a regressor */
    int64_t value;               /* the output as an integer: a classifier's winning accumulator,
                                    a regressor's raw output (the host's value is value × its
                                    host-only scale), an anomaly scorer's d² */
    const int32_t *codes;        /* the n_features feature codes (in the work memory) */
    const int64_t *raw;          /* the n_raw raw integer outputs: the host's `raw` (work memory) */
} sq_model_out;

/* Check a device image and take it for a ring of configuration cfg (the
 * image was bound on the host to the ring whose schema hash is cfg->schema).
 * Errors: SQ_ERR_ARG (NULL), SQ_ERR_VERSION (another format version),
 * SQ_ERR_CRC, SQ_ERR_CORRUPT (not an image, truncated, padded, a count, an
 * index, a child reference or a feature code out of range), SQ_ERR_MISMATCH
 * (bound to another ring: its schema hash or a channel index),
 * SQ_ERR_UNSUPPORTED (a kind left out of this build).  On error *m is
 * unusable: scoring it returns SQ_ERR_ARG. */
int sq_model_load(sq_model *m, const uint8_t *bytes, size_t len, const sq_stream_cfg *cfg);

/* Bytes of work memory the model needs to score a window (any alignment: the
 * library aligns inside it); 0 if m is not loaded. */
size_t sq_model_work_size(const sq_model *m);

/* Features and output of the window [start_ns, start_ns + window): the ring's
 * samples in it (sealed blocks, verified as the iterator reads them, then the
 * staged ones).  out->scored = 0 if the window holds fewer than min_samples.
 * Errors: SQ_ERR_ARG (work too small, NULL), SQ_ERR_RANGE (more than
 * SQ_MODEL_MAX_WINDOW samples),
 * SQ_ERR_MISMATCH (a ring of another schema, blocks of another channel
 * count), SQ_ERR_CORRUPT / SQ_ERR_CRC (a damaged block), SQ_ERR_IO. */
int sq_model_window(const sq_model *m, const sq_ring *r, int64_t start_ns, void *work,
                    size_t work_len, sq_model_out *out);

/* The newest whole window of the ring: the one that starts at
 * floor((newest + 1 − window) / hop) · hop, newest being the ring's newest
 * sample (as the host's derived stream: its "now").  SQ_OK with
 * out->scored = 0 when the ring is empty (out->start is then meaningless)
 * or the window is short.  Errors: as sq_model_window. */
int sq_model_score(const sq_model *m, const sq_ring *r, void *work, size_t work_len,
                   sq_model_out *out);

/* The start of the ring's newest whole window (as sq_model_score picks it),
 * without scoring it; INT64_MIN when the ring holds no sample.  A firmware
 * that must not miss a window (a hole in the data skips hops) keeps the
 * start of the next one it owes and scores each with sq_model_window up to
 * this one (times within 2^62 of INT64_MIN give no meaningful start).
 * Errors: SQ_ERR_ARG. */
int sq_model_newest(const sq_model *m, const sq_ring *r, int64_t *start);

/* Score given feature codes (n_features of them): the model's body alone.
 * It needs less work memory than a window (codes, outputs and the dense
 * layers' buffers; sq_model_work_size is always enough).  Errors: SQ_ERR_ARG. */
int sq_model_predict(const sq_model *m, const int32_t *codes, void *work, size_t work_len,
                     sq_model_out *out);

#ifdef __cplusplus
}
#endif
#endif /* SENSORQ_H */
