"""Blocks that arrive already encoded (``sensorq sync``, a device's export),
and the device a cache belongs to.

``append_blocks`` stores sealed blocks as they are: each one is verified with
``parse_block``, its header gets this cache's stream id and a sequence number
(the CRC is recomputed over the patched header; the samples' bytes are not
touched), and they are written as one batch with a commit record, like the
blocks one ``append`` seals: all of them or none, even across a crash.  A
device's version-2 block is first reframed as version 1, the version the
engine reads (sensorq/fleet/blocks.py: the same sections, bases and
dictionary sizes widened; no sample is decoded).

The device name and labels live in the manifest (docs/format.md §5); they are
set when the cache is created (``sensorq.open(path, create=True,
device="pump-17", labels={"site": "north"})``) and changed only by
``set_device``.
"""
from __future__ import annotations

import struct
from itertools import pairwise

from ..checksum import crc32
from ..codec.codes import SPLIT
from ..codec.header import CRC_SIZE, FORMAT_VERSION, MAGIC, parse_block
from ..errors import (
    CapacityError,
    CorruptDataError,
    OutOfOrderError,
    SchemaError,
    StorageError,
)
from .manifest import check_device
from .prepare import iso
from .records import RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE

_STREAM_ID = struct.Struct("<I")      # version-1 header: stream_id at offset 40
_SEQ = struct.Struct("<Q")            # seq at offset 48
STREAM_ID_AT, SEQ_AT = 40, 48


def patch_header(block: bytes, stream_id: int, seq: int) -> bytes:
    """A verified version-1 block with another stream id and sequence number
    (and the CRC that goes with them); every other byte is kept."""
    out = bytearray(block)
    _STREAM_ID.pack_into(out, STREAM_ID_AT, stream_id)
    _SEQ.pack_into(out, SEQ_AT, seq)
    end = len(out) - CRC_SIZE
    out[end:] = crc32(memoryview(out)[:end]).to_bytes(4, "little")
    return bytes(out)


def as_version1(block) -> bytes:
    """``block`` as a version-1 block (a version-2 one reframed, not decoded)."""
    data = bytes(block)
    if data[:4] == MAGIC and len(data) > 4 and data[4] != FORMAT_VERSION:
        from ..fleet.blocks import to_version1  # only a device's blocks need it
        return to_version1(data)
    return data


def _verified(block: bytes, i: int, st):
    try:
        return parse_block(block)
    except CorruptDataError as exc:
        raise type(exc)(f"stream {st.name!r}, block {i} given to append_blocks: {exc}") from None


class BlockImporting:
    """Mixed into Cache: sealed blocks in, and the cache's device."""

    # --- the device -------------------------------------------------------------

    @property
    def device(self) -> str | None:
        """The name of the device whose data this cache holds (None: not set)."""
        return self._manifest.device

    @property
    def labels(self) -> dict[str, str]:
        return dict(self._manifest.labels)

    def set_device(self, device: str | None = None, labels: dict | None = None) -> None:
        """Name the cache's device and/or replace its labels (one atomic manifest write)."""
        self._require_writer()
        new_labels = dict(self._manifest.labels if labels is None else labels)
        new_device = self._manifest.device if device is None else device
        check_device(new_device, new_labels)

        def change(m):
            m.device, m.labels = new_device, new_labels
        self._change_manifest(change)

    def _apply_device(self, device, labels) -> None:
        """What ``open(device=, labels=)`` asks: set at creation (or on a cache
        that has no name yet); a different name or label value is an error,
        since data of one device must not be filed under another."""
        labels = dict(labels or {})
        check_device(device, labels)
        m = self._manifest
        if device is not None and m.device is not None and device != m.device:
            raise SchemaError(f"cache {self.path} belongs to device {m.device!r}, not {device!r} "
                              f"(Cache.set_device renames it)")
        clash = [k for k, v in labels.items() if k in m.labels and m.labels[k] != v]
        if clash:
            k = clash[0]
            raise SchemaError(f"cache {self.path} has label {k}={m.labels[k]!r}, not {labels[k]!r} "
                              f"(Cache.set_device changes labels)")
        missing = {k: v for k, v in labels.items() if k not in m.labels}
        if self.readonly or ((device is None or m.device is not None) and not missing):
            return                      # a reader only checks
        self.set_device(device if m.device is None else None, {**m.labels, **missing})

    # --- sealed blocks in ---------------------------------------------------------

    def append_blocks(self, stream, blocks, seqs=None) -> int:
        """Store sealed blocks of ``stream`` (bytes, version 1 or 2, in time
        order) as one batch: all or nothing.  ``seqs``: the sequence number
        each gets (increasing, above the stream's newest block's); None: the
        stream's next ones.  A block out of order, of other channel types or
        larger than the capacity is refused before anything is written.  The
        stream's unflushed samples, if any, are sealed first, in the same
        batch.  Returns the number of samples stored."""
        self._require_writer()
        self._require_healthy()
        st = self._stream(stream)
        self._drain_rows(st)
        blocks = [as_version1(b) for b in blocks]
        if not blocks:
            return 0
        infos = [_verified(b, i, st) for i, b in enumerate(blocks)]
        seqs = self._import_seqs(st, infos, seqs)
        self._check_imported(st, infos)
        patched = [patch_header(b, st.stream_id, s) for b, s in zip(blocks, seqs)]
        pending = self._open_blocks[st.stream_id]
        sealed = self._encode(st, [pending.arrays()]) if pending.n else []
        try:
            self._write_batch([(st, sealed + patched)])
        except StorageError as exc:
            raise StorageError(f"{exc}; none of the {len(blocks)} blocks was stored") from None
        pending.clear()
        self._apply_retention()
        return sum(i.n_samples for i in infos)

    def _import_seqs(self, st, infos, seqs) -> list[int]:
        pending = self._open_blocks[st.stream_id].n > 0
        next_seq = self._next_seq[st.stream_id] + (1 if pending else 0)
        if seqs is None:
            return list(range(next_seq, next_seq + len(infos)))
        seqs = [int(s) for s in seqs]
        if len(seqs) != len(infos):
            raise SchemaError(f"append_blocks: {len(seqs)} sequence numbers for {len(infos)} "
                              f"blocks")
        last = self._blocks[st.stream_id].last_seq
        floor = next_seq if pending or last is not None else 0
        if seqs[0] < floor or any(b <= a for a, b in pairwise(seqs)) or seqs[-1] >= 2**64:
            raise OutOfOrderError(f"stream {st.name!r}: block sequence numbers must increase from "
                                  f"{floor}, got {seqs[0]}..{seqs[-1]}")
        return seqs

    def _check_imported(self, st, infos) -> None:
        """Channel types, time order (after the stream's newest sample,
        unflushed ones included) and size, before anything is written."""
        codes = self._rows[st.stream_id].dtype_codes
        last = self._last_ns(st.stream_id)
        room = self._manifest.capacity - RECORD_HEADER_SIZE - SEGMENT_HEADER_SIZE
        for i, info in enumerate(infos):
            if info.entries["dtype"].tobytes() != codes:
                raise SchemaError(f"stream {st.name!r}: block {i} (seq {info.seq}) does not have "
                                  f"the stream's channel types")
            if st.codec == "fast" and _has_split_sections(info):
                # (the manifest says version 4 only for compact streams: sensorq
                # before SPLIT must not meet such a block in a cache it opens)
                raise SchemaError(f"stream {st.name!r}: block {i} (seq {info.seq}) holds split Rice "
                                  f"sections, which only the compact codec writes; the stream's "
                                  f"codec is fast")
            if last is not None and info.t_first < last:
                raise OutOfOrderError(f"stream {st.name!r}: block {i} starts at "
                                      f"{iso(info.t_first)}, before the stream's newest sample "
                                      f"at {iso(last)}")
            if info.block_len > room:
                raise CapacityError(f"stream {st.name!r}: block {i} takes {info.block_len} bytes, "
                                    f"more than the cache capacity allows")
            last = info.t_last


def _has_split_sections(info) -> bool:
    """Whether a version-1 block has a SPLIT section (codec bits 6 and 7)."""
    codecs = [info.time_codec, *info.entries["codec"].tolist()]
    return any(c & SPLIT == SPLIT for c in codecs)


__all__ = ["BlockImporting", "patch_header", "as_version1"]
