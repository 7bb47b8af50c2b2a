"""`reco data`: fetch public datasets, generate synthetic ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reco.cli.common import console, settings_from_env
from reco.cli.progress import progress_bar, steps

app = typer.Typer(help="Get data: download MovieLens, or generate synthetic interactions.")


@app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="movielens-100k, movielens-latest-small, ...")],
) -> None:
    """Download a dataset, verify its pinned checksum and unpack it into the cache."""
    from reco.data.fetch import fetch_dataset

    settings = settings_from_env()
    with progress_bar(console, f"downloading {name}") as update:
        folder = fetch_dataset(name, settings.cache_dir, progress=update)
    console.print(f"{name} is ready in {folder}; ingest it with `reco ingest {folder}`")


@app.command()
def synth(
    users: Annotated[int, typer.Option("--users", min=1)] = 10_000,
    items: Annotated[int, typer.Option("--items", min=1)] = 5_000,
    interactions: Annotated[int, typer.Option("--interactions", min=1)] = 500_000,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    output: Annotated[Path, typer.Option("--output", help="Folder to write into.")] = Path(
        "synthetic"
    ),
) -> None:
    """Generate realistic synthetic users, items and interactions as Parquet files."""
    from reco.data.synthetic import generate

    settings_from_env()
    with steps(console) as step:
        step(f"generating {interactions:,} interactions")
        frames = generate(users, items, interactions, seed=seed)
        step(f"writing {output}")
        output.mkdir(parents=True, exist_ok=True)
        frames.interactions.to_parquet(output / "interactions.parquet", index=False)
        frames.items.to_parquet(output / "items.parquet", index=False)
        frames.users.to_parquet(output / "users.parquet", index=False)
    console.print(
        f"wrote {output}/interactions.parquet, items.parquet, users.parquet; train with "
        f"`reco train --interactions {output}/interactions.parquet "
        f"--items {output}/items.parquet --users {output}/users.parquet`"
    )
