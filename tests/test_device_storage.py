"""The device ring on flash (sq_log.c) and in RAM: what it keeps, what it
evicts, what it reports, how it recovers from failed calls and resets, and
appends from an interrupt during seals and queries.

The flash is sensorq.device.flashsim's simulated NOR (programming only clears
bits: a ring that programmed a byte twice would show in ``violations``).
Blocks are checked against the host's encoder, answers against the numpy
reference (sensorq.device.reference)."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensorq.codec.block import decode_block, encode_block
from sensorq.device.vectors import block_info
from sensorq.device.bytecode import compile_plan, schema_hash
from sensorq.device.flashsim import NorFlash
from sensorq.device.native import ERRORS, DeviceError
from sensorq.device.reference import expected_answer
from sensorq.query import plan as P
from sensorq.schema import Channel, Stream

CODES = {name: code for code, name in ERRORS.items()}
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def make_stream(dtypes) -> Stream:
    return Stream("s", tuple(Channel(f"c{i}", d) for i, d in enumerate(dtypes)))


def samples(n: int, dtypes, seed: int = 0, start: int = 10**18):
    rng = np.random.default_rng(seed)
    t = start + np.cumsum(rng.integers(1, 4, n)).astype(np.int64) * 1000
    cols = [np.clip(np.cumsum(rng.integers(-9, 10, n)), np.iinfo(d).min, np.iinfo(d).max).astype(d)
            for d in dtypes]
    return t, cols


def flash_ring(dev, dtypes, bs, flash, mount=False, **kw):
    return dev.ring(dtypes, bs, schema=schema_hash(make_stream(dtypes)), flash=flash, mount=mount, **kw)


def host_blocks(t, cols, bs, first_seq=0):
    return [encode_block(t[i:i + bs], [c[i:i + bs] for c in cols], seq=first_seq + k, codec="compact", version=2)
            for k, i in enumerate(range(0, len(t), bs))]


def count_plan(stream, now, where=None):
    return P.AggregateQuery("s", "count", None, where, P.TimeRange(), P.Now("data", now), "")


# --- keeping and evicting ---------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_flash_ring_holds_the_host_blocks_oldest_first(dev, data):
    """Random streams, block sizes and geometries: the blocks kept are the
    newest ones, contiguous, byte for byte the host's; statistics agree."""
    dtypes = data.draw(st.lists(st.sampled_from(["int8", "int16", "int32", "int64"]), min_size=1,
                                max_size=4))
    bs = data.draw(st.sampled_from([1, 7, 32, 64]))
    n = data.draw(st.integers(1, 900))
    sector, prog = data.draw(st.sampled_from([(256, 1), (512, 16), (4096, 256), (1024, 8)]))
    t, cols = samples(n, dtypes, data.draw(st.integers(0, 1000)))
    probe = flash_ring(dev, dtypes, bs, NorFlash(64 * sector, sector, prog))
    banks = data.draw(st.integers(2, 6))
    flash = NorFlash(banks * probe.stats().bank_size + data.draw(st.integers(0, sector - 1)) // sector * sector,
                     sector, prog)
    ring = flash_ring(dev, dtypes, bs, flash)
    ring.append_many(t, cols)
    st_ = ring.stats()
    blocks = ring.blocks()
    want = host_blocks(t[:n // bs * bs], [c[:n // bs * bs] for c in cols], bs)
    assert blocks == want[len(want) - len(blocks):]
    assert len(blocks) == st_.blocks == ring.block_count and st_.next_seq == len(want)
    assert st_.blocks_evicted == st_.oldest_seq == len(want) - len(blocks)
    assert st_.staged == ring.staged == n % bs
    assert st_.bytes_used + st_.bytes_free == st_.capacity == (banks - 1) * st_.bank_size
    if blocks:
        assert st_.oldest_t == block_info(blocks[0]).t_first
    assert st_.has_data and st_.newest_t == t[-1]
    assert flash.violations == 0


def test_mount_after_a_clean_stop_keeps_everything_and_goes_on(dev):
    dtypes = ["int16", "int32"]
    t, cols = samples(1000, dtypes, 3)
    flash = NorFlash(32 * 1024, 1024, 4)
    ring = flash_ring(dev, dtypes, 40, flash)
    ring.append_many(t[:500], [c[:500] for c in cols])
    ring.flush()                                         # 500 = 12 blocks of 40 + one of 20
    before = ring.blocks()
    again = flash_ring(dev, dtypes, 40, flash, mount=True)
    assert again.blocks() == before and again.staged == 0
    again.append_many(t[500:], [c[500:] for c in cols])
    again.flush()
    blocks = again.blocks()
    assert [block_info(b).seq for b in blocks] == list(range(block_info(blocks[0]).seq, 26))
    got = np.concatenate([decode_block(b)[0] for b in blocks])
    assert got.tolist() == t[-len(got):].tolist()


def test_mount_starts_staging_empty_and_resume_keeps_what_ram_kept(dev):
    dtypes = ["int16"]
    t, cols = samples(50, dtypes, 4)
    flash = NorFlash(8192, 512, 1)
    ring = flash_ring(dev, dtypes, 32, flash)
    ring.append_many(t, cols)                   # one block sealed, 18 samples staged
    assert ring.staged == 18
    mounted = flash_ring(dev, dtypes, 32, flash, mount=True, work=ring.work)
    assert mounted.staged == 0 and len(mounted.blocks()) == 1
    ring = flash_ring(dev, dtypes, 32, flash)
    ring.append_many(t, cols)
    resumed = flash_ring(dev, dtypes, 32, flash, mount="resume", work=ring.work)
    assert resumed.staged == 18
    resumed.flush()
    got = np.concatenate([decode_block(b)[0] for b in resumed.blocks()])
    assert got.tolist() == t.tolist()


def test_unformatted_partition_is_refused_until_formatted(dev):
    flash = NorFlash(8192, 1024, 1)
    with pytest.raises(DeviceError) as info:
        flash_ring(dev, ["int16"], 16, flash, mount=True)
    assert info.value.name == "SQ_ERR_CORRUPT"
    flash.mem[:] = np.random.default_rng(1).integers(0, 256, flash.size, dtype=np.uint8)
    with pytest.raises(DeviceError):
        flash_ring(dev, ["int16"], 16, flash, mount=True)
    flash_ring(dev, ["int16"], 16, flash)                 # format
    assert flash_ring(dev, ["int16"], 16, flash, mount=True).blocks() == []


def test_partition_too_small_for_two_banks(dev):
    with pytest.raises(DeviceError) as info:
        flash_ring(dev, ["int64"] * 4, 256, NorFlash(8192, 4096, 1))
    assert info.value.name == "SQ_ERR_FULL"


def test_memory_mapped_flash_reads_in_place(dev):
    """An XIP partition (fl.mapped): no read callback at all, same blocks."""
    dtypes = ["int16"] * 3
    t, cols = samples(700, dtypes, 5)
    plain, mapped = NorFlash(16384, 512, 4), NorFlash(16384, 512, 4, mapped=True)
    a, b = flash_ring(dev, dtypes, 32, plain), flash_ring(dev, dtypes, 32, mapped)
    a.append_many(t, cols)
    b.append_many(t, cols)
    assert a.blocks() == b.blocks() and np.array_equal(plain.mem, mapped.mem)
    reads = mapped.reads
    stream = make_stream(dtypes)
    code = compile_plan(count_plan(stream, int(t[-1]) + 1), stream)
    assert b.query(code, int(t[-1]) + 1).count == a.query(code, int(t[-1]) + 1).count
    assert mapped.reads == reads


# --- failed calls ----------------------------------------------------------------------------

def test_failed_program_is_retried_in_a_fresh_bank(dev):
    dtypes = ["int16"]
    t, cols = samples(200, dtypes, 7)
    flash = NorFlash(16384, 256, 1)
    ring = flash_ring(dev, dtypes, 20, flash)
    ring.append_many(t[:50], [c[:50] for c in cols])
    flash.fail["prog"] = 0                                 # the next program fails
    for i in range(50, 60):
        ring.append(int(t[i]), [int(c[i]) for c in cols], poll=False)
    with pytest.raises(DeviceError) as info:
        ring.poll()
    assert info.value.name == "SQ_ERR_IO" and ring.staged == 20
    ring.append_many(t[60:], [c[60:] for c in cols])
    assert ring.blocks() == host_blocks(t, cols, 20)
    assert flash.violations == 0
    assert flash_ring(dev, dtypes, 20, flash, mount=True).blocks() == host_blocks(t, cols, 20)


def test_failed_sync_writes_the_block_again_and_mount_keeps_it_once(dev):
    dtypes = ["int8", "int16"]
    t, cols = samples(300, dtypes, 8)
    flash = NorFlash(16384, 512, 2)
    ring = flash_ring(dev, dtypes, 25, flash)
    ring.append_many(t[:100], [c[:100] for c in cols])
    flash.fail["sync"] = 0
    with pytest.raises(DeviceError):
        ring.append_many(t[100:125], [c[100:125] for c in cols])
    ring.append_many(t[125:], [c[125:] for c in cols])
    want = host_blocks(t, cols, 25)
    assert ring.blocks() == want and ring.block_count == len(want)
    again = flash_ring(dev, dtypes, 25, flash, mount=True)
    assert again.blocks() == want and again.block_count == len(want)
    assert [b for b in again.blocks_after(3)[0]] == want[4:]


def test_failed_erase_is_reported_and_retried(dev):
    dtypes = ["int32"]
    t, cols = samples(600, dtypes, 9)
    flash = NorFlash(4 * 1024, 256, 1)
    ring = flash_ring(dev, dtypes, 10, flash)
    flash.fail["erase"] = 3
    errors = 0
    for i in range(len(t)):
        ring.append(int(t[i]), [int(cols[0][i])], poll=False)
        try:
            ring.poll()
        except DeviceError as exc:
            assert exc.name == "SQ_ERR_IO"
            errors += 1
    ring.poll()
    assert errors == 1
    blocks = ring.blocks()
    assert blocks == host_blocks(t, cols, 10)[-len(blocks):] and flash.violations == 0


# --- wear, introspection, export ------------------------------------------------------------

def test_wear_is_even_after_a_long_run(dev):
    """10,000 blocks through 16 one-sector banks: every sector erased as often
    as the others, to within one (what the simulator counted and what the
    ring reads back from its bank headers)."""
    dtypes = ["int16"]
    flash = NorFlash(8 * 512, 256, 1)
    ring = flash_ring(dev, dtypes, 4, flash)
    assert ring.stats().bank_size == 256
    n = 40_000
    t = np.arange(n, dtype=np.int64) * 1000
    v = (np.arange(n) % 7).astype(np.int16)
    ring.append_many(t, [v])
    counts = flash.erase_counts
    st_ = ring.stats()
    print(f"\nerase counts per sector after {n // 4} blocks: min {counts.min()}, max {counts.max()}; "
          f"ring's bank headers: {st_.erase_min}..{st_.erase_max}")
    assert counts.max() - counts.min() <= 1 and counts.min() > 100
    assert st_.erase_max - st_.erase_min <= 1
    assert abs(int(st_.erase_max) - int(counts.max())) <= 1


def test_export_cursor_and_what_was_missed(dev):
    dtypes = ["int16", "int16"]
    t, cols = samples(2000, dtypes, 11)
    flash = NorFlash(6 * 1024, 512, 1)
    ring = flash_ring(dev, dtypes, 32, flash)
    ring.append_many(t, cols)
    everything = host_blocks(t[:1984], [c[:1984] for c in cols], 32)
    blocks = ring.blocks()
    oldest = block_info(blocks[0]).seq
    for after in (oldest - 5, oldest - 1, oldest, oldest + 3, len(everything) - 2, len(everything) + 9):
        got, missed = ring.blocks_after(after)
        assert got == everything[max(after + 1, oldest):]
        assert missed == max(0, oldest - (after + 1))


def test_stats_of_an_empty_and_a_staged_ring(dev):
    ring = flash_ring(dev, ["int8"], 8, NorFlash(4096, 512, 1))
    st_ = ring.stats()
    assert (st_.blocks, st_.staged, st_.has_data, st_.blocks_evicted, st_.bytes_used) == \
        (0, 0, 0, 0, ring.stats().bytes_used)
    ring.append(-7, [1])
    ring.append(5, [2])
    st_ = ring.stats()
    assert (st_.staged, st_.has_data, st_.oldest_t, st_.newest_t) == (2, 1, -7, 5)


# --- RAM rings and retained memory ----------------------------------------------------------------

def test_ram_ring_reopens_from_retained_memory(dev):
    """A watchdog reset keeps RAM: the ring re-opened from its region has every
    block and every staged sample, a closed half not yet sealed included."""
    dtypes = ["int16", "int64"]
    t, cols = samples(500, dtypes, 12)
    ring = dev.ring(dtypes, 30, region_len=20_000, schema=schema_hash(make_stream(dtypes)))
    ring.append_many(t[:400], [c[:400] for c in cols])
    for i in range(400, 440):      # no poll: 10 staged + 40 = a closed half of 30 and 20
        ring.append(int(t[i]), [int(c[i]) for c in cols], poll=False)
    blocks, staged = ring.blocks(), ring.staged
    assert staged == 50
    ring.reopen()
    assert ring.blocks() == blocks and ring.staged == staged
    ring.append_many(t[440:], [c[440:] for c in cols])
    ring.flush()
    got = np.concatenate([decode_block(b)[0] for b in ring.blocks()])
    assert got.tolist() == t[-len(got):].tolist()


def test_ram_ring_reopens_with_both_halves_waiting(dev):
    """The main loop fell behind (both halves closed, appends refused), then
    the watchdog: nothing accepted is lost, and the order is kept."""
    dtypes = ["int32"]
    t, cols = samples(100, dtypes, 15)
    ring = dev.ring(dtypes, 10, region_len=12_000)
    ring.append_many(t[:25], [c[:25] for c in cols])          # 2 blocks, 5 staged
    statuses = [ring.try_append(int(t[i]), [int(cols[0][i])]) for i in range(25, 40)]
    assert statuses == [0] * 15 and ring.staged == 20          # both halves closed
    assert ring.try_append(int(t[40]), [int(cols[0][40])]) == CODES["SQ_ERR_FULL"]
    ring.reopen()
    assert ring.staged == 20
    ring.poll()
    assert ring.staged == 0 and len(ring.blocks()) == 4
    ring.append_many(t[40:], [c[40:] for c in cols])
    ring.flush()
    got = np.concatenate([decode_block(b)[0] for b in ring.blocks()])
    assert got.tolist() == t.tolist()


def test_ram_ring_never_trusts_garbage(dev):
    dtypes = ["int16"]
    ring = dev.ring(dtypes, 16, region_len=8000)
    rng = np.random.default_rng(2)
    ctypes.memmove(ring.region, rng.integers(0, 256, 8000, dtype=np.uint8).tobytes(), 8000)
    with pytest.raises(DeviceError) as info:
        ring.reopen()
    assert info.value.name == "SQ_ERR_CORRUPT"
    fresh = dev.ring(dtypes, 16, region_len=8000)
    fresh.append_many(*samples(100, dtypes, 1))
    other = dev.ring(["int16"], 16, region_len=8000, stream_id=9)   # another configuration
    ctypes.memmove(other.region, fresh.region, 8000)
    other.reopen()
    assert other.staged == 0 and len(other.blocks()) == len(fresh.blocks())


def test_cut_seals_with_retained_ram_lose_and_repeat_nothing(dev):
    """Power to the flash cut at every operation of a run in turn (the torn
    write half made), RAM kept (a watchdog reset): after sq_ring_mount on the
    same work memory and the rest of the run, the ring holds every sample
    whose append said SQ_OK, once, in order."""
    dtypes = ["int16", "int8"]
    t, cols = samples(300, dtypes, 13)
    bs = 16
    probe = NorFlash(8 * 1024, 256, 1)
    flash_ring(dev, dtypes, bs, probe).append_many(t, cols)
    total_ops = probe.progs + probe.erases
    for cut in range(0, total_ops):
        flash = NorFlash(8 * 1024, 256, 1)
        ring = flash_ring(dev, dtypes, bs, flash)
        flash.cut_after = cut
        i = 0
        while i < len(t) and not flash.dead:
            status = ring.try_append(int(t[i]), [int(c[i]) for c in cols])
            assert status == 0
            i += 1
            try:
                ring.poll()
            except DeviceError as exc:
                assert exc.name == "SQ_ERR_IO"
        flash.dead, flash.cut_after = False, None
        ring = flash_ring(dev, dtypes, bs, flash, mount="resume", work=ring.work)
        ring.append_many(t[i:], [c[i:] for c in cols])
        ring.flush()
        got = np.concatenate([decode_block(b)[0] for b in ring.blocks()])
        assert got.tolist() == t[-len(got):].tolist(), cut
        assert len(got) >= len(t) - ring.stats().blocks_evicted * bs and flash.violations == 0


# --- appends from an interrupt ---------------------------------------------------------------------

def test_appends_from_an_interrupt_during_seals_and_queries(dev):
    """The documented pattern: sq_ring_append in a (simulated) interrupt that
    fires at every flash call the main loop's sq_ring_poll and sq_query_run
    make.  No append is lost without SQ_ERR_FULL saying so; the blocks hold
    exactly the accepted samples; every query answers the reference over
    the samples accepted before it returned."""
    dtypes = ["int16", "int16"]
    stream = make_stream(dtypes)
    t, cols = samples(3000, dtypes, 14)
    flash = NorFlash(64 * 1024, 512, 4)
    ring = flash_ring(dev, dtypes, 24, flash)
    ref = P.ChannelRef("c0", 0, "int16", 1.0, "")
    now = int(t[-1]) + 1
    plan = P.AggregateQuery("s", "sum", ref, P.RawCompare(ref, ">", 0.0), P.TimeRange(), P.Now("data", now), "")
    code = compile_plan(plan, stream)
    accepted, refused, at = [], 0, [0]

    def interrupt():
        nonlocal refused
        for _ in range(3):                     # a burst of samples per interrupt
            i = at[0]
            if i >= len(t):
                return
            status = ring.try_append(int(t[i]), [int(c[i]) for c in cols])
            at[0] += 1
            if status == 0:
                accepted.append(i)
            else:
                assert status == CODES["SQ_ERR_FULL"]
                refused += 1

    flash.on_call = interrupt
    queries = 0
    while at[0] < len(t):
        interrupt()
        ring.poll()
        if at[0] % 7 == 0:
            got = ring.query(code, now)
            keep = np.array(accepted)
            want = expected_answer(plan, t[keep], [c[keep] for c in cols])
            assert (got.value, got.count) == (want.value, want.count)
            queries += 1
    flash.on_call = None
    ring.flush()
    keep = np.array(accepted)
    got_t = np.concatenate([decode_block(b)[0] for b in ring.blocks()])
    assert got_t.tolist() == t[keep].tolist()
    assert ring.stats().samples_dropped == refused
    assert refused > 0 and queries > 10, "the test should make the halves overflow sometimes"
