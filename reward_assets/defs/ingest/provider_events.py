"""Email events providers posted to the API: `provider_events` (group `ingestion`)."""

import dagster as dg

from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import OpsStoreResource, WarehouseResource
from reward_assets.email.webhooks import EVENT_COLUMNS, warehouse_events


@dg.asset(pool=WAREHOUSE_POOL, group_name="ingestion", kinds={"sqlite"})
def provider_events(warehouse: WarehouseResource, ops: OpsStoreResource):
    """Delivered, open, click, hard bounce, complaint and unsubscribe events that providers
    posted to POST /api/events/email, matched to the outbox by Message-ID, copied from the
    operational store (one row per provider event id); `fct_engagement_events` unions in
    those no landing file brought already."""
    with ops.open() as store:
        events = warehouse_events(store)
    with warehouse.open() as wh:
        rows = wh.replace_table(
            "raw.provider_events", EVENT_COLUMNS, [events], logged_by="occurred_at"
        )
    return dg.MaterializeResult(metadata={"dagster/row_count": rows})
