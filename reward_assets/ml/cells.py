"""Which feature rows an XGBoost model cannot tell apart.

A tree sends a row left when `value < threshold` (a missing value takes the split's
default branch), so two rows whose every feature lies between the same two split points
of that feature (or is missing in both) reach the same leaf of every tree: their
predictions, and their exact per-feature contributions, are equal to the bit. Send times
(`engagement/send_time.py`) and churn scores (`churn/model.py`) use this to score each
such cell once and to know, from the cells alone, which customers' predictions cannot
have changed since the last computation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xgboost as xgb

from reward_assets.warehouse.store import Warehouse

MISSING = -1


def split_points(boosters: Sequence[xgb.Booster], features: int) -> list[np.ndarray]:
    """Per feature, the sorted float32 thresholds any tree of `boosters` splits it at."""
    points: list[set[float]] = [set() for _ in range(features)]
    for booster in boosters:
        model = json.loads(bytes(booster.save_raw("json")))
        for tree in model["learner"]["gradient_booster"]["model"]["trees"]:
            for feature, threshold, left in zip(
                tree["split_indices"], tree["split_conditions"], tree["left_children"], strict=True
            ):
                if left != -1:  # leaves carry their value in split_conditions
                    points[feature].add(threshold)
    return [np.array(sorted(values), dtype=np.float32) for values in points]


def cells(features: np.ndarray, points: Sequence[np.ndarray]) -> np.ndarray:
    """Each value's interval among its feature's split points (MISSING when NaN)."""
    out = np.empty(features.shape, dtype=np.int16)
    for column, thresholds in enumerate(points):
        values = features[:, column]
        # side='right' counts the thresholds <= value: the splits that send it right.
        interval = np.searchsorted(thresholds, values, side="right")
        out[:, column] = np.where(np.isnan(values), MISSING, interval)
    return out


def distinct(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each row's group among equal rows, the first row of each group)."""
    groups = pd.DataFrame(rows).groupby(list(range(rows.shape[1])), sort=False).ngroup()
    codes = groups.to_numpy()
    return codes, np.unique(codes, return_index=True)[1]


def keys(rows: np.ndarray, salt: int) -> np.ndarray:
    """A 64-bit key per row of small integers: equal rows get equal keys, and different
    ones differ but with a chance of about 2**-60, the salt drawing the multipliers."""
    multipliers = np.random.default_rng(salt).integers(0, 2**64, rows.shape[1], np.uint64)
    multipliers |= np.uint64(1)  # odd, so no multiplier loses a bit of a difference
    values = rows.astype(np.int64).astype(np.uint64) + np.uint64(2)  # MISSING is not 0 * m
    return (values * multipliers).sum(axis=1, dtype=np.uint64).view(np.int64)


def served_keyed(warehouse: Warehouse, table: str, columns: Sequence[str]) -> pd.DataFrame | None:
    """customer_id, inputs_key and `columns` of the served rows of `table` that have a
    key (None before any)."""
    if not warehouse.table_exists(table):
        return None
    if "inputs_key" not in {name for name, _ in warehouse.columns(table)}:
        return None  # written before keys existed: nothing can be carried
    # Rows computed afresh every run have no key; leaving them out keeps it an exact int64.
    rows = warehouse.frame(
        f"SELECT customer_id, inputs_key, {', '.join(columns)} FROM {table} "
        "WHERE inputs_key IS NOT NULL"
    )
    rows = rows.astype({"inputs_key": np.int64})
    if "computed_as_of" in rows:
        rows["computed_as_of"] = rows["computed_as_of"].astype("datetime64[s]")
    return rows
