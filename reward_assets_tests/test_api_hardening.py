"""The API's answers to what its probing found: input that gave a 500, an unbounded body,
the schema open behind an API key, the public unsubscribe secret, links that never
expired, and a frequency cap that concurrent requests could break. On a seeded world's
snapshots, with its ops store copied (SQLite) or on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from reward_assets.api.main import MAX_BODY_BYTES, create_app
from reward_assets.contact.holdout import is_holdout
from reward_assets.email.outbox import Message, Outbox
from reward_assets.email.unsubscribe import UnsafeSecret, make_token, unsubscribe_url
from reward_assets.ops.store import open_ops_store, outbox, suppressions, to_db
from reward_assets.settings import Settings
from reward_assets_tests.api_world import copy_ops_store, private_env, serve, shared_world
from reward_assets_tests.test_outbox import undated_token

SECRET = "hardening-test-secret-0b1c2d3e"
ENGAGE = {"engagement_type": "email", "context": {"journey_stage": "active"}}


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    return shared_world(tmp_path_factory)


@pytest.fixture
def api_env(world, tmp_path, monkeypatch):
    return private_env(world, tmp_path, monkeypatch)


@pytest.fixture
def client(api_env):
    # Server errors come back as 500 answers, as a client would see them.
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


def customers(data_dir) -> pd.DataFrame:
    return pd.read_parquet(data_dir / "snapshots" / "marts.dim_customers.parquet")


def suppression_list() -> set[str]:
    with open_ops_store(Settings().resolved_ops_db_url()) as store, store.begin() as conn:
        return set(conn.execute(sa.select(suppressions.c.customer_id)).scalars())


def suppressed(customer_id: str) -> bool:
    return customer_id in suppression_list()


def a_customer(data_dir, n: int = 0) -> str:
    """The n-th customer not on the suppression list (read once, not once per customer)."""
    listed = suppression_list()
    return [c for c in map(str, customers(data_dir).customer_id) if c not in listed][n]


def test_numbers_json_cannot_hold_get_422_not_500(client, api_env):
    path = f"/api/customers/{a_customer(api_env)}/engagement"
    headers = {"Content-Type": "application/json"}
    for body, echoed in (
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
        ("1e999999", "Infinity"),
        ('{"engagement_type": NaN}', "NaN"),
    ):
        answer = client.post(path, content=body, headers=headers)
        assert answer.status_code == 422, (body, answer.text)
        assert echoed in {str(error.get("input")) for error in answer.json()["detail"]}, body


def test_a_report_up_to_the_last_day_of_the_calendar_is_refused_not_a_500(client):
    answer = client.get("/api/analytics/report?start_date=9999-12-31&end_date=9999-12-31")
    assert answer.status_code == 422
    assert "9999-12-31" in answer.json()["detail"][0]["msg"]
    # The day before is a valid (empty) range.
    answer = client.get("/api/analytics/report?start_date=9999-12-30&end_date=9999-12-30")
    assert answer.status_code == 200


def test_bodies_over_the_limit_get_413_announced_or_streamed(client, api_env):
    path = f"/api/customers/{a_customer(api_env)}/engagement"
    big = b'{"engagement_type": "email", "pad": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}'
    headers = {"Content-Type": "application/json"}
    answer = client.post(path, content=big, headers=headers)
    assert answer.status_code == 413
    assert b"xxxx" not in answer.content  # not echoed back

    def chunks():  # no Content-Length: the size shows only while it is read
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    assert client.post(path, content=chunks(), headers=headers).status_code == 413
    # A body under the limit is read as before (422: `pad` is not a field).
    assert client.post(path, json={"engagement_type": "email", "pad": "x"}).status_code == 422


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc"])
def test_the_schema_and_its_pages_need_the_api_key_when_it_is_set(api_env, monkeypatch, path):
    with TestClient(create_app()) as client:
        assert client.get(path).status_code == 200
    monkeypatch.setenv("API_KEY", "a-key")
    with TestClient(create_app()) as client:
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.get(path, headers={"X-API-Key": "a-key"}).status_code == 200


def forged_link(customer_id: str) -> str:
    """What anyone can make who knows the public default secret."""
    return make_token(customer_id, "change-me")


def test_the_api_refuses_the_public_secret_unless_in_the_embedded_demo(api_env, monkeypatch):
    customer_id = a_customer(api_env)
    # The embedded demo (DuckDB snapshots, SQLite, no SMTP host) starts with the default.
    with TestClient(create_app()) as client:
        assert client.get("/health").status_code == 200

    # With mail going out through a server, the default would let anyone unsubscribe
    # anyone (ids are sequential): the API does not start.
    monkeypatch.setenv("SMTP_HOST", "mx.example")
    with pytest.raises(UnsafeSecret, match="UNSUBSCRIBE_SECRET"), TestClient(create_app()):
        pass

    monkeypatch.setenv("UNSUBSCRIBE_SECRET", SECRET)
    with TestClient(create_app()) as client:
        form = {"List-Unsubscribe": "One-Click"}
        forged = client.post(f"/api/unsubscribe?token={forged_link(customer_id)}", data=form)
        assert forged.status_code == 404
        assert not suppressed(customer_id)
        genuine = client.post(
            f"/api/unsubscribe?token={make_token(customer_id, SECRET)}", data=form
        )
        assert genuine.status_code == 200
        assert suppressed(customer_id)


def test_make_api_says_why_it_does_not_start_on_the_default(api_env, monkeypatch, capsys):
    from reward_assets.api.serve import main

    monkeypatch.setenv("SMTP_HOST", "mx.example")
    assert main([]) == 1
    assert "UNSUBSCRIBE_SECRET is the public default" in capsys.readouterr().err


@pytest.mark.postgres
def test_the_api_server_with_a_postgresql_store_does_not_start_on_the_default(
    world, pg_url, tmp_path
):
    env = {
        "DATA_DIR": str(world.data_dir),
        "WAREHOUSE_URL": world.warehouse_url,
        "OPS_DB_URL": pg_url,
        "UNSUBSCRIBE_SECRET": "",
    }
    with pytest.raises(RuntimeError, match="UNSUBSCRIBE_SECRET is the public default"), serve(env):
        pass


def test_an_expired_link_changes_nothing(client, api_env):
    customer_id = a_customer(api_env)
    today = dt.datetime.now(dt.UTC).date()
    days = Settings().unsubscribe_link_days
    form = {"List-Unsubscribe": "One-Click"}

    expired = make_token(customer_id, "change-me", today - dt.timedelta(days=days + 1))
    for answer in (
        client.get(f"/api/unsubscribe?token={expired}"),
        client.post(f"/api/unsubscribe?token={expired}", data=form),
    ):
        assert answer.status_code == 410
        assert "expired" in answer.text
    assert not suppressed(customer_id)

    last_day = make_token(customer_id, "change-me", today - dt.timedelta(days=days))
    assert client.post(f"/api/unsubscribe?token={last_day}", data=form).status_code == 200
    assert suppressed(customer_id)


def test_a_link_from_before_links_expired_works_while_its_email_is_recent(client, api_env):
    recent, old = a_customer(api_env, 1), a_customer(api_env, 2)
    now = dt.datetime.now(dt.UTC)
    with open_ops_store(Settings().resolved_ops_db_url()) as store:
        for customer_id, sent_days_ago in ((recent, 10), (old, 400)):
            token = undated_token(customer_id, "change-me")
            sent_at = now - dt.timedelta(days=sent_days_ago)
            message = Message(
                customer_id=customer_id,
                campaign="followup_3",
                occurrence="once",
                send_at=sent_at,
                timezone="UTC",
                to_address="someone@example.com",
                subject="s",
                preheader="p",
                text_body=f"Unsubscribe: {unsubscribe_url('http://localhost:8000', token)}",
                html_body="<p>h</p>",
                reward_ids=(),
                content_source="template",
            )
            Outbox(store).enqueue([message])
            with store.begin() as conn:
                conn.execute(
                    sa.update(outbox)
                    .where(outbox.c.idempotency_key == message.key)
                    .values(status="sent", sent_at=to_db(sent_at))
                )
    form = {"List-Unsubscribe": "One-Click"}
    recent_link = undated_token(recent, "change-me")
    assert client.post(f"/api/unsubscribe?token={recent_link}", data=form).status_code == 200
    assert suppressed(recent)
    old_link = undated_token(old, "change-me")
    assert client.post(f"/api/unsubscribe?token={old_link}", data=form).status_code == 410
    assert not suppressed(old)


# --- The frequency cap under concurrent requests -------------------------------------------


def reachable_customers(data_dir, ops_url: str, n: int) -> list[str]:
    """Consenting customers outside the holdout with nothing in the outbox yet."""
    known = customers(data_dir)
    with open_ops_store(ops_url) as store, store.begin() as conn:
        busy = set(conn.execute(sa.select(outbox.c.customer_id)).scalars())
        busy |= set(conn.execute(sa.select(suppressions.c.customer_id)).scalars())
    share = Settings().holdout_share
    found = [
        c
        for c, consent in zip(known.customer_id, known.marketing_opt_in, strict=True)
        if consent is True and c not in busy and not is_holdout(c, share)
    ]
    assert len(found) >= n
    return found[:n]


def engage_all_at_once(url: str, customers: list[str]) -> list[dict]:
    """For each customer the three segment campaigns, every request started at once."""
    requests = [(c, stage) for c in customers for stage in ("active", "at_risk", "dormant")]
    barrier = threading.Barrier(len(requests))

    def one(customer_id: str, stage: str) -> dict:
        with httpx.Client(base_url=url, timeout=60) as http:
            barrier.wait()
            answer = http.post(
                f"/api/customers/{customer_id}/engagement",
                json={"engagement_type": "email", "context": {"journey_stage": stage}},
            )
        assert answer.status_code == 200, answer.text
        return answer.json()

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda r: one(*r), requests))


@pytest.mark.parametrize("ops", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_concurrent_requests_never_queue_more_than_the_cap(world, tmp_path, request, ops):
    if ops == "sqlite":
        ops_url = copy_ops_store(world, tmp_path / "ops.sqlite")
    else:
        ops_url = request.getfixturevalue("pg_url")
    customers = reachable_customers(world.data_dir, ops_url, 5)
    env = {
        "DATA_DIR": str(world.data_dir),
        "WAREHOUSE_URL": world.warehouse_url,
        "OPS_DB_URL": ops_url,
        "MODELS_DIR": str(world.data_dir / "models"),
        "UNSUBSCRIBE_SECRET": SECRET,
        "AS_OF": "",
    }
    cap = Settings().frequency_cap
    assert cap == 2
    with serve(env) as url:
        answers = engage_all_at_once(url, customers)

    with open_ops_store(ops_url) as store, store.begin() as conn:
        rows = pd.DataFrame(
            conn.execute(
                sa.select(outbox.c.customer_id, outbox.c.status, outbox.c.reason).where(
                    outbox.c.customer_id.in_(customers)
                )
            ).all()
        )
    for customer_id in customers:
        mine = [a for a in answers if a["customer_id"] == customer_id]
        assert sum(a["queued"] for a in mine) == cap, mine
        assert [a["reason"] for a in mine if not a["queued"]] == ["frequency_cap"]
        stored = rows[rows.customer_id == customer_id]
        assert sorted(stored.status) == ["queued"] * cap + ["skipped"]
        assert list(stored[stored.status == "skipped"].reason) == ["frequency_cap"]
