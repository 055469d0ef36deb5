"""sensorq.checksum.crc32 (ISA-L where installed) against zlib's CRC-32, the
function every stored checksum was defined by."""
from __future__ import annotations

import zlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorq import checksum


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=20_000), st.integers(0, 2**32 - 1), st.integers(0, 64))
def test_crc32_is_zlibs(data, start, skip):
    assert checksum.crc32(data) == zlib.crc32(data)
    assert checksum.crc32(data, start) == zlib.crc32(data, start)
    view = np.frombuffer(data, np.uint8)[skip:]          # what the stores pass: array slices
    assert checksum.crc32(view) == zlib.crc32(view)
    assert checksum.crc32(memoryview(data)[skip:]) == zlib.crc32(memoryview(data)[skip:])


def test_crc32_of_a_known_string():
    """The CRC-32 check value of the catalogue (poly 0x04C11DB7 reflected)."""
    assert checksum.crc32(b"123456789") == 0xCBF43926


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4_000), st.data())
def test_crc32_spans_is_zlibs_span_by_span(data, draw):
    """crc32_spans over many spans of one buffer (empty, overlapping, the whole)
    against zlib's CRC-32 of each span's bytes, from a numpy array as the
    stores pass it."""
    n = len(data)
    spans = draw.draw(st.lists(st.tuples(st.integers(0, n), st.integers(0, n)), max_size=20))
    starts = np.array([min(a, b) for a, b in spans], np.int64)
    ends = np.array([max(a, b) for a, b in spans], np.int64)
    got = checksum.crc32_spans(np.frombuffer(data, np.uint8), starts, ends)
    assert got.dtype == np.uint32
    assert got.tolist() == [zlib.crc32(data[a:b]) for a, b in zip(starts.tolist(), ends.tolist())]
