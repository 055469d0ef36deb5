"""Device answers == numpy reference == the query engine, on hypothesis-made
integer streams and query texts.

Each example writes a small cache, compiles the text for the device with
compile_for_device (the real planner), runs it on the C library (host build)
over a device ring holding the same samples, and runs the same text through
sensorq.engine.executor.run_query.  count must be equal; sum, min, max, first
and last equal after x scale; the device's mean within half a raw unit of the
engine's avg / scale (exact equality is checked on the shared vectors, where
no average sits on a rounding boundary)."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sensorq
from sensorq.device.bytecode import compile_for_device, schema_hash
from sensorq.device.native import DeviceError
from sensorq.device.reference import expected_answer
from sensorq.schema import Channel, Stream

pytest.importorskip("sensorq.engine.executor")
from sensorq.engine.executor import plan_text, run_query  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
OPS = ["<", "<=", ">", ">=", "==", "!="]


@st.composite
def cases(draw):
    n_channels = draw(st.integers(1, 3))
    dtypes = [draw(st.sampled_from(["int8", "int16", "int32", "int64"])) for _ in range(n_channels)]
    scales = [draw(st.sampled_from([None, None, 0.5, 0.01])) for _ in range(n_channels)]
    n = draw(st.integers(1, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = 1_700_000_000_000_000_000 + np.cumsum(rng.integers(0, 3, n)).astype(np.int64) * 10_000_000
    cols = []
    for d in dtypes:
        info = np.iinfo(d)
        span = draw(st.sampled_from([5, 100, 10_000]))
        cols.append(np.clip(rng.integers(-span, span + 1, n), info.min, info.max).astype(d))
    names = [f"c{i}" for i in range(n_channels)]

    def threshold(i):
        raw = int(cols[i][draw(st.integers(0, n - 1))]) + draw(st.integers(-1, 1))
        return raw * (scales[i] or 1)

    def atom():
        i = draw(st.integers(0, n_channels - 1))
        return f"{names[i]} {draw(st.sampled_from(OPS))} {threshold(i):g}"

    def predicate(depth=0):
        kind = draw(st.sampled_from(["atom", "atom", "and", "or", "not"]) if depth < 2 else st.just("atom"))
        if kind == "atom":
            return atom()
        if kind == "not":
            return f"not ({predicate(depth + 1)})"
        return f"({predicate(depth + 1)}) {kind} ({predicate(depth + 1)})"

    agg = draw(st.sampled_from(["count", "sum", "min", "max", "avg", "first", "last"]))
    text = agg if agg == "count" else f"{agg} {names[draw(st.integers(0, n_channels - 1))]}"
    if draw(st.booleans()):
        text += f" where {predicate()}"
    if draw(st.booleans()):
        text += f" last {draw(st.sampled_from(['500ms', '1s', '3s', '1h']))}"
    channels = [Channel(name, d, "", s) for name, d, s in zip(names, dtypes, scales)]
    return channels, t, cols, text


@SETTINGS
@given(cases())
def test_device_reference_and_engine_agree(dev, case):
    channels, t, cols, text = case
    with tempfile.TemporaryDirectory() as tmp, \
            sensorq.open(Path(tmp) / "cache", create=True, capacity="8MB") as cache:
        cache.create_stream("s", channels, block_samples=64)
        cache.append("s", t, cols)
        cache.flush()
        code = compile_for_device(cache, text)
        plan = plan_text(cache, text)
        engine = run_query(cache, text).value
    ring = dev.ring([c.dtype for c in channels], 32, region_len=200_000,
                    schema=schema_hash(Stream("s", tuple(channels))))
    ring.append_many(t, cols)
    want = expected_answer(plan, t, cols)
    try:
        got = ring.query(code, plan.now.ns)
    except DeviceError as exc:
        assert want.overflow and exc.name == "SQ_ERR_OVERFLOW", text
        return
    assert (got.value, got.count) == (want.value, want.count), text
    agg = plan.aggregate
    scale = 1.0 if agg == "count" else (plan.expr.scale or 1.0)
    if agg == "count":
        assert engine == got.value, text
    elif got.value is None:
        assert engine is None or (isinstance(engine, float) and math.isnan(engine)), text
    elif agg == "avg":
        assert abs(engine / scale - got.value) <= 0.5 + 1e-9 * max(1.0, abs(got.value)), text
    else:
        assert engine == pytest.approx(got.value * scale, rel=1e-9, abs=1e-9), text
