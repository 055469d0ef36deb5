"""Arrow and Parquet: query results and streams out, files in (pyarrow, the
optional extra ``pip install 'sensorq[arrow]'``).

* ``result_to_arrow(result)``: a query result as a ``pyarrow.Table``; times
  as ``timestamp[ns, UTC]`` (exact int64, a missing time is null), names as
  strings, every column's unit in its field metadata (``unit``).
* ``stream_schema``/``stream_arrays``: a stream's samples as Arrow (export.py).
* ``ingest_arrow(cache, path)``: a Parquet or Arrow IPC file into a stream,
  a record batch at a time.  The time column is a timestamp, epoch numbers
  (unit given or guessed, as for CSV) or ISO text; integer, float and bool
  columns become channels of their type (unsigned ones the next signed type
  up), text and dictionary columns categorical channels.  Fields exported
  by sensorq carry their stored type, unit and scale, which are restored.
"""
from __future__ import annotations

import json

import numpy as np

from ..errors import DataError, SchemaError, SensorqError
from ..schema import Channel

META_DTYPE, META_UNIT, META_SCALE = b"sensorq.dtype", b"sensorq.unit", b"sensorq.scale"
META_NAMES = b"sensorq.categories"      # a categorical channel's whole dictionary, as JSON
TIME_NAMES = ("timestamp", "time")


class MissingExtraError(SensorqError):
    """An optional dependency (an extra) is not installed."""


def require_pyarrow(what: str):
    try:
        import pyarrow
        import pyarrow.compute  # noqa: F401
        import pyarrow.ipc  # noqa: F401
    except ImportError:
        raise MissingExtraError(f"{what} needs pyarrow: pip install 'sensorq[arrow]'") from None
    return pyarrow


# --- results ---------------------------------------------------------------------------------

def result_to_arrow(result):
    """A query result as a pyarrow.Table (one row for a scalar result)."""
    pa = require_pyarrow("result_to_arrow")
    from ..result import TIME_MISSING, TIME_UNIT
    if result.kind == "scalar":
        columns, units = {"value": np.array([result.value], dtype=object)}, {"value": result.unit}
    else:
        columns, units = result.columns, result.units
    fields, arrays = [], []
    for name, col in columns.items():
        unit = units.get(name, "")
        array = _result_array(pa, np.asarray(col), unit == TIME_UNIT, TIME_MISSING)
        fields.append(pa.field(name, array.type, metadata={"unit": unit}))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata={
        "query": result.query, "warnings": json.dumps(list(result.warnings))}))


def _result_array(pa, col: np.ndarray, is_time: bool, time_missing: int):
    if is_time:
        values = np.array([time_missing if v is None else v for v in col], np.int64) \
            if col.dtype == object else col.astype(np.int64)
        return pa.array(values, pa.timestamp("ns", tz="UTC"), mask=values == time_missing)
    if col.dtype != object:
        return pa.array(col)
    items = col.tolist()
    kinds = {type(v) for v in items if v is not None}
    if kinds <= {int, np.int64}:
        return pa.array(items, pa.int64())
    if kinds <= {float, int, np.float64, np.int64}:
        return pa.array([None if v is None else float(v) for v in items], pa.float64())
    return pa.array([None if v is None else str(v) for v in items], pa.string())


# --- streams out -------------------------------------------------------------------------------

def stream_schema(st):
    pa = require_pyarrow("Arrow export")
    fields = [pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False)]
    for c in st.channels:
        meta = {META_DTYPE: c.dtype.encode(), META_UNIT: (c.unit or "").encode()}
        if c.is_categorical:
            kind = pa.dictionary(pa.from_numpy_dtype(c.numpy_dtype), pa.string())
            meta[META_NAMES] = json.dumps(list(c.categories)).encode()
        elif c.scale:
            kind = pa.float64()
            meta[META_SCALE] = repr(float(c.scale)).encode()
        else:
            kind = pa.from_numpy_dtype(c.numpy_dtype)
        fields.append(pa.field(c.name, kind, metadata=meta))
    return pa.schema(fields, metadata={b"sensorq.stream": st.name.encode()})


def stream_arrays(st, t: np.ndarray, cols: list[np.ndarray]) -> list:
    pa = require_pyarrow("Arrow export")
    arrays = [pa.array(t.view("datetime64[ns]"), pa.timestamp("ns", tz="UTC"))]
    for c, col in zip(st.channels, cols):
        if c.is_categorical:
            names = pa.array(list(c.categories), pa.string())
            arrays.append(pa.DictionaryArray.from_arrays(pa.array(col), names))
        elif c.scale:
            arrays.append(pa.array(col.astype(np.float64) * c.scale))
        else:
            arrays.append(pa.array(col))
    return arrays


# --- files in ------------------------------------------------------------------------------------

class _Source:
    """A Parquet or Arrow IPC file: its schema and its record batches."""

    def __init__(self, path, fmt: str):
        pa = require_pyarrow(f"reading {fmt} files")
        self.pa, self.path, self.fmt = pa, path, fmt
        try:
            if fmt == "parquet":
                import pyarrow.parquet as pq
                self.file = pq.ParquetFile(str(path))
                self.schema, self.rows = self.file.schema_arrow, self.file.metadata.num_rows
            else:
                self.file = _open_ipc(pa, path)
                self.schema = self.file.schema
                self.rows = sum(self.file.get_batch(i).num_rows
                                for i in range(self.file.num_record_batches))
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{path}: not a readable {fmt} file ({exc})") from None

    def batches(self, columns=None, rows: int = 1 << 18):
        if self.fmt == "parquet":
            yield from self.file.iter_batches(batch_size=rows, columns=columns)
            return
        for i in range(self.file.num_record_batches):
            batch = self.file.get_batch(i)
            yield batch if columns is None else batch.select(columns)


def _open_ipc(pa, path):
    """An Arrow IPC file (random access), or a stream read whole into one."""
    try:
        return pa.ipc.open_file(pa.memory_map(str(path)))
    except pa.ArrowInvalid:
        table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
        return _Batches(table)


class _Batches:
    def __init__(self, table):
        self.schema, self._batches = table.schema, table.to_batches()
        self.num_record_batches = len(self._batches)

    def get_batch(self, i):
        return self._batches[i]


def ingest_arrow(cache, path, stream: str | None = None, fmt: str = "parquet",
                 time_column: str | None = None, time_unit: str | None = None,
                 units: dict | None = None, types: dict | None = None, rate_hz: float | None = None,
                 skip_existing: bool = False, summary: dict | None = None, progress=None,
                 exclude=()) -> tuple[str, int]:
    """Append a Parquet (``fmt="parquet"``) or Arrow IPC (``"arrow"``) file to
    ``stream`` (default: the file's name), created if missing.  Options as
    for ingest_csv.  Returns (stream name, rows appended)."""
    from .arrowin import ArrowIngest
    job = ArrowIngest(cache, _Source(path, fmt), stream, time_column, time_unit, units or {},
                      types or {}, rate_hz, skip_existing, tuple(exclude))
    rows = job.run(progress)
    if summary is not None:
        summary.update(job.summary)
    return job.stream.name, rows


def channel_from_field(field, name: str, wanted: str | None, unit: str) -> Channel:
    """A new stream's channel for an Arrow field (``wanted``: a --type)."""
    import pyarrow.types as t
    meta = field.metadata or {}
    kind = field.type.value_type if t.is_dictionary(field.type) else field.type
    if META_DTYPE in meta:            # written by sensorq: the channel as it was stored
        dtype = meta[META_DTYPE].decode()
        if META_NAMES in meta and wanted in (None, "category"):
            return Channel(name, dtype, categories=tuple(json.loads(meta[META_NAMES])))
        if wanted in (None, dtype):
            scale = float(meta[META_SCALE]) if META_SCALE in meta else None
            return Channel(name, dtype, unit or meta.get(META_UNIT, b"").decode(), scale=scale)
    if wanted == "category" or t.is_string(kind) or t.is_large_string(kind):
        return Channel(name, "int16", categories=())
    if wanted is not None:
        return Channel(name, wanted, unit)
    return Channel(name, _numeric_dtype(field, kind), unit)


def _numeric_dtype(field, kind) -> str:
    import pyarrow.types as t
    if t.is_boolean(kind):
        return "int8"
    if t.is_signed_integer(kind):
        return f"int{max(8, kind.bit_width)}"
    if t.is_unsigned_integer(kind):
        return f"int{min(64, 2 * kind.bit_width)}"
    if t.is_floating(kind):
        return "float32" if kind.bit_width <= 32 else "float64"
    if t.is_decimal(kind):
        return "float64"
    raise SchemaError(f"column {field.name!r} is {field.type}, which sensorq cannot store; "
                      f"exclude it")
