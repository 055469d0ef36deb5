"""The device bytecode: what compiles, what is refused (and the message names
the construct), the C array output, and the VM's validation of bad bytecode
(random mutation, wrong version, truncation) — an error code, never a crash."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensorq.device.bytecode import (HEADER, compile_plan, disassemble, format_c_array)
from sensorq.device.native import DeviceError
from sensorq.errors import DeviceUnsupportedError, SensorqError
from sensorq.query import plan as P
from sensorq.query.planner import plan_query
from sensorq.schema import Channel, Stream

STREAM = Stream("imu", (Channel("x", "int16", "mg"), Channel("y", "int16", "mg"),
                        Channel("z", "int16", "mg"), Channel("w", "int32"), Channel("f", "float32")))
NEWEST = 60_000_000_000


def plan(text: str):
    return plan_query(text, {"imu": STREAM}, lambda _s: NEWEST, "data")


def compile_text(text: str) -> bytes:
    return compile_plan(plan(text), STREAM)


def test_compiled_fields_round_trip():
    q = disassemble(compile_text("avg x where z > 2g and not (y < -100mg or x == 5) last 10s"))
    assert q.aggregate == "avg" and q.channel == 0 and q.n_channels == 5
    assert q.start_offset_ns == -10_000_000_000 and q.end_offset_ns == 0
    # the planner pushes the NOT inwards and flattens the AND
    assert q.program == ("CMP c2 > 2000", "CMP c1 >= -100", "AND", "CMP c0 != 5", "AND")


def test_window_is_relative_to_now():
    q = disassemble(compile_text("count last 5m"))
    assert (q.start_offset_ns, q.end_offset_ns) == (-300_000_000_000, 0)
    q = disassemble(compile_text("count"))
    assert (q.start_offset_ns, q.end_offset_ns, q.program) == (None, None, ("TRUE",))


@pytest.mark.parametrize("text, construct", [
    ("median x", "'median'"),
    ("std x last 1m", "'std'"),
    ("avg x + y", "arithmetic over channels (x + y)"),
    ("max mag(x, y, z)", "mag()"),
    ("avg abs(x)", "abs()"),
    ("avg x by 1m", "buckets (by 1m)"),
    ("count where x > y", "comparisons between channels"),
    ("avg f", "float channels (f is float32)"),
    ("count where f > 1", "float channels"),
    ("find first where z > 2g", "'find first/last'"),
    ("top 3 z", "'top'"),
    ("count where x > 1 and y > 1 and z > 1 and w > 1", "more than 3 channels"),
])
def test_unsupported_constructs_are_named(text, construct):
    with pytest.raises(DeviceUnsupportedError) as info:
        compile_text(text)
    assert "the device has no" in str(info.value) and construct in str(info.value)


def test_deep_predicates_beyond_the_stack_are_refused():
    ref = P.ChannelRef("x", 0, "int16", 1.0, "mg")
    pred = P.RawCompare(ref, ">", 1.0)
    for i in range(10):                       # right-nested: every level keeps one value on the stack
        pred = P.And((P.RawCompare(ref, "<", float(i)), P.Or((P.RawCompare(ref, ">", 0.0), pred))))
    q = P.AggregateQuery("imu", "count", None, pred, P.TimeRange(), P.Now("data", 0), "")
    with pytest.raises(DeviceUnsupportedError, match="stack"):
        compile_plan(q, STREAM)


def test_c_array_output():
    code = compile_text("count where z > 2g last 10m")
    text = format_c_array(code, "shock_count")
    assert f"static const unsigned char shock_count[{len(code)}] = {{" in text
    numbers = [int(tok.strip(" ,\n{};"), 16) for tok in text.split("{", 1)[1].split("}")[0].split(",")]
    assert bytes(numbers) == code
    with pytest.raises(SensorqError):
        format_c_array(code, "not a name")


def test_cli_compile_device(tmp_path, capsys):
    import sensorq
    from sensorq.cli import main
    with sensorq.open(tmp_path / "c", create=True, capacity="8MB") as cache:
        cache.create_stream("imu", [Channel("z", "int16", "mg")], block_samples=128)
        cache.append("imu", np.arange(1000, dtype=np.int64) * 1_000_000,
                     [np.arange(1000, dtype=np.int16)])
        cache.flush()
    assert main(["compile", "--device", "--cache", str(tmp_path / "c"), "--name", "q",
                 "count where z > 500mg last 1s"]) == 0
    out = capsys.readouterr().out
    assert "static const unsigned char q[" in out and "CMP c0 > 500" in out
    assert main(["compile", "--device", "--cache", str(tmp_path / "c"), "median z"]) == 1
    assert "the device has no 'median'" in capsys.readouterr().err


# --- the VM's validation -----------------------------------------------------------------

def with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def test_vm_rejects_bad_headers(dev):
    good = compile_text("sum x where z > 2g last 10s")
    dev.check_query(good)
    body = bytearray(good[:-4])

    def code_of(mutate) -> bytes:
        b = bytearray(body)
        mutate(b)
        return with_crc(bytes(b))

    cases = {
        "SQ_ERR_VERSION": code_of(lambda b: b.__setitem__(4, 1)),          # the old bytecode version
        "SQ_ERR_CRC": good[:-1] + bytes([good[-1] ^ 1]),
        "SQ_ERR_BYTECODE": [
            good[:10],                                               # truncated
            good[:-6] + good[-4:],                                   # length field disagrees
            code_of(lambda b: b.__setitem__(0, ord("X"))),            # magic
            code_of(lambda b: b.__setitem__(5, 9)),                   # aggregate code
            code_of(lambda b: b.__setitem__(6, 7)),                   # channel ≥ n_channels
            code_of(lambda b: b.__setitem__(7, 0x80)),                # unknown flag
            code_of(lambda b: b.__setitem__(HEADER.size, 0x16)),      # comparison code 6
            code_of(lambda b: b.__setitem__(HEADER.size + 1, 9)),     # predicate channel
            with_crc(bytes(body) + bytes([0x04])),                   # AND with one operand
            with_crc(bytes(body) + bytes([0x01])),                   # two values left on the stack
            with_crc(bytes(body) + bytes([0x07])),                   # unknown opcode
        ],
    }
    for name, codes in cases.items():
        for code in codes if isinstance(codes, list) else [codes]:
            if name == "SQ_ERR_BYTECODE" and len(code) >= 12 and code[:4] == b"SQQ1":
                code = _fix_length(code)
            with pytest.raises(DeviceError) as info:
                dev.check_query(code)
            assert info.value.name == name, code.hex()


def _fix_length(code: bytes) -> bytes:
    """Keep the length field honest where the case is about something else."""
    if struct.unpack_from("<H", code, 10)[0] == len(code):
        return code
    if code[-4:] == zlib.crc32(code[:-4]).to_bytes(4, "little") and len(code) > HEADER.size + 4:
        fixed = bytearray(code[:-4])
        struct.pack_into("<H", fixed, 10, len(code))
        return with_crc(bytes(fixed))
    return code


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_mutations_give_error_codes(dev, data):
    text = data.draw(st.sampled_from(["count where z > 2g", "avg x where not (y < 0 or z == 1) last 1m",
                                      "max w where w != 0 and x >= -5"]))
    code = bytearray(compile_text(text))
    for _ in range(data.draw(st.integers(1, 4))):
        code[data.draw(st.integers(0, len(code) - 1))] = data.draw(st.integers(0, 255))
    keep_crc = data.draw(st.booleans())
    mutated = with_crc(bytes(code[:-4])) if keep_crc else bytes(code)
    mutated = mutated[:data.draw(st.integers(0, len(mutated)))]
    try:
        dev.check_query(mutated)
    except DeviceError as exc:
        assert exc.name in ("SQ_ERR_BYTECODE", "SQ_ERR_VERSION", "SQ_ERR_CRC", "SQ_ERR_UNSUPPORTED")
    # whatever check_query said, running it over blocks must not crash either
    from sensorq.codec.block import encode_block
    block = encode_block(np.arange(40, dtype=np.int64),
                         [np.arange(40, dtype=d) for d in ("int16", "int16", "int16", "int32", "float32")])
    try:
        dev.run_blocks(mutated, [block], 100)
    except DeviceError as exc:
        assert exc.name != "SQ_ERR_ARG"


def test_c_config_carries_the_schema_hash(tmp_path, dev):
    """format_c_config's sq_stream_cfg compiles against the header, and a ring
    set up from it runs the stream's queries and refuses another stream's."""
    import shutil
    import subprocess
    from sensorq.device.bytecode import format_c_config, schema_hash
    from sensorq.device.native import DEVICE_PORT
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    stream = Stream("imu", (Channel("x", "int16", "mg"), Channel("y", "int16", "mg"),
                            Channel("z", "int16", "mg")), block_samples=64)
    text = format_c_config(stream, "imu_cfg")
    source = tmp_path / "cfg.c"
    source.write_text('#include <stdio.h>\n#include "sensorq.h"\n' + text +
                      '\nint main(void) { printf("%u %u %u %u\\n", (unsigned)imu_cfg.n_channels, '
                      'imu_cfg.block_samples, imu_cfg.schema, (unsigned)imu_cfg.codec); return 0; }\n')
    done = subprocess.run([cc, "-std=c99", "-Wall", "-Werror", f"-I{DEVICE_PORT / 'include'}", str(source),
                           "-o", str(tmp_path / "cfg")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = subprocess.run([str(tmp_path / "cfg")], capture_output=True, text=True).stdout.split()
    assert out == ["3", "64", str(schema_hash(stream)), "1"]
    with pytest.raises(DeviceUnsupportedError):
        format_c_config(Stream("f", (Channel("f", "float32"),)))
