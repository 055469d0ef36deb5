"""sensorq sync and Cache.append_blocks: blocks copied byte for byte, what
DEST lacks and nothing else, device exports (version-2 blocks, the device
port's export cursor), schema and device conflicts.  The kill -9 campaign is
tests/test_sync_crash.py."""
from __future__ import annotations

import json

import numpy as np
import pytest

import sensorq
from sensorq import Channel
from sensorq.cli import main
from sensorq.codec.block import encode_block
from sensorq.codec.codes import SPLIT
from sensorq.codec.header import parse_block
from sensorq.errors import CorruptDataError, OutOfOrderError, SchemaError, StorageError
from sensorq.fleet.blocks import block_key
from sensorq.fleet.export import read_export, write_export
from sensorq.fleet.sync import sync

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
IMU = [Channel(c, "int16", "mg") for c in "xyz"]


def imu_data(k0: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed + k0)
    t = T0 + (k0 + np.arange(n, dtype=np.int64)) * MS
    cols = {c: rng.integers(-3000, 3000, n).astype(np.int16) for c in "xyz"}
    return t, cols


def make_source(path, n=5000, device="pump-1", labels=None, block_samples=256, seed=0, **options):
    cache = sensorq.open(path, create=True, device=device, labels=labels or {"site": "north"},
                         **options)
    cache.create_stream("imu", IMU, rate_hz=1000, block_samples=block_samples)
    cache.create_stream("env", [Channel("temp", "int16", "degC", scale=0.01)], block_samples=64)
    t, cols = imu_data(0, n, seed)
    cache.append("imu", t, cols)
    cache.append("env", t[::10], {"temp": np.arange(len(t[::10]), dtype=np.int16)})
    cache.flush()
    return cache


def read_all(path, stream):
    with sensorq.open(path, readonly=True) as cache:
        return cache.read(stream)


def same_data(a, b, stream):
    ta, ca = read_all(a, stream)
    tb, cb = read_all(b, stream)
    return np.array_equal(ta, tb) and all(np.array_equal(ca[k], cb[k]) for k in ca)


def test_sync_copies_blocks_byte_for_byte_and_is_idempotent(tmp_path):
    make_source(tmp_path / "src", compression="auto").close()
    report = sync(tmp_path / "src", tmp_path / "dst")
    assert [s.name for s in report.streams] == ["env", "imu"]
    assert all(s.created for s in report.streams)
    assert same_data(tmp_path / "src", tmp_path / "dst", "imu")
    assert same_data(tmp_path / "src", tmp_path / "dst", "env")
    with sensorq.open(tmp_path / "src", readonly=True) as s, \
            sensorq.open(tmp_path / "dst", readonly=True) as d:
        a, b = s.blocks("imu"), d.blocks("imu")
        assert [block_key(a.raw(i)) for i in range(len(a))] == \
            [block_key(b.raw(i)) for i in range(len(b))]
        assert list(a.seq) == list(b.seq)                # sequence numbers kept end to end
        assert d.device == "pump-1" and d.labels == {"site": "north"}
        assert d.info()["problems"] == []
        assert d.query("count where x > 1g from imu").value == \
            s.query("count where x > 1g from imu").value
    again = sync(tmp_path / "src", tmp_path / "dst")
    assert again.blocks == 0 and all(s.already > 0 for s in again.streams)
    assert "nothing to copy" in again.describe()


def test_sync_copies_only_what_is_new_and_keeps_readers_consistent(tmp_path):
    src = make_source(tmp_path / "src", n=3000)
    sync(tmp_path / "src", tmp_path / "dst")
    t, cols = imu_data(3000, 2000)
    src.append("imu", t, cols)
    src.flush()
    report = sync(tmp_path / "src", tmp_path / "dst")
    imu = next(s for s in report.streams if s.name == "imu")
    assert imu.samples > 0 and imu.already == 12         # 3000 samples: 12 blocks of 256
    assert same_data(tmp_path / "src", tmp_path / "dst", "imu")
    src.close()


def test_the_report_and_the_command_line(tmp_path, capsys):
    make_source(tmp_path / "src").close()
    assert main(["sync", str(tmp_path / "src"), str(tmp_path / "dst")]) == 0
    out = capsys.readouterr().out
    assert "stream imu (created): copied" in out and "(device pump-1)" in out
    assert main(["sync", str(tmp_path / "src"), str(tmp_path / "dst"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["blocks"] == 0 and report["device"] == "pump-1"
    assert main(["info", "--cache", str(tmp_path / "dst"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["device"] == "pump-1" and info["labels"] == {"site": "north"}
    assert main(["info", "--cache", str(tmp_path / "dst")]) == 0
    assert "  device pump-1 (site=north)" in capsys.readouterr().out.splitlines()


def test_a_schema_conflict_is_a_clear_error_and_copies_nothing_of_that_stream(tmp_path):
    make_source(tmp_path / "src").close()
    with sensorq.open(tmp_path / "dst", create=True, device="pump-1") as dst:
        dst.create_stream("imu", [Channel(c, "int32", "mg") for c in "xyz"])
    with pytest.raises(SchemaError, match="stream 'imu' differs between SOURCE"):
        sync(tmp_path / "src", tmp_path / "dst")
    assert main(["sync", str(tmp_path / "src"), str(tmp_path / "dst")]) == 1


def test_another_devices_data_is_refused_unless_asked(tmp_path):
    make_source(tmp_path / "src", device="pump-1").close()
    make_source(tmp_path / "other", device="pump-2", seed=1).close()
    sync(tmp_path / "src", tmp_path / "dst")
    with pytest.raises(SchemaError, match="device 'pump-2'.*device 'pump-1'"):
        sync(tmp_path / "other", tmp_path / "dst")
    report = sync(tmp_path / "other", tmp_path / "dst", any_device=True)
    imu = next(s for s in report.streams if s.name == "imu")
    assert imu.blocks == 0 and imu.refused > 0          # older than DEST's newest: reported
    with pytest.raises(StorageError, match="neither"):
        sync(tmp_path / "nothing", tmp_path / "dst")


def test_device_names_and_labels_are_set_at_creation(tmp_path):
    with sensorq.open(tmp_path / "c", create=True, device="pump-17",
                      labels={"site": "north", "model": "P7"}) as cache:
        assert cache.info()["device"] == "pump-17"
    with sensorq.open(tmp_path / "c", device="pump-17", labels={"site": "north"}) as cache:
        assert cache.labels == {"site": "north", "model": "P7"}
    with pytest.raises(SchemaError, match="belongs to device 'pump-17'"):
        sensorq.open(tmp_path / "c", device="pump-18")
    with pytest.raises(SchemaError, match="label site='north'"):
        sensorq.open(tmp_path / "c", labels={"site": "south"})
    with sensorq.open(tmp_path / "c") as cache:
        cache.set_device("pump-18", {"site": "south"})
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        assert (cache.device, cache.labels) == ("pump-18", {"site": "south"})
    for bad in ({"device": "x"}, {"1st": "x"}, {"site": ""}, {"site": "a\nb"}):
        with pytest.raises(SchemaError):
            sensorq.open(tmp_path / "d", create=True, labels=bad)
    assert not (tmp_path / "d").exists()                  # refused before the directory is made
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["device"] == "pump-18" and manifest["version"] == 1


def test_append_blocks_checks_everything_before_writing(tmp_path):
    t, cols = imu_data(0, 1000)
    blocks = [encode_block(t[i:i + 100], [cols[c][i:i + 100] for c in "xyz"], seq=i // 100)
              for i in range(0, 1000, 100)]
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("imu", IMU, block_samples=100)
        cache.append("imu", t[:3] - 10 * MS, {c: [1, 2, 3] for c in "xyz"})   # an open block
        assert cache.append_blocks("imu", blocks[:5]) == 500
        with pytest.raises(OutOfOrderError, match="before the stream's newest sample"):
            cache.append_blocks("imu", blocks[4:6])
        with pytest.raises(OutOfOrderError, match="sequence numbers must increase"):
            cache.append_blocks("imu", blocks[5:7], seqs=[3, 4])
        with pytest.raises(SchemaError, match="channel types"):
            cache.create_stream("other", [Channel("x", "int32")])
            cache.append_blocks("other", blocks[:1])
        # a fast stream takes no block with split Rice sections (the compact
        # codec's; the manifest says version 4 only for compact streams)
        cache.create_stream("fastimu", IMU, block_samples=100, codec="fast")
        split = [b for b in blocks if any(c & SPLIT == SPLIT for c in
                                          [parse_block(b).time_codec, *parse_block(b).entries["codec"]])]
        assert split, "expected compact blocks with split Rice sections"
        with pytest.raises(SchemaError, match="split Rice sections"):
            cache.append_blocks("fastimu", split[:1])
        fast = encode_block(t[:100], [cols[c][:100] for c in "xyz"], codec="fast")
        assert cache.append_blocks("fastimu", [fast]) == 100
        bad = bytearray(blocks[5])
        bad[70] ^= 1
        with pytest.raises(CorruptDataError, match="block 0 given to append_blocks"):
            cache.append_blocks("imu", [bytes(bad)])
        v2 = encode_block(t[500:600], [cols[c][500:600] for c in "xyz"], version=2, seq=77)
        assert cache.append_blocks("imu", [v2] + blocks[6:], seqs=range(10, 15)) == 500
    tt, got = read_all(tmp_path / "c", "imu")
    assert np.array_equal(tt[3:], t) and np.array_equal(got["z"][3:], cols["z"])
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        assert list(cache.blocks("imu").seq) == [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14]
        assert any("seq 6..9" in p for p in cache.info()["problems"])   # a break stays visible


# --- device exports -------------------------------------------------------------------

def export_blocks(t, cols, block_samples, first_seq=0, version=2):
    n = len(t)
    return [encode_block(t[i:i + block_samples], [c[i:i + block_samples] for c in cols],
                         stream_id=7, seq=first_seq + i // block_samples, version=version)
            for i in range(0, n, block_samples)]


def test_an_export_file_syncs_and_a_cut_transfer_resumes(tmp_path):
    t, cols = imu_data(0, 4096)
    stream = sensorq.Stream("imu", tuple(IMU), 1000, 128, None, 7)
    blocks = export_blocks(t, list(cols.values()), 128)
    path = write_export(tmp_path / "up.sqx", [stream], blocks, device="drone-3",
                        labels={"site": "field"}, cursor={"imu": {"after": None, "missed": 0}})
    data = path.read_bytes()
    (tmp_path / "cut.sqx").write_bytes(data[:len(data) // 2])
    report = sync(tmp_path / "cut.sqx", tmp_path / "dst")
    assert report.device == "drone-3" and any("ends inside" in p for p in report.problems)
    copied = report.streams[0].blocks
    assert 0 < copied < len(blocks)
    report = sync(path, tmp_path / "dst")
    assert report.streams[0].blocks == len(blocks) - copied and report.problems == []
    tt, got = read_all(tmp_path / "dst", "imu")
    assert np.array_equal(tt, t) and all(np.array_equal(got[c], cols[c]) for c in "xyz")
    assert sync(path, tmp_path / "dst").blocks == 0
    with pytest.raises(CorruptDataError, match="not a sensorq export file"):
        read_export(tmp_path / "dst" / "manifest.json")


def test_the_device_ports_export_cursor_end_to_end(tmp_path, dev):
    """Blocks sealed by the device port's C ring, read with sq_ring_iter_after
    in two uplinks; the blocks the ring evicted before the second one show up
    as missing data in DEST, never as a silent join."""
    from sensorq.device.native import Ring
    ring = Ring(dev, ["int16"] * 3, 64, stream_id=7, region_len=64 << 10)
    stream = sensorq.Stream("imu", tuple(IMU), 1000, 64, None, 7)
    t, cols = imu_data(0, 40_000)
    written = 0

    def feed(n):
        nonlocal written
        ring.append_many(t[written:written + n], [c[written:written + n] for c in cols.values()])
        written += n

    feed(640)
    blocks = ring.blocks()                       # the first uplink: everything sealed
    write_export(tmp_path / "a.sqx", [stream], blocks, device="dev-7",
                 cursor={"imu": {"after": None, "missed": 0}})
    sync(tmp_path / "a.sqx", tmp_path / "dst")
    last = parse_block(blocks[-1], versions=(1, 2)).seq
    feed(1280)                                   # two uplinks' worth, nothing evicted yet
    more, missed = ring.blocks_after(last)
    assert missed == 0 and len(more) == 20
    write_export(tmp_path / "b.sqx", [stream], more, device="dev-7",
                 cursor={"imu": {"after": last, "missed": missed}})
    assert sync(tmp_path / "b.sqx", tmp_path / "dst").blocks == 20
    sealed = 640 + 1280
    tt, got = read_all(tmp_path / "dst", "imu")
    assert np.array_equal(tt, t[:sealed]) and np.array_equal(got["y"], cols["y"][:sealed])
    last = parse_block(more[-1], versions=(1, 2)).seq
    feed(20_000)                                 # the ring turns over before the next uplink
    late, missed = ring.blocks_after(last)
    assert missed > 0
    write_export(tmp_path / "c.sqx", [stream], late, device="dev-7",
                 cursor={"imu": {"after": last, "missed": missed}})
    report = sync(tmp_path / "c.sqx", tmp_path / "dst")
    assert report.streams[0].missing == missed
    with sensorq.open(tmp_path / "dst", readonly=True) as cache:
        assert any(f"{missed} blocks" in p for p in cache.info()["problems"])
        first_late = parse_block(late[0], versions=(1, 2)).t_first
        result = cache.query(f"count from imu between {T0 + 1900 * MS}ns and {first_late + 1}ns")
        assert result.warnings                   # the gap is said, not silently joined


def test_a_disk_that_fills_up_mid_sync_keeps_whole_batches_and_the_next_run_finishes(tmp_path):
    """Sync writes through the store's all-or-nothing batches: a write that
    fails (a full disk) stores none of its batch, DEST keeps what earlier
    batches stored and opens, and sync run again copies the rest."""
    from faultfs import FaultyFS

    from sensorq.store import fileio
    make_source(tmp_path / "src", n=20_000).close()
    sync(tmp_path / "src", tmp_path / "dst", batch_bytes=1)      # creates DEST, copies all
    with sensorq.open(tmp_path / "src") as src:
        t, cols = imu_data(20_000, 20_000)
        src.append("imu", t, cols)
    with fileio.install(FaultyFS(budget=20_000)), pytest.raises(StorageError):
        sync(tmp_path / "src", tmp_path / "dst", batch_bytes=4_000)
    with sensorq.open(tmp_path / "dst", readonly=True) as dst:
        held = dst.info()["streams"]["imu"]["samples"]
        assert 20_000 < held < 40_000 and dst.info()["problems"] == []
    report = sync(tmp_path / "src", tmp_path / "dst")
    assert report.streams[1].samples == 40_000 - held
    assert same_data(tmp_path / "src", tmp_path / "dst", "imu")
