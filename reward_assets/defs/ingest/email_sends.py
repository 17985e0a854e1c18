"""The emails this product sent, as engagement events: `email_sends` (group `ingestion`)."""

import dagster as dg

from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import OpsStoreResource, WarehouseResource
from reward_assets.email.outbox import SENT_EVENT_COLUMNS, Outbox


@dg.asset(pool=WAREHOUSE_POOL, group_name="ingestion", kinds={"sqlite"})
def email_sends(warehouse: WarehouseResource, ops: OpsStoreResource):
    """Emails this product sent, as `sent` engagement events with their experiment arm,
    copied from the outbox.

    A table of their own, not rows in the ingested partitions (which re-ingestion
    replaces); `fct_engagement_events` unions them in.
    """
    with ops.open() as store:
        sent = Outbox(store).sent_events()
    with warehouse.open() as wh:
        rows = wh.replace_table(
            "raw.email_sends", SENT_EVENT_COLUMNS, [sent], logged_by="occurred_at"
        )
    return dg.MaterializeResult(metadata={"dagster/row_count": rows})
