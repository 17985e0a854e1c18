"""The Dagster UI shows the data: a real `dagster-webserver` on an instance where
`dim_customers` and `analytics_report` were materialised answers its GraphQL API (over
HTTP, as the UI asks it) with dim_customers' column schema and the report's charts, each
a small Markdown entry the UI renders inline. `scripts/ui_screenshot.py` starts the
webserver and asks; with Chromium installed, it also captures the pages."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import dagster as dg
import pytest

from reward_assets.ingest.clock import resolve_as_of
from reward_assets.warehouse.store import Warehouse

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ui_screenshot.py"


def _script():
    spec = importlib.util.spec_from_file_location("ui_screenshot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ui = _script()


@pytest.fixture(scope="module")
def ui_url(scored, tmp_path_factory):
    """The webserver on an instance holding a materialisation of both assets, made on a
    copy of the scored warehouse (the report's day: its as-of day)."""
    from reward_assets.definitions import defs

    _, source, _ = scored
    root = tmp_path_factory.mktemp("ui")
    source.dispose()
    shutil.copy(source.url.removeprefix("duckdb:///"), root / "warehouse.duckdb")
    url = f"duckdb:///{root / 'warehouse.duckdb'}"
    home = root / "dagster_home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("AS_OF", raising=False)
        patch.setenv("DATA_DIR", str(root / "data"))
        patch.setenv("WAREHOUSE_URL", url)
        warehouse = Warehouse(url)
        day = resolve_as_of(warehouse).isoformat()
        warehouse.dispose()
        loaded = defs()
        with dg.DagsterInstance.local_temp(str(home)) as instance:
            mart = loaded.resolve_implicit_global_asset_job_def().execute_in_process(
                instance=instance, asset_selection=[dg.AssetKey("dim_customers")]
            )
            report = loaded.resolve_job_def("analytics_job").execute_in_process(
                instance=instance, partition_key=day
            )
        assert mart.success and report.success
        with ui.webserver(home, ui.free_port()) as base:
            yield base, url


def test_dim_customers_shows_its_column_schema_in_the_ui(ui_url):
    base, url = ui_url
    metadata = ui.latest_metadata(base, "dim_customers")
    warehouse = Warehouse(url)
    try:
        columns = warehouse.columns("marts.dim_customers")
    finally:
        warehouse.dispose()
    assert ui.column_schema(metadata) == columns
    assert ("is_holdout", "BOOLEAN") in columns
    assert metadata["entries"]["dagster/table_name"]["text"] == "warehouse.marts.dim_customers"
    assert {"sql", "duckdb"} <= set(metadata["kinds"])


def test_analytics_report_shows_its_charts_inline_in_the_ui(ui_url):
    base, _ = ui_url
    charts = ui.charts(ui.latest_metadata(base, "analytics_report"))
    assert {"email funnel", "redemptions per day", "active customers per day"} <= set(charts)
    # Under 1,000 characters the UI renders Markdown in place, not behind a button.
    assert all(0 < len(text) < 1000 for text in charts.values())
    assert "| sent | `█" in charts["email funnel"]
    assert charts["redemptions per day"].startswith("![redemptions per day](data:image/svg+xml,")
