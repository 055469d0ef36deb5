"""The demo's shipped activity model (sensorq/data/motion.sqm) on the real
BasicMotions recordings: what train_demo_model makes, its accuracy on the
archive's test split per window and per recording, and its size."""
from __future__ import annotations

import numpy as np
import pytest

import sensorq
from sensorq import demo
from sensorq.ingest import ingest_csv
from sensorq.models.derived import query_view
from sensorq.models.format import encode_model, load_model
from sensorq.models.registry import ModelRegistry


@pytest.fixture(scope="module")
def motions(tmp_path_factory):
    with sensorq.open(tmp_path_factory.mktemp("motions") / "c", create=True) as cache:
        ingest_csv(cache, demo.MOTIONS_CSV, "motions")
        ModelRegistry(cache).import_file(demo.MOTION_MODEL, "motion")
        yield cache


def per_recording(cache, scored):
    """Majority class of each test recording's windows, next to its activity."""
    t, cols = cache.read("motions")
    stream = cache.streams["motions"]
    test = stream.channel("split").code_of("test")
    classes = query_view(cache).model_of("motion").outputs.classes
    truth, votes = {}, {}
    for s, e, c in zip(scored.start, scored.end, scored.cls):
        inside = (t >= s) & (t < e)
        cases = np.unique(cols["case"][inside])
        if len(cases) != 1 or not np.all(cols["split"][inside] == test):
            continue                                   # windows inside one test recording
        case = int(cases[0])
        truth[case] = stream.channel("activity").name_of(int(cols["activity"][inside][0]))
        votes.setdefault(case, []).append(classes[c])
    return truth, votes


def test_the_shipped_model_is_what_the_recipe_trains(motions):
    pytest.importorskip("sklearn")
    retrained = demo.train_demo_model(motions)
    shipped = load_model(demo.MOTION_MODEL.read_bytes())
    view = query_view(motions)
    from sensorq.models.score import score_windows
    a = score_windows(motions, shipped).cls
    b = score_windows(motions, retrained).cls
    assert np.array_equal(a, b)
    motions_model = view.model_of("motion")
    assert motions_model.outputs.classes == retrained.outputs.classes


def test_accuracy_on_the_test_split_per_window_and_per_recording(motions):
    scored = query_view(motions).scored("motion")
    truth, votes = per_recording(motions, scored)
    assert len(truth) == 40                                    # the archive's 40 test cases
    windows = [(v == truth[case]) for case, vs in votes.items() for v in vs]
    per_window = float(np.mean(windows))
    per_case = np.mean([max(set(vs), key=vs.count) == truth[case] for case, vs in votes.items()])
    print(f"\nmotion: {per_window:.1%} of test windows, {per_case:.0%} of test recordings")
    assert per_window >= 0.97 and per_case == 1.0


def test_the_model_fits_a_kilobyte_quantized(motions):
    shipped = load_model(demo.MOTION_MODEL.read_bytes())
    assert len(encode_model(shipped, with_float=False)) <= 1024


def test_the_demo_answers_the_readme_question(tmp_path):
    path = demo.build_demo(tmp_path / "demo")
    with sensorq.open(path, readonly=True) as cache:
        episodes = cache.query("find episodes where motion == Running for >= 5s")
        t, cols = cache.read("motions")
        running = cols["activity"] == cache.streams["motions"].channel("activity").code_of("Running")
        total = 0
        for s, e in zip(episodes.columns["start"], episodes.columns["end"]):
            assert running[(t >= s) & (t < e)].mean() > 0.9
            total += int(e - s)
        assert total >= 150 * 10**9                            # of the 200 s of Running
