"""``manifest.json``: the cache's settings and stream definitions.

Written atomically (temp file, fsync, rename, fsync of the directory), so a
crash leaves either the old or the new manifest, never a mix.

Version 2 adds two records of stream management (store/streams.py): the ids
of dropped streams, whose blocks stay in the segments until the ring evicts
them and are skipped silently, and per-stream floors, times before which a
stream's samples are hidden.  A manifest is written as version 1 while it
records neither, so caches that never used them stay readable by older
sensorq; one that does is version 2, which older sensorq refuses rather than
serve dropped or truncated data.  A cache may also name its device (``device``,
a string) and carry ``labels`` (string to string, such as site or model): the
keys are written only when set, so a manifest without them reads unchanged by
older sensorq (which ignores them).  Version 3 marks a cache with a float
channel: its blocks may be ALP-coded (format.md §3), which sensorq before
ALP would read as corrupt blocks; it refuses version 3 instead.  Version 4
marks a cache with a stream of the compact codec, whose blocks may hold
split Rice mini-blocks (codec bits 6 and 7, format.md §3), which sensorq
before them would read as corrupt.  A writer opening an older manifest that
needs a newer version rewrites it first.  The JSON carries
a CRC-32 of its own canonical form: a flipped bit that still parses (a changed
digit in a scale, say) is caught instead of silently changing answers.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..checksum import crc32
from ..errors import CorruptDataError, FormatVersionError, SchemaError
from ..schema import Stream
from . import fileio

MANIFEST_NAME = "manifest.json"
MODELS_DIR = "models"            # the cache's models, one NAME.sqm file each (docs/models.md)
MANIFEST_FORMAT = "sensorq-cache"
PLAIN_VERSION = 1                  # written while no stream was dropped or truncated
MANAGED_VERSION = 2                # a stream was dropped or truncated
FLOAT_VERSION = 3                  # a stream has a float channel (ALP-coded blocks)
SPLIT_VERSION = 4                  # a stream has the compact codec (split Rice mini-blocks)
MANIFEST_VERSION = SPLIT_VERSION   # the newest version this sensorq writes and reads
READ_VERSIONS = (PLAIN_VERSION, MANAGED_VERSION, FLOAT_VERSION, SPLIT_VERSION)


@dataclass
class Manifest:
    """The cache's settings and stream definitions, as manifest.json holds them."""
    capacity: int
    retention_ns: int | None
    compression: str
    streams: dict[str, Stream] = field(default_factory=dict)
    next_stream_id: int = 1
    dropped: list[int] = field(default_factory=list)      # ids of dropped streams
    floors: dict[int, int] = field(default_factory=dict)  # stream id -> hide samples before (ns)
    device: str | None = None                              # the device that measured the data
    labels: dict[str, str] = field(default_factory=dict)  # e.g. {"site": "north", "model": "P7"}
    stored_version: int = 0                                # as read from the file (0: not yet written)

    def version(self) -> int:
        """The oldest version that can say what this manifest says."""
        if any(s.codec == "compact" for s in self.streams.values()):
            return SPLIT_VERSION
        if any(c.dtype in ("float32", "float64") for s in self.streams.values() for c in s.channels):
            return FLOAT_VERSION
        return MANAGED_VERSION if self.dropped or self.floors else PLAIN_VERSION

    def to_json(self) -> dict:
        body = {"format": MANIFEST_FORMAT, "version": self.version(), "capacity": self.capacity,
                "retention_ns": self.retention_ns, "compression": self.compression,
                "next_stream_id": self.next_stream_id,
                "streams": [s.to_json() for s in self.streams.values()]}
        if self.dropped or self.floors:
            body.update(dropped=sorted(self.dropped),
                        floors={str(k): v for k, v in sorted(self.floors.items())})
        if self.device is not None:
            body["device"] = self.device
        if self.labels:
            body["labels"] = dict(sorted(self.labels.items()))
        return body

    def stream_by_id(self) -> dict[int, Stream]:
        return {s.stream_id: s for s in self.streams.values()}


DEVICE_MAX_CHARS = 128
_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_device(device, labels) -> None:
    """A device name is text of 1..128 characters without control characters;
    labels map names (identifiers, not "device": fleet queries group ``by`` them)
    to such text.  SchemaError otherwise."""
    for what, text in [("device name", device)] + [(f"label {k!r}", v) for k, v in labels.items()]:
        if text is None and what == "device name":
            continue
        if not isinstance(text, str) or not 0 < len(text) <= DEVICE_MAX_CHARS or _CONTROL.search(text):
            raise SchemaError(f"a {what} is text of 1 to {DEVICE_MAX_CHARS} characters without "
                              f"control characters, not {text!r}")
    for key in labels:
        if not isinstance(key, str) or not _LABEL_KEY.match(key) or key.lower() == "device":
            raise SchemaError(f"a label name is an identifier (letters, digits, _) other than "
                              f"'device', not {key!r}")


def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def write_manifest(directory: Path, manifest: Manifest) -> None:
    body = manifest.to_json()
    text = json.dumps({**body, "crc32": crc32(_canonical(body))}, indent=2) + "\n"
    fileio.replace_file(directory / MANIFEST_NAME, text.encode("utf-8"))
    manifest.stored_version = body["version"]


def read_manifest(directory: Path) -> Manifest:
    """Parse and check ``manifest.json``; CorruptDataError naming the path if it is damaged."""
    path = directory / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CorruptDataError(f"{path}: the cache manifest is missing") from None
    try:
        obj = json.loads(raw.decode("utf-8"))
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        crc = obj.pop("crc32", None)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptDataError(f"{path}: the cache manifest is damaged ({exc})") from None
    if crc != crc32(_canonical(obj)):
        raise CorruptDataError(f"{path}: the cache manifest is damaged (checksum mismatch)")
    return _manifest_from_json(obj, path)


def _manifest_from_json(obj: dict, path: Path) -> Manifest:
    if obj.get("format") != MANIFEST_FORMAT:
        raise CorruptDataError(f"{path}: not a sensorq cache manifest")
    if obj.get("version") not in READ_VERSIONS:
        raise FormatVersionError(f"{path}: cache format version {obj.get('version')!r}, "
                                 f"this sensorq reads versions {PLAIN_VERSION} to {MANIFEST_VERSION}")
    try:
        streams = [Stream.from_json(s) for s in obj["streams"]]
        manifest = Manifest(int(obj["capacity"]), obj["retention_ns"], str(obj["compression"]),
                            {s.name: s for s in streams}, int(obj["next_stream_id"]),
                            [int(i) for i in obj.get("dropped", [])],
                            {int(k): int(v) for k, v in obj.get("floors", {}).items()},
                            obj.get("device"), dict(obj.get("labels", {})), int(obj["version"]))
        check_device(manifest.device, manifest.labels)
    except (KeyError, TypeError, ValueError, AttributeError, SchemaError) as exc:
        raise CorruptDataError(f"{path}: the cache manifest is not valid ({exc})") from None
    return manifest
