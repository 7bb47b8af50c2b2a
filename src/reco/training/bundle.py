"""A trained bundle: the vocabularies and every fitted model of one model version.

Written by the training job into a registry version folder, read by everything that
answers (batch recommend, the service). Plain formats only: JSON for ids and params,
npz (no pickle) for arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

from reco.data.vocabulary import Vocabulary
from reco.errors import ArtifactError, ConfigurationError
from reco.models import load_model
from reco.models.base import BaseRecommender

USERS_FILE = "vocab/users.json"
ITEMS_FILE = "vocab/items.json"
MODELS_DIR = "models"


@dataclass(frozen=True)
class ModelBundle:
    """Fitted models sharing one user and item vocabulary; ``default`` answers by default."""

    users: Vocabulary
    items: Vocabulary
    models: dict[str, BaseRecommender]
    default: str

    def model(self, name: str | None = None) -> BaseRecommender:
        """The named model, or the default one."""
        name = name or self.default
        if name not in self.models:
            raise ConfigurationError(
                f"model {name!r} is not in this version; it has: {', '.join(sorted(self.models))}"
            )
        return self.models[name]

    def histories(
        self,
        user_ids: list[str] | np.ndarray,
        item_ids: np.ndarray,
        event_users: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> csr_matrix:
        """History rows for ``user_ids`` from interactions (event_users[k] had item_ids[k]).

        Items the bundle does not know are left out; users with no known interaction
        get an empty row (and so the fallback).
        """
        rows = Vocabulary(user_ids).lookup(event_users)
        cols = self.items.lookup(item_ids)
        keep = (rows >= 0) & (cols >= 0)
        values = np.ones(keep.sum(), np.float32) if weights is None else weights[keep]
        matrix = csr_matrix(
            (values, (rows[keep], cols[keep])),
            shape=(len(user_ids), len(self.items)),
            dtype=np.float32,
        )
        matrix.sum_duplicates()
        return matrix

    def save(self, folder: Path) -> None:
        """Write vocabularies and models under ``folder``."""
        folder = Path(folder)
        (folder / "vocab").mkdir(parents=True, exist_ok=True)
        (folder / USERS_FILE).write_text(json.dumps(self.users.ids.tolist()))
        (folder / ITEMS_FILE).write_text(json.dumps(self.items.ids.tolist()))
        for name, model in self.models.items():
            model.save(folder / MODELS_DIR / name)

    @classmethod
    def load(cls, folder: Path, default: str) -> ModelBundle:
        """Read a bundle written by :meth:`save`."""
        folder = Path(folder)
        try:
            users = Vocabulary(json.loads((folder / USERS_FILE).read_text()))
            items = Vocabulary(json.loads((folder / ITEMS_FILE).read_text()))
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read the vocabularies in {folder}: {exc}") from exc
        models = {}
        model_root = folder / MODELS_DIR
        names = sorted(p.name for p in model_root.iterdir()) if model_root.is_dir() else []
        for name in names:
            models[name] = load_model(model_root / name)
        if default not in models:
            raise ArtifactError(f"{folder} has no saved model {default!r} (found: {names})")
        return cls(users=users, items=items, models=models, default=default)
