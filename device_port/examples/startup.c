/* Reset handler and vector table for the example firmware on QEMU's microbit
 * machine: copy .data, zero .bss, paint the stack (to measure its high-water
 * mark), run main, exit through semihosting with main's status.  Our own
 * start-up, because newlib's rdimon start-up hangs on QEMU's Cortex-M machines. */
#include <stddef.h>
#include <stdint.h>

#include "semihost.h"

#define STACK_PAINT 0xA5u

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

/* Bytes of stack used so far: the lowest address whose paint was overwritten. */
size_t stack_high_water(void)
{
    const uint8_t *p = (const uint8_t *)&_ebss;
    while (p < (const uint8_t *)&_estack && *p == STACK_PAINT) {
        p++;
    }
    return (size_t)((const uint8_t *)&_estack - p);
}

void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    while (n--) {
        *d++ = (uint8_t)c;
    }
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) {
        *d++ = *s++;
    }
    return dst;
}

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    uint8_t *p, *sp;
    while (dst < &_edata) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss; dst++) {
        *dst = 0;
    }
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (p = (uint8_t *)&_ebss; p < sp - 32; p++) {
        *p = STACK_PAINT;
    }
    sh_exit(main());
}

static void Fault_Handler(void)
{
    sh_exit(99);
}

__attribute__((section(".isr_vector"), used))
static void (*const vectors[16])(void) = {
    (void (*)(void))&_estack, Reset_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler, Fault_Handler, 0, 0, 0, 0, Fault_Handler,
    Fault_Handler, 0, Fault_Handler, Fault_Handler,
};
