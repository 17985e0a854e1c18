"""Email delivery against a real SMTP server on loopback: at most once, across crashes,
outages, retries and two workers; the rules again at send time; the message format."""

import dataclasses
import datetime as dt
import smtplib
import threading
from collections import Counter

import pytest
import sqlalchemy as sa

from reward_assets.contact.rules import ContactPolicy
from reward_assets.email import ctl as emailctl
from reward_assets.email.delivery import DeliveryConfig, DeliveryHooks, deliver_due
from reward_assets.email.mailer import (
    EmlMailer,
    SmtpMailer,
    build_email,
    mailer_from_settings,
    message_id_for,
)
from reward_assets.email.outbox import Message, Outbox, set_kill_switch
from reward_assets.email.suppression import suppress
from reward_assets.email.unsubscribe import Link, UnsafeSecret, read_token
from reward_assets.ops.store import open_ops_store, outbox
from reward_assets.settings import Settings
from reward_assets_tests.smtp_server import SmtpServer

T0 = dt.datetime(2024, 3, 4, 12, tzinfo=dt.UTC)  # 12:00 UTC: outside quiet hours
MINUTE = dt.timedelta(minutes=1)
LEASE = dt.timedelta(seconds=300)
FROM = "Rewards <rewards@rewards.example>"
SECRET = "test-secret"
CONFIG = DeliveryConfig(
    policy=ContactPolicy(holdout_share=0.0),
    from_address=FROM,
    public_base_url="https://rewards.example",
    unsubscribe_secret=SECRET,
)


class Crash(BaseException):
    """A process dying: no `except Exception` cleanup runs."""


def crash(_key):
    raise Crash


def clock(at):
    return lambda: at


def message(customer_id="c1", campaign="rewards_digest", send_at=T0, timezone="UTC"):
    return Message(
        customer_id=customer_id,
        campaign=campaign,
        occurrence="once" if campaign == "welcome" else send_at.date().isoformat(),
        send_at=send_at,
        timezone=timezone,
        to_address=f"{customer_id}@example.com",
        subject=f"Rewards for {customer_id}",
        preheader="Picked for you",
        text_body=f"Hello {customer_id}\n.\nA line with a lone dot above.",
        html_body=f"<p>Hello {customer_id}</p>",
        reward_ids=("r1",),
        content_source="template",
    )


def row(store, key):
    with store.begin() as conn:
        return conn.execute(sa.select(outbox).where(outbox.c.idempotency_key == key)).one()


@pytest.fixture
def store(tmp_path):
    with open_ops_store(f"sqlite:///{tmp_path / 'ops.sqlite'}") as opened:
        yield opened


@pytest.fixture
def server():
    smtp = SmtpServer()
    smtp.start()
    yield smtp
    smtp.stop()


@pytest.fixture
def mailer(server):
    return SmtpMailer(server.host, server.port, False, "", "", timeout=5)


def deliver(store, mailer, at, config=CONFIG, worker="w1", **kwargs):
    return deliver_due(store, mailer, config, now=clock(at), worker_id=worker, **kwargs)


def test_sends_each_due_message_once_in_the_expected_format(store, mailer, server):
    due, later = message("c1"), message("c2", send_at=T0 + dt.timedelta(hours=2))
    Outbox(store).enqueue([due, later])

    report = deliver(store, mailer, T0)
    assert (report.sent, report.failed, report.retried) == (1, 0, 0)
    assert deliver(store, mailer, T0 + MINUTE).sent == 0
    assert len(server.messages) == 1

    received = server.messages[0]
    assert received.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in received.iter_parts()}
    assert parts["text/plain"].splitlines() == due.text_body.splitlines()
    assert parts["text/html"].strip() == due.html_body
    assert (received["To"], received["From"], received["Subject"]) == (
        "c1@example.com",
        FROM,
        "Rewards for c1",
    )
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = received["List-Unsubscribe"].strip("<>")
    assert url.startswith("https://rewards.example/api/unsubscribe?token=")
    # On the wire as a plain <URL> (clients do not decode RFC 2047 words into links).
    assert dict(received.raw_items())["List-Unsubscribe"] == f"<{url}>"
    # Issued the day it was sent, so the link works the full UNSUBSCRIBE_LINK_DAYS after.
    assert read_token(url.partition("token=")[2], SECRET) == Link("c1", T0.date())
    assert received["Message-ID"] == message_id_for(due.key, FROM)
    assert message_id_for(due.key, FROM) == message_id_for(due.key, FROM)
    assert message_id_for(due.key, FROM) != message_id_for(later.key, FROM)
    assert received["Message-ID"].endswith("@rewards.example>")

    sent = row(store, due.key)
    assert (sent.status, sent.attempts, sent.claimed_by) == ("sent", 1, None)
    assert sent.message_id == received["Message-ID"]
    assert sent.smtp_response.startswith("250")
    assert sent.sent_at == T0.replace(tzinfo=None)

    assert deliver(store, mailer, T0 + dt.timedelta(hours=2)).sent == 1
    assert server.handler.ids() == [message_id_for(k, FROM) for k in (due.key, later.key)]


def test_a_crash_after_the_claim_is_taken_over_after_the_lease(store, mailer, server):
    first, second, third = message("c1"), message("c2"), message("c3")
    Outbox(store).enqueue([first, second, third])
    pairs = dataclasses.replace(CONFIG, batch_size=2)

    with pytest.raises(Crash):
        deliver(store, mailer, T0, pairs, hooks=DeliveryHooks(after_claim=crash))

    # A batch is claimed in one statement: both its rows are held, the next one is not.
    for key in (first.key, second.key):
        held = row(store, key)
        assert (held.status, held.claimed_by, held.lease_until) == (
            "queued",
            "w1",
            (T0 + LEASE).replace(tzinfo=None),
        )
    assert row(store, third.key).claimed_by is None

    # Before the lease runs out only the unclaimed row goes.
    assert deliver(store, mailer, T0 + LEASE - MINUTE, worker="w2").sent == 1
    assert server.handler.ids() == [message_id_for(third.key, FROM)]

    assert deliver(store, mailer, T0 + LEASE + MINUTE, worker="w2").sent == 2
    assert deliver(store, mailer, T0 + 2 * LEASE, worker="w2").sent == 0
    assert Counter(server.handler.ids()) == {
        message_id_for(m.key, FROM): 1 for m in (first, second, third)
    }


def test_a_crash_after_the_server_accepted_ends_uncertain_never_resent(
    store, mailer, server, monkeypatch
):
    sent = message("c1")
    Outbox(store).enqueue([sent])

    with pytest.raises(Crash):
        deliver(store, mailer, T0, hooks=DeliveryHooks(after_smtp=crash))
    assert len(server.messages) == 1
    assert row(store, sent.key).status == "sending"

    assert deliver(store, mailer, T0 + MINUTE).uncertain == 0
    report = deliver(store, mailer, T0 + LEASE + MINUTE, worker="w2")
    assert (report.uncertain, report.sent) == (1, 0)
    for later in (dt.timedelta(hours=1), dt.timedelta(days=1)):
        assert deliver(store, mailer, T0 + later, worker="w3").sent == 0
    assert len(server.messages) == 1

    box = Outbox(store)
    assert box.status_counts() == {"uncertain": 1}
    assert [r["key"] for r in box.uncertain_rows()] == [sent.key]

    monkeypatch.setenv("OPS_DB_URL", store.url)
    assert emailctl.main(["resolve", sent.key, "--as", "sent", "--by", "tester"]) == 0
    assert box.status_counts() == {"sent": 1}
    assert len(server.messages) == 1


def test_a_connection_lost_after_data_propagates_and_ends_uncertain(store, mailer, server):
    hung_up, untouched = message("c1"), message("c2")
    Outbox(store).enqueue([hung_up, untouched])
    server.handler.hang_up_after_data = True

    with pytest.raises(smtplib.SMTPServerDisconnected):
        deliver(store, mailer, T0)

    assert row(store, hung_up.key).status == "sending"
    # The claims not yet used were given back at once, not after their lease.
    assert deliver(store, mailer, T0 + MINUTE, worker="w2").sent == 1
    assert deliver(store, mailer, T0 + LEASE + MINUTE, worker="w2").uncertain == 1
    assert deliver(store, mailer, T0 + dt.timedelta(days=1), worker="w3").sent == 0
    assert server.handler.ids() == [message_id_for(k, FROM) for k in (hung_up.key, untouched.key)]


def test_server_down_nothing_lost_then_every_message_once(store, mailer, server):
    messages = [message(f"c{i}") for i in range(3)]
    Outbox(store).enqueue(messages)
    server.stop()

    report = deliver(store, mailer, T0)

    assert (report.sent, report.retried, report.failed) == (0, 3, 0)
    for m in messages:
        waiting = row(store, m.key)
        assert (waiting.status, waiting.attempts, waiting.claimed_by) == ("queued", 0, None)
        assert waiting.next_attempt_at == (T0 + MINUTE).replace(tzinfo=None)

    server.start()
    assert deliver(store, mailer, T0 + MINUTE / 2).sent == 0
    assert deliver(store, mailer, T0 + 2 * MINUTE).sent == 3
    assert deliver(store, mailer, T0 + 3 * MINUTE).sent == 0
    assert sorted(server.handler.ids()) == sorted(message_id_for(m.key, FROM) for m in messages)


def test_a_4xx_is_retried_then_sent(store, mailer, server):
    queued = message()
    Outbox(store).enqueue([queued])
    server.handler.data_replies.append("451 4.3.0 try again later")

    report = deliver(store, mailer, T0)

    assert (report.sent, report.retried) == (0, 1)
    waiting = row(store, queued.key)
    assert (waiting.status, waiting.attempts) == ("queued", 1)
    assert waiting.reason.startswith("451")
    assert waiting.next_attempt_at == (T0 + MINUTE).replace(tzinfo=None)
    assert deliver(store, mailer, T0 + MINUTE / 2).sent == 0
    assert deliver(store, mailer, T0 + 2 * MINUTE).sent == 1
    assert (row(store, queued.key).status, len(server.messages)) == ("sent", 1)


def test_5xx_and_refused_recipients_fail_with_a_reason(store, mailer, server):
    rejected, unknown, fine = message("c1"), message("c2"), message("c3")
    Outbox(store).enqueue([rejected, unknown, fine])
    server.handler.data_replies.append("554 5.7.1 message rejected")
    server.handler.refused.add("c2@example.com")

    report = deliver(store, mailer, T0)

    assert (report.failed, report.sent, report.by_reason) == (2, 1, {"permanent": 2})
    assert (row(store, rejected.key).status, row(store, rejected.key).reason) == (
        "failed",
        "5xx: 554 5.7.1 message rejected",
    )
    assert (row(store, unknown.key).status, row(store, unknown.key).reason) == (
        "failed",
        "bad address",
    )
    # The session stays usable after refusals, and failures are final.
    assert server.handler.ids() == [message_id_for(fine.key, FROM)]
    assert deliver(store, mailer, T0 + dt.timedelta(days=1)).sent == 0


def test_transient_failures_stop_after_max_attempts(store, mailer, server):
    queued = message()
    Outbox(store).enqueue([queued])
    server.handler.data_replies.extend(["451 4.3.0 busy"] * 2)
    config = dataclasses.replace(CONFIG, max_attempts=2)

    assert deliver(store, mailer, T0, config).retried == 1
    report = deliver(store, mailer, T0 + 2 * MINUTE, config)

    assert (report.failed, report.by_reason) == (1, {"max_attempts": 1})
    failed = row(store, queued.key)
    assert (failed.status, failed.attempts) == ("failed", 2)
    assert failed.reason.startswith("max_attempts: 451")
    assert server.messages == []


def test_a_customer_suppressed_after_planning_is_cancelled(store, mailer, server):
    queued = message()
    Outbox(store).enqueue([queued])
    suppress(store, "c1", "unsubscribe", "api")

    report = deliver(store, mailer, T0)

    assert (report.cancelled, report.sent, report.by_reason) == (1, 0, {"suppressed": 1})
    assert (row(store, queued.key).status, row(store, queued.key).reason) == (
        "cancelled",
        "suppressed",
    )
    assert server.messages == []


def test_quiet_hours_defer_to_their_end_in_the_customers_zone(store, mailer, server):
    # 03:00 UTC is 22:00 in New York (EST, UTC-5): quiet until 08:00 local = 13:00 UTC.
    night = dt.datetime(2024, 3, 5, 3, tzinfo=dt.UTC)
    queued = message(send_at=night, timezone="America/New_York")
    Outbox(store).enqueue([queued])

    report = deliver(store, mailer, night)

    assert (report.deferred, report.sent, report.by_reason) == (1, 0, {"quiet_hours": 1})
    waiting = row(store, queued.key)
    assert (waiting.status, waiting.claimed_by) == ("queued", None)
    assert waiting.next_attempt_at == dt.datetime(2024, 3, 5, 13)
    assert deliver(store, mailer, dt.datetime(2024, 3, 5, 12, 59, tzinfo=dt.UTC)).sent == 0
    assert deliver(store, mailer, dt.datetime(2024, 3, 5, 13, tzinfo=dt.UTC)).sent == 1
    assert len(server.messages) == 1


def test_a_backlog_in_quiet_hours_is_deferred_at_once_and_checked_again_at_their_end(
    store, mailer, server
):
    # 03:00 UTC: 22:00 in New York (quiet until 13:00 UTC), noon in Tokyo.
    night = dt.datetime(2024, 3, 5, 3, tzinfo=dt.UTC)
    waiting = [message(f"c{i:03d}", send_at=night, timezone="America/New_York") for i in range(120)]
    Outbox(store).enqueue([*waiting, message("tokyo", send_at=night, timezone="Asia/Tokyo")])
    suppress(store, "c000", "unsubscribe", "api")
    commits = []
    sa.event.listen(store.engine, "commit", lambda _conn: commits.append(1))

    report = deliver(store, mailer, night)

    assert (report.sent, report.deferred, report.by_reason) == (1, 120, {"quiet_hours": 120})
    # One transaction defers the batch: per row, the backlog took one commit each.
    assert len(commits) < 20
    assert {row(store, m.key).next_attempt_at for m in waiting} == {dt.datetime(2024, 3, 5, 13)}
    # The other rules run when the rows are due again: the suppressed customer's is cancelled.
    report = deliver(store, mailer, dt.datetime(2024, 3, 5, 13, tzinfo=dt.UTC))
    assert (report.sent, report.cancelled, report.by_reason) == (119, 1, {"suppressed": 1})
    assert row(store, waiting[0].key).status == "cancelled"
    assert len(server.messages) == 120


def test_the_frequency_cap_at_send_time_counts_messages_already_sent(store, mailer, server):
    day = dt.timedelta(days=1)
    box = Outbox(store)
    # c1: two marketing emails went out this week, a third may not.
    box.enqueue([message("c1", "win_back", T0 - 2 * day), message("c1", "followup_3", T0 - day)])
    assert deliver(store, mailer, T0 - 2 * day).sent == 1
    assert deliver(store, mailer, T0 - day).sent == 1
    # c2: one sent 6 days ago and one planned 6 days ahead (each window holds two): the
    # planned one must not cancel today's.
    box.enqueue([message("c2", "win_back", T0 - 6 * day)])
    assert deliver(store, mailer, T0 - 6 * day).sent == 1
    box.enqueue([message("c1"), message("c2"), message("c2", "reactivation", T0 + 6 * day)])

    report = deliver(store, mailer, T0)

    assert (report.sent, report.cancelled, report.by_reason) == (1, 1, {"frequency_cap": 1})
    assert row(store, message("c1").key).status == "cancelled"
    assert row(store, message("c2").key).status == "sent"


def test_the_kill_switch_holds_every_message_until_resumed(store, mailer, server):
    queued = message()
    Outbox(store).enqueue([queued])
    paused_by_env = dataclasses.replace(CONFIG, kill_switch_env=True)

    assert deliver(store, mailer, T0, paused_by_env).sent == 0
    set_kill_switch(store, True, by="ops")
    assert deliver(store, mailer, T0 + MINUTE).sent == 0
    waiting = row(store, queued.key)
    assert (waiting.status, waiting.claimed_by, waiting.attempts) == ("queued", None, 0)
    assert server.messages == []

    set_kill_switch(store, False, by="ops")
    assert deliver(store, mailer, T0 + 2 * MINUTE).sent == 1
    assert len(server.messages) == 1


def test_the_kill_switch_engaged_mid_run_stops_the_rest(store, mailer, server):
    Outbox(store).enqueue([message("c1"), message("c2")])

    report = deliver(
        store,
        mailer,
        T0,
        hooks=DeliveryHooks(after_smtp=lambda key: set_kill_switch(store, True, by="ops")),
    )

    assert (report.sent, report.by_reason) == (1, {"kill_switch": 1})
    assert row(store, message("c2").key).status == "queued"
    assert len(server.messages) == 1


def test_a_worker_whose_claim_was_taken_over_does_not_send_it(store, mailer, server):
    Outbox(store).enqueue([message()])

    def stall(_key):
        # w1 stalls past its lease right after claiming; w2 takes the row over.
        assert deliver(store, mailer, T0 + LEASE + MINUTE, worker="w2").sent == 1

    report = deliver(store, mailer, T0, hooks=DeliveryHooks(after_claim=stall))

    assert report.sent == 0
    assert len(server.messages) == 1


def test_two_workers_never_send_the_same_message(store, mailer, server):
    messages = [message(f"c{i:02d}") for i in range(30)]
    Outbox(store).enqueue(messages)
    config = dataclasses.replace(CONFIG, batch_size=4)
    # Each worker holds a claim before either sends, so both really compete for rows.
    both_claimed = threading.Barrier(2, timeout=10)
    reports, claims = {}, {"a": [], "b": []}

    def work(worker):
        def meet(key):
            claims[worker].append(key)
            if len(claims[worker]) == 1:
                both_claimed.wait()

        hooks = DeliveryHooks(after_claim=meet)
        reports[worker] = deliver(store, mailer, T0, config, worker=worker, hooks=hooks)

    threads = [threading.Thread(target=work, args=(w,)) for w in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert claims["a"] and claims["b"] and not set(claims["a"]) & set(claims["b"])
    assert sorted(claims["a"] + claims["b"]) == sorted(m.key for m in messages)
    assert (reports["a"].sent, reports["b"].sent) == (len(claims["a"]), len(claims["b"]))
    assert reports["a"].sent + reports["b"].sent == 30
    assert sorted(server.handler.ids()) == sorted(message_id_for(m.key, FROM) for m in messages)


def test_eml_mailer_writes_one_file_per_message(store, tmp_path):
    folder = tmp_path / "outbox"
    mailer = EmlMailer(folder)
    first, second = message("c1"), message("c2")
    Outbox(store).enqueue([first, second])

    assert deliver(store, mailer, T0).sent == 2
    files = sorted(path.name for path in folder.iterdir())
    ids = sorted(message_id_for(m.key, FROM).strip("<>").partition("@")[0] for m in (first, second))
    assert files == [f"{i}.eml" for i in ids]

    # Re-delivery of the same key (an operator requeues an uncertain row) adds no file.
    with store.begin() as conn:
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.idempotency_key == first.key)
            .values(status="uncertain")
        )
    Outbox(store).resolve(first.key, "requeue", by="tester")
    assert deliver(store, mailer, T0 + MINUTE).sent == 1
    again = build_email(
        first,
        from_address=FROM,
        unsubscribe_url="https://x",
        message_id=message_id_for(first.key, FROM),
    )
    with mailer.session() as session:
        assert session.send(again).startswith("exists")
    assert sorted(path.name for path in folder.iterdir()) == files


def test_mailers_and_config_from_settings(tmp_path):
    local = Settings(data_dir=tmp_path, smtp_host="")
    relay = Settings(
        smtp_host="mx.example",
        smtp_port=2525,
        send_max_attempts=3,
        kill_switch=True,
        unsubscribe_secret="a-long-random-value",
    )

    assert isinstance(mailer_from_settings(local), EmlMailer)
    assert mailer_from_settings(local).folder == tmp_path / "outbox"
    smtp = mailer_from_settings(relay)
    assert isinstance(smtp, SmtpMailer) and (smtp.host, smtp.port) == ("mx.example", 2525)
    config = DeliveryConfig.from_settings(relay)
    assert (config.max_attempts, config.kill_switch_env) == (3, True)
    assert config.policy == ContactPolicy.from_settings(relay)
    assert config.unsubscribe_secret == "a-long-random-value"


def test_mail_goes_out_only_with_a_secret_of_its_own(tmp_path):
    """The default unsubscribe secret is public: with it, anyone can forge the links of a
    real mailing. Delivery takes it only in the embedded demo (.eml files, embedded stores)."""
    demo = Settings(data_dir=tmp_path, unsubscribe_secret="change-me")
    assert DeliveryConfig.from_settings(demo).unsubscribe_secret == "change-me"
    for unsafe in (
        {"smtp_host": "mx.example"},
        {"ops_db_url": "postgresql+psycopg://ops@db.example/ops"},
        {"warehouse_url": "postgresql+psycopg://wh@db.example/warehouse"},
    ):
        with pytest.raises(UnsafeSecret, match="UNSUBSCRIBE_SECRET"):
            DeliveryConfig.from_settings(Settings(data_dir=tmp_path, **unsafe))


@pytest.mark.postgres
def test_delivery_on_postgres(pg_url, mailer, server):
    with open_ops_store(pg_url) as store:
        first, second = message("c1"), message("c2")
        Outbox(store).enqueue([first, second])

        with pytest.raises(Crash):
            deliver(store, mailer, T0, hooks=DeliveryHooks(after_smtp=crash))
        report = deliver(store, mailer, T0 + LEASE + MINUTE, worker="w2")

        assert (report.uncertain, report.sent) == (1, 1)
        assert Outbox(store).status_counts() == {"uncertain": 1, "sent": 1}
        assert Counter(server.handler.ids()) == {
            message_id_for(first.key, FROM): 1,
            message_id_for(second.key, FROM): 1,
        }
