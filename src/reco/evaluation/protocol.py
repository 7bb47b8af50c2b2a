"""The evaluation protocol of DESIGN.md, as code: split, fit, full ranking, metrics.

* Split: per-user temporal holdout (:func:`reco.data.split.temporal_user_holdout`).
* Every test user is ranked against ALL items with training interactions, their own
  training items excluded (the model excludes its history rows).
* Metrics over the test users: NDCG@10, Recall@20, Precision@10, MAP@10, MRR@10,
  HR@10, coverage@10 (of the items with training interactions), novelty@10 (bits,
  popularity from train). Per-user metrics are averaged over test users.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.data.split import temporal_user_holdout
from reco.evaluation import metrics
from reco.evaluation.report import EvaluationReport, ModelEvaluation
from reco.models.base import BaseRecommender

__all__ = [
    "DEFAULT_K",
    "DEFAULT_RECALL_K",
    "EvaluationReport",
    "ModelEvaluation",
    "evaluate_model",
    "evaluate_recommendations",
    "evaluation_users",
    "holdout_report",
    "protocol_description",
    "relevance_matrix",
    "run_protocol",
    "validation_split",
]

DEFAULT_K = 10
DEFAULT_RECALL_K = 20
TEST_FRACTION = 0.2
MIN_INTERACTIONS = 5


def evaluation_users(test: Dataset, train: Dataset) -> np.ndarray:
    """Users evaluated: those with a test item that has training interactions, ascending.

    Row ``r`` of the ``recommended`` array given to :func:`evaluate_recommendations`
    belongs to user ``evaluation_users(test, train)[r]``.
    """
    in_train = train.item_counts() > 0
    return np.unique(test.user_idx[in_train[test.item_idx]]).astype(np.int64)


def relevance_matrix(test: Dataset, train: Dataset, users: np.ndarray) -> csr_matrix:
    """Binary CSR (len(users) x items) of each user's test items that exist in train."""
    in_train = train.item_counts() > 0
    keep = in_train[test.item_idx]
    matrix = csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (test.user_idx[keep], test.item_idx[keep])),
        shape=(test.n_users, test.n_items),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix[users]


def evaluate_recommendations(
    recommended: np.ndarray,
    test: Dataset,
    train: Dataset,
    *,
    k: int = DEFAULT_K,
    recall_k: int = DEFAULT_RECALL_K,
) -> dict[str, float]:
    """The protocol's metrics for rankings already computed.

    ``recommended`` has one row per user of :func:`evaluation_users` (same order) and at
    least ``max(k, recall_k)`` columns of item indices, best first, ``-1`` for empty
    slots. Returns ``{"ndcg@10", "recall@20", "precision@10", "map@10", "mrr@10",
    "hit_rate@10", "coverage@10", "novelty@10"}`` (cut-offs follow ``k`` and
    ``recall_k``): per-user values averaged over users; coverage over the items with
    training interactions; novelty with popularity from train.
    """
    _check_same_vocabularies(train, test)
    users = evaluation_users(test, train)
    recommended = np.asarray(recommended)
    needed = max(k, recall_k)
    if recommended.ndim != 2 or recommended.shape[0] != len(users):
        raise ValueError(
            f"recommended must have one row per test user ({len(users)} rows, ordered as "
            f"evaluation_users(test, train)), got shape {recommended.shape}"
        )
    if recommended.shape[1] < needed:
        raise ValueError(
            f"recommended has {recommended.shape[1]} columns; the protocol needs at least "
            f"{needed} (recall@{recall_k})"
        )
    if len(users) == 0:
        raise ValueError(
            "no test user has a test item seen in train; the split left nothing to evaluate"
        )
    relevant = relevance_matrix(test, train, users)
    popularity = train.item_counts()
    return {
        f"ndcg@{k}": _mean(metrics.ndcg_at_k(recommended, relevant, k)),
        f"recall@{recall_k}": _mean(metrics.recall_at_k(recommended, relevant, recall_k)),
        f"precision@{k}": _mean(metrics.precision_at_k(recommended, relevant, k)),
        f"map@{k}": _mean(metrics.map_at_k(recommended, relevant, k)),
        f"mrr@{k}": _mean(metrics.mrr_at_k(recommended, relevant, k)),
        f"hit_rate@{k}": _mean(metrics.hit_rate_at_k(recommended, relevant, k)),
        f"coverage@{k}": metrics.catalog_coverage_at_k(recommended, k, popularity > 0),
        f"novelty@{k}": _mean(metrics.novelty_at_k(recommended, k, popularity)),
    }


def evaluate_model(
    model: BaseRecommender,
    train: Dataset,
    test: Dataset,
    *,
    fit: bool = True,
    n: int = DEFAULT_RECALL_K,
    name: str | None = None,
) -> ModelEvaluation:
    """Fit ``model`` on ``train`` (unless ``fit`` is False), rank for every test user,
    and score the rankings with :func:`evaluate_recommendations`.

    Each test user's history row is their row of ``train.matrix()``; the model ranks
    every item with training interactions and excludes the history itself. Timings are
    wall-clock seconds of ``fit`` and of the one batched ``recommend`` call.
    """
    _check_same_vocabularies(train, test)
    if n < DEFAULT_RECALL_K:
        raise ValueError(f"n must be at least {DEFAULT_RECALL_K} (recall@{DEFAULT_RECALL_K})")
    label = name or getattr(model, "name", type(model).__name__)
    fit_seconds = 0.0
    if fit:
        started = time.perf_counter()
        model.fit(train)
        fit_seconds = time.perf_counter() - started

    users = evaluation_users(test, train)
    histories = train.matrix()[users]
    in_train = train.item_counts() > 0
    # Restricting to candidates costs a mask per block; skip it when it changes nothing.
    candidates = None if in_train.all() else np.flatnonzero(in_train)
    started = time.perf_counter()
    recommended, _ = model.recommend(histories, n, candidates=candidates, users=users)
    predict_seconds = time.perf_counter() - started

    recommended = np.asarray(recommended)
    _check_protocol_kept(label, recommended, histories, in_train, n)
    return ModelEvaluation(
        name=label,
        metrics=evaluate_recommendations(recommended, test, train),
        fit_seconds=fit_seconds,
        predict_seconds=predict_seconds,
    )


def validation_split(
    train: Dataset,
    *,
    seed: int = 42,
    test_fraction: float = TEST_FRACTION,
    min_interactions: int = MIN_INTERACTIONS,
) -> tuple[Dataset, Dataset]:
    """The protocol's holdout applied again inside ``train``: (fit part, validation part).

    For model selection and the reranker's labels, so test data is never seen.
    """
    return temporal_user_holdout(
        train, test_fraction=test_fraction, min_interactions=min_interactions, seed=seed
    )


def protocol_description(*, seed: int, test_fraction: float, min_interactions: int) -> dict:
    """The protocol's parameters and rules, as recorded in every report."""
    return {
        "split": "temporal_user_holdout",
        "test_fraction": test_fraction,
        "test_size_rule": "max(1, floor(test_fraction * n)) latest interactions per user",
        "min_interactions": min_interactions,
        "seed": seed,
        "ties": "equal timestamps keep dataset row order; no timestamps: seeded random order",
        "ranking": "all items with training interactions, the user's training items excluded",
        "relevance": "binary; test items unseen in train dropped",
        "description": (
            f"Per-user temporal holdout: each user's last {test_fraction:.0%} interactions "
            f"(floor, at least 1) are test, users with fewer than {min_interactions} stay in "
            "train; full ranking over all train items, the user's train items excluded; "
            "binary relevance, averages over test users."
        ),
    }


def run_protocol(
    models: dict[str, BaseRecommender],
    data: Dataset,
    *,
    seed: int = 42,
    progress: Callable[[str], None] | None = None,
    name: str = "dataset",
    test_fraction: float = TEST_FRACTION,
    min_interactions: int = MIN_INTERACTIONS,
) -> EvaluationReport:
    """Split ``data`` with the temporal holdout, fit and evaluate every model on it.

    ``models`` maps the name shown in the report to an unfitted model. ``progress``
    receives a short line before each step (for a CLI bar or a log).
    """
    if not models:
        raise ValueError("run_protocol needs at least one model to evaluate")
    say = progress or (lambda _message: None)
    say(f"splitting {name}: {data.n_interactions:,} interactions")
    train, test, report = holdout_report(
        data, name=name, seed=seed, test_fraction=test_fraction, min_interactions=min_interactions
    )
    for label, model in models.items():
        say(f"evaluating {label}")
        report.evaluations.append(evaluate_model(model, train, test, name=label))
    return report


# -- helpers ------------------------------------------------------------------------


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def _check_same_vocabularies(train: Dataset, test: Dataset) -> None:
    if train.n_items != test.n_items or train.n_users != test.n_users:
        raise ValueError(
            "train and test must come from one split of the same dataset (same vocabularies): "
            f"train has {train.n_users} users x {train.n_items} items, test "
            f"{test.n_users} x {test.n_items}"
        )


def _check_protocol_kept(
    label: str,
    recommended: np.ndarray,
    histories: csr_matrix,
    in_train: np.ndarray,
    n: int,
) -> None:
    """Fail loudly when a model breaks the ranking contract instead of scoring it."""
    if recommended.shape != (histories.shape[0], n):
        raise ValueError(
            f"model {label!r} returned rankings of shape {recommended.shape}, expected "
            f"{(histories.shape[0], n)} (one row per history, n items each)"
        )
    valid = recommended >= 0
    if (recommended[valid] >= len(in_train)).any() or not in_train[recommended[valid]].all():
        raise ValueError(
            f"model {label!r} recommended an item outside the candidates (an item with no "
            "training interaction); recommend() must honour candidates="
        )
    rows = np.repeat(np.arange(recommended.shape[0]), recommended.shape[1])
    flat = recommended.ravel()
    seen = np.asarray(histories[rows[flat >= 0], flat[flat >= 0]]).ravel() != 0
    if seen.any():
        raise ValueError(
            f"model {label!r} recommended items already in the user's history; "
            "recommend() must exclude each row's history items"
        )


def holdout_report(
    data: Dataset,
    *,
    name: str,
    seed: int = 42,
    test_fraction: float = TEST_FRACTION,
    min_interactions: int = MIN_INTERACTIONS,
) -> tuple[Dataset, Dataset, EvaluationReport]:
    """The protocol's temporal holdout of ``data`` and an empty report describing it."""
    train, test = temporal_user_holdout(
        data, test_fraction=test_fraction, min_interactions=min_interactions, seed=seed
    )
    report = EvaluationReport(
        dataset={
            "name": name,
            "users": int((data.user_counts() > 0).sum()),
            "items": int((data.item_counts() > 0).sum()),
            "interactions": data.n_interactions,
            "train_interactions": train.n_interactions,
            "test_interactions": test.n_interactions,
            "test_users": len(evaluation_users(test, train)),
            "fingerprint": data.fingerprint(),
        },
        protocol=protocol_description(
            seed=seed, test_fraction=test_fraction, min_interactions=min_interactions
        ),
    )
    return train, test, report
