"""The device port on a Cortex-M0 under QEMU (-M microbit), and its footprint.

The example firmware (device_port/examples/) reads a test vector through ARM
semihosting, appends the samples to its ring, runs the compiled queries and
writes the answers and its ring's blocks back to host files; they must equal
the expected answers (numpy reference) and the host's "fast" blocks.  The
figures (flash, static RAM, stack, instructions per appended sample) are
printed, not asserted.  Skipped when the ARM toolchain or QEMU is missing."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sensorq.device.bytecode import compile_plan, schema_hash
from sensorq.device.native import DEVICE_PORT, ERRORS, DeviceLib, build_library
from sensorq.device.reference import expected_answer
from sensorq.device.vectors import (FIRMWARE_REGION_MAX, VECTORS, Vector, block_info, blocks_of, firmware_input,
                                    read_answers)
from sensorq.query import plan as P
from sensorq.schema import Channel, Stream

from qemu import QEMU, needs_arm, needs_qemu

VECTOR_DIR = Path(__file__).parent / "vectors"
CODES = {name: code for code, name in ERRORS.items()}


@pytest.fixture(scope="module")
def firmware(arm_firmware):
    return arm_firmware / "fw.elf"


def run_firmware(elf: Path, vector_bytes: bytes, workdir: Path):
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "vector.bin").write_bytes(vector_bytes)
    done = subprocess.run(QEMU + [str(elf)], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"firmware exit {done.returncode}: {done.stderr[-2000:]}"
    answers, figures = read_answers((workdir / "answers.txt").read_text())
    return answers, figures, (workdir / "blocks.bin").read_bytes()


def instructions_per_tick(figures) -> float:
    ticks, instructions = figures["calibration_ticks"]
    return instructions / ticks


@needs_arm
@needs_qemu
@pytest.mark.parametrize("name", sorted(VECTORS))
def test_firmware_answers_the_shared_vectors(firmware, tmp_path, name):
    meta = json.loads((VECTOR_DIR / f"{name}.json").read_text())
    answers, figures, blocks = run_firmware(firmware, (VECTOR_DIR / f"{name}.bin").read_bytes(), tmp_path)
    assert blocks == (VECTOR_DIR / f"{name}.blocks").read_bytes()
    assert len(answers) == len(meta["queries"])
    for got, want in zip(answers, meta["queries"]):
        assert got.status == CODES[want["status"]], want["text"]
        if want["status"] == "SQ_OK":
            assert (got.value if got.has_value else None, got.count) == (want["value"], want["count"]), \
                want["text"]
    per_tick = instructions_per_tick(figures)
    total, worst, n = figures["append_ticks"]
    seals, worst_seal, n_seals = figures["seal_ticks"]
    print(f"\n[{name}] append (staging only): {total * per_tick / n:.0f} instructions on average, "
          f"worst {worst * per_tick:.0f}; seal (a poll that sealed a block): "
          f"{seals * per_tick / max(n_seals, 1):.0f} on average over {n_seals}, worst "
          f"{worst_seal * per_tick:.0f}; queries: {figures['query_ticks'][0] * per_tick / len(answers):.0f} "
          f"instructions each; stack high-water {figures['stack'][0]} B (whole firmware)")


FW_SECTOR, FW_PROG = 256, 4           # the example firmware's flash mode (fw_main.c)


@needs_arm
@needs_qemu
def test_firmware_with_a_flash_partition(firmware, tmp_path, dev):
    """The imu vector with the firmware's ring on a partition behind NOR
    callbacks (not memory-mapped: every block read through them): the same
    blocks and answers as the host build on a simulated NOR flash of the same
    geometry, and the figures of seals that program flash."""
    from sensorq.device.flashsim import NorFlash
    from sensorq.device.native import flash_struct, stream_cfg
    import ctypes
    vector = VECTORS["imu"]()
    vector.flash, vector.region_len = True, FIRMWARE_REGION_MAX
    dtypes = [c.dtype for c in vector.stream.channels]
    cfg = stream_cfg(dtypes, vector.stream.block_samples, 0, schema_hash(vector.stream), vector.codec)
    work = dev.lib.sq_ring_work_size(ctypes.byref(cfg), ctypes.byref(flash_struct(NorFlash(FW_SECTOR, FW_SECTOR,
                                                                                          FW_PROG))))
    flash = NorFlash((vector.region_len - work) // FW_SECTOR * FW_SECTOR, FW_SECTOR, FW_PROG)
    ring = dev.ring(dtypes, vector.stream.block_samples, schema=schema_hash(vector.stream), flash=flash,
                    codec=vector.codec)
    ring.append_many(vector.t, vector.columns)
    codes = [(compile_plan(p, vector.stream), p.now.ns) for p in
             [plan_of(vector, text) for text in vector.queries]]
    answers, figures, blocks = run_firmware(firmware, firmware_input(vector, codes), tmp_path)
    assert blocks == b"".join(ring.blocks()) and flash.violations == 0
    for (code, now), got in zip(codes, answers):
        host = ring.query(code, now)
        assert got.status == 0 and (got.value if got.has_value else None, got.count) == (host.value, host.count)
    per_tick = instructions_per_tick(figures)
    total, _, n = figures["append_ticks"]
    seals, worst_seal, n_seals = figures["seal_ticks"]
    print(f"\n[imu on flash] append {total * per_tick / n:.0f} instructions; seal + program "
          f"{seals * per_tick / max(n_seals, 1):.0f} on average, worst {worst_seal * per_tick:.0f} "
          f"(a bank erased ahead); queries {figures['query_ticks'][0] * per_tick / len(answers):.0f} each "
          f"(blocks read through the callbacks); stack high-water {figures['stack'][0]} B")


def plan_of(vector: Vector, text: str):
    from sensorq.device.vectors import plan
    return plan(vector, text)


def random_vector(seed: int) -> Vector:
    rng = np.random.default_rng(seed)
    n_channels = int(rng.integers(1, 4))
    dtypes = [str(rng.choice(["int8", "int16", "int32", "int64"])) for _ in range(n_channels)]
    n = int(rng.integers(50, 700))
    t = 10**15 + np.cumsum(rng.integers(0, 3, n)).astype(np.int64) * int(rng.choice([1, 1000, 10**6]))
    cols = []
    for d in dtypes:
        info = np.iinfo(d)
        span = int(rng.choice([10, 1000, 2**20]))
        lo, hi = max(info.min, -span), min(info.max, span)
        cols.append(np.clip(np.cumsum(rng.integers(-5, 6, n)) + rng.integers(lo, hi), lo, hi).astype(d))
    stream = Stream("r", tuple(Channel(f"c{i}", d) for i, d in enumerate(dtypes)),
                    block_samples=int(rng.choice([16, 32, 50, 64])))
    return Vector(f"random{seed}", stream, t, cols, FIRMWARE_REGION_MAX, [])


def random_plans(vector: Vector, rng) -> list[P.AggregateQuery]:
    stream, cols = vector.stream, vector.columns
    refs = [P.ChannelRef(c.name, i, c.dtype, 1.0, "") for i, c in enumerate(stream.channels)]
    now = int(vector.t[-1]) + 1
    plans = []
    for _ in range(10):
        agg = str(rng.choice(["count", "sum", "min", "max", "avg", "first", "last"]))
        i, j = int(rng.integers(0, len(refs))), int(rng.integers(0, len(refs)))
        sample_i = float(cols[i][rng.integers(len(cols[i]))])
        sample_j = float(cols[j][rng.integers(len(cols[j]))])
        where = P.And((P.RawCompare(refs[i], str(rng.choice(P.COMPARE_OPS)), sample_i),
                       P.Not(P.RawCompare(refs[j], "==", sample_j))))
        start = int(vector.t[rng.integers(len(vector.t))]) if rng.random() < 0.5 else None
        plans.append(P.AggregateQuery("r", agg, None if agg == "count" else refs[j], where,
                                      P.TimeRange(start, now), P.Now("data", now), ""))
    return plans


@needs_arm
@needs_qemu
@pytest.mark.parametrize("seed", range(4))
def test_firmware_agrees_with_host_on_random_streams(firmware, tmp_path, tmp_path_factory, seed):
    """Random streams and predicates: QEMU == the host build of the same C == numpy."""
    rng = np.random.default_rng(100 + seed)
    vector = random_vector(seed)
    plans = random_plans(vector, rng)
    codes = [(compile_plan(p, vector.stream), p.now.ns) for p in plans]
    answers, _, blocks = run_firmware(firmware, firmware_input(vector, codes), tmp_path)
    dev = DeviceLib(build_library(tmp_path_factory.getbasetemp() / "host"))
    ring = dev.ring([c.dtype for c in vector.stream.channels], vector.stream.block_samples,
                    region_len=vector.region_len, schema=schema_hash(vector.stream))
    ring.append_many(vector.t, vector.columns)
    assert blocks == b"".join(ring.blocks())
    first_seq = block_info(blocks_of(blocks)[0]).seq if blocks else 0
    keep = first_seq * vector.stream.block_samples
    for (code, now), p, got in zip(codes, plans, answers):
        want = expected_answer(p, vector.t[keep:], [c[keep:] for c in vector.columns])
        if want.overflow:
            assert got.status == CODES["SQ_ERR_OVERFLOW"]
            continue
        assert got.status == 0
        assert (got.value if got.has_value else None, got.count) == (want.value, want.count)
        host = ring.query(code, now)
        assert (host.value, host.count, host.skipped, host.answered, host.decoded) == \
            (got.value if got.has_value else None, got.count, got.skipped, got.answered, got.decoded)


@needs_arm
def test_cross_build_size_report(tmp_path):
    """Builds with arm-none-eabi-gcc -mcpu=cortex-m0plus -Os -Werror and prints
    the flash / RAM / stack table.  Asserted: no static RAM, no recursion or
    dynamic frame, and a worst stack of at most 512 B over the whole call
    graph (flash is printed: see the report for where it stands)."""
    done = subprocess.run(["make", "-s", "-C", str(DEVICE_PORT), "arm", f"BUILD={tmp_path}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    print("\n" + done.stdout)
    total = next(line for line in done.stdout.splitlines() if line.startswith("total"))
    assert total.split()[-2:] == ["0", "0"], "static RAM (data, bss) must be 0"
    worst = int(re.search(r"^worst: (\d+) B", done.stdout, re.M).group(1))
    assert worst <= 512 and "dynamic frames" not in done.stdout and "recursion" not in done.stdout
