"""The ``sensorq`` command line.

    sensorq "count where accel > 2g last 10m"       run a query (the default command)
    sensorq explain "avg temp by 1m last 24h"       show the plan and what the scan did
    sensorq plot "avg z by 1m last 1h" -o z.png     a chart (PNG, or in the terminal)
    sensorq shell                                   a resident shell: the cache stays open
    sensorq info                                    streams, channels, sizes
    sensorq streams [list|drop|rename|truncate]     manage streams
    sensorq config [--capacity 1GB --retention 7d]  show or change the cache's settings
    sensorq ingest FILE.csv|.parquet|.arrow|-       add data (``-``: CSV lines from stdin)
    sensorq export STREAM ["last 1h"] -o FILE.parquet|.arrow|.csv
    sensorq demo                                    (re)build the built-in demo cache
    sensorq models                                  the cache's models
    sensorq model train|fit|show|export|add|remove  manage a model (docs/models.md)
    sensorq sync SOURCE DEST                        copy the blocks DEST lacks (docs/fleet.md)
    sensorq --fleet 'site/*/cache' "count ... by device"   one query over many caches

The cache is taken from ``--cache``, then ``$SENSORQ_CACHE``, then the default
location (``$XDG_DATA_HOME/sensorq/cache``); for reading, when none of these
exists, the built-in demo cache is used, and the command says so on stderr.
Options may stand before or after the command: ``sensorq --cache C info`` is
``sensorq info --cache C``.

Every error sensorq raises on purpose is printed as one clear message (a query
error with a caret under its column) and the exit status is 1; usage errors
exit with 2.  One module per command group: query.py, data.py, streams.py,
models.py, fleet.py.  A one-off query is a process start, so the start-up path
is kept short: the engine's imports are deferred to the command that runs,
and only the group of the command given is imported and built into the
argument parser (``sensorq query --json "QUERY"`` builds the query group's
parsers only, ``sensorq "QUERY"`` alone none at all: plain_query;
``--help`` and a command line starting with an option build them all).  The
command line imports what its command will import with the garbage collector
paused (imports_without_gc).
"""
from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from contextlib import contextmanager

from ..errors import SensorqError
from .common import default_cache_path, resolve_cache  # noqa: F401  (public helpers)

GROUPS = {   # module of sensorq/cli → the commands its add_parsers defines
    "query": ("query", "explain", "compile", "plot", "shell"),
    "streams": ("info", "streams", "config"),
    "data": ("ingest", "export", "demo"),
    "models": ("models", "model"),
    "fleet": ("sync", "fleet"),
}
COMMANDS = tuple(command for commands in GROUPS.values() for command in commands)


def common_options() -> argparse.ArgumentParser:
    """--cache and --quiet, accepted by every command.  Their defaults are
    filled in after parsing (``_defaults``): a default given here would let a
    sub-command's parser overwrite a value given before its name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", default=argparse.SUPPRESS,
                        help="cache directory (default: $SENSORQ_CACHE, then "
                             f"{default_cache_path()}, then, for reading, the built-in demo)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no notes, warnings or progress bars on stderr")
    return common


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every command, or only of the group that
    defines ``command`` (enough to parse a command line that starts with it)."""
    parser = argparse.ArgumentParser(
        prog="sensorq", description="Query sensor data where it was measured.",
        epilog='example: sensorq "count where accel > 2g last 10m"   (sensorq COMMAND --help for more)')
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"sensorq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = common_options()
    for group, commands in GROUPS.items():
        if command is None or command in commands:
            importlib.import_module(f"{__name__}.{group}").add_parsers(sub, common)
    return parser


def plain_query(argv: list[str]) -> argparse.Namespace | None:
    """``sensorq "QUERY"`` and nothing else, the commonest command line,
    without building the argument parser (3-4 ms of a one-off query, most of
    it argparse's gettext look-ups): the namespace argparse gives for it (a
    test compares them).  None for every other command line."""
    if len(argv) != 2 or argv[0] != "query" or argv[1].startswith("-"):
        return None
    from .query import plain_query_args
    return plain_query_args(argv[1])


def _defaults(args) -> None:
    for name, value in (("cache", None), ("quiet", False)):
        if not hasattr(args, name):
            setattr(args, name, value)


def options_with_values(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string, of every (sub-)command, that takes a value."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found |= options_with_values(child)
        elif action.option_strings and action.nargs != 0:
            found.update(action.option_strings)
    return found


def first_positional_index(argv: list[str], with_values: set[str]) -> int | None:
    skip_next = False
    for i, arg in enumerate(argv):
        if skip_next:
            skip_next = False
        elif arg == "--":
            return i + 1 if i + 1 < len(argv) else None
        elif arg in with_values:
            skip_next = True
        elif not arg.startswith("-") or arg == "-":
            return i
    return None


def arrange(argv: list[str], parser: argparse.ArgumentParser | None = None) -> list[str]:
    """Put the command first: ``sensorq --cache C info`` is ``sensorq info
    --cache C``, and ``sensorq [options] "count ..."`` is ``sensorq query
    [options] "count ..."``.  Only a command line that starts with an option
    needs every command's options (to know which of them take a value), so
    only then is ``parser`` (default: the whole parser) consulted."""
    if any(a in ("-h", "--help", "--version") for a in argv[:1]):
        return argv
    if argv and (not argv[0].startswith("-") or argv[0] == "-"):
        at = 0
    else:
        at = first_positional_index(argv, options_with_values(parser or build_parser()))
    if at is None:
        return argv
    if argv[at] in COMMANDS:
        return [argv[at]] + argv[:at] + argv[at + 1:]
    if any(a == "--fleet" or a.startswith("--fleet=") for a in argv):
        return ["fleet"] + argv        # sensorq --fleet GLOB "QUERY"
    return ["query"] + argv


def keep_scipy_out() -> None:
    """The first kernel numba loads makes it probe for a BLAS by importing
    scipy.linalg: 0.2 s of the command line's start-up when scipy is installed.
    No kernel of ours uses BLAS, so the command-line process keeps scipy out
    (only this process: ``import sensorq`` in a user's program never does)."""
    if "numba.np.arraymath" not in sys.modules:
        sys.modules.setdefault("scipy.linalg", None)  # type: ignore[arg-type]


def keep_regex_out() -> None:
    """lark's stand-alone parser (query/_generated_parser.py) imports the
    third-party ``regex`` module when it is installed (10 ms of a one-off
    query) only to offer ``Lark(regex=True)`` and Unicode categories in
    grammars, which sensorq's grammar does not use: the command-line process
    goes without it (nothing else here imports it)."""
    if "sensorq.query._generated_parser" not in sys.modules:
        sys.modules.setdefault("regex", None)  # type: ignore[arg-type]


BLAS_COMMANDS = ("model",)     # model train/fit: scikit-learn may use BLAS's threads


def numpy_without_blas_threads() -> None:
    """Import numpy with OpenBLAS limited to one thread.  OpenBLAS starts its
    thread pool when numpy is imported (20 ms of a one-off query on two
    cores); sensorq's engine never calls BLAS, so a command that does not
    train a model goes without the pool.  The variable is set only while
    numpy loads (processes this one starts do not inherit it), and never
    over a value the user set."""
    if "numpy" in sys.modules or "OPENBLAS_NUM_THREADS" in os.environ:
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        import numpy  # noqa: F401
    finally:
        del os.environ["OPENBLAS_NUM_THREADS"]


@contextmanager
def imports_without_gc():
    """Import with Python's cyclic garbage collector paused.  It runs after
    every 700 new container objects; a one-off query's imports (numpy, the
    store, the planner, the parser) make some 30,000 that live as long as
    the process, so it ran about 80 times for 7-9 ms, a twentieth of the
    command, and found almost nothing to free.  Afterwards what was imported
    is frozen (gc.freeze: never scanned again, not even by the interpreter's
    last collections at exit, which is most of the gain) and the collector
    resumes, for the command's real work.  Only in the command-line process
    (main).  benchmarks/RESULTS.md, start-up, has the figures."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def startup_imports(command: str | None) -> tuple[str, ...]:
    """The modules ``command`` will import anyway (its group module's
    STARTUP_IMPORTS), for main to import up front without the collector."""
    for group, commands in GROUPS.items():
        if command in commands:
            module = sys.modules.get(f"{__name__}.{group}")
            return getattr(module, "STARTUP_IMPORTS", {}).get(command, ())
    return ()


def main(argv: list[str] | None = None) -> int:
    real_process = argv is None       # a real command line, not a test calling main()
    if real_process:
        keep_scipy_out()
        keep_regex_out()
    argv = arrange(list(sys.argv[1:] if argv is None else argv))
    args = plain_query(argv)
    if args is None:
        parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
        args = parser.parse_args(argv)
        _defaults(args)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
    if real_process:
        with imports_without_gc():
            if args.command not in BLAS_COMMANDS:
                numpy_without_blas_threads()
            for module in startup_imports(args.command):
                importlib.import_module(module)
    try:
        return args.func(args)
    except SensorqError as exc:
        print(f"sensorq: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
