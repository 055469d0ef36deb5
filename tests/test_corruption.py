"""Damaged files: random bit flips and truncations in segment files and the
manifest.  Opening and reading must give either a clear SensorqError or data
whose every sample is right (a cut tail, or gaps that info() reports) - never a
crash, never a wrong value.  A writer opened afterwards can append again."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

import sensorq
from sensorq import Channel
from sensorq.errors import SensorqError

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
N_MAIN = 300_000
N_FLOAT = 20_000


def x_of(k: np.ndarray) -> np.ndarray:
    """A pseudo-random int16 for sample k (so the data does not compress away:
    a multiplicative hash alone steps by a constant mod 2^16, two residuals
    that the ENTROPY form codes in about a bit; mixed with a shift and a
    second multiply, as splitmix64 does, it does not)."""
    with np.errstate(over="ignore"):
        z = k.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(31))) * np.uint64(0xBF58476D1CE4E5B9)
    return (z >> np.uint64(48)).astype(np.uint16).view(np.int16)


def y_of(k: np.ndarray) -> np.ndarray:
    return np.sin(k.astype(np.float64))


def build(path: Path, compression: str) -> None:
    with sensorq.open(path, create=True, capacity="2MiB", compression=compression) as cache:
        cache.create_stream("m", [Channel("x", "int16"), Channel("i", "int64")], block_samples=500)
        cache.create_stream("f", [Channel("y", "float64")], block_samples=300)
        step = 10_000
        for start in range(0, N_MAIN, step):
            k = np.arange(start, start + step, dtype=np.int64)
            cache.append("m", T0 + k * MS, [x_of(k), k])
            kf = k[k < N_FLOAT]
            if kf.size:
                cache.append("f", T0 + kf * 7 * MS, [y_of(kf)])
            if start % 50_000 == 0:
                cache.flush()


@pytest.fixture(scope="module")
def pristine():
    root = Path(tempfile.mkdtemp(prefix="sensorq-corruption-"))
    caches = {}
    for compression in ("none", "zstd"):
        caches[compression] = root / compression
        build(caches[compression], compression)
        assert len(list(caches[compression].glob("segment-*.sqs"))) >= 4
    yield caches
    shutil.rmtree(root, ignore_errors=True)


def check_stream_m(cache) -> tuple[int, bool]:
    """Every sample served is right; returns (count, is a prefix of what was written)."""
    t, cols = cache.read("m")
    k = cols["i"]
    assert np.all(np.diff(k) > 0), "samples repeated or out of order"
    assert np.all((k >= 0) & (k < N_MAIN))
    assert np.array_equal(t, T0 + k * MS)
    assert np.array_equal(cols["x"], x_of(k))
    index = cache.blocks("m")
    assert index.n_samples.sum() == len(t)
    return len(t), bool(np.array_equal(k, np.arange(len(k))))


def check_stream_f(cache) -> tuple[int, bool]:
    t, cols = cache.read("f")
    k = (t - T0) // (7 * MS)
    assert np.array_equal(t, T0 + k * 7 * MS)
    assert np.all(np.diff(k) > 0) and np.all((k >= 0) & (k < N_FLOAT))
    assert np.array_equal(cols["y"].view(np.uint64), y_of(k).view(np.uint64))
    return len(t), bool(np.array_equal(k, np.arange(len(k))))


def check_cache(path: Path, readonly: bool) -> None:
    try:
        cache = sensorq.open(path, readonly=readonly)
    except SensorqError as exc:
        assert str(exc)        # a clear message, e.g. the manifest path
        return
    with cache:
        problems = cache.info()["problems"]
        for check in (check_stream_m, check_stream_f):
            _, prefix = check(cache)
            if not prefix:
                assert problems, "data is missing in the middle but info() reports no problem"
        if not readonly:          # the writer recovered: appends work and read back
            k0 = int(cache.read("m")[1]["i"][-1]) + 1 if cache.newest_ns("m") is not None else 0
            k = np.arange(max(k0, N_MAIN), max(k0, N_MAIN) + 1000, dtype=np.int64)
            cache.append("m", T0 + k * MS, [x_of(k), k])
            cache.flush()
    if not readonly:
        with sensorq.open(path, readonly=True) as again:
            t, cols = again.read("m")
            assert np.array_equal(cols["i"][-1000:], k)
            assert np.array_equal(cols["x"][-1000:], x_of(k))


mutation = st.fixed_dictionaries({
    "compression": st.sampled_from(["none", "zstd"]),
    "target": st.sampled_from(["segment", "segment", "segment", "newest", "manifest"]),
    "kind": st.sampled_from(["flip", "flip", "truncate"]),
    "where": st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=4),
    "bits": st.lists(st.integers(0, 7), min_size=4, max_size=4),
    "pick": st.integers(0, 100),
    "readonly": st.booleans(),
})


def damage(path: Path, spec: dict) -> Path:
    segments = sorted(path.glob("segment-*.sqs"))
    if spec["target"] == "manifest":
        victim = path / "manifest.json"
    elif spec["target"] == "newest":
        victim = segments[-1]
    else:
        victim = segments[spec["pick"] % len(segments)]
    data = bytearray(victim.read_bytes())
    if spec["kind"] == "truncate":
        data = data[:int(spec["where"][0] * len(data))]
    else:
        for where, bit in zip(spec["where"], spec["bits"]):
            data[int(where * len(data))] ^= 1 << bit
    victim.write_bytes(bytes(data))
    return victim


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=mutation)
# a record length flipped in the newest segment: the writer served nothing past
# it, readers trusted the segment's index past it and then dropped the writer's
# next blocks, which reused the sequence numbers the index listed
@example(spec={"compression": "none", "target": "newest", "kind": "flip", "where": [0.723438883102731],
               "bits": [0, 0, 0, 0], "pick": 0, "readonly": False})
def test_damaged_cache_gives_clear_error_or_right_data(pristine, spec):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c"
        shutil.copytree(pristine[spec["compression"]], path)
        damage(path, spec)
        check_cache(path, spec["readonly"])


def test_damage_in_an_old_segment_is_reported_and_later_data_served(pristine, tmp_path):
    path = tmp_path / "c"
    shutil.copytree(pristine["none"], path)
    victim = sorted(path.glob("segment-*.sqs"))[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x10
    victim.write_bytes(bytes(data))
    with sensorq.open(path, readonly=True) as cache:
        problems = cache.info()["problems"]
        assert victim.name in problems[0]
        # ... and the blocks it held are reported missing from each stream's sequence
        assert problems[1:] and all("missing between" in p for p in problems[1:]), problems
        n, prefix = check_stream_m(cache)
        assert not prefix and n < N_MAIN
        assert cache.read("m")[1]["i"][-1] == N_MAIN - 1     # later segments are still served


def test_torn_tail_is_cut_by_the_writer(pristine, tmp_path):
    path = tmp_path / "c"
    shutil.copytree(pristine["zstd"], path)
    newest = sorted(path.glob("segment-*.sqs"))[-1]
    size = newest.stat().st_size
    from sensorq.store.records import COMMIT_RECORD_SIZE
    size -= 2 * COMMIT_RECORD_SIZE            # past the close's two commit records ...
    with open(newest, "r+b") as f:
        f.truncate(size - 5)                 # ... the last block record loses its end
    with sensorq.open(path, readonly=True) as reader:
        assert reader.info()["problems"] == []      # a torn tail is not a problem ...
        n_reader, prefix = check_stream_m(reader)
        assert prefix and n_reader < N_MAIN or check_stream_f(reader)[0] < N_FLOAT
    with sensorq.open(path) as writer:
        assert newest.stat().st_size < size - 5     # ... the writer cuts it off
        assert writer.info()["problems"] == []
    with open(newest, "ab") as f:
        f.write(b"\0" * 4096)                  # a crash can leave zeros after the last write
    with sensorq.open(path) as writer:
        assert writer.info()["problems"] == []
        check_stream_m(writer)
    assert newest.stat().st_size < size - 5


def test_records_with_good_framing_but_bad_blocks_are_skipped_and_reported(tmp_path):
    """A record whose own CRC is right but whose block is not (or belongs to no
    stream, or is out of order) is skipped; the records after it still count."""
    from sensorq.codec.block import encode_block
    from sensorq.store.records import REC_BLOCK, REC_BLOCK_ZSTD, commit_record, record_bytes
    import zstandard

    path = tmp_path / "c"
    with sensorq.open(path, create=True, compression="none") as cache:
        stream = cache.create_stream("m", [Channel("x", "int16"), Channel("i", "int64")], block_samples=100)
        k = np.arange(300, dtype=np.int64)
        cache.append("m", T0 + k * MS, [x_of(k), k])
    sid = stream.stream_id

    def block(first: int, seq: int, stream_id: int = sid) -> bytes:
        k = np.arange(first, first + 100, dtype=np.int64)
        return encode_block(T0 + k * MS, [x_of(k), k], stream_id=stream_id, seq=seq)

    broken = bytearray(block(300, 3))
    broken[70] ^= 1                                                  # block CRC now fails
    records = [record_bytes(REC_BLOCK, bytes(broken)),
               record_bytes(REC_BLOCK, block(300, 3, stream_id=99)),    # no such stream
               record_bytes(REC_BLOCK, block(0, 3)),                    # goes back in time
               record_bytes(REC_BLOCK_ZSTD, b"not a zstd frame"),
               record_bytes(REC_BLOCK_ZSTD, zstandard.ZstdCompressor().compress(block(300, 3)))]
    newest = sorted(path.glob("segment-*.sqs"))[-1]
    end = newest.stat().st_size
    batch = b"".join(records)                  # a batch of records, committed
    with open(newest, "ab") as f:
        f.write(batch + commit_record(1, end + len(batch), durable=False))
    for readonly in (True, False):
        with sensorq.open(path, readonly=readonly) as cache:
            problems = cache.info()["problems"]
            assert len(problems) == 4, problems
            assert any("checksum" in p for p in problems) and any("unknown stream" in p for p in problems)
            assert any("out of order" in p for p in problems) and any("zstd" in p for p in problems)
            t, cols = cache.read("m")
            assert np.array_equal(cols["i"], np.arange(400))          # the last good block counts
            check_stream_m(cache)
