"""A model in memory: the feature pipeline, the outputs and one body (a tree
ensemble or a stack of dense layers), each with its quantized parameters (what
the device runs) and, optionally, its float parameters (the host's reference).

These are plain dataclasses of numpy arrays.  ``format.py`` turns them into the
``.sqm`` bytes of docs/models.md and back; every invariant that ``load_model``
checks on bytes is stated in ``check_model`` here, so a model built in Python
(by the importer or the trainer) is held to the same rules before it is written.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..checksum import crc32
from ..errors import SensorqError

FORMAT_VERSION = 1

# Feature operations (docs/models.md, "Features").  The code of each is its
# number in the file; SCALE is what one unit of the integer code is worth in
# the signal's integer units (so the float feature is about code * SCALE).
MEAN, STD, MIN, MAX, RMS, PTP, MAD, CROSS, BAND, RATIO = range(1, 11)
OP_NAMES = {MEAN: "mean", STD: "std", MIN: "min", MAX: "max", RMS: "rms", PTP: "ptp",
            MAD: "mad", CROSS: "crossings", BAND: "band", RATIO: "bandratio"}
OP_BY_NAME = {v: k for k, v in OP_NAMES.items()}
OP_SCALE = {MEAN: 1 / 16, STD: 1 / 16, MIN: 1.0, MAX: 1.0, RMS: 1 / 16, PTP: 1.0, MAD: 1 / 16,
            CROSS: 1 / 4096, BAND: 1 / 16, RATIO: 1 / 256}

# Output kinds and body kinds.
CLASSES, VALUE, ANOMALY = 0, 1, 2
TREES, DENSE = 1, 2
# Tree ensemble modes: VOTE averages per-class leaf vectors (forests, a single
# tree), SUM adds one raw score per tree to its output (gradient boosting),
# MEAN averages one value per tree (regression forests).
VOTE, SUM, MEAN_MODE = 0, 1, 2
# Dense output modes.
ARGMAX, SIGN, LINEAR_VALUE, SUMSQ = 0, 1, 2, 3
NO_REQUANT = 255

# Limits (docs/models.md, "Limits"): they keep every integer sum of the feature
# and scoring arithmetic inside int64 on the device, and every index narrow.
MAX_INPUTS = 16
MAX_SIGNALS = 32
MAX_MAG = 4
MAX_FEATURES = 255
MAX_FREQS = 255
MAX_WINDOW_SAMPLES = 1 << 19
MAX_TREES = 1024
MAX_TREE_NODES = 32767
MAX_LEAVES = 32767
MAX_CLASSES = 255
MAX_LAYERS = 8
MAX_WIDTH = 1024
INT32_MAX = 2**31 - 1


class ModelError(SensorqError):
    """A model is damaged, truncated, hostile, or does not fit its stream."""


@dataclass(frozen=True)
class Input:
    """One channel of the input stream.  ``exponent`` e maps a stored value v
    to the signal's integer u: floor(v * 2^e) for integer channels (e <= 0, an
    arithmetic shift), round-half-even(v * 2^e) for float channels; then u is
    saturated to int16."""
    name: str
    dtype_code: int
    exponent: int = 0


@dataclass(frozen=True)
class Feature:
    op: int
    signal: int
    steps_a: tuple[int, ...] = ()     # phase steps (u32, 2^32 = one turn per sample) of BAND / RATIO numerator
    steps_b: tuple[int, ...] = ()     # RATIO denominator


@dataclass
class Pipeline:
    stream: str
    inputs: list[Input]
    signals: list[tuple[int, ...]]    # input indices: one = the channel, 2..4 = mag() of them
    features: list[Feature]
    window_ns: int
    hop_ns: int
    rate_mhz: int = 0                 # nominal sample rate in millihertz (0: unknown)
    min_samples: int = 2

    @property
    def schema_hash(self) -> int:
        return schema_hash(self.inputs)

    def feature_names(self) -> list[str]:
        return [feature_name(self, f) for f in self.features]


@dataclass
class Outputs:
    kind: int                         # CLASSES, VALUE or ANOMALY
    name: str
    classes: list[str] = field(default_factory=list)


@dataclass
class TreeBody:
    mode: int                         # VOTE, SUM or MEAN_MODE
    n_out: int
    init: np.ndarray                  # int32 (n_out,)
    leaf_scale: float                 # one integer leaf unit, as a float score
    tree_out: np.ndarray              # uint8 (n_trees,): the output a SUM tree adds to
    tree_start: np.ndarray            # int64 (n_trees + 1,): node range of each tree
    roots: np.ndarray                 # int32 (n_trees,): ref of each root
    feature: np.ndarray               # uint8 (n_nodes,)
    threshold: np.ndarray             # int32 (n_nodes,): go left iff code <= threshold
    left: np.ndarray                  # int32 refs: >= 0 internal node (within its tree), < 0 leaf ~ref
    right: np.ndarray
    leaves: np.ndarray                # int32 (n_leaves, n_values)
    # float parameters (None when the model carries none)
    f_threshold: np.ndarray | None = None   # float64 (n_nodes,)
    f_leaves: np.ndarray | None = None      # float64 (n_leaves, n_values)
    f_init: np.ndarray | None = None        # float64 (n_out,)
    f_cast32: bool = True             # compare float32(x) <= threshold (scikit-learn's trees)

    @property
    def n_trees(self) -> int:
        return int(self.roots.shape[0])

    @property
    def n_values(self) -> int:
        return self.n_out if self.mode == VOTE else 1

    @property
    def has_float(self) -> bool:
        return self.f_threshold is not None


@dataclass
class Layer:
    weights: np.ndarray               # int8 (n_out, n_in)
    bias: np.ndarray                  # int32 (n_out,)
    relu: bool
    shift: int                        # requantization shift, NO_REQUANT on a raw final layer
    mult: np.ndarray | None           # int32 (n_out,) when shift != NO_REQUANT
    f_weights: np.ndarray | None = None     # float64 (n_out, n_in)
    f_bias: np.ndarray | None = None

    @property
    def n_in(self) -> int:
        return int(self.weights.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weights.shape[0])


@dataclass
class DenseBody:
    mode: int                         # ARGMAX, SIGN, LINEAR_VALUE or SUMSQ
    in_off: np.ndarray                # int32 (n_features,)
    in_mul: np.ndarray                # int32
    in_shift: np.ndarray              # uint8
    layers: list[Layer]
    out_scale: np.ndarray             # float64 (n_out of the last layer): one integer unit, as a float
    threshold: int = 0                # SUMSQ: anomalous iff d2 code > threshold
    f_mean: np.ndarray | None = None  # float64 (n_features,): x_std = (x - mean) * inv_std
    f_inv_std: np.ndarray | None = None
    f_threshold: float = 0.0          # SUMSQ: anomalous iff d^2 > f_threshold
    out_offset: float = 0.0           # VALUE: float value = int * out_scale + out_offset (host only)

    @property
    def has_float(self) -> bool:
        return self.f_mean is not None


@dataclass
class Info:
    """What the registry lists: not needed to score."""
    accuracy: float = math.nan        # held-out accuracy (or R^2), NaN when unknown
    n_train: int = 0                  # windows trained on
    label: str = ""                   # label channel the model was trained on
    trained_ns: int = 0               # when (ns since the epoch), 0 unknown
    origin: str = ""                  # e.g. "RandomForestClassifier", "train(kind=forest)"
    where: str = ""                   # training selection (text, see where.py), "" if none / not text
    test_where: str = ""              # held-out selection
    group: str = ""                   # windows kept within one value of this channel


@dataclass
class Model:
    pipeline: Pipeline
    outputs: Outputs
    body: TreeBody | DenseBody
    info: Info = field(default_factory=Info)

    @property
    def kind_name(self) -> str:
        if isinstance(self.body, TreeBody):
            return {VOTE: "forest", SUM: "boosting", MEAN_MODE: "forest"}[self.body.mode]
        if self.body.mode == SUMSQ:
            return "anomaly"
        return "mlp" if len(self.body.layers) > 1 else "linear"


def schema_hash(inputs: list[Input]) -> int:
    """CRC-32 of 'name:dtype_code\\n' per input, in order: what the device
    compares with its ring's channels before scoring."""
    text = "".join(f"{i.name}:{i.dtype_code}\n" for i in inputs)
    return crc32(text.encode("utf-8"))


def signal_name(pipeline: Pipeline, s: int) -> str:
    names = [pipeline.inputs[i].name for i in pipeline.signals[s]]
    return names[0] if len(names) == 1 else f"mag({', '.join(names)})"


def step_hz(step: int, rate_mhz: int) -> float:
    return step / 2**32 * rate_mhz / 1000


def feature_name(pipeline: Pipeline, f: Feature) -> str:
    sig = signal_name(pipeline, f.signal)
    if f.op == BAND:
        return f"band({sig}, {_band_text(f.steps_a, pipeline.rate_mhz)})"
    if f.op == RATIO:
        return (f"bandratio({sig}, {_band_text(f.steps_a, pipeline.rate_mhz)} / "
                f"{_band_text(f.steps_b, pipeline.rate_mhz)})")
    return f"{OP_NAMES.get(f.op, '?')}({sig})"


def _band_text(steps, rate_mhz: int) -> str:
    if not steps:
        return "-"
    lo, hi = step_hz(min(steps), rate_mhz), step_hz(max(steps), rate_mhz)
    return f"{lo:.3g}-{hi:.3g}Hz"
