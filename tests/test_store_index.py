"""Segment index files (sensorq/store/segindex.py, docs/format.md §5): a
cache opened from its index files serves exactly what a cache opened by
scanning every segment serves; a missing, damaged, foreign or stale index is
not used; a damaged block behind a valid index never reaches a reader."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import sensorq
from sensorq import Channel
from sensorq.codec.header import parse_block
from sensorq.errors import CorruptDataError
from sensorq.store.blockindex import factorise
from sensorq.store.segindex import index_file_name, read_index

from faultfs import scramble

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def x_of(k: np.ndarray) -> np.ndarray:
    return scramble(k)


def build(path: Path, compression: str = "none", n: int = 200_000, capacity: str = "2MiB") -> None:
    with sensorq.open(path, create=True, capacity=capacity, compression=compression) as cache:
        cache.create_stream("m", [Channel("x", "int16"), Channel("i", "int64")], block_samples=500)
        cache.create_stream("f", [Channel("y", "float64")], block_samples=300)
        for start in range(0, n, 10_000):
            k = np.arange(start, start + 10_000, dtype=np.int64)
            cache.append("m", T0 + k * MS, [x_of(k), k])
            cache.append("f", T0 + k[::10] * MS, [np.sin(k[::10].astype(np.float64))])
            if start % 30_000 == 0:
                cache.flush()


def without_indexes(path: Path, to: Path) -> Path:
    shutil.copytree(path, to)
    for index in to.glob("segment-*.sqi"):
        index.unlink()
    return to


def served(cache) -> dict:
    """Everything a reader serves, stream by stream."""
    out = {}
    for name in cache.streams:
        t, cols = cache.read(name)
        index = cache.blocks(name)
        out[name] = (t, cols, index.seq.copy(), index.n_samples.copy(), index.entries.copy())
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        (ta, ca, *ia), (tb, cb, *ib) = a[name], b[name]
        assert np.array_equal(ta, tb)
        assert all(np.array_equal(ca[c].view(np.uint8), cb[c].view(np.uint8)) for c in ca)
        assert all(np.array_equal(x, y) for x, y in zip(ia, ib))


def check_m(cache) -> int:
    """Every sample of stream m that is served is right; returns how many."""
    t, cols = cache.read("m")
    k = cols["i"]
    assert np.all(np.diff(k) > 0)
    assert np.array_equal(t, T0 + k * MS) and np.array_equal(cols["x"], x_of(k))
    return len(k)


@pytest.fixture(scope="module", params=["none", "zstd"])
def built(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(f"index-{request.param}") / "c"
    build(path, request.param)
    return path


def test_a_closed_cache_opens_from_its_index_files(built, tmp_path):
    segments = sorted(built.glob("segment-*.sqs"))
    assert len(segments) >= 4
    assert all(s.with_suffix(".sqi").exists() for s in segments)
    with sensorq.open(built, readonly=True) as reader:
        assert all(s.from_index for s in reader._segments)
        with_index = served(reader)
        answer = reader.query("count where x > 1000").value
        assert reader.info()["problems"] == []
    with sensorq.open(without_indexes(built, tmp_path / "scan"), readonly=True) as scanning:
        assert not any(s.from_index for s in scanning._segments)
        assert_same(with_index, served(scanning))
        assert scanning.query("count where x > 1000").value == answer
    cols = with_index["m"][1]
    assert answer == int((cols["x"] > 1000).sum())


def damage_index(index: Path, how: str) -> None:
    data = bytearray(index.read_bytes())
    if how == "delete":
        index.unlink()
    elif how == "flip":
        data[len(data) // 3] ^= 0x20
        index.write_bytes(bytes(data))
    elif how == "truncate":
        index.write_bytes(bytes(data[:len(data) // 2]))
    elif how == "empty":
        index.write_bytes(b"")
    elif how == "foreign":                # another segment's index under this name
        other = sorted(index.parent.glob("segment-*.sqi"))
        other = next(o for o in other if o != index)
        index.write_bytes(other.read_bytes())


@pytest.mark.parametrize("how", ["delete", "flip", "truncate", "empty", "foreign"])
def test_a_missing_or_damaged_index_is_not_used_and_the_writer_rewrites_it(built, tmp_path, how):
    path = tmp_path / "c"
    shutil.copytree(built, path)
    victim = sorted(path.glob("segment-*.sqi"))[1]
    number = int(victim.name[8:18])
    reference = served(sensorq.open(built, readonly=True))
    damage_index(victim, how)
    with sensorq.open(path, readonly=True) as reader:
        by_number = {s.number: s for s in reader._segments}
        assert not by_number[number].from_index
        assert all(s.from_index for n, s in by_number.items() if n != number)
        assert_same(served(reader), reference)
        assert reader.info()["problems"] == []
    with sensorq.open(path):             # a writer's close writes the missing index again
        pass
    with open(path / index_file_name(number).replace(".sqi", ".sqs"), "rb") as f:
        fd = f.fileno()
        assert read_index(path, number, fd, os.fstat(fd).st_size) is not None


def test_an_index_older_than_its_segment_is_used_and_the_rest_scanned(tmp_path):
    """The writer appends to the newest segment after its index was written:
    a reader takes the index and scans only what follows it."""
    path = tmp_path / "c"
    build(path, n=30_000, capacity="64MiB")
    newest = sorted(path.glob("segment-*.sqs"))[-1]
    indexed_size = newest.stat().st_size
    writer = sensorq.open(path)
    k = np.arange(30_000, 50_000, dtype=np.int64)
    writer.append("m", T0 + k * MS, [x_of(k), k])
    writer.flush()
    assert newest.stat().st_size > indexed_size
    with sensorq.open(path, readonly=True) as reader:
        segment = reader._segments[-1]
        assert segment.from_index and segment.indexed_end == indexed_size
        assert segment.served_end == newest.stat().st_size
        assert check_m(reader) == 50_000
    writer.close()


def test_a_segment_cut_short_behind_its_index_is_read_as_it_is(built, tmp_path):
    """An old segment truncated below what its index covers: the index does not
    fit the file, so the segment is scanned - the same problems and data as a
    cache without index files."""
    path = tmp_path / "c"
    shutil.copytree(built, path)
    victim = sorted(path.glob("segment-*.sqs"))[1]
    os.truncate(victim, victim.stat().st_size * 2 // 3)
    plain = without_indexes(path, tmp_path / "plain")
    with sensorq.open(path, readonly=True) as reader, sensorq.open(plain, readonly=True) as scanning:
        assert not reader._segments[1].from_index
        assert_same(served(reader), served(scanning))
        assert reader.info()["problems"] == scanning.info()["problems"] != []


def flip_inside_a_block(segment: Path, fraction: float = 0.5, in_crc: bool = False) -> None:
    """Flip a bit in the middle of a block payload (not a record header), or
    ``in_crc`` in the CRC the block ends with (its last byte)."""
    data = bytearray(segment.read_bytes())
    with sensorq.open(segment.parent, readonly=True) as reader:
        number = int(segment.name[8:18])
        stored = reader._blocks[reader.streams["m"].stream_id]
        rows = stored.segment_rows(number)
        row = rows.start + int((rows.stop - rows.start) * fraction)
        start = int(stored.rec_start[row]) + 9 + int(stored.stored[row] - 9) // 2
        if in_crc:
            start = int(stored.rec_start[row]) + int(stored.stored[row]) - 1
    data[start] ^= 0x08
    segment.write_bytes(bytes(data))


def test_a_damaged_block_behind_a_valid_index_never_reaches_a_reader(tmp_path):
    path = tmp_path / "c"
    build(path, "none")
    victim = sorted(path.glob("segment-*.sqs"))[1]
    flip_inside_a_block(victim)
    plain = without_indexes(path, tmp_path / "plain")
    with sensorq.open(path, readonly=True) as reader:
        assert reader._segments[1].from_index           # the index itself is fine ...
        index = reader.blocks("m")                      # ... but the block is checked first
        for i in range(len(index)):
            parse_block(np.ascontiguousarray(index.raw(i)))   # every block handed out is whole
        assert not reader._segments[1].from_index       # its segment was read whole
        n = check_m(reader)
        with sensorq.open(plain, readonly=True) as scanning:
            assert n == check_m(scanning) < 200_000
            assert reader.query("count where x > 0").value == scanning.query("count where x > 0").value
            assert reader.info()["problems"] == scanning.info()["problems"]
        assert any("checksum" in p and victim.name in p for p in reader.info()["problems"])


def unchecked(reader, stream: str = "m") -> int:
    """How many of the stream's blocks listed by index files have not had their CRC checked."""
    return reader._blocks[reader.streams[stream].stream_id].unverified


def test_a_query_checks_the_crcs_of_the_blocks_it_reads_and_no_others(tmp_path):
    """Queries take their blocks lazily (Cache.blocks(lazy=True)): a count the
    statistics answer reads no block, a window reads only the blocks it
    decodes, and an answer is the same either way.  (Without zstd: a block in a
    zstd run is checked when its run is decompressed, by the frame checksum.)"""
    path = tmp_path / "c"
    build(path)
    with sensorq.open(path, readonly=True) as reader, sensorq.open(path, readonly=True) as eager:
        listed = unchecked(reader)
        assert listed > 100
        whole = reader.query("count where x > -40000")          # every block whole from statistics
        assert whole.scan.decoded == 0 and whole.value == 200_000
        assert unchecked(reader) == listed                        # no block was read
        window = "count where x > 1000 between 1700000010s and 1700000012s"
        result = reader.query(window)
        assert 0 < result.scan.decoded < 10
        assert unchecked(reader) == listed - result.scan.decoded   # exactly the blocks it decoded
        eager.blocks("m")                                         # the eager reader checks them all
        assert unchecked(eager) == 0
        assert result.value == eager.query(window).value
        k = np.arange(10_000, 12_000)
        assert result.value == int(np.count_nonzero(x_of(k) > 1000))


def test_a_window_asked_again_checks_no_crc_again_and_damage_elsewhere_is_still_found(
        tmp_path, monkeypatch):
    """A query asked again over the same blocks reuses its kept plan, whose
    blocks were checked by the first ask: no CRC is computed again
    (scan.py's lazy check skips a kept plan's rows it found checked).  That
    shortcut hides nothing: a damaged block no query has read yet is found by
    the first query that reads it, whose answer is then a scan's."""
    from sensorq import checksum
    computed = []
    real_crc32 = checksum.crc32
    monkeypatch.setattr(checksum, "crc32", lambda data: computed.append(1) or real_crc32(data))
    path = tmp_path / "c"
    build(path)
    flip_inside_a_block(sorted(path.glob("segment-*.sqs"))[1])
    plain = without_indexes(path, tmp_path / "plain")
    window = "count where x > 1000 between 1700000190s and 1700000192s"    # the newest blocks
    with sensorq.open(path, readonly=True) as reader, sensorq.open(plain, readonly=True) as scanning:
        computed.clear()                # (opening checked the blocks no index file lists)
        first = reader.query(window)
        assert 0 < first.scan.decoded == len(computed)
        assert reader._segments[1].from_index                   # the damaged one not read yet
        for _ in range(3):
            again = reader.query(window)
            assert again.plan is first.plan and again.value == first.value
        assert len(computed) == first.scan.decoded              # nothing checked twice
        k = np.arange(190_000, 192_000)
        assert first.value == int(np.count_nonzero(x_of(k) > 1000))
        assert reader.query("count where x > 0").value == scanning.query("count where x > 0").value
        assert not reader._segments[1].from_index               # found, and read whole
        assert reader.info()["problems"] == scanning.info()["problems"] != []


@pytest.mark.parametrize("compression, in_crc", [("none", False), ("zstd", False), ("none", True)])
def test_a_damaged_block_a_query_reads_is_found_before_a_kernel_reads_it(tmp_path, compression,
                                                                         in_crc):
    """A query that would decode a damaged block behind a valid index finds
    the damage first (its CRC), the cache reads that segment whole, and the
    query is asked again: its answer is the one a cache without index files
    gives, with no error.  A query answered from statistics alone does not
    read the block, and its answer is that of the data as written.  Damage
    to the CRC at the block's end alone (its contents whole) is damage too,
    as a scan of the segment finds it."""
    path = tmp_path / "c"
    build(path, compression)
    written = tmp_path / "written"
    shutil.copytree(path, written)
    victim = sorted(path.glob("segment-*.sqs"))[1]
    flip_inside_a_block(victim, in_crc=in_crc)
    plain = without_indexes(path, tmp_path / "plain")
    with sensorq.open(path, readonly=True) as reader, sensorq.open(plain, readonly=True) as scanning, \
            sensorq.open(written, readonly=True) as intact:
        stats_only = "count where x > -40000"
        assert reader.query(stats_only).value == intact.query(stats_only).value == 200_000
        assert reader._segments[1].from_index                    # not read: the damage not yet seen
        for text in ("count where x > 0", "sum i", "max x", "find first 3 where x > 30000",
                     "top 5 x"):
            answer = reader.query(text)
            assert not reader._segments[1].from_index            # found, and read whole
            expected = scanning.query(text)
            assert (answer.value, answer.kind) == (expected.value, expected.kind), text
            if answer.kind == "table":
                assert all(np.array_equal(answer.columns[c], expected.columns[c]) for c in answer.columns)
        assert reader.info()["problems"] == scanning.info()["problems"] != []
        assert check_m(reader) == check_m(scanning) < 200_000


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_blocks_handed_out_before_the_cache_indexes_itself_again_stay_readable(tmp_path, compression):
    """Finding a damaged block re-indexes the cache (its segment now served
    only up to the damage); a BlockIndex handed out before still reads the
    verified bytes it was made from."""
    path = tmp_path / "c"
    build(path, compression)
    victim = sorted(path.glob("segment-*.sqs"))[1]
    flip_inside_a_block(victim, 0.1)
    with sensorq.open(path, readonly=True) as reader:
        held = reader.blocks("f")                   # f's blocks are whole: nothing found yet
        assert reader._segments[1].from_index
        check_m(reader)                             # reads every m block: finds the damage
        assert not reader._segments[1].from_index
        assert len(reader.blocks("f")) < len(held)     # f's later blocks there are no longer served
        for i in range(len(held)):
            t, (y,) = held.decode(i)
            k = (t - T0) // MS
            assert np.array_equal(y.view(np.uint64), np.sin(k.astype(np.float64)).view(np.uint64))


def test_a_damaged_zstd_block_behind_a_valid_index_is_found_when_its_run_is_read(tmp_path):
    path = tmp_path / "c"
    build(path, "zstd")
    victim = sorted(path.glob("segment-*.sqs"))[1]
    flip_inside_a_block(victim)
    plain = without_indexes(path, tmp_path / "plain")
    with sensorq.open(path, readonly=True) as reader, sensorq.open(plain, readonly=True) as scanning:
        assert reader._segments[1].from_index
        try:                                # the run is decompressed by the query: it fails ...
            reader.query("max x")
        except CorruptDataError as exc:
            assert victim.name in str(exc)
        # ... and from then on the segment is read whole, as without an index
        assert reader.query("max x").value == scanning.query("max x").value
        assert check_m(reader) == check_m(scanning)
        assert reader.info()["problems"] == scanning.info()["problems"] != []


def test_a_writer_never_appends_to_a_segment_it_did_not_read_whole(tmp_path):
    path = tmp_path / "c"
    build(path, n=60_000)
    with sensorq.open(path) as writer:
        assert not writer._segments[-1].from_index
        assert all(s.from_index for s in writer._segments[:-1])
        k = np.arange(200_000, 201_000, dtype=np.int64)
        writer.append("m", T0 + k * MS, [x_of(k), k])
    with sensorq.open(path, readonly=True) as reader:
        assert reader.read("m")[1]["i"][-1] == 200_999


def test_a_writer_that_finds_a_damaged_block_behind_an_index_keeps_writing(tmp_path):
    path = tmp_path / "c"
    build(path, "none")
    victim = sorted(path.glob("segment-*.sqs"))[1]
    flip_inside_a_block(victim)
    with sensorq.open(path) as writer:
        assert writer._segments[1].from_index
        k = np.arange(200_000, 205_000, dtype=np.int64)
        writer.append("m", T0 + k * MS, [x_of(k), k])
        writer.flush()
        n = check_m(writer)                            # finds the damage: indexed again
        assert not writer._segments[1].from_index
        assert not (path / index_file_name(int(victim.name[8:18]))).exists()
        k = np.arange(205_000, 206_000, dtype=np.int64)
        writer.append("m", T0 + k * MS, [x_of(k), k])  # appends still go on after it
        assert check_m(writer) == n + 1000
        seqs = writer.blocks("m").seq
        assert np.all(np.diff(seqs) > 0)
    with sensorq.open(path, readonly=True) as reader:
        assert check_m(reader) == n + 1000
        assert any("checksum" in p and victim.name in p for p in reader.info()["problems"])


def test_a_reader_refreshes_from_the_index_files_of_new_segments(tmp_path):
    path = tmp_path / "c"
    build(path, n=40_000)
    with sensorq.open(path, readonly=True) as reader:
        assert check_m(reader) == 40_000
        with sensorq.open(path) as writer:
            for start in range(40_000, 200_000, 20_000):
                k = np.arange(start, start + 20_000, dtype=np.int64)
                writer.append("m", T0 + k * MS, [x_of(k), k])
                writer.flush()
        reader.refresh()
        assert sum(s.from_index for s in reader._segments) >= 3
        assert check_m(reader) == 200_000
        assert reader.info()["problems"] == []


def test_stray_index_files_are_removed_by_the_writer(tmp_path):
    path = tmp_path / "c"
    build(path, n=30_000)
    (path / index_file_name(999)).write_bytes(b"junk")
    (path / (index_file_name(998) + ".tmp")).write_bytes(b"junk")
    with sensorq.open(path):
        pass
    assert not (path / index_file_name(999)).exists()
    assert not (path / (index_file_name(998) + ".tmp")).exists()


# --- hypothesis: the same answers with and without index files -------------------------------

step = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(["m", "f"]), st.integers(1, 4000)),
    st.tuples(st.just("flush"), st.none(), st.none()),
    st.tuples(st.just("reopen"), st.none(), st.none()),
    st.tuples(st.just("drop_f"), st.none(), st.none()),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=25),
       compression=st.sampled_from(["none", "zstd", "auto"]),
       block_samples=st.sampled_from([64, 100, 500]))
def test_answers_are_equal_with_and_without_index_files(tmp_path_factory, steps, compression,
                                                        block_samples):
    path = tmp_path_factory.mktemp("w") / "c"
    counts = {"m": 0, "f": 0}
    cache = sensorq.open(path, create=True, capacity="64KiB", compression=compression)
    try:
        cache.create_stream("m", [Channel("x", "int16"), Channel("i", "int64")],
                            block_samples=block_samples)
        cache.create_stream("f", [Channel("y", "float64")], block_samples=block_samples)
        for kind, name, n in steps:
            if kind == "append" and name in cache.streams:
                k = np.arange(counts[name], counts[name] + n, dtype=np.int64)
                cols = [x_of(k), k] if name == "m" else [np.sin(k.astype(np.float64))]
                cache.append(name, T0 + k * MS, cols)
                counts[name] += n
            elif kind == "flush":
                cache.flush()
            elif kind == "reopen":
                cache.close()
                cache = sensorq.open(path)
            elif kind == "drop_f" and "f" in cache.streams:
                cache.drop_stream("f")
    finally:
        cache.close()
    plain = without_indexes(path, path.parent / "plain")
    queries = ["count where x > 0", "max x", "top 3 x"]
    with sensorq.open(path, readonly=True) as reader, sensorq.open(plain, readonly=True) as scanning:
        assert_same(served(reader), served(scanning))
        for q in queries:
            a, b = reader.query(q), scanning.query(q)
            assert a.kind == b.kind and repr(a.value) == repr(b.value)
            assert all(np.array_equal(a.columns[c], b.columns[c]) for c in (a.columns or {}))
        assert reader.info() == scanning.info() | {"path": str(path)}
        assert reader.info()["problems"] == []
    if counts["m"]:
        with sensorq.open(path, readonly=True) as reader:
            check_m(reader)


@given(st.lists(st.integers(-50, 3000), max_size=200), st.booleans())
def test_factorise_is_np_unique(keys, sort):
    keys = np.array(sorted(keys) if sort else keys, np.int64)
    distinct, inverse = factorise(keys)
    expected, expected_inverse = np.unique(keys, return_inverse=True)
    assert distinct == expected.tolist()
    assert np.array_equal(inverse, expected_inverse.reshape(-1)) and inverse.dtype == np.int32


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=3),
       bit=st.integers(0, 7), pick=st.integers(0, 100))
def test_damage_behind_valid_indexes_never_gives_a_wrong_sample(built, tmp_path_factory, where, bit,
                                                                 pick):
    """Bit flips in segments whose index files are intact: reads before info()
    serve only right samples (or fail with a clear error, once); after
    info() the cache serves and reports what a cache without index files does."""
    path = tmp_path_factory.mktemp("d") / "c"
    shutil.copytree(built, path)
    segments = sorted(path.glob("segment-*.sqs"))
    victim = segments[pick % len(segments)]
    data = bytearray(victim.read_bytes())
    for w in where:
        data[max(20, int(w * len(data)))] ^= 1 << bit
    victim.write_bytes(bytes(data))
    plain = without_indexes(path, path.parent / "plain")
    with sensorq.open(path, readonly=True) as reader:
        try:
            reader.query("count where x > 0")
        except CorruptDataError:
            pass
        check_m(reader)
        problems = reader.info()["problems"]
        with sensorq.open(plain, readonly=True) as scanning:
            assert problems == scanning.info()["problems"]
            assert_same(served(reader), served(scanning))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=3),
       bit=st.integers(0, 7), pick=st.integers(0, 100), cut=st.booleans())
def test_damaged_index_files_are_never_used(built, tmp_path_factory, where, bit, pick, cut):
    path = tmp_path_factory.mktemp("i") / "c"
    shutil.copytree(built, path)
    indexes = sorted(path.glob("segment-*.sqi"))
    victim = indexes[pick % len(indexes)]
    data = bytearray(victim.read_bytes())
    if cut:
        data = data[:int(where[0] * len(data))]
    else:
        for at in {int(w * len(data)) for w in where}:      # (twice at one place is no flip)
            data[at] ^= 1 << bit
    victim.write_bytes(bytes(data))
    plain = without_indexes(path, path.parent / "plain")
    with sensorq.open(path, readonly=True) as reader, sensorq.open(plain, readonly=True) as scanning:
        assert not next(s for s in reader._segments if s.path.stem == victim.stem).from_index
        assert_same(served(reader), served(scanning))
        assert reader.info()["problems"] == scanning.info()["problems"] == []


def _frame_declaring(size: int) -> bytes:
    """A valid zstd frame of 70,000 bytes whose header declares ``size`` bytes
    instead, in an 8-byte frame content size field (RFC 8878 §3.1.1.1)."""
    import zstandard
    frame = zstandard.ZstdCompressor(level=1, write_content_size=True).compress(
        np.arange(70_000, dtype=np.uint8).tobytes())
    fhd = frame[4]
    assert fhd >> 6 == 2 and fhd >> 5 & 1 == 1 and fhd & 3 == 0   # one segment: the 4-byte size next
    return frame[:4] + bytes([fhd | 0xC0]) + size.to_bytes(8, "little") + frame[9:]


@pytest.mark.parametrize("declared", [70_001, 1 << 31, 1 << 36, 1 << 62])
def test_a_zstd_frame_declaring_more_than_it_may_hold_is_corrupt_not_out_of_memory(declared):
    """A frame is decompressed into a buffer of the size its header declares
    (whatever max_output_size says): a bit flip there must be a
    CorruptDataError, never an allocation of what it declares."""
    from sensorq.store.zstdruns import ZstdRuns
    runs = ZstdRuns()
    honest = _frame_declaring(70_000)
    assert runs.decompress(honest, limit=70_000) == np.arange(70_000, dtype=np.uint8).tobytes()
    with pytest.raises(CorruptDataError, match="declares"):
        runs.decompress(_frame_declaring(declared), limit=70_000)
    with pytest.raises(CorruptDataError, match="declares"):
        runs.decompress(honest, limit=69_999)             # more than the run has left


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_select_picks_the_rows_numpy_indexing_picks(built, data):
    """BlockIndex.select, with its shortcut for every row in order, against
    numpy's own indexing of each column: the identity, near-identities of the
    same length (a repeat, a swap), masks and arbitrary picks."""
    with sensorq.open(built, readonly=True) as cache:
        index = cache.blocks("m", lazy=True)
        n = len(index)
        identity = np.arange(n, dtype=np.int64)
        repeat, swap = identity.copy(), identity.copy()
        repeat[-1] = repeat[0]
        swap[[0, -1]] = swap[[-1, 0]]
        mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        picks = np.array(data.draw(st.lists(st.integers(0, n - 1), max_size=2 * n)), dtype=np.int64)
        for which in (identity, identity.astype(np.int32), repeat, swap, mask, picks):
            chosen = index.select(which)
            for field in ("offset", "length", "n_samples", "t_first", "t_last", "seq", "entries"):
                assert np.array_equal(getattr(chosen, field), getattr(index, field)[which]), field
            if len(chosen):     # its blocks' bytes are read through the parent's lazy CRC check
                assert np.array_equal(chosen.decode(len(chosen) - 1)[0],
                                      index.decode(int(identity[which][-1]))[0])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 40), channels=st.integers(1, 4), data=st.data())
def test_take_entries_gathers_what_numpy_indexing_gathers(n, channels, data):
    """take_entries (the statistics table gathered as 8-byte words) against
    numpy's field-by-field indexing of the same structured table: whole rows
    and one channel's, by masks, index arrays (repeats, any order) and
    slices, from a contiguous table and from a strided view of one."""
    from sensorq.codec.header import ENTRY_DTYPE
    from sensorq.store.blockindex import take_entries
    raw = np.frombuffer(data.draw(st.binary(min_size=2 * n * channels * ENTRY_DTYPE.itemsize,
                                            max_size=2 * n * channels * ENTRY_DTYPE.itemsize)),
                        ENTRY_DTYPE).reshape(2 * n, channels)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    picks = np.array(data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=2 * n if n else 0)),
                     dtype=np.int64)
    channel = data.draw(st.integers(0, channels - 1))
    for table in (raw[:n], raw[::2]):           # contiguous rows; every other row (strided)
        for rows in (mask, picks, slice(1, None, 2)):
            assert take_entries(table, rows).tobytes() == table[rows].tobytes()
            assert take_entries(table, rows, channel).tobytes() == table[rows, channel].tobytes()
            assert take_entries(table, rows, channel).shape == table[rows, channel].shape
