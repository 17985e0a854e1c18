"""`suppression_list`: the engagement data's opt-outs into the operational store."""

import dagster as dg

from reward_assets.defs.engagement import ENGAGEMENT
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import OpsStoreResource, WarehouseResource
from reward_assets.email.suppression import sync_from_warehouse


@dg.asset(
    pool=WAREHOUSE_POOL, group_name=ENGAGEMENT, deps=["fct_engagement_events"], kinds={"sqlite"}
)
def suppression_list(warehouse: WarehouseResource, ops: OpsStoreResource):
    """Unsubscribes, complaints and bounces from the engagement data, added to the
    operational store's suppression list (which the API's unsubscribe link also writes)."""
    with warehouse.open() as wh, ops.open() as store:
        added, events_read = sync_from_warehouse(store, wh)
    return dg.MaterializeResult(metadata={"added": added, "events_read": events_read})
