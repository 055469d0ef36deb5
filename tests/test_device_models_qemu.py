"""The model firmware (device_port/examples/fw_models.c) on a Cortex-M0 under
QEMU (-M microbit), on the real BasicMotions test split (issue 14).

The firmware appends the 4,000 test samples (six channels held as the
model's fixed-point integers) to its sensor ring, scores every window that
becomes whole with the shipped demo model (sensorq/data/motion.sqm, as its
device image bound to the ring: read as data at run time), appends each class to a RAM ring of the model's output
stream, and runs compiled queries over it.  Its classes must equal the
host's quantized path window for window; its answers must equal the host
build's VM over the same outputs (and the query engine's, where one model
scored everything).  A second run replaces the model half-way with new
bytes (a retrained tree's image, update.sqd), without reflashing.  The figures —
instructions per scored window, per-recording accuracy, stack — are printed.
Skipped without the ARM toolchain or QEMU."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

import sensorq
from sensorq.device.bytecode import compile_for_device
from sensorq.device.image import device_image
from sensorq.device.models import (FIRMWARE_OUT_REGION, device_channels, device_inputs, firmware_input,
                                   model_file, output_schema, output_stream, read_scores)
from sensorq.device.native import DeviceLib, build_library
from sensorq.models.format import encode_model, load_model
from sensorq.models.score import score_windows

from qemu import QEMU, needs_arm, needs_qemu

pytest.importorskip("sklearn", reason="scikit-learn (the 'models' extra) is not installed")

DATA = Path(sensorq.__file__).parent / "data"
QUERIES = ["duration where motion == Running last 10m", "count where motion == Walking last 1m",
           "find episodes where motion == Running for >= 5s", "count where motion == Standing",
           "duration where motion != Badminton last 2m", "find episodes where motion == Badminton for >= 8s"]
CLOCK_HZ = 133e6

pytestmark = [needs_arm, needs_qemu]


@pytest.fixture(scope="module")
def firmware(arm_firmware):
    return arm_firmware / "fw_models.elf"


@pytest.fixture(scope="module")
def motions(tmp_path_factory):
    """BasicMotions in a cache (as `sensorq ingest` makes it), another with the
    test split alone (what the firmware's ring holds), the demo model stored
    in both as `motion`, and the test split's samples."""
    from sensorq.ingest import ingest_csv
    root = tmp_path_factory.mktemp("bm")
    lines = (DATA / "basic_motions.csv").read_text().splitlines()
    (root / "test.csv").write_text("\n".join([lines[0]] + [x for x in lines[1:] if ",test," in x]) + "\n")
    blob = (DATA / "motion.sqm").read_bytes()
    caches = []
    for name, csv in (("all", DATA / "basic_motions.csv"), ("test", root / "test.csv")):
        cache = sensorq.open(root / name, create=True)
        ingest_csv(cache, csv, stream="motions")
        cache.flush()
        cache.models.add("motion", load_model(blob))
        caches.append(cache)
    t, cols = caches[1].read("motions")
    yield caches[0], caches[1], blob, t, cols
    for cache in caches:
        cache.close()


def run(elf, workdir: Path, vector: bytes, model: bytes, update: bytes | None = None):
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "models.bin").write_bytes(vector)
    (workdir / "model.sqd").write_bytes(model_file(model))
    if update is not None:
        (workdir / "update.sqd").write_bytes(model_file(update))
    done = subprocess.run(QEMU + [str(elf)], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"firmware exit {done.returncode}: {done.stderr[-2000:]}"
    return read_scores((workdir / "scores.txt").read_text())


def host_windows(cache, model, t):
    s = score_windows(cache, model, int(t[0]), int(t[-1]) + 1)
    return {int(a): (int(c), r) for a, c, r in zip(s.start, s.cls, s.raw)}


def per_recording(windows, t, cols, classes, categories) -> float:
    """Recordings whose majority window class (windows inside the recording) is their activity."""
    right = []
    for case in np.unique(cols["case"]):
        inside = cols["case"] == case
        t0, t1 = int(t[inside][0]), int(t[inside][-1])
        votes = [cls for start, cls in windows if start >= t0 and start + 2 * 10**9 <= t1 + 1]
        label = categories[int(np.bincount(cols["activity"][inside]).argmax())]
        right.append(classes[int(np.bincount(votes).argmax())] == label)
    return float(np.mean(right))


def host_answers(dev, model, outputs, codes):
    """The host build's VM over an output ring holding these (start, class) rows."""
    stream = output_stream(model)
    ring = dev.ring([c.dtype for c in stream.channels], 32, region_len=FIRMWARE_OUT_REGION,
                    schema=output_schema(model), codec="fast")
    for start, cls in outputs:
        ring.append(start, [cls])
    return [ring.query(code, now) for code, now in codes]


def compiled(cache):
    from sensorq.models.derived import query_view
    from sensorq.query.planner import plan_query
    view = query_view(cache)
    return [(compile_for_device(cache, q), plan_query(q, view.streams, view.newest_ns, "data").now.ns)
            for q in QUERIES]


def test_firmware_scores_basic_motions_as_the_host(firmware, motions, tmp_path, tmp_path_factory):
    _, cache, blob, t, cols = motions
    model = load_model(blob)
    chans = device_channels(model)
    codes = compiled(cache)
    vector = firmware_input(chans, t, device_inputs(model, cols), codes)
    image = device_image(model, chans)
    got = run(firmware, tmp_path / "one", vector, image)
    assert [load[0] for load in got.loads] == [0]
    want = host_windows(cache, model, t)
    assert [w[1] for w in got.windows] == sorted(want), "the firmware scores exactly the host's windows"
    for _, start, cls, value, n, _ in got.windows:
        assert cls == want[start][0] and value == max(want[start][1])
    # queries over the outputs: the engine's answers (one model scored every window)
    for (code, now), text, answer in zip(codes, QUERIES, got.answers):
        status, value, has_value, count = answer
        res = cache.query(text)
        assert status == 0, text
        if text.startswith("duration"):
            assert value == round(res.value * 1e9), text
        elif text.startswith("count"):
            assert value == res.value, text
        else:
            assert (count, value) == (len(res.columns["start"]),
                                      int(np.sum(res.columns["end"] - res.columns["start"]))), text
    categories = list(cache.streams["motions"].channel("activity").categories)
    acc = per_recording([(w[1], w[2]) for w in got.windows], t, cols, model.outputs.classes, categories)
    labels = np.array([categories[int(np.bincount(cols["activity"][(t >= s) & (t < s + 2 * 10**9)]).argmax())]
                       for s in (w[1] for w in got.windows)])
    per_window = float(np.mean(np.array(model.outputs.classes)[[w[2] for w in got.windows]] == labels))
    ticks = np.array([w[5] for w in got.windows])
    per_window_instr = ticks.mean() * got.per_tick
    print(f"\n[BasicMotions test split on QEMU microbit] {len(got.windows)} windows scored, classes equal to "
          f"the host's; accuracy {100 * per_window:.2f}% per window, {100 * acc:.0f}% per recording; "
          f"model {len(blob)} B as shipped ({len(encode_model(model, with_float=False))} B without the float "
          f"section, {len(image)} B as the device image), work memory {got.loads[0][3]} B; load {got.loads[0][1] * got.per_tick:.0f} "
          f"instructions; per scored window {per_window_instr:.0f} instructions on average "
          f"(max {ticks.max() * got.per_tick:.0f}) = {per_window_instr / CLOCK_HZ * 1e6:.0f} us at "
          f"133 MHz; stack high-water {got.stack} B (whole firmware)")
    assert acc == 1.0 and got.stack <= 2048


def test_firmware_replaces_its_model_without_reflashing(firmware, motions, tmp_path, tmp_path_factory):
    """Half-way through, update.sqm (a retrained depth-4 tree: other bytes,
    other features, the same classes and so the same output stream) replaces
    motion.sqm: the windows before the switch are the demo model's, those
    after the new model's, each equal to the host's; the queries keep
    running over the one output ring."""
    from sensorq.models.train import train
    full, cache, blob, t, cols = motions
    first = load_model(blob)
    second = train(full, "motions", "activity", name="motion", kind="tree", depth=4, where="split == train",
                   test_where="split == test", group="case", exclude=("split", "case"))
    assert output_schema(second) == output_schema(first)
    exps = {i.name: i.exponent for i in first.pipeline.inputs}
    assert all(exps.get(i.name, i.exponent) == i.exponent for i in second.pipeline.inputs), \
        "both models read the channels at the same fixed-point scale"
    chans = device_channels(first)
    codes = compiled(cache)
    switch_at = len(t) // 2
    vector = firmware_input(chans, t, device_inputs(first, cols), codes, switch_at=switch_at)
    update = device_image(second, chans)
    got = run(firmware, tmp_path / "two", vector, device_image(first, chans), update)
    assert [load[0] for load in got.loads] == [0, 0]
    want = {1: host_windows(cache, first, t), 2: host_windows(cache, second, t)}
    switched = [w for w in got.windows if w[0] == 2]
    assert switched and len(switched) < len(got.windows)
    assert [w[1] for w in got.windows] == sorted(want[1]), "no window missed or scored twice"
    for which, start, cls, value, _, _ in got.windows:
        assert cls == want[which][start][0] and value == max(want[which][start][1])
    dev = DeviceLib(build_library(tmp_path_factory.getbasetemp() / "host"))
    host = host_answers(dev, first, [(w[1], w[2]) for w in got.windows], codes)
    for (status, value, has_value, count), h, text in zip(got.answers, host, QUERIES):
        assert status == 0 and (value if has_value else None, count) == (h.value, h.count), text
    print(f"\n[model replaced at sample {switch_at}] {len(switched)} of {len(got.windows)} windows scored by "
          f"the new model ({len(update)} B, {second.info.origin}); load of the new bytes "
          f"{got.loads[1][1] * got.per_tick:.0f} instructions")
