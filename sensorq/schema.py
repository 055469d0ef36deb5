"""Streams and channels: what a cache holds, independent of how it is stored.

A *stream* is one or more channels sampled together: they share one timestamp
column.  A *channel* has a storage type, a physical unit and an optional scale
(``physical = raw * scale``), so that raw ADC integers can be stored as they come
and the query layer can still compare them with ``2g``.

A *categorical* channel (machine states, activity labels) is an integer
channel whose stored code k means ``categories[k]``: the dictionary lives in the
stream's definition, the blocks hold small integers.  Codes never change: a
dictionary only grows at its end (``Cache.add_categories``).

Timestamps are int64 nanoseconds since the Unix epoch.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from collections import Counter
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
CATEGORICAL_DTYPES = ("int8", "int16", "int32")
MAX_CATEGORY_CHARS = 1024      # as long as a CSV cell may be (ingest.MAX_CELL_BYTES)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SchemaError(f"{kind} name {name!r} is not valid: use letters, digits and _, "
                          f"starting with a letter or _, at most 64 characters")
    return name


@dataclass(frozen=True)
class Channel:
    """One channel of a stream: its name, stored type, unit, scale and categories."""
    name: str
    dtype: str = "float64"
    unit: str = ""
    scale: float | None = None  # physical value = raw * scale (integer channels only)
    categories: tuple[str, ...] | None = None   # stored code k means categories[k]

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
        if self.categories is not None:
            object.__setattr__(self, "categories", self._checked_categories())

    def _checked_categories(self) -> tuple[str, ...]:
        """The dictionary as a tuple, after the rules that keep every name
        writable in a query and every code storable."""
        where = f"categorical channel {self.name!r}"
        if isinstance(self.categories, str):
            raise SchemaError(f"{where}: categories is a list of names, not one string")
        names = tuple(self.categories)
        if self.dtype not in CATEGORICAL_DTYPES:
            raise SchemaError(f"{where}: codes are stored as {', '.join(CATEGORICAL_DTYPES)}, "
                              f"not {self.dtype}")
        if self.unit or self.scale is not None:
            raise SchemaError(f"{where}: names have no unit or scale")
        for name in names:
            check_category_name(self.name, name)
        repeated = sorted(n for n, k in Counter(names).items() if k > 1)
        if repeated:
            raise SchemaError(f"{where}: names repeat: {', '.join(map(repr, repeated))}")
        capacity = int(np.iinfo(self.dtype).max) + 1
        if len(names) > capacity:
            raise SchemaError(f"{where}: {len(names):,} names, but {self.dtype} codes hold at most "
                              f"{capacity:,}")
        return names

    @property
    def is_categorical(self) -> bool:
        return self.categories is not None

    @functools.cached_property
    def _codes(self) -> dict[str, int]:
        # cached_property writes the instance __dict__ directly, which a frozen
        # dataclass allows; it is not a field, so equality and hashing ignore it.
        return {name: code for code, name in enumerate(self.categories or ())}

    def code_of(self, name: str) -> int:
        """The stored code of a category name; SchemaError listing the known names."""
        self._require_categorical()
        code = self._codes.get(name)
        if code is None:
            raise SchemaError(f"{name!r} is not a category of channel {self.name!r}; "
                              f"known: {known_names(self.categories)}")
        return code

    def name_of(self, code: int) -> str:
        """The category name a stored code means."""
        self._require_categorical()
        if isinstance(code, (bool, np.bool_)) or not isinstance(code, (int, np.integer)) \
                or not 0 <= int(code) < len(self.categories):
            raise SchemaError(f"channel {self.name!r}: code {code!r} names no category (it has "
                              f"{len(self.categories)}: codes 0 to {len(self.categories) - 1})")
        return self.categories[int(code)]

    def _require_categorical(self) -> None:
        if self.categories is None:
            raise SchemaError(f"channel {self.name!r} is not categorical (it holds numbers)")

    def same_codes(self, other: "Channel") -> bool:
        """The same channel, with dictionaries that agree on every code they both
        have (one is the other grown at its end, or they are equal)."""
        if self.is_categorical != other.is_categorical:
            return False
        if not self.is_categorical:
            return self == other
        shorter, longer = sorted((self.categories, other.categories), key=len)
        return ((self.name, self.dtype, self.unit, self.scale) == (other.name, other.dtype, other.unit,
                                                                   other.scale)
                and longer[:len(shorter)] == shorter)

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
        out = {"name": self.name, "dtype": self.dtype, "unit": self.unit, "scale": self.scale}
        if self.categories is not None:          # absent, not null: old manifests read unchanged
            out["categories"] = list(self.categories)
        return out

    @classmethod
    def from_json(cls, obj: dict) -> "Channel":
        categories = obj.get("categories")
        if categories is not None and not isinstance(categories, list):
            raise SchemaError(f"channel {obj.get('name')!r}: categories must be a list of names")
        return cls(obj["name"], obj["dtype"], obj.get("unit", ""), obj.get("scale"),
                   None if categories is None else tuple(categories))


def check_category_name(channel: str, name) -> str:
    """A category name is any text a query can quote: not empty, no control
    characters (a query is one line), no blanks at its ends (they would be
    invisible in results), at most MAX_CATEGORY_CHARS characters."""
    if not isinstance(name, str):
        raise SchemaError(f"categorical channel {channel!r}: a name is text, not {name!r}")
    if not name or name[0] == " " or name[-1] == " " or _CONTROL_RE.search(name) \
            or len(name) > MAX_CATEGORY_CHARS:
        raise SchemaError(f"categorical channel {channel!r}: {name[:80]!r} is not a valid name: "
                          f"use 1 to {MAX_CATEGORY_CHARS} characters without control characters "
                          f"or blanks at either end")
    return name


def known_names(names, limit: int = 20) -> str:
    """A dictionary for an error message (the first ``limit`` names)."""
    if not names:
        return "none yet"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names):,} in all)" if len(names) > limit else "")


@dataclass(frozen=True)
class Stream:
    """A stream: its channels, nominal rate, block size, largest gap and id."""
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

    def with_categories(self, channel: str, names) -> tuple["Stream", list[int]]:
        """This stream with ``names`` added to a categorical channel's dictionary
        (those it lacks, at its end, in the order given), and the code of every
        name.  Returns ``self`` itself when no name is new."""
        old = self.channel(channel)
        if not old.is_categorical:
            raise SchemaError(f"stream {self.name!r}: channel {channel!r} is not categorical, so it "
                              f"has no names to add to")
        if isinstance(names, str):
            raise SchemaError(f"add_categories takes a list of names, not the string {names!r}")
        names = list(names)
        new = list(dict.fromkeys(n for n in names if n not in old._codes))
        grown = old if not new else dataclasses.replace(old, categories=old.categories + tuple(new))
        stream = self if not new else dataclasses.replace(
            self, channels=tuple(grown if c is old else c for c in self.channels))
        return stream, [grown.code_of(n) for n in names]

    def to_json(self) -> dict:
        return {"name": self.name, "stream_id": self.stream_id, "rate_hz": self.rate_hz,
                "block_samples": self.block_samples, "max_gap_ns": self.max_gap_ns,
                "codec": self.codec, "channels": [c.to_json() for c in self.channels]}

    @classmethod
    def from_json(cls, obj: dict) -> "Stream":
        return cls(obj["name"], tuple(Channel.from_json(c) for c in obj["channels"]),
                   obj.get("rate_hz"), obj.get("block_samples", DEFAULT_BLOCK_SAMPLES),
                   obj.get("max_gap_ns"), obj.get("stream_id", 0), obj.get("codec", "compact"))
