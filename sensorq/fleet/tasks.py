"""What runs where the caches are: on a Dask worker (or, with scheduler
"inline", in this process).  Every function here takes and returns plain
data (paths, query text, numpy arrays, Result objects); Dask carries them in
its own protocol, and nothing is written to disk.

* ``find_caches``: the caches matching the fleet's globs that this machine
  can open (restricted, when the worker was told, to the directories in
  $SENSORQ_FLEET_DIRS: the caches it holds).
* ``run_device``: one device's part of a query: its plan, then its partial
  aggregates, its rows, or one round of a percentile selection.

Caches stay open between queries (read-only, ``refresh()``ed before each
use), so a fleet query does not rescan every segment of every cache each
time; values decoded for a percentile are kept for the rounds of the same
query, within a memory budget.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from ..errors import LimitError, QueryError, QuerySyntaxError, SensorqError

FLEET_DIRS_ENV = "SENSORQ_FLEET_DIRS"        # os.pathsep-separated directories a worker holds
DELAY_ENV = "SENSORQ_FLEET_DELAY_S"         # seconds each part waits first (tests kill workers)
MAX_OPEN = 256                              # caches a worker keeps open
SHIFT_NS = 1_000_000_007                    # "now" moved by this tells a now-dependent plan

_open: OrderedDict = OrderedDict()
_locks: dict = {}
_guard = threading.Lock()


# --- discovery ----------------------------------------------------------------------

def held_roots() -> list[str] | None:
    """The directories this worker was told it holds (None: whatever it can open)."""
    text = os.environ.get(FLEET_DIRS_ENV, "").strip()
    return [os.path.abspath(p) for p in text.split(os.pathsep) if p] if text else None


def find_caches(patterns: list[str]) -> list[dict]:
    """Cache directories matching ``patterns`` here: path, device, labels."""
    from ..store.manifest import MANIFEST_NAME, read_manifest
    roots = held_roots()
    found = []
    for path in sorted({p for pattern in patterns for p in glob.glob(pattern)}):
        if not os.path.isfile(os.path.join(path, MANIFEST_NAME)):
            continue
        if roots is not None and not any(_under(path, r) for r in roots):
            continue
        try:
            manifest = read_manifest(_path(path))
        except SensorqError as exc:
            found.append({"path": path, "device": None, "labels": {}, "error": str(exc)})
            continue
        found.append({"path": path, "device": manifest.device, "labels": dict(manifest.labels)})
    return found


def _under(path: str, root: str) -> bool:
    return os.path.commonpath([os.path.abspath(path), root]) == root


def _path(p: str):
    from pathlib import Path
    return Path(p)


# --- one device's part ------------------------------------------------------------------

@dataclass
class Request:
    """What every device is asked (the same for all of them, but ``now_ns``)."""
    text: str                        # the query without its fleet clause
    mode: str                        # "partials", "answer" or "select" (a percentile round)
    now_policy: str = "data"
    now_ns: int | None = None        # the fleet's now (None: the device's own)
    clock_ns: int | None = None      # with now_policy "clock": one clock for every device
    engine: str | None = None
    max_rows: int | None = None
    select: dict | None = None       # a percentile round (percentiles.py)
    token: str = ""                  # names the query, for the values kept between rounds
    whole_rows: bool = False         # rows to be merged: not cut to the query's limit here


@dataclass
class Reply:
    """A device's answer to a Request."""
    path: str
    newest: int | None = None        # newest sample of the stream the query reads
    now_dependent: bool = False      # does the window move with "now"?
    missing: str | None = None       # why this device cannot answer (no such stream or channel)
    plan: object = None
    payload: object = None
    warnings: list = field(default_factory=list)
    categories: tuple | None = None  # a categorical value channel's names (merged first/last)
    missing_column: int | None = None
    worker: str = ""
    seconds: float = 0.0
    error: str | None = None         # what went wrong here (the query then fails, or retries)
    error_kind: str = ""             # "query": the same everywhere; "storage": this machine's copy
    error_type: str = ""             # the sensorq.errors class it was


def run_device(path: str, request: Request) -> Reply:
    """This device's part of ``request``.  An error is returned in the reply,
    with where it happened, for the client to report it naming the device
    (or to retry elsewhere when it was this machine's copy of the cache)."""
    started = time.perf_counter()
    worker = _worker_name()
    tier = request.engine or os.environ.get("SENSORQ_ENGINE") or "auto"
    if worker != "local" and tier == "auto":
        _warm_kernels()
    delay = float(os.environ.get(DELAY_ENV) or 0)
    if delay > 0:
        time.sleep(delay)
    try:
        with _lock(path):
            reply = _answer(_cache(path), path, request)
    except (QueryError, LimitError) as exc:
        reply = Reply(path, error=str(exc), error_kind="query", error_type=type(exc).__name__)
    except (SensorqError, OSError) as exc:
        reply = Reply(path, error=str(exc), error_kind="storage", error_type=type(exc).__name__)
    except MemoryError:
        reply = Reply(path, error="out of memory", error_kind="storage")
    reply.worker = worker
    reply.seconds = time.perf_counter() - started
    return reply


def run_devices(items: list) -> list:
    """run_device for each (path, request): several devices' parts in one Dask task."""
    return [run_device(path, request) for path, request in items]


def _answer(cache, path: str, request: Request) -> Reply:
    from ..engine.executor import _with_models
    view = _with_models(cache)
    reply = Reply(path)
    try:
        plan, reply.now_dependent = _plan(view, request)
    except QuerySyntaxError:
        raise
    except QueryError as exc:
        reply.missing, reply.missing_column = exc.reason, exc.column
        return reply
    reply.plan = plan
    reply.newest = view.newest_ns(plan.stream)
    reply.categories = _value_categories(view, plan)
    if request.mode == "partials":
        from ..engine.mergeable import aggregate_partials
        reply.payload = aggregate_partials(view, plan, request.text, request.engine,
                                           request.max_rows)
        reply.warnings = view.gaps(plan.stream, plan.time.start_ns, plan.time.end_ns)
    elif request.mode == "answer":
        from ..engine.executor import execute
        unlimited = dataclasses.replace(plan, limit=None) if request.whole_rows else plan
        reply.payload = execute(view, unlimited, request.text, request.engine, request.max_rows)
        reply.warnings = list(reply.payload.warnings)
    elif request.mode == "select":
        from .percentiles import device_round
        reply.payload = device_round(view, plan, request, path)
        reply.warnings = view.gaps(plan.stream, plan.time.start_ns, plan.time.end_ns)
    else:
        raise ValueError(f"unknown fleet request mode {request.mode!r}")
    return reply


def _plan(view, request: Request):
    """(the plan with the fleet's now, whether its window moves with now)."""
    from ..query.planner import plan_query

    def plan(shift: int):
        if request.now_ns is not None and request.now_policy == "data":
            newest = lambda stream: request.now_ns - 1 + shift
        else:
            newest = (lambda stream: _shifted(view.newest_ns(stream), shift))
        clock = None if request.clock_ns is None else request.clock_ns + shift
        return plan_query(request.text, view.streams, newest, request.now_policy, clock)

    first = plan(0)
    moved = plan(SHIFT_NS)
    window = (first.time.start_ns, first.time.end_ns)
    return first, window != (moved.time.start_ns, moved.time.end_ns)


def _shifted(newest, shift: int):
    return None if newest is None else newest + shift


def _value_categories(view, plan):
    expr = getattr(plan, "expr", None)
    if getattr(expr, "categories", None) is None:
        return None
    stream = view.streams.get(plan.stream)
    channel = next((c for c in stream.channels if c.name == expr.channel), None) if stream else None
    return tuple(channel.categories) if channel is not None and channel.is_categorical else None


# --- open caches --------------------------------------------------------------------------

def _lock(path: str) -> threading.Lock:
    with _guard:
        return _locks.setdefault(path, threading.Lock())


def _cache(path: str):
    """The read-only cache at ``path``, kept open between queries."""
    from ..store import open as open_cache
    with _guard:
        cache = _open.pop(path, None)
    if cache is not None:
        try:
            cache.refresh()
        except SensorqError:
            cache.close()
            cache = None
    if cache is None:
        cache = open_cache(path, readonly=True)
    with _guard:
        _open[path] = cache
        while len(_open) > MAX_OPEN:
            _open.popitem(last=False)[1].close()
    return cache


def forget_caches() -> None:
    """Close every cache this process keeps open (tests; a worker's teardown)."""
    with _guard:
        while _open:
            _open.popitem()[1].close()


_warming: list = []


def _warm_kernels() -> None:
    """A Dask worker lives long, as the shell does: it loads the compiled
    kernels once, in the background, and the engine's auto tier then uses
    them for every scan (the first tasks run on the interpreter meanwhile)."""
    if _warming or "sensorq.engine.kernels" in sys.modules:
        return
    _warming.append(True)
    import importlib
    threading.Thread(target=importlib.import_module, args=("sensorq.engine.kernels",),
                     name="sensorq-warm", daemon=True).start()


def _worker_name() -> str:
    if "distributed" not in sys.modules:      # inline: never import dask for a name
        return "local"
    try:
        from distributed import get_worker
        return get_worker().address
    except ValueError:
        return "local"


__all__ = ["find_caches", "run_device", "run_devices", "Request", "Reply", "held_roots",
           "forget_caches"]
