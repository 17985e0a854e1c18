"""Churn: `churn_model` (group `ml`) and the daily `churn_scores` (group `scoring`)."""

import dagster as dg
import pandas as pd

from reward_assets.churn.model import SCORE_COLUMNS, ChurnModel, churn_quality, train_churn
from reward_assets.defs.ml.gates import (
    ML,
    SCORING,
    WAREHOUSE_INPUTS,
    gate,
    model_result,
    register,
    serving,
    table,
)
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import OpsStoreResource, SettingsResource, WarehouseResource
from reward_assets.defs.warehouse.audits import check_results, served_check_specs
from reward_assets.defs.warehouse.table_metadata import table_metadata
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.quality.publish import replace_served


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=ML,
    deps=[*WAREHOUSE_INPUTS, "customer_features", "fct_engagement_events"],
    kinds={"xgboost"},
    check_specs=[
        gate(
            "churn_model",
            "churn_auc_meets_bar",
            "Validation ROC-AUC at least 0.75 and above the recency-only baseline.",
        )
    ],
)
def churn_model(settings: SettingsResource, warehouse: WarehouseResource, ops: OpsStoreResource):
    """XGBoost churn classifier: no purchase within CHURN_HORIZON_DAYS after an as-of
    date, trained on several past as-of dates and validated on a later one."""
    config = settings.get()
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        training = train_churn(wh, as_of=as_of, horizon_days=config.churn_horizon_days)
    failures = churn_quality(training.metrics)
    record = register(
        ops,
        "churn_model",
        training.fingerprint,
        training.model.save,
        training.metrics,
        training.features,
        training.params,
        as_of,
        failures,
    )
    importance = pd.DataFrame(
        sorted(training.feature_importance.items(), key=lambda kv: -kv[1]),
        columns=["feature", "gain"],
    )
    yield from model_result(
        "churn_model",
        "churn_auc_meets_bar",
        record,
        failures,
        {"as_of": as_of.isoformat(), "feature_importance": table(importance)},
    )


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=SCORING,
    deps=["churn_model", "customer_features"],
    kinds={"xgboost", "duckdb"},
    check_specs=served_check_specs("ml.churn_scores"),
)
def churn_scores(settings: SettingsResource, warehouse: WarehouseResource, ops: OpsStoreResource):
    """Churn probability, risk band and the top three drivers of each customer's score,
    from the latest approved churn model."""
    record = serving(ops, "churn_model")
    model = ChurnModel.load(record.artefact_path)
    config = settings.get()
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        scores = model.score(wh.frame("SELECT * FROM marts.customer_features"))
        scores["as_of"] = as_of
        scores["model_version"] = record.version
        served = replace_served(wh, "ml.churn_scores", SCORE_COLUMNS, [scores], config.data_dir)
        tables = table_metadata(wh, served.table)
    bands = scores.risk_band.value_counts()
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "model_version": record.version,
            "dagster/row_count": served.rows,
            **served.metadata(),
            **tables,
            "mean_probability": float(scores.churn_probability.mean()),
            **{f"band_{band}": int(count) for band, count in bands.items()},
        },
        check_results=check_results(served),
    )
