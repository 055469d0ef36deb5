"""``sensorq explain``: the typed plan and what the scan did."""
from __future__ import annotations

import dataclasses

from ..query import plan as P
from ..result import iso


def _irrelevant(query, name: str) -> bool:
    """Plan fields that only matter for other aggregates (hidden from explain)."""
    aggregate = getattr(query, "aggregate", None)
    if name == "percentile":
        return aggregate != "percentile"
    if name == "fill":
        return not getattr(query, "bucket_ns", None)
    return False


def describe(query, result, engine: str | None = None) -> str:
    """explain's text: the plan's fields, what the scan did (and, where the
    query ran under auto — ``engine`` None or "auto", $SENSORQ_ENGINE unset —
    why auto took the tier it did: tiers.auto_status), the result."""
    from .tiers import auto_status
    lines = [f"plan: {type(query).__name__} on stream {query.stream!r}"]
    for field in dataclasses.fields(query):
        value = getattr(query, field.name)
        if field.name == "stream" or value is None or _irrelevant(query, field.name):
            continue
        if isinstance(value, P.TimeRange):
            text = f"[{iso(value.start_ns) or '-inf'}, {iso(value.end_ns) or '+inf'})"
        elif isinstance(value, P.Now):
            text = f"{iso(value.ns)} ({value.source})"
        elif dataclasses.is_dataclass(value) and not isinstance(value, P.Fill):
            text = P.render(value, detail=True)
        else:
            text = str(value)
        lines.append(f"  {field.name}: {text}")
    s = result.scan
    lines.append(f"scan: {s.blocks_total} blocks in the window: {s.from_stats} answered from "
                 f"statistics, {s.skipped} skipped, {s.decoded} decoded"
                 + (f" ({s.engine})" if s.decoded and s.engine else ""))
    tier_choice = auto_status(engine) if s.decoded and s.engine else ""
    if tier_choice:
        lines.append(f"  engine: {tier_choice}")
    if s.model:
        lines += s.model.splitlines()
    lines.append("result:")
    lines += ["  " + line for line in result.format_table().splitlines()]
    return "\n".join(lines)

