"""Typed plan → device bytecode (the format is documented in docs/device.md).

The device port (device_port/src/sq_vm.c) runs a small, versioned program:
a 32-byte header (aggregate, channel, time window relative to the "now" given
at run time, the hash of the stream's schema), a postfix predicate over raw
integer comparisons, and a CRC-32.
Only what the device can do in integer arithmetic compiles; anything else
raises :class:`~sensorq.errors.DeviceUnsupportedError` naming the construct.

    code = compile_for_device(cache, "count where z > 2g last 10m")
    print(format_c_array(code))          # what `sensorq compile --device` prints
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Optional

from ..checksum import crc32
from ..errors import DeviceUnsupportedError, SensorqError
from ..query import plan as P
from ..schema import DTYPE_CODES

MAGIC = b"SQQ1"
VERSION = 2
VERSION_TIMED = 3        # duration and episode search: the header adds gap and minimum duration
# magic, version, agg, channel, flags, n_channels, length, start, end, schema hash
HEADER = struct.Struct("<4sBBBBHHqqI")
assert HEADER.size == 32
TIMED = struct.Struct("<qq")     # version 3: gap (ns, 0: none), minimum episode duration (ns)
CRC_SIZE = 4
MAX_LENGTH = 0xFFFF
NO_CHANNEL = 0xFF
FLAG_START, FLAG_END = 1, 2

AGGREGATE_CODES = {"count": 0, "sum": 1, "min": 2, "max": 3, "avg": 4, "first": 5, "last": 6,
                   "duration": 7, "episodes": 8}
TIMED_AGGREGATES = ("duration", "episodes")
AGGREGATE_NAMES = {code: name for name, code in AGGREGATE_CODES.items()}
OP_TRUE, OP_FALSE, OP_NOT, OP_AND, OP_OR, OP_CMP = 0x01, 0x02, 0x03, 0x04, 0x05, 0x10
COMPARE_CODES = {"<": 0, "<=": 1, ">": 2, ">=": 3, "==": 4, "!=": 5}
COMPARE_NAMES = {code: op for op, code in COMPARE_CODES.items()}
STACK_DEPTH = 8          # SQ_VM_STACK
MAX_COLUMNS = 3          # SQ_VM_MAX_COLUMNS: distinct channels one query reads
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
INTEGER_DTYPES = ("int8", "int16", "int32", "int64")


def unsupported(what: str) -> DeviceUnsupportedError:
    return DeviceUnsupportedError(f"the device has no {what}")


# --- plan → bytes -------------------------------------------------------------------

def compile_for_device(cache, text: str, now_policy: str = "data") -> bytes:
    """Plan ``text`` against the cache's streams (and its models' outputs) and
    compile it for the device.  A query over a model's outputs compiles for
    the stream a firmware appends them to (sensorq.device.models)."""
    from ..models.derived import query_view
    from ..query.planner import plan_query
    view = query_view(cache)
    plan = plan_query(text, view.streams, view.newest_ns, now_policy)
    model = view.model_of(plan.stream) if view is not cache else None
    if model is not None:
        from .models import compile_model_plan
        return compile_model_plan(plan, model)
    return compile_plan(plan, cache.streams[plan.stream])


def compile_plan(plan, stream, schema: int | None = None) -> bytes:
    """Bytecode for a typed plan over ``stream`` (a :class:`sensorq.schema.Stream`);
    ``schema`` overrides the stream's schema hash (a model's output stream)."""
    timed = isinstance(plan, P.EpisodesQuery) or getattr(plan, "aggregate", None) == "duration"
    if not isinstance(plan, (P.AggregateQuery, P.EpisodesQuery)):
        raise unsupported(f"{_query_kind(plan)} queries; it answers count, sum, min, max, mean, "
                          f"first, last, duration and find episodes")
    aggregate = "episodes" if isinstance(plan, P.EpisodesQuery) else plan.aggregate
    if aggregate not in AGGREGATE_CODES:
        raise unsupported(f"{plan.aggregate!r}; it answers count, sum, min, max, mean, first, last, "
                          f"duration and find episodes")
    if getattr(plan, "bucket_ns", None):
        raise unsupported(f"buckets (by {_duration_text(plan.bucket_ns)})")
    if getattr(plan, "limit", None):
        raise unsupported(f"row limits (limit {plan.limit})")
    n_channels = len(stream.channels)
    channel = NO_CHANNEL
    if aggregate not in ("count",) + TIMED_AGGREGATES:
        channel = _aggregate_channel(plan.expr, n_channels)
    program = _predicate(plan.where, n_channels)
    channels = {channel} - {NO_CHANNEL} | _program_channels(program)
    if len(channels) > MAX_COLUMNS:
        raise unsupported(f"room for queries over more than {MAX_COLUMNS} channels "
                          f"(this one reads {len(channels)})")
    flags, start, end = _window(plan.time, plan.now)
    body = b"".join(program)
    timing = None
    if timed:
        gap = plan.max_gap_ns or 0
        shortest = plan.min_duration_ns if isinstance(plan, P.EpisodesQuery) else 0
        timing = (_offset(gap, "gap"), _offset(shortest or 0, "episode duration"))
    length = HEADER.size + (TIMED.size if timed else 0) + len(body) + CRC_SIZE
    if length > MAX_LENGTH:
        raise unsupported(f"room for a predicate this long ({length} bytes of bytecode)")
    return assemble(AGGREGATE_CODES[aggregate], channel, flags, n_channels, start, end, body,
                    schema_hash(stream) if schema is None else schema, timing)


def assemble(aggregate: int, channel: int, flags: int, n_channels: int, start: int, end: int,
             body: bytes, schema: int, timing: tuple[int, int] | None = None) -> bytes:
    """Header + predicate program + CRC: the bytecode's framing (also used by
    the tests to build programs the compiler would never emit).  With
    ``timing`` (gap, minimum episode duration): version 3."""
    extra = b"" if timing is None else TIMED.pack(*timing)
    header = HEADER.pack(MAGIC, VERSION if timing is None else VERSION_TIMED, aggregate, channel, flags,
                         n_channels, HEADER.size + len(extra) + len(body) + CRC_SIZE, start, end, schema)
    code = header + extra + body
    return code + crc32(code).to_bytes(4, "little")


def schema_hash(stream) -> int:
    """CRC-32 of what gives a stream's raw integers their meaning: every
    channel's name, storage type, unit and scale, in order.  The bytecode
    carries it and the device's stream configuration holds it
    (sq_stream_cfg.schema), so that a query compiled for another stream with
    the same channel count is refused (SQ_ERR_MISMATCH) instead of answering
    in the wrong units."""
    parts = [struct.pack("<H", len(stream.channels))]
    for ch in stream.channels:
        name, unit = ch.name.encode(), ch.unit.encode()
        scale = 1.0 if ch.scale is None else float(ch.scale)
        parts.append(struct.pack("<B", len(name)) + name + struct.pack("<B", DTYPE_CODES[ch.dtype])
                     + struct.pack("<H", len(unit)) + unit + struct.pack("<d", scale))
    return crc32(b"".join(parts))

def _query_kind(plan) -> str:
    names = {"FindQuery": "'find first/last'", "TopQuery": "'top'", "NewestQuery": "'newest'",
             "ModelQuery": "model scoring"}
    return names.get(type(plan).__name__, type(plan).__name__)


def _duration_text(ns: int) -> str:
    for unit, size in (("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000),
                       ("ms", 1_000_000)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


def _aggregate_channel(expr, n_channels: int) -> int:
    if not isinstance(expr, P.ChannelRef):
        raise unsupported(describe_unsupported(expr))
    return _integer_channel(expr, n_channels)


def _integer_channel(ref: P.ChannelRef, n_channels: int) -> int:
    if ref.dtype not in INTEGER_DTYPES:
        raise unsupported(f"float channels ({ref.channel} is {ref.dtype})")
    if not 0 <= ref.index < min(n_channels, NO_CHANNEL):
        raise SensorqError(f"channel {ref.channel!r} has index {ref.index}, outside the stream's "
                           f"{n_channels} channels")
    return ref.index


def describe_unsupported(expr) -> str:
    """What the device lacks to compute ``expr``."""
    if isinstance(expr, P.BinaryOp):
        return f"arithmetic over channels ({P.render(expr)})"
    if isinstance(expr, P.Magnitude):
        return f"mag() ({P.render(expr)})"
    if isinstance(expr, P.UnaryOp):
        return f"{expr.op}() ({P.render(expr)})"
    if isinstance(expr, P.Const):
        return f"aggregates of a constant ({P.render(expr)})"
    return f"expressions of this kind ({type(expr).__name__})"


# --- predicates ----------------------------------------------------------------------

def _predicate(pred, n_channels: int) -> list[bytes]:
    """Postfix instructions; checks the stack never exceeds the VM's depth."""
    program: list[bytes] = []
    depth = _emit(pred if pred is not None else P.BoolConst(True), n_channels, program)
    if depth > STACK_DEPTH:
        raise unsupported(f"room for a predicate this deeply nested (needs a stack of {depth}, "
                          f"the device has {STACK_DEPTH})")
    return program


def _emit(pred, n_channels: int, out: list[bytes]) -> int:
    """Append pred's instructions; returns the stack depth it needs.  Nesting is
    bounded by the planner's own depth limit, so recursion here is shallow."""
    if isinstance(pred, P.BoolConst):
        out.append(bytes([OP_TRUE if pred.value else OP_FALSE]))
        return 1
    if isinstance(pred, P.RawCompare):
        return _emit_compare(pred, n_channels, out)
    if isinstance(pred, P.Not):
        depth = _emit(pred.arg, n_channels, out)
        out.append(bytes([OP_NOT]))
        return depth
    if isinstance(pred, (P.And, P.Or)):
        if not pred.args:
            return _emit(P.BoolConst(isinstance(pred, P.And)), n_channels, out)
        op = OP_AND if isinstance(pred, P.And) else OP_OR
        depth = _emit(pred.args[0], n_channels, out)
        for arg in pred.args[1:]:
            depth = max(depth, 1 + _emit(arg, n_channels, out))
            out.append(bytes([op]))
        return depth
    if isinstance(pred, P.Compare):
        side = pred.left if not isinstance(pred.left, (P.Const, P.ChannelRef)) else pred.right
        if isinstance(side, (P.Const, P.ChannelRef)):
            raise unsupported(f"comparisons between channels or in physical units "
                              f"({P.render(pred.left)} {pred.op} {P.render(pred.right)}); it compares "
                              f"one integer channel with a constant")
        raise unsupported(describe_unsupported(side))
    raise unsupported(f"predicates of this kind ({type(pred).__name__})")


def _emit_compare(pred: P.RawCompare, n_channels: int, out: list[bytes]) -> int:
    channel = _integer_channel(pred.channel, n_channels)
    threshold = pred.threshold
    if threshold != int(threshold) or not INT64_MIN <= int(threshold) <= INT64_MAX:
        raise unsupported(f"non-integer thresholds ({pred.channel.channel} {pred.op} {threshold})")
    out.append(struct.pack("<BBq", OP_CMP + COMPARE_CODES[pred.op], channel, int(threshold)))
    return 1


def _program_channels(program: list[bytes]) -> set[int]:
    return {ins[1] for ins in program if ins[0] >= OP_CMP}


# --- time ----------------------------------------------------------------------------

def _window(time: P.TimeRange, now: P.Now) -> tuple[int, int, int]:
    """(flags, start offset, end offset), offsets relative to now."""
    flags, start, end = 0, 0, 0
    if time.start_ns is not None:
        flags |= FLAG_START
        start = _offset(time.start_ns - now.ns, "window start")
    if time.end_ns is not None:
        flags |= FLAG_END
        end = _offset(time.end_ns - now.ns, "window end")
    return flags, start, end


def _offset(value: int, what: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise unsupported(f"{what}s this far from now ({value} ns)")
    return int(value)


# --- reading bytecode back (docs, tests, `explain`) ------------------------------------

@dataclass(frozen=True)
class DeviceQuery:
    aggregate: str
    channel: Optional[int]
    n_channels: int
    start_offset_ns: Optional[int]
    end_offset_ns: Optional[int]
    program: tuple[str, ...]
    schema: int = 0
    gap_ns: Optional[int] = None             # version 3 (duration, episodes)
    min_duration_ns: Optional[int] = None


def disassemble(code: bytes) -> DeviceQuery:
    """The bytecode's fields, the predicate as readable postfix text.  Raises
    SensorqError if the bytes are not valid bytecode of this version."""
    if len(code) < HEADER.size + 1 + CRC_SIZE:
        raise SensorqError("bytecode: too short")
    magic, version, agg, channel, flags, n_channels, length, start, end, schema = HEADER.unpack_from(code)
    if magic != MAGIC or version not in (VERSION, VERSION_TIMED) or length != len(code) or \
            agg not in AGGREGATE_NAMES:
        raise SensorqError("bytecode: bad magic, version, length or aggregate")
    if crc32(code[:-CRC_SIZE]) != int.from_bytes(code[-CRC_SIZE:], "little"):
        raise SensorqError("bytecode: checksum mismatch")
    pc, timing = HEADER.size, (None, None)
    if version == VERSION_TIMED:
        timing = TIMED.unpack_from(code, pc)
        pc += TIMED.size
    program, body = [], code[:-CRC_SIZE]
    names = {OP_TRUE: "TRUE", OP_FALSE: "FALSE", OP_NOT: "NOT", OP_AND: "AND", OP_OR: "OR"}
    while pc < len(body):
        op = body[pc]
        if op >= OP_CMP:
            _, ch, threshold = struct.unpack_from("<BBq", body, pc)
            program.append(f"CMP c{ch} {COMPARE_NAMES.get(op - OP_CMP, '?')} {threshold}")
            pc += 10
        else:
            program.append(names.get(op, f"?{op:#x}"))
            pc += 1
    return DeviceQuery(AGGREGATE_NAMES[agg], None if channel == NO_CHANNEL else channel, n_channels,
                       start if flags & FLAG_START else None, end if flags & FLAG_END else None,
                       tuple(program), schema, *timing)


# --- C source ------------------------------------------------------------------------

_C_DTYPES = {"int8": "SQ_INT8", "int16": "SQ_INT16", "int32": "SQ_INT32", "int64": "SQ_INT64"}


def format_c_config(stream, name: str = "sq_cfg", block_samples: int | None = None,
                    codec: str = "compact") -> str:
    """The stream as a C sq_stream_cfg definition: its integer channels, the
    block size, its stream id and the schema hash its queries carry (a
    firmware whose configuration came from here runs them; any other stream's
    are refused with SQ_ERR_MISMATCH)."""
    if not _C_NAME.match(name):
        raise SensorqError(f"{name!r} is not a C identifier")
    for ch in stream.channels:
        if ch.dtype not in _C_DTYPES:
            raise unsupported(f"float channels ({ch.name} is {ch.dtype})")
    if not 1 <= len(stream.channels) <= 16:
        raise unsupported(f"streams of {len(stream.channels)} channels (at most 16)")
    if codec not in ("fast", "compact"):
        raise SensorqError(f"codec {codec!r} is not fast or compact")
    samples = stream.block_samples if block_samples is None else block_samples
    dtypes = ", ".join(_C_DTYPES[ch.dtype] for ch in stream.channels)
    names = ", ".join(f"{ch.name} ({ch.dtype}{', ' + ch.unit if ch.unit else ''})" for ch in stream.channels)
    return (f"/* sensorq stream {stream.name!r}: {names} */\n"
            f"static const sq_stream_cfg {name} = {{{len(stream.channels)}u, {{{dtypes}}}, "
            f"SQ_CODEC_{codec.upper()}, {samples}u, {stream.stream_id}u, {schema_hash(stream):#010x}u}};")

_C_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def format_c_array(code: bytes, name: str = "sq_query") -> str:
    """The bytecode as a C array definition, 12 bytes a line."""
    if not _C_NAME.match(name):
        raise SensorqError(f"{name!r} is not a C identifier")
    try:
        summary = disassemble(code)
        comment = (f"/* sensorq device bytecode v{code[4]}: {summary.aggregate}"
                   f"{'' if summary.channel is None else f' c{summary.channel}'}"
                   f", where {' '.join(summary.program)} */\n")
    except SensorqError:
        comment = ""
    lines = [", ".join(f"0x{b:02x}" for b in code[i:i + 12]) for i in range(0, len(code), 12)]
    body = ",\n    ".join(lines)
    return (f"{comment}static const unsigned char {name}[{len(code)}] = {{\n    {body}\n}};\n"
            f"static const unsigned int {name}_len = {len(code)}u;")
