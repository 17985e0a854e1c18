"""`engagement_plan`: today's contact decisions."""

import dagster as dg

from reward_assets.defs.engagement import ENGAGEMENT
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import OpsStoreResource, SettingsResource, WarehouseResource
from reward_assets.engagement.decisions import reason_counts
from reward_assets.engagement.plan import plan_day


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=ENGAGEMENT,
    deps=[
        "customer_segments",
        "suppression_list",
        "send_time_preferences",
        "fct_engagement_events",
        "fct_redemptions",
    ],
    kinds={"duckdb"},
)
def engagement_plan(
    context: dg.AssetExecutionContext,
    settings: SettingsResource,
    warehouse: WarehouseResource,
    ops: OpsStoreResource,
):
    """Today's contact decisions: due follow-ups (cancelled for customers who engaged) and
    the segments' campaigns, each at the customer's best local hour outside quiet hours,
    or the rule (consent, suppression, holdout, frequency cap) that stopped it. A decision
    once made stands: re-running a day adds only customers not decided yet."""
    with warehouse.open() as wh, ops.open() as store:
        plan = plan_day(wh, store, settings.get())
    context.log.info(
        f"{plan.rows} new decisions for {plan.as_of}; {plan.already_decided} were decided before"
    )
    return dg.MaterializeResult(
        metadata={
            "as_of": plan.as_of.isoformat(),
            "new_decisions": plan.rows,
            "already_decided": plan.already_decided,
            "followups_cancelled_engaged": plan.followups_cancelled_engaged,
            **{f"decision_{k}": v for k, v in reason_counts(plan.decisions).items()},
        }
    )
