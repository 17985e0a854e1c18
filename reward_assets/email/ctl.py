"""Operator commands for email delivery, against the operational store of OPS_DB_URL.

    reward-assets email status              counts per status, kill switch
    reward-assets email uncertain           rows waiting for a verdict
    reward-assets email resolve KEY --as sent|failed|requeue
    reward-assets email pause | resume      the kill switch
    reward-assets email explain KEY         what the message was made from (lineage)

Prints keys and counts only, never addresses (explain masks the one it shows). Check the
mail server's log before resolving an uncertain row: `requeue` sends it again.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence

from reward_assets.email.lineage import email_lineage, explain_lines
from reward_assets.email.outbox import (
    RESOLUTIONS,
    Outbox,
    kill_switch_engaged,
    set_kill_switch,
)
from reward_assets.ml.registry import ModelRegistry
from reward_assets.ops.store import OpsStore, open_ops_store
from reward_assets.settings import Settings


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reward-assets email", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="messages per status and the kill switch")
    commands.add_parser("uncertain", help="messages that may or may not have been sent")
    resolve = commands.add_parser("resolve", help="settle an uncertain message")
    resolve.add_argument("key", help="idempotency key, as `uncertain` prints it")
    resolve.add_argument("--as", dest="outcome", required=True, choices=RESOLUTIONS)
    commands.add_parser("pause", help="engage the kill switch: nothing is sent")
    commands.add_parser("resume", help="release the kill switch")
    explain = commands.add_parser("explain", help="what a message was made from")
    explain.add_argument("key", help="idempotency key, e.g. C000123:rewards_digest:2023-08-27")
    for command in ("resolve", "pause", "resume"):
        commands.choices[command].add_argument(
            "--by", default=_operator(), help="who acts (default: the OS user)"
        )
    return parser


def _status(store: OpsStore, env_flag: bool) -> None:
    engaged = kill_switch_engaged(store, env_flag)
    source = " (KILL_SWITCH setting)" if env_flag else ""
    print(f"kill switch: {'on' if engaged else 'off'}{source}")
    counts = Outbox(store).status_counts()
    for status in sorted(counts):
        print(f"{status:<10} {counts[status]:>8}")


def _uncertain(store: OpsStore) -> None:
    rows = Outbox(store).uncertain_rows()
    print(f"{len(rows)} uncertain message(s)")
    for row in rows:
        print(
            f"{row['key']}  campaign={row['campaign']}  send_at={row['send_at']:%Y-%m-%d %H:%M}Z"
            f"  since={row['updated_at']:%Y-%m-%d %H:%M}Z"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    with open_ops_store(settings.resolved_ops_db_url()) as store:
        if args.command == "status":
            _status(store, settings.kill_switch)
        elif args.command == "uncertain":
            _uncertain(store)
        elif args.command == "explain":
            registry = ModelRegistry(store, settings.resolved_models_dir())
            item = email_lineage(store, registry, args.key)
            if item is None:
                print(f"reward-assets email: no message with key {args.key}", file=sys.stderr)
                return 1
            print("\n".join(explain_lines(item)))
        elif args.command == "resolve":
            try:
                Outbox(store).resolve(args.key, args.outcome, args.by)
            except ValueError as error:
                print(f"reward-assets email: {error}", file=sys.stderr)
                return 1
            print(f"{args.key}: {args.outcome}")
        else:
            set_kill_switch(store, args.command == "pause", args.by)
            print(f"kill switch: {'on' if args.command == 'pause' else 'off'}")
            if args.command == "resume" and settings.kill_switch:
                print("the KILL_SWITCH setting is still true: nothing is sent until it is unset")
    return 0
