"""The engagement cycle through Dagster on the default seeded world with trained models.

Who it contacts, when, and what it refuses: nobody in the holdout, without consent or
suppressed; every send at the customer's best local hour outside quiet hours; the
frequency cap over a week of daily cycles; nothing queued or delivered twice on re-runs.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pandas as pd
import pytest
import sqlalchemy as sa

from reward_assets.contact.holdout import is_holdout
from reward_assets.contact.timing import in_quiet_hours, zone
from reward_assets.email.delivery import DeliveryConfig, deliver_due
from reward_assets.email.mailer import EmlMailer
from reward_assets.email.suppression import suppress
from reward_assets.ops.store import open_ops_store, outbox
from reward_assets.settings import Settings

WEEK = 7


def outbox_rows(data_dir) -> pd.DataFrame:
    with open_ops_store(f"sqlite:///{data_dir / 'ops.sqlite'}") as store, store.begin() as conn:
        rows = conn.execute(sa.select(outbox)).mappings().all()
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def cycled(scored):
    run, warehouse, data_dir = scored
    as_of = warehouse.scalar("SELECT MAX(occurred_at) FROM raw.engagement_events").date()
    planted = warehouse.frame(
        "SELECT customer_id FROM marts.dim_customers WHERE marketing_opt_in ORDER BY customer_id"
    ).customer_id
    suppressed = set(planted.iloc[::50])
    with open_ops_store(f"sqlite:///{data_dir / 'ops.sqlite'}") as store:
        for customer_id in suppressed:
            suppress(store, customer_id, "complaint", "operator")
    first = run("engagement", extra={"AS_OF": as_of.isoformat()})
    assert first.success, first
    before = outbox_rows(data_dir)
    again = run("engagement", extra={"AS_OF": as_of.isoformat()})
    assert again.success, again
    return run, warehouse, data_dir, as_of, suppressed, before


def test_contacts_follow_every_rule(cycled):
    _, warehouse, data_dir, as_of, suppressed, before = cycled
    plan = warehouse.frame(
        "SELECT p.*, c.marketing_opt_in, s.best_local_hour FROM ml.engagement_plan p "
        "JOIN marts.dim_customers c USING (customer_id) "
        "LEFT JOIN ml.send_time_preferences s USING (customer_id) WHERE p.as_of = :d",
        {"d": as_of},
    )
    contact = plan[plan.decision == "contact"]
    assert len(contact) > 500
    assert not contact.customer_id.map(is_holdout).any()
    assert contact.marketing_opt_in.all()
    assert not contact.customer_id.isin(suppressed).any()
    decisions = Counter(plan.decision)
    assert decisions["holdout"] > 0 and decisions["no_consent"] > 0
    assert decisions["suppressed"] > 0

    for row in contact.itertuples():
        at = row.send_at.to_pydatetime().replace(tzinfo=dt.UTC)
        assert not in_quiet_hours(at, row.timezone, 21, 8)
        assert at.astimezone(zone(row.timezone)).hour == int(row.best_local_hour)
        assert dt.datetime.combine(as_of, dt.time(), dt.UTC) <= at

    # Re-running the day queued nothing new and changed no row.
    after = outbox_rows(data_dir)
    assert len(after) == len(before)
    assert Counter(after.status) == Counter(before.status)
    queued = after[after.status == "queued"]
    assert set(queued.customer_id) == set(contact.customer_id)
    skipped = after[after.status == "skipped"]
    assert Counter(skipped.reason) == Counter(plan.decision[plan.decision != "contact"])


def test_delivery_writes_one_eml_per_message_and_never_a_second(cycled, tmp_path):
    _, _, data_dir, as_of, _, _ = cycled
    folder = tmp_path / "outbox"
    settings = Settings(data_dir=data_dir, outbox_dir=folder)
    config = DeliveryConfig.from_settings(settings)
    queued = len(outbox_rows(data_dir).query("status == 'queued'"))
    start = dt.datetime.combine(as_of, dt.time(), dt.UTC)
    hours = [start + dt.timedelta(hours=h) for h in range(48)]  # an hourly delivery schedule
    with open_ops_store(settings.resolved_ops_db_url()) as store:
        first = [
            deliver_due(store, EmlMailer(folder), config, now=lambda at=at: at, worker_id="a")
            for at in hours
        ]
        second = [
            deliver_due(store, EmlMailer(folder), config, now=lambda at=at: at, worker_id="b")
            for at in hours
        ]
    # Data time: every send lands on the as-of day, outside the customer's quiet hours.
    assert sum(r.sent for r in first) == queued
    assert sum(r.sent for r in second) == 0
    files = list(folder.glob("*.eml"))
    assert len(files) == queued > 500
    assert len(files) == len(outbox_rows(data_dir).query("status == 'sent'"))


def test_frequency_cap_holds_over_a_week_of_cycles(cycled):
    run, _, data_dir, as_of, _, _ = cycled
    for day in range(1, WEEK + 1):
        result = run("engagement", extra={"AS_OF": (as_of + dt.timedelta(days=day)).isoformat()})
        assert result.success, result
    rows = outbox_rows(data_dir)
    marketing = rows[rows.status.isin(["queued", "sent"]) & (rows.campaign != "welcome")]
    assert marketing.customer_id.nunique() > 1000
    cap, window = 2, dt.timedelta(days=7)
    worst = 0
    for _, times in marketing.groupby("customer_id").send_at:
        ordered = sorted(times)
        for i, start in enumerate(ordered):
            worst = max(worst, sum(1 for t in ordered[i:] if t < start + window))
    assert worst <= cap
