"""Customer features as of any date, from the `customer_features` SQL model.

The model trains on several past as-of dates; the SQL is the single definition of each
feature, so training and scoring can never compute them differently.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from reward_assets.ingest.clock import as_of_params
from reward_assets.warehouse.sql_models import SQL_DIR, load_models, render
from reward_assets.warehouse.store import Warehouse


def features_as_of(warehouse: Warehouse, as_of: dt.date) -> pd.DataFrame:
    """One row per customer signed up by `as_of`, using events before the end of that day."""
    models = load_models(SQL_DIR)
    sql = render(models["customer_features"], models)
    return warehouse.frame(sql, as_of_params(as_of))
