"""Fleet benchmark (issue 15): one query over many devices' caches.

    pip install -e '.[bench,fleet]'
    python3 benchmarks/bench_fleet.py            # 64 caches of 1.5 M samples (25 min at 1 kHz)
    python3 benchmarks/bench_fleet.py --small    # 8 caches of 150 000 samples
    python3 benchmarks/bench_fleet.py --dir /data/fleet   # keep the caches and Parquet files

The data: a synthetic 1 kHz 3-axis accelerometer per device (int16 mg:
gravity on z, noise, a slow sway, a shock above 2 g about every 30 s), each
device with its own seed, in one cache per device (DIR/site-K/dev-NN/cache,
with its device name and site label) and, for DuckDB, the same samples in
one Parquet file per device.

For each query, in one run: the fleet query on Dask's local cluster (the
default: one worker process per core, up to 4), the same tasks as a plain
loop in this one process (``scheduler="inline"``), and DuckDB over the 64
Parquet files (``read_parquet`` with a glob, default threads).  Each time is
the median of --repeat runs after one warm-up (numba kernels loaded in every
worker, caches open, DuckDB's file cache warm); every answer is checked
against DuckDB's.  Then the cost per cache of a fleet query that reads next
to nothing: ``newest from imu by device`` over 8, 16, 32 and all caches.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RATE_HZ = 1000
PERIOD_NS = 1_000_000_000 // RATE_HZ
T0 = 1_700_000_000_000_000_000
STEP = 1 << 20

QUERIES = {
    "count": ("count where z > 2g by device",
              ("SELECT device, count(*) FILTER (WHERE z > 2000) AS n FROM {src} "
               "GROUP BY device ORDER BY device")),
    "avg_1m": ("avg z by 1m",
               "SELECT t // 60000000000 AS b, avg(z) AS a FROM {src} GROUP BY b ORDER BY b"),
    "episodes": ("find episodes where z > 2g for >= 50ms by device", """
        WITH s AS (SELECT device, t, z > 2000 AS m,
                          lag(z > 2000) OVER w AS pm, lead(t) OVER w AS nt
                   FROM {src} WINDOW w AS (PARTITION BY device ORDER BY t)),
             r AS (SELECT device, t, m, nt,
                          sum(CASE WHEN m AND NOT coalesce(pm, false) THEN 1 ELSE 0 END)
                              OVER (PARTITION BY device ORDER BY t) AS run FROM s)
        SELECT device, min(t) AS start, max(coalesce(nt, t)) AS stop FROM r WHERE m
        GROUP BY device, run HAVING max(coalesce(nt, t)) - min(t) >= 50000000
        ORDER BY device, start"""),
    "p99": ("p99 z", "SELECT quantile_cont(z, 0.99) FROM {src}"),
}


def make_data(samples: int, seed: int):
    rng = np.random.default_rng(seed)
    sway = (80 * np.sin(np.arange(samples) * (2 * np.pi / 7000.0) + seed)).astype(np.float32)
    x = rng.normal(0, 12, samples).astype(np.float32) + sway
    y = rng.normal(0, 12, samples).astype(np.float32) - 0.5 * sway
    z = 1000 + rng.normal(0, 15, samples).astype(np.float32)
    for at in np.sort(rng.choice(samples - 200, size=max(1, samples // 30_000), replace=False)):
        length = int(rng.integers(20, 120))
        z[at:at + length] += rng.uniform(1500, 5000) * np.sin(np.linspace(0, np.pi, length))
    cols = [np.clip(np.rint(a), -32768, 32767).astype(np.int16) for a in (x, y, z)]
    t = T0 + np.arange(samples, dtype=np.int64) * PERIOD_NS + seed * 7 * PERIOD_NS // 10
    return t, cols


def build(root: Path, devices: int, samples: int) -> None:
    """The caches and Parquet files, unless a previous run left them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import sensorq
    done = root / f"built-{devices}x{samples}"
    if done.exists():
        return
    (root / "parquet").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for i in range(devices):
        t, cols = make_data(samples, seed=i)
        path = root / f"site-{i % 4}" / f"dev-{i:02d}" / "cache"
        with sensorq.open(path, create=True, capacity="1GB", device=f"dev-{i:02d}",
                          labels={"site": f"site-{i % 4}"}) as cache:
            cache.create_stream("imu", [sensorq.Channel(c, "int16", "mg") for c in "xyz"],
                                rate_hz=RATE_HZ)
            for lo in range(0, samples, STEP):
                cache.append("imu", t[lo:lo + STEP], [c[lo:lo + STEP] for c in cols])
        pq.write_table(pa.table({"device": pa.array([f"dev-{i:02d}"] * samples).dictionary_encode(),
                                 "t": t, "x": cols[0], "y": cols[1], "z": cols[2]}),
                       root / "parquet" / f"dev-{i:02d}.parquet")
        print(f"  built {i + 1}/{devices} caches ({time.perf_counter() - started:.0f} s)",
              end="\r", file=sys.stderr)
    print(file=sys.stderr)
    done.touch()


def timed(fn, repeat: int):
    fn()                                    # warm-up
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def check(name, fleet_result, duck_rows) -> str:
    """Does the fleet's answer agree with DuckDB's?"""
    r = fleet_result
    if name == "count":
        ok = [int(v) for v in r.columns["count"]] == [int(row[1]) for row in duck_rows]
    elif name == "avg_1m":
        ok = len(duck_rows) == len(r) and np.allclose(
            r.columns["avg"], [row[1] for row in duck_rows], rtol=1e-9)
    elif name == "episodes":
        ok = list(r.columns["start"]) == [row[1] for row in duck_rows] and \
            list(r.columns["end"]) == [row[2] for row in duck_rows]
    else:
        ok = np.isclose(r.value, duck_rows[0][0], rtol=0, atol=1e-9)
    return "same" if ok else "DIFFERENT"


def run(root: Path, devices: int, repeat: int) -> None:
    import duckdb

    import sensorq
    import sensorq.engine.kernels
    pattern = str(root / "site-*" / "dev-*" / "cache")
    src = f"read_parquet('{root / 'parquet' / '*.parquet'}')"
    con = duckdb.connect()
    rows = []
    with sensorq.fleet(pattern) as cluster, sensorq.fleet(pattern, scheduler="inline") as loop:
        start = time.perf_counter()
        cluster.devices()
        startup = time.perf_counter() - start
        print(f"local cluster: {cluster.runner.name}, started in {startup:.1f} s; "
              f"{len(cluster.devices())} caches", file=sys.stderr)
        for name, (query, sql) in QUERIES.items():
            t_cluster, result = timed(lambda q=query: cluster.query(q), repeat)
            t_loop, looped = timed(lambda q=query: loop.query(q), repeat)
            t_duck, duck = timed(lambda s=sql: con.execute(s.format(src=src)).fetchall(), repeat)
            rows.append((query, t_cluster, t_loop, t_duck, check(name, result, duck),
                         check(name, looped, duck)))
            print(f"  {query}: done", file=sys.stderr)
        overhead = []
        for n in sorted({8, 16, 32, devices} & set(range(1, devices + 1))):
            glob_n = [str(root / f"site-{i % 4}" / f"dev-{i:02d}" / "cache") for i in range(n)]
            with sensorq.fleet(glob_n, scheduler=cluster.runner.client) as some, \
                    sensorq.fleet(glob_n, scheduler="inline") as some_loop:
                t_c, _ = timed(lambda: some.query("newest from imu by device"), repeat)
                t_l, _ = timed(lambda: some_loop.query("newest from imu by device"), repeat)
            overhead.append((n, t_c, t_l))
    print_tables(rows, overhead, devices)


def print_tables(rows, overhead, devices: int) -> None:
    print(f"\n| query ({devices} caches) | fleet, local cluster | plain loop, one process | "
          f"DuckDB, {devices} Parquet files | answers (cluster / loop vs DuckDB) |")
    print("|---|---:|---:|---:|---|")
    for query, t_c, t_l, t_d, ok_c, ok_l in rows:
        print(f"| `{query}` | {t_c * 1e3:,.0f} ms | {t_l * 1e3:,.0f} ms | {t_d * 1e3:,.0f} ms | "
              f"{ok_c} / {ok_l} |")
    print("\n| `newest from imu by device` over | local cluster | per cache | plain loop "
          "| per cache |")
    print("|---:|---:|---:|---:|---:|")
    for n, t_c, t_l in overhead:
        print(f"| {n} caches | {t_c * 1e3:.1f} ms | {t_c / n * 1e3:.2f} ms | {t_l * 1e3:.1f} ms | "
              f"{t_l / n * 1e3:.2f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="8 caches of 150 000 samples")
    parser.add_argument("--devices", type=int, default=None, help="caches (default 64, small 8)")
    parser.add_argument("--samples", type=int, default=None,
                        help="samples per cache (default 1 500 000, small 150 000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per query (default 3)")
    parser.add_argument("--dir", default=None, help="where to build (default: a temp directory)")
    args = parser.parse_args()
    devices = args.devices or (8 if args.small else 64)
    samples = args.samples or (150_000 if args.small else 1_500_000)
    print(f"{devices} caches x {samples:,} samples, {os.cpu_count()} cores", file=sys.stderr)
    if args.dir:
        root = Path(args.dir)
        build(root, devices, samples)
        run(root, devices, args.repeat)
        return
    with tempfile.TemporaryDirectory(prefix="bench_fleet_") as tmp:
        build(Path(tmp), devices, samples)
        run(Path(tmp), devices, args.repeat)


if __name__ == "__main__":
    main()
