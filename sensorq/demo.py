"""The built-in demo cache: deterministic, made on first use.

Four streams and a model, chosen so every example in the README and
docs/query.md has data:

* ``imu`` — a 3-axis accelerometer at 1 kHz for 30 minutes (int16, mg) with
  occasional shocks above 2 g, and ``accel``, the vector magnitude many IMUs
  report alongside the axes.
* ``env`` — a temperature channel at 1 Hz for 24 hours (int16, 0.01 degC steps).
* ``gait`` — the real Daphnet recording shipped in ``sensorq/data`` (nine
  accelerometer axes in mg at 64 Hz; CC BY 4.0, see ``data/ATTRIBUTION.md``).
* ``motions`` — the real BasicMotions smartwatch recordings (accelerometer and
  gyroscope at 10 Hz, 80 recordings of 10 s with their activity, the archive's
  train/test split and the recording number; see ``data/ATTRIBUTION.md``), and
  ``motion``, the model shipped beside it (``data/motion.sqm``): a quantized
  forest of 3 trees of depth 3 trained on the train split by
  :func:`train_demo_model`, so ``find episodes where motion == Running`` works
  on a fresh install without scikit-learn.

The same seed gives the same cache on every machine, so answers in the docs
and tests can be recomputed by anyone.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from . import __version__
from .schema import Channel

SEED = 20261124
END_NS = np.datetime64("2026-11-24T12:00:00", "ns").astype(np.int64).item()
IMU_RATE_HZ = 1000
IMU_SECONDS = 30 * 60
ENV_SECONDS = 24 * 3600
DATA = Path(__file__).parent / "data"
DAPHNET_CSV = DATA / "daphnet_S06R02E0.csv"
MOTIONS_CSV = DATA / "basic_motions.csv"
MOTION_MODEL = DATA / "motion.sqm"
REVISION = 3          # of the demo's contents: a new revision is built beside an older one
                      # (3: its blocks may hold FRAMES sections, which sensorq before them refuses)


def demo_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sensorq" / f"demo-{__version__}-r{REVISION}"


def train_demo_model(cache):
    """How data/motion.sqm was made (needs scikit-learn): the ``motions``
    stream's train split, 2 s windows every 500 ms that stay inside one
    recording, accuracy measured on the test split."""
    from .models.registry import ModelRegistry
    return ModelRegistry(cache).train("motion", "motions", "activity", kind="forest", trees=3,
                                      depth=3, where="split == train", test_where="split == test",
                                      group="case")


def imu_samples(rng: np.random.Generator):
    """Gravity on z, sensor noise, a slow sway, and ~40 short shocks of 2–6 g."""
    n = IMU_RATE_HZ * IMU_SECONDS
    start = END_NS - IMU_SECONDS * 1_000_000_000
    t = start + np.arange(n, dtype=np.int64) * (1_000_000_000 // IMU_RATE_HZ)
    sway = 80.0 * np.sin(np.arange(n) * (2 * np.pi / 7000.0))
    x = rng.normal(0, 12, n) + sway
    y = rng.normal(0, 12, n) - 0.5 * sway
    z = 1000.0 + rng.normal(0, 15, n)
    for at in rng.choice(n - 200, size=40, replace=False):
        length = int(rng.integers(20, 120))
        peak = rng.uniform(2000, 6000)
        envelope = peak * np.sin(np.linspace(0, np.pi, length))
        z[at:at + length] += envelope
        x[at:at + length] += 0.3 * envelope * rng.choice([-1, 1])
    axes = [np.clip(np.rint(a), -32768, 32767).astype(np.int16) for a in (x, y, z)]
    accel = np.sqrt(sum(a.astype(np.float64) ** 2 for a in axes))
    axes.append(np.clip(np.rint(accel), 0, 32767).astype(np.int16))
    return t, axes


def env_samples(rng: np.random.Generator):
    """A daily temperature cycle between ~18 and ~31 degC, in 0.01 degC steps."""
    n = ENV_SECONDS
    t = END_NS - ENV_SECONDS * 1_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000_000
    hours = np.arange(n) / 3600.0
    temp = 24.5 + 6.5 * np.sin((hours - 9.0) * (2 * np.pi / 24.0)) + rng.normal(0, 0.05, n)
    return t, [np.rint(temp * 100).astype(np.int16)]


def build_demo(path: Path) -> Path:
    """Write the demo cache to ``path`` (replacing a half-built one)."""
    from .ingest import ingest_csv
    from .store import open as open_cache

    tmp = path.with_name(path.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(SEED)
    with open_cache(tmp, create=True, capacity="256MB") as cache:
        cache.create_stream("imu", [Channel(c, "int16", "mg") for c in ("x", "y", "z", "accel")],
                            rate_hz=IMU_RATE_HZ)
        t, cols = imu_samples(rng)
        cache.append("imu", t, cols)
        cache.create_stream("env", [Channel("temp", "int16", "degC", scale=0.01)], rate_hz=1.0)
        t, cols = env_samples(rng)
        cache.append("env", t, cols)
        ingest_csv(cache, DAPHNET_CSV, stream="gait", units={"*": "mg"},
                   exclude=("is_anomaly",))
        ingest_csv(cache, MOTIONS_CSV, stream="motions")
        cache.flush()
        from .models.registry import ModelRegistry
        ModelRegistry(cache).import_file(MOTION_MODEL, "motion")
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return path


def ensure_demo() -> Path:
    """The demo cache's path, building it first if it is not there yet."""
    path = demo_path()
    if not (path / "manifest.json").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        build_demo(path)
    return path
