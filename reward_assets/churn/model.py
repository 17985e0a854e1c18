"""Churn: which active customers will stop buying, and what drives each prediction.

A customer is active at an as-of date when they made a purchase in the `active_days` up to
and including it; an active customer churned when they make no purchase in the
`horizon_days` after it. Customers who never bought, or lapsed long ago, are outside the
question: the first cannot stop buying and the second already have.

The classifier trains on labelled snapshots at several past as-of dates and is validated
on a later one whose label window ends at the data end, so no training label looks past
the validation date. The served model is the validated one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from reward_assets.churn.features import DERIVED, features_sql, model_matrix, sample_cut
from reward_assets.churn.selection import select_features
from reward_assets.ingest.clock import as_of_params
from reward_assets.ml.cells import cells, distinct, keys, served_keyed, split_points
from reward_assets.ml.cells import contributions as tree_contributions
from reward_assets.ml.learning_curve import TRAINING_MAX_ROWS, Curve, learning_curve
from reward_assets.ml.lift import auc_lift
from reward_assets.recommend.inputs import positions
from reward_assets.warehouse.store import Warehouse

SCORES_TABLE = "ml.churn_scores"
# ml.churn_scores, as `ChurnModel.score` fills it (plus as_of and model_version).
SCORE_COLUMNS = {
    "customer_id": "VARCHAR",
    "as_of": "DATE",
    "churn_probability": "DOUBLE PRECISION",
    "risk_band": "VARCHAR",
    "driver_1": "VARCHAR",
    "driver_2": "VARCHAR",
    "driver_3": "VARCHAR",
    # 'model'; 'recency_frequency' for the fallback (churn/fallback.py); 'rule' for
    # customers outside the question (lapsed, never purchased).
    "source": "VARCHAR",
    "model_version": "VARCHAR",
    # The day the probability and drivers were computed (`as_of` is the day the row
    # describes), and the model's view of the inputs then: NULL where recomputed daily.
    "computed_as_of": "DATE",
    "inputs_key": "BIGINT",
}
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "tree_method": "hist",
    "nthread": 2,
    "max_depth": 3,
    "eta": 0.1,
    "min_child_weight": 30,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "lambda": 10.0,
    "num_boost_round": 100,
}
# Training dates' rows are computed for a share of the customers expected to give this
# many times the fit's cap (`labelled_frames`): a sample's size varies by about a thousand
# rows in a million, so the learning curve keeps every size up to the cap.
SAMPLE_MARGIN = 1.05
# Risk bands cut the training scores: the riskiest 10% of them and above are 'high', the
# next 20% 'medium'. Fixed at training, so a customer's band does not depend on who else
# is scored, and more customers turn 'high' when risk rises.
BAND_QUANTILES = (0.7, 0.9)

# The label's population is `is_active`'s, read off the features as scoring reads it;
# churned means no non-refund purchase in the horizon after `as_of`. One statement: the
# engine joins the labels to the features, so no frame of every customer is fetched.
_LABELLED_SQL = """
WITH features AS (
{features}
),
bought_after AS (
    SELECT DISTINCT customer_id
    FROM marts.fct_transactions
    WHERE NOT is_refund
      AND occurred_at >= CAST(:as_of_end AS TIMESTAMP)
      AND occurred_at < CAST(:horizon_end AS TIMESTAMP)
)
SELECT f.*, b.customer_id IS NULL AS churned
FROM features f
LEFT JOIN bought_after b ON b.customer_id = f.customer_id
WHERE f.has_purchased AND f.recency_days < :active_days
"""


def is_active(features: pd.DataFrame, active_days: int = 90) -> pd.Series:
    """The label's population, read off `customer_features` (the same window as the SQL)."""
    return features["has_purchased"].astype(bool) & (features["recency_days"] < active_days)


def plan_dates(
    first_day: dt.date,
    data_end: dt.date,
    horizon_days: int = 60,
    train_dates: int = 3,
    step_days: int = 14,
    min_history_days: int = 28,
) -> tuple[list[dt.date], dt.date]:
    """(training as-of dates, validation as-of date) for data from `first_day` to `data_end`.

    Validation is `data_end - horizon` so its label window ends at the data end; training
    dates start one horizon earlier, so their labels end by the validation date, and step
    back from there. Dates with fewer than `min_history_days` days of data are skipped.
    """
    validation = data_end - dt.timedelta(days=horizon_days)
    candidates = [
        validation - dt.timedelta(days=horizon_days + i * step_days) for i in range(train_dates)
    ]
    training = [d for d in candidates if (d - first_day).days + 1 >= min_history_days]
    if not training:
        raise ValueError(
            f"no training as-of date with {min_history_days} days of history: data covers "
            f"{first_day} to {data_end}, and a {horizon_days}-day horizon needs about "
            f"{2 * horizon_days + min_history_days} days"
        )
    return training, validation


def labelled_snapshot(
    warehouse: Warehouse,
    as_of: dt.date,
    horizon_days: int = 60,
    active_days: int = 90,
    share: float = 1.0,
) -> pd.DataFrame:
    """`customer_features` as of `as_of` for the customers active then (a non-refund
    purchase in the `active_days` days ending with `as_of`, as `is_active` reads it), with
    `churned`: no non-refund purchase in the `horizon_days` days after `as_of`. A `share`
    under 1 computes them for that share of the customers only (`features.SAMPLE`)."""
    params = as_of_params(as_of)
    params["horizon_end"] = params["as_of_end"] + dt.timedelta(days=horizon_days)
    params["active_days"] = active_days
    if share < 1:
        params["sample_cut"] = sample_cut(share)
    labelled = warehouse.frame(
        _LABELLED_SQL.format(features=features_sql(sampled=share < 1)), params
    )
    return labelled.astype({"churned": bool})


def _active_customers(warehouse: Warehouse, as_of: dt.date, active_days: int = 90) -> int:
    """About how many customers `labelled_snapshot` labels at `as_of` (at least as many),
    counted without their features: those with a non-refund purchase in its window."""
    end = as_of_params(as_of)["as_of_end"]
    return int(
        warehouse.scalar(
            "SELECT COUNT(DISTINCT customer_id) FROM marts.fct_transactions "
            "WHERE NOT is_refund AND occurred_at >= :start AND occurred_at < :end",
            {"start": end - dt.timedelta(days=active_days), "end": end},
        )
    )


def day_stamp(as_of: dt.date | None) -> np.datetime64:
    """`computed_as_of` of rows computed as of `as_of` (NaT when undated)."""
    return np.datetime64(as_of, "s") if as_of else np.datetime64("NaT", "s")


def outside_population(inactive: pd.DataFrame) -> pd.DataFrame:
    """Score rows of customers outside the label's population, by rule and without a
    probability: `lapsed` if they ever bought, else `never_purchased`."""
    return pd.DataFrame(
        {
            "customer_id": inactive["customer_id"].to_numpy(),
            "churn_probability": np.nan,
            "risk_band": np.where(
                inactive["has_purchased"].astype(bool), "lapsed", "never_purchased"
            ),
            "source": "rule",
        }
    )


@dataclass
class ChurnModel:
    booster: xgb.Booster
    features: list[str]
    band_thresholds: tuple[float, float]  # (medium, high) probability cut-offs
    horizon_days: int
    active_days: int

    def predict(self, matrix: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(xgb.DMatrix(matrix, feature_names=self.features))

    def score(
        self,
        features: pd.DataFrame,
        previous: pd.DataFrame | None = None,
        as_of: dt.date | None = None,
    ) -> pd.DataFrame:
        """Churn probability, risk band and top three drivers for every customer.

        `features` are `customer_features` rows. Customers outside the label's population
        get no probability and the band `lapsed` (no purchase in `active_days`) or
        `never_purchased`, so every customer has a row. A driver is one of the three
        features raising this customer's log-odds most, as 'name=value' (today's value);
        None when fewer than three features raise it.

        `inputs_key` names the cells (`ml.cells`) of the customer's inputs under this
        model. A customer of `previous` (`served_scores`) with the same key keeps its
        probability and which features drive it, which the trees would give again to the
        bit; the others are scored, `computed_as_of` `as_of`, and counted in
        `attrs["scored"]`.
        """
        active_mask = is_active(features, self.active_days).to_numpy()
        active = features.loc[active_mask]
        values = model_matrix(active, self.features).to_numpy()
        inputs = cells(values.astype(np.float32), self.points)
        key = keys(inputs, self.salt)
        carried, at = np.zeros(len(active), dtype=bool), np.full(len(active), -1)
        if previous is not None and len(previous):
            at = positions(active["customer_id"], previous["customer_id"])
            found = at >= 0
            carried[found] = previous["inputs_key"].to_numpy()[at[found]] == key[found]
        scored = np.flatnonzero(~carried)
        probability = np.empty(len(active), dtype=np.float32)
        order = np.zeros((len(active), 3), dtype=np.int64)
        raised = np.zeros((len(active), 3), dtype=bool)
        computed = np.full(len(active), day_stamp(as_of))
        probability[scored], order[scored], raised[scored] = self._scored(
            values[scored], inputs[scored]
        )
        if carried.any():
            kept = previous.iloc[at[carried]]
            probability[carried] = kept["churn_probability"].to_numpy(dtype=np.float32)
            order[carried], raised[carried] = _driver_positions(kept, self.features)
            computed[carried] = kept["computed_as_of"].to_numpy(dtype="datetime64[s]")
        top = _driver_labels(order, raised, values, np.array(self.features))
        medium, high = self.band_thresholds
        outside = outside_population(features.loc[~active_mask])
        result = pd.DataFrame(
            {
                "customer_id": active["customer_id"].to_numpy(),
                "churn_probability": probability.astype("float64"),
                "risk_band": np.select(
                    [probability >= high, probability >= medium], ["high", "medium"], "low"
                ),
                "driver_1": top[:, 0],
                "driver_2": top[:, 1],
                "driver_3": top[:, 2],
                "source": "model",
                "computed_as_of": computed,
                "inputs_key": pd.array(key, dtype="Int64"),
            }
        )
        outside["computed_as_of"] = day_stamp(as_of)
        outside["inputs_key"] = pd.array([pd.NA] * len(outside), dtype="Int64")
        result = pd.concat([result, outside], ignore_index=True)
        result.attrs["scored"] = int(scored.size)
        return result

    def _scored(
        self, values: np.ndarray, inputs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probability, positions of the three largest contributions, whether each
        raises the log-odds) of rows with `inputs` cells: exact contributions cost most of
        scoring, so each cell is computed once and copied to the rows sharing it."""
        if not len(values):
            return np.empty(0, np.float32), np.empty((0, 3), np.int64), np.empty((0, 3), bool)
        group, first = distinct(inputs)
        data = xgb.DMatrix(values[first], feature_names=self.features)
        probability = self.booster.predict(data)
        contributions = tree_contributions(self.booster, values[first], self.features)
        order = np.argsort(-contributions, axis=1, kind="stable")[:, :3]
        raised = np.take_along_axis(contributions, order, axis=1) > 0
        return probability[group], order[group], raised[group]

    @cached_property
    def points(self) -> list[np.ndarray]:
        return split_points([self.booster], len(self.features))

    @cached_property
    def salt(self) -> int:
        """Keys differ whenever the trees or the inputs they read do."""
        digest = hashlib.sha256(bytes(self.booster.save_raw("json")))
        digest.update(json.dumps(self.features).encode())
        return int.from_bytes(digest.digest()[:8], "little")

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        self.booster.save_model(directory / "booster.json")
        meta = {
            "features": self.features,
            "band_thresholds": list(self.band_thresholds),
            "horizon_days": self.horizon_days,
            "active_days": self.active_days,
        }
        (directory / "churn_model.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> ChurnModel:
        directory = Path(directory)
        meta = json.loads((directory / "churn_model.json").read_text())
        booster = xgb.Booster()
        booster.load_model(directory / "booster.json")
        return cls(
            booster=booster,
            features=meta["features"],
            band_thresholds=tuple(meta["band_thresholds"]),
            horizon_days=meta["horizon_days"],
            active_days=meta["active_days"],
        )


def scoring_features(warehouse: Warehouse, inputs: Sequence[str]) -> pd.DataFrame:
    """The `customer_features` columns scoring reads for `inputs`: who is active, and
    the columns the inputs come from."""
    columns = ["customer_id", "has_purchased", "recency_days"]
    for name in inputs:
        columns += [c for c in DERIVED.get(name, (name,)) if c not in columns]
    return warehouse.frame(f"SELECT {', '.join(columns)} FROM marts.customer_features")


def served_scores(warehouse: Warehouse) -> pd.DataFrame | None:
    """The served rows the model computed, with their inputs key (None before any)."""
    drivers = ["churn_probability", "driver_1", "driver_2", "driver_3", "computed_as_of"]
    return served_keyed(warehouse, SCORES_TABLE, drivers)


def _driver_positions(rows: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(positions among `names`, whether set) of the drivers 'name=value' of `rows`: each
    distinct label is read once (a label repeats across many customers)."""
    index = {name: position for position, name in enumerate(names)}
    order = np.zeros((len(rows), 3), dtype=np.int64)
    raised = np.zeros((len(rows), 3), dtype=bool)
    for slot in range(3):
        codes, labels = pd.factorize(rows[f"driver_{slot + 1}"])  # None: code -1
        # The trailing 0 is what code -1 picks: a position no unset driver shows.
        named = np.array([index[label.partition("=")[0]] for label in labels] + [0])
        raised[:, slot] = codes >= 0
        order[:, slot] = named[codes]
    return order, raised


def _driver_labels(
    order: np.ndarray, raised: np.ndarray, values: np.ndarray, names: np.ndarray
) -> np.ndarray:
    """(n, 3) 'name=value' of the features at `order` where `raised`, else None. Values
    repeat a lot (days, counts), so each distinct name and value is written once (by
    their bits, so -0 stays '-0' as '%g' writes it). Found by hashing, not by sorting:
    at 1,000,000 customers the two sorts took 0.8 s a day, the hashing 0.15 s."""
    if not order.size:
        return np.empty(order.shape, dtype=object)
    chosen = np.round(np.take_along_axis(values, order, axis=1), 2).ravel()
    value, bits = pd.factorize(chosen.view(np.int64))
    known = np.asarray(bits).view(np.float64)
    at, pair = pd.factorize(order.ravel() * known.size + value)
    feature, which = np.divmod(np.asarray(pair), known.size)
    labels = np.array(
        [
            f"{names[f]}={'missing' if np.isnan(known[v]) else f'{known[v]:g}'}"
            for f, v in zip(feature, which, strict=True)
        ],
        dtype=object,
    )
    return np.where(raised, labels[at.reshape(order.shape)], None)


@dataclass
class ChurnTraining:
    model: ChurnModel
    metrics: dict[str, Any]
    feature_importance: dict[str, float]
    features: list[str]
    params: dict[str, Any]
    fingerprint: str
    curve: Curve


def fit_churn(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    *,
    horizon_days: int = 60,
    active_days: int = 90,
    seed: int = 42,
    max_train_rows: int = TRAINING_MAX_ROWS,
    features: list[str] | None = None,
    customer_share: float = 1.0,
    **params: Any,
) -> ChurnTraining:
    """Fit on `train` and measure on `validation`: labelled `customer_features` frames
    (a `churned` column added), as `labelled_snapshot` gives. The inputs are `features`
    when given, else chosen on the training dates (`churn/selection.py`). Above
    `max_train_rows` training rows, the fit is on a sample sized by its learning curve
    (`ml/learning_curve.py`), stratified by as-of date and outcome; `customer_share` is
    the share of the customers `train` holds, for the metrics (`labelled_frames`)."""
    if train.empty or validation["churned"].nunique() < 2:
        raise ValueError("churn needs training rows and both outcomes among validation rows")
    settings = {**DEFAULT_PARAMS, **params, "seed": seed}
    # SQL returns rows in no fixed order, and row order steers the sample and subsampling.
    train = train.sort_values(["as_of", "customer_id"], ignore_index=True)
    validation = validation.sort_values(["as_of", "customer_id"], ignore_index=True)
    if features is None:
        chosen, selection = select_features(train, settings, seed)
    else:
        chosen, selection = list(features), {"method": "given"}
    x_all, y_all = model_matrix(train, chosen), train["churned"].to_numpy(dtype=np.int8)
    x_valid = model_matrix(validation, chosen)
    y_valid = validation["churned"].to_numpy(dtype=np.int8)
    valid_data = xgb.DMatrix(x_valid, feature_names=chosen)

    def fit(rows: np.ndarray) -> tuple[tuple[xgb.Booster, xgb.DMatrix], float]:
        data = xgb.DMatrix(x_all.iloc[rows], label=y_all[rows], feature_names=chosen)
        booster = xgb.train(
            {k: v for k, v in settings.items() if k != "num_boost_round"},
            data,
            num_boost_round=settings["num_boost_round"],
        )
        return (booster, data), float(roc_auc_score(y_valid, booster.predict(valid_data)))

    strata = train.groupby(["as_of", "churned"], sort=True).ngroup().to_numpy()
    curve = learning_curve(strata, max_train_rows, fit, seed)
    booster, train_data = curve.model
    train, x_train, y_train = train.iloc[curve.rows], x_all.iloc[curve.rows], y_all[curve.rows]
    medium, high = np.quantile(booster.predict(train_data), BAND_QUANTILES)
    model = ChurnModel(booster, chosen, (float(medium), float(high)), horizon_days, active_days)
    scores = model.predict(x_valid)
    # Ranking by days since the last purchase: what the model has to beat.
    lift = auc_lift(y_valid, scores, validation["recency_days"].to_numpy(), seed=seed)

    metrics = {
        "roc_auc": lift.model_auc,
        "pr_auc": float(average_precision_score(y_valid, scores)),
        "brier": float(brier_score_loss(y_valid, scores)),
        "baseline_roc_auc": lift.baseline_auc,
        "lift": lift.lift,
        "lift_low": lift.lift_low,
        "lift_high": lift.lift_high,
        "base_rate": float(y_valid.mean()),
        "train_base_rate": float(y_train.mean()),
        "train_rows": len(train),
        "validation_rows": len(validation),
        "learning_curve": curve.metrics("roc_auc"),
        "training_customer_share": customer_share,
        "train_as_of_dates": sorted(_iso(d) for d in train["as_of"].unique()),
        "validation_as_of": _iso(validation["as_of"].iloc[0]),
        "horizon_days": horizon_days,
        "active_days": active_days,
        "feature_selection": selection,
    }
    gains = booster.get_score(importance_type="gain")
    importance = {name: float(gains.get(name, 0.0)) for name in chosen}
    fingerprint = _fingerprint(
        [_keyed(train, x_train), _keyed(validation, x_valid)],
        {**settings, "horizon_days": horizon_days, "active_days": active_days},
    )
    return ChurnTraining(
        model=model,
        metrics=metrics,
        feature_importance=dict(sorted(importance.items(), key=lambda kv: -kv[1])),
        features=chosen,
        params=settings,
        fingerprint=fingerprint,
        curve=curve,
    )


class Labelled(NamedTuple):
    train: pd.DataFrame  # labelled rows of several past as-of dates
    validation: pd.DataFrame  # those of the latest date the data can label
    customer_share: float  # of the customers whose training rows were computed


def labelled_frames(
    warehouse: Warehouse,
    as_of: dt.date | None = None,
    horizon_days: int = 60,
    *,
    active_days: int = 90,
    train_dates: int = 3,
    step_days: int = 14,
    min_history_days: int = 28,
    max_train_rows: int | None = None,
) -> Labelled:
    """`labelled_snapshot`s dated by `plan_dates`: every customer's at validation, and at
    the training dates, with `max_train_rows` given, only a share of the customers large
    enough to leave that many rows (`SAMPLE_MARGIN`): the fit takes no more
    (`fit_churn`), and their features cost as much time as their rows.

    The data end is `as_of` when given, else the date of the latest transaction.
    """
    span = warehouse.frame(
        "SELECT MIN(occurred_at) AS first_at, MAX(occurred_at) AS last_at "
        "FROM marts.fct_transactions"
    ).iloc[0]
    if pd.isna(span["first_at"]):
        raise ValueError("no transactions in marts.fct_transactions to learn churn from")
    first_day = pd.Timestamp(span["first_at"]).date()
    data_end = as_of or pd.Timestamp(span["last_at"]).date()
    training_dates, validation_date = plan_dates(
        first_day, data_end, horizon_days, train_dates, step_days, min_history_days
    )
    validation = labelled_snapshot(warehouse, validation_date, horizon_days, active_days)

    def training_rows(share: float) -> pd.DataFrame:
        snapshots = [
            labelled_snapshot(warehouse, day, horizon_days, active_days, share)
            for day in training_dates
        ]
        return pd.concat(snapshots, ignore_index=True)

    share = 1.0
    if max_train_rows is not None:
        active = sum(_active_customers(warehouse, day, active_days) for day in training_dates)
        share = min(1.0, SAMPLE_MARGIN * max_train_rows / max(active, 1))
    train = training_rows(share)
    # The sample's history is the data's, and it left the fit its rows: else, everyone.
    days = (pd.to_datetime(train["as_of"]) - pd.Timestamp(first_day)).dt.days
    history = train["history_days"] == days + 1
    if share < 1 and (len(train) < max_train_rows or not history.all()):
        share, train = 1.0, training_rows(1.0)
    return Labelled(train, validation, share)


def train_churn(
    warehouse: Warehouse,
    as_of: dt.date | None = None,
    horizon_days: int = 60,
    seed: int = 42,
    *,
    active_days: int = 90,
    train_dates: int = 3,
    step_days: int = 14,
    min_history_days: int = 28,
    max_train_rows: int = TRAINING_MAX_ROWS,
    **params: Any,
) -> ChurnTraining:
    """Train on past as-of dates and validate on the latest one the data can label."""
    labelled = labelled_frames(
        warehouse,
        as_of,
        horizon_days,
        active_days=active_days,
        train_dates=train_dates,
        step_days=step_days,
        min_history_days=min_history_days,
        max_train_rows=max_train_rows,
    )
    return fit_churn(
        labelled.train,
        labelled.validation,
        horizon_days=horizon_days,
        active_days=active_days,
        seed=seed,
        max_train_rows=max_train_rows,
        customer_share=labelled.customer_share,
        **params,
    )


def churn_quality(metrics: Mapping[str, Any], min_auc: float | None = None) -> list[str]:
    """Why the model must not serve (empty when it may): its validation ROC-AUC does not beat
    the recency-only baseline by a margin whose 95% bootstrap interval excludes zero, or is
    under the absolute floor `min_auc` when one is set (CHURN_MIN_AUC)."""
    failures = []
    auc, baseline = metrics["roc_auc"], metrics["baseline_roc_auc"]
    if not metrics["lift_low"] > 0:
        failures.append(
            f"validation ROC-AUC {auc:.3f} does not beat the recency-only baseline "
            f"{baseline:.3f} beyond chance: lift {metrics['lift']:+.3f}, 95% interval "
            f"[{metrics['lift_low']:+.3f}, {metrics['lift_high']:+.3f}] includes zero"
        )
    if min_auc is not None and auc < min_auc:
        failures.append(f"validation ROC-AUC {auc:.3f} is under the floor {min_auc:.2f}")
    return failures


def _iso(value: Any) -> str:
    return pd.Timestamp(value).date().isoformat()


def _keyed(frame: pd.DataFrame, matrix: pd.DataFrame) -> pd.DataFrame:
    return matrix.assign(
        customer_id=frame["customer_id"].to_numpy(),
        as_of=pd.to_datetime(frame["as_of"]).to_numpy(),
        churned=frame["churned"].to_numpy(dtype=bool),
    )


def _fingerprint(frames: Sequence[pd.DataFrame], params: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for frame in frames:
        digest.update(",".join(frame.columns).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
