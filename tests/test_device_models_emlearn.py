"""sensorq next to emlearn (issue 14): the demo model's scikit-learn forest
converted by emlearn to C and by sensorq to model bytes, both cross-compiled
for a Cortex-M0+ and run under QEMU over the BasicMotions test windows
(device_port/tools/emlearn_compare.py).  Prints flash, RAM, instructions per
prediction, accuracy and agreement; asserts that sensorq on the device gives
the host's classes and that both agree on the windows.  Skipped without
emlearn (pip install emlearn), the ARM toolchain or QEMU."""
from __future__ import annotations

import importlib.util
import shutil
import sys

import pytest

from sensorq.device.native import DEVICE_PORT

pytest.importorskip("sklearn", reason="scikit-learn (the 'models' extra) is not installed")
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("emlearn") is None, reason="emlearn is not installed (pip install emlearn)"),
    pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is not installed"),
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm is not installed"),
]


def test_side_by_side_with_emlearn(tmp_path):
    sys.path.insert(0, str(DEVICE_PORT / "tools"))
    try:
        import emlearn_compare
    finally:
        sys.path.pop(0)
    results = emlearn_compare.compare(tmp_path)
    print("\n" + emlearn_compare.table(results))
    ours = results["sensorq"]
    assert ours["agreement"] == 1.0 and ours["accuracy"] > 0.98
    for name, r in results.items():
        assert r["agreement"] >= 0.99, name
