"""The code location: what Dagster loads from reward_assets.definitions, and `dg` on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from reward_assets.defs.partitions import daily_partitions
from reward_assets.ingest.contract import REWARDS
from reward_assets.ingest.load import load_snapshot
from reward_assets.warehouse.sql_models import SQL_DIR
from reward_assets.warehouse.store import Warehouse
from reward_assets_tests.landing_builders import write_basic_landing

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DG = Path(sys.executable).parent / "dg"

INGESTION = {
    "customers",
    "rewards",
    "transactions",
    "redemptions",
    "engagement_events",
    "email_sends",
    "provider_events",
}
MODEL_FILES = {path.stem for path in SQL_DIR.glob("*.sql")}
ML = {"reward_embeddings", "churn_model", "engagement_model", "model_evaluation"}
SCORING = {
    "customer_embeddings",
    "churn_scores",
    "send_time_preferences",
    "engagement_scores",
    "recommendation_sets",
}
HISTORY = {"score_history", "recommendation_log"}
ENGAGEMENT = {"suppression_list", "customer_segments", "engagement_plan", "engagement_messages"}
# The experiment table is rebuilt whole: a send's 7-day window crosses daily partitions.
ANALYTICS_WHOLE = {"analytics_experiments"}
ANALYTICS_DAILY = {name for name in MODEL_FILES if name.startswith("analytics_")} - ANALYTICS_WHOLE
ANALYTICS = ANALYTICS_DAILY | ANALYTICS_WHOLE | {"analytics_report"}
ALL_ASSETS = INGESTION | MODEL_FILES | ML | SCORING | HISTORY | ENGAGEMENT | ANALYTICS
DAILY = {"transactions", "redemptions", "engagement_events"}
# Views over the daily raw tables: no partitions of their own (docs/architecture.md).
STAGING_VIEWS = {"stg_transactions", "stg_redemptions", "stg_engagement_events"}
QUARANTINE = "quarantine_share_within_limit"
CHECK_NAMES = {
    "customers": {QUARANTINE},
    "rewards": {QUARANTINE},
    "transactions": {QUARANTINE},
    "redemptions": {QUARANTINE},
    "engagement_events": {QUARANTINE},
    "stg_transactions": {"transaction_id_unique_not_null", "occurred_at_in_period"},
    "stg_redemptions": {
        "redemption_id_unique_not_null",
        "redeemed_at_in_period",
        "points_spent_non_negative",
    },
    "stg_engagement_events": {"event_id_unique_not_null", "occurred_at_in_period"},
    "dim_customers": {
        "customer_id_unique_not_null",
        "email_valid",
        "points_balance_non_negative",
        "signup_at_not_after_as_of",
    },
    "dim_rewards": {"reward_id_unique_not_null", "points_cost_positive", "inventory_non_negative"},
    "fct_transactions": {"customer_id_in_dim_customers"},
    "fct_redemptions": {"reward_id_in_dim_rewards"},
    "dim_customers_history": {"one_current_version", "versions_do_not_overlap"},
    "customer_features": {"customer_id_unique_not_null", "no_look_ahead"},
    "reward_embeddings": {"ranking_beats_popularity"},
    "churn_model": {"churn_auc_meets_bar"},
    "engagement_model": {"engagement_auc_meets_bar"},
    "engagement_messages": {"no_uncertain_emails"},
    # The served tables Python assets write: dbt_like_sql/<table>.yml.
    "churn_scores": {
        "customer_id_unique_not_null",
        "churn_probability_in_unit_interval",
        "served_by_model",
    },
    "engagement_scores": {"customer_id_unique_not_null", "probabilities_in_unit_interval"},
    "send_time_preferences": {
        "customer_id_unique_not_null",
        "best_local_hour_is_an_hour",
        "served_by_model",
    },
    "recommendation_sets": {
        "rank_unique_per_customer",
        "source_matches_model_version",
        "served_by_a_ranker",
    },
    "customer_segments": {"customer_id_unique_not_null"},
}
NON_BLOCKING = {(asset, QUARANTINE) for asset in INGESTION - {"email_sends", "provider_events"}} | {
    ("dim_customers", "signup_at_not_after_as_of"),
    ("fct_redemptions", "reward_id_in_dim_rewards"),
    ("engagement_messages", "no_uncertain_emails"),
    # WARN when the ranking fallback built the sets: they are still served.
    ("recommendation_sets", "served_by_a_ranker"),
    # Models with a fallback: scoring runs on it instead of being skipped.
    ("churn_model", "churn_auc_meets_bar"),
    ("engagement_model", "engagement_auc_meets_bar"),
    ("churn_scores", "served_by_model"),
    ("send_time_preferences", "served_by_model"),
}


@pytest.fixture(scope="module")
def isolated_env(tmp_path_factory):
    """Environment for module-scoped loading: no developer .env, DATA_DIR in a tmp folder."""
    root = tmp_path_factory.mktemp("location")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for name in ("WAREHOUSE_URL", "AS_OF", "HOLDOUT_SHARE"):
            patch.delenv(name, raising=False)
        patch.setenv("DATA_DIR", str(root / "data"))
        yield root


@pytest.fixture(scope="module")
def d(isolated_env) -> dg.Definitions:
    from reward_assets.definitions import defs

    return defs()


@pytest.fixture(scope="module")
def graph(d):
    return d.resolve_asset_graph()


def keys(names) -> set[dg.AssetKey]:
    return {dg.AssetKey(name) for name in names}


def test_asset_keys_are_the_ingestion_assets_and_every_sql_model(d):
    assert {"stg_customers", "dim_customers", "fct_transactions", "customer_features"} <= (
        MODEL_FILES
    )
    assert not INGESTION & MODEL_FILES
    assert "score_history" in MODEL_FILES

    assert set(d.resolve_all_asset_keys()) == keys(ALL_ASSETS)


def test_group_names(graph):
    expected = {
        name: "ingestion"
        if name in INGESTION
        else "staging"
        if name.startswith("stg_")
        else "ml"
        if name in ML
        else "scoring"
        if name in SCORING | HISTORY
        else "engagement"
        if name in ENGAGEMENT
        else "analytics"
        if name in ANALYTICS
        else "warehouse"
        for name in ALL_ASSETS
    }
    assert {
        "ingestion",
        "staging",
        "warehouse",
        "ml",
        "scoring",
        "engagement",
        "analytics",
    } == set(expected.values())

    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == expected


def test_daily_assets_share_one_partitioning_with_single_run_backfills(d, graph):
    nodes = {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}
    partitioned = {name for name, node in nodes.items() if node.partitions_def is not None}
    assert partitioned == DAILY | HISTORY | ANALYTICS_DAILY

    defs_used = {id(nodes[name].partitions_def) for name in DAILY | HISTORY | ANALYTICS_DAILY}
    assert len(defs_used) == 1
    shared = nodes["transactions"].partitions_def
    assert isinstance(shared, dg.DailyPartitionsDefinition)
    assert shared == daily_partitions
    assert shared.timezone == "UTC"
    assert shared.start.date().isoformat() == "2023-03-01"

    ranged = DAILY | ANALYTICS_DAILY
    assert {name: nodes[name].backfill_policy for name in ranged} == {
        name: dg.BackfillPolicy.single_run() for name in ranged
    }
    # History days are written one scoring day at a time, never as a range.
    assert {nodes[name].backfill_policy for name in HISTORY} == {None}
    tagged = {name for name, node in nodes.items() if node.tags.get("partitioned") == "daily"}
    # Analytics read the marts, which a range launch of these does not rebuild.
    assert tagged == DAILY
    refresh = d.resolve_job_def("daily_refresh_job")
    assert refresh.partitions_def == daily_partitions
    # The staging views are rebuilt by the refresh, without partitions of their own.
    assert {nodes[name].metadata["materialized"] for name in STAGING_VIEWS} == {"view"}
    assert keys(STAGING_VIEWS) <= refresh.asset_layer.selected_asset_keys
    assert d.resolve_job_def("analytics_job").partitions_def == daily_partitions
    assert d.resolve_job_def("daily_scoring_job").partitions_def == daily_partitions


def test_asset_checks_per_asset(graph):
    found: dict[str, set[str]] = {}
    for check_key in graph.asset_check_keys:
        found.setdefault(check_key.asset_key.to_user_string(), set()).add(check_key.name)

    assert found == CHECK_NAMES


def test_blocking_checks(graph):
    specs = {
        (k.asset_key.to_user_string(), k.name): graph.get_check_spec(k)
        for k in graph.asset_check_keys
    }
    assert len(specs) == sum(map(len, CHECK_NAMES.values()))

    non_blocking = {key for key, spec in specs.items() if not spec.blocking}
    assert non_blocking == NON_BLOCKING


def test_schedule_and_job_exist_and_the_location_is_loadable(d):
    schedule = d.resolve_schedule_def("daily_refresh_schedule")
    job = d.resolve_job_def("daily_refresh_job")

    assert schedule.job_name == job.name == "daily_refresh_job"
    assert schedule.cron_schedule == "0 6 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    dg.Definitions.validate_loadable(d)


def test_loading_the_location_prints_no_beta_warnings():
    # Dagster warns once per asset about its beta code references, on every load: 180
    # lines before `make run` or `dagster dev` printed anything of their own.
    code = "from reward_assets.definitions import defs; defs()"
    loaded = subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "BetaWarning" not in loaded.stderr, loaded.stderr[:2000]


# --- the schedule ------------------------------------------------------------------------


def land(data_dir: Path, relative: str) -> None:
    path = data_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id\n")


def evaluate_schedule(d: dg.Definitions, instance: dg.DagsterInstance | None = None):
    with (
        dg.instance_for_test() as temporary,
        dg.build_schedule_context(
            instance=instance or temporary,
            repository_def=d.get_repository_def(),
            resources=d.resources,
        ) as context,
    ):
        return d.resolve_schedule_def("daily_refresh_schedule").evaluate_tick(context)


def test_schedule_requests_every_unloaded_landed_day_and_the_day_before(d, tmp_path):
    data_dir = tmp_path / "data"
    assert Path(os.environ["DATA_DIR"]) == data_dir
    land(data_dir, "transactions/2023-03-05.csv")
    land(data_dir, "transactions/2023-03-07.csv")
    land(data_dir, "engagement_events/2023-03-06.csv")
    land(data_dir, "customers/2023-03-09.csv")  # a snapshot entity does not pick the day

    result = evaluate_schedule(d)

    assert result.skip_message is None
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.tags["dagster/asset_partition_range_start"] == "2023-03-04"
    assert request.tags["dagster/asset_partition_range_end"] == "2023-03-07"
    assert request.run_key == "daily-refresh-2023-03-04-2023-03-07"


def test_schedule_skips_days_already_loaded(d, tmp_path):
    land(tmp_path / "data", "transactions/2023-03-05.csv")
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization("transactions", partition="2023-03-05")
        )
        with dg.build_schedule_context(
            instance=instance, repository_def=d.get_repository_def(), resources=d.resources
        ) as context:
            result = d.resolve_schedule_def("daily_refresh_schedule").evaluate_tick(context)
    assert result.run_requests == []
    assert "waiting to be loaded" in result.skip_message


def test_schedule_skips_without_dated_landing_files(d, tmp_path):
    land(tmp_path / "data", "customers.csv")

    result = evaluate_schedule(d)

    assert result.run_requests == []
    assert result.skip_message
    assert str(tmp_path / "data") in result.skip_message


def test_schedule_skips_a_day_before_the_first_partition(d, tmp_path):
    land(tmp_path / "data", "redemptions/2023-02-27.csv")

    result = evaluate_schedule(d)

    assert result.run_requests == []
    assert "from 2023-03-01 on" in result.skip_message


# --- the dg command line -----------------------------------------------------------------


def instance_home(root: Path, name: str) -> Path:
    home = root / f"instance-{name}"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


@pytest.fixture(scope="module")
def dg_runs(tmp_path_factory):
    """`dg check defs`, `dg list defs --json` and the README's range launch, started together."""
    assert DG.exists(), DG
    home = tmp_path_factory.mktemp("dagster_home")
    write_basic_landing(home / "data")
    # A range launch of the daily assets expects the snapshots loaded (as after `make run`).
    launch_warehouse = Warehouse(f"duckdb:///{home / 'launch.duckdb'}")
    launch_warehouse.ensure_schemas()
    load_snapshot(launch_warehouse, REWARDS, home / "data")
    launch_warehouse.dispose()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"WAREHOUSE_URL", "AS_OF", "HOLDOUT_SHARE"}
    }
    env |= {
        "DATA_DIR": str(home / "data"),
        "WAREHOUSE_URL": f"duckdb:///{home / 'launch.duckdb'}",
        "VIRTUAL_ENV": str(DG.parent.parent),
        "PATH": f"{DG.parent}{os.pathsep}{env.get('PATH', '')}",
    }
    commands = {
        "check": ["check", "defs"],
        "list": ["list", "defs", "--json"],
        "launch": [
            "launch",
            "--assets",
            "tag:partitioned=daily",
            "--partition-range",
            "2023-03-01...2023-03-03",
        ],
    }
    processes = {
        name: subprocess.Popen(
            [str(DG), *args],
            cwd=PROJECT_ROOT,
            # One instance folder each: concurrent first uses of one SQLite storage collide.
            env=env | {"DAGSTER_HOME": str(instance_home(home, name))},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in commands.items()
    }
    results = {"home": home}
    for name, process in processes.items():
        try:
            stdout, stderr = process.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        results[name] = (process.returncode, stdout, stderr)
    return results


def test_dg_check_defs_passes(dg_runs):
    returncode, stdout, stderr = dg_runs["check"]

    assert returncode == 0, stdout + stderr
    assert "All definitions loaded successfully" in stdout + stderr


def test_dg_list_defs_json_lists_the_assets_checks_schedule_and_job(dg_runs):
    returncode, stdout, stderr = dg_runs["list"]
    assert returncode == 0, stdout + stderr

    listed = json.loads(stdout)

    assert {a["asset_key"] for a in listed["assets"]} == ALL_ASSETS
    assert {(a["asset_key"], a["group_name"]) for a in listed["assets"]} >= {
        ("customers", "ingestion"),
        ("stg_transactions", "staging"),
        ("dim_customers", "warehouse"),
    }
    assert {(c["asset_key"], c["name"]) for c in listed["asset_checks"]} == {
        (asset, name) for asset, names in CHECK_NAMES.items() for name in names
    }
    assert {s["name"] for s in listed["schedules"]} == {
        "daily_refresh_schedule",
        "model_training_schedule",
        "engagement_cycle_schedule",
        "delivery_schedule",
        "analytics_schedule",
    }
    assert {s["name"] for s in listed["sensors"]} == {
        "score_after_refresh",
        "new_customer_sensor",
        "run_failure_alert_sensor",
        "freshness_alert_sensor",
    }
    assert {j["name"] for j in listed["jobs"]} == {
        "daily_refresh_job",
        "daily_scoring_job",
        "model_training_job",
        "engagement_cycle_job",
        "onboarding_job",
        "delivery_job",
        "analytics_job",
    }


def test_dg_launch_runs_a_date_range_of_every_daily_asset_in_one_run(dg_runs):
    returncode, stdout, stderr = dg_runs["launch"]
    assert returncode == 0, stdout + stderr
    assert (stdout + stderr).count("RUN_SUCCESS") == 1

    warehouse = Warehouse(f"duckdb:///{dg_runs['home'] / 'launch.duckdb'}")
    try:
        # The daily assets are the raw loads; the staging views over them are not ranged.
        days = warehouse.frame(
            "SELECT DISTINCT CAST(occurred_at AS DATE) AS day FROM raw.transactions ORDER BY 1"
        )
        assert [f"{d:%Y-%m-%d}" for d in days.day] == ["2023-03-01", "2023-03-02", "2023-03-03"]
        assert warehouse.row_count("raw.redemptions") == 3
        assert not warehouse.table_exists("staging.stg_transactions")
    finally:
        warehouse.dispose()


# --- model training and scoring automation -------------------------------------------------


def test_models_retrain_weekly_and_scoring_jobs_cover_their_groups(d, graph):
    schedule = d.resolve_schedule_def("model_training_schedule")
    assert schedule.job_name == "model_training_job"
    assert schedule.cron_schedule == "0 4 * * 1"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED

    def selected(job_name: str) -> set[str]:
        job = d.resolve_job_def(job_name)
        return {key.to_user_string() for key in job.asset_layer.selected_asset_keys}

    assert selected("model_training_job") == ML
    assert selected("daily_scoring_job") == SCORING | HISTORY


RUN_ID = "5d1c7e1a-7a39-4f0e-9a53-4a4c2d9e2f10"


def sensor_requests(d, tags: dict[str, str]):
    with dg.instance_for_test() as instance:
        run = instance.create_run_for_job(
            d.resolve_job_def("daily_refresh_job"), run_id=RUN_ID, tags=tags
        )
        context = dg.build_run_status_sensor_context(
            sensor_name="score_after_refresh",
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=dg.DagsterEvent(
                event_type_value="PIPELINE_SUCCESS", job_name="daily_refresh_job"
            ),
        )
        return d.resolve_sensor_def("score_after_refresh")(context)


def test_a_successful_refresh_requests_scoring_as_of_its_last_day(d):
    request = sensor_requests(
        d,
        {
            "dagster/asset_partition_range_start": "2023-03-04",
            "dagster/asset_partition_range_end": "2023-03-07",
        },
    )

    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == "2023-03-07"
    assert request.run_key == f"scoring-{RUN_ID}"  # one scoring run per refresh run


def test_activation_jobs_sensor_and_schedules(d):
    sensor = d.resolve_sensor_def("new_customer_sensor")
    assert sensor.job_name == "onboarding_job"
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    onboarding = d.resolve_job_def("onboarding_job")
    assert [n.name for n in onboarding.nodes_in_topological_order] == [
        "welcome_new_customers",
        "deliver_due_emails",
    ]
    cycle = d.resolve_schedule_def("engagement_cycle_schedule")
    assert cycle.job_name == "engagement_cycle_job"
    assert (cycle.cron_schedule, cycle.execution_timezone) == ("0 6 * * *", "UTC")
    job = d.resolve_job_def("engagement_cycle_job")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == ENGAGEMENT
    delivery = d.resolve_schedule_def("delivery_schedule")
    assert (delivery.job_name, delivery.cron_schedule) == ("delivery_job", "*/10 * * * *")
    assert {s.default_status for s in (cycle, delivery)} == {dg.DefaultScheduleStatus.STOPPED}


def test_a_refresh_without_a_partition_requests_nothing(d):
    result = sensor_requests(d, {})

    assert isinstance(result, dg.SkipReason)
