"""File systems for fault injection, plugged in under the store through
``sensorq.store.fileio.install``.

* :class:`FaultyFS` fails chosen calls: ENOSPC or EIO at the k-th call of a
  kind, a short write, a disk that fills up past a byte budget, an fsync whose
  error Linux reports only once.
* :class:`RecordingFS` passes every call through and logs each change in the
  order it happened, with markers the workload adds ("acknowledged" points);
  :func:`crash_states` then builds, from the log, the directories a power cut
  at each point could leave behind under a strict POSIX model: a file's bytes
  are durable only up to its last fsync (later writes may land in any order,
  a write may be torn), and a name only after an fsync of its directory.
"""
from __future__ import annotations

import errno
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sensorq.store.fileio import FileSystem

def scramble(k: np.ndarray) -> np.ndarray:
    """An int16 that looks random for sample index k (so the data does not
    compress away and a small ring turns over), yet any sample can be checked.
    Mixed as splitmix64 does: a multiplicative hash alone steps by a constant
    mod 2^16, two residuals that the ENTROPY form codes in about a bit."""
    with np.errstate(over="ignore"):
        z = k.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(31))) * np.uint64(0xBF58476D1CE4E5B9)
    return (z >> np.uint64(48)).astype(np.uint16).view(np.int16)


MUTATING = ("pwrite", "fsync", "ftruncate", "unlink", "replace", "mkdir", "fsync_directory", "create")


class FaultyFS(FileSystem):
    """Fails the ``at``-th (0-based) call of kind ``call`` with ``errno_``
    (or, for pwrite with ``short=True``, writes half the bytes and says so).
    ``budget``: bytes the disk can still take beyond what the cache holds at
    install time; past it every pwrite that grows a file fails with ENOSPC."""

    def __init__(self, call: str | None = None, at: int = 0, errno_: int = errno.EIO,
                 short: bool = False, budget: int | None = None, root: Path | None = None):
        self.call, self.at, self.errno, self.short = call, at, errno_, short
        self.counts: dict[str, int] = {}
        self.fired = 0
        self.budget = budget
        self.sizes: dict[int, int] = {}
        self.fd_path: dict[int, Path] = {}
        self.root = root

    def _trip(self, call: str) -> bool:
        n = self.counts.get(call, 0)
        self.counts[call] = n + 1
        if call == self.call and n == self.at:
            self.fired += 1
            return True
        return False

    def _fail(self, what):
        raise OSError(self.errno, os.strerror(self.errno), str(what))

    def open(self, path, flags, mode=0o644):
        if flags & os.O_CREAT and self._trip("create"):
            self._fail(path)
        fd = super().open(path, flags, mode)
        self.fd_path[fd] = path
        return fd

    def pwrite(self, fd, data, offset):
        if self._trip("pwrite"):
            if self.short:
                return super().pwrite(fd, data[:len(data) // 2], offset)
            self._fail(self.fd_path.get(fd))
        if self.budget is not None:
            growth = max(0, offset + len(data) - self.size(fd))
            if growth > self.budget:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.budget -= growth
        return super().pwrite(fd, data, offset)

    def ftruncate(self, fd, size):
        if self.budget is not None:
            self.budget += max(0, self.size(fd) - size)
        if self._trip("ftruncate"):
            self._fail(self.fd_path.get(fd))
        super().ftruncate(fd, size)

    def unlink(self, path):
        if self._trip("unlink"):
            self._fail(path)
        if self.budget is not None and path.exists():
            self.budget += path.stat().st_size
        super().unlink(path)

    def fsync(self, fd):
        if self._trip("fsync"):
            self._fail(self.fd_path.get(fd))
        super().fsync(fd)

    def fsync_directory(self, path):
        if self._trip("fsync_directory"):
            self._fail(path)
        super().fsync_directory(path)

    def replace(self, src, dst):
        if self._trip("replace"):
            self._fail(dst)
        super().replace(src, dst)


# --- the power-loss model ---------------------------------------------------------


@dataclass
class Op:
    kind: str                  # one of MUTATING, or "mark"
    path: str = ""             # relative to the root
    data: bytes = b""
    offset: int = 0
    target: str = ""           # replace: the new name
    inode: int = 0
    note: object = None        # mark: what the workload says holds from here on


class RecordingFS(FileSystem):
    """The real file system, with every change logged (paths under ``root``)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.log: list[Op] = []
        self.fd_inode: dict[int, int] = {}
        self.name_inode: dict[str, int] = {}
        self.next_inode = 1

    def rel(self, path) -> str:
        return os.path.relpath(path, self.root)

    def mark(self, note) -> None:
        self.log.append(Op("mark", note=note))

    def open(self, path, flags, mode=0o644):
        name = self.rel(path)
        existed = os.path.exists(path)
        fd = super().open(path, flags, mode)
        if not existed:
            inode, self.next_inode = self.next_inode, self.next_inode + 1
            self.name_inode[name] = inode
            self.log.append(Op("create", name, inode=inode))
        if flags & os.O_TRUNC:
            self.log.append(Op("ftruncate", name, offset=0, inode=self.name_inode[name]))
        self.fd_inode[fd] = self.name_inode.get(name, 0)
        return fd

    def pwrite(self, fd, data, offset):
        n = super().pwrite(fd, data, offset)
        self.log.append(Op("pwrite", data=bytes(data[:n]), offset=offset, inode=self.fd_inode[fd]))
        return n

    def ftruncate(self, fd, size):
        super().ftruncate(fd, size)
        self.log.append(Op("ftruncate", offset=size, inode=self.fd_inode[fd]))

    def fsync(self, fd):
        super().fsync(fd)
        self.log.append(Op("fsync", inode=self.fd_inode[fd]))

    def unlink(self, path):
        super().unlink(path)
        self.log.append(Op("unlink", self.rel(path)))
        self.name_inode.pop(self.rel(path), None)

    def replace(self, src, dst):
        super().replace(src, dst)
        self.log.append(Op("replace", self.rel(src), target=self.rel(dst)))
        self.name_inode[self.rel(dst)] = self.name_inode.pop(self.rel(src))

    def mkdir(self, path):
        super().mkdir(path)
        self.log.append(Op("mkdir", self.rel(path)))

    def fsync_directory(self, path):
        super().fsync_directory(path)
        self.log.append(Op("fsync_directory", self.rel(path)))


@dataclass
class _Inode:
    durable: bytearray = field(default_factory=bytearray)
    current: bytearray = field(default_factory=bytearray)
    pending: list = field(default_factory=list)     # changes since the last fsync


@dataclass
class _Dir:
    durable: dict = field(default_factory=dict)     # name -> inode
    current: dict = field(default_factory=dict)
    exists_durably: bool = False


def _apply(buf: bytearray, op: Op) -> None:
    if op.kind == "pwrite":
        end = op.offset + len(op.data)
        if len(buf) < end:
            buf.extend(b"\0" * (end - len(buf)))
        buf[op.offset:end] = op.data
    elif op.kind == "ftruncate":
        del buf[op.offset:]
        buf.extend(b"\0" * (op.offset - len(buf)))


def _dir_of(name: str) -> str:
    return os.path.dirname(name) or "."


class _Model:
    """What the disk holds (durably and in the page cache) after a prefix of the log."""

    def __init__(self):
        self.inodes: dict[int, _Inode] = {}
        self.dirs: dict[str, _Dir] = {".": _Dir(exists_durably=True)}

    def step(self, op: Op) -> None:
        if op.kind == "create":
            self.inodes[op.inode] = _Inode()
            self.dirs.setdefault(_dir_of(op.path), _Dir()).current[os.path.basename(op.path)] = op.inode
        elif op.kind in ("pwrite", "ftruncate"):
            inode = self.inodes[op.inode]
            _apply(inode.current, op)
            inode.pending.append(op)
        elif op.kind == "fsync":
            inode = self.inodes[op.inode]
            inode.durable, inode.pending = bytearray(inode.current), []
        elif op.kind == "unlink":
            self.dirs[_dir_of(op.path)].current.pop(os.path.basename(op.path), None)
        elif op.kind == "replace":
            inode = self.dirs[_dir_of(op.path)].current.pop(os.path.basename(op.path))
            self.dirs[_dir_of(op.target)].current[os.path.basename(op.target)] = inode
        elif op.kind == "mkdir":
            self.dirs[op.path] = _Dir()
        elif op.kind == "fsync_directory":
            d = self.dirs.setdefault(op.path, _Dir())
            d.durable = dict(d.current)
            for name, sub in self.dirs.items():    # its subdirectories' names are now durable
                if name != op.path and _dir_of(name) == op.path:
                    sub.exists_durably = True

    def materialize(self, root: Path, rng: random.Random, mode: str) -> None:
        """Write one crash state to ``root``.  ``mode``: "synced" (only what was
        synced survives), "all" (everything reached the disk), or "random"
        (each directory keeps its durable or its current names, each file its
        synced bytes plus a random prefix of its later writes, the last of
        them possibly torn)."""
        for dname, d in sorted(self.dirs.items()):
            if dname != "." and not self._dir_survives(dname, mode, rng):
                continue
            names = d.current if mode == "all" or (mode == "random" and rng.random() < 0.5) \
                else d.durable
            (root / dname).mkdir(parents=True, exist_ok=True)
            for name, inode in names.items():
                (root / dname / name).write_bytes(bytes(self._content(self.inodes[inode], mode, rng)))

    def _dir_survives(self, dname: str, mode: str, rng: random.Random) -> bool:
        d = self.dirs[dname]
        return d.exists_durably or mode == "all" or (mode == "random" and rng.random() < 0.5)

    @staticmethod
    def _content(inode: _Inode, mode: str, rng: random.Random) -> bytearray:
        if mode == "all":
            return inode.current
        buf = bytearray(inode.durable)
        if mode == "synced" or not inode.pending:
            return buf
        keep = rng.randint(0, len(inode.pending))
        for op in inode.pending[:keep]:
            _apply(buf, op)
        if keep < len(inode.pending) and rng.random() < 0.5:
            op = inode.pending[keep]
            if op.kind == "pwrite" and len(op.data) > 1:    # a torn write: part of it, maybe zeros
                cut = rng.randint(1, len(op.data) - 1)
                torn = op.data[:cut] if rng.random() < 0.5 else b"\0" * cut
                _apply(buf, Op("pwrite", data=torn, offset=op.offset))
        return buf


def crash_states(log: list[Op], root: Path, rng: random.Random, per_point: int = 2):
    """Yield (directory, note) for crash states at every point of the log: the
    directory holds what could survive a power cut there; ``note`` is the last
    mark before that point (what the workload had been promised by then)."""
    model = _Model()
    note = None
    n = 0
    for i, op in enumerate(log):
        if op.kind == "mark":
            note = op.note
            continue
        model.step(op)
        for mode in ["synced", "all"] + ["random"] * per_point:
            target = root / f"state-{n}"
            n += 1
            model.materialize(target, rng, mode)
            yield target, note
