"""The fused feature path (features._fused_windows, kernels.block_segments /
merge_segments / segment_windows): blocks decoded by numba straight into
g-segment statistics.  It must give the walker's windows and codes bit for
bit, and the independent reference's: irregular and duplicate timestamps,
windows that are not whole hops (and shorter than a hop), ranges off the
grid, evicted blocks, chunks that carry segments over, both cores."""
from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sensorq
from sensorq.models import features
from sensorq.models.features import compute_windows, fused_grid, make_pipeline
from sensorq.models.kernels import merge_segments
from sensorq.models.model import ModelError

from test_models_common import reference_windows

SECOND = 1_000_000_000
BASIC = ("mean", "std", "min", "max", "rms", "ptp", "mad")
SIGNALS = ("a", "b", "c", "d", "mag(a, b)", "mag(a, c, d)", "mag(a, b, c, d)")


@st.composite
def streams(draw):
    n = draw(st.integers(0, 700))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    steps = rng.choice([0, 1, 2, 7, 300], size=n, p=[0.1, 0.6, 0.2, 0.08, 0.02]) * 10_000_000
    t = draw(st.sampled_from([1_700_000_000, -3, 0])) * SECOND + 3 + np.cumsum(steps).astype(np.int64)
    cols = {"a": np.clip(np.cumsum(rng.integers(-900, 901, n)), -32768, 32767).astype(np.int16),
            "b": (rng.integers(-2**31, 2**31, n, dtype=np.int64) // draw(st.sampled_from([1, 1000])))
            .astype(np.int32),
            "c": rng.integers(-128, 128, n).astype(np.int8),
            "d": rng.integers(-2**62, 2**62, n, dtype=np.int64) // draw(st.sampled_from([1, 2**40]))}
    return t, cols, draw(st.sampled_from([5, 33, 256]))


def _cache(path, t, cols, block, **kw):
    cache = sensorq.open(path, create=True, **kw)
    stream = cache.create_stream("s", [sensorq.Channel("a", "int16"), sensorq.Channel("b", "int32"),
                                       sensorq.Channel("c", "int8"), sensorq.Channel("d", "int64")],
                                 rate_hz=100, block_samples=block)
    if len(t):
        cache.append("s", t, cols)
    return cache, stream


def _walker(cache, p, start=None, end=None):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(features, "fused_grid", lambda p: None)
        return compute_windows(cache, p, start, end)


def _compare(cache, p, start=None, end=None, chunk=None):
    assert fused_grid(p) is not None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(features, "_Walker", None)           # no falling back to the walker
        if chunk is not None:               # a few blocks per chunk: segments carried over
            mp.setattr(features, "FUSED_CHUNK_BYTES", chunk)
        got = compute_windows(cache, p, start, end)
    ref = _walker(cache, p, start, end)
    np.testing.assert_array_equal(got.start, ref.start)
    np.testing.assert_array_equal(got.end, ref.end)
    np.testing.assert_array_equal(got.n, ref.n)
    np.testing.assert_array_equal(got.codes, ref.codes)
    assert (got.blocks, got.samples) == (ref.blocks, ref.samples)
    assert got.values is None and got.codes.dtype == np.int64
    starts, codes, _ = reference_windows(cache, p, start, end)
    np.testing.assert_array_equal(got.start, starts)
    np.testing.assert_array_equal(got.codes, codes)
    return got


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=streams(), window=st.sampled_from(["200ms", "1s", "1500ms", "2s"]),
       hop=st.sampled_from(["100ms", "250ms", "700ms", "2s"]), chunk=st.sampled_from([None, 1, 2000]),
       pick=st.randoms(use_true_random=False))
def test_fused_path_matches_the_walker_and_the_reference(tmp_path_factory, data, window, hop, chunk,
                                                         pick):
    t, cols, block = data
    cache, stream = _cache(tmp_path_factory.mktemp("f"), t, cols, block)
    with cache:
        feats = pick.sample([f"{op}({s})" for op in BASIC for s in SIGNALS], pick.randint(1, 12))
        p = make_pipeline(stream, feats, window=window, hop=hop, cache=cache, min_samples=pick.randint(2, 9))
        _compare(cache, p, chunk=chunk)
        if len(t) > 10:            # a range that starts and ends inside the data, off the hop grid
            _compare(cache, p, int(t[len(t) // 4]) + 3, int(t[3 * len(t) // 4]) + 7, chunk=chunk)


def _regular(tmp_path, n=20_000, block=512, **kw):
    t = 1_700_000_000 * SECOND + np.arange(n, dtype=np.int64) * 10_000_000
    t[n // 2:] += 3600 * SECOND + 3_000_000                   # an hour of silence, off the grid
    rng = np.random.default_rng(7)
    cols = {"a": rng.integers(-30000, 30000, n).astype(np.int16),
            "b": rng.integers(-2**31, 2**31, n, dtype=np.int64).astype(np.int32),
            "c": rng.integers(-128, 128, n).astype(np.int8),
            "d": rng.integers(-2**40, 2**40, n, dtype=np.int64)}
    return _cache(tmp_path, t, cols, block, **kw)


def test_chunks_carry_segments_over_and_both_cores_agree(tmp_path, monkeypatch):
    cache, stream = _regular(tmp_path)
    with cache:
        p = make_pipeline(stream, [f"{op}({s})" for op in BASIC for s in ("a", "d", "mag(a, b, c)")],
                          window="2s", hop="500ms", cache=cache)
        whole = _compare(cache, p)
        assert len(whole) > 300
        expected = {}
        for rng in ((None, None), (int(whole.start[5]) - 1, int(whole.end[-7]) + 1)):
            expected[rng] = _compare(cache, p, *rng)
        monkeypatch.setattr(features, "_Walker", None)     # the fused path answers every call
        for chunk in (1, 3000, 40_000):          # one block per chunk, a few, many
            monkeypatch.setattr(features, "FUSED_CHUNK_BYTES", chunk)
            for rng, ref in expected.items():
                got = compute_windows(cache, p, *rng)
                for field in ("start", "end", "n", "codes"):
                    np.testing.assert_array_equal(getattr(got, field), getattr(ref, field))
                assert (got.blocks, got.samples) == (ref.blocks, ref.samples)
        before = numba.get_num_threads()
        try:
            for threads in {1, numba.config.NUMBA_NUM_THREADS}:
                numba.set_num_threads(threads)
                got = compute_windows(cache, p)
                np.testing.assert_array_equal(got.codes, whole.codes)
        finally:
            numba.set_num_threads(before)


def test_the_fused_path_is_the_one_taken_and_the_walker_the_fallback(tmp_path, monkeypatch):
    cache, stream = _regular(tmp_path, n=3000, block=100)
    with cache:
        p = make_pipeline(stream, ["mean(a)", "std(mag(a, b))", "mad(c)"], window="1s", hop="1s",
                          cache=cache)
        expected = _walker(cache, p)

        class NoWalker:
            def __init__(self, *a, **k):
                raise AssertionError("the walker ran")
        with monkeypatch.context() as mp:
            mp.setattr(features, "_Walker", NoWalker)
            np.testing.assert_array_equal(compute_windows(cache, p).codes, expected.codes)
            # what the fused path cannot do (float values, labels, masks) goes to the walker
            for kw in ({"values": True}, {"label": "c"}, {"mask": lambda t, cols: t > 0}):
                with pytest.raises(AssertionError, match="the walker ran"):
                    compute_windows(cache, p, **kw)
        q = make_pipeline(stream, ["mean(a)", "crossings(a)"], window="1s", hop="1s", cache=cache)
        assert fused_grid(q) is None
        # samples out of time order: merge_segments says so and the walker answers
        monkeypatch.setattr(features, "merge_segments", lambda *a: -1)
        np.testing.assert_array_equal(compute_windows(cache, p).codes, expected.codes)


def test_walker_fallback_cases_are_refused_by_fused_grid(tmp_path):
    cache, stream = _regular(tmp_path, n=100, block=100)
    with cache:
        f = sensorq.Channel
        assert fused_grid(make_pipeline(stream, ["mean(a)"], window="1s", hop="1s")) == (SECOND, 1, 1)
        assert fused_grid(make_pipeline(stream, ["mean(a)"], window="2s", hop="500ms")) == (SECOND // 2, 1, 4)
        assert fused_grid(make_pipeline(stream, ["mean(a)"], window="1s", hop="700ms")) == (
            100_000_000, 7, 10)
        # a window of more than MAX_FUSED_SEGMENTS segments of gcd(window, hop)
        assert fused_grid(make_pipeline(stream, ["mean(a)"], window="1999ms", hop="2s")) is None
        for feat in ("crossings(a)", "band(a, 2, 9)"):
            assert fused_grid(make_pipeline(stream, [feat], window="1s", hop="1s")) is None
        other = cache.create_stream("g", [f("x", "float32"), f("y", "int16")], rate_hz=100)
        assert fused_grid(make_pipeline(other, ["mean(x)"], window="1s", hop="1s")) is None
        assert fused_grid(make_pipeline(other, ["mean(y)"], window="1s", hop="1s")) is not None


def test_evicted_blocks_are_simply_absent(tmp_path):
    n = 200_000
    t = 1_700_000_000 * SECOND + np.arange(n, dtype=np.int64) * 10_000_000
    rng = np.random.default_rng(5)
    cols = {"a": rng.integers(-30000, 30000, n).astype(np.int16),
            "b": rng.integers(-2**31, 2**31, n, dtype=np.int64).astype(np.int32),
            "c": rng.integers(-128, 128, n).astype(np.int8),
            "d": rng.integers(-2**62, 2**62, n, dtype=np.int64)}
    cache, stream = _cache(tmp_path, t, cols, 1000, capacity="64KiB")
    with cache:
        first = int(cache.blocks("s").t_first[0])
        assert first > t[0]                      # the ring has dropped the oldest blocks
        p = make_pipeline(stream, ["mean(a)", "std(a)", "min(b)", "rms(mag(c, d))"], window="1s",
                          hop="700ms", cache=cache)
        got = _compare(cache, p, first - 5 * SECOND, None)
        assert got.start[0] >= first - p.window_ns


def test_too_many_samples_in_a_window_is_refused_by_both_paths(tmp_path, monkeypatch):
    cache, stream = _regular(tmp_path, n=2000, block=64)
    with cache:
        p = make_pipeline(stream, ["mean(a)"], window="1s", hop="1s", cache=cache)
        monkeypatch.setattr(features, "MAX_WINDOW_SAMPLES", 50)
        with pytest.raises(ModelError, match="a window holds 100 samples; at most 50"):
            compute_windows(cache, p)
        with pytest.raises(ModelError, match="a window holds 100 samples; at most 50"):
            _walker(cache, p)


def test_merge_segments_joins_across_blocks_and_refuses_disorder():
    # two blocks: [k=3, k=4] and [k=4, k=6]; segment 4 continues across the edge
    k = np.array([3, 4, 4, 6], np.int64)
    n = np.array([2, 1, 2, 1], np.int64)
    st = np.zeros((4, 1, 7), np.int64)
    st[:, 0] = [[3, 5, 1, 1, 2, 1, 2], [7, 49, 0, 7, 7, 7, 7], [1, 1, 2, -1, 2, -1, 2], [0, 0, 0, 0, 0, 0, 0]]
    slot, counts = np.array([0, 2], np.int64), np.array([2, 2], np.int64)
    assert merge_segments(k, n, st, slot, counts) == 3
    assert k[:3].tolist() == [3, 4, 6] and n[:3].tolist() == [2, 3, 1]
    # S, Q add; D adds the joint |first - last| = |-1 - 7|; min, max; first of the
    # first part, last of the second
    assert st[1, 0].tolist() == [8, 50, 0 + 2 + 8, -1, 7, 7, 2]
    k = np.array([5, 4], np.int64)
    assert merge_segments(k, np.ones(2, np.int64), np.zeros((2, 1, 7), np.int64),
                          np.array([0, 1], np.int64), np.array([1, 1], np.int64)) == -1


def test_mag_by_the_float_square_root_is_isqrt_exactly():
    # kernels._mag_row truncates sqrt(double(sum)) for sums < 4 * 2^30 + 1: exact
    # at every perfect square and just below it, where it could go wrong
    r = np.arange(1, 65537, dtype=np.int64)
    for v in (r * r, r * r - 1, r * r + 1):
        got = np.sqrt(v.astype(np.float64)).astype(np.int64)
        assert got.tolist() == [math.isqrt(int(x)) for x in v]


def test_a_replaced_or_damaged_model_file_is_never_served_from_memory(tmp_path):
    """derived.py keeps loaded models by the bytes of their file: a model
    replaced under the same name answers at once, a damaged one is refused."""
    pytest.importorskip("sklearn")
    from sklearn.tree import DecisionTreeClassifier
    cache, stream = _regular(tmp_path, n=6000, block=256)
    with cache:
        feats = ["mean(a)", "std(a)", "max(mag(a, b))"]
        p = make_pipeline(stream, feats, window="2s", hop="500ms", cache=cache)
        X = compute_windows(cache, p, codes=False, values=True).values
        y = (X[:, 0] > np.median(X[:, 0])).astype(int)
        counts = []
        for labels in (y, 1 - y, np.where(X[:, 1] > np.median(X[:, 1]), 1, 0)):
            tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, labels)
            cache.models.add("motion", tree, stream="s", window="2s", hop="500ms", features=feats,
                             class_names=["low", "high"])
            counts.append(cache.query("count where motion == high").value)
            scored = _score(cache)
            assert counts[-1] == int((scored.cls == 1).sum())
        assert counts[0] != counts[1]
        path = tmp_path / "models" / "motion.sqm"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x40
        path.write_bytes(bytes(data))
        with pytest.raises(ModelError, match="motion.sqm"):
            cache.query("count where motion == high")


def _score(cache):
    """Every window of the model's derived stream: with no range, from the
    earliest one that reaches the first sample (derived.py), found by hand."""
    from sensorq.models.score import score_windows
    model = cache.models.get("motion")
    window, hop = model.pipeline.window_ns, model.pipeline.hop_ns
    first = int(cache.blocks(model.pipeline.stream).t_first[0])
    return score_windows(cache, model, ((first - window) // hop + 1) * hop)


@pytest.mark.parametrize("codec", ["compact", "fast"])
def test_regular_clock_sections_are_recognised_and_others_decoded(tmp_path, codec):
    """A block whose time section is byte for byte the encoder's section of
    0, 1, ..., n - 1 is not decoded (features.regular_clocks); any other is."""
    from sensorq.models.features import regular_clocks
    n = 3000
    t = 1_700_000_000 * SECOND + np.arange(n, dtype=np.int64) * 10_000_000
    t[1700] += 1                                   # one late sample: its block is not a clock
    cache = sensorq.open(tmp_path, create=True)
    stream = cache.create_stream("s", [sensorq.Channel("a", "int16")], rate_hz=100, block_samples=250,
                                 codec=codec)
    rng = np.random.default_rng(1)
    cache.append("s", t, {"a": rng.integers(-500, 500, n).astype(np.int16)})
    with cache:
        index = cache.blocks("s")
        clocks, meta = regular_clocks(250)
        sections = {bytes(clocks[o:o + ln]) for _, o, ln, _ in meta}
        start = 56 + 80
        regular = [bytes(index.raw(i)[start:start + int(index.time_len[i])]) in sections
                   for i in range(len(index))]
        assert regular == [i != 1700 // 250 for i in range(len(index))]
        p = make_pipeline(stream, ["mean(a)", "mad(a)", "max(a)"], window="1s", hop="250ms")
        _compare(cache, p)
