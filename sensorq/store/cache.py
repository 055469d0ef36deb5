"""The cache: a directory of append-only segment files kept within a byte
capacity, one writer (holding an flock on ``LOCK``) and any number of readers.

Write path: ``append`` validates a whole batch, then slices it into blocks of
``block_samples``; each full block is encoded and written as a record at once,
the rest waits in memory (the stream's open block).  ``flush`` seals every open
block, even a short one, and fsyncs: what ``flush`` acknowledged survives a
crash or power cut; anything appended after the last flush may be lost (the
open blocks always, sealed-but-unsynced records if the OS did not write them).

Read path: on open (and on ``refresh``) each segment's blocks are indexed per
stream in time order: from the segment's index file when it has a valid one
(segindex.py: one small read per segment; those blocks' CRCs are checked
before ``blocks`` hands them out), else by scanning it (every record checked:
record CRC, then ``parse_block``).  Queries then find their blocks by binary
search and read them from memory-mapped segments.

Layout on disk: docs/format.md §5.
"""
from __future__ import annotations

import fcntl
import os
from bisect import bisect_left
from dataclasses import replace
from pathlib import Path

import numpy as np
import zstandard

from ..codec.header import parse_block
from ..errors import (CapacityError, CorruptDataError, LockedError, SchemaError, SensorqError,
                      StorageError)
from ..schema import Channel, Stream
from . import fileio
from .blockindex import BLOCK_FIELDS, BlockIndex, BlocksChanged, LazyBuffers, StreamBlocks
from .manifest import MANIFEST_NAME, Manifest, check_device, read_manifest, write_manifest
from .prepare import iso, prepare_batch
from .records import RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE
from .scan import SegmentScanning
from .segment import Segment
from .streams import StreamManagement, concat_indexes, single_block_index
from .settings import (DEFAULT_CAPACITY, parse_capacity, parse_compression, parse_retention)
from .importing import BlockImporting
from .writing import ZSTD_LEVEL, RecordWriting
from .zstdruns import ZstdRuns

LOCK_NAME = "LOCK"
ROW_BUFFER = 4096              # append_one rows held before they go down the batch path


ENCODE_THREADS = min(4, os.cpu_count() or 1)
_POOL: list = []


def _encoder_pool():
    """One thread pool for encoding, made on first use (never for a reader)."""
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor
        _POOL.append(ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="sensorq-encode"))
    return _POOL[0]


def open_cache(path, create: bool = False, capacity=None, retention=None, readonly: bool = False,
               compression=None, device: str | None = None, labels: dict | None = None) -> "Cache":
    """Open (or with ``create=True`` make) the cache directory at ``path``.
    ``device`` and ``labels`` name the device whose data it holds (set at
    creation, or on a cache without a name; a different one is an error)."""
    if device is not None or labels:
        check_device(device, dict(labels or {}))       # before a new directory is made
    cache = Cache(Path(path), create=create, capacity=capacity, retention=retention,
                  readonly=readonly, compression=compression)
    if device is not None or labels:
        try:
            cache._apply_device(device, labels)
        except BaseException:
            cache.close()
            raise
    return cache


class _OpenBlock:
    """A stream's samples not yet sealed into a block (held in memory)."""

    def __init__(self):
        self.t: list[np.ndarray] = []
        self.cols: list[list[np.ndarray]] = []
        self.n = 0
        self.encoded: tuple[np.ndarray, object] | None = None   # cached (bytes, info) for queries

    def add(self, t: np.ndarray, cols: list[np.ndarray]) -> None:
        self.t.append(np.array(t, copy=True))
        self.cols.append([np.array(c, copy=True) for c in cols])
        self.n += t.shape[0]
        self.encoded = None

    def arrays(self) -> tuple[np.ndarray, list[np.ndarray]]:
        t = np.concatenate(self.t)
        cols = [np.concatenate(parts) for parts in zip(*self.cols)]
        return t, cols

    def clear(self) -> None:
        self.__init__()


_MISSING = object()


class _Rows:
    """Samples given to append_one, checked one at a time and stored as a batch."""

    def __init__(self, stream: Stream):
        self.names = [c.name for c in stream.channels]
        self.dtype_codes = bytes(c.dtype_code for c in stream.channels)    # as in block entries
        self.checks = [_quick_check(c) for c in stream.channels]
        self.t: list[int] = []
        self.values: list = []

    def accepts(self, values) -> bool:
        return (type(values) in (tuple, list) and len(values) == len(self.checks)
                and all(check(v) for check, v in zip(self.checks, values)))

    def add(self, t: int, values) -> None:
        self.t.append(t)
        self.values.append(tuple(values) if type(values) is list else values)   # the caller may reuse a list

    def arrays(self, stream: Stream):
        t = np.array(self.t, np.int64)
        cols = [np.array(col, c.numpy_dtype) for col, c in zip(zip(*self.values), stream.channels)]
        return t, cols

    def clear(self) -> None:
        self.t, self.values = [], []


def _quick_check(channel: Channel):
    """A test that a plain Python value surely fits the channel (False: let the
    batch path decide, and explain)."""
    if channel.is_integer:
        info = np.iinfo(channel.numpy_dtype)
        low, high = int(info.min), int(info.max)
        return lambda v: type(v) is int and low <= v <= high
    if channel.dtype == "float32":
        return lambda v: (type(v) is float and not abs(v) > 3.4e38) or (type(v) is int and abs(v) < 2**24)
    return lambda v: type(v) is float or (type(v) is int and abs(v) < 2**53)


class Cache(StreamManagement, SegmentScanning, RecordWriting, BlockImporting):
    def __init__(self, path: Path, *, create: bool, capacity, retention, readonly: bool, compression):
        self.path = path
        self.readonly = readonly
        self._lock_fd: int | None = None
        self._segments: list[Segment] = []
        self._blocks: dict[int, StreamBlocks] = {}
        self._open_blocks: dict[int, _OpenBlock] = {}
        self._rows: dict[int, _Rows] = {}
        self._next_seq: dict[int, int] = {}
        self._zstd = ZstdRuns()
        self._problems: list[str] = []
        self._active: Segment | None = None
        self._dir_dirty = False
        self._unsynced = False          # records written since the last fsync
        self._marker_unsynced = False   # a durable commit written since the last fsync
        self._failure: str | None = None   # why this writer was poisoned (writing.py)
        self._closed = False
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._floor_blocks: dict = {}      # straddling blocks re-encoded at a floor (streams.py)
        self._distrusted: set[int] = set()   # segments read whole, never from their index file
        self._damaged_listed: set[int] = set()   # where a listed zstd block failed: to read whole
        try:
            with fileio.storage_errors(f"cannot open cache {path}"):
                self._prepare_directory(create)
                if not readonly:
                    self._take_lock()
                self._manifest = self._load_or_create_manifest(create, capacity, retention, compression)
                self._sync_streams()
                self._scan_segments()
                if not readonly:
                    self._recover_newest()
                    self._remove_stray_indexes()
                    self._unsynced = self._active is not None   # what a crashed writer left unsynced
                    self._evict(0)
                    self._apply_retention()
        except BaseException:
            self._release_lock()
            raise

    # --- opening -------------------------------------------------------------

    def _prepare_directory(self, create: bool) -> None:
        if self.path.is_dir():
            return
        if self.path.exists():
            raise StorageError(f"{self.path} is not a directory, so it cannot be a sensorq cache")
        if not create or self.readonly:
            raise StorageError(f"no sensorq cache at {self.path} (open it with create=True to make one)")
        fileio.make_directories(self.path)

    def _take_lock(self) -> None:
        fd = fileio.open_file(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fileio.close(fd)
            raise LockedError(f"cache {self.path} is already open for writing by another process "
                              f"(or another Cache object); open it with readonly=True to read "
                              f"while it is written") from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fileio.close(self._lock_fd)
            self._lock_fd = None

    def _load_or_create_manifest(self, create, capacity, retention, compression) -> Manifest:
        if not (self.path / MANIFEST_NAME).exists():
            if self.readonly or not create:
                raise StorageError(f"no sensorq cache at {self.path}: {MANIFEST_NAME} is missing")
            if self._segment_numbers():
                raise CorruptDataError(f"{self.path / MANIFEST_NAME}: the cache manifest is missing "
                                       f"but segment files exist")
            manifest = Manifest(parse_capacity(capacity if capacity is not None else DEFAULT_CAPACITY),
                                parse_retention(retention), parse_compression(compression))
            write_manifest(self.path, manifest)
            return manifest
        manifest = read_manifest(self.path)
        if not self.readonly:
            self._remove_stale_temp()
            # (an older manifest of a cache with float channels says version 3
            # before this writer adds ALP blocks that older sensorq cannot read)
            if self._update_settings(manifest, capacity, retention, compression) or \
                    manifest.stored_version < manifest.version():
                write_manifest(self.path, manifest)
        return manifest

    def _update_settings(self, manifest: Manifest, capacity, retention, compression) -> bool:
        changed = False
        if capacity is not None and parse_capacity(capacity) != manifest.capacity:
            manifest.capacity, changed = parse_capacity(capacity), True
        if retention is not None and parse_retention(retention) != manifest.retention_ns:
            manifest.retention_ns, changed = parse_retention(retention), True
        if compression is not None and parse_compression(compression) != manifest.compression:
            manifest.compression, changed = parse_compression(compression), True
        return changed

    def _remove_stale_temp(self) -> None:
        try:
            fileio.unlink(self.path / (MANIFEST_NAME + ".tmp"))
        except FileNotFoundError:
            pass

    def _sync_streams(self) -> None:
        """Make room in the index for every stream the manifest defines."""
        for stream in self._manifest.streams.values():
            sid = stream.stream_id
            if sid not in self._blocks:
                self._blocks[sid] = StreamBlocks(len(stream.channels))
                self._next_seq[sid] = 0
                self._open_blocks[sid] = _OpenBlock()
                self._rows[sid] = _Rows(stream)

    def _stream_by_id(self, stream_id: int) -> Stream | None:
        by_id = self._manifest.stream_by_id()
        if stream_id not in by_id and self.readonly:
            # The writer defines a stream in the manifest before writing its blocks.
            self._manifest = read_manifest(self.path)
            self._sync_streams()
            by_id = self._manifest.stream_by_id()
        return by_id.get(stream_id)

    def _block_mismatch(self, stream: Stream | None, info) -> str | None:
        if stream is None:
            return f"block of unknown stream id {info.stream_id}"
        if info.entries["dtype"].tobytes() != self._rows[stream.stream_id].dtype_codes:
            return f"block does not match the channels of stream {stream.name!r}"
        blocks = self._blocks[stream.stream_id]
        if blocks.last_seq is not None and (info.seq <= blocks.last_seq or info.t_first < blocks.last_t):
            return f"block of stream {stream.name!r} is out of order (seq {info.seq})"
        return None

    def _forget_through(self, number: int) -> None:
        """Drop segments numbered <= number (deleted or evicted) from the index."""
        for blocks in self._blocks.values():
            for key in blocks.drop_through_segment(number):
                if key < 0:
                    self._zstd.drop(key)
        for segment in [s for s in self._segments if s.number <= number]:
            segment.release()
            self._segments.remove(segment)

    # --- streams ------------------------------------------------------------------

    @property
    def streams(self) -> dict[str, Stream]:
        return dict(self._manifest.streams)

    @property
    def capacity(self) -> int:
        return self._manifest.capacity

    def create_stream(self, name: str, channels, rate_hz=None, block_samples: int = 4096,
                      max_gap_ns=None, codec: str = "compact") -> Stream:
        """Define a stream (written to the manifest at once).  Creating a stream
        that exists with the same definition returns it; a different one is an
        error.  Categorical dictionaries only grow, so a definition whose
        dictionaries are the stored ones cut short is the same stream, and one
        that extends them adds the new names (as add_categories does)."""
        self._require_writer()
        channels = tuple(_as_channel(c) for c in channels)
        stream = Stream(name, channels, rate_hz, block_samples, max_gap_ns,
                        self._manifest.next_stream_id, codec)
        if len(channels) > 255:
            raise SchemaError(f"stream {name!r}: at most 255 channels, got {len(channels)}")
        existing = self._manifest.streams.get(name)
        if existing is not None:
            if _same_definition(existing, stream):
                for wanted in (c for c in channels if c.is_categorical):
                    self.add_categories(name, wanted.name, wanted.categories)
                return self._manifest.streams[name]
            raise SchemaError(f"stream {name!r} already exists with a different definition "
                              f"(channels {', '.join(c.name for c in existing.channels)})")
        self._manifest.streams[name] = stream
        self._manifest.next_stream_id += 1
        with fileio.storage_errors(f"cannot write the manifest of cache {self.path}"):
            write_manifest(self.path, self._manifest)
        self._sync_streams()
        return stream

    def add_categories(self, stream, channel: str, names) -> list[int]:
        """Add ``names`` to the dictionary of a categorical channel (those it
        lacks, at its end, in the order given) and return the code of every
        name.  Codes never change, so samples stored earlier keep their names.
        The manifest is written atomically before this returns: a name's code
        is durable before any sample can use it.  If writing fails, nothing
        changes (in memory or on disk)."""
        self._require_writer()
        old = self._stream(stream)
        grown, codes = old.with_categories(channel, names)
        if grown is not old:
            self._manifest.streams[old.name] = grown
            try:
                with fileio.storage_errors(f"cannot write the manifest of cache {self.path}"):
                    write_manifest(self.path, self._manifest)
            except BaseException:
                self._manifest.streams[old.name] = old
                raise
        return codes

    def _stream(self, stream) -> Stream:
        name = stream.name if isinstance(stream, Stream) else stream
        found = self._manifest.streams.get(name)
        if found is None and self.readonly:
            self._manifest = read_manifest(self.path)
            self._sync_streams()
            found = self._manifest.streams.get(name)
        if found is None:
            known = ", ".join(sorted(self._manifest.streams)) or "none"
            raise SchemaError(f"no stream {name!r} in cache {self.path}; streams: {known}")
        return found

    # --- appending -------------------------------------------------------------------

    def append(self, stream, t, columns) -> int:
        """Append a batch of samples; returns how many.  The whole batch is checked
        first: a rejected batch leaves the cache exactly as it was."""
        self._require_writer()
        self._require_healthy()
        st = self._stream(stream)
        self._drain_rows(st)
        t_ns, cols = prepare_batch(st, t, columns, self._last_ns(st.stream_id))
        if t_ns.shape[0]:
            try:
                self._add_samples(st, t_ns, cols)
            except CapacityError:
                raise                        # refused before anything was written
            except StorageError as exc:
                held = self._open_blocks[st.stream_id].n
                raise StorageError(f"{exc}; none of the {t_ns.shape[0]} samples of this append "
                                   f"was stored, and the {held} samples of stream {st.name!r} "
                                   f"appended before it are kept (not yet flushed)") from None
        return int(t_ns.shape[0])

    def append_one(self, stream, t, values) -> None:
        """Append one sample (a tuple/list in channel order, or a dict by name).
        Plain Python ints and floats that fit are checked here and buffered, then
        stored as one batch; anything else takes the batch path at once."""
        self._require_writer()
        self._require_healthy()
        st = self._stream(stream)
        rows = self._rows[st.stream_id]
        in_order = values
        if isinstance(values, dict) and len(values) == len(rows.names):
            in_order = [values.get(name, _MISSING) for name in rows.names]
        if type(t) is int and rows.accepts(in_order):
            last = self._last_ns(st.stream_id)
            if last is None or t >= last:
                rows.add(t, in_order)
                if len(rows.t) >= ROW_BUFFER:
                    self._drain_rows(st)
                return
        self._drain_rows(st)
        if isinstance(values, dict):
            columns = {k: [v] for k, v in values.items()}
        else:
            values = [values] if np.isscalar(values) else list(values)
            columns = [[v] for v in values]
        self.append(st, [t] if np.ndim(t) == 0 else t, columns)

    def _drain_rows(self, st: Stream | None = None) -> None:
        """Store the samples append_one buffered (of one stream, or of all)."""
        streams = [st] if st is not None else list(self._manifest.streams.values())
        for stream in streams:
            rows = self._rows.get(stream.stream_id)
            if rows is not None and rows.t:
                t, cols = rows.arrays(stream)
                self._add_samples(stream, t, cols)
                rows.clear()

    def _last_ns(self, sid: int) -> int | None:
        rows = self._rows.get(sid)
        if rows is not None and rows.t:
            return rows.t[-1]
        pending = self._open_blocks[sid]
        if pending.n:
            return int(pending.t[-1][-1])
        return self._blocks[sid].last("t_last")

    def _add_samples(self, st: Stream, t: np.ndarray, cols: list[np.ndarray]) -> None:
        """Seal every block the batch completes and write them as one batch (all
        encoded before anything is written, so a CapacityError leaves everything
        as it was, and all or nothing written); keep the rest open.  The open
        block changes only once the batch is stored: a failed write loses
        nothing that earlier calls accepted."""
        pending = self._open_blocks[st.stream_id]
        jumps = _clock_jumps(int(pending.t[-1][-1]) if pending.n else None, t)
        if len(jumps):
            return self._add_across_jumps(st, t, cols, jumps)
        size, n, pos = st.block_samples, t.shape[0], 0
        pieces: list[tuple[np.ndarray, list[np.ndarray]]] = []
        if pending.n:
            if pending.n + n < size:
                pending.add(t, cols)
                return
            pos = size - pending.n
            head_t, head_cols = pending.arrays()
            pieces.append((np.concatenate([head_t, t[:pos]]),
                           [np.concatenate([h, c[:pos]]) for h, c in zip(head_cols, cols)]))
        full = (n - pos) // size          # whole blocks straight from the arrays, in bulk
        run = (t, cols, pos + size * np.arange(full + 1)) if full else None
        pos += full * size
        encoded = self._encode(st, pieces, run)
        self._write_batch([(st, encoded)])
        pending.clear()
        if pos < n:
            pending.add(t[pos:], [c[pos:] for c in cols])
        self._apply_retention()

    def _add_across_jumps(self, st: Stream, t: np.ndarray, cols: list[np.ndarray], jumps) -> None:
        """_add_samples when the clock jumps by 2^63 ns or more (an unset clock,
        then a real time): no block can hold such a step (docs/format.md §3), so
        the block before each jump is sealed there, short, as the device does."""
        pending = self._open_blocks[st.stream_id]
        size, n = st.block_samples, t.shape[0]
        head = pending.arrays() if pending.n else (t[:0], [c[:0] for c in cols])
        pieces: list[tuple[np.ndarray, list[np.ndarray]]] = []
        pos = 0
        for stop in [int(j) for j in jumps] + [n]:
            seg_t = np.concatenate([head[0], t[pos:stop]])
            seg_cols = [np.concatenate([h, c[pos:stop]]) for h, c in zip(head[1], cols)]
            k = 0
            while len(seg_t) - k >= size or (stop < n and k < len(seg_t)):
                pieces.append((seg_t[k:k + size], [c[k:k + size] for c in seg_cols]))
                k += size
            head = (seg_t[k:], [c[k:] for c in seg_cols]) if stop == n else (t[:0], [c[:0] for c in cols])
            pos = stop
        encoded = self._encode(st, pieces)
        self._write_batch([(st, encoded)])
        pending.clear()
        if len(head[0]):
            pending.add(*head)
        self._apply_retention()

    def _encode(self, st: Stream, pieces, run=None) -> list:
        """The blocks of ``pieces`` (t, columns), then those of ``run`` (t,
        columns, bounds: many blocks cut from the same arrays, encoded in
        bulk, codec/bulk.py), as a list of blocks and EncodedRuns."""
        seq = self._next_seq[st.stream_id]

        def encode(i: int) -> bytes:
            t, cols = pieces[i]
            return _encode_block(t, cols, stream_id=st.stream_id, seq=seq + i, codec=st.codec)

        # The codec's kernels release the GIL, so a batch of blocks is encoded on
        # every core; the blocks come back in order.
        if len(pieces) >= 2 * ENCODE_THREADS > 2:
            encoded = list(_encoder_pool().map(encode, range(len(pieces))))
        else:
            encoded = [encode(i) for i in range(len(pieces))]
        if run is not None:
            from ..codec.bulk import encode_blocks
            encoded += encode_blocks(*run, stream_id=st.stream_id, seq=seq + len(pieces), codec=st.codec,
                                     pool=_encoder_pool() if ENCODE_THREADS > 1 else None,
                                     threads=ENCODE_THREADS, finish=self._prepare_records)
        largest = max((len(b) if isinstance(b, bytes) else int(b.lengths.max()) for b in encoded),
                      default=0)
        if largest + RECORD_HEADER_SIZE + SEGMENT_HEADER_SIZE > self._manifest.capacity:
            raise CapacityError(f"stream {st.name!r}: one block takes {largest} bytes, more than the "
                                f"cache capacity of {self._manifest.capacity} bytes; lower "
                                f"block_samples or raise the capacity")
        return encoded

    def flush(self) -> None:
        """Seal every open block, write them as one batch and make everything
        appended so far durable.  When it returns, all of it survives a crash
        or a power cut; when it raises, nothing new was acknowledged."""
        if self.readonly or self._closed:
            return
        self._require_healthy()
        self._drain_rows()
        sealed = []
        for sid, pending in self._open_blocks.items():
            if pending.n:
                stream = self._manifest.stream_by_id()[sid]
                sealed.append((stream, self._encode(stream, [pending.arrays()])))
        if sealed:
            self._write_batch(sealed)
            for stream, _ in sealed:
                self._open_blocks[stream.stream_id].clear()
            self._apply_retention()
        self._sync()

    def close(self) -> None:
        if self._closed:
            return
        synced = False
        try:
            self.flush()
            if self._marker_unsynced and self._active is not None:
                self._fsync(self._active)      # the last durable commit itself, once more
                self._marker_unsynced = False
            synced = True
        finally:
            self._closed = True
            if synced and not self.readonly and self._failure is None:
                self._write_indexes(include_active=True)     # covers only synced bytes
            for segment in self._segments:
                segment.release()
            self._release_lock()

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except SensorqError:
            pass          # the error that is already on its way out says more

    def refresh(self) -> None:
        """A reader picks up streams and blocks the writer added, and drops what it evicted."""
        self._require_open()
        if not self.readonly:
            return
        self._manifest = read_manifest(self.path)
        self._sync_streams()
        self._scan_segments()

    def _require_writer(self) -> None:
        self._require_open()
        if self.readonly:
            raise StorageError(f"cache {self.path} is open read-only")

    def _require_open(self) -> None:
        if self._closed:
            raise StorageError(f"cache {self.path} is closed")

    # --- reading --------------------------------------------------------------------

    def gaps(self, stream, start_ns=None, end_ns=None, check: bool = True) -> list[str]:
        """Why an answer over [start_ns, end_ns) may be short: the stretches of
        the stream inside it whose blocks are missing (damaged or lost).
        ``check``: first check the CRCs of the blocks there that no read has
        checked yet (a damaged block is a gap too); a query that has read its
        blocks through a lazy index passes False: what it did not read, it
        answered from statistics that are as written."""
        st = self._stream(stream)
        floor = self._manifest.floors.get(st.stream_id)
        if floor is not None:
            start_ns = floor if start_ns is None else max(start_ns, floor)
        if check:
            self._checked_slice(st.stream_id, start_ns, end_ns)
        return [f"the answer spans a gap in stream {st.name!r}: {gap.describe()}; see info() problems"
                for gap in self._blocks[st.stream_id].gaps_within(start_ns, end_ns)]

    def newest_ns(self, stream) -> int | None:
        st = self._stream(stream)
        return self._last_ns(st.stream_id)

    def blocks(self, stream, start_ns=None, end_ns=None, lazy: bool = False) -> BlockIndex:
        """The verified blocks overlapping [start_ns, end_ns), in time order.  A
        writer's index ends with its open block, encoded on the fly.  Blocks
        listed by a segment's index file have their CRCs checked here, or,
        ``lazy``, only when their bytes are first read (BlockIndex.verify,
        which may raise BlocksChanged): what queries use, so that blocks
        answered from their statistics are never read."""
        self._require_open()
        st = self._stream(stream)
        if not self.readonly:
            self._drain_rows(st)
        floor = self._manifest.floors.get(st.stream_id)
        if floor is not None:        # a truncated stream: nothing before its floor (streams.py)
            start_ns = floor if start_ns is None else max(start_ns, floor)
        if lazy:
            stored, where = self._listed_slice(st.stream_id, start_ns, end_ns)
        else:
            stored, where = self._checked_slice(st.stream_id, start_ns, end_ns)
        unique_keys, buffer_of = stored.buffer_codes(where)
        source = _BufferSource(self)
        buffers = LazyBuffers(unique_keys, source)
        memo = stored.memo_for(where)
        fields = memo.get("views")
        if fields is None:
            # Views, not copies (a query's cost must not grow with the cache): rows
            # below the index's tail are never written again, and the views are
            # read-only; kept while the same rows stay (memo_for)
            fields = {name: _read_only(stored.cols[name][where]) for name in BLOCK_FIELDS}
            fields["entries"] = _read_only(stored.entries[where])
            memo["views"] = fields
        check = self._kept_lazy_check(stored, where, source, memo) if lazy and stored.unverified \
            else None
        index = BlockIndex(st, buffers, buffer_of, **fields, memo=memo, check=check)
        tail = self._open_block_index(st, start_ns, end_ns)
        if tail is not None:        # the open block changes with every append: kept apart
            index = replace(concat_indexes(index, tail),
                            parts=(index, tail) if index.memo is not None else None)
        return self._clip_to_floor(index, floor) if floor is not None else index

    def _kept_lazy_check(self, stored, where, source, memo: dict):
        """_lazy_check, kept with the rows' other views while the same rows
        stay (memo_for): what it has checked is then not looked at again by
        the next query over them."""
        check = memo.get("lazy check")
        if check is None:
            check = memo["lazy check"] = self._lazy_check(stored, where, source) or False
        return check or None

    def _buffer_for(self, key: int) -> np.ndarray:
        return self._fetch_buffer(self._segments, self._zstd, key)

    def _fetch_buffer(self, segments: list[Segment], zstd: ZstdRuns, key: int) -> np.ndarray:
        """Positive keys are segments (memory-mapped), negative ones zstd runs."""
        if key < 0:
            run = zstd.runs.get(key)
            if run is None:
                raise StorageError(f"cache {self.path}: zstd run {key} vanished")   # index bug guard
            try:
                return zstd.buffer(key)
            except CorruptDataError as exc:
                if run.checks is None:
                    raise
                self._damaged_listed.add(run.segment.number)   # read it whole before the next query
                raise BlocksChanged(f"{exc}; it is left out from the next query on") from None
        i = bisect_left(segments, key, key=lambda s: s.number)
        if i < len(segments) and segments[i].number == key:
            try:
                return segments[i].buffer()
            except FileNotFoundError:
                pass
        raise StorageError(f"cache {self.path}: segment {key} vanished")

    def _open_block_index(self, st: Stream, start_ns, end_ns) -> BlockIndex | None:
        pending = self._open_blocks[st.stream_id]
        if self.readonly or not pending.n:
            return None
        if pending.encoded is None:
            t, cols = pending.arrays()
            block = _encode_block(t, cols, stream_id=st.stream_id, seq=self._next_seq[st.stream_id],
                                 codec=st.codec)
            pending.encoded = (np.frombuffer(block, np.uint8), parse_block(block))
        array, info = pending.encoded
        if (start_ns is not None and info.t_last < start_ns) or (end_ns is not None and info.t_first >= end_ns):
            return None
        return single_block_index(st, array, info)

    def read(self, stream, start_ns=None, end_ns=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Every sample with start_ns <= t < end_ns, exactly as appended."""
        try:
            index = self.blocks(stream, start_ns, end_ns)
            decoded = [index.decode(i) for i in range(len(index))]
        except CorruptDataError:
            if not self._damaged_listed:
                raise
            index = self.blocks(stream, start_ns, end_ns)      # without the damaged blocks
            decoded = [index.decode(i) for i in range(len(index))]
        st = index.stream
        t = np.concatenate([d[0] for d in decoded]) if decoded else np.zeros(0, np.int64)
        lo = 0 if start_ns is None else int(np.searchsorted(t, start_ns, side="left"))
        hi = t.shape[0] if end_ns is None else int(np.searchsorted(t, end_ns, side="left"))
        hi = max(lo, hi)
        columns = {}
        for i, channel in enumerate(st.channels):
            parts = [d[1][i] for d in decoded]
            col = np.concatenate(parts) if parts else np.zeros(0, channel.numpy_dtype)
            columns[channel.name] = col[lo:hi]
        return t[lo:hi], columns

    # --- information -----------------------------------------------------------------

    def info(self) -> dict:
        self._require_open()
        if not self.readonly:
            self._drain_rows()
        self._check_everything()
        streams = {name: self._stream_info(st) for name, st in self._manifest.streams.items()}
        problems = [p for i, s in enumerate(self._segments)
                    if (p := s.problem(newest=i == len(self._segments) - 1))]
        return {"path": str(self.path), "device": self._manifest.device,
                "labels": dict(self._manifest.labels), "bytes_used": self._bytes_on_disk(),
                "capacity": self._manifest.capacity,
                "retention_s": None if self._manifest.retention_ns is None
                else self._manifest.retention_ns / 1e9,
                "compression": self._manifest.compression, "segments": len(self._segments),
                "streams": streams,
                "problems": problems + self._missing_segments() + self._sequence_gaps() + self._problems}

    def _missing_segments(self) -> list[str]:
        """Segment numbers are consecutive (eviction takes only the oldest), so a
        number missing in the middle is data lost without a trace."""
        return [f"segments {a.number + 1}..{b.number - 1} are missing between {a.path.name} and "
                f"{b.path.name}: the data they held is not served"
                for a, b in zip(self._segments, self._segments[1:]) if b.number != a.number + 1]

    def _sequence_gaps(self) -> list[str]:
        out = []
        for st in self._manifest.streams.values():
            floor = self._manifest.floors.get(st.stream_id)
            for gap in self._blocks[st.stream_id].gaps:
                if floor is None or gap.t_after > floor:       # not hidden by a truncation
                    out.append(f"stream {st.name!r}: {gap.describe()}")
        return out

    def _stream_info(self, st: Stream) -> dict:
        blocks = self._blocks[st.stream_id]
        samples, stored = blocks.total_samples, blocks.total_stored
        raw = samples * (8 + sum(c.numpy_dtype.itemsize for c in st.channels))
        first, last = blocks.first("t_first"), blocks.last("t_last")
        floor = self._manifest.floors.get(st.stream_id)
        hidden = {}
        if floor is not None:
            visible, first = self._visible_stored(st, floor)
            last = last if visible else None
            hidden = {"floor_iso": iso(floor), "hidden_samples": samples - visible}
            samples = visible
        return {"samples": samples, "blocks": len(blocks), **hidden,
                "unflushed": self._open_blocks[st.stream_id].n,
                "t_first_iso": iso(first) if first is not None else None,
                "t_last_iso": iso(last) if last is not None else None,
                "bytes": stored,
                "bytes_per_sample": stored / samples if samples else None,
                "bytes_per_value": stored / (samples * len(st.channels)) if samples else None,
                "ratio_to_raw": raw / stored if stored else None,
                "channels": [{"name": c.name, "dtype": c.dtype, "unit": c.unit, "scale": c.scale,
                              **({"categories": list(c.categories)} if c.is_categorical else {})}
                             for c in st.channels]}

    @property
    def models(self):
        """The cache's models (sensorq/models/registry.py: add a scikit-learn
        estimator, train, list, export, import); their outputs are queried
        like channels (docs/query.md, "Models")."""
        from ..models.registry import ModelRegistry
        return ModelRegistry(self)

    def query(self, text: str, now_policy: str = "data", engine: str | None = None,
              max_rows: int | None = None):
        """Run a query (docs/query.md).  ``engine`` chooses how blocks are
        scanned: "compiled", "interpreted" or "auto" (docs/query.md, "Two engine
        tiers, one answer"); None takes $SENSORQ_ENGINE, else "auto"."""
        return _executor().run_query(self, text, now_policy=now_policy, engine=engine,
                                     max_rows=max_rows)

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else "writer"
        return f"<sensorq Cache {str(self.path)!r} {mode}, {len(self._manifest.streams)} streams>"


_executor_module = None


def _executor():
    """engine/executor.py, imported by the first query (a cache opened to be
    written need not load the engine); after that a global's read: an import
    statement in every query cost ~1.5 µs of a ~35 µs repeated count (as
    tiers._kernels)."""
    global _executor_module
    if _executor_module is None:
        from ..engine import executor
        _executor_module = executor
    return _executor_module


def _encode_block(t, cols, **options) -> bytes:
    """The compiled encoder, imported on the first write: a process that only
    reads (a CLI query) then never loads numba."""
    from ..codec.block import encode_block
    return encode_block(t, cols, **options)


def _clock_jumps(last: int | None, t: np.ndarray) -> np.ndarray:
    """Positions in ``t`` where a step of 2^63 ns or more arrives (from the
    sample before, or from ``last``, the open block's newest)."""
    if not len(t) or (int(t[-1]) - int(t[0]) < 2**63 and (last is None or int(t[0]) - last < 2**63)):
        return np.zeros(0, np.int64)          # the common case, without a pass over t
    prev = np.concatenate([[t[0] if last is None else last], t[:-1]]).astype(np.int64)
    steps = t.view(np.uint64) - prev.view(np.uint64)
    return np.flatnonzero(steps >= np.uint64(1 << 63))


class _BufferSource:
    """Fetches the buffers of the BlockIndexes one ``blocks`` call hands out.
    It holds on to the segments and zstd runs the cache had then: when the
    cache indexes itself again (a damaged block was found), an index handed
    out before keeps reading the bytes it was made from - verified, and never
    cut off below a commit - rather than the new segments' (possibly shorter)
    maps or new runs under reused keys."""

    __slots__ = ("cache", "segments", "zstd")

    def __init__(self, cache: "Cache"):
        self.cache, self.segments, self.zstd = cache, cache._segments, cache._zstd

    def __call__(self, key: int) -> np.ndarray:
        return self.cache._fetch_buffer(self.segments, self.zstd, key)

    def __eq__(self, other) -> bool:
        return (isinstance(other, _BufferSource) and other.segments is self.segments
                and other.zstd is self.zstd)

    def __hash__(self) -> int:
        return hash((id(self.segments), id(self.zstd)))


def _read_only(view: np.ndarray) -> np.ndarray:
    view = view.view()
    view.flags.writeable = False
    return view


def _as_channel(c) -> Channel:
    if isinstance(c, Channel):
        return c
    if isinstance(c, str):
        return Channel(c)
    if isinstance(c, dict):
        return Channel.from_json(c)
    raise SchemaError(f"a channel must be a sensorq.Channel, a name or a dict, got {c!r}")


def _same_definition(a: Stream, b: Stream) -> bool:
    """Equal, except that a categorical dictionary may be the other one grown."""
    return (len(a.channels) == len(b.channels)
            and all(x.same_codes(y) for x, y in zip(a.channels, b.channels))
            and a.block_samples == b.block_samples and a.codec == b.codec
            and a.rate_hz == b.rate_hz and a.max_gap_ns == b.max_gap_ns)

