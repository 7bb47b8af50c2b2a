"""The Recommender contract and the helpers every model shares.

A model is fitted on a :class:`~reco.data.dataset.Dataset` and answers from
*histories*: a CSR matrix with one row per request and one column per item, each row
the user's weighted item vector as of now. Scoring from history is what lets a new
event count at once and what serves users the model never saw.

Subclasses implement ``_fit``, ``_score_rows`` (dense scores for a batch of rows),
``_state`` / ``_set_state`` (numpy arrays to save) and declare their parameters as
keyword-only ``__init__`` arguments stored unchanged.
"""

from __future__ import annotations

import inspect
import json
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.errors import ArtifactError, NotFittedError

PARAMS_FILE = "params.json"
STATE_FILE = "state.npz"
# Rows x items floats scored at once; bounds memory for large catalogues.
SCORE_BLOCK_CELLS = 20_000_000


@runtime_checkable
class Recommender(Protocol):
    """What every model offers (see DESIGN.md, "Core contracts")."""

    def fit(self, data: Dataset) -> Self: ...

    def recommend(
        self,
        histories: csr_matrix,
        n: int,
        *,
        candidates: np.ndarray | None = None,
        users: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def score(self, histories: csr_matrix, items: np.ndarray) -> np.ndarray: ...

    def save(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path) -> Self: ...


class BaseRecommender(ABC):
    """Shared behaviour: fitted checks, top-N with exclusions, fallback, save/load.

    Rows of ``histories`` with no interactions get the fallback: the most popular
    training items. Items already in a row's history are never recommended to it.
    """

    name: ClassVar[str] = "base"

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters, as given."""
        names = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        return {name: getattr(self, name) for name in names}

    # -- fitting ---------------------------------------------------------------------

    def fit(self, data: Dataset) -> Self:
        """Learn from ``data``, discarding any earlier state. Returns ``self``."""
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)
        self.n_items_ = data.n_items
        self.popularity_ = data.item_counts().astype(np.float32)
        self._fit(data)
        return self

    @abstractmethod
    def _fit(self, data: Dataset) -> None:
        """Learn from ``data`` (earlier state already discarded by :meth:`fit`)."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted: call fit(dataset) or load(path) first"
            )

    def _check_histories(self, histories: csr_matrix) -> csr_matrix:
        self._check_fitted()
        # Already the right kind: used as is (a conversion costs more than scoring a
        # short history).
        if not (isinstance(histories, csr_matrix) and histories.dtype == np.float32):
            histories = csr_matrix(histories, dtype=np.float32)
        if histories.shape[1] != self.n_items_:
            raise ValueError(
                f"histories have {histories.shape[1]} item columns but the model knows "
                f"{self.n_items_} items; build them with the model's item vocabulary"
            )
        return histories

    # -- scoring ---------------------------------------------------------------------

    @abstractmethod
    def _score_rows(self, histories: csr_matrix, users: np.ndarray | None) -> np.ndarray:
        """Dense float32 scores (rows x all items) for a block of history rows."""

    def _blocks(self, n_rows: int) -> range:
        step = max(1, SCORE_BLOCK_CELLS // max(1, self.n_items_))
        return range(0, n_rows, step)

    def _scores_with_fallback(
        self, histories: csr_matrix, users: np.ndarray | None, start: int, stop: int
    ) -> np.ndarray:
        whole = start == 0 and stop >= histories.shape[0]
        block = histories if whole else histories[start:stop]
        block_users = users if users is None or whole else users[start:stop]
        scores = np.asarray(self._score_rows(block, block_users), dtype=np.float32)
        empty = np.diff(block.indptr) == 0
        if empty.any():
            scores[empty] = self.popularity_
        return scores

    def score(self, histories: csr_matrix, items: np.ndarray) -> np.ndarray:
        """Scores of ``items`` for each history row, shape (rows, len(items)).

        NaN where the model cannot score an item (an index outside the catalogue).
        """
        histories = self._check_histories(histories)
        items = np.asarray(items, dtype=np.int64)
        known = (items >= 0) & (items < self.n_items_)
        out = np.full((histories.shape[0], len(items)), np.nan, dtype=np.float32)
        for start in self._blocks(histories.shape[0]):
            stop = min(start + self._blocks(histories.shape[0]).step, histories.shape[0])
            scores = self._scores_with_fallback(histories, None, start, stop)
            out[start:stop, known] = scores[:, items[known]]
        return out

    def recommend(
        self,
        histories: csr_matrix,
        n: int,
        *,
        candidates: np.ndarray | None = None,
        users: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items per history row, best first: (item indices, scores).

        Items in a row's history are excluded; with ``candidates`` (1-D item indices)
        only those are ranked. Rows with fewer than ``n`` rankable items are padded
        with index -1 and score -inf. ``users`` (training indices, -1 for unknown) is a
        hint a model may use; every model answers from the history alone.
        """
        histories = self._check_histories(histories)
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        allowed = None
        if candidates is not None:
            candidates = np.asarray(candidates, dtype=np.int64)
            allowed = np.zeros(self.n_items_, dtype=bool)
            allowed[candidates[(candidates >= 0) & (candidates < self.n_items_)]] = True
        if users is not None:
            users = np.asarray(users, dtype=np.int64)
        n_rows = histories.shape[0]
        top_items = np.full((n_rows, n), -1, dtype=np.int64)
        top_scores = np.full((n_rows, n), -np.inf, dtype=np.float32)
        blocks = self._blocks(n_rows)
        for start in blocks:
            stop = min(start + blocks.step, n_rows)
            scores = self._scores_with_fallback(histories, users, start, stop)
            scores = np.where(np.isnan(scores), -np.inf, scores)
            if allowed is not None:
                scores[:, ~allowed] = -np.inf
            block = histories[start:stop]
            rows = np.repeat(np.arange(stop - start), np.diff(block.indptr))
            scores[rows, block.indices] = -np.inf
            items, values = top_n(scores, n)
            top_items[start:stop] = items
            top_scores[start:stop] = values
        return top_items, top_scores

    # -- persistence -----------------------------------------------------------------

    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save, beyond the shared ones."""
        return {}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`_state` returned (by default: nothing, so nothing may come)."""
        if state:
            raise ValueError(f"unexpected arrays {sorted(state)} for a {self.name} model")

    def save(self, path: Path) -> None:
        """Write the model to folder ``path``: params as JSON, arrays as npz (no pickle)."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"model": self.name, "params": self.get_params()}
        (path / PARAMS_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        arrays = {"n_items_": np.asarray(self.n_items_), "popularity_": self.popularity_}
        arrays.update(self._state())
        np.savez(path / STATE_FILE, **arrays)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model saved by :meth:`save`; raises ArtifactError when it is damaged."""
        path = Path(path)
        try:
            meta = json.loads((path / PARAMS_FILE).read_text())
            if meta.get("model") != cls.name:
                raise ArtifactError(f"{path} holds a {meta.get('model')!r} model, not {cls.name!r}")
            model = cls(**meta["params"])
            with np.load(path / STATE_FILE, allow_pickle=False) as npz:
                state = {key: npz[key] for key in npz.files}
            model.n_items_ = int(state.pop("n_items_"))
            model.popularity_ = state.pop("popularity_")
            if model.popularity_.shape != (model.n_items_,):
                raise ValueError(
                    f"popularity_ has shape {model.popularity_.shape}, expected ({model.n_items_},)"
                )
            model._set_state(state)
        except ArtifactError:
            raise
        # A truncated or altered npz surfaces as BadZipFile (bad CRC, no directory) or
        # EOFError (empty file), neither of which is an OSError.
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as exc:
            raise ArtifactError(
                f"cannot load {cls.name} model from {path}: {exc}. "
                "The artifact is missing or corrupted; retrain with `reco train`."
            ) from exc
        return model


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``n`` highest scores per row, best first.

    Deterministic for the same input. Entries scored -inf (excluded) are never
    returned: their slots hold -1 and -inf.
    """
    n_rows, n_cols = scores.shape
    k = min(n, n_cols)
    if k < n_cols:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(n_cols), (n_rows, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    items = np.take_along_axis(part, order, axis=1)
    values = np.take_along_axis(part_scores, order, axis=1)
    out_items = np.full((n_rows, n), -1, dtype=np.int64)
    out_values = np.full((n_rows, n), -np.inf, dtype=np.float32)
    out_items[:, :k] = items
    out_values[:, :k] = values
    invalid = ~np.isfinite(out_values)
    out_items[invalid] = -1
    out_values[invalid] = -np.inf
    return out_items, out_values


def histories_from(data: Dataset, users: np.ndarray) -> csr_matrix:
    """History rows of the given user indices from a dataset's matrix."""
    return data.matrix()[np.asarray(users, dtype=np.int64)]
