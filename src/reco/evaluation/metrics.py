"""Ranking metrics as plain functions over arrays.

One input convention throughout:

* ``recommended``: int array of shape (n_users, >= k), item indices best first; ``-1``
  marks an empty slot (a model with fewer rankable items than asked pads with it).
* ``relevant``: CSR matrix of shape (n_users, n_items), row ``u`` aligned with row
  ``u`` of ``recommended``; any stored non-zero entry is a relevant (test) item.
  Gains are binary whatever the weights.

Per-user metrics return a float64 array of length n_users, NaN for a user with no
relevant item (undefined, not zero: average with ``np.nanmean``). Catalogue-level
metrics return one float. ``R_u`` below is user u's relevant set, ``rel_u(j)`` is 1
when the item at rank j (1-based) is in ``R_u``, else 0.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix, issparse


def hits_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> np.ndarray:
    """Boolean (n_users, k) matrix: ``hits[u, j]`` is ``rel_u(j + 1)``.

    Validates the inputs (shapes, index range, no repeated item in a row) so every
    metric built on it fails with a clear message instead of a wrong number.
    """
    top = _top_k(recommended, k)
    relevant = _as_relevance(relevant, top.shape[0])
    n_items = relevant.shape[1]
    valid = top >= 0
    if (top[valid] >= n_items).any():
        raise ValueError(
            f"recommended holds item index {int(top[valid].max())} but relevant has only "
            f"{n_items} item columns; both must use the same item vocabulary"
        )
    _check_no_repeats(top)
    # Sorted keys row * n_items + item of the relevant cells (CSR is canonical).
    rel_rows = np.repeat(np.arange(relevant.shape[0], dtype=np.int64), np.diff(relevant.indptr))
    rel_keys = rel_rows * n_items + relevant.indices
    rec_keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * n_items + np.maximum(top, 0)
    pos = np.searchsorted(rel_keys, rec_keys)
    pos = np.minimum(pos, max(len(rel_keys) - 1, 0))
    found = rel_keys[pos] == rec_keys if len(rel_keys) else np.zeros(top.shape, dtype=bool)
    return found & valid


def n_relevant(relevant: csr_matrix) -> np.ndarray:
    """``|R_u|`` per user: the number of relevant items of each row (int64)."""
    relevant = _as_relevance(relevant, None)
    return np.diff(relevant.indptr).astype(np.int64)


def ndcg_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> np.ndarray:
    """NDCG@k with binary gains.

    ``DCG_u = sum_{j=1..k} rel_u(j) / log2(j + 1)``,
    ``IDCG_u = sum_{j=1..min(|R_u|, k)} 1 / log2(j + 1)``, ``NDCG_u = DCG_u / IDCG_u``.
    """
    hits = hits_at_k(recommended, relevant, k)
    counts = n_relevant(relevant)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts
    ideal_cumulative = np.r_[0.0, np.cumsum(discounts)]
    idcg = ideal_cumulative[np.minimum(counts, k)]
    return _per_user(dcg, idcg, counts)


def recall_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> np.ndarray:
    """Recall@k, capped: ``sum_{j=1..k} rel_u(j) / min(|R_u|, k)``.

    Dividing by ``min(|R_u|, k)`` rather than ``|R_u|`` makes 1 reachable for a user
    with more relevant items than slots.
    """
    hits = hits_at_k(recommended, relevant, k)
    counts = n_relevant(relevant)
    return _per_user(hits.sum(axis=1), np.minimum(counts, k), counts)


def precision_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> np.ndarray:
    """Precision@k: ``sum_{j=1..k} rel_u(j) / k`` (empty slots count as misses)."""
    hits = hits_at_k(recommended, relevant, k)
    counts = n_relevant(relevant)
    return _per_user(hits.sum(axis=1), np.full(len(counts), k), counts)


def map_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> np.ndarray:
    """Average precision at k per user (their mean over users is MAP@k).

    ``AP_u = sum_{j=1..k} P_u@j * rel_u(j) / min(|R_u|, k)`` where
    ``P_u@j = sum_{i=1..j} rel_u(i) / j``.
    """
    hits = hits_at_k(recommended, relevant, k)
    counts = n_relevant(relevant)
    precision_at_rank = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    ap_sum = (precision_at_rank * hits).sum(axis=1)
    return _per_user(ap_sum, np.minimum(counts, k), counts)


def mrr_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> np.ndarray:
    """Reciprocal rank at k: ``1 / j*`` for the first rank ``j*`` with a hit, 0 if none
    in the top k (their mean over users is MRR@k)."""
    hits = hits_at_k(recommended, relevant, k)
    counts = n_relevant(relevant)
    any_hit = hits.any(axis=1)
    first_rank = np.argmax(hits, axis=1) + 1
    rr = np.where(any_hit, 1.0 / first_rank, 0.0)
    return _per_user(rr, np.ones(len(counts)), counts)


def hit_rate_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> np.ndarray:
    """Hit rate at k: 1 when at least one of the top k is relevant, else 0."""
    hits = hits_at_k(recommended, relevant, k)
    counts = n_relevant(relevant)
    return _per_user(hits.any(axis=1).astype(np.float64), np.ones(len(counts)), counts)


def catalog_coverage_at_k(recommended: np.ndarray, k: int, catalog: int | np.ndarray) -> float:
    """Share of the catalogue that appears in at least one user's top k.

    ``coverage = |C ∩ (union_u top_k(u))| / |C|``. ``catalog`` is either the number
    of items (every index ``0..n-1`` is in the catalogue) or a boolean mask over item
    indices (the protocol passes "items with training interactions"). Recommended
    items outside the catalogue do not count.
    """
    top = _top_k(recommended, k)
    if np.isscalar(catalog):
        mask = np.ones(int(catalog), dtype=bool)
    else:
        mask = np.asarray(catalog, dtype=bool)
        if mask.ndim != 1:
            raise ValueError(f"catalog mask must be 1-D over item indices, got shape {mask.shape}")
    if not mask.any():
        raise ValueError("the catalogue is empty: coverage is undefined without catalogue items")
    shown = np.unique(top[(top >= 0) & (top < len(mask))])
    return float(mask[shown].sum() / mask.sum())


def novelty_at_k(recommended: np.ndarray, k: int, item_popularity: np.ndarray) -> np.ndarray:
    """Mean self-information of each user's top k, in bits.

    ``novelty_u = mean_{i in top_k(u)} -log2(pop_i / sum(pop))`` where ``pop`` is
    the training interaction count per item (``item_popularity``, one entry per item
    index). An item with no training interaction is counted as seen once, which
    keeps the value finite. Empty slots are skipped; a user with no item at all gets
    NaN. Higher means less popular, more surprising recommendations.
    """
    top = _top_k(recommended, k)
    popularity = np.asarray(item_popularity, dtype=np.float64)
    if popularity.ndim != 1 or (popularity < 0).any():
        raise ValueError("item_popularity must be a 1-D array of non-negative counts")
    valid = top >= 0
    if (top[valid] >= len(popularity)).any():
        raise ValueError(
            f"recommended holds item index {int(top[valid].max())} but item_popularity has "
            f"only {len(popularity)} entries; both must use the same item vocabulary"
        )
    counts = np.maximum(popularity, 1.0)
    self_information = -np.log2(counts / counts.sum())
    bits = np.where(valid, self_information[np.maximum(top, 0)], 0.0)
    n_valid = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_valid > 0, bits.sum(axis=1) / n_valid, np.nan)


# -- helpers ------------------------------------------------------------------------


def _top_k(recommended: np.ndarray, k: int) -> np.ndarray:
    recommended = np.asarray(recommended)
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if recommended.ndim != 2:
        raise ValueError(
            f"recommended must be a 2-D (users x ranks) array, got shape {recommended.shape}"
        )
    if recommended.shape[1] < k:
        raise ValueError(
            f"recommended has {recommended.shape[1]} columns, fewer than k={k}; "
            f"ask the model for at least {k} items"
        )
    if not np.issubdtype(recommended.dtype, np.integer):
        raise ValueError(f"recommended must hold integer item indices, got {recommended.dtype}")
    top = recommended[:, :k].astype(np.int64)
    if (top < -1).any():
        raise ValueError("recommended holds negative indices other than -1 (the empty slot)")
    return top


def _as_relevance(relevant: csr_matrix, n_rows: int | None) -> csr_matrix:
    if not issparse(relevant):
        raise ValueError("relevant must be a scipy sparse (users x items) matrix of test items")
    relevant = csr_matrix(relevant, copy=True)
    relevant.eliminate_zeros()
    relevant.sum_duplicates()
    relevant.sort_indices()
    if n_rows is not None and relevant.shape[0] != n_rows:
        raise ValueError(
            f"recommended has {n_rows} rows but relevant has {relevant.shape[0]}; "
            "row u of each must describe the same user"
        )
    return relevant


def _check_no_repeats(top: np.ndarray) -> None:
    ordered = np.sort(top, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        row = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise ValueError(
            f"row {row} of recommended lists the same item twice; a ranking holds each "
            "item at most once"
        )


def _per_user(numerator: np.ndarray, denominator: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """numerator / denominator as float64, NaN where the user has no relevant item."""
    out = np.full(len(counts), np.nan)
    defined = counts > 0
    out[defined] = np.asarray(numerator, dtype=np.float64)[defined] / denominator[defined]
    return out
