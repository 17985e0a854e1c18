"""Send times without the full grid for everyone, and only for customers whose inputs
moved: to the bit what the full grid over every customer gives."""

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from reward_assets.engagement import model as engagement_model
from reward_assets.engagement.activity import load_activity
from reward_assets.engagement.model import (
    FEATURES,
    feature_matrix,
    history_at,
    train_engagement,
)
from reward_assets.engagement.send_time import (
    TABLE,
    allowed_hours,
    preferences_from_history,
    refresh_preferences,
    serve_preferences,
    served_preferences,
)
from reward_assets.ingest.clock import as_of_params, resolve_as_of
from reward_assets.ml.cells import cells, split_points
from reward_assets.recommend.inputs import positions
from reward_assets.warehouse.store import Warehouse

HOURS = allowed_hours((21, 8))


@pytest.fixture(scope="module")
def engagement(worlds, engagement_trainings):
    """The default world's engagement model, customers and history at its last day."""
    model = engagement_trainings("default").model
    warehouse = worlds("default").warehouse()
    try:
        customers, history = at_as_of(warehouse, model, None)
    finally:
        warehouse.dispose()
    return model, customers, history


@pytest.fixture(scope="module")
def weekday_model(worlds):
    """A model made to use the weekday (the seed plants no weekday effect, so its splits
    fit noise): the grid then spans 7 weekdays, and the trees tell only some apart."""
    warehouse = worlds("default").warehouse()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(engagement_model, "WEEKDAY_P_VALUE", 1.1)
            model = train_engagement(warehouse, seed=42).model
    finally:
        warehouse.dispose()
    assert model.uses_weekday
    return model


def at_as_of(warehouse, model, as_of):
    end = pd.Timestamp(as_of_params(resolve_as_of(warehouse, as_of))["as_of_end"])
    activity = load_activity(warehouse, end, model.categories)
    return activity.customers, history_at(activity, end)


def weekdays_of(model) -> np.ndarray:
    return np.arange(7 if model.uses_weekday else 1)


def rows(history, model, customer, hour, weekday) -> np.ndarray:
    unknown = np.full(customer.size, len(model.categories))
    return feature_matrix(history, customer, hour, weekday, unknown)


def full_grid(history, model, prefs: pd.DataFrame) -> pd.DataFrame:
    """The model columns as the full grid over every customer gives them: every allowed
    hour x weekday scored for everyone, each row on its own."""
    n, weekdays = len(prefs), weekdays_of(model)
    own = (prefs["source"] == "customer").to_numpy()
    customer, hour, weekday = (
        axis.ravel() for axis in np.meshgrid(np.arange(n), HOURS, weekdays, indexing="ij")
    )
    grid = model.predict_open(rows(history, model, customer, hour, weekday))
    by_hour = grid.reshape(n, HOURS.size, weekdays.size).mean(axis=2)
    best = np.where(own, HOURS[by_hour.argmax(axis=1)], prefs["best_local_hour"])
    peak = np.where(own, 1 - by_hour.mean(axis=1) / by_hour.max(axis=1), 0.0)
    customer, weekday = (
        axis.ravel() for axis in np.meshgrid(np.arange(n), weekdays, indexing="ij")
    )
    opened, clicked = model.predict(rows(history, model, customer, best[customer], weekday))
    opened, clicked = opened.reshape(n, -1), clicked.reshape(n, -1)
    mean_open = opened.mean(axis=1)
    dated = (opened.max(axis=1) - opened.min(axis=1)) / mean_open >= 0.10
    top = opened.argmax(axis=1)
    index = np.arange(n)
    return pd.DataFrame(
        {
            "best_local_hour": best,
            "best_weekday": pd.Series(weekdays[top], dtype="Int64").where(dated),
            "expected_open_rate": np.where(dated, opened[index, top], mean_open),
            "expected_click_rate": np.where(dated, clicked[index, top], clicked.mean(axis=1)),
            "hour_peak": peak,
        }
    ).astype({"expected_open_rate": float, "expected_click_rate": float, "hour_peak": float})


@pytest.mark.parametrize("weekdays", ["none", "all_apart", "one_cell"])
def test_send_times_equal_the_full_grid_on_the_seeded_data(engagement, weekdays, request):
    """No weekday; 7 weekdays the trees all tell apart; 7 weekdays in one cell (a model
    that never split on them), each scored once for all 7."""
    model, customers, history = engagement
    if weekdays == "all_apart":
        model = request.getfixturevalue("weekday_model")
    elif weekdays == "one_cell":
        model = dataclasses.replace(model, uses_weekday=True)
    prefs = preferences_from_history(customers, history, model)
    own = (prefs["source"] == "customer").to_numpy()
    assert 100 <= own.sum() < len(prefs), own.sum()  # both paths are exercised

    expected = full_grid(history, model, prefs)
    pd.testing.assert_frame_equal(prefs[expected.columns], expected, check_exact=True)
    # The others keep their group's hour, whatever the grid would say for them.
    owners_hour = full_grid(history, model, prefs.assign(source="customer"))["best_local_hour"]
    assert (prefs["best_local_hour"].to_numpy()[~own] != owners_hour.to_numpy()[~own]).any()
    # Chunks of any size give the same rows, to the bit.
    small = preferences_from_history(customers, history, model, chunk_customers=997)
    pd.testing.assert_frame_equal(prefs, small)


def test_same_inputs_keep_every_row_and_other_hours_recompute_all(engagement):
    model, customers, history = engagement
    day, next_day = dt.date(2023, 8, 27), dt.date(2023, 8, 28)
    first = preferences_from_history(customers, history, model, previous=None, as_of=day)
    again = preferences_from_history(customers, history, model, previous=first, as_of=next_day)
    pd.testing.assert_frame_equal(again, first)  # computed_as_of still the first day
    assert (first.attrs["scored"], again.attrs["scored"]) == (len(first), 0)

    wider = preferences_from_history(customers, history, model, (22, 7), as_of=day)
    back = preferences_from_history(customers, history, model, previous=wider, as_of=next_day)
    assert (back["computed_as_of"] == pd.Timestamp(next_day)).all()
    assert back.attrs["scored"] == len(back)
    pd.testing.assert_frame_equal(
        back.drop(columns="computed_as_of"), again.drop(columns="computed_as_of")
    )


def scored_cells(history, model, customer: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Per customer, the cells of their rows at each of `hours` (customers x hours) x
    every weekday, side by side."""
    points = split_points((model.open_booster, model.click_booster), len(FEATURES))
    every = [
        cells(rows(history, model, customer, hours[:, h], np.full(customer.size, w)), points)
        for h in range(hours.shape[1])
        for w in weekdays_of(model)
    ]
    return np.concatenate(every, axis=1)


def test_the_day_after_only_customers_whose_inputs_moved_are_scored(
    engagement, worlds, tmp_path, land_a_day
):
    model, _, _ = engagement
    data_dir, url = worlds("default").copy_to(tmp_path)
    warehouse = Warehouse(url)
    day = resolve_as_of(warehouse, None)
    refresh_preferences(warehouse, model, "v1", day, (21, 8), data_dir)
    before = warehouse.frame(f"SELECT * FROM {TABLE} ORDER BY customer_id")
    customers0, history0 = at_as_of(warehouse, model, day)
    warehouse.dispose()

    land_a_day(data_dir, url)
    warehouse = Warehouse(url)
    next_day = resolve_as_of(warehouse, None)
    assert next_day == day + dt.timedelta(days=1)
    prefs, served = refresh_preferences(warehouse, model, "v1", next_day, (21, 8), data_dir)
    assert served.published
    table = warehouse.frame(f"SELECT * FROM {TABLE} ORDER BY customer_id")
    customers, history = at_as_of(warehouse, model, next_day)
    warehouse.dispose()

    full = preferences_from_history(customers, history, model)
    types = {"best_local_hour": "int64", "best_weekday": "Int64", "opens": "int64"}
    columns = [c for c in full.columns if c != "computed_as_of"]
    pd.testing.assert_frame_equal(
        table[columns].astype(types), full[columns].astype(types), check_exact=True
    )

    # Changed inputs, as the model sees them: a new customer, one whose own hour starts or
    # stops counting, another fallback hour, or any scored row's cells moved.
    at = positions(customers["customer_id"], customers0["customer_id"])
    known = at >= 0
    own = (full["source"] == "customer").to_numpy()
    was_own = np.zeros_like(own)
    was_own[known] = (before["source"] == "customer").to_numpy()[at[known]]
    old_hour = np.full(len(full), -1)
    old_hour[known] = before["best_local_hour"].to_numpy()[at[known]]
    hour = full["best_local_hour"].to_numpy()
    moved = ~known | (own != was_own) | (~own & (hour != old_hour))
    for group in (own, ~own):
        scored = np.flatnonzero(group & ~moved)
        hours = np.broadcast_to(HOURS, (scored.size, HOURS.size)) if group is own else None
        hours = hour[scored][:, None] if hours is None else hours
        now = scored_cells(history, model, scored, hours)
        then = scored_cells(history0, model, at[scored], hours)
        moved[scored] = (now != then).any(axis=1)

    recomputed = (table["computed_as_of"] == pd.Timestamp(next_day)).to_numpy()
    kept = (table["computed_as_of"] == pd.Timestamp(day)).to_numpy()
    assert (recomputed | kept).all()
    np.testing.assert_array_equal(recomputed, moved)
    assert prefs.attrs["scored"] == recomputed.sum()
    assert 0 < recomputed.sum() < len(table) / 2, recomputed.sum()


@pytest.mark.parametrize("store", ["duckdb_warehouse", "pg_warehouse"])
def test_served_rows_read_back_exactly_and_are_all_kept(engagement, store, request, tmp_path):
    """The key survives the warehouse's types on both engines, and the carried rows are
    copied inside the warehouse as served, beside those computed again."""
    model, customers, history = engagement
    warehouse = request.getfixturevalue(store)
    day, next_day = dt.date(2023, 8, 27), dt.date(2023, 8, 28)
    prefs = preferences_from_history(customers, history, model, as_of=day)
    written = prefs.assign(as_of=day, model_version="v1")
    assert serve_preferences(warehouse, written, None, tmp_path).published
    before = warehouse.frame(f"SELECT * FROM {TABLE} ORDER BY customer_id")

    previous = served_preferences(warehouse)
    again = preferences_from_history(customers, history, model, previous=previous, as_of=day)
    assert again.attrs["scored"] == 0
    # As if a third of the customers' inputs had moved: those are scored again.
    moved = previous["customer_id"][::3]
    previous.loc[moved.index, "inputs_key"] += 1
    again = preferences_from_history(customers, history, model, previous=previous, as_of=next_day)
    assert again.attrs["scored"] == len(moved)
    rewritten = again.assign(as_of=next_day, model_version="v1")
    assert serve_preferences(warehouse, rewritten, previous, tmp_path).published
    after = warehouse.frame(f"SELECT * FROM {TABLE} ORDER BY customer_id")

    dated = ["as_of", "computed_as_of"]
    pd.testing.assert_frame_equal(after.drop(columns=dated), before.drop(columns=dated))
    as_of, computed = (pd.to_datetime(after[column]) for column in dated)
    assert (as_of == pd.Timestamp(next_day)).all()
    recomputed = after["customer_id"].isin(moved)
    assert (computed[recomputed] == pd.Timestamp(next_day)).all()
    assert (computed[~recomputed] == pd.Timestamp(day)).all()
