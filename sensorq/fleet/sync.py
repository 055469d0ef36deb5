"""``sensorq sync SOURCE DEST``: copy the sealed blocks DEST lacks from SOURCE
(a cache directory, or an export file of a device's blocks: export.py) into
the cache DEST, without decoding or re-encoding a sample (docs/fleet.md).

What DEST lacks is found from DEST's own newest block of each stream: sync
looks for a block with the same bytes in SOURCE (blocks.block_key: all but
the stream id, sequence number and CRC) and copies what follows it.  When
that block is not in SOURCE (a first sync, or SOURCE evicted it), it copies
SOURCE's blocks that start at or after DEST's newest sample; older ones are
already in DEST (checked, block by block) or cannot be added after newer
data, and are reported.  Nothing else records progress, so there is nothing
to get out of step: a run killed at any moment leaves DEST with a prefix of
whole batches (the store's commit records), and the next run goes on from
DEST's newest block.  Running it twice copies nothing the second time.

Sequence numbers: a copied block keeps SOURCE's when they follow DEST's
(the usual case: device → gateway → server keep them end to end), otherwise
they are shifted by a constant, so that a break in SOURCE's numbering - the
blocks a device evicted before they were sent - stays a break in DEST's,
which ``info`` and queries report as missing data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SchemaError, SensorqError, StorageError
from ..schema import Stream
from .blocks import block_key, to_version1
from .export import is_export_file, read_export

BATCH_BYTES = 4 << 20          # blocks written per batch (one commit record each)


@dataclass
class StreamSync:
    """What sync did to one stream."""
    name: str
    created: bool = False
    blocks: int = 0                 # copied
    samples: int = 0
    bytes: int = 0
    t_first: int | None = None
    t_last: int | None = None
    already: int = 0                # SOURCE blocks DEST already held
    refused: int = 0                # older than DEST's newest sample and not in DEST
    missing: int = 0                # sequence numbers skipped: blocks SOURCE no longer had

    def describe(self) -> str:
        from ..store.prepare import iso
        head = f"stream {self.name}" + (" (created)" if self.created else "")
        if self.blocks:
            text = (f"{head}: copied {self.blocks} block{'s' if self.blocks != 1 else ''}, "
                    f"{self.samples:,} samples, {self.bytes:,} bytes, "
                    f"{iso(self.t_first)} .. {iso(self.t_last)}")
        else:
            text = f"{head}: nothing to copy"
        notes = []
        if self.already:
            notes.append(f"{self.already} already there")
        if self.missing:
            notes.append(f"{self.missing} block{'s' if self.missing != 1 else ''} missing: evicted "
                         f"at the source before they could be synced")
        if self.refused:
            notes.append(f"{self.refused} block{'s' if self.refused != 1 else ''} not copied: "
                         f"older than DEST's newest sample and not in DEST")
        return text + (f" ({'; '.join(notes)})" if notes else "")


@dataclass
class SyncReport:
    source: str
    dest: str
    device: str | None
    streams: list[StreamSync] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def blocks(self) -> int:
        return sum(s.blocks for s in self.streams)

    def describe(self) -> str:
        lines = [f"sync {self.source} -> {self.dest}"
                 + (f" (device {self.device})" if self.device else "")]
        lines += ["  " + s.describe() for s in self.streams]
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"source": self.source, "dest": self.dest, "device": self.device,
                "blocks": self.blocks, "streams": [vars(s) for s in self.streams],
                "problems": list(self.problems)}


# --- sources ------------------------------------------------------------------------

class _Blocks:
    """One stream's sealed blocks in a source: headers as arrays, bytes on demand."""

    def __init__(self, seq, t_first, t_last, n_samples, fetch):
        self.seq, self.t_first, self.t_last = seq, t_first, t_last
        self.n_samples = n_samples
        self._fetch = fetch

    def __len__(self) -> int:
        return len(self.seq)

    def raw(self, i: int) -> bytes:
        return self._fetch(int(i))


class CacheSource:
    def __init__(self, path: Path):
        from ..store import open as open_cache
        self.cache = open_cache(path, readonly=True)
        self.device, self.labels = self.cache.device, self.cache.labels
        self.streams = self.cache.streams
        self.capacity = self.cache.capacity
        self.problems = list(self.cache.info()["problems"])

    def blocks(self, name: str) -> _Blocks:
        index = self.cache.blocks(name)
        return _Blocks(index.seq, index.t_first, index.t_last, index.n_samples,
                       lambda i: bytes(index.raw(i)))

    def close(self) -> None:
        self.cache.close()


class FileSource:
    def __init__(self, path: Path):
        self.file = read_export(path)
        self.device, self.labels = self.file.device, self.file.labels
        self.streams = {s.name: s for s in self.file.streams.values()}
        self.capacity = None
        self.problems = [self.file.problem] if self.file.problem else []
        for name, c in self.file.cursor.items():
            if c.get("missed"):
                self.problems.append(f"stream {name}: the device had evicted {c['missed']} blocks "
                                     f"after seq {c.get('after')} before they were exported")

    def blocks(self, name: str) -> _Blocks:
        from ..codec.header import parse_block
        blocks = [to_version1(b) for b in self.file.stream_blocks(self.streams[name].stream_id)]
        infos = [parse_block(b) for b in blocks]
        arr = lambda f: np.array([getattr(i, f) for i in infos], np.int64)
        return _Blocks(arr("seq"), arr("t_first"), arr("t_last"), arr("n_samples"),
                       lambda i: blocks[i])

    def close(self) -> None:
        pass


def open_source(path) -> CacheSource | FileSource:
    path = Path(path)
    if is_export_file(path):
        return FileSource(path)
    if (path / "manifest.json").exists():
        return CacheSource(path)
    raise StorageError(f"{path} is neither a sensorq cache directory nor a block export file")


# --- the sync --------------------------------------------------------------------------

def sync(source, dest, *, any_device: bool = False, capacity=None,
         batch_bytes: int = BATCH_BYTES, on_batch=None) -> SyncReport:
    """Copy what DEST lacks from SOURCE (module docstring); returns what it did.
    DEST is created when missing (with SOURCE's device and labels).
    ``any_device``: allow SOURCE of another device than DEST's.  ``on_batch``:
    called after each batch is stored (progress; the tests kill there)."""
    source, dest = Path(source), Path(dest)
    if dest.exists() and source.exists() and dest.resolve() == source.resolve():
        raise SensorqError(f"sync: SOURCE and DEST are the same cache ({dest})")
    src = open_source(source)
    try:
        with _open_dest(dest, src, capacity, any_device) as cache:
            report = SyncReport(str(source), str(dest), cache.device, problems=list(src.problems))
            for name in sorted(src.streams):
                report.streams.append(_sync_stream(cache, src, name, batch_bytes, on_batch))
            cache.flush()
    finally:
        src.close()
    return report


def _open_dest(dest: Path, src, capacity, any_device: bool):
    from ..store import open as open_cache
    create = not (dest / "manifest.json").exists()
    if capacity is None and create:
        capacity = src.capacity                  # a new DEST holds what SOURCE holds
    cache = open_cache(dest, create=create, capacity=capacity)
    try:
        _adopt_device(cache, src, any_device)
    except BaseException:
        cache.close()
        raise
    return cache


def _adopt_device(cache, src, any_device: bool) -> None:
    """DEST takes SOURCE's device name and the labels it lacks; data of one
    device is not filed under another unless ``any_device``."""
    if src.device is not None and cache.device is not None and src.device != cache.device \
            and not any_device:
        raise SchemaError(f"sync: SOURCE holds device {src.device!r} and DEST {cache.path} device "
                          f"{cache.device!r}; sync each device into its own cache (or pass "
                          f"--any-device to mix them)")
    missing = {k: v for k, v in src.labels.items() if k not in cache.labels}
    if (cache.device is None and src.device is not None) or missing:
        cache.set_device(src.device if cache.device is None else None, {**cache.labels, **missing})


def _dest_stream(cache, stream: Stream) -> bool:
    """Make DEST's stream like SOURCE's; True if it was created."""
    existing = cache.streams.get(stream.name)
    try:
        cache.create_stream(stream.name, stream.channels, stream.rate_hz, stream.block_samples,
                            stream.max_gap_ns, stream.codec)
    except SchemaError:
        have = ", ".join(f"{c.name} {c.dtype} {c.unit or '-'}" for c in existing.channels)
        want = ", ".join(f"{c.name} {c.dtype} {c.unit or '-'}" for c in stream.channels)
        raise SchemaError(f"sync: stream {stream.name!r} differs between SOURCE ({want}; "
                          f"{stream.block_samples} samples a block, codec {stream.codec}) and DEST "
                          f"{cache.path} ({have}; {existing.block_samples} samples a block, codec "
                          f"{existing.codec}); nothing of it was copied") from None
    return existing is None


def _sync_stream(cache, src, name: str, batch_bytes: int, on_batch) -> StreamSync:
    out = StreamSync(name, created=_dest_stream(cache, src.streams[name]))
    blocks = src.blocks(name)
    have = cache.blocks(name)
    rows, seqs = _plan(have, blocks, out)
    if len(rows):
        out.missing = int((np.diff(seqs) - 1).sum())
        out.missing += int(seqs[0] - have.seq[-1] - 1) if len(have) else 0
    batch, batch_seqs, size = [], [], 0
    for row, seq in zip(rows, seqs):
        block = blocks.raw(row)
        batch.append(block)
        batch_seqs.append(int(seq))
        size += len(block)
        if size >= batch_bytes:
            _store(cache, name, batch, batch_seqs, out, on_batch)
            batch, batch_seqs, size = [], [], 0
    if batch:
        _store(cache, name, batch, batch_seqs, out, on_batch)
    return out


def _store(cache, name, batch, seqs, out: StreamSync, on_batch) -> None:
    from ..codec.header import parse_block
    out.samples += cache.append_blocks(name, batch, seqs=seqs)
    out.blocks += len(batch)
    out.bytes += sum(map(len, batch))
    first, last = parse_block(batch[0]), parse_block(batch[-1])
    out.t_first = first.t_first if out.t_first is None else out.t_first
    out.t_last = last.t_last
    if on_batch is not None:
        on_batch(out)


def _plan(have, src: _Blocks, out: StreamSync):
    """(rows of SOURCE to copy, the sequence numbers they get in DEST);
    ``have``: DEST's blocks of the stream."""
    if not len(src):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not len(have):
        return np.arange(len(src)), src.seq.copy()
    last = len(have) - 1
    last_seq, last_t = int(have.seq[last]), int(have.t_last[last])
    k = _find(src, bytes(have.raw(last)), int(have.t_first[last]), last_t)
    if k is not None:
        out.already = k + 1
        rows = np.arange(k + 1, len(src))
        return rows, src.seq[rows] - int(src.seq[k]) + last_seq
    newer = src.t_first >= last_t
    for i in np.flatnonzero(~newer):
        if _held(have, src.raw(i), int(src.t_first[i]), int(src.t_last[i])):
            out.already += 1
        else:
            out.refused += 1
    rows = np.flatnonzero(newer)
    if not len(rows):
        return rows, rows
    seqs = src.seq[rows]
    shift = 0 if int(seqs[0]) > last_seq else last_seq + 1 - int(seqs[0])
    return rows, seqs + shift


def _find(src: _Blocks, block: bytes, t_first: int, t_last: int) -> int | None:
    """The last row of SOURCE holding the same block as ``block``, if any."""
    key = block_key(block)
    lo = int(np.searchsorted(src.t_last, t_last, side="left"))
    hi = int(np.searchsorted(src.t_last, t_last, side="right"))
    for i in range(hi - 1, lo - 1, -1):
        if int(src.t_first[i]) == t_first and block_key(src.raw(i)) == key:
            return i
    return None


def _held(have, block: bytes, t_first: int, t_last: int) -> bool:
    """Does DEST hold this block (by its bytes)?"""
    key = block_key(block)
    lo = int(np.searchsorted(have.t_last, t_last, side="left"))
    hi = int(np.searchsorted(have.t_last, t_last, side="right"))
    return any(int(have.t_first[i]) == t_first and block_key(have.raw(i)) == key
               for i in range(lo, hi))


__all__ = ["sync", "SyncReport", "StreamSync", "open_source"]
