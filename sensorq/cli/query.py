"""Commands that ask questions: query, explain, compile, plot, shell."""
from __future__ import annotations

import argparse
import json
import sys

from .common import note, open_for_reading

OUTPUT_MODES = ("table", "csv", "json")
# what a query imports anyway: the command line imports it before the command
# runs, with the garbage collector paused (cli.imports_without_gc)
_QUERY_MODULES = ("sensorq.store", "sensorq.engine.executor", "sensorq.query.planner")
STARTUP_IMPORTS = {"query": _QUERY_MODULES, "explain": _QUERY_MODULES}


class _Refuse(argparse.Action):
    """An output option a command does not have: a clear usage error, not silence."""

    def __init__(self, option_strings, dest, why: str = "", **kwargs):
        self.why = why
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=why, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is not available here: {self.why}")


def query_options(with_csv: bool = True) -> argparse.ArgumentParser:
    opts = argparse.ArgumentParser(add_help=False)
    opts.add_argument("--now", choices=("data", "clock"), default="data",
                      help="what 'now' means for 'last 10m': the newest sample of the stream "
                           "(data) or the wall clock (default: data)")
    opts.add_argument("--engine", choices=("auto", "compiled", "interpreted"), default=None,
                      help="how blocks are scanned: numba kernels, the numpy interpreter, or auto: "
                           "the interpreter for small scans, so a one-off query does not start "
                           "numba (default: $SENSORQ_ENGINE, else auto)")
    fmt = opts.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the answer as JSON (default: a table)")
    if with_csv:
        fmt.add_argument("--csv", action="store_true", help="print the answer as CSV (default: a table)")
    else:
        fmt.add_argument("--csv", action=_Refuse, why="the output is not a table; --json gives it "
                                                      "as an object")
    return opts


def plain_query_args(query: str) -> argparse.Namespace:
    """What ``sensorq query QUERY`` parses to, every option at its default (as
    query_options and common_options give them; a test compares)."""
    return argparse.Namespace(command="query", now="data", engine=None, json=False, csv=False,
                              query=query, func=cmd_query, cache=None, quiet=False)


def add_parsers(sub, common) -> None:
    p = sub.add_parser("query", parents=[common, query_options()], help="run a query (the default)",
                       description="Run a query (docs/query.md); `sensorq QUERY` is short for this.")
    p.add_argument("query")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("explain", parents=[common, query_options(with_csv=False)],
                       help="show a query's plan and what its scan did",
                       description="Show the typed plan, what the scan did (blocks answered from "
                                   "statistics, skipped, decoded, and the engine tier) and the "
                                   "answer.  --json gives the same as an object.")
    p.add_argument("query")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("compile", parents=[common, query_options(with_csv=False)],
                       help="compile a query to device bytecode, printed as a C array",
                       description="Compile a query for the device port (docs/device.md); prints a "
                                   "C array, or with --json the bytes as hex.")
    p.add_argument("--device", action="store_true", required=True, help="compile for the device port")
    p.add_argument("--name", default="sq_query", help="name of the C array (default: sq_query)")
    p.add_argument("query")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("plot", parents=[common, query_options(with_csv=False)],
                       conflict_handler="resolve",
                       help="draw a query's answer: a PNG, or a chart in the terminal",
                       description="Draw a query's answer over time: a bucketed aggregate as a line, "
                                   "find/newest/top as points, episodes as spans over the signal of "
                                   "the predicate's channel.  With -o FILE.png (or .svg, .pdf) "
                                   "matplotlib writes a file (pip install 'sensorq[plot]'); "
                                   "without it the chart is drawn in the terminal.")
    p.add_argument("query")
    p.add_argument("--json", action=_Refuse, why="a plot is a picture; `sensorq query --json` "
                                                 "gives the numbers")
    p.add_argument("--csv", action=_Refuse, why="a plot is a picture; `sensorq query --csv` gives "
                                                "the numbers")
    p.add_argument("-o", "--output", help="image file to write (default: a chart in the terminal)")
    p.add_argument("--width", type=int, default=None,
                   help="terminal chart columns (default: the terminal's width, at most 100); "
                        "for a file, inches x 100 (default: 1000)")
    p.add_argument("--height", type=int, default=None,
                   help="terminal chart rows (default: 16); for a file, pixels (default: 450)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("shell", parents=[common],
                       help="a resident shell: the cache stays open and the kernels loaded",
                       description="Read queries from the terminal (or stdin) and answer each with "
                                   "the cache kept open: repeated queries cost milliseconds.  Dot "
                                   "commands: .help, .streams, .explain, .timer, .mode, .engine, "
                                   ".now, .refresh, .quit.  History in $SENSORQ_HISTORY (default: "
                                   "~/.sensorq_history); Tab completes keywords, streams, channels "
                                   "and units.")
    p.add_argument("--mode", choices=OUTPUT_MODES, default="table",
                   help="output mode (default: table)")
    p.set_defaults(func=cmd_shell)


def render(result, mode: str) -> str:
    """A result as text in one of OUTPUT_MODES."""
    if mode == "json":
        return result.to_json()
    if mode == "csv":
        return result.to_csv().rstrip("\n")
    return result.format_table()


def print_warnings(args, result) -> None:
    for warning in result.warnings:
        note(args, f"warning: {warning}")


def cmd_query(args) -> int:
    with open_for_reading(args) as cache:
        result = cache.query(args.query, now_policy=args.now, engine=args.engine)
    print_warnings(args, result)
    print(render(result, "json" if args.json else "csv" if args.csv else "table"))
    return 0


def cmd_explain(args) -> int:
    from ..engine.explain import describe
    with open_for_reading(args) as cache:
        result = cache.query(args.query, now_policy=args.now, engine=args.engine)
    print_warnings(args, result)
    text = describe(result.plan, result, args.engine)
    if args.json:
        s = result.scan
        print(json.dumps({"query": args.query, "explain": text.splitlines(),
                          "scan": {"blocks": s.blocks_total, "from_statistics": s.from_stats,
                                   "skipped": s.skipped, "decoded": s.decoded, "engine": s.engine},
                          "result": result.to_dict()}, indent=2))
    else:
        print(text)
    return 0


def cmd_compile(args) -> int:
    from ..device.bytecode import compile_for_device, format_c_array
    with open_for_reading(args) as cache:
        code = compile_for_device(cache, args.query, now_policy=args.now)
    text = format_c_array(code, name=args.name)
    if args.json:
        print(json.dumps({"query": args.query, "name": args.name, "length": len(code),
                          "hex": code.hex()}, indent=2))
    else:
        print(text)
    return 0


def cmd_plot(args) -> int:
    from .. import plot
    with open_for_reading(args) as cache:
        drawn = plot.plot_query(cache, args.query, args.output, now_policy=args.now,
                                engine=args.engine, width=args.width, height=args.height)
    print_warnings(args, drawn.result)
    if args.output:
        note(args, f"wrote {args.output}: {drawn.describe()}")
    else:
        sys.stdout.write(drawn.text)
    return 0


def cmd_shell(args) -> int:
    from ..shell import run_shell
    with open_for_reading(args) as cache:
        return run_shell(cache, mode=args.mode, quiet=args.quiet)
