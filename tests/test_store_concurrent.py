"""A reader during ingest: a subprocess writes and flushes while this process
reads the same cache read-only, over and over; every read is a consistent
prefix of what the writer writes, and never shrinks."""
from __future__ import annotations

import time

import sensorq
from test_crash import check_consistent, start_writer, wait_started


def test_readonly_reader_sees_consistent_growing_prefix(tmp_path):
    path = tmp_path / "c"
    proc, lines, started, thread = start_writer(path, limit=1_500_000)
    try:
        wait_started(proc, started)
        reader = None
        while reader is None:
            try:
                reader = sensorq.open(path, readonly=True)
                reader.read("s")
            except sensorq.SensorqError:     # the stream is not defined yet
                reader = None
                time.sleep(0.01)
        seen, reads, fresh_opens, sizes_while_writing = 0, 0, 0, set()
        while proc.poll() is None or reads < 5:
            writing = proc.poll() is None
            reader.refresh()
            t, cols = reader.read("s")
            if writing:
                sizes_while_writing.add(len(t))
            check_consistent(t, cols)
            assert len(t) >= seen
            seen = len(t)
            reads += 1
            if reads % 10 == 0:                 # a newly opened reader agrees too
                with sensorq.open(path, readonly=True) as other:
                    t2, cols2 = other.read("s")
                    check_consistent(t2, cols2)
                    assert len(t2) >= seen
                    fresh_opens += 1
                    # blocks() hands out verified blocks only
                    index = other.blocks("s")
                    assert index.n_samples.sum() == len(t2)
            if proc.poll() is not None and reads >= 5:
                break
        proc.wait(60)
        assert proc.returncode == 0, proc.stderr.read()
        reader.refresh()
        t, cols = reader.read("s")
        check_consistent(t, cols)
        assert len(t) >= 1_500_000
        assert len(sizes_while_writing) >= 3, "the reader should have seen the data grow"
        assert reader.info()["problems"] == []
        reader.close()
    finally:
        if proc.poll() is None:
            proc.kill()
