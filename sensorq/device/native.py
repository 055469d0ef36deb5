"""The device port's C library, built for the host and called through ctypes.

Used by the tests (and handy at a REPL) to run exactly the code the firmware
runs: ``build_library()`` runs the device port's Makefile into a build
directory, ``DeviceLib(path)`` wraps the calls.  Every C error code becomes a
:class:`DeviceError` carrying the code's name, e.g. ``SQ_ERR_CRC``.
"""
from __future__ import annotations

import ctypes
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SensorqError

DEVICE_PORT = Path(__file__).resolve().parent.parent.parent / "device_port"

# Keep in step with device_port/include/sensorq.h (sq_err).
ERRORS = {0: "SQ_OK", -1: "SQ_ERR_ARG", -2: "SQ_ERR_CORRUPT", -3: "SQ_ERR_VERSION", -4: "SQ_ERR_CRC",
          -5: "SQ_ERR_FULL", -6: "SQ_ERR_ORDER", -7: "SQ_ERR_RANGE", -8: "SQ_ERR_UNSUPPORTED",
          -9: "SQ_ERR_BYTECODE", -10: "SQ_ERR_OVERFLOW", -11: "SQ_ERR_MISMATCH"}
DTYPE_CODES = {"int8": 1, "int16": 2, "int32": 3, "int64": 4}
MAX_CHANNELS = 8
RING_STRUCT_BYTES = 512          # ≥ sizeof(sq_ring) on any host
QUERY_STATE_BYTES = 2048         # ≥ sizeof(sq_query_state) on any host


def query_state():
    """Caller-owned memory for the VM's state (sq_query_state), as firmware keeps a static one."""
    return ctypes.create_string_buffer(QUERY_STATE_BYTES)


class DeviceError(SensorqError):
    """A device-port call returned an error code."""

    def __init__(self, code: int, what: str):
        self.code = code
        self.name = ERRORS.get(code, f"error {code}")
        super().__init__(f"{what}: {self.name}")


class BlockInfo(ctypes.Structure):
    _fields_ = [("n_samples", ctypes.c_uint32), ("n_channels", ctypes.c_uint32),
                ("block_len", ctypes.c_uint32), ("time_len", ctypes.c_uint32),
                ("stream_id", ctypes.c_uint32), ("time_codec", ctypes.c_uint8),
                ("t_first", ctypes.c_int64), ("t_last", ctypes.c_int64), ("tick", ctypes.c_int64),
                ("seq", ctypes.c_uint64)]


class StreamCfg(ctypes.Structure):
    _fields_ = [("n_channels", ctypes.c_uint8), ("dtype", ctypes.c_uint8 * MAX_CHANNELS),
                ("block_samples", ctypes.c_uint32), ("stream_id", ctypes.c_uint32),
                ("schema", ctypes.c_uint32)]


class Result(ctypes.Structure):
    _fields_ = [("value", ctypes.c_int64), ("has_value", ctypes.c_uint8),
                ("aggregate", ctypes.c_uint8), ("count", ctypes.c_uint64),
                ("blocks_skipped", ctypes.c_uint64), ("blocks_answered", ctypes.c_uint64),
                ("blocks_decoded", ctypes.c_uint64), ("samples_scanned", ctypes.c_uint64)]


class RingIter(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint32), ("left", ctypes.c_uint32)]


@dataclass
class DeviceAnswer:
    """What the device answered: value (None when has_value is 0), count and
    how the blocks were handled."""
    value: int | None
    count: int
    skipped: int = 0
    answered: int = 0
    decoded: int = 0
    scanned: int = 0


def missing_host_toolchain() -> str | None:
    """Why the host library cannot be built here (None when it can)."""
    import shutil
    for tool in ("make", "cc"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed: the device port's C library cannot be built"
    return None


def build_library(build_dir: Path, sanitize: bool = False) -> Path:
    """Build libsensorq.so for the host into build_dir; returns its path."""
    args = ["make", "-s", "-C", str(DEVICE_PORT), "host", f"BUILD={build_dir}"]
    if sanitize:
        args.append("SANITIZE=1")
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise SensorqError(f"building the device library failed:\n{done.stdout}{done.stderr}")
    return Path(build_dir) / "host" / "libsensorq.so"


class DeviceLib:
    """ctypes bindings of device_port/include/sensorq.h."""

    def __init__(self, path: Path):
        self.lib = lib = ctypes.CDLL(str(path))
        u8p = ctypes.POINTER(ctypes.c_uint8)
        lib.sq_crc32.restype = ctypes.c_uint32
        lib.sq_crc32.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
        lib.sq_block_verify.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(BlockInfo)]
        lib.sq_block_decode.argtypes = [ctypes.c_char_p, ctypes.POINTER(BlockInfo), ctypes.c_int,
                                        ctypes.POINTER(ctypes.c_int64), ctypes.c_size_t]
        lib.sq_ring_region_min.restype = ctypes.c_size_t
        lib.sq_ring_region_min.argtypes = [ctypes.POINTER(StreamCfg)]
        lib.sq_ring_init.argtypes = [ctypes.c_void_p, u8p, ctypes.c_size_t, ctypes.POINTER(StreamCfg)]
        lib.sq_ring_append.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.POINTER(ctypes.c_int64)]
        lib.sq_ring_seal.argtypes = [ctypes.c_void_p]
        lib.sq_ring_block_count.restype = ctypes.c_uint32
        lib.sq_ring_block_count.argtypes = [ctypes.c_void_p]
        lib.sq_ring_staged.restype = ctypes.c_uint32
        lib.sq_ring_staged.argtypes = [ctypes.c_void_p]
        lib.sq_ring_iter_begin.argtypes = [ctypes.c_void_p, ctypes.POINTER(RingIter)]
        lib.sq_ring_next.argtypes = [ctypes.c_void_p, ctypes.POINTER(RingIter),
                                     ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
        lib.sq_query_check.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.sq_query_run.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p,
                                     ctypes.c_int64, ctypes.POINTER(Result)]
        lib.sq_query_run_blocks.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                            ctypes.c_uint32, ctypes.POINTER(ctypes.c_char_p),
                                            ctypes.POINTER(ctypes.c_size_t), ctypes.c_size_t,
                                            ctypes.c_int64, ctypes.POINTER(Result)]
        lib.sq_version.restype = ctypes.c_char_p
        lib.sq_strerror.restype = ctypes.c_char_p
        lib.sq_strerror.argtypes = [ctypes.c_int]

    def check(self, code: int, what: str) -> None:
        if code != 0:
            raise DeviceError(code, what)

    def version(self) -> str:
        return self.lib.sq_version().decode()

    def crc32(self, data: bytes) -> int:
        return self.lib.sq_crc32(0, data, len(data))

    def verify(self, block: bytes) -> BlockInfo:
        info = BlockInfo()
        self.check(self.lib.sq_block_verify(block, len(block), ctypes.byref(info)), "verify")
        return info

    def decode(self, block: bytes) -> tuple[np.ndarray, list[np.ndarray]]:
        """(t, [int64 columns]) of a block, decoded by the C reader."""
        info = self.verify(block)
        n = info.n_samples
        out = []
        for column in range(-1, info.n_channels):
            values = np.zeros(n, np.int64)
            ptr = values.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
            self.check(self.lib.sq_block_decode(block, ctypes.byref(info), column, ptr, n),
                       f"decode column {column}")
            out.append(values)
        return out[0], out[1:]

    def check_query(self, code: bytes) -> None:
        self.check(self.lib.sq_query_check(query_state(), code, len(code)), "check bytecode")

    def run_blocks(self, code: bytes, blocks: list[bytes], now_ns: int,
                   schema: int | None = None) -> DeviceAnswer:
        """sq_query_run_blocks; schema defaults to the bytecode's own (the
        caller vouches that the blocks are of the stream it was compiled for)."""
        arr = (ctypes.c_char_p * max(1, len(blocks)))(*blocks)
        lens = (ctypes.c_size_t * max(1, len(blocks)))(*[len(b) for b in blocks])
        if schema is None:
            schema = code_schema(code)
        result = Result()
        self.check(self.lib.sq_query_run_blocks(query_state(), code, len(code), schema, arr, lens,
                                                len(blocks), now_ns, ctypes.byref(result)), "query")
        return answer_of(result)

    def ring(self, dtypes: list[str], block_samples: int, region_len: int | None = None,
             stream_id: int = 0, schema: int = 0) -> "Ring":
        return Ring(self, dtypes, block_samples, region_len, stream_id, schema)


def code_schema(code: bytes) -> int:
    """The schema hash a bytecode was compiled for (0 if it is too short to say)."""
    return int.from_bytes(code[28:32], "little") if len(code) >= 32 else 0


def answer_of(result: Result) -> DeviceAnswer:
    return DeviceAnswer(result.value if result.has_value else None, result.count,
                        result.blocks_skipped, result.blocks_answered, result.blocks_decoded,
                        result.samples_scanned)


class Ring:
    """A device ring in a Python-owned region."""

    def __init__(self, dev: DeviceLib, dtypes: list[str], block_samples: int,
                 region_len: int | None, stream_id: int, schema: int = 0):
        self.dev = dev
        cfg = StreamCfg()
        cfg.n_channels = len(dtypes)
        for i, name in enumerate(dtypes):
            cfg.dtype[i] = DTYPE_CODES[name]
        cfg.block_samples = block_samples
        cfg.stream_id = stream_id
        cfg.schema = schema
        self.cfg = cfg
        self.n_channels = len(dtypes)
        need = dev.lib.sq_ring_region_min(ctypes.byref(cfg))
        self.region_len = need if region_len is None else region_len
        self.region = (ctypes.c_uint8 * max(1, self.region_len))()
        self.state = ctypes.create_string_buffer(RING_STRUCT_BYTES)
        dev.check(dev.lib.sq_ring_init(self.state, self.region, self.region_len, ctypes.byref(cfg)),
                  "ring init")

    def append(self, t: int, values) -> None:
        row = (ctypes.c_int64 * self.n_channels)(*[int(v) for v in values])
        self.dev.check(self.dev.lib.sq_ring_append(self.state, int(t), row), "append")

    def append_many(self, t: np.ndarray, columns: list[np.ndarray]) -> None:
        for i in range(len(t)):
            self.append(int(t[i]), [int(c[i]) for c in columns])

    def seal(self) -> None:
        self.dev.check(self.dev.lib.sq_ring_seal(self.state), "seal")

    @property
    def staged(self) -> int:
        return self.dev.lib.sq_ring_staged(self.state)

    def blocks(self) -> list[bytes]:
        """Every sealed block's bytes, oldest first (the export)."""
        it = RingIter()
        self.dev.lib.sq_ring_iter_begin(self.state, ctypes.byref(it))
        out = []
        while True:
            ptr, size = ctypes.c_void_p(), ctypes.c_size_t()
            self.dev.check(self.dev.lib.sq_ring_next(self.state, ctypes.byref(it), ctypes.byref(ptr),
                                                     ctypes.byref(size)), "ring next")
            if not ptr.value:
                return out
            out.append(ctypes.string_at(ptr.value, size.value))

    def query(self, code: bytes, now_ns: int) -> DeviceAnswer:
        """sq_query_run, with the VM state in a Python-owned buffer."""
        result = Result()
        status = self.dev.lib.sq_query_run(query_state(), code, len(code), self.state, now_ns,
                                           ctypes.byref(result))
        self.dev.check(status, "query")
        return answer_of(result)
