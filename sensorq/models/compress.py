"""Making a model smaller and measuring what it costs a device.

* ``drop_unused_features``: features no part of the model reads are removed
  from the pipeline (with the signals and input channels only they needed),
  so they are never computed or stored.
* ``prune_mlp``: magnitude pruning of an MLP's weights to a target sparsity,
  in steps, retraining the remaining weights after each step (the pruned ones
  are held at zero); the encoder then stores sparse layers as a bitmap plus the
  non-zero int8 weights.
* Trees are pruned by their trainer (depth limits, cost-complexity pruning:
  ``ccp_alpha``); the encoder deduplicates leaves and picks the narrowest
  threshold, child-reference and leaf widths (format.tree_widths).
* ``device_bytes``, ``ram_bytes``, ``ops_per_window``: the model's flash
  (the .sqm bytes without the float section), the working memory a device
  needs to score a window, and the integer operations per window (features
  and model), as docs/models.md defines them.
"""
from __future__ import annotations

import copy

import numpy as np

from .format import encode_model
from .model import BAND, CROSS, RATIO, SUMSQ, DenseBody, Model, Pipeline, TreeBody


def used_features(model: Model) -> list[int]:
    b = model.body
    if isinstance(b, TreeBody):
        return sorted(set(b.feature.astype(int).tolist()))
    first = b.layers[0]
    return [i for i in range(first.n_in) if first.weights[:, i].any()
            or (first.f_weights is not None and first.f_weights[:, i].any())]


def drop_unused_features(model: Model) -> Model:
    """The same model reading only the features it uses."""
    keep = used_features(model) or [0]
    m = copy.deepcopy(model)
    m.pipeline = _sub_pipeline(model.pipeline, keep)
    remap = np.full(len(model.pipeline.features), -1, np.int64)
    remap[keep] = np.arange(len(keep))
    b = m.body
    if isinstance(b, TreeBody):
        b.feature = remap[b.feature.astype(np.int64)].astype(np.uint8)
        return m
    b.in_off, b.in_mul, b.in_shift = b.in_off[keep], b.in_mul[keep], b.in_shift[keep]
    if b.f_mean is not None:
        b.f_mean, b.f_inv_std = b.f_mean[keep], b.f_inv_std[keep]
    first = b.layers[0]
    first.weights = np.ascontiguousarray(first.weights[:, keep])
    if first.f_weights is not None:
        first.f_weights = np.ascontiguousarray(first.f_weights[:, keep])
    return m


def _sub_pipeline(p: Pipeline, keep: list[int]) -> Pipeline:
    feats = [p.features[i] for i in keep]
    sig_keep = sorted({f.signal for f in feats})
    in_keep = sorted({i for s in sig_keep for i in p.signals[s]})
    in_map = {old: new for new, old in enumerate(in_keep)}
    sig_map = {old: new for new, old in enumerate(sig_keep)}
    signals = [tuple(in_map[i] for i in p.signals[s]) for s in sig_keep]
    feats = [type(f)(f.op, sig_map[f.signal], f.steps_a, f.steps_b) for f in feats]
    return Pipeline(p.stream, [p.inputs[i] for i in in_keep], signals, feats, p.window_ns, p.hop_ns,
                    p.rate_mhz, p.min_samples)


def prune_mlp(estimator, X, y, sparsity: float, steps: int = 4, epochs: int = 60):
    """Zero the smallest |weights| of every layer of a fitted MLP (or a
    Pipeline ending in one), reaching ``sparsity`` in ``steps`` stages with
    ``epochs`` of retraining after each; returns the estimator, pruned."""
    mlp = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    Xt = estimator[:-1].transform(X) if hasattr(estimator, "steps") else X
    classes = np.unique(y)
    for stage in range(1, steps + 1):
        target = sparsity * stage / steps
        masks = [np.abs(W) > np.quantile(np.abs(W), target) for W in mlp.coefs_]
        for _ in range(epochs):
            for W, mask in zip(mlp.coefs_, masks):
                W[~mask] = 0.0
            mlp.partial_fit(Xt, y, classes=classes) if hasattr(mlp, "classes_") else mlp.partial_fit(Xt, y)
        for W, mask in zip(mlp.coefs_, masks):
            W[~mask] = 0.0
    return estimator


def sparsity(model: Model) -> float:
    if not isinstance(model.body, DenseBody):
        return 0.0
    w = np.concatenate([layer.weights.ravel() for layer in model.body.layers])
    return float(np.mean(w == 0))


def device_bytes(model: Model) -> int:
    return len(encode_model(model, with_float=False))


def float32_bytes(model: Model) -> int:
    """The model with float32 parameters in place of its integer ones: the
    device bytes, plus 3 bytes per 1-byte weight or leaf value, 2 per int16,
    and threshold / bias words as float32 (same size as int32)."""
    b = model.body
    base = device_bytes(model)
    if isinstance(b, TreeBody):
        from .format import tree_widths
        tw, _, lw = tree_widths(b)
        grow_t = (4 - {0: 1, 1: 2, 2: 4}[tw]) * b.threshold.size
        grow_l = (4 - {0: 1, 1: 2, 2: 4}[lw]) * b.leaves.size
        return base + grow_t + grow_l
    dense_weights = sum(layer.weights.size for layer in b.layers)
    stored = sum(_stored_weight_bytes(layer.weights) for layer in b.layers)
    return base - stored + 4 * dense_weights


def _stored_weight_bytes(w: np.ndarray) -> int:
    bitmap = w.shape[0] * ((w.shape[1] + 7) // 8) + int(np.count_nonzero(w))
    return min(bitmap, w.size)


def nominal_samples(p: Pipeline) -> int:
    if not p.rate_mhz:
        return p.min_samples * 2
    return max(p.min_samples, int(round(p.window_ns / 1e9 * p.rate_mhz / 1000)))


def ops_per_window(model: Model) -> int:
    """Integer operations to score one window of nominal length: feature
    passes (8 per sample and signal for the first pass, 4 for a crossing pass,
    6 per sample and frequency of a spectral feature) plus the model (3 per
    tree level walked, at most the deepest path; 1 per multiply-accumulate)."""
    p = model.pipeline
    n = nominal_samples(p)
    ops = 8 * n * len(p.signals) + sum(len(p.signals[s]) * 3 * n for s in range(len(p.signals))
                                       if len(p.signals[s]) > 1)
    for f in p.features:
        if f.op == CROSS:
            ops += 4 * n
        elif f.op in (BAND, RATIO):
            ops += 6 * n * (len(f.steps_a) + len(f.steps_b))
    b = model.body
    if isinstance(b, TreeBody):
        ops += 3 * sum(_depth(b, t) for t in range(b.n_trees)) + b.n_trees * b.n_values
    else:
        ops += sum(int(np.count_nonzero(layer.weights)) + 3 * layer.n_out for layer in b.layers)
        ops += 4 * len(p.features)
    return int(ops)


def _depth(b: TreeBody, t: int) -> int:
    lo, hi = int(b.tree_start[t]), int(b.tree_start[t + 1])
    depth = np.zeros(max(hi - lo, 1), np.int64)
    best = 0
    for i in range(hi - lo):            # children come after parents: one forward pass
        for ref in (int(b.left[lo + i]), int(b.right[lo + i])):
            if ref >= 0:
                depth[ref] = depth[i] + 1
            else:
                best = max(best, int(depth[i]) + 1)
    return best


def ram_bytes(model: Model) -> int:
    """Working memory to score a window: per signal the first pass's state
    (n, sum, sum of squares, |diff| sum as int64; min, max, previous as int32:
    44 B), 4 B per feature code, 24 B per spectral feature being accumulated,
    and the model's state (4 B per tree output accumulator; two int8
    activation buffers of the widest layer and an int64 accumulator)."""
    p = model.pipeline
    ram = 44 * len(p.signals) + 4 * len(p.features)
    ram += 24 * sum(1 for f in p.features if f.op in (BAND, RATIO))
    b = model.body
    if isinstance(b, TreeBody):
        ram += 4 * b.n_out
    else:
        width = max([len(p.features)] + [layer.n_out for layer in b.layers])
        ram += 2 * width + 8 + (8 if b.mode == SUMSQ else 0)
    return int(ram)
