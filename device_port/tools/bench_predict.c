/* Prediction benchmark for QEMU -M microbit: one model over given feature
 * rows, timed with SysTick — emlearn's generated C (-DBENCH_EMLEARN, the
 * header from tools/emlearn_compare.py: float features) or sensorq's scorer
 * on the model's device image (sq_model_load, then sq_model_predict on the
 * integer codes; -DSQ_MODEL_KINDS=SQ_MODEL_TREES keeps only the trees).
 * Reads bench.bin (u32 rows, u32 values a row, then rows of 4-byte values)
 * and, for sensorq, model.sqd (u32 length, the image) and channels.bin (u32
 * count, u32 schema hash, then a dtype code a channel); writes bench.txt:
 * calibration_ticks, one class a row,
 * "ticks <sum> <max>", "stack <bytes>". */
#include <stdint.h>
#include <string.h>

#include "fw_common.h"
#include "semihost.h"

#define MAX_VALUES 64u

size_t stack_high_water(void);

#ifdef BENCH_EMLEARN
#include "bench_model.h"          /* bench_predict(row, n): the model under test (or a stub) */
static BENCH_TYPE row[MAX_VALUES];
#else
#include "sensorq.h"
static int32_t row[MAX_VALUES];
static uint8_t model_bytes[2048];
static uint8_t work[512];
static sq_model model;
#endif

#ifndef BENCH_EMLEARN
static int load(void)
{
    uint8_t head[8], dtypes[16];
    sq_stream_cfg cfg;
    uint32_t len, n, i;
    int in = sh_open("model.sqd", 1);
    if (in < 0 || sh_read(in, head, 4) || (len = fw_get_u32(head)) > sizeof model_bytes || sh_read(in, model_bytes, len)) {
        return 10;
    }
    sh_close(in);
    in = sh_open("channels.bin", 1);
    if (in < 0 || sh_read(in, head, 8) || (n = fw_get_u32(head)) > 16u || sh_read(in, dtypes, n)) {
        return 11;
    }
    sh_close(in);
    memset(&cfg, 0, sizeof cfg);
    cfg.n_channels = (uint8_t)n;
    cfg.block_samples = 8;
    cfg.schema = fw_get_u32(head + 4);
    for (i = 0; i < n; i++) {
        cfg.dtype[i] = dtypes[i];
    }
    return sq_model_load(&model, model_bytes, len, &cfg) == SQ_OK ? 0 : 12;
}
#endif

int main(void)
{
    uint8_t head[8];
    uint32_t n_rows, n_values, i, total = 0, worst = 0;
    int in = sh_open("bench.bin", 1), out = sh_open("bench.txt", 5);
    if (in < 0 || out < 0 || sh_read(in, head, 8)) {
        return 1;
    }
    n_rows = fw_get_u32(head);
    n_values = fw_get_u32(head + 4);
    if (n_values > MAX_VALUES) {
        return 2;
    }
    fw_systick_start();
    fw_calibrate(out);
#ifndef BENCH_EMLEARN
    if (load()) {
        return 3;
    }
#endif
    for (i = 0; i < n_rows; i++) {
        uint32_t start, spent;
        int32_t cls;
        if (sh_read(in, row, sizeof row[0] * n_values)) {
            return 4;
        }
        start = SYST_CVR;
#ifdef BENCH_EMLEARN
        cls = bench_predict(row, (int32_t)n_values);
#else
        {
            sq_model_out res;
            cls = sq_model_predict(&model, row, work, sizeof work, &res) == SQ_OK ? res.cls : -100;
        }
#endif
        spent = fw_ticks_since(start);
        total += spent;
        worst = spent > worst ? spent : worst;
        fw_put(out, "", cls);
        sh_write_text(out, "\n");
    }
    fw_put(out, "ticks ", total);
    fw_put(out, " ", worst);
    fw_put(out, "\nstack ", (long long)stack_high_water());
    sh_write_text(out, "\n");
    sh_close(out);
    return 0;
}
