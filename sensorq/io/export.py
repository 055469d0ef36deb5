"""A stream's samples out to Parquet, Arrow IPC or CSV, a block at a time.

Memory follows one batch of blocks (about BATCH_ROWS samples), never the
stream: blocks are decoded in time order, clipped to the window and written
as record batches (Parquet row groups) or CSV text.

What is written:

* ``time``: UTC nanoseconds (Arrow ``timestamp[ns, UTC]``; CSV: ISO 8601 with
  nine decimals, ``2026-11-24T11:50:00.000000000Z``), exact.
* a numeric channel: its stored type, or, when it has a scale, the physical
  value (raw x scale) as float64.  Arrow field metadata carries
  ``sensorq.dtype``, ``sensorq.unit`` and ``sensorq.scale``, so ingesting the
  file again (io/arrow.py) restores the stored integers exactly.  In CSV a
  scale of 10^-k is written with k decimals (``23.12``, never
  ``23.119999999999997``).
* a categorical channel: Arrow dictionary<int, string> with the channel's
  whole dictionary in code order; CSV: the names.
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SensorqError

BATCH_ROWS = 1 << 20
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow",
           ".ipc": "arrow", ".csv": "csv", ".tsv": "csv"}


class ExportError(SensorqError):
    """An export cannot be written as asked."""


@dataclass
class Exported:
    rows: int = 0
    bytes: int = 0


def format_of(path) -> str:
    if str(path) == "-":
        return "csv"
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ExportError(f"{path}: cannot tell the format from the suffix "
                          f"{Path(path).suffix or '(none)'!r}; use .parquet, .arrow or .csv, or "
                          f"give --format")
    return fmt


def sample_batches(cache, stream: str, start_ns=None, end_ns=None, rows: int = BATCH_ROWS):
    """(t, [columns in storage dtypes]) of the window, in batches of about ``rows``."""
    index = cache.blocks(stream, start_ns, end_ns)
    pending_t, pending_cols, held = [], [], 0
    for i in range(len(index)):
        t, cols = index.decode(i)
        keep = _in_window(t, start_ns, end_ns)
        if keep is not None:
            t, cols = t[keep], [c[keep] for c in cols]
        if not len(t):
            continue
        pending_t.append(t)
        pending_cols.append(cols)
        held += len(t)
        if held >= rows:
            yield _joined(pending_t, pending_cols)
            pending_t, pending_cols, held = [], [], 0
    if held:
        yield _joined(pending_t, pending_cols)


def _in_window(t: np.ndarray, start_ns, end_ns):
    if not len(t):
        return None
    if (start_ns is None or t[0] >= start_ns) and (end_ns is None or t[-1] < end_ns):
        return None
    keep = np.ones(len(t), bool)
    if start_ns is not None:
        keep &= t >= start_ns
    if end_ns is not None:
        keep &= t < end_ns
    return keep


def _joined(ts: list, cols: list) -> tuple[np.ndarray, list[np.ndarray]]:
    return np.concatenate(ts), [np.concatenate(parts) for parts in zip(*cols)]


def export_stream(cache, stream: str, out, start_ns=None, end_ns=None, fmt: str | None = None,
                  progress=None) -> Exported:
    """Write the stream's samples in [start_ns, end_ns) to ``out`` (a path, or a
    text file object for CSV).  ``progress(rows done, rows in all)`` is called
    per batch."""
    st = cache.blocks(stream, 0, 0).stream        # the stream, or the error that names the streams
    fmt = fmt or format_of(out)
    writer = {"parquet": _ArrowWriter, "arrow": _ArrowWriter, "csv": _CsvWriter}.get(fmt)
    if writer is None:
        raise ExportError(f"unknown export format {fmt!r}; use parquet, arrow or csv")
    total = int(cache.blocks(stream, start_ns, end_ns).samples()) or None
    done = Exported()
    with writer(st, out, fmt) as w:
        for t, cols in sample_batches(cache, stream, start_ns, end_ns):
            w.write(t, cols)
            done.rows += len(t)
            if progress is not None:
                progress(done.rows, total)
    done.bytes = os.path.getsize(out) if isinstance(out, (str, Path)) else 0
    return done


# --- CSV ---------------------------------------------------------------------------------------

class _CsvWriter:
    def __init__(self, st, out, fmt):
        self.st = st
        self._own = isinstance(out, (str, Path))
        self.file = open(out, "w", newline="") if self._own else out
        self.file.write(",".join(["time"] + [_csv_cell(c.name) for c in st.channels]) + "\n")
        self.formatters = [_csv_formatter(c) for c in st.channels]

    def write(self, t: np.ndarray, cols: list[np.ndarray]) -> None:
        parts = [iso_ns(t)] + [f(col) for f, col in zip(self.formatters, cols)]
        rows = parts[0]
        for p in parts[1:]:
            rows = np.char.add(np.char.add(rows, ","), p)
        self.file.write("\n".join(rows.tolist()) + "\n")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._own:
            self.file.close()
        else:
            self.file.flush()


def iso_ns(t: np.ndarray) -> np.ndarray:
    """ISO 8601 UTC text with nanoseconds, exact."""
    return np.char.add(np.datetime_as_string(t.view("datetime64[ns]"), unit="ns"), "Z")


def _csv_cell(text: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([text])
    return out.getvalue()


def _csv_formatter(channel):
    """A function from a stored column to its CSV text (a numpy str array)."""
    if channel.is_categorical:
        names = np.array([_csv_cell(n) for n in channel.categories] + [""], dtype=object)
        def names_of(col):
            codes = col.astype(np.int64)
            bad = (codes < 0) | (codes >= len(channel.categories))
            text = names[np.where(bad, len(channel.categories), codes)].astype(str)
            if bad.any():   # a code the dictionary lacks, as results show it
                text[bad] = [f"<code {c}>" for c in codes[bad]]
            return text
        return names_of
    scale = channel.scale
    if scale:
        decimals = _decimals_of(scale)
        if decimals is not None:
            return lambda col: np.char.mod(f"%.{decimals}f", col.astype(np.float64) * scale)
        return lambda col: (col.astype(np.float64) * scale).astype(str)
    if channel.is_integer:
        return lambda col: col.astype(str)
    return lambda col: np.char.replace(col.astype(np.float64).astype(str), "nan", "")


def _decimals_of(scale: float) -> int | None:
    """k when scale is 10^-k (0.01 -> 2), else None."""
    k = -math.log10(scale)
    if k >= 0 and abs(k - round(k)) < 1e-9 and round(k) <= 15:
        return int(round(k))
    return None


# --- Arrow and Parquet -------------------------------------------------------------------------

class _ArrowWriter:
    def __init__(self, st, out, fmt):
        from .arrow import require_pyarrow, stream_schema
        pa = require_pyarrow(f"writing {fmt}")
        self.pa, self.st, self.fmt = pa, st, fmt
        self.schema = stream_schema(st)
        if fmt == "parquet":
            import pyarrow.parquet as pq
            self.writer = pq.ParquetWriter(str(out), self.schema, compression="zstd")
        else:
            self.sink = pa.OSFile(str(out), "wb")
            self.writer = pa.ipc.new_file(self.sink, self.schema)

    def write(self, t: np.ndarray, cols: list[np.ndarray]) -> None:
        from .arrow import stream_arrays
        batch = self.pa.RecordBatch.from_arrays(stream_arrays(self.st, t, cols), schema=self.schema)
        if self.fmt == "parquet":
            self.writer.write_batch(batch, row_group_size=BATCH_ROWS)
        else:
            self.writer.write_batch(batch)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.writer.close()
        if self.fmt != "parquet":
            self.sink.close()
