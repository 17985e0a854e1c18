"""Email engagement: open and click probability by local send hour, weekday and content.

Every send of `marts.fct_engagement_events` is one example: the customer's email history
*before a cutoff* (rates, the local hours their opens fall at, their response to the
content's category) plus the send's local hour, weekday and reward category, labelled with
whether the message was opened and clicked. Two xgboost classifiers learn P(open) and
P(click | open); P(click) is their product. What the model is used for, each customer's
best send hour, is `engagement.send_time`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.stats import chi2_contingency
from sklearn.metrics import average_precision_score, roc_auc_score

from reward_assets.engagement.activity import Activity, load_activity
from reward_assets.ingest.clock import as_of_params, resolve_as_of
from reward_assets.ml.learning_curve import TRAINING_MAX_ROWS, Curve, learning_curve
from reward_assets.ml.lift import auc_lifts
from reward_assets.warehouse.store import Warehouse

HOURS = 24
WEEKDAYS = 7
# An open or click counts for a send when it comes within this window; sends closer than
# this to the data's end are left out of training, their labels are not final yet.
LABEL_WINDOW = pd.Timedelta(days=2)
# Pseudo-counts that shrink thin histories towards the next broader rate: a customer's
# rates towards the global one, an hour's or category's rate towards the customer's own,
# the share of opens near an hour towards uniform, a category's global rate to the global.
CUSTOMER_PRIOR_SENDS = 5.0
HOUR_PRIOR_SENDS = 2.0
HOUR_PRIOR_OPENS = 1.0
CATEGORY_PRIOR_SENDS = 2.0
GLOBAL_CATEGORY_PRIOR_SENDS = 50.0
FEATURES = (
    "prior_sends",
    "prior_opens",
    "prior_open_rate",
    "prior_click_rate",
    "days_since_open",
    "hour_affinity",
    "open_hour_distance",
    "open_hour_concentration",
    "hour_open_rate",
    "category_affinity",
    "category_open_rate",
    "send_hour",
    "weekday",
)
WEEKDAY = FEATURES.index("weekday")
# More affinity to the content or the hour can only raise the predicted open probability.
MONOTONE = {
    "prior_open_rate": 1,
    "hour_affinity": 1,
    "open_hour_distance": -1,
    "hour_open_rate": 1,
}
XGB_PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_depth": 3,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5,
    "nthread": 2,
    "monotone_constraints": "(" + ",".join(str(MONOTONE.get(f, 0)) for f in FEATURES) + ")",
}
ROUNDS = 300
# Training windows start at these shares of the span between the first send and the last
# labelled one; each window's sends are scored with the history before its start.
CUTOFFS = (0.5, 0.6, 0.7, 0.8, 0.9)
VALIDATION_SHARE = 0.2
# The model uses the weekday only when the open rate differs across weekdays at this
# significance: below it, splits on the weekday would only fit noise.
WEEKDAY_P_VALUE = 0.001
MODEL_FILES = ("open.json", "click_given_open.json", "engagement.json")


# --------------------------------------------------------------------------- history features


@dataclass(frozen=True)
class History:
    """Each customer's email history before a cutoff; hour counts are summed over h-1..h+1."""

    sends: np.ndarray
    opened: np.ndarray  # sends opened before the cutoff
    clicked: np.ndarray
    opens: np.ndarray  # open events, re-opens included
    days_since_open: np.ndarray  # NaN without an open
    hour_sends: np.ndarray  # (customers, 24) by local send hour
    hour_opened: np.ndarray
    hour_opens: np.ndarray  # (customers, 24) by local open hour
    open_hour: np.ndarray  # circular mean local hour of the opens, NaN without one
    open_concentration: np.ndarray  # length of the mean vector of open hours, 0..1
    category_sends: np.ndarray  # (customers, categories + unknown)
    category_opened: np.ndarray
    open_rate: float  # global
    click_rate: float
    category_open_rate: np.ndarray  # global, smoothed


def _counts(customer: np.ndarray, column: np.ndarray, n: int, width: int) -> np.ndarray:
    flat = np.bincount(customer * width + column, minlength=n * width)
    return flat.reshape(n, width).astype(np.float32)


def _around(by_hour: np.ndarray) -> np.ndarray:
    """Counts at local hour h-1, h and h+1 (circular): an hour's neighbours are evidence too."""
    # Added in place, in the order h, h-1, h+1 (a million customers' rolled copies cost
    # more than the sums).
    around = by_hour.copy()
    around[:, 1:] += by_hour[:, :-1]
    around[:, 0] += by_hour[:, -1]
    around[:, :-1] += by_hour[:, 1:]
    around[:, -1] += by_hour[:, 0]
    return around


def _during(
    frame: pd.DataFrame, column: str, stop: pd.Timestamp, start: pd.Timestamp | None = None
) -> pd.DataFrame:
    """The rows whose `column` is before `stop` (and at or after `start`): a slice when the
    rows are in that column's order, as training reads them, else a filter."""
    times = frame[column]
    if times.is_monotonic_increasing:
        first = 0 if start is None else times.searchsorted(start, "left")
        return frame.iloc[first : times.searchsorted(stop, "left")]
    keep = times < stop
    if start is not None:
        keep &= times >= start
    return frame[keep]


def circular_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    gap = np.abs(np.asarray(a) - np.asarray(b)) % HOURS
    return np.minimum(gap, HOURS - gap)


def history_at(activity: Activity, cutoff: pd.Timestamp) -> History:
    """History features from events strictly before `cutoff` only."""
    n = len(activity.customers)
    width = len(activity.categories) + 1
    sends = _during(activity.sends, "sent_at", cutoff)
    customer = sends["customer"].to_numpy()
    clicked = (sends["clicked_at"] < cutoff).to_numpy()
    opened = (sends["opened_at"] < cutoff).to_numpy() | clicked
    opens = _during(activity.opens, "at", cutoff)
    last_open = opens.groupby("customer")["at"].max()
    days_since_open = np.full(n, np.nan)
    days_since_open[last_open.index] = (cutoff - last_open).dt.total_seconds() / 86_400

    open_hours = _counts(opens["customer"].to_numpy(), opens["hour"].to_numpy(), n, HOURS)
    angle = 2 * np.pi * np.arange(HOURS) / HOURS
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = open_hours @ np.cos(angle) / open_hours.sum(axis=1)
        sin = open_hours @ np.sin(angle) / open_hours.sum(axis=1)
    category_sends = _counts(customer, sends["category"].to_numpy(), n, width)
    category_opened = _counts(customer[opened], sends["category"].to_numpy()[opened], n, width)
    total_sends = max(len(sends), 1)
    open_rate = opened.sum() / total_sends
    category_open_rate = (category_opened.sum(axis=0) + GLOBAL_CATEGORY_PRIOR_SENDS * open_rate) / (
        category_sends.sum(axis=0) + GLOBAL_CATEGORY_PRIOR_SENDS
    )
    return History(
        sends=np.bincount(customer, minlength=n).astype(np.float32),
        opened=np.bincount(customer[opened], minlength=n).astype(np.float32),
        clicked=np.bincount(customer[clicked], minlength=n).astype(np.float32),
        opens=np.bincount(opens["customer"], minlength=n).astype(np.float32),
        days_since_open=days_since_open,
        hour_sends=_around(_counts(customer, sends["hour"].to_numpy(), n, HOURS)),
        hour_opened=_around(_counts(customer[opened], sends["hour"].to_numpy()[opened], n, HOURS)),
        hour_opens=_around(open_hours),
        open_hour=np.arctan2(sin, cos) * HOURS / (2 * np.pi) % HOURS,
        open_concentration=np.hypot(cos, sin),
        category_sends=category_sends,
        category_opened=category_opened,
        open_rate=float(open_rate),
        click_rate=float(clicked.sum() / total_sends),
        category_open_rate=category_open_rate,
    )


def feature_matrix(
    history: History,
    customer: np.ndarray,
    hour: np.ndarray,
    weekday: np.ndarray,
    category: np.ndarray,
) -> np.ndarray:
    """The model's inputs (columns as FEATURES) for sends to `customer` at local `hour`."""
    sends = history.sends[customer]
    open_rate = (history.opened[customer] + CUSTOMER_PRIOR_SENDS * history.open_rate) / (
        sends + CUSTOMER_PRIOR_SENDS
    )
    click_rate = (history.clicked[customer] + CUSTOMER_PRIOR_SENDS * history.click_rate) / (
        sends + CUSTOMER_PRIOR_SENDS
    )
    opens = history.opens[customer]
    hour_affinity = (history.hour_opens[customer, hour] + HOUR_PRIOR_OPENS * 3 / HOURS) / (
        opens + HOUR_PRIOR_OPENS
    )
    hour_open_rate = (history.hour_opened[customer, hour] + HOUR_PRIOR_SENDS * open_rate) / (
        history.hour_sends[customer, hour] + HOUR_PRIOR_SENDS
    )
    category_affinity = (
        history.category_opened[customer, category] + CATEGORY_PRIOR_SENDS * open_rate
    ) / (history.category_sends[customer, category] + CATEGORY_PRIOR_SENDS)
    columns = (
        sends,
        opens,
        open_rate,
        click_rate,
        history.days_since_open[customer],
        hour_affinity,
        circular_distance(hour, history.open_hour[customer]),
        history.open_concentration[customer],
        hour_open_rate,
        category_affinity,
        history.category_open_rate[category],
        hour,
        weekday,
    )
    return np.column_stack(columns).astype(np.float32)


# --------------------------------------------------------------------------- the model


@dataclass
class EngagementModel:
    """P(open) and P(click | open) classifiers over FEATURES; P(click) is their product.

    A click can only follow an open, so the click model learns from opened sends alone:
    clicks are rare and ranking them by the open probability already does most of the work.
    """

    open_booster: xgb.Booster
    click_booster: xgb.Booster  # P(click | opened)
    categories: tuple[str, ...]  # content categories known at training; others are unknown
    uses_weekday: bool  # False when training found no weekday effect (its column was constant)

    def predict_open(self, features: np.ndarray) -> np.ndarray:
        return self.open_booster.inplace_predict(features)

    def predict(
        self, features: np.ndarray, opened: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Open and click probability of each row of a `feature_matrix`; `opened`, the open
        probabilities of those rows when predicted already."""
        if opened is None:
            opened = self.predict_open(features)
        return opened, opened * self.click_booster.inplace_predict(features)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for booster in (self.open_booster, self.click_booster):
            digest.update(bytes(booster.save_raw("json")))
        digest.update(json.dumps([FEATURES, self.categories, self.uses_weekday]).encode())
        return digest.hexdigest()

    def save(self, directory: Path | str) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.open_booster.save_model(directory / MODEL_FILES[0])
        self.click_booster.save_model(directory / MODEL_FILES[1])
        meta = {
            "features": list(FEATURES),
            "categories": list(self.categories),
            "uses_weekday": self.uses_weekday,
        }
        (directory / MODEL_FILES[2]).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path | str) -> EngagementModel:
        directory = Path(directory)
        meta = json.loads((directory / MODEL_FILES[2]).read_text())
        if tuple(meta["features"]) != FEATURES:
            raise ValueError(f"{directory} holds a model over other features: {meta['features']}")
        boosters = []
        for name in MODEL_FILES[:2]:
            booster = xgb.Booster()
            booster.load_model(directory / name)
            boosters.append(booster)
        return cls(*boosters, tuple(meta["categories"]), meta["uses_weekday"])


@dataclass(frozen=True)
class TrainingSet:
    features: np.ndarray
    opened: np.ndarray
    clicked: np.ndarray
    validation: np.ndarray  # rows of held-out customers
    categories: tuple[str, ...]
    cutoffs: tuple[float, ...]
    window_rows: list[int]  # sends per training window


@dataclass(frozen=True)
class EngagementTraining:
    """A fitted model with its held-out metrics, settings and a deterministic sha256."""

    model: EngagementModel
    metrics: dict
    features: tuple[str, ...]
    params: dict
    fingerprint: str
    curve: Curve


def training_set(
    activity: Activity,
    end: pd.Timestamp,
    seed: int = 42,
    cutoffs: tuple[float, ...] = CUTOFFS,
) -> TrainingSet:
    """Sends after each cutoff with the history before it; a seeded fifth of customers held out.

    Window i holds the sends from cutoff i to cutoff i+1 (the last one up to `end` less the
    label window), so no history feature sees anything at or after its window's start.
    """
    sends = activity.sends
    last = end - LABEL_WINDOW
    first = sends["sent_at"].min() if len(sends) else last
    starts = [first + share * (last - first) for share in cutoffs]
    windows, features = [], []
    for start, stop in zip(starts, [*starts[1:], last], strict=True):
        window = _during(sends, "sent_at", stop, start)
        windows.append(window)
        features.append(
            feature_matrix(
                history_at(activity, start),
                window["customer"].to_numpy(),
                window["hour"].to_numpy(),
                window["weekday"].to_numpy(),
                window["category"].to_numpy(),
            )
        )
    rows = pd.concat(windows)
    clicked = rows["clicked_at"] < rows["sent_at"] + LABEL_WINDOW
    # A click proves an open even when the open was not tracked (images blocked).
    opened = (rows["opened_at"] < rows["sent_at"] + LABEL_WINDOW) | clicked
    held_out = np.random.default_rng(seed).random(len(activity.customers)) < VALIDATION_SHARE
    return TrainingSet(
        features=np.concatenate(features),
        opened=opened.to_numpy(),
        clicked=clicked.to_numpy(),
        validation=held_out[rows["customer"].to_numpy()],
        categories=activity.categories,
        cutoffs=cutoffs,
        window_rows=[len(window) for window in windows],
    )


def fit_engagement(
    data: TrainingSet, seed: int = 42, max_rows: int = TRAINING_MAX_ROWS
) -> EngagementTraining:
    """Fit on the training customers' sends and measure on the held-out customers'. Above
    `max_rows` training sends, the fit is on a sample sized by the open model's learning
    curve (`ml/learning_curve.py`), stratified by outcome (not opened, opened, clicked)."""
    train = np.flatnonzero(~data.validation)
    for label, outcome in (("opens", data.opened), ("clicks", data.clicked)):
        if not outcome[train].any() or outcome[train].all():
            raise ValueError(
                f"engagement needs sends with and without {label} to learn from: "
                f"{train.size} training sends, {int(outcome[train].sum())} with {label}"
            )
    valid = np.flatnonzero(data.validation)
    features, opened, clicked = data.features[train], data.opened[train], data.clicked[train]
    weekday_p = _weekday_p_value(features[:, WEEKDAY], opened)
    uses_weekday = weekday_p < WEEKDAY_P_VALUE
    if not uses_weekday:
        # Without a real weekday effect, splits on it only fit noise and would name a best
        # weekday for no reason: a constant column cannot be split on.
        features[:, WEEKDAY] = 0
    params = {**XGB_PARAMS, "seed": seed}
    held_out, held_out_opened = data.features[valid], data.opened[valid]

    def fit(rows: np.ndarray, target: np.ndarray) -> xgb.Booster:
        matrix = xgb.DMatrix(features[rows], target[rows], feature_names=list(FEATURES))
        return xgb.train(params, matrix, num_boost_round=ROUNDS)

    def fit_open(rows: np.ndarray) -> tuple[tuple[xgb.Booster, np.ndarray], float]:
        """The open model with its held-out probabilities, which the metrics need again."""
        booster = fit(rows, opened)
        probability = booster.inplace_predict(held_out)
        if not 0 < held_out_opened.sum() < held_out_opened.size:
            return (booster, probability), math.nan
        return (booster, probability), float(roc_auc_score(held_out_opened, probability))

    curve = learning_curve(opened.astype(np.int8) + clicked, max_rows, fit_open, seed)
    rows = curve.rows
    open_booster, held_out_open = curve.model
    # P(click | open) learns from the sample's opened sends.
    click_booster = fit(rows[opened[rows]], clicked)
    model = EngagementModel(open_booster, click_booster, data.categories, uses_weekday)
    predicted = model.predict(held_out, held_out_open)
    targets = {"open": held_out_opened, "click": data.clicked[valid]}
    metrics = {
        **_lifts(targets, dict(zip(targets, predicted, strict=True)), held_out, seed),
        "train_rows": int(rows.size),
        "validation_rows": int(valid.size),
        "learning_curve": curve.metrics("open_auc"),
        "train_open_rate": float(opened[rows].mean()),
        "train_click_rate": float(clicked[rows].mean()),
        "weekday_p_value": weekday_p,
        "weekday_used": uses_weekday,
        **_scores("open", held_out_opened, predicted[0]),
        **_scores("click", data.clicked[valid], predicted[1]),
        "window_rows": data.window_rows,
    }
    return EngagementTraining(
        model=model,
        metrics=metrics,
        features=FEATURES,
        params={**params, "rounds": ROUNDS, "cutoffs": list(data.cutoffs), "max_rows": max_rows},
        fingerprint=model.fingerprint(),
        curve=curve,
    )


# Each label's baseline: the customer's own past rate (shrunk towards the global one), the
# base rate a model with no hour, weekday or content knowledge would predict.
BASELINES = {"open": "prior_open_rate", "click": "prior_click_rate"}


def _lifts(
    targets: dict[str, np.ndarray],
    predicted: dict[str, np.ndarray],
    features: np.ndarray,
    seed: int,
) -> dict:
    """Each label's held-out ROC-AUC lift over its base-rate baseline, with its interval
    (none for a label whose held-out sends lack a class)."""
    labels = [label for label, target in targets.items() if 0 < target.sum() < target.size]
    if not labels:
        return {}

    def baseline(label: str) -> np.ndarray:
        values = features[:, FEATURES.index(BASELINES[label])].astype(float)
        return np.where(np.isnan(values), np.nanmean(values), values)

    lifts = auc_lifts(
        [(targets[label], predicted[label], baseline(label)) for label in labels], seed=seed
    )
    return {
        f"{label}_{key}": value
        for label, lift in zip(labels, lifts, strict=True)
        for key, value in (
            ("baseline_auc", lift.baseline_auc),
            ("lift", lift.lift),
            ("lift_low", lift.lift_low),
            ("lift_high", lift.lift_high),
        )
    }


def _weekday_p_value(weekday: np.ndarray, opened: np.ndarray) -> float:
    """Chi-square test of the open rate across weekdays (1.0 when it cannot be tested)."""
    table = pd.crosstab(weekday, opened)
    if min(table.shape) < 2:
        return 1.0
    return float(chi2_contingency(table.to_numpy()).pvalue)


def _scores(label: str, target: np.ndarray, predicted: np.ndarray) -> dict:
    """Held-out ROC-AUC and PR-AUC (None when a class is missing) and the base rate."""
    both = 0 < target.sum() < target.size
    return {
        f"{label}_auc": float(roc_auc_score(target, predicted)) if both else None,
        f"{label}_pr_auc": float(average_precision_score(target, predicted)) if both else None,
        f"{label}_base_rate": float(target.mean()) if target.size else None,
    }


def train_engagement(
    warehouse: Warehouse,
    as_of: dt.date | None = None,
    seed: int = 42,
    max_rows: int = TRAINING_MAX_ROWS,
) -> EngagementTraining:
    """Train the open and click models on email activity up to the end of `as_of`."""
    end = pd.Timestamp(as_of_params(resolve_as_of(warehouse, as_of))["as_of_end"])
    return fit_engagement(training_set(load_activity(warehouse, end), end, seed), seed, max_rows)


def engagement_quality(metrics: dict, min_auc: float | None = None) -> list[str]:
    """Why the model must not ship (empty when it may): its held-out open ROC-AUC does not
    beat the base-rate baseline (each customer's past open rate) by a margin whose 95%
    bootstrap interval excludes zero, or is under the floor `min_auc` when one is set
    (ENGAGEMENT_MIN_AUC). The click model's lift is reported, not required: clicks are a
    few percent of sends, too few on a small programme to show a lift beyond chance, and
    the send time is chosen by the open probability.
    """
    auc = metrics.get("open_auc")
    if auc is None or "open_lift_low" not in metrics:
        return ["open ROC-AUC undefined: the held-out sends lack a class"]
    failures = []
    if not metrics["open_lift_low"] > 0:
        failures.append(
            f"open ROC-AUC {auc:.3f} does not beat the base-rate baseline "
            f"{metrics['open_baseline_auc']:.3f} beyond chance: lift "
            f"{metrics['open_lift']:+.3f}, 95% interval [{metrics['open_lift_low']:+.3f}, "
            f"{metrics['open_lift_high']:+.3f}] includes zero"
        )
    if min_auc is not None and auc < min_auc:
        failures.append(f"open ROC-AUC {auc:.3f} is under the floor {min_auc:.2f}")
    return failures
