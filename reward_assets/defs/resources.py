"""The resources every asset, op and sensor takes: the settings and the three stores.

The stores take their locations from the one `SettingsResource`, so overriding a setting
(a test's data folder, a deployment's warehouse) moves every reader and writer together.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import Field

from reward_assets.ml.registry import ModelRegistry
from reward_assets.ops.store import OpsStore, open_ops_store
from reward_assets.settings import Settings
from reward_assets.warehouse.store import Warehouse, open_warehouse


class SettingsResource(dg.ConfigurableResource):
    """The project's settings: environment variables and `.env` (see `Settings` and
    `.env.example`), read when a run starts; `overrides` replaces single fields by name,
    e.g. `SettingsResource(overrides={"as_of": "2023-08-27"})`."""

    overrides: dict[str, str] = Field(default_factory=dict)

    def get(self) -> Settings:
        return Settings(**self.overrides)


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse of WAREHOUSE_URL (default: DuckDB under DATA_DIR)."""

    settings: SettingsResource

    @contextmanager
    def open(self) -> Iterator[Warehouse]:
        # Opened per step and disposed after it, so no process keeps a DuckDB file locked.
        with open_warehouse(self.settings.get().resolved_warehouse_url()) as warehouse:
            warehouse.ensure_schemas()
            yield warehouse


class LandingResource(dg.ConfigurableResource):
    """The landing folder of the input contract (DATA_DIR)."""

    settings: SettingsResource

    @property
    def path(self) -> Path:
        return self.settings.get().data_dir


class OpsStoreResource(dg.ConfigurableResource):
    """The operational store of OPS_DB_URL (default: SQLite under DATA_DIR) and the model
    registry whose artefacts live under MODELS_DIR."""

    settings: SettingsResource

    @contextmanager
    def open(self) -> Iterator[OpsStore]:
        with open_ops_store(self.settings.get().resolved_ops_db_url()) as store:
            yield store

    @contextmanager
    def registry(self) -> Iterator[ModelRegistry]:
        root = self.settings.get().resolved_models_dir()
        with self.open() as store:
            yield ModelRegistry(store, root)


def store_kinds(settings: Settings) -> dict[str, str]:
    """The kind each asset declares for the default stores (duckdb, sqlite) -> the kind of
    the store configured, so the UI shows `postgres` on a PostgreSQL deployment."""

    def kind(url: str, default: str) -> str:
        return "postgres" if url.startswith("postgresql") else default

    return {
        "duckdb": kind(settings.resolved_warehouse_url(), "duckdb"),
        "sqlite": kind(settings.resolved_ops_db_url(), "sqlite"),
    }


def executor(settings: Settings) -> dg.ExecutorDefinition:
    # DuckDB admits one writing process: every step of a run stays in the run's process.
    on_duckdb = settings.resolved_warehouse_url().startswith("duckdb")
    choice = settings.executor
    if choice == "auto":
        choice = "in_process" if on_duckdb else "multiprocess"
    if on_duckdb and choice != "in_process":
        raise ValueError(
            f"EXECUTOR={choice} needs a warehouse several processes can write: "
            "DuckDB allows one, so set WAREHOUSE_URL to PostgreSQL or EXECUTOR=auto"
        )
    if choice == "celery":
        # An optional extra: DuckDB users never need it installed.
        from dagster_celery import celery_executor

        return celery_executor.configured(
            {"broker": settings.celery_broker_url, "backend": settings.celery_backend_url}
        )
    if choice == "in_process":
        return dg.in_process_executor
    # Steps fork from a server that has imported the code once, instead of each step
    # paying seconds of imports (Dagster, pandas, GX) in a fresh interpreter.
    return dg.multiprocess_executor.configured(
        {
            "start_method": {
                "forkserver": {
                    "preload_modules": ["reward_assets.definitions", "reward_assets.quality.gx"]
                }
            }
        }
    )


@dg.definitions
def resources() -> dg.Definitions:
    settings = SettingsResource()
    return dg.Definitions(
        resources={
            "settings": settings,
            "warehouse": WarehouseResource(settings=settings),
            "landing": LandingResource(settings=settings),
            "ops": OpsStoreResource(settings=settings),
        },
        executor=executor(settings.get()),
    )
