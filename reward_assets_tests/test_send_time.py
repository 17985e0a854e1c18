"""Send times without the full grid for everyone: the same hours as the full grid gives."""

import numpy as np
import pandas as pd

from reward_assets.engagement.model import (
    feature_matrix,
    history_at,
    load_activity,
    train_engagement,
)
from reward_assets.engagement.send_time import allowed_hours, preferences_from_history
from reward_assets.ingest.clock import as_of_params, resolve_as_of


def full_grid_hours(history, model, customers: int, hours: np.ndarray) -> np.ndarray:
    """Every customer's argmax over every allowed hour (mean over weekdays), as the model
    scored the whole grid for everyone before."""
    weekdays = np.arange(7 if model.uses_weekday else 1)
    customer, hour, weekday = (
        axis.ravel() for axis in np.meshgrid(np.arange(customers), hours, weekdays, indexing="ij")
    )
    unknown = np.full(customer.size, len(model.categories))
    grid = model.predict_open(feature_matrix(history, customer, hour, weekday, unknown))
    return hours[grid.reshape(customers, hours.size, weekdays.size).mean(axis=2).argmax(axis=1)]


def test_send_times_equal_the_full_grid_on_the_seeded_data(worlds):
    warehouse = worlds("default").warehouse()
    try:
        model = train_engagement(warehouse, seed=42).model
        end = pd.Timestamp(as_of_params(resolve_as_of(warehouse, None))["as_of_end"])
        activity = load_activity(warehouse, end, model.categories)
    finally:
        warehouse.dispose()
    history = history_at(activity, end)
    prefs = preferences_from_history(activity.customers, history, model)
    own = (prefs["source"] == "customer").to_numpy()
    assert 100 <= own.sum() < len(prefs), own.sum()  # both paths are exercised

    expected = full_grid_hours(history, model, len(prefs), allowed_hours((21, 8)))
    np.testing.assert_array_equal(prefs["best_local_hour"].to_numpy()[own], expected[own])
    # The others keep their group's hour, whatever the grid would say for them.
    assert (prefs["best_local_hour"].to_numpy()[~own] != expected[~own]).any()
    # Chunks of any size give the same rows, to the bit.
    small = preferences_from_history(activity.customers, history, model, chunk_customers=997)
    pd.testing.assert_frame_equal(prefs, small)
