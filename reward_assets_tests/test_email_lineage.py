"""Every email's lineage and the provider event webhook, on the API tests' seeded world.

The world's engagement cycle queued emails; they are delivered here, then `reward-assets
email explain` names every version in the chain (each in the registry) and the API lists
a customer's emails with it, masked, behind the API key. Over real HTTP, a signed hard
bounce suppresses the customer before their next send, a replay changes nothing, a bad
signature is 401, Mailgun's own payload is read, and the next load brings the events into
`fct_engagement_events` once.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from reward_assets.email import ctl
from reward_assets.email.delivery import DeliveryConfig, deliver_due
from reward_assets.email.mailer import EmlMailer
from reward_assets.email.outbox import Message, Outbox
from reward_assets.email.webhooks import SIGNATURE_HEADER, mailgun_signature, sign
from reward_assets.engagement.messages import LINEAGE_MODELS
from reward_assets.ml.registry import ModelRegistry
from reward_assets.ops.store import open_ops_store, outbox, provider_events, suppressions
from reward_assets.settings import Settings
from reward_assets_tests.api_world import copy_world, materialize, serve, shared_world

SECRET = "webhook-test-secret-7d1c"
API_KEY = "lineage-test-key"
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    """A private copy of the world with its queued emails delivered to .eml files."""
    world = copy_world(shared_world(tmp_path_factory), tmp_path_factory.mktemp("lineage"))
    settings = Settings(data_dir=world.data_dir, outbox_dir=world.data_dir / "eml")
    config = DeliveryConfig.from_settings(settings)
    start = dt.datetime.combine(world.last_day, dt.time(), dt.UTC)
    with open_ops_store(settings.resolved_ops_db_url()) as store:
        for hour in range(48):
            at = start + dt.timedelta(hours=hour)
            deliver_due(
                store,
                EmlMailer(settings.resolved_outbox_dir()),
                config,
                now=lambda at=at: at,
                worker_id="lineage",
            )
        with store.begin() as conn:
            sent = (
                conn.execute(
                    sa.select(outbox).where(outbox.c.status == "sent").order_by(outbox.c.sent_at)
                )
                .mappings()
                .all()
            )
    assert sent, "the world's cycle queued nothing to deliver"
    return world, settings, sent


def env_of(world, settings) -> dict[str, str]:
    return {
        "DATA_DIR": str(world.data_dir),
        "WAREHOUSE_URL": world.warehouse_url,
        "OPS_DB_URL": settings.resolved_ops_db_url(),
        "MODELS_DIR": str(world.data_dir / "models"),
        "EMAIL_WEBHOOK_SECRET": SECRET,
        "API_KEY": API_KEY,
    }


def test_explain_names_every_version_and_each_is_in_the_registry(delivered, monkeypatch, capsys):
    world, settings, sent = delivered
    campaign_mail = next(row for row in sent if row["campaign"] != "welcome")
    for name, value in env_of(world, settings).items():
        monkeypatch.setenv(name, value)
    assert ctl.main(["explain", campaign_mail["idempotency_key"]]) == 0
    printed = capsys.readouterr().out

    lineage = campaign_mail["lineage"]
    assert lineage["as_of"] == world.last_day.isoformat()
    assert f"data day  {world.last_day.isoformat()}" in printed
    assert f"segment   {lineage['segment']}: " in printed and lineage["segment_rule"]
    assert campaign_mail["run_id"] and campaign_mail["run_id"] in printed
    with open_ops_store(settings.resolved_ops_db_url()) as store:
        registry = ModelRegistry(store, settings.resolved_models_dir())
        for name in LINEAGE_MODELS:
            version = lineage["models"][name]
            assert version, f"{name} missing from the lineage"
            assert registry.get(name, version).version == version
            assert f"model     {name} {version} [approved]" in printed
    content = lineage["content"]
    assert content["source"] == "template"  # no GROQ_API_KEY in tests
    assert SHA256.match(content["template_sha256"])
    assert f"template  sha256 {content['template_sha256']}" in printed
    assert campaign_mail["to_address"] not in printed  # only the masked address


def test_the_api_lists_a_customers_emails_with_lineage_behind_the_key(delivered):
    world, settings, sent = delivered
    mail = next(row for row in sent if row["campaign"] != "welcome")
    with serve(env_of(world, settings)) as url:
        path = f"{url}/api/customers/{mail['customer_id']}/messages"
        assert httpx.get(path).status_code == 401
        response = httpx.get(path, headers={"X-API-Key": API_KEY})
        spec = httpx.get(f"{url}/openapi.json", headers={"X-API-Key": API_KEY}).json()
    assert response.status_code == 200, response.text
    [item] = [i for i in response.json()["items"] if i["message_key"] == mail["idempotency_key"]]
    assert item["status"] == "sent" and item["as_of"] == world.last_day.isoformat()
    assert item["to_address"].endswith("@" + mail["to_address"].split("@")[1])
    assert mail["to_address"] not in response.text
    assert {m["name"]: m["registry_status"] for m in item["models"]} == dict.fromkeys(
        LINEAGE_MODELS, "approved"
    )
    assert SHA256.match(item["content"]["template_sha256"])
    assert "/api/customers/{customer_id}/messages" in spec["paths"]
    assert "/api/events/email" in spec["paths"]


def event_count(settings, table) -> int:
    with open_ops_store(settings.resolved_ops_db_url()) as store, store.begin() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def test_a_signed_bounce_suppresses_before_the_next_send_and_reaches_the_warehouse_once(
    delivered,
):
    world, settings, sent = delivered
    bounced, clicked = sent[0], sent[1]
    generic = json.dumps(
        {
            "events": [
                {
                    "event_id": "evt-bounce-1",
                    "event_type": "bounce",
                    "bounce_type": "hard",
                    "message_id": bounced["message_id"],
                    "occurred_at": "2023-08-28T09:00:00Z",
                }
            ]
        }
    ).encode()
    timestamp, token = "1693213200", "t" * 50
    mailgun = json.dumps(
        {
            "signature": {
                "timestamp": timestamp,
                "token": token,
                "signature": mailgun_signature(timestamp, token, SECRET),
            },
            "event-data": {
                "id": "mg-click-1",
                "event": "clicked",
                "timestamp": 1693213260.5,
                "recipient": clicked["to_address"],
                "message": {"headers": {"message-id": clicked["message_id"].strip("<>")}},
            },
        }
    ).encode()
    json_type = {"Content-Type": "application/json"}
    with serve(env_of(world, settings)) as url, httpx.Client(base_url=url) as client:
        forged = client.post(
            "/api/events/email",
            content=generic,
            headers={**json_type, SIGNATURE_HEADER: sign(generic, "wrong-secret")},
        )
        assert forged.status_code == 401
        assert event_count(settings, provider_events) == 0

        signed = {**json_type, SIGNATURE_HEADER: sign(generic, SECRET)}
        first = client.post("/api/events/email", content=generic, headers=signed)
        assert first.status_code == 200, first.text
        assert first.json() == {"received": 1, "new": 1, "unmatched": 0, "suppressed": 1}
        suppressed_rows = event_count(settings, suppressions)
        replay = client.post("/api/events/email", content=generic, headers=signed)
        assert replay.json() == {"received": 1, "new": 0, "unmatched": 0, "suppressed": 0}
        assert event_count(settings, suppressions) == suppressed_rows
        assert event_count(settings, provider_events) == 1

        posted = client.post(
            "/api/events/email?provider=mailgun", content=mailgun, headers=json_type
        )
        assert posted.json()["new"] == 1, posted.text
        tampered = mailgun.replace(b"clicked", b"complained")
        refused = client.post(
            "/api/events/email?provider=mailgun",
            content=tampered.replace(token.encode(), b"x" * 50),
            headers=json_type,
        )
        assert refused.status_code == 401

    # The next send to the bounced customer is cancelled, not sent.
    with open_ops_store(settings.resolved_ops_db_url()) as store:
        later = dt.datetime.combine(world.last_day + dt.timedelta(days=9), dt.time(12), dt.UTC)
        message = Message(
            bounced["customer_id"],
            "rewards_digest",
            "after-bounce",
            later,
            "UTC",
            bounced["to_address"],
            "s",
            "p",
            "t",
            "<p>h</p>",
            (),
            "template",
        )
        assert Outbox(store).enqueue([message]) == 1
        eml = settings.resolved_outbox_dir()
        before = len(list(eml.glob("*.eml")))
        report = deliver_due(
            store,
            EmlMailer(eml),
            DeliveryConfig.from_settings(settings),
            now=lambda: later,
            worker_id="after-bounce",
        )
        with store.begin() as conn:
            status, reason = conn.execute(
                sa.select(outbox.c.status, outbox.c.reason).where(
                    outbox.c.idempotency_key == message.key
                )
            ).one()
    assert report.sent == 0 and len(list(eml.glob("*.eml"))) == before
    assert (status, reason) == ("cancelled", "suppressed")

    # The next load: each posted event once in fct_engagement_events, however often it runs.
    selection = dg.AssetSelection.keys(
        "provider_events", "stg_provider_events", "fct_engagement_events"
    )
    for _ in range(2):
        materialize(world, selection, world.last_day, world.last_day)
        facts = world_events(world)
        assert sorted(facts) == [("evt-bounce-1", "bounce"), ("mg-click-1", "click")]


def world_events(world) -> list[tuple[str, str]]:
    engine = sa.create_engine(world.warehouse_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT event_id, event_type FROM marts.fct_engagement_events "
                "WHERE event_id IN ('evt-bounce-1', 'mg-click-1')"
            )
        ).all()
    engine.dispose()
    return [tuple(row) for row in rows]
