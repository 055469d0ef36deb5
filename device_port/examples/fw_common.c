/* Shared by fw_main.c and fw_models.c: see fw_common.h. */
#include "fw_common.h"

#include "semihost.h"

uint32_t fw_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int64_t fw_get_i64(const uint8_t *p)
{
    return (int64_t)((uint64_t)fw_get_u32(p) | (uint64_t)fw_get_u32(p + 4) << 32);
}

void fw_put(int out, const char *label, long long value)
{
    sh_write_text(out, label);
    sh_write_int(out, value);
}

void fw_systick_start(void)
{
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 5u;                             /* enable, processor clock */
}

/* SysTick ticks for a loop of known length (3 instructions a turn: subs, cmp
 * and a taken branch), to turn ticks into instructions under -icount. */
void fw_calibrate(int out)
{
    uint32_t turns = 100000u, start = SYST_CVR;
    __asm__ volatile("1: sub %0, #1\n cmp %0, #0\n bne 1b" : "+l"(turns) : : "cc");
    fw_put(out, "calibration_ticks ", fw_ticks_since(start));
    fw_put(out, " ", 300000);
    sh_write_text(out, "\n");
}
