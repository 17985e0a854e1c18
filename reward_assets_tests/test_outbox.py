"""The outbox, suppressions, the kill switch, unsubscribe tokens and emailctl, on SQLite
and (marked postgres) on PostgreSQL."""

import base64
import dataclasses
import datetime as dt
import hmac
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from reward_assets.contact.rules import ContactPolicy
from reward_assets.email import ctl as emailctl
from reward_assets.email.outbox import (
    Message,
    Outbox,
    Skip,
    kill_switch_engaged,
    set_kill_switch,
)
from reward_assets.email.suppression import suppress, suppressed, sync_from_events
from reward_assets.email.unsubscribe import (
    Link,
    honoured,
    make_token,
    read_token,
    unsubscribe_url,
)
from reward_assets.ops.store import insert_missing, open_ops_store, outbox, suppressions, to_db

T0 = dt.datetime(2024, 3, 4, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def message(customer_id="c1", campaign="rewards_digest", send_at=T0, subject="Hi", **fields):
    occurrence = fields.pop("occurrence", "once" if campaign == "welcome" else send_at.date())
    return Message(
        customer_id=customer_id,
        campaign=campaign,
        occurrence=str(occurrence),
        send_at=send_at,
        timezone=fields.pop("timezone", "Europe/Paris"),
        to_address=f"{customer_id}@example.com",
        subject=subject,
        preheader="Your rewards",
        text_body="Hello",
        html_body="<p>Hello</p>",
        reward_ids=("r1", "r2"),
        content_source="template",
    )


def set_status(ops_store, key, status):
    with ops_store.begin() as conn:
        conn.execute(sa.update(outbox).where(outbox.c.idempotency_key == key).values(status=status))


def row(ops_store, key):
    with ops_store.begin() as conn:
        return conn.execute(sa.select(outbox).where(outbox.c.idempotency_key == key)).one()


def test_enqueue_twice_keeps_one_row_and_the_first_content(ops_store):
    box = Outbox(ops_store)
    first = message()

    assert box.enqueue([first, message(subject="duplicate in the batch")], run_id="r1") == 1
    assert box.enqueue([message(subject="replayed plan")], run_id="r2") == 0

    assert first.key == "c1:rewards_digest:2024-03-04"
    assert box.existing([first.key, "c9:welcome:once"]) == {first.key}
    assert box.status_counts() == {"queued": 1}
    stored = row(ops_store, first.key)
    assert (stored.subject, stored.run_id, stored.attempts) == ("Hi", "r1", 0)
    assert stored.send_at == dt.datetime(2024, 3, 4, 12)  # naive UTC
    assert stored.reward_ids == ["r1", "r2"]


def test_insert_missing_stores_what_core_stores_and_counts_only_new_rows(ops_store):
    def outbox_row(key, **fields):
        at = dt.datetime(2024, 3, 4, 12, 0, 0, 500)
        return {
            "idempotency_key": key,
            "customer_id": "c1",
            "campaign": "rewards_digest",
            "occurrence": "2024-03-04",
            "status": "queued",
            "send_at": at,
            "timezone": "UTC",
            "created_at": at.replace(microsecond=0),
            "updated_at": at,
            "reward_ids": ["r1"],
            "lineage": {"segment": "active", "models": {"churn_model": None}, "note": "é"},
            **fields,
        }

    # `attempts` left out: its default fills it in.
    rows = [outbox_row("a"), outbox_row("b", lineage=None, reward_ids=[])]
    with ops_store.begin() as conn:
        insert = sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert
        conn.execute(insert(outbox).on_conflict_do_nothing(), rows)
        fast = [{**r, "idempotency_key": f"fast-{r['idempotency_key']}"} for r in rows]
        assert insert_missing(conn, outbox, fast) == 2
        again = [*fast, outbox_row("fast-c")]
        assert insert_missing(conn, outbox, again) == 1
        columns = [sa.cast(c, sa.Text) for c in outbox.c if c.name != "idempotency_key"]
        stored = {
            key: values
            for key, *values in conn.execute(
                sa.select(outbox.c.idempotency_key, *columns).order_by(outbox.c.idempotency_key)
            )
        }
    assert stored["fast-a"] == stored["a"]
    assert stored["fast-b"] == stored["b"]
    assert stored["a"] != stored["b"]


def test_enqueue_refuses_an_unknown_campaign(ops_store):
    with pytest.raises(ValueError, match="unknown campaign"):
        Outbox(ops_store).enqueue([message(campaign="spam")])
    assert Outbox(ops_store).status_counts() == {}


def test_record_skips_never_overwrites_a_message(ops_store):
    box = Outbox(ops_store)
    queued = message()
    box.enqueue([queued])
    skip_queued = Skip("c1", "rewards_digest", "2024-03-04", "frequency_cap", T0, None)
    skip_new = Skip("c2", "welcome", "once", "holdout", T0, None)

    assert box.record_skips([skip_queued, skip_new]) == 1
    assert box.record_skips([skip_new]) == 0
    # A skip is a decision too: a later plan cannot turn it into a message.
    assert box.enqueue([message("c2", "welcome")]) == 0

    assert row(ops_store, queued.key).status == "queued"
    skipped = row(ops_store, skip_new.key)
    assert (skipped.status, skipped.reason, skipped.timezone) == ("skipped", "holdout", "UTC")
    assert box.status_counts() == {"queued": 1, "skipped": 1}


def test_other_marketing_sends_counts_only_messages_that_go_out(ops_store):
    box = Outbox(ops_store)
    box.enqueue(
        [
            message("c1", send_at=T0),  # queued: counts
            message("c1", "win_back", send_at=T0 + DAY),  # sent: counts
            message("c1", "welcome", send_at=T0),  # welcome: never counts
            message("c1", "reactivation", send_at=T0 + 2 * DAY),  # cancelled
            message("c1", "followup_3", send_at=T0 - DAY),  # before the range
            message("c2", send_at=T0 + 3 * DAY),  # end is exclusive
            message("c3", send_at=T0 + 2 * DAY),  # uncertain: counts
        ]
    )
    box.record_skips([Skip("c2", "win_back", "x", "holdout", T0, None)])
    set_status(ops_store, "c1:win_back:2024-03-05", "sent")
    set_status(ops_store, "c1:reactivation:2024-03-06", "cancelled")
    set_status(ops_store, "c3:rewards_digest:2024-03-06", "uncertain")

    sends = box.other_marketing_sends(["c1", "c2", "c3", "c4"], T0, T0 + 3 * DAY)

    assert sends == {"c1": [T0, T0 + DAY], "c3": [T0 + 2 * DAY]}
    assert all(value.tzinfo is not None for value in sends["c1"])
    departed = box.other_marketing_sends(
        ["c1"], T0, T0 + 3 * DAY, statuses=("sent",), exclude_keys=["c1:rewards_digest:2024-03-04"]
    )
    assert departed == {"c1": [T0 + DAY]}


def test_the_cap_is_counted_again_as_messages_go_in(ops_store):
    box = Outbox(ops_store)
    policy = ContactPolicy(frequency_cap=2, frequency_cap_days=7)
    box.enqueue([message("c1", "rewards_digest", T0 - 2 * DAY)])
    box.enqueue([message("c1", "welcome", T0 - DAY)])  # exempt, and not counted
    box.record_skips([Skip("c1", "win_back", "x", "holdout", T0 - DAY, "UTC")])  # not counted

    done = box.enqueue_within_cap(
        [
            message("c1", "win_back", T0),
            message("c1", "reactivation", T0 + DAY),
            message("c2", "reactivation", T0 + DAY),
            message("c1", "welcome", T0 + DAY, occurrence="once-more"),
            message("c1", "rewards_digest", T0 - 2 * DAY),  # its key is taken: left alone
        ],
        policy,
        run_id="run-1",
    )

    assert done.queued == 3
    assert done.capped == (f"c1:reactivation:{(T0 + DAY).date()}",)
    capped = row(ops_store, done.capped[0])
    assert (capped.status, capped.reason, capped.run_id) == ("skipped", "frequency_cap", "run-1")
    # A message outside the window is not capped by these.
    later = box.enqueue_within_cap([message("c1", "reactivation", T0 + 9 * DAY)], policy)
    assert (later.queued, later.capped) == (1, ())


def test_concurrent_planners_never_queue_more_than_the_cap(ops_store):
    """Each thread has counted nothing yet (its plan saw room) and queues one message for
    the same customer: under the cap's lock only `frequency_cap` of them go in."""
    policy = ContactPolicy(frequency_cap=2, frequency_cap_days=7)
    messages = [message("c1", "rewards_digest", T0 + i * DAY) for i in range(6)]
    barrier = threading.Barrier(len(messages))

    def queue(one):
        barrier.wait()
        return Outbox(ops_store).enqueue_within_cap([one], policy)

    with ThreadPoolExecutor(len(messages)) as pool:
        results = list(pool.map(queue, messages))

    assert sum(r.queued for r in results) == 2
    assert sum(len(r.capped) for r in results) == 4
    assert Outbox(ops_store).status_counts() == {"queued": 2, "skipped": 4}


def test_uncertain_rows_and_resolve(ops_store):
    box = Outbox(ops_store)
    box.enqueue([message("c1"), message("c2"), message("c3")])
    keys = [f"c{i}:rewards_digest:2024-03-04" for i in (1, 2, 3)]
    for key in keys:
        set_status(ops_store, key, "uncertain")

    rows = box.uncertain_rows()
    assert sorted(r["key"] for r in rows) == keys
    assert set(rows[0]) == {"key", "customer_id", "campaign", "send_at", "updated_at"}
    assert rows[0]["send_at"] == T0

    box.resolve(keys[0], "sent", by="ana")
    box.resolve(keys[1], "failed", by="ana")
    box.resolve(keys[2], "requeue", by="ana")

    assert box.status_counts() == {"sent": 1, "failed": 1, "queued": 1}
    resolved = row(ops_store, keys[0])
    assert resolved.reason == "resolved by ana" and resolved.sent_at is not None
    assert row(ops_store, keys[2]).reason == "requeued by ana"
    with pytest.raises(ValueError, match="no uncertain message"):
        box.resolve(keys[0], "failed", by="ana")
    with pytest.raises(ValueError, match="outcome must be"):
        box.resolve(keys[0], "maybe", by="ana")


def test_sent_events_are_the_sent_messages(ops_store):
    box = Outbox(ops_store)
    assert list(box.sent_events().columns) == [
        "event_id",
        "customer_id",
        "occurred_at",
        "message_id",
        "campaign",
        "experiment",
        "variant",
    ]
    box.enqueue([message("c1"), message("c2")])
    sent_at = dt.datetime(2024, 3, 4, 12, 5)
    with ops_store.begin() as conn:
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.customer_id == "c1")
            .values(status="sent", sent_at=sent_at, message_id="<m1@example.com>")
        )

    events = box.sent_events()

    assert events.to_dict("records") == [
        {
            "event_id": "outbox:c1:rewards_digest:2024-03-04",
            "customer_id": "c1",
            "occurred_at": pd.Timestamp(sent_at),
            "message_id": "<m1@example.com>",
            "campaign": "rewards_digest",
            "experiment": None,
            "variant": None,
        }
    ]


def test_kill_switch(ops_store):
    assert not kill_switch_engaged(ops_store, env_flag=False)
    assert kill_switch_engaged(ops_store, env_flag=True)

    set_kill_switch(ops_store, True, by="ana")
    set_kill_switch(ops_store, True, by="ana")
    assert kill_switch_engaged(ops_store, env_flag=False)

    set_kill_switch(ops_store, False, by="bo")
    assert not kill_switch_engaged(ops_store, env_flag=False)


def test_suppression_is_idempotent_and_keeps_the_first_reason(ops_store):
    assert suppress(ops_store, "c1", "unsubscribe", "api")
    assert not suppress(ops_store, "c1", "complaint", "operator")
    with pytest.raises(ValueError, match="reason must be"):
        suppress(ops_store, "c2", "bored", "api")

    events = pd.DataFrame(
        {
            "customer_id": ["c2", "c2", "c3", "c4", "c1", "c5"],
            "event_type": ["complaint", "bounce", "bounce", "open", "complaint", "click"],
            "occurred_at": pd.to_datetime(
                ["2024-03-02", "2024-03-01", "2024-03-01", "2024-03-01", "2024-03-01", "2024-03-01"]
            ),
        }
    )
    assert sync_from_events(ops_store, events) == 2
    assert sync_from_events(ops_store, events) == 0

    assert suppressed(ops_store, ["c1", "c2", "c3", "c4", "c5", "c6"]) == {"c1", "c2", "c3"}
    with ops_store.begin() as conn:
        query = sa.select(suppressions.c.customer_id, suppressions.c.reason)
        reasons = dict(conn.execute(query).all())
    assert reasons == {"c1": "unsubscribe", "c2": "hard_bounce", "c3": "hard_bounce"}


def test_unsubscribe_tokens():
    day = dt.date(2024, 3, 4)
    token = make_token("c-42", "secret", day)

    assert re.fullmatch(r"[A-Za-z0-9_\-.]+", token)
    assert read_token(token, "secret") == Link("c-42", day)
    assert read_token(token, "other secret") is None
    payload, issued, signature = token.split(".")
    other = make_token("c-43", "secret", day).split(".")[0]
    assert read_token(f"{other}.{issued}.{signature}", "secret") is None
    # The date is signed: moving it forward does not extend the link.
    assert read_token(f"{payload}.{int(issued) + 30}.{signature}", "secret") is None
    for forged in ("not a token", "@@.@@", f"{payload}.²3.{signature}", f"{payload}..{signature}"):
        assert read_token(forged, "secret") is None
    assert read_token(f"{payload}.{'9' * 5000}.{signature}", "secret") is None
    assert (
        read_token(make_token("c-42", "secret"), "secret").issued == dt.datetime.now(dt.UTC).date()
    )
    assert unsubscribe_url("https://r.example/", token) == (
        f"https://r.example/api/unsubscribe?token={token}"
    )


def undated_token(customer_id: str, secret: str) -> str:
    """A link as emails carried them before links had a date."""
    signature = hmac.new(secret.encode(), f"unsubscribe:{customer_id}".encode(), "sha256")
    encode = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()  # noqa: E731
    return f"{encode(customer_id.encode())}.{encode(signature.digest())}"


def test_a_link_works_for_its_days_after_it_was_issued_or_last_sent(ops_store):
    now = dt.datetime(2024, 9, 1, 12, tzinfo=dt.UTC)
    days = 180
    fresh = make_token("c1", "secret", now.date() - dt.timedelta(days=days))
    old = make_token("c1", "secret", now.date() - dt.timedelta(days=days + 1))
    undated = undated_token("c1", "secret")
    assert read_token(undated, "secret") == Link("c1", None)

    def works(token: str) -> bool:
        return honoured(ops_store, token, read_token(token, "secret"), days, now)

    assert works(fresh)
    assert not works(old)
    assert not works(undated)

    # An email that carried them left 100 days ago (it waited long in the queue, or was
    # sent before links had a date): they work for the days after that send.
    sent_at = now - dt.timedelta(days=100)
    for campaign, token in (("followup_3", old), ("followup_7", undated)):
        body = f"Bye: {unsubscribe_url('https://r.example', token)}"
        sent = dataclasses.replace(
            message("c1", campaign, sent_at, occurrence="once"), text_body=body
        )
        Outbox(ops_store).enqueue([sent])
        with ops_store.begin() as conn:
            conn.execute(
                sa.update(outbox)
                .where(outbox.c.idempotency_key == sent.key)
                .values(status="sent", sent_at=to_db(sent_at))
            )
    assert works(old) and works(undated)
    # Another customer's link is not vouched for by c1's email, nor is a link c1's email
    # never carried.
    assert not works(undated_token("c2", "secret"))
    assert not honoured(ops_store, undated, Link("c1", None), 99, now)


@pytest.fixture
def ops_env(monkeypatch, tmp_path):
    """OPS_DB_URL for emailctl, and no kill switch from the environment."""
    url = f"sqlite:///{tmp_path / 'ops.sqlite'}"
    monkeypatch.setenv("OPS_DB_URL", url)
    monkeypatch.delenv("KILL_SWITCH", raising=False)
    with open_ops_store(url) as ops_store:
        yield ops_store


def test_emailctl_commands(ops_env, capsys):
    box = Outbox(ops_env)
    box.enqueue([message("c1"), message("c2")])
    set_status(ops_env, "c1:rewards_digest:2024-03-04", "uncertain")

    assert emailctl.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "kill switch: off" in out
    assert re.search(r"queued\s+1", out) and re.search(r"uncertain\s+1", out)

    assert emailctl.main(["uncertain"]) == 0
    out = capsys.readouterr().out
    assert "c1:rewards_digest:2024-03-04" in out and "@" not in out

    assert emailctl.main(["resolve", "c1:rewards_digest:2024-03-04", "--as", "failed"]) == 0
    assert row(ops_env, "c1:rewards_digest:2024-03-04").status == "failed"
    assert emailctl.main(["resolve", "c2:rewards_digest:2024-03-04", "--as", "sent"]) == 1
    assert "no uncertain message" in capsys.readouterr().err

    assert emailctl.main(["pause", "--by", "ana"]) == 0
    assert kill_switch_engaged(ops_env, env_flag=False)
    assert emailctl.main(["resume"]) == 0
    assert not kill_switch_engaged(ops_env, env_flag=False)


def test_the_email_command_runs_from_the_command_line(ops_env):
    set_kill_switch(ops_env, True, by="ana")

    result = subprocess.run(
        [sys.executable, "-m", "reward_assets", "email", "status"],
        capture_output=True,
        text=True,
        check=True,
    )

    assert result.stdout.startswith("kill switch: on")
