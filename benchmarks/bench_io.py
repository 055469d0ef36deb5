"""Data in and out, and the command line against the shell, in one run.

    python benchmarks/bench_io.py [--skip-memory]

1. Parquet (and Arrow IPC, CSV) export and ingest rates of the demo's imu
   stream (1.8 M samples x 4 int16 channels), next to pyarrow writing and
   reading the same arrays (zstd Parquet, as sensorq writes it).  sensorq's
   export decodes blocks, its ingest encodes them and fsyncs; pyarrow starts
   from (and ends with) arrays in memory.
2. `sensorq "count where accel > 2g last 10m"` as a fresh process (median of
   7) and the same query inside `sensorq shell` (Shell.process, median of 100).
3. The peak memory (max RSS of the process) of every query of docs/query.md
   on the demo cache, each in a fresh process; the worst is reported.

Absolute times on a shared two-core machine are noise of about 10 %.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import sensorq
from sensorq.io.export import export_stream

QUERY = "count where accel > 2g last 10m"
ROOT = Path(__file__).resolve().parent.parent


def timed(fn, repeat: int = 3):
    fn()                                        # warm-up: numba kernels, page cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def io_rates(work: Path, demo: Path) -> None:
    with sensorq.open(demo, readonly=True) as cache:
        t, cols = cache.read("imu")
    n = len(t)
    table = pa.table({"time": pa.array(t.view("datetime64[ns]"), pa.timestamp("ns", tz="UTC")),
                      **{name: pa.array(col) for name, col in cols.items()}})
    rows = []

    def export(fmt):
        def run():
            with sensorq.open(demo, readonly=True) as cache:
                export_stream(cache, "imu", work / f"imu.{fmt}", fmt=fmt)
        return run

    def ingest(fmt):
        def run():
            target = work / f"in-{fmt}"
            subprocess.run(["rm", "-rf", str(target)], check=True)
            with sensorq.open(target, create=True) as cache:
                if fmt == "csv":
                    from sensorq.ingest import ingest_csv
                    ingest_csv(cache, work / "imu.csv", stream="imu")
                else:
                    from sensorq.io.arrow import ingest_arrow
                    ingest_arrow(cache, work / f"imu.{fmt}", stream="imu", fmt=fmt)
        return run

    for fmt in ("parquet", "arrow", "csv"):
        rows.append((f"sensorq export -> {fmt}", timed(export(fmt), 1 if fmt == "csv" else 3),
                     (work / f"imu.{fmt}").stat().st_size))
    rows.append(("pyarrow write_table (zstd) parquet",
                 timed(lambda: pq.write_table(table, work / "pa.parquet", compression="zstd")),
                 (work / "pa.parquet").stat().st_size))
    for fmt in ("parquet", "arrow", "csv"):
        rows.append((f"sensorq ingest <- {fmt}", timed(ingest(fmt), 1 if fmt == "csv" else 3),
                     sum(f.stat().st_size for f in (work / f"in-{fmt}").glob("segment-*"))))
    rows.append(("pyarrow read_table parquet", timed(lambda: pq.read_table(work / "pa.parquet")),
                 (work / "pa.parquet").stat().st_size))
    print(f"\nimu stream: {n:,} samples x 4 int16 channels + int64 time "
          f"({n * 16 / 1e6:.1f} MB raw)")
    print(f"{'operation':<38} {'seconds':>8} {'M rows/s':>9} {'MB/s raw':>9} {'bytes':>12}")
    for name, seconds, size in rows:
        print(f"{name:<38} {seconds:>8.3f} {n / seconds / 1e6:>9.2f} {n * 16 / seconds / 1e6:>9.1f} "
              f"{size:>12,}")


def command_line_vs_shell(demo: Path) -> None:
    env = dict(os.environ, SENSORQ_CACHE=str(demo))
    cmd = [sys.executable, "-m", "sensorq.cli", "-q", QUERY]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    fresh = []
    for _ in range(7):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        fresh.append(time.perf_counter() - start)
    from sensorq.shell import Shell
    with sensorq.open(demo, readonly=True) as cache:
        shell = Shell(cache)
        answer = shell.process(QUERY)
        shell.warm_kernels()          # what the shell's background thread does at its start
        inside = []
        for _ in range(100):
            start = time.perf_counter()
            shell.process(QUERY)
            inside.append(time.perf_counter() - start)
    print(f"\n`sensorq \"{QUERY}\"` on the demo (answer {answer})")
    print(f"  fresh process, median of 7:        {statistics.median(fresh) * 1e3:8.1f} ms")
    print(f"  inside sensorq shell, median of 100: {statistics.median(inside) * 1e3:6.2f} ms "
          f"(refresh + query + formatting)")


def doc_queries() -> list[str]:
    text = (ROOT / "docs" / "query.md").read_text()
    out = []
    for block in re.findall(r"```sensorq\n(.*?)```", text, re.S):
        out += [line.strip() for line in block.splitlines() if line.strip()]
    return out


def max_rss_kib(argv: list[str], env: dict) -> tuple[int, int]:
    """(peak RSS in KiB, exit status) of one command, measured by /usr/bin/time
    (a small parent: ru_maxrss survives exec, so a child forked from this big
    benchmark process would report this process's size)."""
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], env=env, capture_output=True,
                          text=True)
    return int(done.stderr.strip().splitlines()[-1]), done.returncode


def worst_memory(demo: Path) -> None:
    if not Path("/usr/bin/time").exists():
        print("\n(no /usr/bin/time: the memory run is skipped; apt-get install time)")
        return
    env = dict(os.environ, SENSORQ_CACHE=str(demo))
    results = [(*max_rss_kib([sys.executable, "-m", "sensorq.cli", "-q", q], env), q)
               for q in doc_queries()]
    idle, _ = max_rss_kib([sys.executable, "-c", "import sensorq.cli, sensorq.engine.executor"], env)
    worst = max(results)
    failed = [q for _, rc, q in results if rc != 0]
    print(f"\npeak memory of {len(results)} docs/query.md queries on the demo, each a fresh process:")
    print(f"  worst: {worst[0] / 1024:.0f} MiB max RSS, `{worst[2]}`; median "
          f"{statistics.median(r[0] for r in results) / 1024:.0f} MiB")
    print(f"  (a process that only imports the engine: {idle / 1024:.0f} MiB)")
    if failed:
        print(f"  {len(failed)} queries failed: {failed[:5]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-memory", action="store_true", help="skip the per-query memory run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        demo = work / "demo"
        subprocess.run([sys.executable, "-m", "sensorq.cli", "demo", "--path", str(demo)],
                       check=True, capture_output=True)
        io_rates(work, demo)
        command_line_vs_shell(demo)
        if not args.skip_memory:
            worst_memory(demo)


if __name__ == "__main__":
    main()
