"""The training job: split -> fit each model -> validate -> pick -> refit on all -> publish.

Model selection follows DESIGN.md: the same per-user temporal holdout as the evaluation
protocol, applied inside the training data, ranks the configured models by NDCG@10 on
validation; the winner answers by default. Every model is then refitted on all the data
(so the served models know every interaction) and saved as one registry version.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from reco.config import Settings
from reco.data.dataset import Dataset
from reco.data.schema import Frames
from reco.errors import ConfigurationError, RecoError
from reco.evaluation.protocol import ModelEvaluation, evaluate_model, validation_split
from reco.models import create_model, model_class
from reco.models.base import BaseRecommender
from reco.registry import ModelRegistry
from reco.training.bundle import ModelBundle

log = logging.getLogger(__name__)

SELECTION_METRIC = "ndcg@10"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    version: str
    path: Path
    selected: str
    validation: list[ModelEvaluation]
    skipped: dict[str, str]
    seconds: float


def config_hash(settings: Settings) -> str:
    """A sha256 of the settings that shape the models (names, parameters, seed)."""
    shape = {"models": settings.models, "params": settings.model_params, "seed": settings.seed}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries an artifact depends on, for the manifest."""
    versions = {"python": platform.python_version()}
    for name in ("reco", "numpy", "scipy", "pandas", "implicit", "scikit-learn"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_models(settings: Settings) -> dict[str, BaseRecommender]:
    """Fresh, unfitted instances of the configured models with their parameters."""
    unknown = set(settings.model_params) - set(settings.models)
    if unknown:
        raise ConfigurationError(
            f"model_params names models that are not configured: {sorted(unknown)}; "
            f"configured models are {settings.models}"
        )
    models = {}
    for name in settings.models:
        params: dict[str, Any] = dict(settings.model_params.get(name, {}))
        if "seed" in inspect.signature(model_class(name)).parameters:
            params.setdefault("seed", settings.seed)
        models[name] = create_model(name, **params)
    return models


def train(frames: Frames, settings: Settings, *, progress: Progress | None = None) -> TrainResult:
    """Train every configured model on ``frames``, publish a version and make it current."""
    say = progress or (lambda message: log.info(message))
    started = time.perf_counter()
    data = Dataset.from_frames(frames.interactions, frames.items, frames.users)
    if data.n_interactions == 0:
        raise RecoError("there are no interactions to train on; ingest some with `reco ingest`")
    say(
        f"dataset: {data.n_users:,} users, {data.n_items:,} items, "
        f"{data.n_interactions:,} interactions"
    )

    fit_part, validation_part = validation_split(data, seed=settings.seed)
    if validation_part.n_interactions == 0:
        raise RecoError(
            "no user has the 5 interactions needed for a validation split; "
            "add more interactions before training"
        )
    evaluations: list[ModelEvaluation] = []
    skipped: dict[str, str] = {}
    for name, model in build_models(settings).items():
        say(f"validating {name}")
        try:
            evaluations.append(evaluate_model(model, fit_part, validation_part))
        except ConfigurationError as exc:
            skipped[name] = str(exc)
            say(f"skipped {name}: {exc}")
    if not evaluations:
        raise RecoError(f"no configured model could be trained: {skipped}")
    best = max(evaluations, key=lambda e: e.metrics[SELECTION_METRIC])
    say(f"selected {best.name} ({SELECTION_METRIC} {best.metrics[SELECTION_METRIC]:.4f})")

    fitted = {}
    for evaluation in evaluations:
        say(f"fitting {evaluation.name} on all data")
        fitted[evaluation.name] = build_models(settings)[evaluation.name].fit(data)
    bundle = ModelBundle(users=data.users, items=data.items, models=fitted, default=best.name)

    registry = ModelRegistry(settings.models_dir)
    manifest = {
        "config_hash": config_hash(settings),
        "data_fingerprint": data.fingerprint(),
        "data": {"users": data.n_users, "items": data.n_items, "interactions": data.n_interactions},
        "selected_model": best.name,
        "selection_metric": SELECTION_METRIC,
        "metrics": {"validation": {e.name: e.metrics for e in evaluations}},
        "fit_seconds": {e.name: e.fit_seconds for e in evaluations},
        "skipped_models": skipped,
        "library_versions": library_versions(),
    }
    say("saving the model version")
    with registry.new_version(manifest) as (version, folder):
        bundle.save(folder)
    registry.promote(version)
    return TrainResult(
        version=version,
        path=registry.root / version,
        selected=best.name,
        validation=evaluations,
        skipped=skipped,
        seconds=time.perf_counter() - started,
    )


def load_current(settings: Settings, version: str | None = None) -> tuple[str, ModelBundle]:
    """The current (or named) version's bundle, verified against its manifest."""
    entry = ModelRegistry(settings.models_dir).get(version)
    return entry.version, ModelBundle.load(entry.path, entry.manifest["selected_model"])
