"""The engine's two tiers (engine/tiers.py) against each other.

The interpreted tier exists so that a small query in a fresh process needs no
numba; it must then give exactly the compiled tier's answer.  Three layers:
the numpy decoder against the compiled one (words and statuses, on valid and
damaged sections), whole queries through both tiers (bit for bit), and the
tier choice itself in a fresh process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sensorq
from sensorq.codec import npdecode
from sensorq.codec.block import encode_block, parse_block
from sensorq.codec.alp import ALP, mantissa_start
from sensorq.codec.intcodec import decode_column
from sensorq.codec.timecol import decode_time_words
from sensorq.schema import Channel

from samples import SECOND, make_cache, streams

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# --- the numpy decoder against the compiled one -----------------------------------------

@st.composite
def columns(draw):
    """A column of one storage type with a random shape: noise, walks, steps,
    a few values (dictionary), constants, extremes, NaN and friends."""
    n = draw(st.integers(1, 700))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(["int8", "int16", "int32", "int64", "float32", "float64"]))
    shape = draw(st.sampled_from(["noise", "walk", "few", "constant", "extreme", "decimal"]))
    if shape == "noise":
        x = rng.normal(0, 10 ** rng.integers(0, 6), n)
    elif shape == "walk":
        x = np.cumsum(rng.integers(-3, 4, n)) * rng.integers(1, 1000)
    elif shape == "few":
        x = rng.choice(rng.integers(-10**4, 10**4, 5), n)
    elif shape == "constant":
        x = np.full(n, rng.integers(-100, 100))
    elif shape == "decimal":
        x = np.round(rng.normal(20, 5, n), 2)
    else:
        info = np.iinfo(dtype) if dtype.startswith("int") else np.finfo(dtype)
        x = rng.choice([info.min, info.max, 0, -1, 1], n)
    if dtype.startswith("int"):
        info = np.iinfo(dtype)
        return np.clip(np.nan_to_num(x), info.min, info.max).astype(dtype)
    x = x.astype(dtype)
    if shape == "noise":
        x[rng.random(n) < 0.05] = draw(st.sampled_from([np.nan, np.inf, -np.inf, -0.0, 5e-324]))
    return x


def sections(block: bytes):
    """(start, end, n, codec) of the time section and every channel section."""
    info = parse_block(block)
    starts = info.section_offsets()
    lengths = [info.time_len] + [int(e["data_len"]) for e in info.entries]
    codecs = [info.time_codec] + [int(e["codec"]) for e in info.entries]
    out = [(int(s), int(s) + ln, info.n_samples, c) for s, ln, c in zip(starts, lengths, codecs)]
    for i, e in enumerate(info.entries, 1):    # an ALP float section: its integer section
        if int(e["codec"]) & ALP == ALP:
            start, end, n, c = out[i]
            raw = np.frombuffer(block, np.uint8)
            out[i] = (int(mantissa_start(raw, start, end, n, int(e["dtype"]) == 5)), end, n, c)
    return out


def both_decoders(buf, start, end, n, codec, time=False):
    """A section's words by each tier's decoder (``time``: a time section,
    which may be a CLOCK section, codec/clock.py)."""
    words, scratch = np.empty(n, np.uint64), np.empty(n, np.uint64)
    if time:
        status = decode_time_words(buf, start, end, n, codec, words, scratch)
        np_status, np_words = npdecode.decode_time_words(buf, start, end, n, codec)
    else:
        status = decode_column(buf, start, end, n, codec, words, scratch)
        np_status, np_words = npdecode.decode_column(buf, start, end, n, codec)
    return (status, words), (np_status, np_words)


@SETTINGS
@given(column=columns(), codec=st.sampled_from(["compact", "fast"]), step=st.integers(0, 3))
def test_numpy_decoder_reads_every_column_as_the_compiled_one(column, codec, step):
    n = len(column)
    t = 1_700_000_000 * SECOND + np.cumsum(np.full(n, step * 1_000_000)).astype(np.int64)
    block = encode_block(t, [column], codec=codec)
    buf = np.frombuffer(block, np.uint8)
    for i, (start, end, n, code) in enumerate(sections(block)):
        (status, words), (np_status, np_words) = both_decoders(buf, start, end, n, code, time=i == 0)
        assert status == np_status == 0
        assert np.array_equal(words, np_words)


@settings(SETTINGS, max_examples=300)
@given(column=columns(), codec=st.sampled_from(["compact", "fast"]), data=st.data())
def test_numpy_decoder_fails_where_the_compiled_one_fails(column, codec, data):
    """Damaged sections (bytes changed, cut short, codec byte changed): both
    decoders give the same status, and the same words when they accept it."""
    block = encode_block(np.arange(len(column), dtype=np.int64), [column], codec=codec)
    start, end, n, code = sections(block)[1]
    buf = bytearray(block)
    damage = data.draw(st.sampled_from(["bytes", "headers", "cut", "codec"]))
    if damage in ("bytes", "headers"):
        # "headers": the first bytes — base, dictionary size, mini-block headers
        last = end - 1 if damage == "bytes" else min(end - 1, start + 8 + 4 + 24)
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(start, last))
            buf[at] = data.draw(st.integers(0, 255))
    elif damage == "cut":
        end = data.draw(st.integers(start, end - 1))
    else:
        code = data.draw(st.integers(0, 255))
    raw = np.frombuffer(bytes(buf), np.uint8)
    (status, words), (np_status, np_words) = both_decoders(raw, start, end, n, code)
    assert status == np_status
    if status == 0:
        assert np.array_equal(words, np_words)


def test_numpy_decoder_on_hand_made_sections():
    """A hand-assembled predictor-1 column: base 100, residuals 0, +1, -1, +2
    zigzagged to 0, 2, 1, 4 and bit-packed at width 3 → 100, 101, 100, 102."""
    payload = (0 | 2 << 3 | 1 << 6 | 4 << 9).to_bytes(2, "little")
    section = (100).to_bytes(8, "little") + bytes([3]) + payload
    status, words = npdecode.decode_column(np.frombuffer(section, np.uint8), 0, len(section), 4, 1)
    assert status == 0 and words.tolist() == [100, 101, 100, 102]
    # the same residuals as Rice(1): quotient zeros + a one, then one remainder bit
    bits = "1" + "0" + "01" + "0" + "1" + "1" + "001" + "0"   # 0 → q0 r0, 2 → q1 r0, 1 → q0 r1, 4 → q2 r0
    rice = int(bits[::-1], 2).to_bytes(2, "little")
    section = (100).to_bytes(8, "little") + bytes([0x81]) + rice
    status, words = npdecode.decode_column(np.frombuffer(section, np.uint8), 0, len(section), 4, 1)
    assert status == 0 and words.tolist() == [100, 101, 100, 102]


# --- whole queries through both tiers ---------------------------------------------------

QUERY_SHAPES = [
    "count", "count where a > {k}mg", "sum a", "avg a where f > 3.2V", "min b", "max f",
    "first a", "last f", "spread a", "rate a", "argmax a", "argmin f", "median a", "std f",
    "var a where b > 20degC", "std f by 2s", "integral a", "twa f where a > {k}mg",
    "duration where a > {k}mg", "twa a by 1s fill(prev)", "duration where f > 3.3V by 2s",
    "integral f gap <= 15ms", "duration where a > {k}mg gap <= 25ms by 1s",
    "percentile(90) f", "avg a by 2s", "max f by 3s fill(prev)", "count where a > {k}mg by 1s",
    "find first 3 where a > {k}mg", "find last 2 where f > 3.5V", "newest 4", "top 3 a",
    "find episodes where a > {k}mg", "find episodes where f > 3.3V for >= 20ms",
    "avg abs(a) * 2 - a / 3 where not (a > {k}mg) or b < 25degC",
    "max mag(a, 2 * a) where f != 3.3V", "sum sqrt(a) where b >= 20degC and f <= 3.4V",
    # tiny buckets (compact slots), int64 timestamps, selections (selection.py)
    "avg a by 1ns", "count where a > {k}mg by 7ms", "std f by 1us", "integral a by 3ms",
    "duration where a > {k}mg by 1ms fill(null)", "twa f by 2ms gap <= 15ms",
    "argmax a by 1s", "argmin f by 2s fill(linear)", "argmax f by 1ms fill(prev)",
    "percentile(75) a by 2s", "median f by 1ms", "top 5 f", "top 7 -a where b > 25degC",
    # issue 11: histogram percentiles, pruned extremes, settled conjuncts, fused opcodes
    "percentile(99) b by 2s", "median a where b > 25degC", "p5 b where a > {k}mg by 1s",
    "max mag(a, a) where a < {k}mg", "argmin abs(a) - 1mg", "min a * 2 where f > 3.3V",
    "count where a > {k}mg and b > 15degC", "avg f where (a > {k}mg or b > 34degC) and b > 0",
    "count where abs(a) > {k}mg", "count where {k}mg >= a * 2", "top 4 mag(a, a) where b > 20degC",
    "top 2 a * 0 where a > {k}mg", "find episodes where a > {k}mg gap <= 25ms",
    "find episodes where a > {k}mg and f > 3V gap <= 15ms", "find episodes where b > 25degC",
]


def same(x, y) -> bool:
    """Bit for bit (NaN equal to NaN, -0.0 not equal to 0.0)."""
    if isinstance(x, np.ndarray):
        return x.dtype == y.dtype and x.shape == y.shape and \
            np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes()
    if isinstance(x, float):
        return isinstance(y, float) and np.array(x).tobytes() == np.array(y).tobytes()
    return x == y and type(x) is type(y)


@settings(SETTINGS, max_examples=120)
@given(stream=streams(), shape=st.sampled_from(QUERY_SHAPES), k=st.integers(-200, 200),
       window=st.sampled_from(["", " last 3s", " last 40s", " since 1700000001s"]))
def test_both_tiers_give_the_same_answer_bit_for_bit(tmp_path_factory, stream, shape, k, window):
    t, a, b, f = stream
    with make_cache(tmp_path_factory.mktemp("c"), t, a, b, f) as cache:
        text = shape.format(k=k) + window
        compiled = cache.query(text, engine="compiled")
        interpreted = cache.query(text, engine="interpreted")
    assert compiled.scan.engine in ("compiled", "")
    assert interpreted.scan.engine in ("interpreted", "")
    assert compiled.kind == interpreted.kind
    if compiled.kind == "scalar":
        assert same(compiled.value, interpreted.value), (compiled.value, interpreted.value)
    else:
        assert list(compiled.columns) == list(interpreted.columns)
        for name in compiled.columns:
            assert same(compiled.columns[name], interpreted.columns[name]), name


def test_an_unknown_engine_is_a_clear_error(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [Channel("a", "int16", "mg")])
        cache.append("s", np.arange(5, dtype=np.int64), [np.arange(5, dtype=np.int16)])
        with pytest.raises(sensorq.QueryError, match="engine 'jit' is not one of auto"):
            cache.query("count where a > 1mg", engine="jit")


# --- the choice, in a fresh process -----------------------------------------------------

PROBE = """
import json, sys
import sensorq
with sensorq.open(sys.argv[1], readonly=True) as cache:
    result = cache.query(sys.argv[2])
print(json.dumps({"engine": result.scan.engine, "numba": "numba" in sys.modules,
                  "value": result.value}))
"""


def probe(cache_dir, text):
    env = {k: v for k, v in os.environ.items() if k != "SENSORQ_ENGINE"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(cache_dir), text], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def spiky_cache(path, n):
    """A stream imu of n samples at 1 kHz, z = 1 g with a 2.5 g spike every 1000."""
    z = np.full(n, 1000, np.int16)
    z[::1000] = 2500
    with sensorq.open(path, create=True) as cache:
        cache.create_stream("imu", [Channel("z", "int16", "mg")], block_samples=4096)
        cache.append("imu", np.arange(n, dtype=np.int64) * 1_000_000, [z])


def test_a_small_query_in_a_fresh_process_never_loads_numba(tmp_path):
    n = 600_000
    spiky_cache(tmp_path / "c", n)
    small = probe(tmp_path / "c", "count where z > 2g last 10s")
    assert small == {"engine": "interpreted", "numba": False, "value": 10}
    whole = probe(tmp_path / "c", "count where z > 1.5g")   # every block decoded: 1.2 M values,
    assert whole == {"engine": "interpreted", "numba": False, "value": n // 1000}   # ~10 ms
    # 600 000 buckets: ~7 s interpreted, well under 1 s with the kernels' loading
    many = probe(tmp_path / "c", "avg z by 1ms")
    assert many["engine"] == "compiled" and many["numba"]


@pytest.mark.parametrize("budget_seconds", [3600.0, 1e-9])
def test_auto_moves_a_process_whose_interpreted_scans_took_long_to_the_kernels(
        monkeypatch, tmp_path, budget_seconds):
    """However far the interpreter's prices are off for some data, the time
    its scans take in a process is bounded: once they have taken
    INTERPRET_BUDGET_SECONDS, auto takes the kernels (with an hour's budget
    the same query stays interpreted: the time is what moved it)."""
    from sensorq.engine import tiers
    monkeypatch.delenv("SENSORQ_ENGINE", raising=False)
    monkeypatch.setattr(tiers, "_KERNELS_MODULE", "not.loaded.yet")
    monkeypatch.setattr(tiers, "_interpreted_values", 0)
    monkeypatch.setattr(tiers, "_interpreted_seconds", 0.0)
    monkeypatch.setattr(tiers, "INTERPRET_BUDGET_SECONDS", budget_seconds)
    z = np.full(40_000, 1000, np.int16)
    z[::100] = 2500
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("imu", [Channel("z", "int16", "mg")], block_samples=4096)
        cache.append("imu", np.arange(len(z), dtype=np.int64) * 1_000_000, [z])
        first, second = cache.query("count where z > 2g"), cache.query("count where z > 2g")
    assert first.value == second.value == int((z > 2000).sum())
    assert first.scan.engine == "interpreted" and tiers._interpreted_seconds > 0
    assert second.scan.engine == ("interpreted" if budget_seconds > 1 else "compiled")


def test_an_interpreted_count_spends_the_interpreters_time_budget(monkeypatch, tmp_path):
    """The time an interpreted count takes counts towards
    INTERPRET_BUDGET_SECONDS (its scan stretched by 50 ms: at least that is
    spent)."""
    from sensorq.engine import interpreter, tiers
    count = interpreter.count_raw_compare

    def slow(*args):
        time.sleep(0.05)
        return count(*args)
    monkeypatch.setattr(interpreter, "count_raw_compare", slow)
    monkeypatch.setattr(tiers, "_interpreted_seconds", 0.0)
    z = np.full(40_000, 1000, np.int16)
    z[::100] = 2500
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("imu", [Channel("z", "int16", "mg")], block_samples=4096)
        cache.append("imu", np.arange(len(z), dtype=np.int64) * 1_000_000, [z])
        cache.flush()
        result = cache.query("count where z > 2g", engine="interpreted")
    assert result.value == int((z > 2000).sum()) and result.scan.engine == "interpreted"
    assert tiers._interpreted_seconds >= 0.05


def test_auto_status_says_what_auto_takes_and_why(monkeypatch):
    """explain's line on auto's choice (tiers.auto_status), for each state."""
    from sensorq.engine import tiers
    monkeypatch.delenv("SENSORQ_ENGINE", raising=False)
    monkeypatch.setattr(tiers, "_KERNELS_MODULE", "not.loaded.yet")
    monkeypatch.setattr(tiers, "_interpreted_values", 3 << 20)
    monkeypatch.setattr(tiers, "_interpreted_seconds", 0.125)
    assert tiers.auto_status("compiled") == tiers.auto_status("interpreted") == ""
    fresh = tiers.auto_status(None)
    assert fresh.startswith("auto takes the interpreter") and "0.125 s of its 0.5 s" in fresh \
        and "3.0 Mi of its 96 Mi" in fresh
    monkeypatch.setattr(tiers, "_interpreted_seconds", 0.5)
    assert tiers.auto_status("auto").startswith("auto takes the kernels from the next scan on")
    monkeypatch.setenv("SENSORQ_ENGINE", "interpreted")
    assert tiers.auto_status(None) == ""
    monkeypatch.delenv("SENSORQ_ENGINE")
    monkeypatch.setattr(tiers, "_KERNELS_MODULE", "sensorq.engine.kernels")
    import sensorq.engine.kernels  # noqa: F401
    assert tiers.auto_status(None) == "auto takes the kernels: they are loaded in this process"


def test_the_auto_cost_counts_buckets_and_rice_coded_floats():
    from sensorq.engine import tiers
    from sensorq.store.blockindex import BlockIndex
    from sensorq.query.plan import ChannelRef
    from sensorq.codec.header import ENTRY_DTYPE
    ints = sensorq.Stream("s", (Channel("x", "int16"),))
    floats = sensorq.Stream("f", (Channel("x", "float64"),))
    ref = [ChannelRef("x", 0, "int16", 1.0, "")]
    def index(stream):
        one = lambda v: np.array([v], np.int64)   # noqa: E731
        return BlockIndex(stream, [], np.zeros(1, np.int32), one(0), one(0), one(4096), one(0),
                          one(4095 * 10**6), one(0), np.zeros((1, 1), ENTRY_DTYPE), one(1), one(0),
                          one(0))
    rows = np.array([0])
    plain = tiers.aggregate_cost(index(ints), rows, ref, None)
    assert plain == 4096 * 2
    assert tiers.aggregate_cost(index(floats), rows, ref, None) == 4096 * (1 + tiers.RICE_FLOAT_WEIGHT)
    by_1ms = tiers.aggregate_cost(index(ints), rows, ref, 10**6)
    assert by_1ms == plain + 4096 * tiers.BUCKETED_SAMPLE_WEIGHT + 4096 * tiers.BUCKET_WEIGHT
    by_1s = tiers.aggregate_cost(index(ints), rows, ref, 10**9)
    assert by_1s == plain + 4096 * tiers.BUCKETED_SAMPLE_WEIGHT + 5 * tiers.BUCKET_WEIGHT


def test_the_auto_cost_counts_entropy_coded_sections(tmp_path, monkeypatch):
    """A clock of 15 and 16 ms steps (Daphnet's) is tANS-coded (ENTROPY), which
    the numpy decoder reads at ~0.2 us a value: auto prices each of its values
    ENTROPY_WEIGHT, so that a big scan of them goes to the kernels."""
    from sensorq.codec import intcodec, timecol
    from sensorq.engine import tiers
    from sensorq.query.plan import ChannelRef
    k = np.arange(40_000)
    t = 10**18 + np.cumsum(np.where(k % 3 == 0, 16, 15)) * 10**6
    ref = [ChannelRef("x", 0, "int16", 1.0, "")]
    costs = {}
    for entropy in (False, True):
        monkeypatch.setattr(intcodec, "ENTROPY_SECTIONS", entropy)
        monkeypatch.setattr(timecol, "CLOCK_LINES", False)      # (16, 15, 15 ms: on a line, 46/3)
        with sensorq.open(tmp_path / f"c{entropy}", create=True) as cache:
            cache.create_stream("s", [Channel("x", "int16")], codec="compact")
            cache.append("s", t, [np.zeros(len(t), np.int16)])
            cache.flush()
            index = cache.blocks("s")
            rows = np.arange(len(index))
            # ENTROPY: bit 7 without bit 6 (both: SPLIT, a mini-block payload)
            assert ((index.time_codec & 0xC0) == 0x80).all() == entropy    # the clock, and only it
            assert not ((index.entries["codec"] & 0xC0) == 0x80).any()
            costs[entropy] = tiers.aggregate_cost(index, rows, ref, None), \
                tiers.scan_values(index, rows, ref)
    assert costs[False] == (2 * len(t), 2 * len(t))
    extra = len(t) * (tiers.ENTROPY_WEIGHT - 1)
    assert costs[True] == (2 * len(t) + extra, 2 * len(t) + extra)


def test_auto_moves_a_busy_process_to_the_kernels(monkeypatch):
    """auto: small scans go to the interpreter until the kernels are loaded or
    the interpreter's budget for the process is spent; big ones go to the
    kernels; an explicit engine wins."""
    from sensorq.engine import tiers
    monkeypatch.delenv("SENSORQ_ENGINE", raising=False)
    monkeypatch.setattr(tiers, "_KERNELS_MODULE", "not.loaded.yet")
    monkeypatch.setattr(tiers, "_interpreted_values", 0)
    monkeypatch.setattr(tiers, "_interpreted_seconds", 0.0)
    monkeypatch.setattr(tiers, "INTERPRET_BUDGET_VALUES", 250)
    monkeypatch.setattr(tiers, "INTERPRET_MAX_VALUES", 100)
    names = [tiers.choose(None, v).name for v in (100, 101, 100, 40, 20)]
    assert names == ["interpreted", "compiled", "interpreted", "interpreted", "compiled"]
    assert tiers.choose("interpreted", 10**9).name == "interpreted"
    monkeypatch.setattr(tiers, "_interpreted_values", 0)
    monkeypatch.setattr(tiers, "_KERNELS_MODULE", "sensorq.engine.kernels")
    import sensorq.engine.kernels  # noqa: F401  (loaded: auto now always takes them)
    assert tiers.choose(None, 1).name == "compiled"


RACE = """
import sys, threading, time
import sensorq
threading.Thread(target=lambda: __import__("sensorq.engine.kernels"), daemon=True).start()
while "sensorq.engine.kernels" not in sys.modules:   # the other thread's import has begun
    time.sleep(0.0005)
half_made = not hasattr(sys.modules["sensorq.engine.kernels"], "PARALLEL_MIN_BLOCKS")
with sensorq.open(sys.argv[1], readonly=True) as cache:
    print(half_made, cache.query(sys.argv[2], engine="compiled").value)
"""


def test_a_query_while_another_thread_imports_the_kernels_waits_for_them(tmp_path):
    """The shell imports the kernels in a background thread as it starts; a
    query that takes the compiled tier meanwhile must wait for that import,
    not use the module half made (tiers._kernels: an import statement, where
    a look in sys.modules raised AttributeError)."""
    n = 50_000
    spiky_cache(tmp_path / "c", n)
    done = subprocess.run([sys.executable, "-c", RACE, str(tmp_path / "c"), "count where z > 2g"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    half_made, value = done.stdout.split()
    assert half_made == "True"          # the query did start while the import was under way
    assert int(value) == n // 1000
