"""MovieLens formats: detection, the shared ml-100k / ml-latest-small, and tiny fakes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reco.data import schema
from reco.data.loaders import ColumnMapping
from reco.data.movielens import detect_movielens, load_movielens, load_path
from reco.errors import ValidationError


def write_fake_ml1m(root: Path) -> Path:
    folder = root / "ml-1m"
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("1::10::5::978300760\n2::20::3::978302109\n")
    (folder / "movies.dat").write_bytes(
        "10::Mis\xe9rables, Les (1995)::Drama|Musical\n20::Heat (1995)::Action|Crime\n".encode(
            "latin-1"
        )
    )
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    return folder


def write_fake_ml10m(root: Path) -> Path:
    folder = root / "ml-10M100K"
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("1::10::4.5::978300760\n2::20::3::978302109\n")
    (folder / "movies.dat").write_text(
        '10::"Great" Expectations (1998)::Drama\n20::Heat (1995)::(no genres listed)\n'
    )
    (folder / "tags.dat").write_text(
        "1::10::classic::978300761\n2::10::Classic::978300762\n2::10::dickens::978300763\n"
    )
    return folder


def write_fake_csv_release(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.5,964982704\n"
    )
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        '1,"American President, The (1995)",Comedy|Drama|Romance\n'
        "2,Babylon 5,(no genres listed)\n"
    )
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,politics,1\n2,1,funny,2\n")
    return folder


# --------------------------------------------------------------------------- shared data


def test_ml_100k_from_shared_data(shared_data_dir):
    path = shared_data_dir / "ml-100k"
    assert detect_movielens(path) == "ml-100k"
    frames = load_movielens(path)
    ratings = frames.interactions
    assert list(ratings.columns) == list(schema.INTERACTION_COLUMNS)
    assert len(ratings) == 100_000
    assert ratings[schema.USER].nunique() == 943
    assert ratings[schema.ITEM].nunique() == 1682
    assert set(ratings[schema.EVENT_TYPE]) == {"rating"}
    assert ratings[schema.VALUE].between(1, 5).all()
    assert ratings[schema.TIMESTAMP].notna().all()

    items = frames.items.set_index(schema.ITEM)
    assert len(items) == 1682
    toy = items.loc["1"]
    assert toy["title"] == "Toy Story (1995)"
    assert toy["categories"] == "Animation|Children's|Comedy"
    assert toy["year"] == 1995 and toy["release_date"] == "1995-01-01"
    assert "Animation" in toy["text"] and "Toy Story" in toy["text"]
    assert (items["categories"] != "").mean() > 0.99

    users = frames.users.set_index(schema.USER)
    assert len(users) == 943
    assert users.loc["1"].to_dict() == {
        "age": 24,
        "gender": "M",
        "occupation": "technician",
        "zip": "85711",
    }


def test_ml_latest_small_from_shared_data(shared_data_dir, caplog):
    path = shared_data_dir / "ml-latest-small"
    assert detect_movielens(path) == "ml-latest-small"
    with caplog.at_level(logging.WARNING, logger="reco.data.movielens"):
        frames = load_movielens(path)
    ratings = frames.interactions
    assert len(ratings) == 100_836
    assert ratings[schema.USER].nunique() == 610
    assert ratings[schema.VALUE].between(0.5, 5).all()
    items = frames.items.set_index(schema.ITEM)
    assert len(items) == 9742
    assert items.loc["1", "categories"] == "Adventure|Animation|Children|Comedy|Fantasy"
    assert items.loc["1", "year"] == 1995
    assert "Tags:" in items.loc["1", "text"] and "pixar" in items.loc["1", "text"]
    assert items.loc["1", "imdb_id"] == "0114709"
    assert frames.users is None
    assert set(ratings[schema.ITEM]) <= set(items.index)


# --------------------------------------------------------------------------- fakes


def test_latin1_titles_of_ml_100k_are_decoded(fake_ml100k):
    frames = load_movielens(fake_ml100k)
    titles = frames.items.set_index(schema.ITEM)["title"]
    assert titles["3"] == "Misérables, Les (1995)"
    assert frames.users.set_index(schema.USER).loc["3", "zip"] == "T8H1N"


def test_ml_1m_format(tmp_path):
    folder = write_fake_ml1m(tmp_path)
    assert detect_movielens(folder) == "ml-1m"
    frames = load_movielens(folder)
    assert frames.interactions[schema.VALUE].tolist() == [5.0, 3.0]
    assert frames.interactions[schema.TIMESTAMP].tolist() == [978300760, 978302109]
    items = frames.items.set_index(schema.ITEM)
    assert items.loc["10", "title"] == "Misérables, Les (1995)"
    assert items.loc["10", "categories"] == "Drama|Musical"
    users = frames.users.set_index(schema.USER)
    assert users.loc["1", "occupation"] == "K-12 student"
    assert users.loc["2", "occupation"] == "self-employed"
    assert users.loc["2", "age"] == 56


def test_ml_10m_format_with_tags(tmp_path):
    folder = write_fake_ml10m(tmp_path)
    assert detect_movielens(folder) == "ml-10m"
    frames = load_movielens(folder)
    assert frames.users is None
    assert frames.interactions[schema.VALUE].tolist() == [4.5, 3.0]
    items = frames.items.set_index(schema.ITEM)
    assert items.loc["10", "title"] == '"Great" Expectations (1998)'
    # "classic" used twice (any case) ranks before "dickens"; duplicates merged
    assert items.loc["10", "text"].endswith("Tags: classic, dickens.")
    assert items.loc["20", "categories"] == ""


@pytest.mark.parametrize(
    ("name", "variant"),
    [
        ("ml-20m", "ml-20m"),
        ("ml-25m", "ml-25m"),
        ("ml-latest", "ml-latest"),
        ("x", "ml-latest-small"),
    ],
)
def test_csv_releases(tmp_path, name, variant):
    folder = write_fake_csv_release(tmp_path, name)
    assert detect_movielens(folder) == variant
    frames = load_movielens(folder)
    items = frames.items.set_index(schema.ITEM)
    assert items.loc["1", "title"] == "American President, The (1995)"
    assert items.loc["1", "year"] == 1995
    assert items.loc["1", "text"].endswith("Tags: funny, politics.")
    assert items.loc["2", "categories"] == ""
    assert items["year"].isna().tolist() == [False, True]


def test_ratings_of_unlisted_films_are_dropped_with_a_warning(tmp_path, caplog):
    folder = write_fake_csv_release(tmp_path, "ml-latest-small")
    with (folder / "ratings.csv").open("a") as handle:
        handle.write("999,999999,5.0,1493846415")
    with caplog.at_level(logging.WARNING, logger="reco.data.movielens"):
        frames = load_movielens(folder)
    assert len(frames.interactions) == 2
    assert "dropped 1 rating(s)" in caplog.text and "line(s) 4" in caplog.text


def test_not_a_movielens_folder(tmp_path):
    assert detect_movielens(tmp_path) is None
    assert detect_movielens(tmp_path / "missing") is None
    with pytest.raises(ValidationError, match="is neither a MovieLens nor a data folder"):
        load_movielens(tmp_path)


def test_missing_file_in_release(tmp_path):
    folder = write_fake_ml1m(tmp_path)
    (folder / "movies.dat").unlink()
    with pytest.raises(ValidationError, match=r"movies.dat is missing"):
        load_movielens(folder)


# --------------------------------------------------------------------------- load_path


def test_load_path_folder_file_and_ratings_file(tmp_path, fake_ml100k):
    assert len(load_path(fake_ml100k).interactions) == 4
    assert load_path(fake_ml100k / "u.data").items is not None
    events = tmp_path / "events.csv"
    events.write_text("user,item\nu,i\n")
    frames = load_path(events, columns=ColumnMapping(user="user", item="item"))
    assert frames.items is None and frames.interactions[schema.USER].tolist() == ["u"]


def test_load_path_rejects_a_non_movielens_folder_and_movielens_parts(tmp_path, fake_ml100k):
    with pytest.raises(ValidationError, match="MovieLens"):
        load_path(tmp_path)
    with pytest.raises(ValidationError, match="give the folder itself"):
        load_path(fake_ml100k / "u.item")


def test_load_path_data_folder_with_metadata(tmp_path):
    (tmp_path / "interactions.csv").write_text("user_id,item_id\nu1,i1\nu2,i2\n")
    (tmp_path / "items.jsonl").write_text('{"item_id": "i1", "categories": ["a", "b"]}\n')
    (tmp_path / "users.csv").write_text("user_id,device\nu1,mobile\n")
    frames = load_path(tmp_path, columns=None, delimiter=None)
    assert len(frames.interactions) == 2
    assert frames.items["categories"].tolist() == ["a|b"]
    assert frames.users["device"].tolist() == ["mobile"]


def test_load_path_data_folder_with_two_interaction_files(tmp_path):
    (tmp_path / "interactions.csv").write_text("user_id,item_id\nu1,i1\n")
    (tmp_path / "interactions.parquet").write_bytes(b"")
    with pytest.raises(ValidationError, match="several interactions files"):
        load_path(tmp_path)


def test_load_path_ignores_options_left_unset(fake_ml100k):
    frames = load_path(fake_ml100k / "u.data", columns=None, delimiter=None)
    assert frames.users is not None
