"""Float channels (and irregular clocks): bytes per value and decode rate, next to pcodec and zstd.

    python benchmarks/bench_floats.py [--repeat 5] [--quick]

Every data set is encoded into the blocks a cache seals (4096 samples,
codec ``compact`` and ``fast``, no zstd layer), decoded and compared bit for
bit with what went in (the script stops on any difference).  Columns:

* ``B/value``: the float channel's sections over its values (the column
  alone, as pcodec and zstd see it); ``block B/v``: the whole blocks
  (timestamps, headers, statistics) over the same values.
* ``pcodec``, ``zstd-19``: the same array compressed whole by pcodec
  (default config) and zstd level 19; the ratio is sensorq / pcodec.
* ``decode G/s``: the engine's block decoder (kernels.decode_rows, channel
  rows to float64, no timestamps) in one compiled loop on one core, the
  fastest of the runs made in 0.05 s x ``--repeat`` (at least ``--repeat``
  runs); ``pcodec G/s``: pcodec's decompression of its array (best of
  ``--repeat``);
  ``encode M/s``: channel values a second through encode_block (one run:
  the cache's write path without its I/O).

Data sets (real ones from sensorq/data; the synthetic ones seeded):

* BasicMotions: accelerometer and gyroscope, 6 float channels of 6 decimals
  as written in the CSV (parsed to float64, and rounded to float32).
* BasicMotions' float32 values held as float64.
* Daphnet in g: the int16 mg values x 0.001 in float64 (a multiplication:
  most results are not the nearest double to the decimal), and that product
  rounded to float32.
* Daphnet in m/s²: mg × 0.00980665 in float64.
* temperatures: a 1 Hz random walk around 21 degC with 1, 2 and 3 decimals.
* 10 decimals: a random walk around 0.5 with 10 places (DECIMAL's limit is 9).
* true doubles: a noisy sine, full precision.
* clocks (the time column; the int16 channel beside it is all zeros):
  1 kHz in ns with 20 us of jitter; Daphnet's 15/16 ms steps; a 50 Hz radio
  link's ms arrival times; 100 Hz with a quarter of the steps 250 ms.
"""
from __future__ import annotations

import argparse
import csv
import time

import numpy as np
import zstandard

from sensorq.codec.block import decode_block, encode_block, parse_block
from sensorq.demo import DAPHNET_CSV, MOTIONS_CSV

from bench_storage import decode_all      # this folder's storage benchmark: the kernels' block decode

try:
    from pcodec import ChunkConfig, standalone as pcodec_standalone
except ImportError:           # optional: the bench extra installs it
    pcodec_standalone = None

T0 = 1_795_478_400_000_000_000


def basic_motions(dtype):
    with open(MOTIONS_CSV, newline="") as f:
        rows = list(csv.reader(f))[1:]
    cols = [np.array([float(r[i]) for r in rows], np.float64).astype(dtype) for i in range(1, 7)]
    return f"BasicMotions {np.dtype(dtype).name} (6 ch)", _clock(len(rows), 100_000_000), cols


def basic_motions_widened():
    """The float32 values held as float64 (as pandas hands a float32 sensor's
    data over): 29 low bits of every value zero."""
    label, t, cols = basic_motions(np.float32)
    return "BasicMotions f32 as float64", t, [c.astype(np.float64) for c in cols]


def daphnet_g(dtype):
    with open(DAPHNET_CSV, newline="") as f:
        rows = list(csv.reader(f))[1:]
    cols = [(np.array([int(r[i]) for r in rows], np.int16) * 0.001).astype(dtype) for i in range(1, 10)]
    return f"Daphnet g {np.dtype(dtype).name} (9 ch)", _clock(len(rows), 15_625_000), cols


def daphnet_ms2():
    """Daphnet in m/s² (mg × 0.00980665, float64): integers times a constant
    that is no power of ten or two."""
    with open(DAPHNET_CSV, newline="") as f:
        rows = list(csv.reader(f))[1:]
    cols = [np.array([int(r[i]) for r in rows], np.int16) * 0.00980665 for i in range(1, 10)]
    return "Daphnet m/s2 float64 (9 ch)", _clock(len(rows), 15_625_000), cols


def temperatures(decimals: int, n: int):
    rng = np.random.default_rng(5 + decimals)
    walk = 21.0 + np.cumsum(rng.normal(0, 0.01, n)) + 0.3 * np.sin(np.arange(n) / 3600)
    return f"temperature {decimals} decimals", _clock(n, 1_000_000_000), [np.round(walk, decimals)]


def ten_digits(n: int):
    rng = np.random.default_rng(10)
    walk = 0.5 + np.cumsum(rng.normal(0, 5e-5, n))
    return "10 decimals (0.1-0.9)", _clock(n, 10_000_000), [np.round(walk, 10)]


def true_doubles(n: int):
    rng = np.random.default_rng(17)
    x = np.sin(np.arange(n) / 500.0) + rng.normal(0, 1e-3, n)
    return "true doubles (sine+noise)", _clock(n, 1_000_000), [x]


def jittered_clock(n: int):
    rng = np.random.default_rng(23)
    t = T0 + np.arange(n, dtype=np.int64) * 1_000_000 + rng.integers(-20_000, 20_000, n)
    return "clock: 1 kHz, 20 us jitter", np.sort(t), [np.zeros(n, np.int16)]


def daphnet_clock():
    """Daphnet's own timestamps: 64 Hz written in whole ms, steps of 15 or 16 ms."""
    with open(DAPHNET_CSV, newline="") as f:
        rows = list(csv.reader(f))[1:]
    t = np.array([np.datetime64(r[0].replace(" ", "T"), "ns") for r in rows]).view(np.int64)
    return "clock: Daphnet 15/16 ms", t, [np.zeros(len(t), np.int16)]


def radio_clock(n: int):
    """A radio link's arrival times: 50 Hz, 2 ms of jitter, rounded to the ms."""
    steps = np.round(np.random.default_rng(29).normal(20, 2, n)).astype(np.int64)
    return "clock: 50 Hz ms, 2 ms jitter", T0 + np.cumsum(steps) * 1_000_000, [np.zeros(n, np.int16)]


def gapped_clock(n: int):
    """100 Hz with a quarter of the steps 250 ms long (a duty-cycled sensor)."""
    steps = np.random.default_rng(31).choice([10, 10, 10, 250], n) * 1_000_000
    return "clock: 100 Hz, 1/4 gaps", T0 + np.cumsum(steps), [np.zeros(n, np.int16)]


def _clock(n: int, step: int) -> np.ndarray:
    return T0 + np.arange(n, dtype=np.int64) * step


# --- measuring -------------------------------------------------------------------------

BLOCK = 4096     # the default block size (schema.DEFAULT_BLOCK_SAMPLES)
# decode: runs for at least this x --repeat, the fastest kept (as bench_storage.py
# does): a Daphnet column decodes in ~50 us, and on a shared machine a handful
# of such runs measured the neighbours' load (0.7-1.4 G/s for the same bytes)
MIN_TIMED_SECONDS = 0.05


def encode(t, cols, codec: str):
    """The blocks a cache would seal for these samples, in one buffer, with
    the engine's layout of them (as engine/layout.py builds it from an index)."""
    pieces, infos = [], []
    for lo in range(0, len(t), BLOCK):
        block = encode_block(t[lo:lo + BLOCK], [c[lo:lo + BLOCK] for c in cols], codec=codec)
        pieces.append(block)
        infos.append(parse_block(block))
    buf = np.frombuffer(b"".join(pieces), np.uint8).copy()
    buf.flags.writeable = False
    offsets = np.cumsum([0] + [len(p) for p in pieces[:-1]])
    lay_t = np.zeros((len(infos), 6), np.int64)
    lay_c = np.zeros((len(infos), len(cols), 5), np.int64)
    for b, (info, offset) in enumerate(zip(infos, offsets)):
        starts = offset + info.section_offsets()
        lay_t[b] = (info.t_first, info.tick, info.time_codec, starts[0], info.time_len, info.n_samples)
        for s, e in enumerate(info.entries):
            lay_c[b, s] = (starts[s + 1], e["data_len"], e["codec"], e["dexp"], e["dtype"])
    return pieces, infos, buf, lay_t, lay_c


def check_exact(pieces, t, cols) -> None:
    parts = [decode_block(p) for p in pieces]
    assert np.array_equal(t, np.concatenate([p[0] for p in parts])), "timestamps differ"
    for i, a in enumerate(cols):
        b = np.concatenate([p[1][i] for p in parts])
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), "values differ"


def measure(encoded, repeat: int, time_column: bool):
    """(section bytes, block bytes, decode values/s) of the encoded blocks."""
    pieces, infos, buf, lay_t, lay_c = encoded
    if time_column:
        section = sum(info.time_len for info in infos)
        lay_c, values = lay_c[:, :0], int(lay_t[:, 5].sum())
    else:
        section = sum(int(info.entries["data_len"].sum()) for info in infos)
        values = int(lay_t[:, 5].sum()) * lay_c.shape[1]
    if np.isnan(decode_all(buf, lay_t, lay_c, time_column)):     # (and loads the kernel)
        raise SystemExit("a block did not decode")
    return section, len(buf), values / fastest(lambda: decode_all(buf, lay_t, lay_c, time_column),
                                               repeat)


def fastest(run, repeat: int) -> float:
    """The fastest of ``run()``'s runs, made for at least MIN_TIMED_SECONDS x
    ``repeat`` and at least ``repeat`` times (the caller has warmed it up)."""
    best, runs = float("inf"), 0
    until = time.perf_counter() + MIN_TIMED_SECONDS * repeat
    while runs < repeat or time.perf_counter() < until:
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
        runs += 1
    return best


def peers(arrays, repeat: int):
    values = sum(a.size for a in arrays)
    raw = b"".join(a.tobytes() for a in arrays)
    zstd = len(zstandard.ZstdCompressor(level=19).compress(raw))
    if pcodec_standalone is None:
        return zstd, None, None
    frames = [pcodec_standalone.simple_compress(a, ChunkConfig()) for a in arrays]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for frame in frames:
            pcodec_standalone.simple_decompress(frame)
        best = min(best, time.perf_counter() - start)
    return zstd, sum(map(len, frames)), values / best


def datasets(quick: bool):
    n = 100_000 if quick else 1_000_000
    return ([("values", basic_motions(np.float64)), ("values", basic_motions(np.float32)),
             ("values", basic_motions_widened()),
             ("values", daphnet_g(np.float64)), ("values", daphnet_g(np.float32)),
             ("values", daphnet_ms2())]
            + [("values", temperatures(d, n)) for d in (1, 2, 3)]
            + [("values", ten_digits(n)), ("values", true_doubles(n))]
            + [("time", jittered_clock(n)), ("time", daphnet_clock()), ("time", radio_clock(n)),
               ("time", gapped_clock(n))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="100 k instead of 1 M synthetic values")
    args = parser.parse_args()
    print(f"{'data':<30} {'codec':<8} {'B/value':>8} {'block B/v':>9} {'pcodec':>7} {'ratio':>6} "
          f"{'zstd-19':>8} {'decode G/s':>10} {'pcodec G/s':>10} {'encode M/s':>10}")
    for kind, (label, t, cols) in datasets(args.quick):
        arrays = [t] if kind == "time" else cols
        values = sum(a.size for a in arrays)
        zstd, pco, pco_rate = peers(arrays, args.repeat)
        for codec in ("compact", "fast"):
            encode(t[:4096], [c[:4096] for c in cols], codec)      # compiles the encoder
            start = time.perf_counter()
            encoded = encode(t, cols, codec)
            encode_rate = sum(c.size for c in cols) / (time.perf_counter() - start)
            check_exact(encoded[0], t, cols)
            section, whole, rate = measure(encoded, args.repeat, kind == "time")
            ratio = "-" if pco is None else f"{section / pco:6.2f}"
            print(f"{label:<30} {codec:<8} {section / values:8.3f} {whole / values:9.3f} "
                  f"{'-' if pco is None else format(pco / values, '7.3f')} {ratio:>6} "
                  f"{zstd / values:8.3f} {rate / 1e9:10.2f} "
                  f"{'-' if pco_rate is None else format(pco_rate / 1e9, '10.2f')} {encode_rate / 1e6:10.1f}")


if __name__ == "__main__":
    main()
