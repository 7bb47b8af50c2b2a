"""The canonical in-memory shape of interactions, items and users.

Every loader produces these frames, the store reads and writes them, and
:class:`reco.data.dataset.Dataset` is built from them.

* interactions: ``user_id`` (str), ``item_id`` (str), ``timestamp`` (nullable Int64,
  epoch seconds), ``value`` (float64, NaN when absent), ``event_type`` (str),
  ``event_id`` (str or None).
* items: ``item_id`` (str) plus optional ``title`` (str), ``text`` (str),
  ``categories`` (str, ``|``-separated) and any other attribute columns.
* users: ``user_id`` (str) plus any attribute columns (``device``, ``country``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def empty_interactions() -> pd.DataFrame:
    """An interaction frame with no rows and the canonical dtypes."""
    return pd.DataFrame(
        {
            USER: pd.Series([], dtype=object),
            ITEM: pd.Series([], dtype=object),
            TIMESTAMP: pd.Series([], dtype="Int64"),
            VALUE: pd.Series([], dtype="float64"),
            EVENT_TYPE: pd.Series([], dtype=object),
            EVENT_ID: pd.Series([], dtype=object),
        }
    )


def normalize_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    """Give an already validated interaction frame the canonical columns and dtypes.

    Missing optional columns are added (timestamp and value empty, event type
    ``interaction``, no event id); extra columns are dropped.
    """
    out = pd.DataFrame(index=range(len(frame)))
    out[USER] = frame[USER].astype(str).to_numpy(dtype=object)
    out[ITEM] = frame[ITEM].astype(str).to_numpy(dtype=object)
    if TIMESTAMP in frame:
        out[TIMESTAMP] = pd.array(frame[TIMESTAMP].to_numpy(), dtype="Int64")
    else:
        out[TIMESTAMP] = pd.array([pd.NA] * len(frame), dtype="Int64")
    out[VALUE] = frame[VALUE].astype("float64").to_numpy() if VALUE in frame else float("nan")
    if EVENT_TYPE in frame:
        out[EVENT_TYPE] = frame[EVENT_TYPE].astype(str).to_numpy(dtype=object)
    else:
        out[EVENT_TYPE] = DEFAULT_EVENT_TYPE
    if EVENT_ID in frame:
        ids = frame[EVENT_ID]
        out[EVENT_ID] = ids.where(ids.notna(), None).astype(object).to_numpy()
        out.loc[out[EVENT_ID].notna(), EVENT_ID] = out.loc[out[EVENT_ID].notna(), EVENT_ID].astype(str)
    else:
        out[EVENT_ID] = None
    return out


@dataclass
class Frames:
    """Canonical frames of one dataset: interactions, and items and users when known."""

    interactions: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
