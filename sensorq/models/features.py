"""Window features from a cache's blocks (docs/models.md, "Features", "Windows").

``compute_windows`` walks ``cache.blocks(stream, start, end)`` one block at a
time, keeping only the samples that a window still needs (a window crosses
block edges; the whole stream is never materialised), and hands each batch of
complete windows to the numba kernels of kernels.py.

Windows are [k * hop, k * hop + window) for integers k: aligned to multiples of
hop since the epoch, like ``by`` buckets.  A range [start, end) gets the
windows that lie entirely inside it.  A window gives a row only if it holds at
least the pipeline's ``min_samples`` samples (after dropping samples where a
float input is NaN).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

from .kernels import (N_SEG_FIELDS, block_segments, float_features,
                      int_features, int_mag, int_signal, merge_segments, segment_windows,
                      stats_by_segments, stats_direct)
from .model import (BAND, MAD, MAX, MAX_MAG, MAX_WINDOW_SAMPLES, MEAN, MIN, OP_BY_NAME, OP_SCALE,
                    PTP, RATIO, RMS, STD, Feature, Input, ModelError, Pipeline)

BASIC = ("mean", "std", "min", "max", "rms", "ptp", "mad")
BATCH = 1 << 16             # samples gathered before complete windows are computed
_DUR_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
              "min": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}


def duration_ns(value, what: str = "duration") -> int:
    """ns from an int (ns) or text like '2s', '500ms', '1m30s' (exact)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        ns = int(value)
    elif isinstance(value, str) and re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|min|m|h|d))+", value.strip()):
        ns = 0
        for number, _, unit in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|min|m|h|d)", value.strip()):
            ns += Fraction(number) * _DUR_UNITS[unit]
        ns = round(ns)
    else:
        raise ModelError(f"{what} {value!r} is not a duration such as 2s or 500ms")
    if ns <= 0:
        raise ModelError(f"{what} {value!r} must be positive")
    return int(ns)


# --- building a pipeline -------------------------------------------------------------

def make_pipeline(stream, features=None, *, window, hop, channels=None, mags=(), cache=None,
                  min_samples=None) -> Pipeline:
    """A feature pipeline over ``stream`` (a sensorq Stream).

    ``features``: a list of texts like ``mean(x)``, ``std(mag(x, y, z))``,
    ``band(x, 3, 8)`` (band amplitude over 3..8 Hz), ``bandratio(x, 3, 8, 0.5, 3)``
    or ``freeze(x)`` (the freezing-of-gait index, bandratio 3-8 Hz over 0.5-3 Hz);
    None means mean, std, min, max, rms, ptp and mad of every channel in
    ``channels`` (default: all) and of each ``mags`` group.  ``cache`` lets the
    exponents of 32/64-bit and float channels be chosen from the block statistics."""
    window_ns, hop_ns = duration_ns(window, "window"), duration_ns(hop, "hop")
    rate_mhz = int(round(stream.rate_hz * 1000)) if stream.rate_hz else 0
    if features is None:
        names = list(channels) if channels is not None else [c.name for c in stream.channels]
        signals = names + [f"mag({', '.join(g)})" for g in mags]
        features = [f"{op}({s})" for s in signals for op in BASIC]
    builder = _Builder(stream, cache, window_ns, rate_mhz)
    feats = [builder.feature(text) for text in features]
    if min_samples is None:
        nominal = window_ns * rate_mhz / 1000 / 1e9
        min_samples = max(2, int(nominal // 2)) if rate_mhz else 2
    return Pipeline(stream.name, builder.inputs, builder.signals, feats, window_ns, hop_ns,
                    rate_mhz, int(min(min_samples, MAX_WINDOW_SAMPLES)))


class _Builder:
    def __init__(self, stream, cache, window_ns: int, rate_mhz: int):
        self.stream, self.cache, self.window_ns, self.rate_mhz = stream, cache, window_ns, rate_mhz
        self.inputs: list[Input] = []
        self.signals: list[tuple[int, ...]] = []

    def feature(self, text: str) -> Feature:
        m = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", text)
        if not m:
            raise ModelError(f"feature {text!r} is not written op(signal), e.g. mean(x)")
        op_name, args = m.group(1).lower(), m.group(2)
        sig_text, numbers = _split_args(args)
        signal = self.signal(sig_text)
        if op_name == "freeze":
            op_name, numbers = "bandratio", [3.0, 8.0, 0.5, 3.0]
        op = OP_BY_NAME.get(op_name)
        if op is None:
            raise ModelError(f"unknown feature {op_name!r}; known: {', '.join(OP_BY_NAME)}, freeze")
        want = {BAND: 2, RATIO: 4}.get(op, 0)
        if len(numbers) != want:
            raise ModelError(f"feature {text!r}: {op_name} takes {want} frequencies in Hz")
        if op == BAND:
            return Feature(op, signal, self.steps(numbers[0], numbers[1], text))
        if op == RATIO:
            return Feature(op, signal, self.steps(numbers[0], numbers[1], text),
                           self.steps(numbers[2], numbers[3], text))
        return Feature(op, signal)

    def steps(self, lo: float, hi: float, text: str) -> tuple[int, ...]:
        """Phase steps of the window's DFT frequencies j / window in [lo, hi) Hz."""
        if not self.rate_mhz:
            raise ModelError(f"feature {text!r} needs the stream's sample rate (rate_hz)")
        fs = self.rate_mhz / 1000
        seconds = self.window_ns / 1e9
        freqs = [j / seconds for j in range(1, int(hi * seconds) + 2) if lo <= j / seconds < hi]
        steps = tuple(int(round(f / fs * 2**32)) for f in freqs if f < fs / 2)
        if not steps or len(steps) > 255:
            raise ModelError(f"feature {text!r}: the band holds {len(steps)} frequencies of the "
                             f"window's spectrum (1..255; widen the band or the window)")
        return steps

    def signal(self, text: str) -> int:
        m = re.fullmatch(r"\s*mag\s*\((.*)\)\s*", text)
        names = [s.strip() for s in m.group(1).split(",")] if m else [text.strip()]
        if not 1 <= len(names) <= MAX_MAG:
            raise ModelError(f"mag() of {len(names)} channels: at most {MAX_MAG}")
        key = tuple(self.input(n) for n in names)
        if key not in self.signals:
            self.signals.append(key)
        return self.signals.index(key)

    def input(self, name: str) -> int:
        for i, inp in enumerate(self.inputs):
            if inp.name == name:
                return i
        try:
            channel = self.stream.channel(name)
        except Exception as exc:      # SchemaError: say it as a model error
            raise ModelError(str(exc)) from None
        self.inputs.append(Input(name, channel.dtype_code, self.exponent(channel)))
        return len(self.inputs) - 1

    def exponent(self, channel) -> int:
        """0 for int8/int16; otherwise the largest e that keeps the channel's
        largest stored magnitude (from block statistics) within 2^14 * 2^-e,
        so the signal uses int16 with headroom."""
        if channel.dtype in ("int8", "int16"):
            return 0
        biggest = _largest_magnitude(self.cache, self.stream, channel)
        if not biggest or not math.isfinite(biggest):
            return 0
        e = 14 - math.ceil(math.log2(biggest + 1e-300))
        return int(min(e, 0) if channel.is_integer else max(min(e, 62), -62))


def _split_args(args: str) -> tuple[str, list[float]]:
    depth, parts, cur = 0, [], ""
    for ch in args:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    try:
        return parts[0], [float(p.strip().removesuffix("Hz")) for p in parts[1:]]
    except ValueError:
        raise ModelError(f"feature arguments {args!r}: frequencies must be numbers in Hz") from None


def _largest_magnitude(cache, stream, channel) -> float:
    if cache is None:
        return 0.0
    idx = cache.blocks(stream.name)
    if not len(idx):
        return 0.0
    j = stream.channel_index(channel.name)
    ent = idx.entries[:, j]
    vals = np.abs(np.concatenate([ent["min"].view(channel_stat_dtype(channel)),
                                  ent["max"].view(channel_stat_dtype(channel))]).astype(np.float64))
    vals = vals[np.isfinite(vals)]
    return float(vals.max()) if vals.size else 0.0


def channel_stat_dtype(channel):
    return np.float64 if not channel.is_integer else np.int64


# --- computing windows -----------------------------------------------------------------

@dataclass
class Windows:
    start: np.ndarray                  # int64 ns
    end: np.ndarray
    n: np.ndarray                      # samples in the window
    codes: np.ndarray | None           # int64 (n_windows, n_features)
    values: np.ndarray | None          # float64 (n_windows, n_features), code units * scale
    label: np.ndarray | None = None    # int64 majority label
    keep: np.ndarray | None = None     # bool: every sample passed the mask
    pure: np.ndarray | None = None     # bool: every sample has the same label
    blocks: int = 0                    # blocks decoded (for explain)
    samples: int = 0                   # samples read from them inside the range

    def __len__(self) -> int:
        return int(self.start.shape[0])


class _Plan:
    """The pipeline's features as the flat arrays the kernels take."""

    def __init__(self, p: Pipeline):
        self.ops = np.array([f.op for f in p.features], np.int64)
        self.sig = np.array([f.signal for f in p.features], np.int64)
        steps, a_start, b_start, b_end = [], [], [], []
        for f in p.features:
            a_start.append(len(steps))
            steps.extend(f.steps_a)
            b_start.append(len(steps))
            steps.extend(f.steps_b)
            b_end.append(len(steps))
        self.steps = np.array(steps or [0], np.int64)
        self.freqs = self.steps / 2**32          # cycles per sample, exactly the integer path's
        self.a_start, self.b_start, self.b_end = (np.array(v, np.int64) for v in (a_start, b_start, b_end))
        self.scale = np.array([OP_SCALE[f.op] for f in p.features])


def compute_windows(cache, pipeline: Pipeline, start_ns=None, end_ns=None, *, codes=True,
                    values=False, label=None, mask=None) -> Windows:
    """Features of every window of ``pipeline`` inside [start_ns, end_ns).

    codes: the integer codes (what the device computes); values: the float
    reference.  label: a channel name, whose majority value per window is
    returned (ties go to the smallest value).  mask: a function (t, columns
    dict) -> bool per sample; ``keep`` says whether all of a window's samples passed."""
    stream = _bind(cache, pipeline)
    index = cache.blocks(stream.name, start_ns, end_ns)
    if not len(index):
        return _empty(pipeline, codes, values, label, mask)
    start = int(index.t_first[0]) if start_ns is None else int(start_ns)
    end = int(index.t_last[-1]) + 1 if end_ns is None else int(end_ns)
    if codes and not values and label is None and mask is None:
        grid = fused_grid(pipeline)
        if grid is not None:
            out = _fused_windows(stream, pipeline, index, start, end, *grid)
            if out is not None:
                return out
    walker = _Walker(cache, stream, pipeline, start, end, codes, values, label, mask)
    for i in range(len(index)):
        walker.add(*index.decode(i))
    walker.finish()
    out = walker.result()
    out.blocks, out.samples = len(index), walker.samples
    return out


# --- the fused path ----------------------------------------------------------------------

FUSED_OPS = frozenset((MEAN, STD, MIN, MAX, RMS, PTP, MAD))
MAX_FUSED_SEGMENTS = 1024       # segments per window; beyond, the walker's direct sums
FUSED_CHUNK_BYTES = 1 << 24     # segment statistics held at a time


def fused_grid(p: Pipeline):
    """(g, r, m) when the pipeline's codes can come from segment statistics:
    every feature a first-pass statistic (mean, std, min, max, rms, ptp, mad)
    of integer channels; g = gcd(window, hop), a window is m segments of g ns
    and the hop r of them.  None otherwise (the walker computes it)."""
    if any(f.op not in FUSED_OPS for f in p.features):
        return None
    for inp in p.inputs:
        if inp.dtype_code not in (1, 2, 3, 4) or inp.exponent > 0 or \
                (inp.dtype_code <= 2 and inp.exponent != 0):
            return None
    g = math.gcd(p.window_ns, p.hop_ns)
    if p.window_ns // g > MAX_FUSED_SEGMENTS:
        return None
    return g, p.hop_ns // g, p.window_ns // g


@lru_cache(maxsize=16)
def regular_clocks(n: int):
    """(bytes, meta) of the time sections of an n-sample block with a
    sample every tick, as the block encoder writes them with either codec
    ("compact", "fast"): block_segments skips decoding a time section that
    equals one (kernels._is_clock)."""
    from ..codec.intcodec import encode_column, max_section_bytes
    words = np.arange(n, dtype=np.uint64)
    pieces, meta, at = [], [], 0
    for compact in (True, False):
        out = np.zeros(max_section_bytes(n), np.uint8)
        end, codec = encode_column(words, False, compact, compact, out, 0)
        pieces.append(out[:end])
        meta.append((n, at, int(end), int(codec)))
        at += int(end)
    clocks = np.concatenate(pieces)
    clocks.flags.writeable = False
    meta = np.array(meta, np.int64)
    meta.flags.writeable = False
    return clocks, meta


def _fused_windows(stream, p: Pipeline, index, start: int, end: int, g: int, r: int, m: int):
    """compute_windows for a pipeline that fused_grid accepts: the blocks are
    decoded by numba a layout at a time, straight into block-sized int32 rows,
    folded into g-segment statistics (kernels.block_segments), joined across
    block edges (merge_segments) and combined per window (segment_windows).
    Memory: the statistics of at most FUSED_CHUNK_BYTES of segments at a time,
    plus the result.  Returns None if the blocks' samples are out of time
    order (the walker then sorts it out, as before)."""
    if start < -2**63 or end > 2**63 - 1:
        return None          # (an end past the largest time: the walker's arithmetic)
    from ..codec.codes import check_status
    from ..engine.layout import build_layouts
    plan = _Plan(p)
    n_sig = len(p.signals)
    n_in = len(p.inputs)
    in_dtype = np.array([i.dtype_code for i in p.inputs], np.int64)
    in_shift = np.array([-i.exponent for i in p.inputs], np.int64)
    mags = [s for s in p.signals if len(s) > 1]
    row_in = np.zeros((len(mags), MAX_MAG), np.int64)
    row_k = np.array([len(s) for s in mags], np.int64)
    for j, s in enumerate(mags):
        row_in[j, :len(s)] = s
    sig_row = np.array([s[0] if len(s) == 1 else n_in + mags.index(s) for s in p.signals], np.int64)
    slot_channels = np.array([stream.channel_index(i.name) for i in p.inputs], np.int64)

    k_first = -(-start // p.hop_ns)
    k_last = (end - p.window_ns) // p.hop_ns
    t_first, t_last, n_samples = index.t_first, index.t_last, index.n_samples
    sizes, counts = np.unique(n_samples, return_counts=True)
    clocks = regular_clocks(int(sizes[np.argmax(counts)]))
    cap = np.minimum(n_samples, t_last // g - t_first // g + 1)
    per_chunk = max(1, FUSED_CHUNK_BYTES // (8 * (N_SEG_FIELDS * n_sig + 2)))
    ends = np.cumsum(cap)
    carry_k = np.zeros(0, np.int64)
    carry_n = np.zeros(0, np.int64)
    carry_st = np.zeros((0, n_sig, N_SEG_FIELDS), np.int64)
    parts, samples, next_k, b0, newest = [], 0, k_first, 0, -2**63
    while b0 < len(index):
        done = int(ends[b0 - 1]) if b0 else 0
        b1 = max(b0 + 1, int(np.searchsorted(ends, done + per_chunk, "right")))
        chunk = index.select(slice(b0, b1))
        n_carry = carry_k.shape[0]
        slot = np.concatenate([[0, n_carry], n_carry + np.cumsum(cap[b0:b1])[:-1]]).astype(np.int64)
        total = n_carry + int(cap[b0:b1].sum())
        seg_k = np.empty(total, np.int64)
        seg_n = np.empty(total, np.int64)
        seg_st = np.empty((total, n_sig, N_SEG_FIELDS), np.int64)
        seg_k[:n_carry], seg_n[:n_carry], seg_st[:n_carry] = carry_k, carry_n, carry_st
        counts = np.zeros(b1 - b0 + 1, np.int64)
        counts[0] = n_carry
        got = np.zeros(b1 - b0 + 1, np.int64)
        status = np.zeros(b1 - b0 + 1, np.int64)
        for lay in build_layouts(chunk, slot_channels):
            block_segments(lay.buf, lay.lay_t, lay.lay_c, lay.blocks.astype(np.int64) + 1, slot,
                           start, end, g, in_dtype, in_shift, row_in, row_k, sig_row, *clocks, seg_k,
                           seg_n, seg_st, counts, got, status)
        check_status(status)
        samples += int(got.sum())
        n_seg = merge_segments(seg_k, seg_n, seg_st, slot, counts)
        if n_seg < 0 or (n_seg and not n_carry and seg_k[0] < newest):
            return None      # (with a carry, merge_segments has checked the order)
        b0 = b1
        if not n_seg:
            continue
        newest = int(seg_k[n_seg - 1])
        # later samples lie in segment seg_k[n_seg - 1] or after: the windows
        # that end before it are complete
        k_done = k_last if b0 == len(index) else min(k_last, (newest - m) // r)
        if k_done >= next_k:
            rows = min(k_done - next_k + 1, n_seg * ((m - 1) // r + 1))
            codes = np.zeros((rows, len(p.features)), np.int64)
            win_k = np.zeros(rows, np.int64)
            win_n = np.zeros(rows, np.int64)
            w, biggest = segment_windows(seg_k, seg_n, seg_st, n_seg, r, m, next_k, k_done,
                                         p.min_samples, plan.ops, plan.sig, codes, win_k, win_n)
            if biggest > MAX_WINDOW_SAMPLES:
                raise ModelError(f"a window holds {biggest} samples; at most {MAX_WINDOW_SAMPLES}")
            parts.append((codes[:w], win_k[:w], win_n[:w]))
            next_k = k_done + 1
        keep = int(np.searchsorted(seg_k[:n_seg], next_k * r, "left"))
        carry_k, carry_n, carry_st = seg_k[keep:n_seg], seg_n[keep:n_seg], seg_st[keep:n_seg]
    if not parts:
        out = _empty(p, True, False, False, False)
    else:
        starts = np.concatenate([q[1] for q in parts]) * p.hop_ns
        out = Windows(starts, starts + p.window_ns, np.concatenate([q[2] for q in parts]),
                      np.concatenate([q[0] for q in parts]), None)
    out.blocks, out.samples = len(index), samples
    return out


def _bind(cache, pipeline: Pipeline):
    """The cache's stream for the pipeline, checked channel by channel."""
    try:
        stream = cache.streams[pipeline.stream]
    except KeyError:
        raise ModelError(f"the model reads stream {pipeline.stream!r}, which is not in this cache; "
                         f"streams: {', '.join(sorted(cache.streams)) or 'none'}") from None
    for inp in pipeline.inputs:
        names = [c.name for c in stream.channels]
        if inp.name not in names:
            raise ModelError(f"the model reads channel {inp.name!r}, which stream {stream.name!r} "
                             f"does not have (it has {', '.join(names)})")
        ch = stream.channel(inp.name)
        if ch.dtype_code != inp.dtype_code:
            raise ModelError(f"the model reads channel {inp.name!r} as dtype code {inp.dtype_code}, "
                             f"stream {stream.name!r} stores it as {ch.dtype}")
    return stream


def _empty(p, codes, values, label, mask) -> Windows:
    z = np.zeros(0, np.int64)
    nf = len(p.features)
    return Windows(z, z, z, np.zeros((0, nf), np.int64) if codes else None,
                   np.zeros((0, nf)) if values else None, z if label else None,
                   np.zeros(0, bool) if mask else None)


class _Walker:
    """Blocks in, complete windows out; holds only the samples of windows not yet complete."""

    def __init__(self, cache, stream, p: Pipeline, start, end, codes, values, label, mask):
        self.stream, self.p, self.start, self.end = stream, p, start, end
        self.want_codes, self.want_values, self.mask = codes, values, mask
        self.plan = _Plan(p)
        self.cols = [stream.channel_index(i.name) for i in p.inputs]
        self.float_in = [i.dtype_code in (5, 6) for i in p.inputs]
        self.label_col = stream.channel_index(label) if label else None
        self.k_next = -(-start // p.hop_ns)
        self.buf = None            # dict of arrays: t, u, x, label, bad (mask failed)
        self.pending, self.pending_n = [], 0      # prepared blocks not yet joined to buf
        self.samples = 0
        self.out = []

    def add(self, t, cols) -> None:
        lo = int(np.searchsorted(t, self.start, "left"))
        hi = int(np.searchsorted(t, self.end, "left"))
        if lo >= hi:
            return
        self.samples += hi - lo
        self.pending.append(self._prepare(t[lo:hi], [c[lo:hi] for c in cols]))
        self.pending_n += hi - lo
        if self.pending_n < BATCH:
            return          # small blocks: gather a batch first (fewer kernel calls)
        self._join()
        # Windows ending at or before the newest sample are complete: later
        # samples of the stream come at or after it.
        self._emit(min(int(self.buf["t"][-1]), self.end))

    def _join(self) -> None:
        parts = ([self.buf] if self.buf is not None else []) + self.pending
        self.buf = parts[0] if len(parts) == 1 else \
            {k: np.concatenate([p[k] for p in parts], axis=-1) for k in parts[0]}
        self.pending, self.pending_n = [], 0

    def finish(self) -> None:
        if self.pending:
            self._join()
        if self.buf is not None and self.buf["t"].shape[0]:
            self._emit(self.end)

    def _prepare(self, t, cols) -> dict:
        p = self.p
        raw = [cols[c] for c in self.cols]
        ok = np.ones(t.shape[0], bool)
        for col, is_float in zip(raw, self.float_in):
            if is_float:
                ok &= ~np.isnan(col)
        piece = {"t": t[ok]}
        if self.mask is not None:
            names = {c.name: cols[j][ok] for j, c in enumerate(self.stream.channels)}
            piece["bad"] = ~np.asarray(self.mask(piece["t"], names), bool)
        if self.label_col is not None:
            piece["label"] = cols[self.label_col][ok].astype(np.int64)
        raw = [col[ok] for col in raw]
        if self.want_codes:
            ints = [col.astype(np.int32) if col.dtype.itemsize <= 2 and not f else
                    int_signal(col, inp.exponent, f) for col, inp, f in zip(raw, p.inputs, self.float_in)]
            piece["u"] = np.stack([ints[s[0]] if len(s) == 1 else int_mag(np.stack([ints[i] for i in s]))
                                   for s in p.signals]) if len(piece["t"]) else \
                np.zeros((len(p.signals), 0), np.int32)
        if self.want_values:
            flts = [col.astype(np.float64) * 2.0 ** inp.exponent for col, inp in zip(raw, p.inputs)]
            piece["x"] = np.stack([flts[s[0]] if len(s) == 1 else
                                   np.sqrt(sum(flts[i] ** 2 for i in s)) for s in p.signals]) \
                if len(piece["t"]) else np.zeros((len(p.signals), 0))
        return piece

    def _emit(self, upto: int) -> None:
        """Compute every window [s, s + W) with s >= k_next * hop and s + W <= upto."""
        p, buf = self.p, self.buf
        t = buf["t"]
        k_last = (upto - p.window_ns) // p.hop_ns
        if k_last >= self.k_next and t.shape[0]:
            ks = _candidate_windows(t, self.k_next, k_last, p.window_ns, p.hop_ns)
            if ks.shape[0]:
                self._compute(ks)
            self.k_next = k_last + 1
        cut = int(np.searchsorted(t, self.k_next * p.hop_ns, "left"))
        if cut:
            self.buf = {k: np.ascontiguousarray(v[..., cut:]) for k, v in buf.items()}

    def _compute(self, ks: np.ndarray) -> None:
        p, buf, plan = self.p, self.buf, self.plan
        starts = ks * p.hop_ns
        lo = np.searchsorted(buf["t"], starts, "left")
        hi = np.searchsorted(buf["t"], starts + p.window_ns, "left")
        n = hi - lo
        if n.max(initial=0) > MAX_WINDOW_SAMPLES:
            raise ModelError(f"a window holds {int(n.max())} samples; at most {MAX_WINDOW_SAMPLES}")
        good = n >= p.min_samples
        starts, lo, hi, n = starts[good], lo[good], hi[good], n[good]
        row = {"start": starts, "n": n}
        if self.want_codes:
            stats = self._stats(ks[good], lo, hi)
            out = np.zeros((starts.shape[0], len(p.features)), np.int64)
            int_features(buf["u"], lo, hi, stats, plan.ops, plan.sig, plan.steps, plan.a_start,
                         plan.b_start, plan.b_end, out)
            row["codes"] = out
        if self.want_values:
            out = np.zeros((starts.shape[0], len(p.features)))
            float_features(buf["x"], lo, hi, plan.ops, plan.sig, plan.freqs, plan.a_start,
                           plan.b_start, plan.b_end, out)
            row["values"] = out
        if "label" in buf:
            row["label"] = majority(buf["label"], lo, hi)
            changes = np.concatenate([[0], np.cumsum(buf["label"][1:] != buf["label"][:-1])])
            row["pure"] = changes[hi - 1] == changes[lo]
        if "bad" in buf:
            bad = np.concatenate([[0], np.cumsum(buf["bad"])])
            row["keep"] = bad[hi] == bad[lo]
        self.out.append(row)

    def _stats(self, ks, lo, hi) -> np.ndarray:
        """Each window's S, Q, D, min, max per signal.  When a window is a
        whole number m >= 2 of hops, hop-long segments are summed once and
        windows add up theirs (m times fewer sample visits)."""
        p, t, u = self.p, self.buf["t"], self.buf["u"]
        stats = np.zeros((5, u.shape[0], ks.shape[0]), np.int64)
        m, rest = divmod(p.window_ns, p.hop_ns)
        if rest or m < 2 or not ks.shape[0]:
            stats_direct(u, lo, hi, stats)
            return stats
        segs = np.unique((ks[:, None] + np.arange(m)[None, :]).ravel())
        seg_lo = np.searchsorted(t, segs * p.hop_ns, "left")
        seg_hi = np.searchsorted(t, (segs + 1) * p.hop_ns, "left")
        stats_by_segments(u, seg_lo, seg_hi, np.searchsorted(segs, ks), m, stats)
        return stats

    def result(self) -> Windows:
        p = self.p
        if not self.out:
            return _empty(p, self.want_codes, self.want_values, self.label_col is not None,
                          self.mask is not None)
        cat = lambda k: np.concatenate([r[k] for r in self.out]) if k in self.out[0] else None  # noqa: E731
        start = cat("start")
        return Windows(start, start + p.window_ns, cat("n"), cat("codes"), cat("values"),
                       cat("label"), cat("keep"), cat("pure"))


def _candidate_windows(t: np.ndarray, k_first: int, k_last: int, window: int, hop: int) -> np.ndarray:
    """Window numbers in [k_first, k_last] that hold at least one sample, found
    per run of samples without a gap of a window or more, so a long silence
    costs nothing."""
    breaks = np.flatnonzero(np.diff(t) >= window)
    if not breaks.shape[0]:
        a, b = max((int(t[0]) - window) // hop + 1, k_first), min(int(t[-1]) // hop, k_last)
        return np.arange(a, b + 1, dtype=np.int64)
    firsts = np.concatenate([[0], breaks + 1])
    lasts = np.concatenate([breaks, [t.shape[0] - 1]])
    a = np.maximum((t[firsts] - window) // hop + 1, k_first)
    b = np.minimum(t[lasts] // hop, k_last)
    sizes = np.maximum(b - a + 1, 0)
    if not sizes.sum():
        return np.zeros(0, np.int64)
    offsets = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.repeat(a, sizes) + offsets


def majority(labels: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The most frequent label in each [lo, hi); ties go to the smallest label."""
    out = np.zeros(lo.shape[0], np.int64)
    for w in range(lo.shape[0]):
        values, counts = np.unique(labels[lo[w]:hi[w]], return_counts=True)
        out[w] = values[np.argmax(counts)] if values.size else -1
    return out


def feature_scales(pipeline: Pipeline) -> np.ndarray:
    return np.array([OP_SCALE[f.op] for f in pipeline.features])
