"""The engagement model and send-time preferences: hand-built worlds and the seeded ones."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from reward_assets.engagement.activity import load_activity
from reward_assets.engagement.model import (
    FEATURES,
    ROUNDS,
    WEEKDAY,
    XGB_PARAMS,
    EngagementModel,
    circular_distance,
    engagement_quality,
    feature_matrix,
    fit_engagement,
    history_at,
    train_engagement,
    training_set,
)
from reward_assets.engagement.send_time import (
    allowed_hours,
    engagement_scores,
    send_time_preferences,
)
from reward_assets.ingest.clock import as_of_params, resolve_as_of
from reward_assets.warehouse.store import Warehouse

START = dt.datetime(2023, 1, 2)  # a Monday
DAYS = 90
AS_OF = (START + dt.timedelta(days=DAYS)).date()
DDL = (
    "CREATE TABLE marts.dim_customers (customer_id VARCHAR, timezone VARCHAR, tier VARCHAR)",
    "CREATE TABLE marts.dim_rewards (reward_id VARCHAR, category VARCHAR)",
    """CREATE TABLE marts.fct_engagement_events (
        event_id VARCHAR, customer_id VARCHAR, event_type VARCHAR, occurred_at TIMESTAMP,
        message_id VARCHAR, campaign VARCHAR)""",
)


def load_world(warehouse: Warehouse, customers: pd.DataFrame, events: pd.DataFrame) -> None:
    """The three marts tables the engagement model reads, created with plain SQL."""
    rewards = pd.DataFrame({"reward_id": ["r1", "r2"], "category": ["travel", "gift_cards"]})
    events = events.assign(event_id=[f"e{i}" for i in range(len(events))])
    with warehouse.begin() as conn:
        for statement in DDL:
            conn.exec_driver_sql(statement)
        warehouse.append(conn, "marts.dim_customers", customers)
        warehouse.append(conn, "marts.dim_rewards", rewards)
        warehouse.append(conn, "marts.fct_engagement_events", events)


def simulate(
    customers: pd.DataFrame, sends_each: np.ndarray, seed: int = 0, saturday_boost: float = 1.0
) -> pd.DataFrame:
    """Sends at uniform UTC hours 6..23 whose open chance peaks at each `preferred_hour`.

    Customers here live in UTC, so UTC hours are their local hours.
    """
    rng = np.random.default_rng(seed)
    owner = np.repeat(np.arange(len(customers)), sends_each)
    day = rng.integers(0, DAYS, owner.size)
    hour = rng.integers(6, 24, owner.size)
    sent_at = (
        pd.Timestamp(START)
        + pd.to_timedelta(day, unit="D")
        + pd.to_timedelta(hour * 60 + rng.integers(0, 15, owner.size), unit="min")
    )
    distance = circular_distance(hour, customers["preferred_hour"].to_numpy()[owner])
    weekday_factor = np.where(sent_at.dayofweek == 5, saturday_boost, 1.0)
    chance = customers["engagement"].to_numpy()[owner] * (
        0.05 + 0.95 * np.exp(-0.5 * (distance / 1.5) ** 2)
    )
    opened = rng.random(owner.size) < np.minimum(chance * weekday_factor, 1.0)
    clicked = opened & (rng.random(owner.size) < 0.3)
    message = np.array([f"m{i}" for i in range(owner.size)])
    campaign = np.where(rng.random(owner.size) < 0.5, "wk20230102_travel", "wk20230102_gift_cards")
    sends = pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy()[owner],
            "occurred_at": sent_at,
            "message_id": message,
            "campaign": campaign,
        }
    )
    return pd.concat(
        [
            sends.assign(event_type="sent"),
            sends[opened].assign(
                event_type="open", occurred_at=sent_at[opened] + pd.Timedelta(minutes=10)
            ),
            sends[clicked].assign(
                event_type="click", occurred_at=sent_at[clicked] + pd.Timedelta(minutes=15)
            ),
        ],
        ignore_index=True,
    )


def population(groups: list[tuple[str, str, str, int, float, int]]) -> pd.DataFrame:
    """Customers from (name, timezone, tier, preferred hour, engagement, count) groups."""
    frames = [
        pd.DataFrame(
            {
                "customer_id": [f"{name}{i:03d}" for i in range(count)],
                "timezone": zone,
                "tier": tier,
                "preferred_hour": hour,
                "engagement": engagement,
            }
        )
        for name, zone, tier, hour, engagement, count in groups
    ]
    return pd.concat(frames, ignore_index=True)


def build_fallback_world(warehouse: Warehouse) -> None:
    """Two segments with known hours, a night owl, and customers with too little history."""
    people = population(
        [
            ("gold", "UTC", "gold", 10, 0.8, 70),
            ("silver", "UTC", "silver", 17, 0.8, 30),
            ("owl", "UTC", "platinum", 22, 0.9, 1),
        ]
    )
    events = simulate(people, np.full(len(people), 40))
    newcomers = pd.DataFrame(
        {
            "customer_id": ["new_gold", "new_silver", "new_tokyo", "two_opens"],
            "timezone": ["UTC", "UTC", "Asia/Tokyo", "UTC"],
            "tier": ["gold", "silver", "bronze", "silver"],
        }
    )
    two_opens = pd.DataFrame(
        {
            "customer_id": "two_opens",
            "occurred_at": [START + dt.timedelta(days=3, hours=h) for h in (6, 6, 7)],
            "message_id": ["t1", "t1", "t1"],
            "campaign": "wk20230102_travel",
            "event_type": ["sent", "open", "open"],
        }
    )
    customers = pd.concat([people[["customer_id", "timezone", "tier"]], newcomers])
    load_world(warehouse, customers, pd.concat([events, two_opens], ignore_index=True))


@pytest.fixture
def fallback_world(duckdb_warehouse):
    build_fallback_world(duckdb_warehouse)
    return duckdb_warehouse


@pytest.fixture
def trained(fallback_world) -> EngagementModel:
    return train_engagement(fallback_world, AS_OF, seed=3).model


# --------------------------------------------------------------------------- local time, labels


def test_local_hours_follow_daylight_saving(duckdb_warehouse):
    """The same UTC hour is a different local hour either side of a DST change."""
    customers = pd.DataFrame(
        {
            "customer_id": ["ny", "ldn", "nowhere"],
            "timezone": ["America/New_York", "Europe/London", "Mars/Olympus_Mons"],
            "tier": ["gold", "gold", None],
        }
    )
    # New York moves to EDT on 2023-03-12, London to BST on 2023-03-26.
    sent = [
        ("ny", dt.datetime(2023, 3, 11, 14, 5)),
        ("ny", dt.datetime(2023, 3, 13, 14, 5)),
        ("ldn", dt.datetime(2023, 3, 25, 23, 30)),
        ("ldn", dt.datetime(2023, 3, 26, 23, 30)),
        ("nowhere", dt.datetime(2023, 3, 26, 23, 30)),
    ]
    events = pd.DataFrame(
        {
            "customer_id": [c for c, _ in sent],
            "event_type": "sent",
            "occurred_at": [at for _, at in sent],
            "message_id": [f"m{i}" for i in range(len(sent))],
            "campaign": "wk20230306_travel",
        }
    )
    load_world(duckdb_warehouse, customers, events)

    activity = load_activity(duckdb_warehouse, dt.datetime(2023, 4, 1))
    local = activity.sends.assign(
        customer_id=activity.customers["customer_id"].to_numpy()[activity.sends["customer"]]
    ).sort_values("sent_at")
    by_customer = local.groupby("customer_id")[["hour", "weekday"]].agg(list)
    # 09:05 EST on a Saturday, then 10:05 EDT on a Monday.
    assert by_customer.loc["ny", "hour"] == [9, 10]
    assert by_customer.loc["ny", "weekday"] == [5, 0]
    # 23:30 GMT on Saturday, then 00:30 BST on Monday: the local date moves too.
    assert by_customer.loc["ldn", "hour"] == [23, 0]
    assert by_customer.loc["ldn", "weekday"] == [5, 0]
    # A zone the tz database does not know is read as UTC.
    assert by_customer.loc["nowhere", "hour"] == [23]


def test_labels_join_opens_and_clicks_by_message(duckdb_warehouse):
    customers = pd.DataFrame({"customer_id": ["a", "b"], "timezone": "UTC", "tier": "gold"})
    t0 = dt.datetime(2023, 3, 1, 9)
    rows = [
        ("a", "sent", t0, "m1", "wk20230227_gift_cards"),
        ("a", "open", t0 + dt.timedelta(minutes=40), "m1", "wk20230227_gift_cards"),
        ("a", "open", t0 + dt.timedelta(minutes=5), "m1", "wk20230227_gift_cards"),
        ("a", "click", t0 + dt.timedelta(minutes=7), "m1", "wk20230227_gift_cards"),
        ("a", "sent", t0 + dt.timedelta(days=1), "m2", "wk20230227_gift_cards"),
        # A message sent twice counts once, as its first send (at t0, gift cards).
        ("a", "sent", t0 + dt.timedelta(hours=2), "m1", "spring_sale"),
        # Events of a customer the warehouse does not know are left out.
        ("ghost", "sent", t0, "m5", "spring_sale"),
        ("ghost", "open", t0 + dt.timedelta(minutes=1), "m3", "spring_sale"),
        ("b", "sent", t0, "m3", "spring_sale"),
        # An open of a message with no send (m9) labels no send; it is still an open event.
        ("b", "open", t0 + dt.timedelta(minutes=9), "m9", "spring_sale"),
        ("b", "sent", t0 + dt.timedelta(days=1), "m4", None),
        ("b", "click", t0 + dt.timedelta(days=1, minutes=3), "m4", None),
    ]
    events = pd.DataFrame(
        rows, columns=["customer_id", "event_type", "occurred_at", "message_id", "campaign"]
    )
    load_world(duckdb_warehouse, customers, events)

    activity = load_activity(duckdb_warehouse, dt.datetime(2023, 3, 10))
    sends = activity.sends.sort_values(["sent_at", "customer"]).reset_index(drop=True)
    assert len(sends) == 4  # one row per sent message
    by_message = dict(zip(["m1", "m3", "m2", "m4"], range(4), strict=True))
    first_open = sends.loc[by_message["m1"], "opened_at"]
    assert first_open == pd.Timestamp(t0 + dt.timedelta(minutes=5))
    assert sends.loc[by_message["m1"], "clicked_at"] == pd.Timestamp(t0 + dt.timedelta(minutes=7))
    assert sends.loc[[by_message["m2"], by_message["m3"]], "opened_at"].isna().all()
    # The category is the campaign's part after the first '_' (gift_cards has its own '_');
    # other campaign names and NULL are 'unknown'.
    gift_cards = activity.categories.index("gift_cards")
    unknown = len(activity.categories)
    assert sends["category"].tolist() == [gift_cards, unknown, gift_cards, unknown]
    # Send times read the same rows in whatever order the warehouse returns them.
    unordered = load_activity(duckdb_warehouse, dt.datetime(2023, 3, 10), in_time_order=False)
    by_time = unordered.sends.sort_values(["sent_at", "customer"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(by_time, sends)
    opens = unordered.opens.sort_values("at").reset_index(drop=True)
    pd.testing.assert_frame_equal(opens, activity.opens)

    history = history_at(activity, pd.Timestamp("2023-03-10"))
    a, b = activity.customers.index[activity.customers["customer_id"].isin(["a", "b"])]
    assert history.sends[[a, b]].tolist() == [2, 2]
    # A click proves an open even when no open was tracked (m4).
    assert history.opened[[a, b]].tolist() == [1, 1]
    assert history.opens[[a, b]].tolist() == [2, 1]  # open events, re-opens included


def test_history_ignores_everything_after_the_cutoff(fallback_world):
    """Features at a cutoff equal those computed from a warehouse that ends at the cutoff."""
    cutoff = pd.Timestamp(START + dt.timedelta(days=45, hours=10, minutes=7))
    everything = load_activity(fallback_world, dt.datetime.combine(AS_OF, dt.time()))
    until_cutoff = load_activity(fallback_world, cutoff.to_pydatetime())
    assert len(until_cutoff.sends) < len(everything.sends)

    n = len(everything.customers)
    customer = np.repeat(np.arange(n), 3)
    hour = np.tile([8, 13, 22], n)
    weekday = np.tile([0, 3, 6], n)
    category = np.tile([0, 1, len(everything.categories)], n)
    later = feature_matrix(history_at(everything, cutoff), customer, hour, weekday, category)
    cut = feature_matrix(history_at(until_cutoff, cutoff), customer, hour, weekday, category)
    np.testing.assert_array_equal(later, cut)
    # The comparison can fail: the same sends scored with all history look different.
    full = history_at(everything, pd.Timestamp(AS_OF))
    assert not np.array_equal(feature_matrix(full, customer, hour, weekday, category), cut)


def test_training_windows_use_only_earlier_history(fallback_world):
    end = pd.Timestamp(AS_OF)
    activity = load_activity(fallback_world, end.to_pydatetime())
    data = training_set(activity, end, seed=1, cutoffs=(0.6,))
    first, last = activity.sends["sent_at"].min(), end - pd.Timedelta(days=2)
    start = first + 0.6 * (last - first)
    window = activity.sends[(activity.sends["sent_at"] >= start)]
    window = window[window["sent_at"] < last]
    truncated = load_activity(fallback_world, start.to_pydatetime())
    expected = feature_matrix(
        history_at(truncated, start),
        window["customer"].to_numpy(),
        window["hour"].to_numpy(),
        window["weekday"].to_numpy(),
        window["category"].to_numpy(),
    )
    np.testing.assert_array_equal(data.features, expected)
    assert data.opened.sum() > 0 and data.validation.any() and not data.validation.all()


# --------------------------------------------------------------------------- send times


def test_allowed_hours():
    assert allowed_hours((21, 8)).tolist() == list(range(8, 21))
    assert allowed_hours((12, 14)).tolist() == [h for h in range(24) if h not in (12, 13)]
    assert allowed_hours((0, 0)).tolist() == list(range(24))  # no quiet hours
    with pytest.raises(ValueError, match="no hour"):
        allowed_hours((0, 24))


def test_quiet_hours_are_never_chosen(fallback_world, trained):
    free = send_time_preferences(fallback_world, trained, AS_OF, quiet_hours=(0, 0))
    owl = free.set_index("customer_id").loc["owl000"]
    # Without quiet hours the night owl's opens at 22:00 win...
    assert owl["source"] == "customer"
    assert circular_distance(owl["best_local_hour"], 22) <= 1

    for quiet in ((21, 8), (20, 23), (9, 18)):
        prefs = send_time_preferences(fallback_world, trained, AS_OF, quiet_hours=quiet)
        assert prefs["best_local_hour"].isin(allowed_hours(quiet)).all(), quiet
    # ...but with the default quiet hours the owl gets the closest allowed hour instead.
    prefs = send_time_preferences(fallback_world, trained, AS_OF).set_index("customer_id")
    assert prefs.loc["owl000", "best_local_hour"] in (19, 20)


def test_fallback_goes_customer_then_segment_then_global(fallback_world, trained):
    prefs = send_time_preferences(fallback_world, trained, AS_OF).set_index("customer_id")
    assert len(prefs) == 105 and prefs.index.is_unique
    regulars = prefs[prefs.index.str.startswith(("gold", "silver"))]
    assert (regulars["source"] == "customer").mean() > 0.9
    customer_rows = regulars[regulars["source"] == "customer"]
    planted = np.where(customer_rows.index.str.startswith("gold"), 10, 17)
    assert (circular_distance(customer_rows["best_local_hour"], planted) <= 1).mean() >= 0.8

    # Too little history: the segment's hour (time zone x tier) ...
    assert prefs.loc["new_gold", "source"] == "segment"
    assert circular_distance(prefs.loc["new_gold", "best_local_hour"], 10) <= 1
    assert prefs.loc["new_silver", "source"] == "segment"
    assert circular_distance(prefs.loc["new_silver", "best_local_hour"], 17) <= 1
    assert prefs.loc["two_opens", "source"] == "segment"  # 2 opens < min_opens
    assert prefs.loc["two_opens", "best_local_hour"] == prefs.loc["new_silver", "best_local_hour"]
    # ... else, in a segment without opens, the global one (gold customers dominate it).
    assert prefs.loc["new_tokyo", "source"] == "global"
    assert circular_distance(prefs.loc["new_tokyo", "best_local_hour"], 10) <= 1

    # When no segment has enough opens, everyone without history falls to the global hour.
    strict = send_time_preferences(fallback_world, trained, AS_OF, min_segment_opens=10**6)
    strict = strict.set_index("customer_id")
    newcomers = ["new_gold", "new_silver", "new_tokyo", "two_opens"]
    assert (strict.loc[newcomers, "source"] == "global").all()
    assert strict.loc[newcomers, "best_local_hour"].nunique() == 1

    # Own history is surer than a group's hour; everything lies in [0, 1].
    assert prefs["confidence"].between(0, 1).all()
    for segment in ("gold", "silver"):
        own = customer_rows[customer_rows.index.str.startswith(segment)]
        assert own["confidence"].min() >= prefs.loc[f"new_{segment}", "confidence"]
    assert prefs["expected_open_rate"].between(0, 1).all()
    assert (prefs["expected_click_rate"] <= prefs["expected_open_rate"]).all()
    # Weekdays carry no signal in this world: no best weekday is invented.
    assert prefs["best_weekday"].isna().all()

    scores = engagement_scores(prefs.reset_index())
    assert list(scores.columns) == [
        "customer_id", "open_probability", "click_probability", "best_local_hour", "source"
    ]  # fmt: skip
    assert (scores["open_probability"].to_numpy() == prefs["expected_open_rate"].to_numpy()).all()


def test_best_weekday_is_named_when_weekdays_matter(duckdb_warehouse):
    people = population([("fan", "UTC", "gold", 14, 0.3, 300)])
    events = simulate(people, np.full(len(people), 40), seed=5, saturday_boost=3.0)
    load_world(duckdb_warehouse, people[["customer_id", "timezone", "tier"]], events)
    training = train_engagement(duckdb_warehouse, AS_OF, seed=1)
    assert training.metrics["weekday_used"]
    assert training.model.uses_weekday

    prefs = send_time_preferences(duckdb_warehouse, training.model, AS_OF)
    assert (prefs["best_weekday"] == 5).mean() > 0.9


# --------------------------------------------------------------------------- the model itself


def test_training_is_deterministic_and_round_trips(fallback_world, tmp_path):
    first = train_engagement(fallback_world, AS_OF, seed=11)
    again = train_engagement(fallback_world, AS_OF, seed=11)
    assert first.fingerprint == again.fingerprint
    assert len(first.fingerprint) == 64
    assert train_engagement(fallback_world, AS_OF, seed=12).fingerprint != first.fingerprint
    capped = train_engagement(fallback_world, AS_OF, seed=11, max_rows=300)
    curve = capped.metrics["learning_curve"]
    assert curve["sizes"] == [37, 75, 150, 300][: len(curve["sizes"])]
    assert len(curve["sizes"]) >= 2 and curve["rows_available"] == first.metrics["train_rows"]
    assert capped.metrics["train_rows"] == curve["chosen_rows"] <= 300 < curve["rows_available"]

    first.model.save(tmp_path / "model")
    loaded = EngagementModel.load(tmp_path / "model")
    assert loaded.fingerprint() == first.fingerprint
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "click_given_open.json", "engagement.json", "open.json"
    ]  # fmt: skip
    original = send_time_preferences(fallback_world, first.model, AS_OF)
    pd.testing.assert_frame_equal(original, send_time_preferences(fallback_world, loaded, AS_OF))


def test_below_the_cap_the_open_model_is_the_fit_on_every_row(fallback_world):
    training = train_engagement(fallback_world, AS_OF, seed=11)
    end = pd.Timestamp(as_of_params(AS_OF)["as_of_end"])
    data = training_set(load_activity(fallback_world, end), end, seed=11)
    train = ~data.validation
    assert training.curve.sizes == [training.metrics["train_rows"]] == [train.sum()]
    features = data.features[train]
    if not training.model.uses_weekday:
        features[:, WEEKDAY] = 0
    booster = xgb.train(
        {**XGB_PARAMS, "seed": 11},
        xgb.DMatrix(features, data.opened[train], feature_names=list(FEATURES)),
        num_boost_round=ROUNDS,
    )
    held_out = data.features[data.validation]
    np.testing.assert_array_equal(
        training.model.predict_open(held_out), booster.inplace_predict(held_out)
    )
    at_the_cap = fit_engagement(data, seed=11, max_rows=int(train.sum()))
    assert at_the_cap.model.fingerprint() == training.model.fingerprint()


@pytest.mark.postgres
def test_postgres_gives_the_same_model_and_preferences(fallback_world, pg_warehouse):
    build_fallback_world(pg_warehouse)
    duck = train_engagement(fallback_world, AS_OF, seed=5)
    pg = train_engagement(pg_warehouse, AS_OF, seed=5)
    assert pg.fingerprint == duck.fingerprint
    pd.testing.assert_frame_equal(
        send_time_preferences(pg_warehouse, pg.model, AS_OF),
        send_time_preferences(fallback_world, duck.model, AS_OF),
    )


def test_quality_gate_reasons():
    beats = {"open_auc": 0.75, "open_baseline_auc": 0.7, "open_lift": 0.05}
    assert engagement_quality({**beats, "open_lift_low": 0.01, "open_lift_high": 0.09}) == []
    luck = {**beats, "open_lift_low": -0.01, "open_lift_high": 0.11}
    failures = engagement_quality(luck, min_auc=0.8)
    assert len(failures) == 2
    assert "base-rate baseline 0.700" in failures[0] and "includes zero" in failures[0]
    assert "under the floor 0.80" in failures[1]
    assert engagement_quality({"open_auc": None}) == [
        "open ROC-AUC undefined: the held-out sends lack a class"
    ]


# --------------------------------------------------------------------------- seeded worlds


def test_engagement_auc_meets_the_bar(seeded_world, engagement_trainings):
    training = engagement_trainings(seeded_world.name)
    warehouse = seeded_world.warehouse()
    try:
        end = as_of_params(resolve_as_of(warehouse))["as_of_end"]
        data = training_set(load_activity(warehouse, end), pd.Timestamp(end), seed=42)
    finally:
        warehouse.dispose()
    metrics = training.metrics
    assert engagement_quality(metrics) == [], metrics
    assert metrics["open_auc"] >= 0.70
    assert metrics["validation_rows"] > 1000 and metrics["train_rows"] > 4 * 1000
    assert 0.03 < metrics["open_base_rate"] < 0.5

    # On a quarter of the training sends at most, the curve's sample still passes.
    cap = metrics["train_rows"] // 4
    sampled = fit_engagement(data, seed=42, max_rows=cap)
    curve = sampled.metrics["learning_curve"]
    assert curve["rows_available"] == metrics["train_rows"] > cap >= curve["chosen_rows"]
    assert curve["sizes"] == sorted(curve["sizes"]) and len(set(curve["sizes"])) >= 2
    assert sampled.metrics["train_rows"] == curve["chosen_rows"]
    assert sampled.metrics["validation_rows"] == metrics["validation_rows"]
    assert engagement_quality(sampled.metrics) == [], sampled.metrics

    # Shuffled labels (opens and clicks moved together) must not pass the gate.
    order = np.random.default_rng(0).permutation(data.opened.size)
    shuffled = dataclasses.replace(data, opened=data.opened[order], clicked=data.clicked[order])
    failures = engagement_quality(fit_engagement(shuffled, seed=42).metrics)
    assert any(reason.startswith("open ROC-AUC") for reason in failures)


def test_best_hour_matches_planted_preference(seeded_world, engagement_trainings):
    model = engagement_trainings(seeded_world.name).model
    warehouse = seeded_world.warehouse()
    try:
        prefs = send_time_preferences(warehouse, model)
        customers = warehouse.frame("SELECT customer_id FROM marts.dim_customers")
    finally:
        warehouse.dispose()
    truth = pd.read_parquet(seeded_world.truth_dir / "customers_truth.parquet")

    assert prefs["customer_id"].is_unique
    assert set(prefs["customer_id"]) == set(customers["customer_id"])
    assert prefs["best_local_hour"].between(8, 20).all()  # never in the quiet hours
    assert prefs["confidence"].between(0, 1).all()

    engaged = prefs[prefs["opens"] >= 10].merge(truth, on="customer_id", validate="1:1")
    assert len(engaged) >= 100
    assert (engaged["source"] == "customer").all()
    near = circular_distance(engaged["best_local_hour"], engaged["preferred_local_hour"]) <= 1
    assert near.mean() >= 0.70, near.mean()
