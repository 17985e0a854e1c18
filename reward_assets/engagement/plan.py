"""The engagement cycle's plan for a day: who gets which campaign at which instant, or the
rule that stopped it, in the warehouse table `ml.engagement_plan`.

The candidates are the follow-ups due (cancelled instead for customers who engaged since
signing up) and the campaigns of the customers whose contact day it is
(`ml.customer_segments`). A decision once made stands: a candidate whose message is in
the outbox or already in the day's plan is not decided again, so re-running a day adds
only customers not decided yet. `engagement.messages` writes and queues the plan.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from reward_assets.contact.campaigns import is_followup, occurrence
from reward_assets.contact.rules import ContactPolicy
from reward_assets.email.outbox import Outbox, message_key
from reward_assets.engagement import followups
from reward_assets.engagement.decisions import CONTACT, Decision, decide_day
from reward_assets.engagement.segments import SEGMENTS_TABLE
from reward_assets.ingest.clock import as_of_params, resolve_as_of
from reward_assets.ops.store import OpsStore
from reward_assets.settings import Settings
from reward_assets.warehouse.store import Warehouse

PLAN_TABLE = "ml.engagement_plan"
PLAN_COLUMNS = {
    "as_of": "DATE",
    "customer_id": "VARCHAR",
    "campaign": "VARCHAR",
    "occurrence": "VARCHAR",
    "send_at": "TIMESTAMP",
    "timezone": "VARCHAR",
    "decision": "VARCHAR",  # CONTACT or the rule that stopped it
}


@dataclass(frozen=True)
class DayPlan:
    as_of: dt.date
    decisions: list[Decision]  # made by this run
    rows: int  # added to the plan table
    already_decided: int
    followups_cancelled_engaged: int


def plan_day(warehouse: Warehouse, store: OpsStore, settings: Settings) -> DayPlan:
    """Decide AS_OF's candidates not decided yet and append the decisions to the plan;
    due follow-ups that are not sent (engaged customers, blocked by a rule) are cancelled."""
    policy = ContactPolicy.from_settings(settings)
    as_of = resolve_as_of(warehouse, settings.as_of)
    due = followups.due(store, as_of)
    engaged = _engaged_since_signup(warehouse, due, as_of)
    cancelled = followups.mark(
        store,
        [
            (r.customer_id, r.campaign, followups.ENGAGED)
            for r in due.itertuples()
            if r.customer_id in engaged
        ],
        followups.CANCELLED,
    )
    todays = warehouse.frame(
        f"SELECT customer_id, campaign FROM {SEGMENTS_TABLE} "
        "WHERE contact_today AND campaign IS NOT NULL"
    )
    candidates = pd.concat(
        [due.loc[~due.customer_id.isin(engaged), ["customer_id", "campaign"]], todays],
        ignore_index=True,
    )
    candidates["occurrence"] = [occurrence(c, as_of) for c in candidates.campaign.tolist()]
    profiles = warehouse.frame(
        """
        SELECT c.customer_id, c.timezone, c.marketing_opt_in, p.best_local_hour
        FROM marts.dim_customers c
        LEFT JOIN ml.send_time_preferences p ON p.customer_id = c.customer_id
        """
    )
    candidates = candidates.merge(profiles, on="customer_id")
    keys = _keys(candidates)
    decided = Outbox(store).existing(list(keys)) | _planned_keys(warehouse, as_of)
    decisions = decide_day(store, candidates[~keys.isin(decided)], policy, as_of)
    followups.mark(
        store,
        [
            (d.customer_id, d.campaign, d.reason)
            for d in decisions
            if d.reason and is_followup(d.campaign)
        ],
        followups.CANCELLED,
    )
    rows = warehouse.append_rows(PLAN_TABLE, PLAN_COLUMNS, [_plan_frame(decisions, as_of)])
    return DayPlan(as_of, decisions, rows, len(decided), cancelled)


def planned_decisions(warehouse: Warehouse, as_of: dt.date) -> list[Decision]:
    """The decisions of the day's plan, by customer and campaign."""
    plan = warehouse.frame(
        f"SELECT * FROM {PLAN_TABLE} WHERE as_of = :as_of ORDER BY customer_id, campaign",
        {"as_of": as_of},
    )
    # Whole columns, not `itertuples`: see `decisions.cycle_decisions`.
    send_at = plan.send_at.to_numpy().astype("datetime64[us]").tolist()
    return [
        Decision(
            customer_id,
            campaign,
            occurs,
            at.replace(tzinfo=dt.UTC),
            timezone,
            None if decision == CONTACT else decision,
        )
        for customer_id, campaign, occurs, at, timezone, decision in zip(
            plan.customer_id.tolist(),
            plan.campaign.tolist(),
            plan.occurrence.tolist(),
            send_at,
            plan.timezone.tolist(),
            plan.decision.tolist(),
            strict=True,
        )
    ]


def _engaged_since_signup(warehouse: Warehouse, due: pd.DataFrame, as_of: dt.date) -> set[str]:
    """Customers among `due` who opened, clicked or redeemed after signing up."""
    if due.empty:
        return set()
    params = {**as_of_params(as_of), "since": due.signup_at.min()}
    activity = warehouse.frame(
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


def _keys(frame: pd.DataFrame) -> pd.Series:
    """The outbox key of each row (customer_id, campaign, occurrence)."""
    parts = zip(
        frame.customer_id.tolist(), frame.campaign.tolist(), frame.occurrence.tolist(), strict=True
    )
    return pd.Series([message_key(*p) for p in parts], index=frame.index, dtype=object)


def _planned_keys(warehouse: Warehouse, as_of: dt.date) -> set[str]:
    if not warehouse.table_exists(PLAN_TABLE):
        return set()
    planned = warehouse.frame(
        f"SELECT customer_id, campaign, occurrence FROM {PLAN_TABLE} WHERE as_of = :as_of",
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
            "decision": [d.reason or CONTACT for d in decisions],
        },
        columns=list(PLAN_COLUMNS),
    )
