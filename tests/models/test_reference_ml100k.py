"""reco's models reach DESIGN.md's ml-100k reference NDCG@10 under the evaluation protocol."""

from __future__ import annotations

import pytest

from reco.data.dataset import Dataset
from reco.evaluation.protocol import run_protocol
from reco.models import available_models, create_model

# NDCG@10 on ml-100k from DESIGN.md, "Evaluation protocol", for the models' defaults
# (item-kNN cosine K=100, ALS 64 factors, EASE lambda 200).
REFERENCE_NDCG = {"popularity": 0.119, "itemknn": 0.190, "als": 0.185, "ease": 0.2035}
FLOOR = 0.97  # each model must reach at least 97% of its reference


@pytest.mark.slow
def test_default_models_reach_the_reference_ndcg(ml100k_binary: Dataset) -> None:
    assert set(REFERENCE_NDCG) <= set(available_models())
    report = run_protocol(
        {name: create_model(name) for name in REFERENCE_NDCG},
        ml100k_binary,
        name="ml-100k",
    )
    print(report.to_markdown())
    ndcg = {e.name: e.metrics["ndcg@10"] for e in report.evaluations}
    for name, reference in REFERENCE_NDCG.items():
        assert ndcg[name] >= FLOOR * reference, (
            f"{name}: NDCG@10 {ndcg[name]:.4f} is below {FLOOR:.0%} of the reference "
            f"{reference:.4f}"
        )
    for name in ("itemknn", "als", "ease"):
        assert ndcg[name] > ndcg["popularity"] + 0.05, name
