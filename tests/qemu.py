"""What the QEMU tests share: the emulator's command line (QEMU's micro:bit,
a Cortex-M0, semihosting for files, -icount shift=0 so that SysTick counts
instructions) and the marks that skip them without the ARM toolchain or QEMU.
The firmware itself is built once per run (conftest.py: ``arm_firmware``)."""
from __future__ import annotations

import shutil

import pytest

QEMU = ["qemu-system-arm", "-M", "microbit", "-nographic", "-semihosting-config",
        "enable=on,target=native", "-icount", "shift=0", "-kernel"]

needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc is not installed (apt: gcc-arm-none-eabi)")
needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None,
                                reason="qemu-system-arm is not installed (apt: qemu-system-arm)")
