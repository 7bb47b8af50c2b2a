"""EvaluationReport: JSON round trip, Markdown and rich tables, files on disk."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from reco.evaluation.report import EvaluationReport, ModelEvaluation

METRICS = {
    "ndcg@10": 0.2035,
    "recall@20": 0.252,
    "precision@10": 0.1714,
    "map@10": 0.1072,
    "mrr@10": 0.3733,
    "hit_rate@10": 0.72,
    "coverage@10": 0.2786,
    "novelty@10": 8.5012,
}


def make_report() -> EvaluationReport:
    return EvaluationReport(
        dataset={
            "name": "ml-100k",
            "users": 943,
            "items": 1682,
            "interactions": 100_000,
            "train_interactions": 80_367,
            "test_interactions": 19_549,
            "test_users": 943,
        },
        evaluations=[
            ModelEvaluation("ease", dict(METRICS), fit_seconds=0.84, predict_seconds=0.07),
            ModelEvaluation(
                "popularity",
                {**METRICS, "ndcg@10": 0.1187, "novelty@10": math.nan},
                fit_seconds=0.001,
                predict_seconds=0.02,
            ),
        ],
        protocol={"split": "temporal_user_holdout", "description": "Per-user holdout."},
    )


def test_json_round_trip_keeps_everything_and_writes_nan_as_null() -> None:
    report = make_report()
    text = report.to_json()
    raw = json.loads(text)  # strict JSON
    assert raw["evaluations"][1]["metrics"]["novelty@10"] is None
    back = EvaluationReport.from_json(text)
    assert back.dataset == report.dataset
    assert back.protocol == report.protocol
    assert [e.name for e in back.evaluations] == ["ease", "popularity"]
    assert back.evaluations[0] == report.evaluations[0]
    assert math.isnan(back.evaluations[1].metrics["novelty@10"])


def test_from_json_names_what_is_missing() -> None:
    with pytest.raises(ValueError, match="evaluations"):
        EvaluationReport.from_json('{"dataset": {}}')


def test_markdown_is_one_table_with_the_protocol_columns() -> None:
    markdown = make_report().to_markdown()
    lines = markdown.splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == (
        "| model | NDCG@10 | Recall@20 | Precision@10 | MAP@10 | MRR@10 | HR@10 | "
        "Coverage@10 | Novelty@10 | fit s | predict s |"
    )
    assert table[2] == (
        "| ease | 0.2035 | 0.2520 | 0.1714 | 0.1072 | 0.3733 | 0.7200 | 0.2786 | 8.50 "
        "| 0.84 | 0.07 |"
    )
    assert table[3].startswith("| popularity | 0.1187 |")
    assert "| – |" in table[3]  # NaN novelty shows as a dash
    assert len(table) == 4
    assert "ml-100k, 943 users, 1,682 items, 100,000 interactions" in lines[0]
    assert "Per-user holdout." in markdown


def test_rich_table_has_a_row_per_model() -> None:
    table = make_report().to_rich_table()
    assert [column.header for column in table.columns][:2] == ["model", "NDCG@10"]
    assert table.row_count == 2
    console = Console(record=True, width=200)
    console.print(table)
    assert "0.2035" in console.export_text()


def test_write_puts_json_and_markdown_in_the_folder(tmp_path: Path) -> None:
    report = make_report()
    json_path, md_path = report.write(tmp_path / "reports")
    assert json_path == tmp_path / "reports" / "report.json"
    assert md_path == tmp_path / "reports" / "report.md"
    assert EvaluationReport.from_json(json_path.read_text()).dataset["name"] == "ml-100k"
    assert md_path.read_text() == report.to_markdown()


def test_best_picks_the_highest_metric() -> None:
    report = make_report()
    assert report.best().name == "ease"
    assert report.best("novelty@10").name == "ease"  # NaN counts as lowest
    with pytest.raises(KeyError, match="no metric"):
        report.best("auc")
