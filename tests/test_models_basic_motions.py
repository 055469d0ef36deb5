"""The real BasicMotions recordings (../shared/data/basic_motions.csv: smartwatch
accelerometer and gyroscope at 10 Hz, four activities, the archive's train /
test split, one case per 10 s recording): train on the train split, measure on
the test split per window and per recording (majority of its windows).

Windows are 2 s with a 500 ms hop and lie inside one recording (the 80
recordings are laid end to end; a window across two of them is not a real
one).  Targets (issue 10): a quantized model of at most 1 KB with >= 97 % per
window and 100 % per recording, found by ``fit`` itself; an int8 pruned MLP at
least 10x smaller than its float32 form at <= 1 point of accuracy lost."""
from __future__ import annotations

import numpy as np
import pytest

from sensorq.models.compress import device_bytes, drop_unused_features, float32_bytes, sparsity
from sensorq.models.features import compute_windows
from sensorq.models.fit import fit
from sensorq.models.score import score_codes, score_values
from sensorq.models.train import evaluate, train, training_data

from test_models_common import BASIC_MOTIONS, load_basic_motions

pytest.importorskip("sklearn", reason="scikit-learn (the 'models' extra) is not installed")
pytestmark = pytest.mark.skipif(not BASIC_MOTIONS.exists(),
                                reason=f"{BASIC_MOTIONS} is missing (the shared data set, see ../shared/README.md)")



def is_train(t, cols):
    return cols["split"] == 0


def is_test(t, cols):
    return cols["split"] == 1


@pytest.fixture(scope="module")
def bm(tmp_path_factory):
    cache, names = load_basic_motions(tmp_path_factory.mktemp("bm") / "c")
    data = training_data(cache, "motions", "activity", mask=is_train, test_mask=is_test, group="case",
                         exclude=("split", "case"), class_names=names)
    yield cache, names, data
    cache.close()


def per_recording(cache, model, data) -> float:
    """Fraction of test recordings whose majority window class is their activity."""
    case = compute_windows(cache, model.pipeline, codes=False, label="case", mask=is_test)
    act = compute_windows(cache, model.pipeline, codes=True, label="activity", mask=is_test)
    sel = case.keep & case.pure
    predicted = data.class_codes[score_codes(model, act.codes[sel]).cls]
    right = []
    for c in np.unique(case.label[sel]):
        mine = case.label[sel] == c
        values, counts = np.unique(predicted[mine], return_counts=True)
        right.append(values[np.argmax(counts)] == np.bincount(act.label[sel][mine]).argmax())
    assert len(right) == 40
    return float(np.mean(right))


def test_the_split_has_its_windows(bm):
    cache, names, data = bm
    assert sorted(names) == ["Badminton", "Running", "Standing", "Walking"]
    # 40 recordings of 10 s: 17 windows of 2 s every 500 ms inside each; the
    # very last one would end 100 ms after the newest sample, outside the data
    assert len(data.X) == 40 * 17 and len(data.X_test) == 40 * 17 - 1
    assert sorted(np.unique(data.y_test)) == [0, 1, 2, 3]


def test_a_small_forest_meets_the_target(bm):
    cache, names, data = bm
    model = drop_unused_features(train(cache, "motions", "activity", kind="forest", trees=3, depth=3,
                                       data=data, name="motion"))
    size = device_bytes(model)
    acc = evaluate(model, _columns(data, model))
    rec = per_recording(cache, model, data)
    print(f"\nforest 3x depth 3: {size} B quantized ({float32_bytes(model)} B with float32 parameters), "
          f"{len(model.pipeline.features)} features; test accuracy {100 * acc:.2f}% per window, "
          f"{100 * rec:.0f}% per recording")
    assert size <= 1024 and acc >= 0.97 and rec == 1.0


def test_fit_finds_the_smallest_model_that_meets_the_target(bm):
    cache, names, data = bm
    result = fit(cache, "motions", "activity", flash="1KB", ram="512B", target=0.97, data=data,
                 name="motion")
    print("\n" + result.table())
    best = result.best
    assert best is not None and best.fits and best.flash <= 1024 and best.accuracy >= 0.97
    assert all(v.flash >= best.flash for v in result.variants if v.fits and v.accuracy >= 0.97)
    rec = per_recording(cache, best.model, data)
    print(f"fit chose: {best.description}, {best.flash} B, {100 * best.accuracy:.2f}% per window, "
          f"{100 * rec:.0f}% per recording")
    assert rec == 1.0
    most = fit(cache, "motions", "activity", flash="1KB", ram="512B", data=data, name="motion",
               variants=[("forest", {"trees": 3, "depth": 3}), ("forest", {"trees": 10, "depth": 6})])
    assert most.best.accuracy == max(v.accuracy for v in most.variants if v.fits)


def test_int8_pruned_mlp_is_ten_times_smaller_than_float32(bm):
    cache, names, data = bm
    dense = train(cache, "motions", "activity", kind="mlp", hidden=(128, 64), data=data)
    pruned = drop_unused_features(train(cache, "motions", "activity", kind="mlp", hidden=(128, 64),
                                        prune=0.9, data=data))
    float_acc = np.mean(data.class_codes[score_values(dense, data.X_test).cls] == data.y_test)
    q_acc = evaluate(pruned, _columns(data, pruned))
    ratio = float32_bytes(dense) / device_bytes(pruned)
    print(f"\nMLP 128-64: float32 {float32_bytes(dense)} B at {100 * float_acc:.2f}%; int8 with "
          f"{100 * sparsity(pruned):.0f}% of weights pruned {device_bytes(pruned)} B at {100 * q_acc:.2f}% "
          f"({ratio:.1f}x smaller)")
    assert ratio >= 10 and q_acc >= float_acc - 0.01


def test_forest_quantized_next_to_float(bm):
    cache, names, data = bm
    model = drop_unused_features(train(cache, "motions", "activity", kind="forest", trees=10, depth=8,
                                       data=data))
    f_acc = np.mean(data.class_codes[score_values(model, _columns(data, model).X_test).cls] == data.y_test)
    q_acc = evaluate(model, _columns(data, model))
    print(f"\nforest 10x depth 8: quantized {device_bytes(model)} B ({100 * q_acc:.2f}%), float32 "
          f"{float32_bytes(model)} B ({100 * f_acc:.2f}%)")
    assert device_bytes(model) < float32_bytes(model) and abs(q_acc - f_acc) <= 0.005


def test_anomaly_scorer_trained_on_standing_flags_running(bm):
    cache, names, data = bm
    standing = names.index("Standing")
    # few features: 170 standing windows cannot pin down a 56-dimensional covariance
    feats = [f"{op}(mag({g}_x, {g}_y, {g}_z))" for g in ("acc", "gyr") for op in ("mean", "std", "mad")]
    model = train(cache, "motions", kind="anomaly", name="anomaly", group="case", features=feats,
                  mask=lambda t, c: (c["split"] == 0) & (c["activity"] == standing), holdout=0.0,
                  contamination=0.02)
    w = compute_windows(cache, model.pipeline, codes=True, label="activity", mask=is_test)
    s = score_codes(model, w.codes[w.keep])
    labels = w.label[w.keep]
    flagged = {n: float(np.mean(s.cls[labels == i])) for i, n in enumerate(names)}
    print(f"\nanomaly (trained on standing): fraction flagged per activity {flagged}")
    assert flagged["Running"] > 0.95 and flagged["Standing"] < 0.25


def _columns(data, model):
    from sensorq.models.fit import _columns_of, _subset
    return _subset(data, _columns_of(model, data))
