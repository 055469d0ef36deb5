"""Streams and channels: what a cache holds, independent of how it is stored.

A *stream* is one or more channels sampled together: they share one timestamp
column.  A *channel* has a storage type, a physical unit and an optional scale
(``physical = raw * scale``), so that raw ADC integers can be stored as they come
and the query layer can still compare them with ``2g``.

Timestamps are int64 nanoseconds since the Unix epoch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .errors import SchemaError
from .units import Unit, parse_unit

# Storage type codes as written in the block format (docs/format.md, "dtype").
DTYPE_CODES: dict[str, int] = {"int8": 1, "int16": 2, "int32": 3, "int64": 4, "float32": 5, "float64": 6}
DTYPE_BY_CODE: dict[int, str] = {code: name for name, code in DTYPE_CODES.items()}

DEFAULT_BLOCK_SAMPLES = 4096
MAX_BLOCK_SAMPLES = 65536

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SchemaError(f"{kind} name {name!r} is not valid: use letters, digits and _, "
                          f"starting with a letter or _, at most 64 characters")
    return name


@dataclass(frozen=True)
class Channel:
    name: str
    dtype: str = "float64"
    unit: str = ""
    scale: float | None = None  # physical value = raw * scale (integer channels only)

    def __post_init__(self) -> None:
        check_name("channel", self.name)
        if self.dtype not in DTYPE_CODES:
            raise SchemaError(f"channel {self.name!r}: storage type {self.dtype!r} is not one of "
                              f"{', '.join(DTYPE_CODES)}")
        parse_unit(self.unit)
        if self.scale is not None:
            if not self.is_integer:
                raise SchemaError(f"channel {self.name!r}: a scale applies to integer channels only")
            if not (np.isfinite(self.scale) and self.scale != 0):
                raise SchemaError(f"channel {self.name!r}: scale must be a finite non-zero number")

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def dtype_code(self) -> int:
        return DTYPE_CODES[self.dtype]

    @property
    def is_integer(self) -> bool:
        return self.dtype.startswith("int")

    @property
    def unit_info(self) -> Unit:
        return parse_unit(self.unit)

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "unit": self.unit, "scale": self.scale}

    @classmethod
    def from_json(cls, obj: dict) -> "Channel":
        return cls(obj["name"], obj["dtype"], obj.get("unit", ""), obj.get("scale"))


@dataclass(frozen=True)
class Stream:
    name: str
    channels: tuple[Channel, ...]
    rate_hz: float | None = None          # nominal rate, informative
    block_samples: int = DEFAULT_BLOCK_SAMPLES
    max_gap_ns: int | None = None         # a value holds at most this long (duration, twa)
    stream_id: int = 0                    # assigned by the cache, written into every block
    codec: str = "compact"                # "compact" or "fast" (no Rice, no dictionary)
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_name("stream", self.name)
        object.__setattr__(self, "channels", tuple(self.channels))
        if not self.channels:
            raise SchemaError(f"stream {self.name!r} has no channels")
        names = [c.name for c in self.channels]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SchemaError(f"stream {self.name!r}: channel names repeat: {', '.join(sorted(dup))}")
        if not (1 <= self.block_samples <= MAX_BLOCK_SAMPLES):
            raise SchemaError(f"stream {self.name!r}: block_samples must be 1..{MAX_BLOCK_SAMPLES}")
        if self.codec not in ("compact", "fast"):
            raise SchemaError(f"stream {self.name!r}: codec must be 'compact' or 'fast'")
        if self.rate_hz is not None and not (self.rate_hz > 0):
            raise SchemaError(f"stream {self.name!r}: rate_hz must be positive")

    def channel(self, name: str) -> Channel:
        for c in self.channels:
            if c.name == name:
                return c
        raise SchemaError(f"stream {self.name!r} has no channel {name!r}; "
                          f"it has {', '.join(c.name for c in self.channels)}")

    def channel_index(self, name: str) -> int:
        return self.channels.index(self.channel(name))

    def to_json(self) -> dict:
        return {"name": self.name, "stream_id": self.stream_id, "rate_hz": self.rate_hz,
                "block_samples": self.block_samples, "max_gap_ns": self.max_gap_ns,
                "codec": self.codec, "channels": [c.to_json() for c in self.channels]}

    @classmethod
    def from_json(cls, obj: dict) -> "Stream":
        return cls(obj["name"], tuple(Channel.from_json(c) for c in obj["channels"]),
                   obj.get("rate_hz"), obj.get("block_samples", DEFAULT_BLOCK_SAMPLES),
                   obj.get("max_gap_ns"), obj.get("stream_id", 0), obj.get("codec", "compact"))
