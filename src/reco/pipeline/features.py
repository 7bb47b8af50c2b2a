"""Ranker features of (request row, candidate item) pairs, computed for whole batches.

Everything is causal with respect to the request time: item popularity, age and
idleness count only interactions at or before it, so features computed for the
ranker's training rows (requests in the past) mean what they mean when serving now.

Feature groups (names in :func:`feature_names`):

* per source: its score for the item, the item's rank among the source's proposals
  (NaN when it did not propose it) and the gap to the row's best score;
* recency: scores of the history-based sources from only the row's last k items
  (what the user did last predicts what they do next);
* item: interactions all-time and in recent windows, age and idleness in days;
* user: history size and days since their last interaction;
* user-item: share of the user's history in the item's categories (mean and max);
* time: hour and weekday (UTC) of the request; how many sources proposed the item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.sparse import csr_matrix

from reco.pipeline.catalog import Catalog
from reco.pipeline.history import Histories, row_entries

SECONDS_PER_DAY = 86_400.0
ITEM_FEATURES = ("item_count", "item_age_days", "item_idle_days")
USER_FEATURES = ("user_history", "user_idle_days")
AFFINITY_FEATURES = ("category_affinity_mean", "category_affinity_max")
TIME_FEATURES = ("request_hour", "request_weekday", "n_sources")


def window_name(days: float) -> str:
    """Feature name of the item popularity in the ``days`` before the request."""
    return f"item_count_{days:g}d"


def feature_names(
    sources: Sequence[str],
    recent_sources: Sequence[str],
    recent_lengths: Sequence[int],
    windows_days: Sequence[float],
) -> list[str]:
    """The ranker's features, in column order, for the given fitted sources."""
    names: list[str] = []
    for source in sources:
        names += [f"{source}_score", f"{source}_rank", f"{source}_gap"]
    for source in recent_sources:
        for length in recent_lengths:
            names += [f"{source}_last{length}", f"{source}_last{length}_gap"]
    names += list(ITEM_FEATURES) + [window_name(d) for d in windows_days]
    names += list(USER_FEATURES) + list(AFFINITY_FEATURES) + list(TIME_FEATURES)
    return names


def assemble(columns: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """The float32 feature matrix (pairs x features) in the order of ``names``.

    Column-major: each feature is written as one contiguous run, and LightGBM reads
    this layout without a copy.
    """
    missing = [name for name in names if name not in columns]
    if missing:
        raise KeyError(f"features not computed: {missing}")
    n = len(next(iter(columns.values()))) if columns else 0
    out = np.empty((n, len(names)), dtype=np.float32, order="F")
    for k, name in enumerate(names):
        out[:, k] = columns[name]
    return out


class ItemClock:
    """Answers "how many interactions did item i have up to time t" for many pairs.

    One sorted int64 key per training interaction (item, then second) lets a single
    ``searchsorted`` answer a whole batch of (item, time) queries.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.timed = catalog.timed
        if not self.timed:
            return
        times = np.floor(catalog.times)
        self.t_min = float(times.min())
        self.span = int(times.max() - self.t_min) + 3
        per_item = np.diff(catalog.time_indptr)
        owners = np.repeat(np.arange(catalog.n_items, dtype=np.int64), per_item)
        self.keys = owners * self.span + (times - self.t_min + 1).astype(np.int64)

    def key(self, items: np.ndarray, times: np.ndarray) -> np.ndarray:
        """The search key of (``items[k]``, ``times[k]``): ``searchsorted(keys, key,
        "right")`` is one past the item's last interaction at or before that time."""
        offset = np.clip(np.floor(times) - self.t_min + 1, 0, self.span - 1)
        return items.astype(np.int64) * self.span + offset.astype(np.int64)


def item_features(
    clock: ItemClock,
    items: np.ndarray,
    times: np.ndarray,
    windows_days: Sequence[float],
) -> dict[str, np.ndarray]:
    """Popularity (all-time and per window), age and idleness of ``items[k]`` at ``times[k]``:
    interactions at or before the time (NaN time: all time), in each window of days
    before it, and days since the first and the latest of them (NaN: none, or unknown)."""
    n = len(items)
    catalog = clock.catalog
    out = {"item_count": catalog.counts[items].astype(np.float64)}
    first = np.full(n, np.nan)
    last = np.full(n, np.nan)
    windows = np.full((len(windows_days), n), np.nan)
    if clock.timed:
        known = np.flatnonzero(~np.isnan(times))
        known_items, known_times = items[known], times[known]
        starts = catalog.time_indptr[known_items]
        # One search for the request times and one for every window's start.
        ends = np.searchsorted(clock.keys, clock.key(known_items, known_times), side="right")
        out["item_count"][known] = ends - starts
        since = known_times[None, :] - np.asarray(windows_days)[:, None] * SECONDS_PER_DAY
        lower = np.searchsorted(
            clock.keys, clock.key(np.tile(known_items, len(windows_days)), since.ravel()), "right"
        )
        windows[:, known] = ends - lower.reshape(since.shape)
        some = ends > starts
        first[known[some]] = catalog.times[starts[some]]
        last[known[some]] = catalog.times[ends[some] - 1]
    out["item_age_days"] = (times - first) / SECONDS_PER_DAY
    out["item_idle_days"] = (times - last) / SECONDS_PER_DAY
    for days, window in zip(windows_days, windows, strict=True):
        out[window_name(days)] = window
    return out


def user_features(
    histories: Histories, rows: np.ndarray, request_times: np.ndarray
) -> dict[str, np.ndarray]:
    """History size and days since the last interaction, per pair's row."""
    lengths = histories.lengths().astype(np.float64)
    idle = (request_times - histories.last_times()) / SECONDS_PER_DAY
    return {"user_history": lengths[rows], "user_idle_days": idle[rows]}


def affinity_features(
    catalog: Catalog, histories: Histories, rows: np.ndarray, items: np.ndarray
) -> dict[str, np.ndarray]:
    """Share of the row's history in each of the item's categories: mean and max.

    NaN for items without categories (and everywhere when the catalogue has none).
    """
    n_pairs = len(rows)
    mean = np.full(n_pairs, np.nan)
    best = np.full(n_pairs, np.nan)
    if catalog.categories.shape[1] == 0 or n_pairs == 0:
        return {"category_affinity_mean": mean, "category_affinity_max": best}
    categories = catalog.categories
    n_columns = categories.shape[1]
    # Categories of every history entry and of every pair's item, as flat arrays:
    # scipy's products and row indexing cost more than the counting for a few rows.
    entry_rows = np.repeat(np.arange(histories.n_rows), histories.lengths())
    entry_owner, entry_categories = _item_categories(categories, histories.matrix.indices)
    cells = entry_rows[entry_owner] * n_columns + entry_categories
    counts = np.bincount(cells, minlength=histories.n_rows * n_columns)
    lengths = np.maximum(histories.lengths(), 1).astype(np.float64)
    shares = counts.reshape(histories.n_rows, n_columns) / lengths[:, None]
    pair_owner, pair_category = _item_categories(categories, items)
    values = shares[rows[pair_owner], pair_category]
    n_categories = np.bincount(pair_owner, minlength=n_pairs)
    has = n_categories > 0
    sums = np.bincount(pair_owner, weights=values, minlength=n_pairs)
    mean[has] = sums[has] / n_categories[has]
    maxima = np.full(n_pairs, -np.inf)
    np.maximum.at(maxima, pair_owner, values)
    best[has] = maxima[has]
    return {"category_affinity_mean": mean, "category_affinity_max": best}


def _item_categories(categories: csr_matrix, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (position in ``items``, category) pair of the binary items x categories
    matrix, as two flat arrays."""
    owner, entries = row_entries(categories.indptr, items)
    return owner, categories.indices[entries]


def time_features(request_times: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Hour of day and weekday (0 = Monday, UTC) of each pair's request."""
    times = request_times[rows]
    known = ~np.isnan(times)
    hour = np.full(len(rows), np.nan)
    weekday = np.full(len(rows), np.nan)
    seconds = np.floor(times[known])
    hour[known] = (seconds % SECONDS_PER_DAY) // 3600
    # 1970-01-01 was a Thursday (weekday 3).
    weekday[known] = (seconds // SECONDS_PER_DAY + 3) % 7
    return {"request_hour": hour, "request_weekday": weekday}
