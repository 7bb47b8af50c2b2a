"""Cold-start benchmark (a): new users, from their attributes alone and then a few items.

Setup (issue 3): on ml-100k, hold out 10% of the users entirely (seeded) and train on
the rest. Each held-out user is then a *new* user. At step 0 a source sees only their
attributes (age, gender, occupation, zip) and every item they interacted with is
relevant; at step ``s`` in 1, 3, 5 it also gets their first ``s`` interactions (by
time) as history, and the rest of their interactions are relevant (the given ones are
excluded from the ranking). Ranking is over the items with training interactions,
relevance binary, as in the DESIGN protocol; NDCG@10 and Recall@20 averaged over the
held-out users, then over folds. With ``--folds 10`` (the default) the ten disjoint
10% folds together hold out every user once, which keeps the numbers stable.

Sources compared: global popularity, segment (context) popularity, trending, and
item-kNN / ALS fitted on the rest as history-based references at steps 1, 3, 5.

To add a row (e.g. the pipeline), write a factory that fits on the fold's training
data and returns a :data:`Source`, and pass it to :func:`run` with the others::

    def pipeline_source(train: Dataset) -> Source:
        pipeline = build_and_fit_pipeline(train)
        def recommend(request: ColdStartRequest) -> np.ndarray:
            return pipeline.recommend_for(request.contexts, request.histories,
                                          request.n, candidates=request.candidates)
        return recommend

    factories = {**reference_sources(), "pipeline": pipeline_source}
    print(format_table(run(factories, load_ml100k(), folds=10)))

    python benchmarks/cold_users.py                 # ml-100k under ../shared/data
    python benchmarks/cold_users.py --folds 3 --data-dir /path/to/data

Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from reco.data import schema
from reco.data.dataset import Dataset
from reco.data.movielens import load_movielens
from reco.evaluation import metrics
from reco.models.als import ALSRecommender
from reco.models.context_popularity import SegmentPopularityRecommender, TrendingRecommender
from reco.models.itemknn import ItemKNNRecommender
from reco.models.popularity import PopularityRecommender

STEPS = (0, 1, 3, 5)
HOLDOUT_FRACTION = 0.1
K = 10
RECALL_K = 20
ATTRIBUTES = ("age", "gender", "occupation", "zip")


@dataclass(frozen=True)
class ColdStartFold:
    """One fold: the training data without the held-out users, and those users."""

    train: Dataset
    users: np.ndarray  # held-out users' indices (same vocabulary as train)
    contexts: list[dict[str, str]]  # their raw attributes, as a request would carry
    items_in_order: list[np.ndarray]  # each one's distinct items, first interaction first
    candidates: np.ndarray  # items with training interactions: the ranked catalogue


@dataclass(frozen=True)
class ColdStartRequest:
    """What a source gets at one step for all held-out users of a fold (one row each)."""

    step: int  # interactions given as history (0: attributes only)
    users: np.ndarray  # indices in train's vocabulary (no training interactions)
    contexts: list[dict[str, str]]
    histories: csr_matrix  # rows x items: the given interactions (empty at step 0)
    candidates: np.ndarray
    n: int  # items to return per row


# A source answers a request with an int array (rows x n) of item indices, best first,
# -1 for empty slots and never a given item; None when it does not apply at that step.
Source = Callable[[ColdStartRequest], np.ndarray | None]
# Builds a source from one fold's training data (fitting whatever it needs).
SourceFactory = Callable[[Dataset], Source]


@dataclass(frozen=True)
class Row:
    """Mean metrics of one source at one step over the folds."""

    source: str
    step: int
    ndcg: float
    recall: float
    users: int
    folds: int
    fold_ndcg: tuple[float, ...]


def load_ml100k(data_dir: Path | None = None) -> Dataset:
    """ml-100k with its items and users, from ``data_dir`` (default: RECO_DATA_DIR or
    ../shared/data next to the repository)."""
    if data_dir is None:
        configured = os.environ.get("RECO_DATA_DIR")
        repo = Path(__file__).resolve().parents[1]
        data_dir = Path(configured) if configured else repo.parent / "shared" / "data"
    frames = load_movielens(Path(data_dir) / "ml-100k")
    return Dataset.from_frames(frames.interactions, frames.items, frames.users)


def make_folds(
    data: Dataset,
    *,
    folds: int,
    seed: int = 42,
    fraction: float = HOLDOUT_FRACTION,
    attributes: Sequence[str] | None = None,
) -> list[ColdStartFold]:
    """``folds`` disjoint sets of ``fraction`` of the users (seeded), each held out of
    its own training set. The contexts carry the held-out users' ``attributes`` (every
    column of ``data.user_features`` but user_id when None)."""
    if data.user_features is None:
        raise ValueError("the cold-user benchmark needs user attributes (a users file)")
    if attributes is None:
        attributes = [c for c in data.user_features.columns if c != schema.USER]
    active = np.flatnonzero(data.user_counts() > 0)
    size = max(1, round(fraction * len(active)))
    if folds < 1 or folds * size > len(active):
        raise ValueError(f"folds must be 1..{len(active) // size} for {len(active)} users")
    shuffled = np.random.default_rng(seed).permutation(active)
    return [
        _fold(data, np.sort(shuffled[f * size : (f + 1) * size]), attributes) for f in range(folds)
    ]


def _fold(data: Dataset, users: np.ndarray, attributes: Sequence[str]) -> ColdStartFold:
    held = np.isin(data.user_idx, users)
    train = data.subset(~held)
    # Time order, equal timestamps in file order (as the DESIGN protocol splits).
    rows = np.flatnonzero(held)
    rows = rows[np.lexsort((rows, data.timestamps[rows], data.user_idx[rows]))]
    by_user = pd.DataFrame({"user": data.user_idx[rows], "item": data.item_idx[rows]})
    by_user = by_user.drop_duplicates(keep="first")
    groups = dict(list(by_user.groupby("user", sort=True)["item"]))
    features = data.user_features.set_index(schema.USER)
    contexts = []
    for user in users:
        record = features.loc[data.users.ids[user]]
        contexts.append(
            {a: str(record[a]) for a in attributes if a in record.index and pd.notna(record[a])}
        )
    return ColdStartFold(
        train=train,
        users=users,
        contexts=contexts,
        items_in_order=[groups[int(u)].to_numpy(dtype=np.int64) for u in users],
        candidates=np.flatnonzero(train.item_counts() > 0),
    )


def request_at(fold: ColdStartFold, step: int, n: int) -> tuple[ColdStartRequest, csr_matrix]:
    """The request of ``step`` for a fold, and the relevant items (rows x items)."""
    n_items = fold.train.n_items
    given = [items[:step] for items in fold.items_in_order]
    rest = [items[step:] for items in fold.items_in_order]
    histories = _rows(given, n_items)
    ranked = np.zeros(n_items, dtype=bool)
    ranked[fold.candidates] = True
    relevant = _rows([items[ranked[items]] for items in rest], n_items)
    request = ColdStartRequest(
        step=step,
        users=fold.users,
        contexts=fold.contexts,
        histories=histories,
        candidates=fold.candidates,
        n=n,
    )
    return request, relevant


def _rows(item_lists: Sequence[np.ndarray], n_items: int) -> csr_matrix:
    indptr = np.concatenate([[0], np.cumsum([len(items) for items in item_lists])])
    indices = np.concatenate([*item_lists, np.zeros(0, dtype=np.int64)]).astype(np.int64)
    matrix = csr_matrix(
        (np.ones(len(indices), dtype=np.float32), indices, indptr),
        shape=(len(item_lists), n_items),
    )
    matrix.sort_indices()
    return matrix


# -- the reference sources ------------------------------------------------------------


def global_popularity(train: Dataset) -> Source:
    """Global popularity: the same ranking for everyone (given items excluded)."""
    model = PopularityRecommender().fit(train)

    def recommend(request: ColdStartRequest) -> np.ndarray:
        return model.recommend(request.histories, request.n, candidates=request.candidates)[0]

    return recommend


def segment_popularity(train: Dataset) -> Source:
    """Context popularity from the request's attributes (given items excluded)."""
    model = SegmentPopularityRecommender().fit(train)

    def recommend(request: ColdStartRequest) -> np.ndarray:
        exclude = [request.histories[r].indices for r in range(request.histories.shape[0])]
        items, _ = model.recommend_context(
            request.contexts, request.n, exclude=exclude, candidates=request.candidates
        )
        return items

    return recommend


def trending(train: Dataset) -> Source:
    """Trending (7-day half-life decayed counts): the same ranking for everyone."""
    model = TrendingRecommender().fit(train)

    def recommend(request: ColdStartRequest) -> np.ndarray:
        return model.recommend(request.histories, request.n, candidates=request.candidates)[0]

    return recommend


def _history_model(model_factory: Callable[[], object]) -> SourceFactory:
    def factory(train: Dataset) -> Source:
        model = model_factory().fit(train)  # type: ignore[attr-defined]

        def recommend(request: ColdStartRequest) -> np.ndarray | None:
            if request.step == 0:
                return None  # scores from history only; at step 0 it is popularity
            return model.recommend(request.histories, request.n, candidates=request.candidates)[0]

        return recommend

    return factory


def reference_sources() -> dict[str, SourceFactory]:
    """The rows of the default table, in order."""
    return {
        "global popularity": global_popularity,
        "segment popularity": segment_popularity,
        "trending": trending,
        "item-kNN (history)": _history_model(lambda: ItemKNNRecommender(k=100)),
        "ALS (history)": _history_model(lambda: ALSRecommender(factors=64)),
    }


# -- running and printing -------------------------------------------------------------


def run(
    factories: dict[str, SourceFactory],
    folds: Sequence[ColdStartFold],
    *,
    steps: Sequence[int] = STEPS,
    k: int = K,
    recall_k: int = RECALL_K,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """Evaluate every source at every step on every fold; one :class:`Row` per
    (source, step) with metrics averaged over the held-out users of each fold, then
    over folds (NaN when the source does not apply at that step)."""
    say = progress or (lambda _message: None)
    n = max(k, recall_k)
    ndcg: dict[tuple[str, int], list[float]] = {}
    recall: dict[tuple[str, int], list[float]] = {}
    users = 0
    for f, fold in enumerate(folds):
        users += len(fold.users)
        requests = {step: request_at(fold, step, n) for step in steps}
        for name, factory in factories.items():
            say(f"fold {f + 1}/{len(folds)}: {name}")
            source = factory(fold.train)
            for step, (request, relevant) in requests.items():
                recommended = source(request)
                if recommended is None:
                    continue
                _check_answer(name, recommended, request)
                ndcg.setdefault((name, step), []).append(
                    float(np.nanmean(metrics.ndcg_at_k(recommended, relevant, k)))
                )
                recall.setdefault((name, step), []).append(
                    float(np.nanmean(metrics.recall_at_k(recommended, relevant, recall_k)))
                )
    rows = []
    for name in factories:
        for step in steps:
            values = ndcg.get((name, step), [])
            rows.append(
                Row(
                    source=name,
                    step=step,
                    ndcg=float(np.mean(values)) if values else float("nan"),
                    recall=float(np.mean(recall[(name, step)])) if values else float("nan"),
                    users=users,
                    folds=len(values),
                    fold_ndcg=tuple(values),
                )
            )
    return rows


def _check_answer(name: str, recommended: np.ndarray, request: ColdStartRequest) -> None:
    """A source that breaks the rules fails loudly instead of scoring well."""
    if recommended.shape != (request.histories.shape[0], request.n):
        raise ValueError(
            f"source {name!r} answered shape {recommended.shape}, expected "
            f"{(request.histories.shape[0], request.n)}"
        )
    rows = np.repeat(np.arange(recommended.shape[0]), recommended.shape[1])
    flat = recommended.ravel()
    valid = flat >= 0
    if np.asarray(request.histories[rows[valid], flat[valid]]).any():
        raise ValueError(f"source {name!r} recommended an item given as history")
    if not np.isin(flat[valid], request.candidates).all():
        raise ValueError(f"source {name!r} recommended an item outside the candidates")


def format_table(rows: Sequence[Row], *, k: int = K, recall_k: int = RECALL_K) -> str:
    """Markdown tables: NDCG@k and Recall@recall_k, step (columns) x source (rows)."""
    steps = sorted({row.step for row in rows})
    sources = list(dict.fromkeys(row.source for row in rows))
    cell = {(row.source, row.step): row for row in rows}
    out = []
    for title, value in ((f"NDCG@{k}", "ndcg"), (f"Recall@{recall_k}", "recall")):
        out.append(f"\n{title} (columns: interactions given)")
        out.append("| source | " + " | ".join(f"step {s}" for s in steps) + " |")
        out.append("|---|" + "---:|" * len(steps))
        for source in sources:
            values = [getattr(cell[(source, s)], value) for s in steps]
            shown = ["—" if np.isnan(v) else f"{v:.4f}" for v in values]
            out.append(f"| {source} | " + " | ".join(shown) + " |")
    return "\n".join(out)


def compare(rows: Sequence[Row], better: str, worse: str, step: int) -> str:
    """One line: mean NDCG of ``better`` vs ``worse`` at ``step`` and per-fold wins."""
    cell = {(row.source, row.step): row for row in rows}
    a, b = cell[(better, step)], cell[(worse, step)]
    wins = sum(x > y for x, y in zip(a.fold_ndcg, b.fold_ndcg, strict=True))
    return (
        f"step {step}: {better} NDCG@{K} {a.ndcg:.4f} vs {worse} {b.ndcg:.4f} "
        f"({a.ndcg / b.ndcg:.3f}x), better in {wins} of {len(a.fold_ndcg)} folds"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: run the default sources on ml-100k and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="folder with ml-100k/")
    parser.add_argument("--folds", type=int, default=10, help="disjoint 10%% user folds")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    data = load_ml100k(args.data_dir)
    folds = make_folds(data, folds=args.folds, seed=args.seed, attributes=ATTRIBUTES)
    print(
        f"ml-100k: {data.n_interactions:,} interactions, {data.n_users:,} users, "
        f"{data.n_items:,} items; {args.folds} fold(s) of {len(folds[0].users)} held-out "
        f"users (seed {args.seed}); {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"attributes given at step 0: {', '.join(ATTRIBUTES)}")
    rows = run(reference_sources(), folds, progress=lambda line: print(f"  {line}", flush=True))
    print(format_table(rows))
    print()
    for step in STEPS:
        print(compare(rows, "segment popularity", "global popularity", step))
    print(f"\n{time.perf_counter() - started:.1f} s in all")


if __name__ == "__main__":
    main()
