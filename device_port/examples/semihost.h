/* A few ARM semihosting calls (bkpt 0xAB), enough to read a test vector from
 * the host, write answers back and exit with a status: no C library needed. */
#ifndef SEMIHOST_H
#define SEMIHOST_H

#include <stddef.h>

int sh_open(const char *path, int mode);          /* mode 1 "rb", 5 "wb"; -1 on failure */
int sh_read(int handle, void *buf, size_t len);    /* 0 when all len bytes were read */
int sh_write(int handle, const void *buf, size_t len);
int sh_close(int handle);
void sh_exit(int status) __attribute__((noreturn));
void sh_write_text(int handle, const char *text);
void sh_write_int(int handle, long long value);   /* decimal */

#endif
