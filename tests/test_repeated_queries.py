"""Repeated queries: the plan cache (engine/plancache.py) and what the engine
keeps per block range (engine/derived.py, StreamBlocks.memo_for).  A query typed
again is not planned again while the streams and their newest samples are as
they were, and both are worked out afresh as soon as the data changes.  Every
answer is checked against plain numpy over the samples appended."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sensorq
from sensorq.engine.plancache import KEPT_PLANS, plans_of
from sensorq.schema import Channel

S = 10**9
QUERY = "count where x > 10 last 10s"


def _numpy_count(t, x, threshold, window_ns):
    end = t[-1] + 1
    return int(((t >= end - window_ns) & (x > threshold)).sum())


@pytest.fixture
def cache(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as c:
        c.create_stream("s", [Channel("x", "int16")], block_samples=64)
        yield c


def _append(cache, t, x):
    cache.append("s", t, {"x": x})


def test_same_text_same_state_reuses_the_plan(cache):
    t = np.arange(100, dtype=np.int64) * S // 10
    x = np.arange(100, dtype=np.int16) % 20
    _append(cache, t, x)
    first = cache.query(QUERY)
    second = cache.query(QUERY)
    assert second.plan is first.plan
    assert first.value == second.value == _numpy_count(t, x, 10, 10 * S)


@given(batches=st.lists(st.lists(st.integers(-50, 50), min_size=1, max_size=80), min_size=1,
                        max_size=6))
@settings(max_examples=25, deadline=None)
def test_appends_replan_and_answers_follow_the_data(tmp_path_factory, batches):
    path = tmp_path_factory.mktemp("p") / "c"
    with sensorq.open(path, create=True) as c:
        c.create_stream("s", [Channel("x", "int16")], block_samples=32)
        ts, xs, next_t, plans = [], [], 0, []
        for values in batches:
            t = next_t + np.arange(len(values), dtype=np.int64) * (S // 7)
            next_t = int(t[-1]) + S // 7
            x = np.array(values, np.int16)
            _append(c, t, x)
            ts.append(t)
            xs.append(x)
            result = c.query(QUERY)
            plans.append(result.plan)
            all_t, all_x = np.concatenate(ts), np.concatenate(xs)
            assert result.value == _numpy_count(all_t, all_x, 10, 10 * S)
            assert c.query(QUERY).plan is result.plan           # nothing changed: kept
        # each append moved the newest sample, so each answer had a plan of its own
        assert len({id(p) for p in plans}) == len(plans)
        assert len({p.time.end_ns for p in plans}) == len(plans)


@given(batches=st.lists(st.lists(st.integers(-50, 50), min_size=1, max_size=80), min_size=1,
                        max_size=6))
@settings(max_examples=15, deadline=None)
def test_a_query_over_the_whole_stream_keeps_its_plan_as_data_comes(tmp_path_factory, batches):
    """Without a window (or at) a plan does not depend on the newest sample:
    it is kept across appends, its answers follow the data, and explain
    (which plans afresh) reports the now of the data as it is."""
    from sensorq.engine.executor import explain_query
    from sensorq.result import iso
    path = tmp_path_factory.mktemp("w") / "c"
    with sensorq.open(path, create=True) as c:
        c.create_stream("s", [Channel("x", "int16")], block_samples=32)
        xs, next_t, plans = [], 0, []
        for values in batches:
            t = next_t + np.arange(len(values), dtype=np.int64) * (S // 7)
            next_t = int(t[-1]) + S // 7
            _append(c, t, np.array(values, np.int16))
            xs.append(np.array(values, np.int16))
            result = c.query("count where x > 10")
            plans.append(result.plan)
            assert result.value == int((np.concatenate(xs) > 10).sum())
            assert f"now: {iso(int(t[-1]) + 1)}" in explain_query(c, "count where x > 10")
        assert all(plan is plans[0] for plan in plans)


def test_a_new_category_replans(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as c:
        c.create_stream("m", [Channel("state", "int8", categories=["idle"])])
        c.append("m", np.array([0, S], np.int64), {"state": np.array([0, 0], np.int8)})
        before = c.query("count where state == idle")
        assert before.value == 2
        c.add_categories("m", "state", ["run"])
        after = c.query("count where state == idle")
        assert after.plan is not before.plan and after.value == 2
        assert c.query("count where state == run").value == 0


def test_a_reader_replans_after_refresh(tmp_path):
    path = tmp_path / "c"
    t = np.arange(50, dtype=np.int64) * S
    with sensorq.open(path, create=True) as w:
        w.create_stream("s", [Channel("x", "int16")], block_samples=16)
        _append(w, t, np.full(50, 20, np.int16))
        w.flush()
        with sensorq.open(path, readonly=True) as r:
            assert r.query(QUERY).value == 10
            _append(w, t + 50 * S, np.zeros(50, np.int16))
            w.flush()
            assert r.query(QUERY).value == 10                   # the reader's view until refresh
            r.refresh()
            assert r.query(QUERY).value == 0


def test_the_wall_clock_is_never_kept(cache):
    _append(cache, np.arange(10, dtype=np.int64) * S, np.arange(10, dtype=np.int16))
    a = cache.query(QUERY, now_policy="clock")
    b = cache.query(QUERY, now_policy="clock")
    assert a.plan is not b.plan


def test_only_the_most_recent_texts_are_kept(cache):
    _append(cache, np.arange(10, dtype=np.int64) * S, np.arange(10, dtype=np.int16))
    texts = [f"count where x > {i}" for i in range(KEPT_PLANS + 5)]
    for text in texts:
        cache.query(text)
    kept = plans_of(cache)._plans
    assert list(kept) == texts[-KEPT_PLANS:]
    for i, text in enumerate(texts):
        assert cache.query(text).value == int((np.arange(10) > i).sum())


# --- what the engine keeps per block range (engine/derived.py) ---------------------

@given(batches=st.lists(st.lists(st.integers(-1000, 1000), min_size=1, max_size=300), min_size=1,
                        max_size=5), flush=st.booleans())
@settings(max_examples=20, deadline=None)
def test_top_n_asked_again_follows_new_blocks(tmp_path_factory, batches, flush):
    """top N keeps its block order per block range; a query after new blocks
    (flushed or still open) must see them.  Reference: numpy's sort."""
    path = tmp_path_factory.mktemp("top") / "c"
    with sensorq.open(path, create=True) as c:
        c.create_stream("s", [Channel("x", "int16")], block_samples=16)
        xs, next_t = [], 0
        for values in batches:
            x = np.array(values, np.int16)
            _append(c, next_t + np.arange(len(x), dtype=np.int64), x)
            next_t += len(x)
            if flush:
                c.flush()
            xs.append(x)
            every = np.concatenate(xs)
            for _ in range(2):                                  # the second from what was kept
                got = c.query("top 5 x").columns["value"]
                assert got.tolist() == sorted(every.tolist(), reverse=True)[:5]


def test_kept_arrays_cannot_be_changed_by_a_caller(cache):
    _append(cache, np.arange(200, dtype=np.int64), (np.arange(200) % 50).astype(np.int16))
    cache.flush()
    index = cache.blocks("s")
    assert index.memo is not None
    cache.query("top 3 x")
    kept = [v for k, v in index.memo.items() if isinstance(v, np.ndarray)]
    assert kept and not any(a.flags.writeable for a in kept)
    assert cache.blocks("s").memo is index.memo                 # same rows, same memo


@pytest.mark.parametrize("blocks", [300, 700])
def test_top_n_through_every_block_asked_again(tmp_path, blocks):
    """Ties on every block's bound make top N read past the blocks ranked
    first (selection.RANKED_FIRST) into the rest; both rankings are kept and
    used again.  Reference: numpy's stable order (equal values: oldest first)."""
    rng = np.random.default_rng(blocks)
    x = np.full(blocks * 4, 7, np.int16)
    x[rng.choice(len(x), 3, replace=False)] = 9
    t = np.arange(len(x), dtype=np.int64) * 1000
    with sensorq.open(tmp_path / "c", create=True) as c:
        c.create_stream("s", [Channel("x", "int16")], block_samples=4)
        _append(c, t, x)
        c.flush()
        order = np.lexsort((t, -x.astype(np.int64)))[:8]
        for _ in range(3):
            got = c.query("top 8 x")
            assert got.columns["value"].tolist() == x[order].astype(float).tolist()
            assert got.columns["time"].tolist() == t[order].tolist()


def test_top_n_over_blocks_in_several_segments_asked_again(tmp_path):
    """top N's first blocks, when they lie in several segments, are copied
    into one buffer, and that copy is kept for the next ask over the same
    blocks: the answers stay numpy's, and follow a block written later."""
    rng = np.random.default_rng(7)
    x = rng.integers(-2000, 2000, 200_000).astype(np.int16)
    t = np.arange(len(x), dtype=np.int64) * 1000
    path = tmp_path / "c"
    with sensorq.open(path, create=True, capacity=1 << 20) as writer:
        writer.create_stream("s", [Channel("x", "int16")], block_samples=256)
        _append(writer, t, x)
        writer.flush()
        with sensorq.open(path, readonly=True) as reader:
            assert len(set(reader.blocks("s").buffer_of.tolist())) > 3      # several segments
            for ask in range(3):
                got = reader.query("top 6 x")
                order = np.lexsort((t, -x.astype(np.int64)))[:6]
                assert got.columns["value"].tolist() == x[order].astype(float).tolist()
                assert got.columns["time"].tolist() == t[order].tolist()
                assert ("top layout bytes", None, got.plan.expr) in reader.blocks("s").memo
                assert reader.query("count where x > 0").value == int((x > 0).sum())
                lows = reader.query("top 4 -x").columns["time"]         # other blocks first
                assert lows.tolist() == t[np.lexsort((t, x.astype(np.int64)))[:4]].tolist()
            t2, x2 = t[-1] + 1000 + np.arange(256, dtype=np.int64) * 1000, np.full(256, 3000, np.int16)
            _append(writer, t2, x2)
            writer.flush()
            reader.refresh()
            t, x = np.concatenate([t, t2]), np.concatenate([x, x2])
            assert reader.query("top 6 x").columns["time"].tolist() == t2[:6].tolist()


COUNTS = ["count where x > 10 and y < 0 last 3s", "count where (x > 20 or y > 20) and x < 40",
          "count where not x between -5 and 5", "count last 2s", "count where y == 3 last 4s"]


def _numpy_counts(t, x, y):
    """COUNTS over the samples, in plain numpy (windows end at the newest sample)."""
    x, y = x.astype(np.int64), y.astype(np.int64)
    since = lambda seconds: t >= t[-1] + 1 - seconds * S      # noqa: E731
    return [int(((x > 10) & (y < 0) & since(3)).sum()),
            int((((x > 20) | (y > 20)) & (x < 40)).sum()),
            int((~((x >= -5) & (x <= 5))).sum()),
            int(since(2).sum()),
            int(((y == 3) & since(4)).sum())]


@given(batches=st.lists(st.integers(1, 300), min_size=1, max_size=5),
       flush=st.lists(st.booleans(), min_size=5, max_size=5),
       compression=st.sampled_from(["none", "zstd"]), seed=st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)
def test_counts_asked_again_keep_their_plan_and_follow_the_data(tmp_path_factory, batches, flush,
                                                                compression, seed):
    """A count's plan (engine/counting.py: blocks from statistics, residual
    predicates, where the decoded blocks' columns lie) is kept per block range
    and used again while the blocks are the same; appends, flushes (the
    writer's open block sealed) and zstd runs (blocks in buffers of their own,
    pooled) all give answers equal to numpy's, asked once and again."""
    rng = np.random.default_rng(seed)
    path = tmp_path_factory.mktemp("p") / "c"
    with sensorq.open(path, create=True, compression=compression) as c:
        c.create_stream("s", [Channel("x", "int16"), Channel("y", "int16")], block_samples=16)
        ts, xs, ys, next_t = [], [], [], 0
        for n, sealed in zip(batches, flush):
            t = next_t + np.arange(n, dtype=np.int64) * (S // 20)
            next_t = int(t[-1]) + S // 20
            x = rng.integers(-50, 50, n).astype(np.int16)
            y = np.where(rng.random(n) < 0.3, 3, rng.integers(-30, 30, n)).astype(np.int16)
            c.append("s", t, {"x": x, "y": y})
            if sealed:
                c.flush()
            ts.append(t)
            xs.append(x)
            ys.append(y)
            expected = _numpy_counts(np.concatenate(ts), np.concatenate(xs), np.concatenate(ys))
            for _ in range(2):
                assert [c.query(text).value for text in COUNTS] == expected
        index = c.blocks("s")       # the whole range: COUNTS[1] and [2] were planned over it
        kept = [v for k, v in (index.memo or {}).items() if k[0] == "count plan"]
        assert len(kept) >= 2 or not sealed     # (no memo while the writer holds an open block)
        for plan, _, _ in kept:
            for call in plan.calls:
                assert all(not a.flags.writeable for lp in call.layouts
                           for a in (lp.blocks, lp.lay_t, lp.lay_c))


def test_count_plans_are_kept_by_their_bytes(tmp_path, monkeypatch):
    """Count plans are kept by their size, not their block count (one over
    every block of a big cache is worth keeping: it was most of a repeated
    full count's Python time), and a block range keeps no more than
    derived.KEPT_BYTES of them: past it the range starts again."""
    from sensorq.engine import counting, derived
    rng = np.random.default_rng(5)
    n = 40_000
    t = np.arange(n, dtype=np.int64) * 1_000_000
    x = rng.integers(-100, 100, n).astype(np.int16)
    with sensorq.open(tmp_path / "c", create=True) as c:
        c.create_stream("s", [Channel("x", "int16")], block_samples=8)
        c.append("s", t, {"x": x})
        c.flush()
        index = c.blocks("s", lazy=True)
        assert len(index) == n // 8 > 4096

        def plans():
            return {k[1]: v[0] for k, v in index.memo.items() if k[0] == "count plan"}

        for threshold in (0, 1):
            for _ in range(2):
                assert c.query(f"count where x > {threshold}").value == int((x > threshold).sum())
        assert len(plans()) == 2
        held = sum(counting.plan_bytes(p) for p in plans().values())
        assert held > 2 * 100 * 4096 and index.memo[derived._HELD] >= held
        # a budget for one plan: the second one asked makes the range start again
        monkeypatch.setattr(derived, "KEPT_BYTES", held * 3 // 4)
        index.memo.clear()
        for threshold in (2, 3):
            assert c.query(f"count where x > {threshold}").value == int((x > threshold).sum())
        assert len(plans()) == 1 and index.memo[derived._HELD] <= derived.KEPT_BYTES
        # a plan bigger than KEPT_PLAN_BYTES is not kept at all
        monkeypatch.setattr(counting, "KEPT_PLAN_BYTES", 1000)
        index.memo.clear()
        assert c.query("count where x > 4").value == int((x > 4).sum())
        assert not plans()


# --- layouts kept per stream by the blocks' seqs (engine/layout.py) ----------------

def _straddling_blocks(n_blocks, seed):
    """x in blocks of 512: block 1 holds 0..15 (straddles 10, under 20), block
    2 holds 15..30 (over 10, straddles 20), every other block -100..100."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-100, 101, n_blocks * 512).astype(np.int16)
    x[512:1024] = rng.integers(0, 16, 512)
    x[1024:1536] = rng.integers(15, 31, 512)
    return x


def test_kept_layouts_are_those_of_the_same_blocks(tmp_path, monkeypatch):
    """`count where x > 10` decodes every block but block 2 and `x > 20`
    every block but block 1: the same first and last block and as many
    blocks, another set.  Each count lays out its own blocks (the kept
    layout's seqs checked), and every answer is numpy's."""
    from sensorq.engine import layout
    monkeypatch.setattr(layout, "KEPT_LAYOUT_MIN_BLOCKS", 8)
    x = _straddling_blocks(80, 3)
    with sensorq.open(tmp_path / "c", create=True) as c:
        c.create_stream("s", [Channel("x", "int16")], block_samples=512)
        c.append("s", np.arange(len(x), dtype=np.int64) * S // 1000, {"x": x})
        c.flush()
        for engine in ("compiled", "interpreted"):
            for threshold in (10, 20, 10, 20, 10):
                got = c.query(f"count where x > {threshold}", engine=engine).value
                assert got == int((x > threshold).sum()), (engine, threshold)


def test_a_readers_next_range_lays_out_only_the_segment_that_grew(tmp_path):
    """A reader's next block range (the writer sealed a block into the newest
    segment) takes the kept layouts of the segments before it, the same
    arrays, and counts as numpy."""
    from sensorq.engine import layout
    made = []
    real = layout._layout

    def spy(offsets, index, chosen, slot_channels):
        made.append(len(chosen))
        return real(offsets, index, chosen, slot_channels)
    x = _straddling_blocks(330, 4)
    with sensorq.open(tmp_path / "c", create=True, capacity=1 << 20) as w:     # 64 KiB segments
        w.create_stream("s", [Channel("x", "int16")], block_samples=512)
        t = np.arange(len(x), dtype=np.int64) * S // 1000
        w.append("s", t[:300 * 512], {"x": x[:300 * 512]})
        w.flush()
        with sensorq.open(tmp_path / "c", readonly=True) as r:
            assert r.query("count where x > 10").value == int((x[:300 * 512] > 10).sum())
            assert len(list((tmp_path / "c").glob("segment-*.sqs"))) >= 2
            layout._layout = spy
            try:
                for k in range(300, 330):
                    w.append("s", t[k * 512:(k + 1) * 512], {"x": x[k * 512:(k + 1) * 512]})
                    w.flush()
                    r.refresh()
                    made.clear()
                    got = r.query("count where x > 10", engine="compiled").value
                    assert got == int((x[:(k + 1) * 512] > 10).sum())
                    assert len(made) == 1 and made[0] < 300     # the newest segment's alone
            finally:
                layout._layout = real
