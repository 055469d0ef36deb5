"""The crash-safe cache store: a ring of append-only segment files (docs/format.md §5)."""
from .blockindex import BlockIndex  # noqa: F401
from .cache import Cache, open_cache

open = open_cache  # noqa: A001  (sensorq.open / sensorq.store.open is the public name)

__all__ = ["BlockIndex", "Cache", "open", "open_cache"]
