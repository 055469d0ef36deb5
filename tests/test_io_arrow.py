"""Data out and in: `sensorq export` to Parquet, Arrow IPC and CSV checked
against Cache.read and against pyarrow/csv reading the files; Parquet and
Arrow files written by pyarrow ingested and read back; result_to_arrow
against the result's own columns."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest

import sensorq
from sensorq.cli import main
from sensorq.io.arrow import result_to_arrow
from sensorq.io.export import export_stream

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
SECOND = 1_000_000_000
T0 = 1_795_500_000 * SECOND


@pytest.fixture
def cache_path(tmp_path):
    """Streams with every kind of channel: scaled int16, float32 with NaN,
    int64, categorical (with a name that needs CSV quoting)."""
    rng = np.random.default_rng(12)
    n = 30_000
    path = tmp_path / "c"
    with sensorq.open(path, create=True) as cache:
        cache.create_stream("env", [sensorq.Channel("temp", "int16", "degC", scale=0.01),
                                    sensorq.Channel("hum", "float32", "%"),
                                    sensorq.Channel("count", "int64"),
                                    sensorq.Channel("state", "int8",
                                                    categories=("idle", "run, fast", 'say "hi"'))],
                            block_samples=1000)
        hum = rng.normal(50, 5, n).astype(np.float32)
        hum[::97] = np.nan
        cols = [rng.integers(-3000, 4000, n).astype(np.int16), hum,
                rng.integers(-2**62, 2**62, n), rng.integers(0, 3, n).astype(np.int8)]
        cache.append("env", T0 + np.arange(n, dtype=np.int64) * 3_333_333, cols)
    return path


def physical(cache, stream, start=None, end=None):
    t, cols = cache.read(stream, start, end)
    st = cache.streams[stream]
    out = {}
    for c in st.channels:
        v = cols[c.name]
        out[c.name] = [c.categories[k] for k in v] if c.is_categorical else \
            (v * c.scale if c.scale else v)
    return t, out


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_export_to_arrow_formats_matches_the_cache(cache_path, tmp_path, suffix, capsys):
    out = tmp_path / f"env{suffix}"
    assert main(["export", "env", "between 1795500010s and 1795500050s", "-o", str(out),
                 "--cache", str(cache_path)]) == 0
    table = pq.read_table(out) if suffix == ".parquet" else pa.ipc.open_file(str(out)).read_all()
    with sensorq.open(cache_path, readonly=True) as cache:
        t, want = physical(cache, "env", T0 + 10 * SECOND, T0 + 50 * SECOND)
    assert f"{len(t):,} rows" in capsys.readouterr().out
    assert table.schema.field("time").type == pa.timestamp("ns", tz="UTC")
    assert np.array_equal(table.column("time").to_numpy().view(np.int64), t)
    assert np.array_equal(table.column("temp").to_numpy(), want["temp"])
    assert np.array_equal(table.column("hum").to_numpy(), want["hum"], equal_nan=True)
    assert table.schema.field("hum").type == pa.float32()
    assert np.array_equal(table.column("count").to_numpy(), want["count"])
    assert table.column("state").to_pylist() == want["state"]
    assert table.schema.field("temp").metadata[b"sensorq.unit"] == b"degC"


def test_export_csv_is_exact_and_reads_back_with_the_csv_module(cache_path, tmp_path):
    out = tmp_path / "env.csv"
    with sensorq.open(cache_path, readonly=True) as cache:
        done = export_stream(cache, "env", out)
        t, want = physical(cache, "env")
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["time", "temp", "hum", "count", "state"] and done.rows == len(t) == len(rows) - 1
    got_t = np.array([r[0].rstrip("Z") for r in rows[1:]], "datetime64[ns]").view(np.int64)
    assert np.array_equal(got_t, t)
    assert [r[1] for r in rows[1:4]] == [f"{v:.2f}" for v in want["temp"][:3]]
    hum = np.array([float(r[2]) if r[2] else np.nan for r in rows[1:]], np.float32)
    assert np.array_equal(hum, want["hum"], equal_nan=True)
    assert [int(r[3]) for r in rows[1:]] == want["count"].tolist()
    assert [r[4] for r in rows[1:]] == want["state"]


@pytest.mark.parametrize("suffix", [".parquet", ".arrow", ".csv"])
def test_export_then_ingest_restores_the_stream(cache_path, tmp_path, suffix):
    out = tmp_path / f"env{suffix}"
    assert main(["export", "env", "-o", str(out), "--cache", str(cache_path), "-q"]) == 0
    assert main(["ingest", str(out), "--cache", str(tmp_path / "copy"), "--stream", "env",
                 "--type", "state=category", "-q"]) == 0
    with sensorq.open(cache_path, readonly=True) as a, sensorq.open(tmp_path / "copy",
                                                                    readonly=True) as b:
        ta, wa = physical(a, "env")
        tb, wb = physical(b, "env")
        assert np.array_equal(ta, tb) and wa["state"] == wb["state"]
        assert np.allclose(wa["temp"], wb["temp"], rtol=0, atol=1e-9)
        assert np.array_equal(np.asarray(wa["hum"], np.float64), np.asarray(wb["hum"], np.float64),
                              equal_nan=True)
        assert np.array_equal(wa["count"], wb["count"])
        if suffix != ".csv":      # the stored integers, types and units come back exactly
            assert a.streams["env"].channels == b.streams["env"].channels
            assert np.array_equal(a.read("env")[1]["temp"], b.read("env")[1]["temp"])


def test_ingest_parquet_written_by_pyarrow(tmp_path, capsys):
    n = 5000
    rng = np.random.default_rng(2)
    t = (T0 + np.arange(n, dtype=np.int64) * 10_000_000)
    table = pa.table({
        "x": pa.array(rng.integers(0, 60000, n).astype(np.uint16)),
        "ok": pa.array(rng.integers(0, 2, n).astype(bool)),
        "mode": pa.array(rng.choice(["a", "b", "c"], n)),
        "level": pa.array(np.where(np.arange(n) % 10 == 0, np.nan, rng.normal(size=n))),
        "time": pa.array(t // 1_000_000, pa.int64()),            # epoch ms, guessed
    })
    src = tmp_path / "feed.parquet"
    pq.write_table(table, src)
    assert main(["ingest", str(src), "--cache", str(tmp_path / "c"), "--rate", "100"]) == 0
    assert f"{n:,} rows into stream 'feed'" in capsys.readouterr().out
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        st = cache.streams["feed"]
        assert [c.dtype for c in st.channels] == ["int32", "int8", "int16", "float64"]
        assert st.rate_hz == 100.0
        rt, cols = cache.read("feed")
        assert np.array_equal(rt, t)
        assert np.array_equal(cols["x"], table.column("x").to_numpy())
        assert np.array_equal(cols["ok"], table.column("ok").to_numpy().astype(np.int8))
        assert [st.channel("mode").name_of(k) for k in cols["mode"]] == table.column("mode").to_pylist()
        assert np.array_equal(cols["level"], table.column("level").to_numpy(), equal_nan=True)
    # again: refused, then --skip-existing skips all of it
    assert main(["ingest", str(src), "--cache", str(tmp_path / "c")]) == 1
    assert "--skip-existing" in capsys.readouterr().err
    assert main(["ingest", str(src), "--cache", str(tmp_path / "c"), "--skip-existing"]) == 0
    assert f"{n:,} rows at or before" in capsys.readouterr().out


def test_arrow_ipc_with_timestamps_and_errors_name_the_row(tmp_path, capsys):
    t = np.array(["2026-11-24T10:00:00", "2026-11-24T10:00:01", "2026-11-24T10:00:02"],
                 "datetime64[ns]")
    good = pa.table({"time": pa.array(t, pa.timestamp("ns", tz="Europe/Berlin")),
                     "v": pa.array([1, 2, 3], pa.int32())})
    src = tmp_path / "good.arrow"
    with pa.ipc.new_file(str(src), good.schema) as w:
        w.write_table(good)
    assert main(["ingest", str(src), "--cache", str(tmp_path / "c")]) == 0
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        assert np.array_equal(cache.read("good")[0], t.view(np.int64))
    bad = pa.table({"time": pa.array(t.view(np.int64), pa.int64()),
                    "v": pa.array([1, None, 3], pa.int32())})
    src = tmp_path / "bad.arrow"
    with pa.ipc.new_file(str(src), bad.schema) as w:
        w.write_table(bad)
    assert main(["ingest", str(src), "--cache", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "row 2, column 'v'" in err and "float64" in err
    assert "bad" not in sensorq.open(tmp_path / "c", readonly=True).streams   # nothing created


def test_result_to_arrow_keeps_times_exact_and_units(cache_path):
    with sensorq.open(cache_path, readonly=True) as cache:
        table_result = cache.query("max temp by 10s fill(null)")
        table = result_to_arrow(table_result)
        assert table.column("time").type == pa.timestamp("ns", tz="UTC")
        assert np.array_equal(table.column("time").to_numpy().view(np.int64),
                              table_result.columns["time"])
        got = np.array(table.column("max").to_pylist(), dtype=float)
        assert np.array_equal(got, table_result.columns["max"].astype(float), equal_nan=True)
        assert table.schema.field("max").metadata[b"unit"] == b"degC"
        scalar = result_to_arrow(cache.query("count where state == idle"))
        assert scalar.column("value").to_pylist() == [cache.query("count where state == idle").value]
        found = cache.query("find first 3 where state == idle")
        if found.columns["state"].dtype != object:       # names not yet put in by the executor
            from sensorq.query.categories import label_result
            found = label_result(found, found.plan, cache.streams)
        assert result_to_arrow(found).column("state").to_pylist() == ["idle"] * 3
