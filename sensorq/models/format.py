"""The ``.sqm`` model format, version 1 (docs/models.md): ``encode_model``
writes a :class:`Model` as bytes, ``load_model`` reads and validates them.

Little-endian, no alignment, every count before what it counts, so a C reader
walks it with a cursor and no allocation.  ``load_model`` is written for
hostile input: the CRC is checked first, then every read goes through
:class:`_Reader`, which refuses to step past its section, and every count,
index, child reference and layer size is checked against the limits of
model.py before any array is built.  Whatever the bytes, the result is a
Model or a ModelError, never another exception.
"""
from __future__ import annotations

import math
import struct

import numpy as np

from ..checksum import crc32
from .model import (ANOMALY, ARGMAX, CLASSES, DENSE, FORMAT_VERSION, LINEAR_VALUE, MAX_CLASSES,
                    MAX_FEATURES, MAX_INPUTS, MAX_LAYERS, MAX_LEAVES, MAX_MAG, MAX_SIGNALS,
                    MAX_TREE_NODES, MAX_TREES, MAX_WIDTH, MAX_WINDOW_SAMPLES, MEAN_MODE, NO_REQUANT,
                    SIGN, SUM, SUMSQ, TREES, VALUE, VOTE, DenseBody, Feature, Info, Input, Layer,
                    Model, ModelError, Outputs, Pipeline, TreeBody)

MAGIC = b"SQM1"
HEADER_SIZE = 32
FLAG_FLOAT = 1
DTYPE_CODES = range(1, 7)
FLOAT_DTYPES = (5, 6)
SMALL_INT_DTYPES = (1, 2)     # int8, int16
_TW = {0: 1, 1: 2, 2: 4}               # threshold width codes
_LW = {0: 1, 1: 2, 2: 4}               # leaf value width codes (0: u8, 1: i16, 2: i32)


# --- writing ---------------------------------------------------------------------------

class _Writer:
    def __init__(self):
        self.parts: list[bytes] = []

    def put(self, fmt: str, *values) -> None:
        self.parts.append(struct.pack("<" + fmt, *values))

    def raw(self, data: bytes) -> None:
        self.parts.append(bytes(data))

    def text(self, s: str) -> None:
        data = s.encode("utf-8")
        if len(data) > 255:
            raise ModelError(f"name {s[:40]!r}... is longer than 255 bytes")
        self.put("B", len(data))
        self.raw(data)

    def array(self, values, dtype: str) -> None:
        self.raw(np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes())

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def encode_model(model: Model, with_float: bool = True, with_info: bool | None = None) -> bytes:
    """The model's bytes; ``with_float=False`` leaves out the float section
    (the device never reads it: a smaller file to flash) and, unless
    ``with_info`` says otherwise, the info section's numbers and texts."""
    from .validate import check_model
    check_model(model)
    with_float = with_float and model.body.has_float
    info = model.info if (with_float if with_info is None else with_info) else Info()
    sections = [_pipeline_bytes(model.pipeline), _outputs_bytes(model.outputs),
                _quant_bytes(model.body), _float_bytes(model.body) if with_float else b"",
                _info_bytes(info)]
    total = HEADER_SIZE + sum(map(len, sections)) + 4
    kind = TREES if isinstance(model.body, TreeBody) else DENSE
    head = struct.pack("<4sBBBBIIIIII", MAGIC, FORMAT_VERSION, kind, model.outputs.kind,
                       FLAG_FLOAT if with_float else 0, total, *map(len, sections))
    body = head + b"".join(sections)
    return body + struct.pack("<I", crc32(body))


def _pipeline_bytes(p: Pipeline) -> bytes:
    w = _Writer()
    w.put("IqqII", p.schema_hash, p.window_ns, p.hop_ns, p.rate_mhz, p.min_samples)
    w.text(p.stream)
    w.put("B", len(p.inputs))
    for i in p.inputs:
        w.text(i.name)
        w.put("Bb", i.dtype_code, i.exponent)
    w.put("B", len(p.signals))
    for sig in p.signals:
        w.put("B", len(sig))
        w.raw(bytes(sig))
    w.put("B", len(p.features))
    for f in p.features:
        w.put("BBBB", f.op, f.signal, len(f.steps_a), len(f.steps_b))
        w.array(list(f.steps_a) + list(f.steps_b), "u4")
    return w.bytes()


def _outputs_bytes(o: Outputs) -> bytes:
    w = _Writer()
    w.put("B", len(o.classes))
    w.text(o.name)
    for c in o.classes:
        w.text(c)
    return w.bytes()


def tree_widths(body: TreeBody) -> tuple[int, int, int]:
    """The narrowest threshold, child-reference and leaf widths (codes) that hold the body."""
    thr = body.threshold.astype(np.int64)
    tw = 0 if thr.size == 0 or (thr.min() >= -128 and thr.max() <= 127) else \
        1 if (thr.min() >= -32768 and thr.max() <= 32767) else 2
    biggest = max([int(np.diff(body.tree_start).max(initial=0)), body.leaves.shape[0]])
    cw2 = biggest > 127
    lv = body.leaves.astype(np.int64)
    if body.mode == VOTE and (lv.size == 0 or (lv.min() >= 0 and lv.max() <= 255)):
        lw = 0
    elif lv.size == 0 or (lv.min() >= -32768 and lv.max() <= 32767):
        lw = 1
    else:
        lw = 2
    return tw, int(cw2), lw


def _quant_bytes(body) -> bytes:
    return _tree_quant(body) if isinstance(body, TreeBody) else _dense_quant(body)


def _tree_quant(b: TreeBody) -> bytes:
    w = _Writer()
    tw, cw2, lw = tree_widths(b)
    cfmt = "H" if cw2 else "B"
    leaf_bit = 0x8000 if cw2 else 0x80
    ref = lambda r: (leaf_bit | ~r) if r < 0 else r   # noqa: E731
    w.put("BBBBHHd", b.mode, b.n_out, tw | (cw2 << 2) | (lw << 3), 0, b.n_trees,
          b.leaves.shape[0], b.leaf_scale)
    w.array(b.init, "i4")
    tdt = {0: "i1", 1: "i2", 2: "i4"}[tw]
    for t in range(b.n_trees):
        lo, hi = int(b.tree_start[t]), int(b.tree_start[t + 1])
        w.put("BH" + cfmt, int(b.tree_out[t]), hi - lo, ref(int(b.roots[t])))
        nodes = np.zeros(hi - lo, np.dtype([("f", "u1"), ("t", "<" + tdt), ("l", "<" + cfmt),
                                            ("r", "<" + cfmt)]))
        nodes["f"] = b.feature[lo:hi]
        nodes["t"] = b.threshold[lo:hi]
        nodes["l"] = [ref(int(r)) for r in b.left[lo:hi]]
        nodes["r"] = [ref(int(r)) for r in b.right[lo:hi]]
        w.raw(nodes.tobytes())
    w.array(b.leaves, {0: "u1", 1: "i2", 2: "i4"}[lw])
    return w.bytes()


def _dense_quant(b: DenseBody) -> bytes:
    w = _Writer()
    w.put("BBBB", b.mode, len(b.layers), 0, 0)
    inp = np.zeros(b.in_off.shape[0], np.dtype([("o", "<i4"), ("m", "<i4"), ("s", "u1")]))
    inp["o"], inp["m"], inp["s"] = b.in_off, b.in_mul, b.in_shift
    w.raw(inp.tobytes())
    for layer in b.layers:
        sparse = _bitmap_bytes(layer.weights)
        dense = layer.weights.astype(np.int8).tobytes()
        encoding = 1 if len(sparse) < len(dense) else 0
        w.put("HHBBBB", layer.n_in, layer.n_out, int(layer.relu), encoding, layer.shift, 0)
        w.raw(sparse if encoding else dense)
        w.array(layer.bias, "i4")
        if layer.shift != NO_REQUANT:
            w.array(layer.mult, "i4")
    w.array(b.out_scale, "f8")
    w.put("qd", b.threshold, b.out_offset)
    return w.bytes()


def _bitmap_bytes(weights: np.ndarray) -> bytes:
    """Per row: a bitmap of the non-zero weights (bit j of byte j // 8 for
    column j), then those weights in column order."""
    out = []
    for row in weights.astype(np.int8):
        nz = row != 0
        out.append(np.packbits(nz, bitorder="little").tobytes())
        out.append(row[nz].tobytes())
    return b"".join(out)


def _float_bytes(body) -> bytes:
    w = _Writer()
    if isinstance(body, TreeBody):
        w.put("BB", 8, int(body.f_cast32))
        w.array(body.f_threshold, "f8")
        w.array(body.f_leaves, "f8")
        w.array(body.f_init, "f8")
    else:
        w.put("BB", 8, 0)
        w.array(body.f_mean, "f8")
        w.array(body.f_inv_std, "f8")
        for layer in body.layers:
            w.array(layer.f_weights, "f8")
            w.array(layer.f_bias, "f8")
        w.put("d", body.f_threshold)
    return w.bytes()


def _info_bytes(info: Info) -> bytes:
    w = _Writer()
    w.put("dIq", info.accuracy, info.n_train, info.trained_ns)
    for text in (info.label, info.origin, info.where, info.test_where, info.group):
        w.text(text)
    return w.bytes()


# --- reading ---------------------------------------------------------------------------

class _Reader:
    """A cursor over one section that never reads past its end."""

    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ModelError(f"model {self.what} section is truncated (needs {n} bytes at "
                             f"offset {self.pos}, has {len(self.data) - self.pos})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def get(self, fmt: str):
        values = struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))
        return values if len(values) > 1 else values[0]

    def text(self, what: str, ascii_name: bool = False) -> str:
        n = self.get("B")
        try:
            s = self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise ModelError(f"model {what} is not valid UTF-8") from None
        if ascii_name:
            _check_name(s, what)
        return s

    def array(self, n: int, dtype: str) -> np.ndarray:
        dt = np.dtype(dtype).newbyteorder("<")
        return np.frombuffer(self.take(n * dt.itemsize), dt).astype(dt.newbyteorder("="))

    def done(self) -> None:
        if self.pos != len(self.data):
            raise ModelError(f"model {self.what} section has {len(self.data) - self.pos} "
                             f"bytes left over")


def _check_name(s: str, what: str) -> None:
    ok = 0 < len(s) <= 64 and (s[0].isalpha() or s[0] == "_") and s.isascii() and \
        all(c.isalnum() or c == "_" for c in s)
    if not ok:
        raise ModelError(f"model {what} {s!r} is not a valid name")


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise ModelError(message)


def load_model(data) -> Model:
    """Parse and validate ``.sqm`` bytes; ModelError says what is wrong."""
    try:
        data = bytes(data)
    except (TypeError, ValueError):
        raise ModelError("a model must be bytes") from None
    try:
        return _load(data)
    except ModelError:
        raise
    except (struct.error, ValueError, OverflowError, IndexError, MemoryError) as exc:
        # Defence in depth: every such case is meant to be caught by a check above.
        raise ModelError(f"model bytes are not valid ({type(exc).__name__}: {exc})") from None


def _load(data: bytes) -> Model:
    _need(len(data) >= HEADER_SIZE + 4, f"not a sensorq model: {len(data)} bytes is too short")
    _need(data[:4] == MAGIC, "not a sensorq model (the bytes do not start with 'SQM1')")
    magic, version, kind, out_kind, flags, total, *lens = struct.unpack_from("<4sBBBBIIIIII", data)
    _need(version == FORMAT_VERSION, f"model format version {version}; this sensorq reads "
                                     f"version {FORMAT_VERSION}")
    _need(total == len(data), f"model is truncated or padded: its header says {total} bytes, "
                              f"got {len(data)}")
    crc = struct.unpack_from("<I", data, len(data) - 4)[0]
    _need(crc == crc32(data[:-4]), "model is damaged (CRC-32 mismatch)")
    _need(HEADER_SIZE + sum(lens) + 4 == total, "model section lengths do not add up to its size")
    _need(kind in (TREES, DENSE), f"unknown model kind {kind}")
    _need(out_kind in (CLASSES, VALUE, ANOMALY), f"unknown output kind {out_kind}")
    _need(flags & ~FLAG_FLOAT == 0, f"unknown model flags {flags:#x}")
    _need(bool(flags & FLAG_FLOAT) == (lens[3] > 0), "float flag and float section disagree")
    sections, pos = [], HEADER_SIZE
    for n in lens:
        sections.append(data[pos:pos + n])
        pos += n
    pipeline = _read_pipeline(_Reader(sections[0], "pipeline"))
    outputs = _read_outputs(_Reader(sections[1], "outputs"), out_kind)
    n_feat = len(pipeline.features)
    body = _read_trees(_Reader(sections[2], "tree"), n_feat) if kind == TREES else \
        _read_dense(_Reader(sections[2], "dense"), n_feat)
    if lens[3]:
        reader = _Reader(sections[3], "float")
        (_read_tree_float if kind == TREES else _read_dense_float)(reader, body)
        reader.done()
    info = _read_info(_Reader(sections[4], "info"))
    model = Model(pipeline, outputs, body, info)
    from .validate import check_model
    check_model(model)
    return model


def _read_pipeline(r: _Reader) -> Pipeline:
    hash_, window, hop, rate, min_samples = r.get("IqqII")
    _need(window > 0 and hop > 0, f"window ({window} ns) and hop ({hop} ns) must be positive")
    _need(2 <= min_samples <= MAX_WINDOW_SAMPLES, f"min_samples {min_samples} is out of range")
    stream = r.text("stream name", True)
    inputs = []
    n_in = r.get("B")
    _need(1 <= n_in <= MAX_INPUTS, f"model has {n_in} inputs (1..{MAX_INPUTS})")
    for _ in range(n_in):
        name = r.text("input channel name", True)
        dtype, exponent = r.get("Bb")
        _need(dtype in DTYPE_CODES, f"input {name!r} has unknown dtype code {dtype}")
        _need(-62 <= exponent <= 62 and (dtype in FLOAT_DTYPES or exponent <= 0),
              f"input {name!r} has exponent {exponent} out of range")
        # int8/int16 values are the signal itself (models.md §2): an exponent
        # there would be one more way for host and device to disagree
        _need(dtype not in SMALL_INT_DTYPES or exponent == 0,
              f"input {name!r} is an int8/int16 channel with exponent {exponent} (must be 0)")
        inputs.append(Input(name, dtype, exponent))
    _need(len({i.name for i in inputs}) == n_in, "model inputs repeat a channel")
    signals = []
    n_sig = r.get("B")
    _need(1 <= n_sig <= MAX_SIGNALS, f"model has {n_sig} signals (1..{MAX_SIGNALS})")
    for _ in range(n_sig):
        k = r.get("B")
        _need(1 <= k <= MAX_MAG, f"a signal combines {k} channels (1..{MAX_MAG})")
        sig = tuple(r.take(k))
        _need(all(i < n_in for i in sig), "a signal names an input that does not exist")
        signals.append(sig)
    features = []
    n_feat = r.get("B")
    _need(1 <= n_feat <= MAX_FEATURES, f"model has {n_feat} features (1..{MAX_FEATURES})")
    for _ in range(n_feat):
        op, sig, na, nb = r.get("BBBB")
        steps = r.array(na + nb, "u4")
        features.append(Feature(op, sig, tuple(int(s) for s in steps[:na]),
                                tuple(int(s) for s in steps[na:])))
    r.done()
    p = Pipeline(stream, inputs, signals, features, window, hop, rate, min_samples)
    _need(p.schema_hash == hash_, "model schema hash does not match its input channels")
    return p


def _read_outputs(r: _Reader, kind: int) -> Outputs:
    k = r.get("B")
    name = r.text("output name", True)
    classes = [r.text("class name") for _ in range(k)]
    r.done()
    return Outputs(kind, name, classes)


def _read_trees(r: _Reader, n_feat: int) -> TreeBody:
    mode, n_out, widths, _, n_trees, n_leaves, leaf_scale = r.get("BBBBHHd")
    _need(mode in (VOTE, SUM, MEAN_MODE), f"unknown tree ensemble mode {mode}")
    _need(widths & ~0x1F == 0 and (widths & 3) in _TW and (widths >> 3) in _LW,
          f"unknown tree width code {widths:#x}")
    _need(1 <= n_out <= MAX_CLASSES and 1 <= n_trees <= MAX_TREES and 1 <= n_leaves <= MAX_LEAVES,
          f"tree counts out of range (outputs {n_out}, trees {n_trees}, leaves {n_leaves})")
    tw, cw, lw = _TW[widths & 3], 2 if widths & 4 else 1, _LW[widths >> 3]
    init = r.array(n_out, "i4").astype(np.int32)
    cfmt, leaf_bit = ("H", 0x8000) if cw == 2 else ("B", 0x80)
    tdt = {1: "i1", 2: "i2", 4: "i4"}[tw]
    outs, starts, roots, parts = [], [0], [], []
    for _ in range(n_trees):
        out, n_nodes, root = r.get("BH" + cfmt)
        _need(n_nodes <= MAX_TREE_NODES, f"a tree has {n_nodes} nodes (at most {MAX_TREE_NODES})")
        raw = r.take(n_nodes * (1 + tw + 2 * cw))
        nodes = np.frombuffer(raw, np.dtype([("f", "u1"), ("t", "<" + tdt), ("l", "<" + cfmt),
                                             ("r", "<" + cfmt)]))
        outs.append(out)
        roots.append(_decode_ref(root, leaf_bit))
        starts.append(starts[-1] + n_nodes)
        parts.append(nodes)
    nodes = np.concatenate(parts) if parts else np.zeros(0)
    leaves = r.array(n_leaves * (n_out if mode == VOTE else 1), {1: "u1", 2: "i2", 4: "i4"}[lw])
    r.done()
    decode = np.vectorize(lambda v: _decode_ref(int(v), leaf_bit), otypes=[np.int32])
    return TreeBody(mode, n_out, init, float(leaf_scale), np.array(outs, np.uint8),
                    np.array(starts, np.int64), np.array(roots, np.int32),
                    nodes["f"].astype(np.uint8), nodes["t"].astype(np.int32),
                    decode(nodes["l"]) if len(nodes) else np.zeros(0, np.int32),
                    decode(nodes["r"]) if len(nodes) else np.zeros(0, np.int32),
                    leaves.astype(np.int32).reshape(n_leaves, -1))


def _decode_ref(v: int, leaf_bit: int) -> int:
    return ~(v & ~leaf_bit) if v & leaf_bit else v


def _read_dense(r: _Reader, n_feat: int) -> DenseBody:
    mode, n_layers, _, _ = r.get("BBBB")
    _need(mode in (ARGMAX, SIGN, LINEAR_VALUE, SUMSQ), f"unknown dense output mode {mode}")
    _need(1 <= n_layers <= MAX_LAYERS, f"model has {n_layers} layers (1..{MAX_LAYERS})")
    inp = np.frombuffer(r.take(9 * n_feat), np.dtype([("o", "<i4"), ("m", "<i4"), ("s", "u1")]))
    layers = []
    for _ in range(n_layers):
        n_in, n_out, relu, encoding, shift, _ = r.get("HHBBBB")
        _need(1 <= n_in <= MAX_WIDTH and 1 <= n_out <= MAX_WIDTH,
              f"a layer of {n_in} x {n_out} is out of range (1..{MAX_WIDTH})")
        _need(relu in (0, 1) and encoding in (0, 1) and (shift <= 62 or shift == NO_REQUANT),
              f"layer codes out of range (relu {relu}, encoding {encoding}, shift {shift})")
        weights = _read_bitmap(r, n_out, n_in) if encoding else \
            r.array(n_out * n_in, "i1").reshape(n_out, n_in)
        bias = r.array(n_out, "i4")
        mult = r.array(n_out, "i4") if shift != NO_REQUANT else None
        layers.append(Layer(weights.astype(np.int8), bias.astype(np.int32), bool(relu), shift,
                            None if mult is None else mult.astype(np.int32)))
    out_scale = r.array(layers[-1].n_out, "f8")
    threshold, out_offset = r.get("qd")
    r.done()
    return DenseBody(mode, inp["o"].astype(np.int32), inp["m"].astype(np.int32),
                     inp["s"].astype(np.uint8), layers, out_scale, int(threshold),
                     out_offset=float(out_offset))


def _read_bitmap(r: _Reader, n_out: int, n_in: int) -> np.ndarray:
    w = np.zeros((n_out, n_in), np.int8)
    for j in range(n_out):
        bits = np.unpackbits(np.frombuffer(r.take((n_in + 7) // 8), np.uint8),
                             bitorder="little")
        _need(not bits[n_in:].any(), "a weight bitmap has bits past its row")
        nz = bits[:n_in].astype(bool)
        w[j, nz] = r.array(int(nz.sum()), "i1")
    return w


def _read_tree_float(r: _Reader, b: TreeBody) -> None:
    width, cast = r.get("BB")
    _need(width == 8 and cast in (0, 1), f"float section codes {width}, {cast} unknown")
    b.f_cast32 = bool(cast)
    b.f_threshold = r.array(b.feature.shape[0], "f8")
    b.f_leaves = r.array(b.leaves.size, "f8").reshape(b.leaves.shape)
    b.f_init = r.array(b.n_out, "f8")


def _read_dense_float(r: _Reader, b: DenseBody) -> None:
    width, _ = r.get("BB")
    _need(width == 8, f"float width {width} unknown")
    b.f_mean = r.array(b.in_off.shape[0], "f8")
    b.f_inv_std = r.array(b.in_off.shape[0], "f8")
    for layer in b.layers:
        layer.f_weights = r.array(layer.n_out * layer.n_in, "f8").reshape(layer.n_out, layer.n_in)
        layer.f_bias = r.array(layer.n_out, "f8")
    b.f_threshold = r.get("d")


def _read_info(r: _Reader) -> Info:
    accuracy, n_train, trained = r.get("dIq")
    texts = [r.text(what) for what in ("label name", "origin", "where", "test where", "group")]
    r.done()
    return Info(accuracy if math.isfinite(accuracy) else math.nan, n_train, trained_ns=trained,
                label=texts[0], origin=texts[1], where=texts[2], test_where=texts[3], group=texts[4])


__all__ = ["encode_model", "load_model", "ModelError", "MAGIC", "tree_widths"]
