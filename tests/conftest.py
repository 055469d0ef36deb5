"""Fixtures shared by several test files."""
from __future__ import annotations

import pytest

from sensorq.device.native import DeviceLib, build_library, missing_host_toolchain


@pytest.fixture(scope="session")
def dev(tmp_path_factory):
    """The device port built for the host (once per run) and loaded with ctypes."""
    reason = missing_host_toolchain()
    if reason:
        pytest.skip(reason)
    return DeviceLib(build_library(tmp_path_factory.mktemp("device")))
