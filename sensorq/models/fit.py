"""``fit``: try model variants against a device budget and keep the most
accurate one that fits.

Variants: forests of 1-10 trees of depth 2-6 (with and without
cost-complexity pruning), single trees, linear models, MLPs of 8-32 hidden
units with 0, 50 or 80 % of their weights pruned, and linear/MLP variants on
the 8 features a forest finds most important.  Every variant is quantized,
stripped of the features it does not use, and measured on the held-out
windows with the quantized path (the device's answer).  Flash is the model's
device bytes (no float section); RAM and operations per window are the
estimates of compress.py.  The winner: the highest accuracy among the variants
that fit, ties to the smaller model; or, given a target accuracy, the smallest
variant that fits and reaches it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .compress import device_bytes, ops_per_window, ram_bytes, sparsity
from .model import Model, ModelError
from .train import TrainingData, train, training_data


@dataclass
class Variant:
    description: str
    kind: str
    flash: int
    ram: int
    ops: int
    accuracy: float
    fits: bool
    model: Model

    def row(self) -> dict:
        return {"variant": self.description, "kind": self.kind, "flash": self.flash, "ram": self.ram,
                "ops": self.ops, "accuracy": self.accuracy, "fits": self.fits}


@dataclass
class FitResult:
    variants: list[Variant]
    best: Variant | None

    def table(self) -> str:
        lines = [f"{'variant':40s} {'flash':>6s} {'RAM':>5s} {'ops/win':>8s} {'accuracy':>8s}  fits"]
        for v in self.variants:
            mark = "*" if v is self.best else ""
            lines.append(f"{v.description:40s} {v.flash:6d} {v.ram:5d} {v.ops:8d} "
                         f"{100 * v.accuracy:7.2f}%  {'yes' if v.fits else 'no'}{mark}")
        return "\n".join(lines)


def parse_size(value) -> int:
    if isinstance(value, (int, np.integer)):
        return int(value)
    text = str(value).strip().upper().removesuffix("B")
    factor = 1
    for suffix, f in (("KI", 1024), ("K", 1024), ("MI", 2**20), ("M", 2**20)):
        if text.endswith(suffix):
            text, factor = text[: -len(suffix)], f
            break
    try:
        return int(float(text) * factor)
    except ValueError:
        raise ModelError(f"size {value!r} is not a size such as 2KB or 512B") from None


def default_variants() -> list[tuple[str, dict]]:
    out = []
    for trees in (1, 3, 5, 10):
        for depth in (2, 3, 4, 6):
            out.append(("forest", {"trees": trees, "depth": depth}))
    out += [("forest", {"trees": 3, "depth": 6, "ccp_alpha": 0.005}),
            ("forest", {"trees": 10, "depth": 8, "ccp_alpha": 0.005})]
    out += [("tree", {"depth": d}) for d in (2, 3, 4, 6)]
    out += [("linear", {}), ("linear", {"top": 8})]
    for hidden in (8, 16, 32):
        for prune in (0.0, 0.5, 0.8):
            out.append(("mlp", {"hidden": (hidden,), "prune": prune}))
    out.append(("mlp", {"hidden": (16,), "prune": 0.5, "top": 8}))
    return out


def fit(cache, stream, label, *, flash, ram, name="model", target=None, data: TrainingData | None = None,
        variants=None, **selection) -> FitResult:
    """Train every variant on the same windows, measure, and pick the winner:
    the most accurate variant that fits, or with ``target`` (an accuracy such
    as 0.97) the smallest variant that fits and reaches it.  ``selection``:
    the window selection of training_data (mask, test_mask, group, window,
    hop, features, exclude, class_names)."""
    flash, ram = parse_size(flash), parse_size(ram)
    data = data or training_data(cache, stream, label, **selection)
    ranking = _importance_order(data)
    results = []
    for kind, options in variants or default_variants():
        options = dict(options)
        top = options.pop("top", None)
        d = _subset(data, ranking[:top]) if top else data
        model = train(cache, stream, label, name=name, kind=kind, data=d, **options)
        model.info.where, model.info.test_where, model.info.group = (
            _text(selection.get("where")), _text(selection.get("test_where")), _text(selection.get("group")))
        acc = model.info.accuracy
        v = Variant(_describe(kind, options, top, model), kind, device_bytes(model), ram_bytes(model),
                    ops_per_window(model), acc, False, model)
        v.fits = v.flash <= flash and v.ram <= ram
        results.append(v)
    fitting = [v for v in results if v.fits and not math.isnan(v.accuracy)]
    if target is not None:
        good = [v for v in fitting if v.accuracy >= target]
        best = min(good, key=lambda v: (v.flash, -v.accuracy), default=None)
    else:
        best = max(fitting, key=lambda v: (v.accuracy, -v.flash), default=None)
    return FitResult(results, best)


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _describe(kind, options, top, model) -> str:
    parts = [kind] + [f"{k}={v if not isinstance(v, tuple) else 'x'.join(map(str, v))}"
                      for k, v in options.items() if v not in (0, 0.0)]
    if top:
        parts.append(f"top{top}")
    if kind == "mlp" and options.get("prune"):
        parts.append(f"({100 * sparsity(model):.0f}% zero)")
    return " ".join(parts) + f" [{len(model.pipeline.features)}f]"


def _importance_order(data: TrainingData) -> list[int]:
    """Feature columns, most important first (a forest's impurity importance)."""
    from sklearn.ensemble import RandomForestClassifier
    forest = RandomForestClassifier(50, max_depth=6, random_state=0).fit(data.X, data.y)
    return list(np.argsort(-forest.feature_importances_))


def _subset(data: TrainingData, cols) -> TrainingData:
    cols = list(cols)
    from .compress import _sub_pipeline
    return TrainingData(_sub_pipeline(data.pipeline, cols), data.X[:, cols], data.codes[:, cols], data.y,
                        data.X_test[:, cols], data.codes_test[:, cols], data.y_test, data.class_codes,
                        data.class_names)


def _columns_of(model: Model, data: TrainingData) -> list[int]:
    """Columns of data's pipeline that the (feature-stripped) model reads, in its order."""
    names = data.pipeline.feature_names()
    return [names.index(n) for n in model.pipeline.feature_names()]
