#!/usr/bin/env python3
"""sensorq next to emlearn on a Cortex-M0+ (issue 14): the same trained
scikit-learn forest — the demo model's, retrained with its recipe so that its
sensorq form is sensorq/data/motion.sqm byte for byte — converted by emlearn
to C (inline float code, as emlearn recommends for float features; and its
table-driven "loadable" int16 runtime) and by sensorq to its device image
(sensorq/device/image.py) loaded by sq_model_load and scored by
sq_model_predict.  Each is cross-compiled the same way (arm-none-eabi-gcc
-mcpu=cortex-m0plus -Os, --gc-sections; device_port/tools/bench_predict.c)
and run under qemu-system-arm -M microbit -icount shift=0 over the
BasicMotions test windows: flash (runtime + model), RAM, instructions per
prediction, accuracy and agreement.

    python3 tools/emlearn_compare.py BUILD_DIR        (needs emlearn, scikit-learn, the ARM toolchain, QEMU)
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PORT = HERE.parent
ARM = ["arm-none-eabi-gcc", "-mcpu=cortex-m0plus", "-mthumb", "-Os", "-ffunction-sections", "-fdata-sections",
       "-std=c99", "-ffreestanding", "-fno-tree-loop-distribute-patterns", "-nostartfiles", "-nostdlib",
       "-Wl,--gc-sections", f"-Wl,-T,{PORT / 'examples' / 'microbit.ld'}", f"-I{PORT / 'include'}",
       f"-I{PORT / 'examples'}"]
QEMU = ["qemu-system-arm", "-M", "microbit", "-nographic", "-semihosting-config", "enable=on,target=native",
        "-icount", "shift=0", "-kernel"]
HARNESS = ("main", "load", "put", "get_u32", "ticks_since", "Reset_Handler", "Fault_Handler", "stack_high_water",
           "memset", "memcpy", "vectors", "row", "names", "name_ptrs", "model_bytes", "work", "model")


def demo_forest(cache_dir: Path, trees: int = 3, depth: int = 3):
    """(scikit-learn forest, its sensorq model, training data) of the demo
    model's recipe (3 trees of depth 3: sensorq/data/motion.sqm itself)."""
    import sensorq
    from sensorq.ingest import ingest_csv
    from sensorq.models.compress import drop_unused_features
    from sensorq.models.format import encode_model, load_model
    from sensorq.models.sklearn_import import from_sklearn
    from sensorq.models.train import make_estimator, training_data
    data_dir = Path(sensorq.__file__).parent / "data"
    cache = sensorq.open(cache_dir, create=True)
    ingest_csv(cache, data_dir / "basic_motions.csv", stream="motions")
    cache.flush()
    data = training_data(cache, "motions", "activity", where="split == train", test_where="split == test",
                         group="case", exclude=("split", "case"))
    est = make_estimator("forest", {"trees": trees, "depth": depth}, len(data.class_codes)).fit(data.X, data.y)
    model = drop_unused_features(from_sklearn(est, data.pipeline, class_names=data.class_names, X_calib=data.X,
                                              output_name="motion"))
    shipped = load_model((data_dir / "motion.sqm").read_bytes())
    assert (trees, depth) != (3, 3) or encode_model(model, with_float=False) == encode_model(shipped, with_float=False), \
        "the recipe no longer gives the shipped model"
    cache.close()
    return est, model, data


def build(out: Path, sources: list, flags: list) -> Path:
    cmd = ARM + flags + ["-o", str(out)] + [str(s) for s in sources] + ["-lgcc"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stdout + done.stderr)
    return out


def symbols(elf: Path) -> dict:
    out = subprocess.run(["arm-none-eabi-nm", "-S", "--size-sort", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    found = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTrR":
            found[p[3]] = int(p[1], 16)
    return found


def footprint(elf: Path, baseline: Path) -> dict:
    """Flash (text + rodata) the model adds to the harness: what this ELF has
    that the stub-model build has not (or has larger), split into the
    libgcc helpers it pulls (64-bit and soft-float arithmetic) and the rest."""
    mine, base = symbols(elf), symbols(baseline)
    extra = {k: v - base.get(k, 0) for k, v in mine.items() if v > base.get(k, 0)}
    helpers = sum(v for k, v in extra.items() if k.startswith("__"))
    return {"flash": sum(extra.values()), "libgcc": helpers}


def run(elf: Path, workdir: Path, rows: np.ndarray, files: dict) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "bench.bin").write_bytes(struct.pack("<II", *rows.shape) + rows.tobytes())
    for name, data in files.items():
        (workdir / name).write_bytes(data)
    done = subprocess.run(QEMU + [str(elf)], cwd=workdir, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"{elf.name} exit {done.returncode}: {done.stderr[-1000:]}")
    lines = (workdir / "bench.txt").read_text().split("\n")
    cal = [int(v) for v in lines[0].split()[1:]]
    classes = np.array([int(v) for v in lines[1:1 + rows.shape[0]]])
    ticks = [int(v) for v in lines[1 + rows.shape[0]].split()[1:]]
    stack = int(lines[2 + rows.shape[0]].split()[1])
    per_tick = cal[1] / cal[0]
    return {"classes": classes, "instructions": ticks[0] * per_tick / rows.shape[0],
            "worst": ticks[1] * per_tick, "stack": stack}


def _import_emlearn():
    """emlearn's bayes module sets numpy.seterr(all="raise") for the whole
    process when it is imported: every later underflow anywhere (scikit-learn's
    MLP, a float test) would raise.  Keep numpy's error state as it was."""
    saved = np.geterr()
    try:
        import emlearn
        import emlearn.bayes  # noqa: F401  (the module that changes it: imported now, undone below)
    finally:
        np.seterr(**saved)
    return emlearn


def compare(build_dir: Path, trees: int = 3, depth: int = 3) -> dict:
    emlearn = _import_emlearn()
    from sensorq.device.models import model_file
    from sensorq.models.score import score_codes
    from sensorq.models.fit import _columns_of, _subset
    build_dir.mkdir(parents=True, exist_ok=True)
    est, model, data = demo_forest(Path(tempfile.mkdtemp()) / "c", trees, depth)
    sub = _subset(data, _columns_of(model, data))
    codes = sub.codes_test.astype("<i4")
    floats = data.X_test.astype("<f4")
    host = score_codes(model, codes).cls
    from sensorq.device.image import device_image, device_stream_schema
    ring = [(i.name, "int16") for i in model.pipeline.inputs]
    blob = device_image(model, ring)
    common = [PORT / "examples" / "startup.c", PORT / "examples" / "semihost.c",
              PORT / "examples" / "fw_common.c", HERE / "bench_predict.c"]
    results = {}
    stub = build_dir / "stub"
    stub.mkdir(exist_ok=True)
    (stub / "bench_model.h").write_text("#define BENCH_TYPE int32_t\n"
                                        "static int32_t bench_predict(const int32_t *x, int32_t n) "
                                        "{ return x[0] + n; }\n")
    baseline = build(build_dir / "bench_stub.elf", common, ["-DBENCH_EMLEARN", f"-I{stub}"])
    # sensorq: the model's bytes, validated and scored in integers (the trees scorer only)
    lib = sorted((PORT / "src").glob("*.c"))
    elf = build(build_dir / "bench_sensorq.elf", common + lib, [f"-I{PORT / 'src'}", "-DSQ_MODEL_KINDS=1"])
    schema = device_stream_schema(ring)
    channels = struct.pack("<II", len(ring), schema) + bytes([2] * len(ring))       # int16 channels
    got = run(elf, build_dir / "run_sensorq", codes, {"model.sqd": model_file(blob), "channels.bin": channels})
    fp = footprint(elf, baseline)
    from sensorq.device.models import DeviceModel
    from sensorq.device.native import DeviceLib, build_library, stream_cfg
    dev = DeviceLib(build_library(build_dir / "host"))
    dm = DeviceModel(dev, blob, stream_cfg(["int16"] * len(ring), 8, schema=schema))
    ram = MODEL_STRUCT_ARM + predict_work(dm)
    results["sensorq"] = {**got, **fp, "model": len(blob), "ram": ram,
                          "what": "sq_model_load + sq_model_predict (trees only), the device image as data"}
    assert np.array_equal(got["classes"], host), "sensorq on QEMU == the host's quantized path"
    # emlearn: inline float code (hard and soft voting), and the loadable int16 runtime
    # the int16 runtime takes the float features rounded to int16 (every one of this model's fits)
    ints = np.clip(np.round(data.X_test), -32768, 32767).astype("<i2")
    variants = [("emlearn inline, float, majority vote", dict(method="inline", dtype="float"), floats, "float"),
                ("emlearn inline, float, 8-bit leaf probabilities",
                 dict(method="inline", dtype="float", leaf_bits=8), floats, "float"),
                ("emlearn loadable, int16, majority vote", dict(method="loadable", dtype="int16_t"), ints,
                 "int16_t")]
    for label, opts, rows, ctype in variants:
        conv = emlearn.convert(est, **opts)
        gen = build_dir / ("gen_" + str(len(results)))
        gen.mkdir(exist_ok=True)
        call = "motion_predict(x, n)" if opts["method"] == "inline" else "eml_trees_predict(&motion, x, n)"
        (gen / "bench_model.h").write_text(f"#define BENCH_TYPE {ctype}\n" + conv.save(name="motion", format="c") +
                                           f"\nstatic int32_t bench_predict(const {ctype} *x, int32_t n) "
                                           f"{{ return {call}; }}\n")
        elf = build(build_dir / f"bench_emlearn_{len(results)}.elf", common,
                    ["-DBENCH_EMLEARN", f"-I{gen}", f"-I{Path(emlearn.__file__).parent}", "-w"])
        got = run(elf, build_dir / f"run_emlearn_{len(results)}", rows, {})
        fp = footprint(elf, baseline)
        results[label] = {**got, **fp, "model": 0, "ram": rows.shape[1] * rows.itemsize,
                          "what": label + " (the model compiled in: a reflash to change it)"}
    for r in results.values():
        r["accuracy"] = float(np.mean(data.class_codes[r["classes"]] == data.y_test))
        r["agreement"] = float(np.mean(r["classes"] == host))
    return results


MODEL_STRUCT_ARM = 104           # sizeof(sq_model) on a Cortex-M0+ (the image's 56-byte header, then the loader's fields)


def predict_work(dm) -> int:
    """Work memory sq_model_predict carves (codes, raw outputs, dense buffers), from the model's counts
    (88: sizeof(sq_model_work) of the trees-only build on a Cortex-M0+, which it carves first)."""
    m = dm.m
    r8 = lambda n: (n + 7) // 8 * 8     # noqa: E731
    dense = m.max_width if m.body == 2 else 0
    return r8(88) + r8(4 * m.n_features) + r8(8 * m.n_raw) + r8(dense) + r8(4 * dense) + 7


def table(results: dict) -> str:
    rows = [f"{'':<50} {'flash B':>8} {'of it libgcc':>12} {'model B':>8} {'RAM B':>6} {'instr/pred':>11} "
            f"{'accuracy':>9} {'agrees':>7}"]
    for name, r in results.items():
        rows.append(f"{name:<50} {r['flash']:>8} {r.get('libgcc', 0):>12} {r['model']:>8} {r['ram']:>6} "
                    f"{r['instructions']:>11.0f} {100 * r['accuracy']:>8.2f}% {100 * r['agreement']:>6.2f}%")
    rows.append("flash: what the model adds to the harness (runtime + model code); model B: the device image "
                "(data: in flash or RAM, replaced without reflashing); RAM: sq_model + the work memory "
                "sq_model_predict carves / emlearn's feature vector; instructions: QEMU -icount, per "
                "prediction on the 679 test windows; agrees: same class as sensorq's quantized path on the host")
    return "\n".join(rows)


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    for trees, depth in ((3, 3), (10, 8)):
        print(f"\nforest of {trees} trees of depth {depth} (BasicMotions, 2 s windows, test split):")
        print(table(compare(root / f"f{trees}x{depth}", trees, depth)))
    return 0


if __name__ == "__main__":
    if shutil.which("arm-none-eabi-gcc") is None:
        sys.exit("arm-none-eabi-gcc is not installed")
    sys.exit(main())
