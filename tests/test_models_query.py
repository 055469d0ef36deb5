"""Models in the language: a model's outputs are the channels of a derived
stream named after it, so every aggregate, bucket, search and time window
works on them.  Checked against the model's own scores (score_windows) and
against the same outputs stored as an ordinary stream in another cache."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import sensorq
from sensorq import Channel
from sensorq.errors import QueryError
from sensorq.models.derived import query_view
from sensorq.models.registry import ModelRegistry

pytest.importorskip("sklearn")

T0 = 1_790_000_000_000_000_000
MS = 1_000_000
STATES = ("idle", "shake", "tilt")


def synthetic(path: Path, seconds: int = 240, rate: int = 50, seed: int = 1, whole_ms: bool = False):
    """x, y, z in mg at ``rate`` Hz; a labelled state that changes every few
    seconds.  ``whole_ms``: each time floored to the ms (64 Hz: steps of 15
    and 16 ms, a clock line, codec/clock.py)."""
    rng = np.random.default_rng(seed)
    n = seconds * rate
    t = T0 + np.arange(n, dtype=np.int64) * (1000 * MS // rate)
    if whole_ms:
        t -= t % MS
    state = np.repeat(rng.integers(0, 3, n // (rate * 4) + 1), rate * 4)[:n].astype(np.int8)
    x = rng.normal(0, 20, n)
    x[state == 1] += 600 * np.sin(np.arange(int((state == 1).sum())) * 1.3)
    z = 1000 + rng.normal(0, 20, n)
    z[state == 2] -= 700
    cache = sensorq.open(path, create=True)
    cache.create_stream("imu", [Channel("x", "int16", "mg"), Channel("y", "int16", "mg"),
                                Channel("z", "int16", "mg"),
                                Channel("state", "int8", categories=STATES)], block_samples=700)
    cache.append("imu", t, {"x": x.astype(np.int16), "y": rng.normal(0, 20, n).astype(np.int16),
                            "z": z.astype(np.int16), "state": state})
    cache.flush()
    return cache


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cache = synthetic(tmp_path_factory.mktemp("m") / "c")
    ModelRegistry(cache).train("motion", "imu", "state", kind="forest", window="2s", hop="500ms",
                               trees=5, depth=4)
    yield cache
    cache.close()


def reference(cache, query: str):
    """The same query over the same outputs stored as an ordinary stream."""
    view = query_view(cache)
    scored = view.scored("motion")
    stream = view.streams["motion"]
    from sensorq.models.derived import columns_of
    cols = columns_of(stream, view.model_of("motion"), scored)
    other = sensorq.open(Path(str(cache.path) + "-ref"), create=True)
    if "motion" not in other.streams:
        other.create_stream("motion", stream.channels, max_gap_ns=stream.max_gap_ns, block_samples=333)
        other.append("motion", scored.start, cols)
        other.flush()
    try:
        return other.query(query)
    finally:
        other.close()


@pytest.mark.parametrize("query", [
    "count from motion",
    "count where motion == shake",
    "duration where motion == tilt",
    "count where motion in (shake, tilt) by 30s",
    "max motion_shake by 1m",
    "avg motion_idle last 1m",
    "find episodes where motion == shake for >= 3s",
    "find first 3 where motion == tilt",
    "first motion",
])
def test_a_model_output_composes_like_any_channel(trained, query):
    got, want = trained.query(query), reference(trained, query)
    assert got.kind == want.kind
    if got.kind == "scalar":
        assert got.value == want.value
    else:
        assert list(got.columns) == list(want.columns)
        for name in got.columns:
            assert np.array_equal(got.columns[name], want.columns[name]), name


def test_counts_equal_the_models_own_scores(trained):
    scored = query_view(trained).scored("motion")
    code = STATES.index("shake")
    assert trained.query("count where motion == shake").value == int((scored.cls == code).sum())
    start = int(scored.start[len(scored.start) // 2])
    assert trained.query(f"count where motion == shake since {start}ns").value == \
        int((scored.cls[scored.start >= start] == code).sum())


def test_the_model_recovers_the_labels(trained):
    """The synthetic states are easy: the model's windows agree with the
    majority label of their samples almost everywhere."""
    scored = query_view(trained).scored("motion")
    t, cols = trained.read("imu")
    agree = 0
    for s, e, c in zip(scored.start, scored.end, scored.cls):
        labels = cols["state"][(t >= s) & (t < e)]
        agree += int(np.bincount(labels, minlength=3).argmax() == c)
    assert agree / len(scored.start) > 0.9


def test_score_lists_windows(trained):
    result = trained.query("score motion last 1m")
    start, end = result.columns["start"], result.columns["end"]
    assert np.all(end - start == 2_000_000_000) and np.all(np.diff(start) == 500_000_000)
    newest = trained.newest_ns("imu")
    assert start[-1] + 2_000_000_000 <= newest + 1 < start[-1] + 2_500_000_000   # the newest whole window
    assert start[0] == start[-1] - 59_500_000_000      # windows starting in the minute up to it
    probs = np.stack([result.columns[f"motion_{s}"] for s in STATES], axis=1)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.array_equal(np.argmax(probs, axis=1), [STATES.index(v) for v in result.columns["motion"]])


def test_score_errors_point_at_the_model(trained):
    with pytest.raises(QueryError) as info:
        trained.query("score nosuch last 1m")
    assert info.value.column == 7 and "motion" in str(info.value)
    with pytest.raises(QueryError, match="scores 2s windows every 500ms"):
        trained.query("score motion over 3s")
    with pytest.raises(QueryError, match="reads stream 'imu'"):
        trained.query("score motion from other last 1m")


BASIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "basic_motions.csv"


@pytest.mark.skipif(not BASIC.exists(), reason="../shared/data/basic_motions.csv is not here")
def test_basic_motions_running_episodes(tmp_path):
    from sensorq.ingest import ingest_csv
    with sensorq.open(tmp_path / "c", create=True) as cache:
        ingest_csv(cache, BASIC, "motions")
        split = cache.streams["motions"].channel("split")
        ModelRegistry(cache).train(
            "motion", "motions", "activity", kind="forest", window="2s", hop="500ms",
            exclude=("split", "case"), group="case",
            mask=lambda t, c: c["split"] == split.code_of("train"),
            test_mask=lambda t, c: c["split"] == split.code_of("test"))
        episodes = cache.query("find episodes where motion == Running for >= 5s")
        t, cols = cache.read("motions")
        running = cols["activity"] == cache.streams["motions"].channel("activity").code_of("Running")
        for s, e in zip(episodes.columns["start"], episodes.columns["end"]):
            inside = (t >= s) & (t < e)
            assert running[inside].mean() > 0.8, (s, e)  # episodes lie on Running recordings
        covered = int((episodes.columns["end"] - episodes.columns["start"]).sum())
        assert covered >= 150 * 10**9                  # of the 20 Running recordings of 10 s


def test_explain_shows_the_model_its_features_and_what_was_decoded(trained):
    from sensorq.engine.executor import explain_query
    text = explain_query(trained, "count where motion == shake by 1m")
    assert "model motion: forest" in text and "features (" in text
    scored = query_view(trained).scored("motion")
    assert f"scored {len(scored.start)} windows" in text
    assert f"({scored.samples} samples)" in text and "stream 'imu'" in text


@pytest.mark.parametrize("query", ["count where motion == shake by 30s", "duration where motion == tilt",
                                   "find episodes where motion == shake for >= 3s",
                                   "max motion_shake by 1m", "first motion by 1m"])
def test_both_engine_tiers_answer_model_outputs_alike(trained, query):
    a = trained.query(query, engine="interpreted")
    b = trained.query(query, engine="compiled")
    assert a.value == b.value
    assert {k: v.tolist() for k, v in a.columns.items()} == {k: v.tolist() for k, v in b.columns.items()}


def test_a_clock_off_its_tick_scores_as_when_written_plain(tmp_path, monkeypatch):
    """64 Hz in whole ms: its time sections are clock lines, which the model
    kernels read (models/kernels.py); the scores, and the answers over them,
    equal those of the same samples written without clock lines."""
    from sensorq.codec import timecol
    from sensorq.codec.codes import CLOCK
    answers = {}
    for lines in (True, False):
        monkeypatch.setattr(timecol, "CLOCK_LINES", lines)
        cache = synthetic(tmp_path / f"c{lines}", seconds=120, rate=64, whole_ms=True)
        try:
            codecs = cache.blocks("imu").time_codec
            assert ((codecs & CLOCK) != 0).all() == lines
            ModelRegistry(cache).train("motion", "imu", "state", kind="forest", window="2s", hop="500ms",
                                       trees=5, depth=4)
            scored = query_view(cache).scored("motion")
            answers[lines] = (scored.start.tolist(), scored.cls.tolist(),
                              cache.query("count where motion == shake by 30s").columns["count"].tolist())
        finally:
            cache.close()
    assert answers[True] == answers[False] and len(answers[True][0]) > 100


def test_an_anomaly_score_is_a_number_like_any_channel(trained):
    """An anomaly scorer trained on the stream's own history (no labels): its
    score is the channel NAME, its verdict NAME_outlier."""
    registry = ModelRegistry(trained)
    registry.train("oddity", "imu", kind="anomaly", window="2s", hop="500ms", exclude=("state",))
    try:
        view = query_view(trained)
        scored = view.scored("oddity")
        got = trained.query("max oddity by 1m")
        minute = scored.start // 60_000_000_000
        for t, value in zip(got.columns["time"], got.columns["max"]):
            assert value == scored.value[minute == t // 60_000_000_000].max()
        flagged = trained.query("count where oddity_outlier == anomalous").value
        assert flagged == int((scored.cls > 0).sum())
    finally:
        registry.remove("oddity")


def test_with_no_range_a_derived_stream_holds_the_windows_that_reach_the_first_sample(trained):
    """A window is stamped at its start, which may lie before the first sample:
    with no range the derived stream must hold every window that a range
    reaching well before the data holds (it once began at the first sample)."""
    view = query_view(trained)
    model = view.model_of("motion")
    window, hop = model.pipeline.window_ns, model.pipeline.hop_ns
    everything = view.scored("motion")
    early = view.scored("motion", T0 - 10 * window, None)
    assert np.array_equal(everything.start, early.start)
    # by hand: the earliest window starts on the hop grid, after T0 - window
    first = int(everything.start[0])
    assert first % hop == 0 and T0 - window < first <= T0 - window + hop
    assert first < T0      # the 2 s windows by 500 ms hops begin before the data
    assert trained.query("count from motion").value == len(everything.start)


def test_a_model_added_after_a_handle_kept_its_listing_is_queried(tmp_path):
    """Every query looks for the cache's models; a handle keeps the listing
    while the models directory's mtime stays (executor.model_names).  A model
    trained after that, by another handle, changes the mtime, and the next
    query sees it."""
    from sensorq.engine.executor import model_names
    writer = synthetic(tmp_path / "c", seconds=60)
    registry = ModelRegistry(writer)
    registry.train("first", "imu", "state", kind="forest", window="2s", hop="1s", trees=3, depth=3)
    models_dir = tmp_path / "c" / "models"
    old = models_dir.stat().st_mtime_ns - 60 * 10**9       # past the racy margin: the listing is kept
    os.utime(models_dir, ns=(old, old))
    reader = sensorq.open(tmp_path / "c", readonly=True)
    assert model_names(reader) == ("first",)
    assert reader.query("count where first == shake").value == \
        writer.query("count where first == shake").value
    registry.train("second", "imu", "state", kind="forest", window="2s", hop="1s", trees=3, depth=3)
    assert sorted(model_names(reader)) == ["first", "second"]
    assert reader.query("count where second == tilt").value == \
        writer.query("count where second == tilt").value
    registry.remove("first")
    assert model_names(reader) == ("second",)
    reader.close()
    writer.close()
