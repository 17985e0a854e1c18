"""The HTTP API against a real materialised world: its snapshots and a copy of its ops store."""

import datetime as dt
import logging
import os

import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from uvicorn.logging import AccessFormatter

from reward_assets.api.main import RedactTokens, create_app
from reward_assets.contact.holdout import is_holdout
from reward_assets.email.outbox import set_kill_switch
from reward_assets.email.unsubscribe import make_token
from reward_assets.ops.store import (
    api_idempotency,
    followups,
    open_ops_store,
    outbox,
    suppressions,
    to_db,
)
from reward_assets.settings import Settings
from reward_assets_tests.api_world import copy_world, private_env, shared_world

ONBOARDING = {"engagement_type": "email", "context": {"journey_stage": "onboarding"}}


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    return shared_world(tmp_path_factory)


@pytest.fixture
def api_env(world, tmp_path, monkeypatch):
    """A private DATA_DIR holding the world's snapshots, and a private copy of its ops store."""
    return private_env(world, tmp_path, monkeypatch)


@pytest.fixture
def client(api_env):
    with TestClient(create_app()) as client:
        yield client


def snapshot(data_dir, table: str) -> pd.DataFrame:
    return pd.read_parquet(data_dir / "snapshots" / f"{table}.parquet")


def republish(data_dir, table: str, frame: pd.DataFrame) -> None:
    """Replace a snapshot the way the assets do: write beside, then rename over."""
    path = data_dir / "snapshots" / f"{table}.parquet"
    staged = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(staged, index=False)
    os.replace(staged, path)


def ops_rows(table: sa.Table, **where) -> list:
    with open_ops_store(Settings().resolved_ops_db_url()) as store, store.begin() as conn:
        query = sa.select(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        return list(conn.execute(query))


def suppressed_ids() -> set[str]:
    return {row.customer_id for row in ops_rows(suppressions)}


def expected_items(data_dir, customer_id: str) -> list[str]:
    """The customer's stored rewards that pass the rules on the current snapshots."""
    sets = snapshot(data_dir, "ml.recommendation_sets")
    rewards = snapshot(data_dir, "marts.dim_rewards").set_index("reward_id")
    customer = snapshot(data_dir, "marts.dim_customers").set_index("customer_id").loc[customer_id]
    kept = []
    for item in sets[sets.customer_id == customer_id].sort_values("rank").itertuples():
        reward = rewards.loc[item.reward_id]
        reach = customer.points_balance * (1.25 if item.is_almost_there else 1)
        if (
            reward.active
            and (pd.isna(reward.inventory) or reward.inventory > 0)
            and reward.min_tier_rank <= customer.tier_rank
            and reward.points_cost <= reach
        ):
            kept.append(item.reward_id)
    return kept


def customer_with_full_set(data_dir) -> str:
    """A reachable customer whose whole stored set is still eligible."""
    sets = snapshot(data_dir, "ml.recommendation_sets")
    sizes = sets.groupby("customer_id").size()
    blocked = suppressed_ids()
    for customer_id in sizes[sizes >= 5].index:
        if (
            customer_id not in blocked
            and len(expected_items(data_dir, customer_id)) == sizes[customer_id]
        ):
            return customer_id
    raise AssertionError("no customer with a fully eligible set in the world")


def recent_customers(data_dir, **flags) -> list[str]:
    """Customers within the welcome window (WELCOME_MAX_AGE_DAYS, 2), outside the holdout
    and not suppressed, with or without consent."""
    customers = snapshot(data_dir, "marts.dim_customers")
    last_day = customers.signup_at.max().normalize()
    recent = customers[customers.signup_at >= last_day - pd.Timedelta(days=2)]
    blocked = suppressed_ids()
    chosen = [
        row.customer_id
        for row in recent.itertuples()
        if bool(row.marketing_opt_in) == flags.get("consent", True)
        and not is_holdout(row.customer_id)
        and row.customer_id not in blocked
    ]
    assert chosen, f"no recent customer with {flags}"
    return chosen


def test_health_reports_the_snapshot_backend(client):
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["backend"] == "snapshots"
    assert body["tables"]["ml.recommendation_sets"]["published"] is True
    assert body["tables"]["ml.recommendation_sets"]["age_seconds"] >= 0


def test_recommended_rewards_are_the_stored_set_in_rank_order(client, api_env):
    customer_id = customer_with_full_set(api_env)
    body = client.get(f"/api/customers/{customer_id}/recommended_rewards?limit=4").json()
    stored = snapshot(api_env, "ml.recommendation_sets")
    stored = stored[stored.customer_id == customer_id].sort_values("rank")
    assert [i["reward"]["reward_id"] for i in body["items"]] == list(stored.reward_id[:4])
    assert [i["rank"] for i in body["items"]] == list(stored["rank"][:4])
    assert {i["model_version"] for i in body["items"]} == set(stored.model_version)
    assert body["dropped"] == {"count": 0, "reasons": {}}
    assert body["reason"] is None
    reward = (
        snapshot(api_env, "marts.dim_rewards")
        .set_index("reward_id")
        .loc[body["items"][0]["reward"]["reward_id"]]
    )
    assert body["items"][0]["reward"]["points_cost"] == reward.points_cost
    assert body["items"][0]["reward"]["name"] == reward["name"]


def test_eligibility_is_rechecked_against_the_current_snapshots(client, api_env):
    customer_id = customer_with_full_set(api_env)
    url = f"/api/customers/{customer_id}/recommended_rewards?limit=10"
    stored = [i["reward"]["reward_id"] for i in client.get(url).json()["items"]]
    rewards = snapshot(api_env, "marts.dim_rewards")
    rewards.loc[rewards.reward_id == stored[0], "active"] = False
    rewards.loc[rewards.reward_id == stored[1], "inventory"] = 0
    republish(api_env, "marts.dim_rewards", rewards)

    body = client.get(url).json()
    assert [i["reward"]["reward_id"] for i in body["items"]] == stored[2:]
    assert body["dropped"] == {"count": 2, "reasons": {"reward_inactive": 1, "out_of_stock": 1}}

    customers = snapshot(api_env, "marts.dim_customers")
    customers.loc[customers.customer_id == customer_id, "points_balance"] = 0
    republish(api_env, "marts.dim_customers", customers)
    body = client.get(url).json()
    assert body["items"] == []
    assert body["reason"] == "none_eligible"
    assert body["dropped"]["reasons"]["insufficient_points"] == len(stored) - 2
    assert expected_items(api_env, customer_id) == []


def test_unsubscribe_link_suppresses_once_and_empties_recommendations(client, api_env):
    customer_id = customer_with_full_set(api_env)
    token = make_token(customer_id, Settings().unsubscribe_secret)

    page = client.get(f"/api/unsubscribe?token={token}")
    assert page.status_code == 200
    assert "List-Unsubscribe" in page.text and "One-Click" in page.text
    assert customer_id not in suppressed_ids(), "a GET must never unsubscribe"

    one_click = {"List-Unsubscribe": "One-Click"}
    for _ in range(2):
        response = client.post(f"/api/unsubscribe?token={token}", data=one_click)
        assert response.status_code == 200
    rows = ops_rows(suppressions, customer_id=customer_id)
    assert [(r.reason, r.source) for r in rows] == [("unsubscribe", "api")]

    body = client.get(f"/api/customers/{customer_id}/recommended_rewards").json()
    assert body["items"] == []
    assert body["reason"] == "suppressed"
    assert body["dropped"]["reasons"] == {"suppressed": body["dropped"]["count"]}
    assert body["dropped"]["count"] >= 5
    assert client.get(f"/api/customers/{customer_id}").json()["suppressed"] is True


def test_access_log_never_shows_an_unsubscribe_token():
    """Through uvicorn's own access formatter, as `make api` logs."""
    token = make_token("cust000001", "secret")
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "POST", f"/api/unsubscribe?token={token}", "1.1", 200),
        None,
    )

    assert RedactTokens().filter(record)
    line = AccessFormatter(
        '%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False
    ).format(record)

    assert token not in line
    assert '"POST /api/unsubscribe?token=[redacted] HTTP/1.1" 200' in line


def test_unsubscribe_rejects_bad_tokens_and_bodies(client):
    forged = make_token("cust000001", "not-the-secret")
    for token in (forged, "garbage", "a.b"):
        assert client.get(f"/api/unsubscribe?token={token}").status_code == 404
        response = client.post(
            f"/api/unsubscribe?token={token}", data={"List-Unsubscribe": "One-Click"}
        )
        assert response.status_code == 404
        assert "not valid" in response.text
    token = make_token("cust000001", Settings().unsubscribe_secret)
    missing_body = client.post(f"/api/unsubscribe?token={token}")
    assert missing_body.status_code == 422
    assert "List-Unsubscribe" in missing_body.text
    assert suppressed_ids().isdisjoint({"cust000001"})


def test_customer_profile_masks_the_email(client, api_env):
    customers = snapshot(api_env, "marts.dim_customers").set_index("customer_id")
    churn = snapshot(api_env, "ml.churn_scores").set_index("customer_id")
    times = snapshot(api_env, "ml.send_time_preferences").set_index("customer_id")
    segments = snapshot(api_env, "ml.customer_segments").set_index("customer_id")
    customer_id = customers.index[7]
    response = client.get(f"/api/customers/{customer_id}")
    assert response.status_code == 200
    body = response.json()
    email = customers.loc[customer_id, "email"]
    assert email not in response.text
    assert body["email"] == f"{email[0]}***@{email.split('@')[1]}"
    assert body["tier"] == customers.loc[customer_id, "tier"]
    assert body["churn"]["risk_band"] == churn.loc[customer_id, "risk_band"]
    assert body["churn"]["churn_probability"] == pytest.approx(
        churn.loc[customer_id, "churn_probability"]
    )
    assert body["churn"]["drivers"][0] == churn.loc[customer_id, "driver_1"]
    assert body["send_time"]["best_local_hour"] == times.loc[customer_id, "best_local_hour"]
    assert body["segment"]["segment"] == segments.loc[customer_id, "segment"]


def test_unknown_ids_are_404(client):
    for path in (
        "/api/customers/nobody",
        "/api/customers/nobody/recommended_rewards",
        "/api/rewards/no-such-reward",
    ):
        response = client.get(path)
        assert response.status_code == 404
        assert (
            "nobody" in response.json()["detail"] or "no-such-reward" in response.json()["detail"]
        )
    for _ in range(2):
        response = client.post(
            "/api/customers/nobody/engagement", json=ONBOARDING, headers={"Idempotency-Key": "n"}
        )
        assert response.status_code == 404
        assert "nobody" in response.json()["detail"]
    assert [(r.key, r.status_code) for r in ops_rows(api_idempotency)] == [("n", 404)]


def test_bad_parameters_are_422_with_a_message(client, api_env):
    customer_id = snapshot(api_env, "marts.dim_customers").customer_id.iloc[0]
    too_many = client.get(f"/api/customers/{customer_id}/recommended_rewards?limit=11")
    assert too_many.status_code == 422
    assert "RECOMMENDATIONS_K (10)" in too_many.json()["detail"][0]["msg"]
    assert client.get(f"/api/customers/{customer_id}/recommended_rewards?limit=0").status_code == (
        422
    )
    typo = client.get("/api/rewards?categroy=travel")
    assert typo.status_code == 422
    assert "unknown query parameter 'categroy'" in typo.json()["detail"][0]["msg"]
    bad_tier = client.get("/api/rewards?tier=diamond")
    assert bad_tier.status_code == 422
    assert bad_tier.json()["detail"][0]["loc"] == ["query", "tier"]
    bad_body = client.post(
        f"/api/customers/{customer_id}/engagement", json={"engagement_type": "sms"}
    )
    assert bad_body.status_code == 422
    assert "email" in bad_body.json()["detail"][0]["msg"]


def test_rewards_filters_and_pages(client, api_env):
    rewards = snapshot(api_env, "marts.dim_rewards")
    category = rewards.category.iloc[0]
    expected = rewards[
        (rewards.category == category)
        & rewards.is_available
        & (rewards.points_cost >= 500)
        & (rewards.min_tier_rank <= 2)
    ].sort_values("reward_id")
    query = f"category={category.upper()}&available=true&min_points=500&tier=silver"
    first = client.get(f"/api/rewards?{query}&limit=2").json()
    assert first["total"] == len(expected) > 2
    ids = []
    for offset in range(0, first["total"], 2):
        ids += [
            r["reward_id"]
            for r in client.get(f"/api/rewards?{query}&limit=2&offset={offset}").json()["items"]
        ]
    assert ids == list(expected.reward_id)
    cheap = client.get("/api/rewards?max_points=1000&limit=100").json()
    assert cheap["total"] == int((rewards.points_cost <= 1000).sum())
    assert all(r["points_cost"] <= 1000 for r in cheap["items"])

    one = client.get(f"/api/rewards/{expected.reward_id.iloc[0]}").json()
    assert one["name"] == expected["name"].iloc[0]
    assert one["is_available"] is True


def test_welcome_is_queued_once_and_retries_replay(client, api_env):
    customer_id = recent_customers(api_env)[0]
    url = f"/api/customers/{customer_id}/engagement"
    first = client.post(url, json=ONBOARDING, headers={"Idempotency-Key": "welcome-1"})
    assert first.status_code == 200
    body = first.json()
    assert body["queued"] is True
    assert body["message_key"] == f"{customer_id}:welcome:once"
    assert body["content_source"] == "template"
    rows = ops_rows(outbox, customer_id=customer_id)
    assert [(r.idempotency_key, r.status) for r in rows] == [(body["message_key"], "queued")]
    assert list(rows[0].reward_ids) == body["reward_ids"]
    available = snapshot(api_env, "marts.dim_rewards").query("is_available").reward_id
    assert body["reward_ids"] and set(body["reward_ids"]) <= set(available)
    assert {r.campaign for r in ops_rows(followups, customer_id=customer_id)} == {
        "followup_3",
        "followup_7",
    }

    replay = client.post(url, json=ONBOARDING, headers={"Idempotency-Key": "welcome-1"})
    assert (replay.status_code, replay.json()) == (200, body)
    again = client.post(url, json=ONBOARDING).json()
    assert (again["queued"], again["reason"], again["status"]) == (
        False,
        "already_decided",
        "queued",
    )
    reused = client.post(
        url, json={"engagement_type": "email"}, headers={"Idempotency-Key": "welcome-1"}
    )
    assert reused.status_code == 409
    assert "different request" in reused.json()["detail"]
    assert len(ops_rows(outbox, customer_id=customer_id)) == 1


def test_engagement_says_why_nothing_was_queued(client, api_env):
    no_consent = recent_customers(api_env, consent=False)[0]
    suppressed, paused = recent_customers(api_env)[:2]
    customers = snapshot(api_env, "marts.dim_customers")
    holdout = next(
        c
        for c, consent in zip(customers.customer_id, customers.marketing_opt_in, strict=True)
        if consent and is_holdout(c)
    )
    token = make_token(suppressed, Settings().unsubscribe_secret)
    client.post(f"/api/unsubscribe?token={token}", data={"List-Unsubscribe": "One-Click"})
    old = snapshot(api_env, "marts.dim_customers").sort_values("signup_at").customer_id.iloc[0]

    def reason(customer_id: str) -> str:
        body = client.post(f"/api/customers/{customer_id}/engagement", json=ONBOARDING).json()
        assert body["queued"] is False
        return body["reason"]

    assert reason(no_consent) == "no_consent"
    stage = {"engagement_type": "email", "context": {"journey_stage": "at_risk"}}
    body = client.post(f"/api/customers/{holdout}/engagement", json=stage).json()
    assert (body["reason"], body["campaign"]) == ("holdout", "win_back")
    assert reason(suppressed) == "suppressed"
    assert reason(old) == "not_recent_signup"
    assert [r.status for r in ops_rows(outbox, customer_id=no_consent)] == ["skipped"]
    with open_ops_store(Settings().resolved_ops_db_url()) as store:
        set_kill_switch(store, True, by="test")
    assert reason(paused) == "kill_switch"
    assert ops_rows(outbox, customer_id=paused) == [], "a paused request records nothing"


def test_segment_campaign_and_frequency_cap(client, api_env):
    segments = snapshot(api_env, "ml.customer_segments")
    active = [
        c
        for c in segments[segments.segment == "active"].customer_id
        if not is_holdout(c) and c not in suppressed_ids()
    ]
    customers = snapshot(api_env, "marts.dim_customers").set_index("customer_id")
    consenting = [c for c in active if customers.loc[c, "marketing_opt_in"]]
    free, capped = consenting[:2]
    as_of = segments.as_of.max()

    body = client.post(f"/api/customers/{free}/engagement", json={"engagement_type": "email"})
    body = body.json()
    assert body["queued"] is True, body
    assert body["message_key"] == f"{free}:rewards_digest:{as_of.isoformat()}"
    assert 1 <= len(body["reward_ids"]) <= 3

    with open_ops_store(Settings().resolved_ops_db_url()) as store, store.begin() as conn:
        sent = to_db(dt.datetime.combine(as_of, dt.time(12), tzinfo=dt.UTC))
        for day in (1, 2):
            conn.execute(
                sa.insert(outbox).values(
                    idempotency_key=f"{capped}:win_back:earlier-{day}",
                    customer_id=capped,
                    campaign="win_back",
                    occurrence=f"earlier-{day}",
                    status="sent",
                    send_at=sent - dt.timedelta(days=day),
                    sent_at=sent - dt.timedelta(days=day),
                    timezone="UTC",
                    attempts=1,
                    created_at=sent,
                    updated_at=sent,
                )
            )
    stage = {"engagement_type": "email", "context": {"journey_stage": "active"}}
    body = client.post(f"/api/customers/{capped}/engagement", json=stage).json()
    assert (body["queued"], body["reason"], body["campaign"]) == (
        False,
        "frequency_cap",
        "rewards_digest",
    )


def test_analytics_report_for_the_seed_designs_range(client, api_env):
    response = client.get("/api/analytics/report?start_date=2023-05-01&end_date=2023-06-01")
    assert response.status_code == 200
    body = response.json()
    assert (body["start_date"], body["end_date"], body["days"]) == ("2023-05-01", "2023-06-01", 32)
    funnel = snapshot(api_env, "analytics.analytics_email_funnel")
    in_range = funnel[(funnel.day >= dt.date(2023, 5, 1)) & (funnel.day <= dt.date(2023, 6, 1))]
    assert body["email_funnel"]["totals"]["sent"] == int(in_range.sent.sum()) > 0

    backwards = client.get("/api/analytics/report?start_date=2023-06-01&end_date=2023-05-01")
    assert backwards.status_code == 422
    assert "before start_date" in backwards.json()["detail"][0]["msg"]
    too_long = client.get("/api/analytics/report?start_date=2022-01-01&end_date=2023-06-01")
    assert too_long.status_code == 422
    assert "at most 366" in too_long.json()["detail"][0]["msg"]
    assert (
        client.get("/api/analytics/report?start_date=2023-02-30&end_date=2023-06-01").status_code
        == 422
    )


def test_api_key_guards_everything_but_health_and_unsubscribe(api_env, monkeypatch):
    monkeypatch.setenv("API_KEY", "s3cret-key")
    with TestClient(create_app()) as client:
        assert client.get("/api/rewards").status_code == 401
        assert client.get("/api/rewards", headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.get("/api/rewards", headers={"X-API-Key": "s3cret-key"}).status_code == 200
        assert client.post("/api/customers/x/engagement", json=ONBOARDING).status_code == 401
        assert client.get("/health").status_code == 200
        token = make_token("cust000002", Settings().unsubscribe_secret)
        assert client.get(f"/api/unsubscribe?token={token}").status_code == 200


def test_unpublished_tables_are_503_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("OPS_DB_URL", raising=False)
    with TestClient(create_app()) as client:
        health = client.get("/health").json()
        assert health["status"] == "degraded"
        assert health["tables"]["marts.dim_rewards"] == {"published": False, "age_seconds": None}
        for path in ("/api/rewards", "/api/customers/c1/recommended_rewards", "/api/customers/c1"):
            response = client.get(path)
            assert response.status_code == 503
            assert "not available yet" in response.json()["detail"]
        response = client.post(
            "/api/customers/c1/engagement", json=ONBOARDING, headers={"Idempotency-Key": "k1"}
        )
        assert response.status_code == 503
        assert ops_rows(api_idempotency) == [], "a 503 releases its key for the retry"
        report = client.get("/api/analytics/report?start_date=2023-05-01&end_date=2023-06-01")
        assert report.status_code == 503
        assert "analytics_email_funnel" in report.json()["detail"]


def test_the_batch_never_sends_a_welcome_the_api_queued(world, tmp_path, monkeypatch):
    import dagster as dg

    from reward_assets.definitions import defs

    copy = copy_world(world, tmp_path)
    monkeypatch.setenv("DATA_DIR", str(copy.data_dir))
    monkeypatch.setenv("WAREHOUSE_URL", copy.warehouse_url)
    for name in ("API_KEY", "AS_OF", "OPS_DB_URL", "KILL_SWITCH"):
        monkeypatch.delenv(name, raising=False)
    customer_id = recent_customers(copy.data_dir)[0]
    with TestClient(create_app()) as client:
        body = client.post(f"/api/customers/{customer_id}/engagement", json=ONBOARDING).json()
    assert body["queued"] is True

    job = defs().resolve_job_def("onboarding_job")
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(
            run_config={
                "ops": {"welcome_new_customers": {"config": {"customer_ids": [customer_id]}}}
            },
            instance=instance,
            op_selection=["welcome_new_customers"],
        )
    assert result.success
    # A batch of customers all decided already (the API got there between the sensor's
    # request and the run) queues nothing and does not fail.
    assert result.output_for_node("welcome_new_customers") == 0
    rows = ops_rows(outbox, customer_id=customer_id)
    assert [(r.idempotency_key, r.run_id) for r in rows] == [(body["message_key"], None)]
