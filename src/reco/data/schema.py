"""The canonical in-memory shape of interactions, items and users.

Every loader produces these frames, the store reads and writes them, and
:class:`reco.data.dataset.Dataset` is built from them.

* interactions: ``user_id`` and ``item_id`` (pandas string dtype :data:`STR`),
  ``timestamp`` (nullable Int64, epoch seconds), ``value`` (float64, NaN when absent),
  ``event_type`` (:data:`STR`), ``event_id`` (object: str or None).
* items: ``item_id`` (str) plus optional ``title`` (str), ``text`` (str),
  ``categories`` (str, ``|``-separated) and any other attribute columns.
* users: ``user_id`` (str) plus any attribute columns (``device``, ``country``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

USER = "user_id"
ITEM = "item_id"
TIMESTAMP = "timestamp"
VALUE = "value"
EVENT_TYPE = "event_type"
EVENT_ID = "event_id"

INTERACTION_COLUMNS = (USER, ITEM, TIMESTAMP, VALUE, EVENT_TYPE, EVENT_ID)
REQUIRED_INTERACTION_COLUMNS = (USER, ITEM)
DEFAULT_EVENT_TYPE = "interaction"
CATEGORY_SEPARATOR = "|"
# Ids and event types use pandas' string dtype: compact (Arrow) at millions of rows.
STR = pd.StringDtype(na_value=np.nan)


def empty_interactions() -> pd.DataFrame:
    """An interaction frame with no rows and the canonical dtypes."""
    return pd.DataFrame(
        {
            USER: pd.Series([], dtype=STR),
            ITEM: pd.Series([], dtype=STR),
            TIMESTAMP: pd.Series([], dtype="Int64"),
            VALUE: pd.Series([], dtype="float64"),
            EVENT_TYPE: pd.Series([], dtype=STR),
            EVENT_ID: pd.Series([], dtype=object),
        }
    )


def normalize_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    """Give an already validated interaction frame the canonical columns and dtypes.

    Missing optional columns are added (timestamp and value empty, event type
    ``interaction``, no event id); extra columns are dropped.
    """
    n = len(frame)
    if TIMESTAMP in frame:
        timestamps = pd.array(frame[TIMESTAMP].to_numpy(), dtype="Int64")
    else:
        timestamps = pd.arrays.IntegerArray(np.zeros(n, np.int64), np.ones(n, dtype=bool))
    event_ids = np.empty(n, dtype=object)  # filled with None
    if EVENT_ID in frame:
        present = frame[EVENT_ID].notna().to_numpy()
        event_ids[present] = frame[EVENT_ID][present].astype(str).to_numpy(dtype=object)
    out = pd.DataFrame(
        {
            USER: as_str(frame[USER]),
            ITEM: as_str(frame[ITEM]),
            TIMESTAMP: timestamps,
            VALUE: frame[VALUE].astype("float64").to_numpy() if VALUE in frame else np.nan,
            EVENT_TYPE: as_str(frame[EVENT_TYPE]) if EVENT_TYPE in frame else DEFAULT_EVENT_TYPE,
            # object, so that a missing id stays None rather than becoming NaN
            EVENT_ID: pd.Series(event_ids, dtype=object, copy=False),
        }
    )
    if EVENT_TYPE not in frame:
        out[EVENT_TYPE] = out[EVENT_TYPE].astype(STR)
    return out


@dataclass
class Frames:
    """Canonical frames of one dataset: interactions, and items and users when known."""

    interactions: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None


def as_str(values: pd.Series) -> pd.Series:
    """The values in pandas' string dtype (free when they already are), index reset."""
    if values.dtype != STR:
        values = values.astype(STR)
    return values.reset_index(drop=True)
