"""End to end through the CLI: a never-seen CSV -> reco train -> reco recommend --users all."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from reco.cli.main import app


@pytest.fixture
def env(tmp_path):
    return {"RECO_HOME": str(tmp_path / "home"), "RECO_DATABASE_URL": "", "COLUMNS": "200"}


def invoke(env, *args):
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=True)


def said(result) -> str:
    """The command's output with line wrapping undone."""
    return " ".join(result.output.split())


def plain_csv(path, n_users=60, n_items=80, per_user=12, seed=3):
    """user,item,timestamp rows with two taste clusters, ids the project never saw."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        cluster = u % 2
        pool = np.arange(n_items)[np.arange(n_items) % 2 == cluster]
        for k, item in enumerate(rng.choice(pool, per_user, replace=False)):
            rows.append((f"cust-{u:03d}", f"sku,{item}", 1_700_000_000 + u * 100 + k))
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    frame.to_csv(path, index=False)
    return frame


def test_train_then_recommend_for_everyone(tmp_path, env):
    source = plain_csv(tmp_path / "events.csv")
    result = invoke(
        env,
        "train",
        "--interactions",
        str(tmp_path / "events.csv"),
        "--user-col",
        "user",
        "--item-col",
        "item",
    )
    assert result.exit_code == 0, result.output
    assert "is now current" in result.output

    output = tmp_path / "recs.csv"
    result = invoke(env, "recommend", "--users", "all", "--n", "20", "--output", str(output))
    assert result.exit_code == 0, result.output
    recs = pd.read_csv(output, dtype={"user_id": str, "item_id": str})
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score", "source", "explanation"]
    assert recs["source"].notna().all() and recs["explanation"].str.len().gt(0).all()
    assert set(recs["user_id"]) == set(source["user"])
    per_user = recs.groupby("user_id")
    assert (per_user.size() == 20).all()
    assert (per_user["rank"].apply(list) == [list(range(1, 21))] * len(per_user)).all()
    assert recs["item_id"].isin(source["item"]).all()
    seen = set(zip(source["user"], source["item"], strict=True))
    assert not any((u, i) in seen for u, i in zip(recs["user_id"], recs["item_id"], strict=True))
    # scores descend within each user
    assert per_user["score"].apply(lambda s: s.is_monotonic_decreasing).all()


def test_recommend_for_a_users_file_with_unknown_users(tmp_path, env):
    plain_csv(tmp_path / "events.csv")
    invoke(
        env,
        "train",
        "--interactions",
        str(tmp_path / "events.csv"),
        "--user-col",
        "user",
        "--item-col",
        "item",
    )
    pd.DataFrame({"user_id": ["cust-001", "never-seen"]}).to_csv(tmp_path / "u.csv", index=False)
    output = tmp_path / "recs.jsonl"
    result = invoke(
        env, "recommend", "--users", str(tmp_path / "u.csv"), "--n", "5", "--output", str(output)
    )
    assert result.exit_code == 0, result.output
    recs = pd.read_json(output, lines=True, dtype={"user_id": str, "item_id": str})
    assert recs.groupby("user_id").size().to_dict() == {"cust-001": 5, "never-seen": 5}


def test_recommend_before_training_says_what_to_do(env, tmp_path):
    result = invoke(env, "recommend", "--output", str(tmp_path / "r.csv"))
    assert result.exit_code != 0
    assert "reco train" in str(result.exception) + result.output


def test_corrupted_artifact_is_refused_and_changes_nothing(tmp_path, env):
    plain_csv(tmp_path / "events.csv")
    invoke(
        env,
        "train",
        "--interactions",
        str(tmp_path / "events.csv"),
        "--user-col",
        "user",
        "--item-col",
        "item",
    )
    current = tmp_path / "home" / "models" / "current"
    state = next(current.resolve().rglob("state.npz"))
    state.write_bytes(state.read_bytes()[:100])
    result = invoke(env, "recommend", "--output", str(tmp_path / "r.csv"))
    assert result.exit_code != 0
    assert "corrupted" in str(result.exception)
    assert not (tmp_path / "r.csv").exists()


def test_bad_file_is_a_clear_error_and_ingests_nothing(tmp_path, env):
    good = plain_csv(tmp_path / "events.csv")
    invoke(env, "ingest", str(tmp_path / "events.csv"), "--user-col", "user", "--item-col", "item")
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,timestamp\nu1,i1,2024-01-01\nu2,i2,not-a-time\n")
    result = invoke(env, "ingest", str(bad), "--user-col", "user", "--item-col", "item")
    assert result.exit_code != 0
    message = str(result.exception)
    assert "bad.csv" in message and "timestamp" in message
    result = invoke(
        env, "ingest", str(tmp_path / "events.csv"), "--user-col", "user", "--item-col", "item"
    )
    assert result.exit_code == 0
    assert f"store now holds {len(good):,} interactions" in said(result)
    assert "added 0 interactions" in said(result)


def test_trained_version_is_recorded_in_the_store(tmp_path, env):
    from reco.store.db import open_store
    from reco.store.repository import current_model_version, list_model_versions

    plain_csv(tmp_path / "events.csv")
    result = invoke(env, "train", "--interactions", str(tmp_path / "events.csv"))
    assert result.exit_code == 0, result.output
    engine = open_store(f"sqlite:///{tmp_path / 'home' / 'reco.db'}")
    versions = list_model_versions(engine)
    assert len(versions) == 1
    current = (tmp_path / "home" / "models" / "current").readlink().name
    assert current_model_version(engine) == current
