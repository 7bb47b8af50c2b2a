"""Diversity and exploration, applied to ranked lists after the ranker.

* :func:`mmr` re-ranks each row by maximal marginal relevance: every next pick trades
  its relevance against its similarity to the items already picked (cosine over item
  category vectors or embeddings).
* :func:`interleave` gives a share of each list to exploration picks (new items), at
  evenly spread positions below the top few.

Both are off by default (``diversity`` and ``exploration_share`` 0): on MovieLens
they cost NDCG (see benchmarks/quality.py), so they are business choices, not defaults.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix, issparse

# Exploration never takes the first slots: the best-scored items stay on top.
PROTECTED_TOP = 3


def unit_rows(vectors: np.ndarray | csr_matrix) -> np.ndarray:
    """Dense float32 rows scaled to unit length (zero rows stay zero)."""
    dense = vectors.toarray() if issparse(vectors) else np.asarray(vectors)
    dense = dense.astype(np.float32)
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    return np.divide(dense, norms, out=np.zeros_like(dense), where=norms > 0)


def mmr(
    items: np.ndarray,
    scores: np.ndarray,
    vectors: np.ndarray,
    n: int,
    weight: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``n`` of each row's ranked ``items`` by maximal marginal relevance.

    ``items`` / ``scores``: rows x m candidates (index -1 for empty slots);
    ``vectors``: unit item vectors (items x dim); ``weight`` in [0, 1): 0 keeps the
    ranking. Each pick maximises ``(1 - weight) * relevance - weight * max cosine to
    the picks so far``, relevance being the score scaled to [0, 1] within the row.
    Returns (items, scores) of shape rows x n, the scores being the original ones.
    """
    n_rows, m = items.shape
    out_items = np.full((n_rows, n), -1, dtype=np.int64)
    out_scores = np.full((n_rows, n), -np.inf, dtype=np.float32)
    if n_rows == 0 or m == 0:
        return out_items, out_scores
    valid = items >= 0
    finite = np.where(valid, scores, np.nan)
    low = np.nanmin(np.where(valid, finite, np.inf), axis=1, keepdims=True)
    high = np.nanmax(np.where(valid, finite, -np.inf), axis=1, keepdims=True)
    spread = np.where(high > low, high - low, 1.0)
    relevance = np.where(valid, (scores - low) / spread, -np.inf)
    candidate_vectors = vectors[np.maximum(items, 0)]  # rows x m x dim
    closest = np.zeros((n_rows, m), dtype=np.float32)
    taken = ~valid
    rows = np.arange(n_rows)
    for slot in range(min(n, m)):
        value = (1.0 - weight) * relevance - weight * closest
        value[taken] = -np.inf
        pick = np.argmax(value, axis=1)
        ok = np.isfinite(value[rows, pick])
        out_items[ok, slot] = items[rows[ok], pick[ok]]
        out_scores[ok, slot] = scores[rows[ok], pick[ok]]
        taken[rows[ok], pick[ok]] = True
        picked = candidate_vectors[rows, pick]  # rows x dim
        similarity = np.einsum("rmd,rd->rm", candidate_vectors, picked)
        closest = np.where(ok[:, None], np.maximum(closest, similarity), closest)
    return out_items, out_scores


def exploration_slots(n: int, share: float) -> np.ndarray:
    """Positions (0-based) of a list of ``n`` given to exploration at ``share``."""
    k = round(n * share)
    if k <= 0 or n <= PROTECTED_TOP:
        return np.zeros(0, dtype=np.int64)
    k = min(k, n - PROTECTED_TOP)
    return np.unique(np.linspace(PROTECTED_TOP, n - 1, k).round().astype(np.int64))


def interleave(
    ranked: np.ndarray,
    explore: np.ndarray,
    slots: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Insert each row's exploration items at ``slots``; the ranked items shift down.

    ``ranked``: rows x n items (the final list before exploration); ``explore``:
    rows x len(slots) items (-1 where a row has none: its ranked items stay).
    Returns the new rows x n items and a boolean mask of the exploration picks.
    """
    n_rows, n = ranked.shape
    out = np.full((n_rows, n), -1, dtype=np.int64)
    is_explore = np.zeros((n_rows, n), dtype=bool)
    for row in range(n_rows):
        listed = set(ranked[row].tolist())
        picks = [int(i) for i in explore[row] if i >= 0 and i not in listed]
        queue = [int(i) for i in ranked[row] if i >= 0 and i not in picks]
        position_of = dict(zip(slots.tolist()[: len(picks)], picks, strict=False))
        for position in range(n):
            if position in position_of:
                out[row, position] = position_of[position]
                is_explore[row, position] = True
            elif queue:
                out[row, position] = queue.pop(0)
    return out, is_explore
