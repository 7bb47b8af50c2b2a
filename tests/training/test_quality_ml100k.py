"""The pipeline under the protocol on ml-100k: well above the best single model (slow)."""

from __future__ import annotations

import pytest

from reco.config import PipelineConfig
from reco.data.dataset import Dataset
from reco.data.movielens import load_movielens
from reco.training.evaluation import evaluate_pipeline


@pytest.mark.slow
def test_pipeline_beats_the_best_single_model_by_ten_percent(shared_data_dir):
    frames = load_movielens(shared_data_dir / "ml-100k")
    data = Dataset.from_frames(frames.interactions, frames.items, frames.users)
    evaluation = evaluate_pipeline(data, PipelineConfig(), seed=42, name="ml-100k")
    rows = {e.name: e.metrics["ndcg@10"] for e in evaluation.report.evaluations}
    assert evaluation.fit.selection.chosen == "pipeline"
    best_single = max(v for name, v in rows.items() if not name.startswith("pipeline"))
    # Sources alone reproduce the DESIGN reference numbers (EASE 0.2035).
    assert rows["ease"] == pytest.approx(0.2035, abs=0.003)
    # Measured 0.250-0.257 (1.23-1.26x) while tuning; the target is 1.10x.
    assert rows["pipeline"] >= 1.10 * best_single
