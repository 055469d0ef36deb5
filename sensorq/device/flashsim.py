"""A simulated NOR flash for the device port's storage tests.

:class:`NorFlash` keeps a partition in memory with NOR semantics: an erase
sets a whole sector to 0xFF, a program can only clear bits (an attempt to set
one is counted in ``violations``: the ring must never program a byte twice),
and programs must be aligned to the program size.  Every program and erase
is recorded in ``log``, with the markers the test driver adds (a block
acknowledged), so that a power-cut campaign can rebuild the partition as it
was at any point of a run: :func:`cut_points` yields those images, cutting
every program at each page and in the middle of each page (a byte half
programmed), and every erase half-way (a byte half erased).

``flash_struct`` (sensorq.device.native) turns a NorFlash into the C
library's sq_flash callbacks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np


class NorFlash:
    def __init__(self, size: int, sector_size: int, prog_size: int, page_size: int = 64,
                 image: np.ndarray | None = None, mapped: bool = False):
        if size % sector_size:
            raise ValueError("the partition must be whole sectors")
        self.size, self.sector_size, self.prog_size, self.page_size = size, sector_size, prog_size, page_size
        self.mem = np.full(size, 0xFF, np.uint8) if image is None else image.copy()
        self.erase_counts = np.zeros(size // sector_size, np.int64)
        self.log: list[tuple] = []
        self.violations = 0
        self.dead = False          # power cut: every later call fails and changes nothing
        self.on_call = None        # hook run at every call (an "interrupt" in the tests)
        self.reads = self.progs = self.erases = 0
        self.mapped = mapped       # give the library a pointer to mem (XIP flash): no reads
        self.fail = {}             # "prog" / "erase" / "sync" -> calls left before one fails once
        self.cut_after = None      # flash operations left before the power goes (then dead)

    def _hook(self) -> None:
        if self.on_call is not None:
            self.on_call()

    def _fails(self, what: str) -> bool:
        """An injected one-off failure of this call (the call changes nothing)."""
        left = self.fail.get(what)
        if left is None:
            return False
        if left == 0:
            del self.fail[what]
            return True
        self.fail[what] = left - 1
        return False

    def _cut(self) -> bool:
        """Counts an operation towards a power cut; True if this one is cut."""
        if self.cut_after is None:
            return False
        if self.cut_after == 0:
            self.dead = True
            return True
        self.cut_after -= 1
        return False

    def read(self, off: int, n: int) -> bytes | None:
        self._hook()
        if self.dead or off < 0 or off + n > self.size:
            return None
        self.reads += 1
        return self.mem[off:off + n].tobytes()

    def prog(self, off: int, data: bytes) -> bool:
        self._hook()
        n = len(data)
        if self.dead or off % self.prog_size or n % self.prog_size or off + n > self.size:
            return False
        if self._fails("prog"):
            return False
        new = np.frombuffer(data, np.uint8)
        old = self.mem[off:off + n]
        self.violations += int(np.count_nonzero(new & ~old))   # a 1 over a 0: NOR cannot
        if self._cut():
            self.mem[off:off + n // 2] &= new[:n // 2]          # torn: the first half made it
            return False
        self.mem[off:off + n] = old & new
        self.log.append(("prog", off, bytes(data)))
        self.progs += 1
        return True

    def erase(self, off: int) -> bool:
        self._hook()
        if self.dead or off % self.sector_size or off + self.sector_size > self.size:
            return False
        if self._fails("erase"):
            return False
        if self._cut():
            self.mem[off + self.sector_size // 2:off + self.sector_size] = 0xFF
            return False
        self.mem[off:off + self.sector_size] = 0xFF
        self.erase_counts[off // self.sector_size] += 1
        self.log.append(("erase", off))
        self.erases += 1
        return True

    def sync(self) -> bool:
        return not self.dead and not self._fails("sync")

    def mark(self, *marker) -> None:
        """A driver's note in the log (e.g. ("ack", next_seq)): not a flash operation."""
        self.log.append(("mark",) + marker)


@dataclass
class Cut:
    """The partition as a power cut at this point leaves it."""
    op: int                 # index in the log of the operation cut (len(log): after the last)
    what: str               # e.g. "prog 4096+64 mid-page", "erase 2048 half"
    image: np.ndarray


def cut_points(log: list[tuple], size: int, sector_size: int, page_size: int,
               erase_from_end: bool = False) -> Iterator[Cut]:
    """Every place a power cut can fall in the run that wrote ``log``, from a
    blank partition: before each operation, inside each program at every page
    boundary and half-way through every page (the next byte half programmed),
    half-way through each erase (one byte half erased), and after the last."""
    mem = np.full(size, 0xFF, np.uint8)
    for i, op in enumerate(log):
        if op[0] == "mark":
            continue
        yield Cut(i, f"before {op[0]} {op[1]}", mem.copy())
        if op[0] == "prog":
            yield from _prog_cuts(i, op[1], op[2], mem, page_size)
            data = np.frombuffer(op[2], np.uint8)
            mem[op[1]:op[1] + len(data)] &= data
        else:
            yield _erase_cut(i, op[1], mem, sector_size, erase_from_end)
            mem[op[1]:op[1] + sector_size] = 0xFF
    yield Cut(len(log), "after the last operation", mem.copy())


def _prog_cuts(i: int, off: int, data: bytes, mem: np.ndarray, page_size: int) -> Iterator[Cut]:
    new = np.frombuffer(data, np.uint8)
    at = 0
    while at < len(new):
        end = min(len(new), (off + at) // page_size * page_size + page_size - off)
        mid = at + (end - at) // 2
        image = mem.copy()
        image[off:off + mid] &= new[:mid]
        image[off + mid] &= new[mid] | 0xF0          # the byte being programmed: half its bits
        yield Cut(i, f"prog {off}+{at} mid-page", image)
        if end < len(new):
            image = mem.copy()
            image[off:off + end] &= new[:end]
            yield Cut(i, f"prog {off}+{end} page boundary", image)
        at = end


def _erase_cut(i: int, off: int, mem: np.ndarray, sector_size: int, from_end: bool) -> Cut:
    image = mem.copy()
    half = sector_size // 2
    lo, hi = (off + half, off + sector_size) if from_end else (off, off + half)
    image[lo:hi] = 0xFF
    mid = off + half - 1 if not from_end else off + half
    image[mid] |= 0x0F                                # the byte being erased: half its bits
    return Cut(i, f"erase {off} half{' (from the end)' if from_end else ''}", image)
