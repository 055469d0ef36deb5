"""``sensorq shell``: queries answered by a process that keeps the cache
open, as the sqlite3 and duckdb shells do.  A repeated query then costs what
its scan costs: no process start, no imports, and the kernels, once loaded,
stay loaded (``.engine compiled`` loads them on purpose).

The kernels are loaded in a background thread when the shell starts, so
the first query is answered at once by the interpreter and later ones by the
kernels.  Lines that start with a dot are commands (``.help`` lists them); every other
line is a query (a trailing ``;`` is dropped).  Before each query the cache
is refreshed, so data a writer (``sensorq ingest -``) added is seen.  With
a terminal the standard ``readline`` gives history (``$SENSORQ_HISTORY``,
default ``~/.sensorq_history``) and Tab completion of keywords, streams,
channels, units and commands; fed from a pipe, the shell just reads lines.

:class:`Shell` is the command processor (``process(line) -> text``), used
by the loop below and by the tests.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from .errors import SensorqError

MODES = ("table", "csv", "json")
ENGINES = ("auto", "compiled", "interpreted")
KEYWORDS = ("where", "from", "last", "since", "between", "and", "or", "not", "at", "by", "fill",
            "gap", "for", "find", "first", "episodes", "top", "newest", "now", "ago", "in",
            "mean", "p50", "p90", "p95", "p99", "abs", "sqrt", "mag", "null", "prev", "linear")
COMMANDS = {
    ".help": "this list",
    ".streams": "streams and their channels",
    ".mode MODE": "output: table, csv or json",
    ".timer on|off": "say how long each query took",
    ".explain on|off": "show the plan and scan of each query (or: .explain QUERY, once)",
    ".plot QUERY": "draw a query's answer in the terminal",
    ".engine TIER": "auto, compiled (loads the kernels now) or interpreted",
    ".now data|clock": "what 'now' means in 'last 10m'",
    ".refresh": "pick up what a writer added (done before every query anyway)",
    ".quit": "leave (also .exit, Ctrl-D)",
}


class Shell:
    def __init__(self, cache, mode: str = "table"):
        self.cache = cache
        self.mode = mode
        self.timer = False
        self.explain = False
        self.engine: str | None = None
        self.now = "data"
        self.done = False
        self.last_seconds = 0.0

    # --- one line ---------------------------------------------------------------------

    def process(self, line: str) -> str:
        """The text to show for one line (errors included); sets ``done`` on .quit."""
        line = line.strip()
        if line.endswith(";"):
            line = line[:-1].rstrip()
        if not line or line.startswith("--"):
            return ""
        try:
            if line.startswith("."):
                return self._command(line)
            return self._query(line)
        except SensorqError as exc:
            return f"error: {exc}"

    def _query(self, text: str, explain: bool | None = None) -> str:
        from .cli.query import render
        self.cache.refresh()
        started = time.perf_counter()
        result = self.cache.query(text, now_policy=self.now, engine=self.engine)
        self.last_seconds = time.perf_counter() - started
        if self.explain if explain is None else explain:
            from .engine.explain import describe
            out = describe(result.plan, result, self.engine)
        else:
            out = render(result, self.mode)
        notes = [f"warning: {w}" for w in result.warnings]
        if self.timer:
            notes.append(f"time: {self.last_seconds * 1e3:.2f} ms")
        return "\n".join([out] + notes)

    def _command(self, line: str) -> str:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        handler = {".help": self._help, ".streams": self._streams, ".mode": self._mode,
                   ".timer": self._timer, ".explain": self._explain, ".plot": self._plot,
                   ".engine": self._engine, ".now": self._now, ".refresh": self._refresh,
                   ".quit": self._quit, ".exit": self._quit}.get(name.lower())
        if handler is None:
            return f"error: unknown command {name}; .help lists the commands"
        return handler(arg)

    def _help(self, arg: str) -> str:
        width = max(map(len, COMMANDS))
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in COMMANDS.items()) + \
            "\nanything else is a query, e.g. count where z > 2g last 10m"

    def _streams(self, arg: str) -> str:
        self.cache.refresh()
        lines = []
        for name, st in self.cache.streams.items():
            chans = ", ".join(f"{c.name} ({c.unit})" if c.unit else c.name for c in st.channels)
            lines.append(f"{name}: {chans}")
        return "\n".join(lines) or "no streams"

    def _choice(self, arg: str, choices, what: str, current: str) -> tuple[str | None, str]:
        if not arg:
            return None, f"{what} is {current}"
        if arg not in choices:
            return None, f"error: {what} {arg!r} is not one of {', '.join(choices)}"
        return arg, f"{what} is {arg}"

    def _mode(self, arg: str) -> str:
        chosen, text = self._choice(arg, MODES, "mode", self.mode)
        self.mode = chosen or self.mode
        return text

    def _switch(self, arg: str, what: str, current: bool) -> tuple[bool, str]:
        chosen, text = self._choice(arg, ("on", "off"), what, "on" if current else "off")
        return (current if chosen is None else chosen == "on"), text

    def _timer(self, arg: str) -> str:
        self.timer, text = self._switch(arg, "timer", self.timer)
        return text

    def _explain(self, arg: str) -> str:
        if arg and arg not in ("on", "off"):
            return self._query(arg, explain=True)
        self.explain, text = self._switch(arg, "explain", self.explain)
        return text

    def _plot(self, arg: str) -> str:
        if not arg:
            return "error: .plot needs a query, e.g. .plot avg z by 1m last 1h"
        from .plot import plot_query
        self.cache.refresh()
        return plot_query(self.cache, arg, now_policy=self.now, engine=self.engine).text.rstrip()

    def _engine(self, arg: str) -> str:
        chosen, text = self._choice(arg, ENGINES, "engine", self.engine or "auto")
        if chosen:
            self.engine = None if chosen == "auto" else chosen
            if chosen == "compiled":
                self._load_kernels()
        return text

    def _load_kernels(self) -> None:
        """Run one small compiled query, so the first real one does not pay the load."""
        for name in self.cache.streams:
            self.cache.query(f"count from {name} last 1s", engine="compiled")
            return

    def warm_kernels(self) -> None:
        """Load the compiled kernels on a cache object of its own (run in a
        background thread by the loop): from then on the auto tier uses them,
        and a repeated query costs its scan, not the interpreter's per-value
        cost.  Failures are ignored: the interpreter answers the same."""
        try:
            from .store import open as open_cache
            with open_cache(self.cache.path, readonly=True) as own:
                for name in own.streams:
                    own.query(f"count from {name} last 1s", engine="compiled")
                    own.query(f"count where {own.streams[name].channels[0].name} > 0 from {name} "
                              f"last 1s", engine="compiled")
                    return
        except Exception:      # noqa: BLE001 - a warm-up must never break the shell
            pass

    def _now(self, arg: str) -> str:
        chosen, text = self._choice(arg, ("data", "clock"), "now", self.now)
        self.now = chosen or self.now
        return text

    def _refresh(self, arg: str) -> str:
        self.cache.refresh()
        return f"{len(self.cache.streams)} streams"

    def _quit(self, arg: str) -> str:
        self.done = True
        return ""

    # --- completion -------------------------------------------------------------------

    def words(self) -> list[str]:
        """Everything Tab can complete to: keywords, aggregates, streams,
        channels (bare and qualified), units and commands."""
        from .query.plan import AGGREGATES
        from .units import known_units
        words = set(KEYWORDS) | set(AGGREGATES) | set(known_units())
        for name, st in self.cache.streams.items():
            words.add(name)
            for c in st.channels:
                words.update((c.name, f"{name}.{c.name}"))
                words.update(c.categories or ())
        return sorted(words)

    def completions(self, before: str, word: str) -> list[str]:
        """Candidates for ``word``, the text being typed after ``before``."""
        head = before.strip()
        if not head and word.startswith("."):
            return sorted(c.split()[0] for c in [*COMMANDS, ".exit"] if c.startswith(word))
        if head in (".mode",):
            return [m for m in MODES if m.startswith(word)]
        if head in (".engine",):
            return [e for e in ENGINES if e.startswith(word)]
        if head in (".timer", ".explain") and word in ("", "o", "on", "of", "off"):
            return [s for s in ("on", "off") if s.startswith(word)]
        if head.lower().split()[-1:] == ["from"]:
            return sorted(n for n in self.cache.streams if n.startswith(word))
        number = word.lstrip("+-0123456789.")
        if number != word and word[:1] in "+-0123456789.":       # 2g, 500mg: complete the unit
            from .units import known_units
            return [word[:len(word) - len(number)] + u for u in known_units() if u.startswith(number)]
        return [w for w in self.words() if w.startswith(word)]


# --- the loop ---------------------------------------------------------------------------

def run_shell(cache, mode: str = "table", quiet: bool = False, stdin=None, stdout=None) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    shell = Shell(cache, mode)
    if os.environ.get("SENSORQ_ENGINE", "auto") != "interpreted":
        threading.Thread(target=shell.warm_kernels, name="sensorq-warm", daemon=True).start()
    interactive = stdin.isatty() and stdout.isatty()
    if interactive:
        _readline(shell)
        if not quiet:
            print(f"sensorq shell on {cache.path}: {', '.join(cache.streams) or 'no streams'}; "
                  f".help for commands, Ctrl-D to leave", file=stdout)
    while not shell.done:
        try:
            line = input("sensorq> ") if interactive else stdin.readline()
        except EOFError:
            break
        except KeyboardInterrupt:
            print(file=stdout)
            continue
        if not interactive and not line:
            break
        out = shell.process(line)
        if out:
            print(out, file=stdout, flush=True)
    if interactive:
        _save_history()
    return 0


def _history_path() -> Path:
    return Path(os.environ.get("SENSORQ_HISTORY") or Path.home() / ".sensorq_history")


def _readline(shell: Shell) -> None:
    try:
        import readline
    except ImportError:          # pragma: no cover - a Python without readline
        return
    try:
        readline.read_history_file(_history_path())
    except OSError:
        pass
    readline.set_history_length(1000)
    readline.set_completer_delims(" \t\n(),<>=!")

    def complete(text: str, state: int):
        before = readline.get_line_buffer()[:readline.get_begidx()]
        found = shell.completions(before, text)
        return found[state] if state < len(found) else None
    readline.set_completer(complete)
    readline.parse_and_bind("tab: complete")


def _save_history() -> None:
    try:
        import readline
        readline.write_history_file(_history_path())
    except (ImportError, OSError):
        pass
