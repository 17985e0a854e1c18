"""Every customer's taste vector at AS_OF: `customer_embeddings` (group `scoring`)."""

import dagster as dg

from reward_assets.defs.ml.gates import SCORING, WAREHOUSE_INPUTS, serving_or_reason, snapshot
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import OpsStoreResource, SettingsResource, WarehouseResource
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.recommend.inputs import write_vectors
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
    recommendation sets use the ranking fallback."""
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
    vectors = model.customer_vectors(data.customers, data.redemptions, data.category_purchases)
    path = snapshot(config, "customer_embeddings")
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
