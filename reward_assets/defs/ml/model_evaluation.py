"""The offline evaluation of the ranking candidates: `model_evaluation` (group `ml`)."""

import dagster as dg

from reward_assets.defs.ml.gates import ML, WAREHOUSE_INPUTS
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import SettingsResource, WarehouseResource
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.recommend.evaluate import evaluate
from reward_assets.recommend.interactions import Interactions


@dg.asset(pool=WAREHOUSE_POOL, group_name=ML, deps=WAREHOUSE_INPUTS, kinds={"numpy"})
def model_evaluation(
    context: dg.AssetExecutionContext, settings: SettingsResource, warehouse: WarehouseResource
):
    """Offline evaluation of the ranking candidates against popularity and random: a
    seeded 75/25 split of redemptions, choices made on a validation split of the 75. The
    `test_*` figures are the served ranker's, chosen as `reward_embeddings` chooses it."""
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, settings.get().as_of)
        data = Interactions.from_warehouse(wh, as_of)
    report = evaluate(data, k=10, split="random", seed=42, log=context.log.info)
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "report": dg.MetadataValue.md(report.to_markdown()),
            "served": report.served.name,
            **{f"test_{k}": float(v) for k, v in report.headline().items()},
        }
    )
