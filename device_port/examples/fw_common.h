/* What both example firmwares need around the library: little-endian reads
 * of their input files, SysTick timing (turned into instructions under QEMU's
 * -icount by a calibration loop) and labelled numbers written to a file. */
#ifndef FW_COMMON_H
#define FW_COMMON_H

#include <stdint.h>

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

/* Ticks since SYST_CVR read `start` (SysTick counts down, 24 bits).  Inline,
 * as each firmware's own copy was, so that timing an append adds no call. */
static inline uint32_t fw_ticks_since(uint32_t start)
{
    return (start - SYST_CVR) & 0xFFFFFFu;
}

uint32_t fw_get_u32(const uint8_t *p);
int64_t fw_get_i64(const uint8_t *p);
void fw_put(int out, const char *label, long long value);   /* label, then the decimal value */
void fw_systick_start(void);                                 /* free-running, processor clock */
void fw_calibrate(int out);   /* "calibration_ticks <ticks> <instructions>" for a known loop */

#endif
