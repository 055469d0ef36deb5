"""The quantized path is the device's contract (docs/models.md §4): here it is
recomputed from the .sqm *bytes* with Python integers, walking the file as a C
reader would (a cursor, no structures from sensorq), and compared with
score_codes bit for bit, for random models of every kind."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorq.models import encode_model
from sensorq.models.model import MEAN, Feature, Input, Pipeline
from sensorq.models.score import score_codes

pytest.importorskip("sklearn", reason="scikit-learn (the 'models' extra) is not installed")
from sklearn import ensemble, linear_model, neural_network, tree  # noqa: E402
from sklearn.covariance import EllipticEnvelope  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from sensorq.models.sklearn_import import from_sklearn  # noqa: E402


class Cursor:
    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos

    def get(self, fmt: str):
        v = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return v if len(v) > 1 else v[0]


def rshift(v: int, s: int) -> int:
    return v if s == 0 else (v + (1 << (s - 1))) >> s


def sat(v, lo, hi):
    return max(lo, min(hi, v))


def ref_scores(blob: bytes, codes: list[int]) -> list[int]:
    """The outputs (tree accumulators, dense outputs or d2) of one window."""
    kind = blob[5]
    lens = struct.unpack_from("<IIIII", blob, 12)
    c = Cursor(blob, 32 + lens[0] + lens[1])
    return (_trees if kind == 1 else _dense)(c, codes)


def _trees(c: Cursor, codes):
    mode, n_out, widths, _, n_trees, n_leaves, _scale = c.get("BBBBHHd")
    tfmt = {0: "b", 1: "h", 2: "i"}[widths & 3]
    cfmt, leaf_bit = ("H", 0x8000) if widths & 4 else ("B", 0x80)
    lfmt = {0: "B", 1: "h", 2: "i"}[widths >> 3]
    acc = [c.get("i") for _ in range(n_out)]
    trees = []
    for _ in range(n_trees):
        out, n_nodes, root = c.get("BH" + cfmt)
        nodes = [c.get("B" + tfmt + cfmt + cfmt) for _ in range(n_nodes)]
        trees.append((out, root, nodes))
    per_leaf = n_out if mode == 0 else 1
    leaves = [[c.get(lfmt) for _ in range(per_leaf)] for _ in range(n_leaves)]
    for out, ref, nodes in trees:
        while not ref & leaf_bit:
            feature, threshold, left, right = nodes[ref]
            ref = left if codes[feature] <= threshold else right
        leaf = leaves[ref & ~leaf_bit]
        if mode == 0:
            acc = [a + v for a, v in zip(acc, leaf)]
        else:
            acc[out] += leaf[0]
    return acc


def _dense(c: Cursor, codes):
    mode, n_layers, _, _ = c.get("BBBB")
    inputs = [c.get("iiB") for _ in codes]
    a = [sat(rshift((code - off) * mul, sh), -127, 127) for code, (off, mul, sh) in zip(codes, inputs)]
    for k in range(n_layers):
        n_in, n_out, relu, encoding, shift, _ = c.get("HHBBBB")
        rows = []
        for _ in range(n_out):
            if encoding:
                bits = [c.get("B") for _ in range((n_in + 7) // 8)]
                rows.append([c.get("b") if bits[i // 8] >> (i % 8) & 1 else 0 for i in range(n_in)])
            else:
                rows.append([c.get("b") for _ in range(n_in)])
        bias = [c.get("i") for _ in range(n_out)]
        mult = [c.get("i") for _ in range(n_out)] if shift != 255 else None
        acc = [b + sum(w * x for w, x in zip(row, a)) for row, b in zip(rows, bias)]
        assert all(-2**31 <= v < 2**31 for v in acc)          # the int32 accumulator suffices
        last = k == n_layers - 1
        if last and mode != 3:
            return acc
        limit = 2**20 if last else 127
        a = [sat(max(rshift(v * m, shift), 0) if relu else rshift(v * m, shift), -limit, limit)
             for v, m in zip(acc, mult)]
    return [sum(r * r for r in a)]


def pipeline(n):
    return Pipeline("s", [Input("x", 2)], [(0,)], [Feature(MEAN, 0)] * n, 10**9, 10**9, 0, 2)


MAKERS = [
    lambda s: tree.DecisionTreeClassifier(max_depth=7, random_state=s),
    lambda s: ensemble.RandomForestClassifier(7, max_depth=5, random_state=s),
    lambda s: ensemble.GradientBoostingClassifier(n_estimators=6, random_state=s),
    lambda s: ensemble.HistGradientBoostingRegressor(max_iter=6),
    lambda s: ensemble.RandomForestRegressor(4, max_depth=6, random_state=s),
    lambda s: make_pipeline(StandardScaler(), linear_model.LogisticRegression(max_iter=3000)),
    lambda s: make_pipeline(StandardScaler(), neural_network.MLPClassifier(
        hidden_layer_sizes=(9, 5), max_iter=400, random_state=s)),
    lambda s: make_pipeline(StandardScaler(), neural_network.MLPRegressor(
        hidden_layer_sizes=(7,), max_iter=400, random_state=s)),
    lambda s: EllipticEnvelope(random_state=s),
]


@pytest.mark.filterwarnings("ignore:.*converged.*")
@settings(max_examples=45, deadline=None)
@given(which=st.integers(0, len(MAKERS) - 1), seed=st.integers(0, 1000), n_feat=st.integers(1, 6),
       classes=st.integers(2, 4))
def test_quantized_path_is_the_documented_integer_arithmetic(which, seed, n_feat, classes):
    rng = np.random.default_rng(seed)
    codes = rng.integers(-3000, 3000, (120, n_feat)) * rng.integers(1, 50, n_feat)
    X = codes / 16.0
    y = (codes[:, 0] > np.median(codes[:, 0])).astype(int) + (classes > 2) * (codes[:, -1] % classes)
    est = MAKERS[which](seed)
    regression = "Regressor" in type(est).__name__ or "Regressor" in str(est)
    if isinstance(est, EllipticEnvelope):
        est.fit(X)
    else:
        est.fit(X, X[:, 0] * 0.3 + X[:, -1] if regression else y)
    model = from_sklearn(est, pipeline(n_feat), X_calib=X)
    blob = encode_model(model, with_float=False)
    probe = np.concatenate([codes, rng.integers(-2**31 + 1, 2**31 - 1, (10, n_feat))])  # and extremes
    raw = score_codes(model, probe).raw
    for row, got in zip(probe.tolist(), raw.tolist()):
        assert ref_scores(blob, row) == got
