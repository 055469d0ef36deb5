"""Every system call the store makes that touches a cache directory, in one
place (SQLite's VFS idea).

The store never calls ``os`` for file I/O directly: it calls the functions of
this module, which pass the call to the installed :class:`FileSystem`.  The
default is the real one.  Tests install a subclass (``install``) to fail a
chosen call with ENOSPC, EIO or a short write, or to record every mutation
for the power-loss model (tests/faultfs.py), so the store's handling of each
failure can be exercised without a full disk or a flaky drive.

Only the writes, syncs and directory changes matter for durability, and only
they are listed here; memory maps are made from file descriptors that came
through :func:`open_file`.
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import StorageError


class FileSystem:
    """The real file system (each method is the ``os`` call of the same name)."""

    def open(self, path: Path, flags: int, mode: int = 0o644) -> int:
        return os.open(path, flags, mode)

    def close(self, fd: int) -> None:
        os.close(fd)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        return os.pread(fd, n, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def replace(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def listdir(self, path: Path) -> list[str]:
        return os.listdir(path)

    def fsync_directory(self, path: Path) -> None:
        """Make the directory's entries (creations, deletions, renames) durable."""
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_current: FileSystem = FileSystem()


@contextmanager
def install(fs: FileSystem):
    """Route the store's file calls through ``fs`` inside the ``with`` block."""
    global _current
    previous, _current = _current, fs
    try:
        yield fs
    finally:
        _current = previous


def open_file(path, flags: int, mode: int = 0o644) -> int:
    return _current.open(Path(path), flags, mode)


def close(fd: int) -> None:
    _current.close(fd)


def pwrite(fd: int, data: bytes, offset: int) -> int:
    return _current.pwrite(fd, data, offset)


def pread(fd: int, n: int, offset: int) -> bytes:
    return _current.pread(fd, n, offset)


def fsync(fd: int) -> None:
    _current.fsync(fd)


def ftruncate(fd: int, size: int) -> None:
    _current.ftruncate(fd, size)


def size(fd: int) -> int:
    return _current.size(fd)


def unlink(path) -> None:
    _current.unlink(Path(path))


def replace(src, dst) -> None:
    _current.replace(Path(src), Path(dst))


def listdir(path) -> list[str]:
    return _current.listdir(Path(path))


def fsync_directory(path) -> None:
    _current.fsync_directory(Path(path))


def replace_file(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, fsync,
    rename over it, fsync of the directory.  A crash leaves the old contents or
    the new ones, never a mix (the manifest and model files are written so)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        written = pwrite(fd, data, 0)
        if written != len(data):
            raise OSError(errno.ENOSPC, f"short write of {tmp} ({written} of {len(data)} bytes)")
        fsync(fd)
    finally:
        close(fd)
    replace(tmp, path)
    fsync_directory(path.parent)


def make_directories(path: Path) -> None:
    """``mkdir -p`` that leaves every new name durable: each directory made is
    followed by an fsync of its parent, or a power cut could take the cache
    directory (manifest and all) away after its first acknowledged flush."""
    path = Path(os.path.abspath(path))
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        _current.mkdir(directory)
        _current.fsync_directory(directory.parent)


@contextmanager
def storage_errors(what: str):
    """An OSError (permissions, disk full, I/O error) as a StorageError saying what failed."""
    try:
        yield
    except OSError as exc:
        raise StorageError(f"{what}: {exc.strerror or exc}") from None
