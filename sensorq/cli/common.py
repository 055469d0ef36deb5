"""What every command shares: which cache, opening it, notes on stderr."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import SensorqError, StorageError

MANIFEST = "manifest.json"


def default_cache_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "sensorq" / "cache"


def resolve_cache(arg: str | None, *, for_writing: bool = False) -> tuple[Path, str]:
    """The cache directory to use and where it came from: ``--cache``, then
    $SENSORQ_CACHE, then the default location; for reading, the built-in demo
    when the default location holds no cache."""
    if arg:
        return Path(arg), "--cache"
    if os.environ.get("SENSORQ_CACHE"):
        return Path(os.environ["SENSORQ_CACHE"]), "$SENSORQ_CACHE"
    default = default_cache_path()
    if for_writing or (default / MANIFEST).exists():
        return default, "default location"
    from ..demo import ensure_demo
    return ensure_demo(), "demo"


def missing_cache(path: Path, source: str) -> StorageError:
    """The error for a cache that is not there, with the commands that make one."""
    return StorageError(f"no sensorq cache at {path} (from {source}); make one with "
                        f"`sensorq ingest FILE.csv --cache {path}` or `sensorq demo --cache {path}`")


def open_for_reading(args):
    from ..store import open as open_cache
    path, source = resolve_cache(args.cache)
    if source == "demo":
        note(args, f"no cache given (--cache, $SENSORQ_CACHE) and none at {default_cache_path()}; "
                   f"using the built-in demo cache at {path}")
    elif not (path / MANIFEST).exists():
        raise missing_cache(path, source)
    return open_cache(path, readonly=True)


def open_for_writing(args, *, create: bool = False, **settings):
    """The cache as its writer; ``create`` makes a new one (with ``settings``)."""
    from ..store import open as open_cache
    path, source = resolve_cache(args.cache, for_writing=True)
    if not create and not (path / MANIFEST).exists():
        raise missing_cache(path, source)
    return open_cache(path, create=create, **settings)


def note(args, text: str) -> None:
    """A remark on stderr (not with --quiet)."""
    if not getattr(args, "quiet", False):
        print(f"sensorq: {text}", file=sys.stderr)


def parse_assignment(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise SensorqError(f"{flag} wants NAME=VALUE, got {text!r}")
    return name, value


def show_table(rows: list[list[str]], header: list[str]) -> str:
    """Columns padded to their widest cell (numbers right-aligned)."""
    widths = [max([len(h)] + [len(r[k]) for r in rows]) for k, h in enumerate(header)]
    def cell(text, k):
        return text.rjust(widths[k]) if _numeric(text) else text.ljust(widths[k])
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(cell(c, k) for k, c in enumerate(r)).rstrip() for r in rows]
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    return bool(text) and text.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


def window_bounds(cache, stream: str, window: str | None, now_policy: str = "data"):
    """(start_ns, end_ns) of a time window written as in a query ("last 1h",
    "since 2026-11-24", "between A and B"); None ends are open.  It is planned
    as ``count from STREAM WINDOW``, so every form of docs/query.md works and
    "now" means the same; an error points into the window's own text."""
    if not window or not window.strip():
        return None, None
    plan = _plan_inside(cache, f"count from {stream} ", window, now_policy)
    return plan.time.start_ns, plan.time.end_ns


def time_point(cache, stream: str, text: str, now_policy: str = "data") -> int:
    """A point in time written as in a query (ISO, 1795500000s, "now - 1h", "2h ago")."""
    return _plan_inside(cache, f"count from {stream} at ", text, now_policy).time.end_ns


def _plan_inside(cache, prefix: str, text: str, now_policy: str):
    from ..engine.executor import plan_text
    from ..errors import QueryError
    try:
        return plan_text(cache, prefix + text, now_policy)
    except QueryError as exc:
        if exc.column is None or exc.column <= len(prefix):
            raise
        raise type(exc)(exc.reason, text, exc.column - len(prefix), exc.expected) from None
