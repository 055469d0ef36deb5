"""Fleets: many devices' caches (docs/fleet.md).

* ``sensorq.fleet(paths_or_glob, scheduler=None)``: one query over many
  caches, each device's part computed where its cache lies (on Dask) and
  merged: ``with sensorq.fleet("site/*/cache") as f: f.query("count where
  z > 2g last 10m by device")``.
* ``sync`` brings a device's sealed blocks upstream unchanged (sync.py,
  export.py, blocks.py).

Nothing here imports dask until a fleet query runs on it: a single cache
needs none of it.
"""
from __future__ import annotations

from .cluster import FleetError
from .plan import absolute_patterns, select_devices


class Fleet:
    """The caches matching some paths or globs, and where to run queries on
    them: ``scheduler`` None (a local cluster of processes, started on the
    first query and stopped by ``close()``), "inline" (this process, no
    Dask), "tcp://HOST:PORT" or a ``distributed.Client``.  ``select``:
    {label or "device": glob} keeps only the devices that match."""

    def __init__(self, paths_or_glob, scheduler=None, select: dict | None = None):
        self.patterns = absolute_patterns(paths_or_glob)
        self.scheduler = scheduler
        self.select = dict(select or {})
        self._runner = None

    @property
    def runner(self):
        if self._runner is None:
            from .cluster import make_runner
            self._runner = make_runner(self.scheduler)
        return self._runner

    def devices(self) -> list:
        """The devices (plan.Device: path, device, labels, workers) found now."""
        return select_devices(self.runner.discover(self.patterns), self.select)

    def unheld(self, devices: list) -> list:
        """Caches this process sees matching the globs that no worker holds
        (a worker told other directories, a disk not mounted there): they are
        reported in every answer, never silently left out."""
        from .tasks import find_caches
        held = {(d.path, d.device) for d in devices}
        here = select_devices([_device(c) for c in find_caches(self.patterns)], self.select)
        return [d for d in here if d.key not in held]

    def query(self, text: str, now_policy: str = "data", engine: str | None = None,
              max_rows: int | None = None):
        """Run ``text`` over the fleet (docs/fleet.md): a FleetResult, which is
        a sensorq Result with ``devices`` and ``missing`` besides."""
        from .dispatch import run
        devices = self.devices()
        unheld = self.unheld(devices)
        if not devices:
            where = f" with {self.select}" if self.select else ""
            held = f"; {len(unheld)} seen here, but no worker holds them" if unheld else ""
            raise FleetError(f"no sensorq cache matches {', '.join(self.patterns)}{where}{held}")
        result = run(self.runner, devices, text, now_policy, engine, max_rows)
        for d in unheld:
            name = d.device or d.path
            result.missing[name] = "no worker of the cluster holds its cache"
            result.warnings.append(f"device {name} ({d.path}) is not in this answer: no worker "
                                   f"of the cluster holds its cache")
        return result

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<sensorq Fleet {self.patterns} on {self.scheduler or 'a local cluster'}>"


def _device(found: dict):
    from .plan import Device
    return Device(found["path"], found.get("device"), dict(found.get("labels") or {}))


def fleet(paths_or_glob, scheduler=None, select: dict | None = None) -> Fleet:
    """A Fleet over the caches at ``paths_or_glob`` (a glob such as
    "site/*/cache", or a list of paths and globs)."""
    return Fleet(paths_or_glob, scheduler, select)


__all__ = ["Fleet", "fleet", "FleetError"]
