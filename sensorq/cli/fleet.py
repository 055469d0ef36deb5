"""Commands over many caches: ``sync`` (blocks upstream, unchanged) and
``fleet`` (one query over many devices' caches on Dask; ``sensorq --fleet
GLOB "QUERY"`` is short for ``sensorq fleet --fleet GLOB "QUERY"``).
docs/fleet.md."""
from __future__ import annotations

import json

from .common import note


def add_parsers(sub, common) -> None:
    p = sub.add_parser("sync", parents=[common],
                       help="copy the sealed blocks DEST lacks from SOURCE (a cache, an export "
                            "file)",
                       description="Copy the sealed blocks that the cache DEST lacks from SOURCE: "
                                   "another cache directory, or a file of blocks a device exported "
                                   "(docs/fleet.md).  Blocks are copied byte for byte, never "
                                   "re-encoded; running it again copies only what is new, and a "
                                   "run killed at any moment is simply run again.  DEST is created "
                                   "when missing, with SOURCE's device name and labels; streams "
                                   "DEST lacks are created with SOURCE's definition.")
    p.add_argument("source", help="cache directory or export file (.sqx) to copy from")
    p.add_argument("dest", help="cache directory to copy into (created if missing)")
    p.add_argument("--any-device", action="store_true",
                   help="allow a SOURCE whose device is not DEST's (default: refuse)")
    p.add_argument("--capacity", default=None,
                   help="capacity of DEST if it is created (default: SOURCE's, else 256MB)")
    p.add_argument("--json", action="store_true", help="print what was copied as JSON")
    p.set_defaults(func=cmd_sync)

    from .query import query_options
    p = sub.add_parser("fleet", parents=[common, query_options()],
                       help="one query over many caches (a fleet of devices), on Dask",
                       description="Run a query over every cache matching --fleet (a glob, "
                                   "repeatable), each cache's partial answer computed where it "
                                   "lies and merged (docs/fleet.md).  'by device' (or 'by LABEL') "
                                   "gives one row per device; without it, one merged answer.  "
                                   "Needs dask: pip install 'sensorq[fleet]'.")
    p.add_argument("query")
    p.add_argument("--fleet", action="append", required=True, metavar="GLOB",
                   help="cache directories, as a glob such as 'site/*/cache' (repeatable)")
    p.add_argument("--scheduler", default=None,
                   help="a Dask scheduler, tcp://HOST:PORT (default: a local cluster of "
                        "processes, started for this command); 'inline': no Dask, one process")
    p.add_argument("--select", action="append", default=[], metavar="LABEL=PATTERN",
                   help="only devices whose label (or 'device') matches the glob PATTERN "
                        "(repeatable; all must match)")
    p.set_defaults(func=cmd_fleet)


def cmd_sync(args) -> int:
    from ..fleet.sync import sync
    report = sync(args.source, args.dest, any_device=args.any_device, capacity=args.capacity)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.describe())
    return 0


def cmd_fleet(args) -> int:
    from ..fleet import fleet
    from .common import parse_assignment
    from .query import print_warnings, render
    select = dict(parse_assignment(s, "--select") for s in args.select)
    with fleet(args.fleet, scheduler=args.scheduler, select=select or None) as f:
        result = f.query(args.query, now_policy=args.now, engine=args.engine)
    if args.cache:
        note(args, "--cache is not used by a fleet query (--fleet names the caches)")
    print_warnings(args, result)
    print(render(result, "json" if args.json else "csv" if args.csv else "table"))
    return 0
