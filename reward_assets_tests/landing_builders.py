"""Small landing folders written by hand, so each test states exactly what it plants."""

from __future__ import annotations

import csv
from pathlib import Path

from reward_assets.ingest.contract import ENTITIES

CUSTOMER = {
    "email": "",
    "signup_at": "2023-01-01T00:00:00Z",
    "first_name": "Pat",
    "last_name": "Lee",
    "country": "us",
    "timezone": "America/New_York",
    "tier": "gold",
    "points_balance": "1000",
    "marketing_opt_in": "true",
    "preferred_categories": "travel",
}


def write_rows(data_dir: Path, entity: str, file_name: str, rows: list[dict]) -> Path:
    """Write `rows` under data_dir/<entity>/<file_name> with the contract's header."""
    path = Path(data_dir) / entity / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ENTITIES[entity].column_names
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def customer(customer_id: str, **overrides) -> dict:
    return {
        **CUSTOMER,
        "customer_id": customer_id,
        "email": f"{customer_id}@example.com",
        **overrides,
    }


def transaction(
    txn_id: str, customer_id: str, occurred_at: str, amount: str = "10.00", **kw
) -> dict:
    return {
        "transaction_id": txn_id,
        "customer_id": customer_id,
        "occurred_at": occurred_at,
        "amount": amount,
        "currency": "USD",
        "category": "travel",
        "channel": "app",
        "points_earned": "10",
        **kw,
    }


def write_basic_landing(data_dir: Path) -> None:
    """Three clean customers, two rewards, a few days of events: every table non-empty."""
    write_rows(data_dir, "customers", "customers.csv", [customer(f"cust00{i}") for i in (1, 2, 3)])
    write_rows(
        data_dir,
        "rewards",
        "rewards.csv",
        [
            {
                "reward_id": "rwd001",
                "name": "Flight",
                "category": "travel",
                "points_cost": "500",
                "inventory": "5",
                "min_tier": "silver",
                "active": "true",
            },
            {
                "reward_id": "rwd002",
                "name": "Coffee",
                "category": "dining",
                "points_cost": "50",
                "inventory": "100",
                "min_tier": "bronze",
                "active": "true",
            },
        ],
    )
    for day in ("2023-03-01", "2023-03-02", "2023-03-03"):
        write_rows(
            data_dir,
            "transactions",
            f"{day}.csv",
            [
                transaction(
                    f"t{day}-{c}", f"cust00{c}", f"{day}T1{c}:00:00Z", amount=f"{c * 10}.50"
                )
                for c in (1, 2, 3)
            ]
            + [
                transaction(
                    f"r{day}", "cust001", f"{day}T20:00:00Z", amount="-5.00", points_earned="-5"
                )
            ],
        )
        write_rows(
            data_dir,
            "redemptions",
            f"{day}.csv",
            [
                {
                    "redemption_id": f"d{day}",
                    "customer_id": "cust002",
                    "reward_id": "rwd002",
                    "redeemed_at": f"{day}T12:00:00Z",
                    "points_spent": "50",
                }
            ],
        )
        write_rows(
            data_dir,
            "engagement_events",
            f"{day}.csv",
            [
                {
                    "event_id": f"e{day}-s",
                    "customer_id": "cust001",
                    "event_type": "sent",
                    "occurred_at": f"{day}T09:00:00Z",
                    "message_id": f"m{day}",
                    "campaign": "spring",
                    "channel": "email",
                },
                {
                    "event_id": f"e{day}-o",
                    "customer_id": "cust001",
                    "event_type": "open",
                    "occurred_at": f"{day}T09:30:00Z",
                    "message_id": f"m{day}",
                    "campaign": "spring",
                    "channel": "email",
                },
            ],
        )
