"""The served ranker's training: `reward_embeddings` (group `ml`)."""

import dagster as dg
import pandas as pd

from reward_assets.defs.ml.gates import (
    ML,
    WAREHOUSE_INPUTS,
    gate,
    model_result,
    register,
    serving_or_reason,
    snapshot,
    table,
)
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import OpsStoreResource, SettingsResource, WarehouseResource
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.recommend.inputs import write_vectors
from reward_assets.recommend.interactions import Interactions
from reward_assets.recommend.protocol import ranking_quality
from reward_assets.recommend.served import NotTrainable, fit_served_model, validation_table

NAME, CHECK = "reward_embeddings", "ranking_beats_popularity"
WARN, ERROR = dg.AssetCheckSeverity.WARN, dg.AssetCheckSeverity.ERROR


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=ML,
    deps=WAREHOUSE_INPUTS,
    kinds={"numpy"},
    check_specs=[
        gate(
            NAME,
            CHECK,
            "Validation nDCG@10 of the served ranker (taste, EASE or their blend, chosen "
            "on validation) is at least RANKING_MIN_LIFT x popularity's (default 1: not "
            "below it). A rejected version is never served: the previous approved one stays "
            "(the check fails, blocking), or with none the ranking fallback serves (WARN).",
        )
    ],
)
def reward_embeddings(
    settings: SettingsResource, warehouse: WarehouseResource, ops: OpsStoreResource
):
    """The served ranker: the taste model's reward vectors in the space shared with
    customers (learned from redemptions, purchase categories and reward content), with
    EASE's item-item weights when validation chooses EASE or a blend. A reward's score for
    a customer is the dot product of their vectors plus the customer's redemptions times
    the item-item weights."""
    config = settings.get()
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        data = Interactions.from_warehouse(wh, as_of)
    try:
        model, validation = fit_served_model(data)
    except NotTrainable as reason:
        yield from _not_trained(ops, str(reason), as_of.isoformat())
        return
    failures = ranking_quality(validation, config.ranking_min_lift)
    record = register(
        ops,
        "taste_model",
        model.fingerprint,
        model.save,
        validation,
        list(model.blocks),
        {"served": model.choice, **model.params, "taste": model.taste.params},
        as_of,
        failures,
    )
    write_vectors(
        snapshot(config, NAME),
        "reward_id",
        pd.Series(model.reward_ids),
        model.reward_vectors(),
        as_of,
        record.version,
    )
    kept = serving_or_reason(ops, "taste_model")[0] if failures else record
    yield from model_result(
        NAME,
        CHECK,
        record,
        failures,
        {
            "as_of": as_of.isoformat(),
            "rewards": len(model.reward_ids),
            "served": model.choice,
            "served_validation_ndcg@10": validation["served_model"]["ndcg@10"],
            "popularity_validation_ndcg@10": validation["popularity"]["ndcg@10"],
            "candidates": table(validation_table(validation)),
            "serving": kept.version if kept else "fallback",
        },
        severity=ERROR if kept else WARN,
    )


def _not_trained(ops: OpsStoreResource, reason: str, as_of: str):
    """No version to register: the previous approved one serves, else the fallback."""
    kept = serving_or_reason(ops, "taste_model")[0]
    serving = kept.version if kept else "fallback"
    yield dg.MaterializeResult(
        metadata={"as_of": as_of, "status": "not trained", "reason": reason, "serving": serving}
    )
    yield dg.AssetCheckResult(
        asset_key=NAME,
        check_name=CHECK,
        passed=False,
        severity=WARN,
        metadata={"reasons": reason, "serving": serving},
    )
