"""Models, one module each, all under the Recommender contract of :mod:`reco.models.base`.

Models are looked up by name (``popularity``, ``itemknn``, ``als``, ``ease``, ...) so
that configuration, CLI and artifacts can refer to them as plain strings.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from reco.errors import ArtifactError, ConfigurationError
from reco.models.base import PARAMS_FILE, BaseRecommender

# name -> "module:Class"; imported on first use so that `import reco.models` stays cheap.
_MODELS = {
    "popularity": "reco.models.popularity:PopularityRecommender",
    "itemknn": "reco.models.itemknn:ItemKNNRecommender",
    "als": "reco.models.als:ALSRecommender",
    "ease": "reco.models.ease:EASERecommender",
    "content": "reco.models.content:ContentRecommender",
    "two_tower": "reco.models.two_tower:TwoTowerRecommender",
    "segment_popularity": "reco.models.context_popularity:SegmentPopularityRecommender",
    "trending": "reco.models.context_popularity:TrendingRecommender",
}


def available_models() -> list[str]:
    """Names of every model reco knows."""
    return sorted(_MODELS)


def model_class(name: str) -> type[BaseRecommender]:
    """The class registered under ``name``; ConfigurationError listing the choices."""
    try:
        module_name, class_name = _MODELS[name].split(":")
    except KeyError:
        raise ConfigurationError(
            f"unknown model {name!r}; choose from: {', '.join(available_models())}"
        ) from None
    return getattr(importlib.import_module(module_name), class_name)


def create_model(name: str, **params: Any) -> BaseRecommender:
    """A new, unfitted model of the given name with the given parameters."""
    cls = model_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigurationError(f"bad parameters for model {name!r}: {exc}") from exc


def load_model(path: Path) -> BaseRecommender:
    """Load whichever model was saved in folder ``path``."""
    try:
        name = json.loads((Path(path) / PARAMS_FILE).read_text())["model"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(
            f"cannot read the model description in {path}: {exc}. "
            "The artifact is missing or corrupted; retrain with `reco train`."
        ) from exc
    try:
        cls = model_class(name)
    except ConfigurationError as exc:
        raise ArtifactError(f"{path}: {exc}") from exc
    return cls.load(path)
