/* ARM semihosting by hand (see semihost.h).  QEMU must run with
 * -semihosting-config enable=on,target=native, or bkpt faults. */
#include "semihost.h"

#include <stdint.h>

enum { SYS_OPEN = 0x01, SYS_CLOSE = 0x02, SYS_WRITE = 0x05, SYS_READ = 0x06,
       SYS_EXIT = 0x18, SYS_EXIT_EXTENDED = 0x20 };
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static size_t length(const char *s)
{
    size_t n = 0;
    while (s[n]) {
        n++;
    }
    return n;
}

int sh_open(const char *path, int mode)
{
    uintptr_t args[3] = {(uintptr_t)path, (uintptr_t)mode, length(path)};
    return semihost(SYS_OPEN, args);
}

int sh_read(int handle, void *buf, size_t len)
{
    uintptr_t args[3] = {(uintptr_t)handle, (uintptr_t)buf, len};
    return semihost(SYS_READ, args);
}

int sh_write(int handle, const void *buf, size_t len)
{
    uintptr_t args[3] = {(uintptr_t)handle, (uintptr_t)buf, len};
    return semihost(SYS_WRITE, args);
}

int sh_close(int handle)
{
    uintptr_t args[1] = {(uintptr_t)handle};
    return semihost(SYS_CLOSE, args);
}

void sh_exit(int status)
{
    uintptr_t args[2] = {ADP_STOPPED_APPLICATION_EXIT, (uintptr_t)status};
    semihost(SYS_EXIT_EXTENDED, args);
    for (;;) {
        semihost(SYS_EXIT, (const void *)ADP_STOPPED_APPLICATION_EXIT);
    }
}

void sh_write_text(int handle, const char *text)
{
    sh_write(handle, text, length(text));
}

void sh_write_int(int handle, long long value)
{
    char buf[24];
    int i = 23;
    unsigned long long magnitude = value < 0 ? 0ull - (unsigned long long)value : (unsigned long long)value;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + magnitude % 10u);
        magnitude /= 10u;
    } while (magnitude);
    if (value < 0) {
        buf[--i] = '-';
    }
    sh_write_text(handle, buf + i);
}
