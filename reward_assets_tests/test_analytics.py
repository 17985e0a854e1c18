"""Daily analytics: the numbers, range backfills that equal single days, and the report."""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from reward_assets.analytics.report import (
    DAILY_TABLES,
    RANGE_TABLES,
    NotMaterialized,
    range_report,
    range_uplift,
    welch_interval,
)
from reward_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.warehouse.snapshots import SERVED_TABLES, open_reader, publish
from reward_assets.warehouse.store import Warehouse

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DG = Path(sys.executable).parent / "dg"
DAILY_KEYS = [dg.AssetKey(table.rpartition(".")[2]) for table in DAILY_TABLES]
BACKFILL_DAYS = 30


def test_welch_interval_matches_the_per_customer_computation():
    rng = np.random.default_rng(3)
    contacted = rng.poisson(1.3, size=4000)
    holdout = rng.poisson(1.0, size=300)

    interval = welch_interval(
        len(contacted),
        contacted.sum(),
        (contacted**2).sum(),
        len(holdout),
        holdout.sum(),
        (holdout**2).sum(),
    )

    se = np.sqrt(contacted.var(ddof=1) / len(contacted) + holdout.var(ddof=1) / len(holdout))
    assert interval.uplift == pytest.approx(contacted.mean() - holdout.mean())
    assert interval.standard_error == pytest.approx(se)
    assert interval.ci_low == pytest.approx(interval.uplift - 1.96 * se, rel=1e-3)
    assert interval.ci_high == pytest.approx(interval.uplift + 1.96 * se, rel=1e-3)


def test_an_arm_of_one_customer_has_no_interval():
    interval = welch_interval(100, 120, 200, 1, 2, 4)

    assert interval.uplift == pytest.approx(1.2 - 2.0)
    assert (interval.standard_error, interval.ci_low, interval.ci_high) == (None, None, None)


def _measured_and_truth(world):
    truth = json.loads((world.truth_dir / "params.json").read_text())["uplift"]
    config = world.config
    last_day = config.start_date + dt.timedelta(days=config.days - 1)
    warehouse = world.warehouse()
    try:
        return range_uplift(warehouse, config.start_date, last_day), truth
    finally:
        warehouse.dispose()


def test_measured_uplift_is_the_seeds_realised_difference(seeded_world):
    """Over the seeded period the arms and their means are the seed's own, and the planted
    uplift lies within three standard errors on every seed."""
    measured, truth = _measured_and_truth(seeded_world)

    assert measured.contacted_customers == truth["population_contacted"]
    assert measured.holdout_customers == truth["population_holdout"]
    assert measured.contacted_rate == pytest.approx(
        truth["realized_redemptions_per_customer_contacted"], abs=0.01
    )
    assert measured.holdout_rate == pytest.approx(
        truth["realized_redemptions_per_customer_holdout"], abs=0.01
    )
    planted = truth["expected_absolute_uplift_redemptions_per_customer"]
    assert planted > 0
    assert abs(measured.uplift - planted) < 3 * measured.standard_error


def test_the_95_percent_interval_contains_the_planted_uplift_on_the_default_seed(worlds):
    measured, truth = _measured_and_truth(worlds("default"))

    planted = truth["expected_absolute_uplift_redemptions_per_customer"]
    assert measured.ci_low < planted < measured.ci_high
    assert measured.ci_high - measured.ci_low < 4 * planted


def test_the_report_needs_the_analytics_tables(duckdb_warehouse):
    with pytest.raises(NotMaterialized, match="analytics.analytics_email_funnel"):
        range_report(duckdb_warehouse, dt.date(2023, 5, 1), dt.date(2023, 5, 31))


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2023-06-01", "2023-05-01", "before start_date"),
        ("2022-01-01", "2023-05-01", "at most 366"),
    ],
)
def test_a_bad_range_is_refused_with_the_reason(duckdb_warehouse, start, end, message):
    with pytest.raises(ValueError, match=message):
        range_report(duckdb_warehouse, dt.date.fromisoformat(start), dt.date.fromisoformat(end))


def test_the_ui_charts_of_a_whole_year_stay_under_the_inline_limit():
    from reward_assets.analytics.charts import POINTS, ui_charts

    rng = np.random.default_rng(3)
    days = [(dt.date(2023, 1, 1) + dt.timedelta(days=n)).isoformat() for n in range(366)]
    report = {
        "email_funnel": {"totals": {"sent": 9000, "delivered": 8800, "opened": 0, "clicked": 0}},
        "revenue": {
            "daily": [
                {"day": d, "currency": c, "net_revenue": str(rng.uniform(-5e3, 9e6))}
                for d in days
                for c in ("EUR", "GBP", "USD")
            ]
        },
        "customers": {
            "daily": [{"day": d, "active_customers": int(rng.integers(9e5))} for d in days]
        },
        "redemptions": {"daily": [{"day": d, "redemptions": int(rng.integers(9e4))} for d in days]},
        "uplift": {
            "daily": [
                {"day": d, "uplift": None if n % 9 else rng.normal()} for n, d in enumerate(days)
            ],
            "uplift": 0.01,
            "ci_low": -0.2,
            "ci_high": 0.3,
        },
    }
    charts = ui_charts(report)
    assert len(charts) == 7  # the funnel, three currencies, customers, redemptions, uplift
    assert all(len(chart) < 1000 for chart in charts.values())
    line = charts["chart: redemptions per day"]
    points = line.split("points='")[1].split("'")[0].split(",")
    assert 2 * 16 <= len(points) <= 2 * max(POINTS)  # a year averaged into a few dozen
    assert (
        "whole range 0.0100 (95% CI -0.2000 to 0.3000)"
        in charts["chart: uplift per day (contacted minus holdout)"]
    )
    assert "| clicked | `` | 0 |" in charts["chart: email funnel"]


# --- the Dagster assets on a scored warehouse -------------------------------------------


def _copy_warehouse(source: Warehouse, target: Path) -> str:
    source.dispose()
    path = Path(source.url.removeprefix("duckdb:///"))
    shutil.copy(path, target)
    return f"duckdb:///{target}"


class Stores:
    """A copy of the scored warehouse and its own data folder, and runs of analytics_job."""

    def __init__(self, root: Path, source: Warehouse):
        root.mkdir()
        self.data_dir = root / "data"
        self.url = _copy_warehouse(source, root / "warehouse.duckdb")

    def run(self, *runs: dict) -> list[dg.ExecuteInProcessResult]:
        """Each of `runs` (keyword arguments of execute_in_process), in order; all succeed."""
        from reward_assets.definitions import defs

        results = []
        with pytest.MonkeyPatch.context() as patch:
            patch.delenv("AS_OF", raising=False)
            patch.setenv("DATA_DIR", str(self.data_dir))
            patch.setenv("WAREHOUSE_URL", self.url)
            job = defs().resolve_job_def("analytics_job")
            with dg.DagsterInstance.ephemeral() as instance:
                for kwargs in runs:
                    results.append(job.execute_in_process(instance=instance, **kwargs))
        assert all(r.success for r in results)
        return results

    def tables(self) -> dict[str, pd.DataFrame]:
        return sorted_tables(self.url, DAILY_TABLES)


def sorted_tables(url: str, tables) -> dict[str, pd.DataFrame]:
    """Each table's rows, in the order of its key columns, then of the others: a key need
    not be unique (a reward's redemptions of one day can carry two categories), and the
    order a table stores ties in is no result."""
    warehouse = Warehouse(url)
    try:
        frames = {table: warehouse.frame(f"SELECT * FROM {table}") for table in tables}
        return {
            table: frame.sort_values(
                list(dict.fromkeys([*SERVED_TABLES[table].split(", "), *frame.columns]))
            ).reset_index(drop=True)
            for table, frame in frames.items()
        }
    finally:
        warehouse.dispose()


@pytest.fixture(scope="module")
def backfill(scored, tmp_path_factory):
    """The last 30 days up to AS_OF, once as one range run and once as 30 single days."""
    _, warehouse, _ = scored
    root = tmp_path_factory.mktemp("analytics")
    as_of = resolve_as_of(warehouse)
    days = [as_of - dt.timedelta(days=n) for n in range(BACKFILL_DAYS - 1, -1, -1)]
    ranged = Stores(root / "ranged", warehouse)
    single = Stores(root / "single", warehouse)
    tags = {RANGE_START_TAG: days[0].isoformat(), RANGE_END_TAG: days[-1].isoformat()}
    [result] = ranged.run({"tags": tags})
    single.run(*({"partition_key": d.isoformat(), "asset_selection": DAILY_KEYS} for d in days))
    return ranged, single, days, result


def test_a_30_day_backfill_equals_30_single_days_and_a_rerun_changes_nothing(backfill):
    ranged, single, days, _ = backfill
    by_range, by_day = ranged.tables(), single.tables()

    for table in DAILY_TABLES:
        assert not by_range[table].empty, table
        assert set(pd.to_datetime(by_range[table].day).dt.date) <= set(days), table
        pd.testing.assert_frame_equal(by_range[table], by_day[table], check_exact=True)
    funnel_days = set(pd.to_datetime(by_range["analytics.analytics_email_funnel"].day).dt.date)
    assert funnel_days == set(days)

    tags = {RANGE_START_TAG: days[0].isoformat(), RANGE_END_TAG: days[-1].isoformat()}
    ranged.run({"tags": tags})
    again = ranged.tables()
    for table in DAILY_TABLES:
        pd.testing.assert_frame_equal(again[table], by_range[table], check_exact=True)


def test_daily_numbers_agree_with_the_marts(backfill):
    ranged, _, days, _ = backfill
    warehouse = Warehouse(ranged.url)
    try:
        window = {
            "start": dt.datetime.combine(days[0], dt.time()),
            "end": dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time()),
        }
        redemptions = warehouse.scalar(
            "SELECT COUNT(*) FROM marts.fct_redemptions "
            "WHERE redeemed_at >= :start AND redeemed_at < :end",
            window,
        )
        net = warehouse.scalar(
            "SELECT SUM(amount) FROM marts.fct_transactions "
            "WHERE occurred_at >= :start AND occurred_at < :end",
            window,
        )
        sent = warehouse.scalar(
            "SELECT COUNT(DISTINCT message_id) FROM marts.fct_engagement_events "
            "WHERE event_type = 'sent' AND occurred_at >= :start AND occurred_at < :end",
            window,
        )
        scored_customers = warehouse.scalar("SELECT COUNT(*) FROM ml.churn_scores")
        tables = ranged.tables()
    finally:
        warehouse.dispose()

    assert tables["analytics.analytics_redemptions"].redemptions.sum() == redemptions
    assert tables["analytics.analytics_revenue"].net_revenue.sum() == pytest.approx(net)
    assert tables["analytics.analytics_email_funnel"].sent.sum() == sent
    churn = tables["analytics.analytics_churn_risk"]
    assert churn.customers.sum() == scored_customers
    assert churn.share.sum() == pytest.approx(1.0)
    recommendations = tables["analytics.analytics_recommendations"]
    assert len(recommendations) == 1
    assert 0.9 < recommendations.coverage.iloc[0] <= 1.0
    assert not recommendations.window_complete.iloc[0]  # the 14 days reach past AS_OF


def test_the_report_shows_charts_in_the_ui_and_writes_a_standalone_page(backfill):
    ranged, _, days, result = backfill
    materialization = next(
        m
        for m in result.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey("analytics_report")
    )
    metadata = materialization.materialization.metadata

    assert metadata["start_date"].value == days[0].isoformat()
    assert metadata["end_date"].value == days[-1].isoformat()
    charts = {k: v.value for k, v in metadata.items() if k.startswith("chart: ")}
    assert {
        "chart: email funnel",
        "chart: active customers per day",
        "chart: redemptions per day",
        "chart: uplift per day (contacted minus holdout)",
    } <= set(charts)
    assert any(name.startswith("chart: net revenue per day (") for name in charts)
    # Under the UI's inline limit: shown on the asset without "Show Markdown".
    assert all(0 < len(chart) < 1000 for chart in charts.values()), charts
    assert f"| sent | `{'█' * 24}` |" in charts["chart: email funnel"]
    line = charts["chart: redemptions per day"]
    assert line.startswith("![redemptions per day](data:image/svg+xml,%3Csvg")
    assert "%3Cpolyline" in line and line.endswith(" per day")
    stored = sum(len(repr(entry.value)) for entry in metadata.values())
    assert stored < 20_000, stored  # the images stay in the HTML page, not the event log
    assert "base64" not in metadata["report"].value
    page = Path(metadata["html"].value)
    assert page.parent == ranged.data_dir / "reports"
    text = page.read_text()
    assert text.count('src="data:image/png;base64,') == 3
    assert "Redemptions by category" in text and "<table>" in text

    warehouse = Warehouse(ranged.url)
    try:
        report = range_report(warehouse, days[0], days[-1])
    finally:
        warehouse.dispose()
    assert metadata["uplift"].value == pytest.approx(report["uplift"]["uplift"])
    assert metadata["redemptions"].value == report["redemptions"]["redemptions"] > 0
    json.dumps(report)  # JSON-ready as the API serves it


def test_the_snapshots_give_the_same_report_as_the_warehouse(backfill):
    ranged, _, days, _ = backfill
    warehouse = Warehouse(ranged.url)
    # The marts' snapshots, as their own assets publish them after each build.
    for table in RANGE_TABLES:
        publish(warehouse, table, ranged.data_dir)
    reader = open_reader(ranged.url, ranged.data_dir)
    try:
        direct = range_report(warehouse, days[0], days[-1])
        served = range_report(reader, days[0], days[-1])
    finally:
        warehouse.dispose()
        reader.dispose()

    assert served == direct


def test_dg_launch_runs_an_analytics_date_range_in_one_run(scored, tmp_path):
    """The README's command: every analytics asset over a date range, one run."""
    _, warehouse, _ = scored
    stores = Stores(tmp_path / "launch", warehouse)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if k not in {"AS_OF", "HOLDOUT_SHARE"}}
    env |= {
        "DAGSTER_HOME": str(home),
        "DATA_DIR": str(stores.data_dir),
        "WAREHOUSE_URL": stores.url,
        "PATH": f"{DG.parent}{os.pathsep}{env.get('PATH', '')}",
    }
    command = [
        str(DG),
        "launch",
        "--assets",
        "group:analytics",
        "--partition-range",
        "2023-05-01...2023-05-07",
    ]
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert output.count("RUN_SUCCESS") == 1
    funnel = stores.tables()["analytics.analytics_email_funnel"]
    assert [f"{d:%Y-%m-%d}" for d in pd.to_datetime(funnel.day)] == [
        f"2023-05-0{n}" for n in range(1, 8)
    ]


@pytest.mark.postgres
def test_duckdb_and_postgres_give_the_same_daily_analytics(tmp_path, run_pipeline, pg_url):
    from reward_assets.seed.generate import generate
    from reward_assets.seed.model import SeedConfig
    from reward_assets_tests.conftest import PLATFORM_GROUPS

    data = tmp_path / "data"
    generate(SeedConfig(output=data, customers=400, rewards=40, days=30, seed=11))
    tables = [t for t in DAILY_TABLES if "churn_risk" not in t and "recommendations" not in t]
    selection = dg.AssetSelection.groups(*PLATFORM_GROUPS) | dg.AssetSelection.assets(
        *(t.rpartition(".")[2] for t in tables)
    )
    frames = {}
    for name, url in (("duckdb", f"duckdb:///{tmp_path / 'w.duckdb'}"), ("postgres", pg_url)):
        run_pipeline(data, url, "2023-03-01", "2023-03-30", selection=selection)
        frames[name] = sorted_tables(url, tables)

    for table in tables:
        duck, pg = frames["duckdb"][table], frames["postgres"][table]
        assert len(duck) > 0, table
        duck["day"] = pd.to_datetime(duck.day)
        pg["day"] = pd.to_datetime(pg.day)
        pd.testing.assert_frame_equal(
            duck.astype({c: float for c in duck.select_dtypes("number")}),
            pg.astype({c: float for c in pg.select_dtypes("number")}),
            check_dtype=False,
            rtol=1e-9,
        )


def test_a_whole_run_fills_the_analytics_that_read_the_scored_day(scored, tmp_path):
    """`make run`'s order: the history day is written before the analytics that read it."""
    from reward_assets.definitions import defs
    from reward_assets.pipeline import materialize_all

    _, warehouse, data_dir = scored
    as_of = resolve_as_of(warehouse)
    url = _copy_warehouse(warehouse, tmp_path / "warehouse.duckdb")
    copy = Warehouse(url)
    with copy.begin() as conn:  # the day not recorded yet, as before its first scoring
        # recommendation_log is a view over the spans and the days (recommend/log.py).
        for table in ("ml.score_history", "ml.recommendation_spans", "ml.recommendation_days"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    copy.dispose()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("AS_OF", raising=False)
        patch.setenv("DATA_DIR", str(data_dir))  # the scored world's model registry
        patch.setenv("WAREHOUSE_URL", url)
        with dg.DagsterInstance.ephemeral() as instance:
            summary = materialize_all(
                defs(), instance, as_of, as_of, dg.AssetSelection.groups("scoring", "analytics")
            )

    assert summary.success, summary
    tables = sorted_tables(url, DAILY_TABLES)
    assert len(tables["analytics.analytics_churn_risk"]) > 0
    assert len(tables["analytics.analytics_recommendations"]) == 1
    assert summary.report is not None and Path(summary.report).is_file()
