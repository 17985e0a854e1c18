"""Operator alerts end to end: a run that really fails and a table the instance records as
stale reach a real SMTP server and a real HTTP receiver on loopback, through the sensors
of the code location, once each however often the sensors tick."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

from reward_assets.alerts import AlertDeliveryError, run_failure_alert
from reward_assets.ops.store import open_ops_store, sent_alerts
from reward_assets.settings import Settings
from reward_assets_tests.smtp_server import SmtpServer

OPERATOR = "oncall@example.com"


class Receiver:
    """A webhook endpoint on loopback that records the JSON it is sent."""

    def __init__(self):
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/ops"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peers(monkeypatch, tmp_path):
    smtp, hook = SmtpServer(), Receiver()
    smtp.start()
    for name, value in {
        "DATA_DIR": str(tmp_path / "data"),
        "WAREHOUSE_URL": f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": str(smtp.port),
        "SMTP_STARTTLS": "false",
        "ALERT_EMAIL_TO": OPERATOR,
        "ALERT_WEBHOOK_URL": hook.url,
        "DAGSTER_UI_URL": "http://dagster.internal:3000",
    }.items():
        monkeypatch.setenv(name, value)
    yield smtp, hook
    smtp.stop()
    hook.close()


@pytest.fixture
def location():
    from reward_assets.definitions import defs

    loaded = defs()
    with dg.DagsterInstance.ephemeral() as instance:
        yield loaded, instance


def tick(location, name: str, cursor: str | None = None):
    defs, instance = location
    sensor = defs.get_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        sensor_name=name,
        resources=defs.resources,
    ) as context:
        return sensor.evaluate_tick(context)


def alerts_stored() -> list[tuple[str, str, str]]:
    table = sent_alerts.c
    with open_ops_store(Settings().resolved_ops_db_url()) as store, store.begin() as conn:
        rows = conn.execute(sa.select(table.alert_key, table.channel, table.status))
        return sorted(tuple(row) for row in rows)


def fail_a_run(location) -> str:
    """A real failure: dim_customers built on a warehouse that has no staging tables."""
    defs, instance = location
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("dim_customers")], raise_on_error=False
    )
    assert not result.success
    return result.run_id


def test_a_failed_run_alerts_once_by_mail_and_webhook(peers, location):
    smtp, hook = peers
    first = tick(location, "run_failure_alert_sensor")  # starts watching from here
    run_id = fail_a_run(location)

    tick(location, "run_failure_alert_sensor", first.cursor)
    [mail] = smtp.messages
    assert mail["To"] == OPERATOR
    assert mail["Subject"] == "[reward-assets] run of assets dim_customers failed"
    body = mail.get_content()
    assert f"http://dagster.internal:3000/runs/{run_id}" in body
    assert "Failed steps: dim_customers" in body
    assert "SqlModelError:" in body and "stg_customers does not exist" in body
    [posted] = hook.bodies
    assert posted["kind"] == "run_failure" and posted["key"] == f"run_failure:{run_id}"
    assert run_id in posted["text"]

    # The sensor ticking again from the same cursor (a retried tick) sends nothing new.
    tick(location, "run_failure_alert_sensor", first.cursor)
    assert len(smtp.messages) == 1 and len(hook.bodies) == 1
    key = f"run_failure:{run_id}"
    assert alerts_stored() == [(key, "email", "sent"), (key, "webhook", "sent")]


def test_a_mail_server_outage_delays_the_mail_but_never_doubles_the_webhook(peers, location):
    smtp, hook = peers
    first = tick(location, "run_failure_alert_sensor")
    run_id = fail_a_run(location)
    smtp.stop()
    result = tick(location, "run_failure_alert_sensor", first.cursor)
    [reaction] = result.dagster_run_reactions
    assert "not delivered: email" in reaction.error.message
    assert len(hook.bodies) == 1
    key = f"run_failure:{run_id}"
    assert alerts_stored() == [(key, "email", "pending"), (key, "webhook", "sent")]

    tick(location, "freshness_alert_sensor")  # the mail server is still down
    assert alerts_stored()[0] == (key, "email", "pending")
    smtp.start()
    assert "1 earlier alerts sent again" in tick(location, "freshness_alert_sensor").skip_message
    tick(location, "freshness_alert_sensor")
    [mail] = smtp.messages
    assert run_id in mail.get_content() and len(hook.bodies) == 1
    assert alerts_stored() == [(key, "email", "sent"), (key, "webhook", "sent")]


def _record_freshness(instance, key: str, state: FreshnessState, at: dt.datetime) -> None:
    # What the freshness daemon writes when it finds a policy passed (or met again).
    instance.report_runless_asset_event(
        FreshnessStateChange(
            key=dg.AssetKey(key),
            new_state=state,
            previous_state=FreshnessState.PASS
            if state == FreshnessState.FAIL
            else FreshnessState.FAIL,
            state_change_timestamp=at.timestamp(),
        )
    )


def test_a_stale_table_alerts_once_per_breach(peers, location):
    smtp, hook = peers
    _, instance = location
    assert tick(location, "freshness_alert_sensor").skip_message.startswith("0 of ")

    stale_at = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)
    _record_freshness(instance, "dim_customers", FreshnessState.FAIL, stale_at)
    tick(location, "freshness_alert_sensor")
    tick(location, "freshness_alert_sensor")
    [mail] = smtp.messages
    assert mail["Subject"] == "[reward-assets] dim_customers is stale"
    body = mail.get_content()
    assert "http://dagster.internal:3000/assets/dim_customers" in body
    assert "Expected at least every: 1 day, 3:00:00" in body
    assert "Last materialised: never" in body
    assert [b["kind"] for b in hook.bodies] == ["freshness"]

    # Fresh again, then stale again: a new breach, a new alert.
    _record_freshness(instance, "dim_customers", FreshnessState.PASS, stale_at.replace(hour=10))
    assert tick(location, "freshness_alert_sensor").skip_message.startswith("0 of ")
    _record_freshness(instance, "dim_customers", FreshnessState.FAIL, stale_at.replace(day=5))
    tick(location, "freshness_alert_sensor")
    assert len(smtp.messages) == 2 and len(hook.bodies) == 2


def test_without_a_channel_the_sensors_skip_and_record_nothing(monkeypatch, tmp_path, location):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    for name in ("ALERT_EMAIL_TO", "ALERT_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    result = tick(location, "freshness_alert_sensor")
    assert "no ALERT_EMAIL_TO or ALERT_WEBHOOK_URL" in result.skip_message
    assert not (tmp_path / "data" / "ops.sqlite").exists()


def test_an_alert_carries_no_email_address_from_the_error():
    alert = run_failure_alert(
        Settings(),
        "engagement_cycle_job",
        "abc123",
        ["engagement_messages"],
        "SMTPRecipientsRefused: jane.doe@example.com refused",
    )
    assert "jane.doe" not in alert.body and "j***@example.com refused" in alert.body


def test_a_webhook_that_refuses_is_a_delivery_error(monkeypatch, tmp_path):
    from reward_assets.alerts import send_alert

    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/")
    settings = Settings()
    alert = run_failure_alert(settings, "job", "r1", [], None)
    try:
        with (
            open_ops_store(settings.resolved_ops_db_url()) as store,
            pytest.raises(AlertDeliveryError, match="answered 500"),
        ):
            send_alert(store, settings, alert)
        [(_, channel, status)] = alerts_stored()
        assert (channel, status) == ("webhook", "pending")  # the next tick retries
    finally:
        server.shutdown()
        server.server_close()
