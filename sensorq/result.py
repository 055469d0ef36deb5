"""Query results: values with units, as a table, JSON, CSV or pandas."""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field

import numpy as np

TIME_UNIT = "ns"   # a column or value with this unit is a timestamp (ns since the epoch)
# A missing timestamp in an int64 time column (argmax of an empty bucket under
# fill(null)): numpy's NaT, so to_pandas() shows NaT; printed as null.
TIME_MISSING = np.iinfo(np.int64).min


def iso(ns) -> str:
    return str(np.datetime64(int(ns), "ns"))[:26] + "Z" if ns is not None else ""


@dataclass
class ScanStats:
    """What the scan did (``explain``)."""
    blocks_total: int = 0          # blocks of the stream overlapping the window
    from_stats: int = 0            # answered from their statistics
    skipped: int = 0               # skipped: no sample can match
    decoded: int = 0               # decoded
    engine: str = ""               # the tier that decoded them (engine/tiers.py)
    model: str = ""                # a derived stream's model and its scoring (models/derived.py)


@dataclass
class Result:
    """``kind`` is "scalar" (one ``value`` with ``unit``) or "table" (``columns``,
    numpy arrays by name, with ``units``).  Times are int64 ns since the epoch,
    never floats: a time ``value`` is an int (None when missing), a time column
    int64 (TIME_MISSING where missing)."""
    kind: str
    query: str
    value: object = None
    unit: str = ""
    columns: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)
    scan: ScanStats = field(default_factory=ScanStats)
    plan: object = None
    warnings: list = field(default_factory=list)   # e.g. data missing inside the window

    def to_arrow(self):
        """The result as a pyarrow Table (pyarrow: pip install sensorq[arrow])."""
        from .io.arrow import result_to_arrow
        return result_to_arrow(self)

    @property
    def data(self) -> dict:
        return self.columns

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 1

    # --- output -------------------------------------------------------------------
    def to_dict(self) -> dict:
        if self.kind == "scalar":
            value = _json_value(self.value, self.unit)
            out = {"query": self.query, "value": value, "unit": self.unit}
            if self.unit == TIME_UNIT and value is not None:
                out["time"] = iso(self.value)
        else:
            rows = [{name: _json_value(col[i], self.units.get(name, ""))
                     for name, col in self.columns.items()} for i in range(len(self))]
            out = {"query": self.query, "columns": list(self.columns), "units": self.units, "rows": rows}
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_csv(self) -> str:
        import csv      # only for --csv: kept off a one-off query's start-up path
        out = io.StringIO()
        writer = csv.writer(out)
        if self.kind == "scalar":
            writer.writerow(["value", "unit"])
            writer.writerow([_text(self.value, self.unit, exact=True), self.unit])
        else:
            writer.writerow([self._header(n) for n in self.columns])
            for i in range(len(self)):
                writer.writerow([_text(col[i], self.units.get(n, ""), exact=True)
                                 for n, col in self.columns.items()])
        return out.getvalue()

    def _header(self, name: str) -> str:
        """A column's title: its name, and its unit in brackets (times have none)."""
        unit = self.units.get(name, "")
        return f"{name} [{unit}]" if unit and unit != TIME_UNIT else name

    def format_table(self) -> str:
        if self.kind == "scalar":
            text = _text(self.value, self.unit)
            return f"{text} {self.unit}".rstrip() if self.unit != TIME_UNIT else text
        names = list(self.columns)
        header = [self._header(n) for n in names]
        body = [[_text(self.columns[n][i], self.units.get(n, "")) for n in names] for i in range(len(self))]
        widths = [max([len(h)] + [len(r[k]) for r in body]) for k, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in body]
        lines.append(f"({len(body)} row{'s' if len(body) != 1 else ''})")
        return "\n".join(lines)

    def to_pandas(self):
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("to_pandas() needs pandas: pip install pandas") from exc
        if self.kind == "scalar":
            return pd.DataFrame({"value": [self.value], "unit": [self.unit]})
        frame = pd.DataFrame({n: (c.astype("datetime64[ns]") if self.units.get(n) == TIME_UNIT else c)
                              for n, c in self.columns.items()})
        frame.attrs["units"] = dict(self.units)
        return frame


def _is_missing(v, unit: str = "") -> bool:
    if unit == TIME_UNIT and isinstance(v, (int, np.integer)) and v == TIME_MISSING:
        return True
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


def _json_value(v, unit):
    if isinstance(v, str):                 # a category's name
        return v
    if _is_missing(v, unit):
        return None
    if unit == TIME_UNIT:
        return int(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    v = float(v)
    return v if math.isfinite(v) else str(v)


def _text(v, unit, exact: bool = False) -> str:
    """A value for people (6 significant digits) or, ``exact``, for programs
    (the shortest text that reads back as the same float)."""
    if isinstance(v, str):                 # a category's name
        return v
    if _is_missing(v, unit):
        return "null"
    if unit == TIME_UNIT:
        return iso(v)
    if isinstance(v, (np.integer, int)):
        return str(int(v))
    v = float(v)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v) if exact else f"{v:.6g}"
