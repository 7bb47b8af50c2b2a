"""Loading interaction, item and user files: formats, parsing rules and every error case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reco.data import schema
from reco.data.loaders import ColumnMapping, load_interactions, load_items, load_users
from reco.errors import ValidationError


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, **kwargs) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        load_interactions(path, **kwargs)
    assert caught.value.source == str(path)
    return caught.value.problems


def assert_canonical(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(schema.INTERACTION_COLUMNS)
    assert frame[schema.TIMESTAMP].dtype == "Int64"
    assert frame[schema.VALUE].dtype == np.float64
    assert all(isinstance(v, str) for v in frame[schema.USER])
    assert all(isinstance(v, str) for v in frame[schema.ITEM])


# --------------------------------------------------------------------------- formats


def test_csv_keeps_ids_as_written_with_quoting_and_unicode(tmp_path):
    path = write(
        tmp_path / "events.csv",
        "user_id,item_id,timestamp,value,event_type\n"
        '007,"shoe, red",1704067200,4.5,view\n'
        '008,"say ""hi""",,,\n'
        "009,café ☕,1704067201,3,click\n"
        '007,"shoe, red",1704067200,4.5,view\n',
    )
    frame = load_interactions(path)
    assert_canonical(frame)
    assert frame[schema.USER].tolist() == ["007", "008", "009", "007"]
    assert frame[schema.ITEM].tolist() == ["shoe, red", 'say "hi"', "café ☕", "shoe, red"]
    assert frame[schema.EVENT_TYPE].tolist() == ["view", "interaction", "click", "view"]
    assert frame[schema.TIMESTAMP].isna().tolist() == [False, True, False, False]
    assert np.isnan(frame[schema.VALUE].iloc[1])
    assert len(frame) == 4  # duplicates are kept; ingest dedupes


@pytest.mark.parametrize(
    ("name", "sep"), [("a.tsv", "\t"), ("a.txt", "\t"), ("a.csv", ";"), ("a.txt", "|")]
)
def test_delimiter_is_detected(tmp_path, name, sep):
    path = write(
        tmp_path / name, f"user_id{sep}item_id{sep}value\nu1{sep}i1{sep}2\nu2{sep}i2{sep}3\n"
    )
    frame = load_interactions(path)
    assert frame[schema.ITEM].tolist() == ["i1", "i2"]
    assert frame[schema.VALUE].tolist() == [2.0, 3.0]


def test_explicit_delimiter_and_column_mapping(tmp_path):
    path = write(tmp_path / "r.csv", "userId|movieId|rating|ts|kind|eid\n1|10|4|5|buy|e1\n")
    mapping = ColumnMapping(
        user="userId", item="movieId", value="rating", time="ts", event="kind", event_id="eid"
    )
    frame = load_interactions(path, columns=mapping, delimiter="|")
    row = frame.iloc[0]
    assert (row.user_id, row.item_id, row.value, row.timestamp) == ("1", "10", 4.0, 5)
    assert (row.event_type, row.event_id) == ("buy", "e1")


def test_timestamps_epoch_and_iso_8601(tmp_path):
    path = write(
        tmp_path / "t.csv",
        "user_id,item_id,timestamp\n"
        "u,a,1704067200\n"
        "u,b,1704067200.9\n"
        "u,c,2024-01-01T00:00:00Z\n"
        "u,d,2024-01-01T02:00:00+02:00\n"
        "u,e,2024-01-01 00:00:00\n"
        "u,f,2024-01-01\n"
        "u,g,\n",
    )
    stamps = load_interactions(path)[schema.TIMESTAMP]
    assert stamps.iloc[:6].tolist() == [1704067200] * 6  # naive times are UTC
    assert stamps.isna().tolist() == [False] * 6 + [True]


def test_parquet_with_numeric_ids_and_datetimes(tmp_path):
    path = tmp_path / "e.parquet"
    pd.DataFrame(
        {
            "user_id": [7, 8],
            "item_id": ["007", "x"],
            "timestamp": pd.to_datetime(["2024-01-01T01:00:00", "2024-01-01T00:00:00"]).tz_localize(
                "Europe/Paris"
            ),
            "value": [1.5, np.nan],
        }
    ).to_parquet(path)
    frame = load_interactions(path)
    assert_canonical(frame)
    assert frame[schema.USER].tolist() == ["7", "8"]
    assert frame[schema.ITEM].tolist() == ["007", "x"]
    assert frame[schema.TIMESTAMP].tolist() == [1704067200, 1704063600]


def test_parquet_naive_datetimes_are_utc(tmp_path):
    path = tmp_path / "e.parquet"
    pd.DataFrame(
        {"user_id": ["u"], "item_id": ["i"], "timestamp": pd.to_datetime(["2024-01-01"])}
    ).to_parquet(path)
    assert load_interactions(path)[schema.TIMESTAMP].tolist() == [1704067200]


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson"])
def test_json_lines(tmp_path, suffix):
    lines = [
        {"user_id": "007", "item_id": 5, "timestamp": "2024-01-01T00:00:00Z", "value": 2},
        {"user_id": 8, "item_id": "i", "timestamp": 1704067200, "event_id": "e-1"},
    ]
    path = write(
        tmp_path / f"e{suffix}", json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1]) + "\n"
    )
    frame = load_interactions(path)
    assert_canonical(frame)
    assert frame[schema.USER].tolist() == ["007", "8"]
    assert frame[schema.ITEM].tolist() == ["5", "i"]
    assert frame[schema.TIMESTAMP].tolist() == [1704067200, 1704067200]
    assert frame[schema.EVENT_ID].iloc[1] == "e-1"


def test_utf8_byte_order_mark_is_ignored(tmp_path):
    path = write(tmp_path / "bom.csv", "\ufeffuser_id,item_id\nu,i\n".encode())
    assert load_interactions(path)[schema.USER].tolist() == ["u"]


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    (problem,) = problems_of(tmp_path / "nope.csv")
    assert "file not found" in problem and "nope.csv" in problem


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_empty_file(tmp_path, content):
    (problem,) = problems_of(write(tmp_path / "e.csv", content))
    assert "empty" in problem or "blank" in problem


def test_header_only(tmp_path):
    (problem,) = problems_of(write(tmp_path / "h.csv", "user_id,item_id\n"))
    assert "no data rows" in problem


def test_missing_required_columns_lists_found_and_suggests_flags(tmp_path):
    problems = problems_of(write(tmp_path / "r.csv", "users_name,movie,rating\n1,2,3\n"))
    assert len(problems) == 2
    user, item = problems
    assert "'users_name', 'movie', 'rating'" in user
    assert "--user-col users_name" in user
    assert "--item-col" in item and "line 1" in item


def test_renamed_optional_column_must_exist(tmp_path):
    path = write(tmp_path / "r.csv", "user_id,item_id\n1,2\n")
    (problem,) = problems_of(path, columns=ColumnMapping(time="when"))
    assert "timestamp column 'when'" in problem and "--time-col" in problem


def test_bad_timestamps_show_the_first_rows_and_count_the_rest(tmp_path):
    rows = "".join(f"u,i,bad{n}\n" for n in range(8))
    path = write(tmp_path / "t.csv", "user_id,item_id,timestamp\nu,i,1\n" + rows)
    problems = problems_of(path)
    assert len(problems) == 6
    assert problems[0].startswith("t.csv line 3, column 'timestamp': 'bad0' is not a timestamp")
    assert "ISO 8601" in problems[0]
    assert problems[4].startswith("t.csv line 7")
    assert "3 more row(s)" in problems[5] and "8 in all" in problems[5]


def test_millisecond_timestamps_are_refused_with_the_fix(tmp_path):
    path = write(tmp_path / "t.csv", "user_id,item_id,timestamp\nu,i,1704067200000\n")
    (problem,) = problems_of(path)
    assert "line 2" in problem and "milliseconds" in problem and "divide" in problem


def test_non_numeric_value(tmp_path):
    path = write(tmp_path / "v.csv", 'user_id,item_id,value\nu,i,4\nu,j,four\nu,k,"3,5"\n')
    problems = problems_of(path)
    assert [p.split(":")[0] for p in problems] == [
        "v.csv line 3, column 'value'",
        "v.csv line 4, column 'value'",
    ]
    assert "'four' is not a number" in problems[0]


def test_empty_ids(tmp_path):
    path = write(tmp_path / "ids.csv", "user_id,item_id\nu,i\n,i\nu,  \n")
    problems = problems_of(path)
    assert problems[0].startswith("ids.csv line 3, column 'user_id': the id is empty")
    assert problems[1].startswith("ids.csv line 4, column 'item_id': the id is empty")
    assert "fill it in or delete the row" in problems[0]


def test_all_problems_are_collected_in_one_error(tmp_path):
    path = write(tmp_path / "m.csv", "user_id,item_id,timestamp,value\n,i,x,1\nu,,1,y\n")
    problems = problems_of(path)
    columns = sorted(p.split("column '")[1].split("'")[0] for p in problems)
    assert columns == ["item_id", "timestamp", "user_id", "value"]


def test_line_numbers_count_blank_lines_and_quoted_newlines(tmp_path):
    path = write(tmp_path / "n.csv", 'user_id,item_id,value\n"multi\nline",i,1\n\nu,i,oops\n')
    (problem,) = problems_of(path)
    assert problem.startswith("n.csv line 5, column 'value'")


def test_wrong_delimiter_names_the_one_in_use(tmp_path):
    path = write(tmp_path / "s.csv", "user_id;item_id;value\nu;i;1\n")
    (problem,) = problems_of(path, delimiter=",")
    assert "semicolon ';'" in problem and "--delimiter ';'" in problem


def test_wrong_number_of_fields(tmp_path):
    path = write(tmp_path / "f.csv", "user_id,item_id\nu,i\nu,i,extra\nu,i\n")
    (problem,) = problems_of(path)
    assert problem.startswith("f.csv line 3: 3 fields where the header has 2")


def test_non_utf8_bytes_name_line_offset_and_fix(tmp_path):
    path = write(tmp_path / "l.csv", "user_id,item_id\nu,caf\xe9\n".encode("latin-1"))
    (problem,) = problems_of(path)
    assert "l.csv line 2, byte offset 21" in problem
    assert "not valid UTF-8" in problem and "iconv -f latin1 -t utf-8" in problem


def test_non_utf8_in_json_lines(tmp_path):
    path = write(tmp_path / "l.jsonl", b'{"user_id": "u", "item_id": "a"}\n{"user_id": "\xff"}\n')
    (problem,) = problems_of(path)
    assert "l.jsonl line 2" in problem and "UTF-8" in problem


@pytest.mark.parametrize("name", ["data.xlsx", "data.csv.gz", "data"])
def test_unsupported_extension(tmp_path, name):
    (problem,) = problems_of(write(tmp_path / name, "x"))
    assert "unsupported file type" in problem and ".parquet" in problem


def test_malformed_json_lines(tmp_path):
    path = write(
        tmp_path / "m.jsonl",
        '{"user_id": "u", "item_id": "a"}\n{"user_id": "u", item_id: 1}\n[1, 2]\n',
    )
    problems = problems_of(path)
    assert problems[0].startswith("m.jsonl line 2: malformed JSON")
    assert problems[1].startswith("m.jsonl line 3: expected a JSON object")


def test_parquet_rows_are_numbered(tmp_path):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"user_id": ["u", None], "item_id": ["i", "j"]}).to_parquet(path)
    (problem,) = problems_of(path)
    assert problem.startswith("p.parquet row 2, column 'user_id'")


def test_corrupt_parquet(tmp_path):
    (problem,) = problems_of(write(tmp_path / "p.parquet", b"PAR1 not really"))
    assert "not a readable Parquet file" in problem


def test_folder_instead_of_file(tmp_path):
    (problem,) = problems_of(tmp_path)
    assert "is a folder" in problem


# --------------------------------------------------------------------------- metadata


def test_load_items_from_csv(tmp_path):
    path = write(
        tmp_path / "items.csv",
        'sku,title,categories,price,code\n007,"Shoe, red",shoes | red,9.5,0012\n8,Hat,,10,0013\n',
    )
    items = load_items(path, id_col="sku")
    assert list(items.columns) == ["item_id", "title", "categories", "price", "code"]
    assert items["item_id"].tolist() == ["007", "8"]
    assert items["categories"].tolist() == ["shoes|red", ""]
    assert items["price"].tolist() == [9.5, 10.0]
    assert items["code"].tolist() == ["0012", "0013"]  # leading zeros keep it text


def test_load_items_from_json_lines_with_category_lists(tmp_path):
    path = write(
        tmp_path / "items.jsonl",
        '{"item_id": 1, "title": "A", "categories": ["x", "y"], "stock": 3}\n'
        '{"item_id": 2, "title": null, "categories": "z|w"}\n',
    )
    items = load_items(path)
    assert items["item_id"].tolist() == ["1", "2"]
    assert items["categories"].tolist() == ["x|y", "z|w"]
    assert items["title"].tolist() == ["A", ""]


def test_load_users_keeps_zip_codes_as_text(tmp_path):
    path = write(tmp_path / "users.csv", "user_id,age,zip,device\n1,24,01234,mobile\n2,,85711,\n")
    users = load_users(path)
    assert users["user_id"].tolist() == ["1", "2"]
    assert users["age"].dtype == "Int64"
    assert users["zip"].tolist() == ["01234", "85711"]


def test_metadata_duplicate_and_missing_ids(tmp_path):
    path = write(tmp_path / "users.csv", "user_id,age\n1,3\n,4\n1,5\n")
    with pytest.raises(ValidationError) as caught:
        load_users(path)
    empty, duplicate = caught.value.problems
    assert empty.startswith("users.csv line 3, column 'user_id'")
    assert duplicate.startswith("users.csv line 4") and "'1' appears more than once" in duplicate


def test_metadata_missing_id_column(tmp_path):
    path = write(tmp_path / "items.csv", "itemId,title\n1,A\n")
    with pytest.raises(ValidationError, match=r"id_col='itemId'"):
        load_items(path)


def test_common_column_names_are_recognised_without_flags(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("userId,movieId,rating,timestamp\n7,42,4.5,1700000000\n")
    frame = load_interactions(path)
    assert frame.loc[0, "user_id"] == "7" and frame.loc[0, "item_id"] == "42"
    assert frame.loc[0, "value"] == 4.5 and frame.loc[0, "timestamp"] == 1700000000


def test_plain_user_item_timestamp_header(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("user,item,timestamp\nalice,book-1,2024-05-01T10:00:00Z\n")
    frame = load_interactions(path)
    assert list(frame["user_id"]) == ["alice"] and list(frame["item_id"]) == ["book-1"]
    assert frame.loc[0, "timestamp"] == 1714557600
