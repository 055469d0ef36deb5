"""Memory benchmark: peak RSS and time of queries whose memory used to grow
with the data (issue 9), each in a fresh process, next to numpy on the raw
arrays.

    python benchmarks/bench_memory.py [--samples 40000000] [--max-rows 100000000]

The data is one int16 channel ``x`` (mg) at 1 kHz: a slow sway plus noise, so
``x > 0`` flips often (about one episode every four samples).  Every query
runs in a process of its own, which first answers the same query over the
last 2 s (so numba's kernels are loaded, as in a long-lived program), then
resets its peak RSS (Linux: /proc/self/clear_refs) and runs the query once.
The table shows the process's peak RSS and how far the query raised it above
the RSS it started from; numpy's processes load the raw arrays (8-byte times,
2-byte values) first, and their query peak is measured the same way.
``--pythonpath DIR`` runs the sensorq processes against another checkout
(say, the commit before the fix) for a before/after table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

import sensorq

RATE_HZ = 1000
T0 = 1_700_000_000_000_000_000
STEP = 1 << 20
QUERIES = ["top 10 x", "percentile(50) x", "find episodes where x > 0", "avg x by 1ms"]

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

    def reset_peak():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    def measure(run):
        reset_peak()
        base = status("VmRSS")
        start = time.perf_counter()
        try:
            out = run()
        except Exception as exc:          # a refusal (RowLimitError) is a result too
            out = {"error": f"{type(exc).__name__}: {str(exc)[:90]}"}
        seconds = time.perf_counter() - start
        return dict(out, seconds=seconds, base=base, peak=status("VmHWM"),
                    lifetime=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

    def digest(columns):
        return {"rows": len(next(iter(columns.values()))),
                "check": float(np.nansum(np.asarray(list(columns.values())[-1], np.float64)))}

    mode, where, text = sys.argv[1:4]
    if mode == "sensorq":
        import sensorq
        with sensorq.open(where, readonly=True) as cache:
            try:
                cache.query(text + " last 2s")
            except sensorq.SensorqError:
                pass

            def run():
                result = cache.query(text)
                if result.kind == "scalar":
                    return {"rows": 1, "check": float(result.value)}
                out = digest(result.columns)
                if text.startswith("top"):
                    out["top"] = result.columns["value"].tolist()
                return out
            print(json.dumps(measure(run)))
    else:
        t = np.load(where + "/t.npy")
        x = np.load(where + "/x.npy")

        def run():
            if text == "top 10 x":
                kth = np.partition(x, len(x) - 10)[len(x) - 10]
                near = np.flatnonzero(x >= kth)
                best = near[np.lexsort((t[near], -x[near]))[:10]]
                return {"rows": 10, "check": float(x[best].sum()),
                        "top": x[best].astype(float).tolist()}
            if text == "percentile(50) x":
                return {"rows": 1, "check": float(np.percentile(x, 50))}
            if text == "find episodes where x > 0":
                edges = np.diff(np.concatenate(([0], (x > 0).view(np.int8), [0])))
                starts = np.flatnonzero(edges == 1)
                after = np.flatnonzero(edges == -1)
                ends = np.where(after < len(t), t[np.minimum(after, len(t) - 1)], t[after - 1])
                runs = np.ravel(np.column_stack([starts, after]))   # peak of each run
                peaks = np.maximum.reduceat(np.append(x, 0), runs)[::2]
                return {"rows": len(starts), "check": float(peaks.sum()), "end": int(ends[-1])}
            bucket = t // 1_000_000 - t[0] // 1_000_000           # avg x by 1ms
            sums = np.bincount(bucket, weights=x)
            counts = np.bincount(bucket)
            avg = sums[counts > 0] / counts[counts > 0]
            return {"rows": len(avg), "check": float(np.nansum(avg))}
        print(json.dumps(measure(run)))
""")


def make_data(samples: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    t = np.arange(samples, dtype=np.int64) * (1_000_000_000 // RATE_HZ) + T0
    sway = 80 * np.sin(np.arange(samples) * (2 * np.pi / 7000.0))
    x = np.clip(np.rint(sway + rng.normal(0, 12, samples)), -32768, 32767).astype(np.int16)
    return t, x


def build(work: Path, samples: int) -> tuple[Path, Path]:
    t, x = make_data(samples)
    raw = work / "raw"
    raw.mkdir()
    np.save(raw / "t.npy", t)
    np.save(raw / "x.npy", x)
    cache = work / "cache"
    start = time.perf_counter()
    with sensorq.open(cache, create=True, capacity=1 << 40) as c:
        c.create_stream("s", [sensorq.Channel("x", "int16", "mg")], rate_hz=RATE_HZ)
        for i in range(0, samples, STEP):
            c.append("s", t[i:i + STEP], [x[i:i + STEP]])
        c.flush()
    size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    print(f"{samples:,} samples (int16 x at 1 kHz): cache {size / 2**20:.1f} MB on disk, built in "
          f"{time.perf_counter() - start:.1f} s; raw arrays {(t.nbytes + x.nbytes) / 2**20:.0f} MB "
          f"(t int64 + x int16), {x.size * 8 / 2**20:.0f} MB as float64 values")
    return cache, raw


def child(mode: str, where: Path, text: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(where), text], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:90], "seconds": float("nan"),
                "base": 0, "peak": 0, "lifetime": 0}
    return json.loads(out.stdout)


def mb(n) -> str:
    return f"{n / 2**20:8.0f}" if n else f"{'-':>8}"


def agree(ours: dict, ref: dict, text: str) -> str:
    if "error" in ours:
        return ours["error"]
    if ours["rows"] != ref["rows"]:
        return f"NO ({ours['rows']} rows vs {ref['rows']})"
    if text.startswith("top"):
        return "yes" if ours["top"] == ref["top"] else "NO"
    return "yes" if np.isclose(ours["check"], ref["check"], rtol=1e-9) else \
        f"NO ({ours['check']} vs {ref['check']})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=40_000_000)
    ap.add_argument("--max-rows", type=int, default=100_000_000,
                    help="$SENSORQ_MAX_ROWS for the table (the default limit is also tried on "
                         "avg x by 1ms)")
    ap.add_argument("--engine", default="compiled", choices=("auto", "compiled", "interpreted"))
    ap.add_argument("--pythonpath", default=None,
                    help="run the sensorq processes against this checkout instead")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sensorq-bench-memory-"))
    cache, raw = build(work, args.samples)
    env = dict(os.environ, SENSORQ_ENGINE=args.engine, SENSORQ_MAX_ROWS=str(args.max_rows))
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    default_limit = {k: v for k, v in env.items() if k != "SENSORQ_MAX_ROWS"}
    runs = [(text, env) for text in QUERIES] + [("avg x by 1ms", default_limit)]

    print(f"\nsensorq ({args.engine} tier{', ' + args.pythonpath if args.pythonpath else ''}) "
          f"vs numpy on the raw arrays; peak = the process's peak RSS during the query, "
          f"+query = how far the query raised it (MB)")
    print(f"{'query':<34} {'sensorq s':>9} {'peak':>8} {'+query':>8}   "
          f"{'numpy s':>8} {'peak':>8} {'+query':>8}  same answer")
    for text, run_env in runs:
        ours = child("sensorq", cache, text, run_env)
        ref = child("numpy", raw, text, env)
        label = text + (" (default limit)" if run_env is default_limit else "")
        print(f"{label:<34} {ours['seconds']:>9.2f} {mb(ours['peak'])} "
              f"{mb(ours['peak'] - ours['base'])}   {ref['seconds']:>8.2f} {mb(ref['peak'])} "
              f"{mb(ref['peak'] - ref['base'])}  {agree(ours, ref, text)}")
    print(f"\nwork dir {work} (delete it when done)")


if __name__ == "__main__":
    main()
