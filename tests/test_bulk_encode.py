"""The bulk encoder (codec/bulk.py) writes exactly the bytes of encode_block,
one block at a time, for hypothesis-made data: on one thread and cut into
parts for several; and a cache fed one large append stores the same blocks
as one fed a block at a time.  The reference is encode_block itself (its own
round trips against numpy are in test_codec.py)."""
from __future__ import annotations

import math

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sensorq
from sensorq import Channel
from sensorq.codec import bulk, intcodec
from sensorq.codec.block import decode_block, encode_block
from sensorq.codec.transforms import time_words

from test_codec import timestamps

INT_TYPES = ["int8", "int16", "int32", "int64"]
SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def values(dtype: str, n: int):
    """Full-range values, or a small range around an offset (what a sensor gives)."""
    info = np.iinfo(dtype)
    full = hnp.arrays(dtype, n, elements=hnp.from_dtype(np.dtype(dtype)))
    span = min(300, int(info.max) // 2)
    narrow = st.integers(int(info.min), int(info.max) - span).flatmap(
        lambda lo: hnp.arrays(dtype, n, elements=st.integers(lo, lo + span)))
    return st.one_of(full, narrow)


@st.composite
def runs(draw):
    """(t, columns, bounds): blocks of random sizes over random integer data."""
    sizes = draw(st.lists(st.one_of(st.integers(1, 40), st.integers(1, 2500)), min_size=1, max_size=6))
    n = sum(sizes)
    t = draw(timestamps(n))
    dtypes = draw(st.lists(st.sampled_from(INT_TYPES), min_size=1, max_size=4))
    columns = [draw(values(d, n)) for d in dtypes]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return t, columns, bounds


def one_at_a_time(t, columns, bounds, codec, stream_id=5, seq=9):
    return [encode_block(t[lo:hi], [c[lo:hi] for c in columns], stream_id=stream_id, seq=seq + i,
                         codec=codec)
            for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))]


def bulk_blocks(parts):
    return [bytes(b) for part in parts for b in part.blocks()]


@SETTINGS
@given(runs(), st.sampled_from(["compact", "fast"]))
def test_bulk_blocks_are_encode_block_bytes(run, codec):
    t, columns, bounds = run
    parts = bulk.encode_run(t, columns, bounds, stream_id=5, seq=9, codec=codec)
    assert bulk_blocks(parts) == one_at_a_time(t, columns, bounds, codec)


@SETTINGS
@given(runs(), st.integers(2, 4))
def test_parts_on_threads_are_the_same_blocks_in_order(monkeypatch_module, run, threads):
    t, columns, bounds = run
    with ThreadPoolExecutor(threads) as pool:
        parts = bulk.encode_run(t, columns, bounds, stream_id=5, seq=9, pool=pool, threads=threads)
    assert 1 <= len(parts) <= bulk.PARTS_PER_THREAD * threads
    assert bulk_blocks(parts) == one_at_a_time(t, columns, bounds, "compact")


@pytest.fixture(scope="module")
def monkeypatch_module():
    """Parts of a few samples, so that hypothesis-sized runs are cut for threads."""
    saved = bulk.MIN_SAMPLES_PER_PART
    bulk.MIN_SAMPLES_PER_PART = 1
    yield
    bulk.MIN_SAMPLES_PER_PART = saved


@SETTINGS
@given(st.integers(1, 3000).flatmap(timestamps))
def test_time_words_into_is_time_words(t):
    words = np.empty(len(t), np.uint64)
    tick, bad = bulk.time_words_into(t, words)
    offsets = [int(x) - int(t[0]) for x in t]               # plain Python integers
    ref_tick = math.gcd(*offsets) or 1
    assert bad == -1 and tick == ref_tick and words.tolist() == [o // ref_tick for o in offsets]
    assert [int(x) for x in time_words(t)[1]] == words.tolist()


def test_time_words_into_past_two_to_the_53():
    """Offsets beyond float64's exact integers take the integer division."""
    t = np.array([0, 3 * 2**52, 3 * 2**53, 3 * 2**53 + 6], np.int64)
    words = np.empty(4, np.uint64)
    tick, bad = bulk.time_words_into(t, words)
    assert (tick, bad) == (6, -1)
    assert words.tolist() == [0, 2**51, 2**52, 2**52 + 1]


def test_a_step_of_two_to_the_63_is_refused_as_by_encode_block():
    t = np.array([-2**63, 5, 6], np.int64)
    cols = [np.zeros(3, np.int16)]
    with pytest.raises(ValueError, match="2\\^63"):
        encode_block(t, cols)
    with pytest.raises(ValueError, match="2\\^63"):
        bulk.encode_run(t, cols, np.array([0, 3]))


def test_bad_runs_are_refused():
    t = np.arange(10, dtype=np.int64)
    with pytest.raises(ValueError, match="samples"):
        bulk.encode_run(t, [np.zeros(10, np.int16)], np.array([0, 5, 5, 10]))
    with pytest.raises(ValueError, match="values"):
        bulk.encode_run(t, [np.zeros(9, np.int16)], np.array([0, 10]))
    with pytest.raises(ValueError, match="storage type"):
        bulk.encode_run(t, [np.zeros(10, np.float32)], np.array([0, 10]))
    assert not bulk.bulk_supported([np.zeros(3, np.float64)])


def test_the_rice_price_is_read_at_each_call(monkeypatch):
    """A benchmark varies intcodec.RICE_DECODE_COST; the bulk path follows it as encode_block does."""
    rng = np.random.default_rng(3)
    t = np.arange(8192, dtype=np.int64) * 1000
    cols = [rng.geometric(0.02, 8192).astype(np.int32)]
    bounds = np.array([0, 4096, 8192])
    monkeypatch.setattr(intcodec, "RICE_DECODE_COST", 0.0)
    assert bulk_blocks(bulk.encode_run(t, cols, bounds)) == one_at_a_time(t, cols, bounds, "compact", 0, 0)


def test_float_channels_take_encode_block():
    t = np.arange(100, dtype=np.int64)
    cols = [np.linspace(0, 1, 100), np.arange(100, dtype=np.int16)]
    blocks = bulk.encode_blocks(t, cols, np.array([0, 60, 100]), stream_id=1, seq=4)
    assert blocks == one_at_a_time(t, cols, [0, 60, 100], "compact", 1, 4)
    decoded_t, decoded = decode_block(blocks[1])
    assert np.array_equal(decoded_t, t[60:]) and np.array_equal(decoded[0], cols[0][60:])


def stored_blocks(path) -> list[bytes]:
    with sensorq.open(path, readonly=True) as cache:
        index = cache.blocks("s")
        return [index.raw(i).tobytes() for i in range(len(index))]


@pytest.mark.parametrize("compression", ["none", "auto"])
def test_one_large_append_stores_the_blocks_of_appends_a_block_at_a_time(tmp_path, compression):
    rng = np.random.default_rng(11)
    n, size = 70_000, 4096
    t = 1_700_000_000_000_000_000 + np.cumsum(rng.integers(900_000, 1_100_000, n))
    cols = {"x": rng.normal(0, 40, n).astype(np.int16), "y": np.arange(n, dtype=np.int32) // 7,
            "z": (1000 + rng.normal(0, 3, n)).astype(np.int16)}
    paths = [tmp_path / "bulk", tmp_path / "one"]
    for path in paths:
        with sensorq.open(path, create=True, capacity="4MiB", compression=compression) as cache:
            cache.create_stream("s", [Channel("x", "int16"), Channel("y", "int32"), Channel("z", "int16")],
                                block_samples=size)
            if path.name == "bulk":
                cache.append("s", t[:100], {k: v[:100] for k, v in cols.items()})   # an open block first
                cache.append("s", t[100:], {k: v[100:] for k, v in cols.items()})
            else:
                for lo in range(0, n, size):
                    cache.append("s", t[lo:lo + size], {k: v[lo:lo + size] for k, v in cols.items()})
    bulk_stored, one_stored = map(stored_blocks, paths)
    assert len(bulk_stored) == (n + size - 1) // size and bulk_stored == one_stored
    with sensorq.open(paths[0], readonly=True) as cache:
        read_t, read = cache.read("s")
    assert np.array_equal(read_t, t) and all(np.array_equal(read[k], v) for k, v in cols.items())


def reference_guess_order(s: np.ndarray) -> int:
    """The compact encoder's order guess, from docs/format.md §3 in Python
    integers: each order's residuals (uint64 arithmetic mod 2^64, zigzagged;
    the first value as it is, order 2's second an order-1 residual) priced
    mini-block by mini-block as the cheaper of bit-packed (32 values at the
    width of the largest) and framed (a 6-bit length, the smallest, the rest
    at the width of largest less smallest, plus its 2-bit decode price; not
    with a smallest of 0 or of 64 bits); the fewest bits wins, ties to the
    smaller order."""
    mask = (1 << 64) - 1
    zigzag = lambda d: ((d << 1) ^ (mask if d >> 63 else 0)) & mask   # noqa: E731  (d: a uint64 word)
    x = [int(v) for v in s]

    def residuals(order):
        if order == 0:
            return x
        r = x[:1] + [zigzag((x[i] - x[i - 1]) & mask) for i in range(1, min(len(x), order))]
        step = (lambda i: x[i] - x[i - 1]) if order == 1 else (lambda i: x[i] - 2 * x[i - 1] + x[i - 2])
        return r + [zigzag(step(i) & mask) for i in range(order, len(x))]

    def price(r):
        bits = 0
        for lo in range(0, len(r), 32):
            mini = r[lo:lo + 32]
            least, most = min(mini), max(mini)
            packed = len(mini) * most.bit_length()
            framed = len(mini) * (most - least).bit_length() + 6 + least.bit_length() + 2
            usable = least != 0 and least.bit_length() < 64 and (most - least).bit_length() <= 62
            bits += framed if usable and framed < packed else packed
        return bits

    prices = [price(residuals(order)) for order in range(3)]
    return prices.index(min(prices))


@SETTINGS
@given(st.integers(1, 3000).flatmap(lambda n: st.one_of(
    hnp.arrays(np.uint64, n, elements=st.integers(0, 2**64 - 1)),
    hnp.arrays(np.uint64, n, elements=st.integers(0, 2**35 - 1)),
    hnp.arrays(np.uint64, n, elements=st.integers(2**35 - 50, 2**35 + 50)),
    st.integers(0, 2**20).flatmap(lambda lo: hnp.arrays(np.uint64, n, elements=st.integers(lo, lo + 600))))))
def test_the_order_guess_is_the_reference_guess(s):
    """pricing._guess_order (vectorised rows, lzcnt widths) picks the order
    that the plain-integer reference above picks, so the compact codec's
    bytes are what format.md says they are."""
    assert intcodec._guess_order(s, np.empty_like(s)) == reference_guess_order(s)


def test_a_shock_on_a_noisy_axis_takes_order_0():
    """Noise around 1 g with a few 5 g shocks (the benchmark's z axis): order
    1's differences of the noise are wider than the noise less each
    mini-block's smallest, and the shocks cost their width, not their size —
    the guess by sums of magnitudes took order 1 here."""
    rng = np.random.default_rng(7)
    z = np.round(1000 + 12 * rng.standard_normal(4096)).astype(np.int64)
    z[2000:2040] += (4000 * np.sin(np.linspace(0, np.pi, 40))).astype(np.int64)
    s = (z - z.min()).view(np.uint64)
    assert reference_guess_order(s) == 0
    assert intcodec._guess_order(s, np.empty_like(s)) == 0


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from([1, 2, 7, 300]), st.sampled_from(["steady", "jitter", "gap"])),
                min_size=1, max_size=12),
       st.sampled_from([1, 1_000_000, 15_625_000]))
def test_a_steady_clock_copies_its_time_section_the_same(blocks, step):
    """Blocks of a steady clock share one time section (copied, not encoded
    again); a jittered block or a gap in between, or another size, must not."""
    t_parts, k = [], 0
    for size, kind in blocks:
        ticks = np.arange(k, k + size, dtype=np.int64)
        if kind == "jitter" and size > 1:
            ticks[-1] += 1 if step == 1 else 0
            ticks = ticks * step + (step // 3 if step > 1 else 0) * (np.arange(size) % 2)
        elif kind == "gap":
            ticks = (ticks + size) * step
            k += size
        else:
            ticks = ticks * step
        t_parts.append(ticks)
        k += size
    t = 1_700_000_000_000_000_000 + np.sort(np.concatenate(t_parts))
    cols = [np.arange(len(t), dtype=np.int16)]
    bounds = np.concatenate([[0], np.cumsum([size for size, _ in blocks])])
    assert bulk_blocks(bulk.encode_run(t, cols, bounds, stream_id=5, seq=9)) == \
        one_at_a_time(t, cols, bounds, "compact")


def test_a_large_append_rolls_and_evicts_as_lone_records_would(tmp_path):
    """One append larger than the ring: its records, written a segment's span
    at a time, still roll where a lone record would (no segment past the
    target), evict only whole old segments (within capacity), and leave the
    newest samples, exactly, readable after a reopen."""
    from sensorq.store.records import COMMIT_RECORD_SIZE, segment_file_name
    from sensorq.store.settings import segment_target
    rng = np.random.default_rng(5)
    n = 400_000
    t = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000
    cols = [rng.normal(0, 300, n).astype(np.int16) for _ in range(3)]
    path = tmp_path / "ring"
    with sensorq.open(path, create=True, capacity="256KiB", compression="none") as cache:
        cache.create_stream("s", [Channel(c, "int16") for c in "xyz"], block_samples=1000)
        cache.append("s", t, cols)
        capacity, target = cache.capacity, segment_target(cache.capacity)
        sizes = [s.file_size for s in cache._segments]
        names = [segment_file_name(s.number) for s in cache._segments]
    assert sum(sizes) <= capacity and len(sizes) >= 3
    assert all(size <= target for size in sizes[:-1])       # the last one holds the flush's commits too
    assert sizes[-1] <= target + 2 * COMMIT_RECORD_SIZE
    assert all((path / name).exists() for name in names)
    with sensorq.open(path, readonly=True) as cache:
        assert cache.info()["problems"] == []
        read_t, read = cache.read("s")
    first = int((read_t[0] - t[0]) // 1_000_000)
    assert 0 < first and len(read_t) == n - first and np.array_equal(read_t, t[first:])
    assert all(np.array_equal(read[c], col[first:]) for c, col in zip("xyz", cols))


def test_sections_outgrow_their_first_buffer():
    """Noise over the whole int64 range takes more than the first guess (half
    the raw size): the passes grow their buffers and the bytes stay right."""
    rng = np.random.default_rng(8)
    n = 100_000
    t = np.cumsum(rng.integers(1, 2**40, n))          # irregular, wide offsets: the gcd loop
    cols = [rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64, endpoint=True),
            rng.integers(-100, 100, n).astype(np.int8)]
    bounds = np.concatenate([np.arange(0, n, 7000), [n]])
    parts = bulk.encode_run(t, cols, bounds, stream_id=5, seq=9)
    assert bulk_blocks(parts) == one_at_a_time(t, cols, bounds, "compact")
    assert parts[0].raw.nbytes > n * 8


def test_an_error_in_a_part_another_thread_took_is_raised(monkeypatch):
    monkeypatch.setattr(bulk, "MIN_SAMPLES_PER_PART", 1)
    t = np.arange(6000, dtype=np.int64) - 2**62
    t[5995:] += 2**62
    t[5995:] += 2**62                  # a step of 2^63 + 1 ns in the last block
    bounds = np.arange(0, 6001, 1000)
    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="2\\^63"):
        bulk.encode_run(t, [np.zeros(6000, np.int16)], bounds, pool=pool, threads=2)
