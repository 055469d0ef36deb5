"""Commands that move data: ingest, export, demo."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import SensorqError
from .common import (MANIFEST, note, open_for_reading, parse_assignment, resolve_cache,
                     window_bounds)

ARROW_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow",
                  ".ipc": "arrow"}


def add_parsers(sub, common) -> None:
    p = sub.add_parser("ingest", parents=[common], help="add CSV, Parquet or Arrow files (or stdin)",
                       description="Add files to the cache, each into one stream (created if "
                                   "missing): CSV (.csv, .tsv, anything else), Parquet (.parquet) "
                                   "or Arrow IPC (.arrow, .feather); these two need pyarrow (pip "
                                   "install 'sensorq[arrow]').  '-' reads CSV lines from stdin as "
                                   "they come (a sensor loop piped in) and flushes every "
                                   "--flush-every seconds, so a kill loses at most that much.  A "
                                   "file whose rows start before the stream's newest sample was "
                                   "ingested already and is refused; --skip-existing appends only "
                                   "its newer rows.  Says what the ring evicted to make room.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--stream", help="stream name (default: the file's name; required for stdin)")
    p.add_argument("--time-column", help="timestamp column (default: 'timestamp', 'time', else "
                                         "the first column)")
    p.add_argument("--time-unit", choices=("s", "ms", "us", "ns"),
                   help="epoch unit of numeric timestamps (default: guessed from their magnitude)")
    p.add_argument("--unit", action="append", default=[], metavar="CHANNEL=UNIT",
                   help="unit of a channel ('*=mg' for all; default: none)")
    p.add_argument("--type", action="append", default=[], metavar="COLUMN=TYPE", dest="types",
                   help="storage type of a new stream's channel: int8, int16, int32, int64, "
                        "float32, float64 or category (default: the smallest integer type that "
                        "holds the column, else float64; text is category)")
    p.add_argument("--delimiter", default=None,
                   help="CSV cell separator, one character or 'tab' (default: ',', tab for .tsv)")
    p.add_argument("--rate", type=float, default=None, metavar="HZ",
                   help="a new stream's nominal sample rate (default: the file's mean rate)")
    p.add_argument("--exclude", action="append", default=[], metavar="COLUMN",
                   help="a column not to store, repeatable (default: store every column)")
    p.add_argument("--skip-existing", action="store_true",
                   help="append only rows after the stream's newest sample (default: refuse a "
                        "file whose rows start before it)")
    p.add_argument("--flush-every", type=float, default=1.0, metavar="SECONDS",
                   help="stdin: make what arrived durable at this interval (default: 1)")
    p.add_argument("--capacity", default=None,
                   help="capacity of the cache, e.g. 64MB (default: 256MiB for a new cache; an "
                        "existing one's is changed, as with sensorq config)")
    p.add_argument("--retention", default=None,
                   help="retention of the cache, e.g. 7d (default: none for a new cache)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("export", parents=[common], help="write a stream to Parquet, Arrow or CSV",
                       description="Write a stream's samples (all of them, or those of a time "
                                   "window written as in a query: 'last 1h', 'since 2026-11-24', "
                                   "'between A and B') to a file: Parquet or Arrow IPC (pyarrow), "
                                   "or CSV ('-o -' for stdout).  Times are UTC nanoseconds; scaled "
                                   "channels are written as physical values (raw x scale) with "
                                   "their unit and scale in the field metadata, so ingesting the "
                                   "file again restores the stored integers; names stay names.")
    p.add_argument("stream")
    p.add_argument("window", nargs="?", default=None,
                   help="time window, as in a query (default: every sample)")
    p.add_argument("-o", "--output", required=True, help="file to write; the format follows its "
                                                         "suffix (.parquet, .arrow, .csv)")
    p.add_argument("--format", choices=("parquet", "arrow", "csv"), default=None,
                   help="format (default: from the output's suffix)")
    p.add_argument("--now", choices=("data", "clock"), default="data",
                   help="what 'now' means in the window (default: data, the newest sample)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", parents=[common], help="(re)build the built-in demo cache",
                       description="Build the deterministic demo cache (streams imu, env, gait) "
                                   "at --path or --cache (default: the demo location, "
                                   "$XDG_CACHE_HOME/sensorq/demo-VERSION).")
    p.add_argument("--path", help="where to write it (default: --cache, else the demo location)")
    p.set_defaults(func=cmd_demo)


# --- ingest ---------------------------------------------------------------------------------

def cmd_ingest(args) -> int:
    from ..store import open as open_cache
    units = dict(parse_assignment(u, "--unit") for u in args.unit)
    types = dict(parse_assignment(t, "--type") for t in args.types)
    if "-" in args.files and (len(args.files) > 1 or not args.stream):
        raise SensorqError("ingest -: stdin is ingested alone, and needs --stream NAME")
    path, _ = resolve_cache(args.cache, for_writing=True)
    fresh = not (path / MANIFEST).exists()
    settings = {"capacity": args.capacity, "retention": args.retention} if fresh else {}
    with open_cache(path, create=True, **settings) as cache:
        before = cache.extents()
        lost = {}
        if not fresh and (args.capacity or args.retention):
            lost = cache.change_settings(capacity=args.capacity, retention=args.retention)
            before = cache.extents()
        added: dict[str, dict] = {}
        for file in args.files:
            stream, summary = ingest_one(cache, file, args, units, types)
            _add_up(added, stream, summary)
            print(_ingested_text(file, stream, summary))
        cache.flush()
        _report_ring(cache, before, cache.extents(), added, lost)
    return 0


def ingest_one(cache, file: str, args, units: dict, types: dict) -> tuple[str, dict]:
    from ..progress import ProgressBar
    summary: dict = {}
    if file == "-":
        from ..io.live import ingest_lines
        stream = ingest_lines(cache, sys.stdin.buffer, args.stream, time_column=args.time_column,
                              time_unit=args.time_unit, units=units, types=types,
                              delimiter=args.delimiter or ",", rate_hz=args.rate,
                              flush_every=args.flush_every, exclude=args.exclude,
                              summary=summary, quiet=args.quiet)
        return stream, summary
    options = dict(stream=args.stream, time_column=args.time_column, time_unit=args.time_unit,
                   units=units, types=types, rate_hz=args.rate, skip_existing=args.skip_existing,
                   summary=summary, exclude=tuple(args.exclude))
    with ProgressBar(Path(file).name, enabled=False if args.quiet else None) as bar:
        fmt = ARROW_SUFFIXES.get(Path(file).suffix.lower())
        if fmt:
            from ..io.arrow import ingest_arrow
            stream, _ = ingest_arrow(cache, file, fmt=fmt, progress=bar.update, **options)
        else:
            from ..ingest import ingest_csv
            delimiter = args.delimiter or ("tab" if Path(file).suffix.lower() == ".tsv" else ",")
            stream, _ = ingest_csv(cache, file, delimiter=delimiter,
                                   progress=lambda rows, done, total: _csv_progress(bar, rows, done,
                                                                                     total),
                                   **options)
    return stream, summary


def _csv_progress(bar, rows: int, done: int, total: int) -> None:
    bar.total = total
    bar.update(done, rows)


def _add_up(added: dict, stream: str, summary: dict) -> None:
    into = added.setdefault(stream, {"rows": 0, "t_first": None})
    into["rows"] += summary.get("rows", 0)
    if into["t_first"] is None:
        into["t_first"] = summary.get("t_first")


def _ingested_text(file: str, stream: str, summary: dict) -> str:
    text = f"{file}: {summary.get('rows', 0):,} rows into stream {stream!r}"
    if summary.get("skipped"):
        text += (f" ({summary['skipped']:,} rows at or before the stream's newest sample were "
                 f"skipped: already present)")
    return text


def _report_ring(cache, before: dict, after: dict, added: dict, lost_to_settings: dict) -> None:
    """Say what the ring evicted: rows kept of those ingested, and the time range lost."""
    from ..store.prepare import iso
    from .streams import report_losses
    report_losses(None, lost_to_settings, "the new settings")
    for name in after:
        had, now = before.get(name), after[name]
        new = added.get(name, {"rows": 0, "t_first": None})
        lost = (had.samples if had else 0) + new["rows"] - now.samples
        if lost <= 0:
            continue
        starts = [t for t in ((had.t_first if had and had.samples else None), new["t_first"])
                  if t is not None]
        end = f"up to {iso(now.t_first)}" if now.samples else "to its end"
        kept = f"keeps {min(new['rows'], now.samples):,} of the {new['rows']:,} rows ingested and " \
            if new["rows"] else ""
        print(f"stream {name!r}: the cache {kept}evicted its oldest {lost:,} samples "
              f"({iso(min(starts))} {end}) to stay within {_limits(cache)}; raise it with "
              f"`sensorq config --capacity SIZE`")


def _limits(cache) -> str:
    info = cache.info()
    text = f"its capacity of {info['capacity']:,} bytes"
    if info.get("retention_s") is not None:
        text += f" and retention of {info['retention_s']:g} s"
    return text


# --- export ----------------------------------------------------------------------------------

def cmd_export(args) -> int:
    from ..io.export import export_stream, format_of
    from ..progress import ProgressBar
    fmt = args.format or format_of(args.output)
    with open_for_reading(args) as cache:
        start, end = window_bounds(cache, args.stream, args.window, args.now)
        to_stdout = args.output == "-"
        with ProgressBar(f"export {args.stream}", enabled=False if args.quiet or to_stdout
                         else None) as bar:
            def progress(rows: int, total: int | None) -> None:
                bar.total = total
                bar.update(rows, rows)
            done = export_stream(cache, args.stream, sys.stdout if to_stdout else args.output,
                                 start, end, fmt=fmt, progress=progress)
    if not to_stdout:
        print(f"{args.output}: {done.rows:,} rows of stream {args.stream!r} ({fmt}, "
              f"{done.bytes:,} bytes)")
    return 0


# --- demo -------------------------------------------------------------------------------------

def cmd_demo(args) -> int:
    from ..demo import build_demo, demo_path
    if args.path and args.cache and Path(args.path) != Path(args.cache):
        raise SensorqError(f"demo: --path {args.path} and --cache {args.cache} name different "
                           f"places; give one")
    where = args.path or args.cache
    path = Path(where) if where else demo_path()
    build_demo(path)
    print(f"demo cache written to {path}")
    if where:
        note(args, f"query it with: sensorq --cache {path} \"count where accel > 2g last 10m\"")
    return 0
