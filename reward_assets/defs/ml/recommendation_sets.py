"""Each customer's top-k eligible rewards: `recommendation_sets` (group `scoring`)."""

from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd

from reward_assets.defs.ml.gates import SCORING, serving_or_reason, snapshot
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import OpsStoreResource, SettingsResource, WarehouseResource
from reward_assets.defs.warehouse.audits import check_results, served_check_specs
from reward_assets.defs.warehouse.table_metadata import table_metadata
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.quality.publish import replace_served
from reward_assets.recommend.fallback import fallback_ranker, fallback_sets
from reward_assets.recommend.inputs import (
    eligibility_inputs,
    positions,
    read_vectors,
    redemption_pairs,
    served_keys,
)
from reward_assets.recommend.interactions import Interactions
from reward_assets.recommend.served import ServedModel, redemption_history
from reward_assets.recommend.sets import (
    MODEL_SOURCE,
    TABLE,
    TABLE_COLUMNS,
    RewardCatalog,
    SetBuild,
    SetRules,
)
from reward_assets.warehouse.staging import Carry

RANKER_SERVED = "served_by_a_ranker"


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=SCORING,
    deps=["customer_embeddings", "reward_embeddings", "dim_rewards", "fct_redemptions"],
    kinds={"numpy", "duckdb"},
    check_specs=[
        *served_check_specs(TABLE),
        dg.AssetCheckSpec(
            RANKER_SERVED,
            asset="recommendation_sets",
            description="The sets come from an approved ranker; WARN when the ranking "
            "fallback (category affinity, tier or global popularity) built them.",
        ),
    ],
)
def recommendation_sets(
    context: dg.AssetExecutionContext,
    settings: SettingsResource,
    warehouse: WarehouseResource,
    ops: OpsStoreResource,
):
    """Top-k eligible rewards per customer at AS_OF (active, in stock, tier allowed,
    affordable or flagged 'almost there', not redeemed in 30 days), diverse across
    categories, with exploration slots for new rewards, a reason and the model version;
    from the ranking fallback while no ranker is approved. Only customers whose inputs
    changed since their served set was computed get a new one (`SetBuild`); the others'
    sets are carried forward, with the day they were computed."""
    config = settings.get()
    rules = SetRules.from_settings(config)
    record, why = serving_or_reason(ops, "taste_model")
    fallback = record is None
    carry = None
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        customers, rewards, recent, last_redeemed = eligibility_inputs(wh, as_of, rules.recent_days)
        if fallback:
            data = Interactions.from_warehouse(wh, as_of)
            ranker = fallback_ranker(customers, rewards, data.redemptions, data.category_purchases)
            chunks = _unkeyed(
                fallback_sets(customers, ranker, rewards, recent, last_redeemed, rules, as_of),
                as_of,
            )
            version, served_by = "fallback", "fallback"
        else:
            meta, vectors = read_vectors(snapshot(config, "customer_embeddings"))
            version = str(meta.model_version.iloc[0])
            # The model the customer vectors came from, even if a newer one was approved since.
            with ops.registry() as registry:
                model = ServedModel.load(registry.get("taste_model", version).artefact_path)
            position = positions(customers.customer_id, meta.customer_id)
            customers = customers[position >= 0].reset_index(drop=True)
            item_weights = model.item_weights_for(rewards)
            history = None
            if item_weights is not None:
                pairs = redemption_pairs(wh, as_of)
                history = redemption_history(customers, rewards["reward_id"], pairs)
            reward_vectors = model.reward_vectors(rewards)
            catalog = RewardCatalog.build(rewards, reward_vectors, model.blocks, item_weights)
            inputs = (customers, vectors[position[position >= 0]], catalog, rewards, history)
            labels = (version, MODEL_SOURCE)
            # The key each vector was computed from stands for it in the sets' keys.
            vector_keys = None
            if "inputs_key" in meta:
                vector_keys = meta.inputs_key.to_numpy(np.int64)[position[position >= 0]]
            build = SetBuild.prepare(
                *inputs, recent, last_redeemed, rules, labels, vector_keys=vector_keys
            )
            stale = build.stale(served_keys(wh, TABLE))
            chunks = build.sets(as_of, np.flatnonzero(stale), keyed=True)
            # The others' served sets are the ones they would get: copied as they are
            # inside the warehouse, only their as_of moves to today.
            kept = build.customers.customer_id[~stale]
            carry = Carry(pd.DataFrame({"customer_id": kept.to_numpy(), "as_of": as_of}))
            served_by = model.choice
        served = replace_served(wh, TABLE, TABLE_COLUMNS, chunks, config.data_dir, carry=carry)
        rows = served.rows
        tables = table_metadata(wh, served.table)
        summary = wh.frame(
            "SELECT COUNT(DISTINCT customer_id) AS customers, "
            "COUNT(DISTINCT CASE WHEN computed_as_of = :as_of THEN customer_id END) AS computed, "
            "AVG(CAST(is_exploration AS INTEGER)) AS exploration_share, "
            "AVG(CAST(is_almost_there AS INTEGER)) AS almost_there_share "
            f"FROM {TABLE}",
            {"as_of": as_of},
        ).iloc[0]
        sources = wh.frame(
            "SELECT source, COUNT(DISTINCT customer_id) AS customers "
            f"FROM {TABLE} GROUP BY source ORDER BY source"
        )
    context.log.info(f"{rows:,} recommendations for {int(summary.customers):,} customers")
    reason = f"{why}; the ranking fallback built the sets" if fallback else ""
    yield dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "model_version": version,
            "served": served_by,
            **({"fallback_reason": reason} if fallback else {}),
            "customers_by_source": {
                str(name): int(n) for name, n in zip(sources.source, sources.customers, strict=True)
            },
            "dagster/row_count": rows,
            **served.metadata(),
            **tables,
            "customers": int(summary.customers),
            "customers_computed": int(summary.computed),
            "exploration_share": float(summary.exploration_share or 0),
            "almost_there_share": float(summary.almost_there_share or 0),
        },
        check_results=check_results(served),
    )
    yield dg.AssetCheckResult(
        asset_key="recommendation_sets",
        check_name=RANKER_SERVED,
        passed=not fallback,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"reasons": reason or f"served by {served_by} ({version})"},
    )


def _unkeyed(chunks: Iterator[pd.DataFrame], as_of) -> Iterator[pd.DataFrame]:
    """The fallback's sets: no key, so the next build computes them again."""
    for chunk in chunks:
        yield chunk.assign(computed_as_of=as_of, inputs_key=pd.array([pd.NA] * len(chunk), "Int64"))
