"""Turn canonical frames into validated, deduplicated column lists ready for bulk writes.

Everything that can be checked without the database is checked here, so a bad batch is
refused with one :class:`~reco.errors.ValidationError` listing every problem before
anything is written. Row numbers in messages are 1-based positions in the frame
(the data line of the file when the frame came straight from one).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reco.data import schema
from reco.errors import ValidationError
from reco.store.tables import MAX_ID_LENGTH

# Problems listed per rule before the rest are summarised; a broken 10M-row file
# should give a readable message, not ten million lines.
_MAX_LISTED = 25

ITEM_COLUMNS = ("title", "text", "categories")
AVAILABLE = "available"

# Rows turned into Python objects at a time: bounds memory at tens of millions of rows.
_CHUNK_ROWS = 500_000

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


@dataclass
class InteractionRows:
    """The distinct events of a batch, kept compact (Arrow strings, numpy numbers) and
    turned into Python tuples one chunk at a time: 10M rows as Python objects would
    take gigabytes.

    ``frame`` is canonical and in batch order, ``keys`` holds each row's dedupe key;
    ``received`` counts the rows of the original frame, duplicates included.
    """

    frame: pd.DataFrame
    keys: pa.ChunkedArray
    received: int

    def __len__(self) -> int:
        return len(self.frame)

    def rows(self, start: int = 0, stop: int | None = None, *constants: Any) -> zip:
        """Tuples (dedupe_key, event_id, user_id, item_id, timestamp, value, event_type,
        *constants) for the rows ``start:stop``; each constant repeats on every row.
        ``timestamp`` and ``value`` are None where unknown."""
        stop = len(self) if stop is None else min(stop, len(self))
        part = self.frame.iloc[start:stop]
        size = len(part)
        stamps = part[schema.TIMESTAMP]
        values = part[schema.VALUE].to_numpy(dtype=np.float64)
        return zip(
            self.keys.slice(start, size).to_pylist(),
            _event_id_list(part[schema.EVENT_ID]),
            part[schema.USER].tolist(),
            part[schema.ITEM].tolist(),
            _with_none(stamps.to_numpy(dtype=np.int64, na_value=0), stamps.isna().to_numpy()),
            _with_none(values, np.isnan(values)),
            part[schema.EVENT_TYPE].tolist(),
            *(repeat(c, size) for c in constants),
            strict=True,
        )

    def chunks(self, size: int, *constants: Any) -> Iterator[zip]:
        """:meth:`rows` in consecutive chunks of ``size`` rows."""
        for start in range(0, len(self), size):
            yield self.rows(start, start + size, *constants)

    def all_rows(self, *constants: Any) -> Iterator[tuple]:
        """Every row as :meth:`rows` gives it, converted a chunk at a time."""
        return chain.from_iterable(self.chunks(_CHUNK_ROWS, *constants))


def _event_id_list(event_ids: pd.Series) -> list[str | None]:
    missing = event_ids.isna().to_numpy()
    if missing.all():
        return [None] * len(event_ids)
    return [
        None if m else str(e) for e, m in zip(event_ids.tolist(), missing.tolist(), strict=True)
    ]


def _with_none(values: np.ndarray, missing: np.ndarray) -> list[Any]:
    out = values.tolist()
    if missing.any():
        for k in np.flatnonzero(missing).tolist():
            out[k] = None
    return out


@dataclass
class MetadataRows:
    """Users or items to upsert: one row per id (the last one in the frame wins).

    ``columns`` maps each first-class column present in the frame (items: ``title``,
    ``text``, ``categories``, ``available``) to its values; ``attributes`` holds one
    JSON object per row with every other non-empty column.
    """

    ids: list[str]
    columns: dict[str, list[Any]]
    attributes: list[str]

    def __len__(self) -> int:
        return len(self.ids)


class _Problems:
    """Collects problems, listing the first few of each rule and counting the rest."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add_rows(self, positions: np.ndarray, describe: Any) -> None:
        for pos in positions[:_MAX_LISTED]:
            self.lines.append(describe(int(pos)))
        if len(positions) > _MAX_LISTED:
            self.lines.append(f"... {len(positions) - _MAX_LISTED} more rows with the same problem")

    def raise_if_any(self, source: str) -> None:
        if self.lines:
            raise ValidationError(self.lines, source=source)


def _check_ids(
    problems: _Problems, frame_name: str, column: str, values: pd.Series, *, optional: bool
) -> None:
    """Ids must be present (unless optional), non-empty, free of NUL characters and at
    most MAX_ID_LENGTH characters long. Vectorised: this runs on every ingested row."""
    missing = values.isna().to_numpy()
    if not optional:
        problems.add_rows(
            np.flatnonzero(missing),
            lambda p: (
                f"{frame_name} row {p + 1}, column {column}: the value is missing; "
                f"every row needs a {column}."
            ),
        )
    if missing.all():
        return
    texts = values if _is_string_dtype(values) else values.astype(str)
    lengths = texts.str.len().to_numpy(dtype=np.float64, na_value=np.nan).copy()
    lengths[missing] = np.nan
    problems.add_rows(
        np.flatnonzero(lengths == 0),
        lambda p: (
            f"{frame_name} row {p + 1}, column {column}: the value is empty; "
            f"give a non-empty {column}" + (" or leave it out." if optional else ".")
        ),
    )
    # PostgreSQL text cannot hold NUL; refuse it everywhere so both stores agree.
    with_nul = texts.str.contains("\x00", regex=False).to_numpy(dtype=bool, na_value=False)
    problems.add_rows(
        np.flatnonzero(with_nul & ~missing),
        lambda p: (
            f"{frame_name} row {p + 1}, column {column}: the value contains a NUL "
            "character (\\x00); remove it."
        ),
    )
    problems.add_rows(
        np.flatnonzero(lengths > MAX_ID_LENGTH),
        lambda p: (
            f"{frame_name} row {p + 1}, column {column}: the value is "
            f"{int(lengths[p])} characters long; ids may be at most {MAX_ID_LENGTH} characters. "
            "Shorten it (e.g. replace it with a hash of itself)."
        ),
    )


def _is_string_dtype(values: pd.Series) -> bool:
    """True for pandas string dtypes, whose values are all str (or missing)."""
    return values.dtype != object and pd.api.types.is_string_dtype(values.dtype)


def _is_canonical(frame: pd.DataFrame) -> bool:
    """True when normalising would change nothing (string dtypes guarantee str values)."""
    return (
        tuple(frame.columns) == schema.INTERACTION_COLUMNS
        and frame[schema.TIMESTAMP].dtype == "Int64"
        and frame[schema.VALUE].dtype == np.float64
        and frame[schema.EVENT_ID].dtype == object
        and all(_is_string_dtype(frame[c]) for c in (schema.USER, schema.ITEM, schema.EVENT_TYPE))
    )


def _arrow_text(values: pd.Series) -> pa.Array:
    return pc.cast(pa.array(values, from_pandas=True), pa.large_string())


# Two lowercase hex digits per byte value, for turning digests into text without a loop.
_HEX = np.array([list(f"{b:02x}".encode()) for b in range(256)], dtype=np.uint8)


def _hex_keys(digests: bytes, count: int) -> pa.Array:
    """``h:`` + the hex form of each 16-byte digest, as Arrow strings."""
    raw = np.frombuffer(digests, dtype=np.uint8).reshape(count, 16)
    text = np.empty((count, 34), dtype=np.uint8)
    text[:, 0], text[:, 1] = ord("h"), ord(":")
    text[:, 2:] = _HEX[raw].reshape(count, 32)
    return pa.array(text.view("S34").ravel(), type=pa.binary(34)).cast(pa.large_string())


def dedupe_keys(canonical: pd.DataFrame) -> tuple[pa.ChunkedArray, np.ndarray]:
    """One key per event of a canonical frame, and a 64-bit fingerprint of each key.

    The key is ``e:<event_id>`` when the event has an id, else ``h:`` + blake2b-128 of
    user, item, timestamp and event type joined by NUL characters (ids cannot contain
    NUL, see :func:`_check_ids`, so the encoding is unambiguous). Two events without
    ids are the same event when those four fields are equal; the value does not count
    (a corrected rating is not a new event). Keys are computed a chunk at a time and
    kept as Arrow strings; fingerprints make finding repeats cheap.
    """
    text = pa.large_string()
    separator = pa.scalar("\x00", text)
    blake2b = hashlib.blake2b
    chunks: list[pa.Array] = []
    prints: list[np.ndarray] = []
    for start in range(0, len(canonical), _CHUNK_ROWS):
        part = canonical.iloc[start : start + _CHUNK_ROWS]
        stamps = pc.cast(pa.array(part[schema.TIMESTAMP], from_pandas=True), text)
        joined = pc.binary_join_element_wise(
            _arrow_text(part[schema.USER]),
            _arrow_text(part[schema.ITEM]),
            pc.fill_null(stamps, pa.scalar("", text)),
            _arrow_text(part[schema.EVENT_TYPE]),
            separator,
        )
        encoded = pc.cast(joined, pa.large_binary()).to_numpy(zero_copy_only=False)
        digests = b"".join([blake2b(b, digest_size=16).digest() for b in encoded])
        keys = _hex_keys(digests, len(part))
        fingerprints = np.frombuffer(digests, dtype=np.uint64)[::2].copy()
        has_id = part[schema.EVENT_ID].notna().to_numpy()
        if has_id.any():
            with_id = np.flatnonzero(has_id)
            id_keys = ["e:" + str(e) for e in part[schema.EVENT_ID].iloc[with_id].tolist()]
            mixed = keys.to_numpy(zero_copy_only=False)
            mixed[with_id] = id_keys
            keys = pa.array(mixed, type=text)
            fingerprints[with_id] = [
                int.from_bytes(blake2b(k.encode(), digest_size=8).digest(), "little")
                for k in id_keys
            ]
        chunks.append(keys)
        prints.append(fingerprints)
    fingerprints = np.concatenate(prints) if prints else np.zeros(0, dtype=np.uint64)
    return pa.chunked_array(chunks, type=text), fingerprints


def _repeats(keys: pa.ChunkedArray, fingerprints: np.ndarray) -> np.ndarray:
    """True for each key that already came earlier in the batch.

    Only rows whose 64-bit fingerprint is shared are compared by their full key, so
    this is exact and costs one pass over integers instead of over strings.
    """
    shared = pd.Series(fingerprints).duplicated(keep=False).to_numpy()
    repeated = np.zeros(len(fingerprints), dtype=bool)
    if shared.any():
        rows = np.flatnonzero(shared)
        candidates = pd.Series(keys.take(pa.array(rows)).to_pylist(), dtype=object)
        repeated[rows] = candidates.duplicated(keep="first").to_numpy()
    return repeated


def _numeric_columns(frame: pd.DataFrame, problems: _Problems) -> pd.DataFrame:
    """Timestamps as Int64 epoch seconds and values as float64, listing cells that are
    neither (datetimes become epoch seconds)."""
    replaced: dict[str, Any] = {}
    if schema.TIMESTAMP in frame.columns:
        raw = frame[schema.TIMESTAMP]
        if pd.api.types.is_datetime64_any_dtype(raw.dtype):
            epoch = pd.Timestamp(0, tz=raw.dt.tz)
            seconds = (raw - epoch) // pd.Timedelta(seconds=1)
            replaced[schema.TIMESTAMP] = pd.array(seconds, dtype="Int64")
        elif not pd.api.types.is_integer_dtype(raw.dtype):
            numbers = pd.to_numeric(raw, errors="coerce").astype("float64")
            numbers = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
            finite = np.isfinite(numbers)
            fraction = np.mod(np.where(finite, numbers, 0.0), 1.0) != 0
            bad = raw.notna().to_numpy() & (~finite | fraction)
            problems.add_rows(
                np.flatnonzero(bad),
                lambda p: (
                    f"interactions row {p + 1}, column timestamp: {raw.iloc[p]!r} is "
                    "not a whole number of seconds since 1970; give epoch seconds or leave "
                    "it empty."
                ),
            )
            whole = np.where(finite & ~bad, numbers, 0).astype(np.int64)
            replaced[schema.TIMESTAMP] = pd.arrays.IntegerArray(whole, ~finite | bad)
    if schema.VALUE in frame.columns and not pd.api.types.is_float_dtype(frame[schema.VALUE]):
        raw = frame[schema.VALUE]
        numbers = pd.to_numeric(raw, errors="coerce").astype("float64")
        problems.add_rows(
            np.flatnonzero(raw.notna().to_numpy() & numbers.isna().to_numpy()),
            lambda p: (
                f"interactions row {p + 1}, column value: {raw.iloc[p]!r} is not a "
                "number; give a number or leave it empty."
            ),
        )
        replaced[schema.VALUE] = numbers
    return frame.assign(**replaced) if replaced else frame


def prepare_interactions(frame: pd.DataFrame, *, source: str) -> InteractionRows:
    """Validate an interaction frame and return its distinct events as column lists.

    Raises ValidationError (nothing written) listing every missing column, missing,
    empty or over-long id (more than MAX_ID_LENGTH characters), id containing NUL,
    timestamp that is not whole epoch seconds and value that is not a number.
    Datetime timestamps become epoch seconds; a missing event type becomes the default.
    """
    problems = _Problems()
    absent = [c for c in schema.REQUIRED_INTERACTION_COLUMNS if c not in frame.columns]
    if absent:
        problems.lines.append(
            f"interactions: column(s) {', '.join(absent)} missing; the columns are "
            f"{', '.join(map(str, frame.columns))}. Rename or add them."
        )
        problems.raise_if_any(source)
    for column in (schema.USER, schema.ITEM, schema.EVENT_TYPE, schema.EVENT_ID):
        if column in frame.columns:
            optional = column in (schema.EVENT_ID, schema.EVENT_TYPE)
            _check_ids(problems, "interactions", column, frame[column], optional=optional)
    problems.raise_if_any(source)

    if schema.EVENT_TYPE in frame.columns and frame[schema.EVENT_TYPE].isna().any():
        frame = frame.assign(
            **{schema.EVENT_TYPE: frame[schema.EVENT_TYPE].fillna(schema.DEFAULT_EVENT_TYPE)}
        )
    if not _is_canonical(frame):
        frame = _numeric_columns(frame, problems)
        problems.raise_if_any(source)
    canonical = frame if _is_canonical(frame) else schema.normalize_interactions(frame)
    canonical = canonical.reset_index(drop=True)
    keys, fingerprints = dedupe_keys(canonical)
    repeated = _repeats(keys, fingerprints)
    if not repeated.any():
        return InteractionRows(canonical, keys, len(canonical))
    first = np.flatnonzero(~repeated)
    return InteractionRows(
        canonical.take(first).reset_index(drop=True),
        keys.take(pa.array(first)),
        len(canonical),
    )


# -- small batches in plain Python ----------------------------------------------------
#
# A live event or a small batch would spend milliseconds in pandas and Arrow above, for
# a few microseconds of work. Batches up to FEW_ROWS rows are instead checked, keyed
# and deduplicated in plain Python, with exactly the rules above: the frame path takes
# only the dtypes whose text and numbers it converts exactly as pandas does, and hands
# everything else (and every frame with a problem, so that the messages are the same
# ones) to prepare_interactions.

FEW_ROWS = 1_000
# Whole float seconds from this magnitude up do not fit int64; the full path decides.
_INT64_LIMIT = 2.0**63
# Integers past 2**53 lose digits on their way through float64 in the full path.
_EXACT_FLOAT_INT = 2**53


@dataclass
class EventRows:
    """The distinct events of a small batch as plain tuples, in batch order:
    (dedupe_key, event_id, user_id, item_id, timestamp, value, event_type), with None
    for an unknown timestamp, value or event id. ``received`` counts the rows of the
    batch, repeats included."""

    rows: list[tuple]
    received: int

    def __len__(self) -> int:
        return len(self.rows)


def content_key(user: str, item: str, timestamp: int | None, event_type: str) -> str:
    """The dedupe key of an event without an id, as :func:`dedupe_keys` makes it."""
    stamp = "" if timestamp is None else str(timestamp)
    joined = f"{user}\x00{item}\x00{stamp}\x00{event_type}".encode()
    return "h:" + hashlib.blake2b(joined, digest_size=16).hexdigest()


def event_rows(
    users: list[str],
    items: list[str],
    timestamps: list[int | None],
    values: list[float | None],
    event_types: list[str],
    event_ids: list[str | None],
) -> EventRows:
    """The distinct events of already validated columns (the first of repeats wins),
    keyed as :func:`dedupe_keys` keys them. A NaN value is stored as unknown (None)."""
    rows: list[tuple] = []
    seen: set[str] = set()
    for user, item, stamp, value, event_type, event_id in zip(
        users, items, timestamps, values, event_types, event_ids, strict=True
    ):
        key = content_key(user, item, stamp, event_type) if event_id is None else "e:" + event_id
        if key in seen:
            continue
        seen.add(key)
        if value is not None and value != value:  # NaN
            value = None
        rows.append((key, event_id, user, item, stamp, value, event_type))
    return EventRows(rows, len(users))


def _absent(value: Any) -> bool:
    """A missing cell as pandas sees it in the dtypes the small path takes."""
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _plain_ids(values: pd.Series, *, optional: bool) -> list[str | None] | None:
    """The ids as text (None where missing), or None when one breaks a rule of
    :func:`_check_ids` or the dtype is one whose text form is left to pandas."""
    dtype = values.dtype
    if not (
        _is_string_dtype(values)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_signed_integer_dtype(dtype)
    ):
        return None
    out: list[str | None] = []
    for value in values.tolist():
        if _absent(value):
            if not optional:
                return None
            out.append(None)
            continue
        if isinstance(value, str):
            text = str(value)
        elif _is_int(value):
            text = str(int(value))
        else:
            return None
        if not text or len(text) > MAX_ID_LENGTH or "\x00" in text:
            return None
        out.append(text)
    return out


def _plain_timestamps(values: pd.Series) -> list[int | None] | None:
    """Epoch seconds (None where missing) as :func:`_numeric_columns` makes them, or
    None when one is not whole seconds or the dtype is left to pandas (datetimes,
    text)."""
    dtype = values.dtype
    raw = values.tolist()
    if pd.api.types.is_signed_integer_dtype(dtype):
        return [None if _absent(v) else int(v) for v in raw]
    if not (pd.api.types.is_float_dtype(dtype) or pd.api.types.is_object_dtype(dtype)):
        return None
    out: list[int | None] = []
    for value in raw:
        if _absent(value):
            out.append(None)
            continue
        if _is_int(value) and abs(int(value)) < _EXACT_FLOAT_INT:
            out.append(int(value))
            continue
        if not isinstance(value, float | np.floating):
            return None
        number = float(value)
        if not math.isfinite(number) or number % 1.0 != 0 or abs(number) >= _INT64_LIMIT:
            return None
        out.append(int(number))
    return out


def _plain_values(values: pd.Series) -> list[float | None] | None:
    """Values as floats (None where missing), or None for anything that is not a
    number (text, booleans) or that pandas would convert differently."""
    dtype = values.dtype
    if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_object_dtype(dtype)) or (
        pd.api.types.is_bool_dtype(dtype)
    ):
        return None
    out: list[float | None] = []
    for value in values.tolist():
        if _absent(value):
            out.append(None)
        elif isinstance(value, float | np.floating) or (
            _is_int(value) and abs(int(value)) < _EXACT_FLOAT_INT
        ):
            out.append(float(value))
        else:
            return None
    return out


def few_interaction_rows(frame: pd.DataFrame) -> EventRows | None:
    """The distinct events of a small interaction frame (at most FEW_ROWS rows), checked
    in plain Python with the rules of :func:`prepare_interactions`, giving the same
    rows it would give.

    None when the frame is larger, has a problem, or holds a dtype this path leaves to
    pandas: then :func:`prepare_interactions` handles it (and names every problem).
    """
    if (
        len(frame) > FEW_ROWS
        or not frame.columns.is_unique
        or any(c not in frame.columns for c in schema.REQUIRED_INTERACTION_COLUMNS)
    ):
        return None
    n = len(frame)
    users = _plain_ids(frame[schema.USER], optional=False)
    items = _plain_ids(frame[schema.ITEM], optional=False)
    types: list[str | None] | None = [None] * n
    event_ids: list[str | None] | None = [None] * n
    if schema.EVENT_TYPE in frame.columns:
        types = _plain_ids(frame[schema.EVENT_TYPE], optional=True)
    if schema.EVENT_ID in frame.columns:
        event_ids = _plain_ids(frame[schema.EVENT_ID], optional=True)
    stamps: list[int | None] | None = [None] * n
    values: list[float | None] | None = [None] * n
    if schema.TIMESTAMP in frame.columns:
        stamps = _plain_timestamps(frame[schema.TIMESTAMP])
    if schema.VALUE in frame.columns:
        values = _plain_values(frame[schema.VALUE])
    if users is None or items is None or types is None or event_ids is None:
        return None
    if stamps is None or values is None:
        return None
    types = [schema.DEFAULT_EVENT_TYPE if t is None else t for t in types]
    try:
        return event_rows(users, items, stamps, values, types, event_ids)  # type: ignore[arg-type]
    except UnicodeEncodeError:  # a lone surrogate: left to the full path, as before
        return None


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _jsonable(value: Any) -> Any:
    """Numpy scalars, timestamps and the like as plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def _parse_available(value: Any) -> bool | None:
    if _is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and int(value) in (0, 1):
        return bool(value)
    if isinstance(value, float) and value in (0.0, 1.0):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(value)


def _text_value(value: Any) -> str | None:
    if _is_missing(value):
        return None
    if isinstance(value, list | tuple | np.ndarray):
        return schema.CATEGORY_SEPARATOR.join(str(v) for v in value)
    return str(value)


def prepare_metadata(frame: pd.DataFrame, *, kind: str, source: str) -> MetadataRows:
    """Validate a users or items frame (``kind`` is "users" or "items") for upsert.

    The id column must be present and valid. For items, ``title``, ``text``,
    ``categories`` (``|``-separated; lists are joined) and ``available`` (booleans or
    true/false/yes/no/1/0) are columns of their own; every other column goes into the
    row's JSON attributes, leaving out empty cells.
    """
    id_column = schema.USER if kind == "users" else schema.ITEM
    own = (*ITEM_COLUMNS, AVAILABLE) if kind == "items" else ()
    problems = _Problems()
    if id_column not in frame.columns:
        problems.lines.append(
            f"{kind}: column {id_column} missing; the columns are "
            f"{', '.join(map(str, frame.columns))}. Rename or add it."
        )
        problems.raise_if_any(source)
    _check_ids(problems, kind, id_column, frame[id_column], optional=False)
    problems.raise_if_any(source)

    ids = frame[id_column].astype(str)
    last = ~ids.duplicated(keep="last").to_numpy()
    frame = frame.loc[last]
    ids_list = ids[last].tolist()
    positions = np.flatnonzero(last)

    columns: dict[str, list[Any]] = {}
    for name in own:
        if name not in frame.columns:
            continue
        raw = frame[name].tolist()
        if name != AVAILABLE:
            columns[name] = [_text_value(v) for v in raw]
            continue
        parsed: list[bool | None] = []
        bad: dict[int, Any] = {}
        for pos, v in zip(positions.tolist(), raw, strict=True):
            try:
                parsed.append(_parse_available(v))
            except ValueError:
                parsed.append(None)
                bad[pos] = v
        problems.add_rows(
            np.asarray(sorted(bad), dtype=np.int64),
            lambda p, bad=bad: (
                f"{kind} row {p + 1}, column available: {bad[p]!r} is not a boolean; "
                "use true/false, yes/no or 1/0."
            ),
        )
        columns[name] = parsed

    extra = [c for c in frame.columns if c != id_column and c not in own]
    records = frame[extra].to_dict("records") if extra else [{} for _ in ids_list]
    attributes: list[str] = []
    for pos, record in zip(positions.tolist(), records, strict=True):
        kept = {str(k): v for k, v in record.items() if not _is_missing(v)}
        try:
            attributes.append(
                json.dumps(kept, ensure_ascii=False, allow_nan=False, default=_jsonable)
            )
        except ValueError:
            attributes.append("{}")
            problems.lines.append(
                f"{kind} row {pos + 1}: an attribute is infinite; use a finite number or "
                "leave the cell empty."
            )
    problems.raise_if_any(source)
    return MetadataRows(ids_list, columns, attributes)
