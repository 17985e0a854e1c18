"""The product's own email events: `email_sends` and `provider_events` (group `ingestion`)."""

import dagster as dg

from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import OpsStoreResource, WarehouseResource
from reward_assets.email.outbox import SENT_EVENT_COLUMNS, Outbox
from reward_assets.email.webhooks import EVENT_COLUMNS, warehouse_events


@dg.multi_asset(
    pool=WAREHOUSE_POOL,
    group_name="ingestion",
    specs=[
        dg.AssetSpec(
            "email_sends",
            description="Emails this product sent, as `sent` engagement events with their "
            "experiment arm, copied from the outbox (`raw.email_sends`).",
            kinds={"sqlite"},
        ),
        dg.AssetSpec(
            "provider_events",
            description="Email events providers posted to POST /api/events/email, matched to "
            "the outbox (`raw.provider_events`).",
            kinds={"sqlite"},
        ),
    ],
)
def email_events(warehouse: WarehouseResource, ops: OpsStoreResource):
    """Copied together from the operational store, as tables of their own rather than rows
    in the ingested partitions (which re-ingestion replaces); `fct_engagement_events`
    unions them in."""
    with ops.open() as store:
        sent = Outbox(store).sent_events()
        posted = warehouse_events(store)
    with warehouse.open() as wh:
        sends = wh.replace_table("raw.email_sends", SENT_EVENT_COLUMNS, [sent])
        events = wh.replace_table("raw.provider_events", EVENT_COLUMNS, [posted])
    yield dg.MaterializeResult(asset_key="email_sends", metadata={"dagster/row_count": sends})
    yield dg.MaterializeResult(asset_key="provider_events", metadata={"dagster/row_count": events})
