"""The query engine against plain numpy on the raw samples.

Every query here is answered twice: by sensorq (zone maps, statistics, kernels
over compressed blocks — on each of the engine's two tiers) and by a few lines
of numpy over the arrays that were appended.  Blocks are kept small so that windows and buckets cut through them.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from samples import SECOND, make_cache, streams

import sensorq
from sensorq import demo
from sensorq.schema import Channel

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True, params=["compiled", "interpreted"])
def engine(request, monkeypatch):
    """Every test runs on both tiers (engine/tiers.py): the numba kernels and the
    numpy interpreter must each match the numpy reference."""
    monkeypatch.setenv("SENSORQ_ENGINE", request.param)
    return request.param


def assert_close(actual, expected, rel=1e-9):
    if expected is None or (isinstance(expected, float) and np.isnan(expected)):
        assert actual is None or np.isnan(actual), f"expected empty, got {actual}"
    else:
        assert actual == pytest.approx(expected, rel=rel, abs=1e-9), f"{actual} != {expected}"


def window(t, seconds):
    """``last Ns`` with now = newest + 1 ns."""
    if len(t) == 0:
        return np.zeros(0, bool)
    now = t[-1] + 1
    return (t >= now - seconds * SECOND) & (t < now)


def hold_durations(t, in_window_end, gap=None):
    """How long each sample's value holds: until the next sample, capped."""
    nxt = np.append(t[1:], t[-1]) if len(t) else t
    end = np.minimum(nxt, in_window_end)
    if gap is not None:
        end = np.minimum(end, t + gap)
    return np.maximum(end - t, 0)


SCALAR_CASES = [
    ("count where a > {k}", lambda t, a, b, f, k: (a > k).sum()),
    ("count where a >= {k} and b < 25degC", lambda t, a, b, f, k: ((a >= k) & (b * 0.01 < 25)).sum()),
    ("count where not (a < {k} or f > 3.5V)", lambda t, a, b, f, k: (~((a < k) | (f > 3.5))).sum()),
    ("count where a between {k} and 300", lambda t, a, b, f, k: ((a >= k) & (a <= 300)).sum()),
    ("count where f > 3.3V", lambda t, a, b, f, k: (f > 3.3).sum()),
    ("count where abs(a) * 2 > {k}", lambda t, a, b, f, k: (np.abs(a.astype(float)) * 2 > k).sum()),
    ("sum a where a > {k}", lambda t, a, b, f, k: a[a > k].astype(float).sum() if (a > k).any() else np.nan),
    ("avg a", lambda t, a, b, f, k: a.mean() if len(a) else np.nan),
    ("avg b", lambda t, a, b, f, k: (b * 0.01).mean() if len(b) else np.nan),
    ("avg f", lambda t, a, b, f, k: np.nanmean(f) if (~np.isnan(f)).any() else np.nan),
    ("min a where b > 20degC", lambda t, a, b, f, k: a[b > 2000].min() if (b > 2000).any() else np.nan),
    ("max f", lambda t, a, b, f, k: np.nanmax(f) if (~np.isnan(f)).any() else np.nan),
    ("spread a", lambda t, a, b, f, k: float(a.max()) - a.min() if len(a) else np.nan),
    ("std a", lambda t, a, b, f, k: a.astype(float).std(ddof=1) if len(a) > 1 else np.nan),
    ("var b", lambda t, a, b, f, k: (b * 0.01).var(ddof=1) if len(b) > 1 else np.nan),
    ("std f", lambda t, a, b, f, k: np.nanstd(f, ddof=1) if (~np.isnan(f)).sum() > 1 else np.nan),
    ("first a where a > {k}", lambda t, a, b, f, k: a[a > k][0] if (a > k).any() else np.nan),
    ("last b", lambda t, a, b, f, k: b[-1] * 0.01 if len(b) else np.nan),
    ("median a", lambda t, a, b, f, k: np.median(a) if len(a) else np.nan),
    ("rate a", lambda t, a, b, f, k: (float(a[-1]) - a[0]) / ((t[-1] - t[0]) * 1e-9)
     if len(t) and t[-1] > t[0] else np.nan),
    ("argmax a", lambda t, a, b, f, k: t[np.argmax(a)] if len(a) else np.nan),
    ("argmin f where a > {k}", lambda t, a, b, f, k: t[a > k][np.nanargmin(f[a > k])]
     if (~np.isnan(f[a > k])).any() else np.nan),
    ("percentile(90) f", lambda t, a, b, f, k: np.nanpercentile(f, 90) if (~np.isnan(f)).any() else np.nan),
    ("avg a * b / 10 where a > {k}",
     lambda t, a, b, f, k: (a * (b * 0.01) / 10)[a > k].mean() if (a > k).any() else np.nan),
    ("avg a - 1g where a > {k}",
     lambda t, a, b, f, k: (a - 1000.0)[a > k].mean() if (a > k).any() else np.nan),
    ("max mag(a, a) where a < {k}",
     lambda t, a, b, f, k: np.sqrt(2.0) * np.abs(a[a < k].astype(float)).max() if (a < k).any() else np.nan),
]


@pytest.mark.parametrize("case", range(len(SCALAR_CASES)), ids=[c[0] for c in SCALAR_CASES])
@settings(SETTINGS, max_examples=15)
@given(stream=streams(), k=st.integers(-200, 200))
def test_scalar_aggregates_match_numpy(tmp_path_factory, stream, k, case):
    t, a, b, f = stream
    text, reference = SCALAR_CASES[case]
    with make_cache(tmp_path_factory.mktemp("c"), t, a, b, f) as cache:
        result = cache.query(text.format(k=k))
    assert_close(result.value, float(reference(t, a, b, f, k)))


@SETTINGS
@given(streams(), st.integers(-200, 200), st.integers(1, 20))
def test_time_windows_cut_through_blocks(tmp_path_factory, stream, k, seconds):
    t, a, b, f = stream
    inside = window(t, seconds)
    with make_cache(tmp_path_factory.mktemp("c"), t, a, b, f) as cache:
        count = cache.query(f"count where a > {k} last {seconds}s").value
        total = cache.query(f"sum a last {seconds}s").value
    assert count == ((a > k) & inside).sum()
    assert_close(total, float(a[inside].sum()) if inside.any() else np.nan)


@SETTINGS
@given(streams(), st.sampled_from([1, 3, 7]), st.sampled_from(["avg a", "count", "max b", "first a"]))
def test_buckets_match_numpy_groupby(tmp_path_factory, stream, seconds, agg):
    t, a, b, f = stream
    with make_cache(tmp_path_factory.mktemp("c"), t, a, b, f) as cache:
        result = cache.query(f"{agg} by {seconds}s")
    bucket = t // (seconds * SECOND)
    ids = np.unique(bucket)
    values = {"avg a": lambda m: a[m].mean(), "count": lambda m: m.sum(),
              "max b": lambda m: b[m].max() * 0.01, "first a": lambda m: a[m][0]}[agg]
    expected = [values(bucket == i) for i in ids]
    assert list(result.columns["time"]) == list(ids * seconds * SECOND)
    assert np.allclose(result.columns[result_name(result)], expected, rtol=1e-9)


def result_name(result):
    return [c for c in result.columns if c != "time"][0]


@SETTINGS
@given(streams(), st.integers(-100, 100))
def test_episodes_match_a_plain_run_search(tmp_path_factory, stream, k):
    t, a, b, f = stream
    with make_cache(tmp_path_factory.mktemp("c"), t, a, b, f) as cache:
        result = cache.query(f"find episodes where a > {k}")
    expected = reference_episodes(t, a > k, a)
    got = list(zip(result.columns["start"], result.columns["end"], result.columns["peak"]))
    assert got == expected


def reference_episodes(t, mask, values):
    """Runs of mask; end = the next sample's time, or the run's last at the end."""
    out, i, n = [], 0, len(t)
    while i < n:
        if not mask[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and mask[j + 1]:
            j += 1
        end = t[j + 1] if j + 1 < n else t[j]
        out.append((t[i], end, float(values[i:j + 1].max())))
        i = j + 1
    return out


@SETTINGS
@given(streams(), st.integers(-100, 100))
def test_duration_and_twa_hold_values_until_the_next_sample(tmp_path_factory, stream, k):
    t, a, b, f = stream
    with make_cache(tmp_path_factory.mktemp("c"), t, a, b, f) as cache:
        duration = cache.query(f"duration where a > {k}").value
        twa = cache.query("twa a").value
        integral = cache.query("integral a").value
    held = hold_durations(t, t[-1] if len(t) else 0)
    assert duration == pytest.approx(held[a > k].sum() * 1e-9, abs=1e-9)
    if held.sum() > 0:
        assert twa == pytest.approx((a * held).sum() / held.sum(), rel=1e-9)
        assert integral == pytest.approx((a * held * 1e-9).sum(), rel=1e-9, abs=1e-9)


@SETTINGS
@given(streams(), st.integers(-100, 100), st.integers(1, 5))
def test_find_first_last_top_and_newest(tmp_path_factory, stream, k, n):
    t, a, b, f = stream
    with make_cache(tmp_path_factory.mktemp("c"), t, a, b, f) as cache:
        first = cache.query(f"find first {n} where a > {k}")
        last = cache.query(f"find last {n} where a > {k}")
        newest = cache.query(f"newest {n}")
        top = cache.query(f"top {n} a")
    hits = np.flatnonzero(a > k)
    assert list(first.columns["time"]) == list(t[hits[:n]])
    assert list(first.columns["a"]) == list(a[hits[:n]])
    assert list(last.columns["time"]) == list(t[hits[-n:]] if len(hits) else [])
    assert list(newest.columns["b"]) == pytest.approx(list(b[-n:] * 0.01))
    order = np.lexsort((t, -a.astype(float)))[:n]
    assert list(top.columns["value"]) == list(a[order])


def test_blocks_outside_the_predicate_are_skipped_not_decoded(tmp_path):
    """A count of z > 2g over blocks whose max is below 2g decodes nothing."""
    n = 100_000
    t = np.arange(n, dtype=np.int64) * 1_000_000
    a = np.full(n, 1000, np.int16)
    a[50_000:50_010] = 2500
    with make_cache(tmp_path, t, a, np.zeros(n, np.int32), np.zeros(n), block_samples=1000) as cache:
        result = cache.query("count where a > 2g")
        avg = cache.query("avg a by 10s")
    assert result.value == 10
    assert result.scan.decoded == 1 and result.scan.skipped == 99
    assert avg.scan.decoded == 0 and avg.scan.from_stats == 100


def test_empty_results(tmp_path):
    t = np.arange(10, dtype=np.int64) * SECOND
    a = np.arange(10, dtype=np.int16)
    with make_cache(tmp_path, t, a, np.zeros(10, np.int32), np.zeros(10)) as cache:
        assert cache.query("count where a > 100").value == 0
        assert np.isnan(cache.query("avg a where a > 100").value)
        assert cache.query("duration where a > 100").value == 0
        assert len(cache.query("find episodes where a > 100").columns["start"]) == 0


def test_evicted_blocks_are_gone_from_answers(tmp_path):
    cache = sensorq.open(tmp_path / "ring", create=True, capacity="256KB")
    cache.create_stream("s", [Channel("a", "int32")], block_samples=256)
    rng = np.random.default_rng(3)
    n = 400_000
    t = np.arange(n, dtype=np.int64) * 1_000_000
    a = rng.integers(-2**30, 2**30, n).astype(np.int32)   # incompressible: forces eviction
    for lo in range(0, n, 50_000):
        cache.append("s", t[lo:lo + 50_000], [a[lo:lo + 50_000]])
        cache.flush()
    kept_t, kept = cache.read("s")
    kept_a = kept["a"]
    assert 0 < len(kept_t) < n
    assert (kept_t == t[n - len(kept_t):]).all()
    assert cache.query("count").value == len(kept_t)
    assert cache.query("max a").value == kept_a.max()
    cache.close()


@SETTINGS
@given(streams(), st.sampled_from(["null", "prev", "linear", "-7"]))
def test_fill_modes_match_numpy(tmp_path_factory, stream, mode):
    t, a, b, f = stream
    with make_cache(tmp_path_factory.mktemp("c"), t, a, b, f) as cache:
        result = cache.query(f"max a by 100ms fill({mode})")
        counts = cache.query("count by 100ms fill(null)")
    if len(t) == 0:
        assert len(result.columns["time"]) == 0
        return
    bucket_ns = 100_000_000
    ids = np.arange(t[0] // bucket_ns, t[-1] // bucket_ns + 1)
    present = np.isin(ids, t // bucket_ns)
    values = np.array([a[t // bucket_ns == i].max() if p else np.nan for i, p in zip(ids, present)], float)
    if mode == "prev":
        last = np.maximum.accumulate(np.where(present, np.arange(len(ids)), 0))
        values = values[last]
    elif mode == "linear":
        values = np.interp(ids, ids[present], values[present])
    elif mode == "-7":
        values = np.where(present, values, -7.0)
    assert list(result.columns["time"]) == list(ids * bucket_ns)
    assert np.allclose(result.columns["max"], values, equal_nan=True)
    assert list(counts.columns["count"]) == [np.count_nonzero(t // bucket_ns == i) for i in ids]


# --- a real recording ----------------------------------------------------------------

def test_daphnet_recording_against_numpy(tmp_path):
    """The shipped Daphnet file, ingested from CSV, queried, and recomputed with
    numpy from an independent csv-module reading of the same file."""
    import csv as csv_module

    from sensorq.ingest import ingest_csv

    path = demo.DAPHNET_CSV
    with open(path, newline="") as f:
        rows = list(csv_module.reader(f))
    header, body = rows[0], rows[1:]
    t = np.array([r[0] for r in body], dtype="datetime64[ns]").astype(np.int64)
    col = {name: np.array([float(r[i]) for r in body]) for i, name in enumerate(header) if i}
    with sensorq.open(tmp_path / "gait", create=True) as cache:
        ingest_csv(cache, path, stream="gait", units={"*": "mg"}, exclude=("is_anomaly",))
        ankle, trunk = col["ankle_vert"], col["trunk_horiz_fwd"]
        assert cache.query("count where ankle_vert > 1g").value == np.count_nonzero(ankle > 1000)
        assert cache.query("avg trunk_horiz_fwd").value == pytest.approx(trunk.mean())
        assert cache.query("std ankle_vert").value == pytest.approx(ankle.std(ddof=1))
        assert cache.query("percentile(90) ankle_vert").value == pytest.approx(np.percentile(ankle, 90))
        by10 = cache.query("max ankle_vert by 10s")
        bucket = t // 10**10
        assert list(by10.columns["max"]) == [ankle[bucket == b].max() for b in np.unique(bucket)]
        episodes = cache.query("find episodes where ankle_vert > 1.2g")
        expected = reference_episodes(t, ankle > 1200, ankle)
        assert list(zip(episodes.columns["start"], episodes.columns["end"],
                        episodes.columns["peak"])) == expected
        held = hold_durations(t, t[-1])
        assert cache.query("duration where ankle_vert > 1g").value == \
            pytest.approx(held[ankle > 1000].sum() * 1e-9)


# --- random queries ------------------------------------------------------------------

CHANNEL_EXPRS = {   # query text -> the same value in numpy, physical units
    "a": lambda a, b, f: a.astype(float),
    "b": None,   # compared on its stored integers (see predicates)
    "f": lambda a, b, f: f,
    "abs(a)": lambda a, b, f: np.abs(a.astype(float)),
    "a * 2": lambda a, b, f: a * 2.0,
}
UNITS = {"a": "mg", "b": "degC", "f": "V", "abs(a)": "mg", "a * 2": "mg"}
OPS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal,
       "==": np.equal, "!=": lambda x, v: np.not_equal(x, v) & ~np.isnan(x)}   # NaN compares false


@st.composite
def predicates(draw, depth=0):
    """(query text, numpy function of (a, b, f) -> bool mask)."""
    if depth < 2 and draw(st.booleans()):
        kind = draw(st.sampled_from(["and", "or", "not"]))
        left_text, left = draw(predicates(depth + 1))
        if kind == "not":
            return f"not ({left_text})", lambda a, b, f: ~left(a, b, f)
        right_text, right = draw(predicates(depth + 1))
        combine = np.logical_and if kind == "and" else np.logical_or
        return f"({left_text}) {kind} ({right_text})", lambda a, b, f: combine(left(a, b, f), right(a, b, f))
    expr = draw(st.sampled_from(list(CHANNEL_EXPRS)))
    op = draw(st.sampled_from(list(OPS)))
    if expr == "b":   # hundredths of a degree: compare the stored integers, exactly
        hundredths = draw(st.integers(1500, 3500))
        text = f"b {op} {hundredths // 100}.{hundredths % 100:02d}degC"
        return text, lambda a, b, f: OPS[op](b, hundredths)
    value = draw(st.integers(-300, 300)) if expr != "f" else draw(st.integers(20, 45)) / 10
    text = f"{expr} {op} {value}{UNITS[expr]}"
    return text, lambda a, b, f: OPS[op](CHANNEL_EXPRS[expr](a, b, f), value)


AGGREGATE_REFERENCES = {
    "count": lambda v: float(len(v)),
    "sum a": lambda v: float(v.sum()) if len(v) else np.nan,
    "avg a": lambda v: float(v.mean()) if len(v) else np.nan,
    "min a": lambda v: float(v.min()) if len(v) else np.nan,
    "max a": lambda v: float(v.max()) if len(v) else np.nan,
}


@settings(SETTINGS, max_examples=150)
@given(stream=streams(), pred=predicates(), agg=st.sampled_from(list(AGGREGATE_REFERENCES)),
       seconds=st.one_of(st.none(), st.integers(1, 20)))
def test_random_queries_match_numpy(tmp_path_factory, stream, pred, agg, seconds):
    """Random predicate trees (channels, arithmetic, units, and/or/not) under a
    random aggregate and window, against the same predicate in numpy.  NaN
    compares false, so `not` of a comparison with NaN is true, as documented."""
    t, a, b, f = stream
    text, mask_of = pred
    window_text = f" last {seconds}s" if seconds else ""
    with make_cache(tmp_path_factory.mktemp("c"), t, a, b, f) as cache:
        result = cache.query(f"{agg} where {text}{window_text}")
    with np.errstate(invalid="ignore"):
        mask = mask_of(a, b, f) & (window(t, seconds) if seconds else np.ones(len(t), bool))
    assert_close(result.value, AGGREGATE_REFERENCES[agg](a[mask].astype(float)))


def test_results_as_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    t = np.arange(0, 120 * SECOND, SECOND, dtype=np.int64)
    a = np.arange(120, dtype=np.int16)
    with make_cache(tmp_path, t, a, np.zeros(120, np.int32), np.zeros(120)) as cache:
        frame = cache.query("avg a by 1m").to_pandas()
        scalar = cache.query("max a").to_pandas()
    assert list(frame.columns) == ["time", "avg"]
    assert frame["time"].dtype.kind == "M"
    assert list(frame["time"]) == [pd.Timestamp(0), pd.Timestamp(60, unit="s")]
    assert list(frame["avg"]) == [a[:60].mean(), a[60:].mean()]
    assert frame.attrs["units"] == {"time": "ns", "avg": "mg"}
    assert scalar["value"][0] == 119 and scalar["unit"][0] == "mg"


@pytest.mark.parametrize("seed", [1, 2])
def test_counts_over_thousands_of_blocks_of_mixed_sizes(tmp_path, seed):
    """The count kernels split their blocks into chunks, each with working
    arrays sized for its largest block (kernels.count_chunks): over ~2,500
    blocks of 1 to 40 samples (appends of random sizes, flushed at random),
    every count, raw integer compare or through the VM, whole or cut by a
    window, equals numpy's."""
    rng = np.random.default_rng(seed)
    cache = sensorq.open(tmp_path / "c", create=True)
    cache.create_stream("s", [Channel("a", "int16", "mg"), Channel("f", "float64", "V")],
                        block_samples=40)
    ts, as_, fs, t0 = [], [], [], 1_700_000_000 * SECOND
    for _ in range(2_500):
        n = int(rng.integers(1, 41))
        t = t0 + np.cumsum(rng.integers(1, 3, n)) * 10_000_000
        t0 = int(t[-1])
        a, f = rng.integers(-500, 500, n).astype(np.int16), np.round(rng.normal(0, 1, n), 2)
        cache.append("s", t, [a, f])
        cache.flush()           # a block of this append's samples alone
        ts.append(t), as_.append(a), fs.append(f)
    t, a, f = np.concatenate(ts), np.concatenate(as_), np.concatenate(fs)
    assert len(cache.blocks("s")) > 2_048                 # past count_chunks' 64-chunk range
    last = window(t, 300)
    for query, expected in [("count where a > 100mg", a > 100),
                            ("count where a <= -3mg last 5m", (a <= -3) & last),
                            ("count where a >= -40000mg", a >= -40_000),       # past int16
                            ("count where a != 3000000000mg", a != 3_000_000_000),   # past int32
                            ("count where f > 0.5", f > 0.5),
                            ("count where f < 0 or a > 250mg last 5m", ((f < 0) | (a > 250)) & last)]:
        assert cache.query(query).value == int(expected.sum()), query
    cache.close()
