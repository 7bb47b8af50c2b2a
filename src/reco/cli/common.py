"""Pieces the CLI commands share: settings, the store, file reading, column flags."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.engine import Engine

from reco.config import Settings
from reco.data.schema import Frames

# Tables of metrics are wide: when output goes to a file or CI log (no terminal to
# measure), render at 160 columns rather than rich's default 80.
console = Console(width=None if sys.stdout.isatty() else 160)


class ColumnOptions:
    """The column-mapping flags shared by ingest, train and evaluate."""

    user = Annotated[str, typer.Option("--user-col", help="Column holding user ids.")]
    item = Annotated[str, typer.Option("--item-col", help="Column holding item ids.")]
    time = Annotated[
        str, typer.Option("--time-col", help="Column holding timestamps (epoch s or ISO 8601).")
    ]
    value = Annotated[str, typer.Option("--value-col", help="Column holding a rating or count.")]
    event = Annotated[str, typer.Option("--event-col", help="Column holding the event type.")]
    event_id = Annotated[
        str, typer.Option("--event-id-col", help="Column holding a unique event id.")
    ]
    delimiter = Annotated[
        str | None, typer.Option("--delimiter", help="CSV delimiter (default: detected).")
    ]


def settings_from_env() -> Settings:
    """Settings from the environment, with RECO_HOME created."""
    settings = Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings


def open_settings_store() -> tuple[Settings, Engine]:
    """Settings and a migrated store engine."""
    from reco.store.db import open_store

    settings = settings_from_env()
    return settings, open_store(settings.resolved_database_url)


def frames_from_files(
    interactions: Path,
    items: Path | None,
    users: Path | None,
    user_col: str,
    item_col: str,
    time_col: str,
    value_col: str,
    event_col: str,
    event_id_col: str,
    delimiter: str | None,
) -> Frames:
    """Read and validate an interactions file (or MovieLens folder) and optional metadata."""
    from reco.data.loaders import ColumnMapping, load_items, load_users
    from reco.data.movielens import load_path

    columns = ColumnMapping(
        user=user_col,
        item=item_col,
        time=time_col,
        value=value_col,
        event=event_col,
        event_id=event_id_col,
    )
    frames = load_path(interactions, columns=columns, delimiter=delimiter)
    if items is not None:
        frames.items = load_items(items)
    if users is not None:
        frames.users = load_users(users)
    return frames


def evaluate_frames(frames: Frames, settings: Settings, name: str, step: Callable[[str], None]):
    """Run the evaluation protocol on every configured model; returns the report."""
    from reco.data.dataset import Dataset
    from reco.evaluation.protocol import run_protocol
    from reco.training.job import build_models

    data = Dataset.from_frames(frames.interactions, frames.items, frames.users)
    report = run_protocol(build_models(settings), data, seed=settings.seed, progress=step)
    report.dataset["name"] = name
    return report


def record_version(engine: Engine, settings: Settings, version: str) -> None:
    """Note a published model version in the store's model_versions table, as current."""
    from reco.registry import ModelRegistry
    from reco.store.repository import record_model_version, set_current_version

    entry = ModelRegistry(settings.models_dir).get(version)
    record_model_version(
        engine,
        version=version,
        path=str(entry.path.resolve()),
        metrics=entry.manifest.get("metrics", {}),
        config_hash=entry.manifest.get("config_hash", ""),
        data_fingerprint=entry.manifest.get("data_fingerprint", ""),
    )
    set_current_version(engine, version)
