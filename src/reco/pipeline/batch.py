"""Batch top-N for many users at once, written as CSV, Parquet or JSON Lines."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from reco.data import schema
from reco.errors import RecoError
from reco.training.bundle import ModelBundle

OUTPUT_COLUMNS = ["user_id", "rank", "item_id", "score"]
USERS_PER_CHUNK = 5_000


def recommend_batch(
    bundle: ModelBundle,
    user_ids: Sequence[str],
    interactions: pd.DataFrame,
    n: int,
    *,
    model: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Top-``n`` items for each user, from their history in ``interactions``.

    ``interactions`` is a canonical interaction frame (what the store holds now);
    users without history there, or unknown to the model, get the model's fallback.
    Returns columns user_id, rank (1..n), item_id, score; a user gets fewer than ``n``
    rows only when the catalogue has fewer items they have not seen.
    """
    recommender = bundle.model(model)
    user_ids = [str(u) for u in user_ids]
    all_histories = bundle.histories(
        user_ids, interactions[schema.ITEM].to_numpy(), interactions[schema.USER].to_numpy()
    )
    known_users = bundle.users.lookup(user_ids)
    frames = []
    for start in range(0, len(user_ids), USERS_PER_CHUNK):
        stop = start + USERS_PER_CHUNK
        chunk = user_ids[start:stop]
        items, scores = recommender.recommend(
            all_histories[start:stop], n, users=known_users[start:stop]
        )
        rows, ranks = np.nonzero(items >= 0)
        frames.append(
            pd.DataFrame(
                {
                    "user_id": np.asarray(chunk, dtype=object)[rows],
                    "rank": ranks + 1,
                    "item_id": bundle.items.ids[items[rows, ranks]],
                    "score": scores[rows, ranks].astype(np.float64),
                }
            )
        )
        if progress:
            progress(min(start + USERS_PER_CHUNK, len(user_ids)), len(user_ids))
    if not frames:
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame as CSV, Parquet or JSON Lines, chosen by the file's extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in {".csv", ".tsv"}:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix in {".jsonl", ".ndjson"}:
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        raise RecoError(
            f"cannot write {path}: unknown extension {suffix!r}; use .csv, .parquet or .jsonl"
        )
