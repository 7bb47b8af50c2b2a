"""Quality benchmark: the hybrid pipeline against every source alone and the references.

For ml-100k and ml-latest-small, under the DESIGN.md protocol (per-user temporal
holdout, last 20% of each user's interactions are test, full ranking over the train
items, the user's train items excluded):

* the pipeline is fitted on train only; inside train it makes its own validation
  split, trains the LightGBM ranker there and auto-selects what to serve; test data
  is never seen by training;
* every source is reported alone (from the pipeline's own fit), the served pipeline,
  and EASE / ALS / item-kNN fitted alone as references;
* then the ratio of the pipeline's NDCG@10 to the best single model's;
* on ml-100k: diversity (MMR) and exploration switched on, to show what they cost;
  and the pipeline on the same data without item text and user attributes, and
  without timestamps (sources that need them switch themselves off);
* on ml-latest-small: the full pipeline trained on all the data (what `reco train`
  does) with its wall-clock time, and the time to score 1,000 users in one batch.

    python benchmarks/quality.py                      # both datasets
    python benchmarks/quality.py --datasets ml-100k   # one
    python benchmarks/quality.py --no-variants        # skip the ml-100k variants

Prints tables; asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import numpy as np

from reco.config import PipelineConfig
from reco.data.dataset import Dataset
from reco.data.movielens import load_movielens
from reco.data.split import temporal_user_holdout
from reco.evaluation.protocol import ModelEvaluation
from reco.models import create_model
from reco.training.evaluation import evaluate_pipeline, evaluate_served
from reco.training.fit import fit_pipeline

METRICS = ("ndcg@10", "recall@20", "precision@10", "map@10", "mrr@10", "hit_rate@10",
           "coverage@10", "novelty@10")  # fmt: skip
REFERENCES = {
    "EASE (reference)": "ease",
    "ALS (reference)": "als",
    "item-kNN (reference)": "itemknn",
}
TARGET = 1.10
BATCH_USERS = 1_000


def data_dir() -> Path:
    """The shared MovieLens folder: RECO_DATA_DIR, else ../shared/data."""
    configured = os.environ.get("RECO_DATA_DIR")
    return (
        Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "data"
    )


def load(name: str) -> Dataset:
    """A MovieLens dataset with its item and user metadata."""
    frames = load_movielens(data_dir() / name)
    return Dataset.from_frames(frames.interactions, frames.items, frames.users)


def setup_line() -> str:
    """Where the numbers come from: machine, load, library versions."""
    load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("numpy", "scipy", "implicit", "lightgbm")
    )
    return (
        f"{os.cpu_count()} cores, load average {load_avg} (other work on the machine slows "
        f"every timing), Python {platform.python_version()}, {versions}"
    )


def table(rows: list[ModelEvaluation], title: str) -> str:
    """A fixed-width table of every metric and the seconds."""
    head = f"{'model':34s}" + "".join(f"{m:>13s}" for m in METRICS) + f"{'fit s':>9s}{'rank s':>9s}"
    lines = [title, head, "-" * len(head)]
    for row in rows:
        values = "".join(f"{row.metrics.get(m, float('nan')):13.4f}" for m in METRICS)
        lines.append(f"{row.name:34s}{values}{row.fit_seconds:9.1f}{row.predict_seconds:9.2f}")
    return "\n".join(lines)


def evaluate(name: str, data: Dataset, config: PipelineConfig, *, references: bool = True):
    """The protocol table of one dataset (pipeline, sources alone, references)."""
    refs = {label: create_model(model) for label, model in REFERENCES.items()} if references else {}
    return evaluate_pipeline(
        data,
        config,
        name=name,
        references=refs,
        progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True),
    )


def best_single(rows: list[ModelEvaluation]) -> ModelEvaluation:
    """The best row that is one model alone (not a pipeline row)."""
    singles = [r for r in rows if not r.name.startswith("pipeline")]
    return max(singles, key=lambda r: r.metrics["ndcg@10"])


def served_row(rows: list[ModelEvaluation]) -> ModelEvaluation:
    """The row of what the pipeline serves."""
    return next(r for r in rows if r.name.startswith("pipeline") and "unserved" not in r.name)


def summary(name: str, rows: list[ModelEvaluation], chosen: str, *, target: bool = True) -> str:
    """The headline: pipeline vs the best single model (and the target, where it applies)."""
    pipeline, best = served_row(rows), best_single(rows)
    ratio = pipeline.metrics["ndcg@10"] / best.metrics["ndcg@10"]
    verdict = "meets" if ratio >= TARGET else "MISSES"
    against = f" ({verdict} the {TARGET:.2f}x target)" if target else ""
    return (
        f"{name}: pipeline NDCG@10 {pipeline.metrics['ndcg@10']:.4f} vs best single model "
        f"{best.name} {best.metrics['ndcg@10']:.4f}: {ratio:.3f}x{against}; "
        f"auto-selection served: {chosen}"
    )


def options_rows(evaluation, data: Dataset) -> list[ModelEvaluation]:
    """The fitted pipeline re-scored with diversity and with exploration switched on."""
    train, test = temporal_user_holdout(data, seed=42)
    pipeline = evaluation.fit.pipeline
    rows = []
    for label, change in (
        ("pipeline + diversity 0.2 (MMR)", {"diversity": 0.2}),
        ("pipeline + diversity 0.5 (MMR)", {"diversity": 0.5}),
        ("pipeline + exploration 10%", {"exploration_share": 0.1}),
    ):
        varied = replace(pipeline, config=pipeline.config.model_copy(update=change), _derived={})
        rows.append(evaluate_served(varied, train, test, name=label))
    return rows


def timing(data: Dataset, config: PipelineConfig) -> str:
    """Full training on all the data (as `reco train`) and batch scoring of 1,000 users."""
    started = time.perf_counter()
    fit = fit_pipeline(data, config)
    train_seconds = time.perf_counter() - started
    pipeline = fit.pipeline
    active = np.flatnonzero(data.user_counts() > 0)
    rows = np.resize(active, BATCH_USERS)  # every user, then again from the first
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        histories = pipeline.history.take(rows)
        pipeline.recommend(histories, 20)
        seconds.append(time.perf_counter() - started)
    stages = ", ".join(
        f"{k} {v:.1f}s" for k, v in fit.seconds.items() if not k.startswith("source ")
    )
    return (
        f"full pipeline training on all {data.n_interactions:,} interactions: "
        f"{train_seconds:.1f} s (target < 180 s; stages: {stages})\n"
        f"batch scoring of {BATCH_USERS:,} users (top-20, {len(active)} distinct users "
        f"cycled, {pipeline.config.scoring_threads} threads): "
        f"{', '.join(f'{s:.2f}' for s in seconds)} s over 3 runs, best {min(seconds):.2f} s "
        f"(target < 2 s)"
    )


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-latest-small"])
    parser.add_argument("--no-variants", action="store_true", help="skip the ml-100k variants")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="  %(levelname)s %(name)s: %(message)s")
    config = PipelineConfig()
    started = time.perf_counter()
    print(f"setup: {setup_line()}")
    print(f"pipeline sources and quotas: {config.sources}")
    print("protocol: per-user temporal holdout (last 20%, min 5 interactions), full ranking")
    print()
    for name in args.datasets:
        data = load(name)
        print(
            f"== {name}: {data.n_users:,} users, {data.n_items:,} items, "
            f"{data.n_interactions:,} interactions"
        )
        evaluation = evaluate(name, data, config)
        rows = evaluation.report.evaluations
        print(table(rows, f"{name}: test metrics (fit s = training seconds on train)"))
        selection = evaluation.fit.selection
        print(summary(name, rows, selection.chosen))
        measured = ", ".join(f"{k} {v['ndcg@10']:.4f}" for k, v in selection.validation.items())
        print(f"validation NDCG@10 inside train ({selection.users['selection']} users): {measured}")
        print(f"ranker: {selection.ranker.get('rounds')} rounds; top features: "
              f"{', '.join(list(selection.ranker.get('importance', {}))[:6])}")  # fmt: skip
        if evaluation.fit.skipped:
            print(f"switched off: {', '.join(evaluation.fit.skipped)}")
        if name == "ml-100k" and not args.no_variants:
            options = options_rows(evaluation, data)
            print(
                table(
                    [served_row(rows), *options],
                    "ml-100k: diversity and exploration (off by default)",
                )
            )
            frames = load_movielens(data_dir() / name)
            bare = Dataset.from_frames(frames.interactions)
            untimed = Dataset.from_frames(
                frames.interactions.drop(columns="timestamp"), frames.items, frames.users
            )
            for label, variant in (
                ("ml-100k without item text and user attributes", bare),
                ("ml-100k without timestamps", untimed),
            ):
                print(f"-- {label}")
                other = evaluate(label, variant, config, references=False)
                print(table(other.report.evaluations, f"{label}: test metrics"))
                chosen = other.fit.selection.chosen
                print(summary(label, other.report.evaluations, chosen, target=False))
                print(f"switched off: {', '.join(other.fit.skipped) or 'nothing'}")
        if name == "ml-latest-small":
            print(timing(data, config))
        print()
    print(f"{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
