"""Opening a cache: time to open as it grows, and a fresh process's query.

    python benchmarks/bench_open.py [--sizes 32,128,256] [--repeat 5]
                                    [--before DIR] [--keep DIR]

For each size a cache of that capacity is filled until its ring has turned
over (a 1 kHz 4-channel int16 accelerometer stream, ``imu``: x, y, z and
``accel``), and DuckDB is given the same rows in a table of its own file.
Measured, medians of ``--repeat`` runs, page cache warm:

* ``open ro`` / ``open rw``: ``sensorq.open(path, readonly=True)`` / as the
  writer, then close, in a process that has already imported sensorq;
* ``cli``: a fresh ``python -m sensorq --cache P "count where accel > 2g last
  10m"`` (interpreter start-up and imports included);
* ``duckdb open``: ``duckdb.connect(file, read_only=True)`` and close, in a
  process that has already imported duckdb; ``duckdb cli``: a fresh ``python
  -c`` that imports duckdb and runs the same count.

Every child runs with Python's byte-code cache on (a private
PYTHONPYCACHEPREFIX, warmed by the untimed first run), as an installed
program has it and as bench_startup.py runs its children, whatever
PYTHONDONTWRITEBYTECODE says in this shell: without it each fresh sensorq
process compiled its modules from source (~60 ms for the generated parser
alone), which duckdb's installed modules never do.

``--before DIR`` times the same operations with another sensorq source tree
(DIR holds its ``sensorq`` package), on the same caches, so the change shows
as a ratio in one run.  ``sensorq/grammar`` is a symbolic link, so a tree of
an older commit REV is made with::

    git archive REV sensorq | tar -x -C DIR && rm DIR/sensorq/grammar
    git archive REV grammar | tar -x -C DIR/sensorq
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_startup import child_env      # this folder's start-up benchmark: the children's environment

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_790_000_000_000_000_000
RATE_HZ = 1000
CHUNK = 1_000_000                 # rows per append (1000 s of data)
QUERY = "count where accel > 2g last 10m"

OPEN_SNIPPET = r"""
import sys, time, statistics
import sensorq
path, repeat, readonly = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "ro"
sensorq.open(path, readonly=True).close()          # warm the page cache
times = []
for _ in range(repeat):
    t = time.perf_counter()
    sensorq.open(path, readonly=readonly).close()
    times.append(time.perf_counter() - t)
print(statistics.median(times))
"""

DUCK_OPEN_SNIPPET = r"""
import sys, time, statistics
import duckdb
path, repeat = sys.argv[1], int(sys.argv[2])
duckdb.connect(path, read_only=True).close()
times = []
for _ in range(repeat):
    t = time.perf_counter()
    duckdb.connect(path, read_only=True).close()
    times.append(time.perf_counter() - t)
print(statistics.median(times))
"""

DUCK_COUNT = (f"select count(*) from imu where accel > 2000 and "
              f"t >= (select max(t) from imu) - {600 * 10**9}")
DUCK_CLI_SNIPPET = ("import sys, duckdb; c = duckdb.connect(sys.argv[1], read_only=True); "
                    f"print(c.execute({DUCK_COUNT!r}).fetchone()[0])")


def chunk_rows(rng: np.random.Generator, start: int):
    """CHUNK rows from row ``start``: gravity on z, noise, rare shocks of 2-5 g."""
    k = np.arange(start, start + CHUNK, dtype=np.int64)
    t = T0 + k * (10**9 // RATE_HZ)
    axes = [rng.normal(0, 25, CHUNK), rng.normal(0, 25, CHUNK), 1000 + rng.normal(0, 25, CHUNK)]
    shocks = rng.random(CHUNK) < 2e-5
    axes[2][shocks] += rng.uniform(1000, 4000, int(shocks.sum()))
    axes = [np.clip(np.rint(a), -32768, 32767).astype(np.int16) for a in axes]
    accel = np.sqrt(sum(a.astype(np.float64) ** 2 for a in axes))
    axes.append(np.clip(np.rint(accel), 0, 32767).astype(np.int16))
    return t, axes


def build(path: Path, duck_path: Path, size_mb: int) -> dict:
    """A cache of ``size_mb`` MiB capacity filled until its ring turned over, and
    a DuckDB file with the rows the cache kept."""
    import duckdb
    import pyarrow as pa
    import sensorq
    from sensorq import Channel
    rng = np.random.default_rng(size_mb)
    con = duckdb.connect(str(duck_path))
    con.execute("create table imu (t bigint, x smallint, y smallint, z smallint, accel smallint)")
    started = time.perf_counter()
    with sensorq.open(path, create=True, capacity=f"{size_mb}MiB") as cache:
        cache.create_stream("imu", [Channel(c, "int16", "mg") for c in ("x", "y", "z", "accel")],
                            rate_hz=RATE_HZ)
        rows = 0
        while (path / "segment-0000000001.sqs").exists() or rows == 0:
            t, axes = chunk_rows(rng, rows)
            cache.append("imu", t, axes)
            cache.flush()
            chunk = pa.table({"t": t, "x": axes[0], "y": axes[1], "z": axes[2], "accel": axes[3]})  # noqa: F841
            con.execute("insert into imu select * from chunk")       # DuckDB finds ``chunk`` by name
            rows += CHUNK
        index = cache.blocks("imu")
        first, kept = int(index.t_first[0]), int(index.n_samples.sum())
        info = cache.info()
    con.execute("delete from imu where t < ?", [first])
    con.execute("checkpoint")
    duck_rows = con.execute("select count(*) from imu").fetchone()[0]
    con.close()
    assert duck_rows == kept, (duck_rows, kept)
    return {"rows": kept, "bytes": info["bytes_used"], "segments": info["segments"],
            "blocks": info["streams"]["imu"]["blocks"], "build_s": time.perf_counter() - started}


def run(args: list[str], pythonpath: str | None = None) -> tuple[float, str]:
    env = child_env(Path(tempfile.gettempdir()) / "sensorq-bench-open")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    started = time.perf_counter()
    # cwd: not the source tree (python -c and -m put the cwd first on sys.path)
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          check=True, cwd=tempfile.gettempdir())
    return time.perf_counter() - started, done.stdout.strip()


def median_run(args: list[str], repeat: int, pythonpath: str | None = None) -> tuple[float, str]:
    run(args, pythonpath)                                  # warm: page cache, numba's cache
    results = [run(args, pythonpath) for _ in range(repeat)]
    return statistics.median(r[0] for r in results), results[-1][1]


def measure(path: Path, duck_path: Path, repeat: int, tree: str) -> dict:
    open_ro = float(run(["-c", OPEN_SNIPPET, str(path), str(repeat), "ro"], tree)[1])
    open_rw = float(run(["-c", OPEN_SNIPPET, str(path), str(repeat), "rw"], tree)[1])
    cli, answer = median_run(["-m", "sensorq", "--cache", str(path), QUERY], repeat, tree)
    return {"open_ro": open_ro, "open_rw": open_rw, "cli": cli, "answer": answer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="32,128,256", help="cache capacities in MiB")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--before", help="another sensorq source tree to compare with")
    parser.add_argument("--keep", help="build the caches here and keep them (reused if present)")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sensorq-open-"))
    root.mkdir(parents=True, exist_ok=True)
    head = (f"{'MiB':>5} {'rows':>11} {'blocks':>7} {'segs':>5} {'open ro':>9} {'open rw':>9} "
            f"{'cli':>8} {'duck open':>10} {'duck cli':>9} {'ro/duck':>8} {'cli/duck':>9}")
    if args.before:
        head += f" {'before ro':>10} {'before rw':>10} {'before cli':>11} {'ro gain':>8} {'cli gain':>9}"
    lines = [head]
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            path, duck_path = root / f"cache{size}", root / f"duck{size}.db"
            if not path.exists():
                shape = build(path, duck_path, size)
                print(f"built {size} MiB: {shape}", flush=True)
            import sensorq
            with sensorq.open(path, readonly=True) as cache:
                info = cache.info()
            rows, blocks = info["streams"]["imu"]["samples"], info["streams"]["imu"]["blocks"]
            after = measure(path, duck_path, args.repeat, str(ROOT))
            duck_open = float(run(["-c", DUCK_OPEN_SNIPPET, str(duck_path), str(args.repeat)])[1])
            duck_cli, duck_answer = median_run(["-c", DUCK_CLI_SNIPPET, str(duck_path)], args.repeat)
            assert after["answer"].split()[0] == duck_answer, (after["answer"], duck_answer)
            line = (f"{size:>5} {rows:>11,} {blocks:>7,} {info['segments']:>5} "
                    f"{after['open_ro'] * 1e3:>7.1f}ms {after['open_rw'] * 1e3:>7.1f}ms "
                    f"{after['cli'] * 1e3:>6.0f}ms {duck_open * 1e3:>8.1f}ms {duck_cli * 1e3:>7.0f}ms "
                    f"{after['open_ro'] / duck_open:>7.2f}x {after['cli'] / duck_cli:>8.2f}x")
            if args.before:
                before = measure(path, duck_path, args.repeat, args.before)
                assert before["answer"] == after["answer"], (before["answer"], after["answer"])
                line += (f" {before['open_ro'] * 1e3:>8.1f}ms {before['open_rw'] * 1e3:>8.1f}ms "
                         f"{before['cli'] * 1e3:>9.0f}ms {before['open_ro'] / after['open_ro']:>7.1f}x "
                         f"{before['cli'] / after['cli']:>8.2f}x")
            lines.append(line)
            print(line, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("\n" + "\n".join(lines))
    print(f"\nquery: {QUERY!r}; ratios: sensorq time over DuckDB's (lower is better); "
          f"gain: before over after (higher is better)")


if __name__ == "__main__":
    main()
