"""``score MODEL``: one row per window of a model's derived stream.

The windows are scored by sensorq/models (features from the decoded blocks,
then the quantized model: the device's arithmetic); the rows are the window's
start and end, the model's output (a class name, a value or an anomaly score)
and, for a classifier, the probability of each class.
"""
from __future__ import annotations

import numpy as np

from ..errors import QueryError
from ..result import TIME_UNIT, Result, ScanStats
from . import limits


def run_score(cache, q, text: str, engine=None, max_rows=None) -> Result:
    if not hasattr(cache, "scored"):
        raise QueryError(f"model {q.model!r}: this cache has no models")   # planner prevents it
    scored = cache.scored(q.model, q.time.start_ns, q.time.end_ns)
    limits.check_rows(len(scored.start), max_rows, f"score {q.model}")
    from ..models.derived import columns_of
    stream = cache.streams[q.stream]
    values = columns_of(stream, cache.model_of(q.model), scored)
    columns = {"start": scored.start.astype(np.int64), "end": scored.end.astype(np.int64)}
    units = {"start": TIME_UNIT, "end": TIME_UNIT}
    from ..query.categories import names_of
    for channel, column in zip(stream.channels, values):
        columns[channel.name] = names_of(column, channel.categories) if channel.is_categorical else column
        units[channel.name] = ""
    scan = ScanStats(blocks_total=len(columns["start"]), decoded=len(columns["start"]),
                     engine="model")
    return Result("table", text, columns=columns, units=units, scan=scan)
