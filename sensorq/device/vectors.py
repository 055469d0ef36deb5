"""Shared test vectors of the device port (tests/vectors/), and the firmware's
input and output formats.

A vector is three files:

* ``NAME.bin`` — what the example firmware reads (device_port/examples/fw_main.c):
  a 40-byte header ("SQV1", u32 n_channels, u8 dtype[8], u32 block_samples,
  u32 region_len, u32 n_samples, u32 n_queries, u32 schema hash, u32 codec | 0x100 for a
  flash partition), the samples (i64 t then one
  i64 per channel), then the queries (u32 length, i64 now_ns, bytecode);
* ``NAME.json`` — the stream, the query texts and the expected answers (raw
  units), computed by :mod:`sensorq.device.reference` over the samples the
  ring still holds;
* ``NAME.blocks`` — the ring's sealed blocks after every append, oldest first:
  the host's ``encode_block(..., codec="compact", version=2)`` of those samples, which the
  device must write byte for byte.

``python -m sensorq.device.vectors DIR`` regenerates them (deterministic).
"""
from __future__ import annotations

import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codec.block import encode_block, parse_block
from ..codec.header import ALL_VERSIONS
from ..query.planner import plan_query
from ..schema import Channel, Stream
from .bytecode import compile_plan, schema_hash
from .reference import expected_answer

MAGIC = b"SQV1"
HEADER = struct.Struct("<4sI8sIIIIII")
assert HEADER.size == 40
CODECS = {"fast": 0, "compact": 1}
DTYPE_CODES = {"int8": 1, "int16": 2, "int32": 3, "int64": 4}
FIRMWARE_REGION_MAX = 13312          # REGION_MAX in fw_main.c


@dataclass
class Vector:
    name: str
    stream: Stream
    t: np.ndarray
    columns: list[np.ndarray]
    region_len: int
    queries: list[str]
    codec: str = "compact"       # what the device seals with (sq_stream_cfg.codec)
    flash: bool = False          # the firmware's ring on a partition behind NOR callbacks


def firmware_input(vector: Vector, codes: list[tuple[bytes, int]]) -> bytes:
    """The bytes fw_main.c reads: header, samples, (bytecode, now) pairs."""
    dtypes = bytes(DTYPE_CODES[c.dtype] for c in vector.stream.channels).ljust(8, b"\0")
    header = HEADER.pack(MAGIC, len(vector.stream.channels), dtypes, vector.stream.block_samples,
                         vector.region_len, len(vector.t), len(codes), schema_hash(vector.stream),
                         CODECS[vector.codec] | (0x100 if vector.flash else 0))
    rows = np.column_stack([vector.t.astype(np.int64)] + [c.astype(np.int64) for c in vector.columns])
    body = [struct.pack("<Iq", len(code), now) + code for code, now in codes]
    return header + rows.astype("<i8").tobytes() + b"".join(body)


@dataclass
class FirmwareAnswer:
    status: int
    value: int
    has_value: bool
    count: int
    skipped: int
    answered: int
    decoded: int
    scanned: int


def read_answers(text: str) -> tuple[list[FirmwareAnswer], dict[str, list[int]]]:
    """answers.txt → (one answer per query, {"append_ticks": [...], "stack": [...], ...})."""
    answers, figures = [], {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0].lstrip("-").isdigit():
            v = [int(p) for p in parts]
            answers.append(FirmwareAnswer(v[0], v[1], bool(v[2]), *v[3:8]))
        else:
            figures[parts[0]] = [int(p) for p in parts[1:]]
    return answers, figures


def block_length(data: bytes, at: int = 0) -> int:
    """The length the block at data[at:] says it has: a u32 at offset 12 in
    format version 1, a varint at offset 5 in version 2."""
    if data[at + 4] == 1:
        return int.from_bytes(data[at + 12:at + 16], "little")
    length, shift, pos = 0, 0, at + 5
    while True:
        length |= (data[pos] & 0x7F) << shift
        if data[pos] < 0x80:
            return length
        pos, shift = pos + 1, shift + 7


def block_info(block: bytes):
    """parse_block for blocks of either format version (the device writes 2)."""
    return parse_block(block, versions=ALL_VERSIONS)


def blocks_of(data: bytes) -> list[bytes]:
    """Split concatenated blocks."""
    out, at = [], 0
    while at < len(data):
        length = block_length(data, at)
        out.append(data[at:at + length])
        at += length
    return out


def host_blocks(vector: Vector, from_seq: int) -> list[bytes]:
    """The blocks (format version 2, compact codec) of whole blocks from sequence number from_seq on."""
    b = vector.stream.block_samples
    n_sealed = len(vector.t) // b
    return [encode_block(vector.t[s * b:(s + 1) * b], [c[s * b:(s + 1) * b] for c in vector.columns],
                         seq=s, codec=vector.codec, version=2) for s in range(from_seq, n_sealed)]


def plan(vector: Vector, text: str):
    newest = int(vector.t[-1])
    return plan_query(text, {vector.stream.name: vector.stream}, lambda _s: newest, "data")


def expected_for(vector: Vector, from_seq: int) -> list[dict]:
    """Expected answers over the samples the ring keeps (from block from_seq on)."""
    keep = from_seq * vector.stream.block_samples
    t, cols = vector.t[keep:], [c[keep:] for c in vector.columns]
    out = []
    for text in vector.queries:
        p = plan(vector, text)
        e = expected_answer(p, t, cols)
        out.append({"text": text, "now_ns": p.now.ns,
                    "status": "SQ_ERR_OVERFLOW" if e.overflow else "SQ_OK",
                    "value": e.value, "count": e.count})
    return out


# --- the vectors -----------------------------------------------------------------------

def imu_vector() -> Vector:
    """3-axis accelerometer (int16, mg) at 100 Hz, shocks on z; the ring is
    too small for all of it, so the oldest blocks are evicted."""
    rng = np.random.default_rng(4)
    n = 1000
    t = 1_764_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 10_000_000
    x = rng.normal(0, 40, n)
    y = rng.normal(0, 40, n)
    z = 1000 + rng.normal(0, 30, n)
    for at in (150, 420, 700, 910):
        z[at:at + 12] += 2500 * np.sin(np.linspace(0, np.pi, 12))
    cols = [np.rint(a).astype(np.int16) for a in (x, y, z)]
    stream = Stream("imu", tuple(Channel(c, "int16", "mg") for c in "xyz"), block_samples=64)
    queries = ["count", "count where z > 2g", "count where z > 2g last 3s", "max z last 5s",
               "min x where z > 1500mg", "sum y where x > 0 and not z < 1g", "avg z last 2s",
               "first x where z > 2g", "last y where z > 2g or x < -100mg", "avg x",
               "count where x == 0 or y == 0", "sum z where z != 1000"]
    return Vector("imu", stream, t, cols, 10240, queries)


def mixed_vector() -> Vector:
    """int8, int32, int64 and scaled int16 channels, irregular time, extreme
    values; the int64 channel's sum overflows."""
    rng = np.random.default_rng(9)
    n = 500
    t = 1_000_000 + np.cumsum(rng.integers(0, 5, n)).astype(np.int64) * 1_000_000
    state = rng.choice(np.array([-128, -1, 0, 1, 127], np.int8), n)
    pressure = (101_325 + np.cumsum(rng.integers(-40, 41, n))).astype(np.int32)
    counter = np.where(rng.random(n) < 0.1, 2**62, rng.integers(-1000, 1000, n)).astype(np.int64)
    temp = (2450 + np.cumsum(rng.integers(-7, 8, n))).astype(np.int16)      # 0.01 degC steps
    stream = Stream("plant", (Channel("state", "int8"), Channel("pressure", "int32", "Pa"),
                              Channel("counter", "int64"), Channel("temp", "int16", "degC", 0.01)),
                    block_samples=33)
    queries = ["count where state == 127", "sum pressure where state >= 0",
               "min pressure last 200ms", "max counter where counter < 1000",
               "sum counter", "avg pressure where state != -1 and counter > 0",
               "first state where pressure > 101400", "last pressure where state < 0 last 1s",
               "avg temp where temp > 24.5degC", "max temp last 1s", "sum temp where state == 0",
               "count where temp >= 76.1degF and pressure < 101500"]
    return Vector("mixed", stream, t, [state, pressure, counter, temp], 10240, queries, "fast")


VECTORS = {"imu": imu_vector, "mixed": mixed_vector}


def compile_queries(vector: Vector) -> list[tuple[bytes, int]]:
    out = []
    for text in vector.queries:
        p = plan(vector, text)
        out.append((compile_plan(p, vector.stream), p.now.ns))
    return out


def write_vectors(out_dir: Path, surviving_from) -> None:
    """Write every vector; surviving_from(vector) is the oldest block's sequence
    number the ring keeps (computed by the caller, e.g. with the C library)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, make in VECTORS.items():
        vector = make()
        from_seq = surviving_from(vector)
        codes = compile_queries(vector)
        (out_dir / f"{name}.bin").write_bytes(firmware_input(vector, codes))
        (out_dir / f"{name}.blocks").write_bytes(b"".join(host_blocks(vector, from_seq)))
        meta = {"name": name, "stream": vector.stream.to_json(), "region_len": vector.region_len, "codec": vector.codec,
                "n_samples": len(vector.t), "surviving_from_seq": from_seq,
                "queries": expected_for(vector, from_seq)}
        (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")


def _surviving_with_c_library(vector: Vector) -> int:
    import tempfile

    from .native import DeviceLib, build_library
    dev = DeviceLib(build_library(Path(tempfile.mkdtemp())))
    ring = dev.ring([c.dtype for c in vector.stream.channels], vector.stream.block_samples,
                    region_len=vector.region_len, schema=schema_hash(vector.stream), codec=vector.codec)
    ring.append_many(vector.t, vector.columns)
    blocks = ring.blocks()
    return block_info(blocks[0]).seq if blocks else 0


if __name__ == "__main__":
    write_vectors(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/vectors"), _surviving_with_c_library)
