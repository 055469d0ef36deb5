"""Fleet queries, merged and per device, against independent references:
one cache holding every device's data (disjoint time ranges, one stream),
and numpy over the raw arrays.  Runs on the "inline" scheduler (the same
tasks and merges, in this process); test_fleet_dask.py runs them on Dask.

Tolerance (docs/fleet.md): counts, min, max, first, last, argmin, argmax,
duration and percentiles are equal exactly; sums, averages, std, var, twa
and integral within a relative 1e-9 (floating-point reassociation: the
merge adds per-device partials in another order than one cache adds blocks).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import sensorq
from sensorq import Channel
from sensorq.cli import main
from sensorq.errors import QueryNameError, QuerySyntaxError
from sensorq.fleet.plan import split_group

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
SPAN = 100_000 * MS                # each device's data in the disjoint layout
N = 6000
RTOL = 1e-9
CHANNELS = [Channel("x", "int16", "mg"), Channel("y", "int16", "mg"), Channel("z", "int16", "mg"),
            Channel("v", "float64", "V")]


def device_data(i: int, disjoint: bool):
    rng = np.random.default_rng(100 + i)
    steps = rng.choice([1, 1, 1, 2, 5], N) * MS
    t = (T0 + (i * SPAN if disjoint else 3 * i * MS) + np.cumsum(steps)).astype(np.int64)
    z = (1000 + rng.normal(0, 400, N)).astype(np.int16)
    z[rng.integers(0, N, 5)] = 2600 + i                     # shocks
    v = np.round(rng.normal(3.3, 0.7, N), 3)
    v[rng.random(N) < 0.03] = np.nan
    x, y = (rng.normal(0, 80, N).astype(np.int16) for _ in range(2))
    return t, {"x": x, "y": y, "z": z, "v": v}


def build(root, n_devices=4, disjoint=True, reference=True):
    """Devices' caches root/site-K/dev-i/cache and (disjoint) one reference
    cache holding all their data in one stream, in time order."""
    datas = [device_data(i, disjoint) for i in range(n_devices)]
    for i, (t, cols) in enumerate(datas):
        site = "north" if i % 2 == 0 else "south"
        with sensorq.open(root / f"{site}" / f"dev-{i}" / "cache", create=True,
                          device=f"dev-{i}", labels={"site": site}) as cache:
            cache.create_stream("imu", CHANNELS, rate_hz=1000, block_samples=500)
            cache.append("imu", t, cols)
    if reference and disjoint:
        with sensorq.open(root / "reference", create=True) as cache:
            cache.create_stream("imu", CHANNELS, rate_hz=1000, block_samples=500)
            for t, cols in datas:
                cache.append("imu", t, cols)
    return datas


@pytest.fixture(scope="module")
def disjoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    datas = build(root)
    with sensorq.fleet(str(root / "*" / "dev-*" / "cache"), scheduler="inline") as f, \
            sensorq.open(root / "reference", readonly=True) as ref:
        yield f, ref, datas, root


def close(a, b, exact: bool) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if exact:
        return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    return a.shape == b.shape and np.allclose(a, b, rtol=RTOL, atol=0, equal_nan=True)


EXACT = ["count", "count where z > 2g", "min z", "max z", "first z", "last v", "spread z",
         "min v", "max v where z > 1500mg", "argmax z", "argmin v", "median z", "p99 z",
         "percentile(37.5) v", "median v where z > 1200mg", "count where v > 3.5V",
         "first x where z > 2g", "last y where z < 0", "p1 x"]
CLOSE = ["sum z", "avg z", "std z", "var x", "avg v", "std v", "sum v where z > 1g", "var v",
         "avg mag(x, y, z)", "max mag(x, y, z)", "rate z"]


@pytest.mark.parametrize("query", EXACT + CLOSE)
def test_a_merged_answer_is_what_one_cache_of_all_the_data_answers(disjoint, query):
    f, ref, _, _ = disjoint
    got, want = f.query(query), ref.query(query)
    assert got.kind == want.kind == "scalar" and got.unit == want.unit
    if query.startswith("rate"):       # (last − first) over the fleet's first and last samples
        assert np.isclose(got.value, want.value, rtol=RTOL)
        return
    assert close(got.value if got.value is not None else np.nan,
                 want.value if want.value is not None else np.nan, query not in CLOSE), \
        (query, got.value, want.value)


@pytest.mark.parametrize("query", ["count where z > 1500mg by 10s", "avg z by 7s",
                                   "max v by 3s fill(null)", "median z by 20s", "p95 v by 13s",
                                   "first z by 5s fill(prev)", "argmax z by 30s", "std x by 9s",
                                   "min z by 1m fill(linear)", "count by 2s fill(0)"])
def test_merged_buckets_are_one_caches_buckets(disjoint, query):
    f, ref, _, _ = disjoint
    got, want = f.query(query), ref.query(query)
    assert list(got.columns) == list(want.columns) and got.units == want.units
    name = list(want.columns)[1]
    assert np.array_equal(got.columns["time"], want.columns["time"])
    exact = not any(query.startswith(a) for a in ("avg", "std"))
    assert close(got.columns[name], want.columns[name], exact), query


def test_time_weighted_aggregates_add_up_each_devices_own_timeline(disjoint):
    """Each device's values hold until its own next sample (never into another
    device's data): the fleet's integral and duration are the sum of its
    devices', twa their ratio; numpy gives duration independently."""
    f, _, datas, root = disjoint
    caches = [sensorq.open(root / ("north" if i % 2 == 0 else "south") / f"dev-{i}" / "cache",
                           readonly=True) for i in range(len(datas))]
    try:
        integral = sum(c.query("integral z").value for c in caches)
        duration = sum(c.query("duration where z > 1200mg").value for c in caches)
        held = sum(c.query("duration where z >= -32768").value for c in caches)
    finally:
        for c in caches:
            c.close()
    assert np.isclose(f.query("integral z").value, integral, rtol=RTOL)
    assert np.isclose(f.query("twa z").value, integral / held, rtol=RTOL)
    assert f.query("duration where z > 1200mg").value == pytest.approx(duration, rel=1e-12)
    expected = sum(np.sum(np.diff(t)[(c["z"] > 1200)[:-1]]) for t, c in datas) / 1e9
    assert f.query("duration where z > 1200mg").value == pytest.approx(expected, rel=1e-12)


def test_by_device_is_each_devices_own_answer(disjoint):
    f, _, datas, _ = disjoint
    got = f.query("count where z > 2g by device")
    assert list(got.columns) == ["device", "count"]
    assert list(got.columns["device"]) == [f"dev-{i}" for i in range(len(datas))]
    assert list(got.columns["count"]) == [int((c["z"] > 2000).sum()) for _, c in datas]
    buckets = f.query("avg z by 10s by device")
    assert list(buckets.columns) == ["device", "time", "avg"]
    for i, (t, c) in enumerate(datas):
        mine = buckets.columns["device"] == f"dev-{i}"
        ids = t // (10_000 * MS)
        want = [c["z"][ids == k].mean() for k in np.unique(ids)]
        assert np.allclose(buckets.columns["avg"][mine], want, rtol=RTOL)
    p = f.query("p99 z by device")
    assert list(p.columns["percentile"]) == [np.percentile(c["z"], 99) for _, c in datas]


def test_by_a_label_merges_the_devices_that_share_it(disjoint):
    f, _, datas, _ = disjoint
    got = f.query("max z by site")
    assert list(got.columns["site"]) == ["north", "south"]
    assert list(got.columns["max"]) == [max(c["z"].max() for _, c in datas[k::2]) for k in (0, 1)]
    med = f.query("median v by site")
    for k in (0, 1):
        values = np.concatenate([c["v"] for _, c in datas[k::2]])
        assert med.columns["median"][k] == np.percentile(values[~np.isnan(values)], 50)
    rows = f.query("top 2 z by site")
    assert list(rows.columns["site"]) == ["north", "north", "south", "south"]


def test_row_queries_merge_in_time_and_value_order(disjoint):
    f, ref, datas, _ = disjoint
    for query in ("find first 3 where z > 2g", "find last 4 where z > 2g", "newest 5",
                  "newest 3 where v > 4V", "top 7 z", "top 3 -v",
                  "find episodes where z > 1800mg for >= 2ms", "find last 2 where z > 2g limit 1"):
        got, want = f.query(query), ref.query(query)
        assert got.columns["device"].dtype == object, query
        for name, column in want.columns.items():
            assert np.array_equal(got.columns[name], column, equal_nan=True), (query, name)
    top = f.query("top 7 z")
    assert set(top.columns["device"]) <= {f"dev-{i}" for i in range(len(datas))}


def test_split_group_keeps_the_columns_of_the_query():
    cases = {"count where z > 2g last 10m by device": "device", "avg z by 1m by device": "device",
             "avg z by device, 1m": "device", "avg z by 1m fill(0), site": "site",
             'count where s == "by device"': None, "avg z by 1m": None}
    for text, group in cases.items():
        split = split_group(text)
        assert split.group == group and len(split.text) == len(text)
    with pytest.raises(QuerySyntaxError, match="groups by one thing"):
        split_group("count by site by device")


def test_devices_that_lack_the_stream_or_channel_are_reported(tmp_path):
    build(tmp_path / "fleet", n_devices=2, disjoint=False, reference=False)
    with sensorq.open(tmp_path / "fleet" / "other" / "cache", create=True, device="env-1") as c:
        c.create_stream("env", [Channel("temp", "int16", "degC", scale=0.01)])
        c.append("env", [T0], {"temp": [2100]})
    caches = [tmp_path / "fleet" / "*" / "*" / "cache", tmp_path / "fleet" / "other" / "cache"]
    with sensorq.fleet(caches, scheduler="inline") as f:
        got = f.query("count where z > 2g")
        assert got.missing == {"env-1": got.missing["env-1"]} and "z" in got.missing["env-1"]
        assert any("env-1" in w and "not in this answer" in w for w in got.warnings)
        assert "missing_devices" in got.to_dict()
        assert f.query("count from env by device").columns["device"].tolist() == ["env-1"]
        with pytest.raises(QueryNameError, match="no device of the fleet can answer"):
            f.query("avg acel")
        with pytest.raises(QuerySyntaxError) as caught:
            f.query("count where z > by device")
        assert "by device" in str(caught.value)         # the caret is in the user's text
    with sensorq.fleet(caches, scheduler="inline", select={"site": "north"}) as f:
        assert [d.device for d in f.devices()] == ["dev-0"]


def test_last_10m_is_the_fleets_last_10_minutes(tmp_path):
    """Devices that stopped earlier than others: "now" is the newest sample of
    the fleet, so each device's window is the same stretch of time."""
    datas = build(tmp_path, n_devices=3, disjoint=False, reference=False)
    with sensorq.fleet(str(tmp_path / "*" / "*" / "cache"), scheduler="inline") as f:
        now = max(int(t[-1]) for t, _ in datas) + 1
        start = now - 4_000 * MS
        got = f.query("count where z > 1200mg last 4s by device")
        want = [int(((t >= start) & (c["z"] > 1200)).sum()) for t, c in datas]
        assert list(got.columns["count"]) == want
        values = np.concatenate([c["z"][t >= start] for t, c in datas])
        assert f.query("p90 z last 4s").value == np.percentile(values, 90)
        assert f.query("count last 4s").value == len(values)
        assert f.query("avg z last 4s").value == pytest.approx(values.mean(), rel=RTOL)


def test_categorical_first_and_last_keep_their_names_across_dictionaries(tmp_path):
    names = [("idle", "running", "stopped"), ("running", "stopped", "idle")]
    for i, order in enumerate(names):
        with sensorq.open(tmp_path / f"m{i}", create=True, device=f"m{i}") as c:
            c.create_stream("machine", [Channel("state", "int8", categories=order)])
            codes = [order.index(s) for s in ("running", "idle", "stopped")]
            c.append("machine", T0 + i * MS + np.arange(3) * 10 * MS, {"state": codes})
    with sensorq.fleet(str(tmp_path / "m*"), scheduler="inline") as f:
        assert f.query("first state").value == "running"
        assert f.query("last state").value == "stopped"
        assert list(f.query("last state by 10ms").columns["last"]) == ["running", "idle", "stopped"]
        assert f.query("count where state == idle").value == 2


def test_the_command_line(disjoint, capsys):
    _, _, datas, root = disjoint
    glob = str(root / "*" / "dev-*" / "cache")
    assert main(["--fleet", glob, "count where z > 2g by device", "--scheduler", "inline"]) == 0
    out = capsys.readouterr().out
    assert "dev-0" in out and "(4 rows)" in out
    assert main(["fleet", "max z", "--fleet", glob, "--scheduler", "inline", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["value"] == max(int(c["z"].max()) for _, c in datas)
    assert main(["--fleet", glob, "--select", "site=south", "--scheduler", "inline", "--csv",
                 "count by device"]) == 0
    assert capsys.readouterr().out.splitlines() == ["device,count", f"dev-1,{N}", f"dev-3,{N}"]


@pytest.mark.parametrize("gather", [16, 1 << 18])
def test_percentiles_take_every_path_of_the_selection(disjoint, monkeypatch, gather):
    """Few keys gathered per round (16) forces the rounds of histograms, the
    neighbouring-bins ends and the one-key ranges; many buckets force the
    sorted (sparse) counting.  Every answer is numpy's percentile of all the
    fleet's values."""
    from sensorq.fleet import percentiles
    monkeypatch.setattr(percentiles, "GATHER_LIMIT", gather)
    f, ref, datas, _ = disjoint
    z = np.concatenate([c["z"] for _, c in datas]).astype(np.float64)
    v = np.concatenate([c["v"] for _, c in datas])
    for p in (0, 0.1, 25, 50, 99, 99.99, 100):
        assert f.query(f"percentile({p}) z").value == np.percentile(z, p), p
        assert f.query(f"percentile({p}) v").value == np.percentile(v[~np.isnan(v)], p), p
    assert f.query("median x * 0 + 7").value == 7.0              # every value equal
    got, want = f.query("p37 z by 100ms"), ref.query("p37 z by 100ms")
    assert len(got) > 200 and np.array_equal(got.columns["time"], want.columns["time"])
    assert np.array_equal(got.columns["percentile"], want.columns["percentile"])


def test_the_row_limit_holds_for_merged_buckets(disjoint):
    from sensorq.errors import RowLimitError
    f, _, _, _ = disjoint
    assert len(f.query("count by 1s", max_rows=100)) <= 100
    with pytest.raises(RowLimitError):
        f.query("count by 10ms", max_rows=100)
    with pytest.raises(RowLimitError):
        f.query("count by 1s fill(0)", max_rows=20)
