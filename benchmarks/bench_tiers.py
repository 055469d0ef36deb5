"""The two engine tiers side by side: the numpy interpreter and the numba kernels.

    python benchmarks/bench_tiers.py                    # a 2 M-sample synthetic cache
    python benchmarks/bench_tiers.py --cache DIR        # any cache with an int16 x, y, z stream
    python benchmarks/bench_tiers.py --samples 20000000 --repeat 9

A fresh process answers its small queries on the interpreter (engine/tiers.py:
loading the kernels costs more than they save), so the interpreter's speed is
what a one-off command line and the first asks of a long-lived program get.
This prints, for the accelerometer queries of bench_query.py's table that a
dashboard asks over recent data, the median ms of each tier (asked again on
one handle, after one untimed ask) and their ratio; then the numpy decoder's
ns a value per column of the blocks those queries read, by section form (the
column decoded alone, codec/npdecode.py), next to the compiled decoder's.

The synthetic data is bench_query.py's (gravity on z, noise, a slow sway,
shocks). Absolute times on a shared machine are noise; the ratios are the
result. The interpreter's prices in engine/tiers.py (15-45 ns a sample of an
integer channel) should hold for the decoder rows.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_query import build_cache, make_data  # noqa: E402

QUERIES = [
    "count where z > 2g last 10m",
    "top 10 z",
    "max mag(x, y, z) last 1h",
    "std x by 10s last 10m",
    "find episodes where z > 2g for >= 50ms last 10m",
    "avg z by 1m last 10m",
]


def median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def query_table(cache, repeat: int) -> None:
    print(f"{'query':<52}{'interpreted ms':>16}{'compiled ms':>14}{'ratio':>8}  blocks decoded")
    for text in QUERIES:
        ms = {engine: median_ms(lambda: cache.query(text, engine=engine), repeat)
              for engine in ("interpreted", "compiled")}
        decoded = cache.query(text, engine="compiled").scan.decoded
        print(f"{text:<52}{ms['interpreted']:>16.2f}{ms['compiled']:>14.3f}"
              f"{ms['interpreted'] / ms['compiled']:>7.0f}x  {decoded}")


def section_form(codec: int) -> str:
    from sensorq.codec.codes import DICT, ENTROPY, FRAMES, PREDICTOR_MASK, ZERO_RESIDUALS
    if codec & ZERO_RESIDUALS:
        return "constant"
    form = "tANS" if codec & ENTROPY else "mini-blocks"
    order = "FRAMES (order 0)" if codec & PREDICTOR_MASK == FRAMES else f"order {codec & PREDICTOR_MASK}"
    return f"{form}, {order}" + (", dictionary" if codec & DICT else "")


def sections(cache, window_blocks: int):
    """(block bytes, start, end, n, codec) of each channel column of the
    stream's newest ``window_blocks`` blocks."""
    index = cache.blocks("imu")
    for row in range(max(0, len(index) - window_blocks), len(index)):
        raw, info = np.ascontiguousarray(index.raw(row)), index.info(row)
        starts = info.section_offsets()[1:]
        for start, length, codec in zip(starts.tolist(), info.entries["data_len"].tolist(),
                                        info.entries["codec"].tolist()):
            yield raw, start, start + length, info.n_samples, codec


def decoder_table(cache, window_blocks: int, repeat: int) -> None:
    from numba import njit

    from sensorq.codec import npdecode
    from sensorq.codec.intcodec import decode_column

    @njit(cache=False)
    def compiled(buf, starts, ends, counts, codecs):
        out, scratch = np.empty(counts.max(), np.uint64), np.empty(counts.max(), np.uint64)
        for j in range(len(starts)):
            decode_column(buf, starts[j], ends[j], counts[j], codecs[j], out, scratch)

    by_form = defaultdict(list)
    for args in sections(cache, window_blocks):
        by_form[section_form(args[4])].append(args)
    print(f"\n{'section form (x, y, z columns)':<40}{'columns':>8}{'numpy ns/value':>16}"
          f"{'compiled ns/value':>19}")
    for form, columns in sorted(by_form.items()):
        values = sum(n for _, _, _, n, _ in columns)
        # the compiled decoder over the same columns, one buffer, one call
        shift = np.cumsum([0] + [len(buf) for buf, *_ in columns[:-1]])
        buf = np.concatenate([buf for buf, *_ in columns])
        starts, ends, counts, codecs = (np.array(a, np.int64) for a in zip(
            *[(at + pos, at + end, n, codec) for at, (_, pos, end, n, codec) in zip(shift, columns)]))

        def numpy_pass():
            for block, pos, end, n, codec in columns:
                npdecode.decode_column(block, pos, end, n, codec)

        ns = [median_ms(fn, repeat) * 1e6 / values for fn in (
            numpy_pass, lambda: compiled(buf, starts, ends, counts, codecs))]
        print(f"{form:<40}{len(columns):>8}{ns[0]:>16.1f}{ns[1]:>19.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", help="an existing cache with an int16 x, y, z stream 'imu'")
    ap.add_argument("--samples", type=int, default=2_000_000, help="synthetic samples (no --cache)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--window-blocks", type=int, default=150,
                    help="newest blocks whose columns the decoder table decodes")
    args = ap.parse_args()
    import sensorq
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.cache) if args.cache else Path(tmp) / "cache"
        if not args.cache:
            t, cols = make_data(args.samples)
            build_cache(path, t, cols, "compact")
        with sensorq.open(path, readonly=True) as cache:
            print(f"cache {path}: {cache.query('count').value:,} samples; medians of "
                  f"{args.repeat} asks on one handle\n")
            query_table(cache, args.repeat)
            decoder_table(cache, args.window_blocks, args.repeat)


if __name__ == "__main__":
    main()
