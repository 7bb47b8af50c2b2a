"""`reco models`: list, promote and roll back model versions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from reco.cli.common import console, settings_from_env
from reco.registry import ModelRegistry

app = typer.Typer(help="Inspect and switch model versions.")


@app.command("list")
def list_versions() -> None:
    """Every trained version with its selected model and validation NDCG@10."""
    registry = ModelRegistry(settings_from_env().models_dir)
    current = registry.current_version()
    table = Table("version", "current", "selected model", "validation NDCG@10", "interactions")
    for entry in registry.versions():
        manifest = entry.manifest
        selected = manifest.get("selected_model", "?")
        ndcg = manifest.get("metrics", {}).get("validation", {}).get(selected, {}).get("ndcg@10")
        table.add_row(
            entry.version,
            "*" if entry.version == current else "",
            selected,
            f"{ndcg:.4f}" if ndcg is not None else "-",
            f"{manifest.get('data', {}).get('interactions', 0):,}",
        )
    console.print(table)


@app.command()
def promote(version: Annotated[str, typer.Argument(help="Version to make current.")]) -> None:
    """Make a version current (checked against its manifest first)."""
    ModelRegistry(settings_from_env().models_dir).promote(version)
    console.print(f"version {version} is now current")


@app.command()
def rollback() -> None:
    """Make the previously current version current again."""
    version = ModelRegistry(settings_from_env().models_dir).rollback()
    console.print(f"rolled back: version {version} is now current")
