"""The trainer's window labels and selections (sensorq/models/train.py) on a
small stream whose every window is known."""
from __future__ import annotations

import numpy as np
import pytest

import sensorq
from sensorq.models.features import compute_windows, make_pipeline, majority
from sensorq.models.model import ModelError
from sensorq.models.train import default_features, train, training_data

pytest.importorskip("sklearn", reason="scikit-learn (the 'models' extra) is not installed")

SECOND = 1_000_000_000


def test_majority_ties_go_to_the_smallest_label():
    labels = np.array([3, 3, 1, 1, 2, 2, 2, 0])
    lo, hi = np.array([0, 0, 4, 6]), np.array([4, 2, 8, 8])
    assert majority(labels, lo, hi).tolist() == [1, 3, 2, 0]


@pytest.fixture()
def cache(tmp_path):
    c = sensorq.open(tmp_path / "c", create=True)
    c.create_stream("s", [sensorq.Channel("acc_x", "int16"), sensorq.Channel("acc_y", "int16"),
                          sensorq.Channel("lab", "int8"), sensorq.Channel("part", "int8")],
                    rate_hz=10, block_samples=64)
    n = 2400                                  # 4 minutes at 10 Hz
    t = 1_700_000_000 * SECOND + np.arange(n, dtype=np.int64) * 100_000_000
    lab = (np.arange(n) // 100 % 2).astype(np.int8)          # 10 s calm, 10 s busy
    rng = np.random.default_rng(2)
    x = (rng.normal(0, 20, n) + 400.0 * lab * np.sin(np.arange(n))).astype(np.int16)
    y = (rng.normal(0, 20, n) + 300.0 * lab * np.cos(np.arange(n))).astype(np.int16)
    part = (np.arange(n) >= 1600).astype(np.int8)             # the last 80 s are the test part
    c.append("s", t, {"acc_x": x, "acc_y": y, "lab": lab, "part": part})
    yield c
    c.close()


def test_default_features_describe_channels_and_their_magnitude(cache):
    names, mags = default_features(cache.streams["s"], "lab", exclude=("part",))
    assert names == ["acc_x", "acc_y"] and mags == [("acc_x", "acc_y")]


def test_masks_select_whole_windows_and_labels_are_majorities(cache):
    data = training_data(cache, "s", "lab", window="2s", hop="1s", exclude=("part",),
                         mask=lambda t, c: c["part"] == 0, test_mask=lambda t, c: c["part"] == 1)
    # windows [k s, k s + 2 s) inside the first 160 s: k = 0 .. 158; test: k = 160 .. 237
    assert len(data.X) == 159 and len(data.X_test) == 78
    w = compute_windows(cache, data.pipeline, codes=False, label="lab")
    k = (w.start - w.start[0]) // SECOND
    # a window [k, k + 2) has samples k*10 .. k*10 + 19: label (k // 10) % 2 unless it straddles
    # a change (k % 10 == 9: 10 samples each; the tie goes to the smaller label, 0)
    expected = np.where(k % 10 == 9, 0, (k // 10) % 2)
    np.testing.assert_array_equal(w.label, expected)
    model = train(cache, "s", "lab", kind="forest", trees=3, depth=3, window="2s", hop="1s",
                  exclude=("part",), mask=lambda t, c: c["part"] == 0, test_mask=lambda t, c: c["part"] == 1)
    assert model.info.accuracy > 0.9 and model.info.n_train == 159 and model.info.label == "lab"


def test_groups_keep_windows_within_one_value(cache):
    data = training_data(cache, "s", "lab", window="2s", hop="1s", exclude=("part",), group="lab", holdout=0)
    # windows k = 0 .. 237 (the last one must end by the newest sample + 1 ns);
    # the 23 straddling a change of label (k % 10 == 9) are dropped
    assert len(data.X) == 238 - 23


def test_anomaly_needs_no_label_and_others_do(cache):
    model = train(cache, "s", kind="anomaly", window="2s", hop="1s", exclude=("part", "lab"),
                  mask=lambda t, c: c["lab"] == 0, holdout=0.0, contamination=0.05)
    assert model.outputs.kind == 2 and model.kind_name == "anomaly"
    with pytest.raises(ModelError, match="needs a label"):
        train(cache, "s", kind="forest", window="2s", hop="1s")
    with pytest.raises(ModelError, match="integer or categorical"):
        train(cache, "s", "nope", kind="forest", window="2s", hop="1s")
    with pytest.raises(ModelError, match="unknown model kind"):
        train(cache, "s", "lab", kind="svm", window="2s", hop="1s", exclude=("part",))


def test_make_pipeline_picks_exponents_from_block_statistics(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as c:
        st = c.create_stream("s", [sensorq.Channel("big", "int32"), sensorq.Channel("f", "float32")])
        c.append("s", np.arange(3, dtype=np.int64), {"big": np.array([5, -2_000_000, 9], np.int32),
                                                     "f": np.array([0.001, -0.25, 0.1], np.float32)})
        p = make_pipeline(st, ["max(big)", "min(f)"], window="1s", hop="1s", cache=c)
    # 2_000_000 < 2^21: shift right by 7 to stay within 2^14; 0.25 * 2^16 = 2^14
    assert [i.exponent for i in p.inputs] == [-7, 16]


def test_where_texts_select_like_masks(cache):
    from sensorq.models.where import mask_from_where
    stream = cache.streams["s"]
    t, cols = cache.read("s")
    m = mask_from_where(stream, "part == 0 and not (acc_x > 100 or acc_x <= -100)")
    np.testing.assert_array_equal(m(t, cols), (cols["part"] == 0) & ~((cols["acc_x"] > 100) | (cols["acc_x"] <= -100)))
    by_text = training_data(cache, "s", "lab", window="2s", hop="1s", exclude=("part",),
                            where="part == 0", test_where="part = 1")
    by_mask = training_data(cache, "s", "lab", window="2s", hop="1s", exclude=("part",),
                            mask=lambda t, c: c["part"] == 0, test_mask=lambda t, c: c["part"] == 1)
    np.testing.assert_array_equal(by_text.codes, by_mask.codes)
    np.testing.assert_array_equal(by_text.y_test, by_mask.y_test)
    for bad in ["part ==", "nope == 1", "part == 1 and", "(part == 1", "part == x", "part ~ 1"]:
        with pytest.raises(ModelError):
            mask_from_where(stream, bad)


def test_where_compares_category_names(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as c:
        st = c.create_stream("s", [sensorq.Channel("state", "int8", categories=("idle", "run"))])
        from sensorq.models.where import mask_from_where
        cols = {"state": np.array([0, 1, 1, 0], np.int8)}
        assert mask_from_where(st, "state == run")(None, cols).tolist() == [False, True, True, False]
        assert mask_from_where(st, "state != 'idle'")(None, cols).tolist() == [False, True, True, False]
        with pytest.raises(ModelError, match="known: idle, run"):
            mask_from_where(st, "state == walk")
        with pytest.raises(ModelError, match="== and !="):
            mask_from_where(st, "state > idle")


def test_trained_models_read_only_the_features_they_use(cache):
    model = train(cache, "s", "lab", kind="tree", depth=1, window="2s", hop="1s", exclude=("part",),
                  where="part == 0", test_where="part == 1")
    assert len(model.pipeline.features) == 1            # one split reads one feature
    assert (model.info.where, model.info.test_where) == ("part == 0", "part == 1")


def test_registry_fit_repeats_the_stored_selection(cache):
    from sensorq.models.registry import ModelRegistry
    reg = ModelRegistry(cache)
    reg.train("m", "s", "lab", kind="forest", trees=10, depth=6, window="2s", hop="1s", exclude=("part",),
              where="part == 0", test_where="part == 1")
    big = reg.summary("m").size_quantized
    result = reg.fit("m", flash=big - 1, ram="1KB", exclude=("part",),
                     variants=[("forest", {"trees": 1, "depth": 2}), ("forest", {"trees": 10, "depth": 6})])
    assert [v.fits for v in result.variants] == [True, False]
    stored = reg.get("m")
    assert stored.info.where == "part == 0" and reg.summary("m").size_quantized < big
    assert "forest trees=1 depth=2" in result.table()
