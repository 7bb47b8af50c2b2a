"""The training job: frames -> fitted pipeline (with auto-selection) -> registry version.

The pipeline is fitted as :mod:`reco.training.fit` describes: sources and the
LightGBM ranker on a validation split inside the data, every source alone and the
full pipeline measured on held-out validation users, the best served, the sources
refitted on all the data. The manifest records the choice and every measurement.
"""

from __future__ import annotations

import hashlib
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
from reco.evaluation.protocol import ModelEvaluation
from reco.models import create_model
from reco.models.base import BaseRecommender
from reco.pipeline.sources import source_params
from reco.registry import ModelRegistry
from reco.store.repository import StoreFrames
from reco.training.bundle import ModelBundle
from reco.training.fit import SELECTION_METRIC, Selection, fit_pipeline

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced: the version, what was served and why."""

    version: str
    path: Path
    selected: str
    validation: list[ModelEvaluation]
    skipped: dict[str, str]
    seconds: float
    selection: Selection


def config_hash(settings: Settings) -> str:
    """A sha256 of the settings that shape the models (pipeline, parameters, seed)."""
    shape = {
        "pipeline": settings.pipeline.model_dump(mode="json"),
        "params": settings.model_params,
        "seed": settings.seed,
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries an artifact depends on, for the manifest."""
    versions = {"python": platform.python_version()}
    names = ("reco", "numpy", "scipy", "pandas", "implicit", "scikit-learn", "lightgbm", "torch")
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_models(settings: Settings) -> dict[str, BaseRecommender]:
    """Fresh, unfitted instances of the reference models (``settings.models``)."""
    unknown = set(settings.model_params) - set(settings.models) - set(settings.pipeline.sources)
    if unknown:
        raise ConfigurationError(
            f"model_params names models that are neither pipeline sources nor reference "
            f"models: {sorted(unknown)}; sources are {list(settings.pipeline.sources)}, "
            f"references {settings.models}"
        )
    return {
        name: create_model(name, **source_params(name, settings.model_params, settings.seed))
        for name in settings.models
    }


def train(
    frames: Frames,
    settings: Settings,
    *,
    progress: Progress | None = None,
    promote: bool = True,
) -> TrainResult:
    """Fit the pipeline on ``frames``, publish it as a version and make it current.

    With ``promote=False`` the version is published but not made current (retraining
    decides afterwards: :mod:`reco.training.retrain`).

    Frames read from the store (:func:`reco.store.repository.load_frames`) carry its
    watermark, recorded as the manifest's ``store_watermark``: the service adds the
    events stored after it to the model's histories. Other frames record null.
    """
    say = progress or (lambda message: log.info(message))
    started = time.perf_counter()
    data = Dataset.from_frames(frames.interactions, frames.items, frames.users)
    if data.n_interactions == 0:
        raise RecoError("there are no interactions to train on; ingest some with `reco ingest`")
    say(
        f"dataset: {data.n_users:,} users, {data.n_items:,} items, "
        f"{data.n_interactions:,} interactions"
    )
    build_models(settings)  # checks model_params before any long work
    fit = fit_pipeline(
        data,
        settings.pipeline,
        model_params=settings.model_params,
        seed=settings.seed,
        progress=say,
    )
    selection = fit.selection
    bundle = ModelBundle(fit.pipeline)
    manifest: dict[str, Any] = {
        "config_hash": config_hash(settings),
        "config": {
            "pipeline": settings.pipeline.model_dump(mode="json"),
            "model_params": settings.model_params,
            "seed": settings.seed,
        },
        "data_fingerprint": data.fingerprint(),
        "store_watermark": frames.watermark if isinstance(frames, StoreFrames) else None,
        "data": {"users": data.n_users, "items": data.n_items, "interactions": data.n_interactions},
        "selected_model": selection.chosen,
        "selection_metric": SELECTION_METRIC,
        "metrics": {"validation": selection.validation},
        "selection": selection.to_dict(),
        "pipeline": {"mode": fit.pipeline.mode, "sources": list(fit.pipeline.sources)},
        "fit_seconds": fit.seconds,
        "skipped_models": fit.skipped,
        "library_versions": library_versions(),
    }
    say("saving the model version")
    registry = ModelRegistry(settings.models_dir)
    with registry.new_version(manifest) as (version, folder):
        bundle.save(folder)
    if promote:
        registry.promote(version)
    validation = [
        ModelEvaluation(
            name=name,
            metrics=values,
            fit_seconds=fit.seconds.get(f"source {name}", 0.0),
            predict_seconds=0.0,
        )
        for name, values in selection.validation.items()
    ]
    return TrainResult(
        version=version,
        path=registry.root / version,
        selected=selection.chosen,
        validation=validation,
        skipped=fit.skipped,
        seconds=time.perf_counter() - started,
        selection=selection,
    )


def load_current(settings: Settings, version: str | None = None) -> tuple[str, ModelBundle]:
    """The current (or named) version's bundle, verified against its manifest."""
    entry = ModelRegistry(settings.models_dir).get(version)
    return entry.version, ModelBundle.load(entry.path, entry.manifest.get("selected_model"))
