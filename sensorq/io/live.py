"""``sensorq ingest -``: CSV lines from a pipe (a sensor loop), made durable
every ``flush_every`` seconds.

The header line comes first; then whatever arrived is parsed, appended and
flushed at each interval (and whenever MAX_PENDING bytes wait), so a kill
-9 loses at most the lines of the last interval, and a quiet pipe costs
nothing.  A stream that does not exist yet is created from the first batch:
text columns become categorical channels (int16 codes, room for 32 768
names), numbers float64 (a later reading may not be an integer) unless
``types`` says otherwise.  The cells are read with CSV ingest's parser
(ingest.py), so the same rules and the same errors (naming the line) apply;
a bad line stops the ingest with everything before its batch flushed.
SIGTERM and Ctrl-C end it cleanly: what has arrived is stored and flushed.
"""
from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path

import numpy as np

from .. import ingest as csvin
from ..errors import DataError, SensorqError
from ..schema import Channel

MAX_PENDING = 8 * 1024 * 1024     # bytes waiting before a batch is stored early
READ_BYTES = 1 << 16
LABEL = Path("<stdin>")


class _Stop(Exception):
    """SIGTERM: finish what has arrived, then stop."""


def _stop(signum, frame):
    raise _Stop()


def ingest_lines(cache, source, stream: str, *, time_column=None, time_unit=None, units=None,
                 types=None, delimiter: str = ",", rate_hz=None, flush_every: float = 1.0,
                 exclude=(), summary: dict | None = None, quiet: bool = False) -> str:
    """Read CSV lines from the binary file ``source`` until it ends (or SIGTERM),
    appending them to ``stream``; returns the stream's name."""
    if not flush_every > 0:
        raise DataError(f"--flush-every {flush_every!r} must be a positive number of seconds")
    feed = _Feed(cache, stream, time_column, time_unit, units or {}, types or {},
                 csvin._check_delimiter(delimiter), rate_hz, tuple(exclude),
                 summary if summary is not None else {}, quiet)
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        feed.run(source.fileno(), flush_every)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return stream


class _Feed:
    def __init__(self, cache, stream, time_column, time_unit, units, types, delimiter, rate_hz,
                 exclude, summary, quiet):
        self.cache, self.name, self.delimiter = cache, stream, delimiter
        self.time_column, self.time_unit, self.units, self.types = time_column, time_unit, units, types
        self.rate_hz, self.exclude, self.quiet = rate_hz, exclude, quiet
        self.summary = summary
        summary.update(rows=0, skipped=0, t_first=None, t_last=None)
        self.layout = None
        self.line = 2                 # file line of the next data line
        self.last_ns = self.last_line = None

    # --- the loop --------------------------------------------------------------------

    def run(self, fd: int, flush_every: float) -> None:
        pending, ended = b"", False
        deadline = time.monotonic() + flush_every
        try:
            while not ended:
                wait = max(0.0, deadline - time.monotonic())
                if select.select([fd], [], [], wait)[0]:
                    data = os.read(fd, READ_BYTES)
                    ended = not data
                    pending += data
                    pending = self._header(pending)
                if ended or time.monotonic() >= deadline or len(pending) > MAX_PENDING:
                    pending = self._store(pending, final=ended)
                    deadline = time.monotonic() + flush_every
        except (_Stop, KeyboardInterrupt):
            self._store(pending, final=False)

    def _header(self, pending: bytes) -> bytes:
        if self.layout is not None or b"\n" not in pending:
            return pending
        first, rest = pending.split(b"\n", 1)
        import csv
        try:
            cells = next(csv.reader([first.removeprefix(b"\xef\xbb\xbf").decode("utf-8")],
                                    delimiter=self.delimiter))
        except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
            raise DataError(f"{LABEL}: line 1: not a CSV header ({exc})") from None
        self.layout = csvin._layout(LABEL, cells, self.time_column, self.exclude)
        self.wanted = csvin.column_types(self.types, self.layout.header, self.layout.channel_index,
                                         LABEL)
        return rest

    def _store(self, pending: bytes, final: bool) -> bytes:
        """Append and flush the whole lines of ``pending`` (all of it at the end)."""
        if self.layout is None:
            if final and pending.strip():
                self._header(pending + b"\n")
            return b""
        cut = len(pending) if final else pending.rfind(b"\n") + 1
        piece, rest = pending[:cut], pending[cut:]
        if piece.strip():
            self._append(piece if piece.endswith(b"\n") else piece + b"\n")
        self.cache.flush()
        return rest

    # --- one batch -------------------------------------------------------------------

    def _append(self, piece: bytes) -> None:
        table = csvin._split(piece, self.line, len(self.layout.header), LABEL, self.delimiter)
        self.line += piece.count(b"\n")
        if not table.lines.size:
            return
        try:
            t, values = self._convert(table)
            self.cache.append(self.name, t, values)
        except SensorqError as exc:
            if self.summary["rows"] and exc.args and isinstance(exc.args[0], str):
                exc.args = (f"{exc.args[0]}; the {self.summary['rows']:,} rows before this "
                            f"batch are stored and flushed",) + exc.args[1:]
            raise
        self.summary["rows"] += len(t)
        self.summary["t_first"] = self.summary["t_first"] or int(t[0])
        self.summary["t_last"] = int(t[-1])
        self.last_ns, self.last_line = int(t[-1]), int(table.lines[-1])

    def _convert(self, table) -> tuple[np.ndarray, dict]:
        lay = self.layout
        time_name = lay.header[lay.time_index]
        cells = table.column(lay.time_index, LABEL, time_name)
        self.time_unit = self.time_unit or csvin._guessed_unit(cells)
        t = csvin._times(cells, self.time_unit)
        columns = [table.column(i, LABEL, lay.header[i]) for i in lay.channel_index]
        stream = self._stream(columns)
        if self.last_ns is None:
            self.last_ns = self.cache.newest_ns(self.name)
        csvin._check_order(t, self.last_ns, self.last_line, table.lines, LABEL, time_name,
                           self.name if self.last_line is None else None)
        values = {}
        for channel, column in zip(stream.channels, self._in_stream_order(stream, columns)):
            if channel.is_categorical:
                names = csvin._Names(self.cache.streams[self.name].channel(channel.name))
                values[channel.name] = names.codes(csvin._labels(column), table.lines, LABEL,
                                                   column.name)
                names.store(self.cache, self.name)
            else:
                values[channel.name] = csvin._fit(csvin._numbers(column), channel, table.lines,
                                                  LABEL, column.name)
        return t, values

    def _in_stream_order(self, stream, columns):
        by_name = dict(zip(self.layout.channel_names, columns))
        return [by_name[c.name] for c in stream.channels]

    def _stream(self, columns):
        """The stream, created from this first batch if it does not exist."""
        if self.name in self.cache.streams:
            stream = self.cache.streams[self.name]
            csvin._check_existing(stream, self.layout, self.units, LABEL, self.wanted)
            return stream
        channels = []
        for k, (name, column) in enumerate(zip(self.layout.channel_names, columns)):
            wanted = self.wanted.get(k)
            first = csvin._first_filled(column)
            text = wanted == "category" or (wanted is None and first is not None and not
                                            csvin._is_float(bytes(column.data[column.starts[first]:
                                                                              column.ends[first]])))
            if text:
                channels.append(Channel(name, "int16", categories=()))
            else:
                channels.append(Channel(name, wanted or "float64", csvin._unit_for(self.units, name)
                                        or ""))
        return self.cache.create_stream(self.name, channels, rate_hz=self.rate_hz)
