"""The device VM (device_port/src/sq_vm.c) against an independent numpy reference.

Hypothesis makes integer streams, predicates, aggregates and windows; the plan
is compiled to bytecode by sensorq.device.bytecode, run by the C library (built
for the host, called through ctypes) over (a) the device's own ring, (b) blocks
written by the host's "compact" encoder, and the answer must equal
sensorq.device.reference computed with numpy over the raw samples."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensorq.codec.block import encode_block
from sensorq.device.bytecode import compile_plan, schema_hash
from sensorq.device.native import DeviceError
from sensorq.device.reference import expected_answer, round_half_away
from sensorq.query import plan as P
from sensorq.schema import Channel, Stream

SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
INT_TYPES = ["int8", "int16", "int32", "int64"]
AGGREGATES = ["count", "sum", "min", "max", "avg", "first", "last"]


# --- strategies --------------------------------------------------------------------

@st.composite
def streams_with_data(draw):
    n_channels = draw(st.integers(1, 4))
    dtypes = [draw(st.sampled_from(INT_TYPES)) for _ in range(n_channels)]
    n = draw(st.integers(1, 400))
    start = draw(st.integers(-2**40, 2**40))
    step = draw(st.sampled_from([1, 1000, 15_625_000]))
    steps = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), np.int64) * step
    steps[0] = 0
    t = start + np.cumsum(steps)
    columns = []
    for dtype in dtypes:
        info = np.iinfo(dtype)
        narrow = draw(st.booleans())
        lo, hi = (max(info.min, -50), min(info.max, 50)) if narrow else (info.min, info.max)
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        kind = draw(st.sampled_from(["random", "walk", "constant"]))
        if kind == "random":
            col = rng.integers(lo, hi, n, endpoint=True, dtype=np.int64)
        elif kind == "walk":
            col = np.clip(np.cumsum(rng.integers(-3, 4, n)) + (lo + hi) // 2, lo, hi)
        else:
            col = np.full(n, rng.integers(lo, hi, endpoint=True, dtype=np.int64))
        columns.append(col.astype(dtype))
    stream = Stream("s", tuple(Channel(f"c{i}", d) for i, d in enumerate(dtypes)), block_samples=64)
    return stream, t, columns


def channel_ref(stream: Stream, i: int) -> P.ChannelRef:
    ch = stream.channels[i]
    return P.ChannelRef(ch.name, i, ch.dtype, 1.0, ch.unit)


@st.composite
def predicates(draw, stream, columns, usable):
    def leaf():
        i = draw(st.sampled_from(usable))
        col = columns[i]
        info = np.iinfo(col.dtype)
        pick = draw(st.sampled_from(["sample", "near", "extreme"]))
        if pick == "sample":
            c = int(col[draw(st.integers(0, len(col) - 1))])
        elif pick == "near":
            c = int(col[draw(st.integers(0, len(col) - 1))]) + draw(st.integers(-2, 2))
        else:
            c = draw(st.sampled_from([int(info.min), int(info.max), 0, int(col.min()) - 1,
                                      int(col.max()) + 1]))
        c = max(-2**63, min(2**63 - 1, c))
        return P.RawCompare(channel_ref(stream, i), draw(st.sampled_from(P.COMPARE_OPS)), float(c)
                            if abs(c) < 2**53 else c)

    def node(depth):
        kind = draw(st.sampled_from(["leaf", "leaf", "and", "or", "not", "const"]) if depth < 3
                    else st.just("leaf"))
        if kind == "leaf":
            return leaf()
        if kind == "const":
            return P.BoolConst(draw(st.booleans()))
        if kind == "not":
            return P.Not(node(depth + 1))
        args = tuple(node(depth + 1) for _ in range(draw(st.integers(2, 3))))
        return P.And(args) if kind == "and" else P.Or(args)

    if draw(st.integers(0, 4)) == 0:
        return None
    return node(0)


@st.composite
def queries(draw):
    stream, t, columns = draw(streams_with_data())
    aggregate = draw(st.sampled_from(AGGREGATES))
    usable = draw(st.permutations(range(len(columns))))[:3]     # the VM reads ≤ 3 channels
    expr = None if aggregate == "count" else channel_ref(stream, draw(st.sampled_from(usable)))
    where = draw(predicates(stream, columns, usable))
    now = int(t[-1]) + 1
    start = end = None
    if draw(st.booleans()):
        start = int(t[draw(st.integers(0, len(t) - 1))]) + draw(st.integers(-1, 1))
        end = now if draw(st.booleans()) else int(t[draw(st.integers(0, len(t) - 1))]) + 1
    plan = P.AggregateQuery("s", aggregate, expr, where, P.TimeRange(start, end), P.Now("data", now),
                            "")
    block_samples = draw(st.sampled_from([1, 5, 32, 33, 100, 256]))
    shift = draw(st.sampled_from([0, 0, 12345]))
    return stream, t, columns, plan, block_samples, shift


# --- the tests ---------------------------------------------------------------------

def check_answer(answer, expected, plan):
    assert answer.count == expected.count
    assert answer.value == expected.value, plan


def run_or_error(run):
    try:
        return run()
    except DeviceError as exc:
        return exc


@SETTINGS
@given(queries())
def test_ring_answers_equal_numpy_reference(dev, case):
    stream, t, columns, plan, block_samples, shift = case
    code = compile_plan(plan, stream)
    dtypes = [c.dtype for c in stream.channels]
    region = dev.ring(dtypes, block_samples).region_len * (len(t) // block_samples + 2)   # no eviction
    ring = dev.ring(dtypes, block_samples, region_len=region, schema=schema_hash(stream))
    ring.append_many(t + shift, columns)
    expected = expected_answer(plan, t + shift, columns, plan.now.ns + shift)
    got = run_or_error(lambda: ring.query(code, plan.now.ns + shift))
    if expected.overflow:
        assert isinstance(got, DeviceError) and got.name == "SQ_ERR_OVERFLOW"
        return
    assert not isinstance(got, DeviceError), got
    check_answer(got, expected, plan)
    assert got.skipped + got.answered + got.decoded == len(t) // block_samples


@SETTINGS
@given(queries())
def test_host_compact_blocks_give_the_same_answer(dev, case):
    stream, t, columns, plan, block_samples, _ = case
    code = compile_plan(plan, stream)
    blocks = [encode_block(t[i:i + block_samples], [c[i:i + block_samples] for c in columns],
                           codec="compact", version=2) for i in range(0, len(t), block_samples)]
    expected = expected_answer(plan, t, columns)
    got = run_or_error(lambda: dev.run_blocks(code, blocks, plan.now.ns))
    if expected.overflow:
        assert isinstance(got, DeviceError) and got.name == "SQ_ERR_OVERFLOW"
        return
    assert not isinstance(got, DeviceError), got
    check_answer(got, expected, plan)


def test_statistics_answer_and_skip_blocks(dev):
    """1000 samples in blocks of 100: z is 0..999.  z >= 500 is false for the
    first five blocks (skipped from min/max), true for the last five (answered
    from statistics) — nothing is decoded."""
    stream = Stream("s", (Channel("z", "int32"),))
    t = np.arange(1000, dtype=np.int64) * 1000
    z = np.arange(1000, dtype=np.int32)
    ring = dev.ring(["int32"], 100, region_len=200_000, schema=schema_hash(stream))
    ring.append_many(t, [z])
    ref = channel_ref(stream, 0)
    for aggregate, want in [("count", 500), ("sum", sum(range(500, 1000))), ("min", 500),
                            ("max", 999), ("first", 500), ("last", 999),
                            ("avg", round_half_away(sum(range(500, 1000)), 500))]:
        plan = P.AggregateQuery("s", aggregate, None if aggregate == "count" else ref,
                                P.RawCompare(ref, ">=", 500.0), P.TimeRange(), P.Now("data", 10**9), "")
        got = ring.query(compile_plan(plan, stream), 10**9)
        assert (got.value, got.count) == (want, 500)
        assert (got.skipped, got.answered, got.decoded) == (5, 5, 0)
    # a threshold inside one block: that block alone is decoded
    plan = P.AggregateQuery("s", "count", None, P.RawCompare(ref, ">", 549.0), P.TimeRange(),
                            P.Now("data", 10**9), "")
    got = ring.query(compile_plan(plan, stream), 10**9)
    assert (got.value, got.skipped, got.answered, got.decoded) == (450, 5, 4, 1)
    # a window covering half a block: blocks outside are skipped on time alone
    plan = P.AggregateQuery("s", "count", None, None, P.TimeRange(250_000, 400_000),
                            P.Now("data", 10**9), "")
    got = ring.query(compile_plan(plan, stream), 10**9)
    assert got.value == 150 and got.decoded == 1 and got.answered == 1 and got.skipped == 8


def test_mean_rounds_half_away_from_zero(dev):
    stream = Stream("s", (Channel("v", "int16"),))
    ref = channel_ref(stream, 0)
    plan = P.AggregateQuery("s", "avg", ref, None, P.TimeRange(), P.Now("data", 0), "")
    code = compile_plan(plan, stream)
    for values, want in [([2, 3], 3), ([-2, -3], -3), ([1, 1, 2], 1), ([-1, -1, -2], -1),
                         ([0, 1, 1, 1], 1), ([5], 5), ([-7, 0], -4)]:
        ring = dev.ring(["int16"], 64, schema=schema_hash(stream))
        ring.append_many(np.arange(len(values)), [np.array(values, np.int16)])
        assert ring.query(code, 0).value == want


def test_sum_overflow_is_an_error_not_a_wrong_answer(dev):
    stream = Stream("s", (Channel("v", "int64"),))
    ref = channel_ref(stream, 0)
    big = np.array([2**62, 2**62, 2**62, -2**62], np.int64)   # partial sums overflow, total too
    plan = P.AggregateQuery("s", "sum", ref, None, P.TimeRange(), P.Now("data", 0), "")
    ring = dev.ring(["int64"], 2, region_len=10_000, schema=schema_hash(stream))
    ring.append_many(np.arange(4), [big])
    with pytest.raises(DeviceError) as info:
        ring.query(compile_plan(plan, stream), 0)
    assert info.value.name == "SQ_ERR_OVERFLOW"
    ring = dev.ring(["int64"], 2, region_len=10_000, schema=schema_hash(stream))
    ring.append_many(np.arange(4), [np.array([2**62, 2**62, -2**62, -2**62 + 5], np.int64)])
    assert ring.query(compile_plan(plan, stream), 0).value == 5      # intermediate overflow is fine


def test_window_bounds_clamp_at_the_ends_of_time(dev):
    """now + offset beyond int64 clamps (the window reaches the end of time)
    instead of wrapping around to the other end."""
    stream = Stream("s", (Channel("v", "int16"),))
    t = np.array([-2**63, -2**63 + 5, 2**63 - 10, 2**63 - 1], np.int64)
    v = np.array([1, 2, 3, 4], np.int16)
    ring = dev.ring(["int16"], 2, region_len=10_000, schema=schema_hash(stream))
    ring.append_many(t, [v])
    for now, start_off, end_off in [(-2**63 + 7, -2**62, 2**62), (2**63 - 2, -2**62, 2**62),
                                    (0, -2**63, 2**63 - 1), (-2**63 + 7, -6, 1)]:
        plan = P.AggregateQuery("s", "sum", channel_ref(stream, 0), None,
                                P.TimeRange(now + start_off, now + end_off), P.Now("data", now), "")
        want = expected_answer(plan, t, [v])
        got = ring.query(compile_plan(plan, stream), now)
        assert (got.value, got.count) == (want.value, want.count), (now, start_off, end_off)
