"""Where a fleet query's tasks run: Dask's ``distributed`` (a local cluster of
processes by default, the user's scheduler when named), or ``inline`` (this
process, one device after another: no Dask at all).

Placement: every worker is asked which caches matching the fleet's globs it
can open (tasks.find_caches, restricted to $SENSORQ_FLEET_DIRS when the
worker was started with it), and each device's task may run only on those
workers.  A cache that several workers reach (a shared file system) can be
retried elsewhere; Dask itself reschedules a task whose worker died onto
another allowed worker.  When no worker that holds a device is left, or a
device's task fails, the query fails with an error naming the device: a
fleet answer is never silently missing a device.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from ..errors import SensorqError
from .plan import Device
from .tasks import Reply, Request, find_caches, run_device, run_devices

POLL_S = 0.2                 # how often the client checks that holders are still alive
BATCH_DEVICES = 16           # devices' parts in one Dask task
LOCAL_WORKERS = max(1, min(4, os.cpu_count() or 1))


class FleetError(SensorqError):
    """A device's part of a fleet query failed, or no worker holds it any more."""

    def __init__(self, message: str, device: str | None = None):
        self.device = device
        super().__init__(message)


def make_runner(scheduler):
    """The runner for ``scheduler``: None (a local cluster), "inline", a
    tcp://HOST:PORT address, or a distributed.Client."""
    if scheduler == "inline":
        return InlineRunner()
    return DaskRunner(scheduler)


def _devices(found: dict) -> list[Device]:
    """{worker: [cache dicts]} → devices, with every worker that holds each."""
    devices: dict = {}
    for worker, caches in sorted(found.items()):
        for c in caches:
            key = (c["path"], c.get("device"))
            if key not in devices:
                devices[key] = Device(c["path"], c.get("device"), dict(c.get("labels") or {}),
                                      error=c.get("error"))
            devices[key].workers.append(worker)
    return sorted(devices.values(), key=lambda d: (d.device or "", d.path))


def _failure(device_name: str, reply: Reply) -> SensorqError:
    """The error for a device's failed part: a query's own error (a row
    limit, a query error) keeps its class; anything else is a FleetError.
    Either way it names the device (``.device``)."""
    from .. import errors
    where = f" on {reply.worker}" if reply.worker and reply.worker != "local" else ""
    message = (f"device {device_name} ({reply.path}){where}: {reply.error}; the fleet query has "
               f"no answer without it")
    cls = getattr(errors, reply.error_type, None)
    if isinstance(cls, type) and issubclass(cls, (errors.QueryError, errors.LimitError)):
        exc = cls(message)
        exc.device = device_name
        return exc
    return FleetError(message, device_name)


@dataclass
class _Task:
    """A device's part of a query: its request and the workers that may run
    it, in order (the first is where it goes)."""
    device: Device
    request: Request
    holders: list
    tried: list = field(default_factory=list)


class InlineRunner:
    """Every device in this process, one after another."""
    name = "inline"

    def discover(self, patterns: list[str]) -> list[Device]:
        return _devices({"local": find_caches(patterns)})

    def map(self, devices: list[Device], requests: dict, names: dict) -> dict:
        replies = {}
        for d in devices:
            reply = run_device(d.path, requests[d.key])
            if reply.error:
                raise _failure(names[d.key], reply)
            replies[d.key] = reply
        return replies

    def forget(self, token: str) -> None:
        from .percentiles import forget_values
        forget_values(token)

    def close(self) -> None:
        pass


class DaskRunner:
    """Tasks on a Dask cluster, each where its cache is."""

    def __init__(self, scheduler=None):
        try:
            import distributed
        except ImportError:
            raise SensorqError("fleet queries run on Dask: pip install 'sensorq[fleet]' (or pass "
                               "scheduler='inline' to run them in this process)") from None
        self._cluster = None
        if scheduler is None:
            try:
                self._cluster = distributed.LocalCluster(
                    n_workers=LOCAL_WORKERS, threads_per_worker=1, processes=True,
                    dashboard_address=None, silence_logs=logging.ERROR)
            except RuntimeError as exc:
                raise SensorqError(f"the local Dask cluster did not start ({exc}); its worker "
                                   f"processes import the main script again, so a script that "
                                   f"runs fleet queries needs `if __name__ == '__main__':` "
                                   f"(or pass scheduler='inline')") from None
            self.client = distributed.Client(self._cluster)
            self.name = f"local cluster ({LOCAL_WORKERS} worker processes)"
        elif isinstance(scheduler, distributed.Client):
            self.client, self._own_client = scheduler, False
            self.name = f"scheduler {scheduler.scheduler.address}"
        else:
            try:
                self.client = distributed.Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise SensorqError(f"cannot reach the Dask scheduler at {scheduler}: "
                                   f"{exc}") from None
            self.name = f"scheduler {scheduler}"
        self._own_client = not isinstance(scheduler, distributed.Client)
        self._preferred: dict = {}          # device key -> the worker its tasks go to

    def discover(self, patterns: list[str]) -> list[Device]:
        found = self.client.run(find_caches, patterns)
        return _devices(found)

    def _alive(self) -> set:
        return set(self.client.scheduler_info(n_workers=-1)["workers"])

    def map(self, devices: list[Device], requests: dict, names: dict) -> dict:
        """Every device's reply.  Each device's part runs on one worker that
        holds its cache, the same one query after query (``_placement``: its
        open caches and kept values are there), spread evenly; a worker's
        devices go in batches of BATCH_DEVICES per task (a task costs the
        scheduler more than a small device's part does).  A part whose worker
        died, or that failed on that worker's copy of the cache, moves to the
        next holder; with none left the query fails naming the device."""
        from distributed import wait
        parts = {d.key: _Task(d, requests[d.key], self._placement(d)) for d in devices}
        futures = self._submit([parts[d.key] for d in devices])
        replies = {}
        try:
            while futures:
                try:
                    done = wait(list(futures), timeout=POLL_S, return_when="FIRST_COMPLETED").done
                except TimeoutError:         # nothing finished for a while: is a worker gone?
                    self._move_orphans(futures, names)
                    continue
                for future in done:
                    again = self._collect(future, futures.pop(future), names, replies)
                    futures.update(self._submit(again))
        finally:
            if futures:
                self.client.cancel(list(futures))
        return replies

    def _placement(self, device: Device) -> list:
        """The device's holders, its preferred one first: the holder with the
        fewest devices preferred so far (remembered, so stable)."""
        chosen = self._preferred.get(device.key)
        if chosen not in device.workers:
            load = {w: 0 for w in device.workers}
            for w in self._preferred.values():
                if w in load:
                    load[w] += 1
            chosen = min(device.workers, key=lambda w: (load[w], w))
            self._preferred[device.key] = chosen
        return [chosen] + [w for w in device.workers if w != chosen]

    def _submit(self, parts: list) -> dict:
        """{future: its parts}: the parts grouped by worker, in batches."""
        by_worker: dict = {}
        for part in parts:
            by_worker.setdefault(part.holders[0], []).append(part)
        futures = {}
        for worker, mine in by_worker.items():
            for i in range(0, len(mine), BATCH_DEVICES):
                batch = mine[i:i + BATCH_DEVICES]
                items = [(p.device.path, p.request) for p in batch]
                future = self.client.submit(run_devices, items, workers=[worker],
                                            allow_other_workers=False, pure=False)
                futures[future] = batch
        return futures

    def _next_holder(self, part: _Task, name: str, why: str) -> None:
        """Move the part to the next holder that is alive, or fail naming the device."""
        part.tried.append(part.holders.pop(0))
        alive = self._alive()
        part.holders = [w for w in part.holders if w in alive]
        if not part.holders:
            raise FleetError(f"device {name} ({part.device.path}): {why}, and no other worker "
                             f"that holds its cache is left (held by "
                             f"{', '.join(part.device.workers)}); the fleet query has no answer "
                             f"without it", name)

    def _collect(self, future, batch: list, names: dict, replies: dict) -> list:
        """Store a finished task's replies; the parts that must run elsewhere."""
        again = []
        if future.status != "finished":
            exc = future.exception() if future.status == "error" else "cancelled"
            for part in batch:
                self._next_holder(part, names[part.device.key],
                                  f"its task failed on {part.holders[0]} ({exc})")
            return batch
        for part, reply in zip(batch, future.result()):
            name = names[part.device.key]
            if not reply.error:
                replies[part.device.key] = reply
                continue
            if reply.error_kind != "storage":
                raise _failure(name, reply)
            try:
                self._next_holder(part, name, f"on {reply.worker}: {reply.error}")
            except FleetError:
                raise _failure(name, reply) from None
            again.append(part)
        return again

    def _move_orphans(self, futures: dict, names: dict) -> None:
        """Tasks waiting for a worker that left go to the next holders."""
        alive = self._alive()
        for future, batch in list(futures.items()):
            if batch[0].holders[0] in alive:
                continue
            for part in batch:
                self._next_holder(part, names[part.device.key],
                                  f"its worker {part.holders[0]} left")
            self.client.cancel([future])
            del futures[future]
            futures.update(self._submit(batch))

    def forget(self, token: str) -> None:
        """Workers drop the values they kept for a finished percentile."""
        from .percentiles import forget_values
        try:
            self.client.run(forget_values, token)
        except (OSError, TimeoutError):
            pass                           # a worker gone: its memory went with it

    def close(self) -> None:
        if self._own_client:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()


__all__ = ["FleetError", "make_runner", "InlineRunner", "DaskRunner"]
