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
# Split decisions packed into an int64 pattern before it is renumbered (`contributions`).
PATTERN_BITS = 30


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


def contributions(booster: xgb.Booster, values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(n, features) exact per-feature contributions (SHAP, no bias column), as
    `booster.predict(..., pred_contribs=True)` gives them, to the bit, at a fraction of
    its cost.

    A tree's contributions to a row depend only on which way the row goes at each of the
    tree's split nodes (not only on its path: TreeSHAP weighs the other branches too), so
    each tree is explained once per distinct pattern of its own splits (a depth-3 tree
    has at most 2**7) instead of once per row. XGBoost adds the trees' float32
    contributions in tree order, which the sum below repeats.
    """
    matrix = np.asarray(values, dtype=np.float64)
    as_float32 = matrix.astype(np.float32)  # what the trees compare
    model = json.loads(bytes(booster.save_raw("json")))["learner"]["gradient_booster"]["model"]
    if len(model["trees"]) != booster.num_boosted_rounds():
        # Slicing the booster takes rounds; a round of several trees would need their
        # patterns combined, which no model here has.
        raise ValueError("contributions are computed tree by tree: one tree per round")
    # Feature by feature: each tree adds to a few contiguous rows of this.
    total = np.zeros((len(names), len(matrix)), dtype=np.float32)
    if not len(matrix):
        return total.T
    # Each tree explains at most a few hundred rows: on one thread, since idle OpenMP
    # workers spin and cost more CPU than they save on a hundred such calls.
    one_thread = booster.copy()
    one_thread.set_param({"nthread": 1})
    for position, tree in enumerate(model["trees"]):
        pattern = np.zeros(len(matrix), dtype=np.int64)
        inner = [node for node, left in enumerate(tree["left_children"]) if left != -1]
        for bit, node in enumerate(inner):
            if bit and not bit % PATTERN_BITS:
                # Renumbered (codes below the row count) so 64 bits hold the next ones.
                pattern = pd.factorize(pattern)[0].astype(np.int64) << PATTERN_BITS
            column = as_float32[:, tree["split_indices"][node]]
            threshold = np.float32(tree["split_conditions"][node])
            # Any comparison with NaN is false: a missing value goes left exactly when
            # the split's default is left, with no mask of missing values.
            left = ~(column >= threshold) if tree["default_left"][node] else column < threshold
            pattern |= left.astype(np.int64) << (bit % PATTERN_BITS)
        # Any row of a pattern stands for all of it (hashed, not sorted: one pass).
        which, patterns = pd.factorize(pattern)
        example = np.empty(len(patterns), dtype=np.int64)
        example[which] = np.arange(len(matrix))
        data = xgb.DMatrix(matrix[example], feature_names=list(names), nthread=1)
        explained = one_thread[position : position + 1].predict(data, pred_contribs=True)
        # A feature the tree does not split on gets exactly +0 from it, which leaves a
        # float32 sum unchanged (a sum of nonzero terms is never -0): only the tree's
        # own features are added.
        for feature in np.unique([tree["split_indices"][node] for node in inner]):
            total[feature] += explained[:, feature][which]
    return total.T


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
    # The day as a time: a date column would not be read through Arrow (`text_frame`).
    selected = [
        "CAST(computed_as_of AS TIMESTAMP) AS computed_as_of" if c == "computed_as_of" else c
        for c in columns
    ]
    # Rows computed afresh every run have no key; leaving them out keeps it an exact int64.
    rows = warehouse.text_frame(
        f"SELECT customer_id, inputs_key, {', '.join(selected)} FROM {table} "
        "WHERE inputs_key IS NOT NULL"
    )
    rows = rows.astype({"inputs_key": np.int64})
    if "computed_as_of" in rows:
        rows["computed_as_of"] = rows["computed_as_of"].astype("datetime64[s]")
    return rows
