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
          -9: "SQ_ERR_BYTECODE", -10: "SQ_ERR_OVERFLOW", -11: "SQ_ERR_MISMATCH", -12: "SQ_ERR_IO"}
DTYPE_CODES = {"int8": 1, "int16": 2, "int32": 3, "int64": 4}
MAX_CHANNELS = 16
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
                ("version", ctypes.c_uint8), ("dir_off", ctypes.c_uint32), ("sec_off", ctypes.c_uint32),
                ("t_first", ctypes.c_int64), ("t_last", ctypes.c_int64), ("tick", ctypes.c_int64),
                ("seq", ctypes.c_uint64)]


class StreamCfg(ctypes.Structure):
    _fields_ = [("n_channels", ctypes.c_uint8), ("dtype", ctypes.c_uint8 * MAX_CHANNELS),
                ("codec", ctypes.c_uint8), ("block_samples", ctypes.c_uint32), ("stream_id", ctypes.c_uint32),
                ("schema", ctypes.c_uint32)]


class Result(ctypes.Structure):
    _fields_ = [("value", ctypes.c_int64), ("has_value", ctypes.c_uint8),
                ("aggregate", ctypes.c_uint8), ("count", ctypes.c_uint64),
                ("blocks_skipped", ctypes.c_uint64), ("blocks_answered", ctypes.c_uint64),
                ("blocks_decoded", ctypes.c_uint64), ("samples_scanned", ctypes.c_uint64)]


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


def build_library(build_dir: Path, sanitize: bool = False, options: tuple = ()) -> Path:
    """Build libsensorq.so for the host into build_dir; returns its path.
    options: Makefile variables, e.g. ("READ_V1=1",) or ("NO_COMPACT=1",)."""
    args = ["make", "-s", "-C", str(DEVICE_PORT), "host", f"BUILD={build_dir}", *options]
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
        lib.sq_ring_block_count.restype = ctypes.c_uint32
        lib.sq_ring_block_count.argtypes = [ctypes.c_void_p]
        lib.sq_ring_staged.restype = ctypes.c_uint32
        lib.sq_ring_staged.argtypes = [ctypes.c_void_p]
        _bind_ring_calls(lib)
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
             stream_id: int = 0, schema: int = 0, **flash) -> "Ring":
        """A RAM ring (region_len bytes, default the minimum), or with flash=
        a flash ring (see :class:`Ring`)."""
        return Ring(self, dtypes, block_samples, region_len, stream_id, schema, **flash)


def code_schema(code: bytes) -> int:
    """The schema hash a bytecode was compiled for (0 if it is too short to say)."""
    return int.from_bytes(code[28:32], "little") if len(code) >= 32 else 0


def answer_of(result: Result) -> DeviceAnswer:
    return DeviceAnswer(result.value if result.has_value else None, result.count,
                        result.blocks_skipped, result.blocks_answered, result.blocks_decoded,
                        result.samples_scanned)


READ_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32,
                           ctypes.POINTER(ctypes.c_uint8), ctypes.c_uint32)
PROG_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32,
                           ctypes.POINTER(ctypes.c_uint8), ctypes.c_uint32)
ERASE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32)
SYNC_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class Flash(ctypes.Structure):
    _fields_ = [("read", READ_FN), ("prog", PROG_FN), ("erase", ERASE_FN), ("sync", SYNC_FN),
                ("ctx", ctypes.c_void_p), ("mapped", ctypes.c_void_p), ("size", ctypes.c_uint32),
                ("sector_size", ctypes.c_uint32), ("prog_size", ctypes.c_uint32)]


class RingStats(ctypes.Structure):
    _fields_ = [("blocks", ctypes.c_uint32), ("staged", ctypes.c_uint32),
                ("oldest_seq", ctypes.c_uint64), ("next_seq", ctypes.c_uint64),
                ("blocks_evicted", ctypes.c_uint64), ("oldest_t", ctypes.c_int64),
                ("newest_t", ctypes.c_int64), ("has_data", ctypes.c_uint8),
                ("bank_size", ctypes.c_uint32), ("capacity", ctypes.c_uint32), ("bytes_used", ctypes.c_uint32),
                ("bytes_free", ctypes.c_uint32), ("samples_dropped", ctypes.c_uint32),
                ("erase_min", ctypes.c_uint32), ("erase_max", ctypes.c_uint32)]


class RingIterState(ctypes.Structure):
    _fields_ = [("bank", ctypes.c_uint32), ("off", ctypes.c_uint32), ("next", ctypes.c_uint64),
                ("missed", ctypes.c_uint64), ("done", ctypes.c_uint8)]


def _bind_ring_calls(lib) -> None:
    u8p = ctypes.POINTER(ctypes.c_uint8)
    cfgp, flp = ctypes.POINTER(StreamCfg), ctypes.POINTER(Flash)
    lib.sq_ring_work_size.restype = ctypes.c_size_t
    lib.sq_ring_work_size.argtypes = [cfgp, flp]
    for name in ("sq_ring_format", "sq_ring_mount", "sq_ring_resume"):
        getattr(lib, name).argtypes = [ctypes.c_void_p, cfgp, flp, u8p, ctypes.c_size_t]
    lib.sq_ring_reopen.argtypes = [ctypes.c_void_p, u8p, ctypes.c_size_t, cfgp]
    for name in ("sq_ring_close", "sq_ring_poll", "sq_ring_flush"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.sq_ring_stats_get.argtypes = [ctypes.c_void_p, ctypes.POINTER(RingStats)]
    lib.sq_ring_iter_begin.argtypes = [ctypes.c_void_p, ctypes.POINTER(RingIterState)]
    lib.sq_ring_iter_after.argtypes = [ctypes.c_void_p, ctypes.POINTER(RingIterState),
                                       ctypes.c_uint64]
    lib.sq_ring_next.argtypes = [ctypes.c_void_p, ctypes.POINTER(RingIterState),
                                 ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]


CODECS = {"fast": 0, "compact": 1}


def stream_cfg(dtypes: list[str], block_samples: int, stream_id: int = 0, schema: int = 0,
               codec: str = "compact") -> StreamCfg:
    cfg = StreamCfg()
    cfg.codec = CODECS[codec]
    cfg.n_channels = len(dtypes)
    for i, name in enumerate(dtypes):
        cfg.dtype[i] = DTYPE_CODES[name]
    cfg.block_samples = block_samples
    cfg.stream_id = stream_id
    cfg.schema = schema
    return cfg


class Ring:
    """A device ring: in a Python-owned RAM region (sq_ring_init), or on a
    flash partition given as an object with read / prog / erase (/ sync)
    methods and sector_size, prog_size and size attributes (sq_ring_format or,
    with mount=True, sq_ring_mount; mount="resume", sq_ring_resume, keeping
    what a retained ``work`` holds), its work memory Python-owned.

    ``append`` polls after every sample by default, as a main loop that keeps
    up with its appends; ``poll=False`` leaves sealing to ``poll()``."""

    def __init__(self, dev: DeviceLib, dtypes: list[str], block_samples: int,
                 region_len: int | None = None, stream_id: int = 0, schema: int = 0,
                 flash=None, mount: bool = False, work=None, codec: str = "compact"):
        self.dev = dev
        self.codec = codec
        self.cfg = stream_cfg(dtypes, block_samples, stream_id, schema, codec)
        self.n_channels = len(dtypes)
        self.state = ctypes.create_string_buffer(RING_STRUCT_BYTES)
        self.flash = flash
        if flash is None:
            need = dev.lib.sq_ring_region_min(ctypes.byref(self.cfg))
            self.region_len = need if region_len is None else region_len
            self.region = (ctypes.c_uint8 * max(1, self.region_len))()
            call = dev.lib.sq_ring_reopen if mount else dev.lib.sq_ring_init
            self.status = call(self.state, self.region, self.region_len, ctypes.byref(self.cfg))
        else:
            self.fl = flash_struct(flash)
            need = dev.lib.sq_ring_work_size(ctypes.byref(self.cfg), ctypes.byref(self.fl))
            self.work = work if work is not None else (ctypes.c_uint8 * max(1, need))()
            call = {False: dev.lib.sq_ring_format, True: dev.lib.sq_ring_mount,
                    "resume": dev.lib.sq_ring_resume}[mount]
            self.status = call(self.state, ctypes.byref(self.cfg), ctypes.byref(self.fl), self.work,
                               max(need, ctypes.sizeof(self.work)))
        dev.check(self.status, "ring mount" if mount else "ring init")

    def reopen(self) -> None:
        """sq_ring_reopen on this ring's region (a RAM ring kept across a reset)."""
        self.state = ctypes.create_string_buffer(RING_STRUCT_BYTES)
        self.dev.check(self.dev.lib.sq_ring_reopen(self.state, self.region, self.region_len,
                                                   ctypes.byref(self.cfg)), "ring reopen")

    def try_append(self, t: int, values) -> int:
        """sq_ring_append's status, not raised (SQ_ERR_FULL is part of the protocol)."""
        row = (ctypes.c_int64 * self.n_channels)(*[int(v) for v in values])
        return self.dev.lib.sq_ring_append(self.state, int(t), row)

    def append(self, t: int, values, poll: bool = True) -> None:
        self.dev.check(self.try_append(t, values), "append")
        if poll:
            self.poll()

    def append_many(self, t: np.ndarray, columns: list[np.ndarray], poll: bool = True) -> None:
        for i in range(len(t)):
            self.append(int(t[i]), [int(c[i]) for c in columns], poll)

    def close(self) -> None:
        self.dev.check(self.dev.lib.sq_ring_close(self.state), "close")

    def poll(self) -> None:
        self.dev.check(self.dev.lib.sq_ring_poll(self.state), "poll")

    def flush(self) -> None:
        self.dev.check(self.dev.lib.sq_ring_flush(self.state), "flush")

    seal = flush

    @property
    def staged(self) -> int:
        return self.dev.lib.sq_ring_staged(self.state)

    @property
    def block_count(self) -> int:
        return self.dev.lib.sq_ring_block_count(self.state)

    def stats(self) -> RingStats:
        st = RingStats()
        self.dev.check(self.dev.lib.sq_ring_stats_get(self.state, ctypes.byref(st)), "stats")
        return st

    def blocks(self) -> list[bytes]:
        """Every sealed block's bytes, oldest first (the export)."""
        it = RingIterState()
        self.dev.lib.sq_ring_iter_begin(self.state, ctypes.byref(it))
        return self._drain(it)

    def blocks_after(self, seq: int) -> tuple[list[bytes], int]:
        """The export cursor: (blocks with a sequence number > seq, how many of those were evicted)."""
        it = RingIterState()
        self.dev.lib.sq_ring_iter_after(self.state, ctypes.byref(it), seq)
        missed = it.missed
        return self._drain(it), missed

    def _drain(self, it) -> list[bytes]:
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


def flash_struct(flash) -> Flash:
    """An sq_flash whose callbacks call flash.read(off, n) -> bytes, flash.prog(off, data),
    flash.erase(off) and flash.sync() (each returning True on success); with
    flash.mapped true, the library reads flash.mem (a numpy array) in place.
    The callbacks are kept alive on the returned structure."""
    def read(_ctx, off, buf, n):
        data = flash.read(off, n)
        if data is None:
            return -1
        ctypes.memmove(buf, data, n)
        return 0

    def prog(_ctx, off, buf, n):
        return 0 if flash.prog(off, ctypes.string_at(buf, n)) else -1

    def erase(_ctx, off):
        return 0 if flash.erase(off) else -1

    def sync(_ctx):
        return 0 if flash.sync() else -1

    mapped = flash.mem.ctypes.data if getattr(flash, "mapped", False) else None
    fl = Flash(READ_FN(read), PROG_FN(prog), ERASE_FN(erase),
               SYNC_FN(sync) if hasattr(flash, "sync") else SYNC_FN(), None, mapped,
               flash.size, flash.sector_size, flash.prog_size)
    fl._keep = (fl.read, fl.prog, fl.erase, fl.sync)
    return fl
