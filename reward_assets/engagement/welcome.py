"""Welcomes: one email per new customer, decided once, with their first rewards.

`welcome_customers` is the onboarding job's batch: it reads the customers from the landing
files (they may not be in the warehouse yet), decides each welcome not decided before,
matches first rewards (`welcome_offers`, which the API's welcome uses too) and writes and
queues the emails with their follow-ups. Every welcome has the key `welcome_key`, so the
sensor, the job, a retried run and an API request can never welcome a customer twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reward_assets.contact.campaigns import ONCE, WELCOME
from reward_assets.contact.rules import ContactPolicy
from reward_assets.email.outbox import Outbox, message_key
from reward_assets.engagement.decisions import Decision, decide_welcomes
from reward_assets.engagement.messages import Queued, welcome_lineage, write_and_queue
from reward_assets.ingest.clock import resolve_as_of
from reward_assets.ingest.signups import customers_by_id
from reward_assets.ml.registry import ModelRegistry
from reward_assets.ops.store import OpsStore
from reward_assets.recommend.cold_start import first_offers
from reward_assets.recommend.inputs import reward_catalog
from reward_assets.recommend.sets import SetRules
from reward_assets.settings import Settings
from reward_assets.warehouse.store import Warehouse


def welcome_key(customer_id: str) -> str:
    return message_key(customer_id, WELCOME, ONCE)


def welcome_offers(
    store: OpsStore,
    settings: Settings,
    customers: pd.DataFrame,
    rewards: pd.DataFrame,
    as_of: dt.date,
) -> tuple[pd.DataFrame, str | None]:
    """The customers' first rewards from `rewards` (as `reward_catalog` gives them) and
    the taste model version that matched them (None: popularity)."""
    registry = ModelRegistry(store, settings.resolved_models_dir())
    return first_offers(customers, rewards, SetRules.from_settings(settings), as_of, registry)


@dataclass(frozen=True)
class Welcomed:
    requested: int
    missing: int  # not in the landing files, or invalid there
    already_decided: int
    decisions: list[Decision]  # made by this call
    result: Queued
    reward_model: str | None  # None: popularity, no approved taste model


def welcome_customers(
    store: OpsStore,
    open_warehouse: Callable[[], AbstractContextManager[Warehouse]],
    settings: Settings,
    landing_dir: Path,
    customer_ids: Sequence[str],
    *,
    now: dt.datetime,
    run_id: str | None = None,
) -> Welcomed:
    """Decide, write and queue the welcomes of the customers whose welcome is undecided,
    scheduling the follow-ups of each queued one; record why the others get none.

    The warehouse is open only while the reward catalogue is read.
    """
    customers = customers_by_id(landing_dir, customer_ids)
    missing = len(set(customer_ids) - set(customers.customer_id))
    decided = Outbox(store).existing([welcome_key(c) for c in customers.customer_id])
    customers = customers[~customers.customer_id.map(welcome_key).isin(decided)]
    decisions = decide_welcomes(store, customers, ContactPolicy.from_settings(settings), now)
    contact = {d.customer_id for d in decisions if d.reason is None}
    chosen = customers[customers.customer_id.isin(contact)]
    with open_warehouse() as warehouse:
        as_of = resolve_as_of(warehouse, settings.as_of)
        rewards = reward_catalog(warehouse, as_of)
    offers, version = welcome_offers(store, settings, chosen, rewards, as_of)
    lineage = welcome_lineage(chosen.customer_id, as_of, version)
    result = write_and_queue(
        store, decisions, chosen, offers, settings, lineage=lineage, run_id=run_id
    )
    return Welcomed(len(customer_ids), missing, len(decided), decisions, result, version)
