"""The row limit, and what happens at it (docs/query.md, "Limits and memory").

A query's working memory is bounded by its result, never by the data it
reads; the one thing that can still grow with the query text is the result
itself (``avg x by 1ns``, ``… by 1ms fill(null) last 10y``).  So every
operator counts its rows *before* allocating them and refuses a result
beyond the row limit with a RowLimitError that names the limit and how to
raise it.  The limit is ``max_rows=`` of run_query/execute, else
$SENSORQ_MAX_ROWS, else DEFAULT_MAX_ROWS.
"""
from __future__ import annotations

import os

from ..errors import QueryError, QueryMemoryError, RowLimitError

DEFAULT_MAX_ROWS = 10_000_000
ENV_MAX_ROWS = "SENSORQ_MAX_ROWS"
HOW_TO_RAISE = f"raise it with ${ENV_MAX_ROWS} (or max_rows= of run_query)"


def max_rows(explicit: int | None = None) -> int:
    """The row limit in force: ``explicit``, else $SENSORQ_MAX_ROWS, else the default."""
    if explicit is not None:
        return _positive(explicit, "max_rows")
    text = os.environ.get(ENV_MAX_ROWS, "").strip().replace("_", "")
    return _positive(text, f"${ENV_MAX_ROWS}") if text else DEFAULT_MAX_ROWS


def _positive(value, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise QueryError(f"{name} must be a whole number of rows, at least 1, not {value!r}")
    return number


def check_rows(rows: int, limit: int, what: str) -> None:
    """Refuse a result of ``rows`` rows (known before they are allocated)."""
    if rows > limit:
        raise RowLimitError(f"{what} would have {rows:,} rows, more than the row limit of "
                            f"{limit:,}; narrow the time window, use a coarser bucket, or "
                            f"{HOW_TO_RAISE}", rows, limit)


def exceeded(limit: int, what: str) -> RowLimitError:
    """The error for a result found, while scanning, to pass the limit."""
    return RowLimitError(f"{what} has more than {limit:,} rows, the row limit; narrow the time "
                         f"window, use a coarser bucket, or {HOW_TO_RAISE}", None, limit)


def out_of_memory(text: str, detail: str) -> QueryMemoryError:
    """The error that replaces a MemoryError at the API boundary."""
    return QueryMemoryError(f"out of memory answering {text!r} ({detail or 'MemoryError'}); "
                            "narrow its time window or use a coarser bucket")
