"""Model versions in the store: what was trained, where it lives, which one is served.

The artifacts themselves live on disk (:mod:`reco.registry`); these rows let a
PostgreSQL-backed deployment (several service processes) agree on the current version.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from reco.errors import ArtifactError
from reco.store.db import is_postgres, write_transaction
from reco.store.tables import model_versions


def _plain(value: Any) -> Any:
    """Metrics as plain JSON: numpy scalars unboxed, NaN/inf as None (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return json.loads(json.dumps(value, default=str))


def _aware(moment: datetime) -> datetime:
    # SQLite gives back naive datetimes; the store writes UTC.
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def record_model_version(
    engine: Engine,
    *,
    version: str,
    path: str | Path,
    metrics: dict[str, Any],
    config_hash: str,
    data_fingerprint: str,
    created_at: datetime | None = None,
) -> None:
    """Record a trained model version (not current yet; see :func:`set_current_version`).

    Recording a version again updates its path, metrics and hashes and keeps its
    creation time and current flag, so a retried training job does not fail.
    """
    if not version or len(version) > model_versions.c.version.type.length:
        raise ArtifactError(
            f"Model version {version!r} must be 1 to {model_versions.c.version.type.length} "
            "characters long."
        )
    values = {
        "version": version,
        "created_at": created_at or datetime.now(UTC),
        "path": str(path),
        "metrics": _plain(metrics),
        "config_hash": config_hash,
        "data_fingerprint": data_fingerprint,
    }
    insert = pg_insert if is_postgres(engine) else sqlite_insert
    statement = insert(model_versions).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[model_versions.c.version],
        set_={
            k: statement.excluded[k] for k in ("path", "metrics", "config_hash", "data_fingerprint")
        },
    )
    with write_transaction(engine) as connection:
        connection.execute(statement)


def list_model_versions(engine: Engine) -> list[dict[str, Any]]:
    """Every recorded version, oldest first: dicts with version, created_at (UTC),
    path, metrics, config_hash, data_fingerprint and is_current."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(model_versions).order_by(model_versions.c.created_at, model_versions.c.version)
        ).mappings()
        out = [dict(row) for row in rows]
    for row in out:
        row["created_at"] = _aware(row["created_at"])
        row["is_current"] = bool(row["is_current"])
    return out


def current_model_version(engine: Engine) -> str | None:
    """The version marked current, or None when none is."""
    with engine.connect() as connection:
        return connection.execute(
            select(model_versions.c.version).where(model_versions.c.is_current)
        ).scalar_one_or_none()


def set_current_version(engine: Engine, version: str) -> None:
    """Mark ``version`` as the one to serve (and no other); raises ArtifactError when
    the version was never recorded."""
    with write_transaction(engine) as connection:
        known = connection.execute(
            select(model_versions.c.version).where(model_versions.c.version == version)
        ).scalar_one_or_none()
        if known is None:
            recorded = (
                connection.execute(
                    select(model_versions.c.version).order_by(model_versions.c.created_at.desc())
                )
                .scalars()
                .all()
            )
            hint = f" Known versions: {', '.join(recorded[:10])}." if recorded else ""
            raise ArtifactError(
                f"Model version {version!r} is not recorded in the store, so it cannot be "
                f"made current.{hint} Train or record it first."
            )
        # Clear first, then set: the unique index allows one current row at any moment.
        connection.execute(
            update(model_versions).where(model_versions.c.is_current).values(is_current=False)
        )
        connection.execute(
            update(model_versions)
            .where(model_versions.c.version == version)
            .values(is_current=True)
        )
