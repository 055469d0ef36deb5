"""Power cuts at every program and erase step of a scripted workload on a
simulated NOR flash (sensorq.device.flashsim), in turn, as littlefs tests
itself: after each cut the ring is mounted and must hold every block it had
acknowledged (unless an erase that evicts it had started), nothing that is
not byte for byte a block the host encoder makes of the same samples, query
answers equal to a numpy reference over the blocks it kept, and it must go on
working (more samples appended, flushed and mounted again).

The workload here is small enough to try every cut point (prints how many
were tried and survived); SENSORQ_LONG_FAULTS=1 adds a longer workload with
wider blocks, a program size of 1 and erases cut from the end of the sector."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pytest

from sensorq.codec.block import decode_block, encode_block
from sensorq.device.vectors import block_info, block_length
from sensorq.device.bytecode import compile_plan, schema_hash
from sensorq.device.flashsim import NorFlash, cut_points
from sensorq.device.native import DeviceError
from sensorq.device.reference import expected_answer
from sensorq.query import plan as P
from sensorq.schema import Channel, Stream

LONG = os.environ.get("SENSORQ_LONG_FAULTS") == "1"
STREAM_ID = 3


@dataclass
class Workload:
    """Samples, the flush points, the flash geometry, and what the run did."""
    stream: Stream
    block_samples: int
    t: np.ndarray
    cols: list
    flush_at: tuple
    size: int
    sector: int
    prog: int
    page: int
    ranges: list = field(default_factory=list)     # seq -> (first sample, end)

    @property
    def dtypes(self):
        return [c.dtype for c in self.stream.channels]

    def flash(self, image=None) -> NorFlash:
        return NorFlash(self.size, self.sector, self.prog, self.page, image)


def make_workload(n: int, dtypes: list[str], block_samples: int, flush_at, size, sector, prog, page,
                  seed: int = 1) -> Workload:
    rng = np.random.default_rng(seed)
    stream = Stream("w", tuple(Channel(f"c{i}", d, "mg") for i, d in enumerate(dtypes)))
    t = 1_700_000_000_000_000_000 + np.cumsum(rng.choice([10_000_000, 10_000_000, 20_000_000], n))
    cols = []
    for d in dtypes:
        info = np.iinfo(d)
        walk = np.cumsum(rng.integers(-30, 31, n)) + int(rng.integers(-500, 500))
        cols.append(np.clip(walk, info.min, info.max).astype(d))
    return Workload(stream, block_samples, t.astype(np.int64), cols, tuple(flush_at), size, sector,
                    prog, page)


def open_ring(dev, w: Workload, flash: NorFlash, mount: bool):
    return dev.ring(w.dtypes, w.block_samples, stream_id=STREAM_ID, schema=schema_hash(w.stream),
                    flash=flash, mount=mount)


def run(dev, w: Workload) -> tuple[NorFlash, int]:
    """The uninterrupted run: format, append every sample (the main loop
    polling after each), flush at the flush points; the log marks, after each
    poll, the blocks acknowledged so far (("ack", n): seqs 0..n-1)."""
    flash = w.flash()
    ring = open_ring(dev, w, flash, mount=False)
    flash.mark("formatted")
    bank_size = ring.stats().bank_size
    w.ranges.clear()
    start = 0
    for i in range(len(w.t)):
        ring.append(int(w.t[i]), [int(c[i]) for c in w.cols], poll=False)
        if i + 1 - start == w.block_samples:
            w.ranges.append((start, i + 1))
            start = i + 1
        if i + 1 in w.flush_at and i + 1 > start:
            ring.close()
            w.ranges.append((start, i + 1))
            start = i + 1
        ring.poll()
        flash.mark("ack", len(w.ranges))
    assert flash.violations == 0, "the ring programmed a byte that was not erased"
    return flash, bank_size


class Expectations:
    """What must and may be on the partition after a cut at log index i."""

    def __init__(self, w: Workload, log: list, bank_size: int):
        self.w = w
        self.log = log
        self.blocks = {}           # seq -> the host encoder's bytes (the reference)
        self.where = {}            # seq -> (offset, length) where it was programmed
        self.acked_at, self.evicted_at, self.formatted_at = {}, {}, None
        acked = 0
        for i, op in enumerate(log):
            if op[:2] == ("mark", "formatted"):
                self.formatted_at = i
            elif op[:2] == ("mark", "ack"):
                for seq in range(acked, op[2]):
                    self.acked_at[seq] = i
                acked = op[2]
            elif op[0] == "prog" and op[2][:4] == b"SQB1":
                seq = block_info(op[2][:block_length(op[2])]).seq
                self.where[seq] = (op[1], len(op[2]))
            elif op[0] == "erase":      # an erase begun in a bank evicts its blocks
                for seq, (off, _) in self.where.items():
                    if seq not in self.evicted_at and off // bank_size == op[1] // bank_size:
                        self.evicted_at[seq] = i

    def reference(self, seq: int) -> bytes:
        if seq not in self.blocks:
            lo, hi = self.w.ranges[seq]
            self.blocks[seq] = encode_block(self.w.t[lo:hi], [c[lo:hi] for c in self.w.cols],
                                            stream_id=STREAM_ID, seq=seq, codec="compact", version=2)
        return self.blocks[seq]

    def must_keep(self, i: int) -> set:
        """Acknowledged before the cut, and no erase of its bank begun."""
        return {seq for seq, at in self.acked_at.items()
                if at < i and self.evicted_at.get(seq, len(self.log) + 1) > i}


def check_cut(dev, w: Workload, exp: Expectations, cut, code, plan) -> str:
    """Mount after the cut and check everything; returns what happened."""
    flash = w.flash(cut.image)
    try:
        ring = open_ring(dev, w, flash, mount=True)
    except DeviceError as exc:
        # only a cut before format finished may leave no ring at all
        assert exc.name == "SQ_ERR_CORRUPT" and (exp.formatted_at is None or cut.op < exp.formatted_at), \
            (cut.what, exc.name)
        return "no ring yet"
    blocks = ring.blocks()
    seqs = [block_info(b).seq for b in blocks]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True, (cut.what, seqs)
    for seq, block in zip(seqs, blocks):
        assert block == exp.reference(seq), (cut.what, seq)
    missing = exp.must_keep(cut.op) - set(seqs)
    assert not missing, (cut.what, sorted(missing))
    assert ring.block_count == len(seqs) and ring.staged == 0
    kept = [i for s in seqs for i in range(*w.ranges[s])]
    t, cols = w.t[kept], [c[kept] for c in w.cols]
    want = expected_answer(plan, t, cols)
    got = ring.query(code, plan.now.ns)
    assert (got.value, got.count) == (want.value, want.count), cut.what
    go_on(dev, w, ring, flash, seqs)
    return "survived"


def go_on(dev, w: Workload, ring, flash: NorFlash, seqs: list) -> None:
    """The ring keeps working after the cut: two more blocks' worth, flushed,
    are there after another mount, after what it kept."""
    n = 2 * w.block_samples + 3
    last = int(w.t[-1])
    t = last + 10**9 + np.arange(n, dtype=np.int64) * 1000
    rows = [np.arange(n) % 100 - 50 for _ in w.cols]
    for i in range(n):
        ring.append(int(t[i]), [int(r[i]) for r in rows], poll=False)
        ring.poll()
    ring.flush()
    again = open_ring(dev, w, w.flash(flash.mem), mount=True)
    blocks = again.blocks()
    new = [b for b in blocks if block_info(b).seq >= (seqs[-1] + 1 if seqs else 0)]
    got_t = np.concatenate([decode_block(b)[0] for b in new]) if new else np.zeros(0, np.int64)
    assert got_t.tolist() == t.tolist()
    assert flash.violations == 0


def campaign(dev, w: Workload, erase_from_end: bool = False) -> tuple[int, int]:
    flash, bank_size = run(dev, w)
    exp = Expectations(w, flash.log, bank_size)
    ref = P.ChannelRef("c0", 0, w.dtypes[0], 1.0, "mg")
    now = int(w.t[-1]) + 1
    plan = P.AggregateQuery("w", "sum", ref, P.RawCompare(ref, ">", 0.0), P.TimeRange(now - 3 * 10**9, now),
                            P.Now("data", now), "")
    code = compile_plan(plan, w.stream)
    tried = survived = 0
    for cut in cut_points(flash.log, w.size, w.sector, w.page, erase_from_end):
        tried += 1
        check_cut(dev, w, exp, cut, code, plan)
        survived += 1
    return tried, survived


def test_every_cut_point_of_a_small_workload(dev):
    """3 × int16, 16-sample blocks, 6 banks of 4 sectors of 256 B, program
    size 16, 64-byte pages: 100 blocks, the ring wraps several times."""
    w = make_workload(1600, ["int16", "int16", "int16"], 16, flush_at=(100, 333, 334, 1001),
                      size=6 * 1024, sector=256, prog=16, page=64)
    tried, survived = campaign(dev, w)
    print(f"\npower cuts tried: {tried}, survived: {survived}")
    assert tried == survived and tried > 500


@pytest.mark.skipif(not LONG, reason="the long fault campaign: SENSORQ_LONG_FAULTS=1")
@pytest.mark.parametrize("seed", range(4))
def test_every_cut_point_of_a_longer_workload(dev, seed):
    """Four channels of every width, 50-sample blocks, program size 1 and
    32-byte pages, several flushes; odd seeds cut erases from the sector's
    end instead of its start."""
    w = make_workload(8000, ["int8", "int32", "int16", "int64"], 50,
                      flush_at=(7, 400, 1001, 2222, 2223, 5000, 7777),
                      size=20 * 1024, sector=512, prog=1, page=32, seed=seed)
    tried, survived = campaign(dev, w, erase_from_end=bool(seed % 2))
    print(f"\n[seed {seed}] power cuts tried: {tried}, survived: {survived}")
    assert tried == survived and tried > 2000
