"""Scoring windows with a model: sensorq's score_windows against the pipeline a
user would write by hand (numpy sliding windows for the features, then
scikit-learn's predict), on the same data in the same run.

One hour of a synthetic 3-axis 1 kHz IMU (int16, mg) whose activity changes
every 20-60 s; 2 s windows every 500 ms; a 10-tree forest of depth <= 8 on 20
features (mean, std, min, max, rms of x, y, z and mag(x, y, z)), trained on
the first 20 minutes.

    python3 benchmarks/bench_models.py [--minutes 60]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import sensorq
from sensorq.models.features import make_pipeline
from sensorq.models.score import score_windows
from sensorq.models.sklearn_import import from_sklearn

SECOND = 1_000_000_000
WINDOW, HOP = 2 * SECOND, SECOND // 2
SIGNALS = ("x", "y", "z", "mag(x, y, z)")
OPS = ("mean", "std", "min", "max", "rms")


def synthetic(minutes: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    n = minutes * 60 * 1000
    t = 1_790_000_000 * SECOND + np.arange(n, dtype=np.int64) * 1_000_000
    changes = np.cumsum(rng.integers(20_000, 60_000, n // 20_000 + 2))
    activity = np.searchsorted(changes, np.arange(n), side="right") % 4
    amp = np.array([20, 150, 400, 900])[activity]
    freq = np.array([0.3, 1.5, 2.5, 3.2])[activity]
    phase = 2 * np.pi * freq * np.arange(n) / 1000
    x = amp * np.sin(phase) + rng.normal(0, 30, n)
    y = 0.5 * amp * np.cos(phase) + rng.normal(0, 30, n)
    z = 1000 + 0.8 * amp * np.sin(2 * phase) + rng.normal(0, 30, n)
    cols = {k: np.clip(v, -32768, 32767).astype(np.int16) for k, v in (("x", x), ("y", y), ("z", z))}
    return t, cols, activity


def hand_features(t, cols, starts) -> np.ndarray:
    """What a user writes: sliding windows over the raw arrays (regular 1 kHz
    sampling assumed: a window is 2000 consecutive samples)."""
    from numpy.lib.stride_tricks import sliding_window_view
    first = np.searchsorted(t, starts)
    size, step = WINDOW // 1_000_000, HOP // 1_000_000
    x, y, z = (cols[k].astype(np.float64) for k in "xyz")
    mag = np.sqrt(x * x + y * y + z * z)
    out = []
    for sig in (x, y, z, mag):
        win = sliding_window_view(sig, size)[first[0]::step][: len(starts)]
        out += [win.mean(axis=1), win.std(axis=1), win.min(axis=1), win.max(axis=1),
                np.sqrt((win * win).mean(axis=1))]
    return np.column_stack(out)


def loop_features(t, cols, starts) -> np.ndarray:
    """The other usual way: a Python loop over windows, numpy inside."""
    x, y, z = (cols[k].astype(np.float64) for k in "xyz")
    mag = np.sqrt(x * x + y * y + z * z)
    lo = np.searchsorted(t, starts)
    hi = np.searchsorted(t, starts + WINDOW)
    rows = []
    for a, b in zip(lo, hi):
        row = []
        for sig in (x, y, z, mag):
            w = sig[a:b]
            row += [w.mean(), w.std(), w.min(), w.max(), np.sqrt((w * w).mean())]
        rows.append(row)
    return np.array(rows)


def best_of(fn, repeat: int = 3):
    """(fastest time, result) of a few runs: the machine is shared."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=int, default=60)
    args = ap.parse_args()
    from sklearn.ensemble import RandomForestClassifier

    t, cols, activity = synthetic(args.minutes)
    with tempfile.TemporaryDirectory() as tmp, sensorq.open(os.path.join(tmp, "c"), create=True) as cache:
        st = cache.create_stream("imu", [sensorq.Channel(c, "int16", "mg") for c in "xyz"], rate_hz=1000)
        cache.append("imu", t, cols)
        cache.flush()
        p = make_pipeline(st, [f"{op}({s})" for s in SIGNALS for op in OPS], window="2s", hop="500ms")
        starts = np.arange(-(-int(t[0]) // HOP) * HOP, int(t[-1]) + 1 - WINDOW + 1, HOP)
        labels = activity[np.searchsorted(t, starts + WINDOW // 2)]
        train = starts < t[0] + 20 * 60 * SECOND
        X = hand_features(t, cols, starts)
        forest = RandomForestClassifier(10, max_depth=8, random_state=0).fit(X[train], labels[train])
        model = from_sklearn(forest, p)
        score_windows(cache, model, int(t[0]), int(t[0]) + 60 * SECOND)    # load the kernels

        rows = []

        def by_hand():
            tr, tc = cache.read("imu")
            return forest.predict(hand_features(tr, tc, starts))
        hand, expected = best_of(by_hand)
        rows.append(("numpy sliding windows + sklearn predict", hand, len(starts), None))

        def by_loop():
            tr, tc = cache.read("imu")
            return forest.predict(loop_features(tr, tc, starts))
        took, looped = best_of(by_loop, 1)
        rows.append(("python loop over windows + sklearn predict", took, len(starts),
                     float(np.mean(looped == expected))))
        for quantized in (False, True):
            took, got = best_of(lambda: score_windows(cache, model, None, None, quantized=quantized))
            assert np.array_equal(got.start, starts)
            same = float(np.mean(forest.classes_[got.cls] == expected))
            rows.append((f"sensorq score_windows ({'quantized' if quantized else 'float'})", took,
                         len(got.start), same))

    print(f"{args.minutes} min of 3 x int16 at 1 kHz ({len(t):,} samples), windows 2 s / 500 ms, "
          f"forest of 10 trees (depth <= 8) on {len(p.features)} features; one core, best of 3 runs")
    print(f"{'pipeline':44s} {'seconds':>8s} {'windows/s':>10s} {'vs first':>8s} {'same class':>10s}")
    for name, secs, n, same in rows:
        print(f"{name:44s} {secs:8.3f} {n / secs:10,.0f} {hand / secs:7.1f}x "
              f"{'-' if same is None else f'{100 * same:.2f}%':>10s}")
    print(f"training accuracy of the forest on its own features: {100 * forest.score(X[train], labels[train]):.1f}%,"
          f" on the later windows: {100 * forest.score(X[~train], labels[~train]):.1f}%")


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    main()
