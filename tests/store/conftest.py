"""Store test helpers; the store fixtures themselves (each backend, a PostgreSQL schema
per test) live in tests/conftest.py, shared with the rest of the suite."""

from __future__ import annotations

import pandas as pd
import pytest

from reco.data.schema import Frames


def _frames_of(
    rows: list[tuple], *, items: pd.DataFrame | None = None, users: pd.DataFrame | None = None
) -> Frames:
    """Frames from (user, item, timestamp[, value[, event_type[, event_id]]]) tuples."""
    columns = ["user_id", "item_id", "timestamp", "value", "event_type", "event_id"]
    width = max((len(r) for r in rows), default=3)
    padded = [list(r) + [None] * (width - len(r)) for r in rows]
    frame = pd.DataFrame(padded, columns=columns[:width])
    frame["timestamp"] = pd.array(frame["timestamp"].tolist(), dtype="Int64")
    return Frames(interactions=frame, items=items, users=users)


@pytest.fixture()
def frames_of():
    """Build Frames from (user, item, timestamp[, value[, event_type[, event_id]]]) tuples."""
    return _frames_of
