"""Block export files (``.sqx``): the sealed blocks a device sends upstream,
as a gateway receives them, ready for ``sensorq sync FILE DEST``
(docs/fleet.md, "Export files").

```
offset  size  field
0       4     magic "SQX1"
4       4     header length H (u32)
8       4     CRC-32 of the header bytes
12      H     header: UTF-8 JSON (below)
12+H    ...   records, back to back: u32 length L, then one block of L bytes (§1, version 1 or 2)
```

The header: ``{"format": "sensorq-export", "version": 1, "device": NAME or
null, "labels": {...}, "streams": [Stream.to_json(), ...], "cursor": {STREAM:
{"after": SEQ or null, "missed": N}}}``.  Each stream's ``stream_id`` is the
one its blocks carry (a device's ``sq_stream_cfg.stream_id``); ``cursor``
records the export cursor the blocks were read with: the blocks with a
sequence number above ``after`` (``sq_ring_iter_after``), of which ``missed``
had already been evicted.  Blocks of a stream come in sequence order.

Every block carries its own CRC, so a reader trusts nothing it has not
verified: a file cut short (an interrupted transfer) gives its whole blocks
and says where it ends; a damaged block ends the file there too, as
``Reading a segment`` does (a later block after a hole would leave a silent
gap).  JSON and raw blocks only: nothing here is pickled.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..checksum import crc32
from ..codec.header import ALL_VERSIONS, parse_block
from ..errors import CorruptDataError, FormatVersionError, SensorqError
from ..schema import Stream
from ..store.manifest import check_device

MAGIC = b"SQX1"
FORMAT = "sensorq-export"
VERSION = 1
PREAMBLE = 12
MAX_HEADER = 16 << 20
MAX_BLOCK = 64 << 20


@dataclass
class ExportFile:
    """What an export file holds: its header and its verified blocks (bytes,
    with the stream each belongs to), plus where it stopped being readable."""
    path: Path
    device: str | None
    labels: dict
    streams: dict[int, Stream]                       # by the stream id blocks carry
    cursor: dict
    blocks: list[tuple[int, bytes]] = field(default_factory=list)   # (stream id, block)
    problem: str | None = None

    def stream_blocks(self, stream_id: int) -> list[bytes]:
        return [b for sid, b in self.blocks if sid == stream_id]


def write_export(path, streams, blocks, device: str | None = None, labels: dict | None = None,
                 cursor: dict | None = None) -> Path:
    """Write an export file atomically (a temp file, fsync, rename): ``streams``
    a list of Stream (with the ids the blocks carry), ``blocks`` bytes in
    order, ``cursor`` {stream name: {"after": seq, "missed": n}}."""
    path = Path(path)
    labels = dict(labels or {})
    check_device(device, labels)
    header = {"format": FORMAT, "version": VERSION, "device": device, "labels": labels,
              "streams": [s.to_json() for s in streams], "cursor": cursor or {}}
    raw = json.dumps(header, sort_keys=True).encode()
    parts = [MAGIC, len(raw).to_bytes(4, "little"), crc32(raw).to_bytes(4, "little"), raw]
    for block in blocks:
        parse_block(block, versions=ALL_VERSIONS)          # never ship a block that fails
        parts += [len(block).to_bytes(4, "little"), bytes(block)]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(b"".join(parts))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def is_export_file(path) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == MAGIC


def read_export(path) -> ExportFile:
    """Parse and verify an export file (SensorqError naming the file if its
    header is unusable; a bad or cut block ends it, in ``problem``)."""
    path = Path(path)
    data = path.read_bytes()
    header = _header(path, data)
    streams = {}
    try:
        for obj in header["streams"]:
            stream = Stream.from_json(obj)
            streams[stream.stream_id] = stream
        device, labels = header.get("device"), dict(header.get("labels") or {})
        check_device(device, labels)
        cursor = dict(header.get("cursor") or {})
    except (KeyError, TypeError, ValueError, SensorqError) as exc:
        raise CorruptDataError(f"{path}: the export header is not valid ({exc})") from None
    out = ExportFile(path, device, labels, streams, cursor)
    _read_blocks(out, data, PREAMBLE + int.from_bytes(data[4:8], "little"))
    return out


def _header(path: Path, data: bytes) -> dict:
    if data[:4] != MAGIC:
        raise CorruptDataError(f"{path}: not a sensorq export file (no SQX1 magic)")
    if len(data) < PREAMBLE:
        raise CorruptDataError(f"{path}: the export file is cut short in its preamble")
    size = int.from_bytes(data[4:8], "little")
    raw = data[PREAMBLE:PREAMBLE + size]
    crc = int.from_bytes(data[8:12], "little")
    if size > MAX_HEADER or len(raw) != size or crc32(raw) != crc:
        raise CorruptDataError(f"{path}: the export header is damaged (length or checksum)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptDataError(f"{path}: the export header is damaged ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CorruptDataError(f"{path}: not a sensorq export header")
    if header.get("version") != VERSION:
        raise FormatVersionError(f"{path}: export format version {header.get('version')!r}, this "
                                 f"sensorq reads version {VERSION}")
    return header


def _read_blocks(out: ExportFile, data: bytes, pos: int) -> None:
    last_seq: dict[int, int] = {}
    k = 0
    while pos < len(data):
        where = f"{out.path}: block {k} at offset {pos}"
        if pos + 4 > len(data):
            out.problem = f"{where}: the file ends inside its length (a cut transfer?)"
            return
        size = int.from_bytes(data[pos:pos + 4], "little")
        block = data[pos + 4:pos + 4 + size]
        if size > MAX_BLOCK or len(block) != size:
            out.problem = f"{where}: the file ends inside the block (a cut transfer?)"
            return
        try:
            info = parse_block(block, versions=ALL_VERSIONS)
        except SensorqError as exc:
            out.problem = f"{where}: {exc}"
            return
        if info.stream_id not in out.streams:
            out.problem = f"{where}: stream id {info.stream_id} is not in the file's header"
            return
        if info.seq <= last_seq.get(info.stream_id, -1):
            out.problem = f"{where}: sequence number {info.seq} is out of order"
            return
        last_seq[info.stream_id] = info.seq
        out.blocks.append((info.stream_id, block))
        pos += 4 + size
        k += 1


__all__ = ["ExportFile", "write_export", "read_export", "is_export_file"]
