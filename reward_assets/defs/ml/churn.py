"""Churn: `churn_model` (group `ml`) and the daily `churn_scores` (group `scoring`)."""

import dagster as dg
import pandas as pd

from reward_assets.churn import fallback
from reward_assets.churn.model import (
    SCORE_COLUMNS,
    SCORES_TABLE,
    ChurnModel,
    churn_quality,
    scoring_features,
    served_scores,
    train_churn,
)
from reward_assets.defs.ml.gates import (
    ML,
    SCORING,
    WAREHOUSE_INPUTS,
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
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.quality.publish import replace_served

CHECK = "churn_auc_meets_bar"


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=ML,
    deps=[*WAREHOUSE_INPUTS, "customer_features", "fct_engagement_events"],
    kinds={"xgboost"},
    check_specs=[
        gate(
            "churn_model",
            CHECK,
            "Validation ROC-AUC above the recency-only baseline by a margin whose bootstrap "
            "95% interval excludes zero (and at least CHURN_MIN_AUC when set).",
            blocking=False,
        )
    ],
)
def churn_model(settings: SettingsResource, warehouse: WarehouseResource, ops: OpsStoreResource):
    """XGBoost churn classifier: no purchase within CHURN_HORIZON_DAYS after an as-of
    date, trained on several past as-of dates and validated on a later one."""
    config = settings.get()
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        try:
            training = train_churn(
                wh,
                as_of=as_of,
                horizon_days=config.churn_horizon_days,
                max_train_rows=config.training_max_rows,
            )
        except ValueError as error:  # too little history, or one outcome only
            yield from untrained_result("churn_model", CHECK, str(error), {"as_of": str(as_of)})
            return
    failures = churn_quality(training.metrics, config.churn_min_auc)
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
    metrics = training.metrics
    compared = versus_baseline(
        "churn_model",
        "recency",
        metrics["roc_auc"],
        metrics["baseline_roc_auc"],
        metrics["lift_low"],
        metrics["lift_high"],
    )
    yield from model_result(
        "churn_model",
        CHECK,
        record,
        failures,
        {
            "as_of": as_of.isoformat(),
            "feature_importance": table(importance),
            "versus_baseline": table(pd.DataFrame([compared])),
            "learning_curve": table(training.curve.frame("roc_auc")),
        },
        severity=dg.AssetCheckSeverity.WARN,
    )


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=SCORING,
    deps=["churn_model", "customer_features"],
    kinds={"xgboost", "duckdb"},
    check_specs=[*served_check_specs("ml.churn_scores"), fallback_check("churn_scores")],
)
def churn_scores(settings: SettingsResource, warehouse: WarehouseResource, ops: OpsStoreResource):
    """Churn probability, risk band and the top three drivers of each customer's score,
    from the latest approved churn model; without one, the recency/frequency fallback.
    The model scores only the customers whose inputs moved across one of its split points
    since the served rows (their `computed_as_of`); the others keep probability and
    drivers, unchanged to the bit."""
    record, reason = serving_or_reason(ops, "churn_model")
    config = settings.get()
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        if record:
            model = ChurnModel.load(record.artefact_path)
            features = scoring_features(wh, model.features)
            scores = model.score(features, served_scores(wh), as_of)
            version = record.version
        else:
            features = scoring_features(wh, fallback.INPUTS)
            calibration = fallback.calibrate(wh, as_of, config.churn_horizon_days)
            scores = fallback.fallback_scores(features, calibration, as_of=as_of)
            version = fallback.VERSION
        scores["as_of"] = as_of
        scores["model_version"] = version
        served = replace_served(wh, SCORES_TABLE, SCORE_COLUMNS, [scores], config.data_dir)
        tables = table_metadata(wh, served.table)
    bands = scores.risk_band.value_counts()
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "model_version": version,
            **({"fallback_reason": reason} if reason else {}),
            "dagster/row_count": served.rows,
            # The model scored these; the others kept rows whose inputs had not moved.
            "customers_scored": scores.attrs.get("scored", served.rows),
            **served.metadata(),
            **tables,
            **(
                {"mean_probability": float(scores.churn_probability.mean())}
                if scores.churn_probability.notna().any()
                else {}
            ),
            **{f"band_{band}": int(count) for band, count in bands.items()},
        },
        check_results=[*check_results(served), fallback_result("churn_scores", version, reason)],
    )
