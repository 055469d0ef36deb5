"""Scoring: a model's outputs for feature rows, and ``score_windows`` for a
time range of a cache (what the query integration calls).

The quantized path runs the integer scorers of qscore.py on the integer
feature codes; its class is exactly the device's.  The float path runs the
float parameters on the float features: the scikit-learn model it came from.
Probabilities, values and anomaly scores of the quantized path are the
device's integers converted with the model's host-only scales.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import compute_windows
from .model import (ARGMAX, CLASSES, LINEAR_VALUE, MEAN_MODE, SIGN, SUMSQ, VOTE, DenseBody, Model,
                    ModelError, TreeBody)
from .qscore import f_trees, q_dense, q_trees


@dataclass
class Scores:
    cls: np.ndarray                  # int64 class code (anomaly: 1 = anomalous); -1 for a regressor
    proba: np.ndarray | None         # float64 (n, K) for classifiers
    value: np.ndarray | None         # float64: regression value or anomaly score (Mahalanobis distance)
    raw: np.ndarray                  # the integer (quantized) or float outputs before conversion


@dataclass
class ScoredWindows(Scores):
    start: np.ndarray = None         # int64 ns, window start
    end: np.ndarray = None           # int64 ns, exclusive
    blocks: int = 0                  # blocks decoded to compute the features
    samples: int = 0                 # samples read from them


def score_windows(cache, model: Model, start_ns=None, end_ns=None, quantized: bool = True) -> ScoredWindows:
    """Every window of ``model`` inside [start_ns, end_ns) that holds enough
    samples: start, end, class, probabilities (or value / anomaly score)."""
    w = compute_windows(cache, model.pipeline, start_ns, end_ns, codes=quantized, values=not quantized)
    s = score_codes(model, w.codes) if quantized else score_values(model, w.values)
    return ScoredWindows(s.cls, s.proba, s.value, s.raw, w.start, w.end, w.blocks, w.samples)


def score_codes(model: Model, codes: np.ndarray) -> Scores:
    """The quantized path on integer feature codes (n, n_features)."""
    codes = np.ascontiguousarray(codes, np.int64)
    # (the host-only scales of a hostile model may overflow to inf: its class,
    # computed in integers, is still defined)
    with np.errstate(over="ignore", invalid="ignore"):
        if isinstance(model.body, TreeBody):
            return _trees_out(model, _q_trees_raw(model.body, codes), quantized=True)
        return _dense_out(model, _q_dense_raw(model.body, codes), quantized=True)


def score_values(model: Model, values: np.ndarray) -> Scores:
    """The float path on float features (n, n_features)."""
    if not model.body.has_float:
        raise ModelError("this model carries no float parameters (exported for the device); "
                         "score it quantized")
    values = np.ascontiguousarray(values, np.float64)
    if isinstance(model.body, TreeBody):
        return _trees_out(model, _f_trees_raw(model.body, values), quantized=False)
    return _dense_out(model, _f_dense_raw(model.body, values), quantized=False)


def _tree_arrays(b: TreeBody):
    return (b.tree_start.astype(np.int64), b.roots.astype(np.int64), b.feature.astype(np.int64))


def _q_trees_raw(b: TreeBody, codes: np.ndarray) -> np.ndarray:
    acc = np.zeros((codes.shape[0], b.n_out), np.int64)
    start, roots, feature = _tree_arrays(b)
    q_trees(codes, b.mode, b.init.astype(np.int64), b.tree_out.astype(np.int64), start, roots,
            feature, b.threshold.astype(np.int64), b.left.astype(np.int64),
            b.right.astype(np.int64), b.leaves.astype(np.int64), acc)
    return acc


def _f_trees_raw(b: TreeBody, values: np.ndarray) -> np.ndarray:
    acc = np.zeros((values.shape[0], b.n_out))
    start, roots, feature = _tree_arrays(b)
    f_trees(values, b.f_cast32, b.f_init, b.tree_out.astype(np.int64), b.mode, start, roots,
            feature, b.f_threshold, b.left.astype(np.int64), b.right.astype(np.int64),
            b.f_leaves, acc)
    return acc


def _trees_out(model: Model, acc: np.ndarray, quantized: bool) -> Scores:
    b = model.body
    n = acc.shape[0]
    scale = b.leaf_scale if quantized else 1.0
    if b.mode == VOTE:
        total = acc.sum(axis=1, keepdims=True).astype(np.float64)
        proba = np.divide(acc, total, out=np.zeros(acc.shape), where=total > 0)
        return Scores(np.argmax(acc, axis=1).astype(np.int64), proba, None, acc)
    if b.mode == MEAN_MODE:
        return Scores(np.full(n, -1, np.int64), None, acc[:, 0] * scale / b.n_trees, acc)
    raw = acc * scale                                   # SUM: gradient boosting's raw scores
    if model.outputs.kind != CLASSES:
        return Scores(np.full(n, -1, np.int64), None, raw[:, 0], acc)
    return _classes_from_raw(acc, raw)


def _classes_from_raw(acc: np.ndarray, raw: np.ndarray) -> Scores:
    """One raw score: class 1 iff it is > 0 (a logit); several: the first largest."""
    if raw.shape[1] == 1:
        p1 = 1 / (1 + np.exp(-raw[:, 0]))
        return Scores((acc[:, 0] > 0).astype(np.int64), np.column_stack([1 - p1, p1]), None, acc)
    z = np.exp(raw - raw.max(axis=1, keepdims=True))
    return Scores(np.argmax(acc, axis=1).astype(np.int64), z / z.sum(axis=1, keepdims=True), None, acc)


def _dense_arrays(b: DenseBody):
    sizes, w_off, b_off = [], 0, 0
    for layer in b.layers:
        sizes.append((layer.n_in, layer.n_out, w_off, b_off))
        w_off += layer.n_in * layer.n_out
        b_off += layer.n_out
    weights = np.concatenate([layer.weights.astype(np.int64).ravel() for layer in b.layers])
    biases = np.concatenate([layer.bias.astype(np.int64) for layer in b.layers])
    mults = np.concatenate([layer.mult.astype(np.int64) if layer.mult is not None
                            else np.zeros(layer.n_out, np.int64) for layer in b.layers])
    shifts = np.array([layer.shift if layer.shift != 255 else 0 for layer in b.layers], np.int64)
    relus = np.array([layer.relu for layer in b.layers], np.bool_)
    return weights, biases, mults, shifts, relus, np.array(sizes, np.int64)


def _q_dense_raw(b: DenseBody, codes: np.ndarray) -> np.ndarray:
    n_out = 1 if b.mode == SUMSQ else b.layers[-1].n_out
    out = np.zeros((codes.shape[0], n_out), np.int64)
    q_dense(codes, b.in_off.astype(np.int64), b.in_mul.astype(np.int64), b.in_shift.astype(np.int64),
            *_dense_arrays(b), b.mode == SUMSQ, out)
    return out


def _f_dense_raw(b: DenseBody, values: np.ndarray) -> np.ndarray:
    a = (values - b.f_mean) * b.f_inv_std
    for k, layer in enumerate(b.layers):
        a = a @ layer.f_weights.T + layer.f_bias
        if layer.relu:
            a = np.maximum(a, 0)
    if b.mode == SUMSQ:
        return (a * a).sum(axis=1, keepdims=True)
    return a


def _dense_out(model: Model, out: np.ndarray, quantized: bool) -> Scores:
    b = model.body
    n = out.shape[0]
    if b.mode == SUMSQ:
        s = b.out_scale[0] if quantized else 1.0
        distance = np.sqrt(out[:, 0].astype(np.float64)) * s
        limit = b.threshold if quantized else b.f_threshold
        return Scores((out[:, 0] > limit).astype(np.int64), None, distance, out)
    raw = out * b.out_scale if quantized else out
    if b.mode == LINEAR_VALUE:
        return Scores(np.full(n, -1, np.int64), None, raw[:, 0] + (b.out_offset if quantized else 0.0), out)
    if b.mode == SIGN:
        return _classes_from_raw(out, raw)
    assert b.mode == ARGMAX
    return _classes_from_raw(out, raw)

