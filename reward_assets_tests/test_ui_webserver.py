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
# A SQL mart and a served table a Python asset writes.
SCHEMA_ASSETS = {"dim_customers": "marts.dim_customers", "churn_scores": "ml.churn_scores"}


@pytest.fixture(scope="module")
def ui_url(scored, tmp_path_factory):
    """The webserver on an instance holding a materialisation of both assets, made on a
    copy of the scored warehouse (the report's day: its as-of day)."""
    from reward_assets.definitions import defs

    _, source, data_dir = scored
    root = tmp_path_factory.mktemp("ui")
    source.dispose()
    shutil.copy(source.url.removeprefix("duckdb:///"), root / "warehouse.duckdb")
    shutil.copytree(data_dir, root / "data")  # the model registry churn_scores reads
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
            tables = loaded.resolve_implicit_global_asset_job_def().execute_in_process(
                instance=instance, asset_selection=[dg.AssetKey(k) for k in SCHEMA_ASSETS]
            )
            report = loaded.resolve_job_def("analytics_job").execute_in_process(
                instance=instance, partition_key=day
            )
        assert tables.success and report.success
        with ui.webserver(home, ui.free_port()) as base:
            yield base, url


def test_tables_show_their_column_schema_in_the_ui(ui_url):
    base, url = ui_url
    warehouse = Warehouse(url)
    try:
        for asset, table in SCHEMA_ASSETS.items():
            metadata = ui.latest_metadata(base, asset)
            assert ui.column_schema(metadata) == warehouse.columns(table), asset
            assert metadata["entries"]["dagster/table_name"]["text"] == f"warehouse.{table}"
            assert "duckdb" in metadata["kinds"], asset
        dim = dict(warehouse.columns("marts.dim_customers"))
    finally:
        warehouse.dispose()
    assert dim["is_holdout"] == "BOOLEAN" and list(dim)[0] == "customer_id"


def test_analytics_report_shows_its_charts_inline_in_the_ui(ui_url):
    base, _ = ui_url
    charts = ui.charts(ui.latest_metadata(base, "analytics_report"))
    assert {"email funnel", "redemptions per day", "active customers per day"} <= set(charts)
    # Under 1,000 characters the UI renders Markdown in place, not behind a button.
    assert all(0 < len(text) < 1000 for text in charts.values())
    assert "| sent | `█" in charts["email funnel"]
    assert charts["redemptions per day"].startswith("![redemptions per day](data:image/svg+xml,")
