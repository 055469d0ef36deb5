"""The device library under AddressSanitizer and UBSan, for the fuzz harnesses
of test_device_codec.py and test_device_models.py: each test file, run as a
script in a child process against the sanitized build, feeds it damaged
input; any out-of-bounds read or undefined behaviour aborts the child."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensorq.device.native import build_library


def run_under_sanitizers(tmp_path: Path, script: Path, args: list[str],
                         timeout: int) -> subprocess.CompletedProcess:
    """``python script <sanitized library> *args`` with libasan preloaded;
    skips the test where the machine has no sanitizer runtime."""
    try:
        lib = build_library(tmp_path / "asan", sanitize=True)
    except Exception as exc:  # noqa: BLE001 — no sanitizer runtime here
        pytest.skip(f"no sanitizer build: {exc}")
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True).stdout.strip()
    if not os.path.isabs(libasan):
        pytest.skip("libasan.so not found")
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
    return subprocess.run([sys.executable, str(script), str(lib), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
