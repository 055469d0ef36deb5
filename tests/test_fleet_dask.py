"""Fleet queries on Dask: the embedded local cluster (the default), and a real
``dask scheduler`` with ``dask worker`` processes on 127.0.0.1 started here,
each told which cache directories it holds ($SENSORQ_FLEET_DIRS).  Tasks go
where the caches are; a worker killed mid-query either has its tasks redone
by another worker that holds the same caches, or the query fails naming the
device - never a partial answer.  Every answer is checked against the same
query run inline (test_fleet_merge.py checks inline against references).
The workers run the interpreted tier: a fresh worker would otherwise load
(or, on a new machine, compile) the numba kernels, seconds that test nothing
here; both tiers give the same answers bit for bit (test_tiers.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import sensorq
from sensorq import Channel

pytest.importorskip("distributed")

from sensorq.fleet.cluster import FleetError

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
ENGINE = "interpreted"
QUERIES = ["count where z > 2g by device", "avg z by 5s", "p99 z", "max z by site",
           "find episodes where z > 1800mg for >= 2ms", "newest 3 from imu"]


def build(root, n=4, samples=20_000):
    for i in range(n):
        rng = np.random.default_rng(i)
        site = "a" if i < n // 2 else "b"
        t = T0 + np.arange(samples, dtype=np.int64) * MS + i * 3 * MS
        with sensorq.open(root / site / f"dev-{i}", create=True, device=f"dev-{i}",
                          labels={"site": site}) as cache:
            cache.create_stream("imu", [Channel(c, "int16", "mg") for c in "xyz"],
                                block_samples=1000)
            cache.append("imu", t, {c: (1000 * (c == "z") + rng.normal(0, 400, samples))
                                    .astype(np.int16) for c in "xyz"})
    return str(root / "*" / "dev-*")


def same(a, b) -> bool:
    if a.kind == "scalar":
        return a.value == b.value
    return list(a.columns) == list(b.columns) and all(
        np.array_equal(a.columns[k], b.columns[k], equal_nan=a.columns[k].dtype != object)
        for k in a.columns)


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    pattern = build(root)
    with sensorq.fleet(pattern, scheduler="inline") as inline:
        answers = {q: inline.query(q) for q in QUERIES}
    return root, pattern, answers


def test_importing_sensorq_imports_no_dask():
    code = ("import sys, sensorq; sensorq.fleet; "
            "print('dask' in sys.modules or 'distributed' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_local_cluster_is_the_default(fleet_dir):
    _, pattern, answers = fleet_dir
    with sensorq.fleet(pattern) as f:
        for query, want in answers.items():
            got = f.query(query, engine=ENGINE)
            assert same(got, want), query
        workers = {d["worker"] for d in got.devices}
        assert all(w.startswith("tcp://127.0.0.1") for w in workers)


class DaskProcesses:
    """A dask scheduler and workers on 127.0.0.1, stopped at the end."""

    def __init__(self, tmp):
        self.tmp, self.procs, self.workers = tmp, [], {}
        self.file = tmp / "scheduler.json"
        self.procs.append(self._start("dask_scheduler", ["--host", "127.0.0.1", "--port", "0",
                                                         "--no-dashboard", "--scheduler-file",
                                                         str(self.file)], {}))
        try:
            self._wait(lambda: self._scheduler_address() is not None, "the scheduler")
        except BaseException:
            self.stop()
            raise
        self.address = self._scheduler_address()

    def _scheduler_address(self):
        """The scheduler file's address, or None while the file is missing or
        still being written (it appears empty before its JSON lands: a clean
        clone's run once read it in between)."""
        try:
            return json.loads(self.file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            return None

    def _start(self, command: str, args, env):
        """``dask scheduler`` / ``dask worker``, run as their modules with this Python."""
        return subprocess.Popen([sys.executable, "-m", f"distributed.cli.{command}"] + args,
                                env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def worker(self, name: str, dirs: list, delay: float = 0.0) -> None:
        env = {"SENSORQ_FLEET_DIRS": os.pathsep.join(map(str, dirs)),
               "SENSORQ_FLEET_DELAY_S": str(delay)}
        self.workers[name] = self._start("dask_worker", [
            "--scheduler-file", str(self.file), "--host", "127.0.0.1", "--nthreads", "1",
            "--no-nanny", "--no-dashboard", "--name", name], env)
        self.procs.append(self.workers[name])

    def wait_for(self, client, n: int) -> None:
        client.wait_for_workers(n, timeout=60)

    def _wait(self, ready, what, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not start")
            time.sleep(0.05)

    def kill(self, name: str) -> None:
        self.workers[name].send_signal(signal.SIGKILL)
        self.workers[name].wait(10)

    def stop(self) -> None:
        """Workers are killed (nothing of theirs needs saving), then the scheduler."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.kill()
            p.wait(10)


@pytest.fixture
def dask_procs(tmp_path):
    procs = DaskProcesses(tmp_path)
    yield procs
    procs.stop()


def test_a_real_scheduler_and_two_workers_each_with_its_caches(fleet_dir, dask_procs):
    root, pattern, answers = fleet_dir
    dask_procs.worker("wa", [root / "a"])
    dask_procs.worker("wb", [root / "b"])
    from distributed import Client
    with Client(dask_procs.address) as client:
        dask_procs.wait_for(client, 2)
        names = {w["name"]: a for a, w in client.scheduler_info()["workers"].items()}
        with sensorq.fleet(pattern, scheduler=dask_procs.address) as f:
            assert {d.device: d.workers for d in f.devices()} == {
                "dev-0": [names["wa"]], "dev-1": [names["wa"]],
                "dev-2": [names["wb"]], "dev-3": [names["wb"]]}
            for query, want in answers.items():
                got = f.query(query, engine=ENGINE)
                assert same(got, want), query
                ran = {d["device"]: d["worker"] for d in got.devices}
                assert ran == {"dev-0": names["wa"], "dev-1": names["wa"],
                               "dev-2": names["wb"], "dev-3": names["wb"]}


def run_in_thread(f, query):
    out = {}

    def target():
        try:
            out["result"] = f.query(query, engine=ENGINE)
        except Exception as exc:  # noqa: BLE001  (the test looks at it)
            out["error"] = exc
    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def test_a_dead_workers_tasks_go_to_another_that_holds_the_caches(fleet_dir, dask_procs):
    root, pattern, answers = fleet_dir
    dask_procs.worker("w1", [root], delay=1.0)
    dask_procs.worker("w2", [root], delay=1.0)
    from distributed import Client
    with Client(dask_procs.address) as client:
        dask_procs.wait_for(client, 2)
        with sensorq.fleet(pattern, scheduler=dask_procs.address) as f:
            thread, out = run_in_thread(f, "count where z > 2g by device")
            time.sleep(0.6)                 # every task is sleeping on its worker
            dask_procs.kill("w2")
            thread.join(60)
            assert not thread.is_alive() and "error" not in out, out.get("error")
            assert same(out["result"], answers["count where z > 2g by device"])
            assert {d["worker"] for d in out["result"].devices} == {
                a for a, w in client.scheduler_info()["workers"].items() if w["name"] == "w1"}


def test_a_dead_worker_that_alone_held_a_device_fails_the_query_naming_it(fleet_dir, dask_procs):
    root, pattern, _ = fleet_dir
    dask_procs.worker("wa", [root / "a"], delay=0.0)
    dask_procs.worker("wb", [root / "b"], delay=1.5)
    from distributed import Client
    with Client(dask_procs.address) as client:
        dask_procs.wait_for(client, 2)
        with sensorq.fleet(pattern, scheduler=dask_procs.address) as f:
            thread, out = run_in_thread(f, "count where z > 2g")
            time.sleep(1.0)
            dask_procs.kill("wb")
            started = time.monotonic()
            thread.join(60)
            assert not thread.is_alive() and time.monotonic() - started < 30
            assert "result" not in out
            error = out["error"]
            assert isinstance(error, FleetError) and error.device in ("dev-2", "dev-3")
            assert f"device {error.device}" in str(error) and "no answer without it" in str(error)


def test_a_cache_no_worker_holds_is_reported(fleet_dir, dask_procs):
    root, pattern, answers = fleet_dir
    dask_procs.worker("wa", [root / "a"])                 # nobody is told about root / "b"
    from distributed import Client
    with Client(dask_procs.address) as client:
        dask_procs.wait_for(client, 1)
        with sensorq.fleet(pattern, scheduler=dask_procs.address) as f:
            got = f.query("count where z > 2g by device", engine=ENGINE)
    assert list(got.columns["device"]) == ["dev-0", "dev-1"]
    assert set(got.missing) == {"dev-2", "dev-3"}
    assert all("no worker" in why for why in got.missing.values())
