"""Delivery benchmark: emails per second through `deliver_due`, and what each costs the
operational store.

    python scripts/bench_delivery.py [--emails 1000] [--smtp]

Queues `--emails` template-sized messages in a fresh SQLite operational store and delivers
them in one run, to `.eml` files (as the benchmarks and `make run` do) or, with `--smtp`,
to an aiosmtpd server on loopback (the tests' server, so the dev dependencies are needed).
Prints emails per second, CPU milliseconds per email (the server thread's included with
`--smtp`) and the SQL statements, writes and transactions per email, counted with
SQLAlchemy's events: the figures that do not depend on how loaded the machine is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reward_assets.contact.rules import ContactPolicy  # noqa: E402
from reward_assets.email.delivery import DeliveryConfig, deliver_due  # noqa: E402
from reward_assets.email.mailer import EmlMailer, SmtpMailer  # noqa: E402
from reward_assets.email.outbox import Message, Outbox  # noqa: E402
from reward_assets.ops.store import open_ops_store  # noqa: E402

T0 = dt.datetime(2024, 3, 4, 12, tzinfo=dt.UTC)
CONFIG = DeliveryConfig(
    policy=ContactPolicy(holdout_share=0.0),
    from_address="Rewards <rewards@rewards.example>",
    public_base_url="https://rewards.example",
    unsubscribe_secret="bench-secret",
)


def messages(count: int) -> list[Message]:
    text = "Hello\n" + "A reward picked for you, and why.\n" * 40
    html = "<html><body>" + "<p>A reward picked for you, and why.</p>" * 40 + "</body></html>"
    return [
        Message(
            customer_id=f"C{i:08d}",
            campaign="rewards_digest",
            occurrence=T0.date().isoformat(),
            send_at=T0,
            timezone="Europe/Berlin",
            to_address=f"c{i}@example.com",
            subject=f"Your rewards this week, customer {i}",
            preheader="Picked for you",
            text_body=text,
            html_body=html,
            reward_ids=("R1", "R2", "R3"),
            content_source="template",
        )
        for i in range(count)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=1_000)
    parser.add_argument("--smtp", action="store_true", help="to aiosmtpd on loopback")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        open_ops_store(f"sqlite:///{tmp}/ops.sqlite") as store,
    ):
        Outbox(store).enqueue(messages(args.emails))
        server = None
        if args.smtp:
            from reward_assets_tests.smtp_server import SmtpServer

            server = SmtpServer()
            server.start()
            mailer = SmtpMailer(server.host, server.port, False, "", "", timeout=30)
        else:
            mailer = EmlMailer(Path(tmp) / "eml")
        counts = {"statements": 0, "writes": 0, "transactions": 0}

        @sa.event.listens_for(store.engine, "before_cursor_execute")
        def _statement(conn, cursor, statement, *_):
            counts["statements"] += 1
            counts["writes"] += statement.lstrip().upper().startswith(("UPDATE", "INSERT"))

        @sa.event.listens_for(store.engine, "commit")
        def _commit(conn):
            counts["transactions"] += 1

        load = os.getloadavg()[0]
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        report = deliver_due(store, mailer, CONFIG, now=lambda: T0, worker_id="bench")
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        if server:
            server.stop()
    if report.sent != args.emails:
        raise SystemExit(f"sent {report.sent} of {args.emails}: {report}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    per_email = ", ".join(f"{v / args.emails:.2f} {k}" for k, v in counts.items())
    print(
        f"{'smtp' if args.smtp else 'eml'}: {args.emails} emails, {args.emails / wall:.0f}/s, "
        f"CPU {1000 * cpu / args.emails:.2f} ms per email; per email {per_email}; "
        f"load average {load:.2f} before"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
