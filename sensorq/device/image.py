"""A model's device image (docs/models.md §11): what a firmware loads.

The host validates the whole ``.sqm`` once (``load_model``: names, texts,
floats, every consistency rule), binds the model's inputs to the channels of
the device's ring (by name and type, here, so the device never compares a
name) and writes a compact, fixed-width, little-endian image: the ring's
schema hash, each input's channel index and shift, the features as small
codes, tree nodes as fixed-width records with forward child indices, the
leaf table, the dense layers' int8 weights.  The C loader (sq_model_load)
then checks only what memory safety and correct arithmetic need — magic,
version, length, CRC, counts, every index in range, child references
strictly forward, feature codes known — and the scorers read the image in
place.

    image = device_image(model, [("acc_x", "int16"), ...])   # the ring's channels, in order
    describe_image(image)                                    # its header, decoded
"""
from __future__ import annotations

import struct
from types import SimpleNamespace

import numpy as np

from ..checksum import crc32
from ..errors import SensorqError
from ..models.format import encode_model, load_model
from ..models.model import NO_REQUANT, SUMSQ, VOTE, DenseBody, Model, TreeBody
from ..schema import Channel

MAGIC = b"SQD1"
VERSION = 3                      # versions 1 (variable tree widths) and 2 (leaf bit) are refused by the device
# docs/models.md §11: magic, then sq_model's first 56 bytes as they are
HEADER = struct.Struct("<4s12B4H5I2q")           # 60 bytes
FIELDS = ("magic", "version", "body", "kind", "mode", "n_inputs", "n_signals", "n_features", "n_classes",
          "n_out", "reserved1a", "reserved1b", "reserved1c", "n_trees", "n_nodes", "n_leaves", "reserved2",
          "length", "schema", "out_schema", "min_samples", "reserved3", "window_ns", "hop_ns")
_SIZES = [4] + [1] * 12 + [2] * 4 + [4] * 5 + [8] * 2
FIELD_AT = {name: sum(_SIZES[:i]) for i, name in enumerate(FIELDS)}      # offsets in the image
INT_DTYPES = ("int8", "int16", "int32", "int64")
NODE_SIZE = 9                    # u8 feature, i32 threshold, u16 left, u16 right


def device_stream_schema(channels) -> int:
    """The schema hash of a device ring of these channels ((name, integer
    dtype) pairs, or Channel objects, in the ring's order): what its
    sq_stream_cfg.schema holds (sensorq.device.bytecode.schema_hash)."""
    from .bytecode import schema_hash
    chans = [c if isinstance(c, Channel) else Channel(c[0], c[1]) for c in channels]
    return schema_hash(SimpleNamespace(channels=chans))


def _model_of(model) -> Model:
    """The model, validated by the host's full reader (load_model) whatever it came as."""
    data = bytes(model) if isinstance(model, (bytes, bytearray, memoryview)) else encode_model(model, with_float=False)
    return load_model(data)


def bind_inputs(model: Model, channels) -> list[tuple[int, int]]:
    """(channel index, shift) of each model input in a ring of these
    channels: an integer input is the channel of its name and storage type;
    a float input, an integer channel of its name holding round(v · 2^e)."""
    names = [c.name if isinstance(c, Channel) else c[0] for c in channels]
    dtypes = [c.dtype if isinstance(c, Channel) else c[1] for c in channels]
    out = []
    for inp in model.pipeline.inputs:
        if inp.name not in names:
            raise SensorqError(f"model input {inp.name!r} is not a channel of the device's stream "
                               f"({', '.join(names)})")
        j = names.index(inp.name)
        if dtypes[j] not in INT_DTYPES:
            raise SensorqError(f"channel {inp.name!r} of the device's stream is {dtypes[j]}: a device "
                               f"ring holds integers only")
        if inp.dtype_code <= 4 and dtypes[j] != INT_DTYPES[inp.dtype_code - 1]:
            raise SensorqError(f"model input {inp.name!r} is {INT_DTYPES[inp.dtype_code - 1]}, the device's "
                               f"channel {dtypes[j]}: an integer input keeps its storage type")
        shift = -inp.exponent if inp.dtype_code in (3, 4) else 0
        out.append((j, shift))
    return out


def device_image(model, channels=None, schema: int | None = None) -> bytes:
    """The device image of a model (a Model or .sqm bytes) bound to a ring
    of ``channels`` ((name, integer dtype) in the ring's order; default: the
    model's inputs, sensorq.device.models.device_channels).  ``schema``: the
    ring's sq_stream_cfg.schema (default: device_stream_schema(channels))."""
    from .models import device_channels, output_schema
    m = _model_of(model)
    channels = device_channels(m) if channels is None else list(channels)
    binding = bind_inputs(m, channels)
    schema = device_stream_schema(channels) if schema is None else schema
    p = m.pipeline
    body = m.body
    is_trees = isinstance(body, TreeBody)
    parts = [b"".join(struct.pack("<BB", ch, shift) for ch, shift in binding)]
    parts.append(b"".join(struct.pack("<H", sum(1 << i for i in set(sig))) for sig in p.signals))
    parts.append(b"".join(struct.pack("<BBBB", f.op, f.signal, len(f.steps_a), len(f.steps_b))
                          for f in p.features))
    parts.append(np.array([s for f in p.features for s in f.steps_a + f.steps_b], "<u4").tobytes())
    if is_trees:
        counts, body_bytes = _trees(body)
    else:
        counts, body_bytes = (len(body.layers), 0, 0, 0), _dense(body)
    parts.append(body_bytes)
    n_out, n_trees, n_nodes, n_leaves = counts
    head = HEADER.pack(MAGIC, VERSION, 1 if is_trees else 2, m.outputs.kind, body.mode, len(p.inputs),
                       len(p.signals), len(p.features), len(m.outputs.classes), n_out, 0, 0, 0,
                       n_trees, n_nodes, n_leaves, 0, 0, schema & 0xFFFFFFFF, output_schema(m), p.min_samples,
                       0, p.window_ns, p.hop_ns)
    data = bytearray(head + b"".join(parts))
    struct.pack_into("<I", data, FIELD_AT["length"], len(data) + 4)
    return bytes(data) + struct.pack("<I", crc32(bytes(data)))


def _trees(b: TreeBody) -> tuple[tuple, bytes]:
    """(n_out, n_trees, n_nodes, n_leaves), and the trees, the nodes, the
    leaf table, in version 3's fixed widths: i32 thresholds, u16 references
    (a node's index, or n_nodes + a leaf's), u8 votes (VOTE) or i32 leaf
    values.  The outputs start at 0: nonzero init values become trees of one
    leaf after the others (SUM, MEAN: one per output; VOTE: one whose votes
    are the init values, 0 … 255)."""
    vote = b.mode == VOTE
    init = np.asarray(b.init, np.int64)
    if vote and init.any() and (init.min() < 0 or init.max() > 255):
        raise SensorqError("a voting ensemble's initial values must be votes (0 … 255) for a device image")
    extra = ([(0, init)] if init.any() else []) if vote else [(o, init[o:o + 1]) for o in range(b.n_out) if init[o]]
    n_nodes, n_leaves = int(b.tree_start[-1]), b.leaves.shape[0] + len(extra)
    if n_nodes + n_leaves > 0xFFFF:
        raise SensorqError(f"{n_nodes} nodes and {n_leaves} leaves: a device image holds at most "
                           f"65,535 together (u16 references)")

    def ref(r: int, base: int) -> int:           # a leaf ~k or an internal node of the tree, made global
        return n_nodes + ~r if r < 0 else base + r

    out = [struct.pack("<BBH", int(b.tree_out[t]), 0, ref(int(b.roots[t]), int(b.tree_start[t])))
           for t in range(b.n_trees)]
    out += [struct.pack("<BBH", o, 0, n_nodes + b.leaves.shape[0] + k) for k, (o, _) in enumerate(extra)]
    nodes = np.zeros(n_nodes, np.dtype([("f", "u1"), ("t", "<i4"), ("l", "<u2"), ("r", "<u2")]))
    for t in range(b.n_trees):
        lo, hi = int(b.tree_start[t]), int(b.tree_start[t + 1])
        nodes["f"][lo:hi] = b.feature[lo:hi]
        nodes["t"][lo:hi] = b.threshold[lo:hi]
        nodes["l"][lo:hi] = [ref(int(r), lo) for r in b.left[lo:hi]]
        nodes["r"][lo:hi] = [ref(int(r), lo) for r in b.right[lo:hi]]
    out.append(nodes.tobytes())
    leaves = np.concatenate([np.asarray(b.leaves, np.int64).reshape(b.leaves.shape[0], b.n_values)]
                            + [np.asarray(v, np.int64).reshape(1, b.n_values) for _, v in extra])
    out.append(leaves.astype("u1" if vote else "<i4").tobytes())
    return (b.n_out, b.n_trees + len(extra), n_nodes, n_leaves), b"".join(out)


def _dense(b: DenseBody) -> bytes:
    out = []
    inp = np.zeros(b.in_off.shape[0], np.dtype([("o", "<i4"), ("m", "<i4"), ("s", "u1")]))
    inp["o"], inp["m"], inp["s"] = b.in_off, b.in_mul, b.in_shift
    out.append(inp.tobytes())
    for layer in b.layers:
        out.append(struct.pack("<HBB", layer.n_out, int(layer.relu), layer.shift))
        out.append(np.asarray(layer.weights, np.int8).tobytes())
        out.append(np.asarray(layer.bias, "<i4").tobytes())
        if layer.shift != NO_REQUANT:
            out.append(np.asarray(layer.mult, "<i4").tobytes())
    if b.mode == SUMSQ:
        out.append(struct.pack("<q", int(b.threshold)))
    return b"".join(out)


def describe_image(data: bytes) -> dict:
    """The header of a device image, decoded (no validation beyond its size)."""
    if len(data) < HEADER.size + 4 or data[:4] != MAGIC:
        raise SensorqError("not a sensorq device image (magic SQD1)")
    return dict(zip(FIELDS, HEADER.unpack_from(data)))


def image_sections(data: bytes) -> dict:
    """Where each part of a (well-formed) device image starts: inputs,
    signals, features, steps, then for trees init, trees, nodes (and
    node_size), leaves; for dense layers the input scaling and each layer.
    For tests and tools: it trusts the counts."""
    h = describe_image(data)
    at = dict(h)
    at["inputs"] = HEADER.size
    at["signals"] = at["inputs"] + 2 * h["n_inputs"]
    at["features"] = at["signals"] + 2 * h["n_signals"]
    feats = [data[at["features"] + 4 * i: at["features"] + 4 * i + 4] for i in range(h["n_features"])]
    at["steps"] = at["features"] + 4 * h["n_features"]
    p = at["body_start"] = at["steps"] + 4 * sum(f[2] + f[3] for f in feats)
    if h["body"] == 1:
        at["trees"] = p
        at["nodes"] = at["trees"] + 4 * h["n_trees"]
        at["node_size"] = NODE_SIZE
        at["leaves"] = at["nodes"] + at["node_size"] * h["n_nodes"]
    else:
        n_in = h["n_features"]
        at["scaling"] = p
        p = at["scaling"] + 9 * n_in
        at["layers"] = []
        for _ in range(h["n_out"]):
            n_out, _, shift = struct.unpack_from("<HBB", data, p)
            at["layers"].append(p)
            p += 4 + n_out * n_in + 4 * n_out + (4 * n_out if shift != NO_REQUANT else 0)
            n_in = n_out
        at["end"] = p
    return at
