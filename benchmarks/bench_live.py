"""A dashboard over a live cache: the same count asked a few times for each
block the writer seals (issue 11: frame maps, engine/framemaps.py).

A reader polls ``count where x > <median of x>`` (Q1' of bench_query.py:
half of x above it, most blocks straddling it) ``--asks`` times between
two sealed blocks of 4,096 samples, refreshing its view before the first
ask; the cache holds ``--samples`` samples and grows by a block a round.
Each round's asks are timed with frame maps as they are (a new block range
takes the last range's rows: blockindex.RangeMemo), with maps that start
afresh in every block range (the twenty-first session's: made at a range's
second ask, every row filled again), and with no maps; numpy's and polars'
count of the same in-memory array (grown by the same block each round,
the array made before the timing) beside them.  The three sensorq
settings take turns, round by round, in one process.  Then the writer
takes PENDING samples without sealing them, and the same count is timed
through the writer (its sealed blocks and its open block counted apart)
and through the reader.

    python3 benchmarks/bench_live.py                       # 20 M samples
    python3 benchmarks/bench_live.py --samples 100000000 --rounds 12
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_query import STEP, make_data     # noqa: E402

import sensorq                                          # noqa: E402
from sensorq.engine import framemaps                    # noqa: E402
from sensorq.engine.tiers import CompiledTier           # noqa: E402
from sensorq.schema import Channel                      # noqa: E402

BLOCK = 4096
SETTINGS = ("maps follow", "maps afresh", "no maps")


def _setting(name: str):
    """Put the engine in one of SETTINGS (class and module attributes, read at each count)."""
    CompiledTier.FRAME_MAP_MIN_BLOCKS = 10**12 if name == "no maps" else 32
    framemaps._rows_to_follow = _NO_ROWS if name == "maps afresh" else _FOLLOW


_FOLLOW = framemaps._rows_to_follow


def _NO_ROWS(*_):
    return None


def build(path: Path, x: np.ndarray, t: np.ndarray):
    cache = sensorq.open(path, create=True)
    cache.create_stream("s", [Channel("x", "int16")], block_samples=BLOCK)
    for lo in range(0, len(x), STEP):
        cache.append("s", t[lo:lo + STEP], {"x": x[lo:lo + STEP]})
    cache.flush()
    return cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000_000)
    parser.add_argument("--rounds", type=int, default=30, help="sealed blocks per setting")
    parser.add_argument("--asks", type=int, default=4, help="counts between two sealed blocks")
    args = parser.parse_args()
    import polars as pl

    extra = args.rounds * len(SETTINGS) * BLOCK
    t_all, (x_all, _, _) = make_data(args.samples + extra)
    n = args.samples
    threshold = int(np.floor(np.median(x_all[:n])))     # Q1': x's median
    query = f"count where x > {threshold}"
    with tempfile.TemporaryDirectory() as tmp:
        writer = build(Path(tmp) / "c", x_all[:n], t_all[:n])
        reader = sensorq.open(Path(tmp) / "c", readonly=True)
        for name in SETTINGS:       # compile and load the kernels of each path
            _setting(name)
            for _ in range(3):
                reader.query(query, engine="compiled")
        times = {name: [[] for _ in range(args.asks)] for name in SETTINGS + ("numpy", "polars")}
        for r in range(args.rounds * len(SETTINGS)):
            name = SETTINGS[r % len(SETTINGS)]
            _setting(name)
            writer.append("s", t_all[n:n + BLOCK], {"x": x_all[n:n + BLOCK]})
            writer.flush()
            n += BLOCK
            want = int(np.count_nonzero(x_all[:n] > threshold))
            started = time.perf_counter()
            reader.refresh()
            for a in range(args.asks):
                got = reader.query(query, engine="compiled").value
                times[name][a].append(time.perf_counter() - started)
                assert got == want, (name, got, want)
                started = time.perf_counter()
            if r % len(SETTINGS) == 0:
                x, frame = x_all[:n], pl.DataFrame({"x": x_all[:n]})
                for peer, ask in (("numpy", lambda: int(np.count_nonzero(x > threshold))),
                                  ("polars", lambda: frame.select((pl.col("x") > threshold).sum()).item())):
                    for a in range(args.asks):
                        started = time.perf_counter()
                        assert ask() == want
                        times[peer][a].append(time.perf_counter() - started)
        _setting("maps follow")
        pending = _pending_counts(writer, reader, query, threshold, x_all, t_all, n)
        writer.close()
        reader.close()
    print(f"{args.samples:,} samples + a block of {BLOCK} a round, {args.asks} asks a round, "
          f"{args.rounds} rounds each (median ms; the first ask includes the reader's refresh)")
    heads = " ".join(f"{'ask ' + str(a + 1):>8}" for a in range(args.asks))
    print(f"{'':14} {heads} {'a round':>9} {'÷ polars':>9}")
    polars_round = sum(statistics.median(each) for each in times["polars"])
    for name, per_ask in times.items():
        medians = [statistics.median(each) * 1e3 for each in per_ask]
        total = sum(medians)
        print(f"{name:14} " + " ".join(f"{m:8.2f}" for m in medians)
              + f" {total:9.2f} {polars_round * 1e3 / total:8.2f}x")
    print(f"then {PENDING} samples appended, not sealed: the writer's count (its open block apart) "
          f"{pending['writer'] * 1e3:.2f} ms, the reader's (sealed blocks only) "
          f"{pending['reader'] * 1e3:.2f} ms (medians of {PENDING_SECONDS} s of asks)")


PENDING = 1000              # samples a writer holds in its open block
PENDING_SECONDS = 0.5


def _pending_counts(writer, reader, query, threshold, x_all, t_all, n) -> dict:
    """The median time of the count asked of a writer that holds PENDING
    samples not yet sealed (its sealed blocks and open block counted apart:
    executor._run_count_in_parts) and of the reader, each checked against numpy."""
    writer.append("s", t_all[n:n + PENDING], {"x": x_all[n:n + PENDING]})
    wants = {"writer": int(np.count_nonzero(x_all[:n + PENDING] > threshold)),
             "reader": int(np.count_nonzero(x_all[:n] > threshold))}
    medians = {}
    for name, handle in (("writer", writer), ("reader", reader)):
        times = []
        until = time.perf_counter() + PENDING_SECONDS
        while time.perf_counter() < until or len(times) < 5:
            started = time.perf_counter()
            got = handle.query(query, engine="compiled").value
            times.append(time.perf_counter() - started)
            assert got == wants[name], (name, got, wants[name])
        medians[name] = statistics.median(times)
    return medians


if __name__ == "__main__":
    main()
