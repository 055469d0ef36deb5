"""Checking and converting what an append is given, before anything is stored.

Timestamps become int64 nanoseconds, columns become arrays in their channels'
storage dtypes.  Every check runs on whole numpy arrays (no per-sample Python);
the first offending sample is named in the error, with its index and value.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError, OutOfOrderError, SchemaError, ValueRangeError
from ..schema import Channel, Stream

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def iso(ns: int) -> str:
    """ISO 8601 text (UTC, nanoseconds) for a timestamp."""
    return str(np.datetime64(int(ns), "ns")) + "Z"


def timestamps_ns(t, stream: Stream) -> np.ndarray:
    """int64 ns from int ns, datetime64, float seconds or ISO text."""
    arr = np.asarray(t)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise DataError(f"stream {stream.name!r}: timestamps must be one-dimensional, got shape {arr.shape}")
    kind = arr.dtype.kind
    if kind == "M":
        ns = arr.astype("datetime64[ns]").view(np.int64)
        _reject_at(ns == np.iinfo(np.int64).min, stream, "timestamp is NaT (not a time)", arr)
        return ns
    if kind in "iu":
        if kind == "u" and arr.size and arr.max() > _INT64_MAX:
            _reject_at(arr > _INT64_MAX, stream, "timestamp does not fit int64 nanoseconds", arr)
        return arr.astype(np.int64, copy=False)
    if kind == "f":
        seconds = arr.astype(np.float64, copy=False)
        _reject_at(~np.isfinite(seconds) | (np.abs(seconds) >= 9.2e9), stream,
                   "timestamp in seconds is not finite or out of range", arr)
        return np.rint(seconds * 1e9).astype(np.int64)
    if kind in "UO":
        try:
            return arr.astype("datetime64[ns]").view(np.int64)
        except (ValueError, TypeError) as exc:
            raise DataError(f"stream {stream.name!r}: timestamps are not times ({exc})") from None
    raise DataError(f"stream {stream.name!r}: timestamps of type {arr.dtype} are not times; give int64 "
                    f"ns, datetime64 or float seconds")


def _reject_at(bad: np.ndarray, stream: Stream, what: str, arr: np.ndarray) -> None:
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"stream {stream.name!r}: {what}: index {i}, value {arr[i]!r}")


def first_out_of_order(t: np.ndarray, last_ns: int | None) -> int | None:
    """Index of the first timestamp earlier than the one before it (for index 0:
    earlier than the stream's last stored ``last_ns``), or None when in order."""
    if t.size and last_ns is not None and t[0] < last_ns:
        return 0
    back = t[1:] < t[:-1]
    at = int(np.argmax(back)) if back.size else 0     # argmax: the first True, one pass
    return at + 1 if back.size and back[at] else None


def check_order(t: np.ndarray, last_ns: int | None, stream: Stream) -> None:
    """Non-decreasing within the batch and not before the stream's last timestamp."""
    i = first_out_of_order(t, last_ns)
    if i == 0:
        raise OutOfOrderError(f"stream {stream.name!r}: timestamp at index 0 ({iso(t[0])}) is earlier "
                              f"than the stream's last stored timestamp ({iso(last_ns)})")
    if i is not None:
        raise OutOfOrderError(f"stream {stream.name!r}: timestamp at index {i} ({iso(t[i])}) is earlier "
                              f"than the one before it at index {i - 1} ({iso(t[i - 1])})")


def columns_in_order(stream: Stream, columns) -> list:
    """The columns as a list in channel order, from a list or a dict by name."""
    names = [c.name for c in stream.channels]
    if isinstance(columns, dict):
        unknown = [k for k in columns if k not in names]
        if unknown:
            raise SchemaError(f"stream {stream.name!r} has no channel {unknown[0]!r}; "
                              f"it has {', '.join(names)}")
        missing = [n for n in names if n not in columns]
        if missing:
            raise SchemaError(f"stream {stream.name!r}: no values given for channel(s) {', '.join(missing)}")
        return [columns[n] for n in names]
    if isinstance(columns, np.ndarray) and columns.ndim == 2:
        columns = list(columns)
    columns = list(columns)
    if len(columns) != len(names):
        raise SchemaError(f"stream {stream.name!r} has {len(names)} channels ({', '.join(names)}), "
                          f"{len(columns)} columns were given")
    return columns


def convert_column(values, channel: Channel, n: int, stream: Stream) -> np.ndarray:
    """``values`` as an array of the channel's storage dtype, every value checked to fit."""
    where = f"stream {stream.name!r}, channel {channel.name!r}"
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"{where}: values are not numbers ({exc})") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise DataError(f"{where}: values must be one-dimensional, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise DataError(f"{where}: {arr.shape[0]} values for {n} timestamps")
    if arr.dtype.kind == "O":
        arr = _object_to_numbers(arr, where)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where}: values of type {arr.dtype} are not numbers")
    if channel.is_integer:
        return _to_int(arr, channel, where)
    return _to_float(arr, channel, where)


def _object_to_numbers(arr: np.ndarray, where: str) -> np.ndarray:
    for caster in (np.int64, np.float64):
        try:
            return arr.astype(caster)
        except (ValueError, TypeError, OverflowError):
            continue
    raise DataError(f"{where}: values are not numbers")


def _to_int(arr: np.ndarray, channel: Channel, where: str) -> np.ndarray:
    target = channel.numpy_dtype
    info = np.iinfo(target)
    if arr.dtype.kind == "b" or (arr.dtype.kind in "iu" and np.can_cast(arr.dtype, target)):
        # no copy of a column already in its storage type: the store encodes it
        # before append returns and copies what it keeps (the open block)
        return arr.astype(target, copy=False)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            bad = (arr < info.min) | (arr > info.max)
            _range_error(bad, arr, channel, where, f"does not fit {target} ({info.min}..{info.max})")
        return arr.astype(target)
    with np.errstate(invalid="ignore"):
        # float bounds: lo and hi + 1 are powers of two, exact in float64
        bad = ~np.isfinite(arr) | (arr < float(info.min)) | (arr >= float(info.max) + 1.0) | (arr != np.floor(arr))
    _range_error(bad, arr, channel, where, f"is not an integer in {target} ({info.min}..{info.max})")
    return arr.astype(target)


def _to_float(arr: np.ndarray, channel: Channel, where: str) -> np.ndarray:
    target = channel.numpy_dtype
    if arr.dtype == target:
        return arr
    with np.errstate(over="ignore", invalid="ignore"):
        converted = arr.astype(target)
    if arr.dtype.kind == "f":
        overflow = np.isfinite(arr) & ~np.isfinite(converted)
        _range_error(overflow, arr, channel, where, f"is out of the range of {target}")
    return converted


def _range_error(bad: np.ndarray, arr: np.ndarray, channel: Channel, where: str, what: str) -> None:
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueRangeError(f"{where}: value {arr[i].item()!r} at index {i} {what}")


def prepare_batch(stream: Stream, t, columns, last_ns: int | None):
    """(t int64, [columns]) ready to store, or an error; nothing is stored here."""
    t_ns = timestamps_ns(t, stream)
    ordered = columns_in_order(stream, columns)
    converted = [convert_column(v, c, t_ns.shape[0], stream) for v, c in zip(ordered, stream.channels)]
    check_order(t_ns, last_ns, stream)
    return t_ns, converted
