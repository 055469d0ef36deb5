#!/usr/bin/env python3
"""Worst-case stack of the device port from the whole call graph.

GCC's -fcallgraph-info=su writes, per object, every function with its frame
(-fstack-usage) and every call it makes (a .ci file, VCG format).  This
merges them, adds the frames of the libgcc helpers the library calls (read
off their prologues in the linked ELF: push and sub sp), and takes the
deepest path from every public entry point.  Calls through the flash
callbacks (the firmware's own functions) end at "__indirect_call": their
frames are the firmware's, added on top of the figure printed for them.

    python3 tools/stack_graph.py BUILD_DIR/arm [--elf footprint.elf]
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

NODE = re.compile(r'node: \{ title: "([^"]+)" label: "([^"]*)"')
EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')
FRAME = re.compile(r"\\n(\d+) bytes \((static|dynamic|dynamic,bounded)\)")
INDIRECT = "__indirect_call"


def read_graph(ci_files: list[Path]) -> tuple[dict[str, int], dict[str, set[str]], set[str]]:
    """(frame bytes per function, callees per function, functions with a
    dynamic frame).  Static functions are titled "file:name" by GCC; a
    global one is its name, declared in its callers' files and defined in
    its own."""
    frames: dict[str, int] = {}
    calls: dict[str, set[str]] = {}
    dynamic: set[str] = set()
    for ci in ci_files:
        text = ci.read_text()
        for title, label in NODE.findall(text):
            m = FRAME.search(label)
            if m:
                frames[title] = int(m.group(1))
                if m.group(2) != "static":
                    dynamic.add(title)
        for src, dst in EDGE.findall(text):
            calls.setdefault(src, set()).add(dst)
    return frames, calls, dynamic


def helper_frames(elf: str) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Frames and calls of the functions in the ELF that GCC did not compile
    here (libgcc, the harness's memset/memcpy), from their Thumb prologues."""
    out = subprocess.run(["arm-none-eabi-objdump", "-d", elf], capture_output=True, text=True,
                         check=True).stdout
    frames: dict[str, int] = {}
    calls: dict[str, set[str]] = {}
    name = None
    for line in out.splitlines():
        head = re.match(r"^[0-9a-f]+ <([^>]+)>:$", line)
        if head:
            name = head.group(1)
            frames[name], calls[name] = 0, set()
            continue
        if name is None:
            continue
        push = re.search(r"\tpush\t\{([^}]*)\}", line)
        if push:
            frames[name] += 4 * len(push.group(1).split(","))
        sub = re.search(r"\tsub\tsp, #(\d+)", line)
        if sub:
            frames[name] += int(sub.group(1))
        call = re.search(r"\tbl?x?\t[0-9a-f]+ <([^>+]+)>", line)
        if call and call.group(1) != name and re.search(r"\tbl\t", line):
            calls[name].add(call.group(1))
    return frames, calls


def worst(fn: str, frames, calls, memo, path=()) -> tuple[int, list[str]]:
    """(deepest stack from fn, the chain); a cycle is an error (recursion)."""
    if fn in path:
        raise SystemExit(f"recursion: {' -> '.join(path + (fn,))}")
    if fn in memo:
        return memo[fn]
    best, chain = 0, []
    for callee in calls.get(fn, ()):
        if callee == INDIRECT:
            continue
        depth, sub = worst(callee, frames, calls, memo, path + (fn,))
        if depth > best:
            best, chain = depth, sub
    memo[fn] = (frames.get(fn, 0) + best, [fn] + chain)
    return memo[fn]


def analyse(build: Path, elf: str | None) -> tuple[dict[str, tuple[int, list[str]]], set[str], set[str]]:
    frames, calls, dynamic = read_graph(sorted(build.glob("*.ci")))
    unknown = set()
    if elf:
        h_frames, h_calls = helper_frames(elf)
        for fn, size in h_frames.items():
            if fn not in frames and not any(t.endswith(":" + fn) for t in frames):
                frames[fn] = size
                calls.setdefault(fn, set()).update(h_calls[fn])
    for callees in calls.values():
        unknown |= {c for c in callees if c not in frames and c != INDIRECT}
    memo: dict = {}
    roots = sorted(fn for fn in frames if re.match(r"^sq_[a-z_0-9]+$", fn))
    return {fn: worst(fn, frames, calls, memo) for fn in roots}, dynamic, unknown


def reaches_callbacks(fn: str, calls, seen=None) -> bool:
    seen = set() if seen is None else seen
    if fn in seen:
        return False
    seen.add(fn)
    return any(c == "__indirect_call" or reaches_callbacks(c, calls, seen) for c in calls.get(fn, ()))


def main() -> int:
    args = sys.argv[1:]
    elf = None
    if "--elf" in args:
        at = args.index("--elf")
        elf = args[at + 1]
        del args[at:at + 2]
    result, dynamic, unknown = analyse(Path(args[0]), elf)
    _, calls, _ = read_graph(sorted(Path(args[0]).glob("*.ci")))
    print("worst stack from the whole call graph (-fcallgraph-info=su), per entry point:")
    for fn, (depth, chain) in sorted(result.items(), key=lambda kv: -kv[1][0]):
        note = " + the deepest flash callback" if reaches_callbacks(fn, calls) else ""
        print(f"  {fn:<24} {depth:>5} B{note}   ({' > '.join(chain)})")
    top = max(result.items(), key=lambda kv: kv[1][0])
    print(f"worst: {top[1][0]} B ({top[0]})")
    if dynamic:
        print(f"dynamic frames: {', '.join(sorted(dynamic))}")
    if unknown:
        print(f"calls to functions of unknown frame (counted as 0): {', '.join(sorted(unknown))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
