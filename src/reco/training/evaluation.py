"""The pipeline under the evaluation protocol (DESIGN.md), next to its sources alone.

Split train/test by the protocol; fit the whole pipeline on train only (its own
validation split, ranker and auto-selection happen inside train); then rank for every
test user from their train history, the request made right after their last train
interaction. Each source is reported alone from the pipeline's own fit, and reference
models are fitted under the protocol beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from reco.config import PipelineConfig, Settings
from reco.data.dataset import Dataset
from reco.data.schema import Frames
from reco.evaluation.protocol import (
    EvaluationReport,
    ModelEvaluation,
    evaluate_model,
    evaluate_recommendations,
    evaluation_users,
    holdout_report,
)
from reco.models.base import BaseRecommender
from reco.pipeline.history import Histories
from reco.pipeline.pipeline import RANKER_MODE, Pipeline
from reco.training.fit import PipelineFit, fit_pipeline

PIPELINE_LABEL = "pipeline"
N = 20
Progress = Callable[[str], None]


@dataclass(frozen=True)
class PipelineEvaluation:
    """The protocol report and the pipeline fit (on train) behind it."""

    report: EvaluationReport
    fit: PipelineFit


def evaluate_pipeline(
    data: Dataset,
    config: PipelineConfig,
    *,
    model_params: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 42,
    name: str = "dataset",
    references: Mapping[str, BaseRecommender] | None = None,
    progress: Progress | None = None,
) -> PipelineEvaluation:
    """Evaluate the pipeline, each of its sources alone and ``references`` (unfitted
    models, fitted here on train) under the protocol."""
    say = progress or (lambda _message: None)
    say(f"splitting {name}: {data.n_interactions:,} interactions")
    train, test, report = holdout_report(data, name=name, seed=seed)
    started = time.perf_counter()
    fit = fit_pipeline(train, config, model_params=model_params, seed=seed, progress=say)
    fit_seconds = time.perf_counter() - started

    for source, model in fit.pipeline.sources.items():
        say(f"evaluating {source} alone")
        evaluation = evaluate_model(model, train, test, fit=False, n=N, name=source)
        seconds = fit.seconds.get(f"source {source}", 0.0)
        report.evaluations.append(replace(evaluation, fit_seconds=seconds))

    say("evaluating the pipeline")
    served = fit.pipeline
    label = PIPELINE_LABEL if served.mode == RANKER_MODE else f"{PIPELINE_LABEL} ({served.mode})"
    report.evaluations.append(
        evaluate_served(served, train, test, fit_seconds=fit_seconds, name=label)
    )
    if served.mode != RANKER_MODE and served.ranker is not None:
        # Shown for transparency: the ranker that validation did not choose.
        with_ranker = replace(served, mode=RANKER_MODE, _derived={})
        report.evaluations.append(
            evaluate_served(
                with_ranker,
                train,
                test,
                fit_seconds=fit_seconds,
                name="pipeline (ranker, unserved)",
            )
        )
    for label, model in (references or {}).items():
        say(f"evaluating reference {label}")
        report.evaluations.append(evaluate_model(model, train, test, n=N, name=label))
    return PipelineEvaluation(report=report, fit=fit)


def evaluate_frames(
    frames: Frames, settings: Settings, name: str, progress: Progress | None = None
) -> EvaluationReport:
    """The protocol report of the configured pipeline on ``frames``: the pipeline,
    each source alone, and the reference models (``settings.models``) that are not
    pipeline sources, fitted alone."""
    from reco.training.job import build_models

    data = Dataset.from_frames(frames.interactions, frames.items, frames.users)
    references = {
        label: model
        for label, model in build_models(settings).items()
        if label not in settings.pipeline.sources
    }
    evaluation = evaluate_pipeline(
        data,
        settings.pipeline,
        model_params=settings.model_params,
        seed=settings.seed,
        name=name,
        references=references,
        progress=progress,
    )
    return evaluation.report


def evaluate_served(
    pipeline: Pipeline,
    train: Dataset,
    test: Dataset,
    *,
    fit_seconds: float = 0.0,
    name: str = PIPELINE_LABEL,
) -> ModelEvaluation:
    """Metrics of the pipeline's top-20 for every test user, ranked from train.

    The request time of each user is their last train interaction (the protocol's
    test items are what they did next); only items with train interactions are
    ranked and the user's train items never are, as for every model.
    """
    users = evaluation_users(test, train)
    histories = Histories.from_dataset(
        train, users, seen_event_types=pipeline.config.seen_event_types
    )
    in_train = train.item_counts() > 0
    started = time.perf_counter()
    result = pipeline.recommend(
        histories, N, request_times=histories.last_times(), allowed=in_train
    )
    predict_seconds = time.perf_counter() - started
    _check_protocol(name, result.items, histories, in_train)
    return ModelEvaluation(
        name=name,
        metrics=evaluate_recommendations(result.items, test, train),
        fit_seconds=fit_seconds,
        predict_seconds=predict_seconds,
    )


def _check_protocol(
    name: str, items: np.ndarray, histories: Histories, in_train: np.ndarray
) -> None:
    """Fail loudly if the pipeline ranked a train item or an item unseen in train."""
    valid = items >= 0
    if not in_train[items[valid]].all():
        raise ValueError(f"{name} recommended an item with no train interaction")
    rows = np.repeat(np.arange(items.shape[0]), items.shape[1]).reshape(items.shape)
    seen = np.asarray(histories.matrix[rows[valid], items[valid]]).ravel() != 0
    if seen.any():
        raise ValueError(f"{name} recommended an item from the user's train history")
