"""Email engagement: `engagement_model` (group `ml`), and the daily
`send_time_preferences` and `engagement_scores` (group `scoring`)."""

import dagster as dg
import pandas as pd

from reward_assets.defs.ml.gates import (
    ML,
    SCORING,
    fallback_check,
    fallback_result,
    gate,
    model_result,
    register,
    serving_or_reason,
    table,
    untrained_result,
    versus_baseline,
)
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import OpsStoreResource, SettingsResource, WarehouseResource
from reward_assets.defs.warehouse.audits import check_results, served_check_specs
from reward_assets.defs.warehouse.table_metadata import table_metadata
from reward_assets.engagement import send_time
from reward_assets.engagement.model import EngagementModel, engagement_quality, train_engagement
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.quality.publish import replace_served

CHECK = "engagement_auc_meets_bar"


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=ML,
    deps=["dim_customers", "fct_engagement_events"],
    kinds={"xgboost"},
    check_specs=[
        gate(
            "engagement_model",
            CHECK,
            "Held-out open ROC-AUC above the base-rate baseline (each customer's past open "
            "rate) by a margin whose bootstrap 95% interval excludes zero (and at least "
            "ENGAGEMENT_MIN_AUC when set).",
            blocking=False,
        )
    ],
)
def engagement_model(
    settings: SettingsResource, warehouse: WarehouseResource, ops: OpsStoreResource
):
    """XGBoost open and click probabilities for a customer, a local send hour and weekday
    and the content's reward category."""
    config = settings.get()
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        try:
            training = train_engagement(wh, as_of=as_of, max_rows=config.training_max_rows)
        except ValueError as error:  # no email activity, or no opens or clicks in it
            yield from untrained_result(
                "engagement_model", CHECK, str(error), {"as_of": as_of.isoformat()}
            )
            return
    failures = engagement_quality(training.metrics, config.engagement_min_auc)
    metrics = training.metrics
    compared = [
        versus_baseline(
            f"{label} model",
            f"past {label} rate",
            metrics.get(f"{label}_auc"),
            metrics.get(f"{label}_baseline_auc"),
            metrics.get(f"{label}_lift_low"),
            metrics.get(f"{label}_lift_high"),
        )
        for label in ("open", "click")
    ]
    record = register(
        ops,
        "engagement_model",
        training.fingerprint,
        training.model.save,
        training.metrics,
        training.features,
        training.params,
        as_of,
        failures,
    )
    yield from model_result(
        "engagement_model",
        CHECK,
        record,
        failures,
        {
            "as_of": as_of.isoformat(),
            "versus_baseline": table(pd.DataFrame(compared)),
            "learning_curve": table(training.curve.frame("open_auc")),
        },
        severity=dg.AssetCheckSeverity.WARN,
    )


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=SCORING,
    deps=["engagement_model", "fct_engagement_events", "dim_customers"],
    kinds={"xgboost", "duckdb"},
    check_specs=[
        *served_check_specs("ml.send_time_preferences"),
        fallback_check("send_time_preferences"),
    ],
)
def send_time_preferences(
    settings: SettingsResource, warehouse: WarehouseResource, ops: OpsStoreResource
):
    """Each customer's best local send hour (and weekday where it matters), the expected
    open rate there and a confidence; segment, then global, for thin histories. Quiet
    hours are never chosen. The model scores only the customers whose inputs moved since
    the served rows (their `computed_as_of`); the others keep them, unchanged to the bit."""
    config = settings.get()
    record, reason = serving_or_reason(ops, "engagement_model")
    quiet_hours = (config.quiet_hours_start, config.quiet_hours_end)
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        model = EngagementModel.load(record.artefact_path) if record else None
        version = record.version if record else send_time.FALLBACK_VERSION
        prefs, served = send_time.refresh_preferences(
            wh, model, version, as_of, quiet_hours, config.data_dir
        )
        tables = table_metadata(wh, served.table)
    sources = prefs.source.value_counts()
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "model_version": version,
            **({"fallback_reason": reason} if reason else {}),
            "dagster/row_count": served.rows,
            # The model scored these; the others kept rows whose inputs had not moved.
            "customers_scored": prefs.attrs.get("scored", served.rows),
            **served.metadata(),
            **tables,
            **{f"source_{source}": int(count) for source, count in sources.items()},
        },
        check_results=[
            *check_results(served),
            fallback_result("send_time_preferences", version, reason),
        ],
    )


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=SCORING,
    deps=["send_time_preferences"],
    kinds={"sql", "duckdb"},
    check_specs=served_check_specs("ml.engagement_scores"),
)
def engagement_scores(settings: SettingsResource, warehouse: WarehouseResource):
    """Open and click probability per customer at their best send time."""
    with warehouse.open() as wh:
        prefs = wh.frame("SELECT * FROM ml.send_time_preferences")
        scores = send_time.engagement_scores(prefs).merge(
            prefs[["customer_id", "as_of", "model_version"]], on="customer_id"
        )
        served = replace_served(
            wh, "ml.engagement_scores", send_time.SCORE_COLUMNS, [scores], settings.get().data_dir
        )
        tables = table_metadata(wh, served.table)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": served.rows,
            **served.metadata(),
            **tables,
            "mean_open_probability": float(scores.open_probability.mean()),
        },
        check_results=check_results(served),
    )
