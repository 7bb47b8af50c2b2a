"""Load interactions, items and users from CSV/TSV, Parquet and JSON Lines files.

Every loader returns the canonical frames of :mod:`reco.data.schema`. Ids are kept as
strings exactly as written (``"007"`` stays ``"007"``). Bad input never half-loads:
all problems of a file are collected and raised together as one
:class:`reco.errors.ValidationError`, each naming the file, the line (as a person
sees it in an editor, the header being line 1) or row, the column and the fix.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from reco.data import schema
from reco.errors import ValidationError

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + PARQUET_SUFFIXES + JSONL_SUFFIXES

CANDIDATE_DELIMITERS = (",", "\t", ";", "|")
MAX_EXAMPLES = 5
"""How many bad rows of one kind are listed before the rest is summed up."""

_DELIMITER_NAMES = {
    ",": "comma ','",
    "\t": "tab '\\t'",
    ";": "semicolon ';'",
    "|": "pipe '|'",
    " ": "space ' '",
}
# Written by people and exporters for "no value" in optional numeric columns.
_MISSING_TOKENS = ("", "na", "n/a", "nan", "null", "none")
_SNIFF_BYTES = 64 * 1024
# 1e11 s is the year 5138: a larger "epoch seconds" value is really milliseconds or finer.
_MAX_EPOCH_SECONDS = 10**11
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
_TIMESTAMP_FIX = (
    "write epoch seconds (e.g. 1704067200) or ISO 8601 (e.g. 2024-01-01T00:00:00Z), "
    "or leave the cell empty"
)


@dataclass(frozen=True)
class ColumnMapping:
    """What the columns of an interaction file are called.

    Only ``user`` and ``item`` must exist; the other columns are used when present.
    """

    user: str = schema.USER
    item: str = schema.ITEM
    time: str = schema.TIMESTAMP
    value: str = schema.VALUE
    event: str = schema.EVENT_TYPE
    event_id: str = schema.EVENT_ID

    def is_default(self, attribute: str) -> bool:
        """True when ``attribute`` still has its default column name."""
        default = next(f.default for f in fields(self) if f.name == attribute)
        return getattr(self, attribute) == default


_ROLES = {
    "user": "user id",
    "item": "item id",
    "time": "timestamp",
    "value": "value",
    "event": "event type",
    "event_id": "event id",
}
# Which command-line flag renames which column; named in error messages.
_FLAGS = {
    "user": "--user-col",
    "item": "--item-col",
    "time": "--time-col",
    "value": "--value-col",
    "event": "--event-col",
    "event_id": "--event-id-col",
}


# Common names for each column, tried when the default name is absent and no flag
# renamed it, so that a plain `user,item,timestamp` or `userId,movieId,rating` file loads.
# Compared lower-cased with '_' and '-' removed.
_ALIASES = {
    "user": ("user", "userid", "customerid", "customer", "visitorid", "uid"),
    "item": ("item", "itemid", "productid", "product", "movieid", "sku", "iid"),
    "time": ("time", "timestamp", "ts", "datetime", "eventtime", "createdat", "date"),
    "value": ("rating", "score", "weight", "count", "quantity"),
    "event": ("event", "eventtype", "action", "type"),
    "event_id": ("eventid",),
}


def _with_aliases(mapping: ColumnMapping, columns: list[str]) -> ColumnMapping:
    """The mapping with each defaulted, absent column replaced by a known alias present."""
    by_key = {}
    for column in columns:
        by_key.setdefault(column.lower().replace("_", "").replace("-", ""), column)
    renamed = {}
    for attribute, aliases in _ALIASES.items():
        if not mapping.is_default(attribute) or getattr(mapping, attribute) in columns:
            continue
        found = next((by_key[a] for a in aliases if a in by_key), None)
        if found is not None and found not in renamed.values():
            renamed[attribute] = found
            log.info("using column %r as the %s column", found, _ROLES[attribute])
    return replace(mapping, **renamed)


class _Table:
    """A raw frame read from a file, plus how to name its rows in messages."""

    def __init__(
        self,
        frame: pd.DataFrame,
        path: Path,
        *,
        row_unit: str,
        line_numbers: Callable[[], np.ndarray] | None = None,
        delimiter: str | None = None,
    ) -> None:
        self.frame = frame
        self.path = path
        self.row_unit = row_unit
        self.delimiter = delimiter
        self._line_numbers = line_numbers
        self._lines: np.ndarray | None = None

    @property
    def name(self) -> str:
        """The file's name as shown in messages."""
        return self.path.name

    def where(self, position: int) -> str:
        """``"file line N"`` (text formats) or ``"file row N"`` (Parquet) of a 0-based row."""
        if self._line_numbers is None:
            return f"{self.name} {self.row_unit} {position + 1}"
        if self._lines is None:
            # Computed only when a problem is reported: quoted newlines and blank
            # lines make the line of a row differ from its position.
            self._lines = self._line_numbers()
        number = int(self._lines[position]) if position < len(self._lines) else position + 2
        return f"{self.name} {self.row_unit} {number}"


# --------------------------------------------------------------------------- reading


def _fail(path: Path, problem: str) -> ValidationError:
    return ValidationError([problem], source=str(path))


def _read_table(path: Path, delimiter: str | None) -> _Table:
    """Read any supported file into a raw frame; raise on file-level problems."""
    if not path.exists():
        raise _fail(
            path,
            f"{path}: file not found (working directory {Path.cwd()}); check the path "
            "and that the file was copied/unpacked there.",
        )
    if path.is_dir():
        raise _fail(
            path,
            f"{path} is a folder, not a file: give an interaction file, or a MovieLens "
            "folder to `reco ingest` / reco.data.movielens.load_path.",
        )
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        extra = " Unpack compressed files first." if suffix in (".gz", ".zip", ".bz2") else ""
        raise _fail(
            path,
            f"{path.name}: unsupported file type '{suffix or '(no extension)'}'. "
            f"Supported: {', '.join(SUPPORTED_SUFFIXES)}; rename the file to the "
            f"extension of its format.{extra}",
        )
    if path.stat().st_size == 0:
        raise _fail(path, f"{path.name}: the file is empty (0 bytes); export the data again.")
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(path)
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path)
    return _read_delimited(path, delimiter)


def _read_parquet(path: Path) -> _Table:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise _fail(
            path,
            f"{path.name}: not a readable Parquet file ({exc}); write it again with "
            "pandas.DataFrame.to_parquet or pyarrow, or use CSV.",
        ) from exc
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    return _Table(frame, path, row_unit="row")


def _read_jsonl(path: Path) -> _Table:
    records: list[dict] = []
    lines: list[int] = []
    problems: list[str] = []
    bad_json = bad_bytes = 0
    offset = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line_start, offset = offset, offset + len(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad_bytes += 1
                if bad_bytes <= MAX_EXAMPLES:
                    problems.append(_encoding_message(path, raw, exc, number, line_start))
                continue
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                bad_json += 1
                if bad_json <= MAX_EXAMPLES:
                    problems.append(
                        f"{path.name} line {number}: malformed JSON ({exc.msg} at column "
                        f"{exc.colno}): {_clip(text.strip())}; each line must be one JSON "
                        'object like {"user_id": "u1", "item_id": "i9"}.'
                    )
                continue
            if not isinstance(record, dict):
                bad_json += 1
                if bad_json <= MAX_EXAMPLES:
                    problems.append(
                        f"{path.name} line {number}: expected a JSON object, found "
                        f"{type(record).__name__} {_clip(text.strip())}; write one object "
                        "per line."
                    )
                continue
            records.append(record)
            lines.append(number)
    if bad_json > MAX_EXAMPLES:
        problems.append(
            f"{path.name}: {bad_json - MAX_EXAMPLES} more malformed line(s) beyond those "
            "shown; fix them the same way."
        )
    if problems:
        raise ValidationError(problems, source=str(path))
    if not records:
        raise _fail(path, f"{path.name}: no JSON objects found (only blank lines).")
    frame = pd.DataFrame.from_records(records)
    frame.columns = [str(c).strip() for c in frame.columns]
    line_array = np.asarray(lines)
    return _Table(frame, path, row_unit="line", line_numbers=lambda: line_array)


def _read_delimited(path: Path, delimiter: str | None) -> _Table:
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    head_text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    if not head_text.strip():
        raise _fail(path, f"{path.name}: the file holds only blank lines; export the data again.")
    if delimiter is None:
        truncated = len(head) == _SNIFF_BYTES
        sep = _sniff_delimiter(head_text, path.suffix.lower(), truncated=truncated)
    else:
        sep = delimiter
    # Multi-character separators (e.g. MovieLens '::') need pandas' python engine.
    options: dict = {"engine": "c"} if len(sep) == 1 else {"engine": "python"}
    try:
        frame = pd.read_csv(
            path,
            sep=sep if len(sep) == 1 else re.escape(sep),
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8",
            skip_blank_lines=True,
            **options,
        )
    except UnicodeDecodeError as exc:
        raise ValidationError(_encoding_problems(path), source=str(path)) from exc
    except pd.errors.EmptyDataError as exc:
        raise _fail(path, f"{path.name}: no header line found; the file looks empty.") from exc
    except pd.errors.ParserError as exc:
        problems = _field_count_problems(path, sep) or [
            f"{path.name}: could not be parsed as delimited text ({exc}); check quoting "
            'and that fields containing the delimiter are wrapped in "double quotes".'
        ]
        raise ValidationError(problems, source=str(path)) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return _Table(
        frame,
        path,
        row_unit="line",
        line_numbers=lambda: _data_line_numbers(path, sep),
        delimiter=sep,
    )


def _sniff_delimiter(text: str, suffix: str, *, truncated: bool) -> str:
    """Pick the delimiter that splits the header and the first rows consistently."""
    default = "\t" if suffix == ".tsv" else ","
    lines = text.splitlines()
    if truncated and len(lines) > 1:
        lines = lines[:-1]  # the last line of a truncated sample may be partial
    sample = "\n".join([line for line in lines if line.strip()][:50])
    passing: list[tuple[int, str]] = []
    for candidate in (*CANDIDATE_DELIMITERS, " "):
        if candidate == " " and passing:
            break  # spaces occur inside values; only a last resort
        counts = [len(row) for row in csv.reader(io.StringIO(sample), delimiter=candidate)]
        if not counts or counts[0] < 2:
            continue
        consistent = sum(count == counts[0] for count in counts) / len(counts)
        if consistent >= 0.9:
            passing.append((counts[0], candidate))
    if not passing:
        return default
    if any(candidate == default for _, candidate in passing):
        return default
    return max(passing)[1]


def _is_blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def _csv_rows(path: Path, sep: str):
    """Yield ``(first line number, fields)`` of every non-blank record, header included."""
    csv.field_size_limit(2**31 - 1)
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        if len(sep) == 1:
            reader = csv.reader(handle, delimiter=sep)
            previous = 0
            for row in reader:
                start, previous = previous + 1, reader.line_num
                if not _is_blank(row):
                    yield start, row
        else:
            for number, line in enumerate(handle, start=1):
                row = line.rstrip("\r\n").split(sep)
                if not _is_blank(row):
                    yield number, row


def _data_line_numbers(path: Path, sep: str) -> np.ndarray:
    """Line number (1-based, header = line 1) where each data row starts."""
    rows = _csv_rows(path, sep)
    next(rows, None)  # the header
    return np.fromiter((start for start, _ in rows), dtype=np.int64)


def _field_count_problems(path: Path, sep: str) -> list[str]:
    """Every row whose number of fields differs from the header's."""
    rows = _csv_rows(path, sep)
    header = next(rows, None)
    if header is None:
        return []
    expected = len(header[1])
    bad = [(start, row) for start, row in rows if len(row) != expected]
    problems = [
        f"{path.name} line {start}: {len(row)} fields where the header has {expected} "
        f"({_clip(sep.join(row))}); quote values that contain '{sep}' with double quotes, "
        "or fix the row."
        for start, row in bad[:MAX_EXAMPLES]
    ]
    if len(bad) > MAX_EXAMPLES:
        problems.append(
            f"{path.name}: {len(bad) - MAX_EXAMPLES} more row(s) with the wrong number of "
            "fields beyond those shown."
        )
    return problems


def _encoding_message(
    path: Path, line: bytes, exc: UnicodeDecodeError, number: int, line_start: int
) -> str:
    bad = line[exc.start : exc.end]
    shown = line.decode("utf-8", errors="replace").strip()
    return (
        f"{path.name} line {number}, byte offset {line_start + exc.start}: byte(s) "
        f"{bad.hex(' ')} are not valid UTF-8 ({_clip(shown)}). The file seems to use another "
        "encoding (often latin-1/cp1252): re-encode it, e.g. "
        f"`iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`."
    )


def _encoding_problems(path: Path) -> list[str]:
    """Locate the first few invalid UTF-8 sequences of a file."""
    data = path.read_bytes()
    problems: list[str] = []
    position = 0
    while len(problems) < MAX_EXAMPLES:
        try:
            data[position:].decode("utf-8")
            break
        except UnicodeDecodeError as exc:
            start = position + exc.start
            line_start = data.rfind(b"\n", 0, start) + 1
            line_end = data.find(b"\n", start)
            line = data[line_start : None if line_end < 0 else line_end]
            local = UnicodeDecodeError(
                "utf-8", line, start - line_start, position + exc.end - line_start, exc.reason
            )
            number = data.count(b"\n", 0, start) + 1
            problems.append(_encoding_message(path, line, local, number, line_start))
            position = line_end + 1 if line_end >= 0 else len(data)
            if position >= len(data):
                break
    return problems or [f"{path.name}: not valid UTF-8; re-encode the file to UTF-8."]


def _clip(text: str, limit: int = 80) -> str:
    text = repr(text)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


# --------------------------------------------------------------------------- columns


def _column_missing(table: _Table, column: str, role: str, flag: str) -> str:
    found = list(table.frame.columns)
    message = (
        f"{table.name} line 1 (header): no {role} column '{column}'. Columns found: "
        f"{', '.join(repr(c) for c in found) or '(none)'}. "
    )
    hint = _delimiter_hint(table)
    if hint:
        return message + hint
    close = difflib.get_close_matches(column, found, n=1, cutoff=0.5)
    if close:
        return message + f"If '{close[0]}' holds it, pass {flag} {close[0]}."
    return message + f"Name the file's {role} column with {flag} <column>."


def _delimiter_hint(table: _Table) -> str | None:
    """When a text file came out as one column, name the delimiter it seems to use."""
    if table.delimiter is None or len(table.frame.columns) != 1:
        return None
    header = str(table.frame.columns[0])
    for candidate in (*CANDIDATE_DELIMITERS, " "):
        if candidate != table.delimiter and len(header.split(candidate)) > 1:
            used = _DELIMITER_NAMES.get(table.delimiter, repr(table.delimiter))
            seen = _DELIMITER_NAMES[candidate]
            return (
                f"Only one column came out when splitting on {used}; the file seems to use "
                f"{seen} as delimiter: pass --delimiter '{candidate}' "
                f"(delimiter='{candidate}'), or leave the delimiter unset to detect it."
            )
    return None


def _row_problems(
    table: _Table,
    column: str,
    mask: np.ndarray,
    describe: Callable[[object], str],
    fix: str,
) -> list[str]:
    """One problem per bad row (the first few), then one line summing up the rest."""
    positions = np.flatnonzero(mask)
    if len(positions) == 0:
        return []
    values = table.frame[column]
    problems = [
        f"{table.where(int(p))}, column '{column}': {describe(values.iloc[int(p)])}; {fix}."
        for p in positions[:MAX_EXAMPLES]
    ]
    if len(positions) > MAX_EXAMPLES:
        problems.append(
            f"{table.name}, column '{column}': {len(positions) - MAX_EXAMPLES} more row(s) "
            f"with the same problem ({len(positions)} in all); {fix}."
        )
    return problems


def _to_text(series: pd.Series) -> pd.Series:
    """Values as stripped strings; missing values become ``""``."""
    if pd.api.types.is_string_dtype(series) and not pd.api.types.is_object_dtype(series):
        return series.fillna("").str.strip()
    return series.map(_one_id, na_action=None).astype(str)


def _one_id(value: object) -> str:
    """One id as text: integral floats lose their ``.0`` (JSON and Parquet numbers)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").strip()
    return str(value).strip()


def _ids(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Ids as strings and the mask of empty ones."""
    if pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        integral = np.isfinite(values) & (values == np.floor(values))
        if integral.all():
            text = pd.Series(values.astype(np.int64)).astype(str)
            return text, np.zeros(len(text), dtype=bool)
    if pd.api.types.is_integer_dtype(series) and not series.hasnans:
        text = series.astype(np.int64).astype(str).reset_index(drop=True)
        return text, np.zeros(len(text), dtype=bool)
    text = _to_text(series).reset_index(drop=True)
    return text, (text == "").to_numpy(dtype=bool)


def _missing_mask(text: pd.Series) -> np.ndarray:
    return text.str.lower().isin(_MISSING_TOKENS).to_numpy(dtype=bool)


def _numbers(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Float values (NaN when missing) and the mask of values that are not numbers."""
    if pd.api.types.is_bool_dtype(series):
        values = series.astype("float64").to_numpy(na_value=np.nan)
        return values, np.zeros(len(values), dtype=bool)
    if pd.api.types.is_numeric_dtype(series):
        values = series.astype("float64").to_numpy(na_value=np.nan)
        return values, np.isinf(values)
    text = _to_text(series)
    missing = _missing_mask(text)
    parsed = pd.to_numeric(text.where(~missing), errors="coerce")
    values = np.array(parsed, dtype=np.float64)
    return values, ~missing & ~np.isfinite(values)


def _timestamps(series: pd.Series) -> tuple[pd.arrays.IntegerArray, np.ndarray, np.ndarray]:
    """Epoch seconds (Int64), the mask of unparseable values, the mask of too-large numbers."""
    n = len(series)
    no = np.zeros(n, dtype=bool)
    if pd.api.types.is_datetime64_any_dtype(series):
        moments = series if series.dt.tz is not None else series.dt.tz_localize("UTC")
        missing = moments.isna().to_numpy()
        seconds = ((moments.dt.tz_convert("UTC") - _EPOCH) // pd.Timedelta(seconds=1)).to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        return _int_array(seconds, missing), no, no
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.astype("float64").to_numpy(na_value=np.nan)
        bad = np.isinf(values)
        huge = np.abs(np.where(np.isfinite(values), values, 0)) >= _MAX_EPOCH_SECONDS
        return _int_array(values, ~np.isfinite(values) | huge), bad, huge
    text = _to_text(series)
    missing = _missing_mask(text)
    values = np.array(pd.to_numeric(text.where(~missing), errors="coerce"), dtype=np.float64)
    need_date = ~missing & np.isnan(values)
    if need_date.any():
        moments = pd.to_datetime(text[need_date], utc=True, format="ISO8601", errors="coerce")
        seconds = ((moments - _EPOCH) // pd.Timedelta(seconds=1)).to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        values[need_date] = seconds
    bad = ~missing & ~np.isfinite(values)
    huge = np.isfinite(values) & (np.abs(values) >= _MAX_EPOCH_SECONDS)
    return _int_array(values, ~np.isfinite(values) | huge), bad, huge


def _int_array(values: np.ndarray, missing: np.ndarray) -> pd.arrays.IntegerArray:
    whole = np.floor(np.where(missing, 0, values)).astype(np.int64)
    return pd.arrays.IntegerArray(whole, missing.copy())


# --------------------------------------------------------------------------- public


def load_interactions(
    path: Path,
    *,
    columns: ColumnMapping | None = None,
    delimiter: str | None = None,
) -> pd.DataFrame:
    """Load an interaction file as the canonical interaction frame.

    ``path`` is CSV/TSV/TXT (delimiter detected unless given), Parquet or JSON Lines.
    ``columns`` says what the file's columns are called; only the user and item
    columns are required. Timestamps may be epoch seconds or ISO 8601 strings (naive
    times are UTC); values must be numbers. Ids keep their text (surrounding
    whitespace trimmed). Duplicate rows are kept (ingest dedupes them).

    Raises :class:`reco.errors.ValidationError` listing every problem found.
    """
    path = Path(path)
    table = _read_table(path, delimiter)
    frame = table.frame
    mapping = _with_aliases(columns or ColumnMapping(), list(frame.columns))
    problems: list[str] = []
    if len(frame) == 0:
        raise _fail(
            path,
            f"{path.name}: a header line ({', '.join(map(repr, frame.columns))}) but no data "
            "rows; export the data again.",
        )
    missing = [
        attribute for attribute in ("user", "item") if getattr(mapping, attribute) not in frame
    ]
    hint = _delimiter_hint(table) if missing else None
    if hint:
        # One column means the split failed; other checks would only add noise.
        raise _fail(path, f"{path.name} line 1 (header): {hint}")
    out: dict[str, object] = {}
    for attribute in ("user", "item", "time", "value", "event", "event_id"):
        column = getattr(mapping, attribute)
        required = attribute in ("user", "item")
        if column not in frame.columns and (required or not mapping.is_default(attribute)):
            # A renamed optional column that is absent is a mistake, not "no data".
            problems.append(_column_missing(table, column, _ROLES[attribute], _FLAGS[attribute]))
    for attribute, canonical in (("user", schema.USER), ("item", schema.ITEM)):
        column = getattr(mapping, attribute)
        if column not in frame.columns:
            continue
        ids, empty = _ids(frame[column])
        out[canonical] = ids
        problems += _row_problems(
            table,
            column,
            empty,
            lambda v: "the id is empty",
            f"the {_ROLES[attribute]} is required: fill it in or delete the row",
        )
    optional = {
        attribute: getattr(mapping, attribute)
        for attribute in ("time", "value", "event", "event_id")
        if getattr(mapping, attribute) in frame.columns
    }
    if "time" in optional:
        column = optional["time"]
        seconds, bad, huge = _timestamps(frame[column])
        out[schema.TIMESTAMP] = seconds
        problems += _row_problems(
            table, column, bad, lambda v: f"{_clip(str(v))} is not a timestamp", _TIMESTAMP_FIX
        )
        problems += _row_problems(
            table,
            column,
            huge,
            lambda v: f"{_clip(str(v))} is too large for epoch seconds (milliseconds?)",
            "reco expects epoch seconds: divide millisecond values by 1000",
        )
    if "value" in optional:
        column = optional["value"]
        values, bad = _numbers(frame[column])
        out[schema.VALUE] = values
        problems += _row_problems(
            table,
            column,
            bad,
            lambda v: f"{_clip(str(v))} is not a number",
            "write a number (e.g. 4 or 3.5, with a '.' decimal point) or leave it empty",
        )
    if "event" in optional:
        events = _to_text(frame[optional["event"]]).reset_index(drop=True)
        out[schema.EVENT_TYPE] = events.where(events != "", schema.DEFAULT_EVENT_TYPE)
    if "event_id" in optional:
        event_ids = _to_text(frame[optional["event_id"]]).reset_index(drop=True)
        out[schema.EVENT_ID] = event_ids.astype(object).where(event_ids != "", None)

    if problems:
        raise ValidationError(problems, source=str(path))
    return schema.normalize_interactions(pd.DataFrame(out))


def load_items(
    path: Path, *, id_col: str = schema.ITEM, delimiter: str | None = None
) -> pd.DataFrame:
    """Load item metadata: ``item_id`` plus ``title``, ``text``, ``categories`` and the rest.

    ``categories`` may be a JSON/Parquet list or a ``|``-separated string; it is stored
    ``|``-separated. Other columns are kept (numbers become numbers unless that would
    lose leading zeros). Item ids must be present and unique. ``delimiter`` works as
    in :func:`load_interactions`.
    """
    frame = _load_metadata(Path(path), id_col, schema.ITEM, "item", delimiter)
    for column in ("title", "text"):
        if column in frame.columns:
            frame[column] = _to_text(frame[column]).to_numpy(dtype=object)
    if "categories" in frame.columns:
        frame["categories"] = frame["categories"].map(_categories).to_numpy(dtype=object)
    return frame


def load_users(
    path: Path, *, id_col: str = schema.USER, delimiter: str | None = None
) -> pd.DataFrame:
    """Load user metadata: ``user_id`` plus attribute columns (device, country, ...).

    User ids must be present and unique; other columns are kept (numbers become
    numbers unless that would lose leading zeros, so zip codes stay text).
    """
    return _load_metadata(Path(path), id_col, schema.USER, "user", delimiter)


def _categories(value: object) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        parts = [str(v).strip() for v in value if v is not None]
    elif value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        parts = []
    else:
        parts = [part.strip() for part in str(value).split(schema.CATEGORY_SEPARATOR)]
    return schema.CATEGORY_SEPARATOR.join(part for part in parts if part)


def _load_metadata(
    path: Path, id_col: str, canonical: str, kind: str, delimiter: str | None
) -> pd.DataFrame:
    table = _read_table(path, delimiter)
    frame = table.frame
    if len(frame) == 0:
        raise _fail(path, f"{path.name}: a header line but no {kind} rows; export the data again.")
    if id_col not in frame.columns:
        hint = _delimiter_hint(table)
        found = ", ".join(repr(c) for c in frame.columns)
        close = difflib.get_close_matches(id_col, list(frame.columns), n=1, cutoff=0.5)
        fix = hint or (
            f"If '{close[0]}' holds the {kind} ids, pass id_col='{close[0]}'."
            if close
            else f"Name the {kind} id column with id_col='<column>'."
        )
        raise _fail(
            path,
            f"{path.name} line 1 (header): no {kind} id column '{id_col}'. "
            f"Columns found: {found}. {fix}",
        )
    problems: list[str] = []
    if id_col != canonical and canonical in frame.columns:
        problems.append(
            f"{path.name} line 1 (header): column '{canonical}' exists besides the id column "
            f"'{id_col}'; rename or drop one of them."
        )
    ids, empty = _ids(frame[id_col])
    problems += _row_problems(
        table,
        id_col,
        empty,
        lambda v: "empty id",
        f"every {kind} needs an id: fill it in or delete the row",
    )
    duplicated = ids.duplicated(keep="first").to_numpy() & ~empty
    problems += _row_problems(
        table,
        id_col,
        duplicated,
        lambda v: f"{kind} id {_clip(_one_id(v))} appears more than once",
        f"keep one row per {kind} (merge the rows)",
    )
    if problems:
        raise ValidationError(problems, source=str(path))
    rest = frame.drop(columns=[id_col]).reset_index(drop=True)
    columns: dict[str, object] = {canonical: ids.to_numpy(dtype=object)}
    for name in rest.columns:
        # Text formats give every cell as a string; other formats keep their types.
        columns[name] = _infer_numbers(rest[name]) if table.delimiter else rest[name]
    return pd.DataFrame(columns)


def _infer_numbers(column: pd.Series) -> pd.Series:
    """A text column as numbers when every value is one and none has a leading zero."""
    text = column.str.strip()
    empty = (text == "").to_numpy()
    if empty.all():
        return pd.Series([None] * len(text), dtype=object, name=column.name)
    present = text[~empty]
    numbers = pd.to_numeric(present, errors="coerce")
    leading_zero = present.str.match(r"^[+-]?0\d").any()
    if numbers.isna().any() or leading_zero:
        return column.where(~empty, None)
    values = pd.to_numeric(text.where(~empty), errors="coerce").astype("float64")
    finite = values.dropna()
    if (finite == np.floor(finite)).all() and finite.abs().max() < 2**53:
        return values.astype("Int64") if empty.any() else values.astype(np.int64)
    return values
