"""Models as streams: what makes a model's outputs channels of the language.

Every model in a cache defines a *derived stream* named after the model. Its
samples are the model's windows, stamped with the window's start; they hold
for one hop (the stream's ``max_gap_ns``), so ``duration`` adds one hop per
matching window and ``find episodes`` joins consecutive windows.  Channels:

* a classifier: ``NAME``, categorical, the class of each window, and
  ``NAME_<class>`` (float64) its probability of each class;
* a regressor: ``NAME``, the value; an anomaly scorer: ``NAME``, the score,
  and ``NAME_outlier``, categorical (``normal`` / ``anomalous``).

When a query touches a derived stream, the windows of its time range are
scored (quantized: the device's arithmetic) and encoded into in-memory
blocks, exactly like the writer's open block: every aggregate, bucket, fill,
time window and search then runs on them unchanged, in either engine tier.

:class:`QueryView` is the cache as the query engine sees it: the real
streams plus the derived ones.  A cache without models is queried directly,
so a query over plain data never loads this module's scoring code.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..errors import SchemaError
from ..schema import Channel, Stream
from .model import ANOMALY, CLASSES, Model, ModelError

DERIVED_STREAM_ID = 0x7FFF0000          # block stream ids from here on are derived streams
BLOCK_SAMPLES = 4096
OUTLIER_CLASSES = ("normal", "anomalous")


def query_view(cache):
    """The cache with its models' derived streams, or the cache itself if it has none."""
    from .registry import ModelRegistry
    registry = ModelRegistry(cache)
    names = registry.names()
    if not names:
        return cache
    return QueryView(cache, registry, names)


@dataclass
class Scoring:
    """What scoring a model's windows took (for ``explain``)."""
    source: str                 # the stream the model reads
    windows: int = 0
    blocks: int = 0             # blocks decoded for the features
    samples: int = 0


class QueryView:
    """Duck-types the parts of Cache the planner and executor use."""

    def __init__(self, cache, registry, names: list[str]):
        self.cache = cache
        self.scoring: dict[str, Scoring] = {}
        self._registry = registry
        self._models: dict[str, Model] = {}
        self._derived: dict[str, Stream] = {}
        self._texts: dict[str, str] = {}
        for i, name in enumerate(names):
            if name in cache.streams:
                continue                       # a real stream of that name wins; say so in `models`
            model, self._texts[name] = _load(registry, name)
            self._models[name] = model
            self._derived[name] = derived_stream(name, model, DERIVED_STREAM_ID + i)

    def __getattr__(self, attr):
        return getattr(self.cache, attr)

    @property
    def streams(self) -> dict[str, Stream]:
        return {**self.cache.streams, **self._derived}

    def model_of(self, stream: str) -> Model | None:
        return self._models.get(stream)

    def newest_ns(self, stream) -> int | None:
        name = stream.name if isinstance(stream, Stream) else stream
        model = self._models.get(name)
        if model is None:
            return self.cache.newest_ns(stream)
        newest = self.cache.newest_ns(model.pipeline.stream)
        if newest is None:
            return None
        hop = model.pipeline.hop_ns
        return (newest + 1 - model.pipeline.window_ns) // hop * hop   # start of the newest whole window

    def explain_model(self, stream: str) -> str:
        """For ``explain``: the model behind a derived stream and what scoring it took."""
        model = self._models.get(stream)
        if model is None:
            return ""
        texts = self._texts[stream]
        if stream not in texts:
            from .registry import describe_model
            texts[stream] = describe_model(model, stream)
        lines = ["model:"] + ["  " + line for line in texts[stream].splitlines()]
        used = self.scoring.get(stream)
        if used is not None:
            lines.append(f"  scored {used.windows} windows (quantized, the device's arithmetic); "
                         f"features from {used.blocks} decoded blocks of stream {used.source!r} "
                         f"({used.samples} samples)")
        return "\n".join(lines)

    def gaps(self, stream, start_ns=None, end_ns=None, check: bool = True) -> list[str]:
        model = self._models.get(stream)
        if model is None:
            return self.cache.gaps(stream, start_ns, end_ns, check)
        return self.cache.gaps(model.pipeline.stream, start_ns, end_ns, check)

    def blocks(self, stream, start_ns=None, end_ns=None, lazy: bool = False):
        """Cache.blocks; a model's stream: its scored windows (read eagerly)."""
        name = stream.name if isinstance(stream, Stream) else stream
        model = self._models.get(name)
        if model is None:
            return self.cache.blocks(stream, start_ns, end_ns, lazy)
        scored = self.scored(name, start_ns, end_ns)
        return windows_index(self._derived[name], model, scored)

    def scored(self, name: str, start_ns=None, end_ns=None):
        """The windows of model ``name`` whose start lies in [start_ns, end_ns)."""
        from .score import score_windows
        model = self._models[name]
        if start_ns is None:
            start_ns = self._first_window_start(model)
        stop = None if end_ns is None else end_ns + model.pipeline.window_ns
        scored = score_windows(self.cache, model, start_ns, stop, quantized=True)
        if end_ns is not None:
            keep = scored.start < end_ns
            scored = _take(scored, keep)
        used = self.scoring.setdefault(name, Scoring(model.pipeline.stream))
        used.windows += len(scored.start)
        used.blocks += scored.blocks
        used.samples += scored.samples
        return scored

    def _first_window_start(self, model: Model) -> int | None:
        """The start of the earliest window that reaches the source's first
        sample.  A window is stamped at its start, which can lie before that
        sample; with no range a derived stream must hold the windows that any
        range reaching before the data holds, or `count from motion` would
        answer less than `count from motion last 1h` over the same samples."""
        index = self.cache.blocks(model.pipeline.stream)
        if not len(index):
            return None
        hop, window = model.pipeline.hop_ns, model.pipeline.window_ns
        return ((int(index.t_first[0]) - window) // hop + 1) * hop


# Models as loaded, by the bytes of their file: every query over a cache with
# models loads all of them (to know the derived streams), and validating a
# model file costs about a millisecond; the bytes themselves are read each
# time, so a replaced file is never served stale.  Each entry also keeps the
# model's `explain` texts (by stream name).
_LOADED: OrderedDict = OrderedDict()
LOADED_MAX = 64


def _load(registry, name: str):
    """(registry.get(name), its explain texts), validated once per file content."""
    from .format import load_model
    from .registry import SUFFIX
    path = registry.directory / (name + SUFFIX)
    try:
        data = path.read_bytes()
    except OSError:
        return registry.get(name), {}          # says what is wrong, as it always did
    hit = _LOADED.get(data)
    if hit is None:
        try:
            model = load_model(data)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
        hit = _LOADED[data] = (model, {})
        while len(_LOADED) > LOADED_MAX:
            _LOADED.popitem(last=False)
    else:
        _LOADED.move_to_end(data)
    return hit


def derived_stream(name: str, model: Model, stream_id: int) -> Stream:
    """The stream a model's outputs form (see the module docstring)."""
    p = model.pipeline
    kind = model.outputs.kind
    if kind == CLASSES:
        classes = tuple(model.outputs.classes)
        channels = [Channel(name, _code_dtype(len(classes)), categories=classes)]
        channels += [Channel(probability_channel(name, c, i), "float64") for i, c in enumerate(classes)]
    elif kind == ANOMALY:
        channels = [Channel(name, "float64"), Channel(f"{name}_outlier", "int8",
                                                      categories=OUTLIER_CLASSES)]
    else:
        channels = [Channel(name, "float64")]
    return Stream(name, tuple(channels), rate_hz=1e9 / p.hop_ns, block_samples=BLOCK_SAMPLES,
                  max_gap_ns=p.hop_ns, stream_id=stream_id, codec="fast",
                  extra={"model_of": p.stream, "window_ns": p.window_ns, "hop_ns": p.hop_ns})


def probability_channel(model_name: str, class_name: str, index: int) -> str:
    """``motion_Running``; a class name that is not an identifier becomes ``motion_p3``."""
    candidate = f"{model_name}_{class_name}"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", candidate):
        return candidate
    return f"{model_name}_p{index}"


def _code_dtype(n_classes: int) -> str:
    return "int8" if n_classes <= 127 else "int16"


def _take(scored, keep: np.ndarray):
    from dataclasses import replace
    pick = lambda a: None if a is None else a[keep]   # noqa: E731
    return replace(scored, cls=scored.cls[keep], proba=pick(scored.proba), value=pick(scored.value),
                   raw=scored.raw[keep], start=scored.start[keep], end=scored.end[keep])


def columns_of(stream: Stream, model: Model, scored) -> list[np.ndarray]:
    """The derived stream's columns, in channel order."""
    kind = model.outputs.kind
    if kind == CLASSES:
        codes = scored.cls.astype(stream.channels[0].numpy_dtype)
        return [codes] + [np.ascontiguousarray(scored.proba[:, i]) for i in range(scored.proba.shape[1])]
    if kind == ANOMALY:
        return [scored.value.astype(np.float64), (scored.cls > 0).astype(np.int8)]
    return [scored.value.astype(np.float64)]


def windows_index(stream: Stream, model: Model, scored):
    """The scored windows as a BlockIndex of in-memory blocks."""
    from ..codec.block import encode_block
    from ..codec.header import parse_block
    from ..store.blockindex import BlockIndex
    t = scored.start.astype(np.int64)
    columns = columns_of(stream, model, scored)
    index = BlockIndex.empty(stream)
    buffers, infos = [], []
    for seq, lo in enumerate(range(0, len(t), BLOCK_SAMPLES)):
        hi = min(lo + BLOCK_SAMPLES, len(t))
        block = encode_block(t[lo:hi], [c[lo:hi] for c in columns], stream_id=stream.stream_id,
                             seq=seq, codec=stream.codec)
        buffers.append(np.frombuffer(block, np.uint8))
        infos.append(parse_block(block))
    if not infos:
        return index
    col = lambda f: np.array([getattr(info, f) for info in infos], np.int64)   # noqa: E731
    return BlockIndex(stream, buffers, np.arange(len(infos), dtype=np.int32),
                      np.zeros(len(infos), np.int64), col("block_len"), col("n_samples"),
                      col("t_first"), col("t_last"), col("seq"),
                      np.stack([info.entries for info in infos]), col("tick"), col("time_codec"),
                      col("time_len"))


def check_not_shadowed(cache, name: str) -> None:
    """A model may not take the name of a stream: the stream would hide it."""
    if name in cache.streams:
        raise SchemaError(f"a model cannot be named {name!r}: cache {cache.path} has a stream of "
                          f"that name")
