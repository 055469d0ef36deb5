#!/usr/bin/env python3
"""Print the device port's footprint on Cortex-M0+: flash (text + rodata) and
static RAM (data + bss) per object, from arm-none-eabi-size; the flash a
firmware links in (--gc-sections) for mount + append + poll + query; and the
worst stack of every entry point from the whole call graph
(tools/stack_graph.py, from GCC's -fcallgraph-info=su).

    python3 tools/size_report.py BUILD_DIR OBJ... [--elf footprint.elf] [--elf-fast F.elf]
        [--elf-small S.elf] [--models "CC::SOURCES"]            (`make arm` runs it)
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def owners(objs: list[str]) -> dict[str, str]:
    """Which object defines each function or table (static ones included)."""
    found = {}
    for obj in objs:
        out = subprocess.run(["arm-none-eabi-nm", obj], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tTrR":
                # by the name before any suffix (sign.0, next_bank.isra.0): the core objects come first
                found.setdefault(parts[2].split(".")[0], Path(obj).stem)
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
    seen: set[str] = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) != 4 or parts[2] not in "tTrRW" or parts[0] in seen:
            continue
        seen.add(parts[0])          # aliases (__aeabi_lmul = __muldi3 …) are one body
        size, name = int(parts[1], 16), parts[3]
        if name in ("_start", "footprint", "memset", "memcpy", "query_code", "query_len", "code_ptr",
                    "dtype", "codec", "block_samples", "sample", "flash_read", "flash_prog", "flash_erase",
                    "flash_status"):
            harness += size
        elif name.startswith("__"):
            helpers += size
        else:
            own += size
            key = where.get(name.split(".")[0], "?")
            by_file[key] = by_file.get(key, 0) + size
    print(f"\nlinked for flash storage + append + query (mount/format, append, poll, sq_query_run; "
          f"--gc-sections): {own} B of sensorq code and tables + {helpers} B of libgcc helpers "
          f"= {own + helpers} B")
    print("  by file: " + ", ".join(f"{k} {v}" for k, v in sorted(by_file.items())))
    parts = {"read + VM": ("sq_block", "sq_crc32", "sq_vm"), "encoder": ("sq_enc",),
             "ring + flash log": ("sq_ring", "sq_log")}
    print("  " + "; ".join(f"{k} {sum(by_file.get(f, 0) for f in files)} B" for k, files in parts.items()))


MODEL_KINDS = {"trees": 1, "linear": 2, "mlp": 4, "anomaly": 8, "spectral": 16, "crossings": 32}


def flash_of(elf: str) -> int:
    out = subprocess.run(["arm-none-eabi-size", "-A", elf], capture_output=True, text=True, check=True).stdout
    return sum(int(line.split()[1]) for line in out.splitlines()
               if line.startswith((".text", ".rodata")) and line.split()[1].isdigit())


def model_kinds(build: Path, cc: list[str], sources: list[str]) -> None:
    """Flash of the model runtime on top of the query VM, by kind: the
    footprint harness (mount + append + poll + query) built again with
    sq_model_load + sq_model_score and -DSQ_MODEL_KINDS=..., --gc-sections
    keeping only what those kinds use."""
    def elf(kinds: int | None) -> int:
        out = build / f"footprint_model_{kinds}.elf"
        flags = [] if kinds is None else ["-DSQ_FOOTPRINT_MODEL", f"-DSQ_MODEL_KINDS={kinds}"]
        subprocess.run(cc + flags + ["-o", str(out)] + sources + ["-lgcc"], check=True)
        return flash_of(str(out))
    k = MODEL_KINDS
    base, trees = elf(None), elf(k["trees"])
    linear = elf(k["linear"])
    rows = [("trees (first-pass features: mean std min max rms ptp mad)", trees - base),
            ("linear instead of trees", linear - base),
            ("+ int8 MLP (hidden layers) on top of linear", elf(k["linear"] | k["mlp"]) - linear),
            ("+ anomaly scorer on top of linear", elf(k["linear"] | k["anomaly"]) - linear),
            ("+ crossings on top of trees", elf(k["trees"] | k["crossings"]) - trees),
            ("+ spectral features (band, bandratio) on top of trees", elf(k["trees"] | k["spectral"]) - trees),
            ("every kind", elf(63) - base)]
    print(f"\nmodel runtime on top of the query VM (sq_model_load + sq_model_score, --gc-sections; "
          f"the harness alone is {base} B):")
    for what, size in rows:
        print(f"  {what:<58} {size:>6} B")


def main() -> int:
    args = sys.argv[1:]
    elf, elf_fast, elf_small, models = None, None, None, None
    if "--models" in args:
        at = args.index("--models")
        models = args[at + 1]
        del args[at:at + 2]
    if "--elf" in args:
        at = args.index("--elf")
        elf = args[at + 1]
        del args[at:at + 2]
    if "--elf-fast" in args:
        at = args.index("--elf-fast")
        elf_fast = args[at + 1]
        del args[at:at + 2]
    if "--elf-small" in args:
        at = args.index("--elf-small")
        elf_small = args[at + 1]
        del args[at:at + 2]
    build, objs = Path(args[0]), args[1:]
    rows = sizes(objs)
    print(f"{'object':<14} {'flash (text+rodata)':>20} {'data':>6} {'bss':>6}")
    for name, text, data, bss in rows:
        print(f"{name:<14} {text:>20} {data:>6} {bss:>6}")
    print(f"{'total':<14} {sum(r[1] for r in rows):>20} {sum(r[2] for r in rows):>6} "
          f"{sum(r[3] for r in rows):>6}")
    print()
    subprocess.run([sys.executable, str(Path(__file__).with_name("stack_graph.py")), str(build)]
                   + (["--elf", elf] if elf else []), check=True)
    if elf:
        print("\ncompact and fast codecs:", end="")
        linked(elf, objs)
    if elf_fast:
        print("\nfast codec only (-DSQ_NO_COMPACT):", end="")
        linked(elf_fast, objs)
    if elf_small:
        print("\nfast codec only, no duration / episodes (-DSQ_NO_COMPACT -DSQ_NO_TIMED):", end="")
        linked(elf_small, objs)
    if models:
        cc, _, sources = models.partition("::")
        model_kinds(build, cc.split(), sources.split())
    return 0


if __name__ == "__main__":
    sys.exit(main())
