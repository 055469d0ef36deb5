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

from ..errors import SensorqError
from .plan import Device
from .tasks import Reply, Request, find_caches, run_device

POLL_S = 0.2                 # how often the client checks that holders are still alive
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


def _failure(device_name: str, reply: Reply) -> FleetError:
    where = f" on {reply.worker}" if reply.worker and reply.worker != "local" else ""
    return FleetError(f"device {device_name} ({reply.path}){where}: {reply.error}; the fleet query "
                      f"has no answer without it", device_name)


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
            self._cluster = distributed.LocalCluster(
                n_workers=LOCAL_WORKERS, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=logging.ERROR)
            self.client = distributed.Client(self._cluster)
            self.name = f"local cluster ({LOCAL_WORKERS} worker processes)"
        elif isinstance(scheduler, distributed.Client):
            self.client, self._own_client = scheduler, False
            self.name = f"scheduler {scheduler.scheduler.address}"
        else:
            try:
                self.client = distributed.Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise SensorqError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
            self.name = f"scheduler {scheduler}"
        self._own_client = not isinstance(scheduler, distributed.Client)

    def discover(self, patterns: list[str]) -> list[Device]:
        found = self.client.run(find_caches, patterns)
        return _devices(found)

    def _alive(self) -> set:
        return set(self.client.scheduler_info(n_workers=-1)["workers"])

    def map(self, devices: list[Device], requests: dict, names: dict) -> dict:
        """Every device's reply; a device whose task fails is retried on
        another worker that holds it, else the query fails naming it."""
        from distributed import wait
        tried = {d.key: set() for d in devices}
        by_key = {d.key: d for d in devices}
        futures = {self._submit(d, requests[d.key], tried[d.key]): d.key for d in devices}
        replies = {}
        try:
            while futures:
                try:
                    done = wait(list(futures), timeout=POLL_S, return_when="FIRST_COMPLETED").done
                except TimeoutError:
                    done = set()
                for future in done:
                    key = futures.pop(future)
                    retry = self._collect(future, by_key[key], requests[key], tried[key], names,
                                          replies)
                    if retry is not None:
                        futures[retry] = key
                if futures:
                    self._check_holders(futures, by_key, tried, names)
        finally:
            if futures:
                self.client.cancel(list(futures))
        return replies

    def _submit(self, device: Device, request: Request, tried: set):
        workers = [w for w in device.workers if w not in tried] or device.workers
        return self.client.submit(run_device, device.path, request, workers=workers,
                                  allow_other_workers=False, pure=False)

    def _collect(self, future, device: Device, request, tried: set, names, replies):
        """Store a finished task's reply; a new future when it is retried."""
        name = names[device.key]
        if future.status != "finished":
            exc = future.exception() if future.status == "error" else "the task was cancelled"
            raise FleetError(f"device {name} ({device.path}): its task failed on the cluster "
                             f"({type(exc).__name__ if not isinstance(exc, str) else ''} {exc}); "
                             f"the fleet query has no answer without it", name)
        reply = future.result()
        if not reply.error:
            replies[device.key] = reply
            return None
        tried.add(reply.worker)
        others = [w for w in device.workers if w not in tried and w in self._alive()]
        if reply.error_kind == "storage" and others:
            return self._submit(device, request, tried)
        raise _failure(name, reply)

    def _check_holders(self, futures: dict, by_key: dict, tried: dict, names) -> None:
        alive = self._alive()
        for key in futures.values():
            device = by_key[key]
            if not alive.intersection(device.workers):
                raise FleetError(f"device {names[key]} ({device.path}): no worker that holds its "
                                 f"cache is left (held by {', '.join(device.workers)}); the fleet "
                                 f"query has no answer without it", names[key])

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
