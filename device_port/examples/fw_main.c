/* Example firmware: a sensor loop over a test vector, under QEMU (-M microbit).
 *
 * Reads vector.bin through semihosting (format: tests/vectors/README.md and
 * sensorq/device/vectors.py): the stream's channels, block size and ring
 * region size, the samples, and compiled queries with the "now" to run them
 * at.  Appends every sample to a ring in a static region (timing each append
 * with SysTick), runs every query, and writes:
 *   answers.txt   one line per query: status value has_value count skipped answered decoded scanned
 *                 and "calibration_ticks <ticks> <instructions>", "append_ticks <sum> <max> <n>"
 *                 (sq_ring_append: staging only), "seal_ticks <sum> <max> <n>" (the polls
 *                 that sealed a block), "query_ticks <sum>", "stack <bytes>"
 *   blocks.bin    every sealed block in the ring, oldest first (the export)
 * Exit status: 0, or 1 + the step that failed. */
#include <stdint.h>
#include <string.h>

#include "fw_common.h"
#include "semihost.h"
#include "sensorq.h"

#define REGION_MAX 13312u
#define CODE_MAX 512u

size_t stack_high_water(void);

static uint8_t region[REGION_MAX];
static sq_ring ring;
static sq_query_state query_state;     /* the VM's state, kept off the stack */
static uint8_t code[CODE_MAX];

/* The sensor loop: every sample appended (as an interrupt handler would),
 * then the main loop's poll; the polls that sealed a block are timed apart. */
static int append_samples(int in, int out, uint32_t n_samples, uint32_t n_channels)
{
    uint8_t row[8u * (1u + SQ_MAX_CHANNELS)];
    int64_t values[SQ_MAX_CHANNELS];
    uint32_t i, c, appends = 0, worst_append = 0, seals = 0, worst_seal = 0, n_seals = 0;
    for (i = 0; i < n_samples; i++) {
        uint32_t start, spent, before;
        int64_t t;
        int err;
        if (sh_read(in, row, 8u * (1u + n_channels))) {
            return 3;
        }
        for (c = 0; c < n_channels; c++) {
            values[c] = fw_get_i64(row + 8u * (1u + c));
        }
        t = fw_get_i64(row);                    /* read before the timer starts: the append alone */
        start = SYST_CVR;
        err = sq_ring_append(&ring, t, values);
        spent = fw_ticks_since(start);
        appends += spent;
        worst_append = spent > worst_append ? spent : worst_append;
        before = sq_ring_staged(&ring);
        start = SYST_CVR;
        err = err ? err : sq_ring_poll(&ring);
        spent = fw_ticks_since(start);
        if (err != SQ_OK) {
            return 4;
        }
        if (sq_ring_staged(&ring) < before) {   /* this poll sealed a block */
            seals += spent;
            worst_seal = spent > worst_seal ? spent : worst_seal;
            n_seals++;
        }
    }
    fw_put(out, "append_ticks ", appends);
    fw_put(out, " ", worst_append);
    fw_put(out, " ", n_samples);
    fw_put(out, "\nseal_ticks ", seals);
    fw_put(out, " ", worst_seal);
    fw_put(out, " ", n_seals);
    sh_write_text(out, "\n");
    return 0;
}

static int run_queries(int in, int out, uint32_t n_queries)
{
    uint8_t head[12];
    uint32_t q, total = 0;
    for (q = 0; q < n_queries; q++) {
        sq_result res;
        uint32_t len, start;
        int64_t now;
        int err;
        if (sh_read(in, head, 12)) {
            return 5;
        }
        len = fw_get_u32(head);
        if (len > CODE_MAX || sh_read(in, code, len)) {
            return 6;
        }
        now = fw_get_i64(head + 4);
        start = SYST_CVR;
        err = sq_query_run(&query_state, code, len, &ring, now, &res);
        total += fw_ticks_since(start);
        fw_put(out, "", err);
        fw_put(out, " ", res.value);
        fw_put(out, " ", res.has_value);
        fw_put(out, " ", res.count);
        fw_put(out, " ", res.blocks_skipped);
        fw_put(out, " ", res.blocks_answered);
        fw_put(out, " ", res.blocks_decoded);
        fw_put(out, " ", res.samples_scanned);
        sh_write_text(out, "\n");
    }
    fw_put(out, "query_ticks ", total);
    sh_write_text(out, "\n");
    return 0;
}

static int export_blocks(void)
{
    sq_ring_iter it;
    const uint8_t *block;
    size_t len;
    int out = sh_open("blocks.bin", 5);
    if (out < 0) {
        return 7;
    }
    sq_ring_iter_begin(&ring, &it);
    while (sq_ring_next(&ring, &it, &block, &len) == SQ_OK && block) {
        sh_write(out, block, len);
    }
    sh_close(out);
    return 0;
}

/* Flash mode (bit 8 of the vector's codec word): the region holds the work
 * memory, then a partition of 256-byte sectors behind read / prog / erase
 * callbacks with NOR semantics (a program ANDs, an erase sets 0xFF) and
 * 4-byte program units, not memory-mapped: the flash path of the library,
 * run on the target. */
#define SECTOR 256u
static uint8_t *partition;

static int nor_read(void *ctx, uint32_t off, uint8_t *buf, uint32_t len)
{
    (void)ctx;
    while (len--) {
        *buf++ = partition[off++];
    }
    return 0;
}

static int nor_prog(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len)
{
    (void)ctx;
    if ((off | len) & 3u) {
        return -1;
    }
    while (len--) {
        partition[off++] &= *buf++;
    }
    return 0;
}

static int nor_erase(void *ctx, uint32_t off)
{
    uint32_t i;
    (void)ctx;
    for (i = 0; i < SECTOR; i++) {
        partition[off + i] = 0xFFu;
    }
    return 0;
}

static int set_up(const sq_stream_cfg *cfg, uint32_t region_len, int flash)
{
    sq_flash fl;
    size_t work;
    if (!flash) {
        return sq_ring_init(&ring, region, region_len, cfg);
    }
    memset(&fl, 0, sizeof fl);
    fl.read = nor_read;
    fl.prog = nor_prog;
    fl.erase = nor_erase;
    fl.sector_size = SECTOR;
    fl.prog_size = 4;
    fl.size = SECTOR;
    work = sq_ring_work_size(cfg, &fl);
    if (!work || work >= region_len) {
        return SQ_ERR_FULL;
    }
    partition = region + work;
    fl.size = (region_len - (uint32_t)work) / SECTOR * SECTOR;
    return sq_ring_format(&ring, cfg, &fl, region, work);
}

int main(void)
{
    uint8_t head[40];
    sq_stream_cfg cfg;
    uint32_t c, region_len;
    int in = sh_open("vector.bin", 1), out = sh_open("answers.txt", 5), step;
    if (in < 0 || out < 0 || sh_read(in, head, 40) || fw_get_u32(head) != 0x31565153u) {
        return 1;
    }
    fw_systick_start();
    fw_calibrate(out);
    cfg.n_channels = (uint8_t)fw_get_u32(head + 4);
    for (c = 0; c < SQ_MAX_CHANNELS; c++) {
        cfg.dtype[c] = c < 8u ? head[8 + c] : 0;     /* the vector format has room for 8 */
    }
    cfg.block_samples = fw_get_u32(head + 16);
    cfg.stream_id = 0;
    cfg.schema = fw_get_u32(head + 32);
    cfg.codec = (uint8_t)fw_get_u32(head + 36);
    region_len = fw_get_u32(head + 20);
    if (region_len > REGION_MAX || set_up(&cfg, region_len, (fw_get_u32(head + 36) >> 8) & 1u) != SQ_OK) {
        return 2;
    }
    step = append_samples(in, out, fw_get_u32(head + 24), cfg.n_channels);
    if (!step) {
        step = run_queries(in, out, fw_get_u32(head + 28));
    }
    if (!step) {
        step = export_blocks();
    }
    fw_put(out, "stack ", (long long)stack_high_water());
    sh_write_text(out, "\n");
    sh_close(out);
    sh_close(in);
    return step;
}
