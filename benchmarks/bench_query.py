"""Query benchmark: sensorq on its compressed cache vs numpy on raw in-memory
arrays vs DuckDB on its own on-disk table — the same data in each engine, in one run.

    python benchmarks/bench_query.py [--rows 17000000] [--repeat 5]

The data is a synthetic 3-axis accelerometer at 1 kHz (int16, mg): gravity on z,
noise, a slow sway, and rare shocks above 2 g.  Samples = rows x 3 axes.
Prints one table of median wall times and the ratios the issue sets targets on.
Absolute times on a shared machine are noise; the ratios are the result.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import sensorq

RATE_HZ = 1000
PERIOD_NS = 1_000_000_000 // RATE_HZ
G_MG = 2000  # 2 g in mg, the shock threshold
STEP = 1 << 20  # rows per append call


def make_data(rows: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    t = np.arange(rows, dtype=np.int64) * PERIOD_NS + 1_700_000_000_000_000_000
    sway = (80 * np.sin(np.arange(rows) * (2 * np.pi / 7000.0))).astype(np.float32)
    x = (rng.normal(0, 12, rows).astype(np.float32) + sway)
    y = (rng.normal(0, 12, rows).astype(np.float32) - 0.5 * sway)
    z = 1000 + rng.normal(0, 15, rows).astype(np.float32)
    starts = np.sort(rng.choice(rows - 200, size=max(1, rows // 30_000), replace=False))
    for at in starts:  # a shock every ~30 s on average, 20-120 ms long, 2-6 g
        length = int(rng.integers(20, 120))
        z[at:at + length] += rng.uniform(1500, 5000) * np.sin(np.linspace(0, np.pi, length))
    cols = [np.clip(np.rint(a), -32768, 32767).astype(np.int16) for a in (x, y, z)]
    return t, cols


def median_time(fn, repeat: int) -> tuple[float, object]:
    fn()  # warm-up (and numba compile / disk cache load)
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


# --- numpy on raw arrays ---------------------------------------------------------

def numpy_episodes(t, z, threshold, min_ns):
    hit = z > threshold
    edges = np.diff(np.concatenate(([0], hit.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)           # index of the first sample after the run
    end_t = np.where(ends < len(t), t[np.minimum(ends, len(t) - 1)], t[ends - 1])
    keep = (end_t - t[starts]) >= min_ns
    return int(np.count_nonzero(keep))


def numpy_bucket_avg(t, z, bucket_ns):
    b = (t // bucket_ns) - t[0] // bucket_ns
    sums = np.bincount(b, weights=z)
    counts = np.bincount(b)
    nonempty = counts > 0
    return sums[nonempty] / counts[nonempty]


# --- DuckDB ---------------------------------------------------------------------

DUCK_EPISODES = """
WITH m AS (SELECT t, z > {thr} AS hit, lead(t) OVER (ORDER BY t) AS next_t FROM imu),
     g AS (SELECT *, sum(CASE WHEN hit THEN 0 ELSE 1 END) OVER (ORDER BY t ROWS UNBOUNDED PRECEDING) AS grp FROM m)
SELECT count(*) FROM (
  SELECT min(t) AS s, max(coalesce(next_t, t)) AS e FROM g WHERE hit GROUP BY grp
) WHERE e - s >= {min_ns}
"""


def duckdb_connect(path: Path, t, cols):
    import duckdb
    import pandas as pd
    con = duckdb.connect(str(path))
    con.register("frame", pd.DataFrame({"t": t, "x": cols[0], "y": cols[1], "z": cols[2]}))
    con.execute("CREATE TABLE imu AS SELECT * FROM frame")
    con.execute("CHECKPOINT")
    return con


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=17_000_000, help="rows of 3 samples (default 17 M = 51 M samples)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-duckdb", action="store_true")
    args = ap.parse_args()

    t, cols = make_data(args.rows)
    x, y, z = cols
    work = Path(tempfile.mkdtemp(prefix="sensorq-bench-"))
    print(f"{args.rows:,} rows x 3 axes = {3 * args.rows:,} samples; work dir {work}")

    caches = {codec: build_cache(work / f"cache-{codec}", t, cols, codec)
              for codec in ("compact", "fast")}

    con = None
    if not args.no_duckdb:
        start = time.perf_counter()
        con = duckdb_connect(work / "duck.db", t, cols)
        print(f"duckdb load {time.perf_counter() - start:.1f} s, "
              f"{(work / 'duck.db').stat().st_size / (3 * args.rows):.3f} B/sample on disk")

    last10m_start = int(t[-1]) + 1 - 600 * 1_000_000_000
    half = np.median(x)
    q = {
        "Q1  count where z > 2g": (
            "count where z > 2g",
            lambda: int(np.count_nonzero(z > G_MG)),
            f"SELECT count(*) FROM imu WHERE z > {G_MG}"),
        "Q1' count where x > median (50 %)": (
            f"count where x > {half:g}mg",
            lambda: int(np.count_nonzero(x > half)),
            f"SELECT count(*) FROM imu WHERE x > {half:g}"),
        "Q2  count where z > 2g last 10m": (
            "count where z > 2g last 10m",
            lambda: int(np.count_nonzero(z[np.searchsorted(t, last10m_start):] > G_MG)),
            f"SELECT count(*) FROM imu WHERE z > {G_MG} AND t >= {last10m_start}"),
        "Q3  avg z by 1m": (
            "avg z by 1m",
            lambda: numpy_bucket_avg(t, z, 60_000_000_000),
            "SELECT avg(z) FROM imu GROUP BY t // 60000000000 ORDER BY t // 60000000000"),
        "Q4  find episodes where z > 2g for >= 50ms": (
            "find episodes where z > 2g for >= 50ms",
            lambda: numpy_episodes(t, z, G_MG, 50_000_000),
            DUCK_EPISODES.format(thr=G_MG, min_ns=50_000_000)),
    }
    # Each engine runs all its queries in a phase of its own, so that one
    # engine's worker threads winding down never share the cores with another's.
    reference = {label: median_time(np_fn, args.repeat) for label, (_, np_fn, _) in q.items()}
    duck = {label: median_time(lambda: con.execute(sql).fetchall(), args.repeat)[0]
            if con is not None else float("nan") for label, (_, _, sql) in q.items()}
    rows = []
    for codec, cache in caches.items():
        for label, (text, _, _) in q.items():
            sq_s, sq_out = median_time(lambda: cache.query(text), args.repeat)
            np_s, np_out = reference[label]
            rows.append((f"{label} [{codec}]", sq_s, np_s, duck[label],
                         f"{agree(sq_out, np_out)} ({sq_out.scan.engine or 'statistics'})"))

    print()
    print(f"{'query [stream codec]':<52} {'sensorq':>10} {'numpy raw':>10} {'duckdb':>10} "
          f"{'vs numpy':>9} {'vs duckdb':>9}  same answer (engine tier)")
    for label, sq_s, np_s, duck_s, check in rows:
        print(f"{label:<52} {sq_s * 1e3:>8.2f}ms {np_s * 1e3:>8.2f}ms {duck_s * 1e3:>8.2f}ms "
              f"{np_s / sq_s:>8.1f}x {duck_s / sq_s:>8.1f}x  {check}")

    print()
    print("Q2 as the cache grows (same 'last 10m' window):")
    for frac in (0.25, 0.5, 1.0):
        n = int(args.rows * frac)
        sub = work / f"grow-{frac}"
        with sensorq.open(sub, create=True, capacity=1 << 40) as c:
            c.create_stream("imu", [sensorq.Channel(ch, "int16", "mg") for ch in "xyz"], rate_hz=RATE_HZ,
                            codec="fast")
            for i in range(0, n, STEP):
                c.append("imu", t[i:min(i + STEP, n)], [col[i:min(i + STEP, n)] for col in cols])
            c.flush()
        with sensorq.open(sub, readonly=True) as c:
            s, _ = median_time(lambda: c.query("count where z > 2g last 10m"), args.repeat)
        print(f"  {3 * n / 1e6:>7.1f} M samples: {s * 1e3:.3f} ms (fast codec)")

    print()
    cold_cli(work)


def agree(ours, reference) -> str:
    """Whether sensorq's answer equals the numpy one."""
    try:
        if ours.kind == "scalar":
            same = np.isclose(float(ours.value), float(reference))
            return "yes" if same else f"NO ({ours.value} vs {reference})"
        if "start" in ours.columns:  # episodes: compare how many were found
            found = len(ours.columns["start"])
            return "yes" if found == int(reference) else f"NO ({found} vs {reference})"
        got = np.asarray(list(ours.columns.values())[-1], dtype=np.float64)
        ref = np.asarray(reference)
        return "yes" if got.shape == ref.shape and np.allclose(got, ref) else "NO"
    except Exception as exc:  # a benchmark reports, it does not stop
        return f"? ({exc})"


def build_cache(path: Path, t, cols, codec: str):
    """The benchmark data in a cache of its own, written with one stream codec."""
    start = time.perf_counter()
    with sensorq.open(path, create=True, capacity=1 << 40) as cache:
        cache.create_stream("imu", [sensorq.Channel(c, "int16", "mg") for c in "xyz"],
                            rate_hz=RATE_HZ, codec=codec)
        for i in range(0, len(t), STEP):
            cache.append("imu", t[i:i + STEP], [c[i:i + STEP] for c in cols])
        cache.flush()
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    print(f"sensorq ({codec}) ingest {3 * len(t) / seconds / 1e6:.1f} M samples/s, "
          f"{size / (3 * len(t)):.3f} B/sample on disk (raw int16 + int64 time: {(2 * 3 + 8) / 3:.2f})")
    return sensorq.open(path, readonly=True)


def cold_cli(work: Path) -> None:
    """`sensorq "count where accel>2g last 10m"` as a fresh process on the demo cache:
    the very first time (an empty numba cache) and with the kernel cache warm, for
    each engine setting (auto is the default: the numpy interpreter for a small
    scan, so no numba at all; compiled forces the numba kernels)."""
    query = "count where accel>2g last 10m"
    demo = work / "demo"
    subprocess.run([sys.executable, "-m", "sensorq.cli", "demo", "--path", str(demo)],
                   capture_output=True, check=True)
    print(f"\ncold command line `sensorq \"{query}\"` on the demo cache (targets: first run "
          f"<= 3 s, warm median <= 0.5 s)")
    print(f"{'engine':<12} {'first run s':>12} {'warm median s':>14}")
    for engine in ("auto", "compiled"):
        # an empty kernel cache of its own: the first run compiles whatever it needs
        env = dict(os.environ, NUMBA_CACHE_DIR=str(work / f"numba-cold-{engine}"),
                   SENSORQ_CACHE=str(demo), SENSORQ_ENGINE=engine)
        cmd = [sys.executable, "-m", "sensorq.cli", "-q", query]
        times = []
        for _ in range(6):
            start = time.perf_counter()
            subprocess.run(cmd, env=env, capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        print(f"{engine:<12} {times[0]:>12.2f} {statistics.median(times[1:]):>14.3f}")


if __name__ == "__main__":
    main()
