"""Which candidate inputs the churn model uses, chosen by validation.

Forward selection over the groups of `FEATURE_GROUPS`: fitted on the earlier training
as-of dates and measured on the latest one, a group joins when it raises ROC-AUC there by
more than `MIN_GAIN`. The validation as-of date, on which the model is then judged
against its baseline, takes no part in the choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from reward_assets.churn.features import (
    DERIVED,
    FEATURE_GROUPS,
    HISTORY_DEPENDENT,
    LONGEST_WINDOW_DAYS,
    available,
    model_matrix,
)

MIN_GAIN = 0.0
MAX_SELECTION_ROWS = 200_000


def select_features(
    train: pd.DataFrame, params: Mapping[str, Any], seed: int = 42
) -> tuple[list[str], dict[str, Any]]:
    """(chosen inputs, how they were chosen) from labelled training rows of several dates."""
    dates = sorted(train["as_of"].unique())
    # A window longer than the history at some training date is missing there: the trees
    # would learn nothing of it, yet meet it filled in at scoring time.
    history = train["history_days"].min() if "history_days" in train else 0
    names = available(train)
    read = [name for name in names if name not in DERIVED]
    present = train[read].notna().groupby(train["as_of"]).any().all()
    candidates = [
        name
        for name in names
        if (name in DERIVED or present[name])
        and (name not in HISTORY_DEPENDENT or history >= LONGEST_WINDOW_DAYS)
    ]
    groups = [[name for name in group if name in candidates] for group in FEATURE_GROUPS.values()]
    named = [(label, group) for label, group in zip(FEATURE_GROUPS, groups, strict=True) if group]
    inner = np.flatnonzero((train["as_of"] < dates[-1]).to_numpy())
    inner_valid = train[train["as_of"] == dates[-1]]
    if len(dates) < 2 or inner_valid["churned"].nunique() < 2 or not inner.size:
        return candidates, {"method": "every available input (one training date to learn on)"}
    if inner.size > MAX_SELECTION_ROWS:
        inner = inner[
            np.sort(np.random.default_rng(seed).choice(inner.size, MAX_SELECTION_ROWS, False))
        ]
    inner_train = train.iloc[inner]
    # Each fit reads a subset of the same columns: built once, as floats.
    x_train, x_valid = model_matrix(inner_train, candidates), model_matrix(inner_valid, candidates)
    y_train = inner_train["churned"].to_numpy(dtype=np.int8)

    def score(names: list[str]) -> float:
        matrix = xgb.DMatrix(x_train[names], label=y_train, feature_names=names)
        booster = xgb.train(
            {k: v for k, v in params.items() if k != "num_boost_round"},
            matrix,
            num_boost_round=params["num_boost_round"],
        )
        valid = xgb.DMatrix(x_valid[names], feature_names=names)
        return float(roc_auc_score(inner_valid["churned"], booster.predict(valid)))

    (first, chosen), *others = named
    chosen = list(chosen)
    best = score(chosen)
    steps = [{"group": first, "auc": best, "kept": True}]
    for label, group in others:
        auc = score(chosen + group)
        kept = auc > best + MIN_GAIN
        steps.append({"group": label, "auc": auc, "kept": kept})
        if kept:
            chosen, best = chosen + group, auc
    measured_on = pd.Timestamp(dates[-1]).date()
    return chosen, {
        "method": f"forward selection over input groups, measured on {measured_on}",
        "steps": steps,
    }
