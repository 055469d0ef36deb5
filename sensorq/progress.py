"""Progress bars for long operations (ingest, export, stdin ingest), on stderr.

A bar is drawn only when stderr is a terminal (and not with ``--quiet``):
redirected output and CI logs never get carriage-return noise.  Redraws are
throttled to ten a second, so a tight loop of small updates costs nothing.
"""
from __future__ import annotations

import sys
import time

WIDTH = 30
REDRAW_S = 0.1


class ProgressBar:
    """``update(done, rows)`` with ``done`` out of ``total`` (bytes or rows);
    ``close()`` ends the line.  ``total=None`` shows a counter without a bar."""

    def __init__(self, label: str, total: int | None = None, enabled: bool | None = None,
                 stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.label, self.total = label, total
        self.enabled = _is_terminal(self.stream) if enabled is None else enabled
        self._drawn_at = 0.0
        self._dirty = False
        self._started = time.perf_counter()

    def update(self, done: int, rows: int | None = None) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._drawn_at < REDRAW_S and (self.total is None or done < self.total):
            return
        self._drawn_at = now
        self._dirty = True
        self.stream.write("\r" + self.line(done, rows, now - self._started))
        self.stream.flush()

    def line(self, done: int, rows: int | None, elapsed: float) -> str:
        count = f" {rows:,} rows" if rows is not None else ""
        if not self.total:
            return f"{self.label}{count} ({elapsed:.1f} s)"
        share = min(1.0, done / self.total)
        filled = int(WIDTH * share)
        return (f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {100 * share:5.1f}%"
                f"{count} ({elapsed:.1f} s)")

    def close(self) -> None:
        if self.enabled and self._dirty:
            self.stream.write("\n")
            self.stream.flush()
        self._dirty = False

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
