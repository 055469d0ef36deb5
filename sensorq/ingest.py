"""CSV ingest: a file of timestamped rows into one stream of a cache.

* The timestamp column is ``time_column`` if given, else ``timestamp`` or
  ``time`` (any case), else the first column.  It holds ISO 8601 text (``T`` or
  a space between date and time, optional fractional seconds, optional ``Z`` or
  ``+HH:MM`` zone; without a zone the time is taken as UTC) or epoch numbers.
  Epoch numbers are in ``time_unit`` (s, ms, us or ns); without one the unit is
  guessed from the largest magnitude in the first chunk: below 1e11 seconds,
  below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds (so epoch
  times from 1973 to 5138 are read right in every unit).
* Every other column (minus ``exclude``) becomes a channel.  Names are
  sanitised to channel names (letters, digits, ``_``).  A new stream gets int16,
  int32 or int64 - the smallest that holds the whole file - for columns whose
  every cell is an integer, else float64; an empty cell is a missing value
  (NaN, so its column is float64).  An existing stream must have exactly the
  file's columns.
* The file is read in chunks of 100 000 rows.  For a new stream a first pass
  finds the types; files up to 64 MB keep that pass's parsed numbers, larger
  ones are read twice, so memory does not grow with the file.  A cell that is not a number or a time raises DataError naming the file,
  the line and the column; rows before the bad chunk are already appended.
"""
from __future__ import annotations

import csv
import itertools
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError, OutOfOrderError, SchemaError, ValueRangeError
from .schema import Channel
from .store.prepare import first_out_of_order

CHUNK_ROWS = 100_000
KEEP_PARSED_BYTES = 64 * 1024 * 1024   # files up to this size are parsed once, not twice
TIME_UNITS_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
INT_TYPES = ("int16", "int32", "int64")
_ZONE = re.compile(r"(Z|[+-]\d\d:?\d\d)$")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


def sanitize_name(text: str) -> str:
    """A valid stream/channel name from arbitrary header text."""
    name = _NOT_NAME.sub("_", text.strip()) or "_"
    if name[0].isdigit():
        name = "_" + name
    return name[:64]


@dataclass
class _Layout:
    """Which CSV column is the time and which become which channels."""
    header: list[str]
    time_index: int
    channel_index: list[int]       # CSV column of each channel
    channel_names: list[str]


class _Reader:
    """A CSV file in chunks of rows: (columns as arrays of cell text, line numbers).

    A chunk without quotes is split with str.split (no Python work per row); a
    chunk with quotes, blank lines or ragged rows goes through the csv module,
    which also finds the line at fault."""

    def __init__(self, path: Path):
        self.path = path
        self.total = path.stat().st_size
        self.done = 0

    def header(self) -> list[str]:
        with open(self.path, newline="", encoding="utf-8-sig") as f:
            try:
                first = f.readline()
            except UnicodeDecodeError as exc:
                raise DataError(f"{self.path}: line 1: not UTF-8 text ({exc})") from None
        if not first.strip():
            raise DataError(f"{self.path}: the file is empty (no header line)")
        try:
            return next(csv.reader([first]))
        except csv.Error as exc:
            raise DataError(f"{self.path}: line 1: not readable as CSV ({exc})") from None

    def chunks(self, width: int):
        with open(self.path, newline="", encoding="utf-8-sig") as f:
            self.done = len(f.readline().encode("utf-8"))
            line_no = 2
            while True:
                try:
                    lines = list(itertools.islice(f, CHUNK_ROWS))
                except UnicodeDecodeError as exc:
                    raise DataError(f"{self.path}: near line {line_no}: not UTF-8 text ({exc})") from None
                if not lines:
                    return
                self.done += sum(map(len, lines))
                columns, numbers = self._split(lines, line_no, width)
                if numbers.size:
                    yield columns, numbers
                line_no += len(lines)

    def _split(self, lines: list[str], first_line: int, width: int):
        text = "".join(lines).replace("\r\n", "\n")
        if text.endswith("\n"):
            text = text[:-1]
        if '"' not in text:
            cells = text.replace("\n", ",").split(",")
            if len(cells) == len(lines) * width:
                table = np.array(cells, dtype=str).reshape(len(lines), width)
                return [table[:, i] for i in range(width)], first_line + np.arange(len(lines))
        return self._split_csv(lines, first_line, width)

    def _split_csv(self, lines: list[str], first_line: int, width: int):
        rows, numbers = [], []
        reader = csv.reader(lines)
        try:
            for row in reader:
                line = first_line + reader.line_num - 1
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue                      # blank line
                if len(row) != width:
                    raise DataError(f"{self.path}: line {line}: {len(row)} cells, the header has {width}")
                rows.append(row)
                numbers.append(line)
        except csv.Error as exc:
            raise DataError(f"{self.path}: line {first_line + reader.line_num - 1}: not readable as "
                            f"CSV ({exc})") from None
        columns = [np.array(col, dtype=str) for col in zip(*rows)] if rows else []
        return columns, np.array(numbers, np.int64)


def ingest_csv(cache, path, stream: str | None = None, time_column: str | None = None,
               time_unit: str | None = None, units: dict | None = None, progress=None,
               exclude=()) -> tuple[str, int]:
    """Append the rows of a CSV file to ``stream`` (created if missing); returns
    (stream name, rows appended)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if time_unit is not None and time_unit not in TIME_UNITS_NS:
        raise DataError(f"time unit {time_unit!r} is not one of {', '.join(TIME_UNITS_NS)}")
    layout = _layout(path, _Reader(path).header(), time_column, exclude)
    name = stream or sanitize_name(path.stem)
    kept = None
    if name in cache.streams:
        target = _check_existing(cache.streams[name], layout, units, path)
    else:
        target, kept = _create_stream(cache, name, layout, units or {}, path, time_unit)
    chunks = kept if kept is not None else _parsed_chunks(path, layout, time_unit)
    return name, _append_chunks(cache, target, layout, chunks, path, progress)


@dataclass
class _Chunk:
    t: np.ndarray                 # int64 ns
    values: list[np.ndarray]      # one per channel, in layout order: int64 or float64
    lines: np.ndarray             # line number of every row
    bytes_done: int
    bytes_total: int


def _parsed_chunks(path: Path, layout: _Layout, time_unit):
    """The file as _Chunks; an epoch unit guessed from the first chunk holds for all."""
    reader = _Reader(path)
    time_name = layout.header[layout.time_index]
    unit = time_unit
    for columns, lines in reader.chunks(len(layout.header)):
        cells = columns[layout.time_index]
        unit = unit or _guessed_unit(cells)
        t = _times(cells, lines, path, time_name, unit)
        values = [_numbers(columns[i], lines, path, layout.header[i]) for i in layout.channel_index]
        yield _Chunk(t, values, lines, min(reader.done, reader.total), reader.total)


def _layout(path: Path, header: list[str], time_column, exclude) -> _Layout:
    names = [h.strip() for h in header]
    if time_column is not None:
        if time_column not in names:
            raise SchemaError(f"{path}: no time column {time_column!r}; columns: {', '.join(names)}")
        time_index = names.index(time_column)
    else:
        lower = [n.lower() for n in names]
        time_index = next((lower.index(c) for c in ("timestamp", "time") if c in lower), 0)
    excluded = set(exclude)
    channel_index = [i for i, n in enumerate(names)
                     if i != time_index and n not in excluded and sanitize_name(n) not in excluded]
    channel_names = [sanitize_name(names[i]) for i in channel_index]
    if not channel_index:
        raise SchemaError(f"{path}: no value columns besides the time column {names[time_index]!r}")
    repeated = {n for n in channel_names if channel_names.count(n) > 1}
    if repeated:
        raise SchemaError(f"{path}: column names repeat (after making them channel names): "
                          f"{', '.join(sorted(repeated))}")
    return _Layout(names, time_index, channel_index, channel_names)


def _check_existing(stream, layout: _Layout, units, path: Path):
    have = [c.name for c in stream.channels]
    if sorted(have) != sorted(layout.channel_names):
        raise SchemaError(f"{path}: columns {', '.join(layout.channel_names)} do not match the "
                          f"channels of stream {stream.name!r}: {', '.join(have)}")
    for channel in stream.channels:
        wanted = _unit_for(units or {}, channel.name)
        if wanted is not None and wanted != channel.unit:
            raise SchemaError(f"{path}: stream {stream.name!r} channel {channel.name!r} has unit "
                              f"{channel.unit!r}, not {wanted!r}")
    return stream


def _unit_for(units: dict, name: str) -> str | None:
    return units.get(name, units.get("*"))


def _create_stream(cache, name: str, layout: _Layout, units: dict, path: Path, time_unit):
    """Survey the file, then define the stream; returns it and the parsed chunks
    when the file is small enough to keep them (so it is parsed only once)."""
    unknown = [k for k in units if k != "*" and k not in layout.channel_names]
    if unknown:
        raise SchemaError(f"{path}: --unit names no column {unknown[0]!r}; "
                          f"columns: {', '.join(layout.channel_names)}")
    dtypes, rate_hz, kept = _survey(path, layout, time_unit)
    channels = [Channel(n, dt, _unit_for(units, n) or "") for n, dt in zip(layout.channel_names, dtypes)]
    return cache.create_stream(name, channels, rate_hz=rate_hz), kept


def _survey(path: Path, layout: _Layout, time_unit):
    """First pass: the storage type of every channel and the mean sample rate
    (and the parsed chunks, if the file is at most KEEP_PARSED_BYTES)."""
    keep = path.stat().st_size <= KEEP_PARSED_BYTES
    kept: list[_Chunk] = []
    is_int = [True] * len(layout.channel_index)
    low = [0] * len(is_int)
    high = [0] * len(is_int)
    t_first = t_last = None
    rows_total = 0
    for chunk in _parsed_chunks(path, layout, time_unit):
        for k, values in enumerate(chunk.values):
            if is_int[k] and values.dtype.kind == "i":
                low[k] = min(low[k], int(values.min()))
                high[k] = max(high[k], int(values.max()))
            else:
                is_int[k] = False
        t_first = int(chunk.t[0]) if t_first is None else t_first
        t_last = int(chunk.t[-1])
        rows_total += len(chunk.lines)
        if keep:
            kept.append(chunk)
    dtypes = [_smallest_int(lo, hi) if flag else "float64" for flag, lo, hi in zip(is_int, low, high)]
    rate = None
    if rows_total > 1 and t_last > t_first:
        rate = round(1e9 * (rows_total - 1) / (t_last - t_first), 6)
    return dtypes, rate, kept if keep else None


def _smallest_int(low: int, high: int) -> str:
    for name in INT_TYPES:
        info = np.iinfo(name)
        if info.min <= low and high <= info.max:
            return name
    return "int64"


def _append_chunks(cache, stream, layout: _Layout, chunks, path: Path, progress) -> int:
    rows_done = 0
    last_ns = cache.newest_ns(stream.name)
    position = {name: k for k, name in enumerate(layout.channel_names)}
    time_name = layout.header[layout.time_index]
    for chunk in chunks:
        _check_order(chunk.t, last_ns, chunk.lines, path, time_name)
        values = {}
        for channel in stream.channels:
            k = position[channel.name]
            values[channel.name] = _fit(chunk.values[k], channel, chunk.lines, path,
                                        layout.header[layout.channel_index[k]])
        cache.append(stream.name, chunk.t, values)
        last_ns = int(chunk.t[-1])
        rows_done += len(chunk.lines)
        if progress is not None:
            progress(rows_done, chunk.bytes_done, chunk.bytes_total)
    return rows_done


def _numbers(cells: np.ndarray, lines: list[int], path: Path, column: str) -> np.ndarray:
    """int64 if every cell is an integer, else float64 (empty cells are NaN)."""
    try:
        return cells.astype(np.int64)
    except (ValueError, OverflowError):
        pass
    stripped = np.char.strip(cells)
    empty = stripped == ""
    try:
        values = np.where(empty, "nan", stripped).astype(np.float64)
    except ValueError:
        _bad_cell(cells, lines, path, column, "is not a number", _is_float)
    return values


def _is_float(text: str) -> bool:
    try:
        float(text) if text.strip() else None
        return True
    except ValueError:
        return False


def _bad_cell(cells, lines, path: Path, column: str, what: str, ok) -> None:
    k = next(k for k, cell in enumerate(cells) if not ok(str(cell)))
    raise DataError(f"{path}: line {lines[k]}, column {column!r}: {str(cells[k])!r} {what}")


def _fit(values: np.ndarray, channel: Channel, lines, path: Path, column: str) -> np.ndarray:
    """The values in the channel's dtype, or ValueRangeError naming the line."""
    if channel.is_integer:
        info = np.iinfo(channel.numpy_dtype)
        with np.errstate(invalid="ignore"):
            bad = (values < info.min) | (values > info.max)
            if values.dtype.kind == "f":
                bad |= ~np.isfinite(values) | (values != np.floor(values))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueRangeError(f"{path}: line {lines[k]}, column {column!r}: {values[k]!r} does not "
                                  f"fit channel {channel.name!r} ({channel.dtype})")
        return values.astype(channel.numpy_dtype)
    return values


def _times(cells: np.ndarray, lines, path: Path, column: str, time_unit) -> np.ndarray:
    """int64 ns from ISO text or epoch numbers."""
    numeric = _epoch_numbers(cells)
    if numeric is not None:
        return _epoch_to_ns(numeric, time_unit or _unit_from_magnitude(numeric), lines, path, column)
    return _iso_to_ns(cells, lines, path, column)


def _epoch_numbers(cells: np.ndarray):
    for dtype in (np.int64, np.float64):
        try:
            return cells.astype(dtype)
        except (ValueError, OverflowError):
            continue
    return None


def _unit_from_magnitude(numbers: np.ndarray) -> str:
    top = float(np.nanmax(np.abs(numbers))) if numbers.size else 0.0
    for unit, limit in (("s", 1e11), ("ms", 1e14), ("us", 1e17)):
        if top < limit:
            return unit
    return "ns"


def _guessed_unit(cells: np.ndarray) -> str | None:
    """Fix the unit guessed from the first chunk for the rest of the file."""
    numeric = _epoch_numbers(cells)
    return _unit_from_magnitude(numeric) if numeric is not None else None


def _epoch_to_ns(numbers: np.ndarray, unit: str, lines, path: Path, column: str) -> np.ndarray:
    factor = TIME_UNITS_NS[unit]
    limit = 9.2e18 / factor
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(numbers) | (np.abs(numbers) >= limit) if numbers.dtype.kind == "f" \
            else np.abs(numbers) >= limit
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: line {lines[k]}, column {column!r}: {numbers[k]!r} is not a time "
                        f"in {unit} since the epoch")
    if numbers.dtype.kind == "i":
        return numbers * factor
    return np.rint(numbers * factor).astype(np.int64)


def _iso_to_ns(cells: np.ndarray, lines, path: Path, column: str) -> np.ndarray:
    texts = [str(c).strip() for c in cells]
    offsets = np.zeros(len(texts), np.int64)
    for k, text in enumerate(texts):
        zone = _ZONE.search(text)
        if zone:
            texts[k] = text[:zone.start()]
            offsets[k] = _zone_offset_ns(zone.group(1))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            parsed = np.array(texts, dtype="datetime64[ns]").view(np.int64)
    except (ValueError, UserWarning, DeprecationWarning):
        _bad_cell(np.array(texts), lines, path, column, "is not a time (ISO 8601 or epoch number)",
                  _is_iso)
    if (parsed == np.iinfo(np.int64).min).any():
        k = int(np.flatnonzero(parsed == np.iinfo(np.int64).min)[0])
        raise DataError(f"{path}: line {lines[k]}, column {column!r}: {texts[k]!r} is not a time")
    return parsed - offsets


def _is_iso(text: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return not np.isnat(np.datetime64(text, "ns"))
    except (ValueError, UserWarning, DeprecationWarning):
        return False


def _zone_offset_ns(zone: str) -> int:
    if zone == "Z":
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * 10**9


def _check_order(t: np.ndarray, last_ns, lines, path: Path, column: str) -> None:
    """The store's order rule, reported by file line instead of array index."""
    k = first_out_of_order(t, last_ns)
    if k == 0:
        raise OutOfOrderError(f"{path}: line {lines[0]}, column {column!r}: the time is earlier than "
                              f"the stream's newest sample")
    if k is not None:
        raise OutOfOrderError(f"{path}: line {lines[k]}, column {column!r}: the time is earlier than "
                              f"on line {lines[k - 1]}")
