"""A fleet query's text and its devices, before anything runs.

``split_group`` takes the fleet-only clause out of a query: ``by device`` (one
row per device) or ``by LABEL`` (one row per value of a label, such as
``by site``), alone or next to a time bucket (``by device by 1m``, ``by 1m,
device``, ``by device, 1m``).  The rest is an ordinary query, planned by each
device against its own streams.  The clause is blanked out character for
character, so a column in an error message still points into the text the
user wrote.

``Device`` is what the discovery of caches (tasks.find_caches, on whichever
machine holds them) reports; ``select_devices`` keeps those whose labels match.
"""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field

from ..errors import QuerySyntaxError, SensorqError

_DUR = r"[0-9][0-9a-zA-Zµ.]*"
_FILL = r"(?:\s+fill\s*\([^)]*\))?"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_BY_GROUP_DUR = re.compile(rf"(?i)\bby(\s+)({_IDENT}\s*,\s*)(?={_DUR})")
_BY_DUR_GROUP = re.compile(rf"(?i)\bby\s+{_DUR}{_FILL}(\s*,\s*{_IDENT})\b")
_BY_GROUP = re.compile(rf"(?i)\bby\s+({_IDENT})\b")
_NOT_GROUPS = {"fill"}


@dataclass(frozen=True)
class GroupedText:
    text: str                  # the query without the fleet clause (same length, same columns)
    group: str | None          # None (one merged answer), "device", or a label's name


def _masked(text: str) -> str:
    """``text`` with double-quoted names blanked, so a name holding "by device" is left alone."""
    return re.sub(r'"(?:[^"]|"")*"', lambda m: '"' + "_" * (len(m.group()) - 2) + '"', text)


def split_group(text: str) -> GroupedText:
    """The query without its ``by device`` / ``by LABEL`` clause, and the group."""
    if not isinstance(text, str):
        raise QuerySyntaxError(f"a query is text, not {type(text).__name__}")
    text = re.sub(r"[\t\r\n\f\v]", " ", text)
    found: list[tuple[int, int, str]] = []          # (start, end) to blank, and the group
    masked = _masked(text)
    for pattern, ident_of in ((_BY_GROUP_DUR, lambda m: m.group(2).split(",")[0].strip()),
                              (_BY_DUR_GROUP, lambda m: m.group(1).split(",")[1].strip())):
        for m in pattern.finditer(masked):
            span = m.span(2) if pattern is _BY_GROUP_DUR else m.span(1)
            found.append((*span, ident_of(m)))
    blanked = _blank(masked, found)
    for m in _BY_GROUP.finditer(blanked):
        if m.group(1).lower() not in _NOT_GROUPS:
            found.append((m.start(), m.end(), m.group(1)))
    if len(found) > 1:
        second = sorted(found)[1]
        raise QuerySyntaxError(f"a fleet query groups by one thing: {found[0][2]!r} and "
                               f"{found[1][2]!r} were both given", text, second[0] + 1)
    if not found:
        return GroupedText(text, None)
    start, end, ident = found[0]
    group = "device" if ident.lower() == "device" else ident
    return GroupedText(text[:start] + " " * (end - start) + text[end:], group)


def _blank(text: str, spans) -> str:
    for start, end, _ in spans:
        text = text[:start] + " " * (end - start) + text[end:]
    return text


@dataclass
class Device:
    """One cache of the fleet, as discovery found it."""
    path: str
    device: str | None
    labels: dict = field(default_factory=dict)
    workers: list = field(default_factory=list)     # Dask workers that can open it
    error: str | None = None                        # its manifest could not be read

    @property
    def key(self) -> tuple:
        return (self.path, self.device)

    def label(self, name: str):
        return self.device if name == "device" else self.labels.get(name)


def absolute_patterns(paths_or_glob) -> list[str]:
    """Globs made absolute against this process's working directory (a worker
    elsewhere has its own), ``~`` expanded."""
    single = isinstance(paths_or_glob, (str, os.PathLike))
    items = [paths_or_glob] if single else list(paths_or_glob)
    if not items:
        raise SensorqError("a fleet needs at least one cache path or glob")
    return [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in items]


def select_devices(devices: list[Device], select: dict | None) -> list[Device]:
    """Devices whose every selected label (or "device") matches its glob."""
    if not select:
        return devices
    return [d for d in devices
            if all(d.label(k) is not None and fnmatch.fnmatchcase(str(d.label(k)), str(v))
                   for k, v in select.items())]


def display_names(devices: list[Device]) -> dict[tuple, str]:
    """The name each device goes by in results: its device name, or its path
    when it has none or when two caches claim the same name."""
    names = {}
    counts: dict = {}
    for d in devices:
        counts[d.device] = counts.get(d.device, 0) + 1
    for d in devices:
        unique = d.device is not None and counts[d.device] == 1
        names[d.key] = d.device if unique else (f"{d.device} ({d.path})" if d.device else d.path)
    return names


__all__ = ["split_group", "GroupedText", "Device", "absolute_patterns", "select_devices",
           "display_names"]
