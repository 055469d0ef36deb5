"""The one exception hierarchy of sensorq.

Every error a user can provoke (a bad query, bad input data, a corrupt file, a
second writer) is raised as a subclass of :class:`SensorqError`, with a message
that says what was wrong and where.  The command line prints the message and
exits with a non-zero status; it never shows a traceback for these.
"""
from __future__ import annotations


class SensorqError(Exception):
    """Base class of every error sensorq raises on purpose."""


# --- storage -----------------------------------------------------------------
class StorageError(SensorqError):
    """A cache could not be opened, read or written."""


class CorruptDataError(StorageError):
    """Bytes on disk (or handed to a decoder) fail a checksum or a structural check."""


class FormatVersionError(CorruptDataError):
    """A file or block was written by an unknown version of the format."""


class LockedError(StorageError):
    """The cache is already open for writing by another process."""


class CapacityError(StorageError):
    """A single block is larger than the whole capacity of the cache."""


# --- input data ----------------------------------------------------------------
class DataError(SensorqError):
    """Samples handed to an append are not acceptable."""


class OutOfOrderError(DataError):
    """A timestamp is earlier than the one before it in the same stream."""


class ValueRangeError(DataError):
    """A value does not fit the channel's declared storage type."""


class SchemaError(SensorqError):
    """A stream or channel definition is invalid, or does not match the data."""


# --- queries -------------------------------------------------------------------
class QueryError(SensorqError):
    """A query is not valid.  Carries the query text and the column of the fault,
    so the message can show a caret under the offending character."""

    def __init__(self, message: str, query: str | None = None, column: int | None = None,
                 expected: list[str] | None = None):
        self.reason = message
        self.query = query
        self.column = column  # 1-based, like lark and most editors
        self.expected = expected or []
        super().__init__(self._render())

    def _render(self) -> str:
        text = self.reason
        if self.expected:
            text += "; expected " + ", ".join(self.expected)
        if self.query is None or self.column is None:
            return text
        caret = " " * (self.column - 1) + "^"
        return f"{text} (column {self.column})\n  {self.query}\n  {caret}"


class QuerySyntaxError(QueryError):
    """The text does not follow the grammar."""


class QueryNameError(QueryError):
    """A stream, channel or function name is unknown or ambiguous."""


class QueryUnitError(QueryError):
    """Units do not agree (``accel > 30degC``) or a unit is unknown."""


class QueryTypeError(QueryError):
    """An operation is applied to the wrong kind of value."""


class DeviceUnsupportedError(QueryError):
    """The query uses a construct that the device port does not have."""


# --- limits --------------------------------------------------------------------
class LimitError(SensorqError):
    """A query's answer, or the memory needed to compute it, is beyond a limit
    (docs/query.md, "Limits and memory")."""


class RowLimitError(LimitError):
    """A result would have more rows than the row limit ($SENSORQ_MAX_ROWS).
    Raised before the rows are allocated; ``rows`` is how many there would be
    (None when only "more than ``limit``" is known)."""

    def __init__(self, message: str, rows: int | None = None, limit: int | None = None):
        self.rows = rows
        self.limit = limit
        super().__init__(message)


class QueryMemoryError(LimitError, MemoryError):
    """The machine ran out of memory while answering a query.  Still a
    MemoryError, so code that catches that keeps working."""
