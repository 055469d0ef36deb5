"""Models on the device, host side (docs/models.md, "The device"; issue 14).

* :class:`DeviceModel` — the C model runtime (device_port/src/sq_model.c,
  sq_feat.c) built for the host, through ctypes: ``sq_model_load`` on bytes,
  ``window`` / ``score`` over a :class:`~sensorq.device.native.Ring`,
  ``predict`` on feature codes;
* ``device_inputs`` — the integer columns a device ring holds for a model's
  inputs (a float input is held as its fixed-point value round(v · 2^e));
* ``output_stream`` and ``output_schema`` — the stream a firmware appends a
  model's outputs to (a small RAM ring), whose schema hash the bytecode of a
  query over the model's outputs carries; ``output_row`` — one scored window
  as that stream's sample;
* ``compile_model_query`` — a query over a model's outputs (the host's
  derived stream, sensorq/models/derived.py) compiled for that stream: class
  comparisons by code, comparisons of a value or an anomaly score turned
  exactly into comparisons of the raw integer the device stores.
"""
from __future__ import annotations

import ctypes
import math
import struct
from dataclasses import dataclass

import numpy as np

from ..checksum import crc32
from ..errors import DeviceUnsupportedError, SensorqError
from ..models.format import encode_model, load_model
from ..models.model import (ANOMALY, CLASSES, DENSE, TREES, DenseBody, Model, TreeBody, VALUE)
from ..schema import Channel, Stream
from .image import device_image
from .native import DeviceError, DeviceLib, StreamCfg

MODEL_STRUCT_BYTES = 512          # ≥ sizeof(sq_model) on any host
SQM_MAGIC = b"SQM1"
INT_DTYPES = {1: "int8", 2: "int16", 3: "int32", 4: "int64"}
OUTLIER_CLASSES = ("normal", "anomalous")


class ModelOut(ctypes.Structure):
    _fields_ = [("start", ctypes.c_int64), ("n_samples", ctypes.c_uint32), ("scored", ctypes.c_uint8),
                ("cls", ctypes.c_int32), ("value", ctypes.c_int64),
                ("codes", ctypes.POINTER(ctypes.c_int32)), ("raw", ctypes.POINTER(ctypes.c_int64))]


class ModelStruct(ctypes.Structure):
    """sq_model (device_port/include/sensorq.h), field for field."""
    _fields_ = ([(n, ctypes.c_uint8) for n in ("version", "body", "kind", "mode", "n_inputs", "n_signals",
                                                "n_features", "n_classes", "n_out", "reserved1a", "reserved1b",
                                                "reserved1c")]
                + [(n, ctypes.c_uint16) for n in ("n_trees", "n_nodes", "n_leaves", "reserved2")]
                + [(n, ctypes.c_uint32) for n in ("length", "schema", "out_schema", "min_samples", "reserved3")]
                + [("window_ns", ctypes.c_int64), ("hop_ns", ctypes.c_int64)]
                + [(n, ctypes.c_uint16) for n in ("n_raw", "passes", "max_width", "leaf_size")]
                + [(n, ctypes.c_uint32) for n in ("work_size", "n_steps", "sig_off", "feat_off", "steps_off",
                                                   "body_off", "node_off", "leaf_off", "reserved5")]
                + [("bytes", ctypes.c_void_p)])


def bind(lib) -> None:
    """Prototypes of the sq_model_* calls on a DeviceLib's CDLL."""
    mp, op = ctypes.POINTER(ModelStruct), ctypes.POINTER(ModelOut)
    lib.sq_model_load.argtypes = [mp, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(StreamCfg)]
    lib.sq_model_work_size.restype = ctypes.c_size_t
    lib.sq_model_work_size.argtypes = [mp]
    lib.sq_model_window.argtypes = [mp, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_size_t, op]
    lib.sq_model_score.argtypes = [mp, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, op]
    lib.sq_model_newest.argtypes = [mp, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)]
    lib.sq_model_predict.argtypes = [mp, ctypes.POINTER(ctypes.c_int32), ctypes.c_void_p, ctypes.c_size_t, op]


@dataclass
class WindowOut:
    """One window as the device scored it."""
    start: int
    n_samples: int
    scored: bool
    cls: int = -1
    value: int = 0
    codes: np.ndarray | None = None
    raw: np.ndarray | None = None


class DeviceModel:
    """sq_model_load'ed device image (kept alive here), with a work buffer of
    sq_model_work_size bytes (or ``work_len``).  ``data``: device image
    bytes (sensorq.device.image; given to sq_model_load as they are), or a
    Model or .sqm bytes, which are made into an image bound to the ring of
    ``cfg`` whose channels are ``names`` (its schema hash: cfg.schema)."""

    def __init__(self, dev: DeviceLib, data, cfg: StreamCfg, names: list[str] | None = None, work_len=None):
        if not getattr(dev.lib, "_sq_model_bound", False):
            bind(dev.lib)
            dev.lib._sq_model_bound = True
        if not isinstance(data, (bytes, bytearray)) or bytes(data[:4]) == SQM_MAGIC:
            data = device_image(data, ring_channels(cfg, names), schema=cfg.schema)
        self.dev = dev
        self.image = bytes(data)
        self.data = ctypes.create_string_buffer(self.image, len(self.image))
        self.cfg = cfg
        self.m = ModelStruct()
        status = dev.lib.sq_model_load(ctypes.byref(self.m), self.data, len(self.image), ctypes.byref(cfg))
        dev.check(status, "model load")
        need = dev.lib.sq_model_work_size(ctypes.byref(self.m))
        self.work_len = need if work_len is None else work_len
        self.work = ctypes.create_string_buffer(max(1, self.work_len))

    @property
    def n_features(self) -> int:
        return self.m.n_features

    def _out(self, out: ModelOut) -> WindowOut:
        if not out.scored:
            return WindowOut(out.start, out.n_samples, False)
        codes = np.ctypeslib.as_array(out.codes, (self.m.n_features,)).astype(np.int64)
        raw = np.ctypeslib.as_array(out.raw, (self.m.n_raw,)).astype(np.int64)
        return WindowOut(out.start, out.n_samples, True, out.cls, out.value, codes, raw)

    def window(self, ring, start_ns: int) -> WindowOut:
        out = ModelOut()
        self.dev.check(self.dev.lib.sq_model_window(ctypes.byref(self.m), ring.state, int(start_ns), self.work,
                                                    self.work_len, ctypes.byref(out)), "model window")
        return self._out(out)

    def score(self, ring) -> WindowOut:
        out = ModelOut()
        self.dev.check(self.dev.lib.sq_model_score(ctypes.byref(self.m), ring.state, self.work, self.work_len,
                                                   ctypes.byref(out)), "model score")
        return self._out(out)

    def newest(self, ring) -> int | None:
        """sq_model_newest: the newest whole window's start (None: an empty ring)."""
        start = ctypes.c_int64()
        self.dev.check(self.dev.lib.sq_model_newest(ctypes.byref(self.m), ring.state, ctypes.byref(start)),
                       "model newest")
        return None if start.value == -2**63 else start.value

    def predict(self, codes) -> WindowOut:
        row = (ctypes.c_int32 * max(1, self.m.n_features))(*[int(c) for c in codes])
        out = ModelOut()
        self.dev.check(self.dev.lib.sq_model_predict(ctypes.byref(self.m), row, self.work, self.work_len,
                                                     ctypes.byref(out)), "model predict")
        return self._out(out)


def ring_channels(cfg: StreamCfg, names: list[str]) -> list[tuple[str, str]]:
    """(name, dtype) of a ring's channels, in order, from its sq_stream_cfg and names."""
    return [(names[i], INT_DTYPES[cfg.dtype[i]]) for i in range(cfg.n_channels)]


def load_status(dev: DeviceLib, data: bytes, cfg: StreamCfg, names: list[str] | None = None) -> str:
    """The name of what sq_model_load returns for these bytes ("SQ_OK", "SQ_ERR_CRC", ...)."""
    try:
        DeviceModel(dev, data, cfg, names, work_len=0)
    except DeviceError as exc:
        return exc.name
    return "SQ_OK"


# --- the device's inputs -------------------------------------------------------------

def device_channels(model: Model) -> list[tuple[str, str]]:
    """(name, integer dtype) of the ring channels a model reads: an integer
    input keeps its type, a float input is held as int16 fixed-point."""
    return [(i.name, INT_DTYPES.get(i.dtype_code, "int16")) for i in model.pipeline.inputs]


def device_inputs(model: Model, columns: dict) -> list[np.ndarray]:
    """The ring columns for the model's inputs (device_channels order): an
    integer channel as stored, a float one as round-half-even(v · 2^e) saturated
    to int16 (what the device's sensor driver writes)."""
    out = []
    for inp in model.pipeline.inputs:
        col = np.asarray(columns[inp.name])
        if inp.dtype_code in (5, 6):
            if np.isnan(col.astype(np.float64)).any():
                raise SensorqError(f"input {inp.name!r} holds NaN: a device ring has no float channels")
            col = np.clip(np.rint(col.astype(np.float64) * 2.0 ** inp.exponent), -32768, 32767).astype(np.int16)
        out.append(col)
    return out


# --- the output stream ---------------------------------------------------------------

def output_stream(model: Model, name: str | None = None) -> Stream:
    """The stream a firmware appends the model's outputs to, one sample per
    scored window stamped with its start (integer channels only):

    * a classifier: ``NAME``, the class code (int8, int16 past 127 classes),
      categorical as on the host;
    * a regressor: ``NAME``, the raw integer output (int64; the host's value
      is it times the model's host-only scale);
    * an anomaly scorer: ``NAME``, d² (int64; the host's score is
      √d² · out_scale), and ``NAME_outlier`` (int8, normal / anomalous).
    """
    name = name or model.outputs.name
    kind = model.outputs.kind
    if kind == CLASSES:
        classes = tuple(model.outputs.classes)
        channels = (Channel(name, "int8" if len(classes) <= 127 else "int16", categories=classes),)
    elif kind == ANOMALY:
        channels = (Channel(name, "int64"), Channel(f"{name}_outlier", "int8", categories=OUTLIER_CLASSES))
    else:
        channels = (Channel(name, "int64"),)
    p = model.pipeline
    return Stream(name, channels, rate_hz=1e9 / p.hop_ns, block_samples=32, max_gap_ns=p.hop_ns,
                  codec="fast")


def output_schema(model) -> int:
    """The output stream's schema hash (sq_model.out_schema): CRC-32 of
    "SQO1", the output kind, the outputs section (name, class names) and, for
    a regressor or an anomaly scorer, the host-only constants that map its
    raw integer to the host's value (trees: mode, tree count, leaf scale;
    dense: out_scale, threshold, out_offset).  A query compiled for one
    model's outputs is refused (SQ_ERR_MISMATCH) on another's whose raw
    numbers mean something else."""
    data = model if isinstance(model, (bytes, bytearray)) else encode_model(model, with_float=False)
    m = load_model(data)
    lens = struct.unpack_from("<5I", data, 12)
    outs_at = 32 + lens[0]
    quant_at = outs_at + lens[1]
    outs = bytes(data[outs_at:quant_at])
    quant = bytes(data[quant_at:quant_at + lens[2]])
    crc = crc32(bytes([m.outputs.kind]), crc32(b"SQO1"))
    crc = crc32(outs, crc)
    if m.outputs.kind == CLASSES:
        return crc
    if isinstance(m.body, TreeBody):
        return crc32(quant[8:16], crc32(quant[4:6], crc32(quant[0:1], crc)))
    tail = 8 * m.body.layers[-1].n_out + 16
    return crc32(quant[-tail:], crc)


def output_row(model: Model, cls: int, raw: np.ndarray) -> list[int]:
    """One scored window as the output stream's sample (its channels in order)."""
    kind = model.outputs.kind
    if kind == CLASSES:
        return [int(cls)]
    if kind == ANOMALY:
        return [int(raw[0]), int(cls > 0)]
    return [int(raw[0])]


def format_output_config(model: Model, name: str = "sq_out_cfg", block_samples: int = 32) -> str:
    """The output stream as a C sq_stream_cfg (its schema: output_schema)."""
    from .bytecode import _C_DTYPES
    stream = output_stream(model)
    dtypes = ", ".join(_C_DTYPES[c.dtype] for c in stream.channels)
    return (f"/* outputs of model {model.outputs.name!r}: "
            f"{', '.join(c.name + ' (' + c.dtype + ')' for c in stream.channels)} */\n"
            f"static const sq_stream_cfg {name} = {{{len(stream.channels)}u, {{{dtypes}}}, SQ_CODEC_FAST, "
            f"{block_samples}u, 0u, {output_schema(model):#010x}u}};")


# --- queries over a model's outputs --------------------------------------------------------

def host_value(model: Model):
    """raw integer -> the host's float value of the derived channel ``NAME``
    (numpy float64 arithmetic, as sensorq/models/score.py computes it), and
    whether it is monotone non-decreasing (True), non-increasing (False)."""
    b = model.body
    if model.outputs.kind == ANOMALY:
        s = np.float64(b.out_scale[0])
        return (lambda d: np.sqrt(np.float64(np.int64(d))) * s), bool(s >= 0)
    if isinstance(b, TreeBody):
        scale = np.float64(b.leaf_scale)
        if b.mode == 2:        # MEAN
            return (lambda r: np.int64(r) * scale / np.float64(b.n_trees)), True
        return (lambda r: np.int64(r) * scale), True
    s, off = np.float64(b.out_scale[0]), np.float64(b.out_offset)
    return (lambda r: np.int64(r) * s + off), bool(s >= 0)


def raw_range(model: Model) -> tuple[int, int]:
    """The integers the raw output can take (bounds, not exact)."""
    if model.outputs.kind == ANOMALY:
        return 0, 2**62
    if isinstance(model.body, TreeBody):
        return -2**62, 2**62
    return -2**31, 2**31 - 1


def first_true(pred, lo: int, hi: int) -> int:
    """The smallest d in [lo, hi] with pred(d) for a predicate false then true
    as d grows; hi + 1 if none."""
    if not pred(hi):
        return hi + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def raw_predicate(model: Model, op: str, c: float):
    """``value OP c`` on the host's float value as an interval test on the raw
    integer: returns (lo, hi) with the predicate true exactly for lo <= raw <= hi
    (either may be None: unbounded), or the complement when op is '!='
    (('!=', lo, hi)).  Exact: found by bisection of the host's own arithmetic."""
    f, rising = host_value(model)
    lo, hi = raw_range(model)
    c = np.float64(c)
    key = lambda d: f(d) if rising else -f(d)   # noqa: E731  (non-decreasing in d)
    cc = c if rising else -c
    first_ge = first_true(lambda d: key(d) >= cc, lo, hi)
    first_gt = first_true(lambda d: key(d) > cc, lo, hi)
    # with key non-decreasing: key >= cc  <=>  d >= first_ge; key > cc <=> d >= first_gt
    if not rising:
        op = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}[op]
    if op == ">":
        return first_gt, None
    if op == ">=":
        return first_ge, None
    if op == "<":
        return None, first_ge - 1
    if op == "<=":
        return None, first_gt - 1
    if op == "==":
        return first_ge, first_gt - 1
    return ("!=", first_ge, first_gt - 1)


def is_model_stream(stream) -> bool:
    return bool(getattr(stream, "extra", None) and stream.extra.get("model_of"))


def compile_model_plan(plan, model: Model) -> bytes:
    """Bytecode for a plan over a model's derived stream (planned on the host
    as sensorq/models/derived.py defines it), for the output stream the
    firmware keeps (output_stream), with its schema hash (output_schema).

    A class compares by code, as on the host; ``NAME_outlier`` too.  A
    regressor's value or an anomaly score compares through its raw integer:
    ``anomaly > 0.8`` becomes ``d2 >= D`` with D the smallest integer whose
    host score exceeds 0.8 in the host's own float arithmetic, so the device
    selects exactly the windows the host selects.  Aggregates: count,
    duration and find episodes (count and total duration of the episodes).
    Anything else is refused naming it."""
    from ..query import plan as P
    from .bytecode import compile_plan, unsupported
    from dataclasses import replace
    stream = output_stream(model)
    aggregate = "episodes" if isinstance(plan, P.EpisodesQuery) else getattr(plan, "aggregate", None)
    if aggregate not in ("count", "duration", "episodes"):
        from .bytecode import _query_kind
        what = f"{aggregate!r}" if aggregate else _query_kind(plan)
        raise unsupported(f"{what} over a model's outputs ({model.outputs.name}); it answers count, "
                          f"duration and find episodes over them")
    kind, name = model.outputs.kind, model.outputs.name

    def ref(index: int):
        ch = stream.channels[index]
        return P.ChannelRef(ch.name, index, ch.dtype, 1.0, "", ch.categories)

    def translate(pred):
        if pred is None or isinstance(pred, P.BoolConst):
            return pred
        if isinstance(pred, P.Not):
            return P.Not(translate(pred.arg))
        if isinstance(pred, (P.And, P.Or)):
            return type(pred)(tuple(translate(a) for a in pred.args))
        if not isinstance(pred, P.RawCompare):
            from .bytecode import describe_unsupported
            side = pred.left if not isinstance(pred.left, (P.Const, P.ChannelRef)) else pred.right
            raise unsupported(describe_unsupported(side) if not isinstance(side, (P.Const, P.ChannelRef))
                              else "comparisons between a model's outputs")
        ch = pred.channel.channel
        if kind == ANOMALY and ch == f"{name}_outlier":
            return P.RawCompare(ref(1), pred.op, pred.threshold)
        if ch != name:
            raise unsupported(f"class probabilities ({ch}); compare the class: {name} == <class>")
        if kind == CLASSES:
            return P.RawCompare(ref(0), pred.op, pred.threshold)
        found = raw_predicate(model, pred.op, pred.threshold)
        r = ref(0)
        if isinstance(found, tuple) and len(found) == 3:          # '!=': outside [lo, hi]
            _, lo, hi = found
            if lo > hi:
                return P.BoolConst(True)
            return P.Or((P.RawCompare(r, "<", lo), P.RawCompare(r, ">", hi)))
        lo, hi = found
        parts = []
        if lo is not None:
            parts.append(P.RawCompare(r, ">=", lo))
        if hi is not None:
            parts.append(P.RawCompare(r, "<=", hi))
        if lo is not None and hi is not None and lo > hi:
            return P.BoolConst(False)
        return parts[0] if len(parts) == 1 else P.And(tuple(parts)) if parts else P.BoolConst(True)

    translated = replace(plan, where=translate(plan.where))
    if isinstance(plan, P.EpisodesQuery):
        translated = replace(translated, peak=None)
    return compile_plan(translated, stream, schema=output_schema(model))


# --- the example firmware (device_port/examples/fw_models.c) ------------------------------------

FIRMWARE_MAGIC = 0x464D5153          # "SQMF"
FIRMWARE_SENSOR_REGION = 5376        # fw_models.c: SENSOR_REGION, OUT_REGION
FIRMWARE_OUT_REGION = 5120


def firmware_input(channels: list[tuple[str, str]], t: np.ndarray, columns: list[np.ndarray],
                   queries: list[tuple[bytes, int]], *, block_samples: int = 8,
                   region_len: int = FIRMWARE_SENSOR_REGION, switch_at: int | None = None,
                   out_block_samples: int = 32, out_region_len: int = FIRMWARE_OUT_REGION,
                   codec: str = "fast") -> bytes:
    """models.bin for the model firmware: the sensor stream (channel names and
    integer types, at most 8; the ring's schema hash, which the model's
    device image names), its samples, and (bytecode, now) queries run over
    the output ring at the end.  switch_at: the sample after which the
    firmware loads update.sqd in place of model.sqd."""
    from .native import CODECS, DTYPE_CODES
    if len(channels) > 8:
        raise SensorqError("the example firmware takes at most 8 channels")
    from .image import device_stream_schema
    head = struct.pack("<12I", FIRMWARE_MAGIC, len(channels), block_samples, region_len, len(t),
                       len(t) if switch_at is None else switch_at, len(queries), out_block_samples,
                       out_region_len, CODECS[codec], device_stream_schema(channels), 0)
    head += bytes([DTYPE_CODES[d] for _, d in channels] + [0] * (8 - len(channels)))
    for i in range(8):
        name = channels[i][0].encode() if i < len(channels) else b""
        if len(name) > 15:
            raise SensorqError(f"channel name {channels[i][0]!r}: the example firmware keeps 15 bytes")
        head += name.ljust(16, b"\0")
    rows = np.zeros((len(t), 1 + len(columns)), "<i8")
    rows[:, 0] = t
    for j, col in enumerate(columns):
        rows[:, 1 + j] = col
    body = rows.tobytes()
    tail = b"".join(struct.pack("<Iq", len(code), now) + code for code, now in queries)
    return head + body + tail


def model_file(data: bytes) -> bytes:
    """model.sqd / update.sqd as the firmware reads them: a u32 length, the device image."""
    return struct.pack("<I", len(data)) + bytes(data)


@dataclass
class FirmwareRun:
    calibration: tuple[int, int]
    loads: list[tuple[int, int, int, int]]          # status, ticks, out_schema, work bytes
    windows: list[tuple[int, int, int, int, int, int]]   # model number, start, class, value, samples, ticks
    answers: list[tuple[int, int, int, int]]        # status, value, has_value, count
    stack: int

    @property
    def per_tick(self) -> float:
        ticks, instructions = self.calibration
        return instructions / ticks


def read_scores(text: str) -> FirmwareRun:
    cal, loads, windows, answers, stack = (1, 1), [], [], [], 0
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        nums = [int(v) for v in parts[1:]]
        if parts[0] == "calibration_ticks":
            cal = (nums[0], nums[1])
        elif parts[0] == "load":
            loads.append(tuple(nums))
        elif parts[0] == "w":
            windows.append((len(loads),) + tuple(nums))
        elif parts[0] == "q":
            answers.append(tuple(nums))
        elif parts[0] == "stack":
            stack = nums[0]
    return FirmwareRun(cal, loads, windows, answers, stack)
