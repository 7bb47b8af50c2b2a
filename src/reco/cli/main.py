"""The `reco` command line: demo, ingest, train, evaluate, recommend, similar, serve, data,
models, keys."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console

from reco.cli import (
    data_commands,
    key_commands,
    model_commands,
    retrain_command,
    worker_commands,
)
from reco.cli.common import (
    ColumnOptions,
    console,
    frames_from_files,
    open_settings_store,
    record_version,
    settings_from_env,
)
from reco.cli.progress import progress_bar, steps
from reco.data import schema
from reco.errors import RecoError

app = typer.Typer(
    help="reco: train, evaluate and serve recommendations from interaction data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_commands.app, name="data")
app.add_typer(model_commands.app, name="models")
app.add_typer(key_commands.app, name="keys")
app.command(name="worker")(worker_commands.worker)
app.command(name="retrain")(retrain_command.retrain)

InteractionsOption = Annotated[
    Path | None,
    typer.Option("--interactions", help="Interactions file or MovieLens folder to ingest first."),
]
ItemsOption = Annotated[Path | None, typer.Option("--items", help="Item metadata file.")]
UsersOption = Annotated[Path | None, typer.Option("--users", help="User metadata file.")]


@app.command()
def ingest(
    interactions: Annotated[Path, typer.Argument(help="Interactions file or MovieLens folder.")],
    items: ItemsOption = None,
    users: UsersOption = None,
    user_col: ColumnOptions.user = "user_id",
    item_col: ColumnOptions.item = "item_id",
    time_col: ColumnOptions.time = "timestamp",
    value_col: ColumnOptions.value = "value",
    event_col: ColumnOptions.event = "event_type",
    event_id_col: ColumnOptions.event_id = "event_id",
    delimiter: ColumnOptions.delimiter = None,
) -> None:
    """Validate files and add them to the store; a file with any problem adds nothing."""
    from reco.store.repository import counts
    from reco.store.repository import ingest as ingest_frames

    _settings, engine = open_settings_store()
    with steps(console) as step:
        step(f"reading {interactions}")
        frames = frames_from_files(
            interactions,
            items,
            users,
            user_col,
            item_col,
            time_col,
            value_col,
            event_col,
            event_id_col,
            delimiter,
        )
        step("writing to the store")
        report = ingest_frames(engine, frames, source=str(interactions))
    console.print(
        f"added {report.interactions_added:,} interactions "
        f"({report.duplicates_skipped:,} duplicates skipped), "
        f"{report.items_upserted:,} items, {report.users_upserted:,} users; "
        f"store now holds {counts(engine)['interactions']:,} interactions"
    )


@app.command()
def train(
    interactions: InteractionsOption = None,
    items: ItemsOption = None,
    users: UsersOption = None,
    user_col: ColumnOptions.user = "user_id",
    item_col: ColumnOptions.item = "item_id",
    time_col: ColumnOptions.time = "timestamp",
    value_col: ColumnOptions.value = "value",
    event_col: ColumnOptions.event = "event_type",
    event_id_col: ColumnOptions.event_id = "event_id",
    delimiter: ColumnOptions.delimiter = None,
) -> None:
    """Train the pipeline on the store (ingesting files first if given).

    Sources and the LightGBM ranker are fitted on a validation split inside the data;
    every source alone and the full pipeline are measured on held-out validation users
    and the best is served.
    """
    from reco.store.repository import ingest as ingest_frames
    from reco.store.repository import load_frames
    from reco.training.job import train as train_job

    settings, engine = open_settings_store()
    with steps(console) as step:
        if interactions is not None:
            step(f"ingesting {interactions}")
            frames = frames_from_files(
                interactions,
                items,
                users,
                user_col,
                item_col,
                time_col,
                value_col,
                event_col,
                event_id_col,
                delimiter,
            )
            ingest_frames(engine, frames, source=str(interactions))
        step("reading the store")
        frames = load_frames(engine)
        result = train_job(frames, settings, progress=step)
        record_version(engine, settings, result.version)
    _print_validation(result)
    console.print(f"version [bold]{result.version}[/] is now current ({result.path})")


def _print_validation(result) -> None:
    from reco.evaluation.report import EvaluationReport

    users = result.selection.users
    report = EvaluationReport(
        dataset={
            "name": f"held-out validation users inside the training data ({users['selection']:,})"
        },
        evaluations=result.validation,
    )
    console.print(report.to_rich_table())
    what = "the full pipeline" if result.selected == "pipeline" else f"{result.selected} alone"
    console.print(
        f"serving [bold]{what}[/] (best NDCG@10 on validation; the ranker learnt from "
        f"{users['ranker_train']:,} users and stopped early on {users['ranker_stop']:,})"
    )
    for name, reason in result.skipped.items():
        console.print(f"[yellow]switched off {name}[/]: {reason}")


@app.command()
def evaluate(
    interactions: InteractionsOption = None,
    items: ItemsOption = None,
    users: UsersOption = None,
    output: Annotated[
        Path | None, typer.Option(help="Folder for report.json and report.md.")
    ] = None,
    user_col: ColumnOptions.user = "user_id",
    item_col: ColumnOptions.item = "item_id",
    time_col: ColumnOptions.time = "timestamp",
    value_col: ColumnOptions.value = "value",
    event_col: ColumnOptions.event = "event_type",
    event_id_col: ColumnOptions.event_id = "event_id",
    delimiter: ColumnOptions.delimiter = None,
) -> None:
    """Evaluate the pipeline and each source alone under the protocol.

    Per-user temporal holdout: the pipeline is fitted on train only (its ranker and
    auto-selection on a validation split inside train) and scored on test.
    """
    from reco.store.repository import load_frames
    from reco.training.evaluation import evaluate_frames

    settings = settings_from_env()
    with steps(console) as step:
        if interactions is not None:
            step(f"reading {interactions}")
            frames = frames_from_files(
                interactions,
                items,
                users,
                user_col,
                item_col,
                time_col,
                value_col,
                event_col,
                event_id_col,
                delimiter,
            )
            name = str(interactions)
        else:
            _, engine = open_settings_store()
            step("reading the store")
            frames = load_frames(engine)
            name = "store"
        report = evaluate_frames(frames, settings, name, step)
    folder = output or settings.home / "reports"
    json_path, md_path = report.write(folder)
    console.print(report.to_rich_table())
    console.print(f"report written to {md_path} and {json_path}")


@app.command()
def recommend(
    users: Annotated[
        str, typer.Option("--users", help="'all', or a file with a user_id column.")
    ] = "all",
    n: Annotated[int, typer.Option("--n", min=1, max=1000, help="Items per user.")] = 20,
    output: Annotated[
        Path, typer.Option("--output", help="Where to write: .csv, .parquet or .jsonl.")
    ] = Path("recommendations.csv"),
    model: Annotated[
        str | None, typer.Option(help="Serve one source alone (default: what was selected).")
    ] = None,
    version: Annotated[str | None, typer.Option(help="Model version (default: current).")] = None,
) -> None:
    """Write explained top-N recommendations for many users from the current version."""
    from reco.pipeline.batch import recommend_batch, write_table
    from reco.store.repository import load_frames
    from reco.training.job import load_current

    settings, engine = open_settings_store()
    with steps(console) as step:
        step("loading the model")
        version_name, bundle = load_current(settings, version)
        step("reading histories from the store")
        frames = load_frames(engine)
        interactions = frames.interactions
        if interactions is None:
            interactions = schema.empty_interactions()
        user_ids = _requested_users(users, interactions, bundle)
    with progress_bar(console, f"recommending for {len(user_ids):,} users") as update:
        result = recommend_batch(bundle, user_ids, interactions, n, model=model, progress=update)
    write_table(result, output)
    console.print(
        f"wrote {len(result):,} rows for {len(user_ids):,} users to {output} "
        f"(model {model or bundle.default}, version {version_name})"
    )


def _requested_users(spec: str, interactions: pd.DataFrame, bundle) -> list[str]:
    from reco.data.loaders import load_users

    if spec == "all":
        known = pd.unique(pd.concat([pd.Series(bundle.users.ids), interactions[schema.USER]]))
        return [str(u) for u in known]
    frame = load_users(Path(spec))
    return [str(u) for u in pd.unique(frame[schema.USER].astype(str))]


@app.command()
def similar(
    item: Annotated[str, typer.Argument(help="Item id to find neighbours of.")],
    n: Annotated[int, typer.Option("--n", min=1, max=1000, help="How many.")] = 10,
    version: Annotated[str | None, typer.Option(help="Model version (default: current).")] = None,
) -> None:
    """Items most like ITEM: item-kNN neighbours, then content neighbours."""
    from rich.table import Table

    from reco.training.job import load_current

    settings = settings_from_env()
    version_name, bundle = load_current(settings, version)
    pipeline = bundle.pipeline
    found = pipeline.similar_items(item, n)
    title = pipeline.catalog.titles[pipeline.items.index_of(item)]
    table = Table("rank", "item_id", "title", "score", "source", "why")
    for rank, rec in enumerate(found, start=1):
        other = pipeline.catalog.titles[pipeline.items.index_of(rec.item_id)]
        table.add_row(
            str(rank), rec.item_id, other, f"{rec.score:.3f}", rec.source, rec.explanation
        )
    console.print(f"items like {item} ({title}), version {version_name}:")
    console.print(table)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).", min=1, max=65535)] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default 1).", min=1)
    ] = None,
) -> None:
    """Serve recommendations over HTTP (FastAPI under uvicorn; OpenAPI at /docs).

    Refuses to start (exit code 2) when bound beyond loopback with auth disabled or
    without an active API key (`reco keys create`).
    """
    from reco.service import serve as service

    settings = settings_from_env()
    changes = {"host": host, "port": port, "workers": workers}
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes:
        settings = settings.model_copy(
            update={"service": settings.service.model_copy(update=changes)}
        )
    refusal = service.check_binding(settings)
    if refusal is not None:
        Console(stderr=True).print(f"[bold red]error:[/] {refusal.message}", highlight=False)
        raise typer.Exit(service.REFUSED)
    warning = service.multi_worker_warning(settings)
    if warning:
        Console(stderr=True).print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(
        f"serving on http://{settings.service.host}:{settings.service.port} "
        f"({settings.service.workers} worker(s)); API docs at /docs"
    )
    service.run(settings)


@app.command()
def demo(
    dataset: Annotated[
        str, typer.Option(help="MovieLens dataset to look for locally.")
    ] = "movielens-100k",
) -> None:
    """Run the whole job on the embedded default: data, ingest, evaluate, train, recommend."""
    from reco.cli.demo import run_demo

    run_demo(dataset)


def main() -> None:
    """Entry point: run the CLI, turning reco's own errors into a message and exit code 1."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except RecoError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
