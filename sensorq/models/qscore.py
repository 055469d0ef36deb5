"""The quantized scorers: integer arithmetic only, one window at a time, in the
order docs/models.md ("Quantized arithmetic") states, so that each function is
a C function of the device port line for line (issue 14).  The loops over
windows around them are the host's; nothing in a window's score depends on
another window.

Shifts are arithmetic (floor); ``>> s`` after adding ``1 << (s - 1)`` rounds
half up.  Accumulators are int64 here; the limits checked by validate.py keep
the dense accumulators inside int32 and every product inside int64.
"""
from __future__ import annotations

import numpy as np
from numba import njit

VOTE = 0


@njit(cache=True)
def tree_leaf(codes, base, root, feature, threshold, left, right):
    """Walk one tree: go left iff code <= threshold; returns the leaf index.
    Children point forward (validated), so this ends within the tree's nodes."""
    ref = root
    while ref >= 0:
        i = base + ref
        if codes[feature[i]] <= threshold[i]:
            ref = left[i]
        else:
            ref = right[i]
    return ~ref


@njit(cache=True)
def q_trees(codes, mode, init, tree_out, tree_start, roots, feature, threshold, left, right,
            leaves, acc):
    """acc[w, o] = init[o] + the leaf values the trees give window w."""
    n_out = init.shape[0]
    for w in range(codes.shape[0]):
        x = codes[w]
        for o in range(n_out):
            acc[w, o] = init[o]
        for t in range(roots.shape[0]):
            leaf = tree_leaf(x, tree_start[t], roots[t], feature, threshold, left, right)
            if mode == VOTE:
                for o in range(n_out):
                    acc[w, o] += leaves[leaf, o]
            else:
                acc[w, tree_out[t]] += leaves[leaf, 0]


@njit(cache=True)
def f_trees(values, cast32, init, tree_out, mode, tree_start, roots, feature, threshold, left,
            right, leaves, acc):
    """The float reference of q_trees (x <= threshold in float64, after a
    float32 cast of x when the trees came from scikit-learn's float32 trees)."""
    n_out = init.shape[0]
    x = values.copy()
    if cast32:
        x = x.astype(np.float32).astype(np.float64)
    for w in range(x.shape[0]):
        for o in range(n_out):
            acc[w, o] = init[o]
        for t in range(roots.shape[0]):
            leaf = tree_leaf(x[w], tree_start[t], roots[t], feature, threshold, left, right)
            if mode == VOTE:
                for o in range(n_out):
                    acc[w, o] += leaves[leaf, o]
            else:
                acc[w, tree_out[t]] += leaves[leaf, 0]


@njit(cache=True, inline="always")
def round_shift(v, s):
    """(v + 2^(s-1)) >> s: v / 2^s rounded half up; v itself when s == 0."""
    if s == 0:
        return v
    return (v + (np.int64(1) << (s - 1))) >> s


@njit(cache=True, inline="always")
def sat(v, lo, hi):
    return lo if v < lo else (hi if v > hi else v)


@njit(cache=True)
def q_inputs(codes, off, mul, shift, q):
    """q[i] = sat8(round_shift((code_i - off_i) * mul_i, shift_i))."""
    for i in range(codes.shape[0]):
        d = np.int64(codes[i]) - np.int64(off[i])
        q[i] = sat(round_shift(d * np.int64(mul[i]), np.int64(shift[i])), -127, 127)


@njit(cache=True)
def q_layer(a, weights, bias, out):
    """out[j] = bias[j] + sum_i weights[j, i] * a[i]  (fits int32: validated)."""
    for j in range(weights.shape[0]):
        acc = np.int64(bias[j])
        for i in range(weights.shape[1]):
            acc += np.int64(weights[j, i]) * a[i]
        out[j] = acc


@njit(cache=True)
def q_requant(acc, mult, shift, relu, lo, hi, out):
    """out[j] = sat(round_shift(acc[j] * mult[j], shift)), ReLU first if asked."""
    for j in range(acc.shape[0]):
        v = round_shift(acc[j] * np.int64(mult[j]), np.int64(shift))
        if relu and v < 0:
            v = np.int64(0)
        out[j] = sat(v, lo, hi)


R_LIMIT = 1 << 20          # SUMSQ terms are saturated to +-2^20 before squaring


@njit(cache=True)
def q_dense(codes, off, mul, shift, weights, biases, mults, shifts, relus, sizes, sumsq, out):
    """Run the layers over every window.  weights/biases/mults are the layers'
    arrays concatenated (layer k's rows start at sizes offsets); out[w, :] is
    the final layer's raw int32 outputs, or (sumsq) out[w, 0] = sum of r^2."""
    n_layers = shifts.shape[0]
    width = 1
    for k in range(n_layers):
        width = max(width, sizes[k, 0], sizes[k, 1])
    a = np.zeros(width, np.int64)
    acc = np.zeros(width, np.int64)
    for w in range(codes.shape[0]):
        n_in = codes.shape[1]
        q_inputs(codes[w], off, mul, shift, a)
        for k in range(n_layers):
            n_in, n_out, w0, b0 = sizes[k, 0], sizes[k, 1], sizes[k, 2], sizes[k, 3]
            W = weights[w0:w0 + n_in * n_out].reshape((n_out, n_in))
            q_layer(a[:n_in], W, biases[b0:b0 + n_out], acc[:n_out])
            last = k == n_layers - 1
            if not last:
                q_requant(acc[:n_out], mults[b0:b0 + n_out], shifts[k], relus[k], -127, 127, a)
            elif sumsq:
                q_requant(acc[:n_out], mults[b0:b0 + n_out], shifts[k], False, -R_LIMIT, R_LIMIT, a)
                d2 = np.int64(0)
                for j in range(n_out):
                    d2 += a[j] * a[j]
                out[w, 0] = d2
            else:
                for j in range(n_out):
                    out[w, j] = acc[j]
