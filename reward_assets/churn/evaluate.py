"""Offline evaluation of churn on any landing folder of the input contract.

    python -m reward_assets.evaluate churn --data DIR [--horizon 60] [--json]

The folder is loaded into a scratch DuckDB warehouse (`ingest/offline.py`) and judged by
the protocol of `churn_model`: training rows at past as-of dates, validation rows at the
latest date the data can label. Three models, fitted on the same rows:

- `churn_model`: the product's model (XGBoost on the inputs chosen on the training dates);
- `recency`: the baseline, a logistic regression on days since the last purchase alone
  (it ranks as recency does, and gives probabilities for the Brier score);
- `logistic_regression`: on every candidate input the data carries (missing values
  imputed by the median, with indicators; standardised).

Each gets ROC-AUC, PR-AUC and Brier on the validation date, and its ROC-AUC lift over the
recency baseline with a paired-bootstrap 95% interval; `approved` says whether the
product's gate would let the model serve.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from reward_assets.churn.features import available, model_matrix
from reward_assets.churn.model import churn_quality, fit_churn, labelled_frames
from reward_assets.ingest.offline import load_folder
from reward_assets.ml.lift import auc_lift
from reward_assets.warehouse.store import open_warehouse


def _logistic(train: pd.DataFrame, validation: pd.DataFrame, names: list[str]) -> np.ndarray:
    model = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(max_iter=2000),
    )
    model.fit(model_matrix(train, names), train["churned"].to_numpy(dtype=int))
    return model.predict_proba(model_matrix(validation, names))[:, 1]


def _scores(target: np.ndarray, probability: np.ndarray, recency: np.ndarray, seed: int) -> dict:
    lift = auc_lift(target, probability, recency, seed=seed)
    return {
        "roc_auc": lift.model_auc,
        "pr_auc": float(average_precision_score(target, probability)),
        "brier": float(brier_score_loss(target, probability)),
        "lift_over_recency": lift.lift,
        "lift_95_interval": [lift.lift_low, lift.lift_high],
    }


def evaluate_churn(
    train: pd.DataFrame, validation: pd.DataFrame, horizon_days: int = 60, seed: int = 42
) -> dict[str, Any]:
    """The three models' validation metrics on labelled rows, as `labelled_frames` gives."""
    # SQL returns rows in no fixed order, and the bootstrap draws its weights by position.
    train = train.sort_values(["as_of", "customer_id"], ignore_index=True)
    validation = validation.sort_values(["as_of", "customer_id"], ignore_index=True)
    target = validation["churned"].to_numpy(dtype=bool)
    if target.all() or not target.any():
        raise ValueError("the validation date has one outcome only: churn cannot be evaluated")
    recency = validation["recency_days"].to_numpy(dtype=float)
    product = fit_churn(train, validation, horizon_days=horizon_days, seed=seed)
    candidates = available(train)
    models = {
        "churn_model": {
            **_scores(
                target,
                product.model.predict(model_matrix(validation, product.features)),
                recency,
                seed,
            ),
            "approved": not churn_quality(product.metrics),
            "features": product.features,
        },
        "recency": {
            **_scores(target, _logistic(train, validation, ["recency_days"]), recency, seed),
            "lift_95_interval": None,  # the baseline itself
        },
        "logistic_regression": {
            **_scores(target, _logistic(train, validation, candidates), recency, seed),
            "features": candidates,
        },
    }
    return {
        "horizon_days": horizon_days,
        "train_as_of_dates": product.metrics["train_as_of_dates"],
        "validation_as_of": product.metrics["validation_as_of"],
        "train_rows": len(train),
        "validation_rows": len(validation),
        "validation_churn_rate": float(target.mean()),
        "models": models,
    }


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Churn within {report['horizon_days']} days: trained at "
        f"{', '.join(report['train_as_of_dates'])} ({report['train_rows']:,} rows), validated "
        f"at {report['validation_as_of']} ({report['validation_rows']:,} rows, churn rate "
        f"{report['validation_churn_rate']:.3f})",
        "",
        "| model | ROC-AUC | PR-AUC | Brier | lift over recency | 95% interval |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in report["models"].items():
        interval = m["lift_95_interval"]
        shown = f"[{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else "(baseline)"
        lines.append(
            f"| {name} | {m['roc_auc']:.4f} | {m['pr_auc']:.4f} | {m['brier']:.4f} | "
            f"{m['lift_over_recency']:+.4f} | {shown} |"
        )
    product = report["models"]["churn_model"]
    lines += [
        "",
        f"churn_model {'approved' if product['approved'] else 'rejected'} by its gate; "
        f"inputs: {', '.join(product['features'])}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reward-assets evaluate churn",
        description="Offline evaluation of the churn model on a landing folder.",
    )
    parser.add_argument("--data", type=Path, required=True, help="landing folder (DATA_DIR)")
    parser.add_argument("--horizon", type=int, default=60, help="churn horizon in days")
    parser.add_argument("--as-of", type=dt.date.fromisoformat, help="data end (default: latest)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    if args.horizon < 1:
        parser.error("--horizon must be at least 1")
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="churn-eval-") as scratch,
        open_warehouse(f"duckdb:///{Path(scratch) / 'warehouse.duckdb'}") as warehouse,
    ):
        try:
            print(f"loading {args.data}", file=sys.stderr, flush=True)
            as_of = load_folder(warehouse, args.data, args.as_of)
            train, validation, _ = labelled_frames(warehouse, as_of, args.horizon)
            report = evaluate_churn(train, validation, args.horizon, args.seed)
        except ValueError as error:  # a ContractError is one too
            print(f"error: {error}", file=sys.stderr)
            return 2
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2) + "\n" if args.json else to_markdown(report), end="")
    return 0
