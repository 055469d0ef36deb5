"""numba's disk cache, safe against changes in the code a kernel calls.

numba keys a cached function by the contents of its own source file only.  A
kernel that calls (and so compiles into itself) the VM or the block decoder
kept its cached machine code after vm.py, program.py or the codec changed —
with the old VM inside: wrong answers, not an error.  The same holds inside
the codec (intcodec's decoders compile in bits.py's readers) and for the
models' kernels (the codec's decoder, model.py's constants), so every module
of sensorq with numba kernels files them this way.  ``cached`` puts a digest
of the files a module depends on into the name the cache is filed under, so a
change there files the kernels anew (they compile once, as after any edit).
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from numba import njit

_PACKAGE = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def digest(*relative_globs: str) -> str:
    """A short digest of the package's files matching the globs (once per process)."""
    h = hashlib.sha1()
    for pattern in relative_globs:
        for path in sorted(_PACKAGE.glob(pattern)):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def cached(stamp: str, before_compile=None, refcounted=True, **options):
    """``njit(cache=True, **options)``, filed under the function's name and
    ``stamp`` (a digest of what it depends on).

    ``refcounted=False``: compiled without numba's reference counting (NRT).
    A function that takes arrays and calls others keeps an atomic increment
    and decrement of each array's count around its body on every call; a
    block decoder called per block for 128 mini-blocks spent ~18 % of a
    whole-cache count in them.  Such a function may not allocate: numba
    refuses to compile an allocation there, or a callee that returns a new
    array to it (its callees are compiled without the counts too).

    ``before_compile``: called before the function is compiled or loaded
    from the cache, for each signature: to put in place what its machine
    code links to (codec/tans_call.py), which a load from the cache needs
    too."""
    def wrap(func):
        rename(func, stamp)
        if not refcounted:
            options["_nrt"] = False
        dispatcher = njit(cache=True, **options)(func)
        if before_compile is not None:
            compile_now = dispatcher.compile

            def compile(sig):
                before_compile()
                return compile_now(sig)
            dispatcher.compile = compile       # numba compiles and loads through it
        return dispatcher
    return wrap


def rename(func, stamp: str) -> None:
    func.__qualname__ = f"{func.__qualname__}__{stamp}"
