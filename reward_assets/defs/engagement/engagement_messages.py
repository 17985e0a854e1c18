"""`engagement_messages`: today's emails into the outbox, and the `no_uncertain_emails`
check on the outbox they wait in."""

import dagster as dg

from reward_assets.defs.engagement import ENGAGEMENT
from reward_assets.defs.pools import copy_writing_pool
from reward_assets.defs.resources import OpsStoreResource, SettingsResource, WarehouseResource
from reward_assets.email.outbox import Outbox
from reward_assets.engagement.messages import queue_planned
from reward_assets.settings import Settings


@dg.asset(
    # Read when Dagster loads the code: `warehouse` on DuckDB, `llm` elsewhere (defs/pools).
    pool=copy_writing_pool(Settings()),
    group_name=ENGAGEMENT,
    deps=["engagement_plan", "recommendation_sets"],
    kinds={"sqlite"},
)
def engagement_messages(
    context: dg.AssetExecutionContext,
    settings: SettingsResource,
    warehouse: WarehouseResource,
    ops: OpsStoreResource,
):
    """Today's emails: the content agent writes each around the customer's current top
    rewards (a template when the LLM is unavailable or its answer fails a guardrail), and
    they wait in the outbox until their send time. Skips are recorded there too."""
    with ops.open() as store:
        done = queue_planned(warehouse.open, store, settings.get(), run_id=context.run_id)
    return dg.MaterializeResult(
        metadata={
            "as_of": done.as_of.isoformat(),
            "queued": done.result.queued,
            "skips_recorded": done.result.skipped,
            "already_in_outbox": done.already_in_outbox,
            **{f"content_{k}": v for k, v in done.result.content.items()},
            **{f"experiment_{arm}": n for arm, n in done.result.arms.items()},
            **{f"outbox_{k}": v for k, v in sorted(done.outbox.items())},
        }
    )


@dg.asset_check(
    asset="engagement_messages",
    description="No email is stuck in `uncertain` (sent or not, nobody knows): resolve "
    "each with `reward-assets email resolve KEY --as sent|failed|requeue`.",
)
def no_uncertain_emails(ops: OpsStoreResource):
    with ops.open() as store:
        rows = Outbox(store).uncertain_rows()
    return dg.AssetCheckResult(
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "uncertain": len(rows),
            "keys": ", ".join(r["key"] for r in rows[:20]) or "none",
        },
    )
