"""Onboarding end to end: the sensor, the onboarding job and delivery to a real SMTP server.

Sign-ups land over several ticks; deliveries crash right after claiming and right after
the server's 250; the sensor is replayed from old cursors. The SMTP server on loopback
must still receive exactly one welcome per eligible customer.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import dagster as dg
import pytest
import sqlalchemy as sa

from reward_assets.contact.holdout import is_holdout
from reward_assets.definitions import defs
from reward_assets.defs.engagement.engagement_messages import no_uncertain_emails
from reward_assets.defs.resources import OpsStoreResource, SettingsResource
from reward_assets.email.delivery import DeliveryConfig, DeliveryHooks, deliver_due
from reward_assets.email.mailer import mailer_from_settings
from reward_assets.email.outbox import set_kill_switch
from reward_assets.email.suppression import suppress
from reward_assets.ingest.signups import batch_run_key
from reward_assets.ops.store import followups, open_ops_store, outbox
from reward_assets.settings import Settings
from reward_assets_tests.landing_builders import customer, write_basic_landing, write_rows
from reward_assets_tests.smtp_server import SmtpServer

AS_OF = "2023-03-03"
TICKS = 4
PER_TICK = 250


class Crash(BaseException):
    """The delivering process dies here: nothing after this line of it runs."""


def signup(index: int) -> dict:
    customer_id = f"new{index:04d}"
    day = "2023-03-02" if index % 2 else "2023-03-03"
    return customer(
        customer_id,
        signup_at=f"{day}T{index % 24:02d}:15:00Z",
        timezone=("Europe/London", "America/Los_Angeles", "Asia/Tokyo")[index % 3],
        marketing_opt_in="false" if index % 10 == 0 else "true",
        tier="bronze",
        points_balance="600",
    )


@pytest.fixture
def world(tmp_path, monkeypatch, run_pipeline):
    data = tmp_path / "data"
    write_basic_landing(data)
    run_pipeline(data, f"duckdb:///{tmp_path / 'warehouse.duckdb'}", "2023-03-01", AS_OF, AS_OF)
    server = SmtpServer()
    server.start()
    settings = {
        "SMTP_HOST": server.host,
        "SMTP_PORT": str(server.port),
        "SMTP_STARTTLS": "false",
        # Mail goes over SMTP, so the public default secret would be refused.
        "UNSUBSCRIBE_SECRET": "onboarding-test-secret",
        # Quiet hours are tested on their own; here they would make the outcome depend
        # on the hour the test runs.
        "QUIET_HOURS_START": "0",
        "QUIET_HOURS_END": "0",
        "ONBOARDING_BATCH_SIZE": "100",
        "SEND_LEASE_SECONDS": "60",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    yield data, server
    server.stop()


def tick(instance, cursor: str | None):
    location = defs()
    sensor = location.resolve_sensor_def("new_customer_sensor")
    # Called directly, a sensor gets only the resources its context is given (the daemon
    # passes the code location's): the location's own.
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=location, resources=location.resources
    ) as context:
        result = sensor(context)
    return result


def run_requests(result) -> list[dg.RunRequest]:
    return list(getattr(result, "run_requests", None) or [])


def batch_of(request: dg.RunRequest) -> list[str]:
    return request.run_config["ops"]["welcome_new_customers"]["config"]["customer_ids"]


def onboard(instance, request: dg.RunRequest, op_selection=None) -> None:
    job = defs().resolve_job_def("onboarding_job")
    outcome = job.execute_in_process(
        run_config=request.run_config,
        instance=instance,
        tags=request.tags,
        op_selection=op_selection,
    )
    assert outcome.success


def deliver(now: dt.datetime | None = None, hooks: DeliveryHooks | None = None, worker="w"):
    settings = Settings()
    with open_ops_store(settings.resolved_ops_db_url()) as store:
        return deliver_due(
            store,
            mailer_from_settings(settings),
            DeliveryConfig.from_settings(settings),
            now=(lambda: now) if now else None,
            worker_id=worker,
            hooks=hooks,
        )


def crash_once(at_key: list[str]):
    def hook(key: str) -> None:
        if not at_key:
            at_key.append(key)
            raise Crash(key)

    return hook


def rows(status: str | None = None) -> list[sa.Row]:
    with open_ops_store(Settings().resolved_ops_db_url()) as store, store.begin() as conn:
        query = sa.select(outbox)
        if status:
            query = query.where(outbox.c.status == status)
        return list(conn.execute(query))


def test_signups_over_ticks_with_crashes_and_replays_get_exactly_one_welcome(world):
    data, server = world
    suppressed = {f"new{i:04d}" for i in range(1, TICKS * PER_TICK + 1) if i % 25 == 0}
    with open_ops_store(Settings().resolved_ops_db_url()) as store:
        for customer_id in suppressed:
            suppress(store, customer_id, "unsubscribe", "api")

    cursors: list[str | None] = [None]
    launched: set[str] = set()
    crashed_after_claim: list[str] = []
    crashed_after_smtp: list[str] = []
    with dg.DagsterInstance.ephemeral() as instance:
        for number in range(TICKS):
            first = number * PER_TICK + 1
            batch = [signup(i) for i in range(first, first + PER_TICK)]
            write_rows(data, "customers", f"signups-{number}.csv", batch)
            result = tick(instance, cursors[-1])
            requests = run_requests(result)
            assert requests, result
            cursors.append(result.cursor)
            for request in requests:
                if request.run_key in launched:  # the daemon starts a run key once
                    continue
                launched.add(request.run_key)
                if number == 1 and not crashed_after_claim:  # dies after its first claim
                    onboard(instance, request, op_selection=["welcome_new_customers"])
                    with pytest.raises(Crash):
                        deliver(hooks=DeliveryHooks(after_claim=crash_once(crashed_after_claim)))
                elif number == 2 and not crashed_after_smtp:  # dies after the server's 250
                    onboard(instance, request, op_selection=["welcome_new_customers"])
                    with pytest.raises(Crash):
                        deliver(hooks=DeliveryHooks(after_smtp=crash_once(crashed_after_smtp)))
                else:
                    onboard(instance, request)

        # Nothing new landed: the sensor says so.
        assert isinstance(tick(instance, cursors[-1]), dg.SkipReason)
        # Replays from old cursors: whatever they request changes nothing.
        for old in cursors[:-1]:
            for request in run_requests(tick(instance, old)):
                onboard(instance, request)

    # Later, past every lease: the crashed claim is taken over, the crashed send is uncertain.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    deliver(now=later, worker="after-restart")
    deliver(now=later + dt.timedelta(minutes=5), worker="again")

    new_ids = [f"new{i:04d}" for i in range(1, TICKS * PER_TICK + 1)]
    eligible = {
        c
        for i, c in enumerate(new_ids, start=1)
        if i % 10 != 0 and c not in suppressed and not is_holdout(c, 0.05)
    }
    received = Counter(str(m["To"]).split("@")[0] for m in server.messages)
    assert len(eligible) > 700
    assert set(received) == eligible
    assert max(received.values()) == 1

    (after_smtp,) = crashed_after_smtp
    (after_claim,) = crashed_after_claim
    uncertain = [r.idempotency_key for r in rows("uncertain")]
    assert uncertain == [after_smtp]
    check = no_uncertain_emails(ops=OpsStoreResource(settings=SettingsResource()))
    assert not check.passed
    assert check.metadata["keys"].value == after_smtp
    assert after_claim in {r.idempotency_key for r in rows("sent")}
    assert len(rows("sent")) == len(eligible) - 1

    skipped = Counter(r.reason for r in rows("skipped"))
    assert skipped["no_consent"] == TICKS * PER_TICK // 10
    assert skipped["suppressed"] == len({c for c in suppressed if int(c[3:]) % 10})
    assert skipped["holdout"] == sum(
        1 for i, c in enumerate(new_ids, 1) if i % 10 and c not in suppressed and is_holdout(c)
    )
    # Customers who signed up long before AS_OF are not new: no decision at all.
    assert not [r for r in rows() if r.customer_id.startswith("cust")]

    with open_ops_store(Settings().resolved_ops_db_url()) as store, store.begin() as conn:
        scheduled = Counter(r.campaign for r in conn.execute(sa.select(followups)))
    assert scheduled == {"followup_3": len(eligible), "followup_7": len(eligible)}


def test_sensor_batches_run_keys_and_cursor(world):
    data, _ = world
    with dg.DagsterInstance.ephemeral() as instance:
        # First start on a history: nobody signed up within two days of AS_OF.
        first = tick(instance, None)
        assert run_requests(first) == []
        assert "none signed up within 2 days" in first.skip_reason.skip_message
        assert isinstance(tick(instance, first.cursor), dg.SkipReason)

        write_rows(data, "customers", "signups-a.csv", [signup(i) for i in range(1, 251)])
        second = tick(instance, first.cursor)
        requests = run_requests(second)
        ids = [batch_of(r) for r in requests]
        assert [len(b) for b in ids] == [100, 100, 50]
        assert sorted(c for b in ids for c in b) == [f"new{i:04d}" for i in range(1, 251)]
        assert [r.run_key for r in requests] == [batch_run_key(b) for b in ids]
        # The same tick evaluated again asks for the very same runs.
        assert [r.run_key for r in run_requests(tick(instance, first.cursor))] == [
            r.run_key for r in requests
        ]
        assert isinstance(tick(instance, second.cursor), dg.SkipReason)

        # A welcome decided already is not requested again, even from an old cursor.
        onboard(instance, requests[0], op_selection=["welcome_new_customers"])
        replay = run_requests(tick(instance, first.cursor))
        assert sum(len(batch_of(r)) for r in replay) == 150


def test_a_future_dated_sign_up_holds_back_no_later_welcome(world, monkeypatch):
    data, _ = world
    # The data's 'today' comes from the sign-ups themselves, as on a first deployment.
    monkeypatch.delenv("AS_OF", raising=False)
    with dg.DagsterInstance.ephemeral() as instance:
        first = tick(instance, None)
        write_rows(
            data, "customers", "bad.csv", [customer("future1", signup_at="2032-08-27T10:00:00Z")]
        )
        bad = tick(instance, first.cursor)
        assert run_requests(bad) == []
        assert "within 2 days of 2023-01-01" in bad.skip_reason.skip_message

        write_rows(data, "customers", "signups-a.csv", [signup(1)])
        (request,) = run_requests(tick(instance, bad.cursor))
        assert batch_of(request) == ["new0001"]

        # A cursor an earlier version wrote, with the future date taken for 'today'.
        poisoned = json.dumps(
            {"files": json.loads(bad.cursor)["files"], "latest_signup": "2032-08-27"}
        )
        (request,) = run_requests(tick(instance, poisoned))
        assert batch_of(request) == ["new0001"]


def test_removing_a_customer_file_moves_the_data_today_back(world, monkeypatch):
    data, _ = world
    monkeypatch.delenv("AS_OF", raising=False)
    with dg.DagsterInstance.ephemeral() as instance:
        late = write_rows(
            data, "customers", "late.csv", [customer("late1", signup_at="2026-01-01T00:00:00Z")]
        )
        first = tick(instance, None)
        late.unlink()
        write_rows(data, "customers", "signups-a.csv", [signup(1)])
        (request,) = run_requests(tick(instance, first.cursor))
        assert batch_of(request) == ["new0001"]


def test_kill_switch_holds_welcomes_until_resumed(world):
    data, server = world
    write_rows(data, "customers", "signups-a.csv", [signup(i) for i in range(1, 21)])
    with open_ops_store(Settings().resolved_ops_db_url()) as store:
        set_kill_switch(store, True, "test")
    with dg.DagsterInstance.ephemeral() as instance:
        for request in run_requests(tick(instance, None)):
            onboard(instance, request)
    assert server.messages == []
    assert rows("queued")
    with open_ops_store(Settings().resolved_ops_db_url()) as store:
        set_kill_switch(store, False, "test")
    deliver()
    assert len(server.messages) == len(rows("sent")) > 0
    assert rows("queued") == []


def test_customers_of_a_failed_run_are_requested_again_under_a_new_key(world, monkeypatch):
    data, _ = world
    monkeypatch.setenv("ONBOARDING_RETRY_MINUTES", "0")
    write_rows(data, "customers", "signups-a.csv", [signup(i) for i in range(1, 151)])
    with dg.DagsterInstance.ephemeral() as instance:
        first = tick(instance, None)
        done, failed = run_requests(first)  # the second run died before deciding anything
        onboard(instance, done, op_selection=["welcome_new_customers"])

        retry = tick(instance, first.cursor)
        (again,) = run_requests(retry)
        assert batch_of(again) == batch_of(failed)
        assert again.run_key == batch_run_key(batch_of(failed), attempt=2) != failed.run_key
        onboard(instance, again, op_selection=["welcome_new_customers"])

        assert isinstance(tick(instance, retry.cursor), dg.SkipReason)
    assert len(rows()) == 150
