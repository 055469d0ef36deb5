"""Models on the device (issue 14): the C model runtime (device_port/src/
sq_model.c, sq_feat.c), built for the host and called through ctypes, against
the Python engine's quantized path (sensorq.models).

* every window of hypothesis-made streams (integer and float channels, gaps,
  repeated times, sealed and staged samples), pipelines (every feature op,
  mag() of 2-4 channels, windows that are or are not whole hops) and models
  of every kind: the device's feature codes, raw outputs and class equal
  compute_windows / score_windows, and it scores exactly the windows the
  host scores;
* the scorers alone on random and extreme codes, for every scikit-learn
  estimator the importer takes;
* device images (sensorq/device/image.py): binding on the host by channel
  name and type, an image for another ring refused by its schema hash,
  other versions, damage, each rule of the loader broken alone, mutated
  images refused or scored; the loader and scorers under ASan/UBSan
  (SENSORQ_LONG_FAULTS=1: a longer campaign); the output stream's schema
  hash."""
from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sensorq
from sensorq.device.image import FIELD_AT, device_image, device_stream_schema, image_sections
from sensorq.device.models import (DeviceModel, ModelOut, ModelStruct, device_channels, device_inputs, load_status,
                                   output_schema)
from sensorq.device.native import DeviceError, DeviceLib, build_library, stream_cfg
from sensorq.errors import SensorqError
from sensorq.models.features import compute_windows, feature_scales, make_pipeline
from sensorq.models.format import encode_model, load_model
from sensorq.models.model import MEAN, Feature, Input, ModelError, Pipeline
from sensorq.models.score import score_codes, score_windows
from sensorq.schema import Channel

pytest.importorskip("sklearn", reason="scikit-learn (the 'models' extra) is not installed")
from sklearn import ensemble, linear_model, neural_network, tree  # noqa: E402
from sklearn.covariance import EllipticEnvelope  # noqa: E402
from sklearn.pipeline import make_pipeline as sk_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from sensorq.models.sklearn_import import from_sklearn  # noqa: E402

from sanitized import run_under_sanitizers  # noqa: E402

LONG = os.environ.get("SENSORQ_LONG_FAULTS") == "1"
SETTINGS = settings(max_examples=15 if not LONG else 300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])

MAKERS = {
    "tree": lambda s: tree.DecisionTreeClassifier(max_depth=6, random_state=s),
    "forest": lambda s: ensemble.RandomForestClassifier(6, max_depth=5, random_state=s),
    "extra": lambda s: ensemble.ExtraTreesClassifier(4, max_depth=6, random_state=s),
    "boosting": lambda s: ensemble.GradientBoostingClassifier(n_estimators=5, max_depth=3, random_state=s),
    "hist_regressor": lambda s: ensemble.HistGradientBoostingRegressor(max_iter=6),
    "forest_regressor": lambda s: ensemble.RandomForestRegressor(4, max_depth=5, random_state=s),
    "boosting_regressor": lambda s: ensemble.GradientBoostingRegressor(n_estimators=4, random_state=s),
    "logistic": lambda s: sk_pipeline(StandardScaler(), linear_model.LogisticRegression(max_iter=3000)),
    "ridge": lambda s: sk_pipeline(StandardScaler(), linear_model.Ridge()),
    "mlp": lambda s: sk_pipeline(StandardScaler(), neural_network.MLPClassifier(
        hidden_layer_sizes=(9, 5), max_iter=300, random_state=s)),
    "mlp_regressor": lambda s: sk_pipeline(StandardScaler(), neural_network.MLPRegressor(
        hidden_layer_sizes=(7,), max_iter=300, random_state=s)),
    "anomaly": lambda s: EllipticEnvelope(random_state=s, support_fraction=1.0),
}
OPS = ["mean", "std", "min", "max", "rms", "ptp", "mad", "crossings", "band", "bandratio"]


def is_regressor(kind: str) -> bool:
    return "regressor" in kind or kind == "ridge"


def fit_model(kind: str, seed: int, pipeline, codes: np.ndarray, n_classes: int = 3):
    """A model of ``kind`` trained on feature codes (labels made from them)."""
    import warnings
    X = codes * feature_scales(pipeline)
    est = MAKERS[kind](seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "anomaly":
            X = X + np.random.default_rng(seed).normal(0, 1e-3, X.shape)   # a covariance of full rank
            est.fit(X)
        elif is_regressor(kind):
            est.fit(X, X[:, 0] * 0.3 - X[:, -1])
        else:
            y = np.zeros(len(X), int)
            for j in range(n_classes - 1):
                y += X[:, j % X.shape[1]] > np.quantile(X[:, j % X.shape[1]], (j + 1) / n_classes)
            if len(np.unique(y)) < 2:
                y[: len(y) // 2] = 1 - y[0]
            est.fit(X, y)
    return from_sklearn(est, pipeline, X_calib=X, output_name="anomaly" if kind == "anomaly" else "motion")


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    return DeviceLib(build_library(tmp_path_factory.mktemp("host")))


# --- streams, pipelines, rings ------------------------------------------------------------

@st.composite
def scenes(draw):
    """A stream's channels and samples, a feature pipeline over them, a model kind."""
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    n_ch = draw(st.integers(1, 4))
    dtypes = [draw(st.sampled_from(["int8", "int16", "int16", "int32", "int64", "float32", "float64"]))
              for _ in range(n_ch)]
    rate = draw(st.sampled_from([10.0, 50.0, 100.0, 250.0]))
    n = min(2500, int(rate * draw(st.integers(6, 40))))
    period = int(round(1e9 / rate))
    steps = rng.choice([0, period, period, period, period, 2 * period, 7 * period], n,
                       p=[0.05, 0.5, 0.2, 0.1, 0.05, 0.05, 0.05])
    if draw(st.booleans()):
        steps = steps + rng.integers(-period // 3, period // 3, n)          # jitter
    if draw(st.booleans()):
        steps[rng.integers(1, n)] = int(draw(st.sampled_from([3, 10, 40]))) * 10**9   # a long gap
    steps[0] = 0
    t = draw(st.integers(-10**12, 10**13)) + np.cumsum(np.maximum(steps, 0)).astype(np.int64)
    cols = {}
    for i, d in enumerate(dtypes):
        shape = draw(st.sampled_from(["walk", "noise", "extreme", "constant", "square"]))
        if d.startswith("float"):
            big = float(draw(st.sampled_from([1e-3, 1.0, 100.0, 1e6])))
            v = {"walk": np.cumsum(rng.normal(0, big, n)), "noise": rng.normal(0, big, n),
                 "extreme": rng.choice([-big * 1e3, big * 1e3, 0.0], n), "constant": np.full(n, big),
                 "square": np.where((np.arange(n) // 7) % 2, big, -big)}[shape]
            cols[f"c{i}"] = v.astype(d)
        else:
            info = np.iinfo(d)
            span = int(min(info.max, draw(st.sampled_from([10, 3000, 2**20, 2**40]))))
            v = {"walk": np.cumsum(rng.integers(-span // 50 - 1, span // 50 + 2, n)),
                 "noise": rng.integers(-span, span, n), "extreme": rng.choice([info.min, info.max, 0], n),
                 "constant": np.full(n, span), "square": np.where((np.arange(n) // 5) % 2, span, -span)}[shape]
            cols[f"c{i}"] = np.clip(v, info.min, info.max).astype(d)
    names = list(cols)
    signals = names + [f"mag({', '.join(draw(st.permutations(names))[:k])})"
                       for k in range(2, min(4, n_ch) + 1) if draw(st.booleans())]
    feats = []
    for _ in range(draw(st.integers(1, 7))):
        op, sig = draw(st.sampled_from(OPS)), draw(st.sampled_from(signals))
        if op == "band":
            lo = draw(st.sampled_from([0.5, 1.0, 2.0]))
            feats.append(f"band({sig}, {lo}, {lo + draw(st.sampled_from([1.0, 3.0]))})")
        elif op == "bandratio":
            feats.append(f"bandratio({sig}, 2, 4, 0.5, 2)")
        else:
            feats.append(f"{op}({sig})")
    window, hop = draw(st.sampled_from([("2s", "500ms"), ("2s", "2s"), ("1s", "300ms"), ("3s", "1s"),
                                        ("1500ms", "700ms")]))
    kind = draw(st.sampled_from(sorted(MAKERS)))
    ring = {"block_samples": draw(st.sampled_from([8, 33, 64, 128])),
            "codec": draw(st.sampled_from(["fast", "compact"])),
            "staged": draw(st.integers(0, 40)), "extra": draw(st.booleans())}
    return seed, dtypes, rate, t, cols, feats, window, hop, kind, ring


def host_cache(path, dtypes, rate, t, cols):
    shutil.rmtree(path, ignore_errors=True)
    cache = sensorq.open(path, create=True)
    cache.create_stream("s", [Channel(name, d) for name, d in zip(cols, dtypes)], rate_hz=rate,
                        block_samples=200)
    cache.append("s", t, cols)
    cache.flush()
    return cache


def device_ring(dev, model, t, cols, block_samples=64, codec="fast", staged=0, extra=False):
    """A RAM ring holding the model's inputs (in another order, with an extra
    channel when asked) and its names; `staged` samples left unsealed."""
    chans = device_channels(model)[::-1]
    values = dict(zip([i.name for i in model.pipeline.inputs], device_inputs(model, cols)))
    if extra:
        chans.insert(len(chans) // 2, ("spare", "int32"))
        values["spare"] = np.arange(len(t), dtype=np.int32)
    names, dtypes = [c[0] for c in chans], [c[1] for c in chans]
    ring = dev.ring(dtypes, block_samples, region_len=64 * 1024 + 40 * len(t) * len(chans), codec=codec)
    columns = [values[nm] for nm in names]
    cut = len(t) - min(staged, block_samples - 1)
    ring.append_many(t[:cut], [c[:cut] for c in columns])
    ring.append_many(t[cut:], [c[cut:] for c in columns], poll=False)
    return ring, stream_cfg(dtypes, block_samples, codec=codec), names


def check_windows(dm, ring, model, cache, t):
    """Every window of the host's range: scored by both or by neither, and equal."""
    p = model.pipeline
    w = compute_windows(cache, p, codes=True)
    sw = score_windows(cache, model)
    assert np.array_equal(sw.start, w.start)
    rows = {int(s): i for i, s in enumerate(sw.start)}
    k_first = -(-int(t[0]) // p.hop_ns)
    k_last = (int(t[-1]) + 1 - p.window_ns) // p.hop_ns
    for k in range(k_first, k_last + 1):
        got = dm.window(ring, k * p.hop_ns)
        i = rows.get(k * p.hop_ns)
        if i is None:
            assert not got.scored, f"window {k}: the device scored it, the host did not"
            continue
        assert got.scored, f"window {k}: the host scored it ({w.n[i]} samples), the device did not"
        assert got.n_samples == w.n[i]
        np.testing.assert_array_equal(got.codes, w.codes[i], err_msg=f"features of window {k}")
        np.testing.assert_array_equal(got.raw, sw.raw[i], err_msg=f"raw outputs of window {k}")
        assert got.cls == sw.cls[i]
    return len(rows)


COVERAGE: list = []


@SETTINGS
@given(scene=scenes())
def test_every_window_equals_the_hosts_quantized_path(dev, tmp_path_factory, scene):
    seed, dtypes, rate, t, cols, feats, window, hop, kind, ring_opts = scene
    cache = host_cache(tmp_path_factory.getbasetemp() / "scene", dtypes, rate, t, cols)
    try:
        stream = cache.streams["s"]
        try:
            p = make_pipeline(stream, feats, window=window, hop=hop, cache=cache)
        except ModelError:
            return                     # e.g. a band with no frequency of the window's spectrum
        w = compute_windows(cache, p, codes=True)
        if len(w) < 6:
            return
        model = fit_model(kind, seed, p, w.codes)
        ring, cfg, names = device_ring(dev, model, t, cols, **ring_opts)
        dm = DeviceModel(dev, encode_model(model, with_float=bool(seed % 2)), cfg, names)
        n_windows = check_windows(dm, ring, model, cache, t)
        COVERAGE.append((kind, n_windows))
        # the newest whole window, as the host's derived stream's "now"
        newest = dm.score(ring)
        p = model.pipeline
        assert newest.start == (int(t[-1]) + 1 - p.window_ns) // p.hop_ns * p.hop_ns
    finally:
        cache.close()


# --- the scorers alone --------------------------------------------------------------------

def small_pipeline(n):
    return Pipeline("s", [Input("x", 2)], [(0,)], [Feature(MEAN, 0)] * n, 10**9, 10**9, 0, 2)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(sorted(MAKERS)), seed=st.integers(0, 1000), n_feat=st.integers(1, 6),
       classes=st.integers(2, 5))
def test_scorers_equal_score_codes_on_random_and_extreme_codes(dev, kind, seed, n_feat, classes):
    rng = np.random.default_rng(seed)
    codes = rng.integers(-3000, 3000, (150, n_feat)) * rng.integers(1, 50, n_feat)
    p = small_pipeline(n_feat)
    model = fit_model(kind, seed, p, codes, classes)
    dm = DeviceModel(dev, encode_model(model, with_float=False), stream_cfg(["int16"], 16), ["x"])
    probe = np.concatenate([codes, rng.integers(-2**31 + 1, 2**31 - 1, (20, n_feat)),
                            np.full((1, n_feat), 2**31 - 1), np.full((1, n_feat), -2**31 + 1)])
    want = score_codes(model, probe)
    for row, raw, cls in zip(probe, want.raw, want.cls):
        got = dm.predict(row)
        np.testing.assert_array_equal(got.raw, raw)
        assert got.cls == cls


# --- binding, versions, hostile images ---------------------------------------------------------

def demo_model():
    return load_model((Path(sensorq.__file__).parent / "data" / "motion.sqm").read_bytes())


MOTION_CHANNELS = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]
MOTION_RING = [(n, "int16") for n in MOTION_CHANNELS]


def recrc(data: bytes) -> bytes:
    body = bytearray(data[:-4])
    if len(body) >= FIELD_AT["length"] + 4:
        struct.pack_into("<I", body, FIELD_AT["length"], len(body) + 4)
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def ring_cfg(channels, block_samples=32):
    return stream_cfg([d for _, d in channels], block_samples, schema=device_stream_schema(channels))


def test_binding_on_the_host_by_channel_name_and_type(dev):
    """The host binds a model's inputs to the ring's channels (any order,
    extra channels) and names an input it cannot bind; the device refuses an
    image made for another ring (its schema hash) with SQ_ERR_MISMATCH."""
    model = demo_model()
    for ring in (MOTION_RING, MOTION_RING[::-1], [("t", "int32")] + MOTION_RING):
        assert load_status(dev, device_image(model, ring), ring_cfg(ring)) == "SQ_OK"
    renamed = MOTION_RING[:5] + [("gyro_z", "int16")]
    with pytest.raises(SensorqError, match="'gyr_z' is not a channel"):
        device_image(model, renamed)
    assert load_status(dev, device_image(model, MOTION_RING), ring_cfg(MOTION_RING[::-1])) == "SQ_ERR_MISMATCH"
    assert load_status(dev, device_image(model, MOTION_RING), ring_cfg(renamed)) == "SQ_ERR_MISMATCH"
    # an integer input keeps its storage type
    tree = fit_model("tree", 0, small_pipeline(1), np.arange(40).reshape(-1, 1))
    assert load_status(dev, device_image(tree, [("x", "int16")]), ring_cfg([("x", "int16")])) == "SQ_OK"
    with pytest.raises(SensorqError, match="keeps its storage type"):
        device_image(tree, [("x", "int32")])
    # an image bound to one ring scores no other
    image = device_image(tree, [("x", "int16")])
    dm = DeviceModel(dev, image, ring_cfg([("x", "int16")]))
    other = dev.ring(["int16"], 8, region_len=4096, schema=device_stream_schema([("y", "int16")]))
    other.append_many(np.arange(20, dtype=np.int64) * 10**8, [np.arange(20, dtype=np.int16)])
    with pytest.raises(DeviceError, match="SQ_ERR_MISMATCH"):
        dm.window(other, 0)


def test_other_versions_and_damage_are_refused_by_code(dev):
    image = device_image(demo_model(), MOTION_RING)
    cfg = ring_cfg(MOTION_RING)
    assert image[4] == 3
    for version in (1, 2, 4):              # versions 1 (tree widths) and 2 (leaf bit), and a later one: refused by name
        other = bytearray(image)
        other[4] = version
        assert load_status(dev, recrc(bytes(other)), cfg) == "SQ_ERR_VERSION"
    bad = bytearray(image)
    bad[60] ^= 4
    assert load_status(dev, bytes(bad), cfg) == "SQ_ERR_CRC"
    assert load_status(dev, image[:-1], cfg) == "SQ_ERR_CORRUPT"
    assert load_status(dev, recrc(image[:200]), cfg) == "SQ_ERR_CORRUPT"
    assert load_status(dev, recrc(image[:40]), cfg) == "SQ_ERR_CORRUPT"
    assert load_status(dev, recrc(image[:-4] + b"\0" + image[-4:]), cfg) == "SQ_ERR_CORRUPT"
    assert load_status(dev, b"", cfg) == "SQ_ERR_CORRUPT"
    assert load_status(dev, b"SQB1" + bytes(60), cfg) == "SQ_ERR_CORRUPT"
    sqm = (Path(sensorq.__file__).parent / "data" / "motion.sqm").read_bytes()
    lib = dev.lib
    m = ModelStruct()
    assert lib.sq_model_load(ctypes.byref(m), sqm, len(sqm), ctypes.byref(cfg)) == -2, \
        "the device takes device images only (SQ_ERR_CORRUPT for a .sqm)"


def test_a_refused_model_cannot_be_scored_by_mistake(dev):
    """A firmware that ignores sq_model_load's error and scores anyway gets
    SQ_ERR_ARG, not a read of the refused bytes."""
    image = device_image(demo_model(), MOTION_RING)
    cfg = ring_cfg(MOTION_RING)
    lib = dev.lib
    m = ModelStruct()
    assert lib.sq_model_load(ctypes.byref(m), image, len(image), ctypes.byref(cfg)) == 0
    codes = (ctypes.c_int32 * 64)()
    work = ctypes.create_string_buffer(1 << 16)
    out = ModelOut()
    assert lib.sq_model_predict(ctypes.byref(m), codes, work, len(work), ctypes.byref(out)) == 0
    cut = recrc(image[:200])                 # CRC right, then past the end: refused late
    assert lib.sq_model_load(ctypes.byref(m), cut, len(cut), ctypes.byref(cfg)) == -2
    assert lib.sq_model_predict(ctypes.byref(m), codes, work, len(work), ctypes.byref(out)) == -1
    assert lib.sq_model_work_size(ctypes.byref(m)) == 0


def patched(image: bytes, at: int, fmt: str, value) -> bytes:
    buf = bytearray(image)
    struct.pack_into(fmt, buf, at, value)
    return recrc(bytes(buf))


def test_hostile_images_each_rule(dev):
    """One broken rule at a time, CRC repaired: the loader names it."""
    image = device_image(demo_model(), MOTION_RING)
    cfg = ring_cfg(MOTION_RING)
    at, F = image_sections(image), FIELD_AT
    assert at["node_size"] == 9                     # version 3: u8 feature, i32 threshold, u16 left, u16 right
    node = lambda i, field: at["nodes"] + 9 * i + {"f": 0, "l": 5, "r": 7}[field]  # noqa: E731
    ref, leaf = "<H", at["n_nodes"]                 # references from n_nodes on are leaves
    # an internal node whose child is itself, an earlier node; a leaf past the table (two ways), a root too
    internal = [i for i in range(at["n_nodes"]) if struct.unpack_from(ref, image, node(i, "l"))[0] < leaf]
    i = internal[-1]
    corrupt = [patched(image, node(i, "l"), ref, i), patched(image, node(i, "l"), ref, 0),
               patched(image, node(0, "r"), ref, leaf + at["n_leaves"]),
               patched(image, node(0, "r"), ref, 0xFFFF), patched(image, at["trees"] + 2, "<H", 0xFFFF),
               patched(image, node(0, "f"), "<B", 9),                              # feature 9 of 9
               patched(image, at["trees"] + 2, "<H", leaf + at["n_leaves"]),       # a root past the leaves
               patched(image, at["features"], "<B", 0), patched(image, at["features"], "<B", 11),   # op codes
               patched(image, at["features"] + 1, "<B", 6),                        # signal 6 of 6
               patched(image, at["signals"], "<H", 0), patched(image, at["signals"], "<H", 1 << 6),
               patched(image, at["inputs"] + 1, "<B", 64),                         # a shift past 63
               patched(image, F["n_nodes"], "<H", at["n_nodes"] + 1),               # counts past the bytes
               patched(image, F["n_leaves"], "<H", at["n_leaves"] - 1),
               patched(image, F["n_out"], "<B", 0), patched(image, F["body"], "<B", 3),
               patched(image, F["kind"], "<B", 3),
               patched(image, F["min_samples"], "<I", 1), patched(image, F["min_samples"], "<I", 2**19 + 1),
               patched(image, F["n_inputs"], "<B", 17), patched(image, F["n_features"], "<B", 10)]
    for n, bad in enumerate(corrupt):
        assert load_status(dev, bad, cfg) == "SQ_ERR_CORRUPT", n
    assert load_status(dev, patched(image, at["inputs"], "<B", 6), cfg) == "SQ_ERR_MISMATCH"   # channel 6 of 6
    assert load_status(dev, patched(image, F["schema"], "<I", cfg.schema ^ 1), cfg) == "SQ_ERR_MISMATCH"
    # a forward reference into the next tree is harmless: accepted (the walk still ends); a root or a
    # child may be any leaf
    assert load_status(dev, patched(image, node(0, "r"), ref, at["n_nodes"] - 1), cfg) == "SQ_OK"
    assert load_status(dev, patched(image, node(i, "l"), ref, leaf + at["n_leaves"] - 1), cfg) == "SQ_OK"
    assert load_status(dev, patched(image, at["trees"] + 2, "<H", leaf), cfg) == "SQ_OK"
    # the window and the hop outside 1 … 2^62 are the host's rule (version 3's loader leaves them):
    # the device's arithmetic on them is unsigned, so such an image scores other samples or none,
    # never an error of its own (the sanitized harness scores mutated headers under UBSan)
    ring = dev.ring([d for _, d in MOTION_RING], 16, region_len=40_000, schema=cfg.schema)
    t = np.arange(200, dtype=np.int64) * 10**7
    ring.append_many(t, [np.arange(200, dtype=np.int16)] * len(MOTION_RING))
    for field, value in (("hop_ns", 0), ("hop_ns", -3), ("window_ns", 0), ("window_ns", -5),
                         ("window_ns", 2**62 + 1), ("window_ns", 2**63 - 1)):
        odd = patched(image, F[field], "<q", value)
        assert load_status(dev, odd, cfg) == "SQ_OK", field
        dm = DeviceModel(dev, odd, cfg)
        for start in (-2**63, 0, int(t[100]), 2**63 - 10**6):
            try:
                dm.window(ring, start)
            except DeviceError as exc:      # more than SQ_MODEL_MAX_WINDOW samples: not here
                raise AssertionError(f"{field}={value} start={start}: {exc}") from exc
        dm.score(ring)
        dm.newest(ring)


def corpus():
    """Device images of every kind (and the demo model)."""
    rng = np.random.default_rng(3)
    codes = rng.integers(-3000, 3000, (120, 3))
    p = Pipeline("s", [Input("x", 2), Input("y", 3, -2), Input("z", 6, 8)], [(0,), (1,), (0, 1, 2)],
                 [Feature(MEAN, 0), Feature(2, 1), Feature(9, 2, (2**26, 2**27)), Feature(8, 0)][:3],
                 10**9, 5 * 10**8, 100_000, 4)
    out = [(demo_model(), MOTION_RING)]
    for kind in sorted(MAKERS):
        out.append((fit_model(kind, 1, p, codes), CORPUS_RING))
    return out


CORPUS_RING = [("x", "int16"), ("y", "int32"), ("z", "int16")] + MOTION_RING


def mutate(rng, data: bytes) -> bytes:
    buf = bytearray(data)
    how = rng.integers(0, 5)
    if how == 0:
        for _ in range(int(rng.integers(1, 4))):
            buf[int(rng.integers(0, len(buf)))] = int(rng.integers(0, 256))
    elif how == 1:
        at = int(rng.integers(4, len(buf)))
        buf[at] = buf[at] ^ (1 << int(rng.integers(0, 8)))
    elif how == 2:
        at = int(rng.integers(4, len(buf) - 4))
        buf[at:at + 1] = bytes([int(rng.integers(0, 3))]) if rng.random() < 0.5 else b""
    elif how == 3:
        at = int(rng.integers(60, len(buf) - 4))
        buf[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
    else:
        buf = buf[:int(rng.integers(0, len(buf)))]
    return bytes(buf) if rng.random() < 0.3 else recrc(bytes(buf))


def test_mutated_images_are_refused_or_scored(dev):
    """Mutated images (CRC repaired most of the time, so that the checks past
    it are exercised): one whose CRC no longer matches is refused; one the
    device accepts scores codes and windows without error; mutations that
    leave only constants changed are accepted.  (Out-of-bounds reads are the
    sanitized harness's: test_sanitized_loader_and_scorers_survive_hostile_models.)"""
    rng = np.random.default_rng(7)
    cfg = ring_cfg(CORPUS_RING, 16)
    seen = {"accepted": 0, "refused": 0}
    for model, ring in corpus():
        cfg = ring_cfg(ring, 16)
        image = device_image(model, ring)
        assert load_status(dev, image, cfg) == "SQ_OK"
        for _ in range(150 if not LONG else 3000):
            bad = mutate(rng, image)
            status = load_status(dev, bad, cfg)
            if bad[-4:] != struct.pack("<I", zlib.crc32(bad[:-4])) and bad != image:
                assert status != "SQ_OK", bad.hex()
            if status != "SQ_OK":
                seen["refused"] += 1
                continue
            seen["accepted"] += 1
            dm = DeviceModel(dev, bad, cfg)
            for row in rng.integers(-2**31 + 1, 2**31 - 1, (4, dm.n_features)):
                dm.predict(row)
    assert seen["accepted"] > 50 and seen["refused"] > 500, seen


def test_output_schema_is_the_devices(dev):
    model = demo_model()
    dm = DeviceModel(dev, device_image(model, MOTION_RING), ring_cfg(MOTION_RING))
    assert dm.m.out_schema == output_schema(model)
    for model, ring in corpus()[1:]:
        dm = DeviceModel(dev, device_image(model, ring), ring_cfg(ring, 16))
        assert dm.m.out_schema == output_schema(model)


# --- under sanitizers -----------------------------------------------------------------------

def test_sanitized_loader_and_scorers_survive_hostile_models(tmp_path):
    """The fuzz harness: the library built with -fsanitize=address,undefined,
    in a child process, loads mutated device images and scores what it
    accepts (codes, and windows over a small ring); any out-of-bounds read
    or undefined behaviour aborts it."""
    done = run_under_sanitizers(tmp_path, Path(__file__), ["3000" if LONG else "300"], timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "hostile models: " in done.stdout
    print(done.stdout.strip())


def sanitized_main(lib_path: str, rounds: int) -> None:
    dev = DeviceLib(Path(lib_path))
    rng = np.random.default_rng(12)
    accepted = runs = 0
    for model, ring_channels in corpus():
        cfg = ring_cfg(ring_channels, 16)
        dtypes = [d for _, d in ring_channels]
        ring = dev.ring(dtypes, 16, region_len=40_000, schema=cfg.schema)
        n = 300
        t = np.cumsum(rng.integers(0, 3, n)).astype(np.int64) * 10**7
        cols = [rng.integers(-2**15, 2**15, n).astype(np.int16) if d == "int16"
                else rng.integers(-2**31, 2**31, n).astype(np.int32) for d in dtypes]
        ring.append_many(t[:-5], [c[:-5] for c in cols])
        ring.append_many(t[-5:], [c[-5:] for c in cols], poll=False)
        image = device_image(model, ring_channels)
        for _ in range(rounds):
            bad = mutate(rng, image)
            runs += 1
            if load_status(dev, bad, cfg) != "SQ_OK":
                continue
            accepted += 1
            dm = DeviceModel(dev, bad, cfg)
            for row in rng.integers(-2**31 + 1, 2**31 - 1, (4, dm.n_features)):
                dm.predict(row)
            for start in (0, int(t[n // 2]), int(t[-1]) - 10**8):
                dm.window(ring, start)
            dm.score(ring)
            try:             # a work buffer one byte short is refused, never overrun
                DeviceModel(dev, bad, cfg, work_len=dm.work_len - 1).window(ring, 0)
                raise AssertionError("a short work buffer was accepted")
            except Exception as exc:  # noqa: BLE001
                assert "SQ_ERR_ARG" in str(exc)
    print(f"hostile models: {runs} tried, {accepted} accepted and scored")


if __name__ == "__main__":
    sanitized_main(sys.argv[1], int(sys.argv[2]))


def test_windows_while_the_ring_evicts_and_grows(dev):
    """Windows scored while the ring evicts, with samples appended between
    calls, asked out of order, one work buffer shared by two rings: every
    answer equals a cold one (zeroed work memory), and windows whose
    samples were evicted are short, as the ring says."""
    import ctypes
    rng = np.random.default_rng(5)
    p = Pipeline("s", [Input("x", 2), Input("y", 3, -3)], [(0,), (1,), (0, 1)],
                 [Feature(MEAN, 0), Feature(2, 1), Feature(5, 2), Feature(8, 0), Feature(7, 1)],
                 2 * 10**8, 5 * 10**7, 100_000, 4)
    model = fit_model("forest", 2, p, rng.integers(-2000, 2000, (200, 5)))
    blob = encode_model(model, with_float=False)
    cfg = stream_cfg(["int16", "int32"], 16)
    rings = [dev.ring(["int16", "int32"], 16, region_len=dev.lib.sq_ring_region_min(ctypes.byref(cfg)) + 600)
             for _ in range(2)]
    warm = DeviceModel(dev, blob, cfg, ["x", "y"])
    cold = DeviceModel(dev, blob, cfg, ["x", "y"])
    t = [10**12, 10**12 + 5 * 10**8]
    seen = 0
    for step in range(400):
        which = int(rng.integers(0, 2))
        ring = rings[which]
        for _ in range(int(rng.integers(1, 12))):
            t[which] += int(rng.choice([0, 10**7, 10**7, 3 * 10**7]))
            ring.append(t[which], [int(rng.integers(-3000, 3000)), int(rng.integers(-2**20, 2**20))])
        newest = warm.newest(ring)
        start = newest - int(rng.choice([0, 0, 1, 2, 5, 40])) * p.hop_ns
        ctypes.memset(cold.work, 0, cold.work_len)
        a, b = warm.window(ring, start), cold.window(ring, start)
        assert (a.scored, a.n_samples) == (b.scored, b.n_samples), step
        if a.scored:
            seen += 1
            np.testing.assert_array_equal(a.codes, b.codes)
            np.testing.assert_array_equal(a.raw, b.raw)
    assert seen > 200 and rings[0].stats().blocks_evicted > 20


def test_the_export_cursor_from_every_position(dev):
    """sq_ring_iter_after passes whole banks over from their headers: from
    every position of a ring that has wrapped (and after a failed-sync
    duplicate-free run), it returns exactly the blocks after it."""
    rng = np.random.default_rng(9)
    ring = dev.ring(["int16", "int8"], 8, region_len=6000)
    n = 900
    t = np.cumsum(rng.integers(0, 3, n)).astype(np.int64) * 10**6
    ring.append_many(t, [rng.integers(-500, 500, n).astype(np.int16), rng.integers(-9, 9, n).astype(np.int8)])
    blocks = ring.blocks()
    from sensorq.device.vectors import block_info
    seqs = [block_info(b).seq for b in blocks]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] > 10
    for after in range(seqs[0] - 3, seqs[-1] + 3):
        got, missed = ring.blocks_after(after)
        assert got == blocks[max(0, after + 1 - seqs[0]):], after
        assert missed == max(0, seqs[0] - (after + 1))


def test_cli_exports_the_device_image(dev, tmp_path):
    """`sensorq model export NAME --image [--channels ...]` writes the image
    device_image makes (bound to those channels) and names the ring's schema
    hash; an input missing from --channels is refused by name."""
    cache = sensorq.open(tmp_path / "c", create=True)
    cache.create_stream("motions", [Channel(n, "float64") for n in MOTION_CHANNELS], rate_hz=10.0)
    cache.models.add("motion", demo_model())
    cache.close()
    ring = [("temp", "int8")] + MOTION_RING[::-1]
    spec = ",".join(f"{n}:{d}" for n, d in ring)
    run = lambda *a: subprocess.run([sys.executable, "-m", "sensorq", "--cache", str(tmp_path / "c"), *a],  # noqa: E731
                                    capture_output=True, text=True)
    done = run("model", "export", "motion", "-o", str(tmp_path / "m.sqd"), "--image", "--channels", spec)
    assert done.returncode == 0, done.stderr
    assert f"{device_stream_schema(ring):#010x}" in done.stdout
    image = (tmp_path / "m.sqd").read_bytes()
    assert image == device_image(demo_model(), ring)
    assert load_status(dev, image, ring_cfg(ring)) == "SQ_OK"
    done = run("model", "export", "motion", "-o", str(tmp_path / "x.sqd"), "--image", "--channels", spec[:-12])
    assert done.returncode != 0 and "'acc_x' is not a channel" in done.stderr
