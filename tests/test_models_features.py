"""Window features (sensorq/models/features.py, kernels.py) against the
independent reference of test_models_common.py: integer codes equal exactly,
float features to rounding; windows across block edges, irregular and
duplicate timestamps, NaN, gaps (empty windows), evicted blocks."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sensorq
from sensorq.models.features import compute_windows, make_pipeline
from sensorq.models.kernels import COS_TABLE
from sensorq.models.model import ModelError, OP_SCALE

from test_models_common import COS, reference_windows

SECOND = 1_000_000_000
ALL = ["mean(a)", "std(a)", "min(a)", "max(a)", "rms(a)", "ptp(a)", "mad(a)", "crossings(a)",
       "mean(b)", "std(b)", "max(b)", "mad(b)", "crossings(b)", "mean(f)", "std(f)", "min(f)", "rms(f)",
       "crossings(f)", "std(mag(a, b))", "rms(mag(a, f, b))", "band(a, 2, 9)", "freeze(f)",
       "bandratio(mag(a, b), 1, 3, 4, 12)"]


@st.composite
def streams(draw):
    n = draw(st.integers(0, 600))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    steps = rng.choice([0, 1, 2, 5, 300], size=n, p=[0.1, 0.6, 0.2, 0.08, 0.02]) * 10_000_000
    t = 1_700_000_000 * SECOND + np.cumsum(steps).astype(np.int64)
    a = np.clip(np.cumsum(rng.integers(-900, 901, n)), -32768, 32767).astype(np.int16)
    b = rng.integers(-2**31, 2**31, n, dtype=np.int64).astype(np.int32) // draw(st.sampled_from([1, 1000]))
    f = np.round(rng.normal(0, draw(st.sampled_from([1e-3, 1.0, 1e4])), n), 4)
    f[rng.random(n) < 0.05] = np.nan
    block = draw(st.sampled_from([7, 33, 256]))
    return t, a, b, f, block


def _cache(tmp_path, t, a, b, f, block, name="c", **kw):
    cache = sensorq.open(tmp_path / name, create=True, **kw)
    stream = cache.create_stream("s", [sensorq.Channel("a", "int16"), sensorq.Channel("b", "int32"),
                                       sensorq.Channel("f", "float64")], rate_hz=100, block_samples=block)
    if len(t):
        cache.append("s", t, {"a": a, "b": b, "f": f})
    return cache, stream


def _compare(cache, pipeline, start=None, end=None):
    got = compute_windows(cache, pipeline, start, end, codes=True, values=True)
    starts, codes, values = reference_windows(cache, pipeline, start, end)
    np.testing.assert_array_equal(got.start, starts)
    np.testing.assert_array_equal(got.end, starts + pipeline.window_ns)
    np.testing.assert_array_equal(got.codes, codes)
    if len(starts):
        np.testing.assert_allclose(got.values, values, rtol=1e-7, atol=1e-6)
        # the float and integer paths describe the same quantity
        scale = np.array([OP_SCALE[f.op] for f in pipeline.features])
        assert np.isfinite(got.values).all()
        assert got.codes.shape == got.values.shape and scale.shape[0] == got.codes.shape[1]
    return got


def test_cos_table_is_the_documented_formula_and_has_its_symmetries():
    assert COS_TABLE.tolist() == COS
    # a device may keep the quarter wave: cos(2pi - x) = cos x, cos(pi - x) = -cos x
    assert all(COS[k] == COS[(256 - k) % 256] and COS[128 - k] == -COS[k] for k in range(65))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=streams(), window=st.sampled_from(["200ms", "1s", "1500ms"]),
       hop=st.sampled_from(["100ms", "250ms", "1s", "2s"]))
def test_features_match_the_reference(tmp_path_factory, data, window, hop):
    t, a, b, f, block = data
    cache, stream = _cache(tmp_path_factory.mktemp("f"), t, a, b, f, block)
    with cache:
        # a 200 ms window's spectrum has lines every 5 Hz: no 0.5-3 Hz band
        feats = [x for x in ALL if window != "200ms" or "band" not in x and "freeze" not in x]
        p = make_pipeline(stream, feats, window=window, hop=hop, cache=cache, min_samples=3)
        _compare(cache, p)
        if len(t) > 10:            # a range that starts and ends inside the data, off the hop grid
            _compare(cache, p, int(t[len(t) // 4]) + 3, int(t[3 * len(t) // 4]) + 7)


def test_windows_cross_block_edges_and_skip_gaps(tmp_path):
    t = 1_700_000_000 * SECOND + np.arange(3000, dtype=np.int64) * 10_000_000
    t[1500:] += 3600 * SECOND                                  # an hour of silence: empty windows
    rng = np.random.default_rng(3)
    a = rng.integers(-3000, 3000, 3000).astype(np.int16)
    b = rng.integers(-10**9, 10**9, 3000).astype(np.int32)
    f = rng.normal(0, 1, 3000)
    cache, stream = _cache(tmp_path, t, a, b, f, 41)
    with cache:
        p = make_pipeline(stream, ["mean(a)", "std(b)", "crossings(f)", "max(mag(a, f))"],
                          window="2s", hop="500ms", cache=cache)
        got = _compare(cache, p)
        # 15 s of data per stretch; a 2 s window needs 100 samples: 29 windows
        # per stretch (from start - 1 s to start + 13 s), less the first
        # stretch's window that would start before the range
        assert len(got) == 29 + 28
        assert np.diff(got.start).max() == 3600 * SECOND   # from start + 14 s to start + 3614 s
        assert p.min_samples == 100            # half the nominal 200 samples of a 2 s window


def test_evicted_blocks_are_simply_absent(tmp_path):
    n = 200_000
    t = 1_700_000_000 * SECOND + np.arange(n, dtype=np.int64) * 10_000_000
    rng = np.random.default_rng(5)
    a = rng.integers(-30000, 30000, n).astype(np.int16)
    b = rng.integers(-2**31, 2**31, n, dtype=np.int64).astype(np.int32)
    f = rng.normal(0, 1, n)
    cache, stream = _cache(tmp_path, t, a, b, f, 1000, capacity="64KiB")
    with cache:
        first = int(cache.blocks("s").t_first[0])
        assert first > t[0]                      # the ring has dropped the oldest blocks
        p = make_pipeline(stream, ["mean(a)", "std(a)", "min(b)", "rms(f)"], window="1s", hop="700ms",
                          cache=cache)
        got = _compare(cache, p, first - 5 * SECOND, None)
        assert got.start[0] >= first - p.window_ns


def test_too_few_samples_give_no_row_and_nan_samples_are_dropped(tmp_path):
    t = 1_700_000_000 * SECOND + np.arange(40, dtype=np.int64) * 100_000_000   # 10 Hz
    f = np.arange(40, dtype=float)
    f[10:19] = np.nan                                   # window [1 s, 2 s) keeps one sample
    cache, stream = _cache(tmp_path, t, np.zeros(40, np.int16), np.zeros(40, np.int32), f, 16)
    with cache:
        p = make_pipeline(stream, ["mean(f)"], window="1s", hop="1s", cache=cache, min_samples=5)
        got = compute_windows(cache, p, codes=True, values=True)
    # [t0 + 3 s, t0 + 4 s) ends after the newest sample + 1 ns: not inside the range
    assert got.start.tolist() == [t[0], t[20]]
    assert got.values[:, 0].tolist() == [4.5 * 2**p.inputs[0].exponent, 24.5 * 2**p.inputs[0].exponent]


def test_bad_feature_texts_are_model_errors(tmp_path):
    cache, stream = _cache(tmp_path, [], [], [], [], 16)
    with cache:
        for text in ["median(a)", "mean(zz)", "band(a, 1)", "mean a", "mag(a,a,a,a,a)"]:
            with pytest.raises(ModelError):
                make_pipeline(stream, [text], window="1s", hop="1s")
        with pytest.raises(ModelError):
            make_pipeline(stream, ["mean(a)"], window="0s", hop="1s")


def test_window_statistics_direct_equal_numpy():
    """kernels.stats_direct (the walker's per-window S, Q, D, min, max) against
    numpy over the same slices, windows of one sample included."""
    from sensorq.models.kernels import stats_direct
    rng = np.random.default_rng(0)
    u = rng.integers(-32768, 32768, (3, 1000)).astype(np.int32)
    lo, hi = np.array([0, 10, 500, 999]), np.array([1000, 11, 700, 1000])
    got = np.zeros((5, 3, 4), np.int64)
    stats_direct(u, lo, hi, got)
    for s in range(3):
        for w in range(4):
            x = u[s, lo[w]:hi[w]].astype(np.int64)
            assert got[:, s, w].tolist() == [x.sum(), (x * x).sum(), np.abs(np.diff(x)).sum(),
                                             x.min(), x.max()]
