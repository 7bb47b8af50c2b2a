"""Cold start with the whole pipeline: the pipeline rows of the cold-start benchmarks.

(a) New users (benchmarks/cold_users.py's setup on ml-100k): 10% of the users held
    out entirely; at step 0 a source sees only their attributes (age, gender,
    occupation, zip), then their first 1, 3 and 5 interactions. The pipeline is
    fitted on the rest; step 0 goes its cold route (segment popularity for the
    request's attributes blended with trending), later steps its warm route. Rows:
    the references of cold_users.py plus "pipeline".
(b) New items (benchmarks/cold_items.py's setup): 5% of the items lose every training
    interaction but keep their metadata. The pipeline with the content source on and
    off, and with content on plus a 10% exploration share for new items: how often
    new items reach users' top-20 and their recall there.

    python benchmarks/cold_start_pipeline.py                  # both, 3 user folds
    python benchmarks/cold_start_pipeline.py --folds 10       # every user held out once
    python benchmarks/cold_start_pipeline.py --only items

Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cold_items
import cold_users
from reco.config import PipelineConfig
from reco.data.dataset import Dataset
from reco.pipeline.history import Histories
from reco.training.fit import fit_pipeline


def _histories(request: cold_users.ColdStartRequest, everything: Dataset) -> Histories:
    """The given items as events with their real times, oldest first.

    The benchmark hands a source only the set of given items; a live request carries
    them as timed events, and the pipeline's recency features read that order. The
    times come from the full dataset (only for the items given: the first ``step``
    interactions of each held-out user), and nothing else of theirs is used.
    """
    coo = request.histories.tocoo()
    first_time = (
        pd.DataFrame(
            {"user": everything.user_idx, "item": everything.item_idx, "t": everything.timestamps}
        )
        .groupby(["user", "item"])["t"]
        .min()
    )
    keys = pd.MultiIndex.from_arrays([request.users[coo.row], coo.col])
    times = first_time.reindex(keys).to_numpy()
    order = np.lexsort((times, coo.row))
    return Histories.from_events(
        request.histories.shape[0],
        request.histories.shape[1],
        coo.row[order],
        coo.col[order],
        weights=coo.data[order],
        times=times[order],
        # New users: unknown to the pipeline (-1), known only by their attributes.
        users=np.full(request.histories.shape[0], -1, dtype=np.int64),
    )


_FITTED: dict[int, object] = {}
_EVERYTHING: list[Dataset] = []


def _everything() -> Dataset:
    """ml-100k whole, loaded once (for the given items' times)."""
    if not _EVERYTHING:
        _EVERYTHING.append(cold_users.load_ml100k())
    return _EVERYTHING[0]


def _fitted(train: Dataset, changes: dict):
    """The default pipeline fitted once per fold; variants differ only in serving
    settings (routing, blend), applied to the same fit."""
    key = id(train)
    if key not in _FITTED:
        _FITTED.clear()
        _FITTED[key] = fit_pipeline(train, PipelineConfig()).pipeline
    pipeline = _FITTED[key]
    return replace(pipeline, config=pipeline.config.model_copy(update=changes), _derived={})


def pipeline_for_new_users(changes: dict):
    """A cold_users.py source factory: the pipeline fitted on a fold's training data,
    its settings changed by ``changes``."""

    def factory(train: Dataset):
        pipeline = _fitted(train, changes)

        def recommend(request: cold_users.ColdStartRequest) -> np.ndarray:
            allowed = np.zeros(train.n_items, dtype=bool)
            allowed[request.candidates] = True
            histories = _histories(request, _everything())
            # The request comes right after the last given interaction (or, with none
            # given, at the end of the training data: the pipeline's default).
            result = pipeline.recommend(
                histories,
                request.n,
                contexts=request.contexts,
                request_times=np.fmax(histories.last_times(), pipeline.data_end),
                allowed=allowed,
            )
            return result.items

        return recommend

    return factory


class PipelineAsModel:
    """The pipeline behind the fit/recommend calls cold_items.py makes."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config

    def fit(self, data: Dataset) -> PipelineAsModel:
        self.data_ = data
        self.pipeline_ = fit_pipeline(data, self.config).pipeline
        return self

    def recommend(self, histories, n, *, candidates=None, users=None):
        allowed = None
        if candidates is not None:
            allowed = np.zeros(self.data_.n_items, dtype=bool)
            allowed[candidates] = True
        # Training users: their histories with times, as the pipeline serves them.
        rows = Histories.from_dataset(self.data_, np.asarray(users))
        if (rows.matrix != csr_matrix(histories)).nnz:
            raise ValueError("histories do not match the users' training interactions")
        result = self.pipeline_.recommend(rows, n, allowed=allowed)
        return result.items, result.scores


def new_users(folds: int) -> None:
    """Part (a): the cold_users.py table with the pipeline row."""
    data = cold_users.load_ml100k()
    made = cold_users.make_folds(data, folds=folds, attributes=cold_users.ATTRIBUTES)
    print(
        f"(a) new users, ml-100k: {folds} fold(s) of {len(made[0].users)} held-out users; "
        f"attributes at step 0: {', '.join(cold_users.ATTRIBUTES)}; the pipeline gets the "
        "given items as timed events, as a live request would carry them"
    )
    factories = {
        **cold_users.reference_sources(),
        "pipeline": pipeline_for_new_users({}),
        "pipeline, trending weight 0.3": pipeline_for_new_users({"cold_trending_weight": 0.3}),
        "pipeline, cold below 5 items": pipeline_for_new_users({"cold_history_threshold": 5}),
        "pipeline, cold below 10 items": pipeline_for_new_users({"cold_history_threshold": 10}),
    }
    rows = cold_users.run(
        factories, made, progress=lambda line: print(f"  {line}", file=sys.stderr)
    )
    print(cold_users.format_table(rows))
    for step in cold_users.STEPS:
        print(cold_users.compare(rows, "segment popularity", "global popularity", step))
        print(cold_users.compare(rows, "pipeline", "global popularity", step))


def new_items(datasets: list[str]) -> None:
    """Part (b): new items in the pipeline's top-20, content on and off."""
    on = PipelineConfig()
    off_sources = {k: v for k, v in on.sources.items() if k != "content"}
    models = {
        "pipeline, content on": lambda: PipelineAsModel(on),
        "pipeline, content off": lambda: PipelineAsModel(
            on.model_copy(update={"sources": off_sources})
        ),
        "pipeline, content on + explore 10%": lambda: PipelineAsModel(
            on.model_copy(update={"exploration_share": 0.1})
        ),
        "content alone (tfidf)": cold_items.default_models(sentence=False)["content (tfidf)"],
    }
    print("(b) new items: 5% of the items with training interactions lose them all")
    for name in datasets:
        cold_items.cold_item_experiment(cold_items._load(name), models, name=name)


def main(argv: list[str] | None = None) -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-latest-small"])
    parser.add_argument("--only", choices=["users", "items"], default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores (load {load}), Python {platform.python_version()}")
    if args.only in (None, "users"):
        new_users(args.folds)
        print()
    if args.only in (None, "items"):
        new_items(args.datasets)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
