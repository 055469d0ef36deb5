"""Start-up: a one-off query as a fresh process, next to DuckDB doing the same.

    python benchmarks/bench_startup.py [--runs 15] [--compiled] [--before DIR]

Each row is a fresh Python process, timed from spawn to exit (wall clock and
the child's CPU time, user + system), median of ``--runs`` runs taken in
turns so that a burst of load on a shared machine hits every row alike:

- ``python -c pass``: the interpreter's own start (the floor for everyone);
- ``import sensorq``: what the Python API costs before the first call;
- ``sensorq "count where accel > 2g last 10m"`` on the built-in demo cache
  (``python -m sensorq``, no cache configured, so the demo is found as a new
  user's command finds it), once with numba's cache warm and once with
  NUMBA_CACHE_DIR pointing at a new, empty directory every run;
- the DuckDB one-shot: ``python -c`` that imports duckdb, opens a DuckDB file
  holding the same demo ``imu`` samples (written once by this script) and
  runs the same count (same window: the stream's newest sample minus 10
  minutes, up to but not including it), read-only.

Every child runs with Python's byte-code cache on (in a private
PYTHONPYCACHEPREFIX, warmed by one untimed run), as an installed program has
it, whatever PYTHONDONTWRITEBYTECODE says in this shell.  ``--compiled`` adds
the same query with ``--engine compiled`` (numba kernels from a warm cache).
``--before DIR`` adds the ``import sensorq`` and warm CLI rows run from another
source tree (e.g. ``git archive REV sensorq grammar | tar -x -C DIR``) in the
same run, for a before/after table.  (The other rows run in the repository
root, so they import this working tree's sensorq.)
The ratio column is each row's wall-clock median over the DuckDB one-shot's.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUERY = "count where accel > 2g last 10m"
EXPECTED = "617"          # the demo's answer (README)
ROOT = Path(__file__).resolve().parent.parent      # children run here: this tree's sensorq
DUCKDB_SQL = ("SELECT count(*) FROM imu, (SELECT max(t) AS now FROM imu) "
              "WHERE accel > 2000 AND t >= now - 600000000000 AND t < now")


def child_env(work: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "SENSORQ_CACHE", "SENSORQ_ENGINE")}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    env["XDG_DATA_HOME"] = str(work / "no-default-cache")     # so the demo is used
    env.update(extra)
    return env


def run_once(cmd: list[str], env: dict[str, str], cwd: str | None = None
             ) -> tuple[float, float, str]:
    """(wall s, child CPU s, stdout) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout.strip()


def write_duckdb(path: Path) -> None:
    """The demo's imu stream as a DuckDB table (t BIGINT ns, x, y, z, accel SMALLINT)."""
    import duckdb
    import sensorq
    from sensorq.demo import ensure_demo
    with sensorq.open(ensure_demo(), readonly=True) as cache:
        t, columns = cache.read("imu")
    imu = {"t": t, **columns}      # noqa: F841  (DuckDB reads the local by name)
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE imu AS SELECT * FROM imu")
    con.close()


class Row:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], check: str | None = None,
                 fresh_numba: Path | None = None, cwd: str | None = None):
        self.name, self.cmd, self.env, self.check = name, cmd, env, check
        self.fresh_numba, self.cwd = fresh_numba, cwd or str(ROOT)
        self.walls: list[float] = []
        self.cpus: list[float] = []

    def run(self, k: int, record: bool = True) -> None:
        env = self.env
        if self.fresh_numba is not None:      # a new, empty numba cache every run
            env = dict(env, NUMBA_CACHE_DIR=str(self.fresh_numba / f"run-{k}-{record}"))
        wall, cpu, out = run_once(self.cmd, env, self.cwd)
        if self.check is not None and out != self.check:
            raise SystemExit(f"{self.name}: printed {out!r}, expected {self.check!r}")
        if record:
            self.walls.append(wall)
            self.cpus.append(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="timed runs per row (default: 15)")
    ap.add_argument("--compiled", action="store_true",
                    help="add the query with --engine compiled (warm numba cache)")
    ap.add_argument("--before", metavar="DIR",
                    help="also run import sensorq and the warm CLI query from the sensorq "
                         "source tree in DIR")
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="sensorq-startup-") as tmp:
        work = Path(tmp)
        env = child_env(work)
        sq = [py, "-m", "sensorq", QUERY]
        rows = [Row("python -c pass", [py, "-c", "pass"], env),
                Row("import sensorq", [py, "-c", "import sensorq"], env),
                Row("sensorq CLI query, numba cache warm", sq, env, EXPECTED),
                Row("sensorq CLI query, numba cache empty", sq, env, EXPECTED,
                    fresh_numba=work / "numba")]
        if args.before:
            before = str(Path(args.before).resolve())
            rows[1:1] = [Row("import sensorq (before)", [py, "-c", "import sensorq"], env,
                             cwd=before),
                         Row("sensorq CLI query, numba cache warm (before)", sq, env, EXPECTED,
                             cwd=before)]
        if args.compiled:
            rows.append(Row("sensorq CLI query --engine compiled (warm)",
                            sq[:-1] + [QUERY, "--engine", "compiled"], env, EXPECTED))
        try:
            db = work / "demo.duckdb"
            write_duckdb(db)
            rows.append(Row("DuckDB one-shot (import, open file, count)",
                            [py, "-c", f"import duckdb; print(duckdb.connect({str(db)!r}, "
                                       f"read_only=True).execute({DUCKDB_SQL!r}).fetchone()[0])"],
                            env, EXPECTED))
        except ImportError:
            print("duckdb is not installed (pip install -e '.[bench]'): no DuckDB row")
        for row in rows:          # warm-up: byte-code caches, page cache, numba's disk cache
            row.run(-1, record=False)
        for k in range(args.runs):
            for row in rows:
                row.run(k)
        report(rows, args.runs)


def report(rows: list[Row], runs: int) -> None:
    peer = rows[-1] if rows[-1].name.startswith("DuckDB") else None
    peer_wall = statistics.median(peer.walls) if peer else None
    print(f"fresh processes, medians of {runs} runs (wall clock from spawn to exit; CPU = user + "
          f"system of the child)")
    print(f"{'':<50} {'wall ms':>8} {'CPU ms':>7} {'÷ DuckDB':>9}")
    for row in rows:
        wall, cpu = statistics.median(row.walls), statistics.median(row.cpus)
        ratio = f"{wall / peer_wall:.2f}" if peer_wall else "-"
        print(f"{row.name:<50} {1e3 * wall:>8.0f} {1e3 * cpu:>7.0f} {ratio:>9}")
    print(f"(÷ DuckDB: the row's wall-clock median over the DuckDB one-shot's; "
          f"query: {QUERY!r}, answer {EXPECTED})")


if __name__ == "__main__":
    main()
