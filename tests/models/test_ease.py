"""EASERecommender: the closed form, the catalogue limit and its message."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reco.data.dataset import Dataset
from reco.errors import ConfigurationError
from reco.models.ease import EASERecommender, fit_memory_bytes


def dense_ease(data: Dataset, l2: float) -> np.ndarray:
    """Textbook EASE on the full dense matrix: B = -P / diag(P), zero diagonal."""
    x = data.matrix().toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return b


def test_weights_are_the_closed_form(clustered_data: Dataset) -> None:
    model = EASERecommender(l2=50.0).fit(clustered_data)
    full = np.zeros((clustered_data.n_items, clustered_data.n_items), dtype=np.float32)
    full[np.ix_(model.active_items_, model.active_items_)] = model.weights_
    np.testing.assert_allclose(full, dense_ease(clustered_data, 50.0), atol=1e-6)
    assert model.weights_.dtype == np.float32


def test_scores_are_history_times_weights(clustered_data: Dataset) -> None:
    model = EASERecommender(l2=50.0).fit(clustered_data)
    rows = clustered_data.matrix()[:20]
    expected = rows.toarray() @ dense_ease(clustered_data, 50.0)
    scores = model.score(rows, np.arange(clustered_data.n_items))
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)


def test_items_without_interactions_do_not_count_toward_the_limit(
    clustered_data: Dataset,
) -> None:
    frame = clustered_data.to_frame()
    active = int((clustered_data.item_counts() > 0).sum())
    catalogue = pd.DataFrame({"item_id": [f"cold{i}" for i in range(100)]})
    data = Dataset.from_frames(frame, items=catalogue)
    assert data.n_items == clustered_data.n_items + 100
    model = EASERecommender(l2=50.0, max_items=active).fit(data)
    assert model.weights_.shape == (active, active)
    cold = data.items.lookup(catalogue["item_id"])
    scores = model.score(data.matrix()[:5], cold)
    np.testing.assert_array_equal(scores, np.zeros_like(scores))


def test_a_catalogue_over_the_limit_is_refused_with_a_clear_message(
    clustered_data: Dataset,
) -> None:
    active = int((clustered_data.item_counts() > 0).sum())
    with pytest.raises(ConfigurationError) as refused:
        EASERecommender(max_items=100).fit(clustered_data)
    message = str(refused.value)
    assert f"cannot fit {active} items" in message
    assert "max_items=100" in message
    assert "GiB" in message
    assert f'"max_items": {active}' in message
    assert "itemknn or als" in message


def test_memory_estimate_is_the_dense_matrices() -> None:
    assert fit_memory_bytes(20_000) == 20 * 20_000**2
    # 20,000 items need about 7.5 GiB: why the default limit sits there.
    assert 7 < fit_memory_bytes(20_000) / 2**30 < 8


@pytest.mark.parametrize("l2", [0.0, -5.0])
def test_l2_must_be_positive(l2: float, clustered_data: Dataset) -> None:
    with pytest.raises(ConfigurationError, match="l2 must be > 0"):
        EASERecommender(l2=l2).fit(clustered_data)


@pytest.mark.parametrize("gaps", [1, 80], ids=["few-runs", "many-runs"])
def test_items_without_interactions_score_zero_wherever_they_sit(gaps: int) -> None:
    # Items without interactions split the active ones into runs; scores are placed by
    # slices up to a limit of runs and by an index array beyond it.
    rng = np.random.default_rng(3)
    n_items = 400
    inactive = set(rng.choice(n_items, size=gaps, replace=False).tolist())
    active = [i for i in range(n_items) if i not in inactive]
    rows = [(u, int(i)) for u in range(150) for i in rng.choice(active, size=12, replace=False)]
    rows += [(i % 150, i) for i in active]  # every active item has an interaction
    catalogue = pd.DataFrame({"item_id": [str(i) for i in range(n_items)]})
    data = Dataset.from_frames(
        pd.DataFrame({"user_id": [str(u) for u, _ in rows], "item_id": [str(i) for _, i in rows]}),
        items=catalogue,
    )
    model = EASERecommender(l2=20.0).fit(data)
    assert len(model.active_items_) == data.n_items - gaps
    histories = data.matrix()[:30]
    full = np.zeros((data.n_items, data.n_items), dtype=np.float32)
    full[np.ix_(model.active_items_, model.active_items_)] = model.weights_
    scores = model.score(histories, np.arange(data.n_items))
    np.testing.assert_allclose(scores, histories.toarray() @ full, rtol=1e-5, atol=1e-6)
    idle = np.setdiff1d(np.arange(data.n_items), model.active_items_)
    assert (scores[:, idle] == 0).all()
