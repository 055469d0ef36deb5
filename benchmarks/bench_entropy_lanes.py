"""A design study: could ENTROPY sections decode at >= 1 G values/s with lanes that share no bit position?

    python benchmarks/bench_entropy_lanes.py [--repeat 5] [--quick]

sensorq codes low-entropy residuals (a temperature's tenths, a radio's
clock) by tANS with eight states that read one bit stream
(sensorq/codec/tans.py): ~0.8 ns a residual, so those float rows decode at
0.7-0.8 G values/s, under issue 11's 1 G/s.  This script measures a
candidate before any payload form is designed around it: interleaved rANS,
16 or 32 lanes, 32-bit states, one stream of 16-bit words that the lanes
needing a refill take with one vector expand (or 16-bit states and a stream
of bytes, whose states cost a section half the bytes) (entropy_lanes.c, AVX-512
intrinsics, built here with the system C compiler; the machine needs
AVX-512F).  It is not part of sensorq.

For bench_floats.py's four ENTROPY rows (temperatures at 1 and 2 decimals:
their integers' order-1 residuals per 4096-value block, as sensorq's compact
codec sees them; the 50 Hz radio clock and the gapped 100 Hz clock: their
time words', ticks since the first sample) it prints, per decoder: bytes a
value of the study's coded form (words, the lanes' states, and a header as
an ENTROPY payload's), ns a value, and the time against sensorq's own decode
of the same rows in the same run (bench_floats.measure: compact blocks to
float64 values, or to int64 timestamps, sums and scaling included).  Every
decoder's output is checked against the residuals: the symbol decoders'
symbols, and the fused decoder's values against numpy's running sums over
the same divisor (10^decimals as the codec's DECIMAL divides; 1 for the
clocks' words, written as float64: a stand-in for t = t_first + tick x word).
"""
from __future__ import annotations

import argparse
import ctypes
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from numba import njit

from bench_floats import BLOCK, encode, fastest, gapped_clock, measure, radio_clock, temperatures
from sensorq.codec.bits import varint_size

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "entropy_lanes.c"
MOST_SCALE_IN_REGISTERS = 6     # entropy_lanes.c's RegisterTable: up to 64 slots
MOST_SCALE_GATHERED = 12        # the table entries' 12-bit bias and 13-bit frequency


# --- the study's coder ------------------------------------------------------------------

def zigzag(d: np.ndarray) -> np.ndarray:
    return ((d << 1) ^ (d >> 63)).astype(np.uint64)


def normalized(counts: np.ndarray, scale: int) -> np.ndarray:
    """counts scaled to sum to 2^scale, each at least 1."""
    total = 1 << scale
    freqs = np.maximum(1, np.round(counts * total / counts.sum()).astype(np.int64))
    while freqs.sum() != total:
        big = int(np.argmax(freqs))
        freqs[big] += total - freqs.sum() if freqs.sum() < total else -min(freqs.sum() - total,
                                                                            freqs[big] - 1)
    return freqs


def best_scale(counts: np.ndarray, most: int) -> tuple[int, np.ndarray]:
    """The table size (2^scale slots, scale <= most) that codes the counts in the fewest bits."""
    best = None
    for scale in range(max(5, int(np.ceil(np.log2(len(counts))))), most + 1):
        freqs = normalized(counts, scale)
        bits = float((counts * (scale - np.log2(freqs))).sum())
        if best is None or bits < best[0] - 0.5:
            best = (bits, scale, freqs)
    return best[1], best[2]


@njit(cache=False)
def rans_encode(symbols, freqs, starts, scale, lanes, io_bits, words_backwards, states):
    """Lane i % lanes codes symbols[i], its state in [2^io_bits, 2^(2 io_bits)),
    io_bits (16 or 8) a word; returns how many words were written (last
    first: the decoder reads them reversed)."""
    low = np.uint64(1 << io_bits)
    x = np.full(lanes, low, np.uint64)
    written = 0
    for i in range(symbols.shape[0] - 1, -1, -1):
        j = i % lanes
        f, c = np.uint64(freqs[symbols[i]]), np.uint64(starts[symbols[i]])
        xj = x[j]
        if xj >= ((low >> np.uint64(scale)) << np.uint64(io_bits)) * f:
            words_backwards[written] = xj & (low - np.uint64(1))
            written += 1
            xj >>= np.uint64(io_bits)
        x[j] = ((xj // f) << np.uint64(scale)) + (xj % f) + c
    for j in range(lanes):
        states[j] = np.uint32(x[j])
    return written


def decoding_table(freqs: np.ndarray, scale: int, top: np.ndarray) -> np.ndarray:
    """table[slot] = bias | freq << 12 | top[symbol] << 25 (top: 7 bits, signed for deltas)."""
    table = np.empty(1 << scale, np.uint32)
    start = 0
    for s, f in enumerate(freqs.tolist()):
        slots = np.arange(start, start + f)
        table[slots] = (slots - start) | (f << 12) | ((int(top[s]) & 0x7F) << 25)
        start += f
    return table


class CodedBlock:
    """One block's order-1 residuals coded for ``lanes`` lanes."""

    def __init__(self, ints: np.ndarray, lanes: int, most_scale: int, io_bits: int = 16):
        deltas = np.diff(ints)
        self.first = int(ints[0])
        self.m = len(deltas)
        values, self.symbols = np.unique(deltas, return_inverse=True)
        self.symbols = self.symbols.astype(np.int64).reshape(-1)
        counts = np.bincount(self.symbols)
        self.scale, freqs = best_scale(counts, most_scale)
        word = np.uint16 if io_bits == 16 else np.uint8
        backwards = np.zeros(2 * self.m + 2, word)
        self.states = np.zeros(lanes, np.uint32)
        n_words = rans_encode(self.symbols, freqs, np.concatenate([[0], np.cumsum(freqs)[:-1]]),
                              self.scale, lanes, io_bits, backwards, self.states)
        self.words = np.zeros(n_words + 32, word)       # 32 words of padding: a step reads 16
        self.words[:n_words] = backwards[:n_words][::-1]
        self.n_words = n_words
        self.index_table = decoding_table(freqs, self.scale, np.arange(len(values)))
        self.delta_table = decoding_table(freqs, self.scale, values) if np.abs(values).max() < 64 \
            else None
        header = 2 + sum(varint_size(v) for v in zigzag(values)) \
            + ((len(values) - 1) * self.scale + 7) // 8 + varint_size(zigzag(np.array([self.first]))[0])
        self.bytes = (io_bits // 8) * (n_words + 2 * lanes) + header
        self.deltas = deltas


# --- building and calling the C decoders ------------------------------------------------------

def load_library(work: Path):
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx512f" not in flags:
        raise SystemExit("this study needs AVX-512F (entropy_lanes.c is written with its intrinsics)")
    lib_path = work / "entropy_lanes.so"
    try:
        subprocess.run(["cc", "-O3", "-march=native", "-std=c99", "-Wall", "-Wextra", "-Werror",
                        "-shared", "-fPIC", "-o", str(lib_path), str(SOURCE)], check=True)
    except FileNotFoundError:
        raise SystemExit("this study builds entropy_lanes.c with the system C compiler (cc): "
                         "none was found") from None
    lib = ctypes.CDLL(str(lib_path))
    P, I64, I32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.lanes_run.argtypes = [I32, I64, I32, P, P, P, P, P, P, P, P, ctypes.c_double, I64, P, P]
    lib.lanes_run.restype = I64
    return lib


def _p(a: np.ndarray) -> int:
    return a.ctypes.data


class Row:
    """A row's coded blocks packed for lanes_run: one call decodes them all."""

    def __init__(self, blocks: list[CodedBlock], divisor: float):
        self.blocks, self.divisor = blocks, divisor
        self.lanes = len(blocks[0].states)
        self.states = np.concatenate([b.states for b in blocks])
        self.words = np.concatenate([b.words for b in blocks])
        self.word_at = np.cumsum([0] + [len(b.words) for b in blocks[:-1]]).astype(np.int64)
        self.m = np.array([b.m for b in blocks], np.int64)
        self.scale = np.array([b.scale for b in blocks], np.int32)
        self.first = np.array([b.first for b in blocks], np.int32)
        self.table_at = np.cumsum([0] + [len(b.index_table) for b in blocks[:-1]]).astype(np.int64)
        self.index_tables = np.concatenate([b.index_table for b in blocks])
        fused = all(b.delta_table is not None for b in blocks)
        self.delta_tables = np.concatenate([b.delta_table for b in blocks]) if fused else None
        self.stride = BLOCK + 64
        self.out8 = np.zeros(len(blocks) * self.stride, np.uint8)
        self.out64 = np.zeros(len(blocks) * self.stride, np.float64)

    def run(self, lib, decoder: int) -> int:
        tables = self.delta_tables if decoder in (FUSED, FUSED_BYTES) else self.index_tables
        return lib.lanes_run(decoder, len(self.blocks), self.lanes, _p(self.states), _p(self.words),
                             _p(self.word_at), _p(tables), _p(self.table_at), _p(self.m),
                             _p(self.scale), _p(self.first), self.divisor, self.stride, _p(self.out8),
                             _p(self.out64))

    def check(self, decoder: int) -> None:
        """The decoded steps equal the coded residuals (the vector decoders stop
        at the last whole step; the scalar one decodes all and checks the end states)."""
        for k, b in enumerate(self.blocks):
            done = b.m if decoder == SCALAR else b.m // self.lanes * self.lanes
            at = k * self.stride
            if decoder in (FUSED, FUSED_BYTES):
                sums = (b.first + np.cumsum(b.deltas[:done])).astype(np.int32)
                assert np.array_equal(self.out64[at:at + done], sums.astype(np.float64) / self.divisor), \
                    "values differ"
            else:
                assert np.array_equal(self.out8[at:at + done], b.symbols[:done]), "symbols differ"


SCALAR, GATHERED, REGISTERS, FUSED, FUSED_BYTES = range(5)
DECODER_NAMES = {SCALAR: "scalar reference", GATHERED: "vector, table gathered",
                 REGISTERS: "vector, table in registers", FUSED: "vector, sums fused, float64 out",
                 FUSED_BYTES: "fused, 16-bit states, byte stream"}


def temperature_row(decimals: int, n: int):
    """(name, timestamps, values, the integers coded, their divisor, whether the time column is studied)."""
    name, t, (values,) = temperatures(decimals, n)
    return name, t, values, np.round(values * 10**decimals).astype(np.int64), 10.0 ** decimals, False


def clock_row(make, n: int):
    """A clock's time words (ticks since its first sample): the study's decoder
    writes them as float64 (divisor 1), standing in for t = t_first + tick x word."""
    name, t, (values,) = make(n)
    tick = int(np.gcd.reduce(np.diff(t)))
    return name, t, values, (t - t[0]) // tick, 1.0, True


def study(lib, data, repeat: int) -> list[tuple]:
    name, t, values, ints, divisor, time_column = data
    encoded = encode(t, [values], "compact")
    _, _, engine_rate = measure(encoded, repeat, time_column)
    section = (lambda info: info.time_len) if time_column else \
        (lambda info: int(info.entries["data_len"].sum()))
    sensorq_bytes = sum(section(info) for info in encoded[1]) / len(values)
    engine_ns = 1e9 / engine_rate
    rows = [(name, "sensorq compact (tANS, 8 states)", "-", "-", sensorq_bytes, engine_ns, 1.0)]
    for lanes, registers in ((16, False), (16, True), (32, True)):
        most = MOST_SCALE_IN_REGISTERS if registers else MOST_SCALE_GATHERED
        pieces = [ints[lo:lo + BLOCK] for lo in range(0, len(ints), BLOCK) if len(ints[lo:lo + BLOCK]) > lanes]
        if any(np.unique(np.diff(piece)).size > 1 << most for piece in pieces):
            continue            # more symbols than the table has slots
        blocks = [CodedBlock(piece, lanes, most) for piece in pieces]
        row = Row(blocks, divisor)
        coded_bytes = sum(b.bytes for b in blocks) / row.m.sum()
        chosen = [SCALAR, REGISTERS if registers else GATHERED]
        if registers and lanes == 32 and row.delta_tables is not None:
            chosen.append(FUSED)
        if registers and lanes == 32 and row.delta_tables is not None:
            chosen.append(FUSED_BYTES)
        for decoder in chosen:
            if decoder == FUSED_BYTES:
                row = Row([CodedBlock(piece, lanes, most, io_bits=8) for piece in pieces], divisor)
                coded_bytes = sum(b.bytes for b in row.blocks) / row.m.sum()
            if row.run(lib, decoder) != -1:
                raise SystemExit(f"{DECODER_NAMES[decoder]}: a block did not decode")
            row.check(decoder)      # (and warms the decoder up)
            ns = fastest(lambda: row.run(lib, decoder), repeat) / row.m.sum() * 1e9
            rows.append((name, DECODER_NAMES[decoder], lanes, 1 << most, coded_bytes, ns, engine_ns / ns))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="100,000 values a row, not 1 M")
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as work:
        lib = load_library(Path(work))
        data = [temperature_row(1, n), temperature_row(2, n), clock_row(radio_clock, n),
                clock_row(gapped_clock, n)]
        rows = [row for one in data for row in study(lib, one, args.repeat)]
    print(f"{'data':28s} {'decoder':34s} {'lanes':>5s} {'slots':>6s} {'B/value':>8s} "
          f"{'ns/value':>9s} {'G/s':>6s} {'÷ sensorq':>10s}")
    for name, label, lanes, slots, nbytes, ns, ratio in rows:
        print(f"{name:28s} {label:34s} {lanes!s:>5s} {slots!s:>6s} {nbytes:8.4f} {ns:9.3f} "
              f"{1 / ns:6.2f} {ratio:9.2f}x")
    print("(÷ sensorq: sensorq's decode time of the row over the decoder's; above 1, faster.  The\n"
          " symbol decoders write symbol indices, not values: only the fused one does the whole job.)")


if __name__ == "__main__":
    sys.exit(main())
