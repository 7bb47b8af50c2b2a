"""The Recommender contract (DESIGN.md, "Core contracts"), checked on every registered model.

Models added to the registry later are covered automatically; give them fast
parameters in ``conftest.FAST_PARAMS`` if their defaults are slow.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.sparse import csr_matrix, vstack

from reco.data.dataset import Dataset
from reco.errors import ArtifactError, NotFittedError
from reco.models import create_model, load_model, model_class
from reco.models.base import PARAMS_FILE, STATE_FILE, BaseRecommender, top_n

# Shared learned arrays that BaseRecommender saves for every model.
SHARED_STATE = ("n_items_", "popularity_")


def fitted(name: str, params: dict[str, Any], data: Dataset) -> BaseRecommender:
    """A new model of ``name`` fitted on ``data``."""
    return create_model(name, **params).fit(data)


def learned_arrays(model: BaseRecommender) -> dict[str, np.ndarray]:
    """Everything a model saves, as arrays (the shared ones and its own state)."""
    arrays = {"n_items_": np.asarray(model.n_items_), "popularity_": model.popularity_}
    arrays.update(model._state())
    return arrays


def assert_identical_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """Same keys, dtypes, shapes and bits."""
    assert sorted(a) == sorted(b)
    for key in a:
        left, right = np.asarray(a[key]), np.asarray(b[key])
        assert left.dtype == right.dtype, key
        assert left.shape == right.shape, key
        assert np.array_equal(left, right, equal_nan=left.dtype.kind == "f"), key


@pytest.fixture
def model(model_name: str, model_params: dict[str, Any], synthetic_data: Dataset):
    """The model under test, fitted on the main synthetic dataset."""
    return fitted(model_name, model_params, synthetic_data)


@pytest.fixture
def histories(synthetic_data: Dataset) -> csr_matrix:
    """History rows of the first 40 users."""
    return synthetic_data.matrix()[:40]


# -- construction and fitting ---------------------------------------------------------


def test_params_are_stored_unchanged(model_name: str, model_params: dict[str, Any]) -> None:
    model = create_model(model_name, **model_params)
    params = model.get_params()
    for key, value in model_params.items():
        assert params[key] == value
    assert not [a for a in vars(model) if a.endswith("_")], "__init__ must not learn anything"
    assert model_class(model_name).name == model_name


def test_fit_returns_self(model_name: str, model_params: dict[str, Any], synthetic_data) -> None:
    model = create_model(model_name, **model_params)
    assert model.fit(synthetic_data) is model


def test_unfitted_model_refuses_to_work(
    model_name: str, model_params: dict[str, Any], histories: csr_matrix, tmp_path: Path
) -> None:
    model = create_model(model_name, **model_params)
    with pytest.raises(NotFittedError):
        model.recommend(histories, 5)
    with pytest.raises(NotFittedError):
        model.score(histories, np.arange(5))
    with pytest.raises(NotFittedError):
        model.save(tmp_path / "model")


def test_same_seed_gives_the_same_model(
    model_name: str, model_params: dict[str, Any], synthetic_data: Dataset, histories
) -> None:
    first = fitted(model_name, model_params, synthetic_data)
    second = fitted(model_name, model_params, synthetic_data)
    assert_identical_arrays(learned_arrays(first), learned_arrays(second))
    a_items, a_scores = first.recommend(histories, 10)
    b_items, b_scores = second.recommend(histories, 10)
    np.testing.assert_array_equal(a_items, b_items)
    np.testing.assert_array_equal(a_scores, b_scores)


def test_fit_discards_earlier_state(
    model_name: str, model_params: dict[str, Any], synthetic_data: Dataset, other_data: Dataset
) -> None:
    refitted = fitted(model_name, model_params, synthetic_data).fit(other_data)
    fresh = fitted(model_name, model_params, other_data)
    assert refitted.n_items_ == other_data.n_items
    assert_identical_arrays(learned_arrays(refitted), learned_arrays(fresh))
    rows = other_data.matrix()[:30]
    np.testing.assert_array_equal(refitted.recommend(rows, 10)[0], fresh.recommend(rows, 10)[0])


# -- recommending ---------------------------------------------------------------------


def test_recommendations_are_unique_valid_items_best_first(model, histories) -> None:
    items, scores = model.recommend(histories, 10)
    assert items.shape == scores.shape == (histories.shape[0], 10)
    assert items.dtype.kind == "i"
    assert ((items >= 0) & (items < model.n_items_)).all()
    assert np.isfinite(scores).all()
    assert (np.diff(scores, axis=1) <= 0).all(), "scores must be sorted best first"
    for row in items:
        assert len(set(row.tolist())) == len(row)


def test_seen_items_are_never_recommended(model, synthetic_data: Dataset) -> None:
    histories = synthetic_data.matrix()
    items, _ = model.recommend(histories, 20)
    for row in range(histories.shape[0]):
        seen = set(histories[row].indices.tolist())
        assert not seen & set(items[row].tolist()), f"row {row} got an item it has seen"


def test_empty_history_gets_the_popularity_fallback(model, synthetic_data: Dataset) -> None:
    empty = csr_matrix((2, synthetic_data.n_items), dtype=np.float32)
    items, scores = model.recommend(empty, 10)
    assert (items >= 0).all(), "an unknown user must still get n items"
    expected, _ = top_n(model.popularity_[None, :].astype(np.float32), 10)
    np.testing.assert_array_equal(items[0], expected[0])
    np.testing.assert_array_equal(items[1], expected[0])
    assert np.isfinite(scores).all()


def test_empty_rows_mixed_with_others_keep_their_own_answers(model, histories) -> None:
    lone, _ = model.recommend(histories[:3], 10)
    empty = csr_matrix((1, histories.shape[1]), dtype=np.float32)
    mixed, _ = model.recommend(vstack([histories[:3], empty]).tocsr(), 10)
    np.testing.assert_array_equal(mixed[:3], lone)
    assert (mixed[3] >= 0).all()


def test_candidates_are_respected(model, histories) -> None:
    rng = np.random.default_rng(0)
    candidates = rng.choice(model.n_items_, size=30, replace=False)
    items, _ = model.recommend(histories, 10, candidates=candidates)
    valid = items >= 0
    assert np.isin(items[valid], candidates).all()
    for row in range(histories.shape[0]):
        rankable = set(candidates.tolist()) - set(histories[row].indices.tolist())
        assert valid[row].sum() == min(10, len(rankable))


def test_few_candidates_pad_with_minus_one(model, histories) -> None:
    history_item = int(histories[0].indices[0])
    fresh = [i for i in range(model.n_items_) if i not in set(histories[0].indices)][:2]
    candidates = np.array([history_item, *fresh])
    items, scores = model.recommend(histories[:1], 5, candidates=candidates)
    assert sorted(items[0, :2].tolist()) == sorted(fresh)
    assert (items[0, 2:] == -1).all()
    assert np.isneginf(scores[0, 2:]).all()


def test_n_beyond_the_catalogue_pads_with_minus_one(model, histories) -> None:
    n = model.n_items_ + 5
    items, scores = model.recommend(histories[:3], n)
    for row in range(3):
        rankable = model.n_items_ - histories[row].nnz
        assert (items[row, :rankable] >= 0).all()
        assert len(set(items[row, :rankable].tolist())) == rankable
        assert (items[row, rankable:] == -1).all()
        assert np.isneginf(scores[row, rankable:]).all()


def test_invalid_requests_are_refused(model, histories) -> None:
    with pytest.raises(ValueError, match="n must be at least 1"):
        model.recommend(histories, 0)
    wrong_width = csr_matrix((2, model.n_items_ + 1), dtype=np.float32)
    with pytest.raises(ValueError, match="item columns"):
        model.recommend(wrong_width, 5)


# -- scoring --------------------------------------------------------------------------


def test_score_shape_and_nan_outside_the_catalogue(model, histories) -> None:
    items = np.array([0, 3, -1, model.n_items_, model.n_items_ - 1, 10**9])
    scores = model.score(histories, items)
    assert scores.shape == (histories.shape[0], len(items))
    assert scores.dtype == np.float32
    inside = np.array([True, True, False, False, True, False])
    assert np.isnan(scores[:, ~inside]).all()
    assert np.isfinite(scores[:, inside]).all()


def test_score_agrees_with_recommend(model, histories) -> None:
    items, top_scores = model.recommend(histories, 10)
    for row in range(histories.shape[0]):
        scored = model.score(histories[row], items[row])
        np.testing.assert_allclose(scored[0], top_scores[row], rtol=1e-5, atol=1e-6)


# -- persistence ----------------------------------------------------------------------


def test_save_load_round_trips_bit_exact(model, histories, tmp_path: Path) -> None:
    path = tmp_path / "model"
    model.save(path)
    loaded = type(model).load(path)
    also_loaded = load_model(path)
    assert type(also_loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    assert_identical_arrays(learned_arrays(loaded), learned_arrays(model))
    assert_identical_arrays(learned_arrays(also_loaded), learned_arrays(model))
    before = model.recommend(histories, 10)
    after = loaded.recommend(histories, 10)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    items = np.arange(model.n_items_)
    np.testing.assert_array_equal(model.score(histories, items), loaded.score(histories, items))


def test_artifact_holds_no_pickle(model, tmp_path: Path) -> None:
    path = tmp_path / "model"
    model.save(path)
    names = sorted(p.name for p in path.rglob("*") if p.is_file())
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".joblib"))], names
    json.loads((path / PARAMS_FILE).read_text())
    with np.load(path / STATE_FILE, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    assert arrays
    assert not [k for k, v in arrays.items() if v.dtype.hasobject]


def test_truncated_state_is_an_artifact_error(model, tmp_path: Path) -> None:
    path = tmp_path / "model"
    model.save(path)
    state = path / STATE_FILE
    raw = state.read_bytes()
    for cut in (len(raw) // 2, 10, 0):
        state.write_bytes(raw[:cut])
        with pytest.raises(ArtifactError):
            type(model).load(path)
        with pytest.raises(ArtifactError):
            load_model(path)


def test_missing_state_arrays_are_an_artifact_error(model, tmp_path: Path) -> None:
    if not model._state():
        pytest.skip(f"{model.name} saves no arrays of its own")
    path = tmp_path / "model"
    model.save(path)
    np.savez(path / STATE_FILE, n_items_=np.asarray(model.n_items_), popularity_=model.popularity_)
    with pytest.raises(ArtifactError):
        type(model).load(path)


def test_mismatched_state_is_an_artifact_error(model, tmp_path: Path) -> None:
    path = tmp_path / "model"
    model.save(path)
    with np.load(path / STATE_FILE, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["n_items_"] = np.asarray(model.n_items_ + 7)
    np.savez(path / STATE_FILE, **arrays)
    if not model._state():
        pytest.skip(f"{model.name} saves no arrays of its own to check against n_items_")
    with pytest.raises(ArtifactError):
        type(model).load(path)


def test_missing_params_is_an_artifact_error(model, tmp_path: Path) -> None:
    path = tmp_path / "model"
    model.save(path)
    (path / PARAMS_FILE).unlink()
    with pytest.raises(ArtifactError):
        type(model).load(path)
    with pytest.raises(ArtifactError):
        load_model(path)
    with pytest.raises(ArtifactError):
        type(model).load(tmp_path / "nowhere")


def test_wrong_model_name_is_an_artifact_error(model, tmp_path: Path) -> None:
    path = tmp_path / "model"
    model.save(path)
    meta = json.loads((path / PARAMS_FILE).read_text())
    meta["model"] = "not-" + model.name
    (path / PARAMS_FILE).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=model.name):
        type(model).load(path)
    with pytest.raises(ArtifactError):
        load_model(path)


# -- quality --------------------------------------------------------------------------


def hit_rate(recommended: np.ndarray, held_out: list[set[int]], k: int = 10) -> float:
    """Share of users with at least one held-out item in their top ``k``."""
    hits = [
        bool(set(row[:k].tolist()) & truth)
        for row, truth in zip(recommended, held_out, strict=True)
    ]
    return float(np.mean(hits))


def random_hit_rate(holdout: Any, k: int = 10) -> float:
    """Expected hit rate of k items drawn uniformly from each user's unseen items."""
    histories = holdout.train.matrix()[holdout.users]
    rates = []
    for row, truth in enumerate(holdout.held_out):
        unseen = holdout.train.n_items - histories[row].nnz
        rates.append(1 - math.comb(unseen - len(truth), k) / math.comb(unseen, k))
    return float(np.mean(rates))


def test_quality_beats_chance_and_popularity(
    model_name: str, model_params: dict[str, Any], holdout: Any
) -> None:
    histories = holdout.train.matrix()[holdout.users]
    model = fitted(model_name, model_params, holdout.train)
    rate = hit_rate(model.recommend(histories, 10)[0], holdout.held_out)
    chance = random_hit_rate(holdout)
    assert rate >= 2 * chance, f"{model_name}: hit rate {rate:.3f}, chance {chance:.3f}"
    if model_name != "popularity":
        popular = fitted("popularity", {}, holdout.train)
        baseline = hit_rate(popular.recommend(histories, 10)[0], holdout.held_out)
        assert rate >= baseline + 0.1, (
            f"{model_name}: hit rate {rate:.3f} does not clearly beat popularity {baseline:.3f}"
        )
