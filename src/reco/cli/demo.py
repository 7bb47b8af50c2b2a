"""`reco demo`: the main job end to end on the embedded default (SQLite under RECO_HOME)."""

from __future__ import annotations

from pathlib import Path

from reco.cli.common import console, open_settings_store, record_version
from reco.cli.progress import progress_bar, steps
from reco.data.schema import Frames

# Small enough to train in seconds, big enough to show CF beating popularity.
SYNTHETIC_SHAPE = {"n_users": 3_000, "n_items": 1_500, "n_interactions": 150_000}


def _find_data(dataset: str, data_dir: Path | None, cache_dir: Path) -> tuple[Frames, str]:
    from reco.data.fetch import find_local_movielens
    from reco.data.movielens import load_movielens
    from reco.data.synthetic import generate

    search = [p for p in (data_dir, Path.cwd().parent / "shared" / "data", cache_dir) if p]
    folder = find_local_movielens(dataset, search)
    if folder is not None:
        return load_movielens(folder), f"{dataset} from {folder}"
    console.print(
        f"[yellow]{dataset} was not found in {', '.join(map(str, search))}; "
        "using the synthetic generator instead[/] (run `reco data fetch "
        f"{dataset}` where the internet is reachable to use the real data)"
    )
    return generate(**SYNTHETIC_SHAPE, seed=42), "synthetic data"


def run_demo(dataset: str) -> None:
    """Get data, ingest, evaluate, train, write batch recommendations, say what is next."""
    from reco.pipeline.batch import recommend_batch, write_table
    from reco.store.repository import counts, ingest, load_frames
    from reco.training.evaluation import evaluate_frames
    from reco.training.job import load_current, train

    settings, engine = open_settings_store()
    console.rule("[bold]reco demo")
    console.print(f"home: {settings.home.resolve()}  store: {settings.resolved_database_url}")
    with steps(console) as step:
        step(f"looking for {dataset}")
        frames, description = _find_data(dataset, settings.data_dir, settings.cache_dir)
        step(f"ingesting {description} into the store")
        report = ingest(engine, frames, source=description)
        step("reading the store")
        stored = load_frames(engine)
        totals = counts(engine)
    console.print(
        f"ingest added {report.interactions_added:,} interactions "
        f"({report.duplicates_skipped:,} already there); store: {totals['users']:,} users, "
        f"{totals['items']:,} items, {totals['interactions']:,} interactions"
    )

    console.rule(
        "[bold]evaluation (per-user temporal holdout, last 20% of each user): "
        "the pipeline and each source alone"
    )
    with steps(console) as step:
        evaluation = evaluate_frames(stored, settings, description, step)
        _json_path, md_path = evaluation.write(settings.home / "reports")
    console.print(evaluation.to_rich_table())
    console.print(f"report: {md_path}")

    console.rule("[bold]training on everything in the store")
    with steps(console) as step:
        result = train(stored, settings, progress=step)
        record_version(engine, settings, result.version)
    what = "the full pipeline" if result.selected == "pipeline" else f"{result.selected} alone"
    console.print(
        f"serving [bold]{what}[/] (best on validation); version {result.version} is current"
    )

    console.rule("[bold]batch recommendations")
    _, bundle = load_current(settings)
    user_ids = [str(u) for u in bundle.users.ids]
    with progress_bar(console, f"top-20 for {len(user_ids):,} users") as update:
        recs = recommend_batch(bundle, user_ids, stored.interactions, 20, progress=update)
    output = settings.home / "recommendations.csv"
    write_table(recs, output)
    _show_example(recs, stored)
    console.print(f"wrote {len(recs):,} rows to {output}")

    console.rule("[bold]next")
    console.print(
        "  reco recommend --users all --n 20 --output recs.parquet   # batch top-N again\n"
        "  reco similar 50 --n 10                                      # items like item 50\n"
        "  reco evaluate                                               # the protocol table\n"
        "  reco train --interactions your.csv                          # your own data\n"
        "  reco models list                                            # versions and metrics"
    )


def _show_example(recs, frames: Frames) -> None:
    first_user = recs["user_id"].iloc[0]
    mine = recs[recs["user_id"] == first_user].head(5)
    titles = {}
    if frames.items is not None and "title" in frames.items:
        titles = dict(zip(frames.items["item_id"], frames.items["title"], strict=False))
    console.print(f"user {first_user}'s top 5:")
    for row in mine.itertuples():
        title = titles.get(row.item_id, row.item_id)
        console.print(f"  {row.rank}. {title}  [dim]{row.source}: {row.explanation}[/]")
