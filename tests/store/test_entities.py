"""Users and items one at a time (the service's PUT/GET/DELETE), on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from reco.errors import ValidationError
from reco.store import counts, ingest, load_frames
from reco.store.entities import (
    delete_item,
    delete_user,
    get_item,
    get_user,
    put_item,
    put_user,
    unavailable_items,
    user_state,
)
from reco.store.events import events_since, read_user_for_answer, watermark

# Odd but legal ids: each must round-trip unchanged, never reach SQL as text.
AWKWARD_IDS = [
    "../../etc/passwd",
    "1'; DROP TABLE users; --",
    "ünïcødé 🎬 映画",
    "a" * 512,
    " padded ",
]


def test_a_user_round_trips_and_a_put_replaces_the_attributes(store):
    first = put_user(store, "u1", {"country": "FR", "age": 31, "vip": True, "note": None})
    assert first["attributes"] == {"country": "FR", "age": 31, "vip": True}
    assert get_user(store, "u1") == first
    assert first["created_at"].tzinfo is not None

    second = put_user(store, "u1", {"device": "ios"})
    assert second["attributes"] == {"device": "ios"}  # replaced, not merged
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] > first["updated_at"]
    assert get_user(store, "u1") == second
    assert get_user(store, "nobody") is None


def test_an_answer_reads_attributes_deletion_and_newer_events_at_once(store, frames_of):
    users = pd.DataFrame({"user_id": ["u1", "u2"], "device": ["ios", "web"]})
    ingest(store, frames_of([("u1", "i1", 1), ("u2", "i1", 2)], users=users), source="seed")
    mark = watermark(store)
    ingest(store, frames_of([("u1", "i2", 3), ("u1", "i3", 4), ("u2", "i2", 5)]), source="new")

    read = read_user_for_answer(store, "u1", mark)
    assert (read.attributes, read.deleted) == ({"device": "ios"}, False)
    assert read.events["item_id"].tolist() == ["i2", "i3"]  # after the mark, in id order
    assert read_user_for_answer(store, "u1", watermark(store)).events is None
    nobody = read_user_for_answer(store, "nobody", 0)
    assert (nobody.attributes, nobody.deleted, nobody.events) == ({}, False, None)
    delete_user(store, "u2")
    gone = read_user_for_answer(store, "u2", 0)
    assert (gone.attributes, gone.deleted, gone.events) == ({}, True, None)
    with pytest.raises(ValidationError, match="U\\+0009"):
        read_user_for_answer(store, "tab\there", 0)


def test_deleting_a_user_forgets_them_and_their_interactions(store, frames_of):
    users = pd.DataFrame({"user_id": ["u1", "u2"], "device": ["ios", "web"]})
    rows = [("u1", "i1", 1), ("u1", "i2", 2), ("u2", "i1", 3)]
    ingest(store, frames_of(rows, users=users), source="seed")

    assert delete_user(store, "u1") is True
    assert get_user(store, "u1") is None
    assert user_state(store, "u1") == ({}, True)
    assert user_state(store, "u2") == ({"device": "web"}, False)
    assert user_state(store, "nobody") == ({}, False)
    assert len(events_since(store, ["u1"], 0)) == 0
    loaded = load_frames(store)
    assert loaded.interactions["user_id"].tolist() == ["u2"]
    assert loaded.users["user_id"].tolist() == ["u2"]
    assert counts(store)["interactions"] == 1

    assert delete_user(store, "u1") is False  # already gone
    assert delete_user(store, "nobody") is False
    assert user_state(store, "nobody") == ({}, False)


def test_a_user_known_only_from_events_can_be_deleted(store, frames_of):
    ingest(store, frames_of([("ghost", "i1", 1), ("other", "i1", 2)]), source="seed")
    assert delete_user(store, "ghost") is True
    assert user_state(store, "ghost") == ({}, True)
    assert load_frames(store).interactions["user_id"].tolist() == ["other"]


def test_a_put_brings_a_deleted_user_back_with_only_the_new_attributes(store):
    created = put_user(store, "u1", {"country": "FR"})
    delete_user(store, "u1")
    back = put_user(store, "u1", {"country": "DE"})
    assert back["attributes"] == {"country": "DE"}
    assert back["created_at"] == created["created_at"]
    assert get_user(store, "u1") == back
    assert user_state(store, "u1") == ({"country": "DE"}, False)
    assert load_frames(store).users.to_dict("records") == [{"user_id": "u1", "country": "DE"}]


def test_an_item_round_trips_and_a_put_replaces_every_field(store):
    first = put_item(
        store,
        "i1",
        title="Toy Story (1995)",
        text="toys come alive",
        categories=["Animation", "Children's"],
        attributes={"year": 1995},
    )
    assert first["categories"] == ["Animation", "Children's"]
    assert first["available"] is True
    assert get_item(store, "i1") == first
    stored = load_frames(store).items.set_index("item_id")
    assert stored.loc["i1", "categories"] == "Animation|Children's"  # as ingest stores it
    assert stored.loc["i1", "year"] == 1995

    second = put_item(store, "i1", title="Toy Story", available=False)
    assert second["text"] is None and second["categories"] == []  # not given: cleared
    assert second["attributes"] == {}
    assert second["available"] is False
    assert second["created_at"] == first["created_at"]
    assert get_item(store, "i1") == second
    assert unavailable_items(store) == {"i1"}
    assert get_item(store, "nothing") is None


def test_an_item_written_by_ingest_reads_back_with_a_category_list(store, frames_of):
    items = pd.DataFrame({"item_id": ["i1"], "categories": ["Drama|War"], "year": [1998]})
    ingest(store, frames_of([], items=items), source="items.csv")
    got = get_item(store, "i1")
    assert got["categories"] == ["Drama", "War"]
    assert got["attributes"] == {"year": 1998}


def test_a_deleted_item_is_unavailable_until_put_again(store, frames_of):
    ingest(store, frames_of([("u1", "i1", 1), ("u1", "i3", 2)]), source="seed")
    put_item(store, "i1", title="One")
    put_item(store, "i2", title="Two")

    assert delete_item(store, "i1") is True
    assert get_item(store, "i1") is None
    assert unavailable_items(store) == {"i1"}
    assert load_frames(store).items["item_id"].tolist() == ["i2"]
    # Other users' interactions with it stay (their histories are theirs).
    assert load_frames(store).interactions["item_id"].tolist() == ["i1", "i3"]
    assert delete_item(store, "i1") is False

    assert delete_item(store, "i3") is True  # known only from events
    assert unavailable_items(store) == {"i1", "i3"}
    assert delete_item(store, "never-seen") is False

    put_item(store, "i1", title="One again")
    assert unavailable_items(store) == {"i3"}
    assert get_item(store, "i1")["title"] == "One again"


@pytest.mark.parametrize("awkward", AWKWARD_IDS)
def test_awkward_but_legal_ids_round_trip_unchanged(store, awkward):
    put_user(store, awkward, {"name": awkward})
    put_item(store, awkward, title=awkward, categories=[awkward])
    assert get_user(store, awkward)["attributes"] == {"name": awkward}
    assert get_item(store, awkward)["categories"] == [awkward]
    assert delete_user(store, awkward) and delete_item(store, awkward)
    assert unavailable_items(store) == {awkward}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 513, "513 characters"),
        ("nul\x00here", "U+0000"),
        ("tab\there", "U+0009"),
        ("lone\ud800", "U+D800"),
        (None, "NoneType"),
        (["u1"], "list"),
    ],
)
def test_hostile_ids_are_refused_with_the_reason(store, bad, reason):
    for call in (
        lambda: put_user(store, bad, {}),
        lambda: get_user(store, bad),
        lambda: user_state(store, bad),
        lambda: delete_user(store, bad),
        lambda: put_item(store, bad),
        lambda: get_item(store, bad),
        lambda: delete_item(store, bad),
    ):
        with pytest.raises(ValidationError, match=re.escape(reason)):
            call()
    assert counts(store) == {"users": 0, "items": 0, "interactions": 0}


def test_every_bad_field_is_listed_and_nothing_is_stored(store):
    with pytest.raises(ValidationError) as caught:
        put_item(
            store,
            "i1",
            title=7,
            categories=["ok", "a|b", ""],
            available="yes",
            attributes={"title": "x", "tags": ["a"], "score": float("inf"), 3: "x"},
        )
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "title",
        "categories[1]",
        "categories[2]",
        "available",
        "attributes.title",
        "attributes.tags",
        "attributes.score",
        "attributes",
    ]
    assert "give each category as its own entry" in problems[1]
    with pytest.raises(ValidationError, match="give an object"):
        put_user(store, "u1", ["not", "a", "dict"])
    with pytest.raises(ValidationError, match="field of its own"):
        put_user(store, "u1", {"user_id": "someone else"})
    assert counts(store) == {"users": 0, "items": 0, "interactions": 0}
