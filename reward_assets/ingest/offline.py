"""A landing folder loaded into a warehouse without Dagster, for offline evaluations
(`python -m reward_assets.evaluate churn`): the same loaders and SQL models as the
assets, every day of the data in one window, and no checks or publishing, since nothing
here is served.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from reward_assets.contact.holdout import holdout_threshold
from reward_assets.email.outbox import SENT_EVENT_COLUMNS
from reward_assets.email.webhooks import EVENT_COLUMNS as PROVIDER_EVENT_COLUMNS
from reward_assets.ingest.clock import as_of_params, resolve_as_of
from reward_assets.ingest.contract import ENTITIES, REDEMPTIONS, TIERS
from reward_assets.ingest.load import load_snapshot, load_window
from reward_assets.warehouse.sql_models import SQL_DIR, load_models, materialize
from reward_assets.warehouse.store import Warehouse

# Every event the folder holds falls in this window, whatever its dates.
EVER = (dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1))
GROUPS = ("staging", "warehouse")


def load_folder(warehouse: Warehouse, data_dir: Path, as_of: dt.date | None = None) -> dt.date:
    """Load every entity of `data_dir` and build the staging and warehouse models as of
    `as_of` (default: the latest event); returns that date."""
    warehouse.ensure_schemas()
    start, end = EVER
    for entity in ENTITIES.values():
        if not entity.partitioned:
            load_snapshot(warehouse, entity, Path(data_dir))
            continue
        known = None
        if entity is REDEMPTIONS:
            known = set(warehouse.frame("SELECT reward_id FROM raw.rewards")["reward_id"])
        load_window(warehouse, entity, Path(data_dir), start, end, known, start)
    # No product emails were sent from here and no provider posted events: the union in
    # fct_engagement_events reads none of either.
    for table, columns in (
        ("raw.email_sends", SENT_EVENT_COLUMNS),
        ("raw.provider_events", PROVIDER_EVENT_COLUMNS),
    ):
        empty = pd.DataFrame({name: pd.Series([], dtype=object) for name in columns})
        warehouse.replace_table(table, columns, [empty])
    as_of = resolve_as_of(warehouse, as_of)
    params = {
        **as_of_params(as_of),
        "period_start": start,
        "holdout_threshold": holdout_threshold(0.0),
        "tiers": list(TIERS),
        "partition_start": start,
        "partition_end": end,
    }
    models = load_models(SQL_DIR)
    for model in models.values():
        if model.group in GROUPS:
            materialize(warehouse, model, models, params)
    return as_of
