"""The input contract of DESIGN.md: entities, their columns, types and keys.

Everything that reads landing files, writes raw tables or describes them in the docs
takes the columns from here, so the contract lives in one place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["text", "timestamp", "integer", "decimal", "boolean"]

SQL_TYPES: dict[ColumnType, str] = {
    "text": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "integer": "BIGINT",
    "decimal": "DOUBLE PRECISION",
    "boolean": "BOOLEAN",
}

# A timestamp outside these bounds cannot be a real event of a loyalty programme: it is
# quarantined (`implausible_timestamp`) rather than let one row move the data's "today".
EARLIEST_TIMESTAMP = dt.datetime(1900, 1, 1)
FUTURE_TOLERANCE = dt.timedelta(days=1)
# No single purchase of a loyalty programme comes near this, and the marts sum amounts
# exactly as DECIMAL(18, 4), which holds magnitudes below 1e14: a larger amount is a broken
# row (`out_of_range`), not a reason for the whole mart to fail.
MAX_AMOUNT = 1e12
# A longer value is no field of this contract but a broken file (a lost quote swallowing
# lines, a binary blob): the row is quarantined as `oversized_value`.
MAX_VALUE_LENGTH = 65_536

EVENT_TYPES = ("sent", "delivered", "open", "click", "bounce", "unsubscribe", "complaint")
# Lowest first: a tier's rank is its position, counted from 1.
TIERS = ("bronze", "silver", "gold", "platinum")
TIER_RANKS = {tier: rank for rank, tier in enumerate(TIERS, start=1)}
# What staging assumes for a customer without a tier and a reward without a minimum tier.
LOWEST_TIER = TIERS[0]


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType = "text"
    required: bool = False
    # The smallest value a number may take; below it the row is quarantined (`out_of_range`).
    minimum: int | None = None
    # The largest magnitude a number may take; beyond it the row is quarantined (`out_of_range`).
    magnitude: float | None = None


@dataclass(frozen=True)
class Entity:
    name: str
    key: str
    columns: tuple[Column, ...]
    # The timestamp that places a row in a daily partition; None for snapshot entities.
    event_time: str | None = None
    customer_column: str | None = None

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def partitioned(self) -> bool:
        return self.event_time is not None

    @property
    def table(self) -> str:
        return f"raw.{self.name}"


def sql_types(columns: Iterable[Column]) -> dict[str, str]:
    """The columns as the warehouse creates them: name -> SQL type."""
    return {c.name: SQL_TYPES[c.type] for c in columns}


# Columns every raw table carries besides the contract, for lineage back to the file.
LINEAGE_COLUMNS: tuple[Column, ...] = (
    Column("source_file", "text"),
    Column("source_line", "integer"),
)

CUSTOMERS = Entity(
    name="customers",
    key="customer_id",
    columns=(
        Column("customer_id", required=True),
        Column("email", required=True),
        Column("signup_at", "timestamp", required=True),
        Column("first_name"),
        Column("last_name"),
        Column("country"),
        Column("timezone"),
        Column("tier"),
        Column("points_balance", "integer", minimum=0),
        Column("marketing_opt_in", "boolean"),
        Column("preferred_categories"),
    ),
)
REWARDS = Entity(
    name="rewards",
    key="reward_id",
    columns=(
        Column("reward_id", required=True),
        Column("name", required=True),
        Column("category", required=True),
        Column("points_cost", "integer", required=True, minimum=1),
        Column("description"),
        Column("inventory", "integer", minimum=0),
        Column("min_tier"),
        Column("active", "boolean"),
    ),
)
TRANSACTIONS = Entity(
    name="transactions",
    key="transaction_id",
    event_time="occurred_at",
    customer_column="customer_id",
    columns=(
        Column("transaction_id", required=True),
        Column("customer_id", required=True),
        Column("occurred_at", "timestamp", required=True),
        Column("amount", "decimal", required=True, magnitude=MAX_AMOUNT),
        Column("currency"),
        Column("category"),
        Column("channel"),
        Column("points_earned", "integer"),
    ),
)
REDEMPTIONS = Entity(
    name="redemptions",
    key="redemption_id",
    event_time="redeemed_at",
    customer_column="customer_id",
    columns=(
        Column("redemption_id", required=True),
        Column("customer_id", required=True),
        Column("reward_id", required=True),
        Column("redeemed_at", "timestamp", required=True),
        Column("points_spent", "integer", minimum=0),
    ),
)
ENGAGEMENT_EVENTS = Entity(
    name="engagement_events",
    key="event_id",
    event_time="occurred_at",
    customer_column="customer_id",
    columns=(
        Column("event_id", required=True),
        Column("customer_id", required=True),
        Column("event_type", required=True),
        Column("occurred_at", "timestamp", required=True),
        Column("message_id"),
        Column("campaign"),
        Column("channel"),
    ),
)

ENTITIES: dict[str, Entity] = {
    e.name: e for e in (CUSTOMERS, REWARDS, TRANSACTIONS, REDEMPTIONS, ENGAGEMENT_EVENTS)
}
