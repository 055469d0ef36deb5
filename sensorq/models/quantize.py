"""Quantization of float models into the integer parameters of docs/models.md.

Trees: a threshold t on feature f becomes floor(t / scale_f) on the feature's
integer code (the scales are powers of two, so the division is exact), hence
``code <= T`` holds exactly when ``code * scale_f <= t``: the quantized tree
decides as the float tree on the grid's values.  Leaves: class probabilities
as u8 (p * 255 rounded), other leaf values as i16 with one scale per model.

Dense layers: inputs standardised to int8 with a per-feature offset, Q
multiplier and shift; weights int8 with one scale per output row (one for
the whole last layer of a multi-class model, whose integer outputs are
compared with each other); biases
int32 in the accumulator's units; between layers a fixed-point multiplier and
shift per row (requantization), activations int8, scales calibrated on
training windows.
"""
from __future__ import annotations

import math

import numpy as np

from .model import ARGMAX, INT32_MAX, NO_REQUANT, SUMSQ, DenseBody, Layer, ModelError

IN_STEP = 1 / 16          # an int8 input unit is 1/16 of a standard deviation (+-7.9 sigma)
R_TYPICAL = 2**14         # SUMSQ: the largest calibration term maps to 2^14 (saturation at 2^20)


def tree_threshold(t: float, scale: float) -> int:
    return int(min(max(math.floor(t / scale), -INT32_MAX), INT32_MAX))


def vote_leaves(p: np.ndarray) -> np.ndarray:
    return np.clip(np.round(p * 255), 0, 255).astype(np.int32)


def value_leaf_scale(values: np.ndarray, init: np.ndarray) -> float:
    """One scale for leaves (i16) and init values (i32)."""
    biggest = float(np.abs(values).max(initial=0.0))
    return biggest / 32767 if biggest > 0 else 1.0


def _fixed_point(ratio: np.ndarray, top: int) -> tuple[np.ndarray, int]:
    """Multipliers m and one shift s with m / 2^s ~ ratio, the largest m just below 2^top."""
    biggest = float(np.abs(ratio).max(initial=0.0))
    if biggest == 0:
        return np.zeros(ratio.shape, np.int64), 0
    s = int(min(max(top - 1 - math.floor(math.log2(biggest)), 0), 62))
    m = np.round(ratio * 2.0**s)
    return np.clip(m, -(2**top - 1), 2**top - 1).astype(np.int64), s


def input_scaling(mu: np.ndarray, sigma: np.ndarray, fscale: np.ndarray):
    """(off, mul, shift) per feature so that q = sat8(((code - off) * mul) >> shift)
    ~ (x - mu) / (sigma * IN_STEP), and (a, c): the x that q stands for, a + c q."""
    n = mu.shape[0]
    off = np.clip(np.round(mu / fscale), -INT32_MAX, INT32_MAX).astype(np.int64)
    mul, shift = np.zeros(n, np.int64), np.zeros(n, np.int64)
    a, c = off * fscale, np.zeros(n)
    for i in range(n):
        if not (sigma[i] > 0):
            continue              # a constant feature: q is always 0 and x always mu
        r = fscale[i] / (sigma[i] * IN_STEP)
        m, s = _fixed_point(np.array([r]), 21)
        mul[i], shift[i] = min(int(m[0]), 2**30 - 1), s
        c[i] = fscale[i] * 2.0**s / mul[i] if mul[i] else 0.0
    return off, mul, shift, a, c


def quantize_dense(mode: int, float_layers: list, relus: list, f_mean, f_inv_std, X_calib,
                   fscale, f_threshold: float = 0.0) -> DenseBody:
    """float_layers: [(W (n_out, n_in), b)] acting on z = (x - f_mean) * f_inv_std."""
    X = np.asarray(X_calib, np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ModelError("quantizing a linear model, MLP or anomaly scorer needs calibration "
                         "windows (at least 2 rows of features)")
    mu, sigma = X.mean(axis=0), X.std(axis=0)
    off, mul, shift, a, c = input_scaling(mu, sigma, fscale)
    W0, b0 = float_layers[0]
    # The first layer seen from the int8 inputs: x = a + c q.
    W = W0 * (c * f_inv_std)[None, :]
    b = b0 + W0 @ ((a - f_mean) * f_inv_std)
    acts = (X - f_mean) * f_inv_std                         # real activations, layer by layer
    layers, n = [], len(float_layers)
    for k, (Wf, bf) in enumerate(float_layers):
        sw = np.abs(W).max(axis=1) / 127
        if k == n - 1 and mode == ARGMAX:
            # one scale for the whole last layer, so that the device compares
            # the integer outputs directly (argmax)
            sw[:] = sw.max()
        sw[sw == 0] = 1.0
        wq = np.round(W / sw[:, None]).astype(np.int8)
        bq = np.clip(np.round(b / sw), -2**30, 2**30).astype(np.int64)
        acts = acts @ Wf.T + bf
        if relus[k]:
            acts = np.maximum(acts, 0)
        layer = Layer(wq, bq.astype(np.int32), bool(relus[k]), NO_REQUANT, None, Wf.copy(), bf.copy())
        last = k == n - 1
        if not last:
            # one activation scale per neuron (its calibration maximum is 127);
            # the next layer's columns absorb them
            # (a neuron never active in calibration takes the layer's largest
            # scale, so that one shift still suits every row)
            peak = np.abs(acts).max(axis=0)
            s_h = np.maximum(peak, max(float(peak.max(initial=0.0)), 1e-12) / 2**10) / 127
            layer.mult, layer.shift = _requant(sw / s_h)
            W, b = float_layers[k + 1][0] * s_h[None, :], float_layers[k + 1][1].copy()
            out_scale = None
        elif mode == SUMSQ:
            s_r = max(float(np.abs(acts).max(initial=0.0)), 1e-12) / R_TYPICAL
            layer.mult, layer.shift = _requant(sw / s_r)
            out_scale = np.array([s_r] * layer.n_out)
        else:
            out_scale = sw
        layers.append(layer)
    threshold = int(min(math.floor(f_threshold / out_scale[0] ** 2), 2**62)) if mode == SUMSQ else 0
    return DenseBody(mode, off.astype(np.int32), mul.astype(np.int32), shift.astype(np.uint8), layers,
                     np.asarray(out_scale, np.float64), threshold, np.asarray(f_mean, np.float64),
                     np.asarray(f_inv_std, np.float64), float(f_threshold))


def _requant(ratio: np.ndarray):
    m, s = _fixed_point(ratio, 31)
    return m.astype(np.int32), s

