"""Trending arithmetic: exponentially time-decayed counts kept as one number per item.

An event at time ``t`` counts ``0.5 ** ((now - t) / half_life)`` at time ``now``, as in
:class:`reco.models.context_popularity.TrendingRecommender`. The sum over an item's
events factors into ``2 ** (S - now / half_life)`` with ``S = log2(sum 2 ** (t /
half_life))``, so one number ``S`` per item, independent of ``now``, holds the whole
decayed count: adding an event is ``S = log2(2 ** S + 2 ** (t / half_life))``, and
items rank by ``S`` alone (a Redis sorted set ranks them for free). ``S`` is kept in
half-lives since the epoch (about 2,800 for a week-long half-life), where a float64
has 13 digits to spare; the counts themselves (``2 ** 2800``) would overflow.

Redis runs the same steps in Lua (:mod:`reco.features.redis_features`), with the same
operations in the same order, so both backends produce the same floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SECONDS_PER_DAY = 86_400.0
LN2 = math.log(2.0)


def half_life_seconds(days: float) -> float:
    """A half-life in days as seconds; ValueError unless positive and finite."""
    if not (math.isfinite(days) and days > 0):
        raise ValueError(f"the trending half-life must be a positive number of days, got {days}")
    return float(days) * SECONDS_PER_DAY


def event_exponent(timestamp: float, half_life: float) -> float:
    """``log2`` of one event's weight scaled to the epoch: ``timestamp / half_life``."""
    return float(timestamp) / half_life


def log2_add(score: float | None, exponent: float) -> float:
    """``log2(2 ** score + 2 ** exponent)`` without overflow (``score`` None: empty)."""
    if score is None:
        return exponent
    top = max(score, exponent)
    # Written exactly like the Lua version: pow and natural log, divided by ln 2.
    return top + math.log(2.0 ** (score - top) + 2.0 ** (exponent - top)) / LN2


def decayed_count(score: float, now: float, half_life: float) -> float:
    """The decayed count ``2 ** (score - now / half_life)`` at time ``now``."""
    return 2.0 ** (score - float(now) / half_life)


def decayed_counts(scores: Sequence[float | None], now: float, half_life: float) -> np.ndarray:
    """:func:`decayed_count` of many scores at once (None: an item without events, 0).

    One vectorised power instead of a Python call per item: trending is recomputed
    over the whole catalogue every second while answers are being served.
    """
    exponents = np.array([np.nan if s is None else s for s in scores], dtype=np.float64)
    counts = np.power(2.0, exponents - float(now) / half_life)
    return np.where(np.isnan(exponents), 0.0, counts)
