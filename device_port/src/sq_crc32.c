/* CRC-32 (IEEE 802.3, zlib's polynomial), a bit at a time: no table, the
 * least flash on a Cortex-M0+ (a nibble table took 64 B of it and 52 B of
 * code; the bit loop is about four times slower per byte). */
#include "sensorq.h"

uint32_t sq_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    unsigned k;
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (k = 8; k--;) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}
