"""Delivery: `deliver_due_emails` sends what the outbox holds due, in `delivery_job` on
`delivery_schedule` and at the end of `onboarding_job`."""

import dagster as dg

from reward_assets.defs.resources import OpsStoreResource, SettingsResource
from reward_assets.email.delivery import DeliveryConfig, deliver_due
from reward_assets.email.mailer import mailer_from_settings
from reward_assets.settings import Settings


@dg.op(ins={"after": dg.In(dg.Nothing)}, out=dg.Out(int, description="Emails sent."))
def deliver_due_emails(
    context: dg.OpExecutionContext, settings: SettingsResource, ops: OpsStoreResource
):
    """Sends the queued emails that are due, re-checking every contact rule first.

    Touches the operational store and the mail server only, never the warehouse.
    """
    config = settings.get()
    with ops.open() as store:
        report = deliver_due(
            store,
            mailer_from_settings(config),
            DeliveryConfig.from_settings(config),
            worker_id=context.run_id,
        )
    context.log.info(
        f"sent {report.sent}, failed {report.failed}, cancelled {report.cancelled}, "
        f"deferred {report.deferred}, retried {report.retried}, uncertain {report.uncertain}"
    )
    return dg.Output(
        report.sent,
        metadata={
            "sent": report.sent,
            "failed": report.failed,
            "cancelled": report.cancelled,
            "deferred": report.deferred,
            "retried": report.retried,
            "uncertain": report.uncertain,
            **{f"reason_{k}": v for k, v in sorted(report.by_reason.items())},
            "transport": "smtp" if config.smtp_host else "eml files",
        },
    )


@dg.job(description="Sends the emails that are due.")
def delivery_job():
    deliver_due_emails()


@dg.definitions
def delivery() -> dg.Definitions:
    """The delivery job and its schedule, whose cron (DELIVERY_CRON) is read when Dagster
    loads the code."""
    return dg.Definitions(
        jobs=[delivery_job],
        schedules=[
            dg.ScheduleDefinition(
                name="delivery_schedule",
                job=delivery_job,
                cron_schedule=Settings().delivery_cron,
                execution_timezone="UTC",
                default_status=dg.DefaultScheduleStatus.STOPPED,
                description="Sends due emails every few minutes (DELIVERY_CRON).",
            )
        ],
    )
