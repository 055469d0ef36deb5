/* Example firmware: a model scoring its sensor ring, under QEMU (-M microbit).
 *
 * Reads models.bin through semihosting (sensorq/device/models.py,
 * firmware_input): the sensor stream's channels (types and schema hash), the
 * rings' sizes, the samples, and compiled queries with the "now" to run them
 * at.  The model is data: its device image (`sensorq model export --device`,
 * bound on the host to this ring's channels), read at run time from
 * model.sqd (and, at sample `switch_at`, from update.sqd: a new model
 * replaces the old one — new bytes, no reflash).  The loop:
 *
 *   every sample: sq_ring_append + sq_ring_poll (the sensor ring);
 *   then every window that became whole (sq_model_newest; none is skipped,
 *   even after a hole in the data) is scored (sq_model_window) and its class
 *   appended to the output ring, a RAM ring of the model's output stream;
 *   at the end: the queries (`sensorq compile --device "duration where
 *   motion == Running last 10m"`) run over the output ring.
 *
 * Writes scores.txt:
 *   calibration_ticks <ticks> <instructions>
 *   load <status> <ticks> <out_schema> <work bytes>        per model loaded
 *   w <start> <class> <value> <samples> <ticks>             per scored window
 *   q <status> <value> <has_value> <count>                  per query
 *   stack <bytes>
 * Exit status: 0, or the step that failed. */
#include <stdint.h>
#include <string.h>

#include "fw_common.h"
#include "semihost.h"
#include "sensorq.h"

#define SENSOR_REGION 5376u
#define OUT_REGION 5120u
#define MODEL_MAX 1024u
#define WORK_MAX 1600u
#define CODE_MAX 128u

size_t stack_high_water(void);

static uint8_t sensor_region[SENSOR_REGION];
static uint8_t out_region[OUT_REGION];
static uint8_t model_bytes[MODEL_MAX];   /* the model is data: replaced without reflashing */
static uint8_t work[WORK_MAX];           /* the model's working memory */
static uint8_t code[CODE_MAX];
static sq_ring ring, outs;
static sq_model model;
static sq_query_state query_state;
static sq_stream_cfg cfg, out_cfg;
static uint32_t out_block, out_region_len;

/* Read a model's device image into model_bytes and load it (checked; made
 * for this ring: its schema hash).  A new output stream (another schema)
 * starts a new output ring. */
static int load_model(int out, const char *path)
{
    int in = sh_open(path, 1), err;
    uint8_t len4[4];
    uint32_t len, start;
    uint32_t schema = model.bytes ? model.out_schema : 0u;
    if (in < 0 || sh_read(in, len4, 4)) {
        return 20;
    }
    len = fw_get_u32(len4);
    if (len > MODEL_MAX || sh_read(in, model_bytes, len)) {
        return 21;
    }
    sh_close(in);
    start = SYST_CVR;
    err = sq_model_load(&model, model_bytes, len, &cfg);
    fw_put(out, "load ", err);
    fw_put(out, " ", fw_ticks_since(start));
    fw_put(out, " ", err ? 0 : (long long)model.out_schema);
    fw_put(out, " ", (long long)sq_model_work_size(&model));
    sh_write_text(out, "\n");
    if (err || sq_model_work_size(&model) > WORK_MAX) {
        return 22;
    }
    if (model.out_schema != schema) {
        memset(&out_cfg, 0, sizeof out_cfg);
        out_cfg.n_channels = model.kind == SQ_MODEL_ANOMALY_SCORE ? 2u : 1u;
        out_cfg.dtype[0] = model.kind == SQ_MODEL_CLASSES ? (model.n_classes > 127u ? SQ_INT16 : SQ_INT8) : SQ_INT64;
        out_cfg.dtype[1] = SQ_INT8;
        out_cfg.codec = SQ_CODEC_FAST;
        out_cfg.block_samples = out_block;
        out_cfg.schema = model.out_schema;
        if (sq_ring_init(&outs, out_region, out_region_len, &out_cfg) != SQ_OK) {
            return 23;
        }
    }
    return 0;
}

/* Score every window that became whole since the last call. */
static int score_due(int out, int64_t *next)
{
    int64_t newest;
    int err = sq_model_newest(&model, &ring, &newest);
    while (!err && newest != INT64_MIN && *next <= newest) {
        sq_model_out res;
        uint32_t start = SYST_CVR, spent;
        err = sq_model_window(&model, &ring, *next, work, sizeof work, &res);
        spent = fw_ticks_since(start);
        *next += model.hop_ns;
        if (!err && res.scored) {
            int64_t row[2];
            row[0] = model.kind == SQ_MODEL_CLASSES ? res.cls : res.value;
            row[1] = res.cls > 0;
            fw_put(out, "w ", res.start);
            fw_put(out, " ", res.cls);
            fw_put(out, " ", res.value);
            fw_put(out, " ", res.n_samples);
            fw_put(out, " ", spent);
            sh_write_text(out, "\n");
            err = sq_ring_append(&outs, res.start, row);
            err = err ? err : sq_ring_poll(&outs);
        }
    }
    return err;
}

int main(void)
{
    uint8_t head[184], row[8u * 9u];
    int64_t values[8], next = INT64_MIN;
    uint32_t c, i, n_samples, switch_at, n_queries, region_len;
    int in = sh_open("models.bin", 1), out = sh_open("scores.txt", 5), step = 0;
    if (in < 0 || out < 0 || sh_read(in, head, sizeof head) || fw_get_u32(head) != 0x464D5153u) {
        return 1;
    }
    fw_systick_start();
    fw_calibrate(out);
    memset(&cfg, 0, sizeof cfg);
    cfg.n_channels = (uint8_t)fw_get_u32(head + 4);
    cfg.block_samples = fw_get_u32(head + 8);
    region_len = fw_get_u32(head + 12);
    n_samples = fw_get_u32(head + 16);
    switch_at = fw_get_u32(head + 20);
    n_queries = fw_get_u32(head + 24);
    out_block = fw_get_u32(head + 28);
    out_region_len = fw_get_u32(head + 32);
    cfg.codec = (uint8_t)fw_get_u32(head + 36);
    cfg.schema = fw_get_u32(head + 40);          /* the ring's schema hash: the model image names it */
    for (c = 0; c < 8u; c++) {
        cfg.dtype[c] = head[48 + c];
    }
    if (cfg.n_channels > 8u || region_len > SENSOR_REGION || out_region_len > OUT_REGION ||
        sq_ring_init(&ring, sensor_region, region_len, &cfg) != SQ_OK) {
        return 2;
    }
    step = load_model(out, "model.sqd");
    for (i = 0; i < n_samples && !step; i++) {
        int64_t t;
        if (sh_read(in, row, 8u * (1u + cfg.n_channels))) {
            return 3;
        }
        t = fw_get_i64(row);
        for (c = 0; c < cfg.n_channels; c++) {
            values[c] = fw_get_i64(row + 8u * (1u + c));
        }
        if (sq_ring_append(&ring, t, values) != SQ_OK || sq_ring_poll(&ring) != SQ_OK) {
            return 4;
        }
        if (next == INT64_MIN) {          /* the first window starts at or after the first sample (t ≥ 0) */
            next = (int64_t)(((uint64_t)t + (uint64_t)model.hop_ns - 1u) / (uint64_t)model.hop_ns *
                             (uint64_t)model.hop_ns);
        }
        if (i == switch_at) {             /* new model bytes arrived: replace the model */
            step = load_model(out, "update.sqd");
        }
        if (!step && score_due(out, &next) != SQ_OK) {
            step = 5;
        }
    }
    for (i = 0; i < n_queries && !step; i++) {
        sq_result res;
        uint8_t qh[12];
        uint32_t len;
        int err;
        if (sh_read(in, qh, 12) || (len = fw_get_u32(qh)) > CODE_MAX || sh_read(in, code, len)) {
            return 6;
        }
        err = sq_query_run(&query_state, code, len, &outs, fw_get_i64(qh + 4), &res);
        fw_put(out, "q ", err);
        fw_put(out, " ", res.value);
        fw_put(out, " ", res.has_value);
        fw_put(out, " ", (long long)res.count);
        sh_write_text(out, "\n");
    }
    fw_put(out, "stack ", (long long)stack_high_water());
    sh_write_text(out, "\n");
    sh_close(out);
    sh_close(in);
    return step;
}
