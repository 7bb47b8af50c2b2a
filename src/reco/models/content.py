"""Content-based candidates: items whose text is like the text of a user's items.

Every item with a title, text or categories gets a unit vector (TF-IDF or a sentence
embedding, see :mod:`reco.models.text_encoders`). A history row's profile is the
weighted sum of its items' vectors, normalised; an item's score is the cosine of its
vector to the profile. Items need no interactions to be scored, so items added with
metadata only (cold items) reach users' top-N from the first minute.
"""

from __future__ import annotations

import json
import logging
import time
import zipfile
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.errors import ArtifactError, ConfigurationError, NotApplicableError, NotFittedError
from reco.models.base import BaseRecommender, top_n
from reco.models.text_encoders import (
    TfidfEncoder,
    encode_sentences,
    item_documents,
    load_sentence_model,
    resolve_model_source,
)

log = logging.getLogger(__name__)

ENCODERS = ("tfidf", "sentence")
CONTENT_FILE = "content.json"
# Dense profile rows scored at once in the TF-IDF path (rows x vocabulary floats).
PROFILE_BLOCK_CELLS = 8_000_000
# Query items x catalogue similarities computed at once in similar_items.
SIMILAR_BLOCK_CELLS = 20_000_000


class ContentRecommender(BaseRecommender):
    """Scores items by the cosine of their content vector to the history's profile.

    ``encoder="tfidf"``: word TF-IDF over title, text and categories (sublinear tf,
    ``ngram_max``-grams, ``min_df``, at most ``max_features`` terms) beside a block of
    whole categories weighted by ``category_weight``. ``encoder="sentence"``: a
    sentence-transformers model, by default the offline all-MiniLM-L6-v2 package, or
    ``model_name`` (a local model folder, or a model in the local Hugging Face cache);
    texts encoded ``batch_size`` at a time; needs the ``embeddings`` extra.

    Fitting needs item metadata: with no text, title or categories on any item it
    raises NotApplicableError so that training switches the source off. Rows whose
    history has no item with content get the popularity fallback, like empty rows.
    """

    name: ClassVar[str] = "content"

    def __init__(
        self,
        *,
        encoder: str = "tfidf",
        model_name: str | None = None,
        max_features: int = 50_000,
        ngram_max: int = 2,
        min_df: int = 1,
        category_weight: float = 0.3,
        batch_size: int = 64,
        seed: int = 42,
    ) -> None:
        self.encoder = encoder
        self.model_name = model_name
        self.max_features = max_features
        self.ngram_max = ngram_max
        self.min_df = min_df
        self.category_weight = category_weight
        self.batch_size = batch_size
        self.seed = seed

    # -- parameters -------------------------------------------------------------------

    def _check_params(self) -> None:
        if self.encoder not in ENCODERS:
            raise ConfigurationError(
                f"content encoder {self.encoder!r} is unknown; choose from: {', '.join(ENCODERS)}"
            )
        for label, value in (
            ("max_features", self.max_features),
            ("ngram_max", self.ngram_max),
            ("min_df", self.min_df),
            ("batch_size", self.batch_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ConfigurationError(
                    f"content {label} must be a positive integer, got {value!r}"
                )
        if not (isinstance(self.category_weight, int | float) and self.category_weight >= 0):
            raise ConfigurationError(
                f"content category_weight must be a number >= 0, got {self.category_weight!r}"
            )
        if self.model_name is not None and not isinstance(self.model_name, str):
            raise ConfigurationError(
                f"content model_name must be a model folder or name (str), got {self.model_name!r}"
            )

    # -- fitting ----------------------------------------------------------------------

    def _fit(self, data: Dataset) -> None:
        self._check_params()
        frame = data.item_features
        if frame is None:
            raise NotApplicableError(
                "content model needs item metadata (title, text or categories) and this "
                "dataset has none; load an items file with those columns to use it"
            )
        present = [c for c in ("title", "text", "categories") if c in frame.columns]
        if not present:
            raise NotApplicableError(
                "content model needs item title, text or categories; the item metadata "
                f"has only the columns {', '.join(map(str, frame.columns))}"
            )
        docs = item_documents(frame, where="dataset item metadata")
        if not docs.has_content.any():
            raise NotApplicableError(
                f"content model found no item with any {', '.join(present)}: every value "
                "is empty; fill them in the items file to use it"
            )
        started = time.perf_counter()
        if self.encoder == "tfidf":
            self.tfidf_ = self._new_tfidf()
            self.item_vectors_ = self.tfidf_.fit_transform(docs)
        else:
            self.model_source_ = resolve_model_source(self.model_name)
            model = self._sentence_model()
            self.item_vectors_ = encode_sentences(
                model, docs.texts, batch_size=int(self.batch_size), seed=int(self.seed)
            )
        self._derive()
        log.info(
            "content (%s): %d of %d items have content, %d dimensions, %.1f s",
            self.encoder,
            int(self.has_content_.sum()),
            self.n_items_,
            self.item_vectors_.shape[1],
            time.perf_counter() - started,
        )

    def _new_tfidf(self) -> TfidfEncoder:
        return TfidfEncoder(
            max_features=int(self.max_features),
            ngram_max=int(self.ngram_max),
            min_df=int(self.min_df),
            category_weight=float(self.category_weight),
        )

    def _sentence_model(self) -> Any:
        """The sentence model, loaded once per source and kept (it is not state)."""
        cached = getattr(self, "_loaded_model", None)
        if cached is not None and cached[0] == self.model_source_:
            return cached[1]
        model = load_sentence_model(self.model_source_)
        self._loaded_model = (self.model_source_, model)
        return model

    def _derive(self) -> None:
        """Arrays computed from the item vectors (never saved)."""
        vectors = self.item_vectors_
        if isinstance(vectors, csr_matrix):
            self.has_content_ = np.diff(vectors.indptr) > 0
        else:
            self.has_content_ = np.any(vectors != 0, axis=1)

    # -- scoring ----------------------------------------------------------------------

    def _profiles(self, histories: csr_matrix) -> tuple[Any, np.ndarray]:
        """Weighted sums of the history items' vectors and their L2 norms."""
        profiles = histories @ self.item_vectors_
        if isinstance(profiles, csr_matrix):
            # Sums of squares over each row's stored entries (scipy's elementwise
            # product and row sums cost more than the product for a few rows).
            entry_rows = np.repeat(np.arange(profiles.shape[0]), np.diff(profiles.indptr))
            squares = np.square(profiles.data, dtype=np.float64)
            norms = np.sqrt(np.bincount(entry_rows, weights=squares, minlength=profiles.shape[0]))
        else:
            profiles = np.asarray(profiles, dtype=np.float32)
            norms = np.linalg.norm(profiles, axis=1)
        return profiles, norms.astype(np.float32)

    def _score_rows(self, histories: csr_matrix, users: np.ndarray | None) -> np.ndarray:
        profiles, norms = self._profiles(histories)
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        n_rows = histories.shape[0]
        if isinstance(profiles, csr_matrix):
            scores = np.empty((n_rows, self.n_items_), dtype=np.float32)
            step = max(1, PROFILE_BLOCK_CELLS // max(1, profiles.shape[1]))
            for start in range(0, n_rows, step):
                stop = min(start + step, n_rows)
                block = profiles if step >= n_rows else profiles[start:stop]
                dense = block.toarray()
                # Sparse items x features times dense features x rows: each score is one
                # sparse dot product, the same whatever the batch (exact row answers).
                scores[start:stop] = (self.item_vectors_ @ dense.T).T
            scores *= scale[:, None]
        else:
            scores = (profiles * scale[:, None]) @ self.item_vectors_.T
            scores = np.asarray(scores, dtype=np.float32)
        no_profile = (norms == 0) & (np.diff(histories.indptr) > 0)
        if no_profile.any():
            # History made only of items without content: no taste to go on.
            scores[no_profile] = self.popularity_
        return scores

    # -- similar items and new items --------------------------------------------------

    def similar_items(
        self, items: np.ndarray, n: int, *, exclude_self: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most similar in content to each of ``items``: (indices, cosines).

        Works for items without interactions. Items without content are never
        returned, and an item without content has no similar items; empty slots hold
        -1 and -inf. ``exclude_self`` leaves the item itself out of its own list.
        """
        self._check_fitted()
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        items = np.asarray(items)
        if items.ndim != 1 or (items.size and items.dtype.kind not in "iu"):
            raise ValueError(
                f"items must be a 1-D array of item indices, got shape {items.shape} "
                f"and dtype {items.dtype}"
            )
        items = items.astype(np.int64)
        bad = items[(items < 0) | (items >= self.n_items_)]
        if bad.size:
            raise ValueError(
                f"item indices {bad[:5].tolist()} are outside the catalogue of "
                f"{self.n_items_} items; map external ids with the model's item vocabulary"
            )
        out_items = np.full((len(items), n), -1, dtype=np.int64)
        out_scores = np.full((len(items), n), -np.inf, dtype=np.float32)
        # Bound both the similarity block and, for TF-IDF, the dense query block.
        step = max(
            1,
            min(
                SIMILAR_BLOCK_CELLS // max(1, self.n_items_),
                PROFILE_BLOCK_CELLS // max(1, self.item_vectors_.shape[1]),
            ),
        )
        for start in range(0, len(items), step):
            block = items[start : start + step]
            scores = self._item_similarities(block)
            scores[:, ~self.has_content_] = -np.inf
            scores[~self.has_content_[block]] = -np.inf
            if exclude_self:
                scores[np.arange(len(block)), block] = -np.inf
            top_items, top_scores = top_n(scores, n)
            out_items[start : start + len(block)] = top_items
            out_scores[start : start + len(block)] = top_scores
        return out_items, out_scores

    def _item_similarities(self, items: np.ndarray) -> np.ndarray:
        """Cosines (float32, len(items) x catalogue) of the given items to every item."""
        queries = self.item_vectors_[items]
        if isinstance(queries, csr_matrix):
            return (self.item_vectors_ @ queries.toarray().T).T.astype(np.float32)
        return np.asarray(queries @ self.item_vectors_.T, dtype=np.float32)

    def encode_items(self, frame: pd.DataFrame) -> csr_matrix | np.ndarray:
        """Content vectors of items described by ``frame`` (title, text, categories),
        with the fitted vocabulary or sentence model: comparable with ``item_vectors_``.

        A float32 CSR matrix for TF-IDF, a float32 array for sentence embeddings; one
        row per frame row, all-zero where a row has no content.
        """
        self._check_fitted()
        docs = item_documents(frame, where="items to encode")
        if self.encoder == "tfidf":
            return self.tfidf_.transform(docs)
        return encode_sentences(
            self._sentence_model(), docs.texts, batch_size=int(self.batch_size), seed=int(self.seed)
        )

    def score_vectors(self, histories: csr_matrix, vectors: csr_matrix | np.ndarray) -> np.ndarray:
        """Cosines (float32, rows x len(vectors)) of content vectors from
        :meth:`encode_items` to each history row's profile: items added after fitting
        scored the way :meth:`score` scores catalogue items, without refitting.

        NaN for rows whose history has no item with content (no taste to compare with).
        """
        histories = self._check_histories(histories)
        if vectors.ndim != 2 or vectors.shape[1] != self.item_vectors_.shape[1]:
            raise ValueError(
                f"vectors of shape {vectors.shape} do not have the model's "
                f"{self.item_vectors_.shape[1]} content dimensions; make them with encode_items"
            )
        profiles, norms = self._profiles(histories)
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        if isinstance(profiles, csr_matrix):
            profiles = profiles.toarray()
        # Sparse or dense vectors times a dense profile block: a dense result either way.
        scores = np.asarray(vectors @ (profiles * scale[:, None]).T, dtype=np.float32).T
        scores[norms == 0] = np.nan
        return np.ascontiguousarray(scores)

    # -- persistence ------------------------------------------------------------------

    def _state(self) -> dict[str, np.ndarray]:
        vectors = self.item_vectors_
        if isinstance(vectors, csr_matrix):
            _, idf = self.tfidf_.state()
            return {
                "vectors_data": vectors.data,
                "vectors_indices": vectors.indices,
                "vectors_indptr": vectors.indptr,
                "vectors_shape": np.asarray(vectors.shape, dtype=np.int64),
                **idf,
            }
        return {"vectors": vectors}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        n = self.n_items_
        if self.encoder == "tfidf":
            shape = tuple(int(v) for v in state["vectors_shape"])
            indptr = state["vectors_indptr"]
            if len(shape) != 2 or shape[0] != n or indptr.shape != (n + 1,):
                raise ValueError(
                    f"item vectors of shape {shape} (indptr {indptr.shape}) do not fit {n} items"
                )
            vectors = csr_matrix(
                (state["vectors_data"], state["vectors_indices"], indptr), shape=shape
            )
            vectors.check_format(full_check=True)
            self._pending_idf = {key: state[key] for key in ("word_idf", "category_idf")}
        else:
            vectors = state["vectors"]
            if vectors.ndim != 2 or vectors.shape[0] != n or vectors.dtype != np.float32:
                raise ValueError(
                    f"item vectors of shape {vectors.shape} and dtype {vectors.dtype} do not "
                    f"fit {n} items (float32 expected)"
                )
        self.item_vectors_ = vectors

    def save(self, path: Path) -> None:
        """Params (JSON), item vectors and idf (npz), vocabulary or model source (JSON)."""
        super().save(path)
        if self.encoder == "tfidf":
            meta, _ = self.tfidf_.state()
            meta = {"encoder": "tfidf", **meta}
        else:
            meta = {"encoder": "sentence", "model_source": self.model_source_}
        (Path(path) / CONTENT_FILE).write_text(json.dumps(meta, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model saved by :meth:`save`; ArtifactError when it is damaged."""
        model = super().load(path)
        try:
            meta = json.loads((Path(path) / CONTENT_FILE).read_text())
            if meta.get("encoder") != model.encoder:
                raise ValueError(
                    f"{CONTENT_FILE} is for encoder {meta.get('encoder')!r}, the params say "
                    f"{model.encoder!r}"
                )
            if model.encoder == "tfidf":
                model.tfidf_ = TfidfEncoder.from_state(
                    meta,
                    model._pending_idf,
                    max_features=int(model.max_features),
                    ngram_max=int(model.ngram_max),
                    min_df=int(model.min_df),
                    category_weight=float(model.category_weight),
                )
                del model._pending_idf
                if model.tfidf_.n_features != model.item_vectors_.shape[1]:
                    raise ValueError(
                        f"the vocabulary has {model.tfidf_.n_features} terms but the item "
                        f"vectors {model.item_vectors_.shape[1]} columns"
                    )
            else:
                source = meta["model_source"]
                if source is not None and not isinstance(source, str):
                    raise ValueError(f"model_source must be a string or null, got {source!r}")
                model.model_source_ = source
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise ArtifactError(
                f"cannot load content model from {path}: {exc}. "
                "The artifact is missing or corrupted; retrain with `reco train`."
            ) from exc
        model._derive()
        return model

    def _check_fitted(self) -> None:
        super()._check_fitted()
        if not hasattr(self, "item_vectors_"):
            raise NotFittedError("ContentRecommender is not fitted: call fit(dataset) first")
