"""Every customer's taste vector at AS_OF: `customer_embeddings` (group `scoring`)."""

import dagster as dg
import numpy as np

from reward_assets.defs.ml.gates import SCORING, WAREHOUSE_INPUTS, serving_or_reason, snapshot
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import OpsStoreResource, SettingsResource, WarehouseResource
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.recommend.inputs import (
    customer_input_keys,
    positions,
    read_vectors,
    rows_of,
    write_vectors,
)
from reward_assets.recommend.interactions import Interactions
from reward_assets.recommend.served import ServedModel


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=SCORING,
    deps=["reward_embeddings", *WAREHOUSE_INPUTS],
    kinds={"numpy"},
)
def customer_embeddings(
    settings: SettingsResource, warehouse: WarehouseResource, ops: OpsStoreResource
):
    """Every customer's vector at AS_OF in the taste model's space (scaled by the served
    ranker's taste weight); customers without history get one from their sign-up
    preferences and tier. Published as a Parquet snapshot for readers that must not open
    the warehouse. Before any ranker is approved there is nothing to embed in: the
    recommendation sets use the ranking fallback. Only customers whose inputs changed
    since the snapshot's vector was computed are embedded again; the others' vectors are
    carried forward, with the day they were computed."""
    record = serving_or_reason(ops, "taste_model")[0]
    if record is None:
        return dg.MaterializeResult(
            metadata={"model_version": "fallback", "reason": "no approved ranker", "customers": 0}
        )
    model = ServedModel.load(record.artefact_path)
    config = settings.get()
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        data = Interactions.from_warehouse(wh, as_of)
    path = snapshot(config, "customer_embeddings")
    customers = data.customers
    keys = customer_input_keys(customers, data.redemptions, data.category_purchases, record.version)
    stale, at = np.ones(len(customers), dtype=bool), np.full(len(customers), -1)
    previous = read_vectors(path) if path.exists() else None
    if previous is not None and "inputs_key" in previous[0]:
        meta, carried = previous
        at = positions(customers.customer_id, meta.customer_id)
        known = at >= 0
        stale[known] = meta.inputs_key.to_numpy(np.int64)[at[known]] != keys[known]
    fresh = np.flatnonzero(stale)
    computed = model.customer_vectors(
        customers.iloc[fresh].reset_index(drop=True),
        *rows_of(customers.customer_id.iloc[fresh], data.redemptions, data.category_purchases),
    )
    vectors = np.empty((len(customers), computed.shape[1]), np.float32)
    vectors[fresh] = computed
    days = np.full(len(customers), as_of, dtype=object)
    if fresh.size < len(customers):
        kept = np.flatnonzero(~stale)
        vectors[kept] = carried[at[kept]]
        days[kept] = meta.computed_as_of.to_numpy(object)[at[kept]]
    ids = customers.customer_id
    write_vectors(path, "customer_id", ids, vectors, as_of, record.version, (keys, days))
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "model_version": record.version,
            "customers": len(vectors),
            "customers_computed": int(fresh.size),
            "dimensions": int(vectors.shape[1]),
            "snapshot": dg.MetadataValue.path(str(path)),
        }
    )
