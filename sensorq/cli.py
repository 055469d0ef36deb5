"""The ``sensorq`` command line.

    sensorq "count where accel > 2g last 10m"       run a query (the default command)
    sensorq explain "avg temp by 1m last 24h"       show the plan and what the scan did
    sensorq info                                    streams, channels, sizes
    sensorq ingest FILE.csv [FILE.csv ...]          add CSV files to the cache
    sensorq demo                                    (re)build the built-in demo cache

The cache is taken from ``--cache``, then ``$SENSORQ_CACHE``, then the default
location (``$XDG_DATA_HOME/sensorq/cache``); when none of these exists, the
built-in demo cache is used, and the command says so on stderr.

Every error sensorq raises on purpose is printed as one clear message (a query
error with a caret under its column) and the exit status is 1; usage errors
exit with 2.  Imports of the engine are deferred so that ``--help`` and errors
are quick.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import SensorqError

COMMANDS = ("query", "explain", "info", "ingest", "demo", "compile")


def default_cache_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "sensorq" / "cache"


def resolve_cache(arg: str | None, *, for_writing: bool = False) -> tuple[Path, str]:
    """The cache directory to use and where it came from."""
    if arg:
        return Path(arg), "--cache"
    if os.environ.get("SENSORQ_CACHE"):
        return Path(os.environ["SENSORQ_CACHE"]), "$SENSORQ_CACHE"
    default = default_cache_path()
    if for_writing or (default / "manifest.json").exists():
        return default, "default location"
    from .demo import ensure_demo
    return ensure_demo(), "demo"


def open_for_reading(args):
    from .store import open as open_cache
    path, source = resolve_cache(args.cache)
    if source == "demo" and not args.quiet:
        print(f"sensorq: no cache given (--cache, $SENSORQ_CACHE) and none at {default_cache_path()}; "
              f"using the built-in demo cache at {path}", file=sys.stderr)
    return open_cache(path, readonly=True)


# --- commands ------------------------------------------------------------------

def cmd_query(args) -> int:
    with open_for_reading(args) as cache:
        result = cache.query(args.query, now_policy=args.now, engine=args.engine)
    if not args.quiet:
        for warning in result.warnings:
            print(f"sensorq: warning: {warning}", file=sys.stderr)
    if args.json:
        print(result.to_json())
    elif args.csv:
        sys.stdout.write(result.to_csv())
    else:
        print(result.format_table())
    return 0


def cmd_explain(args) -> int:
    from .engine.executor import explain_query
    with open_for_reading(args) as cache:
        print(explain_query(cache, args.query, now_policy=args.now, engine=args.engine))
    return 0


def cmd_info(args) -> int:
    with open_for_reading(args) as cache:
        info = cache.info()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(format_info(info))
    return 0


def cmd_ingest(args) -> int:
    from .ingest import ingest_csv
    from .store import open as open_cache
    path, _ = resolve_cache(args.cache, for_writing=True)
    units = dict(parse_assignment(u, "--unit") for u in args.unit)
    with open_cache(path, create=True, capacity=args.capacity) as cache:
        for file in args.files:
            bar = ProgressBar(Path(file).name, enabled=sys.stderr.isatty() and not args.quiet)
            stream, rows = ingest_csv(cache, file, stream=args.stream, time_column=args.time_column,
                                      time_unit=args.time_unit, units=units, progress=bar.update)
            bar.done()
            print(f"{file}: {rows} rows into stream {stream!r}")
        cache.flush()
    return 0


def cmd_demo(args) -> int:
    from .demo import build_demo, demo_path
    path = Path(args.path) if args.path else demo_path()
    build_demo(path)
    print(f"demo cache written to {path}")
    return 0


def cmd_compile(args) -> int:
    from .device.bytecode import compile_for_device, format_c_array
    with open_for_reading(args) as cache:
        code = compile_for_device(cache, args.query, now_policy=args.now)
    print(format_c_array(code, name=args.name))
    return 0


# --- presentation --------------------------------------------------------------

def parse_assignment(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise SensorqError(f"{flag} wants NAME=VALUE, got {text!r}")
    return name, value


def format_info(info: dict) -> str:
    lines = [f"cache {info.get('path', '')}"]
    used, cap = info.get("bytes_used"), info.get("capacity")
    if used is not None:
        lines.append(f"  {used:,} bytes on disk" + (f" of {cap:,} capacity" if cap else ""))
    for name, s in info.get("streams", {}).items():
        lines.append(f"stream {name}: {s.get('samples', 0):,} samples in {s.get('blocks', 0)} blocks, "
                     f"{s.get('t_first_iso', '')} .. {s.get('t_last_iso', '')}")
        if s.get("bytes_per_sample") is not None:
            per_value = s.get("bytes_per_value")
            value_text = f"{per_value:.3f} B per channel value, " if per_value is not None else ""
            lines.append(f"  {s.get('bytes', 0):,} bytes: {value_text}{s['bytes_per_sample']:.3f} B per "
                         f"sample of all channels with its timestamp, "
                         f"{s.get('ratio_to_raw', 0):.2f}x smaller than raw")
        for ch in s.get("channels", []):
            unit = ch.get("unit") or "-"
            scale = f" x{ch['scale']}" if ch.get("scale") else ""
            lines.append(f"  {ch['name']:<24} {ch['dtype']:<8} {unit}{scale}")
    for problem in info.get("problems", []):
        lines.append(f"problem: {problem}")
    return "\n".join(lines)


class ProgressBar:
    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled = label, enabled

    def update(self, rows: int, done: int, total: int) -> None:
        if not self.enabled or not total:
            return
        width = 30
        filled = int(width * done / total)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{100 * done / total:5.1f}% {rows:,} rows")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


# --- argument parsing ------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", help="cache directory (default: $SENSORQ_CACHE, then the default "
                                        "location, then the built-in demo)")
    common.add_argument("-q", "--quiet", action="store_true", help="no notes on stderr")
    query_opts = argparse.ArgumentParser(add_help=False)
    query_opts.add_argument("--now", choices=("data", "clock"), default="data",
                            help="what 'now' means for 'last 10m': the newest sample of the stream "
                                 "(data, the default) or the wall clock")
    query_opts.add_argument("--engine", choices=("auto", "compiled", "interpreted"), default=None,
                            help="how blocks are scanned: numba kernels, the numpy interpreter, or "
                                 "auto (the default, or $SENSORQ_ENGINE): the interpreter for small "
                                 "scans, so a one-off query does not start numba")
    fmt = query_opts.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the result as JSON")
    fmt.add_argument("--csv", action="store_true", help="print the result as CSV")

    parser = argparse.ArgumentParser(prog="sensorq", description="Query sensor data where it was measured.",
                                     epilog='example: sensorq "count where accel > 2g last 10m"')
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("query", parents=[common, query_opts], help="run a query (the default)")
    p.add_argument("query")
    p.set_defaults(func=cmd_query)
    p = sub.add_parser("explain", parents=[common, query_opts], help="show a query's plan and scan")
    p.add_argument("query")
    p.set_defaults(func=cmd_explain)
    p = sub.add_parser("info", parents=[common], help="streams, channels and sizes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("ingest", parents=[common], help="add CSV files to the cache")
    p.add_argument("files", nargs="+")
    p.add_argument("--stream", help="stream name (default: the file's name)")
    p.add_argument("--time-column", help="timestamp column (default: 'timestamp', 'time' or the first)")
    p.add_argument("--time-unit", choices=("s", "ms", "us", "ns"), help="epoch unit of numeric timestamps")
    p.add_argument("--unit", action="append", default=[], metavar="CHANNEL=UNIT",
                   help="unit of a channel ('*=mg' for all)")
    p.add_argument("--capacity", default=None, help="capacity of a new cache, e.g. 64MB")
    p.set_defaults(func=cmd_ingest)
    p = sub.add_parser("demo", parents=[common], help="(re)build the built-in demo cache")
    p.add_argument("--path", help="where to write it (default: the demo location)")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("compile", parents=[common, query_opts],
                       help="compile a query to device bytecode, printed as a C array")
    p.add_argument("--device", action="store_true", required=True, help="compile for the device port")
    p.add_argument("--name", default="sq_query", help="name of the C array")
    p.add_argument("query")
    p.set_defaults(func=cmd_compile)
    return parser


OPTIONS_WITH_VALUE = {"--cache", "--now", "--name", "--stream", "--time-column", "--time-unit",
                      "--unit", "--capacity", "--path"}


def first_positional_index(argv: list[str]) -> int | None:
    skip_next = False
    for i, arg in enumerate(argv):
        if skip_next:
            skip_next = False
        elif arg in OPTIONS_WITH_VALUE:
            skip_next = True
        elif not arg.startswith("-") or arg == "-":
            return i
    return None


def keep_scipy_out() -> None:
    """The first kernel numba loads makes it probe for a BLAS by importing
    scipy.linalg: 0.2 s of the command line's start-up when scipy is installed.
    No kernel of ours uses BLAS, so the command-line process keeps scipy out
    (only this process: ``import sensorq`` in a user's program never does)."""
    if "numba.np.arraymath" not in sys.modules:
        sys.modules.setdefault("scipy.linalg", None)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    if argv is None:   # a real command line, not a test calling main()
        keep_scipy_out()
    argv = list(sys.argv[1:] if argv is None else argv)
    at = first_positional_index(argv)
    if at is not None and argv[at] in COMMANDS:
        argv.insert(0, argv.pop(at))  # `sensorq --cache C info` is `sensorq info --cache C`
    elif at is not None:
        argv.insert(0, "query")  # `sensorq [options] "count ..."` is `sensorq query [options] "count ..."`
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except SensorqError as exc:
        print(f"sensorq: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
