"""Fitting the pipeline honestly: validation split -> ranker -> auto-selection -> refit.

1. The protocol's holdout applied inside the data gives an earlier part and each
   user's next interactions (validation). Test data, when there is any, is never here.
2. Every source is fitted on the earlier part; each validation user's request is
   scored (candidates and features, request time = their last known interaction) and
   labelled with their next interactions.
3. Validation users are split by user: the ranker learns from one group and stops
   early on the NDCG@10 of another; a third group, never used for training, measures
   every source alone and the full pipeline.
4. The best of those on NDCG@10 is served: the pipeline is never worse on validation
   than its best single source.
5. The cold route is tuned where the settings leave it open: the weight of trending
   in the cold users' blend (users held out whole, served from their attributes,
   popularity sources refitted without them), and the history length from which
   the warm route serves better (held-out validation users served from only their
   last k items by each route).
6. The sources are refitted on all the data (``refit_on_all``) so the served models
   know every interaction; the ranker stays as trained.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from reco.config import PipelineConfig
from reco.data.dataset import Dataset
from reco.errors import RecoError
from reco.evaluation import metrics
from reco.evaluation.protocol import evaluation_users, relevance_matrix, validation_split
from reco.pipeline.candidates import CandidateGenerator
from reco.pipeline.catalog import Catalog
from reco.pipeline.filters import Filters, blocked
from reco.pipeline.history import Histories
from reco.pipeline.pipeline import RANKER_MODE, Pipeline
from reco.pipeline.ranker import Ranker, RankerData
from reco.pipeline.sources import (
    SEGMENT_SOURCE,
    TRENDING_SOURCE,
    fit_sources,
    user_contexts,
)

log = logging.getLogger(__name__)

SELECTION_METRIC = "ndcg@10"
PIPELINE_NAME = "pipeline"
MEASURE_N = 20
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Selection:
    """What auto-selection measured and chose.

    ``validation`` maps "pipeline" and every source name to its metrics on the
    selection users (validation users never used to train the ranker); ``chosen`` is
    "pipeline" or the source served alone; ``ranker`` describes the ranker's training;
    ``cold_route`` the NDCG@10 of each trending weight tried for cold users, and the
    weight chosen.
    """

    metric: str
    chosen: str
    validation: dict[str, dict[str, float]]
    users: dict[str, int]
    ranker: dict[str, Any] = field(default_factory=dict)
    cold_route: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for the manifest)."""
        return {
            "metric": self.metric,
            "chosen": self.chosen,
            "validation": self.validation,
            "users": self.users,
            "ranker": self.ranker,
            "cold_route": self.cold_route,
        }


@dataclass(frozen=True)
class PipelineFit:
    """A fitted pipeline, its selection, the sources switched off and the timings."""

    pipeline: Pipeline
    selection: Selection
    skipped: dict[str, str]
    seconds: dict[str, float]


def fit_pipeline(
    data: Dataset,
    config: PipelineConfig,
    *,
    model_params: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 42,
    progress: Progress | None = None,
) -> PipelineFit:
    """Fit the pipeline on ``data`` (the module docstring has the steps)."""
    say = progress or (lambda message: log.info(message))
    params = model_params or {}
    clock = _Stopwatch()
    if data.n_interactions == 0:
        raise RecoError("there are no interactions to train on; ingest some with `reco ingest`")

    inner, validation = validation_split(data, seed=seed)
    users = evaluation_users(validation, inner)
    if len(users) == 0:
        raise RecoError(
            "no user has the 5 interactions needed for a validation split; add more "
            "interactions before training"
        )
    names = list(config.sources)
    say(f"validation split: {inner.n_interactions:,} earlier, {validation.n_interactions:,} next")
    fitted = fit_sources(inner, names, params, seed=seed, progress=say)
    if not fitted.models:
        raise RecoError(f"no source could be fitted on this data: {fitted.skipped}")
    clock.lap("fit sources (validation)")

    rng = np.random.default_rng(seed)
    if len(users) > config.ranker.max_users:
        users = np.sort(rng.choice(users, config.ranker.max_users, replace=False))
    groups = _user_groups(len(users), config, rng)
    catalog = Catalog.from_dataset(inner)
    generator = CandidateGenerator(fitted.models, config, catalog)
    histories = Histories.from_dataset(inner, users, seen_event_types=config.seen_event_types)
    request_times = histories.last_times()
    allowed = inner.item_counts() > 0
    relevant = relevance_matrix(validation, inner, users)
    use_ranker = config.ranker.enabled
    say(f"candidates and features for {len(users):,} validation users")
    ranker_data, tops = _score_validation(
        generator, histories, request_times, allowed, relevant, config, with_features=use_ranker
    )
    clock.lap("candidates and features")

    holdout = np.flatnonzero(groups == _SELECT)
    measured = {
        name: _measure(top[holdout], relevant[holdout], allowed) for name, top in tops.items()
    }
    ranker, ranker_info = None, {}
    if use_ranker:
        say("training the LightGBM ranker")
        try:
            ranker = Ranker.fit(
                ranker_data.requests(groups == _TRAIN),
                ranker_data.requests(groups == _STOP),
                generator.feature_names,
                config.ranker,
                seed=seed,
            )
        except RecoError as exc:
            log.warning("ranker skipped: %s", exc)
            ranker_info = {"skipped": str(exc)}
        clock.lap("train ranker")
    if ranker is not None:
        inner_pipeline = Pipeline(
            config=config,
            users=data.users,
            items=data.items,
            sources=fitted.models,
            catalog=catalog,
            ranker=ranker,
            mode=RANKER_MODE,
            history=Histories.empty(0, data.n_items),
            data_end=np.nan,
        )
        served = inner_pipeline.recommend(
            histories.take(holdout),
            MEASURE_N,
            request_times=request_times[holdout],
            allowed=allowed,
        )
        measured[PIPELINE_NAME] = _measure(served.items, relevant[holdout], allowed)
        ranker_info = {
            "rounds": ranker.n_rounds,
            "importance": dict(list(ranker.importance().items())[:15]),
        }
        clock.lap("measure pipeline")

    cold_route: dict[str, Any] = {}
    if config.cold_trending_weight is None:
        cold_route = _choose_cold_blend(config, data, params, seed)
        config = config.model_copy(update={"cold_trending_weight": cold_route["chosen"]})
        clock.lap("choose the cold-user blend")

    best_source = max(tops, key=lambda name: measured[name][SELECTION_METRIC])
    chosen = best_source
    if PIPELINE_NAME in measured and (
        measured[PIPELINE_NAME][SELECTION_METRIC] >= measured[best_source][SELECTION_METRIC]
    ):
        chosen = PIPELINE_NAME
    say(
        f"selected {chosen} ({SELECTION_METRIC} {measured[chosen][SELECTION_METRIC]:.4f} on "
        f"{len(holdout):,} held-out validation users; best source {best_source} "
        f"{measured[best_source][SELECTION_METRIC]:.4f})"
    )
    if config.cold_history_threshold is None:
        served_inner = Pipeline(
            config=config,
            users=data.users,
            items=data.items,
            sources=fitted.models,
            catalog=catalog,
            ranker=ranker,
            mode=RANKER_MODE if chosen == PIPELINE_NAME else chosen,
            history=Histories.empty(0, data.n_items),
            data_end=np.nan,
        )
        routing = _choose_cold_threshold(
            served_inner, histories.take(holdout), relevant[holdout], allowed
        )
        if routing["chosen"] > 1:
            # The threshold must not cost the served pipeline what selection measured:
            # serve the held-out validation users (whole histories) with it once more.
            routed = replace(
                served_inner,
                config=config.model_copy(update={"cold_history_threshold": routing["chosen"]}),
                _derived={},
            )
            found = routed.recommend(
                histories.take(holdout),
                MEASURE_N,
                request_times=request_times[holdout],
                allowed=allowed,
            )
            with_threshold = _measure(found.items, relevant[holdout], allowed)[SELECTION_METRIC]
            routing["served_ndcg@10"] = with_threshold
            if with_threshold < measured[chosen][SELECTION_METRIC]:
                routing["rejected"] = routing["chosen"]
                routing["chosen"] = 1
        cold_route["threshold"] = routing
        config = config.model_copy(update={"cold_history_threshold": routing["chosen"]})
        clock.lap("choose the cold threshold")

    final_models = fitted.models
    seconds = dict(fitted.fit_seconds)
    if config.refit_on_all:
        refitted = fit_sources(data, list(fitted.models), params, seed=seed, progress=say)
        for name, reason in refitted.skipped.items():
            log.warning("source %s could not be refitted on all data (%s); keeping its "
                        "validation fit", name, reason)  # fmt: skip
        final_models = {
            name: refitted.models.get(name, fitted.models[name]) for name in fitted.models
        }
        seconds = dict(refitted.fit_seconds)
        clock.lap("refit sources on all data")
    say("assembling the pipeline")
    timed = ~np.isnan(data.timestamps)
    pipeline = Pipeline(
        config=config,
        users=data.users,
        items=data.items,
        sources=final_models,
        catalog=Catalog.from_dataset(data),
        ranker=ranker,
        mode=RANKER_MODE if chosen == PIPELINE_NAME else chosen,
        history=Histories.from_dataset(
            data, np.arange(data.n_users), seen_event_types=config.seen_event_types
        ),
        data_end=float(data.timestamps[timed].max()) if timed.any() else np.nan,
    )
    clock.lap("assemble")
    selection = Selection(
        metric=SELECTION_METRIC,
        chosen=chosen,
        validation=measured,
        users={
            "ranker_train": int((groups == _TRAIN).sum()),
            "ranker_stop": int((groups == _STOP).sum()),
            "selection": len(holdout),
        },
        ranker=ranker_info,
        cold_route=cold_route,
    )
    timings = {f"source {name}": value for name, value in seconds.items()}
    timings.update(clock.laps)
    return PipelineFit(
        pipeline=pipeline, selection=selection, skipped=fitted.skipped, seconds=timings
    )


# -- helpers --------------------------------------------------------------------------

_TRAIN, _STOP, _SELECT = 0, 1, 2


def _user_groups(n_users: int, config: PipelineConfig, rng: np.random.Generator) -> np.ndarray:
    """Assign each validation user to ranker training, early stopping or selection."""
    groups = np.full(n_users, _TRAIN, dtype=np.int64)
    order = rng.permutation(n_users)
    n_select = max(1, round(n_users * config.ranker.selection_share))
    n_stop = max(1, round((n_users - n_select) * config.ranker.early_stopping_share))
    groups[order[:n_select]] = _SELECT
    groups[order[n_select : n_select + n_stop]] = _STOP
    return groups


COLD_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
COLD_USERS_SHARE = 0.1
COLD_USERS_MAX = 5_000


ROUTE_LENGTHS = (1, 2, 3, 5, 10, 20)
ROUTE_MIN_USERS = 20


def _choose_cold_threshold(
    pipeline: Pipeline, histories: Histories, relevant: Any, allowed: np.ndarray
) -> dict[str, Any]:
    """The history length from which the warm route serves better than the cold one.

    Held-out validation users are served from only their last ``k`` items, once by
    each route, for k in ``ROUTE_LENGTHS`` (users with at least k items); the
    threshold is the smallest k from which the warm route wins at every measured
    length (1: warm wins everywhere, only empty histories go cold).
    """
    warm_route = replace(
        pipeline,
        config=pipeline.config.model_copy(update={"cold_history_threshold": 0}),
        _derived={},
    )
    cold_route = replace(
        pipeline,
        config=pipeline.config.model_copy(update={"cold_history_threshold": 10**9}),
        _derived={},
    )
    lengths = histories.lengths()
    results: dict[str, dict[str, float]] = {}
    for k in ROUTE_LENGTHS:
        rows = np.flatnonzero(lengths >= k)
        if len(rows) < ROUTE_MIN_USERS:
            continue
        last_k = _last_items(histories.take(rows), k)
        times = last_k.last_times()
        results[str(k)] = {
            route: _measure(
                served.recommend(last_k, MEASURE_N, request_times=times, allowed=allowed).items,
                relevant[rows],
                allowed,
            )[SELECTION_METRIC]
            for route, served in (("warm", warm_route), ("cold", cold_route))
        }
    chosen = 1
    measured = [int(k) for k in results]
    for k in sorted(measured, reverse=True):
        if results[str(k)]["warm"] < results[str(k)]["cold"]:
            chosen = next((m for m in sorted(measured) if m > k), k + 1)
            break
    return {"chosen": chosen, "ndcg@10": results}


def _last_items(histories: Histories, k: int) -> Histories:
    """The rows cut to their ``k`` most recent items."""
    coo = histories.matrix.tocoo()
    keep = histories.recency.data < k
    order = np.lexsort((-histories.recency.data[keep], coo.row[keep]))
    return Histories.from_events(
        histories.n_rows,
        histories.n_items,
        coo.row[keep][order],
        coo.col[keep][order],
        weights=coo.data[keep][order],
        times=histories.times.data[keep][order],
        seen=histories.seen.data[keep][order] > 0,
        users=histories.users,
    )


def _choose_cold_blend(
    config: PipelineConfig,
    data: Dataset,
    params: Mapping[str, Mapping[str, Any]],
    seed: int,
) -> dict[str, Any]:
    """The trending weight of the cold route that serves new users best.

    New users are simulated honestly: ``COLD_USERS_SHARE`` of the users are held out
    whole, the popularity sources (cheap) are fitted on the others, and each
    held-out user is served from their attributes alone; every item they interacted
    with is relevant. Ties go to the smaller weight.
    """
    names = [n for n in (SEGMENT_SOURCE, "popularity", TRENDING_SOURCE) if n in config.sources]
    if TRENDING_SOURCE not in names or len(names) < 2:
        return {"chosen": 0.0, "ndcg@10": {}, "note": "needs trending and a popularity source"}
    active = np.flatnonzero(data.user_counts() > 0)
    rng = np.random.default_rng(seed)
    size = min(COLD_USERS_MAX, max(1, round(COLD_USERS_SHARE * len(active))))
    held = np.sort(rng.choice(active, size, replace=False))
    rest = data.subset(~np.isin(data.user_idx, held))
    fitted = fit_sources(rest, names, params, seed=seed, progress=lambda _m: None)
    if TRENDING_SOURCE not in fitted.models or len(fitted.models) < 2:
        return {"chosen": 0.0, "ndcg@10": {}, "note": "trending or popularity did not apply"}
    allowed = rest.item_counts() > 0
    mine = np.isin(data.user_idx, held) & allowed[data.item_idx]
    rows = np.searchsorted(held, data.user_idx[mine])
    relevant = csr_matrix(
        (np.ones(int(mine.sum()), np.float32), (rows, data.item_idx[mine])),
        shape=(len(held), data.n_items),
    )
    relevant.sum_duplicates()
    strangers = Histories.empty(len(held), data.n_items)
    # Their attributes, as a request would carry them (held-out users' interactions
    # were never seen by the sources fitted here; their attributes are public).
    contexts = user_contexts(fitted.models, held, None)
    catalog = Catalog.from_dataset(rest)
    scores = {}
    for weight in COLD_WEIGHTS:
        cold = Pipeline(
            config=config.model_copy(update={"cold_trending_weight": weight}),
            users=data.users,
            items=data.items,
            sources=fitted.models,
            catalog=catalog,
            ranker=None,
            mode=next(iter(fitted.models)),
            history=Histories.empty(0, data.n_items),
            data_end=np.nan,
        )
        found = cold.recommend(strangers, MEASURE_N, contexts=contexts, allowed=allowed)
        scores[str(weight)] = _measure(found.items, relevant, allowed)[SELECTION_METRIC]
    best = max(COLD_WEIGHTS, key=lambda w: (scores[str(w)], -w))
    return {"chosen": best, "ndcg@10": scores, "held_out_users": len(held)}


def _score_validation(
    generator: CandidateGenerator,
    histories: Histories,
    request_times: np.ndarray,
    allowed: np.ndarray,
    relevant: Any,
    config: PipelineConfig,
    *,
    with_features: bool,
) -> tuple[RankerData | None, dict[str, np.ndarray]]:
    """Candidates, features and labels of every validation user, and each source's
    own top-``MEASURE_N`` (for measuring the sources alone)."""
    contexts = user_contexts(generator.sources, histories.users, None)
    step = generator.block_rows()
    features, labels, sizes = [], [], []
    tops: dict[str, list[np.ndarray]] = {name: [] for name in generator.sources}
    no_filters = [Filters()]
    for start in range(0, histories.n_rows, step):
        rows = np.arange(start, min(start + step, histories.n_rows))
        block = histories.take(rows)
        banned = blocked(
            generator.catalog,
            None,
            block,
            no_filters * len(rows),
            exclude_seen=config.exclude_seen,
            allowed=allowed,
        )
        found = generator.generate(
            block,
            [contexts[r] for r in rows],
            banned,
            request_times[rows],
            with_features=with_features,
            also_top=MEASURE_N,
        )
        for name, top in found.source_tops.items():
            tops[name].append(top)
        if with_features:
            truth = relevant[rows]
            hits = truth[found.rows, found.items] if len(found.rows) else np.zeros(0)
            labels.append(np.asarray(hits).ravel() > 0)
            features.append(found.features)
            sizes.append(np.bincount(found.rows, minlength=len(rows)))
    stacked = {name: np.vstack(parts) for name, parts in tops.items()}
    if not with_features:
        return None, stacked
    return (
        RankerData(
            features=np.vstack(features),
            labels=np.concatenate(labels).astype(np.float32),
            groups=np.concatenate(sizes),
        ),
        stacked,
    )


def _measure(recommended: np.ndarray, relevant: Any, allowed: np.ndarray) -> dict[str, float]:
    """The protocol's metrics of rankings against the validation items."""
    k, recall_k = 10, MEASURE_N
    top = np.asarray(recommended)[:, :recall_k]
    return {
        f"ndcg@{k}": _mean(metrics.ndcg_at_k(top, relevant, k)),
        f"recall@{recall_k}": _mean(metrics.recall_at_k(top, relevant, recall_k)),
        f"precision@{k}": _mean(metrics.precision_at_k(top, relevant, k)),
        f"map@{k}": _mean(metrics.map_at_k(top, relevant, k)),
        f"coverage@{k}": metrics.catalog_coverage_at_k(top, k, allowed),
    }


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if len(finite) else float("nan")


class _Stopwatch:
    """Named laps of wall-clock seconds."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now
