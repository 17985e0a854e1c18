from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from reward_assets.settings import get_settings
from reward_assets.storage.warehouse import Warehouse, open_warehouse


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


@dg.definitions
def resources() -> dg.Definitions:
    # DuckDB admits one writing process: keep every step of a run in the run's process.
    on_duckdb = get_settings().resolved_warehouse_url().startswith("duckdb")
    return dg.Definitions(
        resources={"warehouse": WarehouseResource(), "landing": LandingResource()},
        executor=dg.in_process_executor if on_duckdb else dg.multiprocess_executor,
    )
