"""An event's stream payload: exactly what json.dumps writes, and read back whole."""

from __future__ import annotations

import json

import pytest

from reco.events import Event


@pytest.mark.parametrize(
    "event",
    [
        Event(1, "u1", "i1", "view", 1_700_000_000.0),
        Event(2, 'quote " back\\slash\nnew line', "ünïcødé ☃", "rating", 1.5, 4.25),
        Event(3, "tab\there", "control\x01", "click", 0.0, 1e-300),
        Event(4, "a", "b", "like", 32_503_679_999.0, -3.0),
    ],
)
def test_the_payload_is_json_and_round_trips(event):
    payload = event.payload()
    parts = [event.user, event.item, event.event_type, event.timestamp, event.value]
    assert payload == json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    assert Event.from_entry(event.entry_id, {"e": payload}) == event


def test_an_entry_that_is_not_an_event_is_named():
    with pytest.raises(ValueError, match="not a reco event"):
        Event.from_entry("5-0", {"e": '["u", "i", "view", "yesterday", null]'})
