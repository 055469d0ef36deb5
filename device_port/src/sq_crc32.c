/* CRC-32 (IEEE 802.3, zlib's polynomial).
 *
 * By default a bit at a time: no table, the least flash on a Cortex-M0+.
 * With SQ_CRC_TABLE a nibble at a time through a 64-byte table: 71 B more
 * flash, and about four times fewer instructions per byte, which a query
 * (every sealed block's CRC is checked before it is read) and a seal feel:
 * device_port/README.md, "Footprint", gives both sets of figures. */
#include "sensorq.h"

#ifdef SQ_CRC_TABLE
static const uint32_t sq_crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};
#endif

uint32_t sq_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
#ifdef SQ_CRC_TABLE
        crc = (crc >> 4) ^ sq_crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ sq_crc_nibble[crc & 15u];
#else
        unsigned k;
        for (k = 8; k--;) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
#endif
    }
    return ~crc;
}
