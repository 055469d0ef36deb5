"""Shared pieces of the model tests (no tests here): an independent reference
of the window features written from docs/models.md with Python integers and
numpy, and the BasicMotions loader."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import sensorq
from sensorq.models.model import BAND, CROSS, MAD, MAX, MEAN, MIN, PTP, RATIO, RMS, STD

BASIC_MOTIONS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "basic_motions.csv"
COS = [round(32767 * math.cos(2 * math.pi * k / 256)) for k in range(256)]


def rdiv(a: int, b: int) -> int:
    q = (abs(a) + b // 2) // b
    return q if a >= 0 else -q


def signal_ints(col: np.ndarray, exponent: int, is_float: bool) -> list[int]:
    if is_float:
        vals = [int(np.rint(v * 2.0**exponent)) for v in col]
    else:
        vals = [int(v) >> -exponent for v in col]
    return [min(max(v, -32768), 32767) for v in vals]


def ref_int_feature(op: int, u: list[int], steps_a=(), steps_b=()) -> int:
    """The integer code of one feature over one window, straight from the docs."""
    n, S = len(u), sum(u)
    M = rdiv(16 * S, n)
    if op == MEAN:
        code = M
    elif op == STD:
        code = math.isqrt(rdiv(sum((16 * v - M) ** 2 for v in u), n))
    elif op == MIN:
        code = min(u)
    elif op == MAX:
        code = max(u)
    elif op == RMS:
        code = math.isqrt(rdiv(256 * sum(v * v for v in u), n))
    elif op == PTP:
        code = max(u) - min(u)
    elif op == MAD:
        code = rdiv(16 * sum(abs(b - a) for a, b in zip(u, u[1:])), n - 1)
    elif op == CROSS:
        signs = [16 * v - M >= 0 for v in u]
        code = rdiv(4096 * sum(a != b for a, b in zip(signs, signs[1:])), n - 1)
    elif op == BAND:
        code = math.isqrt(_energy(u, M, steps_a))
    elif op == RATIO:
        eb = _energy(u, M, steps_b)
        code = 2**31 - 1 if eb == 0 else rdiv(256 * _energy(u, M, steps_a), eb)
    else:
        raise AssertionError(op)
    return max(-(2**31 - 1), min(2**31 - 1, code))


def _energy(u, M, steps) -> int:
    n = len(u)
    total = 0
    for step in steps:
        re = im = 0
        for i, v in enumerate(u):
            k = ((i * step) % 2**32) >> 24
            re += (16 * v - M) * COS[k]
            im += (16 * v - M) * COS[(k - 64) % 256]
        total += rdiv(re, n << 15) ** 2 + rdiv(im, n << 15) ** 2
    return total


def ref_float_feature(op: int, x: np.ndarray, freqs_a=(), freqs_b=()) -> float:
    # the mean as the kernel defines it: the sum in sample order over n (so that
    # "x >= mean" in crossings ties the same way)
    n, mean = len(x), math.fsum([]) + sum(float(v) for v in x) / len(x)
    if op == MEAN:
        return mean
    if op == STD:
        return x.std()
    if op == MIN:
        return x.min()
    if op == MAX:
        return x.max()
    if op == RMS:
        return math.sqrt(np.mean(x * x))
    if op == PTP:
        return np.ptp(x)
    if op == MAD:
        return np.abs(np.diff(x)).mean()
    if op == CROSS:
        above = x >= mean
        return np.count_nonzero(above[1:] != above[:-1]) / (n - 1)
    spec = lambda fr: sum(abs(np.sum((x - mean) * np.exp(-2j * np.pi * f * np.arange(n))) / n) ** 2 for f in fr)  # noqa: E731
    if op == BAND:
        return math.sqrt(spec(freqs_a))
    return spec(freqs_a) / spec(freqs_b)


def reference_windows(cache, pipeline, start=None, end=None):
    """(starts, int codes, float values) per window, from cache.read() and the
    definitions above; an independent check of features.compute_windows."""
    stream = cache.streams[pipeline.stream]
    t, cols = cache.read(stream.name, start, end)
    if not len(t):
        return np.zeros(0, np.int64), np.zeros((0, len(pipeline.features)), np.int64), None
    start = int(t[0]) if start is None else start
    end = int(t[-1]) + 1 if end is None else end
    raw = [cols[i.name] for i in pipeline.inputs]
    ok = np.ones(len(t), bool)
    for col, inp in zip(raw, pipeline.inputs):
        if inp.dtype_code in (5, 6):
            ok &= ~np.isnan(col)
    t = t[ok]
    raw = [c[ok] for c in raw]
    ints = [signal_ints(c, i.exponent, i.dtype_code in (5, 6)) for c, i in zip(raw, pipeline.inputs)]
    flts = [c.astype(float) * 2.0**i.exponent for c, i in zip(raw, pipeline.inputs)]
    sig_i = [ints[s[0]] if len(s) == 1 else [math.isqrt(sum(ints[j][k] ** 2 for j in s)) for k in range(len(t))]
             for s in pipeline.signals]
    sig_f = [flts[s[0]] if len(s) == 1 else np.sqrt(sum(flts[j] ** 2 for j in s)) for s in pipeline.signals]
    W, H = pipeline.window_ns, pipeline.hop_ns
    starts, codes, values = [], [], []
    k = -(-start // H)
    while k * H + W <= end:
        s = k * H
        lo, hi = np.searchsorted(t, s), np.searchsorted(t, s + W)
        k += 1
        if hi - lo < pipeline.min_samples:
            continue
        starts.append(s)
        codes.append([ref_int_feature(f.op, sig_i[f.signal][lo:hi], f.steps_a, f.steps_b)
                      for f in pipeline.features])
        values.append([ref_float_feature(f.op, sig_f[f.signal][lo:hi], [x / 2**32 for x in f.steps_a],
                                         [x / 2**32 for x in f.steps_b]) for f in pipeline.features])
    return np.array(starts, np.int64), np.array(codes, np.int64).reshape(-1, len(pipeline.features)), \
        np.array(values, float).reshape(-1, len(pipeline.features))


def load_basic_motions(cache_dir):
    """BasicMotions ingested as `sensorq ingest` does (stream 'motions': six
    float64 channels, categorical activity and split, integer case).
    Returns (cache, activity names in code order)."""
    from sensorq.ingest import ingest_csv
    cache = sensorq.open(cache_dir, create=True)
    ingest_csv(cache, BASIC_MOTIONS, stream="motions")
    cache.flush()
    stream = cache.streams["motions"]
    assert stream.channel("split").categories == ("train", "test")
    return cache, list(stream.channel("activity").categories)
