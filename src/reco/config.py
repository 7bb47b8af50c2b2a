"""Settings: one object, read from the environment (prefix ``RECO_``), passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything that configures a reco installation.

    Each field can be set with an environment variable named ``RECO_<FIELD>``,
    e.g. ``RECO_HOME=/srv/reco`` or ``RECO_DATABASE_URL=postgresql+psycopg://...``.
    """

    model_config = SettingsConfigDict(env_prefix="RECO_", extra="ignore")

    home: Path = Field(Path("var"), description="Where the store, models and caches live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the store; default: SQLite under home."
    )
    data_dir: Path | None = Field(
        None, description="A folder holding MovieLens datasets, searched before downloading."
    )
    models: list[str] = Field(
        ["popularity", "itemknn", "als", "ease"],
        description="Models that `reco train` and `reco evaluate` fit, by registry name.",
    )
    model_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='Parameters per model, e.g. RECO_MODEL_PARAMS=\'{"als": {"factors": 128}}\'.',
    )
    seed: int = Field(42, description="Seed for every random choice (splits, models).")

    @property
    def resolved_database_url(self) -> str:
        """The store's URL: the configured one, or SQLite in WAL mode under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'reco.db').resolve()}"

    @property
    def models_dir(self) -> Path:
        """Folder of versioned model artifacts."""
        return self.home / "models"

    @property
    def cache_dir(self) -> Path:
        """Folder of downloaded datasets."""
        return self.home / "cache"
