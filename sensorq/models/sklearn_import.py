"""Fitted scikit-learn estimators (or Pipelines ending in one, with an optional
StandardScaler folded in) as sensorq models.

Supported: DecisionTree, RandomForest, ExtraTrees, GradientBoosting and
HistGradientBoosting classifiers and regressors; LogisticRegression,
LinearSVC, RidgeClassifier, Ridge, LinearRegression; MLPClassifier and
MLPRegressor with ReLU (or identity) hidden layers; EllipticEnvelope,
MinCovDet and EmpiricalCovariance as anomaly scorers.  Anything else is
refused with the reason.  scikit-learn is only imported by the estimator
itself: this module reads fitted attributes and never calls into it, except
GradientBoosting's ``_raw_predict_init`` for its constant initial score.
"""
from __future__ import annotations

import numpy as np

from .features import feature_scales
from .model import (ANOMALY, ARGMAX, CLASSES, LINEAR_VALUE, MEAN_MODE, SIGN, SUM, SUMSQ, VALUE,
                    VOTE, Info, Model, ModelError, Outputs, Pipeline, TreeBody)
from .quantize import quantize_dense, tree_threshold, value_leaf_scale, vote_leaves

TREE_CLASSIFIERS = ("DecisionTreeClassifier", "RandomForestClassifier", "ExtraTreesClassifier",
                    "ExtraTreeClassifier")
TREE_REGRESSORS = ("DecisionTreeRegressor", "RandomForestRegressor", "ExtraTreesRegressor",
                   "ExtraTreeRegressor")
LINEAR_CLASSIFIERS = ("LogisticRegression", "LinearSVC", "RidgeClassifier", "SGDClassifier")
LINEAR_REGRESSORS = ("Ridge", "LinearRegression", "Lasso", "ElasticNet", "SGDRegressor")
COVARIANCE = ("EllipticEnvelope", "MinCovDet", "EmpiricalCovariance", "LedoitWolf", "ShrunkCovariance")


def from_sklearn(estimator, pipeline: Pipeline, *, class_names=None, X_calib=None,
                 output_name: str = "class", info: Info | None = None) -> Model:
    """A sensorq Model scoring ``estimator`` on ``pipeline``'s features.

    class_names: the name of each label code (``class_names[code]``), e.g. a
    categorical channel's categories; default str(code).  X_calib: float
    feature rows the estimator was trained on, to calibrate the int8 scales of
    linear models, MLPs and anomaly scorers."""
    scaler, est = _unwrap(estimator)
    name = type(est).__name__
    n_feat = len(pipeline.features)
    n_in = getattr(est, "n_features_in_", None)
    if n_in is None:
        raise ModelError(f"{name} is not fitted")
    if n_in != n_feat:
        raise ModelError(f"{name} was fitted on {n_in} features, the pipeline computes {n_feat}")
    if scaler is not None and name not in LINEAR_CLASSIFIERS + LINEAR_REGRESSORS + \
            ("MLPClassifier", "MLPRegressor"):
        raise ModelError(f"a StandardScaler is folded only into linear models and MLPs, not {name} "
                         f"(trees do not need one)")
    fscale = feature_scales(pipeline)
    if name in TREE_CLASSIFIERS + TREE_REGRESSORS:
        body, outputs = _forest(est, name, fscale, class_names, output_name)
    elif name in ("GradientBoostingClassifier", "GradientBoostingRegressor"):
        body, outputs = _boosting(est, name, fscale, class_names, output_name)
    elif name in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"):
        body, outputs = _hist_boosting(est, name, fscale, class_names, output_name)
    elif name in LINEAR_CLASSIFIERS + LINEAR_REGRESSORS + ("MLPClassifier", "MLPRegressor"):
        body, outputs = _dense(est, name, scaler, fscale, X_calib, class_names, output_name)
    elif name in COVARIANCE:
        body, outputs = _anomaly(est, name, fscale, X_calib, output_name)
    else:
        raise ModelError(f"sensorq cannot convert {name}: it scores tree ensembles (DecisionTree, "
                         f"RandomForest, ExtraTrees, (Hist)GradientBoosting), linear models "
                         f"(LogisticRegression, LinearSVC, Ridge...), MLPs and covariance-based "
                         f"anomaly scorers (EllipticEnvelope)")
    model = Model(pipeline, outputs, body, info or Info(origin=name))
    if not model.info.origin:
        model.info.origin = name
    from .validate import check_model
    check_model(model)
    return model


def _unwrap(estimator):
    """(StandardScaler or None, final estimator) of a Pipeline, or (None, estimator)."""
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return None, estimator
    parts = [s for _, s in steps if s not in (None, "passthrough")]
    if len(parts) == 1:
        return None, parts[0]
    if len(parts) == 2 and type(parts[0]).__name__ == "StandardScaler":
        return parts[0], parts[1]
    names = ", ".join(type(p).__name__ for p in parts)
    raise ModelError(f"a Pipeline of {names}: sensorq folds only a StandardScaler before the "
                     f"estimator (the features themselves are sensorq's)")


def _class_outputs(classes, class_names, output_name) -> Outputs:
    names = []
    for c in classes:
        if class_names is not None and isinstance(c, (int, np.integer)) and 0 <= c < len(class_names):
            names.append(str(class_names[int(c)]))
        else:
            names.append(str(c))
    if len(names) < 2:
        raise ModelError("a classifier needs at least 2 classes")
    return Outputs(CLASSES, output_name, names)


# --- trees -----------------------------------------------------------------------------

class _TreeBuilder:
    """Collects trees into the flat tables of a TreeBody: internal nodes in
    pre-order (children after their parent), leaves deduplicated by value."""

    def __init__(self, fscale):
        self.fscale = fscale
        self.feature, self.thr_q, self.thr_f, self.left, self.right = [], [], [], [], []
        self.starts, self.roots, self.outs = [0], [], []
        self.leaf_index: dict = {}
        self.leaves_q, self.leaves_f = [], []

    def leaf(self, q: tuple, f: tuple) -> int:
        key = (q, f)
        if key not in self.leaf_index:
            self.leaf_index[key] = len(self.leaves_q)
            self.leaves_q.append(q)
            self.leaves_f.append(f)
        return ~self.leaf_index[key]

    def add_tree(self, left, right, feature, threshold, leaf_of, out: int = 0) -> None:
        """left/right/feature/threshold: node arrays (leaf where left < 0 or
        is_leaf); leaf_of(node) -> (quantized tuple, float tuple)."""
        base = len(self.feature)
        order, stack = [], [0]
        while stack:                       # pre-order, iteratively (no recursion limit)
            node = stack.pop()
            if left[node] < 0:
                continue
            order.append(node)
            stack.append(right[node])
            stack.append(left[node])
        local = {node: i for i, node in enumerate(order)}
        ref = lambda node: local[node] if left[node] >= 0 else self.leaf(*leaf_of(node))  # noqa: E731
        for node in order:
            f = int(feature[node])
            self.feature.append(f)
            self.thr_f.append(float(threshold[node]))
            self.thr_q.append(tree_threshold(float(threshold[node]), float(self.fscale[f])))
            self.left.append(ref(int(left[node])))
            self.right.append(ref(int(right[node])))
        self.roots.append(0 if order else ref(0))
        self.starts.append(base + len(order))
        self.outs.append(out)

    def body(self, mode, n_out, init_q, leaf_scale, init_f, cast32) -> TreeBody:
        if len(self.roots) > 1024:
            raise ModelError(f"{len(self.roots)} trees: sensorq models hold at most 1024")
        i32 = lambda v: np.array(v, np.int32)   # noqa: E731
        return TreeBody(mode, n_out, i32(init_q), float(leaf_scale), np.array(self.outs, np.uint8),
                        np.array(self.starts, np.int64), i32(self.roots),
                        np.array(self.feature, np.uint8), i32(self.thr_q), i32(self.left),
                        i32(self.right), i32(self.leaves_q), np.array(self.thr_f),
                        np.array(self.leaves_f, np.float64), np.asarray(init_f, np.float64), cast32)


def _trees_of(est, name):
    return [est] if name.startswith(("DecisionTree", "ExtraTree")) and not hasattr(est, "estimators_") \
        else list(est.estimators_)


def _forest(est, name, fscale, class_names, output_name):
    trees = _trees_of(est, name)
    if getattr(est, "n_outputs_", 1) != 1:
        raise ModelError(f"{name} has several outputs; sensorq models have one")
    builder = _TreeBuilder(fscale)
    if name in TREE_CLASSIFIERS:
        outputs = _class_outputs(est.classes_, class_names, output_name)
        for t in trees:
            tr = t.tree_
            probs = tr.value[:, 0, :] / tr.value[:, 0, :].sum(axis=1, keepdims=True)
            leaf_of = lambda node, p=probs: (tuple(vote_leaves(p[node]).tolist()), tuple(p[node].tolist()))  # noqa: E731
            builder.add_tree(tr.children_left, tr.children_right, tr.feature, tr.threshold, leaf_of)
        K = len(outputs.classes)
        return builder.body(VOTE, K, [0] * K, 1 / 255, [0.0] * K, True), outputs
    values = np.concatenate([t.tree_.value[:, 0, 0] for t in trees])
    scale = value_leaf_scale(values, np.zeros(1))
    for t in trees:
        tr = t.tree_
        leaf_of = lambda node, v=tr.value[:, 0, 0]: ((int(round(v[node] / scale)),), (float(v[node]),))  # noqa: E731
        builder.add_tree(tr.children_left, tr.children_right, tr.feature, tr.threshold, leaf_of)
    return builder.body(MEAN_MODE, 1, [0], scale, [0.0], True), Outputs(VALUE, output_name)


def _boosting(est, name, fscale, class_names, output_name):
    init = getattr(est, "init_", None)
    if not (init == "zero" or type(init).__name__ in ("DummyClassifier", "DummyRegressor")):
        raise ModelError(f"{name} with a custom init estimator cannot be converted "
                         f"(its initial score is not a constant)")
    init_f = np.asarray(est._raw_predict_init(np.zeros((1, est.n_features_in_))), np.float64)[0]
    stages = est.estimators_                  # (n_stages, K)
    lr = est.learning_rate
    values = np.concatenate([t.tree_.value[:, 0, 0] * lr for t in stages.ravel()])
    scale = value_leaf_scale(values, init_f)
    builder = _TreeBuilder(fscale)
    for stage in stages:
        for k, t in enumerate(stage):
            tr = t.tree_
            leaf_of = lambda node, v=tr.value[:, 0, 0] * lr: ((int(round(v[node] / scale)),), (float(v[node]),))  # noqa: E731
            builder.add_tree(tr.children_left, tr.children_right, tr.feature, tr.threshold, leaf_of, k)
    init_q = np.clip(np.round(init_f / scale), -2**31 + 1, 2**31 - 1)
    if name.endswith("Classifier"):
        outputs = _class_outputs(est.classes_, class_names, output_name)
    else:
        outputs = Outputs(VALUE, output_name)
    return builder.body(SUM, stages.shape[1], init_q, scale, init_f, True), outputs


def _hist_boosting(est, name, fscale, class_names, output_name):
    if getattr(est, "_preprocessor", None) is not None or getattr(est, "is_categorical_", None) is not None \
            and np.any(est.is_categorical_):
        raise ModelError(f"{name} with categorical features cannot be converted")
    if name.endswith("Regressor") and type(est._loss).__name__ not in ("HalfSquaredError", "AbsoluteError"):
        raise ModelError(f"{name} with loss {est.loss!r}: only losses with an identity link convert")
    baseline = np.asarray(est._baseline_prediction, np.float64).ravel()
    predictors = est._predictors
    values = np.concatenate([p.nodes["value"] for it in predictors for p in it])
    scale = value_leaf_scale(values, baseline)
    builder = _TreeBuilder(fscale)
    for it in predictors:
        for k, p in enumerate(it):
            nodes = p.nodes
            if nodes["is_categorical"].any():
                raise ModelError(f"{name} has categorical splits; they cannot be converted")
            left = nodes["left"].astype(np.int64)
            left[nodes["is_leaf"].astype(bool)] = -1
            v = nodes["value"]
            leaf_of = lambda node, v=v: ((int(round(v[node] / scale)),), (float(v[node]),))  # noqa: E731
            builder.add_tree(left, nodes["right"].astype(np.int64), nodes["feature_idx"],
                             nodes["num_threshold"], leaf_of, k)
    init_q = np.clip(np.round(baseline / scale), -2**31 + 1, 2**31 - 1)
    if name.endswith("Classifier"):
        outputs = _class_outputs(est.classes_, class_names, output_name)
    else:
        outputs = Outputs(VALUE, output_name)
    # HistGradientBoosting compares float64 features with its thresholds: no float32 cast.
    return builder.body(SUM, len(baseline), init_q, scale, baseline, False), outputs


# --- dense: linear models and MLPs -----------------------------------------------------

def _dense(est, name, scaler, fscale, X_calib, class_names, output_name):
    n = est.n_features_in_
    mean = scaler.mean_ if scaler is not None and scaler.mean_ is not None else np.zeros(n)
    inv = 1 / scaler.scale_ if scaler is not None and scaler.scale_ is not None else np.ones(n)
    if name.startswith("MLP"):
        layers, relus, mode = _mlp_layers(est, name)
    else:
        coef = np.atleast_2d(np.asarray(est.coef_, np.float64))
        intercept = np.atleast_1d(np.asarray(est.intercept_, np.float64)) * np.ones(coef.shape[0])
        layers, relus = [(coef, intercept)], [False]
        if name in LINEAR_REGRESSORS:
            if coef.shape[0] != 1:
                raise ModelError(f"{name} with several targets: sensorq models have one output")
            mode = LINEAR_VALUE
        else:
            mode = SIGN if coef.shape[0] == 1 else ARGMAX
    if X_calib is None and scaler is not None:
        X_calib = _two_rows(mean, 1 / inv)
    body = quantize_dense(mode, layers, relus, mean, inv, X_calib, fscale)
    if mode == LINEAR_VALUE:
        return body, Outputs(VALUE, output_name)
    return body, _class_outputs(est.classes_, class_names, output_name)


def _mlp_layers(est, name):
    if est.activation not in ("relu", "identity"):
        raise ModelError(f"{name} with activation {est.activation!r}: the integer path has ReLU "
                         f"(and identity) only; train with activation='relu'")
    out = est.out_activation_
    if out == "identity":
        mode = LINEAR_VALUE
        if est.coefs_[-1].shape[1] != 1:
            raise ModelError(f"{name} with several targets: sensorq models have one output")
    elif out == "logistic":
        if len(est.classes_) != 2:
            raise ModelError(f"{name} is multi-label; sensorq models have one class output")
        mode = SIGN
    elif out == "softmax":
        mode = ARGMAX
    else:
        raise ModelError(f"{name} with output activation {out!r} cannot be converted")
    layers = [(np.asarray(W, np.float64).T, np.asarray(b, np.float64))
              for W, b in zip(est.coefs_, est.intercepts_)]
    relus = [est.activation == "relu"] * (len(layers) - 1) + [False]
    if len(layers) > 8:
        raise ModelError(f"{name} has {len(layers)} layers; sensorq models hold at most 8")
    return layers, relus, mode


def _two_rows(mean, std):
    """Two rows whose mean and (population) std are mean and std."""
    return np.stack([mean - std, mean + std])


# --- anomaly ---------------------------------------------------------------------------

def _anomaly(est, name, fscale, X_calib, output_name):
    location = np.asarray(est.location_, np.float64)
    precision = np.asarray(est.get_precision(), np.float64)
    threshold = -float(est.offset_) if hasattr(est, "offset_") else 2.0**52
    if X_calib is None:
        raise ModelError(f"{name}: converting an anomaly scorer needs calibration windows (X_calib)")
    return anomaly_body(location, precision, threshold, X_calib, fscale), Outputs(ANOMALY, output_name)


def anomaly_body(location, precision, threshold, X_calib, fscale):
    """Squared Mahalanobis distance d^2 = z' P z with z = x - location, as one
    dense layer and a sum of squares: P = V diag(l) V', d^2 = |A z|^2 with
    A = diag(sqrt(l)) V'."""
    lam, V = np.linalg.eigh((precision + precision.T) / 2)
    A = np.sqrt(np.clip(lam, 0, None))[:, None] * V.T
    threshold = float(threshold) if np.isfinite(threshold) else 2.0**52
    return quantize_dense(SUMSQ, [(A, np.zeros(A.shape[0]))], [False], location,
                          np.ones_like(location), X_calib, fscale, threshold)

