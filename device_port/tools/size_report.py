#!/usr/bin/env python3
"""Print the device port's footprint on Cortex-M0+: flash (text + rodata) and
static RAM (data + bss) per object, from arm-none-eabi-size, and the worst
stack frame per function from the -fstack-usage (.su) files, plus the deepest
call chain of the query path (frames added along sq_query_run's calls).

    python3 tools/size_report.py BUILD_DIR OBJ...      (the Makefile's `arm` target runs it)
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Call chains whose frames add up to the worst stack (no recursion, no
# function pointers, so the chains are known statically).
CHAINS = {
    "sq_query_run (decide)": ["sq_query_run", "run_block", "decide", "eval"],
    "sq_query_run (decode)": ["sq_query_run", "run_block", "scan", "sq_col_next", "dict_entry",
                              "payload_next", "get_bits"],
    "sq_query_run (open)": ["sq_query_run", "run_block", "sq_col_open", "payload_end"],
    "sq_query_run (verify)": ["sq_query_run", "run_block", "sq_block_verify", "check_entries"],
    "sq_ring_append (seal)": ["sq_ring_append", "sq_ring_seal", "sq_enc_plan", "enc_pass", "src_word"],
    "sq_ring_append (write)": ["sq_ring_append", "sq_ring_seal", "sq_enc_write", "enc_pass", "put_bits"],
    "sq_ring_append (stats)": ["sq_ring_append", "sq_ring_seal", "sq_enc_entry", "src_word"],
}


def sizes(objs: list[str]) -> list[tuple[str, int, int, int]]:
    """(object, text+rodata, data, bss) from `arm-none-eabi-size -A`."""
    out = subprocess.run(["arm-none-eabi-size", "-A", *objs], capture_output=True, text=True,
                         check=True).stdout
    rows: list[list] = []
    for line in out.splitlines():
        parts = line.split()
        if line.rstrip().endswith(":") and parts:
            rows.append([Path(parts[0]).name, 0, 0, 0])
        elif rows and len(parts) >= 2 and parts[1].isdigit():
            section, size = parts[0], int(parts[1])
            if section.startswith((".text", ".rodata")):
                rows[-1][1] += size
            elif section.startswith(".data"):
                rows[-1][2] += size
            elif section.startswith(".bss"):
                rows[-1][3] += size
    return [tuple(r) for r in rows]


def stack_frames(build: Path) -> dict[str, int]:
    frames = {}
    for su in build.glob("*.su"):
        for line in su.read_text().splitlines():
            where, size, _kind = line.rsplit("\t", 2)
            frames[where.rsplit(":", 1)[-1]] = int(size)
    return frames


def owners(objs: list[str]) -> dict[str, str]:
    """Which object defines each function or table (static ones included)."""
    found = {}
    for obj in objs:
        out = subprocess.run(["arm-none-eabi-nm", obj], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tTrR":
                found[parts[2]] = Path(obj).stem
    return found


def linked(elf: str, objs: list[str]) -> None:
    """Flash of a --gc-sections link, by symbol: the library's own code and
    tables (per source file), and the libgcc helpers it calls (64-bit
    division, multiply)."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", "--size-sort", elf], capture_output=True,
                         text=True, check=True).stdout
    own, helpers, harness = 0, 0, 0
    by_file: dict[str, int] = {}
    where = owners(objs)
    for line in out.splitlines():
        parts = line.split()
        if len(parts) != 4 or parts[2] not in "tTrR":
            continue
        size, name = int(parts[1], 16), parts[3]
        if name in ("_start", "footprint", "memset", "memcpy", "query_code", "query_len", "code_ptr",
                    "dtype", "block_samples", "sample"):
            harness += size
        elif name.startswith("__"):
            helpers += size
        else:
            own += size
            key = where.get(name.split(".")[0], "?")
            by_file[key] = by_file.get(key, 0) + size
    print(f"\nlinked for ring + query (init, append, seal, sq_query_run; --gc-sections): "
          f"{own} B of sensorq code and tables + {helpers} B of libgcc helpers")
    print("  by file: " + ", ".join(f"{k} {v}" for k, v in sorted(by_file.items())))
    codec_vm = sum(v for k, v in by_file.items() if k in ("sq_block", "sq_crc32", "sq_vm"))
    print(f"  codec + VM (sq_block, sq_crc32, sq_vm): {codec_vm} B; ring: {by_file.get('sq_ring', 0)} B")


def main() -> int:
    args = sys.argv[1:]
    elf = None
    if "--elf" in args:
        at = args.index("--elf")
        elf = args[at + 1]
        del args[at:at + 2]
    build, objs = Path(args[0]), args[1:]
    rows = sizes(objs)
    print(f"{'object':<14} {'flash (text+rodata)':>20} {'data':>6} {'bss':>6}")
    for name, text, data, bss in rows:
        print(f"{name:<14} {text:>20} {data:>6} {bss:>6}")
    print(f"{'total':<14} {sum(r[1] for r in rows):>20} {sum(r[2] for r in rows):>6} "
          f"{sum(r[3] for r in rows):>6}")
    frames = stack_frames(build)
    print("\nworst stack, by call chain (bytes; -fstack-usage frames added):")
    for label, chain in CHAINS.items():
        present = [f for f in chain if f in frames]
        total = sum(frames[f] for f in present)
        print(f"  {label:<26} {total:>5}  ({' + '.join(f'{f} {frames[f]}' for f in present)})")
    print("\nlargest frames:", ", ".join(f"{k} {v}" for k, v in
                                        sorted(frames.items(), key=lambda kv: -kv[1])[:6]))
    if elf:
        linked(elf, objs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
