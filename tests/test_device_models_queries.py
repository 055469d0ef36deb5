"""Queries over a model's outputs on the device (issue 14), and the VM's
time-weighted aggregates they need (bytecode version 3).

* ``duration where …`` and ``find episodes where … for >= D [gap <= G]``
  compiled for the device and run by the C VM over a ring of hypothesis-made
  samples answer as the query engine does (duration in exact nanoseconds;
  episodes: how many, and their total duration);
* a firmware's loop: the device scores each window of its sensor ring
  (sq_model_window), appends the outputs to a small RAM ring of the model's
  output stream, and runs ``sensorq compile --device`` bytecode over it: the
  answers equal the engine's over the host's derived stream (classes,
  anomaly scores compared through the raw d², outliers);
* what the device lacks is refused at compile time, naming it."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sensorq
from sensorq.device.bytecode import compile_for_device, disassemble
from sensorq.device.models import (DeviceModel, device_channels, device_inputs, output_row, output_schema,
                                   output_stream)
from sensorq.device.native import DeviceLib, build_library, stream_cfg
from sensorq.errors import DeviceUnsupportedError
from sensorq.models.features import compute_windows, make_pipeline
from sensorq.models.format import encode_model
from sensorq.query.planner import plan_query
from sensorq.schema import Channel

pytest.importorskip("sklearn", reason="scikit-learn (the 'models' extra) is not installed")

from test_device_models import fit_model  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    return DeviceLib(build_library(tmp_path_factory.mktemp("host")))


def engine_answer(cache, text):
    """(value, count) as the device reports them: duration in ns; episodes:
    their total ns and how many."""
    res = cache.query(text)
    if text.startswith("find episodes"):
        starts, ends = res.columns["start"], res.columns["end"]
        return int(np.sum(ends - starts)), len(starts)
    return res.value, None


def device_answer(ring, code, now):
    got = ring.query(code, now)
    return got.value, got.count


def now_of(cache, text):
    from sensorq.models.derived import query_view
    view = query_view(cache)
    return plan_query(text, view.streams, view.newest_ns, "data").now.ns


# --- duration and episodes over any stream --------------------------------------------------------

@SETTINGS
@given(seed=st.integers(0, 2**31), gap=st.sampled_from([None, 3, 20]), block=st.sampled_from([8, 33, 64]),
       data=st.data())
def test_duration_and_episodes_equal_the_engine(dev, tmp_path_factory, seed, gap, block, data):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 600))
    steps = rng.choice([0, 1, 1, 1, 2, 5, 40], n).astype(np.int64) * 10**6
    steps[0] = 0
    t = 10**15 + np.cumsum(steps)
    x = np.clip(np.cumsum(rng.integers(-3, 4, n)), -100, 100).astype(np.int16)
    y = rng.integers(-5, 5, n).astype(np.int32)
    path = tmp_path_factory.getbasetemp() / "timed"
    shutil.rmtree(path, ignore_errors=True)
    cache = sensorq.open(path, create=True)
    try:
        cache.create_stream("s", [Channel("x", "int16"), Channel("y", "int32")], block_samples=50,
                            max_gap_ns=None if gap is None else gap * 10**6)
        cache.append("s", t, {"x": x, "y": y})
        cache.flush()
        ring = dev.ring(["int16", "int32"], block, region_len=200_000,
                        schema=__import__("sensorq.device.bytecode", fromlist=["x"]).schema_hash(cache.streams["s"]))
        cut = n - int(rng.integers(0, block))
        ring.append_many(t[:cut], [x[:cut], y[:cut]])
        ring.append_many(t[cut:], [x[cut:], y[cut:]], poll=False)
        k = int(x[rng.integers(n)])
        where = data.draw(st.sampled_from([f"x > {k}", f"x <= {k} and y != 0", f"not x == {k}", "y >= 0"]))
        span = data.draw(st.sampled_from(["", " last 100ms", " last 2s", f" last {int(rng.integers(1, 400))}ms"]))
        longest = data.draw(st.sampled_from(["", " for >= 3ms", " for > 10ms"]))
        hole = data.draw(st.sampled_from(["", " gap <= 2ms", " gap <= 15ms"]))
        for text in (f"duration where {where}{span}", f"find episodes where {where}{longest}{hole}{span}"):
            code = compile_for_device(cache, text)
            want = engine_answer(cache, text)
            got = device_answer(ring, code, now_of(cache, text))
            if text.startswith("duration"):
                assert got[0] == round(want[0] * 1e9), text
            else:
                assert got == want, text
    finally:
        cache.close()


# --- a model's outputs ------------------------------------------------------------------------------

def sensor_cache(path, seed):
    """A 3-axis int16 stream at 50 Hz with activity-like segments and a gap."""
    rng = np.random.default_rng(seed)
    n = 50 * 120
    t = 10**15 + np.arange(n, dtype=np.int64) * 20_000_000
    t[n // 2:] += 7 * 10**9                         # a hole in the data
    level = np.repeat(rng.integers(0, 4, n // 250 + 1), 250)[:n]
    cols = {c: (rng.normal(0, 30 + 200 * level, n) + 100 * (i + 1) * np.sin(np.arange(n) / (3 + level))).astype(np.int16)
            for i, c in enumerate("xyz")}
    shutil.rmtree(path, ignore_errors=True)
    cache = sensorq.open(path, create=True)
    cache.create_stream("imu", [Channel(c, "int16") for c in "xyz"], rate_hz=50.0, block_samples=256)
    cache.append("imu", t, cols)
    cache.flush()
    return cache, t, cols, level


def device_outputs(dev, model, t, cols):
    """What a firmware does: score each window of its sensor ring, append the
    output to the output stream's RAM ring.  Returns that ring."""
    chans = device_channels(model)
    ring = dev.ring([c[1] for c in chans], 64, region_len=400_000)
    ring.append_many(t, device_inputs(model, cols))
    dm = DeviceModel(dev, encode_model(model, with_float=False), stream_cfg([c[1] for c in chans], 64),
                     [c[0] for c in chans])
    out_stream = output_stream(model)
    out = dev.ring([c.dtype for c in out_stream.channels], 16, region_len=200_000,
                   schema=output_schema(model))
    p = model.pipeline
    for k in range(-(-int(t[0]) // p.hop_ns), (int(t[-1]) + 1 - p.window_ns) // p.hop_ns + 1):
        w = dm.window(ring, k * p.hop_ns)
        if w.scored:
            out.append(w.start, output_row(model, w.cls, w.raw), poll=False)
            out.poll()
    return out


@pytest.fixture(scope="module")
def models_cache(tmp_path_factory):
    cache, t, cols, level = sensor_cache(tmp_path_factory.mktemp("m") / "c", 4)
    feats = ["std(x)", "rms(mag(x, y, z))", "mad(y)", "crossings(z)", "band(x, 1, 5)"]
    # every window whole (100 samples): the host's derived stream then holds the
    # same windows whatever a query's range (one that starts before the data
    # would also score the windows that begin before the first sample)
    p = make_pipeline(cache.streams["imu"], feats, window="2s", hop="500ms", cache=cache, min_samples=100)
    w = compute_windows(cache, p, codes=True)
    motion = fit_model("forest", 1, p, w.codes, n_classes=4)
    motion.outputs.classes = ["Standing", "Walking", "Running", "Jumping"]
    anomaly = fit_model("anomaly", 2, p, w.codes[: len(w) // 3])
    cache.models.add("motion", motion)
    cache.models.add("anomaly", anomaly)
    yield cache, t, cols
    cache.close()


@pytest.mark.parametrize("text", [
    "count where motion == Running",
    "count where motion == Walking last 30s",
    "duration where motion == Running last 10m",
    "duration where motion != Standing last 45s",
    "find episodes where motion == Running for >= 5s",
    "find episodes where motion == Walking or motion == Jumping for >= 1s last 1m",
])
def test_queries_over_a_classifiers_outputs(dev, models_cache, text):
    cache, t, cols = models_cache
    model = cache.models.get("motion")
    out = device_outputs(dev, model, t, cols)
    code = compile_for_device(cache, text)
    assert disassemble(code).schema == output_schema(model)
    want = engine_answer(cache, text)
    got = device_answer(out, code, now_of(cache, text))
    if text.startswith("duration"):
        assert got[0] == round(want[0] * 1e9)
    elif text.startswith("count"):
        assert got[0] == want[0]
    else:
        assert got == want


def test_queries_over_an_anomaly_score(dev, models_cache):
    cache, t, cols = models_cache
    model = cache.models.get("anomaly")
    out = device_outputs(dev, model, t, cols)
    scores = np.sort(cache.query("score anomaly").columns["anomaly"])
    texts = []
    for q in (0.1, 0.5, 0.9, 0.99):
        s = float(scores[int(q * (len(scores) - 1))])
        texts += [f"count where anomaly > {s!r}", f"count where anomaly >= {s!r}",
                  f"count where anomaly < {s!r} last 1m", f"count where anomaly == {s!r}",
                  f"duration where anomaly > {s * 1.0001!r} last 90s"]
    texts += ["count where anomaly_outlier == anomalous", "duration where anomaly_outlier == anomalous",
              "count where anomaly > 0.8 last 1h", "find episodes where anomaly > 3 for >= 1s"]
    for text in texts:
        code = compile_for_device(cache, text)
        want = engine_answer(cache, text)
        got = device_answer(out, code, now_of(cache, text))
        if text.startswith("duration"):
            assert got[0] == round(want[0] * 1e9), text
        elif text.startswith("count"):
            assert got[0] == want[0], text
        else:
            assert got == want, text


@pytest.mark.parametrize("text, construct", [
    ("count where motion_Running > 0.5", "class probabilities (motion_Running)"),
    ("max anomaly last 1h", "'max' over a model's outputs"),
    ("count where motion == Running by 1m", "buckets (by 1m)"),
    ("score motion last 1m", "model scoring"),
])
def test_what_the_device_lacks_is_named(models_cache, text, construct):
    cache, _, _ = models_cache
    with pytest.raises(DeviceUnsupportedError) as info:
        compile_for_device(cache, text)
    assert "the device has no" in str(info.value) and construct in str(info.value)


def test_a_query_for_another_models_outputs_is_refused(dev, models_cache):
    cache, t, cols = models_cache
    out = device_outputs(dev, cache.models.get("motion"), t, cols)
    code = compile_for_device(cache, "count where anomaly > 1")
    with pytest.raises(Exception) as info:
        out.query(code, int(t[-1]))
    assert "SQ_ERR_MISMATCH" in str(info.value)


def test_a_build_without_duration_and_episodes_refuses_them(tmp_path, models_cache):
    """make NO_TIMED=1 leaves bytecode version 3 out of the VM: refused with
    SQ_ERR_UNSUPPORTED, version 2 still answered."""
    cache, t, cols = models_cache
    lean = DeviceLib(build_library(tmp_path / "lean", options=("NO_TIMED=1",)))
    model = cache.models.get("motion")
    out_stream = output_stream(model)
    ring = lean.ring([c.dtype for c in out_stream.channels], 16, region_len=20_000, schema=output_schema(model))
    ring.append(10**15, [1])
    counted = ring.query(compile_for_device(cache, "count where motion == Walking"), 10**15 + 1)
    assert counted.count == 1                   # class 1 is Walking
    with pytest.raises(Exception) as info:
        ring.query(compile_for_device(cache, "duration where motion == Running"), 10**15 + 1)
    assert "SQ_ERR_UNSUPPORTED" in str(info.value)
