"""The ENTROPY coder compiled once and called by symbol (codec/tans_call.py).

A compiled function that calls the encoder's entry points links to symbols
that exist only once ``tans_call.link_encoder()`` has run; a load from
numba's cache links them at once, and a symbol LLVM cannot find aborts the
process.  So every compiled caller must be filed with
``cached(..., before_compile=tans_call.link_encoder)``: checked here in the
source, and by fresh processes that encode from a warm cache (the load
path the test session itself never takes for a function it compiled) and
that only query (which must not compile the encoder at all)."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

import sensorq
from test_startup import fresh

PACKAGE = Path(sensorq.__file__).resolve().parent
ENTRY_POINTS = {"best_order", "write_column"}          # tans_call's encoder intrinsics


def _called_names(function: ast.FunctionDef) -> set[str]:
    names = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            target = node.func
            if isinstance(target, ast.Attribute):
                prefix = target.value.id if isinstance(target.value, ast.Name) else ""
                names.add(f"{prefix}.{target.attr}" if prefix == "tans_call" else target.attr)
            elif isinstance(target, ast.Name):
                names.add(target.id)
    return names


def _compiled_functions():
    """(module, function, whether filed with before_compile) of every
    ``@cached`` function in the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "cached":
                    hooked = any(k.arg == "before_compile" for k in decorator.keywords)
                    yield path.relative_to(PACKAGE), node, hooked


def test_every_compiled_caller_of_the_encoder_links_it_first():
    functions = list(_compiled_functions())
    needing = {f"tans_call.{name}" for name in ENTRY_POINTS}
    callers: dict[str, tuple] = {}
    grew = True
    while grew:                      # callers of callers, until nothing is added
        grew = False
        for module, function, hooked in functions:
            if function.name not in callers and _called_names(function) & needing:
                callers[function.name] = (module, hooked)
                needing.add(function.name)
                grew = True
    assert {"encode_column_priced", "_time_pass", "_channel_pass"} <= set(callers)
    unhooked = [f"{module}:{name}" for name, (module, hooked) in callers.items() if not hooked]
    assert not unhooked, f"compiled callers of the ENTROPY encoder without before_compile: {unhooked}"


ENCODE = """
import json, numpy as np
from sensorq.codec import bulk, tans_call
from sensorq.codec.block import encode_block
from sensorq.codec.intcodec import encode_column, max_section_bytes
t = 1_795_478_400_000_000_000 + np.cumsum(np.where(np.arange(8192) % 3, 15, 16) * 10**6)
x = (np.arange(8192) % 7).astype(np.int16)
blocks = [encode_block(t[:4096], [x[:4096]]), *bulk.encode_blocks(t, [x], np.array([0, 4096, 8192]))]
words = np.cumsum(np.where(np.arange(4096) % 5, 10, 250)).astype(np.uint64)
out = np.zeros(max_section_bytes(4096), np.uint8)
end, codec = encode_column(words, False, True, True, out, 0)
print(json.dumps({"codec": int(codec), "bytes": [len(b) for b in blocks],
                  "linked": len(tans_call._encoder_symbols)}))
"""


def test_encoders_run_from_a_warm_cache_in_fresh_processes():
    """Two fresh processes encode the same blocks: the second loads every
    encoder from numba's cache (the first may compile them) and must give
    the same bytes, ENTROPY sections included."""
    first, second = fresh(ENCODE), fresh(ENCODE)
    assert first == second
    assert first["codec"] & 0x80 and first["linked"] == 2        # ENTROPY taken, encoder linked


def test_a_query_reads_entropy_sections_without_compiling_the_encoder(tmp_path):
    """A process that only queries links the decoder, never the encoder:
    a compiled count over a clock of 15 and 16 ms steps (ENTROPY time
    sections) equals numpy's."""
    t = 1_795_478_400_000_000_000 + np.cumsum(np.where(np.arange(20_000) % 3, 15, 16) * 10**6)
    x = (np.arange(20_000) * 7919 % 2001 - 1000).astype(np.int16)
    with sensorq.open(tmp_path / "c", create=True) as cache:
        cache.create_stream("m", [sensorq.Channel("x", "int16")], block_samples=4096)
        cache.append("m", t, [x])
    code = f"""
import json, sensorq
from sensorq.codec import tans_call
with sensorq.open({str(tmp_path / "c")!r}, readonly=True) as cache:
    answer = cache.query("count where x > 500 last 100s", engine="compiled").value
print(json.dumps({{"answer": int(answer), "linked": len(tans_call._encoder_symbols)}}))
"""
    window = t >= t[-1] - 100 * 10**9
    assert fresh(code) == {"answer": int(((x > 500) & window & (t < t[-1])).sum()), "linked": 0}
