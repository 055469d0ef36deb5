"""What a fresh process imports: structural facts behind the start-up time
(benchmarks/bench_startup.py measures the time itself; nothing here is timed).

``import sensorq`` loads neither numpy nor numba; a small query, from the
command line or the Python API, answers in the numpy tier without importing
numba; the compiled tier still imports its kernels when it is chosen; the
command line builds only the parsers of the command's group, with the same
result as the whole parser.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import sensorq
from sensorq import Channel
from sensorq import cli

QUERY = "count where accel > 2g last 10m"
RATE_HZ = 1000
SECONDS = 20 * 60
START_NS = 1_790_000_000 * 10**9


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def fresh(code: str, env: dict | None = None) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON object last.  By
    default it inherits this process's environment without the BLAS thread
    settings that libraries imported by earlier tests leave in it (dask's
    distributed sets OPENBLAS_NUM_THREADS=1 for its workers)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k not in BLAS_THREAD_VARIABLES}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def imu(tmp_path_factory):
    """A 20-minute 1 kHz stream with shocks above 2 g: (cache path, t, accel)."""
    path = tmp_path_factory.mktemp("startup") / "cache"
    rng = np.random.default_rng(11)
    n = RATE_HZ * SECONDS
    t = START_NS + np.arange(n, dtype=np.int64) * (10**9 // RATE_HZ)
    accel = (1000 + rng.normal(0, 30, n)).astype(np.int16)
    for at in rng.choice(n - 100, size=30, replace=False):
        accel[at:at + int(rng.integers(5, 80))] = int(rng.integers(2001, 5000))
    with sensorq.open(path, create=True, capacity="16MB") as cache:
        cache.create_stream("imu", [Channel("accel", "int16", "mg")], rate_hz=RATE_HZ)
        cache.append("imu", t, {"accel": accel})
        cache.flush()
    return str(path), t, accel


def expected_count(t, accel) -> int:
    """``count where accel > 2g last 10m`` in numpy: now is the newest sample,
    the window [now - 10 min, now)."""
    now = int(t[-1])
    inside = (t >= now - 600 * 10**9) & (t < now)
    return int(np.count_nonzero(inside & (accel > 2000)))


REPORT = ("import json, os, sys; print(json.dumps({{'answer': {answer}, "
          "'modules': sorted(m for m in sys.modules if sys.modules[m] is not None), "
          "'blocked': sorted(m for m in sys.modules if sys.modules[m] is None), "
          "'openblas_env': os.environ.get('OPENBLAS_NUM_THREADS')}}))")


def test_import_sensorq_loads_neither_numpy_nor_numba():
    got = fresh("import sensorq\n" + REPORT.format(answer="None"))
    assert "numba" not in got["modules"]
    assert "numpy" not in got["modules"]          # Channel, open, ... load on first use
    assert "sensorq.errors" in got["modules"]      # the exception hierarchy is there at once


def test_lazy_names_are_the_real_objects():
    from sensorq.schema import Stream
    from sensorq.store import Cache, open as open_cache
    assert sensorq.Stream is Stream and sensorq.Cache is Cache and sensorq.open is open_cache
    assert {"Channel", "Stream", "Cache", "open", "fleet", "QueryError"} <= set(sensorq.__all__)
    assert {"Channel", "open"} <= set(dir(sensorq))
    with pytest.raises(AttributeError):
        sensorq.no_such_name  # noqa: B018
    code = "import sensorq\nprint(sensorq.store.manifest.MANIFEST_NAME, sensorq.schema.Channel.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["manifest.json", "Channel"], done.stderr   # as when eager


def test_a_small_query_on_the_command_line_does_not_import_numba(imu):
    path, t, accel = imu
    code = ("import sys\nsys.argv = ['sensorq', %r, '--cache', %r]\nfrom sensorq.cli import main\n"
            "import io, contextlib\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n    assert main() == 0\n"
            % (QUERY, path)) + REPORT.format(answer="int(out.getvalue())")
    got = fresh(code)
    assert got["answer"] == expected_count(t, accel) > 0
    assert "numba" not in got["modules"]
    assert "sensorq.engine.kernels" not in got["modules"]
    # only the query commands' group of the command line was imported (the
    # command line starts with the query, not an option)
    assert "sensorq.cli.query" in got["modules"]
    assert not {"sensorq.cli.data", "sensorq.cli.models", "sensorq.cli.streams",
                "sensorq.cli.fleet", "sensorq.fleet"} & set(got["modules"])
    # the parser is the generated stand-alone one: lark is not imported, and
    # the parser ran without the optional regex module; the BLAS setting was
    # not left behind
    assert "sensorq.query._generated_parser" in got["modules"]
    assert "lark" not in got["modules"] and "regex" in got["blocked"]
    assert got["openblas_env"] is None


def test_the_command_line_resumes_the_garbage_collector(imu):
    """Its imports run with the collector paused (cli.imports_without_gc);
    the query and everything after run with it on, the imported modules
    frozen out of its scans; a program calling main(argv) is left alone."""
    path, t, accel = imu
    code = ("import gc, io, json, contextlib, sys\nsys.argv = ['sensorq', %r, '--cache', %r]\n"
            "from sensorq.cli import main\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n    assert main() == 0\n"
            "real = [gc.isenabled(), gc.get_freeze_count() > 0]\ngc.unfreeze()\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    assert main([%r, '--cache', %r]) == 0\n"
            "print(json.dumps({'answer': int(out.getvalue()), 'real': real, "
            "'called': [gc.isenabled(), gc.get_freeze_count()]}))" % (QUERY, path, QUERY, path))
    got = fresh(code)
    assert got["answer"] == expected_count(t, accel)
    assert got["real"] == [True, True]
    assert got["called"] == [True, 0]


def test_a_small_query_through_the_api_does_not_import_numba(imu):
    path, t, accel = imu
    code = ("import sensorq\nwith sensorq.open(%r, readonly=True) as cache:\n"
            "    result = cache.query(%r)\n" % (path, QUERY)) + \
        REPORT.format(answer="result.value")
    got = fresh(code)
    assert got["answer"] == expected_count(t, accel)
    assert "numba" not in got["modules"]
    assert "regex" not in got["blocked"]           # only the command line keeps regex out


def test_the_compiled_tier_still_loads_its_kernels(imu):
    path, t, accel = imu
    code = ("import sensorq\nwith sensorq.open(%r, readonly=True) as cache:\n"
            "    result = cache.query(%r, engine='compiled')\n" % (path, QUERY)) + \
        REPORT.format(answer="result.value")
    got = fresh(code)
    assert got["answer"] == expected_count(t, accel)
    assert "sensorq.engine.kernels" in got["modules"] and "numba" in got["modules"]


def test_the_command_line_runs_openblas_on_one_thread(imu):
    """OpenBLAS is loaded with one thread for a query (the engine never calls
    BLAS), and processes the command line starts do not inherit the setting."""
    pytest.importorskip("threadpoolctl")
    path, _, _ = imu
    code = ("import sys\nsys.argv = ['sensorq', '-q', '--cache', %r, 'info']\n"
            "from sensorq.cli import main\nimport io, contextlib\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    assert main() == 0\n"
            "from threadpoolctl import threadpool_info\n"
            "blas = [p['num_threads'] for p in threadpool_info() if p['internal_api'] == 'openblas']\n"
            % path) + REPORT.format(answer="blas")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    got = fresh(code, env)
    if not got["answer"]:
        pytest.skip("this numpy is not linked with OpenBLAS")
    assert set(got["answer"]) == {1}
    assert got["openblas_env"] is None


def test_fleet_stays_the_function_when_its_package_is_imported():
    import sensorq.fleet.plan  # noqa: F401  (imports the package sensorq.fleet)
    assert callable(sensorq.fleet) and not isinstance(sensorq.fleet, type(sys))
    assert sensorq.fleet.__module__ == "sensorq"
    assert "sensorq.fleet" in sys.modules


COMMAND_LINES = [
    ["count where accel > 2g last 10m"],
    ["--cache", "C", "--csv", "max z by 1m last 10m"],
    ["-q", "--json", "avg z by 1m", "--engine", "interpreted"],
    ["explain", "--json", "count where z > 2g"],
    ["--cache", "C", "info"],
    ["streams", "rename", "a", "b", "--cache", "C"],
    ["config", "--capacity", "64MB", "--retention", "7d"],
    ["export", "imu", "last 10m", "-o", "x.parquet"],
    ["ingest", "-", "--stream", "loop", "--flush-every", "1"],
    ["--cache", "C", "demo"],
    ["models", "--json"],
    ["model", "show", "motion"],
    ["sync", "a", "b", "--any-device"],
    ["--fleet", "site/*/cache", "count where z > 2g by device"],
    ["plot", "avg z by 1m last 30m", "-o", "z.png", "--width", "80"],
]


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=lambda a: " ".join(a)[:40])
def test_the_group_parser_parses_like_the_whole_parser(argv):
    whole = cli.build_parser()
    arranged = cli.arrange(list(argv), whole)
    assert cli.arrange(list(argv)) == arranged           # without a parser given, the same
    mine = cli.build_parser(arranged[0] if arranged[0] in cli.COMMANDS else None)
    assert vars(mine.parse_args(arranged)) == vars(whole.parse_args(arranged))


@pytest.mark.parametrize("query", ["count where accel > 2g last 10m", "avg z by 1m", " top 3 z",
                                   "count where z > -1g", "info", "--json"])
def test_a_plain_query_is_parsed_as_argparse_parses_it(query):
    """``sensorq "QUERY"`` alone skips building the argument parser; it must
    give argparse's namespace, and leave every other command line to it."""
    arranged = cli.arrange([query])
    plain = cli.plain_query(arranged)
    if query in ("info", "--json"):     # a command, an option: argparse's
        assert plain is None
        return
    whole = cli.build_parser()
    parsed = whole.parse_args(arranged)
    cli._defaults(parsed)
    assert vars(plain) == vars(parsed)


@pytest.mark.parametrize("argv", COMMAND_LINES[1:], ids=lambda a: " ".join(a)[:40])
def test_only_a_plain_query_skips_argparse(argv):
    assert cli.plain_query(cli.arrange(list(argv))) is None


def test_every_command_belongs_to_one_group():
    parser = cli.build_parser()
    defined = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert sorted(defined.choices) == sorted(cli.COMMANDS)
    assert len(set(cli.COMMANDS)) == len(cli.COMMANDS)
    for group, commands in cli.GROUPS.items():
        sub = cli.build_parser(commands[0])
        only = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction")
        assert sorted(only.choices) == sorted(commands), group


def test_every_plan_and_syntax_node_has_a_docstring():
    """A dataclass without a docstring has its signature computed (inspect) for
    __doc__ when its module is imported: the query modules' nodes all have one."""
    import dataclasses as dc
    from sensorq.query import expressions, plan
    for module in (expressions, plan):
        nodes = [v for v in vars(module).values()
                 if isinstance(v, type) and dc.is_dataclass(v) and v.__module__ == module.__name__]
        assert len(nodes) >= 8
        for node in nodes:
            assert not node.__doc__.startswith(node.__name__ + "("), node.__name__


def test_every_dataclass_a_query_imports_has_a_docstring(imu):
    """The same for every dataclass the command line's query imports (about
    0.1 ms each), but lark's generated module, which is lark's own code."""
    path, _, _ = imu
    code = ("import dataclasses, io, contextlib, json, sys\n"
            "sys.argv = ['sensorq', %r, '--cache', %r]\nfrom sensorq.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    assert main() == 0\n"
            "found = sorted(f'{m}.{k}' for m, mod in list(sys.modules.items())\n"
            "               if m.startswith('sensorq') and m != 'sensorq.query._generated_parser'\n"
            "               for k, v in vars(mod).items() if isinstance(v, type)\n"
            "               and dataclasses.is_dataclass(v) and v.__module__ == m\n"
            "               and v.__doc__.startswith(v.__name__ + '('))\n"
            "print(json.dumps(found))" % (QUERY, path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


# --- a cache with a model: queries that cannot name it skip the models' code ------------

MODEL_QUERIES = [
    "count where accel > 2g last 10m",               # real streams only: planned without models
    "max accel by 5m",
    "count where activity == Running",               # a category of a real stream
    "count where motion == Running",                 # the model's class
    "avg motion_Running by 1m",                      # a class probability
    "count from motion",
    "count",                                         # which stream? (the error lists them all)
    "count where motoin == Running",                 # unknown channel (did you mean motion?)
    "count where nosuch > 1",
]


@pytest.fixture(scope="module")
def with_model(tmp_path_factory, imu):
    """The imu cache's data, the demo's motions recordings and its motion model."""
    from sensorq.demo import MOTION_MODEL, MOTIONS_CSV
    from sensorq.ingest import ingest_csv
    from sensorq.models.registry import ModelRegistry
    _, t, accel = imu
    path = tmp_path_factory.mktemp("models") / "cache"
    with sensorq.open(path, create=True, capacity="16MB") as cache:
        cache.create_stream("imu", [Channel("accel", "int16", "mg")], rate_hz=RATE_HZ)
        cache.append("imu", t, {"accel": accel})
        ingest_csv(cache, MOTIONS_CSV, stream="motions")
        cache.flush()
        ModelRegistry(cache).import_file(MOTION_MODEL, "motion")
    return path


def through_the_view(cache, text):
    """The query planned and run with the models' streams always in view (as
    every query was before)."""
    from sensorq.engine.executor import execute, plan_text
    from sensorq.models.derived import query_view
    view = query_view(cache)
    return execute(view, plan_text(view, text), text)


def outcome(run):
    try:
        result = run()
    except sensorq.SensorqError as exc:
        return ("error", type(exc).__name__, str(exc))
    if result.kind == "scalar":
        return ("scalar", result.value, result.unit, result.warnings)
    return ("table", {k: v.tolist() for k, v in result.columns.items()}, result.units,
            result.warnings)


@pytest.mark.parametrize("text", MODEL_QUERIES)
def test_queries_on_a_cache_with_a_model_answer_as_through_the_view(with_model, text):
    with sensorq.open(with_model, readonly=True) as cache:
        assert outcome(lambda: cache.query(text)) == outcome(lambda: through_the_view(cache, text))


def test_a_query_that_cannot_name_a_model_does_not_load_the_models(with_model):
    code = ("import sensorq\nwith sensorq.open(%r, readonly=True) as cache:\n"
            "    result = cache.query('count where accel > 2g')\n" % str(with_model)) + \
        REPORT.format(answer="result.value")
    got = fresh(code)
    assert got["answer"] > 0
    assert not [m for m in got["modules"] if m.startswith("sensorq.models")]


def test_a_damaged_model_fails_only_the_queries_that_may_use_it(with_model, tmp_path):
    import shutil
    from sensorq.models.model import ModelError
    copy = tmp_path / "cache"
    shutil.copytree(with_model, copy)
    model = copy / "models" / "motion.sqm"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x10
    model.write_bytes(bytes(data))
    with sensorq.open(copy, readonly=True) as cache:
        assert cache.query("count where accel > 2g").value > 0
        with pytest.raises(ModelError, match="motion.sqm"):
            cache.query("count where motion == Running")


def test_node_classes_behave_as_frozen_dataclasses():
    """@node (one __eq__/__hash__/__repr__ for every node class) against the
    methods @dataclass(frozen=True) generates, on twin classes."""
    import dataclasses as dc
    from sensorq.query.nodes import Node, node

    def twins(name):
        fields = {"__annotations__": {"a": "int", "b": "tuple", "c": "str"}, "c": "x",
                  "__doc__": "twin"}
        mine = node(type(name, (Node,), dict(fields)))
        ref = dc.dataclass(frozen=True)(type(name, (), dict(fields)))
        return mine, ref

    (Mine, Ref), (Other, _) = twins("Pair"), twins("Other")
    values = [(1, (2, 3), "x"), (1, (2, 3), "y"), (2, (), "x"), (1, (2, 3), "x")]
    mine, ref = [Mine(*v) for v in values], [Ref(*v) for v in values]
    for i in range(len(values)):
        assert repr(mine[i]) == repr(ref[i])
        for j in range(len(values)):
            assert (mine[i] == mine[j]) == (ref[i] == ref[j])
            assert (mine[i] != mine[j]) == (ref[i] != ref[j])
            assert (hash(mine[i]) == hash(mine[j])) == (hash(ref[i]) == hash(ref[j]))
        assert hash(mine[i]) == hash(ref[i])
        assert mine[i] != Other(*values[i]) and mine[i].__eq__(ref[i]) is NotImplemented
        with pytest.raises(dc.FrozenInstanceError):
            mine[i].a = 5
    assert dc.replace(mine[0], c="y") == mine[1]
    assert {mine[0], mine[3]} == {mine[0]}
    with pytest.raises(TypeError):
        node(type("Plain", (), {"__annotations__": {"a": "int"}}))
