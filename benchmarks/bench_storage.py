"""Storage benchmark: bytes per sample, ingest rate and decode rate, side by side.

    python benchmarks/bench_storage.py [--rows 3333334] [--repeat 3]
    python benchmarks/bench_storage.py --ingest-only [--ingest-rows 10000000] [--ingest-threads 1]

Data sets (a *sample* is one value of one channel; rows x channels):

* ``daphnet``: the real Daphnet gait recording in sensorq/data (9 accelerometer
  axes, int16 mg, 64 Hz, 7040 rows).
* ``synthetic``: a 1 kHz 3-axis accelerometer, int16 mg: gravity on z, sensor
  noise, a slow sway and rare shocks of 1.5-5 g (~10 M samples by default).
* ``demo``: the three streams of the built-in demo cache (imu, env, gait), to
  decide the default of the zstd layer.

Columns: the cache with each codec and zstd layer (bytes on disk over samples:
*everything* is counted - timestamps, block headers, statistics, record
framing), and for reference zstd -19 and pcodec over the raw int16 values alone
(no timestamps; pcodec's column is skipped if it is not installed).  Ingest is
the whole append + flush path.  Decode is measured twice, on one core: through
``decode_block`` (the Python API, one call per block) and through the engine's
block decoder in one compiled loop (timestamps to int64, channels to float64:
what every query kernel pays per sample; the fastest of many runs, the machine
being shared).

``compact`` is the default codec: Rice only where it saves more than its
decode time is worth (intcodec.RICE_DECODE_COST bits a value).  The row
"compact, Rice wherever smaller" is the compact encoder before that price
(RICE_DECODE_COST = 0), for comparison; both are read by the same decoder.
The ratio columns put the default's bytes next to pcodec's and its decode
rate next to fast's.  The ingest table writes rows of 3 int16 channels and ns
timestamps to a durable store, next to pyarrow's Parquet writer (zstd level
1, delta-packed timestamps, fsync'd): the default codec with the store's
default encoding threads and with each count of --ingest-threads, and with
the cache's default zstd layer ("auto"; the other rows store none).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard

import sensorq
from sensorq import Channel

from sensorq.codec import intcodec
from sensorq.codec.block import decode_block
from sensorq.engine.kernels import decode_rows, decode_scratch
from sensorq.engine.layout import build_layouts
from sensorq.jitcache import cached, digest
from sensorq.store import cache as sensorq_cache
from sensorq.store.writing import ZSTD_MIN_SAVING
from sensorq.demo import DAPHNET_CSV, SEED, env_samples, imu_samples

try:
    from pcodec import ChunkConfig, standalone as pcodec_standalone
except ImportError:           # optional: the bench extra installs it
    pcodec_standalone = None
try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:           # optional
    pa = None

# (codec, zstd layer); "compact-anyrice" is the compact encoder taking Rice
# wherever it is smaller (RICE_DECODE_COST 0: the default before)
VARIANTS = [("compact", "none"), ("compact-anyrice", "none"), ("compact", "zstd"), ("compact", "auto"),
            ("fast", "none"), ("fast", "zstd")]
MIN_TIMED_SECONDS = 0.3       # decode: run at least this long, keep the fastest run


@contextlib.contextmanager
def codec_variant(codec: str):
    """(stream codec) for a VARIANTS codec name: the Rice price of the
    compact encoder set for the duration."""
    saved = intcodec.RICE_DECODE_COST
    if codec == "compact-anyrice":
        intcodec.RICE_DECODE_COST = 0.0
    try:
        yield "compact" if codec.startswith("compact") else codec
    finally:
        intcodec.RICE_DECODE_COST = saved


def daphnet():
    with open(DAPHNET_CSV, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    t = np.array([np.datetime64(r[0].replace(" ", "T"), "ns") for r in body]).view(np.int64)
    cols = [np.array([int(r[i]) for r in body], np.int16) for i in range(1, 10)]
    return "daphnet 9 axes 64 Hz", t, cols, header[1:10]


def synthetic(rows: int, seed: int = 11):
    rng = np.random.default_rng(seed)
    t = 1_700_000_000_000_000_000 + np.arange(rows, dtype=np.int64) * 1_000_000
    sway = 80 * np.sin(np.arange(rows) * (2 * np.pi / 7000.0))
    x = rng.normal(0, 12, rows) + sway
    y = rng.normal(0, 12, rows) - 0.5 * sway
    z = 1000 + rng.normal(0, 15, rows)
    for at in rng.choice(rows - 200, size=max(1, rows // 30_000), replace=False):
        length = int(rng.integers(20, 120))
        z[at:at + length] += rng.uniform(1500, 5000) * np.sin(np.linspace(0, np.pi, length))
    cols = [np.clip(np.rint(a), -32768, 32767).astype(np.int16) for a in (x, y, z)]
    return "synthetic 3 axes 1 kHz", t, cols, ["x", "y", "z"]


def store(tmp: Path, t, cols, names, codec: str, compression: str):
    """Append + flush into a fresh cache; (seconds, stored bytes, cache path)."""
    path = tmp / f"{codec}-{compression}"
    shutil.rmtree(path, ignore_errors=True)
    with codec_variant(codec) as stream_codec:
        start = time.perf_counter()
        with sensorq.open(path, create=True, capacity="1GiB", compression=compression) as cache:
            cache.create_stream("s", [Channel(n, str(c.dtype)) for n, c in zip(names, cols)],
                                codec=stream_codec)
            cache.append("s", t, cols)
            cache.flush()
            seconds = time.perf_counter() - start
            stored = cache.info()["streams"]["s"]["bytes"]
    return seconds, stored, path


def parquet_store(tmp: Path, t, cols, names) -> tuple[float, int]:
    """pyarrow's Parquet writer, as the issue measured it: zstd level 1,
    delta-packed timestamps, written and fsync'd; (seconds, bytes)."""
    path = tmp / "peer.parquet"
    start = time.perf_counter()
    table = pa.table({"t": t, **dict(zip(names, cols))})
    pq.write_table(table, path, compression="zstd", compression_level=1, use_dictionary=False,
                   column_encoding={"t": "DELTA_BINARY_PACKED"})
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - start
    return seconds, path.stat().st_size


def warm_up(tmp: Path) -> None:
    """Load the numba kernels (compiled or from the disk cache) before timing."""
    label, t, cols, names = synthetic(50_000)
    for codec in ("compact", "fast"):
        _, _, path = store(tmp, t, cols, names, codec, "none")
        decode_rate(path, 1)
        kernel_decode_rates([path], 0)
        shutil.rmtree(path, ignore_errors=True)


def decode_rate(path: Path, repeat: int) -> float:
    """M samples/s of decode_block over every block (best of ``repeat``)."""
    with sensorq.open(path, readonly=True) as cache:
        index = cache.blocks("s")
        samples = int(index.n_samples.sum()) * index.entries.shape[1]
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for i in range(len(index)):
                decode_block(index.buffers[index.buffer_of[i]], int(index.offset[i]), int(index.length[i]))
            best = min(best, time.perf_counter() - start)
    return samples / best / 1e6


# filed under a digest of the code it compiles in (sensorq/jitcache.py): with
# plain njit(cache=True) a decoder change left the old decoder in the cache
@cached(digest("codec/*.py", "engine/*.py"))
def decode_all(buf, lay_t, lay_c, need_time):
    """Decode every column of every block, as the query kernels do (timestamps to
    int64 if need_time, channels to float64), on one core; returns a checksum
    (NaN if a block failed to decode).  bench_floats.py times it too.  The
    working arrays come from the kernels' decode_scratch once, as the count
    kernels take them once per chunk of blocks (allocated per block, they
    cost an ENTROPY row ~2.5 % of its decode)."""
    total = 0.0
    most = lay_t[:, 5].max() if lay_t.shape[0] else 0
    t, raw, words, scratch, _ = decode_scratch(most, lay_c.shape[1], 1)
    for b in range(lay_t.shape[0]):
        n = lay_t[b, 5]
        if decode_rows(buf, b, n, lay_t, lay_c, need_time, t, raw, words, scratch) != 0:
            return np.nan
        if lay_c.shape[1]:
            total += raw[0, n - 1]
        if need_time:
            total += t[n - 1]
    return total


def kernel_decode_rates(paths: list[Path], repeat: int) -> list[float]:
    """M samples/s of the engine's block decoder over every block of each
    cache, one core.  The caches take turns, one run each, for
    MIN_TIMED_SECONDS x ``repeat`` x their number, and each keeps its fastest
    run: on a shared machine, load then slows every variant alike, so the
    ratios hold even when the absolute rates do not (a small data set takes
    microseconds: one run would be noise)."""
    caches = [sensorq.open(path, readonly=True) for path in paths]
    try:
        jobs = []
        for cache in caches:
            index = cache.blocks("s")
            layouts = build_layouts(index, np.arange(index.entries.shape[1]))
            for lay in layouts:                      # loads the kernel
                decode_all(lay.buf, lay.lay_t, lay.lay_c, True)
            jobs.append((layouts, int(index.n_samples.sum()) * index.entries.shape[1]))
        best = [float("inf")] * len(jobs)
        until = time.perf_counter() + MIN_TIMED_SECONDS * repeat * len(jobs)
        while time.perf_counter() < until:
            for j, (layouts, _) in enumerate(jobs):
                start = time.perf_counter()
                for lay in layouts:
                    decode_all(lay.buf, lay.lay_t, lay.lay_c, True)
                best[j] = min(best[j], time.perf_counter() - start)
        return [samples / seconds / 1e6 for (_, samples), seconds in zip(jobs, best)]
    finally:
        for cache in caches:
            cache.close()


def reference_sizes(cols) -> dict[str, float | None]:
    samples = sum(c.size for c in cols)
    raw = b"".join(c.tobytes() for c in cols)
    sizes = {"zstd -19 raw": len(zstandard.ZstdCompressor(level=19).compress(raw)) / samples}
    if pcodec_standalone is not None:
        total = sum(len(pcodec_standalone.simple_compress(c, ChunkConfig())) for c in cols)
        sizes["pcodec raw"] = total / samples
    else:
        sizes["pcodec raw"] = None
    return sizes


def bench_dataset(tmp: Path, dataset, repeat: int) -> list[tuple]:
    label, t, cols, names = dataset
    samples = len(t) * len(cols)
    rows, paths = [], []
    for codec, compression in VARIANTS:
        seconds, stored, path = store(tmp, t, cols, names, codec, compression)
        for _ in range(repeat - 1):                 # best of repeat for the ingest rate
            seconds = min(seconds, store(tmp, t, cols, names, codec, compression)[0])
        layer = {"none": "no zstd", "zstd": "+ zstd", "auto": "+ zstd if >=25% (auto)"}[compression]
        name = "compact, Rice wherever smaller" if codec == "compact-anyrice" else codec
        rows.append([label, f"sensorq {name} {layer}", stored / samples, samples / seconds / 1e6,
                     decode_rate(path, repeat), None])
        paths.append(path)
    for row, rate in zip(rows, kernel_decode_rates(paths, repeat)):
        row[5] = rate
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
    rows = [tuple(row) for row in rows]
    for name, size in reference_sizes(cols).items():
        rows.append((label, name + " (values only)", size, None, None, None))
    return rows


def demo_zstd_table(tmp: Path) -> list[tuple]:
    """The zstd layer on the demo data: bytes with none / auto / zstd, and how
    many sealed blocks zstd makes smaller by auto's bar (ZSTD_MIN_SAVING)."""
    rng = np.random.default_rng(SEED)
    imu_t, imu_cols = imu_samples(rng)
    env_t, env_cols = env_samples(rng)
    _, gait_t, gait_cols, gait_names = daphnet()
    streams = [("imu", imu_t, imu_cols, ["x", "y", "z", "accel"]), ("env", env_t, env_cols, ["temp"]),
               ("gait", gait_t, gait_cols, gait_names)]
    out = []
    cctx = zstandard.ZstdCompressor(level=3)
    for name, t, cols, names in streams:
        sizes = {}
        for compression in ("none", "auto", "zstd"):
            _, sizes[compression], path = store(tmp, t, cols, names, "compact", compression)
            if compression == "none":
                with sensorq.open(path, readonly=True) as cache:
                    index = cache.blocks("s")
                    gains = [1 - len(cctx.compress(index.raw(i).tobytes())) / int(index.length[i])
                             for i in range(len(index))]
            shutil.rmtree(path, ignore_errors=True)
        helped = sum(g >= ZSTD_MIN_SAVING for g in gains)
        out.append((name, len(gains), helped, sizes["none"], sizes["auto"], sizes["zstd"],
                    float(np.median(gains)) if gains else 0.0))
    return out


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@contextlib.contextmanager
def encode_threads(threads: int | None):
    """The store's encoding threads (cache.ENCODE_THREADS) set for the duration."""
    saved = sensorq_cache.ENCODE_THREADS
    if threads is not None:
        sensorq_cache.ENCODE_THREADS = threads
    try:
        yield
    finally:
        sensorq_cache.ENCODE_THREADS = saved


def ingest_table(tmp: Path, rows: int, repeat: int, threads: list[int]) -> list[tuple]:
    """Rows/s into a durable store, 3 int16 channels + ns timestamps: the
    default codec (with the store's default encoding threads, and with each
    count in ``threads``; and with the cache's default zstd layer, "auto"),
    fast, and pyarrow's Parquet writer (its own default threads); the other
    sensorq rows store no zstd layer.  The writers take turns (one run each,
    ``repeat`` rounds) and each keeps its fastest run, so that load on a
    shared machine slows them alike."""
    label, t, cols, names = synthetic(rows)
    default = sensorq_cache.ENCODE_THREADS
    writers = [("compact", None)] + [("compact", k) for k in threads if k != default] + \
        [("compact+auto", None), ("compact-anyrice", None), ("fast", None)] + \
        ([("parquet", None)] if pa is not None else [])
    best = {w: (float("inf"), 0) for w in writers}
    for _ in range(repeat):
        for w in writers:
            codec, k = w
            if codec == "parquet":
                seconds, size = parquet_store(tmp, t, cols, names)
            else:
                codec, compression = codec.split("+") if "+" in codec else (codec, "none")
                with encode_threads(k):
                    seconds, size, path = store(tmp, t, cols, names, codec, compression)
                shutil.rmtree(path, ignore_errors=True)
            best[w] = min(best[w], (seconds, size))
    names_of = {"compact": "sensorq compact", "compact-anyrice": "sensorq compact, Rice wherever smaller",
                "compact+auto": "sensorq compact, zstd auto (cache default)", "fast": "sensorq fast",
                "parquet": "Parquet (pyarrow, zstd 1)"}

    def name(w):
        if w[0] == "parquet":
            return names_of["parquet"]
        return f"{names_of[w[0]]}, {default if w[1] is None else w[1]} thr"
    return [(name(w), rows / best[w][0] / 1e6, best[w][1] / rows) for w in writers]


def print_storage(rows) -> None:
    print(f"{'data':<24} {'storage':<46} {'B/sample':>9} {'ingest M/s':>11} {'decode_block M/s':>17} "
          f"{'kernel decode M/s':>18}")
    for label, name, size, ingest, decode, kernel in rows:
        print(f"{label:<24} {name:<46} {fmt(size, '9.3f')} {fmt(ingest, '11.1f')} {fmt(decode, '17.1f')} "
              f"{fmt(kernel, '18.1f')}")
    print()
    print("the default codec (compact, no zstd) next to its peers, per data set:")
    print(f"{'data':<24} {'B/sample':>9} {'/ pcodec':>9} {'/ zstd -19':>11} {'/ compact before':>17} "
          f"{'decode G/s':>11} {'/ fast':>7} {'/ compact before':>17}")
    for label in dict.fromkeys(r[0] for r in rows):
        by_name = {r[1]: r for r in rows if r[0] == label}
        default = by_name["sensorq compact no zstd"]
        before = by_name["sensorq compact, Rice wherever smaller no zstd"]
        fast = by_name["sensorq fast no zstd"]
        pcodec = by_name["pcodec raw (values only)"][2]
        zstd19 = by_name["zstd -19 raw (values only)"][2]
        print(f"{label:<24} {default[2]:9.3f} {fmt(pcodec and default[2] / pcodec, '9.2f')} "
              f"{default[2] / zstd19:11.2f} {default[2] / before[2]:17.2f} {default[5] / 1e3:11.2f} "
              f"{default[5] / fast[5]:7.2f} {default[5] / before[5]:17.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_333_334, help="rows of the synthetic set (x3 samples)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ingest-rows", type=int, default=10_000_000,
                        help="rows of the ingest comparison (0: skip it)")
    parser.add_argument("--ingest-threads", default="1",
                        help="encoding threads of extra compact ingest rows, comma-separated (the "
                             "store's default is always measured)")
    parser.add_argument("--ingest-only", action="store_true", help="only the ingest table")
    parser.add_argument("--no-demo", action="store_true", help="skip the zstd table of the demo data")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sensorq-bench-"))
    try:
        warm_up(tmp)
        if not args.ingest_only:
            rows = bench_dataset(tmp, daphnet(), args.repeat) + bench_dataset(tmp, synthetic(args.rows),
                                                                              args.repeat)
            print_storage(rows)
        if args.ingest_rows:
            print()
            print(f"ingest, {args.ingest_rows:,} rows of 3 int16 channels + ns timestamps, one call, "
                  f"durable (fastest of {args.repeat} turns each; thr: the store's encoding threads)")
            threads = [int(k) for k in args.ingest_threads.split(",") if k.strip()]
            table = ingest_table(tmp, args.ingest_rows, args.repeat, threads)
            peer = table[-1][1] if pa is not None else None
            print(f"{'writer':<50} {'M rows/s':>9} {'/ Parquet':>10} {'B/row':>7}")
            for name, rate, per_row in table:
                print(f"{name:<50} {rate:9.2f} {fmt(peer and rate / peer, '10.2f')} {per_row:7.2f}")
        if not args.no_demo and not args.ingest_only:
            print()
            print("zstd level 3 over sealed compact blocks, demo data (bytes on disk incl. framing)")
            print(f"{'stream':<8} {'blocks':>7} {'>=25% saved':>11} {'none':>11} {'auto':>11} {'zstd':>11} "
                  f"{'median gain':>12}")
            for name, blocks, helped, none, auto, zstd_bytes, gain in demo_zstd_table(tmp):
                print(f"{name:<8} {blocks:>7} {helped:>11} {none:>11,} {auto:>11,} {zstd_bytes:>11,} "
                      f"{gain:>12.1%}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
