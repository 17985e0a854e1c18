"""Models (group `ml`, retrained weekly) and the daily scores built from them (`scoring`).

A model asset trains, registers its version as a candidate and runs its blocking check,
which approves or rejects that version in the registry. Scoring assets load the latest
approved version, so a failed retrain leaves the previous good model in service and, in
the same run, Dagster skips everything downstream of the failed check.
"""

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pandas as pd

from reward_assets.churn.model import ChurnModel, churn_quality, train_churn
from reward_assets.defs.resources import OpsStoreResource, SettingsResource, WarehouseResource
from reward_assets.engagement import send_time as engagement
from reward_assets.engagement.model import EngagementModel, engagement_quality, train_engagement
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.ml.registry import ModelRecord
from reward_assets.recommend.evaluate import evaluate
from reward_assets.recommend.inputs import (
    eligibility_inputs,
    positions,
    read_vectors,
    write_vectors,
)
from reward_assets.recommend.interactions import Interactions
from reward_assets.recommend.protocol import ranking_quality
from reward_assets.recommend.sets import SetRules, build_sets
from reward_assets.recommend.taste import TasteModel, fit_taste_model
from reward_assets.settings import Settings
from reward_assets.warehouse.snapshots import replace_served

ML, SCORING = "ml", "scoring"
WAREHOUSE_INPUTS = ["dim_customers", "dim_rewards", "fct_transactions", "fct_redemptions"]

CHURN_COLUMNS = {
    "customer_id": "VARCHAR",
    "as_of": "DATE",
    "churn_probability": "DOUBLE PRECISION",
    "risk_band": "VARCHAR",
    "driver_1": "VARCHAR",
    "driver_2": "VARCHAR",
    "driver_3": "VARCHAR",
    "model_version": "VARCHAR",
}
SEND_TIME_COLUMNS = {
    "customer_id": "VARCHAR",
    "as_of": "DATE",
    "best_local_hour": "INTEGER",
    "best_weekday": "INTEGER",
    "expected_open_rate": "DOUBLE PRECISION",
    "expected_click_rate": "DOUBLE PRECISION",
    "confidence": "DOUBLE PRECISION",
    "source": "VARCHAR",
    "opens": "BIGINT",
    "model_version": "VARCHAR",
}
ENGAGEMENT_COLUMNS = {
    "customer_id": "VARCHAR",
    "as_of": "DATE",
    "open_probability": "DOUBLE PRECISION",
    "click_probability": "DOUBLE PRECISION",
    "best_local_hour": "INTEGER",
    "source": "VARCHAR",
    "model_version": "VARCHAR",
}
RECOMMENDATION_COLUMNS = {
    "as_of": "DATE",
    "customer_id": "VARCHAR",
    "rank": "INTEGER",
    "reward_id": "VARCHAR",
    "score": "DOUBLE PRECISION",
    "reason": "VARCHAR",
    "is_almost_there": "BOOLEAN",
    "is_exploration": "BOOLEAN",
    "model_version": "VARCHAR",
}


def _snapshot(settings: Settings, name: str) -> Path:
    return settings.data_dir / "snapshots" / f"{name}.parquet"


def _table(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False, floatfmt=".4f"))


def _model_result(
    name: str,
    check: str,
    record: ModelRecord,
    failures: list[str],
    metadata: dict,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    numbers = {k: float(v) for k, v in record.metrics.items() if isinstance(v, int | float)}
    yield dg.MaterializeResult(
        metadata={
            "model_version": record.version,
            "status": record.status,
            "artefact": dg.MetadataValue.path(str(record.artefact_path)),
            "features": len(record.features),
            **numbers,
            **metadata,
        }
    )
    yield dg.AssetCheckResult(
        asset_key=name,
        check_name=check,
        passed=not failures,
        metadata={
            "model_version": record.version,
            "reasons": "; ".join(failures) or "meets the bar",
        },
    )


def _register(
    ops: OpsStoreResource,
    name: str,
    fingerprint: str,
    save: Callable[[Path], None],
    metrics: dict,
    features: list[str],
    params: dict,
    as_of: dt.date,
    failures: list[str],
) -> ModelRecord:
    """Record the new version, approved or rejected by its check's verdict."""
    with ops.registry() as registry:
        record = registry.register(name, fingerprint, save, metrics, features, params, as_of)
        return registry.decide(name, record.version, not failures, failures)


def _check(name: str, check: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(check, asset=name, description=description, blocking=True)


# --------------------------------------------------------------------------- models


@dg.asset(
    group_name=ML,
    deps=WAREHOUSE_INPUTS,
    kinds={"numpy"},
    check_specs=[
        _check(
            "reward_embeddings",
            "ranking_beats_popularity",
            "Validation nDCG@10 of the taste model is at least 1.2x popularity's; "
            "a rejected version is never served.",
        )
    ],
)
def reward_embeddings(
    settings: SettingsResource, warehouse: WarehouseResource, ops: OpsStoreResource
):
    """The taste model: reward vectors in the space shared with customers, learned from
    redemptions, purchase categories and reward content. A reward's score for a customer
    is the dot product of their vectors."""
    config = settings.get()
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        data = Interactions.from_warehouse(wh, as_of)
    model, validation = fit_taste_model(data)
    failures = ranking_quality(validation)
    record = _register(
        ops,
        "taste_model",
        model.fingerprint,
        model.save,
        validation,
        list(model.blocks),
        model.params,
        as_of,
        failures,
    )
    write_vectors(
        _snapshot(config, "reward_embeddings"),
        "reward_id",
        pd.Series(model.reward_ids),
        model.reward_vectors(),
        as_of,
        record.version,
    )
    yield from _model_result(
        "reward_embeddings",
        "ranking_beats_popularity",
        record,
        failures,
        {"as_of": as_of.isoformat(), "rewards": len(model.reward_ids)},
    )


@dg.asset(
    group_name=ML,
    deps=[*WAREHOUSE_INPUTS, "customer_features", "fct_engagement_events"],
    kinds={"xgboost"},
    check_specs=[
        _check(
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
    record = _register(
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
    yield from _model_result(
        "churn_model",
        "churn_auc_meets_bar",
        record,
        failures,
        {"as_of": as_of.isoformat(), "feature_importance": _table(importance)},
    )


@dg.asset(
    group_name=ML,
    deps=["dim_customers", "fct_engagement_events"],
    kinds={"xgboost"},
    check_specs=[
        _check("engagement_model", "engagement_auc_meets_bar", "Validation open ROC-AUC >= 0.70.")
    ],
)
def engagement_model(
    settings: SettingsResource, warehouse: WarehouseResource, ops: OpsStoreResource
):
    """XGBoost open and click probabilities for a customer, a local send hour and weekday
    and the content's reward category."""
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, settings.get().as_of)
        training = train_engagement(wh, as_of=as_of)
    failures = engagement_quality(training.metrics)
    record = _register(
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
    yield from _model_result(
        "engagement_model",
        "engagement_auc_meets_bar",
        record,
        failures,
        {"as_of": as_of.isoformat()},
    )


@dg.asset(group_name=ML, deps=WAREHOUSE_INPUTS, kinds={"numpy"})
def model_evaluation(
    context: dg.AssetExecutionContext, settings: SettingsResource, warehouse: WarehouseResource
):
    """Offline evaluation of the ranking candidates against popularity and random: a
    seeded 75/25 split of redemptions, choices made on a validation split of the 75."""
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, settings.get().as_of)
        data = Interactions.from_warehouse(wh, as_of)
    report = evaluate(data, k=10, split="random", seed=42, log=context.log.info)
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "report": dg.MetadataValue.md(report.to_markdown()),
            **{f"test_{k}": float(v) for k, v in report.headline().items()},
        }
    )


# --------------------------------------------------------------------------- daily scoring


def _serving(ops: OpsStoreResource, name: str) -> ModelRecord:
    with ops.registry() as registry:
        return registry.serving(name)


@dg.asset(group_name=SCORING, deps=["reward_embeddings", *WAREHOUSE_INPUTS], kinds={"numpy"})
def customer_embeddings(
    settings: SettingsResource, warehouse: WarehouseResource, ops: OpsStoreResource
):
    """Every customer's vector at AS_OF in the taste model's space; customers without
    history get one from their sign-up preferences and tier. Published as a Parquet
    snapshot for readers that must not open the warehouse."""
    record = _serving(ops, "taste_model")
    model = TasteModel.load(record.artefact_path)
    config = settings.get()
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        data = Interactions.from_warehouse(wh, as_of)
    vectors = model.customer_vectors(data.customers, data.redemptions, data.category_purchases)
    path = _snapshot(config, "customer_embeddings")
    write_vectors(path, "customer_id", data.customers.customer_id, vectors, as_of, record.version)
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "model_version": record.version,
            "customers": len(vectors),
            "dimensions": int(vectors.shape[1]),
            "snapshot": dg.MetadataValue.path(str(path)),
        }
    )


@dg.asset(group_name=SCORING, deps=["churn_model", "customer_features"], kinds={"xgboost"})
def churn_scores(settings: SettingsResource, warehouse: WarehouseResource, ops: OpsStoreResource):
    """Churn probability, risk band and the top three drivers of each customer's score,
    from the latest approved churn model."""
    record = _serving(ops, "churn_model")
    model = ChurnModel.load(record.artefact_path)
    config = settings.get()
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        scores = model.score(wh.frame("SELECT * FROM marts.customer_features"))
        scores["as_of"] = as_of
        scores["model_version"] = record.version
        rows = replace_served(wh, "ml.churn_scores", CHURN_COLUMNS, [scores], config.data_dir)
    bands = scores.risk_band.value_counts()
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "model_version": record.version,
            "dagster/row_count": rows,
            "mean_probability": float(scores.churn_probability.mean()),
            **{f"band_{band}": int(count) for band, count in bands.items()},
        }
    )


@dg.asset(
    group_name=SCORING,
    deps=["engagement_model", "fct_engagement_events", "dim_customers"],
    kinds={"xgboost"},
)
def send_time_preferences(
    settings: SettingsResource, warehouse: WarehouseResource, ops: OpsStoreResource
):
    """Each customer's best local send hour (and weekday where it matters), the expected
    open rate there and a confidence; segment, then global, for thin histories. Quiet
    hours are never chosen."""
    config = settings.get()
    record = _serving(ops, "engagement_model")
    model = EngagementModel.load(record.artefact_path)
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        prefs = engagement.send_time_preferences(
            wh,
            model,
            as_of=as_of,
            quiet_hours=(config.quiet_hours_start, config.quiet_hours_end),
        )
        prefs["as_of"] = as_of
        prefs["model_version"] = record.version
        rows = replace_served(
            wh, "ml.send_time_preferences", SEND_TIME_COLUMNS, [prefs], config.data_dir
        )
    sources = prefs.source.value_counts()
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "model_version": record.version,
            "dagster/row_count": rows,
            **{f"source_{source}": int(count) for source, count in sources.items()},
        }
    )


@dg.asset(group_name=SCORING, deps=["send_time_preferences"], kinds={"sql"})
def engagement_scores(settings: SettingsResource, warehouse: WarehouseResource):
    """Open and click probability per customer at their best send time."""
    with warehouse.open() as wh:
        prefs = wh.frame("SELECT * FROM ml.send_time_preferences")
        scores = engagement.engagement_scores(prefs).merge(
            prefs[["customer_id", "as_of", "model_version"]], on="customer_id"
        )
        rows = replace_served(
            wh, "ml.engagement_scores", ENGAGEMENT_COLUMNS, [scores], settings.get().data_dir
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "mean_open_probability": float(scores.open_probability.mean()),
        }
    )


@dg.asset(
    group_name=SCORING,
    deps=["customer_embeddings", "reward_embeddings", "dim_rewards", "fct_redemptions"],
    kinds={"numpy"},
)
def recommendation_sets(
    context: dg.AssetExecutionContext,
    settings: SettingsResource,
    warehouse: WarehouseResource,
    ops: OpsStoreResource,
):
    """Top-k eligible rewards per customer at AS_OF (active, in stock, tier allowed,
    affordable or flagged 'almost there', not redeemed in 30 days), diverse across
    categories, with exploration slots for new rewards, a reason and the model version."""
    config = settings.get()
    rules = SetRules.from_settings(config)
    meta, vectors = read_vectors(_snapshot(config, "customer_embeddings"))
    version = str(meta.model_version.iloc[0])
    # The model the customer vectors came from, even if a newer one was approved since.
    with ops.registry() as registry:
        model = TasteModel.load(registry.get("taste_model", version).artefact_path)
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        customers, rewards, recent, last_redeemed = eligibility_inputs(wh, as_of, rules.recent_days)
        position = positions(customers.customer_id, meta.customer_id)
        customers = customers[position >= 0].reset_index(drop=True)
        chunks = build_sets(
            customers,
            vectors[position[position >= 0]],
            rewards,
            model.reward_vectors(rewards),
            model.blocks,
            recent,
            last_redeemed,
            rules,
            model_version=version,
            as_of=as_of,
        )
        rows = replace_served(
            wh, "ml.recommendation_sets", RECOMMENDATION_COLUMNS, chunks, config.data_dir
        )
        summary = wh.frame(
            "SELECT COUNT(DISTINCT customer_id) AS customers, "
            "AVG(CAST(is_exploration AS INTEGER)) AS exploration_share, "
            "AVG(CAST(is_almost_there AS INTEGER)) AS almost_there_share "
            "FROM ml.recommendation_sets"
        ).iloc[0]
    context.log.info(f"{rows:,} recommendations for {int(summary.customers):,} customers")
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "model_version": version,
            "dagster/row_count": rows,
            "customers": int(summary.customers),
            "exploration_share": float(summary.exploration_share or 0),
            "almost_there_share": float(summary.almost_there_share or 0),
        }
    )
