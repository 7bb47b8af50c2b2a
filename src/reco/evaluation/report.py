"""The evaluation report: what was measured, on what data, under which protocol.

A report renders as JSON (machine-readable, round-trips through :meth:`from_json`),
as a Markdown table and as a rich table for the terminal.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

JSON_FILE = "report.json"
MARKDOWN_FILE = "report.md"

# Metric key prefix -> column label; keys look like "ndcg@10".
_LABELS = {
    "ndcg": "NDCG",
    "recall": "Recall",
    "precision": "Precision",
    "map": "MAP",
    "mrr": "MRR",
    "hit_rate": "HR",
    "coverage": "Coverage",
    "novelty": "Novelty",
}
# Novelty is in bits (values around 5-15); the others are shares in [0, 1].
_DECIMALS = {"novelty": 2}


@dataclass
class ModelEvaluation:
    """One model's result: metric name -> value, and how long fitting and ranking took."""

    name: str
    metrics: dict[str, float]
    fit_seconds: float
    predict_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes null)."""
        data = asdict(self)
        data["metrics"] = {key: _finite_or_none(value) for key, value in self.metrics.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelEvaluation:
        """The evaluation described by :meth:`to_dict` (null becomes NaN)."""
        return cls(
            name=str(data["name"]),
            metrics={
                str(key): math.nan if value is None else float(value)
                for key, value in data["metrics"].items()
            },
            fit_seconds=float(data["fit_seconds"]),
            predict_seconds=float(data["predict_seconds"]),
        )


@dataclass
class EvaluationReport:
    """Results of every model evaluated on one dataset under one protocol.

    ``dataset`` describes the data (name, users, items, interactions, train and test
    sizes); ``protocol`` the split and ranking rules; ``evaluations`` one entry per model
    in the order they were evaluated.
    """

    dataset: dict[str, Any]
    evaluations: list[ModelEvaluation] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)

    def metric_keys(self) -> list[str]:
        """Every metric key reported, in first-seen order (first model first)."""
        keys: dict[str, None] = {}
        for evaluation in self.evaluations:
            keys.update(dict.fromkeys(evaluation.metrics))
        return list(keys)

    def best(self, metric: str = "ndcg@10") -> ModelEvaluation:
        """The model with the highest value of ``metric`` (NaN counts as lowest)."""
        if not self.evaluations:
            raise ValueError("the report holds no model evaluations")
        if metric not in self.metric_keys():
            raise KeyError(f"no metric {metric!r}; the report has {', '.join(self.metric_keys())}")

        def value(evaluation: ModelEvaluation) -> float:
            result = evaluation.metrics.get(metric, math.nan)
            return -math.inf if math.isnan(result) else result

        return max(self.evaluations, key=value)

    # -- serialisation ---------------------------------------------------------------

    def to_json(self) -> str:
        """The report as strict JSON (NaN written as null), indented."""
        data = {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "evaluations": [evaluation.to_dict() for evaluation in self.evaluations],
        }
        return json.dumps(data, indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> EvaluationReport:
        """The report written by :meth:`to_json`; ValueError naming what is missing."""
        try:
            data = json.loads(text)
            return cls(
                dataset=dict(data["dataset"]),
                protocol=dict(data.get("protocol", {})),
                evaluations=[ModelEvaluation.from_dict(item) for item in data["evaluations"]],
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"not an evaluation report: missing or malformed field {exc}; write reports "
                "with EvaluationReport.to_json"
            ) from exc

    def _header(self) -> list[str]:
        return ["model", *(_label(key) for key in self.metric_keys()), "fit s", "predict s"]

    def _rows(self) -> list[list[str]]:
        keys = self.metric_keys()
        return [
            [
                evaluation.name,
                *(_format(key, evaluation.metrics.get(key, math.nan)) for key in keys),
                f"{evaluation.fit_seconds:.2f}",
                f"{evaluation.predict_seconds:.2f}",
            ]
            for evaluation in self.evaluations
        ]

    def _caption(self) -> str:
        d = self.dataset
        parts = [str(d.get("name", "dataset"))]
        for key, label in (
            ("users", "users"),
            ("items", "items"),
            ("interactions", "interactions"),
        ):
            if key in d:
                parts.append(f"{d[key]:,} {label}")
        if "train_interactions" in d and "test_interactions" in d:
            parts.append(f"train {d['train_interactions']:,} / test {d['test_interactions']:,}")
        if "test_users" in d:
            parts.append(f"{d['test_users']:,} test users")
        return ", ".join(parts)

    def to_markdown(self) -> str:
        """One Markdown table, one row per model, under a line describing the data."""
        header = self._header()
        lines = [
            f"Evaluation on {self._caption()}.",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---", *["---:"] * (len(header) - 1)]) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self._rows()]
        if self.protocol.get("description"):
            lines += ["", str(self.protocol["description"])]
        return "\n".join(lines) + "\n"

    def to_rich_table(self) -> Table:
        """The same table for a terminal (``rich.console.Console().print(table)``)."""
        table = Table(title=f"Evaluation: {self._caption()}")
        for position, column in enumerate(self._header()):
            table.add_column(column, justify="left" if position == 0 else "right")
        for row in self._rows():
            table.add_row(*row)
        return table

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Write ``report.json`` and ``report.md`` into ``folder`` (created if
        needed); returns their paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        json_path = folder / JSON_FILE
        md_path = folder / MARKDOWN_FILE
        json_path.write_text(self.to_json() + "\n")
        md_path.write_text(self.to_markdown())
        return json_path, md_path


def _label(key: str) -> str:
    name, _, cutoff = key.partition("@")
    label = _LABELS.get(name, name)
    return f"{label}@{cutoff}" if cutoff else label


def _format(key: str, value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.{_DECIMALS.get(key.partition('@')[0], 4)}f}"


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
