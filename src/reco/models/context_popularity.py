"""Context-aware popularity and trending: the candidate sources for cold users.

* :class:`SegmentPopularityRecommender` learns what is popular within each segment of
  every user attribute present (age band, gender, occupation, zip region, device,
  country, ...) and blends it with global popularity by segment size. It answers for
  training users (their attributes), for request *contexts* (a new user's attributes
  or request-time device/country) and, when neither is known, from the history itself
  by inferring the likely segments.
* :class:`TrendingRecommender` ranks items by exponentially time-decayed counts.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from reco.data import schema
from reco.data.dataset import Dataset
from reco.errors import ConfigurationError, NotApplicableError
from reco.models.base import BaseRecommender, top_n

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400.0
DEFAULT_AGE_BANDS = [18, 25, 35, 45, 55, 65]

KIND_CATEGORY = "category"
KIND_AGE = "age"
KIND_REGION = "region"
# Column names read as postal codes: only their first character (a region) is used.
_REGION_HINTS = ("zip", "postal", "postcode")
# An attribute with more distinct values than this, or with values shared by almost no
# one, identifies users rather than grouping them: it is ignored.
MAX_SEGMENTS_PER_ATTRIBUTE = 1_000
MIN_USERS_PER_VALUE = 2.0
# Smallest share used in the history posterior's logarithms.
_LOG_FLOOR = 1e-30


@dataclass(frozen=True)
class _Attribute:
    """How one user_features column becomes segment labels."""

    name: str
    kind: str


class SegmentPopularityRecommender(BaseRecommender):
    """Popularity within the user's segments, shrunk towards global popularity.

    For every usable attribute of ``data.user_features`` (``attributes`` names them;
    by default every categorical column, ``age`` cut into ``age_bands``, zip/postal
    codes cut to their first character, near-unique columns skipped) each value is a
    *segment*. A segment's item distribution ``p_seg`` (each item's share of the
    segment's distinct user-item pairs: reach, not event volume; in the last
    ``window_days`` days when given) is blended with the global one:
    ``q_seg = w * p_seg + (1 - w) * p_global`` with ``w = n / (n + shrinkage)`` and
    ``n`` the number of the segment's users, so small segments lean on global
    popularity. A user's score is the mean of their segments' ``q`` over the
    attributes; an attribute whose value is unknown or unseen in training counts as
    ``p_global``. Scores are therefore item probabilities (each row sums to 1 over the
    catalogue).

    Where attributes come from:

    * ``recommend(..., users=...)``: a training user index takes that user's
      attributes from the training ``user_features`` (``-1``: unknown user);
    * :meth:`recommend_context` / :meth:`score_context`: raw request contexts such as
      ``{"age": "27", "gender": "F", "device": "mobile"}``, for cold users;
    * otherwise, for a non-empty history, the segments are inferred from it: each
      attribute's value gets its posterior ``P(value | history)`` under the segment
      distributions (naive Bayes), so the model still answers from history alone.

    Empty history rows with no known user get global popularity (``popularity_``).
    :meth:`top_segments` and :meth:`explain_context` say which segment made an item
    rank ("popular with people aged 25-34").
    """

    name: ClassVar[str] = "segment_popularity"

    def __init__(
        self,
        *,
        attributes: list[str] | None = None,
        shrinkage: float = 50.0,
        age_bands: list[int] = DEFAULT_AGE_BANDS,
        window_days: float | None = None,
    ) -> None:
        self.attributes = attributes
        self.shrinkage = shrinkage
        self.age_bands = age_bands
        self.window_days = window_days

    # -- fitting ---------------------------------------------------------------------

    def _check_params(self) -> None:
        if isinstance(self.shrinkage, bool) or not (
            isinstance(self.shrinkage, int | float) and math.isfinite(self.shrinkage)
        ):
            raise ConfigurationError(
                f"segment_popularity shrinkage must be a number >= 0, got {self.shrinkage!r}"
            )
        if self.shrinkage < 0:
            raise ConfigurationError(
                f"segment_popularity shrinkage must be >= 0 (0: no shrinkage), "
                f"got {self.shrinkage!r}"
            )
        bands = list(self.age_bands)
        if not bands or any(
            isinstance(b, bool) or not isinstance(b, int | float) or not math.isfinite(b)
            for b in bands
        ):
            raise ConfigurationError(
                f"segment_popularity age_bands must be a non-empty list of ages (band "
                f"edges), got {self.age_bands!r}"
            )
        if any(low >= high for low, high in itertools.pairwise(bands)):
            raise ConfigurationError(
                f"segment_popularity age_bands must be strictly increasing, got {bands!r}"
            )
        if self.window_days is not None and not (
            isinstance(self.window_days, int | float) and self.window_days > 0
        ):
            raise ConfigurationError(
                f"segment_popularity window_days must be a positive number of days or "
                f"None (all time), got {self.window_days!r}"
            )
        if self.attributes is not None and (
            isinstance(self.attributes, str)
            or not all(isinstance(a, str) and a for a in self.attributes)
        ):
            raise ConfigurationError(
                f"segment_popularity attributes must be a list of user_features column "
                f"names (or None for all usable ones), got {self.attributes!r}"
            )

    def _fit(self, data: Dataset) -> None:
        self._check_params()
        self._log_shares: np.ndarray | None = None
        if data.user_features is None:
            raise NotApplicableError(
                "segment_popularity needs user attributes (data.user_features), and this "
                "dataset has none; give a users file with columns like age, gender, "
                "device or country"
            )
        attributes, labels = self._discover(data.user_features)
        if not attributes:
            raise NotApplicableError(
                "segment_popularity found no usable user attribute in user_features "
                f"(columns: {', '.join(map(str, data.user_features.columns))}); it needs a "
                "categorical column with repeated values, an 'age' column or a zip code"
            )

        n_items = data.n_items
        keep = self._window(data)
        # Popularity here is reach: how many users took an item, each pair counted
        # once, so a few heavy repeaters cannot make an item "popular in a segment".
        pairs = np.unique(data.user_idx[keep].astype(np.int64) * n_items + data.item_idx[keep])
        user_idx, item_idx = pairs // n_items, pairs % n_items
        global_counts = np.bincount(item_idx, minlength=n_items).astype(np.float64)
        total = global_counts.sum()
        global_share = global_counts / total if total > 0 else global_counts
        active = np.zeros(data.n_users, dtype=bool)
        active[user_idx] = True

        segment_attribute: list[int] = []
        segment_labels: list[str] = []
        segment_users: list[int] = []
        shares: list[np.ndarray] = []
        user_segments = np.full((data.n_users, len(attributes)), -1, dtype=np.int32)
        for a, user_labels in enumerate(labels):
            codes, values = pd.factorize(pd.Series(user_labels, dtype=object), sort=True)
            present = codes >= 0
            user_segments[present, a] = codes[present] + len(segment_labels)
            event_codes = codes[user_idx]
            known = event_codes >= 0
            flat = event_codes[known].astype(np.int64) * n_items + item_idx[known]
            counts = np.bincount(flat, minlength=len(values) * n_items).astype(np.float64)
            counts = counts.reshape(len(values), n_items)
            sizes = np.bincount(codes[active & present], minlength=len(values))
            for v, value in enumerate(values):
                seg_total = counts[v].sum()
                own = counts[v] / seg_total if seg_total > 0 else global_share
                weight = sizes[v] / (sizes[v] + float(self.shrinkage)) if sizes[v] else 0.0
                shares.append(weight * own + (1.0 - weight) * global_share)
                segment_attribute.append(a)
                segment_labels.append(str(value))
                segment_users.append(int(sizes[v]))

        self.attribute_names_ = np.array([a.name for a in attributes], dtype=str)
        self.attribute_kinds_ = np.array([a.kind for a in attributes], dtype=str)
        self.segment_attribute_ = np.array(segment_attribute, dtype=np.int32)
        self.segment_labels_ = np.array(segment_labels, dtype=str)
        self.segment_users_ = np.array(segment_users, dtype=np.int64)
        self.segment_shares_ = np.vstack(shares).astype(np.float32)
        self.user_segments_ = user_segments
        # Empty, unknown rows get the global share: the same scale as every other row.
        self.popularity_ = global_share.astype(np.float32)

    def _window(self, data: Dataset) -> np.ndarray:
        """Mask of the interactions that count (all, or those in the recent window)."""
        everything = np.ones(data.n_interactions, dtype=bool)
        if self.window_days is None:
            return everything
        if not data.has_timestamps:
            log.warning(
                "segment_popularity window_days=%s ignored: the training data has no (or "
                "incomplete) timestamps, so all interactions count",
                self.window_days,
            )
            return everything
        since = float(np.max(data.timestamps)) - float(self.window_days) * SECONDS_PER_DAY
        return data.timestamps >= since

    def _discover(self, features: pd.DataFrame) -> tuple[list[_Attribute], list[np.ndarray]]:
        """The usable attributes and, for each, one label per user (None = unknown)."""
        columns = [c for c in features.columns if c != schema.USER]
        if self.attributes is not None:
            missing = [a for a in self.attributes if a not in columns]
            if missing:
                usable = ", ".join(map(str, columns)) or "none"
                if len(missing) == len(self.attributes):
                    raise NotApplicableError(
                        f"segment_popularity attributes {missing} are not in the user "
                        f"features (columns: {usable})"
                    )
                log.warning(
                    "segment_popularity: attributes %s are not in the user features "
                    "(columns: %s); using the others",
                    missing,
                    usable,
                )
            columns = [c for c in self.attributes if c in columns]
        attributes, labels = [], []
        for column in columns:
            kind = _attribute_kind(str(column), features[column], explicit=self.attributes)
            if kind is None:
                log.info("segment_popularity: column %r is not categorical, skipped", column)
                continue
            attribute = _Attribute(str(column), kind)
            user_labels = self._labels(attribute, features[column])
            if not _groups_users(user_labels):
                log.info(
                    "segment_popularity: column %r has near-unique or a single value, skipped",
                    column,
                )
                continue
            attributes.append(attribute)
            labels.append(user_labels)
        return attributes, labels

    def _labels(self, attribute: _Attribute, values: pd.Series) -> np.ndarray:
        """Segment labels (object array, None where unknown) of raw column values."""
        if attribute.kind == KIND_AGE:
            ages = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
            out = np.full(len(ages), None, dtype=object)
            known = ~np.isnan(ages)
            names = np.array(age_band_labels(self.age_bands), dtype=object)
            out[known] = names[_band_index(ages[known], self.age_bands)]
            return out
        return np.array(
            [_category_label(attribute.kind, v) for v in values.to_numpy(dtype=object)],
            dtype=object,
        )

    # -- scoring ---------------------------------------------------------------------

    def _segment_weights(
        self, histories: csr_matrix, users: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per row: weight of each segment and of the global distribution (sum 1)."""
        n_rows, n_attributes = histories.shape[0], len(self.attribute_names_)
        segments = np.full((n_rows, n_attributes), -1, dtype=np.int64)
        if users is not None:
            users = np.asarray(users, dtype=np.int64)
            known = (users >= 0) & (users < self.user_segments_.shape[0])
            segments[known] = self.user_segments_[users[known]]
        weights = np.zeros((n_rows, len(self.segment_labels_)), dtype=np.float64)
        rows, cols = np.nonzero(segments >= 0)
        weights[rows, segments[rows, cols]] = 1.0
        missing = segments < 0
        has_history = np.diff(histories.indptr) > 0
        infer = missing & has_history[:, None]
        inferred_rows = np.flatnonzero(infer.any(axis=1))
        if len(inferred_rows):
            posterior = self._posterior(histories[inferred_rows])
            for a in range(n_attributes):
                take = infer[inferred_rows, a]
                cols = np.flatnonzero(self.segment_attribute_ == a)
                weights[np.ix_(inferred_rows[take], cols)] = posterior[np.ix_(take, cols)]
        no_info = missing & ~has_history[:, None]
        return weights / n_attributes, no_info.sum(axis=1) / n_attributes

    def _posterior(self, histories: csr_matrix) -> np.ndarray:
        """P(segment value | history) per attribute (rows x segments, per-attribute sum 1).

        Naive Bayes over the history's distinct items, with the segment sizes as the
        prior; items without training interactions carry no evidence.
        """
        if self._log_shares is None:
            shares = self.segment_shares_.astype(np.float64)
            evidence = self.popularity_ > 0
            logs = np.zeros_like(shares)
            # A segment that never took an item (possible without shrinkage) is made
            # very unlikely, not impossible, so a row never ends with no segment left.
            logs[:, evidence] = np.log(np.maximum(shares[:, evidence], _LOG_FLOOR))
            self._log_shares = logs
        present = csr_matrix(
            (np.ones(histories.nnz), histories.indices, histories.indptr),
            shape=histories.shape,
        )
        loglik = np.asarray(present @ self._log_shares.T)
        prior = np.log(self.segment_users_.astype(np.float64) + 1.0)
        loglik = loglik + prior
        posterior = np.zeros_like(loglik)
        for a in range(len(self.attribute_names_)):
            cols = self.segment_attribute_ == a
            block = loglik[:, cols]
            block = np.exp(block - block.max(axis=1, keepdims=True))
            posterior[:, cols] = block / block.sum(axis=1, keepdims=True)
        return posterior

    def _mix(self, segment_weights: np.ndarray, global_weights: np.ndarray) -> np.ndarray:
        scores = segment_weights @ self.segment_shares_.astype(np.float64)
        scores += global_weights[:, None] * self.popularity_.astype(np.float64)[None, :]
        return scores.astype(np.float32)

    def _score_rows(self, histories: csr_matrix, users: np.ndarray | None) -> np.ndarray:
        segment_weights, global_weights = self._segment_weights(histories, users)
        return self._mix(segment_weights, global_weights)

    def _scores_with_fallback(
        self, histories: csr_matrix, users: np.ndarray | None, start: int, stop: int
    ) -> np.ndarray:
        # Unlike the base, an empty row of a known user keeps that user's segment
        # scores: a user with attributes and no history is exactly this model's case.
        block = histories[start:stop]
        block_users = None if users is None else np.asarray(users[start:stop], dtype=np.int64)
        return self._score_rows(block, block_users)

    def score(
        self, histories: csr_matrix, items: np.ndarray, *, users: np.ndarray | None = None
    ) -> np.ndarray:
        """Scores of ``items`` per history row, shape (rows, len(items)); NaN outside
        the catalogue. ``users`` (training indices, -1 unknown) are used as in
        :meth:`recommend`."""
        histories = self._check_histories(histories)
        items = np.asarray(items, dtype=np.int64)
        if users is not None:
            users = np.asarray(users, dtype=np.int64)
            if users.shape != (histories.shape[0],):
                raise ValueError(
                    f"users must have one entry per history row ({histories.shape[0]}), "
                    f"got shape {users.shape}"
                )
        known = (items >= 0) & (items < self.n_items_)
        out = np.full((histories.shape[0], len(items)), np.nan, dtype=np.float32)
        blocks = self._blocks(histories.shape[0])
        for start in blocks:
            stop = min(start + blocks.step, histories.shape[0])
            scores = self._scores_with_fallback(histories, users, start, stop)
            out[start:stop, known] = scores[:, items[known]]
        return out

    # -- request contexts ------------------------------------------------------------

    def context_segments(self, contexts: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Segment index per (context, attribute), -1 where absent or unseen in training.

        A context maps attribute names to raw values as the users file had them
        (``{"age": "27", "zip": "55105", "gender": "F"}``) or to segment labels
        (``{"age": "25-34"}``). Keys the model did not learn are ignored; a value
        that cannot be read (an age that is not a number) is a ValueError.
        """
        self._check_fitted()
        if isinstance(contexts, Mapping):
            raise TypeError("contexts must be a list of dicts, one per request; wrap one in [ ]")
        lookup = {
            (int(a), str(label)): s
            for s, (a, label) in enumerate(
                zip(self.segment_attribute_, self.segment_labels_, strict=True)
            )
        }
        out = np.full((len(contexts), len(self.attribute_names_)), -1, dtype=np.int64)
        for row, context in enumerate(contexts):
            if not isinstance(context, Mapping):
                raise TypeError(
                    f"context {row} must be a dict of attribute -> value, got "
                    f"{type(context).__name__}"
                )
            for a, (name, kind) in enumerate(
                zip(self.attribute_names_, self.attribute_kinds_, strict=True)
            ):
                label = self._context_label(str(name), str(kind), context.get(str(name)), row)
                if label is not None:
                    out[row, a] = lookup.get((a, label), -1)
        return out

    def _context_label(self, name: str, kind: str, value: Any, row: int) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if kind != KIND_AGE:
            return _category_label(kind, value)
        text = str(value).strip()
        if not text:
            return None
        labels = age_band_labels(self.age_bands)
        if text in labels:
            return text
        try:
            age = float(text)
        except ValueError:
            raise ValueError(
                f"context {row}: {name}={value!r} is neither a number nor one of the age "
                f"bands {labels}; send the age in years, e.g. {name}='27'"
            ) from None
        if not math.isfinite(age):
            raise ValueError(f"context {row}: {name}={value!r} is not a finite age")
        return labels[int(_band_index(np.array([age]), self.age_bands)[0])]

    def _context_scores(self, contexts: Sequence[Mapping[str, Any]]) -> np.ndarray:
        segments = self.context_segments(contexts)
        n_attributes = len(self.attribute_names_)
        weights = np.zeros((len(contexts), len(self.segment_labels_)), dtype=np.float64)
        rows, cols = np.nonzero(segments >= 0)
        weights[rows, segments[rows, cols]] = 1.0 / n_attributes
        return self._mix(weights, (segments < 0).sum(axis=1) / n_attributes)

    def score_context(self, contexts: Sequence[Mapping[str, Any]], items: np.ndarray) -> np.ndarray:
        """Scores of ``items`` for each context, shape (len(contexts), len(items)).

        NaN where an item is outside the catalogue. See :meth:`context_segments` for
        what a context holds.
        """
        items = np.asarray(items, dtype=np.int64)
        scores = self._context_scores(contexts)
        known = (items >= 0) & (items < self.n_items_)
        out = np.full((len(contexts), len(items)), np.nan, dtype=np.float32)
        out[:, known] = scores[:, items[known]]
        return out

    def recommend_context(
        self,
        contexts: Sequence[Mapping[str, Any]],
        n: int,
        *,
        exclude: Sequence[np.ndarray] | None = None,
        candidates: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items per request context, best first: (item indices, scores).

        ``exclude`` gives, per context, item indices never to return (seen items, an
        explicit exclude list); ``candidates`` restricts the ranking to those items.
        Rows with fewer rankable items are padded with -1 / -inf, as in recommend().
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        scores = self._context_scores(contexts)
        if exclude is not None:
            if len(exclude) != len(contexts):
                raise ValueError(
                    f"exclude must have one array per context ({len(contexts)}), got {len(exclude)}"
                )
            for row, items in enumerate(exclude):
                items = np.asarray(items, dtype=np.int64).ravel()
                scores[row, items[(items >= 0) & (items < self.n_items_)]] = -np.inf
        if candidates is not None:
            candidates = np.asarray(candidates, dtype=np.int64)
            allowed = np.zeros(self.n_items_, dtype=bool)
            allowed[candidates[(candidates >= 0) & (candidates < self.n_items_)]] = True
            scores[:, ~allowed] = -np.inf
        return top_n(scores, n)

    def user_context(self, users: np.ndarray) -> list[dict[str, str]]:
        """The training attributes of the given user indices as contexts of segment
        labels (attributes unknown for a user, or users out of range, are left out)."""
        self._check_fitted()
        out = []
        for user in np.asarray(users, dtype=np.int64).ravel():
            context: dict[str, str] = {}
            if 0 <= user < self.user_segments_.shape[0]:
                for a, segment in enumerate(self.user_segments_[user]):
                    if segment >= 0:
                        context[str(self.attribute_names_[a])] = str(self.segment_labels_[segment])
            out.append(context)
        return out

    # -- explanations ----------------------------------------------------------------

    def top_segments(
        self, context: Mapping[str, Any], item: int, k: int = 2
    ) -> list[tuple[str, str]]:
        """The context's segments where ``item`` is most over-represented, best first.

        Up to ``k`` (attribute, segment label) pairs whose shrunk share of ``item``
        exceeds its global share, ordered by that lift; empty when the item is not
        more popular in any of the context's segments than overall.
        """
        segments = self.context_segments([context])[0]
        item = int(item)
        if not 0 <= item < self.n_items_:
            raise ValueError(f"item {item} is outside the catalogue (0..{self.n_items_ - 1})")
        overall = float(self.popularity_[item])
        if overall <= 0:
            return []
        lifts = []
        for segment in segments[segments >= 0]:
            lift = float(self.segment_shares_[segment, item]) / overall
            if lift > 1.0:
                lifts.append((lift, int(segment)))
        lifts.sort(key=lambda pair: (-pair[0], pair[1]))
        return [
            (
                str(self.attribute_names_[self.segment_attribute_[s]]),
                str(self.segment_labels_[s]),
            )
            for _, s in lifts[: max(0, int(k))]
        ]

    def top_segment(self, context: Mapping[str, Any], item: int) -> tuple[str, str] | None:
        """The one segment that lifts ``item`` most for ``context``, or None."""
        best = self.top_segments(context, item, k=1)
        return best[0] if best else None

    def explain_context(self, context: Mapping[str, Any], item: int) -> str | None:
        """A short reason a person reads, e.g. "popular on mobile in DE", or None when
        no segment of the context favours ``item`` over global popularity."""
        segments = self.top_segments(context, item, k=2)
        if not segments:
            return None
        kinds = dict(zip(self.attribute_names_, self.attribute_kinds_, strict=True))
        text = "popular"
        for position, (attribute, label) in enumerate(segments):
            phrase = segment_phrase(attribute, label, kinds[attribute])
            if position and phrase.startswith("with ") and text.startswith("popular with "):
                phrase = "and " + phrase.removeprefix("with ")  # "with A and B"
            text += " " + phrase
        return text

    # -- persistence -----------------------------------------------------------------

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "attribute_names_": self.attribute_names_,
            "attribute_kinds_": self.attribute_kinds_,
            "segment_attribute_": self.segment_attribute_,
            "segment_labels_": self.segment_labels_,
            "segment_users_": self.segment_users_,
            "segment_shares_": self.segment_shares_,
            "user_segments_": self.user_segments_,
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        names, kinds = state["attribute_names_"], state["attribute_kinds_"]
        seg_attr, labels = state["segment_attribute_"], state["segment_labels_"]
        sizes, shares = state["segment_users_"], state["segment_shares_"]
        user_segments = state["user_segments_"]
        n_attributes, n_segments = len(names), len(labels)
        if kinds.shape != (n_attributes,) or not set(kinds.tolist()) <= {
            KIND_CATEGORY,
            KIND_AGE,
            KIND_REGION,
        }:
            raise ValueError(f"attribute_kinds_ {kinds!r} do not match attribute_names_")
        if seg_attr.shape != (n_segments,) or sizes.shape != (n_segments,):
            raise ValueError("segment arrays have different lengths")
        if n_segments and not ((seg_attr >= 0) & (seg_attr < n_attributes)).all():
            raise ValueError("segment_attribute_ points outside attribute_names_")
        if shares.shape != (n_segments, self.n_items_):
            raise ValueError(
                f"segment_shares_ has shape {shares.shape}, expected ({n_segments}, "
                f"{self.n_items_})"
            )
        if user_segments.ndim != 2 or user_segments.shape[1] != n_attributes:
            raise ValueError(f"user_segments_ has shape {user_segments.shape}")
        if user_segments.size and user_segments.max() >= n_segments:
            raise ValueError("user_segments_ points outside the segments")
        self.attribute_names_, self.attribute_kinds_ = names, kinds
        self.segment_attribute_, self.segment_labels_ = seg_attr, labels
        self.segment_users_, self.segment_shares_ = sizes, shares
        self.user_segments_ = user_segments
        self._log_shares = None


class TrendingRecommender(BaseRecommender):
    """Ranks items by exponentially time-decayed interaction counts.

    An interaction ``age`` seconds before the newest training timestamp counts
    ``0.5 ** (age / half_life)``: ``decayed_counts_`` holds these sums (in
    "interactions as of the newest event"). The ranking score ``item_scores_`` is
    their natural log, computed without underflow so that items idle for years still
    rank among themselves by recency and volume; an item with no interaction scores
    one unit below the least active item. Every row gets the same scores, and empty
    rows too. Without timestamps the model cannot place anything in time and raises
    NotApplicableError; interactions missing a timestamp are ignored with a warning.
    """

    name: ClassVar[str] = "trending"

    def __init__(self, *, half_life_days: float = 7.0) -> None:
        self.half_life_days = half_life_days

    def _fit(self, data: Dataset) -> None:
        half_life = self.half_life_days
        if isinstance(half_life, bool) or not (
            isinstance(half_life, int | float) and math.isfinite(half_life) and half_life > 0
        ):
            raise ConfigurationError(
                f"trending half_life_days must be a positive number of days, got {half_life!r}"
            )
        timed = ~np.isnan(data.timestamps)
        if not timed.any():
            raise NotApplicableError(
                "trending needs interaction timestamps to decay counts over time, and this "
                "dataset has none; add a timestamp column to the interactions"
            )
        if not timed.all():
            log.warning(
                "trending: %d of %d interactions have no timestamp and are ignored",
                int((~timed).sum()),
                data.n_interactions,
            )
        stamps, items = data.timestamps[timed], data.item_idx[timed]
        # Exponent of each interaction's weight: ln(0.5) * age / half_life (<= 0).
        exponent = -math.log(2.0) * (stamps.max() - stamps) / (half_life * SECONDS_PER_DAY)
        n_items = data.n_items
        peak = np.full(n_items, -np.inf)
        np.maximum.at(peak, items, exponent)
        # log-sum-exp per item, shifted by its own peak so nothing underflows.
        rest = np.bincount(items, weights=np.exp(exponent - peak[items]), minlength=n_items)
        seen = rest > 0
        log_counts = np.full(n_items, np.nan)
        log_counts[seen] = peak[seen] + np.log(rest[seen])
        floor = log_counts[seen].min() - 1.0
        self.decayed_counts_ = np.where(seen, np.exp(np.where(seen, log_counts, 0.0)), 0.0)
        self.item_scores_ = np.where(seen, log_counts, floor).astype(np.float32)
        self.popularity_ = self.item_scores_

    def _score_rows(self, histories: csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return np.tile(self.item_scores_, (histories.shape[0], 1))

    def _state(self) -> dict[str, np.ndarray]:
        return {"decayed_counts_": self.decayed_counts_, "item_scores_": self.item_scores_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        counts, scores = state["decayed_counts_"], state["item_scores_"]
        for key, array in (("decayed_counts_", counts), ("item_scores_", scores)):
            if array.shape != (self.n_items_,):
                raise ValueError(f"{key} has shape {array.shape}, expected ({self.n_items_},)")
        self.decayed_counts_, self.item_scores_ = counts, scores


# -- helpers -------------------------------------------------------------------------


def age_band_labels(edges: Sequence[float]) -> list[str]:
    """Labels of the bands cut by ``edges``: ["under 18", "18-24", ..., "65+"]."""
    labels = [f"under {_number_text(edges[0])}"]
    for low, high in itertools.pairwise(edges):
        labels.append(f"{_number_text(low)}-{_number_text(float(high) - 1)}")
    labels.append(f"{_number_text(edges[-1])}+")
    return labels


def segment_phrase(attribute: str, label: str, kind: str = KIND_CATEGORY) -> str:
    """How a person says "in this segment": "with people aged 25-34", "on mobile",
    "in DE", "with occupation student", "in zip area 9"."""
    lowered = attribute.lower()
    if kind == KIND_AGE or lowered in ("age_band", "age_group", "ageband"):
        return f"with people aged {label}"
    if kind == KIND_REGION:
        return f"in {attribute} area {label}"
    if lowered in ("device", "os", "platform", "browser", "channel"):
        return f"on {label}"
    if lowered in ("country", "region", "city", "state", "market", "locale"):
        return f"in {label}"
    return f"with {attribute} {label}"


def _number_text(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _band_index(ages: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Band of each age: 0 below the first edge, len(edges) at or above the last."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), ages, side="right")


def _category_label(kind: str, value: Any) -> str | None:
    """Segment label of one raw value (None for missing/blank)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    return text[0].upper() if kind == KIND_REGION else text


def _attribute_kind(name: str, values: pd.Series, *, explicit: list[str] | None) -> str | None:
    """How a column becomes segments, or None when it cannot (a plain number)."""
    lowered = name.lower()
    if any(hint in lowered for hint in _REGION_HINTS):
        return KIND_REGION
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if lowered == "age":
        # Ages read from text files may arrive as strings; bands need numbers.
        as_numbers = pd.to_numeric(values, errors="coerce")
        if numeric or as_numbers.notna().sum() >= 0.9 * values.notna().sum() > 0:
            return KIND_AGE
    if not numeric:
        return KIND_CATEGORY
    # Any other number (price, score, a count) is not a segment unless named by the
    # user, who then means its distinct values.
    return KIND_CATEGORY if explicit is not None else None


def _groups_users(labels: np.ndarray) -> bool:
    """True when the labels split users into a few shared groups (not near-unique)."""
    known = pd.Series(labels[pd.notna(labels)], dtype=object)
    distinct = known.nunique()
    if distinct < 2 or distinct > MAX_SEGMENTS_PER_ATTRIBUTE:
        return False
    return len(known) / distinct >= MIN_USERS_PER_VALUE
