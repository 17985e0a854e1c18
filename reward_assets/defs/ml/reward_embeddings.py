"""The taste model's training: `reward_embeddings` (group `ml`)."""

import dagster as dg
import pandas as pd

from reward_assets.defs.ml.gates import ML, WAREHOUSE_INPUTS, gate, model_result, register, snapshot
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import OpsStoreResource, SettingsResource, WarehouseResource
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.recommend.inputs import write_vectors
from reward_assets.recommend.interactions import Interactions
from reward_assets.recommend.protocol import ranking_quality
from reward_assets.recommend.taste import fit_taste_model


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=ML,
    deps=WAREHOUSE_INPUTS,
    kinds={"numpy"},
    check_specs=[
        gate(
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
    record = register(
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
        snapshot(config, "reward_embeddings"),
        "reward_id",
        pd.Series(model.reward_ids),
        model.reward_vectors(),
        as_of,
        record.version,
    )
    yield from model_result(
        "reward_embeddings",
        "ranking_beats_popularity",
        record,
        failures,
        {"as_of": as_of.isoformat(), "rewards": len(model.reward_ids)},
    )
