"""Project settings: the one place that reads the environment (and `.env`).

Read lazily through `get_settings()`, never at import time, so tests and the Dagster
UI can point the same code at other folders and databases.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # Empty values (`AS_OF=` in .env.example) mean "use the default".
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    data_dir: Path = Field(Path("data"), description="Landing folder of the input contract.")
    warehouse_url: str = Field(
        "", description="SQLAlchemy URL of the warehouse; empty means DuckDB under DATA_DIR."
    )
    executor: Literal["auto", "in_process", "multiprocess", "celery"] = Field(
        "auto", description="auto: in-process on DuckDB (one writer), multiprocess otherwise."
    )
    celery_broker_url: str = "pyamqp://guest:guest@127.0.0.1:5672//"
    celery_backend_url: str = "rpc://"
    as_of: dt.date | None = Field(None, description="Data 'today'; empty means latest event date.")
    partitions_start_date: dt.date = dt.date(2023, 3, 1)
    holdout_share: float = Field(0.05, ge=0, le=1)
    quarantine_max_share: float = Field(
        0.05, ge=0, le=1, description="Quarantined share above which the ingestion check warns."
    )
    ops_db_url: str = Field(
        "",
        description="SQLAlchemy URL of the operational store; empty means SQLite under DATA_DIR.",
    )
    models_dir: Path | None = Field(
        None, description="Model artefacts; empty means DATA_DIR/models."
    )
    churn_horizon_days: int = Field(60, ge=1, description="Churn = no purchase in this many days.")
    recommendations_k: int = Field(10, ge=1, le=100)
    exploration_share: float = Field(0.1, ge=0, le=1)
    quiet_hours_start: int = Field(21, ge=0, le=23, description="Local hour quiet hours begin.")
    quiet_hours_end: int = Field(8, ge=0, le=23, description="Local hour quiet hours end.")
    retrain_cron: str = Field("0 4 * * 1", description="When the models retrain (UTC cron).")

    def resolved_warehouse_url(self) -> str:
        return self.warehouse_url or f"duckdb:///{(self.data_dir / 'warehouse.duckdb').as_posix()}"

    def resolved_ops_db_url(self) -> str:
        return self.ops_db_url or f"sqlite:///{(self.data_dir / 'ops.sqlite').as_posix()}"

    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"


@lru_cache
def get_settings() -> Settings:
    return Settings()
