"""Fixtures shared by several test files."""
from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from hypothesis import settings

from sensorq.device.native import DEVICE_PORT, DeviceLib, build_library, missing_host_toolchain

# CI (which sets CI=true) runs the property tests on hypothesis's fixed draw
# (derandomize): whether a submission lands depends on its code, not on the
# examples drawn that run.  A developer's run draws afresh, and the long
# campaigns take seeds (--hypothesis-seed, benchmarks/RESULTS.md), which is
# where new counterexamples come from.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def dev(tmp_path_factory):
    """The device port built for the host (once per run) and loaded with ctypes."""
    reason = missing_host_toolchain()
    if reason:
        pytest.skip(reason)
    return DeviceLib(build_library(tmp_path_factory.mktemp("device")))


@pytest.fixture(scope="session")
def arm_firmware(tmp_path_factory):
    """The example firmwares (fw.elf, fw_models.elf) built for QEMU's
    micro:bit once per run: the directory that holds them."""
    build = tmp_path_factory.mktemp("arm")
    done = subprocess.run(["make", "-s", "-C", str(DEVICE_PORT), "firmware", f"BUILD={build}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return build / "arm"


@pytest.fixture(autouse=True)
def numpy_error_state():
    """Each test starts with numpy's default error state and leaves it so: a
    library that calls numpy.seterr when imported (emlearn does) must not make
    an unrelated later test raise on an underflow."""
    saved = np.geterr()
    np.seterr(all="warn", under="ignore")
    yield
    np.seterr(**saved)
