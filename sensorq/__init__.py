"""sensorq: a query engine for sensor data that lives on the device that measured it."""
from .errors import *  # noqa: F401,F403  (the exception hierarchy is public API)
from .schema import Channel, Stream  # noqa: F401

__version__ = "0.1.0"
from .store import Cache, open  # noqa: E402,F401,A001  (after __version__: demo imports it)
from .fleet import fleet  # noqa: E402,F401  (sensorq.fleet(...): one query over many caches; no dask until it runs)
