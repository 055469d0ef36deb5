"""The block decoders compiled without numba's reference counting
(jitcache.cached(refcounted=False)) leak nothing and answer as before.

The kernels that call them allocate their working arrays once per chunk of
blocks and hand them down; the decoders themselves allocate nothing (numba
refuses to compile an allocation there).  numba's own allocation statistics
(NUMBA_NRT_STATS) count every array its compiled code allocates and frees:
over repeated queries of each kind that reaches the decoders the two counts
must stay equal, and each answer must match numpy over the same samples."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import sensorq
from sensorq.schema import Channel

ROOT = Path(__file__).resolve().parents[1]
RATE_NS = 1_000_000          # 1 kHz
SAMPLES = 40_000

# (query, what numpy computes over t, x, y, z, temp) — None: only the balance is checked
QUERIES = [
    ("count where z > 2g", lambda d: int((d["z"] > 2000).sum())),
    ("count where x > 0mg", lambda d: int((d["x"] > 0).sum())),
    ("count where (x > 50mg or y > 50mg) and z < 1000mg",
     lambda d: int((((d["x"] > 50) | (d["y"] > 50)) & (d["z"] < 1000)).sum())),
    ("max mag(x, y, z)", lambda d: float(np.sqrt(d["x"].astype(float) ** 2 + d["y"].astype(float) ** 2
                                                 + d["z"].astype(float) ** 2).max())),   # mg
    ("count where temp > 21.5", lambda d: int((d["temp"] > 21.5).sum())),
    ("avg z by 10s", None),
    ("std x by 10s", None),
    ("percentile(99) z by 10s", None),
    ("median x", None),
    ("top 5 z", None),
    ("find episodes where z > 2g for >= 5ms", None),
]


def _data():
    rng = np.random.default_rng(3)
    t = np.arange(SAMPLES, dtype=np.int64) * RATE_NS
    sway = 60 * np.sin(np.arange(SAMPLES) * (2 * np.pi / 3000))
    x = np.rint(rng.normal(0, 12, SAMPLES) + sway).astype(np.int16)
    y = np.rint(rng.normal(0, 12, SAMPLES) - sway / 2).astype(np.int16)
    z = np.rint(1000 + rng.normal(0, 15, SAMPLES)).astype(np.int16)
    z[5000:5040] += 2500
    z[31000:31100] += 1800
    temp = np.round(21 + np.cumsum(rng.integers(-1, 2, SAMPLES)) * 0.01, 2).astype(np.float64)
    return {"t": t, "x": x, "y": y, "z": z, "temp": temp}


def _make_cache(path: Path, data) -> None:
    with sensorq.open(path, create=True) as c:
        c.create_stream("imu", [Channel("x", "int16", unit="mg"), Channel("y", "int16", unit="mg"),
                                Channel("z", "int16", unit="mg"), Channel("temp", "float64")],
                        block_samples=1024)
        c.append("imu", data["t"], {k: data[k] for k in ("x", "y", "z", "temp")})


_CHILD = textwrap.dedent("""
    import gc, json, sys
    import sensorq
    from numba.core.runtime import rtsys
    cache = sensorq.open(sys.argv[1], readonly=True)
    out = []
    for text in json.loads(sys.argv[2]):
        first = cache.query(text, engine="compiled")
        cache.query(text, engine="compiled")
        gc.collect()
        before = rtsys.get_allocation_stats()
        for _ in range(3):
            cache.query(text, engine="compiled")
        gc.collect()
        after = rtsys.get_allocation_stats()
        out.append({"query": text, "value": first.value,
                    "alloc": after.alloc - before.alloc, "free": after.free - before.free})
    print(json.dumps(out))
""")


def test_decoders_without_reference_counts_leak_nothing(tmp_path):
    data = _data()
    path = tmp_path / "c"
    _make_cache(path, data)
    env = dict(os.environ, NUMBA_NRT_STATS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), json.dumps([q for q, _ in QUERIES])],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    allocated = 0
    for (text, reference), got in zip(QUERIES, results):
        assert got["alloc"] == got["free"], f"{text}: numba allocated {got['alloc']}, freed {got['free']}"
        allocated += got["alloc"]
        if reference is not None:
            expected = reference(data)
            if isinstance(expected, float):
                assert abs(got["value"] - expected) <= 1e-9 * max(1.0, abs(expected)), text
            else:
                assert got["value"] == expected, text
    assert allocated > 0        # the statistics were on: the kernels' working arrays were counted
