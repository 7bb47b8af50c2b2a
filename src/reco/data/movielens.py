"""MovieLens folders (ml-100k, ml-1m, ml-10m, ml-20m/25m/latest) as canonical frames.

Ratings become interactions (``value`` = rating, ``event_type`` = ``"rating"``);
films become items with title, ``|``-joined genres as categories, year and a ``text``
(title, genres and, where the dataset has them, tags) for content models; users get
their demographics where the format has them (ml-100k, ml-1m).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from reco.data import schema
from reco.data.loaders import SUPPORTED_SUFFIXES, load_interactions, load_items, load_users
from reco.data.schema import Frames
from reco.errors import ValidationError

logger = logging.getLogger(__name__)

RATING_EVENT = "rating"
CSV_VARIANTS = ("ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "ml-latest")
# ml-latest-small's ratings.csv is ~2.4 MB; every other csv release is hundreds of MB.
_SMALL_RATINGS_BYTES = 50 * 1024 * 1024

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
"""Genre flag columns of ml-100k's u.item, in file order (u.genre lists the same)."""

ML1M_OCCUPATIONS = {
    0: "other", 1: "academic/educator", 2: "artist", 3: "clerical/admin",
    4: "college/grad student", 5: "customer service", 6: "doctor/health care",
    7: "executive/managerial", 8: "farmer", 9: "homemaker", 10: "K-12 student",
    11: "lawyer", 12: "programmer", 13: "retired", 14: "sales/marketing", 15: "scientist",
    16: "self-employed", 17: "technician/engineer", 18: "tradesman/craftsman",
    19: "unemployed", 20: "writer",
}  # fmt: skip
"""ml-1m users.dat occupation codes (from the dataset's README)."""

_NO_GENRES = "(no genres listed)"
_RATING_COLUMNS = ["user", "item", "rating", "timestamp"]
# Parsing numbers while reading is several times faster than converting strings later.
_RATING_DTYPES = {"user": str, "item": str, "rating": np.float64, "timestamp": np.int64}
_YEAR = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
_MAX_TAGS = 20  # per film in `text`: enough for content models, bounded for ml-25m


def detect_movielens(path: Path) -> str | None:
    """Name the MovieLens release in folder ``path``, or ``None`` when it is not one.

    Returns ``"ml-100k"``, ``"ml-1m"``, ``"ml-10m"``, or for the csv releases
    ``"ml-20m"``, ``"ml-25m"``, ``"ml-32m"``, ``"ml-latest-small"`` or ``"ml-latest"``
    (from the folder name, else from the size of ratings.csv).
    """
    path = Path(path)
    if not path.is_dir():
        return None
    if (path / "u.data").is_file() and (path / "u.item").is_file():
        return "ml-100k"
    if (path / "ratings.dat").is_file():
        if (path / "users.dat").is_file():
            return "ml-1m"
        if (path / "movies.dat").is_file():
            return "ml-10m"
        return None
    if (path / "ratings.csv").is_file() and (path / "movies.csv").is_file():
        name = path.name.lower()
        for variant in CSV_VARIANTS:  # "ml-latest-small" is tested before "ml-latest"
            if name.startswith(variant):
                return variant
        small = (path / "ratings.csv").stat().st_size < _SMALL_RATINGS_BYTES
        return "ml-latest-small" if small else "ml-latest"
    return None


def load_movielens(path: Path) -> Frames:
    """Load a MovieLens folder as :class:`~reco.data.schema.Frames`.

    Raises :class:`reco.errors.ValidationError` when ``path`` is not a MovieLens
    folder or a file it needs cannot be read.
    """
    path = Path(path)
    variant = detect_movielens(path)
    if variant is None:
        raise _not_movielens(path)
    if variant == "ml-100k":
        return _load_100k(path)
    if variant in ("ml-1m", "ml-10m"):
        return _load_dat(path)
    return _load_csv_release(path)


def load_path(path: Path, **loader_kwargs: object) -> Frames:
    """Load whatever the CLI was given: a MovieLens folder, a data folder or one file.

    * a MovieLens release folder: :func:`load_movielens`;
    * another folder: its ``interactions.<ext>`` file, plus ``items.<ext>`` and
      ``users.<ext>`` when present (any supported extension);
    * a file: :func:`reco.data.loaders.load_interactions` with ``loader_kwargs``
      (``columns``, ``delimiter``; ``None`` values mean "not given") — except the
      ratings file of a MovieLens folder given without such options, which loads the
      whole folder so items and users come along.
    """
    path = Path(path)
    options = {key: value for key, value in loader_kwargs.items() if value is not None}
    if path.is_dir():
        if detect_movielens(path) is not None:
            return load_movielens(path)
        return _load_data_folder(path, options)
    ratings_files = ("u.data", "ratings.dat", "ratings.csv")
    if path.name in ratings_files and not options and detect_movielens(path.parent):
        return load_movielens(path.parent)
    unsupported = path.is_file() and path.suffix.lower() not in SUPPORTED_SUFFIXES
    if unsupported and detect_movielens(path.parent):
        raise ValidationError(
            [
                f"{path.name} is part of the MovieLens folder {path.parent}: give the "
                "folder itself, not one of its files."
            ],
            source=str(path),
        )
    return Frames(interactions=load_interactions(path, **options))  # type: ignore[arg-type]


def _data_file(folder: Path, stem: str) -> Path | None:
    """The one ``<stem>.<supported extension>`` file of a folder, if any."""
    found = sorted(p for p in folder.glob(f"{stem}.*") if p.suffix.lower() in SUPPORTED_SUFFIXES)
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ValidationError(
            [f"{folder} holds several {stem} files ({names}); keep one."], source=str(folder)
        )
    return found[0] if found else None


def _load_data_folder(folder: Path, options: dict[str, object]) -> Frames:
    interactions = _data_file(folder, "interactions")
    if interactions is None:
        raise _not_movielens(folder)
    items, users = _data_file(folder, "items"), _data_file(folder, "users")
    delimiter = options.get("delimiter")
    return Frames(
        interactions=load_interactions(interactions, **options),  # type: ignore[arg-type]
        items=load_items(items, delimiter=delimiter) if items else None,  # type: ignore[arg-type]
        users=load_users(users, delimiter=delimiter) if users else None,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- formats


def _load_100k(path: Path) -> Frames:
    ratings = _read_table(path / "u.data", "\t", _RATING_COLUMNS, dtypes=_RATING_DTYPES)
    genres = _100k_genres(path)
    item_columns = ["item", "title", "release", "video_release", "imdb_url", *genres]
    raw_items = _read_table(path / "u.item", "|", item_columns)
    flags = raw_items[list(genres)].to_numpy() == "1"
    names = np.asarray(genres, dtype=object)
    categories = [schema.CATEGORY_SEPARATOR.join(names[row]) for row in flags]
    release = pd.to_datetime(raw_items["release"], format="%d-%b-%Y", errors="coerce")
    year = _years(raw_items["title"])
    year = year.fillna(release.dt.year.astype("Int64"))
    items = _items_frame(
        raw_items["item"],
        raw_items["title"],
        pd.Series(categories, dtype=object),
        year,
        extra={
            "release_date": release.dt.strftime("%Y-%m-%d")
            .astype(object)
            .where(release.notna(), None),
            "imdb_url": raw_items["imdb_url"].where(raw_items["imdb_url"] != "", None),
        },
    )
    users = None
    if (path / "u.user").is_file():
        raw_users = _read_table(
            path / "u.user", "|", ["user", "age", "gender", "occupation", "zip"]
        )
        users = pd.DataFrame(
            {
                schema.USER: raw_users["user"].to_numpy(dtype=object),
                "age": pd.to_numeric(raw_users["age"]).astype("Int64"),
                "gender": raw_users["gender"].to_numpy(dtype=object),
                "occupation": raw_users["occupation"].to_numpy(dtype=object),
                "zip": raw_users["zip"].to_numpy(dtype=object),
            }
        )
    return Frames(_interactions(ratings, path / "u.data", items, users, header=False), items, users)


def _100k_genres(path: Path) -> tuple[str, ...]:
    genre_file = path / "u.genre"
    if not genre_file.is_file():
        return ML100K_GENRES
    rows = [
        line.split("|") for line in genre_file.read_text("latin-1").splitlines() if line.strip()
    ]
    ordered = sorted(rows, key=lambda row: int(row[1]))
    return tuple(row[0] for row in ordered) if len(ordered) == 19 else ML100K_GENRES


def _load_dat(path: Path) -> Frames:
    """ml-1m and ml-10m: ``::``-separated .dat files."""
    ratings = _read_table(path / "ratings.dat", "::", _RATING_COLUMNS, dtypes=_RATING_DTYPES)
    raw_items = _read_table(path / "movies.dat", "::", ["item", "title", "genres"])
    tags = None
    if (path / "tags.dat").is_file():
        tags = _read_table(path / "tags.dat", "::", ["user", "item", "tag", "timestamp"])
    items = _items_frame(
        raw_items["item"],
        raw_items["title"],
        _genres(raw_items["genres"]),
        _years(raw_items["title"]),
        tags=tags,
    )
    users = None
    if (path / "users.dat").is_file():
        raw_users = _read_table(
            path / "users.dat", "::", ["user", "gender", "age", "occupation", "zip"]
        )
        codes = pd.to_numeric(raw_users["occupation"], errors="coerce")
        users = pd.DataFrame(
            {
                schema.USER: raw_users["user"].to_numpy(dtype=object),
                # ml-1m ages are band codes: the lower bound of the band (1 = under 18).
                "age": pd.to_numeric(raw_users["age"]).astype("Int64"),
                "gender": raw_users["gender"].to_numpy(dtype=object),
                "occupation": codes.map(ML1M_OCCUPATIONS).astype(object).to_numpy(),
                "zip": raw_users["zip"].to_numpy(dtype=object),
            }
        )
    ratings_file = path / "ratings.dat"
    return Frames(_interactions(ratings, ratings_file, items, users, header=False), items, users)


def _load_csv_release(path: Path) -> Frames:
    """ml-20m, ml-25m, ml-32m, ml-latest(-small): csv files with a header."""
    ratings = _read_csv(
        path / "ratings.csv",
        {"userId": "user", "movieId": "item", "rating": "rating", "timestamp": "timestamp"},
        {"userId": str, "movieId": str, "rating": np.float64, "timestamp": np.int64},
    )
    raw_items = _read_csv(
        path / "movies.csv", {"movieId": "item", "title": "title", "genres": "genres"}
    )
    tags = None
    if (path / "tags.csv").is_file():
        tags = _read_csv(path / "tags.csv", {"movieId": "item", "tag": "tag"})
    extra = {}
    if (path / "links.csv").is_file():
        links = _read_csv(
            path / "links.csv", {"movieId": "item", "imdbId": "imdb_id", "tmdbId": "tmdb_id"}
        )
        joined = raw_items[["item"]].merge(links, on="item", how="left")
        for column in ("imdb_id", "tmdb_id"):
            values = joined[column].astype(object)
            extra[column] = values.where(values.notna() & (values != ""), None).to_numpy()
    items = _items_frame(
        raw_items["item"],
        raw_items["title"],
        _genres(raw_items["genres"]),
        _years(raw_items["title"]),
        tags=tags,
        extra=extra,
    )
    return Frames(
        _interactions(ratings, path / "ratings.csv", items, None, header=True), items, None
    )


# --------------------------------------------------------------------------- helpers


def _not_movielens(path: Path) -> ValidationError:
    what = "does not exist" if not path.exists() else "is neither a MovieLens nor a data folder"
    return ValidationError(
        [
            f"{path} {what}: expected u.data + u.item (ml-100k), ratings.dat + users.dat or "
            "movies.dat (ml-1m, ml-10m), or ratings.csv + movies.csv (ml-20m, ml-25m, "
            "ml-latest) — or, for your own data, interactions.csv (or .parquet, .jsonl) "
            "with optional items.csv and users.csv. Unpack the dataset's zip there, or "
            "`reco data fetch` it."
        ],
        source=str(path),
    )


def _read_table(
    path: Path,
    sep: str,
    names: list[str],
    encoding: str | None = None,
    *,
    dtypes: dict[str, type] | None = None,
) -> pd.DataFrame:
    """A header-less MovieLens file as strings (``::`` turned into a one-byte separator).

    ``encoding=None`` tries UTF-8 and falls back to latin-1: ml-1m's files are
    latin-1 while later releases are UTF-8.
    """
    if not path.is_file():
        raise ValidationError(
            [f"{path.name} is missing from {path.parent}; unpack the dataset's zip again."],
            source=str(path),
        )
    data = path.read_bytes()
    if len(sep) > 1:
        # The C parser takes single-byte separators only; \x1f never occurs in the data.
        data = data.replace(sep.encode(), b"\x1f")
        sep = "\x1f"
    if encoding is None:
        try:
            data.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "latin-1"
    try:
        return pd.read_csv(
            io.BytesIO(data),
            sep=sep,
            header=None,
            names=names,
            dtype=dtypes or str,
            keep_default_na=False,
            na_filter=False,
            quoting=csv.QUOTE_NONE,  # titles contain unbalanced double quotes
            encoding=encoding,
            index_col=False,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise ValidationError(
            [f"{path.name}: not in the MovieLens format ({exc}); unpack the dataset's zip again."],
            source=str(path),
        ) from exc


def _read_csv(
    path: Path, columns: dict[str, str], dtypes: dict[str, type] | None = None
) -> pd.DataFrame:
    """A csv-release file as strings, with its columns renamed (missing ones reported)."""
    try:
        frame = pd.read_csv(
            path,
            dtype=dtypes or str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8",
        )
    except (pd.errors.ParserError, ValueError, FileNotFoundError) as exc:
        raise ValidationError(
            [f"{path.name}: cannot be read ({exc}); unpack the dataset's zip again."],
            source=str(path),
        ) from exc
    absent = [column for column in columns if column not in frame.columns]
    if absent:
        raise ValidationError(
            [
                f"{path.name} line 1 (header): columns {absent} missing (found "
                f"{list(frame.columns)}); this is not a MovieLens csv release file."
            ],
            source=str(path),
        )
    return frame[list(columns)].rename(columns=columns)


def _interactions(
    ratings: pd.DataFrame,
    source: Path,
    items: pd.DataFrame,
    users: pd.DataFrame | None,
    *,
    header: bool,
) -> pd.DataFrame:
    """Ratings as interactions, without ratings of films/users the release does not list.

    Every MovieLens release lists all rated films (and, where it has a users file, all
    raters); a rating outside those lists is damage, dropped with a warning so one
    stray row does not stop a load.
    """
    known = np.array(ratings["item"].isin(items[schema.ITEM]), dtype=bool)
    if users is not None:
        known &= ratings["user"].isin(users[schema.USER]).to_numpy()
    if not known.all():
        bad = np.flatnonzero(~known)
        lines = ", ".join(str(int(p) + (2 if header else 1)) for p in bad[:5])
        logger.warning(
            "%s: dropped %d rating(s) of films or users missing from the release's own "
            "lists (line(s) %s%s); the file seems damaged: unpack the dataset again.",
            source,
            len(bad),
            lines,
            ", ..." if len(bad) > 5 else "",
        )
        ratings = ratings[known]
    return schema.normalize_interactions(
        pd.DataFrame(
            {
                schema.USER: ratings["user"].to_numpy(),
                schema.ITEM: ratings["item"].to_numpy(),
                schema.TIMESTAMP: pd.to_numeric(ratings["timestamp"]).to_numpy(dtype=np.int64),
                schema.VALUE: pd.to_numeric(ratings["rating"]).to_numpy(dtype=np.float64),
                schema.EVENT_TYPE: RATING_EVENT,
            }
        )
    )


def _genres(raw: pd.Series) -> pd.Series:
    """MovieLens genre strings, with the placeholder for "none" turned into ``""``."""
    return raw.str.strip().where(raw.str.strip() != _NO_GENRES, "").astype(object)


def _years(titles: pd.Series) -> pd.Series:
    """Release year from a title ending in ``(1995)`` (or a range), else missing."""
    found = titles.str.extract(_YEAR, expand=False)
    return pd.to_numeric(found, errors="coerce").astype("Int64")


def _tag_text(tags: pd.DataFrame) -> pd.Series:
    """The most used distinct tags of each film, comma-joined, indexed by item id."""
    frame = pd.DataFrame({"item": tags["item"], "tag": tags["tag"].str.strip()})
    frame = frame[frame["tag"] != ""]
    frame["key"] = frame["tag"].str.lower()
    counted = (
        frame.groupby(["item", "key"], sort=False)
        .agg(tag=("tag", "first"), uses=("tag", "size"))
        .reset_index()
        .sort_values(["item", "uses", "key"], ascending=[True, False, True])
    )
    top = counted.groupby("item", sort=False).head(_MAX_TAGS)
    return top.groupby("item", sort=False)["tag"].agg(", ".join)


def _items_frame(
    ids: pd.Series,
    titles: pd.Series,
    categories: pd.Series,
    years: pd.Series,
    *,
    tags: pd.DataFrame | None = None,
    extra: dict[str, object] | None = None,
) -> pd.DataFrame:
    ids = ids.reset_index(drop=True)
    titles = titles.str.strip().reset_index(drop=True)
    categories = categories.reset_index(drop=True).astype(str)
    genre_text = categories.str.replace(schema.CATEGORY_SEPARATOR, ", ", regex=False)
    text = titles + np.where(genre_text != "", ". Genres: " + genre_text, "") + "."
    if tags is not None and len(tags):
        tag_text = ids.map(_tag_text(tags)).fillna("")
        text = text + np.where(tag_text != "", " Tags: " + tag_text + ".", "")
    frame = pd.DataFrame(
        {
            schema.ITEM: ids.to_numpy(dtype=object),
            "title": titles.to_numpy(dtype=object),
            "text": pd.Series(text).to_numpy(dtype=object),
            "categories": categories.to_numpy(dtype=object),
            "year": years.reset_index(drop=True),
        }
    )
    for name, values in (extra or {}).items():
        frame[name] = np.asarray(values, dtype=object)
    return frame
