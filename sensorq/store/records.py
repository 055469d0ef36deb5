"""Segment files and the records inside them (docs/format.md §5).

A segment starts with a 20-byte header and holds records back to back::

    header:  "SQSG"  u8 version=1  3 bytes 0  u64 segment number  u32 CRC-32 of the 16 bytes before
    record:  u32 payload_len  u32 CRC-32 of (type byte + payload)  u8 type  payload

A flush ends with a commit record, so what a flush acknowledged is always
followed by a valid record: damage there is found as corruption (reported),
not mistaken for a torn write (cut off).

Scanning stops at the first record that is incomplete (the file ends inside it:
a torn or still-running write) or corrupt (bad checksum, type or length); what
comes before it is the segment's *valid prefix*.  Nothing after a bad record is
trusted, because its length field - the only way to find the next record - is
itself suspect.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ..checksum import crc32

SEGMENT_MAGIC = b"SQSG"
SEGMENT_VERSION = 2            # 2 adds commit records; version 1 segments are still read
LEGACY_SEGMENT_VERSION = 1
SEGMENT_HEADER = struct.Struct("<4sB3xQ")        # 16 bytes, then a u32 CRC
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size + 4   # 20
RECORD_HEADER = struct.Struct("<IIB")            # payload_len, crc, type
RECORD_HEADER_SIZE = RECORD_HEADER.size          # 9

REC_BLOCK = 1          # payload: one block, byte for byte (§1)
REC_BLOCK_ZSTD = 2     # payload: one zstd frame holding one block
REC_COMMIT = 3         # payload: "SQCM", u8 flags, u64 segment number, u64 this record's offset
RECORD_TYPES = (REC_BLOCK, REC_BLOCK_ZSTD, REC_COMMIT)
COMMIT_MAGIC = b"SQCM"
COMMIT_PAYLOAD = struct.Struct("<4sBQQ")
COMMIT_RECORD_SIZE = RECORD_HEADER_SIZE + COMMIT_PAYLOAD.size   # 30
COMMIT_DURABLE = 1     # flag: written after an fsync that covered every byte before it
MAX_PAYLOAD = 256 * 1024 * 1024

# Scan outcomes.
CLEAN = "clean"            # the valid prefix is the whole file
INCOMPLETE = "incomplete"  # a torn tail: a bad or cut record, no valid record after it
CORRUPT = "corrupt"        # a bad record with a valid record somewhere after it
BAD_HEADER = "bad header"  # the segment header itself is wrong
SHORT = "short"            # not even a whole segment header (a segment being created)


def segment_file_name(number: int) -> str:
    return f"segment-{number:010d}.sqs"


def parse_segment_file_name(name: str) -> int | None:
    if name.startswith("segment-") and name.endswith(".sqs") and len(name) == 22:
        digits = name[8:18]
        if digits.isdigit():
            return int(digits)
    return None


def segment_header(number: int) -> bytes:
    head = SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, number)
    return head + crc32(head).to_bytes(4, "little")


# the CRC of a record covers its type byte, then its payload
_TYPE_CRC = {rec_type: crc32(bytes((rec_type,))) for rec_type in RECORD_TYPES}


def record_crc(rec_type: int, payload) -> int:
    """The CRC a record of ``rec_type`` (one of RECORD_TYPES) carries for ``payload``."""
    return crc32(payload, _TYPE_CRC[rec_type])


def record_bytes(rec_type: int, payload: bytes) -> bytes:
    return RECORD_HEADER.pack(len(payload), record_crc(rec_type, payload), rec_type) + payload


def commit_record(segment_number: int, offset: int, durable: bool) -> bytes:
    """The record that ends a batch of records (written at ``offset``): readers
    serve records only up to the last one, so a batch is seen whole or not at
    all.  ``durable``: written after an fsync of everything before it (a
    flush), so damage before it is corruption, never a torn write
    (docs/format.md §5, "Commit records")."""
    flags = COMMIT_DURABLE if durable else 0
    return record_bytes(REC_COMMIT, COMMIT_PAYLOAD.pack(COMMIT_MAGIC, flags, segment_number, offset))


def commit_flags(payload, segment_number: int, offset: int) -> int | None:
    """The flags of the commit record written at ``offset`` of this segment, or
    None if ``payload`` is not one (a record copied from elsewhere, say)."""
    if len(payload) != COMMIT_PAYLOAD.size:
        return None
    magic, flags, number, at = COMMIT_PAYLOAD.unpack(payload)
    if magic != COMMIT_MAGIC or number != segment_number or at != offset or flags & ~COMMIT_DURABLE:
        return None
    return flags


@dataclass
class RecordRef:
    """Where one valid record sits in its segment file (absolute offsets)."""
    start: int          # offset of the record header
    payload_start: int
    payload_len: int
    rec_type: int

    @property
    def end(self) -> int:
        return self.payload_start + self.payload_len

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class ScanResult:
    """What scanning a segment found: its records, how far it is valid, and why not further."""
    records: list[RecordRef] = field(default_factory=list)   # blocks and commit records
    valid_end: int = 0            # absolute offset just after the last valid record
    base: int = 0                 # absolute offset of the first byte scanned
    outcome: str = CLEAN
    detail: str = ""              # what was wrong, for problems / errors
    committed_end: int | None = None   # just after the last commit record, if any was scanned
    durable_end: int | None = None     # just after the last durable commit record


def segment_version(data: bytes) -> int:
    return data[4]


def check_segment_header(data: bytes, number: int) -> str | None:
    """None if ``data`` (at least 20 bytes) is the header of segment ``number``, else why not."""
    magic, version, stored_number = SEGMENT_HEADER.unpack_from(data, 0)
    crc = int.from_bytes(data[SEGMENT_HEADER.size:SEGMENT_HEADER_SIZE], "little")
    if crc32(data[:SEGMENT_HEADER.size]) != crc:
        return "segment header checksum mismatch"
    if magic != SEGMENT_MAGIC:
        return f"bad segment magic {magic!r}"
    if version not in (SEGMENT_VERSION, LEGACY_SEGMENT_VERSION):
        return f"segment format version {version}, this sensorq reads versions 1 and {SEGMENT_VERSION}"
    if stored_number != number:
        return f"segment header says number {stored_number}, the file name says {number}"
    return None


def scan_records(data: bytes, base: int, number: int, version: int = SEGMENT_VERSION) -> ScanResult:
    """Walk the records in ``data`` (the file's bytes from offset ``base`` on,
    ``base`` being where a record starts) of segment ``number`` and stop at the
    first bad one."""
    view = memoryview(data)
    result = ScanResult(valid_end=base, base=base)
    pos, end = 0, len(view)
    while pos < end:
        if end - pos < RECORD_HEADER_SIZE:
            return _stop(result, data, pos, "record header cut short", number, version)
        length, crc, rec_type = RECORD_HEADER.unpack_from(view, pos)
        payload_start = pos + RECORD_HEADER_SIZE
        where = f"record at offset {base + pos}"
        if length > MAX_PAYLOAD or rec_type not in RECORD_TYPES:
            return _stop(result, data, pos, f"{where}: bad type {rec_type} or length {length}",
                         number, version)
        if payload_start + length > end:
            return _stop(result, data, pos, f"{where} runs past the end of the file", number, version)
        payload = view[payload_start:payload_start + length]
        if record_crc(rec_type, payload) != crc:
            return _stop(result, data, pos, f"{where}: checksum mismatch", number, version)
        if rec_type == REC_COMMIT:
            flags = commit_flags(payload, number, base + pos)
            if flags is None:
                return _stop(result, data, pos, f"{where}: a commit record that does not belong there",
                             number, version)
            result.committed_end = base + payload_start + length
            if flags & COMMIT_DURABLE:
                result.durable_end = result.committed_end
        result.records.append(RecordRef(base + pos, base + payload_start, length, rec_type))
        pos = payload_start + length
        result.valid_end = base + pos
    return result


def _stop(result: ScanResult, data: bytes, pos: int, detail: str, number: int,
          version: int) -> ScanResult:
    """A bad record is a torn tail (what a crash or power cut leaves in bytes
    that were never synced: a cut record, garbage, zeros, even a hole before a
    record that did reach the disk) unless a durable commit record follows it:
    then the bytes were synced before, and the damage is corruption.  Version 1
    segments have no commit records; there any valid record after the damage
    makes it corruption."""
    result.detail = detail
    if version == LEGACY_SEGMENT_VERSION:
        corrupt = valid_record_after(data, pos + 1)
    else:
        corrupt = durable_commit_after(data, pos + 1, result.base, number)
    result.outcome = CORRUPT if corrupt else INCOMPLETE
    return result


_PAYLOAD_MAGIC = ((b"SQB1", REC_BLOCK), (b"\x28\xb5\x2f\xfd", REC_BLOCK_ZSTD),   # block, zstd frame,
                  (COMMIT_MAGIC, REC_COMMIT))                                       # commit


def _whole_records_after(data: bytes, start: int, magic: bytes, rec_type: int):
    """Offsets of the whole records with a good checksum whose payload starts
    with ``magic``, at or after ``start``.  Every payload begins with a magic
    number, so candidates are found with bytes.find, not by trying every offset."""
    at = data.find(magic, start + RECORD_HEADER_SIZE)
    while at != -1:
        pos = at - RECORD_HEADER_SIZE
        length, crc, found_type = RECORD_HEADER.unpack_from(data, pos)
        end = at + length
        if found_type == rec_type and end <= len(data) and \
                record_crc(rec_type, data[at:end]) == crc:
            yield pos
        at = data.find(magic, at + 1)


def valid_record_after(data: bytes, start: int) -> bool:
    """Is there a whole record with a good checksum starting at or after ``start``?"""
    return any(next(_whole_records_after(data, start, magic, rec_type), None) is not None
               for magic, rec_type in _PAYLOAD_MAGIC)


def durable_commit_after(data: bytes, start: int, base: int, number: int) -> bool:
    """Is there a durable commit record of this segment at or after ``start``?"""
    for pos in _whole_records_after(data, start, COMMIT_MAGIC, REC_COMMIT):
        payload = data[pos + RECORD_HEADER_SIZE:pos + RECORD_HEADER_SIZE + COMMIT_PAYLOAD.size]
        flags = commit_flags(payload, number, base + pos)
        if flags is not None and flags & COMMIT_DURABLE:
            return True
    return False
