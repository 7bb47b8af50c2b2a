"""Two-tower model: determinism, time bound, cold items, user attributes, index, artifacts.

The data: users belong to one of four segments (a user attribute) and mostly pick
items of their segment's genre; items carry that genre as a category and a genre word
in their title, so both towers have metadata worth learning from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.errors import ArtifactError, ConfigurationError, NotApplicableError
from reco.models.two_tower import FEATURES_FILE, WEIGHTS_FILE, TwoTowerRecommender, _row_abs_sums

GENRES = ("western", "comedy", "horror", "drama")
N_USERS, N_ITEMS = 240, 120
# Items that appear only in metadata: cold items of genre index COLD_GENRE.
COLD_ITEMS = ("cold_a", "cold_b")
COLD_GENRE = 2
FAST = {"embedding_dim": 16, "epochs": 6, "batch_size": 128, "num_threads": 1}


def genre_of(item: int) -> int:
    """Item i belongs to genre i % 4."""
    return item % len(GENRES)


def frames(seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Interactions, items (categories, title) and users (segment, age) with signal."""
    rng = np.random.default_rng(seed)
    appeal = 1.0 / (1.0 + rng.permutation(N_ITEMS)) ** 0.5
    rows = []
    segments = rng.integers(0, len(GENRES), size=N_USERS)
    for u in range(N_USERS):
        own = np.array([genre_of(i) == segments[u] for i in range(N_ITEMS)], dtype=float)
        p = 0.85 * own * appeal / (own * appeal).sum() + 0.15 * appeal / appeal.sum()
        n = int(rng.integers(8, 20))
        items = rng.choice(N_ITEMS, size=n, replace=False, p=p)
        times = 1_600_000_000 + np.sort(rng.integers(0, 30 * 86_400, size=n))
        rows += [(f"u{u}", f"i{i}", int(t)) for i, t in zip(items, times, strict=True)]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    item_ids = [f"i{i}" for i in range(N_ITEMS)] + list(COLD_ITEMS)
    genres = [GENRES[genre_of(i)] for i in range(N_ITEMS)] + [GENRES[COLD_GENRE]] * 2
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "categories": [f"{g}|film" for g in genres],
            "title": [f"A {g} story number {k}" for k, g in enumerate(genres)],
        }
    )
    users = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in range(N_USERS)],
            "segment": [f"seg_{GENRES[s]}" for s in segments],
            "age": rng.integers(18, 70, size=N_USERS),
        }
    )
    return interactions, items, users


@pytest.fixture(scope="module")
def data() -> Dataset:
    """The segment/genre dataset with item and user metadata (2 cold items)."""
    interactions, items, users = frames()
    return Dataset.from_frames(interactions, items, users)


@pytest.fixture(scope="module")
def model(data: Dataset) -> TwoTowerRecommender:
    """A small two-tower model fitted on ``data``."""
    return TwoTowerRecommender(**FAST).fit(data)


def segment_rows(data: Dataset, genre: int, n_rows: int = 20) -> tuple[csr_matrix, np.ndarray]:
    """History rows and user indices of users whose segment is ``genre``."""
    segment = data.user_features["segment"].to_numpy()
    users = np.flatnonzero(segment == f"seg_{GENRES[genre]}")[:n_rows]
    return data.matrix()[users], users


def test_same_seed_gives_bit_identical_towers(data: Dataset, model) -> None:
    again = TwoTowerRecommender(**FAST).fit(data)
    np.testing.assert_array_equal(model.item_embeddings_, again.item_embeddings_)
    np.testing.assert_array_equal(model.loss_history_, again.loss_history_)
    for key, value in model.net_.state_dict().items():
        assert torch.equal(value, again.net_.state_dict()[key]), key
    other_seed = TwoTowerRecommender(**{**FAST, "seed": 7}).fit(data)
    assert not np.array_equal(model.item_embeddings_, other_seed.item_embeddings_)


def test_two_threads_give_the_same_towers_as_one(data: Dataset) -> None:
    short = {**FAST, "epochs": 1}
    one = TwoTowerRecommender(**{**short, "num_threads": 1}).fit(data)
    two = TwoTowerRecommender(**{**short, "num_threads": 2}).fit(data)
    np.testing.assert_array_equal(one.item_embeddings_, two.item_embeddings_)


def test_fit_leaves_global_torch_settings_alone(data: Dataset) -> None:
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TwoTowerRecommender(**{**FAST, "epochs": 1, "num_threads": 1}).fit(data)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.rand(3), expected), "fit must not consume the global torch RNG"


def test_training_learns_and_logs_progress(data: Dataset, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="reco.models.two_tower"):
        model = TwoTowerRecommender(**FAST).fit(data)
    epochs = [r.getMessage() for r in caplog.records if "epoch" in r.getMessage()]
    assert len(epochs) == FAST["epochs"]
    assert "loss" in epochs[0] and " s" in epochs[-1]
    assert model.loss_history_[-1] < model.loss_history_[0]
    assert model.epochs_run_ == FAST["epochs"] and not model.stopped_early_


def test_time_limit_stops_training_early(data: Dataset) -> None:
    model = TwoTowerRecommender(**{**FAST, "epochs": 500, "max_seconds": 0.05}).fit(data)
    assert model.stopped_early_
    assert model.epochs_run_ < 500
    assert len(model.loss_history_) < 500
    assert model.training_seconds_ < 30
    items, _ = model.recommend(data.matrix()[:5], 5)
    assert (items >= 0).all(), "a model stopped early still answers"


def test_segment_users_get_their_genre(data: Dataset, model) -> None:
    for genre in range(len(GENRES)):
        rows, users = segment_rows(data, genre)
        items, _ = model.recommend(rows, 10, users=users)
        share = in_genre(data, items, genre).mean()
        assert share > 0.6, f"genre {GENRES[genre]}: only {share:.0%} of picks in genre"


def test_cold_item_gets_a_content_embedding_and_is_retrieved(data: Dataset, model) -> None:
    cold = data.items.lookup(list(COLD_ITEMS))
    assert (data.item_counts()[cold] == 0).all()
    vectors = model.item_embeddings_
    np.testing.assert_allclose(np.linalg.norm(vectors[cold], axis=1), 1.0, rtol=1e-5)
    warm = np.arange(N_ITEMS)
    same = warm[[genre_of(i) == COLD_GENRE for i in warm]]
    other = warm[[genre_of(i) != COLD_GENRE for i in warm]]
    same_sim = (vectors[cold] @ vectors[data.items.lookup([f"i{i}" for i in same])].T).mean()
    other_sim = (vectors[cold] @ vectors[data.items.lookup([f"i{i}" for i in other])].T).mean()
    assert same_sim > other_sim, (same_sim, other_sim)
    # Its nearest warm items are mostly of its own genre.
    warm_index = data.items.lookup([f"i{i}" for i in warm])
    nearest = warm[np.argsort(-(vectors[warm_index] @ vectors[cold[0]]))[:10]]
    assert np.mean([genre_of(i) == COLD_GENRE for i in nearest]) >= 0.7
    # Both cold items share their metadata except the title number: nearly one vector.
    assert float(vectors[cold[0]] @ vectors[cold[1]]) > 0.9
    # Searching the index with a cold item's vector finds it, and items of its genre.
    found, _ = model.index_.search(vectors[cold[:1]], 10)
    assert cold[0] in found[0]
    # A user of the cold item's genre reaches it through the index within the top 30.
    rows, users = segment_rows(data, COLD_GENRE)
    items, _ = model.recommend(rows, 30, users=users)
    assert np.isin(cold, items).any(axis=None)


def test_embed_items_matches_the_catalogue_for_cold_items(data: Dataset, model) -> None:
    cold = data.items.lookup(list(COLD_ITEMS))
    frame = data.item_features.iloc[cold]
    np.testing.assert_allclose(model.embed_items(frame), model.item_embeddings_[cold], atol=1e-6)
    with pytest.raises(TypeError, match="DataFrame"):
        model.embed_items({"categories": ["comedy"]})


def in_genre(data: Dataset, items: np.ndarray, genre: int) -> np.ndarray:
    """True where a recommended item is a warm item of ``genre``."""
    ids = data.items.ids
    return np.array(
        [[ids[i].startswith("i") and genre_of(int(ids[i][1:])) == genre for i in row]
         for row in items]
    )  # fmt: skip


def test_user_attributes_change_and_improve_a_thin_history(data: Dataset, model) -> None:
    # One popular item of another genre as the only history: the segment must steer.
    with_share, without_share = [], []
    for genre in range(len(GENRES)):
        _, users = segment_rows(data, genre)
        misleading = data.items.index_of(f"i{(genre + 1) % len(GENRES)}")
        thin = csr_matrix(
            (np.ones(len(users), np.float32), (np.arange(len(users)), [misleading] * len(users))),
            shape=(len(users), data.n_items),
        )
        with_attributes, _ = model.recommend(thin, 10, users=users)
        without, _ = model.recommend(thin, 10, users=np.full(len(users), -1))
        with_share.append(in_genre(data, with_attributes, genre).mean())
        without_share.append(in_genre(data, without, genre).mean())
    assert np.mean(with_share) > np.mean(without_share) + 0.1, (with_share, without_share)


def test_users_must_be_training_indices(data: Dataset, model) -> None:
    rows = data.matrix()[:3]
    with pytest.raises(ValueError, match="one entry per history row"):
        model.recommend(rows, 5, users=np.array([0, 1]))
    with pytest.raises(ValueError, match="no training user index"):
        model.recommend(rows, 5, users=np.array([0, 1, data.n_users]))
    with pytest.raises(ValueError, match="no training user index"):
        model.recommend(rows, 5, users=np.array([0, -2, 1]), candidates=np.arange(5))
    vectors = model.user_embeddings(rows, np.array([0, -1, 2]))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_index_retrieval_agrees_with_exact_scoring(data: Dataset, model) -> None:
    rows = data.matrix()[:60]
    users = np.arange(60)
    via_index, index_scores = model.recommend(rows, 10, users=users)
    everything = np.arange(data.n_items)
    via_scoring, scoring_scores = model.recommend(rows, 10, users=users, candidates=everything)
    np.testing.assert_array_equal(via_index, via_scoring)
    np.testing.assert_allclose(index_scores, scoring_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_recommends_mostly_the_same(data: Dataset, model, kind: str) -> None:
    approximate = TwoTowerRecommender(**{**FAST, "index": kind}).fit(data)
    assert approximate.index_.kind == kind
    rows = data.matrix()[:60]
    exact, _ = model.recommend(rows, 10)
    found, _ = approximate.recommend(rows, 10)
    assert (found >= 0).all()
    same = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, found, strict=True)])
    assert same >= 0.8


def test_auto_index_switches_on_catalogue_size(data: Dataset) -> None:
    small = TwoTowerRecommender(**{**FAST, "epochs": 1}).fit(data)
    assert small.index_.kind == "exact"
    big = TwoTowerRecommender(**{**FAST, "epochs": 1, "exact_below": 50}).fit(data)
    assert big.index_.kind == "ivf"


def test_save_load_keeps_towers_and_features(data: Dataset, model, tmp_path: Path) -> None:
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / WEIGHTS_FILE).is_file()
    assert (tmp_path / "m" / FEATURES_FILE).is_file()
    loaded = TwoTowerRecommender.load(tmp_path / "m")
    rows, users = segment_rows(data, 1)
    np.testing.assert_array_equal(
        model.user_embeddings(rows, users), loaded.user_embeddings(rows, users)
    )
    frame = data.item_features.iloc[:5]
    np.testing.assert_array_equal(model.embed_items(frame), loaded.embed_items(frame))
    a = model.recommend(rows, 10, users=users)
    b = loaded.recommend(rows, 10, users=users)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert loaded.epochs_run_ == model.epochs_run_


def test_damaged_tower_files_are_artifact_errors(model, tmp_path: Path) -> None:
    path = tmp_path / "m"
    model.save(path)
    weights = (path / WEIGHTS_FILE).read_bytes()
    (path / WEIGHTS_FILE).write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ArtifactError, match="two_tower"):
        TwoTowerRecommender.load(path)
    (path / WEIGHTS_FILE).write_bytes(weights)
    (path / FEATURES_FILE).write_text("{not json")
    with pytest.raises(ArtifactError):
        TwoTowerRecommender.load(path)
    (path / FEATURES_FILE).unlink()
    with pytest.raises(ArtifactError):
        TwoTowerRecommender.load(path)


def test_works_without_metadata_or_timestamps(data: Dataset) -> None:
    interactions, _, _ = frames()
    bare = Dataset.from_frames(interactions.drop(columns=["timestamp"]))
    model = TwoTowerRecommender(**FAST).fit(bare)
    assert model.net_.shape.n_categories == 0 and model.net_.shape.text_buckets == 0
    assert model.user_attributes_.shape == (bare.n_users, 0)
    items, _ = model.recommend(bare.matrix()[:10], 5)
    assert (items >= 0).all()


def test_no_user_with_two_interactions_is_not_applicable() -> None:
    single = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "x"]})
    with pytest.raises(NotApplicableError, match="two or more interactions"):
        TwoTowerRecommender(**FAST).fit(Dataset.from_frames(single))


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("embedding_dim", 0),
        ("epochs", 1.5),
        ("batch_size", 1),
        ("learning_rate", 0),
        ("temperature", -1.0),
        ("max_seconds", 0),
        ("index", "annoy"),
        ("num_threads", 0),
        ("history_len", True),
    ],
)
def test_bad_parameters_are_configuration_errors(data: Dataset, param: str, value) -> None:
    with pytest.raises(ConfigurationError, match=param):
        TwoTowerRecommender(**{**FAST, param: value}).fit(data)


def test_numpy_user_tower_matches_the_torch_tower(data: Dataset, model) -> None:
    # Serving runs the user tower in numpy; it must be the network the torch code trained.
    histories, users = segment_rows(data, 1)
    pooled = np.asarray(histories @ model.item_embeddings_, dtype=np.float32)
    pooled /= np.asarray(histories.sum(axis=1), dtype=np.float32)
    codes = model.user_attributes_[users].astype(np.int64)
    with torch.no_grad():
        expected = model.net_.users(torch.from_numpy(pooled), torch.from_numpy(codes)).numpy()
    got = model._user_tower(pooled, codes)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert model.user_attributes_.shape[1] > 0  # the attribute tables took part


def test_row_abs_sums_match_scipy_with_empty_rows_and_dislikes():
    # Empty rows between filled ones, and negative (dislike) weights, as histories have.
    matrix = csr_matrix(
        np.array(
            [[0, 0, 0, 0], [1.5, 0, -2.0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 3.0, 0, -0.5]],
            dtype=np.float32,
        )
    )
    expected = np.asarray(abs(matrix).sum(axis=1), dtype=np.float32).ravel()
    np.testing.assert_array_equal(_row_abs_sums(matrix), expected)
    assert _row_abs_sums(csr_matrix((3, 4), dtype=np.float32)).tolist() == [0, 0, 0]
