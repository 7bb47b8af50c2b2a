"""Candidate sources: fitted models, looked up by registry name, each with a quota.

Every source is a model under the Recommender contract (:mod:`reco.models`). The
pipeline asks each for its dense scores over the catalogue for a block of rows, takes
its top ``quota`` as the source's proposals and keeps the scores as ranker features.
Sources that answer from a request context (segment popularity) get the context; a
source that cannot learn from the data (no item text, no user attributes, no
timestamps) raises NotApplicableError while fitting and is switched off with a log line.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.errors import ConfigurationError, NotApplicableError
from reco.models import create_model, model_class
from reco.models.base import BaseRecommender

log = logging.getLogger(__name__)

Context = Mapping[str, Any]
Progress = Callable[[str], None]

# Sources whose scores do not depend on the history: they rank the same for everyone
# (or for everyone in a segment), so cold users can be served by them.
POPULARITY_SOURCES = ("popularity", "trending", "segment_popularity")
# Sources whose scores are the same for every row (whatever the history or user):
# the pipeline ranks them once per batch, not once per row.
ROW_INDEPENDENT = ("popularity", "trending")
SEGMENT_SOURCE = "segment_popularity"
TRENDING_SOURCE = "trending"


@dataclass(frozen=True)
class FittedSources:
    """The sources that could be fitted, how long each took, and why others were off."""

    models: dict[str, BaseRecommender]
    fit_seconds: dict[str, float]
    skipped: dict[str, str]


def source_params(
    name: str, model_params: Mapping[str, Mapping[str, Any]], seed: int
) -> dict[str, Any]:
    """Constructor parameters of source ``name``: the configured ones, plus the seed."""
    params: dict[str, Any] = dict(model_params.get(name, {}))
    if "seed" in inspect.signature(model_class(name)).parameters:
        params.setdefault("seed", seed)
    return params


def fit_sources(
    data: Dataset,
    names: Sequence[str],
    model_params: Mapping[str, Mapping[str, Any]],
    *,
    seed: int,
    progress: Progress | None = None,
) -> FittedSources:
    """Fit every named source on ``data``; those that do not apply are skipped.

    A source raising NotApplicableError (it cannot use this data) or
    ConfigurationError (e.g. a catalogue too large for EASE) is left out with the
    reason logged and returned in ``skipped``; any other error propagates.
    """
    say = progress or (lambda message: log.info(message))
    models: dict[str, BaseRecommender] = {}
    seconds: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for name in names:
        model = create_model(name, **source_params(name, model_params, seed))
        say(f"fitting source {name}")
        started = time.perf_counter()
        try:
            model.fit(data)
        except (NotApplicableError, ConfigurationError) as exc:
            skipped[name] = str(exc)
            log.warning("source %s switched off: %s", name, exc)
            continue
        seconds[name] = time.perf_counter() - started
        models[name] = model
    return FittedSources(models=models, fit_seconds=seconds, skipped=skipped)


def dense_scores(
    model: BaseRecommender,
    matrix: csr_matrix,
    users: np.ndarray,
    contexts: Sequence[Context] | None = None,
) -> np.ndarray:
    """Scores of every catalogue item for each history row (float32, NaN: cannot score).

    Rows with a non-empty context are scored from it by sources that understand
    contexts (``score_context``); the others from history, with each row's training
    user index (-1: unknown) for sources that take it.
    """
    items = np.arange(matrix.shape[1])
    if isinstance(model, BaseRecommender):
        # The pipeline sizes its blocks itself, so it takes the base class's block
        # scorer directly: all items in one array, without score()'s per-item copy,
        # and with each row's user for models whose scores use it (attributes).
        checked = model._check_histories(matrix)
        scores = model._scores_with_fallback(checked, users, 0, checked.shape[0])
        # Written into below: copy only if the model handed out memory it keeps.
        scores = np.require(scores, dtype=np.float32, requirements=["C", "W", "O"])
    else:
        scores = np.asarray(_score(model, matrix, items, users), dtype=np.float32)
    if contexts is not None and hasattr(model, "score_context"):
        with_context = np.flatnonzero([bool(c) for c in contexts])
        if len(with_context):
            scores[with_context] = model.score_context(
                [contexts[row] for row in with_context], items
            )
    return scores


def _score(model: Any, histories: Any, items: np.ndarray, users: np.ndarray) -> np.ndarray:
    if "users" in inspect.signature(model.score).parameters:
        return model.score(histories, items, users=users)
    return model.score(histories, items)


def user_contexts(
    sources: Mapping[str, BaseRecommender],
    users: np.ndarray,
    contexts: Sequence[Context | None] | None,
) -> list[dict[str, Any]]:
    """Each row's context: the user's training attributes, updated by the request's.

    The attributes come from the segment source (as segment labels it understands);
    without that source only the request contexts are known.
    """
    n = len(users)
    base: list[dict[str, Any]] = [{} for _ in range(n)]
    segment = sources.get(SEGMENT_SOURCE)
    if segment is not None and hasattr(segment, "user_context"):
        known = np.flatnonzero(users >= 0)
        if len(known):
            for row, context in zip(known, segment.user_context(users[known]), strict=True):
                base[row] = dict(context)
    if contexts is not None:
        if len(contexts) != n:
            raise ValueError(f"contexts must have one entry per row ({n}), got {len(contexts)}")
        for row, context in enumerate(contexts):
            if context:
                base[row].update({str(k): v for k, v in context.items() if v is not None})
    return base
