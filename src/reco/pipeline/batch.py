"""Batch top-N for many users at once, written as CSV, Parquet or JSON Lines."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from reco.errors import ConfigurationError, RecoError
from reco.pipeline.history import Histories
from reco.training.bundle import ModelBundle

OUTPUT_COLUMNS = ["user_id", "rank", "item_id", "score", "source", "explanation"]
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
    """Explained top-``n`` items for each user, from their history in ``interactions``.

    ``interactions`` is a canonical interaction frame (what the store holds now): it
    is each user's whole history, so the pipeline's stored training histories are not
    added to it. Users without history there get the cold-user route (context
    popularity from their stored attributes). ``model`` serves one source alone
    through the same pipeline (filters, fallback, explanations) instead of the
    default. Returns columns user_id, rank (1..n), item_id, score, source,
    explanation; a user gets fewer than ``n`` rows only when the catalogue has fewer
    items they may get.
    """
    pipeline = bundle.pipeline
    if model is not None:
        if model not in pipeline.sources:
            raise ConfigurationError(
                f"model {model!r} is not in this version; it has: "
                f"{', '.join(sorted(pipeline.sources))}"
            )
        pipeline = replace(pipeline, mode=model, _derived={})
    user_ids = [str(u) for u in pd.unique(np.asarray(user_ids, dtype=object))]
    known = pipeline.users.lookup(user_ids)
    frames = []
    for start in range(0, len(user_ids), USERS_PER_CHUNK):
        chunk = user_ids[start : start + USERS_PER_CHUNK]
        mine = interactions[interactions["user_id"].isin(chunk)]
        histories = Histories.from_frame(
            pipeline.items,
            chunk,
            mine,
            users=known[start : start + USERS_PER_CHUNK],
            seen_event_types=pipeline.config.seen_event_types,
        )
        result = pipeline.recommend(histories, n)
        rows, ranks = np.nonzero(result.items >= 0)
        frames.append(
            pd.DataFrame(
                {
                    "user_id": np.asarray(chunk, dtype=object)[rows],
                    "rank": ranks + 1,
                    "item_id": pipeline.items.ids[result.items[rows, ranks]],
                    "score": result.scores[rows, ranks].astype(np.float64),
                    "source": result.sources[rows, ranks],
                    "explanation": result.reasons[rows, ranks],
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
