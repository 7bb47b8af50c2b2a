"""Cold-item benchmark: do items with no interactions reach the users who will want them?

Setup (issue 3, "cold start (b) new items"): the DESIGN.md protocol split (per-user
temporal holdout, 20% test); then 5% of the items with training interactions,
drawn with a seed, lose every training interaction but keep their metadata — they
are new items. Each model is fitted on what is left and ranks, for every test user,
the usual candidates (items with training interactions) plus the new items; the
user's training items are excluded. For the new items it reports:

* share of top-20 slots they take (their share of the candidates is the chance level),
* users reached: share of test users with at least one new item in their top-20,
* new items shown: share of the new items in at least one user's top-20,
* recall@20 on new items: per user with a new item in their test set, new test items
  in the top-20 / min(their number, 20), averaged,
* NDCG@10 and recall@20 over all test items (new ones included), to see what the
  whole ranking costs or gains,

and the fit seconds. Two references: a collaborative model (item-kNN), which cannot
score an item nobody has touched, and a seeded random ranking (chance).

    python benchmarks/cold_items.py                       # ml-100k and ml-latest-small
    python benchmarks/cold_items.py --datasets ml-100k --no-sentence

Prints tables; asserts nothing. The pipeline adds "content on vs off" by passing its
own factories to :func:`cold_item_experiment`.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.data.split import temporal_user_holdout
from reco.evaluation import metrics
from reco.models.base import BaseRecommender

K = 10
RECALL_K = 20
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ColdItemSplit:
    """The protocol split with new items: ``train`` lacks every interaction of ``cold``."""

    train: Dataset
    test: Dataset
    cold: np.ndarray  # item indices of the new items
    candidates: np.ndarray  # items with training interactions, then the new items
    users: np.ndarray  # evaluated users: those with a test item among the candidates


@dataclass(frozen=True)
class ColdItemResult:
    """What one model did for the new items (see the module docstring)."""

    name: str
    cold_slot_share: float
    users_reached: float
    cold_items_shown: float
    cold_recall: float
    ndcg: float
    recall: float
    fit_seconds: float


class RandomRanking(BaseRecommender):
    """Chance: every row scores the catalogue with uniform noise from ``seed``."""

    name = "random"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def _fit(self, data: Dataset) -> None:
        self.rng_ = np.random.default_rng(self.seed)

    def _score_rows(self, histories: csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return self.rng_.random((histories.shape[0], self.n_items_), dtype=np.float32)


def split_cold_items(data: Dataset, *, fraction: float = 0.05, seed: int = 42) -> ColdItemSplit:
    """The protocol's temporal holdout, then ``fraction`` of the trained items made new.

    New items are drawn uniformly (seeded) from the items with training interactions;
    their training interactions are removed, their test interactions kept as targets,
    and their metadata stays in ``data.item_features``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction of new items must be in (0, 1), got {fraction}")
    train, test = temporal_user_holdout(data, seed=seed)
    trained = np.flatnonzero(train.item_counts() > 0)
    rng = np.random.default_rng(seed)
    n_cold = max(1, round(fraction * len(trained)))
    cold = np.sort(rng.choice(trained, size=n_cold, replace=False))
    train = train.subset(~np.isin(train.item_idx, cold))
    candidates = np.concatenate([np.flatnonzero(train.item_counts() > 0), cold])
    users = np.unique(test.user_idx[np.isin(test.item_idx, candidates)]).astype(np.int64)
    return ColdItemSplit(train=train, test=test, cold=cold, candidates=candidates, users=users)


def _relevance(test: Dataset, users: np.ndarray, items: np.ndarray) -> csr_matrix:
    """Binary users x catalogue matrix of each user's test interactions with ``items``."""
    keep = np.isin(test.item_idx, items)
    matrix = csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (test.user_idx[keep], test.item_idx[keep])),
        shape=(test.n_users, test.n_items),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix[users]


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def measure(name: str, split: ColdItemSplit, model: Any) -> ColdItemResult:
    """Fit ``model`` (anything with ``fit(Dataset)`` and the contract's ``recommend``)
    on the split and measure the new items in its top-20."""
    started = time.perf_counter()
    model.fit(split.train)
    fit_seconds = time.perf_counter() - started
    histories = split.train.matrix()[split.users]
    top, _ = model.recommend(histories, RECALL_K, candidates=split.candidates, users=split.users)
    top = np.asarray(top)
    is_cold = np.zeros(split.train.n_items, dtype=bool)
    is_cold[split.cold] = True
    filled = top >= 0
    cold_slots = filled & is_cold[np.where(filled, top, 0)]
    everything = _relevance(split.test, split.users, split.candidates)
    cold_targets = _relevance(split.test, split.users, split.cold)
    return ColdItemResult(
        name=name,
        cold_slot_share=float(cold_slots.sum() / max(1, filled.sum())),
        users_reached=float(cold_slots.any(axis=1).mean()),
        cold_items_shown=float(len(np.unique(top[cold_slots])) / len(split.cold)),
        cold_recall=_nanmean(metrics.recall_at_k(top, cold_targets, RECALL_K)),
        ndcg=_nanmean(metrics.ndcg_at_k(top, everything, K)),
        recall=_nanmean(metrics.recall_at_k(top, everything, RECALL_K)),
        fit_seconds=fit_seconds,
    )


def cold_item_experiment(
    data: Dataset,
    models: Mapping[str, Callable[[], Any]],
    *,
    fraction: float = 0.05,
    seed: int = 42,
    name: str = "dataset",
    show: bool = True,
) -> list[ColdItemResult]:
    """Run every model factory in ``models`` on one cold-item split of ``data``;
    print the table (unless ``show`` is False) and return the results."""
    split = split_cold_items(data, fraction=fraction, seed=seed)
    results = [measure(label, split, factory()) for label, factory in models.items()]
    if show:
        print_table(name, split, results)
    return results


def print_table(name: str, split: ColdItemSplit, results: list[ColdItemResult]) -> None:
    """The results as a plain-text table with the setup above it."""
    n_cold_users = int((_relevance(split.test, split.users, split.cold).getnnz(axis=1) > 0).sum())
    chance = len(split.cold) / len(split.candidates)
    print(
        f"\n{name}: {len(split.cold)} new items (of {len(split.candidates)} candidates; "
        f"chance share of slots {chance:.3f}), {len(split.users)} test users, "
        f"{n_cold_users} of them with a new item in their test set"
    )
    header = (
        f"{'model':<22} {'slots new':>9} {'users reached':>13} {'new shown':>9} "
        f"{'new recall@20':>13} {'ndcg@10':>8} {'recall@20':>9} {'fit s':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.name:<22} {r.cold_slot_share:>9.3f} {r.users_reached:>13.3f} "
            f"{r.cold_items_shown:>9.3f} {r.cold_recall:>13.4f} {r.ndcg:>8.4f} "
            f"{r.recall:>9.4f} {r.fit_seconds:>7.1f}"
        )


def _data_dir() -> Path:
    configured = os.environ.get("RECO_DATA_DIR")
    return Path(configured) if configured else (REPO.parent / "shared" / "data").resolve()


def _load(name: str) -> Dataset:
    from reco.data.movielens import load_movielens

    frames = load_movielens(_data_dir() / name)
    return Dataset.from_frames(frames.interactions, frames.items, frames.users)


def default_models(*, sentence: bool) -> dict[str, Callable[[], Any]]:
    """Content (TF-IDF, and sentence embeddings when asked), item-kNN and chance."""
    from reco.models import create_model

    models: dict[str, Callable[[], Any]] = {
        "content (tfidf)": lambda: create_model("content"),
    }
    if sentence:
        models["content (sentence)"] = lambda: create_model("content", encoder="sentence")
    models["itemknn (reference)"] = lambda: create_model("itemknn", k=100)
    models["random (chance)"] = RandomRanking
    return models


def main(argv: list[str] | None = None) -> None:
    """Command line: run the experiment on the chosen MovieLens datasets."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-latest-small"])
    parser.add_argument("--fraction", type=float, default=0.05, help="share of items made new")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--no-sentence", action="store_true", help="skip the sentence-embedding content model"
    )
    args = parser.parse_args(argv)
    print(
        f"cold items: python {platform.python_version()}, {os.cpu_count()} cores, "
        f"data {_data_dir()}, new items {args.fraction:.0%}, seed {args.seed}, top-{RECALL_K}"
    )
    for name in args.datasets:
        cold_item_experiment(
            _load(name),
            default_models(sentence=not args.no_sentence),
            fraction=args.fraction,
            seed=args.seed,
            name=name,
        )


if __name__ == "__main__":
    main()
