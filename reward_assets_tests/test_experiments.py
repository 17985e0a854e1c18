"""Content experiments: the YAML configuration, the stable assignment, and the report
recovering a planted difference between two variants sent to the 2,000 seeded customers
(those delivery may reach: consenting, outside the holdout, not suppressed)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import sqlalchemy as sa

from reward_assets.analytics.report import range_report
from reward_assets.content.experiments import (
    ExperimentConfigError,
    load_experiments,
    parse_experiments,
)
from reward_assets.email.delivery import DeliveryConfig, deliver_due
from reward_assets.email.mailer import EmlMailer
from reward_assets.email.suppression import suppressed
from reward_assets.email.webhooks import GENERIC, ProviderEvent, record
from reward_assets.engagement.decisions import Decision
from reward_assets.engagement.messages import write_and_queue
from reward_assets.ops.store import open_ops_store, outbox
from reward_assets.settings import Settings
from reward_assets.warehouse.store import Warehouse
from reward_assets_tests.api_world import copy_world, materialize, shared_world

EXPERIMENT = """
experiments:
  - name: digest_subject_test
    campaigns: [rewards_digest]
    variants:
      - {name: control, weight: 1}
      - {name: points_subject, weight: 1, subject: "Your points can get you these", offers: 1}
"""
# The planted truth: the variant's subject gets clicked three times as often.
CLICK_RATE = {"control": 0.04, "points_subject": 0.12}


def test_the_configuration_refuses_what_it_cannot_run():
    def refused(document: dict, match: str) -> None:
        with pytest.raises(ExperimentConfigError, match=match):
            parse_experiments(document)

    one = {"name": "e", "campaigns": ["rewards_digest"]}
    refused({"experiments": [{**one, "variants": [{"name": "control"}]}]}, "two or more")
    refused({"experiments": [{**one, "variants": [{"name": "a"}, {"name": "b"}]}]}, "control")
    refused({"experiments": [{**one, "campaigns": ["nope"]}]}, "known campaigns")
    bad = [{"name": "control"}, {"name": "b", "content": "gpt"}]
    refused({"experiments": [{**one, "variants": bad}]}, "content")
    twice = {**one, "variants": [{"name": "control"}, {"name": "b"}]}
    refused({"experiments": [twice, {**twice, "name": "f"}]}, "one experiment per campaign")
    refused(
        {
            "experiments": [
                {**one, "variants": [{"name": "control"}, {"name": "b", "subject": "a\nb"}]}
            ]
        },
        "one non-empty line",
    )  # noqa: E501


def test_assignment_is_stable_balanced_and_independent_of_other_experiments(tmp_path):
    path = tmp_path / "experiments.yml"
    path.write_text(EXPERIMENT)
    experiment = load_experiments(path).for_campaign("rewards_digest")
    customers = [f"C{i:06d}" for i in range(4000)]
    first = [experiment.assign(c).name for c in customers]
    assert first == [experiment.assign(c).name for c in customers]
    assert 1850 < first.count("control") < 2150
    renamed = parse_experiments(
        {
            "experiments": [
                {
                    "name": "another",
                    "campaigns": ["win_back"],
                    "variants": [{"name": "control"}, {"name": "points_subject"}],
                }
            ]
        }
    ).for_campaign("win_back")
    agree = sum(a == renamed.assign(c).name for a, c in zip(first, customers, strict=True))
    assert 1850 < agree < 2150  # another experiment's split is unrelated to this one
    assert load_experiments(None).for_campaign("rewards_digest") is None


def test_the_report_recovers_a_planted_difference_between_two_variants(tmp_path_factory):
    world = copy_world(shared_world(tmp_path_factory), tmp_path_factory.mktemp("experiment"))
    config = tmp_path_factory.mktemp("config") / "experiments.yml"
    config.write_text(EXPERIMENT)
    settings = Settings(
        data_dir=world.data_dir,
        outbox_dir=world.data_dir / "eml",
        experiments_file=config,
    )
    warehouse = Warehouse(world.warehouse_url)
    profiles = warehouse.frame(
        "SELECT customer_id, email, first_name, tier, points_balance, "
        "marketing_opt_in AND NOT is_holdout AS reachable FROM marts.dim_customers "
        "ORDER BY customer_id"
    )
    offers = warehouse.frame(
        "SELECT s.customer_id, s.rank, s.reward_id, r.name, r.category, r.points_cost, "
        "s.reason, s.is_almost_there FROM ml.recommendation_sets s "
        "JOIN marts.dim_rewards r ON r.reward_id = s.reward_id WHERE s.rank <= 3"
    )
    warehouse.dispose()
    assert len(profiles) == 2000
    with open_ops_store(settings.resolved_ops_db_url()) as store:
        blocked = suppressed(store, profiles.customer_id)
    # Delivery holds back the holdout, the customers without consent and the suppressed.
    profiles = profiles[profiles.reachable & ~profiles.customer_id.isin(blocked)]
    assert len(profiles) > 900
    # A day clear of the world's own cycle, so no frequency cap interferes.
    day = world.last_day + dt.timedelta(days=20)
    send_at = dt.datetime.combine(day, dt.time(12), dt.UTC)
    decisions = [
        Decision(c, "rewards_digest", day.isoformat(), send_at, "UTC") for c in profiles.customer_id
    ]
    with open_ops_store(settings.resolved_ops_db_url()) as store:
        queued = write_and_queue(store, decisions, profiles, offers, settings, run_id="exp")
        assert queued.queued == len(profiles)
        deliver_due(
            store,
            EmlMailer(settings.resolved_outbox_dir()),
            DeliveryConfig.from_settings(settings),
            now=lambda: send_at,
            worker_id="experiment",
        )
        with store.begin() as conn:
            sent = conn.execute(
                sa.select(
                    outbox.c.message_id,
                    outbox.c.variant,
                    outbox.c.subject,
                    outbox.c.reward_ids,
                    outbox.c.lineage,
                ).where(outbox.c.occurrence == day.isoformat())
            ).all()
        # Feed back the clicks the planted rates draw, as a provider would post them.
        rng = np.random.default_rng(16)
        clicks = [
            ProviderEvent(
                GENERIC,
                f"click-{i}",
                "click",
                row.message_id.strip("<>"),
                send_at + dt.timedelta(hours=2),
            )
            for i, row in enumerate(sent)
            if rng.random() < CLICK_RATE[row.variant]
        ]
        assert record(store, clicks).new == len(clicks)
    arms = {row.variant for row in sent}
    assert arms == set(CLICK_RATE)
    variant_rows = [row for row in sent if row.variant == "points_subject"]
    assert all(row.subject == "Your points can get you these" for row in variant_rows)
    assert all(len(row.reward_ids) <= 1 for row in variant_rows)
    assert all(row.lineage["variant"] == row.variant for row in sent)

    import dagster as dg

    materialize(
        world,
        dg.AssetSelection.keys(
            "email_sends", "provider_events", "fct_engagement_events", "analytics_experiments"
        ),
        world.last_day,
        world.last_day,
    )
    warehouse = Warehouse(world.warehouse_url)
    try:
        experiments = range_report(warehouse, day, day)["experiments"]
    finally:
        warehouse.dispose()
    [experiment] = experiments
    assert experiment["experiment"] == "digest_subject_test"
    variants = {v["variant"]: v for v in experiment["variants"]}
    assert sum(v["sends"] for v in variants.values()) == len(profiles)
    effect = variants["points_subject"]["clicks_vs_control"]
    planted = CLICK_RATE["points_subject"] - CLICK_RATE["control"]
    assert 0 < effect["ci_low"] <= planted <= effect["ci_high"]
    assert variants["control"]["clicks_vs_control"] is None
    assert variants["points_subject"]["redemptions_vs_control"]["ci_low"] is not None
