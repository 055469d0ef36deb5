"""The query operators of issue 11 against numpy, on both engine tiers:
percentiles from histograms of an integer channel's raw values, max/min
(argmax/argmin) that decode only the blocks that may hold the answer, the
predicate as each block's statistics leave it (a conjunct true for a whole
block is not evaluated there), top N in one kernel, and the VM's fused
opcodes.  Every answer must equal numpy's bit for bit, and the two tiers
each other's (test_tiers.py adds these shapes to its comparison)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from samples import SECOND, make_cache, streams

import sensorq
from sensorq.query import plan as P
from sensorq.schema import Channel

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True, params=["compiled", "interpreted"])
def engine(request, monkeypatch):
    monkeypatch.setenv("SENSORQ_ENGINE", request.param)
    return request.param


def bits(x) -> bytes:
    return np.asarray(x, np.float64).tobytes()


def numpy_by_bucket(t, values, bucket_ns, p):
    """(bucket start times, numpy's percentile of each bucket's values)."""
    ids = t // bucket_ns
    keys = np.unique(ids)
    return keys * bucket_ns, np.array([np.percentile(values[ids == k], p) for k in keys])


# --- percentiles from histograms ------------------------------------------------------------

@SETTINGS
@given(stream=streams(), p=st.sampled_from([0, 1, 25, 50, 90, 99, 99.9, 100]),
       seconds=st.sampled_from([None, 1, 3, 60]), k=st.integers(-200, 200),
       where=st.booleans())
def test_integer_percentiles_equal_numpy_bit_for_bit(tmp_path_factory, stream, p, seconds, k,
                                                      where):
    """a is int16 in mg, b int32 in 0.01 degC: the histogram path; numpy's
    linear percentile of the physical values (raw × scale) is the reference."""
    t, a, b, f = stream
    keep = (a > k) if where else np.ones(len(t), bool)
    clause = f" where a > {k}mg" if where else ""
    by = f" by {seconds}s" if seconds else ""
    with make_cache(tmp_path_factory.mktemp("c"), t, a, b, f) as cache:
        for name, values in (("a", a.astype(np.float64)), ("b", b.astype(np.float64) * 0.01)):
            result = cache.query(f"percentile({p}) {name}{clause}{by}")
            if not seconds:
                expected = np.percentile(values[keep], p) if keep.any() else np.nan
                assert bits(result.value) == bits(expected), (result.value, expected)
            else:
                times, expected = numpy_by_bucket(t[keep], values[keep], seconds * SECOND, p)
                assert list(result.columns["time"]) == list(times)
                assert bits(result.columns["percentile"]) == bits(expected)


def test_percentiles_of_a_negative_scale_windows_and_a_wide_range(tmp_path):
    """scale < 0 reverses the order of the raw values; a window cuts blocks;
    an int32 range wider than the histogram's cells takes the radix passes."""
    rng = np.random.default_rng(3)
    n = 20_000
    t = 1_700_000_000 * SECOND + np.arange(n, dtype=np.int64) * 7_000_000
    neg = rng.integers(-3000, 3000, n).astype(np.int16)
    wide = rng.integers(-2**30, 2**30, n).astype(np.int32)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [Channel("neg", "int16", "mg", scale=-0.25),
                                  Channel("wide", "int32", "mg")], block_samples=300)
        cache.append("s", t, [neg, wide])
        now = t[-1] + 1
        for p in (0, 10, 50, 97.5, 100):
            got = cache.query(f"percentile({p}) neg last 50s")
            inside = t >= now - 50 * SECOND
            assert bits(got.value) == bits(np.percentile(neg[inside] * -0.25, p))
            got = cache.query(f"percentile({p}) neg by 7s")
            _, expected = numpy_by_bucket(t, neg * -0.25, 7 * SECOND, p)
            assert bits(got.columns["percentile"]) == bits(expected)
            got = cache.query(f"percentile({p}) wide")
            assert bits(got.value) == bits(np.percentile(wide.astype(np.float64), p))


def test_histogram_percentiles_hold_one_bucket_range_of_cells(monkeypatch, tmp_path):
    """Buckets are counted a chunk of cells at a time: a chunk as small as one
    bucket gives the same answers."""
    from sensorq.engine import selection
    rng = np.random.default_rng(5)
    n = 30_000
    t = 1_700_000_000 * SECOND + np.arange(n, dtype=np.int64) * 1_000_000
    a = rng.integers(-500, 500, n).astype(np.int16)
    with make_cache(tmp_path, t, a, np.zeros(n, np.int32), np.zeros(n), block_samples=1000) as cache:
        whole = cache.query("p99 a by 2s")
        monkeypatch.setattr(selection, "HIST_CHUNK_CELLS", 1000)
        chunked = cache.query("p99 a by 2s")
    assert bits(whole.columns["percentile"]) == bits(chunked.columns["percentile"])
    assert list(whole.columns["time"]) == list(chunked.columns["time"])


# --- max / min: only the blocks that may hold the answer --------------------------------------

def shocks(n=200_000, seed=11):
    rng = np.random.default_rng(seed)
    t = 1_700_000_000 * SECOND + np.arange(n, dtype=np.int64) * 1_000_000
    a = rng.normal(0, 20, n).astype(np.int16)
    b = rng.normal(0, 20, n).astype(np.int32)
    z = (1000 + rng.normal(0, 20, n)).astype(np.int16)
    for at in rng.choice(n - 100, 40, replace=False):
        z[at:at + 30] += int(rng.integers(500, 3000))
    return t, a, b, z


@pytest.mark.parametrize("text,reference", [
    ("max mag(a, z)", lambda t, a, z: np.sqrt(a * 1.0 * a + z * 1.0 * z).max()),
    ("max abs(z - 1g)", lambda t, a, z: np.abs(z - 1000.0).max()),
    ("min -z", lambda t, a, z: (-z.astype(float)).min()),
    ("argmax z * 2", lambda t, a, z: t[np.argmax(z * 2.0)]),
    ("argmin 0 - z", lambda t, a, z: t[np.argmin(0 - z.astype(float))]),
    ("max mag(a, z) where a > 10", lambda t, a, z: np.sqrt(a * 1.0 * a + z * 1.0 * z)[a > 10].max()),
])
def test_extremes_decode_only_blocks_that_can_win(tmp_path, text, reference):
    t, a, b, z = shocks()
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [Channel("a", "int16", "mg"), Channel("z", "int16", "mg")],
                            block_samples=1000)
        cache.append("s", t, [a, z])
        result = cache.query(text)
    expected = reference(t, a, z)
    assert result.value == expected
    assert result.scan.decoded < 20, result.scan      # of 200 blocks


def test_argmax_keeps_the_oldest_of_equal_maxima_across_skipped_blocks(tmp_path):
    n = 50_000
    t = np.arange(n, dtype=np.int64) * 1_000_000
    z = np.full(n, 1000, np.int16)
    z[::997] = 1100            # ties in many blocks
    z[40_000] = 1500
    z[12_345] = 1500           # the oldest maximum
    with make_cache(tmp_path, t, z, np.zeros(n, np.int32), np.zeros(n), block_samples=500) as cache:
        assert cache.query("argmax a * 1").value == t[12_345]
        assert cache.query("argmin -a").value == t[12_345]
        assert cache.query("max a + 0").value == 1500.0
        assert cache.query("argmax a * 1 last 10s").value == t[40_000]


# --- predicates as the statistics leave them ------------------------------------------------

def test_residual_groups_drop_settled_conjuncts():
    from sensorq.engine.zonemaps import residual_groups
    from sensorq.store.blockindex import BlockIndex
    from sensorq.codec.header import ENTRY_DTYPE
    x = P.ChannelRef("x", 0, "int16", 1.0, "mg")
    z = P.ChannelRef("z", 1, "int16", 1.0, "mg")
    entries = np.zeros((3, 2), ENTRY_DTYPE)
    entries["count"] = 10
    entries["min"][:, 0], entries["max"][:, 0] = [-5, -5, 20], [50, 50, 90]   # x
    entries["min"][:, 1], entries["max"][:, 1] = [900, -10, 900], [1100, 1100, 1100]   # z
    ten = np.full(3, 10, np.int64)
    zeros = np.zeros(3, np.int64)
    index = BlockIndex(sensorq.Stream("s", (Channel("x", "int16"), Channel("z", "int16"))), [],
                       np.zeros(3, np.int32), zeros, zeros, ten, zeros, zeros, zeros, entries,
                       zeros, zeros, zeros)
    pred = P.And((P.RawCompare(x, ">", 10.0), P.RawCompare(z, ">", 0.0)))
    groups = {tuple(rows): residual for residual, rows in residual_groups(pred, index, [0, 1, 2])}
    assert groups[(0,)] == P.RawCompare(x, ">", 10.0)         # z > 0 holds for the whole block
    assert groups[(1,)] == pred                               # nothing settled
    assert groups[(2,)] == P.BoolConst(True)                  # all settled
    either = P.Or((P.RawCompare(x, ">", 60.0), P.RawCompare(z, "<", 0.0)))
    groups = {tuple(rows): residual for residual, rows in residual_groups(either, index, [0, 1, 2])}
    assert groups[(2,)] == P.RawCompare(x, ">", 60.0)         # z < 0 false for the whole block
    assert groups[(1,)] == P.RawCompare(z, "<", 0.0)          # and x > 60 there
    assert groups[(0,)] == P.BoolConst(False)                 # (such blocks are skipped)


@SETTINGS
@given(stream=streams(), k=st.integers(-200, 200))
def test_settled_conjuncts_change_no_answer(tmp_path_factory, stream, k):
    t, a, b, f = stream
    with make_cache(tmp_path_factory.mktemp("c"), t, a, b, f) as cache:
        count = cache.query(f"count where a > {k}mg and b > 0degC").value
        either = cache.query(f"count where (a > {k}mg or b > 100degC) and f < 100V").value
        avg = cache.query(f"avg a where a > {k}mg and b >= 15degC").value
        by = cache.query(f"sum a where (a < {k}mg or b < 0degC) and b < 40degC by 2s")
    assert count == int((a > k).sum())
    assert either == int(((a > k) & (f < 100)).sum())       # NaN in f fails f < 100
    hit = (a > k) & (b >= 1500)
    if hit.any():
        assert avg == pytest.approx(a[hit].mean())
    else:
        assert avg is None or np.isnan(avg)
    hit = a < k
    ids = t[hit] // (2 * SECOND)
    expected = [a[hit][ids == i].astype(float).sum() for i in np.unique(ids)]
    assert np.allclose(by.columns["sum"], expected, rtol=1e-12)


# --- top N, fused opcodes -----------------------------------------------------------------

@SETTINGS
@given(stream=streams(), n=st.integers(1, 40), k=st.integers(-100, 100),
       expr=st.sampled_from(["a", "-a", "abs(a)", "mag(a, a)", "f", "b"]))
def test_top_n_equals_a_stable_sort(tmp_path_factory, stream, n, k, expr):
    t, a, b, f = stream
    values = {"a": a * 1.0, "-a": -(a * 1.0), "abs(a)": np.abs(a * 1.0),
              "mag(a, a)": np.sqrt(a * 1.0 * a + a * 1.0 * a), "f": f, "b": b * 0.01}[expr]
    with make_cache(tmp_path_factory.mktemp("c"), t, a, b, f) as cache:
        result = cache.query(f"top {n} {expr} where a > {k}mg")
    ok = np.flatnonzero((a > k) & ~np.isnan(values))
    order = ok[np.lexsort((ok, t[ok], -values[ok]))][:n]
    assert list(result.columns["time"]) == list(t[order])
    assert bits(result.columns["value"]) == bits(values[order])


@SETTINGS
@given(stream=streams(), k=st.integers(-300, 300))
def test_fused_opcodes_equal_numpy(tmp_path_factory, stream, k):
    t, a, b, f = stream
    x = a * 1.0
    with make_cache(tmp_path_factory.mktemp("c"), t, a, b, f) as cache:
        assert cache.query(f"count where abs(a) > {k}mg").value == int((np.abs(x) > k).sum())
        assert cache.query(f"count where {k}mg < abs(a)").value == int((k < np.abs(x)).sum())
        assert cache.query(f"count where {k}mg >= a * 2").value == int((k >= x * 2).sum())
        assert cache.query(f"count where f * 2 != {k / 100}V").value == \
            int((~np.isnan(f) & (f * 2 != k / 100)).sum())
        got = cache.query("avg mag(a, a, a)").value
    if len(t):
        assert got == pytest.approx(np.sqrt(3 * x * x).mean())
    else:
        assert got is None or np.isnan(got)


def test_the_kernels_are_filed_under_what_they_compile_in():
    """jitcache.py: a kernel's cache name carries a digest of vm.py, program.py and
    the codec, so that a change there cannot leave stale machine code behind."""
    from sensorq import jitcache as jit
    from sensorq.engine import kernels, vm
    stamp = jit.digest("engine/vm.py", "engine/program.py", "engine/aggregates.py", "codec/*.py")
    assert kernels.count_matches.py_func.__qualname__.endswith("__" + stamp)
    assert kernels.count_matches_serial.py_func.__qualname__.endswith("__" + stamp)
    assert kernels.decode_time.py_func.__qualname__.endswith("__" + stamp)
    assert vm.run.py_func.__qualname__.endswith("__" + jit.digest("engine/program.py"))


def test_episode_peaks_from_statistics_of_a_negative_scale(tmp_path):
    """A block every sample of which matches gives its peak from statistics:
    with scale < 0 the largest value is min × scale, not max × scale.  (The
    plan is written by hand: v > 20mg is raw v < -80.)"""
    import dataclasses
    from sensorq.engine.executor import execute, plan_text
    n = 6000
    t = np.arange(n, dtype=np.int64) * 1_000_000
    raw = np.full(n, 10, np.int16)
    raw[1000:5000] = -(np.arange(4000) % 50) - 100          # v = 25 .. 37.25
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [Channel("v", "int16", "mg", scale=-0.25)], block_samples=500)
        cache.append("s", t, [raw])
        plan = plan_text(cache, "find episodes where v > 20mg")
        plan = dataclasses.replace(plan, where=P.RawCompare(plan.peak, "<", -80.0))
        result = execute(cache, plan, "find episodes where v > 20mg")
    assert result.scan.from_stats > 0
    assert list(result.columns["peak"]) == [37.25]
    assert list(result.columns["start"]) == [t[1000]] and list(result.columns["end"]) == [t[5000]]
