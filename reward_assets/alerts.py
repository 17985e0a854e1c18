"""Operator alerts: a failed run, or a table past its freshness policy, mailed to
ALERT_EMAIL_TO through the project's mailer (SMTP, or .eml files locally) and, when
ALERT_WEBHOOK_URL is set, POSTed there as JSON (a chat channel's incoming webhook).

Each alert has a key naming what it is about (the run; the table and the moment it went
stale). The sender records the key per channel in the operational store before sending,
so a sensor that ticks again, or two that race, send it once; a channel whose send fails
stays pending and `freshness_alert_sensor`'s next tick sends it again (`retry_pending`).
A process that dies between recording and sending leaves the row `sending`: that alert is
not sent (at most once, rather than a page on every restart). Alerts carry names, counts and links,
never personal data: error text is masked (`privacy.mask_emails_in`).
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import quote

import sqlalchemy as sa

from reward_assets.email.mailer import POLICY, mailer_from_settings, message_id_for
from reward_assets.ops.store import OpsStore, insert_missing, sent_alerts, stored_now
from reward_assets.privacy import mask_emails_in
from reward_assets.settings import Settings

ERROR_CHARS = 600  # of an error's message in an alert: enough to recognise it


class AlertDeliveryError(Exception):
    """An alert channel refused or could not be reached; its claim was given back."""


@dataclass(frozen=True)
class Alert:
    key: str
    kind: str  # run_failure | freshness
    subject: str
    body: str

    def payload(self) -> dict:
        return {"text": f"{self.subject}\n{self.body}", "kind": self.kind, "key": self.key}


def run_failure_alert(
    settings: Settings, job: str, run_id: str, failed_steps: list[str], error: str | None
) -> Alert:
    lines = [f"Job: {job}", f"Run: {settings.dagster_ui_url.rstrip('/')}/runs/{run_id}"]
    if failed_steps:
        lines.append(f"Failed steps: {', '.join(failed_steps)}")
    if error:
        lines.append(f"Error: {mask_emails_in(error)[:ERROR_CHARS]}")
    return Alert(
        key=f"run_failure:{run_id}",
        kind="run_failure",
        subject=f"[reward-assets] run of {job} failed",
        body="\n".join(lines),
    )


def freshness_alert(
    settings: Settings,
    asset: str,
    stale_since: dt.datetime,
    fail_window: dt.timedelta,
    last_materialized: dt.datetime | None,
) -> Alert:
    last = last_materialized.isoformat(timespec="minutes") if last_materialized else "never"
    url = f"{settings.dagster_ui_url.rstrip('/')}/assets/{quote(asset)}"
    return Alert(
        # One alert per breach: a table that recovers and goes stale again alerts again.
        key=f"freshness:{asset}:{stale_since.isoformat()}",
        kind="freshness",
        subject=f"[reward-assets] {asset} is stale",
        body="\n".join(
            [
                f"Asset: {url}",
                f"Stale since: {stale_since.isoformat(timespec='minutes')}",
                f"Expected at least every: {fail_window}",
                f"Last materialised: {last}",
            ]
        ),
    )


def channels(settings: Settings) -> list[str]:
    return [
        name
        for name, configured in (
            ("email", bool(settings.alert_recipients())),
            ("webhook", bool(settings.alert_webhook_url)),
        )
        if configured
    ]


def send_alert(store: OpsStore, settings: Settings, alert: Alert) -> list[str]:
    """Send `alert` on each configured channel that has not had it yet; the channels it
    went out on now. A channel that fails stays `pending` for `retry_pending`, and
    AlertDeliveryError says which after every channel was tried."""
    now = stored_now()
    fresh = [
        {
            "alert_key": alert.key,
            "channel": channel,
            "kind": alert.kind,
            "status": "sending",
            "subject": alert.subject,
            "body": alert.body,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for channel in channels(settings)
    ]
    with store.begin() as conn:
        claimed = [row["channel"] for row in fresh if insert_missing(conn, sent_alerts, [row])]
    return _deliver(store, settings, alert, claimed)


def retry_pending(store: OpsStore, settings: Settings) -> list[str]:
    """Send again what a failed channel left `pending`; the alert keys delivered now."""
    with store.begin() as conn:
        rows = conn.execute(sa.select(sent_alerts).where(sent_alerts.c.status == "pending")).all()
    delivered = []
    for row in rows:
        if row.channel not in channels(settings):
            continue
        with store.begin() as conn:  # taken only if no one else took it meanwhile
            taken = conn.execute(
                sa.update(sent_alerts)
                .where(
                    sent_alerts.c.alert_key == row.alert_key,
                    sent_alerts.c.channel == row.channel,
                    sent_alerts.c.status == "pending",
                )
                .values(status="sending", updated_at=stored_now())
            ).rowcount
        if not taken:
            continue
        alert = Alert(row.alert_key, row.kind, row.subject, row.body)
        try:
            if _deliver(store, settings, alert, [row.channel]):
                delivered.append(row.alert_key)
        except AlertDeliveryError:
            continue  # stays pending; the next tick tries again
    return delivered


def _deliver(store: OpsStore, settings: Settings, alert: Alert, to: list[str]) -> list[str]:
    sent, failures = [], []
    for channel in to:
        try:
            (_mail if channel == "email" else _post)(settings, alert)
        except Exception as error:  # any failure: keep it for the next tick
            failures.append(f"{channel}: {error}")
            _mark(store, alert.key, channel, "pending", mask_emails_in(str(error))[:ERROR_CHARS])
            continue
        _mark(store, alert.key, channel, "sent", None)
        sent.append(channel)
    if failures:
        raise AlertDeliveryError(f"alert {alert.key} not delivered: {'; '.join(failures)}")
    return sent


def _mark(store: OpsStore, key: str, channel: str, status: str, error: str | None) -> None:
    with store.begin() as conn:
        conn.execute(
            sa.update(sent_alerts)
            .where(sent_alerts.c.alert_key == key, sent_alerts.c.channel == channel)
            .values(
                status=status,
                attempts=sent_alerts.c.attempts + 1,
                last_error=error,
                updated_at=stored_now(),
            )
        )


def _mail(settings: Settings, alert: Alert) -> None:
    message = EmailMessage(policy=POLICY)
    message["Subject"] = alert.subject
    message["From"] = settings.email_from
    message["To"] = ", ".join(settings.alert_recipients())
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = message_id_for(f"alert:{alert.key}", settings.email_from)
    message.set_content(alert.body, cte="quoted-printable")
    with mailer_from_settings(settings).session() as session:
        session.send(message)


def _post(settings: Settings, alert: Alert) -> None:
    request = urllib.request.Request(
        settings.alert_webhook_url,
        data=json.dumps(alert.payload()).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.alert_timeout_seconds) as answer:
            answer.read()
    except urllib.error.HTTPError as error:
        raise AlertDeliveryError(f"the webhook answered {error.code}") from error
