"""What every model asset shares: registering the trained version, approved or rejected
by its blocking check, and reporting both in one materialisation.

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

from reward_assets.defs.resources import OpsStoreResource
from reward_assets.ml.registry import ModelRecord, NoServingModel
from reward_assets.settings import Settings

ML, SCORING = "ml", "scoring"
WAREHOUSE_INPUTS = ["dim_customers", "dim_rewards", "fct_transactions", "fct_redemptions"]


def snapshot(settings: Settings, name: str) -> Path:
    return settings.data_dir / "snapshots" / f"{name}.parquet"


def table(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False, floatfmt=".4f"))


def gate(name: str, check: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(check, asset=name, description=description, blocking=True)


def register(
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


def model_result(
    name: str,
    check: str,
    record: ModelRecord,
    failures: list[str],
    metadata: dict,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """`severity` WARN lets a failed check run what is downstream (on a fallback)."""
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
        severity=severity,
        metadata={
            "model_version": record.version,
            "reasons": "; ".join(failures) or "meets the bar",
        },
    )


def serving(ops: OpsStoreResource, name: str) -> ModelRecord:
    with ops.registry() as registry:
        return registry.serving(name)


def serving_or_none(ops: OpsStoreResource, name: str) -> ModelRecord | None:
    """The latest approved version, or None when there is none (a fallback serves)."""
    try:
        return serving(ops, name)
    except NoServingModel:
        return None
