"""CSV ingest refuses what it cannot store right (issue 9), in bounded memory.

Every file here is written by hand (or drawn by hypothesis and read back with
the csv module); every refusal must be a SensorqError that names the line and,
for a cell, the column, and must leave nothing misaligned in the cache.
"""
from __future__ import annotations

import csv
import math
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sensorq
import sensorq.ingest as ingest
from sensorq.errors import DataError, OutOfOrderError, SensorqError, ValueRangeError
from sensorq.ingest import ingest_csv

MiB = 1024 * 1024


def write(tmp_path: Path, text: str | bytes, name="f.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def refused(tmp_path, text, error=DataError, **options) -> str:
    """The message of the error ingesting ``text`` raises; the cache stays empty."""
    path = write(tmp_path, text)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        with pytest.raises(error) as info:
            ingest_csv(cache, path, **options)
        assert "f" not in cache.streams or cache.read("f")[0].size == 0
    message = str(info.value)
    assert str(path) in message and isinstance(info.value, SensorqError)
    return message


def read_back(tmp_path, text, **options):
    path = write(tmp_path, text)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        ingest_csv(cache, path, **options)
        return cache.read("f")


# --- rows must have the header's number of cells -----------------------------------------

def test_a_short_row_then_a_long_row_is_refused_not_shifted(tmp_path):
    # 2 + 4 cells make 6, as many as two good rows: only a per-row count sees it
    message = refused(tmp_path, "time,a,b\n1,10,20\n2,30\n3,40,50,60\n", time_unit="s")
    assert "line 3: found 2 cells, expected 3" in message


def test_a_long_row_alone_and_a_short_last_row_without_newline(tmp_path):
    assert "line 2: found 4 cells, expected 3" in refused(tmp_path, "time,a,b\n1,2,3,4\n", time_unit="s")
    assert "line 4: found 1 cell, expected 3" in refused(tmp_path, "time,a,b\n1,2,3\n\n7", time_unit="s")


def test_ragged_rows_with_quotes_and_crlf(tmp_path):
    text = 'time,a,b\r\n1,"10",20\r\n2,"30"\r\n3,40,50,60\r\n'
    assert "line 3: found 2 cells, expected 3" in refused(tmp_path, text, time_unit="s")
    assert "line 3: a quoted cell is never closed" in \
        refused(tmp_path, 'time,a,b\n1,2,3\n2,"3,4\n5,6,7\n', time_unit="s")


def test_blank_lines_are_not_rows(tmp_path):
    t, cols = read_back(tmp_path, "time,a\n\n1,10\n  \n\r\n2,20\n\n", time_unit="s")
    assert t.tolist() == [10**9, 2 * 10**9] and cols["a"].tolist() == [10, 20]


# --- times: int64 nanoseconds and valid zones ----------------------------------------------

@pytest.mark.parametrize("cell", ["1500-01-01T00:00:00", "2300-01-01", "1677-09-21T00:12:43.145224191Z",
                                  "2262-04-11T23:47:16.854775808Z", "2262-04-11T23:00:00-01:00",
                                  "9999-12-31T23:59:59Z", "1000-01-01T00:00:00+14:00"])
def test_iso_times_beyond_int64_nanoseconds_are_refused(tmp_path, cell):
    message = refused(tmp_path, f"time,v\n2026-11-24T00:00:00Z,1\n{cell},2\n")
    assert "line 3, column 'time'" in message and "outside the range of 64-bit" in message


def test_iso_times_at_the_very_ends_of_int64_are_exact(tmp_path):
    text = ("time,v\n1677-09-21T00:12:43.145224192Z,1\n1677-09-21T01:12:43.145224193+01:00,2\n"
            "1969-12-31T23:59:59.5Z,3\n2262-04-12T00:47:16.854775806+01:00,4\n"
            "2262-04-11T23:47:16.854775807Z,5\n")
    t, _ = read_back(tmp_path, text)
    assert t.tolist() == [-2**63, -2**63 + 1, -500_000_000, 2**63 - 2, 2**63 - 1]


@pytest.mark.parametrize("zone", ["+99:99", "+24:00", "-23:60", "+2400", "+0099"])
def test_invalid_zone_offsets_are_refused(tmp_path, zone):
    message = refused(tmp_path, f"v,time\n1,2026-11-24T12:00:00Z\n2,2026-11-24T12:00:01{zone}\n")
    assert "line 3, column 'time'" in message and "invalid zone offset" in message


def test_valid_zone_offsets_are_applied(tmp_path):
    text = "time,v\n2026-11-24T12:00:00+23:59,1\n2026-11-24T12:00:00+0530,2\n2026-11-24 12:00-05:00,3\n"
    t, _ = read_back(tmp_path, text)
    noon = int(datetime(2026, 11, 24, 12, tzinfo=timezone.utc).timestamp()) * 10**9
    minute = 60 * 10**9
    assert t.tolist() == [noon - (23 * 60 + 59) * minute, noon - 330 * minute, noon + 300 * minute]


@pytest.mark.parametrize("cell", ["now", "today", "NaT", "12:00", "2026-11-24T12:00:00 +01:00", "-"])
def test_words_numpy_would_read_as_times_are_refused(tmp_path, cell):
    message = refused(tmp_path, f"time,v\n2026-11-24T12:00:00,1\n{cell},2\n")
    assert "line 3, column 'time'" in message and "not a time" in message


def test_epoch_times_beyond_int64_are_refused(tmp_path):
    message = refused(tmp_path, "time,v\n1,1\n-9223372036854775808,2\n", time_unit="s")
    assert "line 3, column 'time'" in message
    message = refused(tmp_path, "time,v\n1,1\n" + "9" * 1000 + ",2\n", time_unit="ms")
    assert "line 3, column 'time'" in message


# --- values: representable, or an error ----------------------------------------------------

def test_a_thousand_digit_integer_is_refused_not_inf(tmp_path):
    message = refused(tmp_path, "time,v\n1,5\n2," + "7" * 1000 + "\n", ValueRangeError, time_unit="s")
    assert "line 3, column 'v'" in message and "fits no channel type" in message
    assert len(message) < 400


def test_infinity_written_as_such_is_kept(tmp_path):
    _, cols = read_back(tmp_path, "time,v\n1,inf\n2,-Infinity\n3,1e308\n", time_unit="s")
    assert cols["v"].tolist() == [math.inf, -math.inf, 1e308]


def test_a_bad_number_names_line_and_column(tmp_path):
    message = refused(tmp_path, "time,a,b\n1,2,3\n2,4,0x10\n", time_unit="s")
    assert "line 3, column 'b'" in message and "'0x10' is not a number" in message


# --- memory: bounded by the chunk's bytes --------------------------------------------------

def peak_while(call) -> int:
    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_ten_thousand_character_cell_is_refused_in_little_memory(tmp_path):
    rows = "".join(f"{i},{i}\n" for i in range(50_000))
    path = write(tmp_path, "time,v\n" + rows + "50000," + "8" * 10_000 + "\n")
    with sensorq.open(tmp_path / "c", create=True) as cache:
        def run():
            with pytest.raises(DataError) as info:
                ingest_csv(cache, path, time_unit="s")
            message = str(info.value)
            assert "line 50002, column 'v'" in message and "10,000 bytes long" in message
            assert len(message) < 400
        assert peak_while(run) < 40 * MiB       # the old reader asked for 2 GB here


def test_a_long_cell_of_a_valid_number_costs_little_memory(tmp_path):
    """One 1 000-digit decimal among 100 000 one-digit cells: cells are copied by
    width class, not all at the width of the longest."""
    long_number = "0." + "0" * 996 + "25"
    path = write(tmp_path, "time,v\n" + "".join(f"{i},{i % 10}\n" for i in range(100_000))
                 + f"100000,{long_number}\n")
    with sensorq.open(tmp_path / "c", create=True) as cache:
        assert peak_while(lambda: ingest_csv(cache, path, time_unit="s")) < 60 * MiB
        assert cache.read("f")[1]["v"][-1] == float(long_number)


@pytest.mark.parametrize("where", ["data", "header"])
def test_a_50_megabyte_line_is_refused_quickly(tmp_path, where):
    huge = b"1," + b"9" * (50 * MiB)
    text = b"time,v\n" + huge + b"\n2,3\n" if where == "data" else huge + b",x\n1,2\n"
    path = write(tmp_path, text)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        started = time.perf_counter()

        def run():
            with pytest.raises(DataError) as info:
                ingest_csv(cache, path, time_unit="s")
            message = str(info.value)
            assert f"line {2 if where == 'data' else 1} is longer than" in message
            assert len(message) < 400
        assert peak_while(run) < 64 * MiB
        assert time.perf_counter() - started < 5


# --- nothing misaligned is stored -----------------------------------------------------------

def test_a_fault_in_a_small_file_stores_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 3)
    good = write(tmp_path, "time,v\n" + "".join(f"{i},{i}\n" for i in range(10)), "good.csv")
    bad = write(tmp_path, "time,v\n" + "".join(f"{i},{i}\n" for i in range(10, 20)) + "20\n", "bad.csv")
    with sensorq.open(tmp_path / "c", create=True) as cache:
        ingest_csv(cache, good, stream="s", time_unit="s")
        with pytest.raises(DataError, match="line 12: found 1 cell") as info:
            ingest_csv(cache, bad, stream="s", time_unit="s")
        assert "appended" not in str(info.value)
        assert cache.read("s")[0].size == 10


def test_a_fault_in_a_later_chunk_of_a_large_file_says_what_was_stored(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 3)
    monkeypatch.setattr(ingest, "KEEP_PARSED_BYTES", 10)       # as if the file were large
    good = write(tmp_path, "time,v\n1,1\n", "good.csv")
    bad = write(tmp_path, "time,v\n" + "".join(f"{i},{i}\n" for i in range(2, 9)) + "9,oops\n", "bad.csv")
    with sensorq.open(tmp_path / "c", create=True) as cache:
        ingest_csv(cache, good, stream="s", time_unit="s")
        with pytest.raises(DataError) as info:
            ingest_csv(cache, bad, stream="s", time_unit="s")
        assert "line 9, column 'v'" in str(info.value)
        assert "the 6 rows before it were appended to stream 's'" in str(info.value)
        assert cache.read("s")[0].tolist() == [i * 10**9 for i in range(1, 8)]


def test_a_new_stream_is_not_created_for_a_file_out_of_order_in_a_later_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)
    monkeypatch.setattr(ingest, "KEEP_PARSED_BYTES", 10)
    path = write(tmp_path, "time,v\n1,1\n2,2\n3,3\n0,4\n")
    with sensorq.open(tmp_path / "c", create=True) as cache:
        with pytest.raises(OutOfOrderError, match="line 5, column 'time': the time is earlier than on "
                                                  "line 4"):
            ingest_csv(cache, path, time_unit="s")
        assert "f" not in cache.streams


# --- well-formed files round-trip exactly ---------------------------------------------------

def iso_text(ns: int, zone_minutes: int | None, space: bool) -> str:
    """An ISO form of ``ns`` (local time in the zone, if any), built with datetime."""
    seconds, fraction = divmod(ns, 10**9)
    local = datetime(1970, 1, 1) + timedelta(seconds=seconds + 60 * (zone_minutes or 0))
    text = local.strftime("%Y-%m-%d" + (" " if space else "T") + "%H:%M:%S")
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    if zone_minutes is None:
        return text
    if zone_minutes == 0:
        return text + "Z"
    sign = "-" if zone_minutes < 0 else "+"
    hours, minutes = divmod(abs(zone_minutes), 60)
    return text + f"{sign}{hours:02d}:{minutes:02d}"


cell_kinds = st.sampled_from(["int", "float", "sparse"])


@st.composite
def csv_files(draw):
    n = draw(st.integers(1, 40))
    kinds = draw(st.lists(cell_kinds, min_size=1, max_size=4))
    steps = draw(st.lists(st.integers(0, 10**12), min_size=n, max_size=n))
    start = draw(st.integers(-2 * 10**18, 2 * 10**18))
    times = [start + s for s in np.cumsum(steps).tolist()]
    iso = draw(st.booleans())
    columns = []
    for kind in kinds:
        if kind == "int":
            columns.append([str(draw(st.integers(-2**63, 2**63 - 1))) for _ in range(n)])
        else:
            floats = st.floats(allow_nan=False, allow_infinity=False)
            cells = [repr(draw(floats)) for _ in range(n)]
            if kind == "sparse":
                cells = [c if draw(st.booleans()) else "" for c in cells]
            columns.append(cells)
    if iso:
        zones = [draw(st.one_of(st.none(), st.integers(-23 * 60 - 59, 23 * 60 + 59))) for _ in range(n)]
        time_cells = [iso_text(t, z, draw(st.booleans())) for t, z in zip(times, zones)]
    else:
        time_cells = [str(t) for t in times]
    rows = [[time_cells[i]] + [col[i] for col in columns] for i in range(n)]
    header = ["time"] + [f"c{k}" for k in range(len(kinds))]
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    return header, rows, times, quoting, terminator


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(csv_files(), st.integers(1, 8))
def test_well_formed_files_round_trip(tmp_path_factory, drawn, chunk_rows):
    header, rows, times, quoting, terminator = drawn
    tmp = tmp_path_factory.mktemp("r")
    path = tmp / "f.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f, quoting=quoting, lineterminator=terminator).writerows([header, *rows])
    saved = ingest.CHUNK_ROWS
    ingest.CHUNK_ROWS = chunk_rows
    try:
        with sensorq.open(tmp / "c", create=True, capacity="4MB") as cache:
            ingest_csv(cache, path, time_unit="ns")
            t, cols = cache.read("f")
    finally:
        ingest.CHUNK_ROWS = saved
    with open(path, newline="") as f:
        reference = list(csv.reader(f))[1:]
    assert t.tolist() == times
    for k, name in enumerate(header[1:], start=1):
        cells = [r[k] for r in reference]
        if all(c and "." not in c and "e" not in c and "n" not in c for c in cells):
            assert cols[name].tolist() == [int(c) for c in cells], name
        else:
            expected = np.array([float(c) if c else math.nan for c in cells])
            assert np.array_equal(cols[name], expected, equal_nan=True), name
