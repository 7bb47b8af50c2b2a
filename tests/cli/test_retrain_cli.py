"""`reco retrain` and the worker's retrain options through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from reco.cli.main import app

QUICK = {
    "sources": {"itemknn": 50, "popularity": 20},
    "ranker": {"max_rounds": 30, "early_stopping_rounds": 5},
    "cold_history_threshold": 1,
    "cold_trending_weight": 0.0,
}


def plain_csv(path, n_users=60, n_items=80, per_user=12, seed=3) -> None:
    """user,item,timestamp rows with two taste clusters."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        pool = np.arange(n_items)[np.arange(n_items) % 2 == u % 2]
        for k, item in enumerate(rng.choice(pool, per_user, replace=False)):
            rows.append((f"cust-{u:03d}", f"sku-{item}", 1_700_000_000 + u * 100 + k))
    pd.DataFrame(rows, columns=["user", "item", "timestamp"]).to_csv(path, index=False)


@pytest.fixture
def env(tmp_path):
    return {
        "RECO_HOME": str(tmp_path / "home"),
        "RECO_DATABASE_URL": "",
        "RECO_PIPELINE": json.dumps(QUICK),
        "COLUMNS": "200",
    }


def invoke(env, *args):
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=True)


def test_retrain_promotes_first_then_reports_the_comparison(env, tmp_path) -> None:
    plain_csv(tmp_path / "events.csv")
    assert invoke(env, "ingest", str(tmp_path / "events.csv")).exit_code == 0
    first = invoke(env, "retrain")
    assert first.exit_code == 0, first.output
    assert "is now current" in first.output and "first model" in first.output
    second = invoke(env, "retrain")
    assert second.exit_code == 0, second.output
    assert "validation NDCG@10: new" in " ".join(second.output.split())


def test_worker_rejects_a_bad_duration(env) -> None:
    result = invoke(env, "worker", "--retrain-every", "soon")
    assert result.exit_code == 2
    assert "not a duration" in " ".join(result.output.split())
