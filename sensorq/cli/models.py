"""Commands about models (docs/models.md): models, model train|fit|show|export|add|remove.

A model's outputs are queried like any channel (docs/query.md, "Models"):
``sensorq "duration where motion == Running last 1h"``.
"""
from __future__ import annotations

import json
import sys

from ..errors import SensorqError
from .common import note, open_for_reading, open_for_writing

KINDS = ("forest", "tree", "boosting", "linear", "mlp", "anomaly")


def add_parsers(sub, common) -> None:
    p = sub.add_parser("models", parents=[common], help="the cache's models",
                       description="Every model in the cache: kind, input stream and channels, "
                                   "window/hop, outputs, size (float / quantized), accuracy on "
                                   "held-out windows, and the device's flash and RAM for it.")
    p.add_argument("--json", action="store_true", help="print them as JSON (default: a table)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("model", parents=[common], help="train, fit, show, export, add or remove a model")
    ops = p.add_subparsers(dest="operation", metavar="OPERATION", required=True)
    _train_parser(ops, common)
    _fit_parser(ops, common)
    q = ops.add_parser("show", parents=[common], help="a model's features, body and sizes")
    q.add_argument("name")
    q.set_defaults(func=cmd_show)
    q = ops.add_parser("export", parents=[common], help="write a model's .sqm bytes to a file",
                       description="Write the model's bytes (docs/models.md) to a file, for "
                                   "`sensorq model add` on another cache or for a device.")
    q.add_argument("name")
    q.add_argument("-o", "--output", required=True, help="the file to write, e.g. motion.sqm")
    q.add_argument("--device", action="store_true",
                   help="leave out the float parameters and texts: the .sqm a device's cache adds "
                        "(default: the whole model)")
    q.add_argument("--image", action="store_true",
                   help="write the model's device image (docs/models.md §11): what sq_model_load "
                        "takes, its inputs bound to the device ring's channels (--channels)")
    q.add_argument("--channels", help="with --image: the device ring's channels in order, "
                                      "name:dtype comma-separated, e.g. acc_x:int16,acc_y:int16 "
                                      "(default: the model's inputs, float inputs as int16)")
    q.set_defaults(func=cmd_export)
    q = ops.add_parser("add", parents=[common], help="add a model from a .sqm file",
                       description="Add a model exported by `sensorq model export` (validated "
                                   "before it is stored; a damaged file is refused).")
    q.add_argument("file")
    q.add_argument("--name", help="store it under this name (default: the name it was exported with)")
    q.set_defaults(func=cmd_add)
    q = ops.add_parser("remove", parents=[common], help="delete a model from the cache")
    q.add_argument("name")
    q.set_defaults(func=cmd_remove)


def _train_parser(ops, common) -> None:
    q = ops.add_parser("train", parents=[common], help="train a model on a stream's windows",
                       description="Train a model on windows of a stream: features of every "
                                   "window (docs/models.md), the majority label of its samples as "
                                   "the class.  Accuracy is measured on --test-where windows, or "
                                   "on the last quarter of the training windows.")
    q.add_argument("name")
    q.add_argument("--stream", required=True, help="the stream whose windows are scored")
    q.add_argument("--label", help="a categorical (or integer) channel: the class of each sample "
                                   "(required except for --kind anomaly, which has none)")
    q.add_argument("--kind", choices=KINDS, default="forest", help="the model (default: forest)")
    q.add_argument("--where", help='samples to train on, a predicate: "split == train" (default: all)')
    q.add_argument("--test-where", help='samples to measure accuracy on: "split == test" '
                                        "(default: hold out the last quarter)")
    q.add_argument("--group", help="a channel such as a recording number: windows must not mix "
                                   "its values (default: none)")
    q.add_argument("--window", default="2s", help="window length (default: 2s)")
    q.add_argument("--hop", default="500ms", help="step between windows (default: 500ms)")
    q.add_argument("--exclude", default="", help="channels that are not inputs, comma-separated "
                                                 "(the label always is not)")
    q.add_argument("--trees", type=int, help="trees of a forest or boosting (default: 10)")
    q.add_argument("--depth", type=int, help="depth limit of the trees (default: 6)")
    q.set_defaults(func=cmd_train)


def _fit_parser(ops, common) -> None:
    q = ops.add_parser("fit", parents=[common], help="the most accurate variant within a budget",
                       description="Try variants of a trained model (kind, size, quantization, "
                                   "pruning, feature subsets) on the same windows, print size, "
                                   "RAM, operations per window and accuracy of each, and keep "
                                   "the most accurate one that fits the budget.")
    q.add_argument("name")
    q.add_argument("--flash", required=True, help="model bytes the device can hold, e.g. 2KB")
    q.add_argument("--ram", required=True, help="working memory for scoring, e.g. 512B")
    q.set_defaults(func=cmd_fit)


def _registry(cache):
    from ..models.registry import ModelRegistry
    return ModelRegistry(cache)


def _allow_scipy() -> None:
    """Training imports scikit-learn, which needs scipy.linalg: undo the
    command line's start-up shortcut that keeps it out (cli.keep_scipy_out)."""
    if "scipy.linalg" in sys.modules and sys.modules["scipy.linalg"] is None:
        del sys.modules["scipy.linalg"]


def cmd_models(args) -> int:
    from ..models.registry import format_table
    with open_for_reading(args) as cache:
        summaries = _registry(cache).list()
    if args.json:
        print(json.dumps([vars(s) for s in summaries], indent=2, default=str))
    elif summaries:
        print(format_table(summaries))
    else:
        print("no models (train one: sensorq model train NAME --stream S --label L)")
    return 0


def cmd_train(args) -> int:
    options = {k: v for k, v in (("trees", args.trees), ("depth", args.depth)) if v is not None}
    exclude = tuple(c for c in args.exclude.split(",") if c)
    _allow_scipy()
    with open_for_writing(args) as cache:
        model = _registry(cache).train(args.name, args.stream, args.label, kind=args.kind,
                                       window=args.window, hop=args.hop, where=args.where,
                                       test_where=args.test_where, group=args.group,
                                       exclude=exclude, **options)
    accuracy = model.info.accuracy
    scored = "" if accuracy is None else f", accuracy {100 * accuracy:.1f} % on held-out windows"
    print(f"model {args.name!r}: {model.kind_name} trained on {model.info.n_train} windows{scored}")
    note(args, f'query it: sensorq "count where {args.name} == ... last 1h"; '
               f"fit it to a device: sensorq model fit {args.name} --flash 2KB --ram 512B")
    return 0


def cmd_fit(args) -> int:
    _allow_scipy()
    with open_for_writing(args) as cache:
        result = _registry(cache).fit(args.name, flash=args.flash, ram=args.ram)
    print(result.table())
    if result.best is None:
        print(f"no variant fits flash {args.flash} and RAM {args.ram}; model {args.name!r} is unchanged")
        return 1
    print(f"kept: {result.best.description} as {args.name!r}")
    return 0


def cmd_show(args) -> int:
    from ..models.registry import describe_model
    with open_for_reading(args) as cache:
        print(describe_model(_registry(cache).get(args.name), args.name))
    return 0


def cmd_export(args) -> int:
    if args.image:
        return _export_image(args)
    if args.channels:
        raise SensorqError("--channels goes with --image (the device image binds the inputs to them)")
    with open_for_reading(args) as cache:
        size = _registry(cache).export(args.name, args.output, quantized_only=args.device)
    print(f"model {args.name!r}: {size} bytes written to {args.output}")
    return 0


def _export_image(args) -> int:
    """The device image, bound to the ring's channels; prints the ring's
    schema hash (its sq_stream_cfg.schema: the image is refused by a ring
    of another)."""
    from pathlib import Path
    from ..device.image import device_image, device_stream_schema
    from ..device.models import device_channels
    with open_for_reading(args) as cache:
        model = _registry(cache).get(args.name)
    channels = device_channels(model) if not args.channels else _parse_channels(args.channels)
    data = device_image(model, channels)
    Path(args.output).write_bytes(data)
    print(f"model {args.name!r}: device image of {len(data)} bytes written to {args.output}, for a ring "
          f"of {', '.join(f'{n}:{d}' for n, d in channels)} (sq_stream_cfg.schema = "
          f"{device_stream_schema(channels):#010x})")
    return 0


def _parse_channels(text: str) -> list[tuple[str, str]]:
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, dtype = part.partition(":")
        if not sep or not name or not dtype:
            raise SensorqError(f"--channels: {part!r} is not name:dtype (e.g. acc_x:int16)")
        out.append((name.strip(), dtype.strip()))
    return out


def cmd_add(args) -> int:
    with open_for_writing(args) as cache:
        model = _registry(cache).import_file(args.file, args.name)
    print(f"model {args.name or model.outputs.name!r} added from {args.file}")
    return 0


def cmd_remove(args) -> int:
    with open_for_writing(args) as cache:
        _registry(cache).remove(args.name)
    print(f"model {args.name!r} removed")
    return 0
