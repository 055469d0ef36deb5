"""Models stored in a cache: ``<cache>/models/NAME.sqm``.

Written like the manifest (docs/format.md §5): ``NAME.sqm.tmp``, fsync,
rename over ``NAME.sqm``, fsync of the directory, every call through
sensorq.store.fileio (where the tests inject faults), so a crash or a failed
write leaves the old model or none, never a torn one.  Files are validated
when read (``load_model``); a damaged file is reported by name, never served.

``Cache`` attaches ``self.models = ModelRegistry(self)``; a read-only cache
can list, get and export, not add or remove.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..store import fileio
from ..store.manifest import MODELS_DIR
from .compress import device_bytes, ops_per_window, ram_bytes
from .format import encode_model, load_model
from .model import Model, ModelError, Outputs

SUFFIX = ".sqm"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass
class ModelSummary:
    name: str
    kind: str
    stream: str
    inputs: list[str]
    features: int
    window_ns: int
    hop_ns: int
    outputs: list[str]
    size_float: int          # bytes of the .sqm with its float section
    size_quantized: int      # bytes the device needs (no float section)
    accuracy: float
    device_flash: int        # model bytes on the device
    device_ram: int          # working memory to score a window
    ops_per_window: int
    origin: str


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ModelError(f"model name {name!r} is not valid: use letters, digits and _, starting "
                         f"with a letter or _, at most 64 characters")
    return name


class ModelRegistry:
    def __init__(self, cache):
        self.cache = cache

    @property
    def directory(self) -> Path:
        return Path(self.cache.path) / MODELS_DIR

    def _path(self, name: str) -> Path:
        return self.directory / (check_model_name(name) + SUFFIX)

    # --- reading --------------------------------------------------------------------

    def names(self) -> list[str]:
        try:
            files = fileio.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(f[:-len(SUFFIX)] for f in files if f.endswith(SUFFIX) and _NAME.match(f[:-len(SUFFIX)]))

    def get(self, name: str) -> Model:
        path = self._path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none"
            raise ModelError(f"no model {name!r} in cache {self.cache.path}; models: {known}") from None
        try:
            return load_model(data)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def list(self) -> list[ModelSummary]:
        return [self.summary(n) for n in self.names()]

    def summary(self, name: str) -> ModelSummary:
        m = self.get(name)
        p = m.pipeline
        outputs = m.outputs.classes or [m.outputs.name]
        return ModelSummary(name, m.kind_name, p.stream, [i.name for i in p.inputs], len(p.features),
                            p.window_ns, p.hop_ns, outputs, len(encode_model(m)), device_bytes(m),
                            m.info.accuracy, device_bytes(m), ram_bytes(m), ops_per_window(m),
                            m.info.origin)

    def export(self, name: str, path, quantized_only: bool = False) -> int:
        """Write the model's bytes to ``path`` (any file, not the cache);
        quantized_only leaves out the float section (what a device flashes)."""
        data = encode_model(self.get(name), with_float=not quantized_only)
        Path(path).write_bytes(data)
        return len(data)

    # --- writing --------------------------------------------------------------------

    def add(self, name: str, estimator_or_model, *, stream=None, window=None, hop=None, features=None,
            label=None, class_names=None, X_calib=None, replace: bool = True) -> Model:
        """Store a sensorq Model, or convert a fitted scikit-learn estimator
        trained on the features of ``features`` (texts such as ``mean(x)``,
        see features.make_pipeline) over ``window``/``hop`` windows of
        ``stream``.  label: the (categorical) channel the estimator learnt,
        whose categories name the classes; or class_names: the name of each
        label code; default the codes as text.  Calibration windows
        for int8 scales are computed from the stream when not given."""
        check_model_name(name)
        model = estimator_or_model
        if not isinstance(model, Model):
            model = self._convert(name, model, stream, window, hop, features, label, class_names, X_calib)
        # the output is named after the model (the derived channel a query
        # compares: `motion == Running`); the caller's model is not changed
        model = Model(model.pipeline, Outputs(model.outputs.kind, name, list(model.outputs.classes)),
                      model.body, model.info)
        self._write(name, encode_model(model), replace)
        return model

    def _convert(self, name, estimator, stream, window, hop, features, label, class_names, X_calib):
        from .features import compute_windows, make_pipeline
        from .sklearn_import import from_sklearn
        if stream is None or window is None or hop is None or features is None:
            raise ModelError("adding a scikit-learn estimator needs stream=, window=, hop= and "
                             "features= (the features it was trained on, in order)")
        st = self.cache.streams.get(stream)
        if st is None:
            raise ModelError(f"no stream {stream!r} in cache {self.cache.path}")
        pipeline = make_pipeline(st, list(features), window=window, hop=hop, cache=self.cache)
        if class_names is None and label is not None:
            class_names = getattr(st.channel(label), "categories", None)
        if X_calib is None and not type(estimator).__name__.startswith(_TREE_PREFIXES):
            X_calib = compute_windows(self.cache, pipeline, codes=False, values=True).values
        return from_sklearn(estimator, pipeline, class_names=class_names, X_calib=X_calib,
                            output_name=name)

    def train(self, name: str, stream, label=None, **options) -> Model:
        """Train with sensorq.models.train.train and store the result."""
        from .train import train
        model = train(self.cache, stream, label, name=check_model_name(name), **options)
        return self.add(name, model)

    def fit(self, name: str, *, flash, ram, target=None, store: bool = True, **selection):
        """Run fit.fit for a stored model's stream, label, window, hop and
        training selection (its where / test_where / group texts; a mask
        function may be passed again in ``selection``), and store the winner
        under the same name.  Returns the FitResult (its table and winner)."""
        from .fit import fit
        model = self.get(name)
        p, info = model.pipeline, model.info
        if not info.label:
            raise ModelError(f"model {name!r} records no label channel: fit trains classifiers on "
                             f"labelled windows")
        defaults = {"window": p.window_ns, "hop": p.hop_ns, "where": info.where or None,
                    "test_where": info.test_where or None, "group": info.group or None}
        result = fit(self.cache, p.stream, info.label, flash=flash, ram=ram, target=target, name=name,
                     **{**defaults, **selection})
        if store and result.best is not None:
            self.add(name, result.best.model)
        return result

    def import_file(self, path, name: str | None = None) -> Model:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
        try:
            model = load_model(data)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
        return self.add(name or model.outputs.name or path.stem, model)

    def remove(self, name: str) -> None:
        self._require_writer()
        path = self._path(name)
        if not path.exists():
            raise ModelError(f"no model {name!r} in cache {self.cache.path}")
        with fileio.storage_errors(f"cannot remove model {name!r}"):
            fileio.unlink(path)
            fileio.fsync_directory(self.directory)

    def _require_writer(self) -> None:
        if getattr(self.cache, "readonly", False):
            raise ModelError(f"cache {self.cache.path} is open read-only: models cannot be changed")

    def _write(self, name: str, data: bytes, replace: bool) -> None:
        """Temp file, fsync, rename, fsync of the directory: the old model or
        the new one survives a crash, never a mix."""
        self._require_writer()
        path = self._path(name)
        if not replace and path.exists():
            raise ModelError(f"model {name!r} already exists in cache {self.cache.path}")
        with fileio.storage_errors(f"cannot store model {name!r} in cache {self.cache.path}"):
            fileio.make_directories(self.directory)
            fileio.replace_file(path, data)


_TREE_PREFIXES = ("DecisionTree", "RandomForest", "ExtraTree", "GradientBoosting", "HistGradientBoosting")


def format_table(summaries: list[ModelSummary]) -> str:
    """The text `sensorq models` prints."""
    head = f"{'name':12s} {'kind':8s} {'inputs':24s} {'window/hop':14s} {'outputs':28s} " \
           f"{'size f/q':>12s} {'accuracy':>8s} {'device':>14s}"
    rows = [head]
    for s in summaries:
        acc = "-" if math.isnan(s.accuracy) else f"{100 * s.accuracy:.1f}%"
        inputs = f"{s.stream}: {', '.join(s.inputs)}"
        rows.append(f"{s.name:12s} {s.kind:8s} {inputs[:24]:24s} "
                    f"{_dur(s.window_ns) + '/' + _dur(s.hop_ns):14s} {', '.join(s.outputs)[:28]:28s} "
                    f"{s.size_float:5d}/{s.size_quantized:<5d}B {acc:>8s} "
                    f"{s.device_flash:5d}B+{s.device_ram}B RAM")
    return "\n".join(rows)


def _dur(ns: int) -> str:
    for unit, size in (("h", 3600 * 10**9), ("m", 60 * 10**9), ("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"



def describe_model(model: Model, name: str | None = None) -> str:
    """What `explain` shows of a model: kind and size, windows, inputs,
    features, outputs, device cost, accuracy."""
    from .model import ANOMALY, CLASSES, TreeBody
    p, b, o = model.pipeline, model.body, model.outputs
    if isinstance(b, TreeBody):
        body = f"{b.n_trees} tree{'s' if b.n_trees != 1 else ''}, {b.feature.shape[0]} decision nodes, " \
               f"{b.leaves.shape[0]} distinct leaves"
    else:
        body = " -> ".join([str(len(p.features))] + [str(layer.n_out) for layer in b.layers]) + " (int8)"
    inputs = ", ".join(f"{i.name} (e={i.exponent})" if i.exponent else i.name for i in p.inputs)
    if o.kind == CLASSES:
        outputs = f"{o.name} in {{{', '.join(o.classes)}}}"
    else:
        outputs = f"{o.name} ({'Mahalanobis distance' if o.kind == ANOMALY else 'value'})"
    acc = "" if math.isnan(model.info.accuracy) else f"; held-out accuracy {100 * model.info.accuracy:.1f}%"
    return "\n".join([
        f"model {name or o.name}: {model.kind_name}, {body}",
        f"  windows of {_dur(p.window_ns)} every {_dur(p.hop_ns)} over stream {p.stream} "
        f"(at least {p.min_samples} samples); inputs {inputs}",
        f"  features ({len(p.features)}): {', '.join(p.feature_names())}",
        f"  outputs: {outputs}",
        f"  device: {device_bytes(model)} B model, {ram_bytes(model)} B RAM, "
        f"{ops_per_window(model)} operations per window{acc}"])
