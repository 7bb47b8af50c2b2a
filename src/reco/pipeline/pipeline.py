"""The Pipeline: a frozen, fitted multi-stage recommender.

For a batch of history rows:

1. route: rows with fewer than ``cold_history_threshold`` history items are cold;
2. cold rows: context popularity (segment popularity for the row's attributes and
   request context, blended with trending);
3. warm rows: every source proposes its quota -> one merged candidate set per row ->
   features -> the LightGBM ranker (or, when auto-selection chose a single source,
   that source's own ranking);
4. all rows: filters (applied before proposals), diversity and exploration when
   configured, fallback fill to ``n`` with popular items, and an explanation on
   every item.

Only this layer speaks external ids (:meth:`Pipeline.recommend_users`); the stages
work on vocabulary indices.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError as PydanticValidationError
from threadpoolctl import ThreadpoolController

from reco.config import PipelineConfig
from reco.data.vocabulary import Vocabulary
from reco.errors import ArtifactError, RecoError, ValidationError
from reco.models import load_model
from reco.models.base import BaseRecommender
from reco.pipeline.candidates import CandidateGenerator, top_k
from reco.pipeline.catalog import Catalog
from reco.pipeline.diversity import exploration_slots, interleave, mmr, unit_rows
from reco.pipeline.explain import EXPLORATION, FALLBACK, Explainer
from reco.pipeline.filters import blocked, filters_per_row
from reco.pipeline.history import Histories
from reco.pipeline.ranker import Ranker
from reco.pipeline.sources import (
    SEGMENT_SOURCE,
    TRENDING_SOURCE,
    dense_scores,
    user_contexts,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PIPELINE_FILE = "pipeline.json"
STATE_FILE = "state.npz"
RANKER_FILE = "ranker.txt"
USERS_FILE = "vocab/users.json"
ITEMS_FILE = "vocab/items.json"
SOURCES_DIR = "sources"
RANKER_MODE = "ranker"
HISTORY_PREFIX = "history_"
# Sources whose dense scores can rank items new enough for exploration.
EXPLORATION_SOURCES = ("content", "two_tower", TRENDING_SOURCE, "popularity")
SECONDS_PER_DAY = 86_400.0


class UnknownItemError(RecoError):
    """A request named an item the pipeline was not trained with (a service: 404)."""


@dataclass(frozen=True)
class Recommendation:
    """One recommended item as the outside world sees it."""

    item_id: str
    score: float
    source: str
    explanation: str


@dataclass(frozen=True, eq=False)
class Recommendations:
    """Top-n lists of a batch, row-aligned: item indices (-1 empty), scores (within a
    row: higher is better, descending), the source and the reason of each item."""

    items: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    reasons: np.ndarray


@dataclass(frozen=True, eq=False)
class Pipeline:
    """A fitted multi-stage recommender; build it with ``reco.training.fit``.

    ``mode`` is ``"ranker"`` (warm rows reranked by ``ranker``) or the name of the
    single source auto-selection chose to serve. ``history`` holds the training
    users' histories (row = training user index), so known users are served by id.
    ``data_end`` is the newest training timestamp (NaN without timestamps): the
    default request time when none is given.
    """

    config: PipelineConfig
    users: Vocabulary
    items: Vocabulary
    sources: dict[str, BaseRecommender]
    catalog: Catalog
    ranker: Ranker | None
    mode: str
    history: Histories
    data_end: float
    _derived: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.mode != RANKER_MODE and self.mode not in self.sources:
            raise ArtifactError(f"pipeline mode {self.mode!r} names no fitted source")
        if self.mode == RANKER_MODE and self.ranker is None:
            raise ArtifactError("pipeline mode 'ranker' needs a ranker")
        if self.ranker is not None and self.ranker.feature_names != self.generator.feature_names:
            raise ArtifactError(
                "the ranker's features do not match the pipeline's sources and settings; "
                "retrain with `reco train`"
            )

    # -- derived helpers (not saved) ---------------------------------------------------

    @property
    def cold_threshold(self) -> int:
        """History length below which a row is cold (unset: only empty rows are)."""
        threshold = self.config.cold_history_threshold
        return 1 if threshold is None else int(threshold)

    @property
    def generator(self) -> CandidateGenerator:
        """The warm route's candidate generator."""
        if "generator" not in self._derived:
            self._derived["generator"] = CandidateGenerator(self.sources, self.config, self.catalog)
        return self._derived["generator"]

    @property
    def explainer(self) -> Explainer:
        """Writes the reasons."""
        if "explainer" not in self._derived:
            self._derived["explainer"] = Explainer(
                self.sources, self.catalog, self.config.explain_history_template
            )
        return self._derived["explainer"]

    @property
    def fallback_order(self) -> np.ndarray:
        """Items by training popularity, most popular first (the fallback fill)."""
        if "fallback" not in self._derived:
            counts = self.catalog.counts
            order = np.lexsort((np.arange(len(counts)), -counts))
            self._derived["fallback"] = order[counts[order] > 0]
        return self._derived["fallback"]

    # -- index-level API ---------------------------------------------------------------

    def with_global_scores(self, scores: Mapping[str, np.ndarray]) -> Pipeline:
        """This pipeline with row-independent sources ranking by ``scores`` (source name
        -> one score per item, -inf: never proposed), for every route: warm proposals
        and ranker features, the cold blend and exploration.

        The online hook: the service passes trending recomputed from the online decayed
        counts (``np.log(features.trending_scores(items.ids))``). Cheap (a sort of the
        catalogue per replaced source); the fitted models and ``self`` are not changed.
        """
        # Built here once so the copy shares them instead of building its own.
        _ = self.explainer, self.fallback_order
        generator = self.generator.with_global_scores(scores)
        derived = {**self._derived, "generator": generator}
        return replace(self, sources=generator.sources, _derived=derived)

    def recommend(
        self,
        histories: Histories,
        n: int,
        *,
        contexts: Sequence[Mapping[str, Any] | None] | None = None,
        request_times: np.ndarray | None = None,
        filters: Any = None,
        allowed: np.ndarray | None = None,
        threads: int | None = None,
    ) -> Recommendations:
        """Top-``n`` explained recommendations for each history row.

        ``contexts``: per row, request attributes (device, country, age, ...) that
        add to or override the user's stored attributes. ``request_times``: per row,
        epoch seconds (default: the later of the training data's end and the row's
        latest event). ``filters``: one :class:`Filters` (or dict) for all rows or one
        per row. ``allowed``: a boolean mask over items to restrict every row to.
        ``threads``: scoring threads (default ``config.scoring_threads``; a service
        worker uses 1, its cores being shared with the other workers).
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if histories.n_items != len(self.items):
            raise ValueError(
                f"histories have {histories.n_items} item columns; the pipeline knows "
                f"{len(self.items)} items"
            )
        if allowed is not None:
            allowed = np.asarray(allowed)
            if allowed.dtype != bool or allowed.shape != (len(self.items),):
                raise ValueError(
                    f"allowed must be a boolean mask over the {len(self.items)} items, got "
                    f"dtype {allowed.dtype} and shape {allowed.shape}"
                )
        # Many small matrix products: one BLAS thread each is several times faster than
        # threads fighting over two cores (DESIGN.md, "Habits").
        with _blas_controller().limit(limits=1, user_api="blas"):
            return self._recommend(histories, n, contexts, request_times, filters, allowed, threads)

    def _recommend(
        self,
        histories: Histories,
        n: int,
        contexts: Sequence[Mapping[str, Any] | None] | None,
        request_times: np.ndarray | None,
        filters: Any,
        allowed: np.ndarray | None,
        threads: int | None,
    ) -> Recommendations:
        n_rows = histories.n_rows
        row_filters = filters_per_row(filters, n_rows)
        row_contexts = user_contexts(self.sources, histories.users, contexts)
        times = self._request_times(histories, request_times)
        out = Recommendations(
            items=np.full((n_rows, n), -1, dtype=np.int64),
            scores=np.full((n_rows, n), -np.inf, dtype=np.float32),
            sources=np.full((n_rows, n), None, dtype=object),
            reasons=np.full((n_rows, n), None, dtype=object),
        )
        cold = histories.lengths() < self.cold_threshold
        threads = max(1, self.config.scoring_threads if threads is None else threads)
        blocks = []
        for route_rows, route in (
            (np.flatnonzero(cold), self._cold),
            (np.flatnonzero(~cold), self._warm),
        ):
            for rows in _split_rows(route_rows, self.generator.block_rows(), threads):
                blocks.append((rows, route))
        # Derived helpers are built once here, not raced for by the threads.
        _ = self.generator, self.explainer, self.fallback_order

        def run(rows: np.ndarray, route: Any) -> None:
            block = histories.take(rows)
            contexts_block = [row_contexts[r] for r in rows]
            banned = blocked(
                self.catalog,
                self.items,
                block,
                [row_filters[r] for r in rows],
                exclude_seen=self.config.exclude_seen,
                allowed=allowed,
            )
            items, scores, sources = route(block, contexts_block, banned, times[rows], n)
            items, scores, sources = self._explore(
                block, items, scores, sources, banned, times[rows], contexts_block
            )
            items, scores, sources = self._fill(items, scores, sources, banned)
            valid = items >= 0
            reasons = np.full(items.shape, None, dtype=object)
            reasons[valid] = self.explainer.explain(
                block, np.nonzero(valid)[0], items[valid], sources[valid], contexts_block
            )
            # Each block owns its rows of the output: no two threads write the same row.
            out.items[rows] = items
            out.scores[rows] = scores
            out.sources[rows] = np.where(valid, sources, None)
            out.reasons[rows] = reasons

        if threads == 1 or len(blocks) == 1:
            for rows, route in blocks:
                run(rows, route)
        else:
            # numpy, scipy's sparse products and LightGBM release the GIL in their
            # inner loops, so blocks scored on two threads use two cores.
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for done in [pool.submit(run, rows, route) for rows, route in blocks]:
                    done.result()
        return out

    def _request_times(self, histories: Histories, given: np.ndarray | None) -> np.ndarray:
        if given is not None:
            given = np.asarray(given, dtype=np.float64)
            if given.shape != (histories.n_rows,):
                raise ValueError(
                    f"request_times must have one entry per row ({histories.n_rows}), "
                    f"got shape {given.shape}"
                )
            return given
        latest = histories.last_times()
        return np.fmax(latest, self.data_end)

    def _warm(
        self,
        block: Histories,
        contexts: list[dict[str, Any]],
        banned: np.ndarray,
        times: np.ndarray,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Warm rows: the served source's ranking, or candidates reranked."""
        width = n * 3 if self.config.diversity > 0 else n
        if self.mode != RANKER_MODE:
            items, scores = self.generator.source_top(self.mode, block, contexts, banned, width)
            sources = np.where(items >= 0, self.mode, None).astype(object)
        else:
            candidates = self.generator.generate(block, contexts, banned, times)
            ranked = self.ranker.predict(candidates.features)
            items, scores, sources = _top_by_row(
                candidates.rows, candidates.items, ranked, candidates.primary, block.n_rows, width
            )
        if self.config.diversity > 0:
            items, scores, sources = self._diversify(items, scores, sources, n)
        return items, scores, sources

    def _cold(
        self,
        block: Histories,
        contexts: list[dict[str, Any]],
        banned: np.ndarray,
        times: np.ndarray,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cold rows: segment popularity for their context, blended with trending."""
        parts: dict[str, np.ndarray] = {}
        for name in (SEGMENT_SOURCE, "popularity"):
            if name in self.sources:
                raw = dense_scores(self.sources[name], block.matrix, block.users, contexts)
                parts[name] = _shares(raw)
                break
        if TRENDING_SOURCE in self.sources:
            raw = dense_scores(self.sources[TRENDING_SOURCE], block.matrix, block.users)
            parts[TRENDING_SOURCE] = _shares(np.exp(raw - np.nanmax(raw, axis=1, keepdims=True)))
        if not parts:
            counts = self.catalog.counts.astype(np.float32)
            parts["popularity"] = _shares(np.tile(counts, (block.n_rows, 1)))
        weight = (self.config.cold_trending_weight or 0.0) if len(parts) > 1 else 0.0
        names = list(parts)
        weights = [1.0 - weight] + [weight] * (len(names) - 1)
        blend = sum(w * parts[name] for w, name in zip(weights, names, strict=True))
        blend = np.where(banned | np.isnan(blend), -np.inf, blend).astype(np.float32)
        items, scores = top_k(blend, n)
        # The part that brought the most to the blended score is the item's source.
        contributions = np.stack([w * parts[name] for w, name in zip(weights, names, strict=True)])
        rows = np.repeat(np.arange(block.n_rows)[:, None], n, axis=1)
        strongest = np.argmax(contributions[:, rows, np.maximum(items, 0)], axis=0)
        sources = np.asarray(names, dtype=object)[strongest]
        sources[items < 0] = None
        return items, scores, sources

    def _diversify(
        self, items: np.ndarray, scores: np.ndarray, sources: np.ndarray, n: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        vectors = self._item_vectors()
        picked, picked_scores = mmr(items, scores, vectors, n, self.config.diversity)
        source_of = {}
        for row in range(items.shape[0]):
            for item, source in zip(items[row], sources[row], strict=True):
                source_of[(row, int(item))] = source
        picked_sources = np.array(
            [
                [source_of.get((row, int(item))) for item in picked[row]]
                for row in range(picked.shape[0])
            ],
            dtype=object,
        ).reshape(picked.shape)
        return picked, picked_scores, picked_sources

    def _item_vectors(self) -> np.ndarray:
        if "vectors" not in self._derived:
            vectors = None
            if self.config.diversity_by == "embeddings":
                for name in ("two_tower", "als"):
                    model = self.sources.get(name)
                    found = getattr(model, "item_embeddings_", None)
                    found = getattr(model, "item_factors_", None) if found is None else found
                    if found is not None:
                        vectors = found
                        break
            if vectors is None:
                vectors = self.catalog.categories
            self._derived["vectors"] = unit_rows(vectors)
        return self._derived["vectors"]

    def _explore(
        self,
        block: Histories,
        items: np.ndarray,
        scores: np.ndarray,
        sources: np.ndarray,
        banned: np.ndarray,
        times: np.ndarray,
        contexts: list[dict[str, Any]],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Give ``exploration_share`` of each list to new items (off by default)."""
        slots = exploration_slots(items.shape[1], self.config.exploration_share)
        if len(slots) == 0:
            return items, scores, sources
        name = next((s for s in EXPLORATION_SOURCES if s in self.sources), None)
        if name is None:
            return items, scores, sources
        first = self.catalog.first_seen()
        cutoff = times - self.config.new_item_days * SECONDS_PER_DAY
        # New: never interacted with in training, or first seen within the window.
        new = np.isnan(first)[None, :] | (first[None, :] >= cutoff[:, None])
        raw = dense_scores(self.sources[name], block.matrix, block.users, contexts)
        raw = np.where(banned | ~new | np.isnan(raw), -np.inf, raw).astype(np.float32)
        explore, _ = top_k(raw, len(slots))
        mixed, is_explore = interleave(items, explore, slots)
        score_of = {
            (r, int(i)): s
            for r in range(items.shape[0])
            for i, s in zip(items[r], scores[r], strict=True)
        }
        source_of = {
            (r, int(i)): s
            for r in range(items.shape[0])
            for i, s in zip(items[r], sources[r], strict=True)
        }
        new_scores = np.full(mixed.shape, -np.inf, dtype=np.float32)
        new_sources = np.full(mixed.shape, None, dtype=object)
        for r in range(mixed.shape[0]):
            for k, item in enumerate(mixed[r]):
                if item < 0:
                    continue
                if is_explore[r, k]:
                    new_sources[r, k] = EXPLORATION
                    new_scores[r, k] = new_scores[r, k - 1] if k else np.inf
                else:
                    new_sources[r, k] = source_of[(r, int(item))]
                    new_scores[r, k] = score_of[(r, int(item))]
        # Scores stay non-increasing down the list: an inserted item takes its slot's.
        new_scores = np.minimum.accumulate(new_scores, axis=1)
        return mixed, new_scores, new_sources

    def _fill(
        self, items: np.ndarray, scores: np.ndarray, sources: np.ndarray, banned: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fill empty slots with the most popular items the row may get."""
        short = np.flatnonzero((items < 0).any(axis=1))
        if len(short) == 0:
            return items, scores, sources
        order = self.fallback_order
        for row in short:
            have = items[row][items[row] >= 0]
            free = order[~banned[row, order] & ~np.isin(order, have)]
            slots = np.flatnonzero(items[row] < 0)[: len(free)]
            items[row, slots] = free[: len(slots)]
            floor = scores[row][np.isfinite(scores[row])]
            start = float(floor.min()) if len(floor) else 0.0
            # Below every ranked item, still in popularity order.
            scores[row, slots] = start - 1.0 - np.arange(len(slots), dtype=np.float32)
            sources[row, slots] = FALLBACK
        return items, scores, sources

    # -- external-id API ---------------------------------------------------------------

    def histories_for(
        self,
        user_ids: Sequence[str],
        events: pd.DataFrame | None = None,
    ) -> Histories:
        """History rows for external user ids: their training history plus ``events``
        (a canonical interaction frame of newer interactions, any users)."""
        user_ids = [str(u) for u in user_ids]
        stored = _stored_rows(self.history, self.users.lookup(user_ids))
        if events is None or len(events) == 0:
            return stored
        lookup = Vocabulary(pd.unique(np.asarray(user_ids, dtype=object)))
        event_rows = lookup.lookup(events["user_id"].to_numpy())
        event_items = self.items.lookup(events["item_id"].to_numpy())
        times = None
        if "timestamp" in events:
            times = events["timestamp"].astype("float64").to_numpy(na_value=np.nan)
        seen = None
        if self.config.seen_event_types is not None and "event_type" in events:
            seen = np.isin(
                events["event_type"].to_numpy(dtype=object), self.config.seen_event_types
            )
        keep = (event_rows >= 0) & (event_items >= 0)
        return stored.with_events(
            event_rows[keep],
            event_items[keep],
            times=None if times is None else times[keep],
            seen=None if seen is None else seen[keep],
        )

    def recommend_users(
        self,
        user_ids: Sequence[str],
        n: int,
        *,
        contexts: Sequence[Mapping[str, Any] | None] | None = None,
        filters: Any = None,
        events: pd.DataFrame | None = None,
        request_time: float | None = None,
    ) -> list[list[Recommendation]]:
        """Explained top-``n`` per user id (known or not), for the service and batch jobs.

        ``contexts``: one dict per user (or None); ``filters``: one for all or one per
        user (:class:`Filters` or dict); ``events``: interactions newer than training
        (canonical frame); ``request_time``: epoch seconds for every row (default:
        see :meth:`recommend`).
        """
        user_ids = [str(u) for u in user_ids]
        if len(set(user_ids)) != len(user_ids):
            raise ValidationError(["user ids must not repeat in one request"], source="request")
        histories = self.histories_for(user_ids, events)
        times = None if request_time is None else np.full(len(user_ids), float(request_time))
        result = self.recommend(
            histories, n, contexts=contexts, request_times=times, filters=filters
        )
        return self.to_external(result)

    def to_external(self, result: Recommendations) -> list[list[Recommendation]]:
        """Index-level recommendations as lists of :class:`Recommendation` per row."""
        out = []
        ids = self.items.ids
        for row in range(result.items.shape[0]):
            valid = np.flatnonzero(result.items[row] >= 0)
            out.append(
                [
                    Recommendation(
                        item_id=str(ids[result.items[row, k]]),
                        score=float(result.scores[row, k]),
                        source=str(result.sources[row, k]),
                        explanation=str(result.reasons[row, k]),
                    )
                    for k in valid
                ]
            )
        return out

    def similar_items(self, item_id: str, n: int = 10) -> list[Recommendation]:
        """Items most like ``item_id``: its item-kNN neighbours, then content neighbours.

        UnknownItemError when the item is unknown; RecoError when no source can
        relate it (no interactions and no content).
        """
        try:
            item = self.items.index_of(str(item_id))
        except KeyError:
            raise UnknownItemError(
                f"unknown item {item_id!r}: it is not in the trained catalogue of "
                f"{len(self.items):,} items; check the id, or ingest it and retrain"
            ) from None
        found: list[Recommendation] = []
        taken = {item}
        title = self.catalog.titles[item]
        knn = self.sources.get("itemknn")
        similarity = getattr(knn, "similarity_", None)
        if similarity is not None:
            row = similarity[item]
            order = np.lexsort((row.indices, -row.data))
            for k in order:
                other = int(row.indices[k])
                if other in taken or row.data[k] <= 0 or not self.catalog.available[other]:
                    continue
                taken.add(other)
                found.append(
                    Recommendation(
                        str(self.items.ids[other]),
                        float(row.data[k]),
                        "itemknn",
                        f"people who watched {title} also watched it",
                    )
                )
                if len(found) == n:
                    return found
        content = self.sources.get("content")
        if content is not None and hasattr(content, "similar_items"):
            others, cosines = content.similar_items(np.array([item]), n + len(taken))
            for other, cosine in zip(others[0], cosines[0], strict=True):
                if other < 0 or int(other) in taken or not self.catalog.available[other]:
                    continue
                taken.add(int(other))
                found.append(
                    Recommendation(
                        str(self.items.ids[other]),
                        float(cosine),
                        "content",
                        f"similar in content to {title}",
                    )
                )
                if len(found) == n:
                    break
        if not found:
            raise RecoError(
                f"no source can relate item {item_id!r} to others: it has no interactions "
                "and no content (title, text, categories) the pipeline learned from"
            )
        return found

    # -- persistence -------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write the pipeline to ``folder``: JSON, npz, model folders, LightGBM text."""
        folder = Path(folder)
        (folder / "vocab").mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT_VERSION,
            "config": self.config.model_dump(mode="json"),
            "mode": self.mode,
            "sources": list(self.sources),
            "feature_names": self.generator.feature_names,
            "data_end": None if np.isnan(self.data_end) else float(self.data_end),
            "has_ranker": self.ranker is not None,
        }
        (folder / PIPELINE_FILE).write_text(json.dumps(meta, indent=2))
        (folder / USERS_FILE).write_text(json.dumps(self.users.ids.tolist()))
        (folder / ITEMS_FILE).write_text(json.dumps(self.items.ids.tolist()))
        for name, model in self.sources.items():
            model.save(folder / SOURCES_DIR / name)
        if self.ranker is not None:
            (folder / RANKER_FILE).write_text(self.ranker.to_string())
        arrays = self.catalog.to_arrays()
        arrays.update(self.history.to_arrays(HISTORY_PREFIX))
        np.savez(folder / STATE_FILE, **arrays)

    @classmethod
    def load(cls, folder: Path) -> Pipeline:
        """Read a pipeline written by :meth:`save` (no pickle: nothing runs code)."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / PIPELINE_FILE).read_text())
            if meta.get("format") != FORMAT_VERSION:
                raise ArtifactError(
                    f"{folder} holds pipeline format {meta.get('format')!r}; this reco reads "
                    f"format {FORMAT_VERSION}. Retrain with `reco train`."
                )
            # A pipeline saved before scored_history existed was trained scoring every
            # history item: it keeps serving that way.
            config = PipelineConfig.model_validate({"scored_history": None, **meta["config"]})
            users = Vocabulary(json.loads((folder / USERS_FILE).read_text()))
            items = Vocabulary(json.loads((folder / ITEMS_FILE).read_text()))
            sources = {name: load_model(folder / SOURCES_DIR / name) for name in meta["sources"]}
            ranker = None
            if meta["has_ranker"]:
                ranker = Ranker.from_string(
                    (folder / RANKER_FILE).read_text(), list(meta["feature_names"])
                )
            with np.load(folder / STATE_FILE, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
            catalog = Catalog.from_arrays(arrays)
            history = Histories.from_arrays(arrays, HISTORY_PREFIX)
            data_end = np.nan if meta["data_end"] is None else float(meta["data_end"])
        except ArtifactError:
            raise
        except (OSError, ValueError, KeyError, TypeError, PydanticValidationError,
                zipfile.BadZipFile, EOFError) as exc:  # fmt: skip
            raise ArtifactError(
                f"cannot load the pipeline from {folder}: {exc}. The artifact is missing or "
                "corrupted; retrain with `reco train`."
            ) from exc
        if catalog.n_items != len(items) or history.n_rows != len(users):
            raise ArtifactError(f"{folder}: vocabularies and saved arrays disagree; retrain")
        return cls(
            config=config,
            users=users,
            items=items,
            sources=sources,
            catalog=catalog,
            ranker=ranker,
            mode=str(meta["mode"]),
            history=history,
            data_end=data_end,
        )


# -- helpers --------------------------------------------------------------------------

_BLAS: list[ThreadpoolController] = []


def _blas_controller() -> ThreadpoolController:
    """One threadpoolctl controller per process, made on first use.

    ``threadpool_limits()`` scans every loaded library on each call (about 11 ms, a
    large share of one uncached service answer); the controller scans once.
    """
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0]


def _shares(scores: np.ndarray) -> np.ndarray:
    """Non-negative scores scaled to sum to 1 per row (NaN ignored)."""
    clean = np.where(np.isnan(scores), 0.0, np.maximum(scores, 0.0)).astype(np.float64)
    totals = clean.sum(axis=1, keepdims=True)
    return np.divide(clean, totals, out=np.zeros_like(clean), where=totals > 0)


def _top_by_row(
    rows: np.ndarray,
    items: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    n_rows: int,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the ``n`` pairs with the highest scores (ties: lower item index first)."""
    out_items = np.full((n_rows, n), -1, dtype=np.int64)
    out_scores = np.full((n_rows, n), -np.inf, dtype=np.float32)
    out_labels = np.full((n_rows, n), None, dtype=object)
    if len(rows) == 0:
        return out_items, out_scores, out_labels
    order = np.lexsort((items, -scores, rows))
    rows_sorted = rows[order]
    starts = np.searchsorted(rows_sorted, rows_sorted, side="left")
    position = np.arange(len(order)) - starts
    keep = position < n
    picked = order[keep]
    out_items[rows[picked], position[keep]] = items[picked]
    out_scores[rows[picked], position[keep]] = scores[picked]
    out_labels[rows[picked], position[keep]] = labels[picked]
    return out_items, out_scores, out_labels


def _split_rows(rows: np.ndarray, most: int, threads: int) -> list[np.ndarray]:
    """Blocks of at most ``most`` rows, as even as possible and a multiple of
    ``threads`` in number (so the threads finish together)."""
    if len(rows) == 0:
        return []
    per_thread = -(-len(rows) // threads)
    n_blocks = threads * -(-per_thread // most) if threads > 1 else -(-len(rows) // most)
    return [part for part in np.array_split(rows, min(n_blocks, len(rows))) if len(part)]


def _stored_rows(history: Histories, known: np.ndarray) -> Histories:
    """Rows of the stored training histories for user indices ``known`` (-1: an empty
    row for a user the pipeline never saw)."""
    taken = history.take(np.maximum(known, 0))
    if (known >= 0).all():
        return taken
    coo = taken.matrix.tocoo()
    keep = known[coo.row] >= 0
    # Replay the kept entries oldest first so their recency order survives.
    order = np.lexsort((-taken.recency.data[keep], coo.row[keep]))
    return Histories.from_events(
        taken.n_rows,
        taken.n_items,
        coo.row[keep][order],
        coo.col[keep][order],
        weights=coo.data[keep][order],
        times=taken.times.data[keep][order],
        seen=taken.seen.data[keep][order] > 0,
        users=known,
    )
