"""A Parquet or Arrow IPC file into a stream (see arrow.py), a record batch
at a time, with the rules of CSV ingest: a new stream is created only after
a first pass over the time column (order, rate) and the null counts found
nothing wrong; a file whose rows start before the stream's newest sample is
refused, or with ``skip_existing`` only its newer rows are appended; names
get codes in order of first appearance and extend the stream's dictionary.
Errors name the file, the row (1-based) and the column.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import ingest as csvin
from ..errors import DataError, OutOfOrderError, SchemaError, ValueRangeError
from ..store.prepare import iso
from .arrow import TIME_NAMES, channel_from_field
from .csvcells import TIME_UNITS_NS, _iso_to_ns, _unit_from_magnitude


class _RowColumn(csvin._Column):
    """Cells of a text column of an Arrow batch, for the CSV time parser;
    errors say "row" (Arrow files have no lines)."""

    def fail(self, k: int, what: str, error=DataError):
        raise error(f"{self.path}: row {self.lines[k]}, column {self.name!r}: "
                    f"{csvin._quoted(self.text(k))} {what}")


@dataclass
class _Layout:
    time_index: int
    channel_fields: list[int]      # field index of every channel, in the stream's channel order


class ArrowIngest:
    def __init__(self, cache, source, stream, time_column, time_unit, units, types, rate_hz,
                 skip_existing, exclude):
        if time_unit is not None and time_unit not in TIME_UNITS_NS:
            raise DataError(f"time unit {time_unit!r} is not one of {', '.join(TIME_UNITS_NS)}")
        self.cache, self.source, self.path = cache, source, Path(source.path)
        self.time_unit, self.skip_existing = time_unit, skip_existing
        self.summary = {"rows": 0, "skipped": 0, "t_first": None, "t_last": None}
        names = [f.name for f in source.schema]
        time_index = _time_index(names, time_column, self.path)
        value_fields = [i for i, n in enumerate(names) if i != time_index and n not in exclude
                        and csvin.sanitize_name(n) not in exclude]
        if not value_fields:
            raise SchemaError(f"{self.path}: no value columns besides the time column "
                              f"{names[time_index]!r}")
        channel_names = [csvin.sanitize_name(names[i]) for i in value_fields]
        wanted = csvin.column_types(types, names, value_fields, self.path)
        name = stream or csvin.sanitize_name(self.path.stem)
        if name in cache.streams:
            self.stream = cache.streams[name]
            order = _existing_order(self.stream, channel_names, self.path)
        else:
            self._survey(names[time_index], time_index)
            channels = [channel_from_field(source.schema.field(i), n, wanted.get(k),
                                           csvin._unit_for(units, n) or "")
                        for k, (i, n) in enumerate(zip(value_fields, channel_names))]
            for i, channel in zip(value_fields, channels):
                if not channel.dtype.startswith("float"):
                    self._check_no_nulls(i, channel)
            self.stream = cache.create_stream(name, channels, rate_hz=rate_hz or self.rate_hz)
            order = list(range(len(channel_names)))
        self.layout = _Layout(time_index, [value_fields[k] for k in order])

    # --- the first pass (new streams) ------------------------------------------------

    def _survey(self, time_name: str, time_index: int) -> None:
        """Check the time column's order and nulls, and measure the mean rate."""
        last, rows, first = None, 0, None
        for batch in self.source.batches(columns=[time_name]):
            t = self._times(batch.column(0), rows, time_name)
            _check_rows_order(t, last, rows, self.path, time_name, None)
            first = t[0] if first is None and len(t) else first
            last = int(t[-1]) if len(t) else last
            rows += len(t)
        self.rate_hz = None
        if rows > 1 and last > first:
            self.rate_hz = float(f"{1e9 * (rows - 1) / (last - first):.6g}")

    def _check_no_nulls(self, i: int, channel) -> None:
        """A column for a channel without a missing value must have none (checked
        before the stream is made, so a refused file creates nothing)."""
        name = self.source.schema.field(i).name
        if self.source.fmt == "parquet":
            meta = self.source.file.metadata
            stats = [meta.row_group(g).column(i).statistics for g in range(meta.num_row_groups)]
            if all(s is not None and s.has_null_count and s.null_count == 0 for s in stats):
                return
        row = 0
        for batch in self.source.batches(columns=[name]):
            rows = np.arange(row + 1, row + 1 + batch.num_rows)
            _no_nulls(batch.column(0), channel, rows, slice(None), self.path)
            row += batch.num_rows

    # --- appending ------------------------------------------------------------------

    def run(self, progress=None) -> int:
        st = self.stream
        names = {c.name: csvin._Names(c) for c in st.channels if c.is_categorical}
        last = self.cache.newest_ns(st.name)
        present = last if self.skip_existing else None
        time_name = self.source.schema.field(self.layout.time_index).name
        row = 0
        for batch in self.source.batches():
            t = self._times(batch.column(self.layout.time_index), row, time_name)
            rows = np.arange(row + 1, row + 1 + len(t))
            row += len(t)
            keep = slice(None)
            if present is not None:
                keep = t > present
                self.summary["skipped"] += int(len(t) - keep.sum())
                t, rows = t[keep], rows[keep]
            if not len(t):
                continue
            _check_rows_order(t, last, rows[0] - 1, self.path, time_name, st.name if
                              self.summary["rows"] == 0 else None)
            values = [self._values(c, batch.column(i), keep, rows, names)
                      for c, i in zip(st.channels, self.layout.channel_fields)]
            for dictionary in names.values():
                dictionary.store(self.cache, st.name)
            self.cache.append(st.name, t, values)
            last = int(t[-1])
            self._note(t)
            if progress is not None:
                progress(row, self.summary["rows"])
        return self.summary["rows"]

    def _note(self, t: np.ndarray) -> None:
        s = self.summary
        s["rows"] += len(t)
        s["t_first"] = int(t[0]) if s["t_first"] is None else s["t_first"]
        s["t_last"] = int(t[-1])

    def _values(self, channel, column, keep, rows, names: dict) -> np.ndarray:
        import pyarrow as pa
        if channel.is_categorical:
            return self._codes(channel, column, keep, rows, names[channel.name])
        _no_nulls(column, channel, rows, keep, self.path)
        if pa.types.is_boolean(column.type):
            column = column.cast(pa.int8())
        values = column.to_numpy(zero_copy_only=False)[keep]
        if channel.scale:          # written by sensorq as raw x scale: back to the raw integers
            values = np.rint(values.astype(np.float64) / channel.scale)
        return _fitted(values, channel, rows, self.path)

    def _codes(self, channel, column, keep, rows, dictionary) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc
        if not (pa.types.is_dictionary(column.type) or pa.types.is_string(column.type)
                or pa.types.is_large_string(column.type)):
            column = column.cast(pa.string())
        _no_nulls(column, channel, rows, keep, self.path)
        encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
        labels = [str(v).strip() for v in encoded.dictionary.to_pylist()]
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)[keep]
        used, first = np.unique(codes, return_index=True)
        order = np.argsort(first, kind="stable")
        remap = np.zeros(len(labels), np.int64)
        remap[used[order]] = np.arange(len(used))
        found = csvin._Labels([labels[i] for i in used[order]], remap[codes], first[order])
        for text, at in zip(found.names, found.first_rows):
            if not text:
                raise DataError(f"{self.path}: row {rows[at]}, column {channel.name!r}: "
                                f"{csvin._EMPTY_NAME}")
        return dictionary.codes(found, rows, self.path, channel.name)

    def _times(self, column, row0: int, name: str) -> np.ndarray:
        import pyarrow as pa
        rows = np.arange(row0 + 1, row0 + 1 + len(column))
        if column.null_count:
            at = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{self.path}: row {rows[at]}, column {name!r}: the time is missing")
        kind = column.type
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            return column.cast(pa.timestamp("ns")).to_numpy(zero_copy_only=False).view(np.int64)
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            numbers = column.to_numpy(zero_copy_only=False)
            self.time_unit = self.time_unit or _unit_from_magnitude(numbers)
            return _epoch_ns(numbers, self.time_unit, rows, self.path, name)
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return _iso_to_ns(_text_column(column, rows, self.path, name))
        raise SchemaError(f"{self.path}: time column {name!r} is {kind}: not a time")


def _time_index(names: list[str], time_column, path: Path) -> int:
    if time_column is not None:
        if time_column not in names:
            raise SchemaError(f"{path}: no time column {csvin._quoted(time_column)}; columns: "
                              f"{csvin._names_text(names)}")
        return names.index(time_column)
    lower = [n.lower() for n in names]
    return next((lower.index(c) for c in TIME_NAMES if c in lower), 0)


def _existing_order(stream, channel_names: list[str], path: Path) -> list[int]:
    """The file's value columns in the stream's channel order."""
    have = [c.name for c in stream.channels]
    if sorted(have) != sorted(channel_names):
        raise SchemaError(f"{path}: columns {csvin._names_text(channel_names)} do not match the "
                          f"channels of stream {stream.name!r}: {csvin._names_text(have)}")
    return [channel_names.index(n) for n in have]


def _check_rows_order(t: np.ndarray, last, row0: int, path: Path, column: str, stream) -> None:
    from ..store.prepare import first_out_of_order
    k = first_out_of_order(t, last)
    if k is None:
        return
    if k == 0 and stream is not None:
        raise csvin.AlreadyPresentError(
            f"{path}: row {row0 + 1}: its time {iso(int(t[0]))} is before the newest sample of "
            f"stream {stream!r} ({iso(last)}), so this file, or its start, is in the stream "
            f"already; nothing was stored.  To append only its rows after {iso(last)}, ingest "
            f"with --skip-existing (skip_existing=True in Python)")
    raise OutOfOrderError(f"{path}: row {row0 + k + 1}, column {column!r}: the time is earlier "
                          f"than the row before it")


def _no_nulls(column, channel, rows, keep, path: Path) -> None:
    if not column.null_count:
        return
    nulls = column.is_null().to_numpy(zero_copy_only=False)[keep]
    if not nulls.any():
        return
    at = int(np.flatnonzero(nulls)[0])
    if channel.is_categorical:
        raise DataError(f"{path}: row {rows[at]}, column {channel.name!r}: {csvin._EMPTY_NAME}")
    if channel.is_integer:
        raise DataError(f"{path}: row {rows[at]}, column {channel.name!r}: the value is missing, "
                        f"and {channel.dtype} has no missing value; store the column as float64 "
                        f"(--type {channel.name}=float64), where it is NaN")


def _fitted(values: np.ndarray, channel, rows, path: Path) -> np.ndarray:
    k = csvin.first_misfit(values, channel)
    if k is not None:
        raise ValueRangeError(f"{path}: row {rows[k]}, column {channel.name!r}: {values[k]!r} "
                              f"does not fit channel {channel.name!r} ({channel.dtype})")
    return values.astype(channel.numpy_dtype)


def _epoch_ns(numbers: np.ndarray, unit: str, rows, path: Path, name: str) -> np.ndarray:
    factor = TIME_UNITS_NS[unit]
    limit = 9.2e18 / factor
    with np.errstate(invalid="ignore"):
        bad = (numbers >= limit) | (numbers <= -limit)
        if numbers.dtype.kind == "f":
            bad |= ~np.isfinite(numbers)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(f"{path}: row {rows[k]}, column {name!r}: {numbers[k]!r} is not a time in "
                        f"{unit} since the epoch (or is beyond 1677 to 2262)")
    if numbers.dtype.kind in "iu":
        return numbers.astype(np.int64) * factor
    return np.rint(numbers * factor).astype(np.int64)


def _text_column(column, rows, path: Path, name: str) -> _RowColumn:
    cells = [s.encode("utf-8") for s in column.to_pylist()]
    lengths = np.fromiter(map(len, cells), np.int64, len(cells))
    ends = np.cumsum(lengths)
    return _RowColumn(csvin._padded(b"".join(cells)), ends - lengths, ends, rows, path, name)
