"""The interval searched for a dimension with an open side, and when it widens.

A dimension with finite bounds is searched over its bounds. One with an open side (no
bound, or +-inf) has no box, so the search starts on `start +- SPAN * max(|start|, 1)`
(clipped to the finite bound, if any): the value's own magnitude either way, since a
value of 5 most likely lives in 0..10 and a value of 0.01 in -1..1. When the best trial
so far sits in the outer `EDGE` fraction of the interval next to an open side, that side
moves out by the interval's width (the width doubles), as often as needed; a value told
from outside (a user-set start) stretches the interval to cover it.

Optuna accepts a parameter whose distribution changes between trials only partly (TPE
copes; CMA-ES, GP and QMC drop a parameter whose distributions differ across trials
from their joint model). So the study is rebuilt instead: every trial is re-added with
the widened distribution, which still contains its value (`BayesianSearch` does it
through the same path as loading a state).
"""

from __future__ import annotations

import math
from typing import Any

SPAN = 1.0  # first interval: start +- SPAN * max(|start|, 1)
EDGE = 0.1  # best trial within EDGE * width of an open side: widen that side


def first_interval(dim: Any, start: float | None) -> tuple[float, float]:
    """The interval searched first: the bounds, or an interval around `start` (0 when
    None) on each open side."""
    centre = 0.0 if start is None else float(start)
    reach = SPAN * max(abs(centre), 1.0)
    low = dim.low if dim.low is not None else centre - reach
    high = dim.high if dim.high is not None else centre + reach
    return _fit(dim, low, high)


def widened(dim: Any, interval: tuple[float, float], best: float) -> tuple[float, float]:
    """`interval`, with each open side that `best` sits next to moved out by its width."""
    low, high = interval
    width = max(high - low, 1.0 if dim.integer else 1e-12)
    if dim.low is None and best <= low + EDGE * width:
        low -= width
    if dim.high is None and best >= high - EDGE * width:
        high += width
    return _fit(dim, low, high)


def covering(dim: Any, interval: tuple[float, float], value: float) -> tuple[float, float]:
    """`interval` stretched on its open sides to contain `value` (a bounded side stays)."""
    low, high = interval
    if dim.low is None:
        low = min(low, value)
    if dim.high is None:
        high = max(high, value)
    return _fit(dim, low, high)


def _fit(dim: Any, low: float, high: float) -> tuple[float, float]:
    """Clip to the finite bounds; integers round outwards."""
    if dim.low is not None:
        low = max(low, dim.low)
    if dim.high is not None:
        high = min(high, dim.high)
    if dim.integer:
        return (math.floor(low), math.ceil(high))
    return (float(low), float(high))
