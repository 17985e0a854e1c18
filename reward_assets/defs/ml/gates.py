"""What every model asset shares: registering the trained version, approved or rejected
by its blocking check, and reporting both in one materialisation.

A model asset trains, registers its version as a candidate and runs its blocking check,
which approves or rejects that version in the registry. Scoring assets load the latest
approved version, so a failed retrain leaves the previous good model in service. A model
whose scoring asset has a fallback (churn, engagement) has a non-blocking check: with no
approved version at all, its scoring asset still runs on the documented fallback, marks
its rows (`model_version` 'fallback:...', `source`) and warns through `served_by_model`;
a model without one keeps a blocking check, and Dagster skips what is downstream of it.
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


def versus_baseline(model: str, baseline: str, auc, baseline_auc, low, high) -> dict:
    """One row of the table comparing a model's validation ROC-AUC with its baseline's."""
    return {
        "model": model,
        "model_auc": auc,
        "baseline": baseline,
        "baseline_auc": baseline_auc,
        "lift": None if auc is None or baseline_auc is None else auc - baseline_auc,
        "lift_95_interval": f"[{low:+.4f}, {high:+.4f}]" if low is not None else "n/a",
    }


def gate(name: str, check: str, description: str, blocking: bool = True) -> dg.AssetCheckSpec:
    """A model's quality check. Non-blocking for a model whose scoring asset has a fallback:
    the registry still approves or rejects the version, and scoring reads only approved
    versions, so the scores run (on the fallback) instead of being skipped."""
    return dg.AssetCheckSpec(check, asset=name, description=description, blocking=blocking)


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


def untrained_result(
    name: str, check: str, reason: str, metadata: dict
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """A model the data cannot train (no events, too little history, one outcome): no
    version is registered, the reason is reported and the check warns."""
    yield dg.MaterializeResult(metadata={"status": "not_trained", "reason": reason, **metadata})
    yield dg.AssetCheckResult(
        asset_key=name,
        check_name=check,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"reasons": reason},
    )


FALLBACK_CHECK = "served_by_model"


def fallback_check(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        FALLBACK_CHECK,
        asset=asset,
        description="An approved model scored these rows; warns when the fallback did.",
        blocking=False,
    )


def fallback_result(asset: str, version: str, reason: str | None) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=FALLBACK_CHECK,
        passed=reason is None,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"model_version": version, "reason": reason or "an approved model served"},
    )


def serving_or_reason(ops: OpsStoreResource, name: str) -> tuple[ModelRecord | None, str | None]:
    """(the approved version of `name`, None), or (None, why there is none) for a fallback."""
    with ops.registry() as registry:
        try:
            return registry.serving(name), None
        except NoServingModel:
            tried = registry.history(name)
    if not tried:
        return None, f"no approved {name}: it has never been trained on this data"
    last = tried[-1]
    why = "; ".join(last.reasons or []) or last.status
    return None, f"no approved {name}: its last version {last.version} was {last.status} ({why})"
