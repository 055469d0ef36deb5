"""Categorical channels in results: stored codes back to names.

The engine computes on codes (a categorical channel is an integer channel, and
the planner turned every name of the query into its code), so a result that
holds values *of* a categorical channel holds codes: ``first activity``,
``last state by 10s``, the rows of ``find``/``newest``, the peak of episodes
that only a categorical channel describes.  :func:`label_result` maps them to
names, as numpy object arrays of str (None where the value is missing).

Names come from the stream's dictionary as it is now, not as it was when the
query was planned: codes never change and the dictionary only grows, so the
newer one names every code the older one did, and codes a concurrent ingest
added too.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

import numpy as np

from ..schema import Channel, Stream
from . import plan as P

__all__ = ["label_result", "names_of", "unknown_code"]


def label_result(result, plan, streams: Mapping[str, Stream]):
    """``result`` with every value that comes from a categorical channel shown
    as its name.  Returns a new Result (the input is not changed); a result
    with nothing categorical is returned as it is."""
    stream = streams.get(getattr(plan, "stream", None))
    if stream is None:
        return result
    labelled = _labelled_parts(plan, stream)
    if not labelled:
        return result
    if result.kind == "scalar":
        channel = labelled.get(None)
        return result if channel is None else dataclasses.replace(result, value=_name(result.value,
                                                                                       channel))
    columns = {name: names_of(column, labelled[name].categories) if name in labelled else column
               for name, column in result.columns.items()}
    return dataclasses.replace(result, columns=columns)


def _labelled_parts(plan, stream: Stream) -> dict[Optional[str], Channel]:
    """Which parts of the plan's result hold codes, and of which channel:
    result column names, or None for a scalar value."""
    if isinstance(plan, P.AggregateQuery):
        channel = _categorical(plan.expr, stream) if plan.aggregate in ("first", "last") else None
        if channel is None:
            return {}
        return {plan.aggregate: channel} if plan.bucket_ns else {None: channel}
    if isinstance(plan, (P.FindQuery, P.NewestQuery)):           # every channel of the stream
        return {c.name: c for c in stream.channels if c.is_categorical}
    if isinstance(plan, P.EpisodesQuery):
        channel = _categorical(plan.peak, stream)
        return {"peak": channel} if channel is not None else {}
    return {}                     # top refuses categorical channels; counts and durations are numbers


def _categorical(expr, stream: Stream) -> Optional[Channel]:
    """The stream's categorical channel ``expr`` is, if it is one."""
    if not isinstance(expr, P.ChannelRef) or expr.categories is None:
        return None
    current = next((c for c in stream.channels if c.name == expr.channel), None)
    if current is not None and current.is_categorical:
        return current
    return Channel(expr.channel, expr.dtype, categories=expr.categories)   # as planned


def names_of(codes, categories) -> np.ndarray:
    """Codes (integers, or floats from an aggregate) as an object array of
    names; None where a value is missing (NaN, None), and ``<code k>`` for a
    code the dictionary does not have (stored by a raw append)."""
    values = np.asarray(codes)
    flat = values.reshape(-1)
    if flat.dtype == object:
        if all(v is None or isinstance(v, str) for v in flat):
            return values                  # already names (the executor labels every result)
        flat = np.array([np.nan if v is None else float(v) for v in flat], np.float64)
    numeric = flat.astype(np.float64)
    missing = np.isnan(numeric)
    known = ~missing & (numeric >= 0) & (numeric < len(categories)) & (numeric == np.floor(numeric))
    out = np.full(numeric.shape, None, object)
    out[known] = np.array(list(categories) or [""], object)[numeric[known].astype(np.int64)]
    for i in np.flatnonzero(~missing & ~known):        # rare: only codes outside the dictionary
        out[i] = unknown_code(numeric[i])
    return out.reshape(values.shape)


def unknown_code(code: float) -> str:
    """How a code outside the dictionary is shown (never silently as a name)."""
    return f"<code {int(code) if float(code).is_integer() else code}>"


def _name(value, channel: Channel):
    """One value (a scalar result) as its name; None stays None."""
    if value is None or isinstance(value, str):
        return value
    return names_of(np.array([value], np.float64), channel.categories)[0]
