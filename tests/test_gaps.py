"""Holes that leave every record intact: a whole segment missing, or one cut
exactly at a record boundary.  Blocks carry a per-stream sequence number and
segments consecutive numbers, so both are found, reported in info(), and a
query whose window spans the hole says so."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import sensorq
from sensorq import Channel
from sensorq.store.records import RECORD_HEADER, RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


@pytest.fixture()
def cache_path(tmp_path):
    path = tmp_path / "c"
    with sensorq.open(path, create=True, capacity="1MiB", compression="none") as cache:
        cache.create_stream("s", [Channel("x", "int16"), Channel("i", "int64")], block_samples=500)
        rng = np.random.default_rng(0)
        for start in range(0, 200_000, 20_000):
            k = np.arange(start, start + 20_000, dtype=np.int64)
            cache.append("s", T0 + k * MS, {"x": rng.integers(-9000, 9000, k.size).astype(np.int16),
                                             "i": k})
            cache.flush()
    assert len(list(path.glob("segment-*.sqs"))) >= 4
    return path


def record_starts(data: bytes) -> list[int]:
    pos, starts = SEGMENT_HEADER_SIZE, []
    while pos < len(data):
        starts.append(pos)
        length = RECORD_HEADER.unpack_from(data, pos)[0]
        pos += RECORD_HEADER_SIZE + length
    return starts


def hole_of(cache) -> tuple[int, int]:
    k = cache.read("s")[1]["i"]
    jump = int(np.flatnonzero(np.diff(k) != 1)[0])
    return int(k[jump]), int(k[jump + 1])


def test_a_missing_segment_is_reported_and_answers_across_it_say_so(cache_path):
    victim = sorted(cache_path.glob("segment-*.sqs"))[1]
    victim.unlink()
    with sensorq.open(cache_path, readonly=True) as cache:
        problems = cache.info()["problems"]
        assert any("missing between" in p and "segment-" in p for p in problems), problems
        assert any(f"segments {int(victim.name[8:18])}..{int(victim.name[8:18])} are missing" in p
                   for p in problems)
        before, after = hole_of(cache)
        spanning = cache.query(f"count since {T0 + before * MS}ns")
        assert spanning.warnings and "gap in stream 's'" in spanning.warnings[0]
        assert spanning.value == cache.read("s", T0 + before * MS)[0].size
        clear = cache.query(f"count since {T0 + after * MS}ns")
        assert clear.warnings == []
        assert "warnings" in spanning.to_dict() and "warnings" not in clear.to_dict()


def test_a_segment_cut_at_a_record_boundary_is_reported(cache_path):
    victim = sorted(cache_path.glob("segment-*.sqs"))[1]
    data = victim.read_bytes()
    starts = record_starts(data)
    victim.write_bytes(data[:starts[len(starts) // 2]])        # whole records, the rest gone
    for readonly in (True, False):
        with sensorq.open(cache_path, readonly=readonly) as cache:
            problems = cache.info()["problems"]
            assert any("blocks (seq" in p and "missing between" in p for p in problems), problems
            before, after = hole_of(cache)
            assert after > before + 1
            assert cache.query("count").warnings


def test_the_command_line_prints_the_warning(cache_path):
    sorted(cache_path.glob("segment-*.sqs"))[1].unlink()
    out = subprocess.run([sys.executable, "-m", "sensorq", "--cache", str(cache_path), "--json",
                          "count from s"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "warning: the answer spans a gap in stream 's'" in out.stderr
    assert json.loads(out.stdout)["warnings"]
