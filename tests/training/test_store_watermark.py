"""Training records the store watermark of the snapshot it trained on (null otherwise)."""

from __future__ import annotations

import json

from reco.config import Settings
from reco.data.schema import Frames
from reco.data.synthetic import generate
from reco.store import ingest, load_frames, open_store
from reco.store.events import append_events, events_since, watermark
from reco.training.job import train

from .conftest import FAST_PARAMS, fast_config


def _manifest(result) -> dict:
    return json.loads((result.path / "manifest.json").read_text())


def test_training_records_the_watermark_of_the_snapshot_it_read(tmp_path):
    settings = Settings(home=tmp_path / "home", pipeline=fast_config(), model_params=FAST_PARAMS)
    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        ingest(engine, generate(n_users=120, n_items=80, n_interactions=3_000, seed=5), source="s")
        append_events(engine, [{"user_id": "u1", "item_id": "i1", "event_id": "before"}])
        frames = load_frames(engine)
        snapshot = watermark(engine)
        # Stored after the snapshot: not in the model, so the service adds it on top.
        append_events(engine, [{"user_id": "u1", "item_id": "i2", "event_id": "after"}])

        result = train(frames, settings)
        recorded = _manifest(result)["store_watermark"]
        assert isinstance(recorded, int) and recorded == snapshot == frames.watermark
        assert watermark(engine) > recorded
        later = events_since(engine, ["u1"], recorded)
        assert later["event_id"].tolist() == ["after"]
    finally:
        engine.dispose()


def test_frames_not_read_from_the_store_record_null(tmp_path):
    settings = Settings(home=tmp_path / "home", pipeline=fast_config(), model_params=FAST_PARAMS)
    frames = generate(n_users=120, n_items=80, n_interactions=3_000, seed=5)
    assert type(frames) is Frames
    result = train(frames, settings)
    assert _manifest(result)["store_watermark"] is None
