"""sensorq: a query engine for sensor data that lives on the device that measured it.

``import sensorq`` is quick: the exception hierarchy is imported at once, and
``Channel``, ``Stream``, ``Cache`` and ``open`` (numpy and the store) on first
use, as is the fleet package by ``sensorq.fleet(...)``.  A one-off command
line thus pays only for what its command needs (cli/__init__.py).
"""
import sys
import types

from .errors import *  # noqa: F401,F403  (the exception hierarchy is public API)

__version__ = "0.1.0"

_LAZY = {"Channel": "schema", "Stream": "schema", "Cache": "store", "open": "store"}
__all__ = sorted(set(_LAZY) | {"fleet"}
                 | {name for name in dir(sys.modules[f"{__name__}.errors"])
                    if not name.startswith("_") and name[0].isupper()})


def __getattr__(name: str):
    """``sensorq.Channel``, ``sensorq.open`` and the rest of _LAZY, imported on
    first use; so is a subpackage named as an attribute (``sensorq.store.X``
    after a bare ``import sensorq``, as when this module imported the store)."""
    import importlib
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    elif not name.startswith("_"):
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def fleet(paths_or_glob, scheduler=None, select: dict | None = None):
    """One query over many caches (docs/fleet.md): ``with sensorq.fleet("site/*/cache")
    as f: f.query("count where z > 2g last 10m by device")``.  See
    :func:`sensorq.fleet.fleet`; its package is imported by the first call, so
    that ``import sensorq`` stays quick."""
    from .fleet import fleet as make_fleet
    return make_fleet(paths_or_glob, scheduler, select)


class _Package(types.ModuleType):
    """``sensorq`` itself.  Importing the subpackage ``sensorq.fleet`` sets the
    package's attribute ``fleet`` to that module, which would hide the public
    function above; the function keeps the name (``sensorq.fleet.sync`` and
    the like are still imported by their full names)."""

    def __setattr__(self, name, value):
        if name == "fleet" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
