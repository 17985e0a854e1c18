"""Project settings: the one place that reads the environment (and `.env`).

Read when something needs it, never at import time: Dagster code gets it through
`SettingsResource` (`defs/resources.py`), the API, the CLI and the scripts build
`Settings()` when they start. So tests and deployments point the same code at other
folders and databases through the environment or the resource's overrides.
"""

from __future__ import annotations

import datetime as dt
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
    snapshot_max_shrink: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of loaded customers or rewards a new snapshot may drop; "
        "a larger drop fails the load and keeps the previous rows (1 allows any).",
    )
    ops_db_url: str = Field(
        "",
        description="SQLAlchemy URL of the operational store; empty means SQLite under DATA_DIR.",
    )
    models_dir: Path | None = Field(
        None, description="Model artefacts; empty means DATA_DIR/models."
    )
    churn_horizon_days: int = Field(60, ge=1, description="Churn = no purchase in this many days.")
    churn_min_auc: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Absolute validation ROC-AUC floor for the churn model, on top of beating "
        "the recency baseline; empty means none.",
    )
    engagement_min_auc: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Absolute held-out open ROC-AUC floor for the engagement model, on top of "
        "beating the base-rate baseline; empty means none.",
    )
    training_max_rows: int = Field(
        1_000_000,
        ge=1,
        description="Training rows churn_model and engagement_model fit in full; above it, "
        "they fit on a stratified sample sized by the learning curve (ml/learning_curve.py).",
    )
    recommendations_k: int = Field(10, ge=1, le=100)
    exploration_share: float = Field(0.1, ge=0, le=1)
    ranking_min_lift: float = Field(
        1.0,
        ge=0,
        description="Validation nDCG@10 the served ranker needs, as a multiple of popularity's.",
    )
    quiet_hours_start: int = Field(21, ge=0, le=23, description="Local hour quiet hours begin.")
    quiet_hours_end: int = Field(8, ge=0, le=23, description="Local hour quiet hours end.")
    retrain_cron: str = Field("0 4 * * 1", description="When the models retrain (UTC cron).")

    # Activation: onboarding, the engagement cycle and its contact rules.
    welcome_max_age_days: int = Field(
        2, ge=0, description="Only sign-ups this recent are welcomed."
    )
    onboarding_batch_size: int = Field(200, ge=1, description="New customers per onboarding run.")
    onboarding_retry_minutes: int = Field(
        30, ge=0, description="Re-request welcomes still undecided this long after a request."
    )
    onboarding_max_attempts: int = Field(3, ge=1)
    followup_days: tuple[int, ...] = Field((3, 7), description="Follow-ups after the welcome.")
    frequency_cap: int = Field(2, ge=0, description="Marketing emails allowed per cap window.")
    frequency_cap_days: int = Field(7, ge=1)
    kill_switch: bool = Field(False, description="true stops all sending (also: emailctl pause).")
    engagement_cycle_cron: str = "0 6 * * *"
    engagement_cycle_timezone: str = Field("UTC", description="IANA zone of the cycle's cron.")
    delivery_cron: str = Field("*/10 * * * *", description="When due emails are sent.")

    # Content: PhiData agents on Groq; without GROQ_API_KEY a template writes every email.
    groq_api_key: str = ""
    groq_model: str = "llama-3.3-70b-versatile"
    groq_base_url: str = Field("", description="Empty means Groq's own endpoint.")
    llm_temperature: float = Field(0.4, ge=0, le=2)
    llm_timeout_seconds: float = Field(10.0, gt=0)
    llm_call_budget: int = Field(500, ge=0, description="LLM calls allowed per run.")
    llm_concurrency: int = Field(4, ge=1)
    llm_breaker_failures: int = Field(5, ge=1, description="Failures in a row that stop calls.")

    # Email delivery: SMTP when SMTP_HOST is set, else .eml files under OUTBOX_DIR.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_timeout_seconds: float = Field(30.0, gt=0)
    email_from: str = "Rewards <rewards@example.com>"
    outbox_dir: Path | None = Field(None, description="Empty means DATA_DIR/outbox.")
    send_lease_seconds: int = Field(300, ge=1, description="After this a claim or send expires.")
    send_max_attempts: int = Field(5, ge=1, description="Transient SMTP errors retried.")
    public_base_url: str = Field(
        "http://localhost:8000", description="Where the API (unsubscribe link) is reachable."
    )
    unsubscribe_secret: str = Field(
        "change-me",
        description="Signs unsubscribe links; set a long random value. The default is "
        "refused outside the embedded demo (DuckDB, SQLite, no SMTP_HOST).",
    )
    unsubscribe_link_days: int = Field(
        180,
        ge=30,
        description="An unsubscribe link works this many days after it was issued or last "
        "sent (at least 30, as CAN-SPAM asks).",
    )

    # Operator alerts (`alerts.py`): failed runs and tables past their freshness policy.
    alert_email_to: str = Field(
        "",
        description="Operator addresses (comma-separated) alerts are mailed to, through the "
        "same mailer as the emails (SMTP_HOST, else .eml files); empty: no alert email.",
    )
    alert_webhook_url: str = Field(
        "",
        description='When set, each alert is also POSTed here as JSON {"text": ...} '
        "(a chat channel's incoming webhook).",
    )
    alert_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of the webhook POST.")
    dagster_ui_url: str = Field(
        "http://localhost:3000", description="Where the Dagster UI is; alerts link to it."
    )

    # Content experiments and provider event webhooks (`content.experiments`, `email.webhooks`).
    experiments_file: Path | None = Field(
        None, description="YAML of the content experiments (e.g. experiments.yml); empty: none."
    )
    email_webhook_secret: str = Field(
        "",
        description="HMAC-SHA256 key of POST /api/events/email (Mailgun: its webhook signing "
        "key); empty: the endpoint refuses every event.",
    )

    # The HTTP API (`make api`).
    api_host: str = Field("127.0.0.1", description="Interface the API listens on.")
    api_port: int = Field(8000, ge=1, le=65535)
    api_key: str = Field(
        "", description="When set, /api requests need it in X-API-Key (not /health, unsubscribe)."
    )
    # Whole hours: even one outlasts a running claim (idempotency.CLAIM_SECONDS), as
    # IdempotencyKeys requires.
    idempotency_ttl_hours: int = Field(
        24,
        gt=0,
        description="An Idempotency-Key replays its answer this long after its request; "
        "then a request with it runs anew, and the stored answer is deleted.",
    )

    def resolved_warehouse_url(self) -> str:
        return self.warehouse_url or f"duckdb:///{(self.data_dir / 'warehouse.duckdb').as_posix()}"

    def resolved_ops_db_url(self) -> str:
        return self.ops_db_url or f"sqlite:///{(self.data_dir / 'ops.sqlite').as_posix()}"

    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    def alert_recipients(self) -> list[str]:
        return [a.strip() for a in self.alert_email_to.split(",") if a.strip()]

    def resolved_outbox_dir(self) -> Path:
        return self.outbox_dir or self.data_dir / "outbox"
