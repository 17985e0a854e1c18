import datetime as dt

import dagster as dg

from reward_assets.contact.rules import WELCOME, ContactPolicy
from reward_assets.content.writer import ContentConfig, ContentWriter
from reward_assets.defs.engagement.delivery import deliver_due_emails
from reward_assets.defs.resources import (
    LandingResource,
    OpsStoreResource,
    SettingsResource,
    WarehouseResource,
)
from reward_assets.email.outbox import Outbox, message_key
from reward_assets.email.suppression import suppressed
from reward_assets.engagement import followups
from reward_assets.engagement.decisions import (
    ONCE,
    reason_counts,
    welcome_decisions,
    write_messages,
)
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.ingest.signups import (
    SignupCursor,
    batch_run_key,
    batches,
    customers_by_id,
    scan_signups,
)
from reward_assets.recommend.cold_start import first_offers
from reward_assets.recommend.inputs import reward_catalog
from reward_assets.recommend.sets import SetRules

WELCOME_OP = "welcome_new_customers"


def welcome_key(customer_id: str) -> str:
    return message_key(customer_id, WELCOME, ONCE)


class OnboardingConfig(dg.Config):
    customer_ids: list[str]


@dg.op(out=dg.Out(int, description="Welcomes queued."))
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
    project = settings.get()
    policy = ContactPolicy.from_settings(project)
    rules = SetRules.from_settings(project)
    now = dt.datetime.now(dt.UTC)
    customers = customers_by_id(landing.path, config.customer_ids)
    missing = len(set(config.customer_ids) - set(customers.customer_id))
    with ops.open() as store:
        outbox = Outbox(store)
        decided = outbox.existing([welcome_key(c) for c in customers.customer_id])
        customers = customers[~customers.customer_id.map(welcome_key).isin(decided)]
        decisions = welcome_decisions(
            customers, policy, now, suppressed(store, list(customers.customer_id))
        )
        contact = [d for d in decisions if d.reason is None]
        chosen = customers[customers.customer_id.isin({d.customer_id for d in contact})]
        with warehouse.open() as wh:
            as_of = resolve_as_of(wh, project.as_of)
            rewards = reward_catalog(wh, as_of)
        with ops.registry() as registry:
            offers, version = first_offers(chosen, rewards, rules, as_of, registry)
        writer = ContentWriter(ContentConfig.from_settings(project), store)
        written = write_messages(
            contact,
            chosen,
            offers,
            writer,
            public_base_url=project.public_base_url,
            unsubscribe_secret=project.unsubscribe_secret,
        )
        # Follow-ups first: a rerun skips customers whose welcome is queued, so scheduling
        # after the enqueue could be lost to a crash in between.
        followups.schedule(
            store, zip(chosen.customer_id, chosen.signup_at, strict=True), project.followup_days
        )
        queued = outbox.enqueue(written, run_id=context.run_id)
        skipped = outbox.record_skips(
            [d.skip() for d in decisions if d.reason], run_id=context.run_id
        )
    context.log.info(f"{queued} welcomes queued, {skipped} skips recorded")
    return dg.Output(
        queued,
        metadata={
            "requested": len(config.customer_ids),
            "not_in_landing_or_invalid": missing,
            "already_decided": len(decided),
            "queued": queued,
            "skipped": skipped,
            **{f"decision_{k}": v for k, v in reason_counts(decisions).items()},
            **{f"content_{k}": v for k, v in writer.stats.items()},
            "reward_model": version or "popularity (no approved taste model)",
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
    project = settings.get()
    now = dt.datetime.now(dt.UTC)
    cursor = SignupCursor.parse(context.cursor)
    scan = scan_signups(project.data_dir, cursor, project.as_of, project.welcome_max_age_days)
    pending = scan.cursor.pending
    with ops.open() as store:
        decided = Outbox(store).existing(
            [welcome_key(c) for c in [*scan.recent.customer_id, *pending]]
        )
    for customer_id in [c for c in pending if welcome_key(c) in decided]:
        del pending[customer_id]
    # A run that failed before deciding (its key is spent) must not cost the welcome.
    retry_after = dt.timedelta(minutes=project.onboarding_retry_minutes)
    retries: dict[int, list[str]] = {}
    for customer_id, (requested, attempt) in list(pending.items()):
        if now - dt.datetime.fromisoformat(requested) < retry_after:
            continue
        if attempt >= project.onboarding_max_attempts:
            context.log.warning(f"{customer_id}: no welcome decision after {attempt} runs")
            del pending[customer_id]
            continue
        retries.setdefault(attempt + 1, []).append(customer_id)
    new = [c for c in scan.recent.customer_id if welcome_key(c) not in decided and c not in pending]
    if not new and not retries:
        if not scan.changed_files:
            return dg.SkipReason(f"no new or changed customer files in {project.data_dir}/")
        return dg.SensorResult(
            skip_reason=(
                f"{scan.rows_read} customers in {len(scan.changed_files)} new or changed "
                f"file(s), none signed up within {project.welcome_max_age_days} days of "
                f"{scan.as_of} without a welcome decision"
            ),
            cursor=scan.cursor.dump(),
        )
    requests = []
    for attempt, ids in [(1, new), *sorted(retries.items())]:
        for batch in batches(ids, project.onboarding_batch_size):
            requests.append(
                dg.RunRequest(
                    run_key=batch_run_key(batch, attempt),
                    run_config=dg.RunConfig(ops={WELCOME_OP: OnboardingConfig(customer_ids=batch)}),
                    tags={"reward_assets/new_customers": str(len(batch))},
                )
            )
            pending.update({c: [now.isoformat(), attempt] for c in batch})
    context.log.info(
        f"{len(new)} new customers, {sum(map(len, retries.values()))} retried, "
        f"in {len(requests)} run(s)"
    )
    return dg.SensorResult(run_requests=requests, cursor=scan.cursor.dump())
