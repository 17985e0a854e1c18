"""The daily engagement cycle: who to contact, with which rewards, at which local hour,
with which copy, into the outbox. Delivery (`delivery_job`) sends what is due."""

import datetime as dt

import dagster as dg
import pandas as pd

from reward_assets.contact.rules import ContactPolicy
from reward_assets.content.writer import ContentConfig, ContentWriter
from reward_assets.defs.resources import OpsStoreResource, SettingsResource, WarehouseResource
from reward_assets.email.outbox import Outbox, message_key
from reward_assets.email.suppression import suppressed, sync_from_events
from reward_assets.engagement import followups
from reward_assets.engagement.decisions import (
    ONCE,
    Decision,
    cycle_decisions,
    reason_counts,
    write_messages,
)
from reward_assets.engagement.segments import segment_customers
from reward_assets.ingest.clock import as_of_params, resolve_as_of
from reward_assets.settings import Settings
from reward_assets.warehouse.snapshots import replace_served

ENGAGEMENT = "engagement"
SEGMENT_COLUMNS = {
    "as_of": "DATE",
    "customer_id": "VARCHAR",
    "segment": "VARCHAR",
    "campaign": "VARCHAR",
    "contact_today": "BOOLEAN",
}
PLAN_COLUMNS = {
    "as_of": "DATE",
    "customer_id": "VARCHAR",
    "campaign": "VARCHAR",
    "occurrence": "VARCHAR",
    "send_at": "TIMESTAMP",
    "timezone": "VARCHAR",
    "decision": "VARCHAR",  # 'contact' or the rule that stopped it
}


@dg.asset(group_name=ENGAGEMENT, deps=["fct_engagement_events"], kinds={"sqlite"})
def suppression_list(warehouse: WarehouseResource, ops: OpsStoreResource):
    """Unsubscribes, complaints and bounces from the engagement data, added to the
    operational store's suppression list (which the API's unsubscribe link also writes)."""
    with warehouse.open() as wh:
        events = wh.frame(
            "SELECT DISTINCT customer_id, event_type FROM marts.fct_engagement_events "
            "WHERE event_type IN ('unsubscribe', 'complaint', 'bounce')"
        )
    with ops.open() as store:
        added = sync_from_events(store, events)
    return dg.MaterializeResult(metadata={"added": added, "events_read": len(events)})


@dg.asset(
    group_name=ENGAGEMENT,
    deps=["churn_scores", "engagement_scores", "dim_customers"],
    kinds={"duckdb"},
)
def customer_segments(settings: SettingsResource, warehouse: WarehouseResource):
    """Engagement analysis: each customer's segment (new, active, at risk, dormant) from
    churn and engagement scores, the campaign it calls for, and whether today is their day."""
    config = settings.get()
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        segments = segment_customers(
            wh.frame("SELECT customer_id, signup_at FROM marts.dim_customers"),
            wh.frame("SELECT customer_id, churn_probability, risk_band FROM ml.churn_scores"),
            wh.frame(
                "SELECT customer_id, open_probability, click_probability FROM ml.engagement_scores"
            ),
            as_of,
        )
        segments["as_of"] = as_of
        rows = replace_served(
            wh, "ml.customer_segments", SEGMENT_COLUMNS, [segments], config.data_dir
        )
    counts = segments.groupby("segment").agg(
        customers=("customer_id", "size"), contact_today=("contact_today", "sum")
    )
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "dagster/row_count": rows,
            "segments": dg.MetadataValue.md(counts.reset_index().to_markdown(index=False)),
        }
    )


def _engaged_since_signup(wh, due: pd.DataFrame, as_of: dt.date) -> set[str]:
    """Customers among `due` who opened, clicked or redeemed after signing up."""
    if due.empty:
        return set()
    params = {**as_of_params(as_of), "since": due.signup_at.min()}
    activity = wh.frame(
        """
        SELECT customer_id, occurred_at AS at FROM marts.fct_engagement_events
        WHERE event_type IN ('open', 'click') AND occurred_at >= :since AND occurred_at < :as_of_end
        UNION ALL
        SELECT customer_id, redeemed_at AS at FROM marts.fct_redemptions
        WHERE redeemed_at >= :since AND redeemed_at < :as_of_end
        """,
        params,
    )
    joined = activity.merge(due[["customer_id", "signup_at"]], on="customer_id")
    return set(joined.loc[joined["at"] >= joined["signup_at"], "customer_id"])


@dg.asset(
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
    config = settings.get()
    policy = ContactPolicy.from_settings(config)
    with warehouse.open() as wh, ops.open() as store:
        as_of = resolve_as_of(wh, config.as_of)
        due = followups.due(store, as_of)
        engaged = _engaged_since_signup(wh, due, as_of)
        cancelled = followups.mark(
            store,
            [
                (r.customer_id, r.campaign, "engaged")
                for r in due.itertuples()
                if r.customer_id in engaged
            ],
            followups.CANCELLED,
        )
        due = due[~due.customer_id.isin(engaged)].assign(occurrence=ONCE)
        todays = wh.frame(
            "SELECT customer_id, campaign FROM ml.customer_segments "
            "WHERE contact_today AND campaign IS NOT NULL"
        ).assign(occurrence=as_of.isoformat())
        candidates = pd.concat(
            [due[["customer_id", "campaign", "occurrence"]], todays], ignore_index=True
        )
        profiles = wh.frame(
            """
            SELECT c.customer_id, c.timezone, c.marketing_opt_in, p.best_local_hour
            FROM marts.dim_customers c
            LEFT JOIN ml.send_time_preferences p ON p.customer_id = c.customer_id
            """
        )
        candidates = candidates.merge(profiles, on="customer_id")
        outbox = Outbox(store)
        keys = _keys(candidates)
        decided = outbox.existing(list(keys)) | _planned_keys(wh, as_of)
        candidates = candidates[~keys.isin(decided)]
        day_start = dt.datetime.combine(as_of, dt.time(), tzinfo=dt.UTC)
        window = dt.timedelta(days=policy.frequency_cap_days)
        ids = list(candidates.customer_id.unique())
        decisions = cycle_decisions(
            candidates,
            policy,
            day_start,
            suppressed(store, ids),
            outbox.other_marketing_sends(ids, day_start - window, day_start + 2 * window),
        )
        skipped_followups = [
            (d.customer_id, d.campaign, d.reason)
            for d in decisions
            if d.reason and d.occurrence == ONCE
        ]
        followups.mark(store, skipped_followups, followups.CANCELLED)
        rows = wh.append_rows("ml.engagement_plan", PLAN_COLUMNS, [_plan_frame(decisions, as_of)])
    context.log.info(f"{rows} new decisions for {as_of}; {len(decided)} were decided before")
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "new_decisions": rows,
            "already_decided": len(decided),
            "followups_cancelled_engaged": cancelled,
            **{f"decision_{k}": v for k, v in reason_counts(decisions).items()},
        }
    )


def _keys(frame: pd.DataFrame) -> pd.Series:
    """The outbox key of each row (customer_id, campaign, occurrence)."""
    parts = zip(frame.customer_id, frame.campaign, frame.occurrence, strict=True)
    return pd.Series([message_key(*p) for p in parts], index=frame.index, dtype=object)


def _planned_keys(wh, as_of: dt.date) -> set[str]:
    if not wh.table_exists("ml.engagement_plan"):
        return set()
    planned = wh.frame(
        "SELECT customer_id, campaign, occurrence FROM ml.engagement_plan WHERE as_of = :as_of",
        {"as_of": as_of},
    )
    return set(_keys(planned))


def _plan_frame(decisions: list[Decision], as_of: dt.date) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "as_of": as_of,
            "customer_id": [d.customer_id for d in decisions],
            "campaign": [d.campaign for d in decisions],
            "occurrence": [d.occurrence for d in decisions],
            "send_at": [d.send_at.replace(tzinfo=None) for d in decisions],
            "timezone": [d.timezone for d in decisions],
            "decision": [d.reason or "contact" for d in decisions],
        },
        columns=list(PLAN_COLUMNS),
    )


@dg.asset(group_name=ENGAGEMENT, deps=["engagement_plan", "recommendation_sets"], kinds={"sqlite"})
def engagement_messages(
    context: dg.AssetExecutionContext,
    settings: SettingsResource,
    warehouse: WarehouseResource,
    ops: OpsStoreResource,
):
    """Today's emails: the content agent writes each around the customer's current top
    rewards (a template when the LLM is unavailable or its answer fails a guardrail), and
    they wait in the outbox until their send time. Skips are recorded there too."""
    config = settings.get()
    with warehouse.open() as wh:
        as_of = resolve_as_of(wh, config.as_of)
        plan = wh.frame(
            "SELECT * FROM ml.engagement_plan WHERE as_of = :as_of ORDER BY customer_id, campaign",
            {"as_of": as_of},
        )
        ids = plan.loc[plan.decision == "contact", "customer_id"].unique()
        profiles = wh.frame(
            "SELECT customer_id, email, first_name, tier, points_balance FROM marts.dim_customers"
        )
        profiles = profiles[profiles.customer_id.isin(ids)]
        offers = wh.frame(
            """
            SELECT s.customer_id, s.rank, s.reward_id, r.name, r.category, r.points_cost,
                   s.reason, s.is_almost_there
            FROM ml.recommendation_sets s JOIN marts.dim_rewards r ON r.reward_id = s.reward_id
            WHERE s.rank <= 3
            """
        )
        offers = offers[offers.customer_id.isin(ids)]
    decisions = [
        Decision(
            r.customer_id,
            r.campaign,
            r.occurrence,
            r.send_at.to_pydatetime().replace(tzinfo=dt.UTC),
            r.timezone,
            None if r.decision == "contact" else r.decision,
        )
        for r in plan.itertuples(index=False)
    ]
    with ops.open() as store:
        outbox = Outbox(store)
        decided = outbox.existing([d.key for d in decisions])
        pending = [d for d in decisions if d.key not in decided]
        contact = [d for d in pending if d.reason is None]
        writer = ContentWriter(ContentConfig.from_settings(config), store)
        written = write_messages(
            contact,
            profiles,
            offers,
            writer,
            public_base_url=config.public_base_url,
            unsubscribe_secret=config.unsubscribe_secret,
        )
        queued = outbox.enqueue(written, run_id=context.run_id)
        skipped = outbox.record_skips(
            [d.skip() for d in pending if d.reason], run_id=context.run_id
        )
        followups.mark(
            store,
            [(d.customer_id, d.campaign, None) for d in contact if d.occurrence == ONCE],
            followups.QUEUED,
        )
        counts = outbox.status_counts()
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "queued": queued,
            "skips_recorded": skipped,
            "already_in_outbox": len(decided),
            **{f"content_{k}": v for k, v in writer.stats.items()},
            **{f"outbox_{k}": v for k, v in sorted(counts.items())},
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


engagement_cycle_job = dg.define_asset_job(
    "engagement_cycle_job",
    selection=dg.AssetSelection.groups(ENGAGEMENT),
    description="Segments, plans and writes today's emails into the outbox.",
)


@dg.definitions
def engagement_cycle() -> dg.Definitions:
    """The cycle's assets, check and job, and its schedule, whose cron and time zone
    (ENGAGEMENT_CYCLE_CRON, ENGAGEMENT_CYCLE_TIMEZONE) are read when Dagster loads the code."""
    settings = Settings()
    return dg.Definitions(
        assets=[suppression_list, customer_segments, engagement_plan, engagement_messages],
        asset_checks=[no_uncertain_emails],
        jobs=[engagement_cycle_job],
        schedules=[
            dg.ScheduleDefinition(
                name="engagement_cycle_schedule",
                job=engagement_cycle_job,
                cron_schedule=settings.engagement_cycle_cron,
                execution_timezone=settings.engagement_cycle_timezone,
                default_status=dg.DefaultScheduleStatus.STOPPED,
                description="Daily (ENGAGEMENT_CYCLE_CRON in ENGAGEMENT_CYCLE_TIMEZONE).",
            )
        ],
    )
