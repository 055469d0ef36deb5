"""A model in a query against the pipeline a user would write by hand, on the
same data in the same run (issue 10, "Speed").

One hour of a synthetic 3-axis 1 kHz IMU (int16, mg) whose activity changes
every 20-60 s, in a sensorq cache; 2 s windows every 500 ms (7,197 windows);
a 10-tree scikit-learn forest of depth <= 8 on 20 features (mean, std, min,
max, rms of x, y, z and mag(x, y, z)), trained on the first 20 minutes (a
third of a shorter run) of the hand pipeline's float features, stored in
the cache as the model ``motion``.

Timed, interleaved round by round (the best round of each counts; the
machine is shared):

* by hand: ``cache.read`` of the stream, numpy sliding windows
  (``sliding_window_view``) for the 20 features, ``forest.predict``, count
  the class.  Two versions: the idiomatic one (``win.mean``, ``win.std``,
  ``win.min``, ``win.max``, ``sqrt(mean(win**2))``), and a tuned one (the sum
  of squares by ``einsum``, no window-sized temporaries, std from the moments);
* sensorq ``score_windows`` (the quantized path: the device's integers);
* sensorq ``cache.query("count where motion == running")`` (scoring, the
  derived stream's in-memory blocks, the engine).

sensorq's rows run on one core, then on every core numba is given.  numpy and
scikit-learn are held to one thread.  The "[fast]" rows repeat the hand
pipeline, score_windows and the query on the same samples stored in a second
stream with codec="fast" (bit-packing only): the default codec Rice-codes
most of this data's mini-blocks, which decode about 3x slower, and decoding is
most of what the query costs.  The answers are compared: the class
counts of the hand pipeline (scikit-learn on float features) and of sensorq
(integer features, quantized thresholds) may differ by at most the windows
whose class differs, which is measured and printed.

    python3 benchmarks/bench_models.py [--minutes 60] [--rounds 10]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")        # the hand pipeline on one core, like the 1-core rows

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import sensorq  # noqa: E402
from sensorq.models.score import score_windows  # noqa: E402

SECOND = 1_000_000_000
WINDOW, HOP = 2 * SECOND, SECOND // 2
SIGNALS = ("x", "y", "z", "mag(x, y, z)")
OPS = ("mean", "std", "min", "max", "rms")
CLASSES = ("still", "walking", "running", "shaking")
ASKED = "running"
FAST = "[fast] "


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


def _windows(t, sig, starts):
    """The (windows, samples) view of a regularly sampled signal (1 kHz
    assumed, as a user would: a window is 2000 consecutive samples)."""
    from numpy.lib.stride_tricks import sliding_window_view
    first = int(np.searchsorted(t, starts[0]))
    size, step = WINDOW // 1_000_000, HOP // 1_000_000
    return sliding_window_view(sig, size)[first::step][: len(starts)]


def _signals(cols):
    x, y, z = (cols[k].astype(np.float64) for k in "xyz")
    return x, y, z, np.sqrt(x * x + y * y + z * z)


def hand_features(t, cols, starts) -> np.ndarray:
    """What a user writes: numpy's reductions over sliding windows."""
    out = []
    for sig in _signals(cols):
        win = _windows(t, sig, starts)
        out += [win.mean(axis=1), win.std(axis=1), win.min(axis=1), win.max(axis=1),
                np.sqrt((win * win).mean(axis=1))]
    return np.column_stack(out)


def tuned_features(t, cols, starts) -> np.ndarray:
    """The same features by a user who profiled: the sum of squares by
    einsum (no window-sized temporary), std from the first two moments."""
    out = []
    size = WINDOW // 1_000_000
    for sig in _signals(cols):
        win = _windows(t, sig, starts)
        mean = win.mean(axis=1)
        mean_sq = np.einsum("ij,ij->i", win, win) / size
        out += [mean, np.sqrt(np.maximum(mean_sq - mean * mean, 0.0)), win.min(axis=1),
                win.max(axis=1), np.sqrt(mean_sq)]
    return np.column_stack(out)


def loop_features(t, cols, starts) -> np.ndarray:
    """The other usual way: a Python loop over windows, numpy inside."""
    lo = np.searchsorted(t, starts)
    hi = np.searchsorted(t, starts + WINDOW)
    signals = _signals(cols)
    rows = []
    for a, b in zip(lo, hi):
        row = []
        for sig in signals:
            w = sig[a:b]
            row += [w.mean(), w.std(), w.min(), w.max(), np.sqrt((w * w).mean())]
        rows.append(row)
    return np.array(rows)


def timed(fn):
    """(wall seconds, CPU seconds of the whole process, fn())."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    import numba
    from sklearn.ensemble import RandomForestClassifier

    cores = numba.config.NUMBA_NUM_THREADS
    t, cols, activity = synthetic(args.minutes)
    with tempfile.TemporaryDirectory() as tmp, sensorq.open(os.path.join(tmp, "c"), create=True) as cache:
        for name, codec in (("imu", "compact"), ("imu_fast", "fast")):
            cache.create_stream(name, [sensorq.Channel(c, "int16", "mg") for c in "xyz"], rate_hz=1000,
                                codec=codec)
            cache.append(name, t, cols)
        cache.flush()
        features = [f"{op}({s})" for s in SIGNALS for op in OPS]
        starts = np.arange(-(-int(t[0]) // HOP) * HOP, int(t[-1]) + 1 - WINDOW + 1, HOP)
        labels = activity[np.searchsorted(t, starts + WINDOW // 2)]
        # the first 20 minutes, or the first third of a shorter run (the rest is held out)
        train = starts < t[0] + min(20 * 60 * SECOND, (int(t[-1]) - int(t[0])) // 3)
        X = hand_features(t, cols, starts)
        forest = RandomForestClassifier(10, max_depth=8, random_state=0).fit(X[train], labels[train])
        for name, stream in (("motion", "imu"), ("motion_fast", "imu_fast")):
            cache.models.add(name, forest, stream=stream, window="2s", hop="500ms", features=features,
                             class_names=list(CLASSES))
        model = cache.models.get("motion")
        fast_model = cache.models.get("motion_fast")
        code = CLASSES.index(ASKED)
        query = f"count where motion == {ASKED}"

        def by_hand(feats, stream="imu"):
            def run():
                tr, tc = cache.read(stream)
                return forest.predict(feats(tr, tc, starts))
            return run

        def threads(n, fn):
            def run():
                numba.set_num_threads(n)
                return fn()
            return run

        contenders = [("by hand: numpy sliding windows + sklearn predict", 1, by_hand(hand_features)),
                      ("by hand, tuned numpy (einsum moments) + predict", 1, by_hand(tuned_features))]
        for n in sorted({1, cores}):
            where = "1 core" if n == 1 else f"{n} cores"
            contenders += [(f"sensorq score_windows, quantized ({where})", n,
                            threads(n, lambda: score_windows(cache, model))),
                           (f"sensorq query ({where})", n,
                            threads(n, lambda: cache.query(query)))]
        # the same samples stored with codec="fast" (bit-packing, no Rice codes)
        fast = [(f"{FAST}by hand: numpy sliding windows + predict", 1,
                 by_hand(hand_features, "imu_fast")),
                (f"{FAST}sensorq score_windows (1 core)", 1,
                 threads(1, lambda: score_windows(cache, fast_model))),
                (f"{FAST}sensorq query (1 core)", 1,
                 threads(1, lambda: cache.query(f"count where motion_fast == {ASKED}")))]
        contenders += fast
        for name, _, fn in contenders:
            if "sensorq" in name:
                fn()                               # numba: load (or compile) the kernels
        score_windows(cache, model, int(t[0]), int(t[0]) + 60 * SECOND, quantized=False)
        best = {name: [float("inf"), float("inf")] for name, _, _ in contenders}
        answers = {}
        for _ in range(args.rounds):
            for name, _, fn in contenders:
                wall, cpu, answers[name] = timed(fn)
                best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
        numba.set_num_threads(1)
        hand_pred = answers[contenders[0][0]]
        scored = answers[contenders[2][0]]
        assert np.array_equal(scored.start, starts), "sensorq's windows are not the hand pipeline's"
        rows = [(name, n, *best[name]) for name, n, _ in contenders]
        wall, cpu, looped = timed(by_hand(loop_features))
        rows.insert(2, ("by hand: python loop over windows + predict", 1, wall, cpu))
        wall, cpu, floats = timed(lambda: score_windows(cache, model, quantized=False))
        rows.insert(4, ("sensorq score_windows, float path (1 core)", 1, wall, cpu))
        sizes = {name: int(cache.blocks(name).length.sum()) for name in ("imu", "imu_fast")}
        tr, tc = cache.read("imu")
        parts = {"cache.read": lambda: cache.read("imu"),
                 "features": lambda: hand_features(tr, tc, starts),
                 "tuned features": lambda: tuned_features(tr, tc, starts),
                 "predict": lambda: forest.predict(X)}
        parts = {name: min(timed(fn)[1] for _ in range(3)) for name, fn in parts.items()}

        quant = forest.classes_[scored.cls]
        differ = int(np.sum(quant != hand_pred))
        counts = {name: int(answers[name].value) for name, _, _ in contenders if "query" in name}
        hand_counts = np.bincount(hand_pred, minlength=len(CLASSES))
        ours = np.bincount(quant, minlength=len(CLASSES))
        for value in counts.values():
            assert value == ours[code], "the query's count is not score_windows'"
        assert abs(int(ours[code]) - int(hand_counts[code])) <= differ
        assert np.array_equal(answers[fast[0][0]], hand_pred)
        assert np.array_equal(answers[fast[1][0]].raw, scored.raw)

    n_win = len(starts)
    print(f"{args.minutes} min of 3 x int16 at 1 kHz ({len(t):,} samples), windows 2 s / 500 ms "
          f"({n_win:,}), forest of 10 trees (depth <= 8) on {len(features)} features; best of "
          f"{args.rounds} interleaved rounds (loop and float path: one run)")
    print("wall: elapsed seconds; CPU: seconds of CPU the process used (all threads), which a "
          "busy machine inflates less; windows/s/core = windows / CPU seconds")
    print(f"{'pipeline':58s} {'windows':>7s} {'wall s':>7s} {'CPU s':>7s} {'win/s/core':>10s} "
          f"{'x hand':>7s} {'x hand':>7s} {'x tuned':>7s}")
    print(f"{'':58s} {'':>7s} {'':>7s} {'':>7s} {'':>10s} {'(wall)':>7s} {'(CPU)':>7s} {'(CPU)':>7s}")
    tuned_cpu = best[contenders[1][0]][1]
    for name, n, wall, cpu in rows:
        if name.startswith(FAST) and not name.startswith(FAST + "by hand"):
            hand, hand_cpu = rows[-len(fast)][2:]
        elif not name.startswith(FAST):
            hand, hand_cpu = rows[0][2:]
        print(f"{name:58s} {n_win:7,d} {wall:7.4f} {cpu:7.4f} {n_win / cpu:10,.0f} "
              f"{hand / wall:6.1f}x {hand_cpu / cpu:6.1f}x {tuned_cpu / cpu:6.1f}x")
    print(f"({FAST.strip()}: the same samples in a stream with codec='fast', "
          f"{sizes['imu_fast'] / sizes['imu']:.2f} x the bytes of the default codec's; its rows "
          f"compare with the hand pipeline reading that stream)")
    print("the hand pipelines' parts (CPU s, best of 3): " +
          ", ".join(f"{name} {secs:.4f}" for name, secs in parts.items()))
    print(f"answers: query '{query}' = {counts[next(iter(counts))]:,} (sensorq, every run), "
          f"{int(hand_counts[code]):,} by hand; per class sensorq {ours.tolist()}, "
          f"by hand {hand_counts.tolist()}")
    print(f"the quantized class differs from scikit-learn's on {differ} of {n_win:,} windows "
          f"({100 * differ / n_win:.3f} %); float path: "
          f"{int(np.sum(floats.cls != hand_pred))}; tuned hand features: "
          f"{int(np.sum(answers[contenders[1][0]] != hand_pred))}; loop: {int(np.sum(looped != hand_pred))}")
    print(f"forest accuracy: training windows {100 * forest.score(X[train], labels[train]):.1f}%, "
          f"later windows {100 * forest.score(X[~train], labels[~train]):.1f}%")


if __name__ == "__main__":
    main()
