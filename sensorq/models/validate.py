"""Every rule a model must follow, checked on a Model (after ``load_model`` has
parsed bytes into one, and before ``encode_model`` writes one).

The rules are what make the scorers safe without further checks: indices in
range, child references pointing forward (so trees are acyclic and a walk
ends within the tree's node count), layer sizes that chain, and constants small
enough that the integer arithmetic of docs/models.md cannot overflow int64.
The device's loader (issue 14) checks the same list.
"""
from __future__ import annotations

import math

import numpy as np

from .model import (ANOMALY, ARGMAX, BAND, CLASSES, DenseBody, LINEAR_VALUE, MAX_CLASSES,
                    MAX_FREQS, MAX_LAYERS, MAX_WIDTH, MEAN_MODE, Model, ModelError, NO_REQUANT,
                    OP_NAMES, Pipeline, RATIO, SIGN, SUM, SUMSQ, TreeBody, VALUE, VOTE)


def _need(cond, message: str) -> None:
    if not cond:
        raise ModelError(message)


def check_model(model: Model) -> None:
    check_pipeline(model.pipeline)
    _check_outputs(model)
    n_feat = len(model.pipeline.features)
    if isinstance(model.body, TreeBody):
        _check_trees(model.body, model, n_feat)
    else:
        _check_dense(model.body, model, n_feat)


def check_pipeline(p: Pipeline) -> None:
    _need(p.window_ns > 0 and p.hop_ns > 0, "window and hop must be positive")
    _need(p.window_ns < 2**62 and p.hop_ns < 2**62, "window or hop is too long")
    _need(0 <= p.rate_mhz < 2**32, "rate out of range")
    for f in p.features:
        _need(f.op in OP_NAMES, f"unknown feature operation {f.op}")
        _need(0 <= f.signal < len(p.signals), f"feature {OP_NAMES[f.op]} reads signal {f.signal}, "
                                              f"the model has {len(p.signals)}")
        spectral = f.op in (BAND, RATIO)
        _need(len(f.steps_a) <= MAX_FREQS and len(f.steps_b) <= MAX_FREQS, "too many frequencies")
        _need(bool(f.steps_a) == spectral and bool(f.steps_b) == (f.op == RATIO),
              f"feature {OP_NAMES[f.op]} has the wrong number of frequencies")
        _need(all(1 <= s < 2**31 for s in f.steps_a + f.steps_b),
              "a frequency is not between 0 and half the sample rate")
        _need(not spectral or p.rate_mhz > 0, "a spectral feature needs the stream's sample rate")


def _check_outputs(model: Model) -> None:
    o = model.outputs
    _need(len(o.classes) <= MAX_CLASSES, "too many classes")
    if o.kind == CLASSES:
        _need(len(o.classes) >= 2, "a classifier needs at least 2 classes")
    else:
        _need(not o.classes, "only a classifier has classes")
    _need(all(0 < len(c.encode("utf-8")) <= 255 for c in o.classes), "a class name is empty or too long")


def _check_trees(b: TreeBody, model: Model, n_feat: int) -> None:
    K, kind = len(model.outputs.classes), model.outputs.kind
    if b.mode == VOTE:
        _need(kind == CLASSES and b.n_out == K, "a voting ensemble has one leaf value per class")
    elif b.mode == SUM:
        _need((kind == CLASSES and (b.n_out == K or (K == 2 and b.n_out == 1)))
              or (kind == VALUE and b.n_out == 1), "boosted trees do not match their outputs")
    else:
        _need(b.mode == MEAN_MODE and kind == VALUE and b.n_out == 1, "a regression forest has one value")
    n_trees = b.roots.shape[0]
    _need(n_trees >= 1 and b.tree_out.shape == (n_trees,) and b.tree_start.shape == (n_trees + 1,),
          "tree tables have the wrong shape")
    _need(np.all(b.tree_out < b.n_out) and (b.mode == SUM or not b.tree_out.any()),
          "a tree adds to an output that does not exist")
    n_nodes = int(b.tree_start[-1])
    for arr in (b.feature, b.threshold, b.left, b.right):
        _need(arr.shape == (n_nodes,), "node tables have the wrong length")
    n_leaves = b.leaves.shape[0]
    _need(n_leaves >= 1 and b.leaves.ndim == 2 and b.leaves.shape[1] == b.n_values,
          "the leaf table has the wrong shape")
    _need(b.mode != VOTE or (b.leaves.min() >= 0 and b.leaves.max() <= 255),
          "a voting leaf value is outside 0..255")
    _need(b.init.shape == (b.n_out,), "init values have the wrong length")
    _need(math.isfinite(b.leaf_scale) and b.leaf_scale > 0, "leaf scale must be positive")
    _need(n_nodes == 0 or int(b.feature.max()) < n_feat, "a node reads a feature that does not exist")
    for t in range(n_trees):
        _check_tree_refs(b, t, n_leaves)
    if b.f_threshold is not None:
        _need(b.f_threshold.shape == (n_nodes,) and b.f_leaves.shape == b.leaves.shape
              and b.f_init.shape == (b.n_out,), "float tree tables have the wrong shape")
        _need(np.isfinite(b.f_threshold).all() and np.isfinite(b.f_leaves).all()
              and np.isfinite(b.f_init).all(), "a float tree parameter is not finite")


def _check_tree_refs(b: TreeBody, t: int, n_leaves: int) -> None:
    lo, hi = int(b.tree_start[t]), int(b.tree_start[t + 1])
    _need(0 <= lo <= hi, "tree node ranges are not in order")
    n = hi - lo
    root = int(b.roots[t])
    _need((n == 0 and root < 0 and ~root < n_leaves) or (n > 0 and root == 0),
          f"tree {t}: the root must be node 0 (or a leaf if the tree has no nodes)")
    if n == 0:
        return
    idx = np.arange(n)
    for refs in (b.left[lo:hi].astype(np.int64), b.right[lo:hi].astype(np.int64)):
        internal = refs >= 0
        # Children point forward: the tree is acyclic and a walk takes < n steps.
        _need(np.all(refs[internal] > idx[internal]) and np.all(refs[internal] < n),
              f"tree {t}: a child reference points backwards or past the tree")
        _need(np.all(~refs[~internal] < n_leaves), f"tree {t}: a leaf reference is out of range")


def _check_dense(b: DenseBody, model: Model, n_feat: int) -> None:
    layers = b.layers
    _need(1 <= len(layers) <= MAX_LAYERS, "wrong number of layers")
    n_last, K, kind = layers[-1].n_out, len(model.outputs.classes), model.outputs.kind
    _need({ARGMAX: kind == CLASSES and n_last == K, SIGN: kind == CLASSES and K == 2 and n_last == 1,
           LINEAR_VALUE: kind == VALUE and n_last == 1, SUMSQ: kind == ANOMALY}.get(b.mode, False),
          "the dense output mode does not match the outputs")
    for arr in (b.in_off, b.in_mul, b.in_shift):
        _need(arr.shape == (n_feat,), "input scaling has the wrong length")
    _need(np.all(np.abs(b.in_mul.astype(np.int64)) < 2**30) and np.all(b.in_shift <= 62),
          "an input multiplier or shift is out of range")
    n_in = n_feat
    for k, layer in enumerate(layers):
        last = k == len(layers) - 1
        _need(layer.weights.ndim == 2 and layer.n_in == n_in and 1 <= layer.n_out <= MAX_WIDTH,
              f"layer {k} takes {layer.n_in} inputs, the layer before gives {n_in}")
        _need(layer.bias.shape == (layer.n_out,) and np.all(np.abs(layer.bias.astype(np.int64)) <= 2**30),
              f"layer {k}: a bias is out of range")
        requant = layer.shift != NO_REQUANT
        _need(requant == (not last or b.mode == SUMSQ), f"layer {k}: requantization is misplaced")
        _need(not requant or (layer.shift <= 62 and layer.mult is not None
                              and layer.mult.shape == (layer.n_out,)),
              f"layer {k}: requantization constants are missing or out of range")
        _need(not (last and layer.relu), "the last layer has no activation")
        if layer.f_weights is not None:
            _need(layer.f_weights.shape == layer.weights.shape and layer.f_bias.shape == (layer.n_out,)
                  and np.isfinite(layer.f_weights).all() and np.isfinite(layer.f_bias).all(),
                  f"layer {k}: float weights have the wrong shape or are not finite")
        n_in = layer.n_out
    _need(b.out_scale.shape == (n_last,) and np.isfinite(b.out_scale).all(), "output scales are not valid")
    _need(b.threshold >= 0 and math.isfinite(b.out_offset), "output constants are not valid")
    if b.f_mean is not None:
        _need(b.f_mean.shape == (n_feat,) and b.f_inv_std.shape == (n_feat,)
              and np.isfinite(b.f_mean).all() and np.isfinite(b.f_inv_std).all()
              and math.isfinite(b.f_threshold), "float input scaling is not valid")
        _need(all(layer.f_weights is not None for layer in layers), "float weights are missing")
