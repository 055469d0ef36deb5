"""``sensorq plot``: a query's answer over time, as a PNG (matplotlib, the
optional extra ``pip install 'sensorq[plot]'``) or as a chart in the terminal.

What is drawn follows the answer's shape:

* a bucketed aggregate (``avg z by 1m last 1h``): one line through the
  buckets (empty ones leave a gap);
* ``find first|last``, ``newest``, ``top``: the samples as points, one series
  per numeric column;
* ``find episodes``: the signal of the episodes' peak expression (its min and
  max per pixel column, from a second query over the same window, so a long
  window costs what its buckets cost) with every episode drawn as a span.

A single number has nothing to draw over time: the error says to add ``by``.
:func:`plot_query` returns a :class:`Drawn`, which lists the series and spans
it drew (the tests compare them with the query's own answer, and read the
PNG's lines back from matplotlib).
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field

import numpy as np

from .errors import SensorqError

TERM_HEIGHT = 16
TERM_MAX_WIDTH = 100
PNG_SIZE = (1000, 450)
SIGNAL_POINTS = 2000          # buckets for an episodes' signal: about two per pixel column
BRAILLE = 0x2800
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))   # (row, column) -> bit


class PlotError(SensorqError):
    """A query's answer cannot be drawn (a single number), or matplotlib is missing."""


@dataclass
class Series:
    label: str
    t: np.ndarray                 # int64 ns
    y: np.ndarray                 # float64, NaN where missing
    kind: str = "line"            # "line" or "points"; "band": y is the min, y2 the max
    y2: np.ndarray | None = None


@dataclass
class Drawn:
    result: object
    series: list[Series] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)
    unit: str = ""
    text: str = ""                # the terminal chart
    path: str | None = None
    lines: list = field(default_factory=list)    # (x, y) of every matplotlib line, read back

    def describe(self) -> str:
        parts = [f"{len(s.t):,} {'points' if s.kind == 'points' else 'values'} of {s.label}"
                 for s in self.series]
        if self.spans:
            parts.append(f"{len(self.spans)} episodes")
        return ", ".join(parts) or "nothing"


def plot_query(cache, text: str, path=None, now_policy: str = "data", engine=None, width=None,
               height=None) -> Drawn:
    """Run ``text`` and draw its answer: to ``path`` (PNG, SVG, PDF) or, with
    no path, as a terminal chart in ``Drawn.text``."""
    result = cache.query(text, now_policy=now_policy, engine=engine)
    drawn = what_to_draw(cache, result)
    if path:
        draw_file(drawn, str(path), width, height)
    else:
        drawn.text = terminal_chart(drawn, width, height)
    return drawn


# --- from an answer to series --------------------------------------------------------------

def what_to_draw(cache, result) -> Drawn:
    from .query import plan as P
    from .result import TIME_UNIT
    if result.kind == "scalar":
        raise PlotError(f"{result.query!r} answers with a single number, which has nothing to "
                        f"draw over time; add `by DUR` (for example `avg z by 1m last 1h`)")
    cols, units = result.columns, result.units
    if isinstance(result.plan, P.EpisodesQuery):
        return _episodes(cache, result)
    times = next((n for n in cols if units.get(n) == TIME_UNIT), None)
    if times is None:
        raise PlotError(f"{result.query!r}: the answer has no time column to draw against")
    t = np.asarray(cols[times], np.int64)
    kind = "line" if isinstance(result.plan, P.AggregateQuery) else "points"
    drawn = Drawn(result)
    for name, col in cols.items():
        if name == times or units.get(name) == TIME_UNIT:
            continue
        y = _numbers(col)
        if y is not None:
            drawn.series.append(Series(name, t, y, kind))
            drawn.unit = drawn.unit or units.get(name, "")
    if not drawn.series:
        raise PlotError(f"{result.query!r}: the answer has no numeric column to draw")
    return drawn


def _numbers(col) -> np.ndarray | None:
    """A column as float64 (None: it holds names, not numbers)."""
    col = np.asarray(col)
    if col.dtype != object:
        return col.astype(np.float64)
    if any(isinstance(v, str) for v in col):
        return None
    return np.array([np.nan if v is None else float(v) for v in col], np.float64)


def _episodes(cache, result) -> Drawn:
    from .query import plan as P
    q = result.plan
    start, end = result.columns["start"], result.columns["end"]
    drawn = Drawn(result, spans=[(int(a), int(b)) for a, b in zip(start, end)],
                  unit=result.units.get("peak", ""))
    lo, hi = _window(cache, q, start, end)
    if q.peak is None or hi <= lo:
        return drawn
    bucket = max(1, math.ceil((hi - lo) / SIGNAL_POINTS))
    expr = P.render(q.peak)
    window = f"from {q.stream} between {lo}ns and {hi}ns by {bucket}ns"
    try:
        low = cache.query(f"min {expr} {window}")
        high = cache.query(f"max {expr} {window}")
    except SensorqError:
        return drawn             # a peak that has no min/max (names): the spans alone
    t = np.asarray(low.columns["time"], np.int64)
    drawn.series.append(Series(expr, t, _numbers(low.columns["min"]), "band",
                               _numbers(high.columns["max"])))
    drawn.unit = low.units.get("min", drawn.unit)
    return drawn


def _window(cache, q, start, end) -> tuple[int, int]:
    """The query's window, or where the data and the episodes are when it is open."""
    lo, hi = q.time.start_ns, q.time.end_ns
    if lo is None or hi is None:
        index = cache.blocks(q.stream)
        if not len(index):
            return 0, 0
        lo = int(index.t_first[0]) if lo is None else lo
        hi = int(index.t_last[-1]) + 1 if hi is None else hi
    return int(lo), int(hi)


# --- a file (matplotlib) ---------------------------------------------------------------

def draw_file(drawn: Drawn, path: str, width=None, height=None) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("writing a picture needs matplotlib: pip install 'sensorq[plot]' (without "
                        "-o, sensorq plot draws in the terminal)") from None
    w, h = (width or PNG_SIZE[0]) / 100, (height or PNG_SIZE[1]) / 100
    fig, ax = plt.subplots(figsize=(w, h), dpi=100)
    try:
        for s in drawn.series:
            x = s.t.view("datetime64[ns]")
            if s.kind == "band":
                ax.fill_between(x, s.y, s.y2, color="tab:blue", alpha=0.3, linewidth=0)
                ax.plot(x, s.y2, color="tab:blue", linewidth=0.8, label=f"max {s.label}")
                ax.plot(x, s.y, color="tab:cyan", linewidth=0.6, label=f"min {s.label}")
            elif s.kind == "points":
                ax.plot(x, s.y, "o", markersize=4, label=s.label)
            else:
                ax.plot(x, s.y, "-", marker="." if len(x) < 80 else None, label=s.label)
        least = _least_span(drawn, w * 100)
        for a, b in drawn.spans:          # at least a few pixels wide, or a 50 ms episode in
            mid, half = (a + b) // 2, max(b - a, least) // 2      # an hour would not show
            ax.axvspan(np.datetime64(mid - half, "ns"), np.datetime64(mid + half, "ns"),
                       color="tab:red", alpha=0.25, linewidth=0)
        _decorate(ax, drawn, fig)
        drawn.lines = [(line.get_xdata(orig=True), line.get_ydata(orig=True))
                       for line in ax.get_lines()]
        fig.savefig(path)
    finally:
        plt.close(fig)
    drawn.path = path


def _least_span(drawn: Drawn, pixels: float) -> int:
    """Nanoseconds that three pixels of the chart stand for."""
    ends = [t for s in drawn.series for t in (s.t[:1], s.t[-1:])] + [np.array(x) for x in drawn.spans]
    ts = np.concatenate([np.asarray(e, np.int64).ravel() for e in ends]) if ends else np.zeros(1)
    return int(3 * (int(ts.max()) - int(ts.min())) / max(pixels, 1))


def _decorate(ax, drawn: Drawn, fig) -> None:
    ax.set_title(drawn.result.query, fontsize=10)
    ax.set_ylabel(drawn.unit or "value")
    ax.set_xlabel("time (UTC)")
    ax.grid(True, alpha=0.3)
    if drawn.spans:
        from matplotlib.patches import Patch
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Patch(color="tab:red", alpha=0.3))
        labels.append(f"{len(drawn.spans)} episodes")
        ax.legend(handles, labels, fontsize=8, loc="upper right")
    elif len(drawn.series) > 1:
        ax.legend(fontsize=8, loc="upper right")
    fig.autofmt_xdate()
    fig.tight_layout()


# --- the terminal ----------------------------------------------------------------------------

def terminal_chart(drawn: Drawn, width=None, height=None) -> str:
    """Braille dots (2x4 per character): a line's min..max per column, points
    as dots, episodes as a row of blocks under the chart."""
    from .result import iso
    cols = width or min(TERM_MAX_WIDTH, shutil.get_terminal_size((80, 24)).columns) - 12
    rows = height or TERM_HEIGHT
    cols, rows = max(cols, 10), max(rows, 3)
    t_all = [s.t for s in drawn.series if len(s.t)] + [np.array([a for span in drawn.spans
                                                                 for a in span], np.int64)]
    t_all = np.concatenate(t_all) if t_all else np.zeros(0, np.int64)
    if not len(t_all):
        return f"{drawn.result.query}: nothing to draw (no rows)\n"
    t0, t1 = int(t_all.min()), int(t_all.max())
    ys = [v for s in drawn.series for v in (s.y, s.y2) if v is not None]
    finite = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.zeros(0)
    y0, y1 = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    grid = np.zeros((rows * 4, cols * 2), bool)
    for s in drawn.series:
        _rasterise(grid, s, t0, t1, y0, y1)
    lines = [f"{drawn.result.query}  [{drawn.unit}]" if drawn.unit else drawn.result.query]
    for r in range(rows):
        label = f"{y1:>10.4g} ┤" if r == 0 else f"{y0:>10.4g} ┤" if r == rows - 1 else " " * 11 + "│"
        lines.append(label + _braille_row(grid[r * 4:(r + 1) * 4]))
    if drawn.spans:
        lines.append(" " * 11 + "│" + _span_row(drawn.spans, t0, t1, cols) + f" {len(drawn.spans)} episodes")
    lines.append(" " * 11 + "└" + "─" * cols)
    left, right = iso(t0)[:19], iso(t1)[:19]
    lines.append(" " * 12 + left + right.rjust(max(1, cols - len(left))))
    return "\n".join(lines) + "\n"


def _x(t: np.ndarray, t0: int, t1: int, n: int) -> np.ndarray:
    span = max(t1 - t0, 1)
    return np.clip(((t - t0) / span * (n - 1)).round().astype(np.int64), 0, n - 1)


def _y(y: np.ndarray, y0: float, y1: float, n: int) -> np.ndarray:
    return np.clip(((y1 - y) / (y1 - y0) * (n - 1)).round().astype(np.int64), 0, n - 1)


def _rasterise(grid: np.ndarray, s: Series, t0: int, t1: int, y0: float, y1: float) -> None:
    height, width = grid.shape
    high = s.y2 if s.kind == "band" else s.y
    ok = np.isfinite(s.y) & np.isfinite(high)
    xs = _x(s.t, t0, t1, width)
    top, bottom = _y(high, y0, y1, height), _y(s.y, y0, y1, height)
    for i in np.flatnonzero(ok):
        grid[min(top[i], bottom[i]):max(top[i], bottom[i]) + 1, xs[i]] = True
        if s.kind != "points" and i + 1 < len(xs) and ok[i + 1]:
            _segment(grid, xs[i], bottom[i], xs[i + 1], bottom[i + 1])   # neighbours joined;
            # a NaN (an empty bucket) leaves a gap


def _segment(grid: np.ndarray, xa: int, ya: int, xb: int, yb: int) -> None:
    steps = max(abs(int(xb) - int(xa)), abs(int(yb) - int(ya))) + 1
    xs = np.rint(np.linspace(xa, xb, steps)).astype(np.int64)
    ys = np.rint(np.linspace(ya, yb, steps)).astype(np.int64)
    grid[ys, xs] = True


def _braille_row(cells: np.ndarray) -> str:
    out = []
    for c in range(cells.shape[1] // 2):
        code = 0
        for r in range(4):
            for k in range(2):
                if cells[r, 2 * c + k]:
                    code |= _DOTS[r][k]
        out.append(chr(BRAILLE + code))
    return "".join(out)


def _span_row(spans, t0: int, t1: int, cols: int) -> str:
    row = [" "] * cols
    for a, b in spans:
        for x in range(int(_x(np.array([a]), t0, t1, cols)[0]), int(_x(np.array([b]), t0, t1, cols)[0]) + 1):
            row[x] = "█"
    return "".join(row)
