"""CSV ingest: a file of timestamped rows into one stream of a cache.

* The timestamp column is ``time_column`` if given, else ``timestamp`` or
  ``time`` (any case), else the first column.  It holds ISO 8601 text (``T`` or
  a space between date and time, optional fractional seconds, optional ``Z`` or
  ``+HH:MM`` zone with hours 00-23 and minutes 00-59; without a zone the time is
  taken as UTC; 1677-09-21 to 2262-04-11, what int64 nanoseconds hold) or epoch
  numbers.  Epoch numbers are in ``time_unit`` (s, ms, us or ns); without one
  the unit is guessed from the largest magnitude in the first chunk: below 1e11
  seconds, below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds
  (so epoch times from 1973 to 5138 are read right in every unit).
* Every other column (minus ``exclude``) becomes a channel.  Names are
  sanitised to channel names (letters, digits, ``_``).  A new stream gets int16,
  int32 or int64 - the smallest that holds the whole file - for columns whose
  every cell is an integer, else float64; an empty cell is a missing value
  (NaN, so its column is float64).  An existing stream must have exactly the
  file's columns.
* A column of text (machine states, activity labels) becomes a categorical
  channel: each distinct name gets a code, in order of first appearance, and
  the column stores the codes (int8 for up to 127 names, else int16; at most
  32 768).  The column's first non-blank cell decides: a column whose first
  value is a number (or a time) is numeric, and a later cell that is not a
  number is an error as before, so a typo in a column of numbers never turns
  it into names.  Names lose the blanks around them; an empty cell in a
  column of names is an error naming its line and column (a missing label has
  no code).  A later file with new names appends them to the stream's
  dictionary (``Cache.add_categories``) before the first chunk that uses them
  is stored; existing names keep their codes.
* Every row must have as many cells as the header.  A line longer than
  MAX_LINE_BYTES or a cell longer than MAX_CELL_BYTES is refused (neither can be
  a row of numbers), so memory follows the bytes of a chunk, never the longest
  cell or line.  Every fault is a DataError (or a subclass) naming the file, the
  line and, for a cell, the column.
* The file is read in chunks of at most CHUNK_ROWS rows.  For a new stream a
  first pass finds the types and checks every chunk; files up to 64 MB keep
  that pass's parsed numbers, larger ones are read twice, so memory does not
  grow with the file.  Each chunk is checked whole (cells, types, ranges, time
  order) before it is appended.  A fault found by the first pass, or in a file
  of at most 64 MB, stores nothing; a fault in a later chunk of a larger file
  appended to an existing stream leaves the rows before that chunk stored, and
  the message says how many.
"""
from __future__ import annotations

import csv
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .io.csvcells import TIME_UNITS_NS, _convert, _guessed_unit, _stripped, _texts, _times
from .errors import DataError, OutOfOrderError, SchemaError, SensorqError, ValueRangeError
from .schema import Channel, check_category_name
from .store.prepare import first_out_of_order, iso

CHUNK_ROWS = 100_000
READ_BYTES = 8 * 1024 * 1024           # the file is read this much at a time
MAX_LINE_BYTES = 1024 * 1024           # a longer line is refused before it is read whole
MAX_CELL_BYTES = 1024                  # a number or time is shorter (every double's exact decimal is)
QUOTE_CHARS = 80                       # what an error message quotes of a cell or line
KEEP_PARSED_BYTES = 64 * 1024 * 1024   # files up to this size are parsed once, not twice
INT_TYPES = ("int16", "int32", "int64")
INT8_NAMES = 127                       # a column with at most this many names is stored as int8
MAX_NAMES = 32768                      # what int16 codes hold
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")
_NL, _CR, _COMMA, _QUOTE, _SPACE = 10, 13, 44, 34, 32
_BOM = b"\xef\xbb\xbf"


def sanitize_name(text: str) -> str:
    """A valid stream/channel name from arbitrary header text."""
    name = _NOT_NAME.sub("_", text.strip()) or "_"
    if name[0].isdigit():
        name = "_" + name
    return name[:64]


def _quoted(text: str) -> str:
    """``text`` for a message: repr, cut to QUOTE_CHARS characters."""
    if len(text) <= QUOTE_CHARS:
        return repr(text)
    return repr(text[:QUOTE_CHARS]) + f"... ({len(text):,} characters)"


@dataclass
class _Layout:
    """Which CSV column is the time and which become which channels."""
    header: list[str]
    time_index: int
    channel_index: list[int]       # CSV column of each channel
    channel_names: list[str]


# --- cells: where each cell of a chunk lies in its bytes ----------------------------------

@dataclass
class _Column:
    """One column of a chunk: cell k is ``data[starts[k]:ends[k]]`` on line ``lines[k]``.

    Cells are converted by width class (cells of up to 8 bytes, 9 to 16, 17 to
    32, ...): each class is copied into a fixed-width byte array just wide
    enough for it, so converting a column costs a small constant times its
    bytes, however long its longest cell (one fixed width for the whole column
    made a 10 000-byte cell cost 10 000 bytes for every cell)."""
    data: np.ndarray       # uint8: the chunk's bytes, then MAX_CELL_BYTES zeros
    starts: np.ndarray
    ends: np.ndarray
    lines: np.ndarray
    path: Path
    name: str

    def text(self, k: int) -> str:
        return bytes(self.data[self.starts[k]:self.ends[k]]).decode("utf-8", "replace")

    def fail(self, k: int, what: str, error=DataError):
        raise error(f"{self.path}: line {self.lines[k]}, column {self.name!r}: "
                    f"{_quoted(self.text(k))} {what}")

    def classes(self):
        """(rows, cells) per width class; ``cells`` is a (rows, width) uint8
        array, each cell's bytes followed by zeros."""
        lengths = self.ends - self.starts
        if not lengths.size:
            return
        longest = int(lengths.max())
        if longest > MAX_CELL_BYTES:
            k = int(np.argmax(lengths > MAX_CELL_BYTES))
            self.fail(k, f"is {int(lengths[k]):,} bytes long: not a number or a time "
                         f"(at most {MAX_CELL_BYTES} bytes)")
        low, width = -1, 8
        while low < longest:
            rows = np.flatnonzero((lengths > low) & (lengths <= width))
            if rows.size:
                yield rows, self._cells(rows, width, lengths[rows])
            low, width = width, width * 2

    def _cells(self, rows: np.ndarray, width: int, lengths: np.ndarray) -> np.ndarray:
        windows = sliding_window_view(self.data, width)   # a view: nothing copied yet
        cells = windows[self.starts[rows]]
        cells[np.arange(width) >= lengths[:, None]] = 0
        return cells


@dataclass
class _Table:
    data: np.ndarray
    starts: np.ndarray     # (rows, width)
    ends: np.ndarray
    lines: np.ndarray      # line number of every row

    def column(self, i: int, path: Path, name: str) -> _Column:
        return _Column(self.data, self.starts[:, i], self.ends[:, i], self.lines, path, name)


def _padded(raw: bytes) -> np.ndarray:
    """The bytes, then room for the widest cell window (see _Column._cells)."""
    data = np.zeros(len(raw) + MAX_CELL_BYTES, np.uint8)
    data[:len(raw)] = np.frombuffer(raw, np.uint8)
    return data


# --- reading: header, blocks of whole records, chunks of rows ------------------------------

def _long_line(path: Path, line: int, head: bytes) -> DataError:
    text = head[:QUOTE_CHARS].decode("utf-8", "replace")
    return DataError(f"{path}: line {line} is longer than {MAX_LINE_BYTES:,} bytes (it starts "
                     f"{text!r}); a CSV row of numbers is never that long")


def _record_ends(piece: bytes) -> np.ndarray:
    """Positions of the newlines that end records (not those inside quotes)."""
    a = np.frombuffer(piece, np.uint8)
    newlines = np.flatnonzero(a == _NL)
    if b'"' in piece:
        quotes_before = np.searchsorted(np.flatnonzero(a == _QUOTE), newlines)
        newlines = newlines[quotes_before % 2 == 0]
    return newlines


def _last(ends: np.ndarray) -> int:
    """Where the last of these records ends (0: there is none)."""
    return int(ends[-1]) + 1 if ends.size else 0


def _record_end(buf: bytes) -> int:
    """Where the last whole record of ``buf`` ends (0: none)."""
    if b'"' not in buf:
        return buf.rfind(b"\n") + 1
    return _last(_record_ends(buf))


class _Reader:
    """A CSV file in chunks of rows (_Table, with line numbers), read as bytes.

    Cells are found with numpy on the raw bytes (newlines and commas, counted
    per line); a chunk with quotes goes through the csv module instead."""

    def __init__(self, path: Path, delimiter: str = ","):
        self.path = path
        self.delimiter = delimiter
        self.total = path.stat().st_size
        self.done = 0

    def header(self) -> list[str]:
        with open(self.path, "rb") as f:
            first = f.readline(MAX_LINE_BYTES + 1)
        if len(first) > MAX_LINE_BYTES:
            raise _long_line(self.path, 1, first)
        try:
            text = first.removeprefix(_BOM).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.path}: line 1: not UTF-8 text ({exc.reason})") from None
        if not text.strip():
            raise DataError(f"{self.path}: the file is empty (no header line)")
        try:
            return next(csv.reader([text], delimiter=self.delimiter))
        except csv.Error as exc:
            raise DataError(f"{self.path}: line 1: not readable as CSV ({exc})") from None

    def chunks(self, width: int):
        for block, first_line in self._blocks():
            ends = _record_ends(block)
            if not ends.size or ends[-1] != len(block) - 1:
                line = first_line + block.count(b"\n", 0, _last(ends))
                raise DataError(f"{self.path}: line {line}: a quoted cell is never closed")
            start = 0
            for k in range(CHUNK_ROWS - 1, len(ends) + CHUNK_ROWS - 1, CHUNK_ROWS):
                stop = int(ends[min(k, len(ends) - 1)]) + 1
                piece = block[start:stop]
                table = _split(piece, first_line, width, self.path, self.delimiter)
                first_line += piece.count(b"\n")
                self.done += len(piece)
                start = stop
                if table.lines.size:
                    yield table

    def _blocks(self):
        """(bytes of whole records ending in a newline, the line number of the first)."""
        with open(self.path, "rb") as f:
            self.done = len(f.readline(MAX_LINE_BYTES + 1))
            carry, line = b"", 2
            while True:
                data = f.read(READ_BYTES)
                buf = carry + data if carry else data
                if not data:
                    if buf.strip():
                        yield buf + b"\n", line        # the last line has no newline
                    return
                cut = _record_end(buf)
                if cut:
                    yield buf[:cut], line
                    line += buf.count(b"\n", 0, cut)
                carry = buf[cut:]
                if len(carry) > MAX_LINE_BYTES:
                    raise _long_line(self.path, line, carry)


def _split(piece: bytes, first_line: int, width: int, path: Path, delimiter: str = ",") -> _Table:
    newlines = np.flatnonzero(np.frombuffer(piece, np.uint8) == _NL)
    line_starts = np.concatenate(([0], newlines[:-1] + 1))
    _check_line_lengths(newlines - line_starts, line_starts, piece, first_line, path)
    if b'"' in piece:
        return _split_quoted(piece, first_line, width, path, delimiter)
    return _split_plain(piece, newlines, line_starts, first_line, width, path, ord(delimiter))


def _split_plain(piece: bytes, newlines, line_starts, first_line: int, width: int,
                 path: Path, separator: int = _COMMA) -> _Table:
    """Cells of a quote-free chunk, found with numpy: every line must have
    width - 1 commas (blank lines are skipped)."""
    data = _padded(piece)
    a = data[:len(piece)]
    commas = np.flatnonzero(a == separator)
    per_line = np.diff(np.searchsorted(commas, newlines), prepend=0)
    kept = _kept_lines(per_line, line_starts, newlines, piece, first_line, width, path)
    rows = int(kept.sum())
    index = np.int32 if len(data) < 2**31 else np.int64
    inner = commas.astype(index).reshape(rows, width - 1)
    ends = np.empty((rows, width), index)
    starts = np.empty((rows, width), index)
    ends[:, :-1] = inner
    ends[:, -1] = newlines[kept]
    ends[:, -1] -= (a[ends[:, -1] - 1] == _CR).astype(index)   # a CRLF line ends before its CR
    starts[:, 0] = line_starts[kept]
    starts[:, 1:] = inner + 1
    return _Table(data, starts, ends, first_line + np.flatnonzero(kept))


def _check_line_lengths(lengths, line_starts, piece: bytes, first_line: int, path: Path) -> None:
    if lengths.size and int(lengths.max()) > MAX_LINE_BYTES:
        k = int(np.argmax(lengths > MAX_LINE_BYTES))
        start = int(line_starts[k])
        raise _long_line(path, first_line + k, piece[start:start + QUOTE_CHARS])


def _kept_lines(per_line, line_starts, newlines, piece: bytes, first_line: int, width: int,
                path: Path) -> np.ndarray:
    """Lines that are rows (blank lines are not); DataError at the first line
    whose cell count is not the header's."""
    kept = per_line == width - 1
    if kept.all():
        return kept
    a = np.frombuffer(piece, np.uint8)
    length = newlines - line_starts
    empty = (length == 0) | ((length == 1) & (a[line_starts] == _CR))    # "" or "\r"
    for k in np.flatnonzero(~kept & ~empty):             # stops at the first bad line
        line = piece[int(line_starts[k]):int(newlines[k])]
        if per_line[k] == 0 and not line.strip():
            continue                                     # a line of blanks
        cells = int(per_line[k]) + 1
        raise DataError(f"{path}: line {first_line + k}: found {cells} cell{'s' * (cells != 1)}, "
                        f"expected {width} (as many as the header has); the line starts "
                        f"{_quoted(line.decode('utf-8', 'replace'))}")
    return kept


def _split_quoted(piece: bytes, first_line: int, width: int, path: Path,
                  delimiter: str = ",") -> _Table:
    """Cells of a chunk with quotes, read by the csv module (rare: Python per row)."""
    try:
        text = piece.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + piece.count(b"\n", 0, exc.start)
        raise DataError(f"{path}: line {line}: not UTF-8 text ({exc.reason})") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    cells, lines, row_line = [], [], first_line
    try:
        for row in reader:
            if row and not (len(row) == 1 and not row[0].strip()):
                if len(row) != width:
                    raise DataError(f"{path}: line {row_line}: found {len(row)} cells, expected "
                                    f"{width} (as many as the header has)")
                cells.extend(c.encode("utf-8") for c in row)
                lines.append(row_line)
            row_line = first_line + reader.line_num
    except csv.Error as exc:
        raise DataError(f"{path}: line {row_line}: not readable as CSV ({exc})") from None
    lengths = np.fromiter(map(len, cells), np.int64, len(cells))
    ends = np.cumsum(lengths)
    return _Table(_padded(b"".join(cells)), (ends - lengths).reshape(-1, width),
                  ends.reshape(-1, width), np.array(lines, np.int64))


# --- the file into a stream -----------------------------------------------------------------

@dataclass
class Options:
    """How a file is read, beyond its columns (see ingest_csv)."""
    delimiter: str = ","
    types: dict = field(default_factory=dict)     # channel index -> dtype or "category"
    rate_hz: float | None = None
    skip_existing: bool = False
    summary: dict = field(default_factory=dict)


class AlreadyPresentError(OutOfOrderError):
    """A file's rows start before the stream's newest sample: it (or its start)
    was ingested already."""


def ingest_csv(cache, path, stream: str | None = None, time_column: str | None = None,
               time_unit: str | None = None, units: dict | None = None, progress=None,
               exclude=(), *, delimiter: str = ",", types: dict | None = None,
               rate_hz: float | None = None, skip_existing: bool = False,
               summary: dict | None = None) -> tuple[str, int]:
    """Append the rows of a CSV file to ``stream`` (created if missing); returns
    (stream name, rows appended).

    ``delimiter`` separates cells (one character; "\t" for tabs).  ``types``
    ({column: dtype}) fixes a new stream's channel types instead of choosing
    them: int8 ... int64, float32, float64, or "category" for names.
    ``rate_hz`` is a new stream's nominal rate (default: the file's mean
    rate).  A file whose rows start before the stream's newest sample was
    ingested already, and is refused (AlreadyPresentError, nothing stored);
    ``skip_existing`` appends only its rows after that sample instead.
    ``summary``, a dict, receives rows, skipped, t_first and t_last (of the
    rows appended)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if time_unit is not None and time_unit not in TIME_UNITS_NS:
        raise DataError(f"time unit {time_unit!r} is not one of {', '.join(TIME_UNITS_NS)}")
    opts = Options(_check_delimiter(delimiter), {}, rate_hz, skip_existing,
                   summary if summary is not None else {})
    opts.summary.update(rows=0, skipped=0, t_first=None, t_last=None)
    layout = _layout(path, _Reader(path, opts.delimiter).header(), time_column, exclude)
    opts.types = column_types(types or {}, layout.header, layout.channel_index, path)
    name = stream or sanitize_name(path.stem)
    kept = None
    if name in cache.streams:
        target = _check_existing(cache.streams[name], layout, units, path, opts.types)
        kinds = _Kinds.of_stream(target, layout)
    else:
        kinds = _Kinds([_forced_kind(opts.types.get(k)) for k in range(len(layout.channel_index))])
        target, kept = _create_stream(cache, name, layout, units or {}, path, time_unit, kinds, opts)
    chunks = kept if kept is not None else _parsed_chunks(path, layout, time_unit, kinds, opts)
    return name, _append_chunks(cache, target, layout, chunks, path, progress, opts)


TYPE_NAMES = ("int8", "int16", "int32", "int64", "float32", "float64", "category")


def _check_delimiter(delimiter: str) -> str:
    delimiter = {"tab": "\t", "\\t": "\t", "space": " "}.get(delimiter, delimiter)
    if len(delimiter) != 1 or delimiter in '"\r\n' or ord(delimiter) > 127:
        raise DataError(f"delimiter {delimiter!r} must be one ASCII character other than a quote "
                        f"or a line break (or 'tab')")
    return delimiter


def column_types(types: dict, header: list[str], channel_index: list[int], path) -> dict:
    """{channel position: type} from {column or channel name: type}."""
    out = {}
    for column, wanted in types.items():
        wanted = "category" if wanted in ("names", "categorical") else wanted
        if wanted not in TYPE_NAMES:
            raise SchemaError(f"type {wanted!r} for column {column!r} is not one of "
                              f"{', '.join(TYPE_NAMES)}")
        k = next((k for k, i in enumerate(channel_index)
                  if column in (header[i].strip(), sanitize_name(header[i]))), None)
        if k is None:
            raise SchemaError(f"{path}: a type is given for {column!r}, which is not a value "
                              f"column; columns: {_names_text([header[i] for i in channel_index])}")
        out[k] = wanted
    return out


def _forced_kind(wanted):
    """A given type decides whether a column holds names (None: its first cell does)."""
    return None if wanted is None else wanted == "category"


def _names_text(names, limit: int = 12) -> str:
    """Column names for a message: at most ``limit``, each cut short."""
    shown = [_quoted(str(n)) if len(str(n)) > 40 or not str(n) else str(n) for n in names[:limit]]
    more = f", ... ({len(names) - limit:,} more)" if len(names) > limit else ""
    return ", ".join(shown) + more


@dataclass
class _Labels:
    """A chunk of a column of names: ``names`` in order of first appearance in
    the chunk, ``codes`` (int64) index them, ``first_rows[i]`` is the chunk row
    where ``names[i]`` first appears (for messages)."""
    names: list[str]
    codes: np.ndarray
    first_rows: np.ndarray

    def subset(self, keep: np.ndarray) -> "_Labels":
        """The labels of the kept rows only (names no kept row uses are dropped)."""
        codes = self.codes[keep]
        used, first = np.unique(codes, return_index=True)
        order = np.argsort(first, kind="stable")          # first appearance among the kept rows
        remap = np.zeros(len(self.names), np.int64)
        remap[used[order]] = np.arange(len(used))
        return _Labels([self.names[i] for i in used[order]], remap[codes], first[order])


@dataclass
class _Chunk:
    t: np.ndarray                 # int64 ns
    values: list                  # one per channel, in layout order: int64, float64 or _Labels
    lines: np.ndarray             # line number of every row
    bytes_done: int
    bytes_total: int


class _Kinds:
    """Which value columns hold names (categorical channels): fixed by an
    existing stream, or decided for a new one by each column's first non-blank
    cell (a column that is blank so far stays undecided, read as numbers)."""

    def __init__(self, text: list):
        self.text = text                      # per column: True, False or None (undecided)
        self.blank_line = [None] * len(text)  # a blank line seen while undecided

    @classmethod
    def of_stream(cls, stream, layout: _Layout) -> "_Kinds":
        return cls([stream.channel(n).is_categorical for n in layout.channel_names])

    def decide(self, k: int, column: _Column, path: Path) -> None:
        first = _first_filled(column)
        if first is None:
            self.blank_line[k] = self.blank_line[k] or int(column.lines[0])
            return
        cell = bytes(column.data[column.starts[first]:column.ends[first]])
        self.text[k] = not (_is_float(cell) or _is_time(cell))
        if self.text[k] and (self.blank_line[k] or first > 0):
            line = self.blank_line[k] or int(column.lines[0])
            raise DataError(f"{path}: line {line}, column {column.name!r}: {_EMPTY_NAME}")


_EMPTY_NAME = ("the cell is empty, in a column of names (a categorical channel): every row needs "
               "a name (write one such as unknown)")


def _first_filled(column: _Column):
    """The first cell with something other than blanks (None: there is none)."""
    for k in np.flatnonzero(column.ends > column.starts):
        if bytes(column.data[column.starts[k]:column.ends[k]]).strip():
            return int(k)
    return None


def _is_time(cell: bytes) -> bool:
    """An ISO time (a second time column is not a column of names)."""
    text = cell.strip()
    if not text[:1].isdigit():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.datetime64(text.decode("ascii").rstrip("Z"), "ns")
        return True
    except (ValueError, UnicodeDecodeError):
        return False


def _parsed_chunks(path: Path, layout: _Layout, time_unit, kinds: _Kinds, opts: Options):
    """The file as _Chunks; an epoch unit guessed from the first chunk holds for all."""
    reader = _Reader(path, opts.delimiter)
    time_name = layout.header[layout.time_index]
    unit = time_unit
    for table in reader.chunks(len(layout.header)):
        cells = table.column(layout.time_index, path, time_name)
        unit = unit or _guessed_unit(cells)
        t = _times(cells, unit)
        values = []
        for k, i in enumerate(layout.channel_index):
            column = table.column(i, path, layout.header[i])
            if kinds.text[k] is None:
                kinds.decide(k, column, path)
            values.append(_labels(column) if kinds.text[k] else _numbers(column))
        yield _Chunk(t, values, table.lines, min(reader.done, reader.total), reader.total)


def _layout(path: Path, header: list[str], time_column, exclude) -> _Layout:
    names = [h.strip() for h in header]
    if time_column is not None:
        if time_column not in names:
            raise SchemaError(f"{path}: no time column {_quoted(time_column)}; columns: "
                              f"{_names_text(names)}")
        time_index = names.index(time_column)
    else:
        lower = [n.lower() for n in names]
        time_index = next((lower.index(c) for c in ("timestamp", "time") if c in lower), 0)
    excluded = set(exclude)
    channel_index = [i for i, n in enumerate(names)
                     if i != time_index and n not in excluded and sanitize_name(n) not in excluded]
    channel_names = [sanitize_name(names[i]) for i in channel_index]
    if not channel_index:
        raise SchemaError(f"{path}: no value columns besides the time column "
                          f"{_quoted(names[time_index])}{_delimiter_hint(names)}")
    repeated = {n for n in channel_names if channel_names.count(n) > 1}
    if repeated:
        raise SchemaError(f"{path}: column names repeat (after making them channel names): "
                          f"{_names_text(sorted(repeated))}")
    return _Layout(names, time_index, channel_index, channel_names)


def _delimiter_hint(names: list[str]) -> str:
    """When the header is one cell holding another separator, say which."""
    if len(names) != 1:
        return ""
    found = [(names[0].count(c), c) for c in (";", "\t", "|", " ") if c in names[0].strip()]
    if not found:
        return ""
    sep = max(found)[1]
    return (f"; the header is one cell, but it holds {max(found)[0]} {sep!r}: if that separates "
            f"the columns, give --delimiter {'tab' if sep == chr(9) else repr(sep)}")


def _check_existing(stream, layout: _Layout, units, path: Path, types: dict):
    have = [c.name for c in stream.channels]
    if sorted(have) != sorted(layout.channel_names):
        raise SchemaError(f"{path}: columns {_names_text(layout.channel_names)} do not match the "
                          f"channels of stream {stream.name!r}: {_names_text(have)}")
    for k, wanted in types.items():
        channel = stream.channel(layout.channel_names[k])
        kind = "category" if channel.is_categorical else channel.dtype
        if wanted != kind:
            raise SchemaError(f"{path}: stream {stream.name!r} channel {channel.name!r} is {kind}, "
                              f"not {wanted}; a stream's types are fixed when it is created")
    for channel in stream.channels:
        wanted = _unit_for(units or {}, channel.name)
        if channel.is_categorical:
            _no_unit_for_names(units or {}, channel.name, path)
            continue
        if wanted is not None and wanted != channel.unit:
            raise SchemaError(f"{path}: stream {stream.name!r} channel {channel.name!r} has unit "
                              f"{channel.unit!r}, not {wanted!r}")
    return stream


def _unit_for(units: dict, name: str) -> str | None:
    return units.get(name, units.get("*"))


def _no_unit_for_names(units: dict, name: str, path: Path) -> None:
    """A unit for every column (``*``) passes over names; one for this column is an error."""
    if units.get(name):
        raise SchemaError(f"{path}: column {name!r} holds names (a categorical channel), which "
                          f"have no unit; drop --unit {name}={units[name]}")


def _create_stream(cache, name: str, layout: _Layout, units: dict, path: Path, time_unit,
                   kinds: _Kinds, opts: Options):
    """Survey the file, then define the stream; returns it and the parsed chunks
    when the file is small enough to keep them (so it is parsed only once)."""
    unknown = [k for k in units if k != "*" and k not in layout.channel_names]
    if unknown:
        raise SchemaError(f"{path}: --unit names no column {_quoted(unknown[0])}; "
                          f"columns: {_names_text(layout.channel_names)}")
    dtypes, rate_hz, kept, names = _survey(path, layout, time_unit, kinds, opts)
    rate_hz = opts.rate_hz or rate_hz
    channels = []
    for n, dt, found in zip(layout.channel_names, dtypes, names):
        if found is None:
            channels.append(Channel(n, dt, _unit_for(units, n) or ""))
        else:
            _no_unit_for_names(units, n, path)
            channels.append(Channel(n, "int8" if len(found) <= INT8_NAMES else "int16",
                                    categories=tuple(found)))
    return cache.create_stream(name, channels, rate_hz=rate_hz), kept


def _survey(path: Path, layout: _Layout, time_unit, kinds: _Kinds, opts: Options):
    """First pass: the storage type of every channel, the names of every column
    of names (None for the others), and the mean sample rate (and the parsed
    chunks, if the file is at most KEEP_PARSED_BYTES).  It also checks the time
    order, so a new stream is only created for a good file."""
    keep = path.stat().st_size <= KEEP_PARSED_BYTES
    kept: list[_Chunk] = []
    is_int = [True] * len(layout.channel_index)
    low = [0] * len(is_int)
    high = [0] * len(is_int)
    names: list[dict | None] = [None] * len(is_int)
    t_first = t_last = last_line = None
    rows_total = 0
    for chunk in _parsed_chunks(path, layout, time_unit, kinds, opts):
        _check_order(chunk.t, t_last, last_line, chunk.lines, path, layout.header[layout.time_index])
        last_line = int(chunk.lines[-1])
        for k, values in enumerate(chunk.values):
            if isinstance(values, _Labels):
                names[k] = _gather_names(names[k] or {}, values, chunk.lines, path,
                                         layout.header[layout.channel_index[k]])
            elif is_int[k] and values.dtype.kind == "i":
                low[k] = min(low[k], int(values.min()))
                high[k] = max(high[k], int(values.max()))
            else:
                is_int[k] = False
        t_first = int(chunk.t[0]) if t_first is None else t_first
        t_last = int(chunk.t[-1])
        rows_total += len(chunk.lines)
        if keep:
            kept.append(chunk)
    dtypes = [_chosen_type(opts.types.get(k), flag, lo, hi, layout.header[layout.channel_index[k]],
                           path) for k, (flag, lo, hi) in enumerate(zip(is_int, low, high))]
    rate = None
    if rows_total > 1 and t_last > t_first:
        rate = float(f"{1e9 * (rows_total - 1) / (t_last - t_first):.6g}")   # never rounded to 0
    return dtypes, rate, kept if keep else None, [None if n is None else list(n) for n in names]


def _gather_names(found: dict, labels: _Labels, lines, path: Path, column: str) -> dict:
    """``found`` (names in order of first appearance) with a chunk's new names."""
    for name, row in zip(labels.names, labels.first_rows):
        if name not in found:
            if len(found) == MAX_NAMES:
                raise ValueRangeError(f"{path}: line {lines[row]}, column {column!r}: {_quoted(name)} "
                                      f"is name number {MAX_NAMES + 1:,} of this column of names; "
                                      f"a categorical channel holds at most {MAX_NAMES:,} (ids or "
                                      f"free text are not states: exclude the column)")
            found[name] = True
    return found


def _chosen_type(wanted, is_int: bool, low: int, high: int, column: str, path: Path) -> str:
    """The given type after checking that the whole file fits it, else the
    smallest integer type that holds the column, else float64."""
    if wanted is None or wanted == "category":
        return _smallest_int(low, high) if is_int else "float64"
    if wanted.startswith("int"):
        if not is_int:
            raise DataError(f"{path}: column {column!r} has values that are not integers (or are "
                            f"empty), so it cannot be {wanted}; give float32 or float64")
        info = np.iinfo(wanted)
        if low < info.min or high > info.max:
            raise ValueRangeError(f"{path}: column {column!r} has values from {low} to {high}, "
                                  f"beyond what {wanted} holds ({info.min} to {info.max})")
    return wanted


def _smallest_int(low: int, high: int) -> str:
    for name in INT_TYPES:
        info = np.iinfo(name)
        if info.min <= low and high <= info.max:
            return name
    return "int64"


def _append_chunks(cache, stream, layout: _Layout, chunks, path: Path, progress,
                   opts: Options) -> int:
    """Append the checked chunks.  A file of at most KEEP_PARSED_BYTES is checked
    whole first, so a fault anywhere in it stores nothing; in a larger one a
    fault stops at its chunk and the message says how many rows were stored."""
    dictionaries = {c.name: _Names(c) for c in stream.channels if c.is_categorical}
    checked = _checked_chunks(cache, stream, layout, chunks, path, dictionaries, opts)
    if path.stat().st_size <= KEEP_PARSED_BYTES:
        checked = list(checked)
    rows_done = 0
    try:
        for chunk, values in checked:
            for names in dictionaries.values():
                names.store(cache, stream.name)
            cache.append(stream.name, chunk.t, values)
            rows_done += len(chunk.lines)
            _note_rows(opts.summary, chunk.t)
            if progress is not None:
                progress(rows_done, chunk.bytes_done, chunk.bytes_total)
    except SensorqError as exc:
        if rows_done and exc.args and isinstance(exc.args[0], str):
            exc.args = (f"{exc.args[0]}; the {rows_done:,} rows before it were appended to stream "
                        f"{stream.name!r}, the rest of the file was not",) + exc.args[1:]
        raise
    return rows_done


def _note_rows(summary: dict, t: np.ndarray) -> None:
    summary["rows"] += len(t)
    if summary["t_first"] is None:
        summary["t_first"] = int(t[0])
    summary["t_last"] = int(t[-1])


def _checked_chunks(cache, stream, layout: _Layout, chunks, path: Path, dictionaries: dict,
                    opts: Options):
    """(chunk, values by channel name in the channel's dtype), after the time
    order and every value's range were checked; names become codes of
    ``dictionaries`` (by channel name), which collect the file's new names.
    With ``skip_existing``, rows at or before the stream's newest sample are
    dropped first (the file is in time order, so they are its first rows)."""
    last_ns, last_line = cache.newest_ns(stream.name), None
    present = last_ns if opts.skip_existing else None
    position = {name: k for k, name in enumerate(layout.channel_names)}
    time_name = layout.header[layout.time_index]
    for chunk in chunks:
        if present is not None:
            chunk = _rows_after(chunk, present, opts.summary)
            if chunk is None:
                continue
        _check_order(chunk.t, last_ns, last_line, chunk.lines, path, time_name, stream.name)
        values = {}
        for channel in stream.channels:
            k = position[channel.name]
            column = layout.header[layout.channel_index[k]]
            if channel.is_categorical:
                values[channel.name] = dictionaries[channel.name].codes(chunk.values[k], chunk.lines,
                                                                        path, column)
            else:
                values[channel.name] = _fit(chunk.values[k], channel, chunk.lines, path, column)
        last_ns, last_line = int(chunk.t[-1]), int(chunk.lines[-1])
        yield chunk, values


def _rows_after(chunk: "_Chunk", present: int, summary: dict):
    """The chunk's rows after ``present`` (None: none are)."""
    keep = chunk.t > present
    summary["skipped"] += int(keep.size - keep.sum())
    if keep.all():
        return chunk
    if not keep.any():
        return None
    values = [v.subset(keep) if isinstance(v, _Labels) else v[keep] for v in chunk.values]
    return _Chunk(chunk.t[keep], values, chunk.lines[keep], chunk.bytes_done, chunk.bytes_total)


class _Names:
    """A categorical channel's dictionary while a file is read: the stream's
    names, then the file's new ones, which get the next codes at once and are
    stored in the stream (``store``) only before the first chunk that uses
    them is appended: a file refused while it is checked adds no name."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.names = list(channel.categories)
        self.code = {name: code for code, name in enumerate(self.names)}
        self.stored = len(self.names)
        self.capacity = int(np.iinfo(channel.dtype).max) + 1

    def codes(self, labels: _Labels, lines, path: Path, column: str) -> np.ndarray:
        table = np.empty(len(labels.names), self.channel.numpy_dtype)
        for i, (name, row) in enumerate(zip(labels.names, labels.first_rows)):
            if name not in self.code:
                self._add(name, lines[row], path, column)
            table[i] = self.code[name]
        return table[labels.codes]

    def _add(self, name: str, line: int, path: Path, column: str) -> None:
        if len(self.names) == self.capacity:
            raise ValueRangeError(f"{path}: line {line}, column {column!r}: {_quoted(name)} would be "
                                  f"name number {self.capacity + 1:,} of channel "
                                  f"{self.channel.name!r}, more than its {self.channel.dtype} codes "
                                  f"hold")
        self.code[name] = len(self.names)
        self.names.append(name)

    def store(self, cache, stream: str) -> None:
        new = self.names[self.stored:]
        if not new:
            return
        codes = cache.add_categories(stream, self.channel.name, new)
        if codes != list(range(self.stored, self.stored + len(new))):   # another writer's names
            raise SchemaError(f"stream {stream!r} channel {self.channel.name!r}: its dictionary "
                              f"changed while the file was read; ingest it again")
        self.stored = len(self.names)


# --- numbers -------------------------------------------------------------------------------

def _numbers(column: _Column) -> np.ndarray:
    """int64 if every cell is an integer, else float64 (empty cells are NaN)."""
    try:
        return _convert(column, np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        values = _convert(column, np.float64, _empty_as_nan)
    except ValueError:
        _bad_cell(column, "is not a number", _is_float)
    _check_finite(column, values)
    return values


def _labels(column: _Column) -> _Labels:
    """The chunk's names (blanks around them dropped) as codes in order of first
    appearance; DataError at an empty cell or a name that is not valid text."""
    n = len(column.starts)
    first_row: dict[bytes, int] = {}
    parts = []
    for rows, cells in column.classes():
        unique, first, inverse = np.unique(_texts(_stripped(cells)), return_index=True,
                                           return_inverse=True)
        parts.append((rows, unique.tolist(), inverse.reshape(-1)))
        for name, row in zip(unique.tolist(), rows[first].tolist()):
            first_row[name] = min(row, first_row.get(name, n))   # a name can be in two width classes
    order = sorted(first_row, key=first_row.get)
    local = {name: i for i, name in enumerate(order)}
    codes = np.empty(n, np.int64)
    for rows, unique, inverse in parts:
        codes[rows] = np.array([local[u] for u in unique], np.int64)[inverse]
    rows = np.array([first_row[name] for name in order], np.int64)
    return _Labels([_name_text(column, name, row) for name, row in zip(order, rows)], codes, rows)


def _name_text(column: _Column, name: bytes, row: int) -> str:
    if not name:
        raise DataError(f"{column.path}: line {column.lines[row]}, column {column.name!r}: "
                        f"{_EMPTY_NAME}")
    try:
        return check_category_name(column.name, name.decode("utf-8"))
    except UnicodeDecodeError:
        column.fail(row, "is not UTF-8 text")
    except SchemaError:
        column.fail(row, "is not a name: a name has no control characters (such as a tab)")


def _empty_as_nan(cells: np.ndarray) -> np.ndarray:
    empty = ~(cells > _SPACE).any(axis=1)
    if empty.any():
        cells[empty] = 0
        cells[empty, :3] = np.frombuffer(b"nan", np.uint8)
    return cells


def _check_finite(column: _Column, values: np.ndarray) -> None:
    """An infinity must be written as one (inf, -Infinity): a finite number too
    large for a float64 (a 1 000-digit integer) cannot be stored."""
    infinite = np.flatnonzero(np.isinf(values))
    for k in infinite:                      # few: only cells that are infinite at all
        if "inf" not in column.text(k).lower():
            column.fail(k, "is too large to store: it fits no channel type (int64, or float64 up "
                           "to about 1.8e308)", ValueRangeError)


def _is_float(text: bytes) -> bool:
    try:
        float(text) if text.strip() else None
        return True
    except ValueError:
        return False


def _bad_cell(column: _Column, what: str, ok) -> None:
    """DataError at the first cell that ``ok`` (a test of its bytes) refuses."""
    for k in range(len(column.starts)):
        if not ok(bytes(column.data[column.starts[k]:column.ends[k]])):
            column.fail(k, what)
    column.fail(0, what)     # numpy refused a cell that the test passes: name the chunk


def first_misfit(values: np.ndarray, channel: Channel) -> int | None:
    """The index of the first value an integer channel cannot hold (out of its
    range, not finite, or not whole), or None; CSV and Arrow ingest share it."""
    if not channel.is_integer:
        return None
    info = np.iinfo(channel.numpy_dtype)
    with np.errstate(invalid="ignore"):
        bad = (values < info.min) | (values > info.max)
        if values.dtype.kind == "f":
            bad |= ~np.isfinite(values) | (values != np.floor(values))
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def _fit(values: np.ndarray, channel: Channel, lines, path: Path, column: str) -> np.ndarray:
    """The values in the channel's dtype, or ValueRangeError naming the line."""
    if not channel.is_integer:
        return values
    k = first_misfit(values, channel)
    if k is not None:
        raise ValueRangeError(f"{path}: line {lines[k]}, column {column!r}: {values[k]!r} does not "
                              f"fit channel {channel.name!r} ({channel.dtype})")
    return values.astype(channel.numpy_dtype)


def _check_order(t: np.ndarray, last_ns, last_line, lines, path: Path, column: str,
                 stream: str | None = None) -> None:
    """The store's order rule, reported by file line instead of array index;
    ``last_line`` is the line of ``last_ns`` (None: the stream's newest sample)."""
    k = first_out_of_order(t, last_ns)
    if k is None:
        return
    if k == 0 and last_line is None and stream is not None:
        raise AlreadyPresentError(
            f"{path}: line {lines[0]}: its time {iso(int(t[0]))} is before the newest sample of "
            f"stream {stream!r} ({iso(last_ns)}), so this file, or its start, is in the stream "
            f"already; nothing was stored.  To append only its rows after {iso(last_ns)}, ingest "
            f"with --skip-existing (skip_existing=True in Python)")
    before = f"on line {lines[k - 1]}" if k else \
        ("the stream's newest sample" if last_line is None else f"on line {last_line}")
    raise OutOfOrderError(f"{path}: line {lines[k]}, column {column!r}: the time is earlier than "
                          f"{before}")
