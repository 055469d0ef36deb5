"""Shared test vectors (tests/vectors/, see sensorq/device/vectors.py), checked
from both sides: the host codec and numpy reference on the Python side, the C
library (built for the host) on the device side, and the query engine, whose
answers the device's must match after scaling."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from sensorq.codec.block import decode_block
from sensorq.device.vectors import block_info
from sensorq.device.bytecode import schema_hash
from sensorq.device.native import ERRORS, DeviceError
from sensorq.device.reference import round_half_away_float
from sensorq.device.vectors import (HEADER, VECTORS, blocks_of, compile_queries, expected_for,
                                    firmware_input, host_blocks)
from sensorq.schema import Stream

VECTOR_DIR = Path(__file__).parent / "vectors"
NAMES = sorted(VECTORS)


def load(name: str):
    meta = json.loads((VECTOR_DIR / f"{name}.json").read_text())
    data = (VECTOR_DIR / f"{name}.bin").read_bytes()
    magic, n_ch, dtypes, block_samples, region_len, n, n_queries, _schema, _codec = HEADER.unpack_from(data)
    assert magic == b"SQV1"
    rows = np.frombuffer(data, "<i8", count=n * (1 + n_ch), offset=HEADER.size).reshape(n, 1 + n_ch)
    at = HEADER.size + rows.nbytes
    queries = []
    for _ in range(n_queries):
        length, now = struct.unpack_from("<Iq", data, at)
        queries.append((data[at + 12:at + 12 + length], now))
        at += 12 + length
    assert at == len(data)
    return meta, rows, queries, (VECTOR_DIR / f"{name}.blocks").read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_vector_files_are_what_the_generator_makes(name):
    """The committed files match the generator (same samples, bytecode, answers)."""
    vector = VECTORS[name]()
    meta, _, _, blocks = load(name)
    assert (VECTOR_DIR / f"{name}.bin").read_bytes() == firmware_input(vector, compile_queries(vector))
    assert blocks == b"".join(host_blocks(vector, meta["surviving_from_seq"]))
    assert meta["queries"] == expected_for(vector, meta["surviving_from_seq"])


@pytest.mark.parametrize("name", NAMES)
def test_python_side_decodes_vector_blocks(name):
    meta, rows, _, blocks = load(name)
    stream = Stream.from_json(meta["stream"])
    b = stream.block_samples
    for block in blocks_of(blocks):
        info = block_info(block)
        t, cols = decode_block(block)
        lo = info.seq * b
        assert np.array_equal(t, rows[lo:lo + b, 0])
        for i, col in enumerate(cols):
            assert col.dtype.name == stream.channels[i].dtype
            assert np.array_equal(col.astype(np.int64), rows[lo:lo + b, i + 1])


@pytest.mark.parametrize("name", NAMES)
def test_c_side_writes_the_vector_blocks_and_answers(dev, name):
    meta, rows, queries, blocks = load(name)
    stream = Stream.from_json(meta["stream"])
    ring = dev.ring([c.dtype for c in stream.channels], stream.block_samples,
                    region_len=meta["region_len"], schema=schema_hash(stream), codec=meta["codec"])
    ring.append_many(rows[:, 0], [rows[:, i + 1] for i in range(len(stream.channels))])
    assert b"".join(ring.blocks()) == blocks
    for (code, now), want in zip(queries, meta["queries"]):
        try:
            got = ring.query(code, now)
        except DeviceError as exc:
            assert exc.name == want["status"], want["text"]
            continue
        assert want["status"] == "SQ_OK", want["text"]
        assert (got.value, got.count) == (want["value"], want["count"]), want["text"]
        for block in blocks_of(blocks):       # and over the blocks alone, as an array of pointers
            dev.verify(block)
    for block in blocks_of(blocks):
        t, cols = dev.decode(block)
        lo = block_info(block).seq * stream.block_samples
        assert np.array_equal(t, rows[lo:lo + len(t), 0])


def engine_answer(cache, text):
    try:
        from sensorq.engine.executor import run_query
    except ImportError:
        pytest.skip("the query engine is not there yet")
    return run_query(cache, text).value


@pytest.mark.parametrize("name", NAMES)
def test_device_answers_match_the_engine(tmp_path, dev, name):
    """The engine over the samples the ring keeps gives the device's answers:
    count equal, sum/min/max/first/last equal after x scale, mean equal to the
    engine's avg / scale rounded half away from zero."""
    import sensorq
    meta, rows, queries, _ = load(name)
    stream = Stream.from_json(meta["stream"])
    keep = meta["surviving_from_seq"] * stream.block_samples
    with sensorq.open(tmp_path / "cache", create=True, capacity="16MB") as cache:
        cache.create_stream(stream.name, stream.channels, block_samples=stream.block_samples)
        cache.append(stream.name, rows[keep:, 0],
                     [rows[keep:, i + 1].astype(c.dtype) for i, c in enumerate(stream.channels)])
        cache.flush()
        for want in meta["queries"]:
            if want["status"] != "SQ_OK":
                continue
            value = engine_answer(cache, want["text"])
            text = want["text"]
            scale = _scale(stream, text)
            if want["value"] is None:
                assert value is None or np.isnan(value), text
            elif text.startswith("count"):
                assert value == want["value"], text
            elif text.startswith("avg"):
                assert round_half_away_float(value / scale) == want["value"], text
            else:
                assert value == pytest.approx(want["value"] * scale, rel=1e-12, abs=0), text


def _scale(stream: Stream, text: str) -> float:
    words = text.split()
    if words[0] == "count":
        return 1.0
    return stream.channel(words[1]).scale or 1.0


def test_error_names_match_the_header():
    header = (Path(__file__).parent.parent / "device_port" / "include" / "sensorq.h").read_text()
    for code, name in ERRORS.items():
        assert f"{name} = {code}" in header
