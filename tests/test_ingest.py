"""CSV ingest, checked against a plain csv-module reading of the same files."""
from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import sensorq
from sensorq.errors import DataError, OutOfOrderError, SchemaError, ValueRangeError
from sensorq.ingest import ingest_csv, sanitize_name

DAPHNET = Path(sensorq.__file__).parent / "data" / "daphnet_S06R02E0.csv"


def iso_to_ns(text: str) -> int:
    """Reference parser: the datetime module, UTC when no zone is given."""
    text = text.strip().replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    whole, _, frac = text.partition(".")
    zone = ""
    for sep in ("+", "-"):
        if sep in frac:
            frac, zone = frac.split(sep, 1)[0], sep + frac.split(sep, 1)[1]
    if not frac and len(whole) > 19:
        whole, zone = whole[:19], whole[19:]
    dt = datetime.fromisoformat(whole + zone)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    seconds = int(dt.timestamp())
    return seconds * 10**9 + int((frac + "000000000")[:9])


def test_daphnet_matches_csv_module(tmp_path):
    with open(DAPHNET, newline="") as f:
        rows = list(csv.DictReader(f))
    calls = []
    with sensorq.open(tmp_path / "c", create=True) as cache:
        name, n = ingest_csv(cache, DAPHNET, stream="gait", units={"*": "mg"}, exclude=("is_anomaly",),
                             progress=lambda *a: calls.append(a))
        cache.flush()
    assert (name, n) == ("gait", len(rows)) and n == 7040
    assert calls and calls[-1][0] == n and calls[-1][1] == calls[-1][2] == DAPHNET.stat().st_size
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        stream = cache.streams["gait"]
        t, cols = cache.read("gait")
    value_columns = [c for c in rows[0] if c not in ("timestamp", "is_anomaly")]
    assert [c.name for c in stream.channels] == value_columns
    assert all(c.unit == "mg" and c.dtype == "int16" for c in stream.channels)
    assert abs(stream.rate_hz - 64) < 0.1
    assert np.array_equal(t, np.array([iso_to_ns(r["timestamp"]) for r in rows]))
    for c in value_columns:
        assert np.array_equal(cols[c], np.array([int(r[c]) for r in rows], np.int16)), c


def write_csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_types_are_the_smallest_that_fit_and_floats_stay_exact(tmp_path):
    rows = [[i, i, 40_000 * (i % 2), 2**40 * (i % 2), f"{i * 0.1:.17g}", "" if i == 3 else i]
            for i in range(1, 6)]
    csv_path = write_csv(tmp_path / "My File-1.csv", ["time", "a", "b", "c", "d", "e"], rows)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        name, n = ingest_csv(cache, csv_path, time_unit="s", units={"d": "degC"})
        stream = cache.streams[name]
        t, cols = cache.read(name)
    assert name == "My_File_1" and n == 5
    assert [c.dtype for c in stream.channels] == ["int16", "int32", "int64", "float64", "float64"]
    assert stream.channel("d").unit == "degC" and stream.channel("a").unit == ""
    assert t.tolist() == [i * 10**9 for i in range(1, 6)]
    assert cols["d"].tolist() == [float(f"{i * 0.1:.17g}") for i in range(1, 6)]
    assert np.isnan(cols["e"][2]) and cols["e"][[0, 1, 3, 4]].tolist() == [1, 2, 4, 5]


@pytest.mark.parametrize("unit,scale", [("s", 10**9), ("ms", 10**6), ("us", 10**3), ("ns", 1)])
def test_epoch_unit_guessed_from_magnitude(tmp_path, unit, scale):
    base = 1_700_000_000 * 10**9
    stamps = [(base + i * 250_000_000) // scale for i in range(4)]
    csv_path = write_csv(tmp_path / "e.csv", ["ts", "v"], [[s, i] for i, s in enumerate(stamps)])
    with sensorq.open(tmp_path / "c", create=True) as cache:
        ingest_csv(cache, csv_path)
        t, _ = cache.read("e")
    assert t.tolist() == [s * scale for s in stamps]


def test_iso_forms(tmp_path):
    texts = ["2026-11-24T12:00:00Z", "2026-11-24 12:00:00.5", "2026-11-24T14:00:01.25+02:00",
             "2026-11-24T07:00:02.000000001-05:00", "2026-11-24T12:00:03"]
    csv_path = write_csv(tmp_path / "iso.csv", ["timestamp", "v"], [[s, 1] for s in texts])
    with sensorq.open(tmp_path / "c", create=True) as cache:
        ingest_csv(cache, csv_path)
        t, _ = cache.read("iso")
    assert t.tolist() == [iso_to_ns(s) for s in texts]


def test_existing_stream_takes_more_rows_and_must_match(tmp_path):
    a = write_csv(tmp_path / "a.csv", ["time", "x", "y"], [[1, 1, 2], [2, 3, 4]])
    b = write_csv(tmp_path / "b.csv", ["time", "y", "x"], [[3, 40, 30], [4, 60, 50]])
    c = write_csv(tmp_path / "c.csv", ["time", "x", "z"], [[5, 1, 2]])
    with sensorq.open(tmp_path / "c", create=True) as cache:
        ingest_csv(cache, a, stream="s", time_unit="s")
        assert ingest_csv(cache, b, stream="s", time_unit="s") == ("s", 2)
        t, cols = cache.read("s")
        assert cols["x"].tolist() == [1, 3, 30, 50] and cols["y"].tolist() == [2, 4, 40, 60]
        with pytest.raises(SchemaError, match="do not match"):
            ingest_csv(cache, c, stream="s", time_unit="s")
        with pytest.raises(OutOfOrderError, match="line 2"):
            ingest_csv(cache, a, stream="s", time_unit="s")     # older than what is stored
        big = write_csv(tmp_path / "big.csv", ["time", "x", "y"], [[10, 1, 2], [11, 70000, 2]])
        with pytest.raises(ValueRangeError, match="line 3.*'x'"):
            ingest_csv(cache, big, stream="s", time_unit="s")
        assert cache.read("s")[0].tolist() == t.tolist()       # nothing of the bad chunk stored


@pytest.mark.parametrize("cell,message", [("abc", "line 3, column 'v'"), ("1.2.3", "line 3, column 'v'"),
                                          ("2026-13-45", "line 3, column 'time'")])
def test_bad_cell_names_file_line_and_column(tmp_path, cell, message):
    rows = [["2026-11-24T12:00:00", "1"], ["2026-11-24T12:00:01", "2"]]
    if "time" in message:
        rows[1][0] = cell
    else:
        rows[1][1] = cell
    csv_path = write_csv(tmp_path / "bad.csv", ["time", "v"], rows)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        with pytest.raises(DataError, match=message) as info:
            ingest_csv(cache, csv_path)
        assert "bad.csv" in str(info.value)


def test_ragged_row_and_unknown_time_column(tmp_path):
    ragged = tmp_path / "r.csv"
    ragged.write_text("time,v\n1,2\n3\n")
    with sensorq.open(tmp_path / "c", create=True) as cache:
        with pytest.raises(DataError, match="line 3"):
            ingest_csv(cache, ragged)
        with pytest.raises(SchemaError, match="when"):
            ingest_csv(cache, ragged, time_column="when")
        with pytest.raises(DataError, match="no such file"):
            ingest_csv(cache, tmp_path / "missing.csv")


def test_sanitize_name():
    assert sanitize_name("accel x (mg)") == "accel_x__mg_"
    assert sanitize_name("1st") == "_1st"
    assert sanitize_name("") == "_"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(-2**40, 2**40),
                          st.floats(allow_nan=False, allow_infinity=False)), min_size=1, max_size=60))
def test_random_files_round_trip(tmp_path_factory, rows):
    tmp = tmp_path_factory.mktemp("r")
    steps = np.cumsum([r[0] for r in rows])
    csv_rows = [[int(s), r[1], repr(r[2])] for s, r in zip(steps, rows)]
    csv_path = write_csv(tmp / "rand.csv", ["t_ns", "a", "b"], csv_rows)
    with sensorq.open(tmp / "c", create=True) as cache:
        ingest_csv(cache, csv_path, time_unit="ns")
        t, cols = cache.read("rand")
    with open(csv_path, newline="") as f:
        ref = list(csv.reader(f))[1:]
    assert t.tolist() == [int(r[0]) for r in ref]
    assert cols["a"].tolist() == [int(r[1]) for r in ref]
    assert cols["b"].tolist() == [float(r[2]) for r in ref]


@pytest.mark.parametrize("style", ["plain", "crlf", "quoted", "blank_lines"])
def test_chunk_boundaries_and_csv_dialects(tmp_path, monkeypatch, style):
    """Small chunks, CRLF endings, quoted cells and blank lines read like the csv module reads them."""
    import sensorq.ingest as ingest
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 7)
    rng = np.random.default_rng(1)
    n = 50
    t = 1_700_000_000_000 + np.cumsum(rng.integers(0, 30, n))
    a = rng.integers(-40_000, 40_000, n)
    b = rng.normal(size=n)
    lines = ["time,a,b"]
    for i in range(n):
        cells = [str(t[i]), str(a[i]), repr(float(b[i]))]
        if style == "quoted" and i % 3 == 0:
            cells = [f'"{c}"' for c in cells]
        lines.append(",".join(cells))
        if style == "blank_lines" and i % 5 == 0:
            lines.append("")
    end = "\r\n" if style == "crlf" else "\n"
    path = tmp_path / "d.csv"
    path.write_bytes((end.join(lines) + end).encode())
    with open(path, newline="") as f:
        ref = [r for r in csv.reader(f)][1:]
    ref = [r for r in ref if r]
    with sensorq.open(tmp_path / "c", create=True) as cache:
        assert ingest_csv(cache, path, time_unit="ms") == ("d", n)
        got_t, cols = cache.read("d")
        assert cache.streams["d"].channel("a").dtype == "int32"
    assert got_t.tolist() == [int(r[0]) * 10**6 for r in ref]
    assert cols["a"].tolist() == [int(r[1]) for r in ref]
    assert cols["b"].tolist() == [float(r[2]) for r in ref]


def test_bad_cell_line_number_in_a_later_chunk(tmp_path, monkeypatch):
    import sensorq.ingest as ingest
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 4)
    rows = [[i, i] for i in range(20)]
    rows[13][1] = "oops"
    path = write_csv(tmp_path / "late.csv", ["time", "v"], rows)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        with pytest.raises(DataError, match="line 15, column 'v'"):
            ingest_csv(cache, path, time_unit="s")


def test_text_columns_become_categorical_channels_coded_in_order_of_first_appearance(tmp_path):
    rows = [[str(i), state, gear, str(i % 3)]
            for i, (state, gear) in enumerate([("idle", "P"), ("run", "D"), ("idle", "D"),
                                               ("door open", "R"), ("run", "D")])]
    path = write_csv(tmp_path / "m.csv", ["time", "state", "gear", "n"], rows)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        ingest_csv(cache, path, time_unit="s")
        stream = cache.streams["m"]
        _, cols = cache.read("m")
    for k, column in ((1, "state"), (2, "gear")):
        names = list(dict.fromkeys(r[k] for r in rows))          # first appearance, by hand
        channel = stream.channel(column)
        assert channel.categories == tuple(names) and channel.dtype == "int8"
        assert [channel.name_of(int(c)) for c in cols[column]] == [r[k] for r in rows]
    assert not stream.channel("n").is_categorical and cols["n"].tolist() == [0, 1, 2, 0, 1]
