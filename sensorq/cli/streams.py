"""Commands about what a cache holds: info, streams, config."""
from __future__ import annotations

import json
import sys

from .common import open_for_reading, open_for_writing, show_table, time_point


def add_parsers(sub, common) -> None:
    p = sub.add_parser("info", parents=[common], help="streams, channels, sizes and problems",
                       description="What the cache holds: settings, every stream's samples, time "
                                   "range, size and channels, and any problems found on disk.")
    p.add_argument("--json", action="store_true", help="print it as JSON (default: text)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("streams", parents=[common], help="list, drop, rename or truncate streams",
                       description="Manage streams.  Without a sub-command, list them.  Each change "
                                   "is one atomic write of the cache's manifest; no data is "
                                   "rewritten: a dropped stream's space comes back as the ring "
                                   "evicts its oldest segments (docs/format.md §5).")
    p.set_defaults(func=cmd_streams_list, json=False)
    ops = p.add_subparsers(dest="operation", metavar="OPERATION")
    q = ops.add_parser("list", parents=[common], help="every stream with its samples and time range")
    q.add_argument("--json", action="store_true", help="print them as JSON (default: a table)")
    q.set_defaults(func=cmd_streams_list)
    q = ops.add_parser("drop", parents=[common], help="remove a stream and its data")
    q.add_argument("stream")
    q.set_defaults(func=cmd_streams_drop)
    q = ops.add_parser("rename", parents=[common], help="give a stream a new name")
    q.add_argument("stream")
    q.add_argument("new_name")
    q.set_defaults(func=cmd_streams_rename)
    q = ops.add_parser("truncate", parents=[common], help="hide a stream's samples before a time",
                       description="Remove every sample of STREAM before TIME from reads and "
                                   "queries, for good.  TIME is a point as in queries: "
                                   "2026-11-24T06:00Z, 1795500000s, 'now - 1h' or '2h ago' (now "
                                   "is the stream's newest sample).")
    q.add_argument("stream")
    q.add_argument("--before", required=True, metavar="TIME", help="keep samples at or after TIME")
    q.set_defaults(func=cmd_streams_truncate)

    p = sub.add_parser("config", parents=[common], help="show or change capacity, retention, compression",
                       description="Show the cache's settings, or change them.  A smaller capacity "
                                   "or a retention evicts the oldest segments at once, and the "
                                   "command says what each stream lost.")
    p.add_argument("--capacity", help="bytes the segment files may take, e.g. 64MB or 1GiB, at "
                                      "least 64KiB (default: unchanged; a new cache has 256MiB)")
    p.add_argument("--retention", help="drop data older than this behind each stream's newest "
                                       "sample, e.g. 24h or 7d; 'none' keeps everything (default: "
                                       "unchanged; a new cache has none)")
    p.add_argument("--compression", choices=("auto", "none", "zstd"),
                   help="zstd around sealed blocks: auto (where it saves 5%%), none, or zstd "
                        "(always), for blocks written from now on (default: unchanged; a new "
                        "cache has auto)")
    p.add_argument("--json", action="store_true", help="print the settings as JSON (default: text)")
    p.set_defaults(func=cmd_config)


# --- info ---------------------------------------------------------------------------

def cmd_info(args) -> int:
    with open_for_reading(args) as cache:
        info = cache.info()
    print(json.dumps(info, indent=2, default=str) if args.json else format_info(info))
    return 0


def format_info(info: dict) -> str:
    lines = [f"cache {info.get('path', '')}"]
    if info.get("device") or info.get("labels"):
        labels = ", ".join(f"{k}={v}" for k, v in (info.get("labels") or {}).items())
        name = info.get("device") or "(no name)"
        lines.append(f"  device {name}" + (f" ({labels})" if labels else ""))
    used, cap = info.get("bytes_used"), info.get("capacity")
    if used is not None:
        lines.append(f"  {used:,} bytes on disk" + (f" of {cap:,} capacity" if cap else ""))
    for name, s in info.get("streams", {}).items():
        lines += format_stream_info(name, s)
    for problem in info.get("problems", []):
        lines.append(f"problem: {problem}")
    return "\n".join(lines)


def format_stream_info(name: str, s: dict) -> list[str]:
    samples = s.get("samples", 0)
    span = (f"{s.get('t_first_iso')} .. {s.get('t_last_iso')}" if samples and s.get("t_first_iso")
            else "no samples")
    lines = [f"stream {name}: {samples:,} samples in {s.get('blocks', 0)} blocks, {span}"]
    if s.get("unflushed"):
        lines.append(f"  {s['unflushed']:,} samples not yet flushed")
    if s.get("floor_iso"):
        lines.append(f"  truncated: samples before {s['floor_iso']} are hidden "
                     f"({s.get('hidden_samples', 0):,} still on disk until the ring evicts them)")
    if s.get("bytes_per_sample") is not None:
        per_value = s.get("bytes_per_value")
        value_text = f"{per_value:.3f} B per channel value, " if per_value is not None else ""
        lines.append(f"  {s.get('bytes', 0):,} bytes: {value_text}{s['bytes_per_sample']:.3f} B per "
                     f"sample of all channels with its timestamp, {ratio_text(s.get('ratio_to_raw'))}")
    for ch in s.get("channels", []):
        unit = ch.get("unit") or "-"
        scale = f" x{ch['scale']}" if ch.get("scale") else ""
        names = ch.get("categories")
        extra = f" names: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}" if names else ""
        lines.append(f"  {ch['name']:<24} {ch['dtype']:<8} {unit}{scale}{extra}")
    return lines


def ratio_text(ratio) -> str:
    """Raw size over stored size, said the right way round."""
    if not ratio:
        return "no raw size to compare"
    if ratio >= 1:
        return f"{ratio:.2f}x smaller than raw"
    return f"{1 / ratio:.2f}x larger than raw (blocks this small cost more than they save)"


# --- streams --------------------------------------------------------------------------

def cmd_streams_list(args) -> int:
    with open_for_reading(args) as cache:
        info = cache.info()
    streams = info["streams"]
    if args.json:
        print(json.dumps({name: {k: v for k, v in s.items() if k != "channels"} |
                          {"channels": [c["name"] for c in s["channels"]]}
                          for name, s in streams.items()}, indent=2, default=str))
        return 0
    rows = [[name, _short(", ".join(c["name"] for c in s["channels"])), f"{s['samples']:,}",
             s["t_first_iso"] or "-" if s["samples"] else "-",
             s["t_last_iso"] or "-" if s["samples"] else "-"] for name, s in streams.items()]
    print(show_table(rows, ["stream", "channels", "samples", "first", "last"]) if rows
          else f"no streams in {info['path']}")
    return 0


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def cmd_streams_drop(args) -> int:
    with open_for_writing(args) as cache:
        held = cache.drop_stream(args.stream)
    print(f"dropped stream {args.stream!r} ({held.describe()}); its space comes back as the ring "
          f"evicts its segments")
    return 0


def cmd_streams_rename(args) -> int:
    with open_for_writing(args) as cache:
        cache.rename_stream(args.stream, args.new_name)
    print(f"renamed stream {args.stream!r} to {args.new_name!r}")
    return 0


def cmd_streams_truncate(args) -> int:
    with open_for_writing(args) as cache:
        before = time_point(cache, args.stream, args.before)
        hidden = cache.truncate_stream(args.stream, before)
        left = cache.extent(args.stream)
    from ..store.prepare import iso
    print(f"stream {args.stream!r}: hid {hidden.describe()} (before {iso(before)}); "
          f"it now holds {left.describe()}")
    return 0


# --- config ---------------------------------------------------------------------------

def cmd_config(args) -> int:
    changes = {k: getattr(args, k) for k in ("capacity", "retention", "compression")
               if getattr(args, k) is not None}
    if changes:
        with open_for_writing(args) as cache:
            lost = cache.change_settings(**changes)
            info = cache.info()
        report_losses(args, lost, "the new settings")
    else:
        with open_for_reading(args) as cache:
            info = cache.info()
    settings = {k: info[k] for k in ("path", "capacity", "bytes_used", "retention_s", "compression")}
    if args.json:
        print(json.dumps(settings, indent=2))
        return 0
    retention = "none (keep everything the capacity holds)" if info["retention_s"] is None \
        else f"{info['retention_s']:g} s"
    print(f"cache {info['path']}\n  capacity     {info['capacity']:,} bytes "
          f"({info['bytes_used']:,} used)\n  retention    {retention}\n"
          f"  compression  {info['compression']}")
    return 0


def report_losses(args, lost: dict, why: str) -> None:
    """Say on stderr what each stream lost to the ring (even with --quiet: data went)."""
    from ..store.prepare import iso
    for name, gone in lost.items():
        print(f"sensorq: {why} evicted the oldest {gone.samples:,} samples of stream {name!r} "
              f"({iso(gone.t_first)} up to {iso(gone.t_last)})", file=sys.stderr)
