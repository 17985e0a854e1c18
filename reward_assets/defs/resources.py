from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster_celery import celery_executor

from reward_assets.ml.registry import ModelRegistry
from reward_assets.ops.store import OpsStore, open_ops_store
from reward_assets.settings import Settings, get_settings
from reward_assets.warehouse.store import Warehouse, open_warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse; `url` unset means WAREHOUSE_URL, else DuckDB under DATA_DIR."""

    url: str | None = None

    @contextmanager
    def open(self) -> Iterator[Warehouse]:
        # Opened per step and disposed after it, so no process keeps a DuckDB file locked.
        with open_warehouse(self.url or get_settings().resolved_warehouse_url()) as warehouse:
            warehouse.ensure_schemas()
            yield warehouse


class LandingResource(dg.ConfigurableResource):
    """The landing folder of the input contract; `data_dir` unset means DATA_DIR."""

    data_dir: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else get_settings().data_dir


class OpsStoreResource(dg.ConfigurableResource):
    """The operational store; `url` unset means OPS_DB_URL, else SQLite under DATA_DIR."""

    url: str | None = None
    models_dir: str | None = None

    @contextmanager
    def open(self) -> Iterator[OpsStore]:
        with open_ops_store(self.url or get_settings().resolved_ops_db_url()) as store:
            yield store

    @contextmanager
    def registry(self) -> Iterator[ModelRegistry]:
        settings = get_settings()
        root = Path(self.models_dir) if self.models_dir else settings.resolved_models_dir()
        with self.open() as store:
            yield ModelRegistry(store, root)


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
    return dg.Definitions(
        resources={
            "warehouse": WarehouseResource(),
            "landing": LandingResource(),
            "ops": OpsStoreResource(),
        },
        executor=executor(get_settings()),
    )
