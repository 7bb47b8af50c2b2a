"""Candidate generation for warm users: every source proposes, proposals merge, features.

For a block of rows each source scores the whole catalogue once; its top ``quota``
items that no filter blocks are its proposals. The union of proposals (one exclude
set for all sources) are the row's candidates, and the dense scores already computed
give every candidate every source's score as a feature, not only the proposer's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from reco.config import PipelineConfig
from reco.models.base import BaseRecommender
from reco.pipeline.catalog import Catalog
from reco.pipeline.features import (
    ItemClock,
    affinity_features,
    assemble,
    feature_names,
    item_features,
    time_features,
    user_features,
)
from reco.pipeline.history import Histories, stack_rows
from reco.pipeline.sources import ROW_INDEPENDENT, dense_scores

# Dense floats (rows x items, all sources of a block together) held at once.
BLOCK_CELLS = 40_000_000


@dataclass(frozen=True)
class Candidates:
    """The merged candidates of a block: pair ``k`` is item ``items[k]`` for row
    ``rows[k]`` (rows ascending, items ascending within a row).

    ``features`` is pairs x features (None when not asked for); ``primary`` names the
    source that ranked each pair highest among those that proposed it;
    ``source_tops`` holds, when asked for, each source's own top items per row.
    """

    rows: np.ndarray
    items: np.ndarray
    features: np.ndarray | None
    primary: np.ndarray
    source_tops: dict[str, np.ndarray] = field(default_factory=dict)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` highest scores per row, best first (ties: lower index first, also at
    the cut).

    Same contract as :func:`reco.models.base.top_n`: -inf entries are never returned
    (their slots hold -1 and -inf); NaN must already be -inf (the callers mask it).
    """
    n_rows, n_cols = scores.shape
    width = min(k, n_cols)
    out_items = np.full((n_rows, k), -1, dtype=np.int64)
    out_scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if width == 0 or n_rows == 0:
        return out_items, out_scores
    threshold = _cut_bound(scores, width)
    rows, cols = np.nonzero((scores >= threshold[:, None]) & np.isfinite(scores))
    values = scores[rows, cols]
    # Row, then best first; nonzero gives each row's columns ascending and lexsort is
    # stable, so ties keep the lower index. The first ``width`` of each row are its top.
    order = np.lexsort((-values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    slot = np.arange(len(rows)) - starts[rows]
    keep = slot < width
    out_items[rows[keep], slot[keep]] = cols[keep]
    out_scores[rows[keep], slot[keep]] = values[keep]
    return out_items, out_scores


# Blocks per top-k slot in _cut_bound: more blocks, tighter bound, more maxima to sort.
_BLOCKS_PER_SLOT = 8


def _cut_bound(scores: np.ndarray, width: int) -> np.ndarray:
    """Per row a value at most its ``width``-th highest score, from block maxima.

    The row is dealt into blocks (entry ``j`` to block ``j % blocks``). The
    ``width``-th highest block maximum has ``width`` blocks at or above it, each
    holding an entry at least as high, so every entry of the row's top ``width`` is at
    or above it. Few entries besides pass it, so only those are sorted: numpy's
    argpartition over a whole catalogue row costs several times more. A row whose cut
    sits in a run of ties (sparse scores' zeros) lets the whole run pass, which stays
    correct, only slower.
    """
    n_rows, n_cols = scores.shape
    blocks = min(n_cols, width * _BLOCKS_PER_SLOT)
    size = -(-n_cols // blocks)
    padded = np.full((n_rows, blocks * size), -np.inf, dtype=scores.dtype)
    padded[:, :n_cols] = scores
    # Strided blocks: the maximum runs over contiguous rows of ``blocks`` entries.
    maxima = padded.reshape(n_rows, size, blocks).max(axis=1)
    return -np.partition(-maxima, width - 1, axis=1)[:, width - 1]


class CandidateGenerator:
    """Proposals, merge and features for the warm route, from fitted sources."""

    def __init__(
        self,
        sources: Mapping[str, BaseRecommender],
        config: PipelineConfig,
        catalog: Catalog,
    ) -> None:
        self.sources = dict(sources)
        self.quotas = {name: int(config.sources[name]) for name in self.sources}
        self.config = config
        self.catalog = catalog
        self.clock = ItemClock(catalog)
        self.recent_sources = [s for s in config.recent_sources if s in self.sources]
        self.feature_names = feature_names(
            list(self.sources),
            self.recent_sources,
            config.recent_lengths,
            config.popularity_windows_days,
        )
        # Sources that rank every row alike: one global order each, computed once.
        self._global = {
            name: _global_order(model)
            for name, model in self.sources.items()
            if getattr(model, "name", None) in ROW_INDEPENDENT
        }

    def block_rows(self) -> int:
        """Rows :meth:`generate` takes per block to keep its dense scores within bounds.

        Per row it holds each history-based source's scores, their stacked copy for
        the partition, and each recent source's scores of every suffix.
        """
        history_based = len(self.sources) - len(self._global)
        recent = len(self.recent_sources) * len(self.config.recent_lengths)
        dense_rows = 2 * history_based + recent + 1
        return max(1, BLOCK_CELLS // max(1, self.catalog.n_items * dense_rows))

    def with_global_scores(self, scores: Mapping[str, np.ndarray]) -> CandidateGenerator:
        """A copy whose row-independent sources (popularity, trending) rank by ``scores``.

        ``scores`` maps a source name to one score per catalogue item (-inf: the item
        cannot be proposed), e.g. trending recomputed from online decayed counts. The
        copy shares everything else; ``self`` is unchanged. ValueError for a name that
        is not a row-independent source of this pipeline or a vector of the wrong shape.
        """
        other = copy.copy(self)
        other.sources = dict(self.sources)
        other._global = dict(self._global)
        for name, vector in scores.items():
            if name not in self._global:
                raise ValueError(
                    f"{name!r} is not a row-independent source of this pipeline; global "
                    f"scores can replace {sorted(self._global) or 'none'}"
                )
            model = self.sources[name]
            vector = np.asarray(vector, dtype=np.float32)
            if vector.shape != (model.n_items_,):
                raise ValueError(
                    f"global scores of {name!r} need one value per item ({model.n_items_}), "
                    f"got shape {vector.shape}"
                )
            rescored = copy.copy(model)
            # Both names: _score_rows reads item_scores_, empty rows read popularity_.
            rescored.item_scores_ = rescored.popularity_ = vector
            other.sources[name] = rescored
            other._global[name] = _global_order(rescored)
        return other

    def source_top(
        self,
        name: str,
        histories: Histories,
        contexts: Sequence[Mapping[str, Any]],
        blocked: np.ndarray,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One source's own top-``n`` (items, scores) with the filters applied."""
        if name in self._global:
            return self._global_top(name, blocked, n)
        scored = self._scored(histories)
        return top_k(self._masked(name, scored, histories.users, contexts, blocked), n)

    def _masked(
        self,
        name: str,
        scored: csr_matrix,
        users: np.ndarray,
        contexts: Sequence[Mapping[str, Any]],
        blocked: np.ndarray,
    ) -> np.ndarray:
        """Source ``name``'s scores of the ``scored`` rows (see :meth:`_scored`), -inf
        where blocked or undefined."""
        scores = dense_scores(self.sources[name], scored, users, contexts)
        np.copyto(scores, -np.inf, where=blocked | np.isnan(scores))
        return scores

    def _scored(self, histories: Histories) -> csr_matrix:
        """What the sources score: each row's ``scored_history`` most recent items."""
        limit = self.config.scored_history
        if limit is None or histories.lengths().max(initial=0) <= limit:
            return histories.matrix
        return histories.recent(limit)

    def _global_top(self, name: str, blocked: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` of a source that ranks every row alike: walk its one global order.

        Among the first ``n + b`` items of the order at most ``b`` (the most any row
        has blocked) are blocked, so each row finds its ``n`` there: a gather of that
        prefix replaces scoring and partitioning the whole catalogue per row.
        """
        order, vector = self._global[name]
        n_rows = blocked.shape[0]
        out_items = np.full((n_rows, n), -1, dtype=np.int64)
        out_scores = np.full((n_rows, n), -np.inf, dtype=np.float32)
        if n_rows == 0:
            return out_items, out_scores
        most_blocked = int(blocked.sum(axis=1).max())
        prefix = order[: n + most_blocked]
        free = ~blocked[:, prefix]
        rank = np.cumsum(free, axis=1)
        rows, cols = np.nonzero(free & (rank <= n))
        out_items[rows, rank[rows, cols] - 1] = prefix[cols]
        out_scores[rows, rank[rows, cols] - 1] = vector[prefix[cols]]
        return out_items, out_scores

    def generate(
        self,
        histories: Histories,
        contexts: Sequence[Mapping[str, Any]],
        blocked: np.ndarray,
        request_times: np.ndarray,
        *,
        with_features: bool = True,
        also_top: int = 0,
    ) -> Candidates:
        """Candidates (and their features) of every row of the block.

        ``also_top`` > 0 also returns each source's own top ``also_top`` items per row
        (what the source alone would recommend), from the same scores.
        """
        n_rows = histories.n_rows
        widths = {name: max(self.quotas[name], also_top) for name in self.sources}
        masked, recent = self._source_scores(histories, contexts, blocked)
        # One partition over every history-based source's rows: per source, the top
        # of the widest cut is its own top (ties at a cut aside), for a fifth of the calls.
        dense_tops = {}
        if masked:
            stacked = top_k(np.concatenate(list(masked.values())), max(widths[m] for m in masked))
            for k, name in enumerate(masked):
                block = slice(k * n_rows, (k + 1) * n_rows)
                dense_tops[name] = (
                    stacked[0][block, : widths[name]],
                    stacked[1][block, : widths[name]],
                )
        proposals: dict[str, np.ndarray] = {}
        best: dict[str, np.ndarray] = {}
        tops: dict[str, np.ndarray] = {}
        for name in self.sources:
            if name in self._global:
                top, top_scores = self._global_top(name, blocked, widths[name])
            else:
                top, top_scores = dense_tops[name]
            proposals[name] = top[:, : self.quotas[name]]
            # The first proposal is the row's best score among the items it may get.
            best[name] = np.where(top[:, 0] >= 0, top_scores[:, 0], np.nan).astype(np.float64)
            if also_top:
                tops[name] = top[:, :also_top]

        rows, items, rank_rows = _merge(list(proposals.values()), histories.n_items)
        ranks = dict(zip(proposals, rank_rows, strict=True))
        # The source that ranked each pair highest (the first source on ties).
        primary = np.asarray(list(proposals), dtype=object)[
            np.argmin(np.where(np.isnan(rank_rows), np.inf, rank_rows), axis=0)
        ]
        if not with_features:
            return Candidates(rows, items, None, primary, tops)

        columns: dict[str, np.ndarray] = {}
        for name in self.sources:
            if name in self._global:
                values = self._global[name][1][items].astype(np.float64)
            else:
                values = masked.pop(name)[rows, items].astype(np.float64)
            values[~np.isfinite(values)] = np.nan
            columns[f"{name}_score"] = values
            columns[f"{name}_rank"] = ranks[name]
            columns[f"{name}_gap"] = values - best[name][rows]
        columns.update(self._recent_features(recent, n_rows, rows, items))
        pair_times = request_times[rows]
        columns.update(
            item_features(self.clock, items, pair_times, self.config.popularity_windows_days)
        )
        columns.update(user_features(histories, rows, request_times))
        columns.update(affinity_features(self.catalog, histories, rows, items))
        columns.update(time_features(request_times, rows))
        columns["n_sources"] = (~np.isnan(rank_rows)).sum(axis=0).astype(np.float64)
        features = assemble(columns, self.feature_names)
        return Candidates(rows, items, features, primary, tops)

    def _source_scores(
        self,
        histories: Histories,
        contexts: Sequence[Mapping[str, Any]],
        blocked: np.ndarray,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Each history-based source's scores of the rows (-inf where blocked), and each
        recent source's scores of the rows' suffixes (:meth:`Histories.recent_stack`
        over ``recent_lengths``, blocked alike).

        A recent source scores the rows and all their suffixes in one call: rows are
        scored independently, so the answers are those of separate calls, and a
        per-call cost (format checks, copies, the fallback) is paid once, not twice.
        Suffix rows are scored from history alone, without the request context.
        """
        scored = self._scored(histories)
        names = [name for name in self.sources if name not in self._global]
        lengths = list(self.config.recent_lengths)
        together = [name for name in self.recent_sources if name in names] if lengths else []
        main: dict[str, np.ndarray] = {}
        recent: dict[str, np.ndarray] = {}
        if together:
            n_rows, copies = histories.n_rows, 1 + len(lengths)
            joined = stack_rows([scored, histories.recent_stack(lengths)])
            users = np.tile(histories.users, copies)
            joined_contexts = [*contexts, *([{}] * (n_rows * len(lengths)))]
            joined_blocked = np.tile(blocked, (copies, 1))
        for name in names:
            if name in together:
                scores = self._masked(name, joined, users, joined_contexts, joined_blocked)
                main[name], recent[name] = scores[:n_rows], scores[n_rows:]
            else:
                main[name] = self._masked(name, scored, histories.users, contexts, blocked)
        return main, recent

    def _recent_features(
        self, recent: Mapping[str, np.ndarray], n_rows: int, rows: np.ndarray, items: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Each recent source's score of each pair from the row's latest k items only,
        and its gap to that row's best, for every k of ``recent_lengths``, from the
        suffix scores of :meth:`_source_scores`."""
        lengths = list(self.config.recent_lengths)
        columns: dict[str, np.ndarray] = {}
        # Pair k of suffix block b is row b * n_rows + rows[k] of the stacked scores.
        stacked_rows = (np.arange(len(lengths))[:, None] * n_rows + rows).ravel()
        stacked_items = np.tile(items, len(lengths))
        for name, stacked in recent.items():
            values = stacked[stacked_rows, stacked_items].astype(np.float64)
            values[~np.isfinite(values)] = np.nan
            gaps = values - _row_best(stacked)[stacked_rows]
            for k, length in enumerate(lengths):
                pairs = slice(k * len(rows), (k + 1) * len(rows))
                columns[f"{name}_last{length}"] = values[pairs]
                columns[f"{name}_last{length}_gap"] = gaps[pairs]
        return columns


def _merge(
    proposals: Sequence[np.ndarray], n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (row, item) pairs over all sources' proposals (rows x slots, -1 empty),
    sorted, and each pair's 1-based rank among each source's proposals (sources x
    pairs, NaN: that source did not propose it)."""
    keys, sources, positions = [], [], []
    for source, top in enumerate(proposals):
        valid = top >= 0
        row_ids, slots = np.nonzero(valid)
        keys.append(row_ids.astype(np.int64) * n_items + top[valid])
        sources.append(np.full(len(row_ids), source))
        positions.append(slots + 1)
    all_keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
    if len(all_keys) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.full((len(proposals), 0), np.nan)
    # Sorting and dropping repeats beats np.unique's hashing here by about 10x.
    order = np.argsort(all_keys, kind="stable")
    sorted_keys = all_keys[order]
    first = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    pair_of = np.empty(len(all_keys), dtype=np.int64)
    pair_of[order] = np.cumsum(first) - 1
    merged = sorted_keys[first]
    ranks = np.full((len(proposals), len(merged)), np.nan)
    # A source proposes an item at most once per row, so no two entries share a cell.
    ranks[np.concatenate(sources), pair_of] = np.concatenate(positions)
    return merged // n_items, merged % n_items, ranks


def _global_order(model: BaseRecommender) -> tuple[np.ndarray, np.ndarray]:
    """A row-independent source's items best first (ties: lower index) and its scores."""
    empty = csr_matrix((1, model.n_items_), dtype=np.float32)
    vector = dense_scores(model, empty, np.full(1, -1, dtype=np.int64))[0]
    vector = np.where(np.isnan(vector), -np.inf, vector).astype(np.float32)
    order = np.lexsort((np.arange(len(vector)), -vector))
    return order[np.isfinite(vector[order])], vector


def _row_best(scores: np.ndarray) -> np.ndarray:
    """Each row's highest finite score (NaN for a row with none)."""
    best = scores.max(axis=1).astype(np.float64)
    best[~np.isfinite(best)] = np.nan
    return best
