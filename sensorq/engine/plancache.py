"""Recent plans of one cache, so that a query typed again skips the planner.

A dashboard or a firmware's uplink loop asks the same few questions over and
over (``count where z > 2g last 10m`` every second); planning one costs
30–130 µs of Python, often more than answering it from the zone maps.  A plan
depends on three things only: the query text, the streams' definitions (names,
channels, scales, categories) and, with now = the data's newest sample, the
newest timestamp of each stream the planner asked about for a window (``last
10m``, ``since``, ``between``, ``at``).  So a plan is kept with the streams it
was made against and the newest timestamps it read, and is used again only
while all of them are still the same.  A writer's append moves a stream's
newest timestamp (a new plan for a windowed query; a query over the whole
stream keeps its plan, whose now is only reported, and explain plans afresh);
a new category, a renamed or dropped stream changes the definitions (a new
plan).  Nothing else is kept: blocks,
statistics and data are read afresh by every query.

Plans are frozen (query/nodes.py), so handing one out twice is safe.  Plans
against the wall clock are never kept (executor.plan_text).
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

KEPT_PLANS = 32             # per cache: distinct query texts remembered

_PER_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class PlanCache:
    def __init__(self, size: int = KEPT_PLANS):
        self.size = size
        self._plans: OrderedDict = OrderedDict()   # text -> (streams, newest read, plan)
        self._lock = threading.Lock()

    def plan(self, cache, text: str):
        streams = cache.streams
        kept = self._plans.get(text)
        if kept is not None and _still_valid(cache, streams, *kept[:2]):
            with self._lock:
                if text in self._plans:
                    self._plans.move_to_end(text)       # the least recently asked go first
            return kept[2]
        newest_read: dict = {}

        def newest_ns(stream):
            newest_read[stream] = value = cache.newest_ns(stream)
            return value

        from ..query.planner import plan_query
        plan = plan_query(text, streams, newest_ns, now_policy="data",
                          reported_newest_ns=cache.newest_ns)
        with self._lock:        # a cache handle may be shared by threads
            self._plans[text] = (streams, newest_read, plan)
            self._plans.move_to_end(text)
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)
        return plan


def _still_valid(cache, streams, planned_streams, newest_read) -> bool:
    # dict equality compares each Stream by identity first, then by value
    if streams != planned_streams:
        return False
    for stream, value in newest_read.items():      # (a loop: a generator's frames cost ~0.3 µs)
        if cache.newest_ns(stream) != value:
            return False
    return True


def plans_of(cache) -> PlanCache:
    """The plan cache of ``cache`` (made on first use, gone with the cache)."""
    try:
        return _PER_CACHE[cache]
    except KeyError:
        pass
    except TypeError:           # not weakly referable: no cache, a plan each time
        return PlanCache(size=0)
    _PER_CACHE[cache] = plans = PlanCache()
    return plans
