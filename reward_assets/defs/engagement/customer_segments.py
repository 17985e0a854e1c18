"""`customer_segments`: each customer's segment, campaign and contact day."""

import dagster as dg

from reward_assets.defs.engagement import ENGAGEMENT
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import SettingsResource, WarehouseResource
from reward_assets.defs.warehouse.audits import check_results, served_check_specs
from reward_assets.defs.warehouse.table_metadata import table_metadata
from reward_assets.engagement.segments import SEGMENTS_TABLE, serve_segments


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=ENGAGEMENT,
    deps=["churn_scores", "engagement_scores", "dim_customers"],
    kinds={"duckdb"},
    check_specs=served_check_specs(SEGMENTS_TABLE),
)
def customer_segments(settings: SettingsResource, warehouse: WarehouseResource):
    """Engagement analysis: each customer's segment (new, active, at risk, dormant) from
    churn and engagement scores, the campaign it calls for, and whether today is their day."""
    with warehouse.open() as wh:
        served = serve_segments(wh, settings.get())
        tables = table_metadata(wh, served.audited.table)
    return dg.MaterializeResult(
        metadata={
            "as_of": served.as_of.isoformat(),
            "dagster/row_count": served.audited.rows,
            **served.audited.metadata(),
            **tables,
            "segments": dg.MetadataValue.md(served.counts.to_markdown(index=False)),
        },
        check_results=check_results(served.audited),
    )
