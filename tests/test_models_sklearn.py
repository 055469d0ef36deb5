"""scikit-learn estimators converted to sensorq models: the float path gives
scikit-learn's own predictions on the same window features; the quantized
path (the device's) agrees on the class of nearly every window, with the
fraction and the score error reported; what cannot be converted is refused
with the reason."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import sensorq
from sensorq.models.features import compute_windows, make_pipeline
from sensorq.models.model import ModelError
from sensorq.models.score import score_codes, score_values, score_windows

pytest.importorskip("sklearn", reason="scikit-learn (the 'models' extra) is not installed")
from sklearn import ensemble, linear_model, svm, tree  # noqa: E402
from sklearn.covariance import EllipticEnvelope  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline as sk_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler, StandardScaler  # noqa: E402

from sensorq.models.sklearn_import import from_sklearn  # noqa: E402

SECOND = 1_000_000_000
FEATURES = ["mean(x)", "std(x)", "min(y)", "max(y)", "rms(mag(x, y, z))", "ptp(z)", "mad(f)",
            "crossings(x)", "band(z, 2, 6)", "freeze(mag(x, y, z))"]


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    """Three activities of a synthetic 50 Hz IMU with irregular steps and NaN."""
    rng = np.random.default_rng(7)
    n = 60_000
    steps = rng.choice([18, 20, 22, 40], size=n, p=[0.3, 0.4, 0.28, 0.02]) * 1_000_000
    t = 1_700_000_000 * SECOND + np.cumsum(steps).astype(np.int64)
    lab = (np.arange(n) // 1500 % 3).astype(np.int8)
    phase = 2 * np.pi * np.cumsum(steps) / 1e9
    freq = np.array([1.0, 2.5, 5.0])[lab]
    x = (300 * lab.astype(float) * np.sin(freq * phase) + rng.normal(0, 80, n)).astype(np.int16)
    y = (rng.normal(1000, 50 + 100 * lab.astype(float), n)).astype(np.int32) * 100
    z = (200 * np.sin(2 * freq * phase) + rng.normal(0, 60, n)).astype(np.int16)
    f = rng.normal(lab, 0.3, n)
    f[rng.random(n) < 0.01] = np.nan
    cache = sensorq.open(tmp_path_factory.mktemp("sk") / "c", create=True)
    st = cache.create_stream("imu", [sensorq.Channel("x", "int16"), sensorq.Channel("y", "int32"),
                                     sensorq.Channel("z", "int16"), sensorq.Channel("f", "float32"),
                                     sensorq.Channel("lab", "int8")], rate_hz=50, block_samples=700)
    cache.append("imu", t, {"x": x, "y": y, "z": z, "f": f.astype(np.float32), "lab": lab})
    p = make_pipeline(st, FEATURES, window="2s", hop="500ms", cache=cache)
    w = compute_windows(cache, p, codes=True, values=True, label="lab")
    yield cache, p, w
    cache.close()


CLASSIFIERS = {
    "DecisionTree": lambda: tree.DecisionTreeClassifier(max_depth=6, random_state=0),
    "RandomForest": lambda: ensemble.RandomForestClassifier(20, max_depth=8, random_state=0),
    "ExtraTrees": lambda: ensemble.ExtraTreesClassifier(20, max_depth=8, random_state=0),
    "GradientBoosting": lambda: ensemble.GradientBoostingClassifier(n_estimators=30, random_state=0),
    "HistGradientBoosting": lambda: ensemble.HistGradientBoostingClassifier(max_iter=30, random_state=0),
    "LogisticRegression": lambda: sk_pipeline(StandardScaler(), linear_model.LogisticRegression(max_iter=5000)),
    "LinearSVC": lambda: sk_pipeline(StandardScaler(), svm.LinearSVC()),
    "RidgeClassifier": lambda: sk_pipeline(StandardScaler(), linear_model.RidgeClassifier()),
    "MLPClassifier": lambda: sk_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(24, 12),
                                                                         max_iter=2000, random_state=0)),
}
REGRESSORS = {
    "DecisionTreeRegressor": lambda: tree.DecisionTreeRegressor(max_depth=8, random_state=0),
    "RandomForestRegressor": lambda: ensemble.RandomForestRegressor(10, max_depth=8, random_state=0),
    "GradientBoostingRegressor": lambda: ensemble.GradientBoostingRegressor(n_estimators=40, random_state=0),
    "HistGradientBoostingRegressor": lambda: ensemble.HistGradientBoostingRegressor(max_iter=40),
    "Ridge": lambda: sk_pipeline(StandardScaler(), linear_model.Ridge()),
    "MLPRegressor": lambda: sk_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,), max_iter=3000,
                                                                       random_state=0)),
}
# quantized vs float: the least fraction of windows of the same class we accept
AGREE = {"LogisticRegression": 0.97, "LinearSVC": 0.97, "RidgeClassifier": 0.97, "MLPClassifier": 0.97}


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
@pytest.mark.parametrize("binary", [False, True])
def test_classifiers(windows, name, binary):
    cache, p, w = windows
    y = (w.label == 2).astype(np.int64) if binary else w.label
    est = CLASSIFIERS[name]().fit(w.values, y)
    model = from_sklearn(est, p, X_calib=w.values, class_names=["calm", "walk", "run"] if not binary else None)
    f, q = score_values(model, w.values), score_codes(model, w.codes)
    np.testing.assert_array_equal(est.classes_[f.cls], est.predict(w.values))
    if hasattr(est, "predict_proba") and not name.startswith("MLP"):
        np.testing.assert_allclose(f.proba, est.predict_proba(w.values), atol=1e-9)
    agree = np.mean(q.cls == f.cls)
    print(f"\n{name} ({'binary' if binary else '3 classes'}): quantized = float class on {100 * agree:.2f}% "
          f"of {len(w)} windows; max probability error {np.abs(q.proba - f.proba).max():.3f}")
    assert agree >= AGREE.get(name, 0.99)


@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_regressors(windows, name):
    cache, p, w = windows
    target = w.values[:, 1] * 2 + w.values[:, 5]               # a smooth function of two features
    est = REGRESSORS[name]().fit(w.values, target)
    model = from_sklearn(est, p, X_calib=w.values)
    f, q = score_values(model, w.values), score_codes(model, w.codes)
    np.testing.assert_allclose(f.value, est.predict(w.values), rtol=1e-9, atol=1e-6 * np.ptp(target))
    err = np.abs(q.value - f.value) / np.ptp(target)
    print(f"\n{name}: quantized vs float error, in units of the target's range: median {np.median(err):.4f}, "
          f"max {err.max():.4f}")
    assert np.median(err) < 0.02


def test_elliptic_envelope(windows):
    cache, p, w = windows
    est = EllipticEnvelope(random_state=0, contamination=0.05).fit(w.values)
    model = from_sklearn(est, p, X_calib=w.values, output_name="anomaly")
    f, q = score_values(model, w.values), score_codes(model, w.codes)
    np.testing.assert_allclose(f.value ** 2, est.mahalanobis(w.values), rtol=1e-6)
    np.testing.assert_array_equal(f.cls == 1, est.predict(w.values) == -1)
    rel = np.abs(q.value - f.value) / f.value
    print(f"\nEllipticEnvelope: quantized distance error median {np.median(rel):.4f}, "
          f"same verdict on {100 * np.mean(q.cls == f.cls):.2f}% of windows")
    assert np.median(rel) < 0.05 and np.mean(q.cls == f.cls) > 0.97


def test_score_windows_is_the_features_then_the_model(windows):
    cache, p, w = windows
    est = ensemble.RandomForestClassifier(10, max_depth=6, random_state=0).fit(w.values, w.label)
    model = from_sklearn(est, p)
    lo, hi = int(w.start[100]), int(w.start[300]) + 1
    q = score_windows(cache, model, lo, hi)
    f = score_windows(cache, model, lo, hi, quantized=False)
    inside = (w.start >= lo) & (w.end <= hi)
    np.testing.assert_array_equal(q.start, w.start[inside])
    t, _ = cache.read("imu", lo, hi)
    assert q.samples == len(t) and 1 <= q.blocks <= len(cache.blocks("imu", lo, hi))
    np.testing.assert_array_equal(q.cls, score_codes(model, w.codes[inside]).cls)
    np.testing.assert_array_equal(est.classes_[f.cls], est.predict(w.values[inside]))


@pytest.mark.parametrize("make, why", [
    (lambda: KNeighborsClassifier(), "cannot convert KNeighborsClassifier"),
    (lambda: sk_pipeline(MinMaxScaler(), linear_model.LogisticRegression()), "only a StandardScaler"),
    (lambda: sk_pipeline(StandardScaler(), tree.DecisionTreeClassifier()), "folded only into linear"),
    (lambda: MLPClassifier(activation="tanh", max_iter=50), "ReLU"),
    (lambda: ensemble.HistGradientBoostingRegressor(loss="poisson", max_iter=5), "identity link"),
])
def test_refused_with_the_reason(windows, make, why):
    cache, p, w = windows
    target = w.label if "Regressor" not in str(make()) else np.abs(w.values[:, 0]) + 1
    est = make().fit(w.values, target)
    with pytest.raises(ModelError, match=why):
        from_sklearn(est, p, X_calib=w.values)


def test_feature_count_must_match(windows):
    cache, p, w = windows
    est = tree.DecisionTreeClassifier().fit(w.values[:, :3], w.label)
    with pytest.raises(ModelError, match="3 features, the pipeline computes 10"):
        from_sklearn(est, p)


def test_importing_sensorq_does_not_import_sklearn():
    code = "import sys, sensorq, sensorq.models, sensorq.models.registry, sensorq.models.score; " \
           "print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from test_models_features import ALL, _cache, streams  # noqa: E402
from test_models_common import reference_windows  # noqa: E402


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=streams(), seed=st.integers(0, 100))
def test_random_streams_score_as_sklearn_predicts(tmp_path_factory, data, seed):
    """Hypothesis-made streams (irregular steps, duplicates, NaN, small
    blocks): score_windows' float path is scikit-learn's predict on the
    reference features, and its quantized path is the integer scorer on the
    reference codes."""
    t, a, b, f, block = data
    cache, stream = _cache(tmp_path_factory.mktemp("r"), t, a, b, f, block)
    with cache:
        p = make_pipeline(stream, ALL, window="1s", hop="250ms", cache=cache, min_samples=3)
        starts, codes, values = reference_windows(cache, p)
        if len(starts) < 4:
            return
        # every class present (a classifier needs two): 0, 1, 2, 0, ... in a random order
        labels = np.random.default_rng(seed).permutation(np.arange(len(starts)) % 3)
        est = ensemble.RandomForestClassifier(5, max_depth=5, random_state=seed).fit(values, labels)
        model = from_sklearn(est, p)
        f_scores = score_windows(cache, model, quantized=False)
        q_scores = score_windows(cache, model)
        np.testing.assert_array_equal(f_scores.start, starts)
        np.testing.assert_array_equal(est.classes_[f_scores.cls], est.predict(values))
        np.testing.assert_array_equal(q_scores.raw, score_codes(model, codes).raw)


def test_a_model_for_other_channels_is_refused(windows, tmp_path):
    cache, p, w = windows
    model = from_sklearn(tree.DecisionTreeClassifier(max_depth=2).fit(w.values, w.label), p)
    with sensorq.open(tmp_path / "other", create=True) as other:
        with pytest.raises(ModelError, match="stream 'imu', which is not in this cache"):
            score_windows(other, model)
        other.create_stream("imu", [sensorq.Channel("x", "int16"), sensorq.Channel("y", "int16")])
        with pytest.raises(ModelError, match="channel 'y' as dtype code 3, stream 'imu' stores it as int16"):
            score_windows(other, model)
