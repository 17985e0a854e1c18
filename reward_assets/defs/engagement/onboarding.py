"""Onboarding: `new_customer_sensor` starts `onboarding_job` for each batch of new
sign-ups, whose op `welcome_new_customers` queues their welcomes before
`deliver_due_emails` sends what is due."""

import datetime as dt

import dagster as dg

from reward_assets.defs.engagement.delivery import deliver_due_emails
from reward_assets.defs.pools import copy_writing_pool
from reward_assets.defs.resources import (
    LandingResource,
    OpsStoreResource,
    SettingsResource,
    WarehouseResource,
)
from reward_assets.engagement.decisions import reason_counts
from reward_assets.engagement.onboarding import onboarding_tick
from reward_assets.engagement.welcome import welcome_customers
from reward_assets.settings import Settings

WELCOME_OP = "welcome_new_customers"


class OnboardingConfig(dg.Config):
    customer_ids: list[str]


# The pool is read when Dagster loads the code: `warehouse` on DuckDB, `llm` elsewhere.
@dg.op(pool=copy_writing_pool(Settings()), out=dg.Out(int, description="Welcomes queued."))
def welcome_new_customers(
    context: dg.OpExecutionContext,
    config: OnboardingConfig,
    settings: SettingsResource,
    warehouse: WarehouseResource,
    landing: LandingResource,
    ops: OpsStoreResource,
):
    """Decides each new customer's welcome (or records why there is none), matches their
    first rewards, has the content agent write the email, queues it and schedules the
    follow-ups."""
    with ops.open() as store:
        done = welcome_customers(
            store,
            warehouse.open,
            settings.get(),
            landing.path,
            config.customer_ids,
            now=dt.datetime.now(dt.UTC),
            run_id=context.run_id,
        )
    context.log.info(f"{done.result.queued} welcomes queued, {done.result.skipped} skips recorded")
    return dg.Output(
        done.result.queued,
        metadata={
            "requested": done.requested,
            "not_in_landing_or_invalid": done.missing,
            "already_decided": done.already_decided,
            "queued": done.result.queued,
            "skipped": done.result.skipped,
            **{f"decision_{k}": v for k, v in reason_counts(done.decisions).items()},
            **{f"content_{k}": v for k, v in done.result.content.items()},
            "reward_model": done.reward_model or "popularity (no approved taste model)",
        },
    )


@dg.job(description="Welcomes a batch of new customers and delivers what is due.")
def onboarding_job():
    deliver_due_emails(welcome_new_customers())


@dg.sensor(
    job=onboarding_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def new_customer_sensor(
    context: dg.SensorEvaluationContext, settings: SettingsResource, ops: OpsStoreResource
):
    """Starts onboarding for sign-ups landed in DATA_DIR since the last tick, in batches.

    Reads the landing files and the operational store, never the warehouse. A batch's run
    key comes from its customers, so a replayed tick starts nothing new; the welcome's own
    key guards against any other repeat.
    """
    with ops.open() as store:
        tick = onboarding_tick(store, settings.get(), context.cursor, dt.datetime.now(dt.UTC))
    for customer_id, attempts in tick.given_up.items():
        context.log.warning(f"{customer_id}: no welcome decision after {attempts} runs")
    if tick.skip_reason and not tick.scan.changed_files:
        return dg.SkipReason(tick.skip_reason)
    if tick.skip_reason:
        return dg.SensorResult(skip_reason=tick.skip_reason, cursor=tick.cursor.dump())
    requests = [
        dg.RunRequest(
            run_key=batch.run_key,
            run_config=dg.RunConfig(
                ops={WELCOME_OP: OnboardingConfig(customer_ids=batch.customer_ids)}
            ),
            tags={"reward_assets/new_customers": str(len(batch.customer_ids))},
        )
        for batch in tick.batches
    ]
    context.log.info(f"{tick.new} new customers, {tick.retried} retried, in {len(requests)} run(s)")
    return dg.SensorResult(run_requests=requests, cursor=tick.cursor.dump())
