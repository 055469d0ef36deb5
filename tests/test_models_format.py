"""The .sqm format: round trips, and damaged, truncated or hostile bytes always
give a ModelError (never another exception), checked by hand-made attacks and
by hypothesis fuzzing with and without a repaired CRC."""
from __future__ import annotations

import dataclasses
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorq.errors import SensorqError
from sensorq.models import encode_model, load_model
from sensorq.models.model import BAND, MEAN, STD, MAX, Feature, Input, ModelError, Pipeline
from sensorq.models.score import score_codes, score_values

sklearn = pytest.importorskip("sklearn", reason="scikit-learn (the 'models' extra) is not installed")
from sklearn.covariance import EllipticEnvelope  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

from sensorq.models.sklearn_import import from_sklearn  # noqa: E402


def pipeline(n_features=4) -> Pipeline:
    feats = [Feature(MEAN, 0), Feature(STD, 1), Feature(MAX, 2), Feature(BAND, 0, (2**26, 2**27))]
    return Pipeline("imu", [Input("x", 2), Input("y", 3, -4), Input("z", 6, 10)], [(0,), (1,), (0, 1, 2)],
                    feats[:n_features], 2_000_000_000, 500_000_000, 100_000, 100)


def data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    codes = (rng.normal(0, 400, (n, 4)) + y[:, None] * 500).astype(np.int64)
    scale = np.array([1 / 16, 1 / 16, 1, 1 / 16])
    return codes, codes * scale, y


def models():
    codes, X, y = data()
    p = pipeline()
    return {
        "forest": from_sklearn(RandomForestClassifier(5, max_depth=4, random_state=0).fit(X, y), p,
                               class_names=["a", "b", "c"]),
        "boosting": from_sklearn(GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, y), p),
        "linear": from_sklearn(LogisticRegression(max_iter=2000).fit(X, y), p, X_calib=X),
        "mlp": from_sklearn(MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0).fit(X, y),
                            p, X_calib=X),
        "anomaly": from_sklearn(EllipticEnvelope(random_state=0).fit(X), p, X_calib=X,
                                output_name="anomaly"),
    }


MODELS = models()
BLOBS = {k: encode_model(m) for k, m in MODELS.items()}


def with_crc(body: bytes) -> bytes:
    """Bytes with a valid CRC and length field: the checks past the CRC are on their own."""
    body = bytearray(body[:-4])
    if len(body) >= 12:
        struct.pack_into("<I", body, 8, len(body) + 4)
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_round_trip_is_exact(kind):
    blob = BLOBS[kind]
    back = load_model(blob)
    assert encode_model(back) == blob
    codes, X, _ = data(50, seed=1)
    a, b = score_codes(MODELS[kind], codes), score_codes(back, codes)
    np.testing.assert_array_equal(a.raw, b.raw)
    np.testing.assert_array_equal(score_values(back, X).cls, score_values(MODELS[kind], X).cls)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_device_export_leaves_out_the_float_section_and_scores_the_same(kind):
    small = encode_model(MODELS[kind], with_float=False)
    assert len(small) < len(BLOBS[kind])
    back = load_model(small)
    codes, _, _ = data(50, seed=2)
    np.testing.assert_array_equal(score_codes(back, codes).raw, score_codes(MODELS[kind], codes).raw)
    with pytest.raises(ModelError, match="no float parameters"):
        score_values(back, codes.astype(float))


def test_model_error_is_a_sensorq_error():
    assert issubclass(ModelError, SensorqError)


@pytest.mark.parametrize("cut", [0, 3, 31, 36, 100, -5, -1])
def test_truncated(cut):
    blob = BLOBS["forest"]
    with pytest.raises(ModelError):
        load_model(blob[:cut])


def test_messages_name_the_fault():
    blob = BLOBS["forest"]
    with pytest.raises(ModelError, match="CRC"):
        load_model(blob[:40] + bytes([blob[40] ^ 1]) + blob[41:])
    with pytest.raises(ModelError, match="version"):
        load_model(with_crc(blob[:4] + b"\x02" + blob[5:]))
    with pytest.raises(ModelError, match="SQM1"):
        load_model(b"PK\x03\x04" + blob[4:])
    with pytest.raises(ModelError, match="bytes"):
        load_model(None)


def _first_tree_node(blob: bytes) -> int:
    """Offset of the first node of the first tree in a forest's bytes."""
    lens = struct.unpack_from("<IIIII", blob, 12)
    quant = 32 + lens[0] + lens[1]
    n_out, widths = blob[quant + 1], blob[quant + 2]
    cw = 2 if widths & 4 else 1
    return quant + 16 + 4 * n_out + 3 + cw


def test_a_backward_child_reference_is_refused():
    blob = bytearray(BLOBS["forest"])
    node = _first_tree_node(bytes(blob))
    tw = {0: 1, 1: 2, 2: 4}[blob[32 + sum(struct.unpack_from("<II", blob, 12)) + 2] & 3]
    left = node + 1 + tw
    blob[left] = 0                              # node 0's left child is node 0: a cycle
    with pytest.raises(ModelError, match="backwards"):
        load_model(with_crc(bytes(blob)))


def test_a_feature_index_past_the_pipeline_is_refused():
    blob = bytearray(BLOBS["forest"])
    blob[_first_tree_node(bytes(blob))] = 200
    with pytest.raises(ModelError, match="feature"):
        load_model(with_crc(bytes(blob)))


def test_an_exponent_on_an_int16_input_is_refused():
    """models.md §2: int8/int16 values are the signal itself.  The host's walker
    shifted by such an exponent while the device ignored it."""
    p = pipeline()
    p.inputs[0] = Input("x", 2, -2)
    with pytest.raises(ModelError, match="int8/int16 channel with exponent -2"):
        load_model(encode_model(dataclasses.replace(MODELS["forest"], pipeline=p)))


def test_huge_counts_are_refused_before_anything_is_allocated():
    blob = bytearray(BLOBS["mlp"])
    lens = struct.unpack_from("<IIIII", blob, 12)
    quant = 32 + lens[0] + lens[1]
    layer = quant + 4 + 9 * 4
    struct.pack_into("<HH", blob, layer, 65535, 65535)
    with pytest.raises(ModelError, match="out of range"):
        load_model(with_crc(bytes(blob)))


def _must_not_crash(blob: bytes) -> None:
    try:
        model = load_model(blob)
    except ModelError:
        return
    # Whatever loads must also score without error on any codes.
    codes = np.random.default_rng(0).integers(-2**31 + 1, 2**31 - 1, (20, len(model.pipeline.features)))
    score_codes(model, codes)


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(sorted(BLOBS)), data=st.data())
def test_fuzz_bit_flips_and_byte_edits(kind, data):
    blob = bytearray(BLOBS[kind])
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        if data.draw(st.booleans()):
            blob[pos] ^= 1 << data.draw(st.integers(0, 7))
        else:
            blob[pos] = data.draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, data.draw(st.integers(0, 255))]))
    fix = data.draw(st.booleans())
    candidate = with_crc(bytes(blob)) if fix else bytes(blob)
    if not fix and candidate != BLOBS[kind]:        # any change the CRC does not cover
        with pytest.raises(ModelError):
            load_model(candidate)
    else:
        _must_not_crash(candidate)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(BLOBS)), data=st.data())
def test_fuzz_cuts_insertions_and_garbage(kind, data):
    blob = BLOBS[kind]
    a = data.draw(st.integers(0, len(blob)))
    b = data.draw(st.integers(a, len(blob)))
    junk = data.draw(st.binary(max_size=40))
    _must_not_crash(with_crc(blob[:a] + junk + blob[b:]))
    _must_not_crash(data.draw(st.binary(max_size=300)))
    _must_not_crash(with_crc(data.draw(st.binary(min_size=32, max_size=300))))
