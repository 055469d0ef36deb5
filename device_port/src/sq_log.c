/* The log of sealed blocks on a flash partition (↔ sensorq/store's
 * segments), in the littlefs manner: the caller's read / prog / erase / sync
 * callbacks, no allocation, every byte checked before it is believed.
 *
 * The partition is cut into banks: a bank is the fewest whole erase sectors
 * that hold a bank header and one worst-case block.  A bank starts with its
 * header (magic, the bank's sequence number, its erase count, the sequence
 * number of the first block written in it, a CRC), then blocks, each padded
 * to the program size and never crossing into the next bank.  Banks are
 * written in ring order, each with a sequence number one above the last; the
 * bank after the one being written (the head) is always erased ahead of need:
 * that erase is the ring's eviction, and it wears every bank alike.
 *
 * After a reset, the head is the valid bank with the highest sequence
 * number; the log is the chain of valid banks before it whose sequence
 * numbers count down by one.  A block is kept if it verifies (CRC) and has
 * the next sequence number; the first that does not ends its bank (a torn
 * write).  Writing then goes on after the head's last block if the rest of
 * the bank is blank, else in the next bank: flash is never programmed twice. */
#include <string.h>

#include "sq_internal.h"

#define BANK_MAGIC 0x31525153u     /* "SQR1" */
#define BANK_FIELDS 28u            /* magic, seq, erase count, bank size, first seq, crc */
#define BLK_OK 0
#define BLK_END 1                  /* blank: no block here */
#define BLK_BAD 2                  /* torn or damaged */

typedef struct {
    uint32_t seq, ec;
    uint64_t first_seq;
} bank_hdr;

static uint32_t bank_off(const sq_ring *r, uint32_t bank)
{
    return bank * r->bank_size;
}

static __attribute__((noinline)) uint32_t next_bank(const sq_ring *r, uint32_t bank)
{
    return bank + 1u == r->n_banks ? 0u : bank + 1u;
}

/* len bytes at off: a pointer into the mapped partition, or read into to
 * (the block buffer, or the bank header buffer). */
static int fetch(const sq_ring *r, uint32_t off, uint32_t len, uint8_t *to, const uint8_t **p)
{
    if (r->fl.mapped) {
        *p = r->fl.mapped + off;
        return SQ_OK;
    }
    *p = to;
    return r->fl.read(r->fl.ctx, off, to, len) ? SQ_ERR_IO : SQ_OK;
}

/* A bank's header, read into the header buffer (never the block buffer,
 * which may hold a block waiting to be programmed): SQ_OK, BLK_BAD if it is
 * not a valid header, or SQ_ERR_IO. */
static int read_hdr(const sq_ring *r, uint32_t bank, bank_hdr *h)
{
    const uint8_t *p;
    int err = fetch(r, bank_off(r, bank), BANK_FIELDS, r->hbuf, &p);
    if (err) {
        return err;
    }
    if (sq_le32(p, 4) != BANK_MAGIC || sq_le32(p + 12, 4) != r->bank_size ||
        sq_crc32(0, p, BANK_FIELDS - 4u) != sq_le32(p + BANK_FIELDS - 4u, 4)) {
        return BLK_BAD;
    }
    h->seq = sq_le32(p + 4, 4);
    h->ec = sq_le32(p + 8, 4);
    h->first_seq = sq_get_le(p + 16, 8);
    return SQ_OK;
}

/* 1 if bytes [off, off + len) of the partition are all erased. */
static int blank(const sq_ring *r, uint32_t off, uint32_t len, int *is_blank)
{
    *is_blank = 1;
    while (len && *is_blank) {
        uint32_t n = len < r->buf_len ? len : r->buf_len, i;
        const uint8_t *p;
        int err = fetch(r, off, n, r->buf, &p);
        if (err) {
            return err;
        }
        for (i = 0; i < n; i++) {
            *is_blank &= p[i] == 0xFFu;
        }
        off += n;
        len -= n;
    }
    return SQ_OK;
}

/* The block being read: in the work memory, off the stack. */
static sq_block_info *binfo(const sq_ring *r)
{
    return (sq_block_info *)r->info;
}

/* The block at off (room bytes left in its bank): BLK_OK with *b and
 * binfo(r) filled, BLK_END (blank), BLK_BAD, or SQ_ERR_IO. */
static int read_block(const sq_ring *r, uint32_t off, uint32_t room, const uint8_t **b)
{
    uint32_t peek = room < SQ_BLOCK_PEEK ? room : SQ_BLOCK_PEEK, len;
    int err;
    if (peek < 8u) {
        return BLK_END;
    }
    err = fetch(r, off, peek, r->buf, b);
    if (err) {
        return err;
    }
    if (sq_le32(*b, 4) == 0xFFFFFFFFu) {
        return BLK_END;
    }
    len = sq_block_len(*b, peek);
    if (!len || len > room || len > r->buf_len) {
        return BLK_BAD;
    }
    err = fetch(r, off, len, r->buf, b);
    if (err) {
        return err;
    }
    return sq_block_check(*b, len, binfo(r), (sq_chan_stats *)r->st) == SQ_OK ? BLK_OK : BLK_BAD;
}

static uint32_t padded(const sq_ring *r, uint32_t len)
{
    return sq_round_up(len, r->fl.prog_size);
}

/* The block info describes becomes the newest the ring keeps (the oldest too
 * if it keeps none yet). */
static __attribute__((noinline)) void keep_block(sq_ring *r, const sq_block_info *info)
{
    if (!r->has_blocks) {
        r->oldest_seq = info->seq;
        r->oldest_t = info->t_first;
        r->has_blocks = 1;
    }
    r->next_seq = info->seq + 1u;
    r->newest_t = info->t_last;
}

/* ---- geometry and format ------------------------------------------------- */

int sq_log_geometry(sq_ring *r)
{
    const sq_flash *fl = &r->fl;
    uint32_t need, sectors;
    r->hdr_len = sq_round_up(BANK_FIELDS, fl->prog_size);
    need = r->hdr_len + r->buf_len;
    sectors = sq_div(need + fl->sector_size - 1u, fl->sector_size);
    r->bank_size = sectors * fl->sector_size;
    r->n_banks = sq_div(fl->size, r->bank_size);
    return r->n_banks >= 2u ? SQ_OK : SQ_ERR_FULL;
}

/* Sectors last to first: the header goes last, so a cut part-way leaves a
 * bank whose untouched blocks still verify and are kept. */
static int erase_bank(sq_ring *r, uint32_t bank)
{
    uint32_t start = bank_off(r, bank), off = start + r->bank_size;
    while (off > start) {
        off -= r->fl.sector_size;
        if (r->fl.erase(r->fl.ctx, off)) {
            return SQ_ERR_IO;
        }
    }
    return SQ_OK;
}

/* Write the header of the (erased) bank `bank`, making it the head. */
static int open_bank(sq_ring *r, uint32_t bank, uint32_t seq)
{
    uint8_t *h = r->hbuf;
    uint32_t word[6];          /* the header's words, first_seq as two */
    unsigned i;
    word[0] = BANK_MAGIC;
    word[1] = seq;
    word[2] = r->spare_ec;
    word[3] = r->bank_size;
    word[4] = (uint32_t)r->next_seq;
    word[5] = (uint32_t)(r->next_seq >> 32);
    memset(h, 0xFF, r->hdr_len);
    for (i = 0; i < 6u; i++) {
        sq_put_le(h + 4u * i, word[i], 4);
    }
    sq_put_le(h + 24, sq_crc32(0, h, BANK_FIELDS - 4u), 4);
    if (r->fl.prog(r->fl.ctx, bank_off(r, bank), h, r->hdr_len)) {
        r->dirty = 1;
        return SQ_ERR_IO;
    }
    r->head = bank;
    r->head_seq = seq;
    r->head_off = r->hdr_len;
    r->dirty = 0;
    r->erase_pending = 1;
    return SQ_OK;
}

static int find_head(sq_ring *r, bank_hdr *head, uint32_t *max_ec);

/* Erase every bank, then open bank 0: an empty ring.  Erase counts go on
 * from the highest one found (a count is lost with its header). */
int sq_log_format(sq_ring *r)
{
    uint32_t b, max_ec;
    bank_hdr h;
    /* the largest erase count: find_head finds it (no ring, SQ_ERR_CORRUPT, is
     * fine); the erases overwrite err (n_banks ≥ 2) unless a read failed */
    int err = find_head(r, &h, &max_ec);
    for (b = r->n_banks; b-- > 0 && err != SQ_ERR_IO;) {     /* bank 0 last: a cut leaves no head */
        err = erase_bank(r, b);
    }
    if (err) {
        return err;
    }
    r->spare_ec = max_ec + 1u;     /* no blocks, oldest bank 0, next_seq 0: set-up zeroed r */
    return open_bank(r, 0, 1);
}

/* ---- mount ------------------------------------------------------------------- */

/* Walk the blocks of `bank`: every one that verifies and continues the
 * sequence is kept (the ring's counters follow it).  *end is where the walk
 * stopped; *torn says whether it stopped at something that is not blank. */
static int walk_bank(sq_ring *r, uint32_t bank, const bank_hdr *h, uint32_t *end, int *torn)
{
    uint32_t off = r->hdr_len, base = bank_off(r, bank);
    uint64_t expect = h->first_seq;
    const sq_block_info *info = binfo(r);
    const uint8_t *b;
    int got;
    for (;;) {
        got = read_block(r, base + off, r->bank_size - off, &b);
        if (got < 0) {
            return got;
        }
        if (got != BLK_OK || info->seq != expect) {
            break;
        }
        expect++;
        off += padded(r, info->block_len);
        if (info->seq >= r->next_seq) {   /* next_seq is 0 while none is kept */
            keep_block(r, info);    /* else written again after a failed sync: kept once */
        }
    }
    *end = off;
    *torn = got != BLK_END;
    return SQ_OK;
}

/* The valid bank with the highest sequence number (SQ_ERR_CORRUPT if none),
 * and the largest erase count seen (for banks whose header is lost). */
static int find_head(sq_ring *r, bank_hdr *head, uint32_t *max_ec)
{
    uint32_t b;
    int found = 0;
    *max_ec = 0;
    for (b = 0; b < r->n_banks; b++) {
        bank_hdr h;
        int err = read_hdr(r, b, &h);
        if (err < 0) {
            return err;
        }
        if (err) {
            continue;
        }
        *max_ec = h.ec > *max_ec ? h.ec : *max_ec;
        if (!found || h.seq > head->seq) {
            *head = h;
            r->head = b;
            found = 1;
        }
    }
    return found ? SQ_OK : SQ_ERR_CORRUPT;
}

/* Whether the bank after the head must be erased before the head fills:
 * it still holds the oldest blocks, or whatever a cut left in it.  The next
 * poll erases it (mount itself never writes). */
static int check_spare(sq_ring *r, uint32_t max_ec)
{
    uint32_t spare = next_bank(r, r->head);
    int is_blank = 0, err = SQ_OK;
    r->spare_ec = max_ec;       /* a blank spare's count was in the header its erase wiped */
    if (spare != r->oldest || r->oldest == r->head) {
        err = blank(r, bank_off(r, spare), r->bank_size, &is_blank);
    }
    r->erase_pending = (uint8_t)!is_blank;
    return err;
}

/* The chain is the banks before the head whose sequence numbers count down
 * by one from it.  It may reach the bank after the head, the one to be
 * erased next, if a cut fell before that erase began: its blocks are still
 * there.  The banks are walked oldest first, from the one after the head;
 * a bank out of the chain drops what was kept before it. */
int sq_log_mount(sq_ring *r)
{
    bank_hdr head, h;
    uint32_t max_ec, b, k, end = 0;
    int torn = 0, is_blank, chained, err = find_head(r, &head, &max_ec);
    b = r->head;                   /* no blocks kept yet, next_seq 0: set-up zeroed r */
    r->oldest = next_bank(r, b);
    for (k = r->n_banks; !err && k-- > 0;) {      /* k: banks from b on to the head */
        b = next_bank(r, b);
        err = read_hdr(r, b, &h);
        if (err < 0) {
            break;
        }
        chained = !err && h.seq == head.seq - k;
        if (!chained && !k) {
            return SQ_ERR_CORRUPT;                 /* the head itself no longer reads */
        }
        /* out of the chain, or a gap (a bank whose erase was cut): keep what follows */
        if (!chained || r->next_seq < h.first_seq) {
            r->has_blocks = 0;
            r->next_seq = 0;
        }
        err = SQ_OK;
        if (!chained) {
            r->oldest = next_bank(r, b);
        } else {
            err = walk_bank(r, b, &h, &end, &torn);
        }
    }
    if (err) {
        return err;
    }
    if (!r->has_blocks) {
        r->oldest_seq = head.first_seq;
    }
    r->next_seq = r->next_seq > head.first_seq ? r->next_seq : head.first_seq;
    r->head_seq = head.seq;
    r->head_off = end;
    err = blank(r, bank_off(r, r->head) + end, r->bank_size - end, &is_blank);
    r->dirty = (uint8_t)(torn || !is_blank);
    return err ? err : check_spare(r, max_ec);
}

/* ---- writing ------------------------------------------------------------------ */

/* The oldest block's sequence number and time, after an eviction: the first
 * block the iterator finds. */
static int refresh_oldest(sq_ring *r)
{
    sq_ring_iter it;
    const uint8_t *b;
    size_t len;
    int err;
    sq_ring_iter_begin(r, &it);
    err = sq_ring_next(r, &it, &b, &len);
    if (err || !b) {
        r->has_blocks = 0;
        r->oldest_seq = r->next_seq;
        return err;
    }
    r->oldest_seq = binfo(r)->seq;
    r->oldest_t = binfo(r)->t_first;
    return SQ_OK;
}

/* Erase the bank after the head, evicting its blocks if it is the oldest. */
int sq_log_erase_ahead(sq_ring *r)
{
    uint32_t spare = next_bank(r, r->head);
    bank_hdr h;
    int err;
    if (!r->erase_pending) {
        return SQ_OK;
    }
    err = read_hdr(r, spare, &h);
    if (err < 0) {
        return err;
    }
    r->spare_ec = err ? r->spare_ec : h.ec + 1u;   /* a lost count: the last spare's, as a guess */
    err = erase_bank(r, spare);
    if (err) {
        return err;
    }
    r->erase_pending = 0;
    if (spare == r->oldest) {
        r->oldest = next_bank(r, spare);
        return refresh_oldest(r);
    }
    return SQ_OK;
}

/* Program the block in r->buf (len bytes, the padding after it 0xFF) as the
 * next one, opening the next bank first when it does not fit in the head's
 * rest (or the head holds a torn write).  A failed program marks the head
 * dirty: the retry goes to a fresh bank. */
int sq_log_write(sq_ring *r, uint32_t len, const sq_block_info *info)
{
    uint32_t size = padded(r, len);
    int err;
    if (r->dirty || r->head_off + size > r->bank_size) {
        if (r->erase_pending) {
            return SQ_ERR_IO;      /* the spare is not erased: the erase failed */
        }
        err = open_bank(r, next_bank(r, r->head), r->head_seq + 1u);
        if (err) {
            return err;
        }
    }
    memset(r->buf + len, 0xFF, size - len);
    if (r->fl.prog(r->fl.ctx, bank_off(r, r->head) + r->head_off, r->buf, size) ||
        (r->fl.sync && r->fl.sync(r->fl.ctx))) {
        r->dirty = 1;
        return SQ_ERR_IO;
    }
    r->head_off += size;
    keep_block(r, info);
    return SQ_OK;
}

/* ---- iteration ---------------------------------------------------------------- */

void sq_ring_iter_begin(const sq_ring *r, sq_ring_iter *it)
{
    it->bank = r->oldest;
    it->off = r->hdr_len;
    it->next = r->oldest_seq;
    it->done = !r->has_blocks;
    it->missed = 0;
}

/* Whole banks before the one holding block it->next are passed over from
 * their headers alone (CRC-checked): a bank opened at first_seq holds no
 * block older than it (a block is written in the head bank; one written
 * again after a failed sync goes to a later bank), so every block of the
 * banks before it is older than it->next. */
void sq_ring_iter_after(const sq_ring *r, sq_ring_iter *it, uint64_t seq)
{
    bank_hdr h;
    sq_ring_iter_begin(r, it);
    it->next = seq + 1u > r->oldest_seq ? seq + 1u : r->oldest_seq;
    it->missed = it->next - (seq + 1u);
    while (!it->done && it->bank != r->head && read_hdr(r, next_bank(r, it->bank), &h) == SQ_OK &&
           h.first_seq <= it->next) {
        it->bank = next_bank(r, it->bank);
    }
}

/* Blocks are returned in sequence, each once: one older than it->next (left
 * before a gap, or written again after a failed sync) is passed over. */
int sq_ring_next(const sq_ring *r, sq_ring_iter *it, const uint8_t **block, size_t *len)
{
    const sq_block_info *info = binfo(r);
    int got;
    *block = NULL;
    *len = 0;
    while (!it->done) {
        uint32_t base = bank_off(r, it->bank);
        uint32_t room = (it->bank == r->head ? r->head_off : r->bank_size) - it->off;
        got = read_block(r, base + it->off, room, block);
        if (got < 0) {
            *block = NULL;
            return got;
        }
        if (got == BLK_OK) {
            it->off += padded(r, info->block_len);
            if (info->seq < it->next) {
                continue;
            }
            it->next = info->seq + 1u;
            *len = info->block_len;
            return SQ_OK;
        }
        it->done = it->bank == r->head;
        it->bank = next_bank(r, it->bank);
        it->off = r->hdr_len;
    }
    *block = NULL;
    return SQ_OK;
}

/* Erase counts over every bank (the spare's is in RAM). */
int sq_log_wear(const sq_ring *r, uint32_t *lo, uint32_t *hi)
{
    uint32_t b;
    *lo = *hi = r->spare_ec;
    for (b = 0; b < r->n_banks; b++) {
        bank_hdr h;
        int err = read_hdr(r, b, &h);
        if (err < 0) {
            return err;
        }
        if (!err) {
            *lo = h.ec < *lo ? h.ec : *lo;
            *hi = h.ec > *hi ? h.ec : *hi;
        }
    }
    return SQ_OK;
}
