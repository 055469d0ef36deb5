"""The trainer the command line uses: windows of a stream, a label per window,
a scikit-learn estimator (or sensorq's own Mahalanobis scorer), converted to a
sensorq model and measured on held-out windows with the quantized path.

Labels: the label channel's majority value over the window's samples; a tie
goes to the smallest code.  Window selection: ``mask(t, columns) -> bool per
sample`` keeps the windows all of whose samples pass (so ``split == train``
takes only windows inside the training part); ``test_mask`` likewise picks the
held-out windows; without it the last ``holdout`` fraction of the training
windows (in time) is held out and the model is then refitted on all of them.
``group`` (a channel, e.g. a recording number) keeps only windows within one
value of it, so no window mixes two recordings laid end to end.  A
query-language ``where`` text is turned into a mask by the caller (the query
engine), not here.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np

from .features import compute_windows, feature_scales, make_pipeline
from .model import ANOMALY, Info, Model, ModelError, Outputs, Pipeline
from .compress import drop_unused_features
from .score import score_codes

KINDS = ("forest", "linear", "mlp", "anomaly", "tree", "boosting")


@dataclass
class TrainingData:
    pipeline: Pipeline
    X: np.ndarray            # float features of the training windows
    codes: np.ndarray        # integer codes of the same windows
    y: np.ndarray            # labels (-1 for an unlabelled anomaly scorer)
    X_test: np.ndarray
    codes_test: np.ndarray
    y_test: np.ndarray
    class_codes: np.ndarray  # the label codes in class order
    class_names: list


def default_features(stream, label=None, exclude=()) -> tuple[list[str], list[tuple[str, ...]]]:
    """Channels to describe (every numeric channel but the label, categorical
    ones and ``exclude``) and mag() groups: channels whose names differ only in
    a final x/y/z (acc_x, acc_y, acc_z)."""
    names = [c.name for c in stream.channels if c.name != label and c.name not in exclude
             and getattr(c, "categories", None) is None]
    groups: dict[str, list[str]] = {}
    for n in names:
        m = re.fullmatch(r"(.+?)_?([xyzXYZ])", n)
        if m:
            groups.setdefault(m.group(1), []).append(n)
    mags = [tuple(g) for g in groups.values() if 2 <= len(g) <= 4]
    return names, mags


def training_data(cache, stream_name, label, *, features=None, window="2s", hop="500ms",
                  mask=None, test_mask=None, holdout=0.25, exclude=(), class_names=None,
                  pipeline=None, group=None, where=None, test_where=None, start_ns=None,
                  end_ns=None) -> TrainingData:
    stream = cache.streams.get(stream_name)
    if stream is None:
        raise ModelError(f"no stream {stream_name!r} in the cache")
    mask = _both(mask, where, stream)
    test_mask = _both(test_mask, test_where, stream)
    if pipeline is None:
        # the group channel (a recording number, say) identifies, it does not measure
        channels, mags = default_features(stream, label, tuple(exclude) + ((group,) if group else ()))
        pipeline = make_pipeline(stream, features, window=window, hop=hop, channels=channels,
                                 mags=mags, cache=cache)
    if label is not None:
        channel = stream.channel(label) if label in [c.name for c in stream.channels] else None
        if channel is None or not channel.is_integer:
            raise ModelError(f"label {label!r} must be an integer or categorical channel of "
                             f"stream {stream_name!r}")
    w = compute_windows(cache, pipeline, start_ns, end_ns, codes=True, values=True, label=label, mask=mask)
    keep = _selected(cache, pipeline, w, group, mask, start_ns, end_ns)
    y = w.label if label is not None else np.full(len(w), -1, np.int64)
    if test_mask is not None:
        t = compute_windows(cache, pipeline, start_ns, end_ns, codes=True, values=True, label=label,
                            mask=test_mask)
        sel = _selected(cache, pipeline, t, group, test_mask, start_ns, end_ns)
        test = (t.values[sel], t.codes[sel], t.label[sel] if label else np.full(int(sel.sum()), -1))
        train = (w.values[keep], w.codes[keep], y[keep])
    else:
        idx = np.flatnonzero(keep)
        cut = len(idx) - int(len(idx) * holdout)
        train = (w.values[idx[:cut]], w.codes[idx[:cut]], y[idx[:cut]])
        test = (w.values[idx[cut:]], w.codes[idx[cut:]], y[idx[cut:]])
    if len(train[0]) < 2:
        raise ModelError(f"only {len(train[0])} training windows: widen the selection or shorten the window")
    codes_ = np.unique(train[2]) if label is not None else np.zeros(0, np.int64)
    categories = getattr(stream.channel(label), "categories", None) if label else None
    names = list(categories) if categories else class_names
    return TrainingData(pipeline, *train, *test, codes_, names)


def _both(mask, where, stream):
    """A mask function and a where text, combined (either may be None)."""
    if where is None:
        return mask
    from .where import mask_from_where
    text_mask = mask_from_where(stream, where)
    if mask is None:
        return text_mask
    return lambda t, c: np.asarray(mask(t, c), bool) & text_mask(t, c)


def _selected(cache, pipeline, w, group, mask, start_ns=None, end_ns=None) -> np.ndarray:
    """Windows all of whose samples pass the mask and, with ``group`` (a
    channel such as a recording number), lie within one value of it."""
    keep = w.keep if w.keep is not None else np.ones(len(w), bool)
    if group is not None:
        g = compute_windows(cache, pipeline, start_ns, end_ns, codes=False, label=group, mask=mask)
        assert np.array_equal(g.start, w.start)
        keep = keep & g.pure
    return keep


def make_estimator(kind: str, options: dict, n_classes: int):
    """The scikit-learn estimator for a kind (imported here, never by sensorq itself)."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline as sk_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier
    seed = options.get("seed", 0)
    if kind == "forest":
        return RandomForestClassifier(options.get("trees", 10), max_depth=options.get("depth", 6),
                                      ccp_alpha=options.get("ccp_alpha", 0.0), random_state=seed,
                                      min_samples_leaf=options.get("min_leaf", 1))
    if kind == "tree":
        return DecisionTreeClassifier(max_depth=options.get("depth", 6), random_state=seed,
                                      ccp_alpha=options.get("ccp_alpha", 0.0))
    if kind == "boosting":
        return GradientBoostingClassifier(n_estimators=options.get("trees", 20),
                                          max_depth=options.get("depth", 3), random_state=seed)
    if kind == "linear":
        return sk_pipeline(StandardScaler(), LogisticRegression(C=options.get("C", 1.0), max_iter=5000))
    if kind == "mlp":
        return sk_pipeline(StandardScaler(), MLPClassifier(
            hidden_layer_sizes=tuple(options.get("hidden", (32,))), max_iter=options.get("epochs", 2000),
            alpha=options.get("alpha", 1e-3), random_state=seed))
    raise ModelError(f"unknown model kind {kind!r}; kinds: {', '.join(KINDS)}")


def train(cache, stream, label=None, *, name="model", kind="forest", features=None, window="2s",
          hop="500ms", mask=None, test_mask=None, holdout=0.25, class_names=None, exclude=(),
          group=None, where=None, test_where=None, start_ns=None, end_ns=None,
          data: TrainingData | None = None, **options) -> Model:
    """Train a model of ``kind`` on ``stream``'s windows.  See the module
    docstring for labels and window selection; ``options``: trees, depth,
    ccp_alpha, C, hidden, epochs, contamination, prune (MLP weight sparsity)."""
    if kind != "anomaly" and label is None:
        raise ModelError(f"a {kind} model needs a label channel (only 'anomaly' trains without one)")
    data = data or training_data(cache, stream, label if kind != "anomaly" else None, features=features,
                                 window=window, hop=hop, mask=mask, test_mask=test_mask,
                                 holdout=holdout, exclude=exclude, class_names=class_names,
                                 group=group, where=where, test_where=test_where, start_ns=start_ns,
                                 end_ns=end_ns)
    started = time.time_ns()
    if kind == "anomaly":
        model = _train_anomaly(data, name, options)
    else:
        model = _train_supervised(data, name, kind, options)
    # features no part of the model reads are dropped: never computed, never stored
    model = drop_unused_features(model)
    model.info = Info(evaluate(model, _columns(data, model)), len(data.X), label or "", started,
                      _origin(kind, options), where or "", test_where or "", group or "")
    return model


def _columns(data: TrainingData, model: Model) -> TrainingData:
    """data restricted to the features of model's pipeline, in its order."""
    names = data.pipeline.feature_names()
    cols = [names.index(n) for n in model.pipeline.feature_names()]
    from .compress import _sub_pipeline
    return TrainingData(_sub_pipeline(data.pipeline, cols), data.X[:, cols], data.codes[:, cols], data.y,
                        data.X_test[:, cols], data.codes_test[:, cols], data.y_test, data.class_codes,
                        data.class_names)


def _origin(kind, options) -> str:
    text = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
    return f"train(kind={kind}{', ' + text if text else ''})"


def _train_supervised(data: TrainingData, name, kind, options) -> Model:
    from .sklearn_import import from_sklearn
    if len(data.class_codes) < 2:
        raise ModelError(f"the training windows have {len(data.class_codes)} label value(s); "
                         f"a classifier needs 2 or more")
    est = make_estimator(kind, options, len(data.class_codes))
    est.fit(data.X, data.y)
    if kind == "mlp" and options.get("prune"):
        from .compress import prune_mlp
        est = prune_mlp(est, data.X, data.y, options["prune"])
    return from_sklearn(est, data.pipeline, class_names=data.class_names, X_calib=data.X,
                        output_name=name)


def _train_anomaly(data: TrainingData, name, options) -> Model:
    """Mahalanobis distance on the window features, trained on the stream's
    own history: mean and covariance (plus a small ridge so that constant or
    collinear features do not make it singular); the threshold is the
    (1 - contamination) quantile of the training distances, as EllipticEnvelope."""
    from .sklearn_import import anomaly_body
    X = data.X
    location = X.mean(axis=0)
    cov = np.cov(X, rowvar=False, bias=True).reshape(X.shape[1], X.shape[1])
    ridge = 1e-6 * max(float(np.trace(cov)) / X.shape[1], 1e-12)
    precision = np.linalg.pinv(cov + ridge * np.eye(X.shape[1]))
    z = X - location
    d2 = np.einsum("ij,jk,ik->i", z, precision, z)
    threshold = float(np.quantile(d2, 1 - options.get("contamination", 0.01)))
    body = anomaly_body(location, precision, threshold, X, feature_scales(data.pipeline))
    return Model(data.pipeline, Outputs(ANOMALY, name), body)


def evaluate(model: Model, data: TrainingData) -> float:
    """Held-out accuracy of the quantized path (anomaly: the fraction of
    held-out windows scored normal); NaN without held-out windows."""
    if not len(data.codes_test):
        return float("nan")
    s = score_codes(model, data.codes_test)
    if model.outputs.kind == ANOMALY:
        return float(np.mean(s.cls == 0))
    predicted = data.class_codes[s.cls] if len(data.class_codes) else s.cls
    return float(np.mean(predicted == data.y_test))
