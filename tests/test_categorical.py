"""Categorical channels: names stored as codes, queried and shown as names.

Every expected answer is worked out independently of sensorq: by hand from a
small CSV, or with the csv module and plain Python/numpy on the same CSV text
(counts, "time in state" sums of intervals, runs of consecutive samples).
"""
from __future__ import annotations

import dataclasses

import csv
import functools
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sensorq
from sensorq import ingest
from sensorq.errors import (DataError, OutOfOrderError, QueryError, QueryNameError, QuerySyntaxError,
                            QueryTypeError, SchemaError, StorageError, ValueRangeError)
from sensorq.ingest import ingest_csv
from sensorq.query.categories import label_result, names_of
from sensorq.query.plan import quote_name
from sensorq.schema import Channel

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "query.md"
BASIC_MOTIONS = ROOT.parent / "shared" / "data" / "basic_motions.csv"
S = 10**9

# A machine's states once a second: idle, a run of 3 s, the door opened, a run of 2 s.
MACHINE_CSV = """time,state,speed
0,idle,0
1,idle,0
2,running,1200
3,running,1450
4,running,1500
5,door open,0
6,idle,0
7,running,1300
8,running,1350
9,idle,0
"""


def write(tmp_path: Path, text: str, name: str = "machine.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rows_of(text: str) -> tuple[np.ndarray, list[str]]:
    """The reference reading: epoch-second times and the stripped labels of column 'state'."""
    rows = list(csv.DictReader(io.StringIO(text)))
    return np.array([int(r["time"]) * S for r in rows], np.int64), [r["state"].strip() for r in rows]


@pytest.fixture()
def machine(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        ingest_csv(cache, write(tmp_path, MACHINE_CSV), time_unit="s")
        yield cache


def ask(cache, text: str, engine: str = "interpreted"):
    """Run a query and show its names, as the executor will (label_result)."""
    result = cache.query(text, engine=engine)
    return label_result(result, result.plan, cache.streams)


def failure(cache, text: str, cls=QueryError) -> QueryError:
    with pytest.raises(cls) as info:
        cache.query(text)
    return info.value


# --- ingest --------------------------------------------------------------------------------

def test_a_text_column_becomes_a_categorical_channel(machine):
    stream = machine.streams["machine"]
    state, speed = stream.channel("state"), stream.channel("speed")
    assert state == Channel("state", "int8", categories=("idle", "running", "door open"))
    assert state.is_categorical and not speed.is_categorical and speed.categories is None
    t, labels = rows_of(MACHINE_CSV)
    stored_t, columns = machine.read("machine")
    assert stored_t.tolist() == t.tolist()
    assert [state.name_of(int(code)) for code in columns["state"]] == labels      # round trip
    assert columns["state"].tolist() == [0, 0, 1, 1, 1, 2, 0, 1, 1, 0]


def test_names_survive_reopening_and_info_lists_them(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        ingest_csv(cache, write(tmp_path, MACHINE_CSV), time_unit="s")
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    channels = manifest["streams"][0]["channels"]
    assert channels[0]["categories"] == ["idle", "running", "door open"]
    assert "categories" not in channels[1]              # absent, so old manifests read unchanged
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        state = cache.streams["machine"].channel("state")
        assert state.categories == ("idle", "running", "door open")
        assert [state.code_of(n) for n in state.categories] == [0, 1, 2]
        info = cache.info()["streams"]["machine"]["channels"]
        assert info[0]["categories"] == ["idle", "running", "door open"]
        assert "categories" not in info[1]


def test_names_lose_their_blanks_and_may_hold_commas_and_quotes(tmp_path):
    text = 'time,state\n0, idle \n1,"a, b"\n2,"say ""hi"""\n3,idle\n4,17\n'
    with sensorq.open(tmp_path / "c", create=True) as cache:
        ingest_csv(cache, write(tmp_path, text, "s.csv"), time_unit="s")
        assert cache.streams["s"].channel("state").categories == ("idle", "a, b", 'say "hi"', "17")
        assert ask(cache, 'count where state == "say ""hi"""').value == 1
        assert ask(cache, 'count where state in ("a, b", "17")').value == 2


def test_an_empty_cell_among_names_is_an_error_naming_line_and_column(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        with pytest.raises(DataError, match=r"s\.csv: line 4, column 'state': the cell is empty"):
            ingest_csv(cache, write(tmp_path, "time,state\n0,idle\n1,run\n2,  \n3,idle\n", "s.csv"),
                       time_unit="s")
        with pytest.raises(DataError, match=r"line 2, column 'state': the cell is empty"):
            ingest_csv(cache, write(tmp_path, "time,state\n0,\n1,run\n", "s.csv"), time_unit="s")
        assert cache.streams == {}


def test_blank_cells_before_names_in_an_earlier_chunk_are_found(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        with pytest.raises(DataError, match=r"line 2, column 'state': the cell is empty"):
            ingest_csv(cache, write(tmp_path, "time,state\n0,\n1,\n2,\n3,run\n", "s.csv"),
                       time_unit="s")


def test_a_column_that_starts_with_numbers_stays_numeric(tmp_path):
    """A typo in a column of numbers is an error, not a reason to store names."""
    with sensorq.open(tmp_path / "c", create=True) as cache:
        with pytest.raises(DataError, match="line 3, column 'v'.*'1,5' is not a number"):
            ingest_csv(cache, write(tmp_path, 'time,v\n0,1.5\n1,"1,5"\n', "s.csv"), time_unit="s")
        with pytest.raises(DataError, match="line 2, column 'end'"):      # a second time column
            ingest_csv(cache, write(tmp_path, "time,end\n0,2026-11-24T12:00:00Z\n", "s.csv"),
                       time_unit="s")
        assert cache.streams == {}


def test_int8_holds_127_names_then_int16(tmp_path):
    for count, dtype in ((127, "int8"), (128, "int16")):
        text = "time,state\n" + "".join(f"{i},n{i}\n" for i in range(count))
        with sensorq.open(tmp_path / f"c{count}", create=True) as cache:
            ingest_csv(cache, write(tmp_path, text, "s.csv"), time_unit="s")
            channel = cache.streams["s"].channel("state")
            assert channel.dtype == dtype and channel.categories == tuple(f"n{i}" for i in range(count))


def test_more_names_than_int16_holds_are_refused_at_their_line(tmp_path):
    text = "time,id\n" + "".join(f"{i},id{i}\n" for i in range(32769))
    with sensorq.open(tmp_path / "c", create=True) as cache:
        with pytest.raises(ValueRangeError, match="line 32770, column 'id': 'id32768' is name number "
                                                  "32,769"):
            ingest_csv(cache, write(tmp_path, text, "s.csv"), time_unit="s")
        assert cache.streams == {}


def test_units_pass_over_names_but_a_unit_for_names_is_an_error(tmp_path):
    path = write(tmp_path, MACHINE_CSV)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        with pytest.raises(SchemaError, match="'state' holds names"):
            ingest_csv(cache, path, time_unit="s", units={"state": "mg"})
        ingest_csv(cache, path, time_unit="s", units={"*": "rpm"})
        assert [c.unit for c in cache.streams["machine"].channels] == ["", "rpm"]
        later = write(tmp_path, "time,state,speed\n10,idle,5\n", "later.csv")
        assert ingest_csv(cache, later, stream="machine", time_unit="s", units={"*": "rpm"})[1] == 1


def test_a_later_file_appends_new_names_and_keeps_old_codes(machine, tmp_path):
    before = machine.read("machine")[1]["state"].copy()
    later = write(tmp_path, "time,state,speed\n10,stopped,0\n11,idle,0\n12,2,0\n13,stopped,0\n",
                  "later.csv")
    assert ingest_csv(machine, later, stream="machine", time_unit="s") == ("machine", 4)
    state = machine.streams["machine"].channel("state")
    assert state.categories == ("idle", "running", "door open", "stopped", "2")   # "2" is a name here
    codes = machine.read("machine")[1]["state"]
    assert codes[:10].tolist() == before.tolist()
    assert codes[10:].tolist() == [3, 0, 4, 3]
    assert ask(machine, "count where state == stopped").value == 2
    assert ask(machine, 'count where state == "2"').value == 1
    assert ask(machine, "count where state == running").value == 5


def test_a_refused_file_adds_no_names(machine, tmp_path):
    bad = write(tmp_path, "time,state,speed\n10,stopped,0\n9,halted,0\n", "bad.csv")
    with pytest.raises(OutOfOrderError):
        ingest_csv(machine, bad, stream="machine", time_unit="s")
    assert machine.streams["machine"].channel("state").categories == ("idle", "running", "door open")


def test_a_large_file_stores_the_names_of_the_chunks_it_stored(machine, tmp_path, monkeypatch):
    """Past KEEP_PARSED_BYTES chunks are appended as they are checked: a fault in
    a later chunk keeps the rows (and the names) before it, and no more."""
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)
    monkeypatch.setattr(ingest, "KEEP_PARSED_BYTES", 0)
    text = "time,state,speed\n10,paused,0\n11,idle,0\n12,broken,0\n9,idle,0\n"
    with pytest.raises(OutOfOrderError, match="the 2 rows before it were appended"):
        ingest_csv(machine, write(tmp_path, text, "big.csv"), stream="machine", time_unit="s")
    assert machine.streams["machine"].channel("state").categories == (
        "idle", "running", "door open", "paused")
    assert machine.read("machine")[1]["state"][-2:].tolist() == [3, 0]


def test_a_full_int8_dictionary_refuses_a_new_name(tmp_path):
    names = tuple(f"n{i}" for i in range(128))
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [Channel("state", "int8", categories=names)])
        with pytest.raises(ValueRangeError, match="line 3, column 'state': 'extra' would be name number "
                                                  "129 of channel 'state', more than its int8"):
            ingest_csv(cache, write(tmp_path, "time,state\n0,n5\n1,extra\n", "s.csv"), stream="s",
                       time_unit="s")
        assert cache.streams["s"].channel("state").categories == names
        assert cache.read("s")[0].size == 0


# --- the dictionary: Channel and Cache ----------------------------------------------------------

def test_channel_rules():
    channel = Channel("state", "int16", categories=["idle", "door open"])
    assert channel.categories == ("idle", "door open") and channel.to_json()["categories"] == [
        "idle", "door open"]
    assert Channel.from_json(channel.to_json()) == channel
    assert Channel.from_json({"name": "x", "dtype": "int16", "unit": "mg", "scale": None}).categories is None
    assert channel.code_of("door open") == 1 and channel.name_of(0) == "idle"
    with pytest.raises(SchemaError, match="'walk' is not a category of channel 'state'; known: idle, "
                                          "door open"):
        channel.code_of("walk")
    with pytest.raises(SchemaError, match="code 2 names no category"):
        channel.name_of(2)
    with pytest.raises(SchemaError, match="not categorical"):
        Channel("x", "int16").code_of("a")
    bad = [dict(dtype="float64"), dict(dtype="int64"), dict(unit="mg"), dict(scale=0.5),
           dict(categories=["a", "a"]), dict(categories=[""]), dict(categories=[" a"]),
           dict(categories=["a\tb"]), dict(categories=[1]), dict(categories="ab"),
           dict(dtype="int8", categories=[f"n{i}" for i in range(129)])]
    for change in bad:
        options = {"name": "s", "dtype": "int8", "categories": ["a"], **change}
        with pytest.raises(SchemaError):
            Channel(**options)


def test_add_categories_appends_and_returns_codes(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [Channel("state", "int8", categories=("idle",)), Channel("v", "int16")])
        assert cache.add_categories("s", "state", ["run", "idle", "stop", "run"]) == [1, 0, 2, 1]
        assert cache.add_categories("s", "state", []) == []
        with pytest.raises(SchemaError, match="'v' is not categorical"):
            cache.add_categories("s", "v", ["a"])
        with pytest.raises(SchemaError, match="not a valid name"):
            cache.add_categories("s", "state", ["bad\nname"])
        assert cache.streams["s"].channel("state").categories == ("idle", "run", "stop")
        with sensorq.open(tmp_path / "c", readonly=True) as reader:
            assert reader.streams["s"].channel("state").categories == ("idle", "run", "stop")
            cache.add_categories("s", "state", ["fault"])
            reader.refresh()
            assert reader.streams["s"].channel("state").categories[-1] == "fault"
            with pytest.raises(StorageError, match="read-only"):
                reader.add_categories("s", "state", ["x"])


def test_a_failed_manifest_write_adds_no_name(tmp_path, monkeypatch):
    from sensorq.store import cache as cache_module
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("s", [Channel("state", "int8", categories=("idle",))])

        def full_disk(*args):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(cache_module, "write_manifest", full_disk)
        with pytest.raises(StorageError):
            cache.add_categories("s", "state", ["run"])
        assert cache.streams["s"].channel("state").categories == ("idle",)
        monkeypatch.undo()
        assert cache.add_categories("s", "state", ["run"]) == [1]


def test_create_stream_accepts_a_grown_dictionary_and_grows_a_shorter_one(tmp_path):
    with sensorq.open(tmp_path / "c", create=True) as cache:
        first = cache.create_stream("s", [Channel("state", "int8", categories=("a", "b"))])
        assert cache.create_stream("s", [Channel("state", "int8", categories=("a",))]) == first
        grown = cache.create_stream("s", [Channel("state", "int8", categories=("a", "b", "c"))])
        assert grown.channel("state").categories == ("a", "b", "c")
        assert cache.streams["s"] == grown and grown.stream_id == first.stream_id
        for clash in (("b", "a"), ("a", "x")):
            with pytest.raises(SchemaError, match="already exists"):
                cache.create_stream("s", [Channel("state", "int8", categories=clash)])
        with pytest.raises(SchemaError, match="already exists"):
            cache.create_stream("s", [Channel("state", "int8")])


# --- queries against hand-worked answers -------------------------------------------------------

def test_count_equals_a_numpy_count(machine):
    _, labels = rows_of(MACHINE_CSV)
    labels = np.array(labels)
    for name in ("idle", "running", "door open"):
        quoted = quote_name(name)
        assert ask(machine, f"count where state == {quoted}").value == np.count_nonzero(labels == name)
        assert ask(machine, f"count where state != {quoted}").value == np.count_nonzero(labels != name)
        assert ask(machine, f"count where {quoted} == state").value == np.count_nonzero(labels == name)
    assert ask(machine, 'count where state in (idle, "door open")').value == 5
    assert ask(machine, "count where state not in (idle, running)").value == 1
    assert ask(machine, "count where not state == running").value == 5
    assert ask(machine, "count where state == running and speed > 1400").value == 2


def test_duration_is_the_hand_worked_time_in_state(machine):
    # running at 2, 3, 4 (each holds until the next sample: 2-5) and 7, 8 (7-9): 3 s + 2 s
    assert ask(machine, "duration where state == running").value == pytest.approx(5.0)
    # idle at 0, 1 (0-2), 6 (6-7), and 9, the newest sample, which holds for 0
    assert ask(machine, "duration where state == idle").value == pytest.approx(3.0)
    assert ask(machine, 'duration where state == "door open"').value == pytest.approx(1.0)
    # a window [3 s, 8 s): running at 3, 4 (3-5) and 7 (7-8, cut at the window's end)
    window = "between 1970-01-01T00:00:03Z and 1970-01-01T00:00:08Z"
    assert ask(machine, f"duration where state == running {window}").value == pytest.approx(3.0)
    buckets = ask(machine, "duration where state == running by 5s")
    assert buckets.columns["time"].tolist() == [0, 5 * S]
    assert buckets.columns["duration"].tolist() == pytest.approx([3.0, 2.0])


def test_episodes_are_the_hand_worked_runs(machine):
    episodes = ask(machine, "find episodes where state == running")
    assert episodes.columns["start"].tolist() == [2 * S, 7 * S]
    assert episodes.columns["end"].tolist() == [5 * S, 9 * S]
    assert episodes.columns["duration"].tolist() == pytest.approx([3.0, 2.0])
    assert episodes.columns["peak"].tolist() == ["running", "running"]
    long = ask(machine, "find episodes where state == running for >= 3s")
    assert long.columns["start"].tolist() == [2 * S] and long.columns["end"].tolist() == [5 * S]
    busy = ask(machine, "find episodes where state != idle")            # running, then the door
    assert busy.columns["start"].tolist() == [2 * S, 7 * S]
    assert busy.columns["end"].tolist() == [6 * S, 9 * S]
    fast = ask(machine, "find episodes where state == running and speed > 1400")
    assert fast.columns["start"].tolist() == [3 * S] and fast.columns["peak"].tolist() == [1500]


def test_find_first_last_and_newest_show_names(machine):
    first = ask(machine, 'find first where state == "door open"')
    assert first.columns["time"].tolist() == [5 * S] and first.columns["state"].tolist() == ["door open"]
    last = ask(machine, "find last 2 where state == running")
    assert last.columns["time"].tolist() == [7 * S, 8 * S]
    newest = ask(machine, "newest 3")
    assert newest.columns["state"].tolist() == ["running", "running", "idle"]
    assert newest.columns["state"].dtype == object
    assert newest.columns["speed"].tolist() == [1300, 1350, 0]


def test_first_and_last_show_names_with_buckets_and_fills(machine):
    assert ask(machine, "first state").value == "idle"
    assert ask(machine, "last state where speed > 1400").value == "running"
    assert ask(machine, "first state at 1970-01-01T00:00:00Z").value is None    # an empty window
    by5 = ask(machine, "last state by 5s")
    assert by5.columns["last"].tolist() == ["running", "idle"]
    # buckets [0, 2) ... [8, 10); fill(null) lists each, None where nothing matched
    holes = ask(machine, "last state where state == running by 2s fill(null)")
    assert holes.columns["time"].tolist() == [0, 2 * S, 4 * S, 6 * S, 8 * S]
    assert holes.columns["last"].tolist() == [None, "running", "running", "running", "running"]
    sparse = ask(machine, "first state where state != running by 2s fill(null)")
    assert sparse.columns["first"].tolist() == ["idle", None, "door open", "idle", "idle"]
    held = ask(machine, "first state where state != running by 2s fill(prev)")
    assert held.columns["first"].tolist() == ["idle", "idle", "door open", "idle", "idle"]


def test_label_result_changes_only_categorical_values(machine):
    plain = machine.query("count where state == running")
    assert label_result(plain, plain.plan, machine.streams) is plain
    shown = machine.query("newest 2")
    assert shown.columns["state"].tolist() == ["running", "idle"]   # the executor shows names
    raw = dataclasses.replace(shown, columns={**shown.columns, "state": np.array([1, 0], np.int8)})
    labelled = label_result(raw, raw.plan, machine.streams)
    assert raw.columns["state"].tolist() == [1, 0]               # the input is not changed
    assert labelled.columns["state"].tolist() == ["running", "idle"]
    assert labelled.columns["time"] is raw.columns["time"]
    again = label_result(shown, shown.plan, machine.streams)     # names stay names
    assert again.columns["state"].tolist() == ["running", "idle"]
    top = machine.query("top 2 speed where state == running")
    assert label_result(top, top.plan, machine.streams) is top


def test_a_code_outside_the_dictionary_is_shown_as_such(machine):
    machine.append("machine", [20 * S], {"state": [7], "speed": [0]})      # a raw append
    assert ask(machine, "newest 1").columns["state"].tolist() == ["<code 7>"]
    assert names_of(np.array([0.0, np.nan, 2.0, 9.0]), ("a", "b", "c")).tolist() == ["a", None, "c",
                                                                                    "<code 9>"]


def test_both_engine_tiers_give_the_same_labelled_answers(machine):
    for text in ("count where state == running", "duration where state != idle",
                 "find episodes where state == running", "last state by 3s", "newest 4",
                 "find first 2 where state in (idle, \"door open\")"):
        a, b = ask(machine, text, "interpreted"), ask(machine, text, "compiled")
        assert a.value == b.value, text
        assert {k: v.tolist() for k, v in a.columns.items()} == \
            {k: v.tolist() for k, v in b.columns.items()}, text


# --- errors ------------------------------------------------------------------------------------

def test_an_unknown_name_is_an_error_at_its_column_listing_the_known_ones(machine):
    text = "count where state == runing"
    err = failure(machine, text, QueryNameError)
    assert err.column == text.index("runing") + 1
    assert "runing is not a category of state (did you mean running?)" in err.reason
    assert "idle, running, door open" in err.reason
    err = failure(machine, 'count where state in (idle, "door shut")', QueryNameError)
    assert err.column == 29 and "door open" in err.reason


def test_order_is_refused_at_the_operator(machine):
    for text in ("count where state > idle", "count where state <= running", "count where idle < state"):
        err = failure(machine, text, QueryTypeError)
        op = re.search(r"<=|>=|<|>", text)
        assert err.column == op.start() + 1 and "no order" in err.reason, text
    text = "count where state between idle and running"
    assert failure(machine, text, QueryTypeError).column == text.index("between") + 1


def test_arithmetic_numbers_and_value_aggregates_are_refused(machine):
    cases = [("avg state", "state"), ("sum state by 1s", "state"), ("max state", "state"),
             ("count where state + 1 > 2", "state"), ("max abs(state)", "state"),
             ("count where state == 1", "1"), ("count where state == speed * 2", "speed"),
             ("top 3 state", "state"), ("find episodes where -state < 0", "state")]
    for text, token in cases:
        err = failure(machine, text, QueryTypeError)
        assert err.column == text.index(token) + 1, text
        assert "categorical" in err.reason, text
    text = "first state by 1s fill(linear)"
    assert failure(machine, text, QueryTypeError).column == text.index("fill") + 1
    assert failure(machine, "last state by 1s fill(0)", QueryTypeError)


def test_the_bare_name_rule(tmp_path):
    """Opposite a categorical channel a bare name is one of its names, never a
    channel; with two categorical channels, the left one is the channel."""
    text = "time,mode,state,idle\n0,idle,auto,1\n1,auto,idle,2\n2,auto,auto,3\n"
    with sensorq.open(tmp_path / "c", create=True) as cache:
        ingest_csv(cache, write(tmp_path, text, "s.csv"), time_unit="s")
        assert ask(cache, "count where mode == idle").value == 1          # the name, not the channel
        assert ask(cache, "count where state == idle").value == 1
        assert ask(cache, "count where mode == auto").value == 2
        assert ask(cache, "count where idle > 1").value == 2               # elsewhere, the channel
        err = failure(cache, "count where mode == state", QueryNameError)
        assert "state is not a category of mode" in err.reason and "also a channel" in err.reason
        assert failure(cache, 'count where idle == "auto"', QueryTypeError).column == 21


def test_quoted_names_stand_only_for_categories(machine):
    assert failure(machine, 'count where speed == "idle"', QueryTypeError).column == 22
    assert failure(machine, 'count from "machine"', QuerySyntaxError).column == 12
    assert failure(machine, 'avg "speed"', QueryTypeError).column == 5


def test_a_name_that_is_not_a_channel_anywhere_is_still_an_unknown_channel(machine):
    err = failure(machine, "count where speeed > 3", QueryNameError)
    assert "unknown channel 'speeed'" in err.reason
    err = failure(machine, "count where Foo == Bar", QueryNameError)
    assert "unknown channel 'Foo'" in err.reason


# --- docs/query.md, "Categorical channels" -------------------------------------------------------

def doc_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text[text.index("## Categorical channels"):text.index("## Time")]


def test_the_doc_examples_run_and_their_stated_answers_hold(tmp_path):
    section = doc_section()
    csv_text = re.search(r"```csv\n(.*?)```", section, re.S).group(1)
    examples = [line.strip() for line in re.search(r"```sensorq-categorical\n(.*?)```", section,
                                                   re.S).group(1).splitlines() if line.strip()]
    assert len(examples) >= 15
    with sensorq.open(tmp_path / "c", create=True) as cache:
        ingest_csv(cache, write(tmp_path, csv_text), stream="machine")
        for text in examples:
            a, b = ask(cache, text, "interpreted"), ask(cache, text, "compiled")
            assert a.kind in ("scalar", "table") and a.value == b.value, text
        assert cache.streams["machine"].channel("state").categories == ("idle", "running", "door open")
        assert ask(cache, "count where state == running").value == 5
        assert ask(cache, "duration where state == running").value == pytest.approx(5.0)
        episodes = ask(cache, "find episodes where state == running for >= 3s")
        assert episodes.columns["duration"].tolist() == [3.0]
        assert ask(cache, "last state by 5s").columns["last"].tolist() == ["running", "idle"]
        shown = re.search(r"sensorq: (.*?) \(column (\d+)\)\n +(count where state == runing)", section)
        err = failure(cache, shown.group(3), QueryNameError)
        assert err.reason == shown.group(1) and err.column == int(shown.group(2))


# --- the real file ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def motions(tmp_path_factory):
    if not BASIC_MOTIONS.exists():
        pytest.skip(f"{BASIC_MOTIONS} is missing (the shared data directory is not checked out)")
    with sensorq.open(tmp_path_factory.mktemp("motions") / "c", create=True) as cache:
        ingest_csv(cache, BASIC_MOTIONS, stream="motions")
        yield cache


def test_basic_motions_labels_become_categorical_channels(motions):
    stream = motions.streams["motions"]
    assert stream.channel("activity").categories == ("Standing", "Running", "Walking", "Badminton")
    assert stream.channel("split").categories == ("train", "test")
    assert stream.channel("activity").dtype == "int8" and not stream.channel("case").is_categorical


def test_basic_motions_counts_and_time_in_state_match_the_csv(motions):
    with open(BASIC_MOTIONS, newline="") as f:
        rows = list(csv.DictReader(f))
    t = np.array([int(r["timestamp"]) * 10**6 for r in rows], np.int64)
    activity = np.array([r["activity"] for r in rows])
    split = np.array([r["split"] for r in rows])
    for name in ("Running", "Walking", "Standing", "Badminton"):
        assert ask(motions, f"count where activity == {name}").value == np.count_nonzero(activity == name)
        held = np.diff(t)[activity[:-1] == name].sum() / 1e9
        assert ask(motions, f"duration where activity == {name}").value == pytest.approx(held)
    both = (activity == "Walking") & (split == "test")
    assert ask(motions, "count where activity == Walking and split == test").value == np.count_nonzero(both)
    assert ask(motions, "first activity").value == activity[0]
    assert ask(motions, "last activity").value == activity[-1]


# --- random label sequences against numpy -----------------------------------------------------

def reference_duration(t, mask, max_gap=None) -> int:
    """ns during which the predicate holds: each sample until the next one, at
    most max_gap; the newest sample holds for 0."""
    held = np.diff(t)
    if max_gap is not None:
        held = np.minimum(held, max_gap)
    return int(held[mask[:-1]].sum())


def reference_episodes(t, mask, min_ns=0, max_gap=None) -> list[tuple[int, int]]:
    """Maximal runs of matching samples: from the first sample to the first
    sample after the run, or to the run's own last sample at the end of the
    data or before a gap longer than max_gap (which also splits a run)."""
    out, i, n = [], 0, len(t)

    def joined(k):           # sample k + 1 follows sample k without a hole
        return k + 1 < n and (max_gap is None or t[k + 1] - t[k] <= max_gap)
    while i < n:
        if not mask[i]:
            i += 1
            continue
        start = i
        while joined(i) and mask[i + 1]:
            i += 1
        end = t[i + 1] if joined(i) else t[i]
        if end - t[start] >= min_ns:
            out.append((int(t[start]), int(end)))
        i += 1
    return out


NAMES = ["idle", "running", "door open", "fault", "2nd gear"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labels=st.lists(st.sampled_from(NAMES), min_size=1, max_size=60),
       steps=st.lists(st.integers(1, 5), min_size=60, max_size=60),
       block=st.integers(1, 9), gap=st.sampled_from([None, 2, 3]), min_s=st.integers(0, 6),
       engine=st.sampled_from(["interpreted", "compiled"]), data=st.data())
def test_random_label_sequences_agree_with_numpy(tmp_path_factory, labels, steps, block, gap, min_s,
                                                 engine, data):
    """Blocks of 1 to 9 samples, so runs cross block edges and whole blocks are
    answered from their statistics; both engine tiers."""
    n = len(labels)
    t = np.cumsum([0] + steps[:n - 1]).astype(np.int64) * S
    text = "time,state\n" + "".join(f'{ti // S},"{name}"\n' for ti, name in zip(t, labels))
    folder = tmp_path_factory.mktemp("random")
    with sensorq.open(folder / "c", create=True) as cache:
        cache.create_stream("s", [Channel("state", "int8", categories=())], block_samples=block)
        ingest_csv(cache, write(folder, text, "s.csv"), stream="s", time_unit="s")
        assert cache.streams["s"].channel("state").categories == tuple(dict.fromkeys(labels))
        values = np.array(labels)
        run = functools.partial(ask, cache, engine=engine)
        gap_clause = f" gap <= {gap}s" if gap else ""
        for name in dict.fromkeys(labels):
            mask = values == name
            quoted = quote_name(name)
            assert run(f"count where state == {quoted}").value == np.count_nonzero(mask)
            assert run(f"count where state != {quoted}").value == np.count_nonzero(~mask)
            duration = run(f"duration where state == {quoted}{gap_clause}").value
            assert duration == pytest.approx(reference_duration(t, mask, gap and gap * S) / 1e9)
            episodes = run(f"find episodes where state == {quoted} for >= {min_s}s{gap_clause}")
            found = list(zip(episodes.columns["start"].tolist(), episodes.columns["end"].tolist()))
            assert found == reference_episodes(t, mask, min_s * S, gap and gap * S), name
            assert set(episodes.columns["peak"].tolist()) <= {name}
        chosen = data.draw(st.lists(st.sampled_from(sorted(set(labels))), min_size=1, max_size=3))
        items = ", ".join(quote_name(c) for c in chosen)
        inside = np.isin(values, chosen)
        assert run(f"count where state in ({items})").value == np.count_nonzero(inside)
        assert run(f"count where state not in ({items})").value == np.count_nonzero(~inside)
        assert run("first state").value == labels[0]
        assert run("last state").value == labels[-1]
