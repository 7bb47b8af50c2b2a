"""Retraining: train on everything in the store, promote only when it is not worse.

:func:`retrain` reads the store (one snapshot, with its watermark), fits and
publishes a new version WITHOUT making it current, then decides:

* no version is serving (first training) -> promote;
* the serving version cannot be loaded -> promote (anything beats a broken model);
* otherwise the new version is promoted unless its validation NDCG@10 is below the
  serving version's by more than ``settings.retrain_tolerance`` of it (relative:
  0.02 means up to 2% worse still promotes).

Which numbers are compared, so that the comparison is honest:

* ``remeasured``: the serving version is served the new run's own selection users
  (validation users held out from the ranker, rebuilt with the run's seed exactly as
  :mod:`reco.training.fit` draws them) from the earlier part of their data, judged
  on their next interactions; the new version's number is the one its fit measured
  on the same users, histories and items. Used only when the serving version never
  trained on any of those next interactions (none is at or below its
  ``store_watermark``): a version that saw the answers scores far higher than it
  deserves (on ml-100k, 0.40 against an honest 0.21 NDCG@10).
* ``manifest``: otherwise (the usual case: most validation interactions are older
  than the serving version), each version's own validation NDCG@10 from its
  manifest: both measured by the same code and protocol, out of sample, on their own
  snapshots. Fair for data that grew; when the data shifted, the two are different
  exams, which the tolerance has to absorb. The re-measured number is still recorded.

The decision is recorded in the new version's manifest (``retrain``), the registry
history (a promotion with its reason, or ``not_promoted``) and the store's
``model_versions`` row (``metrics.retrain``); the service hot-reloads a promotion.
One retrain runs at a time per models folder (a file lock).
"""

from __future__ import annotations

import fcntl
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select

from reco.config import PipelineConfig, Settings
from reco.data import schema
from reco.data.dataset import Dataset
from reco.errors import ArtifactError, RecoError
from reco.evaluation.protocol import evaluation_users, relevance_matrix, validation_split
from reco.pipeline.history import Histories
from reco.pipeline.pipeline import Pipeline
from reco.registry import ModelRegistry
from reco.store.repository import (
    StoreFrames,
    load_frames,
    record_model_version,
    set_current_version,
)
from reco.store.tables import interactions
from reco.training import fit
from reco.training.job import TrainResult, load_current, train

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
LOCK_FILE = ".retrain.lock"


@dataclass(frozen=True)
class Comparison:
    """The new and the serving version's validation NDCG@10 on the same users."""

    candidate: float
    serving: float
    basis: str
    users: int
    tolerance: float
    serving_remeasured: float
    serving_trained_share: float | None

    @property
    def floor(self) -> float:
        """The lowest candidate score that still promotes."""
        return self.serving * (1.0 - self.tolerance)

    @property
    def promotes(self) -> bool:
        """True when the candidate is not worse than the serving version beyond tolerance."""
        if math.isnan(self.serving):
            return True
        return not math.isnan(self.candidate) and self.candidate >= self.floor


@dataclass(frozen=True)
class RetrainResult:
    """What a retrain did: the new version, whether it serves now, and why."""

    version: str
    promoted: bool
    reason: str
    previous: str | None
    comparison: Comparison | None
    train: TrainResult
    store_watermark: int
    seconds: float

    def record(self) -> dict[str, Any]:
        """The JSON-ready decision stored in the manifest and the store."""
        return {
            "promoted": self.promoted,
            "reason": self.reason,
            "previous": self.previous,
            "comparison": asdict(self.comparison) if self.comparison else None,
        }


def retrain(
    engine: Engine, settings: Settings, *, progress: Progress | None = None
) -> RetrainResult:
    """Train on the whole store and promote the result only if it is not worse.

    Raises RecoError when another retrain holds the lock or there is nothing to train.
    """
    say = progress or (lambda message: log.info(message))
    started = time.perf_counter()
    registry = ModelRegistry(settings.models_dir)
    with _exclusive(registry):
        previous = registry.current_version()
        say("reading the store")
        frames = load_frames(engine)
        result = train(frames, settings, progress=say, promote=False)
        comparison, reason = None, "first model: nothing was serving"
        if previous is not None:
            comparison, reason = _judge(engine, frames, settings, previous, result, say)
        promoted = comparison is None or comparison.promotes
        outcome = RetrainResult(
            version=result.version,
            promoted=promoted,
            reason=reason,
            previous=previous,
            comparison=comparison,
            train=result,
            store_watermark=frames.watermark,
            seconds=time.perf_counter() - started,
        )
        _record(engine, registry, outcome)
    say(("promoted " if promoted else "kept unpromoted ") + f"{result.version}: {reason}")
    return outcome


def _judge(
    engine: Engine,
    frames: StoreFrames,
    settings: Settings,
    previous: str,
    result: TrainResult,
    say: Progress,
) -> tuple[Comparison | None, str]:
    """Compare the candidate with the serving version; (comparison, reason)."""
    try:
        _, bundle = load_current(settings, previous)
        old_manifest = ModelRegistry(settings.models_dir).get(previous).manifest
    except ArtifactError as exc:
        return None, f"the serving version {previous} cannot be loaded ({exc})"
    metric = fit.SELECTION_METRIC
    candidate = float(result.selection.validation[result.selected][metric])
    say(f"re-measuring the serving version {previous} on the new validation users")
    data = Dataset.from_frames(frames.interactions, frames.items, frames.users)
    measured = remeasure(bundle.pipeline, data, settings.pipeline, seed=settings.seed)
    trained_share = _trained_share(engine, frames, old_manifest.get("store_watermark"), measured)
    old_selected = old_manifest.get("selected_model")
    old_own = old_manifest.get("metrics", {}).get("validation", {}).get(old_selected, {})
    if trained_share == 0.0 or old_own.get(metric) is None:
        basis, serving = "remeasured", measured.score
    else:
        basis, serving = "manifest", float(old_own[metric])
    comparison = Comparison(
        candidate=candidate,
        serving=serving,
        basis=basis,
        users=measured.n_users,
        tolerance=settings.retrain_tolerance,
        serving_remeasured=measured.score,
        serving_trained_share=trained_share,
    )
    verdict = "not worse beyond" if comparison.promotes else "worse than the serving version beyond"
    where = (
        f"on the same {measured.n_users:,} validation users"
        if basis == "remeasured"
        else "each on its own validation users (the serving version trained on "
        + ("an unknown share" if trained_share is None else f"{trained_share:.0%}")
        + " of the new validation interactions)"
    )
    reason = (
        f"{metric} {candidate:.4f} vs serving {previous} {serving:.4f} {where}: {verdict} "
        f"the tolerance {settings.retrain_tolerance:.1%} (floor {comparison.floor:.4f})"
    )
    return comparison, reason


@dataclass(frozen=True)
class Remeasured:
    """A pipeline's NDCG@10 on a run's selection users, and those users' next items."""

    score: float
    n_users: int
    user_ids: np.ndarray
    item_ids: np.ndarray


def _trained_share(
    engine: Engine, frames: StoreFrames, watermark: Any, measured: Remeasured
) -> float | None:
    """Share of the selection users' next interactions the serving version trained on
    (their (user, item) among the store's interactions up to its watermark); None when
    it recorded no watermark."""
    if not isinstance(watermark, int) or frames.interactions is None:
        return None
    if len(measured.user_ids) == 0:
        return 0.0
    with engine.connect() as connection:
        upto = connection.execute(
            select(func.count()).where(interactions.c.id <= watermark)
        ).scalar_one()
    # The frames come in id order: their first rows are those up to the watermark.
    trained = frames.interactions.iloc[: int(upto)]
    known = set(
        zip(trained[schema.USER].astype(str), trained[schema.ITEM].astype(str), strict=True)
    )
    pairs = zip(measured.user_ids, measured.item_ids, strict=True)
    return sum((u, i) in known for u, i in pairs) / len(measured.user_ids)


def remeasure(
    pipeline: Pipeline, data: Dataset, config: PipelineConfig, *, seed: int
) -> Remeasured:
    """NDCG@10 of a fitted ``pipeline`` on ``data``'s selection users and their next items.

    The users, their earlier histories, next items and the allowed catalogue are
    exactly those :func:`reco.training.fit.fit_pipeline` measures a new fit of
    ``data`` on (same ``config`` and ``seed``). The pipeline's own vocabularies may
    differ from ``data``'s: histories are translated by item id, items it does not
    know are left out of its histories and can only be missed.
    """
    inner, validation = validation_split(data, seed=seed)
    users = evaluation_users(validation, inner)
    rng = np.random.default_rng(seed)
    if len(users) > config.ranker.max_users:
        users = np.sort(rng.choice(users, config.ranker.max_users, replace=False))
    # Same draws in the same order as fit_pipeline, so the same users are held out.
    groups = fit._user_groups(len(users), config, rng)
    selected = users[groups == fit._SELECT]
    relevant = relevance_matrix(validation, inner, selected)
    coo = relevant.tocoo()
    user_ids = data.users.ids[selected[coo.row]].astype(str)
    item_ids = data.items.ids[coo.col].astype(str)
    if len(selected) == 0:
        return Remeasured(float("nan"), 0, user_ids, item_ids)
    allowed = inner.item_counts() > 0

    known = pipeline.items.lookup(data.items.ids)  # data item -> pipeline item (-1)
    row_of = np.full(data.n_users, -1, dtype=np.int64)
    row_of[selected] = np.arange(len(selected))
    rows = row_of[inner.user_idx]
    mask = rows >= 0
    seen_types = pipeline.config.seen_event_types
    seen = (
        np.ones(int(mask.sum()), dtype=bool)
        if seen_types is None
        else np.isin(inner.event_types[mask], list(seen_types))
    )
    histories = Histories.from_events(
        len(selected),
        len(pipeline.items),
        rows[mask],
        known[inner.item_idx[mask]],
        weights=inner.weights[mask],
        times=inner.timestamps[mask],
        seen=seen,
    )
    serving_allowed = np.zeros(len(pipeline.items), dtype=bool)
    serving_allowed[known[allowed & (known >= 0)]] = True
    found = pipeline.recommend(
        histories,
        fit.MEASURE_N,
        request_times=_last_times(inner, rows, mask, len(selected)),
        allowed=serving_allowed,
    )
    back = data.items.lookup(pipeline.items.ids)  # pipeline item -> data item (-1)
    top = np.where(found.items >= 0, back[np.maximum(found.items, 0)], -1)
    score = fit._measure(top, relevant, allowed)[fit.SELECTION_METRIC]
    return Remeasured(score, len(selected), user_ids, item_ids)


def _last_times(inner: Dataset, rows: np.ndarray, mask: np.ndarray, n_rows: int) -> np.ndarray:
    """Each row's latest event time in the earlier part (the request time fit uses)."""
    times = np.full(n_rows, -np.inf)
    np.maximum.at(times, rows[mask], np.nan_to_num(inner.timestamps[mask], nan=-np.inf))
    return np.where(np.isinf(times), np.nan, times)


def _record(engine: Engine, registry: ModelRegistry, outcome: RetrainResult) -> None:
    """Write the decision to the manifest, the registry history and the store."""
    decision = outcome.record()
    registry.annotate(outcome.version, {"retrain": decision})
    entry = registry.get(outcome.version)
    record_model_version(
        engine,
        version=outcome.version,
        path=str(entry.path.resolve()),
        metrics={**entry.manifest.get("metrics", {}), "retrain": decision},
        config_hash=entry.manifest.get("config_hash", ""),
        data_fingerprint=entry.manifest.get("data_fingerprint", ""),
    )
    if outcome.promoted:
        registry.promote(outcome.version, reason=outcome.reason)
        set_current_version(engine, outcome.version)
    else:
        registry.record_not_promoted(outcome.version, outcome.reason)


@contextmanager
def _exclusive(registry: ModelRegistry) -> Iterator[None]:
    """Hold the models folder's retrain lock (not waiting: a second retrain is refused)."""
    registry.root.mkdir(parents=True, exist_ok=True)
    with (registry.root / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RecoError(
                f"another retrain is running on {registry.root}; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
