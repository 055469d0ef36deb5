"""Defects of the device port found in review (issue 13), each pinned by a
test that failed before its fix: a time step of 2^63 ns or more, 32-bit
result counters, the validator's stack limit, a query compiled for another
stream's schema, and what a firmware needs to see (version, introspection)."""
from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest

from sensorq.codec.block import decode_block, encode_block
from sensorq.device.vectors import block_info
from sensorq.device import bytecode as B
from sensorq.device.bytecode import compile_plan, schema_hash
from sensorq.device.native import DEVICE_PORT, DeviceError
from sensorq.query import plan as P
from sensorq.schema import Channel, Stream

INT64_MIN = -2**63
REAL_TIME = 1_700_000_000_000_000_000


def count_plan(stream: Stream, now: int, where=None) -> P.AggregateQuery:
    return P.AggregateQuery(stream.name, "count", None, where, P.TimeRange(), P.Now("data", now), "")


# --- a time step of 2^63 ns or more --------------------------------------------------

def test_host_encoder_refuses_a_time_step_of_2_63():
    """INT64_MIN (an unset clock) then a real time: the gcd of the offsets
    would be a tick ≥ 2^63, which the format cannot hold."""
    v = np.array([1, 2, 3], np.int16)
    for t in ([INT64_MIN, 0, 1], [INT64_MIN, REAL_TIME, REAL_TIME + 1], [-1, 2**63 - 1, 2**63 - 1]):
        with pytest.raises(ValueError, match="2\\^63"):
            encode_block(np.array(t, np.int64), [v], codec="fast")
    # just under is fine, and decodes
    t = np.array([INT64_MIN, -1, 2**63 - 2], np.int64)
    assert np.array_equal(decode_block(encode_block(t, [v]))[0], t)


@pytest.mark.parametrize("t", [[INT64_MIN, 0, 5], [INT64_MIN, REAL_TIME, REAL_TIME + 10**6],
                               [-6, 2**63 - 6, 2**63 - 1]])
def test_device_seals_early_before_a_time_step_of_2_63(dev, t):
    """The append that would make a step ≥ 2^63 ns seals the open block first:
    every block stays readable on both sides and queries keep answering."""
    stream = Stream("s", (Channel("v", "int16"),))
    ring = dev.ring(["int16"], 8, region_len=4096, schema=schema_hash(stream))
    for i, ti in enumerate(t):
        ring.append(ti, [i])
    ring.seal()
    blocks = ring.blocks()
    assert [block_info(b).n_samples for b in blocks] == [1, 2]
    got = np.concatenate([decode_block(b)[0] for b in blocks])
    assert got.tolist() == t
    ref = P.ChannelRef("v", 0, "int16", 1.0, "")
    answer = ring.query(compile_plan(count_plan(stream, 2**63 - 1, P.RawCompare(ref, ">=", 1.0)), stream),
                        2**63 - 1)
    assert answer.count == 2


# --- 64-bit result counters ----------------------------------------------------------

def test_counts_beyond_2_32_samples_do_not_wrap(dev):
    """65,537 blocks of 65,536 samples (one constant block given 65,537 times,
    answered from its statistics): 2^32 + 65,536 samples, counted exactly."""
    stream = Stream("s", (Channel("v", "int8"),))
    n = 65536
    block = encode_block(np.arange(n, dtype=np.int64), [np.ones(n, np.int8)], codec="fast", version=2)
    code = compile_plan(count_plan(stream, n), stream)
    answer = dev.run_blocks(code, [block] * 65537, n)
    assert answer.count == answer.value == 65537 * n
    assert answer.answered == 65537


# --- the validator's stack limit -------------------------------------------------------

def program(n_compares: int) -> bytes:
    """n comparisons pushed first, then n - 1 ANDs: a stack n deep."""
    cmp = struct.pack("<BBq", B.OP_CMP + 2, 0, 0)
    return cmp * n_compares + bytes([B.OP_AND]) * (n_compares - 1)


def test_validator_limits_the_stack_to_eight(dev):
    stream = Stream("s", (Channel("v", "int16"),))
    for depth in (1, 8):
        dev.check_query(B.assemble(0, B.NO_CHANNEL, 0, 1, 0, 0, program(depth), schema_hash(stream)))
    for depth in (9, 12, 40):
        with pytest.raises(DeviceError) as info:
            dev.check_query(B.assemble(0, B.NO_CHANNEL, 0, 1, 0, 0, program(depth), schema_hash(stream)))
        assert info.value.name == "SQ_ERR_BYTECODE"


# --- the schema hash -------------------------------------------------------------------

SCHEMAS = {
    "imu": Stream("imu", tuple(Channel(c, "int16", "mg") for c in "wxyz")),
    "other units": Stream("imu", tuple(Channel(c, "int16", "mg", 0.5) for c in "wxyz")),
    "other types": Stream("imu", tuple(Channel(c, "int32", "mg") for c in "wxyz")),
    "other order": Stream("imu", tuple(Channel(c, "int16", "mg") for c in "zyxw")),
    "other names": Stream("imu", (Channel("temp", "int16", "mg"),) +
                          tuple(Channel(c, "int16", "mg") for c in "xyz")),
}


def test_schema_hash_tells_streams_apart():
    hashes = {name: schema_hash(s) for name, s in SCHEMAS.items()}
    assert len(set(hashes.values())) == len(hashes)
    assert schema_hash(Stream("renamed", SCHEMAS["imu"].channels)) == hashes["imu"]
    scale_one = Stream("imu", tuple(Channel(c, "int16", "mg", 1.0) for c in "wxyz"))
    assert schema_hash(scale_one) == hashes["imu"]        # no scale means scale 1


@pytest.mark.parametrize("other", [k for k in SCHEMAS if k != "imu"])
def test_query_for_another_schema_is_a_mismatch(dev, other):
    """Same channel count, another schema: refused, on the ring and over blocks."""
    compiled_for, ring_of = SCHEMAS["imu"], SCHEMAS[other]
    dtypes = [c.dtype for c in ring_of.channels]
    ring = dev.ring(dtypes, 4, region_len=4096, schema=schema_hash(ring_of))
    for i in range(10):
        ring.append(i, [i, i, i, i])
    ref = P.ChannelRef("x", 1, "int16", 1.0, "mg")
    plan = P.AggregateQuery("imu", "max", ref, None, P.TimeRange(), P.Now("data", 10), "")
    code = compile_plan(plan, compiled_for)
    for run in (lambda: ring.query(code, 10),
                lambda: dev.run_blocks(code, ring.blocks(), 10, schema=schema_hash(ring_of))):
        with pytest.raises(DeviceError) as info:
            run()
        assert info.value.name == "SQ_ERR_MISMATCH"
    same = dev.ring(dtypes, 4, region_len=4096, schema=schema_hash(compiled_for))
    same.append(0, [1, 7, 3, 4])
    if dtypes == ["int16"] * 4:
        assert same.query(code, 10).value == 7


# --- what a firmware needs to see ----------------------------------------------------------

def test_version_macro_matches_the_library_and_the_package(dev):
    import sensorq
    header = (DEVICE_PORT / "include" / "sensorq.h").read_text()
    macros = dict(re.findall(r"#define SQ_VERSION_(MAJOR|MINOR|PATCH) (\d+)", header))
    text = re.search(r'#define SQ_VERSION_STRING "([^"]+)"', header).group(1)
    assert text == f"{macros['MAJOR']}.{macros['MINOR']}.{macros['PATCH']}"
    assert dev.version() == text
    assert text.split(".")[0] == sensorq.__version__.split(".")[0]


# --- a cut seal -------------------------------------------------------------------------

def test_a_cut_seal_never_lets_appends_overrun(dev):
    """The old ring sealed inside the append that filled a block; a seal cut
    off (a reset, with the ring kept) left staged == block_samples and the
    next append wrote past the staging area.  Now a half is sealed by the
    main loop; a half left full but not closed (the state a cut could leave,
    made by hand here in the staging control) makes appends refuse, writing
    nothing, and sq_ring_reopen refuses the staging (its samples do not hold
    together) instead of trusting it."""
    import ctypes
    bs = 8
    ring = dev.ring(["int16"], bs, region_len=4000)
    ring.append_many(np.arange(5, dtype=np.int64), [np.arange(5, dtype=np.int16)])
    base = ctypes.addressof(ring.region)
    stage = base + (-base % 8)                  # sq_stage: magic, cfg_hash, fill, dropped, ...
    fill = ctypes.c_uint32.from_address(stage + 8).value
    count = ctypes.c_uint32.from_address(stage + 40 + 16 * fill)
    count.value = bs                            # full, never closed
    before = bytes(ring.region)
    assert ring.try_append(100, [1]) == -5      # SQ_ERR_FULL
    changed = [i for i, (x, y) in enumerate(zip(before, bytes(ring.region))) if x != y]
    assert changed == [stage - base + 12], "only the dropped counter may change"
    ring.reopen()                               # its times do not hold together: refused
    assert ring.staged == 0 and ring.blocks() == []
    ring.append(100, [1])
    ring.flush()
    (block,) = ring.blocks()
    assert decode_block(block)[0].tolist() == [100]
