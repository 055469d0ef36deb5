/* Names of the error codes (sensorq.h). */
#include "sensorq.h"

const char *sq_version(void)
{
    return SQ_VERSION_STRING;
}

const char *sq_strerror(int err)
{
    switch (err) {
    case SQ_OK: return "ok";
    case SQ_ERR_ARG: return "bad argument";
    case SQ_ERR_CORRUPT: return "corrupt block or model";
    case SQ_ERR_VERSION: return "unknown format, bytecode or model version";
    case SQ_ERR_CRC: return "checksum mismatch";
    case SQ_ERR_FULL: return "region too small";
    case SQ_ERR_ORDER: return "timestamp out of order";
    case SQ_ERR_RANGE: return "value out of its range";
    case SQ_ERR_UNSUPPORTED: return "not supported on the device";
    case SQ_ERR_BYTECODE: return "malformed bytecode";
    case SQ_ERR_OVERFLOW: return "sum does not fit in int64";
    case SQ_ERR_MISMATCH: return "query or model made for another stream";
    case SQ_ERR_IO: return "storage callback failed";
    default: return "unknown error";
    }
}
