"""The CLI on the pipeline: train shows the selection, similar, evaluate, explanations."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from reco.cli.main import app
from reco.data.synthetic import generate

FAST = {
    "RECO_MODEL_PARAMS": json.dumps(
        {"itemknn": {"k": 50}, "als": {"factors": 16, "iterations": 5}, "ease": {"l2": 50.0}}
    ),
    "RECO_PIPELINE": json.dumps({"ranker": {"max_rounds": 150, "early_stopping_rounds": 20}}),
}


@pytest.fixture(scope="module")
def shop_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shop")
    frames = generate(n_users=200, n_items=120, n_interactions=7_000, seed=4)
    frames.interactions[["user_id", "item_id", "timestamp", "event_type"]].to_csv(
        folder / "events.csv", index=False
    )
    frames.items.to_csv(folder / "items.csv", index=False)
    frames.users.to_csv(folder / "users.csv", index=False)
    return folder, frames


@pytest.fixture(scope="module")
def trained_env(shop_files, tmp_path_factory):
    folder, _ = shop_files
    env = {
        "RECO_HOME": str(tmp_path_factory.mktemp("home")),
        "RECO_DATABASE_URL": "",
        "COLUMNS": "200",
    }
    env |= FAST
    result = invoke(
        env,
        "train",
        "--interactions",
        str(folder / "events.csv"),
        "--items",
        str(folder / "items.csv"),
        "--users",
        str(folder / "users.csv"),
    )
    assert result.exit_code == 0, result.output
    return env, result


def invoke(env, *args):
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=True)


def said(result) -> str:
    return " ".join(result.output.split())


def test_train_prints_every_measurement_and_what_it_serves(trained_env):
    _, result = trained_env
    text = said(result)
    assert "held-out validation users" in text
    for name in ("pipeline", "ease", "itemknn", "content", "segment_popularity"):
        assert name in text
    assert "serving" in text and "is now current" in text


def test_recommend_writes_sources_and_explanations(trained_env, shop_files, tmp_path):
    env, _ = trained_env
    output = tmp_path / "recs.csv"
    result = invoke(env, "recommend", "--users", "all", "--n", "5", "--output", str(output))
    assert result.exit_code == 0, result.output
    recs = pd.read_csv(output, dtype=str)
    assert {"source", "explanation"} <= set(recs.columns)
    assert recs["explanation"].str.len().gt(0).all()
    assert recs["explanation"].str.contains("because you watched|popular|similar|trending").all()
    alone = tmp_path / "alone.csv"
    result = invoke(env, "recommend", "--model", "itemknn", "--n", "5", "--output", str(alone))
    assert result.exit_code == 0, result.output
    alone_recs = pd.read_csv(alone, dtype=str)
    _, frames = shop_files
    manifest = Path(env["RECO_HOME"]) / "models" / "current" / "manifest.json"
    threshold = json.loads(manifest.read_text())["selection"]["cold_route"]["threshold"]["chosen"]
    items_per_user = frames.interactions.groupby("user_id")["item_id"].nunique()
    warm = alone_recs["user_id"].map(items_per_user).fillna(0).ge(threshold)
    # Long enough histories get item-kNN alone; shorter ones stay on the cold route.
    assert set(alone_recs.loc[warm, "source"]) <= {"itemknn", "fallback"}
    assert set(alone_recs.loc[~warm, "source"]) <= {"segment_popularity", "trending", "popularity"}


def test_similar_items_and_an_unknown_item(trained_env, shop_files):
    env, _ = trained_env
    _, frames = shop_files
    item = str(frames.interactions["item_id"].iloc[0])
    result = invoke(env, "similar", item, "--n", "5")
    assert result.exit_code == 0, result.output
    assert "items like" in result.output and "itemknn" in result.output
    result = invoke(env, "similar", "no-such-item")
    assert result.exit_code != 0
    assert "unknown item 'no-such-item'" in str(result.exception)


def test_evaluate_reports_the_pipeline_and_each_source(shop_files, tmp_path):
    folder, _ = shop_files
    env = {"RECO_HOME": str(tmp_path / "home"), "RECO_DATABASE_URL": "", "COLUMNS": "200"} | FAST
    env["RECO_MODELS"] = json.dumps(["ease", "popularity"])
    result = invoke(
        env,
        "evaluate",
        "--interactions",
        str(folder / "events.csv"),
        "--items",
        str(folder / "items.csv"),
        "--output",
        str(tmp_path / "report"),
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    names = [e["name"] for e in report["evaluations"]]
    assert any(name.startswith("pipeline") for name in names)
    assert {"ease", "itemknn", "als", "content"} <= set(names)
    # no user attributes in this run: the source that needs them is not there
    assert "segment_popularity" not in names
